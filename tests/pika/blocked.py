"""Back pressure: a publisher to a queue whose backlog passes
publish_pause_messages (100 in this test's broker) while it has a consumer
gets connection.blocked, and connection.unblocked once it drains."""
import time

from util import connect, done, unique, wait_until

q = unique("blocked")
a = connect()
cha = a.channel()
cha.queue_declare(queue=q)
cha.basic_qos(prefetch_count=10)
got = []


def on_message(ch, m, p, b):
    got.append(b)
    ch.basic_ack(m.delivery_tag)


cha.basic_consume(q, on_message)
a.process_data_events(time_limit=0.2)

b = connect()
events = []
b.add_on_connection_blocked_callback(lambda c, m: events.append("blocked"))
b.add_on_connection_unblocked_callback(lambda c, m: events.append("unblocked"))
chb = b.channel()
for i in range(400):
    chb.basic_publish(exchange="", routing_key=q, body=b"%d" % i)
wait_until(b, lambda: events, settle=0.1)
assert events == ["blocked"], "expected connection.blocked, got %r" % events
print("blocked while the queue is deep")
# The publisher's pika only writes what it buffered while blocked when its
# connection is serviced: alternate between the two (slow on a loaded CI).
deadline = time.time() + 40
while len(got) < 400 and time.time() < deadline:
    a.process_data_events(time_limit=0.1)
    b.process_data_events(time_limit=0.02)
if len(got) != 400:
    depth = cha.queue_declare(queue=q, passive=True).method.message_count
    raise AssertionError("consumer got %d of 400; events %r; ready %d; last %r" % (len(got), events, depth, got[-3:]))
# It may block again while the rest drains; it always ends unblocked.
assert events[-1] == "unblocked" and all(e == ("blocked", "unblocked")[i % 2] for i, e in enumerate(events)), events
print("unblocked once drained")
a.close()
b.close()
done()
