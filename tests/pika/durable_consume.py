"""After a restart: the durable QUEUE holds the COUNT persistent messages,
in order, properties intact; the transient one is gone."""
import os

from util import connect

q, count = os.environ["QUEUE"], int(os.environ["COUNT"])
conn = connect()
ch = conn.channel()
n = ch.queue_declare(queue=q, durable=True, passive=True).method.message_count
assert n == count, "%d messages after restart, expected %d" % (n, count)
for i in range(count):
    m, p, b = ch.basic_get(q)
    assert b == b"p%d" % i, (i, b)
    assert p.delivery_mode == 2 and p.message_id == "id-%d" % i and p.headers == {"i": i}, p
    ch.basic_ack(m.delivery_tag)
assert ch.basic_get(q) == (None, None, None)
conn.close()
print("OK")
