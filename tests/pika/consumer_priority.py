"""Consumer priorities, as RabbitMQ has them: basic.consume with
x-priority. The highest-priority consumer gets every message while it has
prefetch credit; a lower one gets messages only while it is blocked
(prefetch full, not acking), and the high one gets them again once it
acks. Equal priorities share round-robin. A non-integer x-priority is
406; consumer arguments ringmq does not know are ignored, as RabbitMQ
ignores them."""
from util import connect, done, expect_channel_close, unique, wait_until

conn = connect()
pub = conn.channel()
q = unique("consumer-prio")
pub.queue_declare(q)

high_ch, low_ch = conn.channel(), conn.channel()
high_ch.basic_qos(prefetch_count=2)
low_ch.basic_qos(prefetch_count=100)
high, low = [], []
# The low one registers first: order must not matter, priority does.
low_ch.basic_consume(q, lambda c, m, p, b: low.append((m.delivery_tag, b)), arguments={"x-priority": 1})
high_ch.basic_consume(q, lambda c, m, p, b: high.append((m.delivery_tag, b)), arguments={"x-priority": 10})


def publish(*bodies):
    for b in bodies:
        pub.basic_publish("", q, b)


publish(b"a", b"b")
wait_until(conn, lambda: len(high) == 2)
assert [b for _, b in high] == [b"a", b"b"] and low == [], (high, low)
print("the high-priority consumer takes everything while it has credit")

# High is blocked (2 unacked, prefetch 2): the low one gets the rest.
publish(b"c", b"d", b"e")
wait_until(conn, lambda: len(low) == 3)
assert [b for _, b in low] == [b"c", b"d", b"e"] and len(high) == 2, (high, low)
print("the low-priority consumer gets messages while the high one is blocked")

# High acks: it is active again and gets the next ones.
high_ch.basic_ack(high[-1][0], multiple=True)
# A round trip after the ack: acks and publishes take different paths to
# the queue, so the publishes must not leave before the ack is through.
high_ch.queue_declare(q, passive=True)
publish(b"f", b"g")
wait_until(conn, lambda: len(high) == 4)
assert [b for _, b in high[2:]] == [b"f", b"g"] and len(low) == 3, (high, low)
print("the high-priority consumer resumes after it acks")
high_ch.close()
low_ch.close()

# Equal priorities round-robin; the lower one (default 0) gets nothing.
# pika sends 5 as a 32-bit int and 2**40 as a 64-bit one: both accepted.
q2 = unique("consumer-prio-rr")
pub.queue_declare(q2)
got = {"x": [], "y": [], "low": []}
ch = conn.channel()
ch.basic_consume(q2, lambda c, m, p, b: got["low"].append(b), auto_ack=True)
for name in ("x", "y"):
    ch.basic_consume(q2, lambda c, m, p, b, n=name: got[n].append(b), auto_ack=True, arguments={"x-priority": 2**40})
for i in range(6):
    pub.basic_publish("", q2, b"%d" % i)
wait_until(conn, lambda: len(got["x"]) + len(got["y"]) == 6)
assert len(got["x"]) == 3 and len(got["y"]) == 3 and got["low"] == [], got
print("equal priorities share round-robin:", got)

# A negative priority is a priority too: below the default.
q3 = unique("consumer-prio-neg")
pub.queue_declare(q3)
neg, zero = [], []
ch.basic_consume(q3, lambda c, m, p, b: neg.append(b), auto_ack=True, arguments={"x-priority": -5})
ch.basic_consume(q3, lambda c, m, p, b: zero.append(b), auto_ack=True)
pub.basic_publish("", q3, b"n")
wait_until(conn, lambda: zero)
assert zero == [b"n"] and neg == [], (zero, neg)

# Not an integer: 406, RabbitMQ's wording; unknown arguments are ignored.
text = expect_channel_close(conn, 406, lambda c: c.basic_consume(q, lambda *a: None, arguments={"x-priority": "high"}))
assert "invalid arg 'x-priority'" in text, text
expect_channel_close(conn, 406, lambda c: c.basic_consume(q, lambda *a: None, arguments={"x-priority": True}))
ok = conn.channel()
ok.basic_consume(q, lambda *a: None, arguments={"x-made-up": "whatever", "x-stream-offset": "first"})
print("bad x-priority refused 406, unknown arguments ignored")
conn.close()
done()
