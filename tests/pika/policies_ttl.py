"""Queue policies through pika: TTL 0, message TTL dead-lettered to
another queue with x-death, per-message expiration (at the head only),
an invalid expiration, x-expires."""
import time

import pika
from util import connect, done, expect_channel_close, unique, wait_until

conn = connect()
ch = conn.channel()

# TTL 0: expires at once unless a consumer is waiting for it.
q0 = unique("ttl0")
ch.queue_declare(queue=q0, arguments={"x-message-ttl": 0})
ch.basic_publish(exchange="", routing_key=q0, body=b"nobody")
conn.process_data_events(time_limit=0.2)
assert ch.queue_declare(queue=q0, passive=True).method.message_count == 0
got = []
ch.basic_consume(q0, lambda c, m, p, b: got.append(b), auto_ack=True)
ch.basic_publish(exchange="", routing_key=q0, body=b"waited-for")
wait_until(conn, lambda: len(got) >= 1)
assert got == [b"waited-for"], got
print("ttl 0 behaves")

# Message TTL with a dead-letter queue: x-death as RabbitMQ writes it.
src, dlq = unique("ttl-src"), unique("ttl-dlq")
ch.queue_declare(queue=dlq)
ch.queue_declare(queue=src, arguments={
    "x-message-ttl": 100, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
ch.basic_publish(exchange="", routing_key=src, body=b"expiring",
                 properties=pika.BasicProperties(content_type="text/plain", headers={"app": "kept"}))
deadline = time.time() + 5
while ch.queue_declare(queue=dlq, passive=True).method.message_count < 1 and time.time() < deadline:
    conn.process_data_events(time_limit=0.05)
m, props, body = ch.basic_get(dlq, auto_ack=True)
assert body == b"expiring", body
h = props.headers
death = h["x-death"]
assert len(death) == 1, death
d = death[0]
assert d["count"] == 1 and d["reason"] == "expired" and d["queue"] == src, d
assert d["exchange"] == "" and d["routing-keys"] == [src], d
assert "time" in d, d
assert h["x-first-death-reason"] == "expired" and h["x-first-death-queue"] == src, h
assert h["x-first-death-exchange"] == "", h
assert h["app"] == "kept" and props.content_type == "text/plain", props
print("ttl dead-letters with x-death")

# Per-message expiration: only at the head. The original expiration is
# kept in x-death and removed from the message.
q = unique("exp")
ch.queue_declare(queue=q)
ch.basic_publish(exchange="", routing_key=q, body=b"gone", properties=pika.BasicProperties(expiration="30"))
ch.basic_publish(exchange="", routing_key=q, body=b"stays")
ch.basic_publish(exchange="", routing_key=q, body=b"behind", properties=pika.BasicProperties(expiration="30"))
time.sleep(0.3)
assert ch.queue_declare(queue=q, passive=True).method.message_count == 2
m, p, b = ch.basic_get(q, auto_ack=True)
assert b == b"stays", b
m, p, b = ch.basic_get(q, auto_ack=True)
assert m is None, "an expired message at the head is never delivered"
print("per-message expiration at the head")

expect_channel_close(conn, 406, lambda c: (
    c.basic_publish(exchange="", routing_key=q, body=b"x", properties=pika.BasicProperties(expiration="soon")),
    c.queue_declare(queue=q, passive=True)))

# x-expires: deleted once unused for that long.
qe = unique("xexp")
ch.queue_declare(queue=qe, arguments={"x-expires": 200})
time.sleep(0.6)
expect_channel_close(conn, 404, lambda c: c.queue_declare(queue=qe, passive=True))
print("x-expires deletes an unused queue")
conn.close()
done()
