"""basic.qos: a per-consumer prefetch, and a per-channel (global) one
shared by two consumers."""
import time

from util import connect, done, unique, wait_until

conn = connect()
ch = conn.channel()
q = unique("qos")
ch.queue_declare(queue=q)
for i in range(6):
    ch.basic_publish(exchange="", routing_key=q, body=b"%d" % i)

ch.basic_qos(prefetch_count=2)
got = []
ch.basic_consume(q, lambda c, m, p, b: got.append((m.delivery_tag, b)))
wait_until(conn, lambda: len(got) >= 2)
assert len(got) == 2, "prefetch 2 but %d unacked deliveries" % len(got)
ch.basic_ack(got[0][0])
wait_until(conn, lambda: len(got) >= 3)
assert len(got) == 3, "one ack should let exactly one more through, got %d" % len(got)
ch.basic_ack(got[2][0], multiple=True)
wait_until(conn, lambda: len(got) >= 5)
assert len(got) == 5, "multiple ack of 2 should let 2 more through, got %d" % len(got)
assert [b for _, b in got] == [b"0", b"1", b"2", b"3", b"4"], got
print("per-consumer prefetch holds")

# Per channel: 3 unacked in total across two consumers on two queues.
ch2 = conn.channel()
q1, q2 = unique("qos-a"), unique("qos-b")
for qq in (q1, q2):
    ch2.queue_declare(queue=qq)
    for i in range(5):
        ch2.basic_publish(exchange="", routing_key=qq, body=b"%d" % i)
ch2.basic_qos(prefetch_count=3, global_qos=True)
got2 = []
ch2.basic_consume(q1, lambda c, m, p, b: got2.append(m.delivery_tag))
ch2.basic_consume(q2, lambda c, m, p, b: got2.append(m.delivery_tag))
wait_until(conn, lambda: len(got2) >= 3)
assert len(got2) == 3, "channel prefetch 3 but %d unacked" % len(got2)
ch2.basic_ack(0, multiple=True)
wait_until(conn, lambda: len(got2) >= 6)
assert len(got2) == 6, "after acking all, 3 more: got %d" % len(got2)
assert got2 == list(range(1, 7)), "delivery tags are per channel and consecutive: %r" % got2
print("per-channel prefetch holds")
conn.close()
done()
