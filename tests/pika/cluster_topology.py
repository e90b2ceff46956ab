"""Topology declared on one node of a cluster and used from another, with
pika (issue 17): STEP=declare on the first node declares a topic exchange
and a fanout bound to it; STEP=use on another node finds both (passive
declares), binds a queue of its own to the fanout, publishes through the
topic exchange with confirms and gets the message back. A redeclare with
another type is refused there too (406): the cluster decides, not the
node asked."""
import os

from util import connect, done, expect_channel_close

STEP = os.environ["STEP"]
conn = connect()
ch = conn.channel()

if STEP == "declare":
    ch.exchange_declare("cluster-logs", exchange_type="topic", durable=True)
    ch.exchange_declare("cluster-fan", exchange_type="fanout", durable=True)
    ch.exchange_bind(destination="cluster-fan", source="cluster-logs", routing_key="app.#")
elif STEP == "use":
    ch.exchange_declare("cluster-logs", passive=True)
    ch.exchange_declare("cluster-fan", passive=True)
    q = ch.queue_declare(queue="", exclusive=True).method.queue
    ch.queue_bind(q, "cluster-fan")
    ch.confirm_delivery()
    ch.basic_publish("cluster-logs", "app.start", b"from the other node")
    ch.basic_publish("cluster-logs", "other.start", b"not for the fanout")
    m, _, body = ch.basic_get(q, auto_ack=True)
    assert body == b"from the other node", body
    m, _, body = ch.basic_get(q, auto_ack=True)
    assert m is None, body
    expect_channel_close(conn, 406, lambda c: c.exchange_declare("cluster-logs", exchange_type="direct"))
else:
    raise SystemExit("STEP is declare or use")
done()
