// The RabbitMQ Java client (com.rabbitmq:amqp-client), unmodified, against
// ringmq's AMQP 0-9-1 front end (default exchange only). Compiled and run by
// tests/amqp_clients.rs with AMQP_PORT set; exits 0 when every step held,
// 1 with the failing step otherwise.
//
// TLS: with AMQP_TLS_CA (a CA's PEM file) it connects over TLS to
// localhost:AMQP_PORT and verifies the broker's certificate against that CA
// alone, host name included (`localhost`); with AMQP_TLS_CERT and
// AMQP_TLS_KEY too (a PEM certificate and its PKCS#8 PEM key, read here
// without openssl) it presents that client certificate and logs in with
// EXTERNAL (as the certificate's CN), else with PLAIN as guest.

import com.rabbitmq.client.AMQP;
import com.rabbitmq.client.Channel;
import com.rabbitmq.client.Connection;
import com.rabbitmq.client.ConnectionFactory;
import com.rabbitmq.client.DefaultConsumer;
import com.rabbitmq.client.DefaultSaslConfig;
import com.rabbitmq.client.Envelope;
import com.rabbitmq.client.GetResponse;
import com.rabbitmq.client.ShutdownSignalException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyFactory;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.spec.InvalidKeySpecException;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import javax.net.ssl.KeyManager;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSession;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

public class Scenario {
    static void step(String s) {
        System.out.println("step: " + s);
    }

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    static byte[] utf8(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static String text(byte[] b) {
        return new String(b, StandardCharsets.UTF_8);
    }

    /** A delivery as a consumer saw it. */
    record Got(long tag, boolean redelivered, String body, AMQP.BasicProperties props) {}

    /** Collects deliveries into a queue; counts the unacked high-water mark. */
    static class Collector extends DefaultConsumer {
        final BlockingQueue<Got> got = new LinkedBlockingQueue<>();
        final AtomicInteger unacked = new AtomicInteger();
        final AtomicInteger maxUnacked = new AtomicInteger();

        Collector(Channel ch) {
            super(ch);
        }

        @Override
        public void handleDelivery(String tag, Envelope e, AMQP.BasicProperties p, byte[] body) {
            int n = unacked.incrementAndGet();
            maxUnacked.accumulateAndGet(n, Math::max);
            got.add(new Got(e.getDeliveryTag(), e.isRedeliver(), text(body), p));
        }

        Got next() throws InterruptedException {
            Got g = got.poll(5, TimeUnit.SECONDS);
            check(g != null, "no delivery within 5 s");
            return g;
        }
    }

    public static void main(String[] args) {
        try {
            run();
        } catch (Throwable e) {
            System.err.print("FAILED: ");
            e.printStackTrace();
            System.exit(1);
        }
        System.out.println("java amqp-client scenario: ok");
        // The client's threads must not keep the JVM alive.
        System.exit(0);
    }

    static Certificate readCertificate(String path) throws Exception {
        try (InputStream in = Files.newInputStream(Path.of(path))) {
            return CertificateFactory.getInstance("X.509").generateCertificate(in);
        }
    }

    /** A PKCS#8 PEM private key (`BEGIN PRIVATE KEY`), EC or RSA. */
    static PrivateKey readKey(String path) throws Exception {
        String pem = Files.readString(Path.of(path));
        check(pem.contains("-----BEGIN PRIVATE KEY-----"), path + " is not a PKCS#8 PEM key");
        String b64 = pem.replaceAll("-----[A-Z ]+-----", "").replaceAll("\\s", "");
        PKCS8EncodedKeySpec spec = new PKCS8EncodedKeySpec(Base64.getDecoder().decode(b64));
        try {
            return KeyFactory.getInstance("EC").generatePrivate(spec);
        } catch (InvalidKeySpecException notEc) {
            return KeyFactory.getInstance("RSA").generatePrivate(spec);
        }
    }

    /** The socket of the connection, to read its TLS session after the login. */
    static final AtomicReference<SSLSocket> TLS_SOCKET = new AtomicReference<>();

    /**
     * TLS on `f` (see the top of this file): trusts only the CA of
     * AMQP_TLS_CA, checks the host name, and with a client certificate logs
     * in with EXTERNAL. Returns how it logs in.
     */
    static String useTls(ConnectionFactory f, String caFile) throws Exception {
        KeyStore trust = KeyStore.getInstance("PKCS12");
        trust.load(null, null);
        trust.setCertificateEntry("ca", readCertificate(caFile));
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);
        String cert = System.getenv("AMQP_TLS_CERT");
        String key = System.getenv("AMQP_TLS_KEY");
        KeyManager[] keys = null;
        String login = "PLAIN";
        if (cert != null && key != null) {
            char[] pass = "unused".toCharArray();
            KeyStore identity = KeyStore.getInstance("PKCS12");
            identity.load(null, null);
            identity.setKeyEntry("client", readKey(key), pass, new Certificate[] {readCertificate(cert)});
            KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(identity, pass);
            keys = kmf.getKeyManagers();
            f.setSaslConfig(DefaultSaslConfig.EXTERNAL);
            login = "EXTERNAL";
        }
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(keys, tmf.getTrustManagers(), null);
        f.useSslProtocol(ctx);
        // amqp-client 5.0 has no enableHostnameVerification(): the socket is
        // configured before it connects, so its endpoint identification
        // checks the broker's certificate against the host name.
        f.setSocketConfigurator(socket -> {
            socket.setTcpNoDelay(true);
            if (socket instanceof SSLSocket tls) {
                SSLParameters p = tls.getSSLParameters();
                p.setEndpointIdentificationAlgorithm("HTTPS");
                tls.setSSLParameters(p);
                TLS_SOCKET.set(tls);
            }
        });
        return login;
    }

    static void run() throws Exception {
        ConnectionFactory f = new ConnectionFactory();
        f.setHost("127.0.0.1");
        f.setPort(Integer.parseInt(System.getenv("AMQP_PORT")));
        f.setUsername("guest");
        f.setPassword("guest");
        String caFile = System.getenv("AMQP_TLS_CA");
        String login = "PLAIN";
        if (caFile != null) {
            f.setHost("localhost");
            login = useTls(f, caFile);
        }
        f.setAutomaticRecoveryEnabled(false);
        // Heartbeats every second, so the idle step below sees several each way.
        f.setRequestedHeartbeat(1);
        String suffix = ProcessHandle.current().pid() + "-" + System.currentTimeMillis();
        String q = "java-work-" + suffix;
        String q2 = "java-nack-" + suffix;
        try (Connection conn = f.newConnection("ringmq-java-test")) {
            if (caFile != null) {
                SSLSocket tls = TLS_SOCKET.get();
                check(tls != null, "no TLS socket");
                SSLSession session = tls.getSession();
                check(session.isValid(), "TLS session not established");
                System.out.println("transport: tls " + session.getProtocol() + ", broker verified, login " + login);
            } else {
                System.out.println("transport: tcp, login " + login);
            }
            Channel ch = conn.createChannel();

            step("queue declare (fresh, then again with the same flags)");
            AMQP.Queue.DeclareOk ok = ch.queueDeclare(q, false, false, false, null);
            check(ok.getQueue().equals(q) && ok.getMessageCount() == 0, "declare-ok " + ok);
            ok = ch.queueDeclare(q, false, false, false, null);
            check(ok.getConsumerCount() == 0, "redeclare");

            step("publish 20 with confirms (waitForConfirmsOrDie)");
            ch.confirmSelect();
            for (int i = 0; i < 20; i++) {
                Map<String, Object> headers = new HashMap<>();
                headers.put("i", i);
                AMQP.BasicProperties p = new AMQP.BasicProperties.Builder()
                        .contentType("text/plain").messageId("id-" + i).headers(headers).build();
                ch.basicPublish("", q, p, utf8("m" + i));
            }
            ch.waitForConfirmsOrDie(5000);
            check(ch.queueDeclarePassive(q).getMessageCount() == 20, "20 ready after confirms");

            step("consume with prefetch 5: at most 5 unacked, ack each, FIFO, properties intact");
            ch.basicQos(5);
            Collector c = new Collector(ch);
            String tag = ch.basicConsume(q, false, c);
            List<String> bodies = new ArrayList<>();
            for (int i = 0; i < 20; i++) {
                Got g = c.next();
                bodies.add(g.body());
                check("text/plain".equals(g.props().getContentType()), "content type");
                check(("id-" + i).equals(g.props().getMessageId()), "message id " + g.props().getMessageId());
                check(Integer.valueOf(i).equals(g.props().getHeaders().get("i")), "header i");
                if (i % 5 == 4) {
                    // Let the prefetch window fill before acking it.
                    Thread.sleep(50);
                }
                c.unacked.decrementAndGet();
                ch.basicAck(g.tag(), false);
            }
            ch.basicCancel(tag);
            check(c.maxUnacked.get() <= 5, "prefetch 5 exceeded: " + c.maxUnacked.get());
            for (int i = 0; i < 20; i++) {
                check(bodies.get(i).equals("m" + i), "order: " + bodies);
            }
            Thread.sleep(100);
            check(ch.queueDeclarePassive(q).getMessageCount() == 0, "queue drained");

            step("nack with requeue: redelivered with the flag, then ack");
            ch.queueDeclare(q2, false, false, false, null);
            ch.basicPublish("", q2, null, utf8("again"));
            ch.waitForConfirmsOrDie(5000);
            Collector c2 = new Collector(ch);
            String tag2 = ch.basicConsume(q2, false, c2);
            Got first = c2.next();
            check(!first.redelivered(), "first delivery flagged redelivered");
            ch.basicNack(first.tag(), false, true);
            Got second = c2.next();
            check(second.redelivered() && second.body().equals("again"), "redelivery " + second);
            ch.basicAck(second.tag(), false);
            ch.basicCancel(tag2);

            step("basic.get: a message with its count, then empty");
            ch.basicPublish("", q2, null, utf8("g1"));
            ch.basicPublish("", q2, null, utf8("g2"));
            ch.waitForConfirmsOrDie(5000);
            GetResponse g = ch.basicGet(q2, false);
            check(g != null && text(g.getBody()).equals("g1") && g.getMessageCount() == 1, "get g1");
            ch.basicAck(g.getEnvelope().getDeliveryTag(), false);
            g = ch.basicGet(q2, true);
            check(g != null && text(g.getBody()).equals("g2"), "get g2");
            check(ch.basicGet(q2, true) == null, "get-empty");

            step("reject with requeue, then without (dropped)");
            ch.basicPublish("", q2, null, utf8("r"));
            ch.waitForConfirmsOrDie(5000);
            g = ch.basicGet(q2, false);
            ch.basicReject(g.getEnvelope().getDeliveryTag(), true);
            g = ch.basicGet(q2, false);
            check(g != null && g.getEnvelope().isRedeliver(), "requeued get");
            ch.basicReject(g.getEnvelope().getDeliveryTag(), false);
            Thread.sleep(100);
            check(ch.queueDeclarePassive(q2).getMessageCount() == 0, "rejected message dropped");

            step("purge and delete report message counts");
            for (int i = 0; i < 7; i++) {
                ch.basicPublish("", q, null, utf8("p"));
            }
            ch.waitForConfirmsOrDie(5000);
            check(ch.queuePurge(q).getMessageCount() == 7, "purge count");
            ch.basicPublish("", q, null, utf8("d"));
            ch.waitForConfirmsOrDie(5000);
            check(ch.queueDelete(q).getMessageCount() == 1, "delete count");
            ch.queueDelete(q2);

            step("a 300 KB message, split over several body frames, comes back intact");
            byte[] big = new byte[300000];
            for (int i = 0; i < big.length; i++) {
                big[i] = (byte) (i * 7);
            }
            ch.queueDeclare(q2, false, false, false, null);
            ch.basicPublish("", q2, null, big);
            ch.waitForConfirmsOrDie(5000);
            g = ch.basicGet(q2, true);
            check(g != null && java.util.Arrays.equals(g.getBody(), big), "large body changed");

            step("idle for 2.5 s with 1 s heartbeats: the connection stays up");
            Thread.sleep(2500);
            check(conn.isOpen() && ch.queueDeclarePassive(q2).getMessageCount() == 0, "after idling");
            ch.queueDelete(q2);

            step("mandatory publish to a missing queue: basic.return 312 NO_ROUTE, and still confirmed");
            BlockingQueue<Integer> returns = new LinkedBlockingQueue<>();
            ch.addReturnListener((code, text, exchange, key, props, body) -> returns.add(code));
            ch.basicPublish("", "java-nowhere-" + suffix, true, null, utf8("lost"));
            ch.waitForConfirmsOrDie(5000);
            Integer code = returns.poll(5, TimeUnit.SECONDS);
            check(code != null && code == 312, "basic.return code " + code);

            step("server-named exclusive queue");
            String anon = ch.queueDeclare().getQueue();
            check(anon.startsWith("amq.gen-"), "server-named queue " + anon);

            step("channel error: passive declare of a missing queue closes the channel with 404");
            Channel bad = conn.createChannel();
            try {
                bad.queueDeclarePassive("java-missing-" + suffix);
                throw new AssertionError("passive declare of a missing queue succeeded");
            } catch (IOException e) {
                check(e.getCause() instanceof ShutdownSignalException, "cause " + e.getCause());
                ShutdownSignalException s = (ShutdownSignalException) e.getCause();
                check(!s.isHardError(), "a channel error, not a connection error");
                AMQP.Channel.Close close = (AMQP.Channel.Close) s.getReason();
                check(close.getReplyCode() == 404, "reply code " + close.getReplyCode());
            }
            check(!bad.isOpen(), "the failed channel is closed");

            step("the connection and its other channel still work after the channel error");
            check(conn.isOpen() && ch.isOpen(), "connection and channel open");
            ch.queueDeclare(q, false, false, false, null);
            ch.basicPublish("", q, null, utf8("after"));
            ch.waitForConfirmsOrDie(5000);
            g = ch.basicGet(q, true);
            check(g != null && text(g.getBody()).equals("after"), "after the channel error");
            ch.queueDelete(q);

            step("close");
            ch.close();
        }
    }
}
