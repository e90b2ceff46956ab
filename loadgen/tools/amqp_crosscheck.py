#!/usr/bin/env python3
"""Cross-checks ringmq-loadgen's hand-written AMQP client against pika.

1. ringmq-loadgen publishes for a few seconds (producer only) into QUEUE;
   pika checks the queue holds exactly the number of messages the loadgen
   reports as sent, consumes them all and checks each one's size and header
   (producer id, sequence: every sequence 0..sent-1 exactly once).
2. pika publishes and consumes the same number of messages as fast as it can,
   for a rate to compare with the loadgen's.

Usage: amqp_crosscheck.py LOADGEN_BIN AMQP_URL [SECONDS] [SIZE]
"""
import json
import struct
import subprocess
import sys
import tempfile
import time

import pika

loadgen, url = sys.argv[1], sys.argv[2]
secs = float(sys.argv[3]) if len(sys.argv) > 3 else 3.0
size = int(sys.argv[4]) if len(sys.argv) > 4 else 1024
prefix = "xcheck"
queue = prefix + "-0"

with tempfile.NamedTemporaryFile(suffix=".json") as out:
    subprocess.run(
        [loadgen, "--url", url, "--producers", "1", "--consumers", "0",
         "--size", str(size), "--duration", str(secs), "--warmup", "0",
         "--queue-prefix", prefix, "--quiet", "--json", out.name],
        check=True, stdout=subprocess.DEVNULL)
    summary = json.load(open(out.name))
sent = summary["sent"]
lg_rate = sent / secs

conn = pika.BlockingConnection(pika.URLParameters(url))
ch = conn.channel()
depth = ch.queue_declare(queue, passive=True).method.message_count
print(f"loadgen published {sent} messages of {size} B ({lg_rate:,.0f} msg/s); queue depth seen by pika: {depth}")
assert depth == sent, "queue depth differs from the loadgen's sent count"

seen = bytearray(sent)
bad = 0
ch.basic_qos(prefetch_count=1000)
t0 = time.monotonic()
got = 0
for method, props, body in ch.consume(queue, inactivity_timeout=2):
    if method is None:
        break
    intended, ident = struct.unpack_from("<QQ", body)
    producer, seq = ident >> 48, ident & ((1 << 48) - 1)
    if len(body) != size or producer != 0 or seq >= sent or seen[seq]:
        bad += 1
    else:
        seen[seq] = 1
    got += 1
    if got % 500 == 0 or got == sent:
        ch.basic_ack(method.delivery_tag, multiple=True)
    if got == sent:
        break
pika_consume = got / (time.monotonic() - t0)
ch.cancel()
missing = sent - sum(seen)
print(f"pika consumed {got} ({pika_consume:,.0f} msg/s): {bad} malformed or duplicated, {missing} missing")
assert bad == 0 and missing == 0

# pika's own publish rate for the same count.
body = bytes(size)
t0 = time.monotonic()
for _ in range(sent):
    ch.basic_publish("", queue, body)
pika_publish = sent / (time.monotonic() - t0)
ch.queue_purge(queue)
ch.queue_delete(queue)
conn.close()
print(f"pika published {sent} in a loop: {pika_publish:,.0f} msg/s")
print(f"RESULT loadgen_publish={lg_rate:.0f} pika_publish={pika_publish:.0f} pika_consume={pika_consume:.0f} ok=1")
