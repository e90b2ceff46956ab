"""AMQPS as pika sees it (util.py takes the CA, the client certificate
and EXTERNAL from the environment). EXPECT says what must happen:

- `ok`: the connection opens; a message goes round (publish with a
  confirm, get, ack) and the login is the user in USER_NAME;
- `tls_refused`: the TLS handshake fails (a wrong CA, or a client
  certificate the broker refuses) and no AMQP connection opens;
- `login_refused`: TLS works and the broker refuses the login (403);
- `external_not_offered`: the broker's connection.start does not offer
  EXTERNAL (no client certificate), so pika cannot ask for it."""
import os
import ssl

import pika
from pika.exceptions import AMQPConnectionError, AuthenticationError, ProbableAuthenticationError

from util import connect, done, unique

expect = os.environ["EXPECT"]
try:
    conn = connect()
except AuthenticationError as e:
    # pika's own refusal: the server did not offer the mechanism.
    assert expect == "external_not_offered", "mechanism not offered unexpectedly: %r" % (e,)
    print("EXTERNAL not offered, as expected: %s" % (e,))
    done()
except ProbableAuthenticationError as e:
    assert expect == "login_refused", "login refused unexpectedly: %r" % (e,)
    print("login refused as expected: %s" % (e,))
    done()
except (AMQPConnectionError, ssl.SSLError, ConnectionError) as e:
    # pika wraps the ssl error; its text names the TLS failure.
    text = repr(e)
    assert expect == "tls_refused", "connection failed unexpectedly: %s" % text
    assert "SSL" in text or "ssl" in text or "EOF" in text or "reset" in text.lower() or "StreamLostError" in text, text
    print("TLS refused as expected: %s" % text)
    done()
assert expect == "ok", "the connection opened, but %s was expected" % expect
ch = conn.channel()
ch.confirm_delivery()
q = unique("tls")
ch.queue_declare(queue=q)
body = os.urandom(3000)
ch.basic_publish(exchange="", routing_key=q, body=body)
method, _props, got = ch.basic_get(q)
assert got == body, "the message came back changed"
ch.basic_ack(method.delivery_tag)
print("round trip over TLS: %d bytes" % len(got))
conn.close()
done()
