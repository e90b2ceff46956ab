"""Publisher confirms: acks for routed messages, basic.return + ack for a
mandatory message without a queue, and a persistent message either nacked
(storage not in this build) or acked and then really in the queue."""
import pika
from pika.exceptions import NackError, UnroutableError

from util import connect, done, unique

conn = connect()
ch = conn.channel()
ch.confirm_delivery()
q = unique("confirms")
ch.queue_declare(queue=q)
for i in range(200):
    ch.basic_publish(exchange="", routing_key=q, body=b"m%d" % i)
print("200 confirmed publishes")
assert ch.queue_declare(queue=q, passive=True).method.message_count == 200

# Unroutable + mandatory: returned, then confirmed (pika raises UnroutableError).
try:
    ch.basic_publish(exchange="", routing_key=unique("nowhere"), body=b"lost", mandatory=True)
    raise AssertionError("mandatory publish to a missing queue was not returned")
except UnroutableError as e:
    assert len(e.messages) == 1 and e.messages[0].body == b"lost", e.messages
    assert e.messages[0].method.reply_code == 312, e.messages[0].method
    print("returned with 312 NO_ROUTE")

# Unroutable without mandatory: silently dropped, still confirmed.
ch.basic_publish(exchange="", routing_key=unique("nowhere"), body=b"dropped")

# Persistent: the broker refuses them until storage lands (basic.nack).
pq = unique("persistent")
ch.queue_declare(queue=pq, durable=True)
try:
    ch.basic_publish(exchange="", routing_key=pq, body=b"p", properties=pika.BasicProperties(delivery_mode=2))
    n = ch.queue_declare(queue=pq, durable=True, passive=True).method.message_count
    assert n == 1, "acked persistent message is not in the queue (%d)" % n
    print("persistent message acked (storage present)")
except NackError:
    n = ch.queue_declare(queue=pq, durable=True, passive=True).method.message_count
    assert n == 0, "nacked persistent message is in the queue"
    print("persistent message nacked (no storage in this build)")
ch.queue_delete(queue=q)
ch.queue_delete(queue=pq)
conn.close()
done()
