"""A queue placed by x-queue-leader-locator and used from another node,
with pika (issue 17): STEP=balanced declares 'spread' balanced (the broker
puts it on a node with the fewest queues) and publishes to it with
confirms; STEP=use, on another node, binds it to a direct exchange,
publishes through the exchange with confirms (routed on that node,
forwarded to the queue's node), consumes both messages with acks, and
deletes the queue."""
import os

from util import connect, done

STEP = os.environ["STEP"]
conn = connect()
ch = conn.channel()
ch.confirm_delivery()

if STEP == "balanced":
    ch.queue_declare("spread", durable=True, arguments={"x-queue-leader-locator": "balanced"})
    ch.basic_publish("", "spread", b"first, by name")
elif STEP == "use":
    ok = ch.queue_declare("spread", passive=True)
    assert ok.method.message_count == 1, ok.method.message_count
    ch.exchange_declare("spread-x", exchange_type="direct")
    ch.queue_bind("spread", "spread-x", routing_key="k")
    ch.basic_publish("spread-x", "k", b"second, through the exchange")
    got = []
    for m, _, body in ch.consume("spread", inactivity_timeout=10):
        assert m is not None, "timed out waiting for a delivery"
        got.append(body)
        ch.basic_ack(m.delivery_tag)
        if len(got) == 2:
            break
    ch.cancel()
    assert got == [b"first, by name", b"second, through the exchange"], got
    ok = ch.queue_delete("spread")
    assert ok.method.message_count == 0, ok.method.message_count
else:
    raise SystemExit("STEP is balanced or use")
done()
