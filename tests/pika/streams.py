"""Streams (x-queue-type: stream) through pika, as RabbitMQ 3.10 has them.

MODE=basics: declare checks, offsets (first, last, next, numeric, timestamp,
interval), acks that only move credit, many consumers on one stream, and
RabbitMQ's refusals (no prefetch, auto-ack, basic.get, purge, bad offsets).
MODE=retention: segments dropped oldest first by x-max-length-bytes.
MODE=publish / MODE=check (QUEUE, COUNT): COUNT confirmed messages, then
(after a restart) all of them read back from `first` with their offsets.
"""
import datetime
import decimal
import os
import time

import pika

from util import connect, done, expect_channel_close, expect_connection_close, unique

STREAM = {"x-queue-type": "stream"}


def read(ch, q, offset, n, prefetch=10, timeout=10.0):
    """Consumes n messages of stream q from `offset`, acking each; returns
    [(x-stream-offset, body)]. The consumer is cancelled after."""
    ch.basic_qos(prefetch_count=prefetch)
    got = []
    args = {} if offset is None else {"x-stream-offset": offset}
    end = time.time() + timeout
    for m, p, b in ch.consume(q, arguments=args, inactivity_timeout=0.5):
        if m is None:
            if time.time() > end:
                break
            continue
        assert not m.redelivered, m
        got.append((p.headers["x-stream-offset"], b))
        ch.basic_ack(m.delivery_tag)
        if len(got) == n:
            break
    ch.cancel()
    return got


def publish(ch, q, bodies, **props):
    ch.confirm_delivery()
    for b in bodies:
        ch.basic_publish("", q, b, pika.BasicProperties(**props))


def basics():
    conn = connect()
    q = unique("stream")
    # RabbitMQ's refusals, in its words.
    for kw, prop in [
        ({"durable": False}, "non-durable"),
        ({"durable": True, "exclusive": True}, "exclusive-owner"),
        ({"durable": True, "auto_delete": True}, "auto-delete"),
    ]:
        text = expect_channel_close(conn, 406, lambda c: c.queue_declare(q, arguments=STREAM, **kw))
        assert "invalid property '%s'" % prop in text, text
    text = expect_channel_close(
        conn, 406, lambda c: c.queue_declare(q, durable=True, arguments={**STREAM, "x-message-ttl": 5})
    )
    assert "invalid arg 'x-message-ttl'" in text, text
    text = expect_channel_close(
        conn, 406, lambda c: c.queue_declare(q, durable=True, arguments={**STREAM, "x-max-age": "soon"})
    )
    assert "x-max-age" in text, text

    ch = conn.channel()
    ch.queue_declare(q, durable=True, arguments={**STREAM, "x-max-age": "7D"})
    # A redeclare must match; a classic declare of the name does not.
    ch.queue_declare(q, durable=True, arguments={**STREAM, "x-max-age": "7D"})
    text = expect_channel_close(conn, 406, lambda c: c.queue_declare(q, durable=True))
    assert "x-queue-type" in text, text

    # Transient messages are stored too: a stream keeps everything.
    publish(ch, q, [b"m%d" % i for i in range(60)], headers={"k": "v"})
    publish(ch, q, [b"m%d" % i for i in range(60, 100)], delivery_mode=2)

    got = read(ch, q, "first", 100)
    assert [o for o, _ in got] == list(range(100)), got[:5]
    assert [b for _, b in got] == [b"m%d" % i for i in range(100)]
    # Acks took nothing away: a second reader sees the same from an offset.
    got = read(conn.channel(), q, 50, 50)
    assert [o for o, _ in got] == list(range(50, 100)), got[:5]
    # Offsets past the end wait for the next message; below the start, the start.
    got = read(conn.channel(), q, 0, 1)
    assert got[0][0] == 0, got
    assert read(conn.channel(), q, "first", 100, prefetch=1)[99] == (99, b"m99")

    # `last`: the start of the last chunk, and nothing before it.
    got = read(conn.channel(), q, "last", 100, timeout=2)
    assert got and got[0][0] >= 60 and got[-1][0] == 99, got
    # A timestamp far back is the first, one in the future the end; an
    # interval of an hour back is the first too.
    got = read(conn.channel(), q, datetime.datetime(2000, 1, 1), 100)
    assert [o for o, _ in got] == list(range(100))
    assert read(conn.channel(), q, datetime.datetime(2100, 1, 1), 1, timeout=1) == []
    got = read(conn.channel(), q, "1h", 100)
    assert [o for o, _ in got] == list(range(100))

    # `next` (and no offset at all) sees only what comes after it attached.
    live = connect()
    lc = live.channel()
    lc.basic_qos(prefetch_count=3)
    seen = []
    lc.basic_consume(q, lambda c, m, p, b: (seen.append((p.headers["x-stream-offset"], b)), c.basic_ack(m.delivery_tag)))
    lc2 = live.channel()
    lc2.basic_qos(prefetch_count=3)
    seen_next = []
    lc2.basic_consume(
        q,
        lambda c, m, p, b: (seen_next.append(p.headers["x-stream-offset"]), c.basic_ack(m.delivery_tag)),
        arguments={"x-stream-offset": "next"},
    )
    beyond = []
    lc3 = live.channel()
    lc3.basic_qos(prefetch_count=3)
    lc3.basic_consume(
        q,
        lambda c, m, p, b: (beyond.append(p.headers["x-stream-offset"]), c.basic_ack(m.delivery_tag)),
        arguments={"x-stream-offset": 10**12},
    )
    live.process_data_events(time_limit=0.5)
    assert seen == [] and seen_next == [] and beyond == [], (seen, seen_next, beyond)
    publish(ch, q, [b"late%d" % i for i in range(10)])
    end = time.time() + 10
    while (len(seen) < 10 or len(seen_next) < 10 or len(beyond) < 10) and time.time() < end:
        live.process_data_events(time_limit=0.1)
    assert seen == [(100 + i, b"late%d" % i) for i in range(10)], seen
    assert seen_next == list(range(100, 110)) and beyond == list(range(100, 110)), (seen_next, beyond)
    live.close()

    # Unacked deliveries hold the credit: prefetch 4 gives 4 until acked;
    # a nack gives the credit back and nothing is redelivered.
    c4 = conn.channel()
    c4.basic_qos(prefetch_count=4)
    held = []
    c4.basic_consume(q, lambda c, m, p, b: held.append(m), arguments={"x-stream-offset": "first"})
    conn.process_data_events(time_limit=0.5)
    assert len(held) == 4, len(held)
    c4.basic_nack(held[-1].delivery_tag, multiple=True, requeue=True)
    conn.process_data_events(time_limit=0.5)
    assert len(held) == 8 and not any(m.redelivered for m in held), [m.redelivered for m in held]
    c4.close()

    # RabbitMQ's refusals for a stream consumer.
    text = expect_channel_close(conn, 406, lambda c: c.basic_consume(q, lambda *a: None))
    assert "consumer prefetch count is not set" in text, text
    for bad in ["middle", -1, True, decimal.Decimal("1.5"), ""]:
        def consume_bad(c, bad=bad):
            c.basic_qos(prefetch_count=1)
            c.basic_consume(q, lambda *a: None, arguments={"x-stream-offset": bad})

        text = expect_channel_close(conn, 406, consume_bad)
        assert "x-stream-offset" in text, text

    def auto_ack(c):
        c.basic_qos(prefetch_count=1)
        c.basic_consume(q, lambda *a: None, auto_ack=True)

    text = expect_connection_close(540, auto_ack)
    assert "automatic acknowledgement not supported by stream queues" in text, text
    text = expect_connection_close(540, lambda c: c.basic_get(q))
    assert "basic.get not supported" in text, text
    text = expect_connection_close(540, lambda c: c.queue_purge(q))
    assert "not supported by stream queues" in text, text
    # The messages are all there still.
    assert len(read(conn.channel(), q, "first", 110)) == 110

    # Through an exchange, the same.
    ch = conn.channel()
    ch.exchange_declare("sx-" + q, "fanout")
    ch.queue_bind(q, "sx-" + q)
    ch.confirm_delivery()
    ch.basic_publish("sx-" + q, "", b"routed")
    got = read(conn.channel(), q, 110, 1)
    assert got == [(110, b"routed")], got

    ch.queue_delete(q)
    conn.close()


def retention():
    conn = connect()
    ch = conn.channel()
    q = unique("stream-ret")
    args = {**STREAM, "x-max-length-bytes": 3000, "x-stream-max-segment-size-bytes": 1000}
    ch.queue_declare(q, durable=True, arguments=args)
    publish(ch, q, [b"%03d" % i + b"." * 97 for i in range(100)])
    got = read(ch, q, "first", 100, prefetch=50, timeout=2)
    offsets = [o for o, _ in got]
    # Whole segments went, oldest first; what is left is the newest, in order.
    assert offsets[-1] == 99 and offsets == list(range(offsets[0], 100)), offsets
    assert 20 <= len(offsets) <= 45, len(offsets)
    # An offset retention dropped reads from the first one kept.
    got = read(conn.channel(), q, 0, 1)
    assert got[0][0] == offsets[0], (got, offsets[0])
    conn.close()


def publish_mode():
    q, count = os.environ["QUEUE"], int(os.environ["COUNT"])
    conn = connect()
    ch = conn.channel()
    ch.queue_declare(q, durable=True, arguments=STREAM)
    publish(ch, q, [b"s%d" % i for i in range(count)])
    conn.close()


def check_mode():
    q, count = os.environ["QUEUE"], int(os.environ["COUNT"])
    conn = connect()
    ch = conn.channel()
    ch.queue_declare(q, durable=True, arguments=STREAM)
    got = read(ch, q, "first", count, prefetch=100)
    assert [o for o, _ in got] == list(range(count)), [o for o, _ in got][:10]
    assert [b for _, b in got] == [b"s%d" % i for i in range(count)]
    # Offsets go on from where they were.
    publish(ch, q, [b"after"])
    assert read(conn.channel(), q, count, 1) == [(count, b"after")]
    conn.close()


RETAIN = {**STREAM, "x-max-length-bytes": 3000, "x-stream-max-segment-size-bytes": 1000}


def publish_retained():
    q = os.environ["QUEUE"]
    conn = connect()
    ch = conn.channel()
    ch.queue_declare(q, durable=True, arguments=RETAIN)
    publish(ch, q, [b"%03d" % i + b"." * 97 for i in range(100)])
    offsets = [o for o, _ in read(ch, q, "first", 100, prefetch=100, timeout=2)]
    assert offsets[0] > 0 and offsets == list(range(offsets[0], 100)), offsets
    print("FIRST=%d" % offsets[0])
    conn.close()


def check_retained():
    q, first = os.environ["QUEUE"], int(os.environ["FIRST"])
    conn = connect()
    ch = conn.channel()
    ch.queue_declare(q, durable=True, arguments=RETAIN)
    got = read(ch, q, "first", 100, prefetch=100, timeout=2)
    # What retention dropped stayed dropped; what it kept is all there.
    assert [o for o, _ in got] == list(range(first, 100)), [o for o, _ in got]
    assert [b[:3] for _, b in got] == [b"%03d" % i for i in range(first, 100)]
    conn.close()


{"publish_retained": publish_retained, "check_retained": check_retained, "basics": basics, "retention": retention, "publish": publish_mode, "check": check_mode}[os.environ["MODE"]]()
done()
