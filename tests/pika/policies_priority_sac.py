"""x-max-priority ordering and x-single-active-consumer failover through
pika (the first consumer's connection closes: the second gets everything,
its unacked messages redelivered)."""
import pika
from util import connect, done, unique, wait_until

conn = connect()
ch = conn.channel()
q = unique("prio")
ch.queue_declare(queue=q, arguments={"x-max-priority": 10})
for body, prio in [(b"low", 1), (b"high", 10), (b"none", None), (b"mid", 5), (b"over", 200), (b"mid2", 5)]:
    ch.basic_publish(exchange="", routing_key=q, body=body, properties=pika.BasicProperties(priority=prio))
order = []
while True:
    m, p, b = ch.basic_get(q, auto_ack=True)
    if m is None:
        break
    order.append(b)
assert order == [b"high", b"over", b"mid", b"mid2", b"low", b"none"], order
print("priorities: highest first, capped at the max, fifo within")

sac = unique("sac")
ch.queue_declare(queue=sac, arguments={"x-single-active-consumer": True})
first = connect()
fch = first.channel()
fch.basic_qos(prefetch_count=2)
got1 = []
fch.basic_consume(sac, lambda c, m, p, b: got1.append(b))
second = connect()
sch = second.channel()
got2 = []
sch.basic_consume(sac, lambda c, m, p, b: got2.append((b, m.redelivered)))
first.process_data_events(time_limit=0.2)
second.process_data_events(time_limit=0.2)
for i in range(4):
    ch.basic_publish(exchange="", routing_key=sac, body=b"%d" % i)
wait_until(first, lambda: len(got1) >= 2)
second.process_data_events(time_limit=0.3)
assert got1 == [b"0", b"1"], got1
assert got2 == [], "the second consumer is idle while the first is active"
first.close()
wait_until(second, lambda: len(got2) >= 4)
# pika's close cancels the consumer first (its unacked stay with it, AMQP
# semantics, and the second consumer takes over at once), then closes the
# channel, which requeues them: 2 and 3 may come before 0 and 1.
assert sorted(got2) == [(b"0", True), (b"1", True), (b"2", False), (b"3", False)], got2
print("single active consumer fails over")
second.close()
conn.close()
done()
