"""Vhosts as pika sees them: VHOST_A and VHOST_B exist and guest has all
permissions in both. A queue of the same name in each holds its own
messages; amq.direct and a declared exchange are per vhost; dead letters
stay in their vhost; a vhost that does not exist, and one the user has no
permissions in (VHOST_NONE), refuse connection.open with 530."""
import os

import pika
from pika.exceptions import ConnectionClosedByBroker

from util import connect, done

a, b, none = os.environ["VHOST_A"], os.environ["VHOST_B"], os.environ["VHOST_NONE"]
ca, cb = connect(virtual_host=a), connect(virtual_host=b)
cha, chb = ca.channel(), cb.channel()
for ch in (cha, chb):
    ch.confirm_delivery()
    ch.queue_declare("orders")
    ch.queue_declare("dead")
    ch.queue_declare("short", arguments={"x-message-ttl": 50, "x-dead-letter-exchange": "",
                                          "x-dead-letter-routing-key": "dead"})
cha.basic_publish("", "orders", b"in-a")
chb.basic_publish("", "orders", b"in-b-1")
chb.basic_publish("", "orders", b"in-b-2")
assert cha.queue_declare("orders", passive=True).method.message_count == 1
assert chb.queue_declare("orders", passive=True).method.message_count == 2
m, props, body = cha.basic_get("orders", auto_ack=True)
assert body == b"in-a", body
assert m.routing_key == "orders" and m.exchange == "", (m.routing_key, m.exchange)
print("same queue name, separate queues")

# amq.direct is each vhost's own: a binding in A does not route B's publishes.
cha.queue_bind("orders", "amq.direct", routing_key="k")
chb.basic_publish("amq.direct", "k", b"from-b")
assert cha.queue_declare("orders", passive=True).method.message_count == 0
cha.basic_publish("amq.direct", "k", b"from-a")
m, props, body = cha.basic_get("orders", auto_ack=True)
assert body == b"from-a" and m.exchange == "amq.direct", (body, m.exchange)
# A declared exchange exists only where it was declared.
cha.exchange_declare("logs", "fanout")
cha.queue_bind("orders", "logs")
cha.basic_publish("logs", "", b"log-a")
m, props, body = cha.basic_get("orders", auto_ack=True)
assert body == b"log-a" and m.exchange == "logs", (body, m.exchange)
try:
    chb.exchange_declare("logs", passive=True)
    raise AssertionError("vhost B sees vhost A's exchange")
except pika.exceptions.ChannelClosedByBroker as e:
    assert e.reply_code == 404, e
    assert "vhost '%s'" % b in e.reply_text, e.reply_text
    print("exchange not found in the other vhost: %s" % e.reply_text)
print("exchanges are per vhost")

# Dead letters through the default exchange land in the same vhost's queue.
cb.close()
cb = connect(virtual_host=b)
chb = cb.channel()
cha.basic_publish("", "short", b"expires-a")
import time

time.sleep(0.3)
cha.queue_declare("short", passive=True)
m, props, body = cha.basic_get("dead", auto_ack=True)
assert body == b"expires-a", body
death = props.headers["x-death"][0]
assert death["queue"] == "short" and death["reason"] == "expired", death
assert chb.queue_declare("dead", passive=True).method.message_count == 0
print("dead letters stay in their vhost: x-death names %s" % death["queue"])

for vhost, words in (("no-such-vhost", "not found"), (none, "refused")):
    try:
        connect(virtual_host=vhost)
        raise AssertionError("connection.open to %s was accepted" % vhost)
    except (ConnectionClosedByBroker, pika.exceptions.ProbableAccessDeniedError) as e:
        # pika reports a close during connection.open as "probably access denied".
        assert "530" in str(e) and words in str(e), str(e)
        print("530 as expected: %s" % e)
ca.close()
cb.close()
done()
