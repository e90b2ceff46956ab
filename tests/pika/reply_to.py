"""Direct reply-to (amq.rabbitmq.reply-to) as RabbitMQ documents it: the
capability is advertised; a requester consumes from the pseudo-queue in
no-ack mode and publishes requests with reply_to = the pseudo-queue; the
server sees a generated name and publishes its reply to the default
exchange with that name as the key; the reply goes straight to the
requester's channel, with no queue. Replies cross shards (servers on the
requester's shard and on the other). Refusals: consume with acks (406),
publish with reply_to before consuming (406), a second reply consumer on
a channel (406). A forged or garbled name reaches nobody (dropped, or
returned when mandatory); a requester that is gone too; a passive declare
of the name answers while the requester is there, 404 after.

Written against RabbitMQ's documented behaviour (it should pass there too,
but for the shard bookkeeping, which reads ringmq's generated names)."""
import pika
from pika.exceptions import ChannelClosedByBroker, UnroutableError

from util import connect, done, expect_channel_close, unique, wait_until

PSEUDO = "amq.rabbitmq.reply-to"


def conn_shard(ch):
    """The shard a connection is on, from a server-named queue."""
    q = ch.queue_declare(queue="", exclusive=True).method.queue  # amq.gen-SHARD.CONN...
    return int(q.split("-")[1].split(".")[0])


def name_shard(name):
    """The requester's shard, from ringmq's generated name (hex of version,
    node u64, shard u16, ...)."""
    return int(name[len(PSEUDO) + 1 :][18:22], 16)


def server_on(shard, want_same):
    """A connection on (or not on) `shard`."""
    for _ in range(50):
        c = connect()
        if (conn_shard(c.channel()) == shard) == want_same:
            return c
        c.close()
    raise AssertionError("no connection landed where wanted")


client = connect()
caps = client._impl.server_capabilities
assert caps.get("direct_reply_to") is True, "direct_reply_to advertised: %r" % caps
rpc_q = unique("rpc")
cch = client.channel()
cch.queue_declare(queue=rpc_q)
replies = []
ctag = cch.basic_consume(PSEUDO, lambda ch, m, p, b: replies.append((m, p, b)), auto_ack=True)
print("reply consumer", ctag)


def rpc_round(server, body, corr):
    """One request from the client, answered by `server`; returns the
    reply_to name the server saw."""
    sch = server.channel()
    seen = []

    def on_request(ch, m, p, b):
        seen.append(p.reply_to)
        ch.basic_publish("", p.reply_to, b.upper(), pika.BasicProperties(correlation_id=p.correlation_id))
        ch.basic_ack(m.delivery_tag)

    tag = sch.basic_consume(rpc_q, on_request)
    before = len(replies)
    cch.basic_publish("", rpc_q, body, pika.BasicProperties(reply_to=PSEUDO, correlation_id=corr))
    for _ in range(200):
        server.process_data_events(time_limit=0.02)
        client.process_data_events(time_limit=0.02)
        if len(replies) > before:
            break
    assert len(replies) == before + 1, "one reply, got %d" % (len(replies) - before)
    m, p, b = replies[-1]
    assert b == body.upper() and p.correlation_id == corr, (b, p.correlation_id)
    assert m.exchange == "" and m.routing_key == seen[0], (m.exchange, m.routing_key, seen)
    sch.basic_cancel(tag)
    sch.close()
    return seen[0]


my_shard = conn_shard(client.channel())
for same in (True, False):
    server = server_on(my_shard, same)
    name = rpc_round(server, b"ping-%d" % same, "c-%d" % same)
    assert name.startswith(PSEUDO + ".") and len(name) == len(PSEUDO) + 1 + 62, name
    assert name_shard(name) == my_shard, (name, my_shard)
    print("round trip with the server on %s shard: %s" % ("the same" if same else "the other", name))
    if not same:
        other = server
    else:
        server.close()

# The generated name is stable for the channel, and a declare of it says
# it is there (0 messages, 1 consumer), as RabbitMQ answers.
probe = other.channel()
ok = probe.queue_declare(queue=name, passive=True).method
assert (ok.queue, ok.message_count, ok.consumer_count) == (name, 0, 1), ok
# The pseudo-queue itself may be declared: nothing is made.
assert probe.queue_declare(queue=PSEUDO).method.queue == PSEUDO
# A mandatory reply to a live name is delivered, not returned.
probe.confirm_delivery()
probe.basic_publish("", name, b"direct", mandatory=True)
wait_until(client, lambda: replies[-1][2] == b"direct")
assert replies[-1][2] == b"direct"

# Forged names reach nobody: garbled, or well formed with another token.
before = len(replies)
forged = name[:-1] + ("0" if name[-1] != "0" else "1")
for bad in (PSEUDO + ".garbage", PSEUDO + "." + "zz" * 31, forged):
    try:
        probe.basic_publish("", bad, b"forged", mandatory=True)
        raise AssertionError("a mandatory reply to %s was not returned" % bad)
    except UnroutableError:
        pass
    probe.basic_publish("", bad, b"forged")  # without mandatory: dropped, confirmed
wait_until(client, lambda: len(replies) > before, timeout=0.5)
assert len(replies) == before, "a forged name delivered something"
expect_channel_close(other, 404, lambda c: c.queue_declare(queue=forged, passive=True))
print("forged names dropped or returned, 404 on declare")

# Refusals, each closing its channel with 406 as RabbitMQ does.
text = expect_channel_close(client, 406, lambda c: c.basic_consume(PSEUDO, lambda *a: None, auto_ack=False))
assert "cannot acknowledge" in text, text


def publish_without_consumer(c):
    c.basic_publish("", rpc_q, b"x", pika.BasicProperties(reply_to=PSEUDO))
    c.queue_declare(queue=rpc_q, passive=True)  # a round trip: the close arrives first


text = expect_channel_close(client, 406, publish_without_consumer)
assert "fast reply consumer does not exist" in text, text


def second_consumer(c):
    c.basic_consume(PSEUDO, lambda *a: None, auto_ack=True)
    c.basic_consume(PSEUDO, lambda *a: None, auto_ack=True)


text = expect_channel_close(client, 406, second_consumer)
assert "already set" in text, text


def after_cancel(c):
    tag = c.basic_consume(PSEUDO, lambda *a: None, auto_ack=True)
    c.basic_cancel(tag)
    publish_without_consumer(c)


expect_channel_close(client, 406, after_cancel)
print("refusals: 406 as RabbitMQ")

# The requester goes: its name answers 404, mandatory replies come back,
# others are dropped.
client.close()
try:
    probe.basic_publish("", name, b"late", mandatory=True)
    raise AssertionError("a mandatory reply to a gone requester was not returned")
except UnroutableError:
    pass
probe.basic_publish("", name, b"late")
expect_channel_close(other, 404, lambda c: c.queue_declare(queue=name, passive=True))
print("requester gone: returned, dropped, 404")
ch = other.channel()
ch.queue_delete(rpc_q)
other.close()
done()
