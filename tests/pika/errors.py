"""Each error code the broker sends, as pika sees it."""
import pika
from pika.exceptions import ProbableAccessDeniedError, ProbableAuthenticationError

from util import connect, done, expect_channel_close, expect_connection_close, params, unique

conn = connect()
q = unique("err")
conn.channel().queue_declare(queue=q, durable=False)

# 404 NOT_FOUND
expect_channel_close(conn, 404, lambda ch: ch.queue_declare(queue=unique("missing"), passive=True))
# A queue that is not there is deleted already: delete-ok with 0 messages,
# as RabbitMQ answers (cleanup code deletes before it declares).
ch = conn.channel()
assert ch.queue_delete(queue=unique("missing")).method.message_count == 0
assert ch.queue_delete(queue=unique("missing"), if_empty=True, if_unused=True).method.message_count == 0
ch.close()
expect_channel_close(conn, 404, lambda ch: ch.queue_purge(queue=unique("missing")))
expect_channel_close(conn, 404, lambda ch: ch.basic_consume(unique("missing"), lambda *x: None))
expect_channel_close(conn, 404, lambda ch: ch.exchange_declare("no-such-exchange", passive=True))
expect_channel_close(conn, 404, lambda ch: ch.queue_bind(q, "no-such-exchange", routing_key="k"))


def publish_to_missing_exchange(ch):
    ch.basic_publish(exchange="no-such-exchange", routing_key=q, body=b"x")
    ch.queue_declare(queue=q, passive=True)  # the close arrives before this reply


expect_channel_close(conn, 404, publish_to_missing_exchange)

# 406 PRECONDITION_FAILED
expect_channel_close(conn, 406, lambda ch: ch.queue_declare(queue=q, durable=True))
expect_channel_close(conn, 406, lambda ch: ch.queue_declare(queue=q, auto_delete=True))
xname = unique("typed")
conn.channel().exchange_declare(xname, exchange_type="fanout")
expect_channel_close(conn, 406, lambda ch: ch.exchange_declare(xname, exchange_type="topic"))
conn.channel().queue_bind(q, xname)
expect_channel_close(conn, 406, lambda ch: ch.exchange_delete(xname, if_unused=True))


def delete_used_queue(ch):
    ch.basic_consume(q, lambda *a: None)
    ch.queue_delete(queue=q, if_unused=True)


expect_channel_close(conn, 406, delete_used_queue)


def double_ack(ch):
    ch.basic_publish(exchange="", routing_key=q, body=b"x")
    m, p, b = ch.basic_get(q)
    ch.basic_ack(m.delivery_tag)
    ch.basic_ack(m.delivery_tag)
    ch.queue_declare(queue=q, passive=True)


expect_channel_close(conn, 406, double_ack)

# 403 ACCESS_REFUSED
expect_channel_close(conn, 403, lambda ch: ch.queue_declare(queue="amq.reserved"))
expect_channel_close(conn, 403, lambda ch: ch.queue_bind(q, "", routing_key=q))
expect_channel_close(conn, 403, lambda ch: ch.exchange_delete(""))
expect_channel_close(conn, 403, lambda ch: ch.exchange_delete("amq.topic"))
expect_channel_close(conn, 403, lambda ch: ch.exchange_declare("amq.mine", exchange_type="direct"))

# 405 RESOURCE_LOCKED
other = connect()
ex = unique("locked")
other.channel().queue_declare(queue=ex, exclusive=True)
expect_channel_close(conn, 405, lambda ch: ch.queue_declare(queue=ex))
expect_channel_close(conn, 405, lambda ch: ch.queue_purge(queue=ex))
other.close()

# 540 NOT_IMPLEMENTED (connection)
expect_connection_close(540, lambda ch: ch.basic_recover(requeue=False))
expect_connection_close(540, lambda ch: ch.queue_declare(queue=unique("qt"), arguments={"x-queue-type": "quorum"}))

# 530 NOT_ALLOWED: a vhost that does not exist
try:
    connect(virtual_host="nope")
    raise AssertionError("vhost 'nope' was accepted")
except (ProbableAccessDeniedError, pika.exceptions.ConnectionClosedByBroker) as e:
    # pika wraps a close during the handshake in ProbableAccessDeniedError.
    assert "(530)" in str(e) or getattr(e, "reply_code", None) == 530, e
    print("connection refused as expected:", e)

# 403 on login: bad password, unknown user
for creds in (pika.PlainCredentials("guest", "wrong"), pika.PlainCredentials("nobody", "guest")):
    try:
        pika.BlockingConnection(params(credentials=creds))
        raise AssertionError("bad login accepted")
    except (ProbableAuthenticationError, ProbableAccessDeniedError, pika.exceptions.ConnectionClosedByBroker) as e:
        print("login refused as expected:", type(e).__name__, e)
        if isinstance(e, pika.exceptions.ConnectionClosedByBroker):
            assert e.reply_code == 403, e

# The connection used above is still fine.
ch = conn.channel()
ch.queue_delete(q)
conn.close()
done()
