"""Helpers shared by the pika test scripts: connect to the broker under
test (port from AMQP_PORT) and check the error a broker sends."""
import os
import sys

import pika
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker

PORT = int(os.environ["AMQP_PORT"])


def tls_options():
    """TLS when AMQP_TLS_CA names the CA to trust (AMQPS); a client
    certificate too when AMQP_TLS_CERT and AMQP_TLS_KEY name one."""
    ca = os.environ.get("AMQP_TLS_CA")
    if not ca:
        return None
    import ssl

    ctx = ssl.create_default_context(cafile=ca)
    if os.environ.get("AMQP_TLS_CERT"):
        ctx.load_cert_chain(os.environ["AMQP_TLS_CERT"], os.environ["AMQP_TLS_KEY"])
    return pika.SSLOptions(ctx, "localhost")


def params(**kw):
    kw.setdefault("blocked_connection_timeout", 30)
    kw.setdefault("socket_timeout", 5)
    tls = tls_options()
    if tls is not None:
        kw.setdefault("ssl_options", tls)
    if os.environ.get("AMQP_EXTERNAL"):
        kw.setdefault("credentials", pika.credentials.ExternalCredentials())
    return pika.ConnectionParameters("localhost", PORT, **kw)


def connect(**kw):
    return pika.BlockingConnection(params(**kw))


def unique(prefix):
    return "%s-%d-%s" % (prefix, os.getpid(), os.urandom(4).hex())


def expect_channel_close(conn, code, fn):
    """Runs fn(channel) on a new channel and checks the broker closes the
    channel with `code`; returns the reply text."""
    ch = conn.channel()
    try:
        fn(ch)
    except ChannelClosedByBroker as e:
        assert e.reply_code == code, "expected channel close %d, got %d %s" % (code, e.reply_code, e.reply_text)
        print("channel closed as expected: %d %s" % (e.reply_code, e.reply_text))
        return e.reply_text
    raise AssertionError("expected channel close %d, nothing happened" % code)


def expect_connection_close(code, fn, **kw):
    conn = connect(**kw)
    try:
        fn(conn.channel())
        conn.process_data_events(time_limit=1)
    except ConnectionClosedByBroker as e:
        assert e.reply_code == code, "expected connection close %d, got %d %s" % (code, e.reply_code, e.reply_text)
        print("connection closed as expected: %d %s" % (e.reply_code, e.reply_text))
        return e.reply_text
    raise AssertionError("expected connection close %d, nothing happened" % code)


def done():
    print("OK")
    sys.exit(0)


def wait_until(conn, pred, timeout=10.0, settle=0.3):
    """Processes events until pred() holds (or timeout), then a little
    longer so that anything extra that would arrive does."""
    import time

    end = time.time() + timeout
    while not pred() and time.time() < end:
        conn.process_data_events(time_limit=0.05)
    conn.process_data_events(time_limit=settle)


def connect_on(shard):
    """A connection on shard `shard` (None: wherever it lands): AMQP
    connections land on any shard, told by a server-named queue's name
    (amq.gen-SHARD.CONN...)."""
    for _ in range(100):
        conn = connect()
        if shard is None:
            return conn
        ch = conn.channel()
        q = ch.queue_declare(queue="", exclusive=True).method.queue
        ch.close()
        if int(q.split("-")[1].split(".")[0]) == shard:
            return conn
        conn.close()
    raise AssertionError("no connection landed on shard %s" % shard)
