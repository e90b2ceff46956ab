"""exchanges_max = 2, bindings_max = 2, queues_per_shard_max = 2 (one
shard): past each, the channel is closed with 406 PRECONDITION_FAILED, as
RabbitMQ does for its limits, and the connection goes on."""
from util import connect, done, expect_channel_close, unique

conn = connect()
ch = conn.channel()
ch.exchange_declare("cap-x1", exchange_type="direct")
ch.exchange_declare("cap-x2", exchange_type="direct")
text = expect_channel_close(conn, 406, lambda c: c.exchange_declare("cap-x3", exchange_type="direct"))
assert "exchanges_max" in text, text

ch = conn.channel()
ch.exchange_declare("cap-x1", exchange_type="direct")  # a redeclare adds nothing
q1, q2 = unique("cap-q"), unique("cap-q")
ch.queue_declare(queue=q1)
ch.queue_declare(queue=q2)
text = expect_channel_close(conn, 406, lambda c: c.queue_declare(queue=unique("cap-q")))
assert "queues_per_shard_max" in text, text

ch = conn.channel()
ch.queue_bind(q1, "cap-x1", routing_key="a")
ch.queue_bind(q2, "cap-x1", routing_key="a")
text = expect_channel_close(conn, 406, lambda c: c.queue_bind(q1, "cap-x2", routing_key="b"))
assert "bindings_max" in text, text

ch = conn.channel()
ch.queue_declare(queue=q1, passive=True)
conn.close()
done()
