"""Consumes COUNT messages from QUEUE (declared by the other side) with
manual acks and prints each body; exits 1 if they do not all arrive."""
import os
import sys

from util import connect

q, count = os.environ["QUEUE"], int(os.environ["COUNT"])
conn = connect()
ch = conn.channel()
ch.basic_qos(prefetch_count=50)
n = 0
for m, p, b in ch.consume(q, inactivity_timeout=5):
    if m is None:
        sys.exit("only %d of %d messages arrived" % (n, count))
    print("BODY", b.decode(), "props" if p.content_type else "noprops")
    ch.basic_ack(m.delivery_tag)
    n += 1
    if n == count:
        break
ch.cancel()
conn.close()
print("OK")
