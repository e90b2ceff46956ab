"""Dead-lettering through pika: nack / reject without requeue (reason
rejected), a cycle of two TTL queues (dropped, not spinning), and the
declare checks (bad argument 406, inequivalent redeclare 406, another
queue type 540)."""
import time

from util import connect, done, expect_channel_close, expect_connection_close, unique, wait_until

conn = connect()
ch = conn.channel()
dl = unique("rej-dl")
q = unique("rej")
ch.queue_declare(queue=dl)
ch.queue_declare(queue=q, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dl})
ch.basic_publish(exchange="", routing_key=q, body=b"nacked")
ch.basic_publish(exchange="", routing_key=q, body=b"rejected")
got = []
ch.basic_consume(q, lambda c, m, p, b: got.append(m.delivery_tag))
wait_until(conn, lambda: len(got) >= 2)
ch.basic_nack(got[0], requeue=False)
ch.basic_reject(got[1], requeue=False)
deadline = time.time() + 5
while ch.queue_declare(queue=dl, passive=True).method.message_count < 2 and time.time() < deadline:
    conn.process_data_events(time_limit=0.05)
for want in [b"nacked", b"rejected"]:
    m, p, b = ch.basic_get(dl, auto_ack=True)
    assert b == want, (b, want)
    d = p.headers["x-death"][0]
    assert d["reason"] == "rejected" and d["queue"] == q and d["count"] == 1, d
print("nack and reject dead-letter with reason rejected")

a, b_ = unique("cyc-a"), unique("cyc-b")
ch.queue_declare(queue=a, arguments={
    "x-message-ttl": 30, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": b_})
ch.queue_declare(queue=b_, arguments={
    "x-message-ttl": 30, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": a})
ch.basic_publish(exchange="", routing_key=a, body=b"loop")
time.sleep(0.5)
counts = [ch.queue_declare(queue=x, passive=True).method.message_count for x in (a, b_)]
assert counts == [0, 0], counts
print("an automatic dead-letter cycle is dropped")

bad = unique("bad")
text = expect_channel_close(conn, 406, lambda c: c.queue_declare(queue=bad, arguments={"x-max-priority": 256}))
assert "x-max-priority" in text, text
ch = conn.channel()
ok = unique("args")
ch.queue_declare(queue=ok, arguments={"x-max-length": 5})
ch.queue_declare(queue=ok, arguments={"x-max-length": 5})
text = expect_channel_close(conn, 406, lambda c: c.queue_declare(queue=ok, arguments={"x-max-length": 6}))
assert "inequivalent arg 'x-max-length'" in text, text
expect_connection_close(540, lambda c: c.queue_declare(queue=unique("qq"), arguments={"x-queue-type": "quorum"}))
print("argument checks")
conn.close()
done()
