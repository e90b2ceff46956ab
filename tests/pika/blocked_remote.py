"""Back pressure across shards: the publisher's connection is on one shard
and the queue on the other (QUEUE_ON_0 / QUEUE_ON_1 name a queue owned by
each shard; a server-named queue tells which shard the connection is on).
The owner tells the publisher's shard to pause: connection.blocked, then
connection.unblocked once the consumer drains the queue."""
import os
import time

from util import connect, done, wait_until

b = connect()
events = []
b.add_on_connection_blocked_callback(lambda c, m: events.append("blocked"))
b.add_on_connection_unblocked_callback(lambda c, m: events.append("unblocked"))
chb = b.channel()
mine = chb.queue_declare(queue="", exclusive=True).method.queue  # amq.gen-SHARD.CONN...
shard = int(mine.split("-")[1].split(".")[0])
q = os.environ["QUEUE_ON_%d" % (1 - shard)]
print("publisher on shard %d, queue %s on shard %d" % (shard, q, 1 - shard))

a = connect()
cha = a.channel()
cha.queue_declare(queue=q)
cha.basic_qos(prefetch_count=10)
got = []


def on_message(ch, m, p, body):
    got.append(body)
    ch.basic_ack(m.delivery_tag)


cha.basic_consume(q, on_message)
a.process_data_events(time_limit=0.2)

# Past the mark (100): the owner's pause reaches the publisher's shard
# while it waits for more bytes; the next publish is read, then it pauses.
for i in range(200):
    chb.basic_publish(exchange="", routing_key=q, body=b"%d" % i)
b.process_data_events(time_limit=0.5)
for i in range(200, 400):
    chb.basic_publish(exchange="", routing_key=q, body=b"%d" % i)
wait_until(b, lambda: events, settle=0.1)
assert events == ["blocked"], "expected connection.blocked, got %r" % events
print("blocked while the queue on the other shard is deep")
deadline = time.time() + 40
while len(got) < 400 and time.time() < deadline:
    a.process_data_events(time_limit=0.1)
    b.process_data_events(time_limit=0.02)
if len(got) != 400:
    depth = cha.queue_declare(queue=q, passive=True).method.message_count
    raise AssertionError("consumer got %d of 400; events %r; ready %d; last %r" % (len(got), events, depth, got[-3:]))
assert sorted(int(x) for x in got) == list(range(400)), "lost or duplicated"
assert events[-1] == "unblocked" and all(e == ("blocked", "unblocked")[i % 2] for i, e in enumerate(events)), events
print("unblocked once drained")
a.close()
b.close()
done()
