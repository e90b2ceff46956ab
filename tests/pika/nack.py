"""nack and reject, with and without requeue, single and multiple."""
from util import connect, done, unique, wait_until

conn = connect()
ch = conn.channel()
q = unique("nack")
ch.queue_declare(queue=q)
for i in range(3):
    ch.basic_publish(exchange="", routing_key=q, body=b"%d" % i)

got = []
ch.basic_consume(q, lambda c, m, p, b: got.append((m.delivery_tag, m.redelivered, b)))
wait_until(conn, lambda: len(got) >= 3)
assert [(r, b) for _, r, b in got] == [(False, b"0"), (False, b"1"), (False, b"2")], got
# nack multiple with requeue: all three come back, in order, redelivered.
ch.basic_nack(got[-1][0], multiple=True, requeue=True)
wait_until(conn, lambda: len(got) >= 6)
again = got[3:]
assert [(r, b) for _, r, b in again] == [(True, b"0"), (True, b"1"), (True, b"2")], again
assert [t for t, _, _ in again] == [4, 5, 6], again
# reject one without requeue (dropped), nack one with requeue, ack the last.
ch.basic_reject(again[0][0], requeue=False)
ch.basic_nack(again[1][0], requeue=True)
ch.basic_ack(again[2][0])
wait_until(conn, lambda: len(got) >= 7)
last = got[6:]
assert [(r, b) for _, r, b in last] == [(True, b"1")], last
ch.basic_ack(last[0][0])
conn.process_data_events(time_limit=0.3)
assert ch.queue_declare(queue=q, passive=True).method.message_count == 0
print("nack/reject behave")

# basic.recover(requeue=True) redelivers everything unacked.
ch.basic_publish(exchange="", routing_key=q, body=b"r")
wait_until(conn, lambda: len(got) >= 8)
n = len(got)
assert got[-1][2] == b"r" and not got[-1][1]
ch.basic_recover(requeue=True)
wait_until(conn, lambda: len(got) >= n + 1)
assert len(got) == n + 1 and got[-1][1] and got[-1][2] == b"r", got[n - 1:]
ch.basic_ack(got[-1][0])
print("recover redelivers")
conn.close()
done()
