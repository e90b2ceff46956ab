"""basic.get: get-empty, get-ok with message count, ack of a got message,
no-ack get, and purge."""
from util import connect, done, unique

conn = connect()
ch = conn.channel()
q = unique("get")
ch.queue_declare(queue=q)
assert ch.basic_get(q) == (None, None, None)
for i in range(4):
    ch.basic_publish(exchange="", routing_key=q, body=b"%d" % i)
m, p, b = ch.basic_get(q)
assert b == b"0" and m.message_count == 3 and not m.redelivered, (m, b)
ch.basic_ack(m.delivery_tag)
m, p, b = ch.basic_get(q, auto_ack=True)
assert b == b"1" and m.message_count == 2, (m, b)
m, p, b = ch.basic_get(q)
assert b == b"2"
ch.basic_nack(m.delivery_tag, requeue=True)
m, p, b = ch.basic_get(q)
assert b == b"2" and m.redelivered, (m, b)
ch.basic_ack(m.delivery_tag)
assert ch.queue_purge(q).method.message_count == 1
assert ch.basic_get(q) == (None, None, None)
assert ch.queue_delete(q).method.message_count == 0
print("get works")
conn.close()
done()
