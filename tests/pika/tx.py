"""AMQP transactions (tx.select, tx.commit, tx.rollback) as RabbitMQ has
them: publishes and acks take effect at commit, a rollback drops the
publishes and forgets the acks, confirms and tx exclude each other (406),
commit and rollback need tx.select (406). The same program runs against
RabbitMQ 3.10 with the same results (docs/amqp.md, "Transactions").

QUEUE_ON_0 and QUEUE_ON_1 name queues owned by different shards (the
transaction spans both); without them, fresh names are used. With
TX_MESSAGES_MAX set (the broker's tx_messages_max), a transaction one
past it closes the channel with 406."""
import os

import pika
from pika.exceptions import ChannelClosedByBroker

from util import connect, done, expect_channel_close, unique

conn = connect()
probe = conn.channel()


def depth(q):
    return probe.queue_declare(queue=q, passive=True).method.message_count


# --- publishes take effect at commit; a rollback drops them
q = unique("tx")
probe.queue_declare(queue=q)
ch = conn.channel()
ch.tx_select()
for i in range(3):
    ch.basic_publish(exchange="", routing_key=q, body=b"m%d" % i)
assert depth(q) == 0, "a publish before commit is not in the queue"
ch.tx_commit()
assert depth(q) == 3, "commit delivered %d of 3" % depth(q)
print("3 publishes in the queue after commit, none before")
ch.basic_publish(exchange="", routing_key=q, body=b"dropped-1")
ch.basic_publish(exchange="", routing_key=q, body=b"dropped-2")
ch.tx_rollback()
ch.tx_commit()  # an empty transaction commits too
assert depth(q) == 3, "rolled back publishes reached the queue (%d)" % depth(q)
print("rolled back publishes dropped")

# --- acks in a transaction: at commit; a rollback forgets them
m0, _, b0 = ch.basic_get(queue=q)
m1, _, b1 = ch.basic_get(queue=q)
assert (b0, b1) == (b"m0", b"m1"), (b0, b1)
ch.basic_ack(m0.delivery_tag)
ch.tx_rollback()
# Forgotten, not applied: the same tag may be acked again.
ch.basic_ack(m0.delivery_tag)
ch.basic_ack(m1.delivery_tag)
ch.tx_commit()
ch.close()  # nothing unacked is left to requeue
assert depth(q) == 1, "two acked at commit, one left (%d)" % depth(q)
print("acks applied at commit, forgotten by rollback")

# An ack never committed: the message comes back when the channel closes.
ch = conn.channel()
ch.tx_select()
m2, _, b2 = ch.basic_get(queue=q)
assert b2 == b"m2" and depth(q) == 0
ch.basic_ack(m2.delivery_tag)
ch.close()
assert depth(q) == 1, "an uncommitted ack was applied"
print("uncommitted ack not applied")

# reject and nack take effect at commit too.
ch = conn.channel()
ch.tx_select()
m2, _, _ = ch.basic_get(queue=q)
ch.basic_reject(m2.delivery_tag, requeue=True)
assert depth(q) == 0, "a reject before commit requeued"
ch.tx_commit()
assert depth(q) == 1, "reject with requeue at commit"
m2, _, _ = ch.basic_get(queue=q)
assert m2.redelivered
ch.basic_nack(m2.delivery_tag, requeue=False)
ch.tx_commit()
assert depth(q) == 0, "nack without requeue at commit"
print("reject and nack applied at commit")

# --- a transaction across queues on different shards, and an exchange
qa = os.environ.get("QUEUE_ON_0") or unique("tx-a")
qb = os.environ.get("QUEUE_ON_1") or unique("tx-b")
x = unique("tx-fanout")
probe.exchange_declare(exchange=x, exchange_type="fanout")
for name in (qa, qb):
    probe.queue_declare(queue=name, durable=True)
    probe.queue_purge(queue=name)
    probe.queue_bind(queue=name, exchange=x)
persistent = pika.BasicProperties(delivery_mode=2)
ch.basic_publish(exchange="", routing_key=qa, body=b"to-a", properties=persistent)
ch.basic_publish(exchange="", routing_key=qb, body=b"to-b", properties=persistent)
ch.basic_publish(exchange=x, routing_key="", body=b"to-both", properties=persistent)
assert (depth(qa), depth(qb)) == (0, 0)
ch.tx_commit()
assert (depth(qa), depth(qb)) == (2, 2), (depth(qa), depth(qb))
got_a = [ch.basic_get(queue=qa, auto_ack=True)[2] for _ in range(2)]
got_b = [ch.basic_get(queue=qb, auto_ack=True)[2] for _ in range(2)]
assert got_a == [b"to-a", b"to-both"] and got_b == [b"to-b", b"to-both"], (got_a, got_b)
print("one commit across two queues (persistent, durable) and a fanout exchange")

# --- mandatory and unroutable: basic.return, then commit-ok
returned = []
ch.add_on_return_callback(lambda _ch, method, _props, body: returned.append((method.reply_code, body)))
ch.basic_publish(exchange="", routing_key=unique("nowhere"), body=b"lost", mandatory=True)
ch.basic_publish(exchange="", routing_key=q, body=b"kept", mandatory=True)
assert returned == [], "returned before the commit"
ch.tx_commit()
conn.process_data_events(time_limit=0.5)
assert returned == [(312, b"lost")], returned
assert depth(q) == 1
print("mandatory unroutable publish returned with 312 at commit")

# --- 406: commit / rollback without select, tx after confirm, confirm after tx
expect_channel_close(conn, 406, lambda c: c.tx_commit())
expect_channel_close(conn, 406, lambda c: c.tx_rollback())


def confirm_then_tx(c):
    c.confirm_delivery()
    c.tx_select()


def tx_then_confirm(c):
    c.tx_select()
    c.confirm_delivery()


expect_channel_close(conn, 406, confirm_then_tx)
expect_channel_close(conn, 406, tx_then_confirm)


def double_ack(c):
    c.tx_select()
    c.basic_publish(exchange="", routing_key=q, body=b"x")
    c.tx_commit()
    m, _, _ = c.basic_get(queue=q)
    c.basic_ack(m.delivery_tag)
    c.basic_ack(m.delivery_tag)
    c.tx_commit()


# An ack of a tag the transaction already acked: unknown tag, 406.
expect_channel_close(conn, 406, double_ack)

# --- the broker's limit on a transaction's size
limit = os.environ.get("TX_MESSAGES_MAX")
if limit:

    def over_limit(c):
        c.tx_select()
        for i in range(int(limit) + 1):
            c.basic_publish(exchange="", routing_key=q, body=b"big")
        c.tx_commit()

    text = expect_channel_close(conn, 406, over_limit)
    assert "tx_messages_max" in text, text

for name in (q, qa, qb):
    probe.queue_delete(queue=name)
probe.exchange_delete(exchange=x)
conn.close()
done()
