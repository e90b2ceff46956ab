"""x-max-length with each overflow mode through pika: drop-head
dead-letters the head (reason maxlen), reject-publish nacks a confirming
publisher, reject-publish-dlx nacks and dead-letters."""
import time

from pika.exceptions import NackError
from util import connect, done, unique

conn = connect()
ch = conn.channel()
ch.confirm_delivery()


def wait_count(queue, n):
    deadline = time.time() + 5
    while ch.queue_declare(queue=queue, passive=True).method.message_count < n and time.time() < deadline:
        conn.process_data_events(time_limit=0.05)
    return ch.queue_declare(queue=queue, passive=True).method.message_count


def bodies(queue):
    out = []
    while True:
        m, p, b = ch.basic_get(queue, auto_ack=True)
        if m is None:
            return out
        out.append((b, p))


dl = unique("ml-dl")
ch.queue_declare(queue=dl)
dlx = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dl}

q = unique("drop-head")
ch.queue_declare(queue=q, arguments=dict(dlx, **{"x-max-length": 2}))
for i in range(3):
    ch.basic_publish(exchange="", routing_key=q, body=b"%d" % i)
assert wait_count(dl, 1) == 1
got = bodies(dl)
assert [b for b, _ in got] == [b"0"], got
assert got[0][1].headers["x-death"][0]["reason"] == "maxlen", got[0][1].headers
assert [b for b, _ in bodies(q)] == [b"1", b"2"]
print("drop-head dead-letters the head")

q = unique("reject")
ch.queue_declare(queue=q, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
ch.basic_publish(exchange="", routing_key=q, body=b"in")
try:
    ch.basic_publish(exchange="", routing_key=q, body=b"out")
    raise AssertionError("reject-publish: the publish was acked")
except NackError:
    pass
assert [b for b, _ in bodies(q)] == [b"in"]
ch.basic_publish(exchange="", routing_key=q, body=b"room again")
print("reject-publish nacks")

q = unique("reject-dlx")
ch.queue_declare(queue=q, arguments=dict(dlx, **{"x-max-length": 1, "x-overflow": "reject-publish-dlx"}))
ch.basic_publish(exchange="", routing_key=q, body=b"kept")
try:
    ch.basic_publish(exchange="", routing_key=q, body=b"refused")
    raise AssertionError("reject-publish-dlx: the publish was acked")
except NackError:
    pass
assert wait_count(dl, 1) == 1
got = bodies(dl)
assert [b for b, _ in got] == [b"refused"], got
assert got[0][1].headers["x-death"][0]["reason"] == "maxlen"
assert [b for b, _ in bodies(q)] == [b"kept"]
print("reject-publish-dlx nacks and dead-letters")
conn.close()
done()
