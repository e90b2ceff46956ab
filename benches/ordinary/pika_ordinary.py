#!/usr/bin/env python3
"""pika as applications use it (issue 22, item 2): BlockingConnection, one
basic_publish per call from one producer process, and one consumer process
with either auto_ack or one basic_ack per delivery (pika's own examples).
Run by benches/report.sh (`ONLY=pika`) against RabbitMQ and ringmq alike;
the broker's CPU is measured around it from /proc.

    pika_ordinary.py --url URL --ack auto|each [--size 16] [--duration 6]
                     [--warmup 2] [--prefetch 1000] [--json FILE] [--label L]

Prints (and writes to --json) sent, received, lost and msgs_per_s: the
deliveries the consumer took inside the measured window, a second.
"""
import argparse
import json
import multiprocessing
import sys
import time

import pika


def producer(url, queue, size, seconds, sent, ready):
    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    body = bytearray(size)
    ready.wait()
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        body[0:8] = n.to_bytes(8, "little")
        ch.basic_publish(exchange="", routing_key=queue, body=bytes(body))
        n += 1
        if n % 256 == 0:
            sent.value = n
    sent.value = n
    conn.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2f")
    ap.add_argument("--ack", choices=("auto", "each"), required=True)
    ap.add_argument("--queue", default="pika-ordinary")
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--duration", type=float, default=6)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--prefetch", type=int, default=1000)
    ap.add_argument("--json")
    ap.add_argument("--label", default="pika")
    a = ap.parse_args()
    if a.size < 8:
        sys.exit("pika_ordinary: --size must be at least 8")

    conn = pika.BlockingConnection(pika.URLParameters(a.url))
    ch = conn.channel()
    ch.queue_declare(a.queue)
    ch.queue_purge(a.queue)
    ch.basic_qos(prefetch_count=a.prefetch)
    auto = a.ack == "auto"
    state = {"received": 0, "in_window": 0}
    t0 = time.monotonic()
    win = (t0 + a.warmup, t0 + a.warmup + a.duration)

    def on_message(chan, method, _props, _body):
        state["received"] += 1
        if win[0] <= time.monotonic() < win[1]:
            state["in_window"] += 1
        if not auto:
            chan.basic_ack(delivery_tag=method.delivery_tag)

    ch.basic_consume(a.queue, on_message, auto_ack=auto)
    sent = multiprocessing.Value("q", 0, lock=False)
    ready = multiprocessing.Event()
    p = multiprocessing.Process(target=producer, args=(a.url, a.queue, a.size, a.warmup + a.duration, sent, ready))
    p.start()
    ready.set()
    # Consume until the producer is done and everything it sent arrived,
    # or nothing has arrived for 3 s.
    last, last_at = -1, time.monotonic()
    while True:
        conn.process_data_events(time_limit=0.05)
        now = time.monotonic()
        if state["received"] != last:
            last, last_at = state["received"], now
        if not p.is_alive() and state["received"] >= sent.value:
            break
        if now - last_at > 3:
            break
    p.join(10)
    conn.close()
    r = {
        "label": a.label,
        "ack": a.ack,
        "size": a.size,
        "sent": sent.value,
        "received": state["received"],
        "lost": sent.value - state["received"],
        "msgs_per_s": state["in_window"] / a.duration,
    }
    text = json.dumps(r, indent=2)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
