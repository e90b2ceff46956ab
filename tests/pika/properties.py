"""Every basic property survives publish -> get and publish -> consume."""
import pika

from util import connect, done, unique

conn = connect()
ch = conn.channel()
q = unique("props")
ch.queue_declare(queue=q)
props = pika.BasicProperties(
    content_type="application/json",
    content_encoding="utf-8",
    headers={"a": 1, "b": "two", "nested": {"x": [1, 2, 3]}, "flag": True},
    delivery_mode=1,
    priority=5,
    correlation_id="corr-1",
    reply_to="replies",
    expiration="60000",
    message_id="msg-1",
    timestamp=1700000000,
    type="example",
    user_id="guest",
    app_id="pika-test",
    cluster_id="c1",
)
body = b"x" * 300000  # several body frames each way
ch.basic_publish(exchange="", routing_key=q, body=body, properties=props)
ch.basic_publish(exchange="", routing_key=q, body=b"", properties=props)
ch.basic_publish(exchange="", routing_key=q, body=b"plain")

FIELDS = ["content_type", "content_encoding", "headers", "delivery_mode", "priority", "correlation_id",
          "reply_to", "expiration", "message_id", "timestamp", "type", "user_id", "app_id", "cluster_id"]


def same(p):
    for f in FIELDS:
        assert getattr(p, f) == getattr(props, f), "%s: %r != %r" % (f, getattr(p, f), getattr(props, f))


m, p, b = ch.basic_get(q, auto_ack=True)
assert b == body, len(b)
same(p)
assert m.routing_key == q and m.exchange == "", m
got = []
for m, p, b in ch.consume(q, auto_ack=True, inactivity_timeout=3):
    if m is None:
        break
    got.append((p, b))
    if len(got) == 2:
        break
assert len(got) == 2, got
same(got[0][0])
assert got[0][1] == b""
assert got[1][1] == b"plain" and got[1][0].headers is None and got[1][0].content_type is None
ch.cancel()
ch.queue_delete(queue=q)
conn.close()
done()
