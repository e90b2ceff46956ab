"""consumer_timeout_ms (the broker under test runs with 300 ms): a
consumer that leaves deliveries unacked past it has its channel closed
with 406, as RabbitMQ does, and its messages go to another consumer,
marked redelivered, in order."""
import time

from pika.exceptions import ChannelClosedByBroker

from util import connect, done, unique

conn = connect()
q = unique("timeout")
setup = conn.channel()
setup.queue_declare(queue=q)
for i in range(5):
    setup.basic_publish(exchange="", routing_key=q, body=b"m%d" % i)

slow = conn.channel()
slow.basic_qos(prefetch_count=10)
got = []
deadline = time.time() + 10
try:
    for method, props, body in slow.consume(q, inactivity_timeout=0.05):
        if method is not None:
            got.append(body)
        assert time.time() < deadline, "the channel was not closed within 10 s"
    raise AssertionError("consume ended without a channel close")
except ChannelClosedByBroker as e:
    assert e.reply_code == 406, (e.reply_code, e.reply_text)
    assert e.reply_text.startswith("PRECONDITION_FAILED - delivery acknowledgement on channel"), e.reply_text
    assert "timed out" in e.reply_text and "300 ms" in e.reply_text, e.reply_text
    print("channel closed: %d %s" % (e.reply_code, e.reply_text))
assert got == [b"m%d" % i for i in range(5)], got

other = conn.channel()
again = []
for method, props, body in other.consume(q, inactivity_timeout=2):
    assert method is not None, "the requeued messages did not come back: %r" % again
    assert method.redelivered, "a requeued message is marked redelivered"
    again.append(body)
    other.basic_ack(method.delivery_tag)
    if len(again) == 5:
        break
assert again == got, again
other.cancel()
# The connection and other channels are fine.
setup.queue_declare(queue=q, passive=True)
conn.close()
done()
