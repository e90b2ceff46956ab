"""Exclusive queues (405 for other connections, deleted with their
connection), auto-delete queues (deleted with their last consumer), and
server-named queues."""
from util import connect, done, expect_channel_close, unique, wait_until

a = connect()
b = connect()
cha = a.channel()
q = unique("excl")
cha.queue_declare(queue=q, exclusive=True)
cha.basic_publish(exchange="", routing_key=q, body=b"mine")
expect_channel_close(b, 405, lambda ch: ch.queue_declare(queue=q, exclusive=True))
expect_channel_close(b, 405, lambda ch: ch.basic_consume(q, lambda *x: None))
expect_channel_close(b, 405, lambda ch: ch.basic_get(q))
expect_channel_close(b, 405, lambda ch: ch.queue_delete(q))
m, p, body = cha.basic_get(q, auto_ack=True)
assert body == b"mine"
a.close()
# Gone with its connection.
expect_channel_close(b, 404, lambda ch: ch.queue_declare(queue=q, passive=True))
print("exclusive queue behaves")

ch = b.channel()
r = ch.queue_declare(queue="", exclusive=True)
name = r.method.queue
assert name.startswith("amq.gen-"), name
ch.basic_publish(exchange="", routing_key=name, body=b"x")
assert ch.queue_declare(queue=name, passive=True).method.message_count == 1
print("server-named queue:", name)

ad = unique("autodel")
ch.queue_declare(queue=ad, auto_delete=True)
tag = ch.basic_consume(ad, lambda *x: None)
assert ch.queue_declare(queue=ad, passive=True).method.consumer_count == 1
ch.basic_cancel(tag)
expect_channel_close(b, 404, lambda c: c.queue_declare(queue=ad, passive=True))
print("auto-delete queue goes with its last consumer")

# consumer_cancel_notify: deleting a queue cancels its consumers.
cq = unique("cancelled")
ch.queue_declare(queue=cq)
cancelled = []
ch.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
tag = ch.basic_consume(cq, lambda *x: None)
other = connect()
other.channel().queue_delete(cq)
other.close()
wait_until(b, lambda: cancelled)
assert cancelled == [tag], cancelled
print("basic.cancel sent when the queue was deleted")
b.close()
done()
