"""Consumes one message without acking, says so, and waits to be killed."""
import sys
import time

from util import connect

conn = connect()
ch = conn.channel()
q = sys.argv[1]
for m, p, b in ch.consume(q, inactivity_timeout=10):
    if m is None:
        sys.exit("nothing delivered")
    print("GOT", b.decode(), m.redelivered, flush=True)
    break
time.sleep(60)
