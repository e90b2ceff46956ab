//! The AMQP front end through lapin (Rust), a second unmodified client.
//! lapin runs on its own executor (async-global-executor) on a plain
//! thread, away from the broker's glommio shards.
//!
//! Over TLS too (`amqps_listen`): lapin's `rustls` feature (rustls-connector
//! through amq-protocol-tcp), trusting the test CA given as PEM, with PLAIN
//! as guest, and with a client certificate (CN=guest, handed to lapin as
//! PKCS#12, which `openssl pkcs12` makes from the PEM files) and EXTERNAL.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::lapin_thread::on_thread;

use common::tls::TestCerts;
use common::{queue_on, TestBroker};
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use ringmq::server::tls::ClientCerts;
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn lapin_confirms_consume_get_nack() {
    let b = TestBroker::start();
    let url = format!("amqp://guest:guest@{}/%2f", b.amqp);
    // One queue per shard: whichever shard lapin lands on, one is forwarded.
    let queues = [queue_on(0, 2, "lapin"), queue_on(1, 2, "lapin")];
    on_thread(Duration::from_secs(60), async move {
        let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        for q in &queues {
            // Benchmark clients delete their queue before declaring it: a
            // queue that is not there deletes with 0, as on RabbitMQ.
            assert_eq!(ch.queue_delete(q, QueueDeleteOptions::default()).await?, 0);
            let ok = ch.queue_declare(q, QueueDeclareOptions::default(), FieldTable::default()).await?;
            assert_eq!(ok.message_count(), 0);
            let mut headers = FieldTable::default();
            headers.insert("k".into(), AMQPValue::LongString("v".into()));
            for i in 0..100u32 {
                let props = BasicProperties::default()
                    .with_content_type("text/plain".into())
                    .with_headers(headers.clone())
                    .with_message_id(format!("id-{i}").into());
                let confirm = ch
                    .basic_publish("", q, BasicPublishOptions::default(), format!("m{i}").as_bytes(), props)
                    .await?
                    .await?;
                assert!(confirm.is_ack(), "message {i} confirmed");
            }
            // get, then nack with requeue: it comes back redelivered.
            let got = ch.basic_get(q, BasicGetOptions::default()).await?.expect("a message to get");
            assert_eq!(got.delivery.data, b"m0");
            assert_eq!(got.message_count, 99);
            got.delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await?;

            ch.basic_qos(10, BasicQosOptions::default()).await?;
            let mut consumer = ch.basic_consume(q, "", BasicConsumeOptions::default(), FieldTable::default()).await?;
            assert!(consumer.tag().as_str().starts_with("amq.ctag-"), "server-generated tag");
            for i in 0..100u32 {
                let d = consumer.next().await.expect("consumer stream open")?;
                assert_eq!(d.data, format!("m{i}").as_bytes());
                assert_eq!(d.redelivered, i == 0, "only the nacked one is redelivered");
                assert_eq!(d.properties.message_id().as_ref().map(|s| s.as_str()), Some(format!("id-{i}").as_str()));
                assert_eq!(d.properties.content_type().as_ref().map(|s| s.as_str()), Some("text/plain"));
                assert!(d.properties.headers().is_some());
                d.acker.ack(BasicAckOptions::default()).await?;
            }
            cancel_and_delete(&ch, consumer.tag().as_str(), q).await?;
        }
        conn.close(200, "bye").await?;
        Ok(())
    });
}

/// A broker with AMQPS on (client certificates optional) and certificates
/// for a client whose CN is `guest`.
/// Cancels the consumer and deletes its queue, which must be empty (every
/// message acked).
async fn cancel_and_delete(ch: &lapin::Channel, tag: &str, q: &str) -> lapin::Result<()> {
    ch.basic_cancel(tag, Default::default()).await?;
    let left = ch.queue_delete(q, QueueDeleteOptions::default()).await?;
    assert_eq!(left, 0, "everything acked");
    Ok(())
}

fn tls_broker() -> (TestBroker, TestCerts, String) {
    let certs = TestCerts::new("guest");
    let b = TestBroker::start_with(2, |c| {
        certs.configure(c);
        c.amqps_client_certs = ClientCerts::Optional;
    });
    let port = b.amqps.expect("the AMQPS listener is on").port();
    (b, certs, format!("localhost:{port}"))
}

/// lapin's TLS (rustls-connector) makes its client with the process's
/// default rustls provider, and this test build has two (lapin's ring and
/// the broker's aws-lc-rs): one is chosen here, before any connection.
fn tls_provider() {
    // Err only when a provider is already installed, which is as good.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// lapin's TLS settings trusting `ca` (a PEM file of `certs`), presenting
/// `identity` (PKCS#12) when given.
fn tls_config(certs: &TestCerts, ca: &str, identity: Option<OwnedIdentity>) -> OwnedTLSConfig {
    OwnedTLSConfig { identity, cert_chain: Some(std::fs::read_to_string(certs.path(ca)).unwrap()) }
}

/// The client certificate and key as PKCS#12, which is what lapin takes.
fn pkcs12_identity(certs: &TestCerts) -> OwnedIdentity {
    let p12 = certs.path("client.p12");
    let out = std::process::Command::new("openssl")
        .args(["pkcs12", "-export", "-passout", "pass:ringmq", "-in"])
        .arg(certs.path("client.pem"))
        .arg("-inkey")
        .arg(certs.path("client.key"))
        .arg("-out")
        .arg(&p12)
        .output()
        .unwrap_or_else(|e| panic!("run openssl (it makes the PKCS#12 file lapin reads): {e}"));
    assert!(out.status.success(), "openssl pkcs12 -export: {}", String::from_utf8_lossy(&out.stderr));
    OwnedIdentity { der: std::fs::read(p12).unwrap(), password: "ringmq".into() }
}

/// Over `url` with `tls`: publish with confirms, consume with prefetch and
/// ack, on a queue of each shard (one of them forwarded).
fn tls_round_trip(url: String, tls: OwnedTLSConfig) {
    let queues = [queue_on(0, 2, "lapin-tls"), queue_on(1, 2, "lapin-tls")];
    on_thread(Duration::from_secs(60), async move {
        let conn = Connection::connect_with_config(&url, ConnectionProperties::default(), tls).await?;
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        ch.basic_qos(10, BasicQosOptions::default()).await?;
        for q in &queues {
            ch.queue_declare(q, QueueDeclareOptions::default(), FieldTable::default()).await?;
            // 64 KiB bodies: several TLS records and body frames each.
            let body = |i: u32| (0..65536u32).map(|j| (i + j * 7) as u8).collect::<Vec<u8>>();
            for i in 0..50u32 {
                let props = BasicProperties::default().with_message_id(format!("id-{i}").into());
                let confirm = ch.basic_publish("", q, BasicPublishOptions::default(), &body(i), props).await?.await?;
                assert!(confirm.is_ack(), "message {i} confirmed");
            }
            let mut consumer = ch.basic_consume(q, "", BasicConsumeOptions::default(), FieldTable::default()).await?;
            for i in 0..50u32 {
                let d = consumer.next().await.expect("consumer stream open")?;
                assert!(d.data == body(i), "body {i} intact");
                assert_eq!(d.properties.message_id().as_ref().map(|s| s.as_str()), Some(format!("id-{i}").as_str()));
                d.acker.ack(BasicAckOptions::default()).await?;
            }
            cancel_and_delete(&ch, consumer.tag().as_str(), q).await?;
        }
        conn.close(200, "bye").await?;
        Ok(())
    });
}

#[test]
fn lapin_over_tls_plain_login() {
    tls_provider();
    let (_b, certs, addr) = tls_broker();
    tls_round_trip(format!("amqps://guest:guest@{addr}/%2f"), tls_config(&certs, "ca.pem", None));
}

#[test]
fn lapin_over_tls_external_login() {
    tls_provider();
    let (_b, certs, addr) = tls_broker();
    let tls = tls_config(&certs, "ca.pem", Some(pkcs12_identity(&certs)));
    // No user name or password: the certificate's CN (guest) is the login.
    tls_round_trip(format!("amqps://{addr}/%2f?auth_mechanism=external"), tls);
}

#[test]
fn lapin_over_tls_refuses_a_broker_its_ca_did_not_sign() {
    tls_provider();
    let (_b, certs, addr) = tls_broker();
    let tls = tls_config(&certs, "other-ca.pem", None);
    let url = format!("amqps://guest:guest@{addr}/%2f");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r =
            futures_lite::future::block_on(Connection::connect_with_config(&url, ConnectionProperties::default(), tls));
        let _ = tx.send(r.map(|_| ()).map_err(|e| e.to_string()));
    });
    let r = rx.recv_timeout(Duration::from_secs(30)).expect("lapin answered within 30 s");
    let e = r.expect_err("lapin connected to a broker whose certificate its CA did not sign");
    assert!(e.to_lowercase().contains("certificate") || e.contains("UnknownIssuer"), "not a certificate error: {e}");
    eprintln!("wrong CA: {e}");
}

/// Consumer priorities (`x-priority` on basic.consume): the high consumer
/// takes every message while it has credit, the low one only while the
/// high one is blocked (prefetch full), and the high one again once it
/// acks; a non-integer `x-priority` closes the channel with 406.
#[test]
fn lapin_consumer_priorities() {
    let b = TestBroker::start();
    let url = format!("amqp://guest:guest@{}/%2f", b.amqp);
    on_thread(Duration::from_secs(60), async move {
        let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
        let publisher = conn.create_channel().await?;
        publisher.confirm_select(ConfirmSelectOptions::default()).await?;
        let q = "lapin-consumer-priority";
        publisher.queue_declare(q, QueueDeclareOptions::default(), FieldTable::default()).await?;
        let consume = |prefetch: u16, priority: i32| {
            let conn = &conn;
            async move {
                let ch = conn.create_channel().await?;
                ch.basic_qos(prefetch, BasicQosOptions::default()).await?;
                let mut args = FieldTable::default();
                args.insert("x-priority".into(), AMQPValue::LongInt(priority));
                let c = ch.basic_consume(q, "", BasicConsumeOptions::default(), args).await?;
                lapin::Result::Ok((ch, c))
            }
        };
        let (_low_ch, mut low) = consume(100, -1).await?;
        let (high_ch, mut high) = consume(2, 7).await?;
        let publish = |body: &'static str| {
            let publisher = &publisher;
            async move {
                let props = BasicProperties::default();
                publisher.basic_publish("", q, BasicPublishOptions::default(), body.as_bytes(), props).await?.await
            }
        };
        for body in ["a", "b", "c", "d", "e"] {
            publish(body).await?;
        }
        // Round-robin would give the high one a and c: it takes a and b,
        // then it is blocked and the low one takes the rest.
        let mut next = Vec::new();
        for _ in 0..2 {
            next.push(high.next().await.expect("open")?);
        }
        assert_eq!(next.iter().map(|d| d.data.as_slice()).collect::<Vec<_>>(), [b"a", b"b"]);
        for want in ["c", "d", "e"] {
            assert_eq!(low.next().await.expect("open")?.data, want.as_bytes());
        }
        // Acked (and a round trip on its channel, so the acks are through
        // before the next publishes): the high one is served again.
        next[1].acker.ack(BasicAckOptions { multiple: true }).await?;
        high_ch.basic_qos(2, BasicQosOptions::default()).await?;
        for body in ["f", "g"] {
            publish(body).await?;
        }
        for want in ["f", "g"] {
            assert_eq!(high.next().await.expect("open")?.data, want.as_bytes());
        }
        // Not an integer: 406, the channel closed.
        let bad = conn.create_channel().await?;
        let mut args = FieldTable::default();
        args.insert("x-priority".into(), AMQPValue::LongString("high".into()));
        let e = bad.basic_consume(q, "", BasicConsumeOptions::default(), args).await.unwrap_err();
        assert!(e.to_string().contains("PRECONDITION_FAILED"), "{e}");
        conn.close(200, "bye").await?;
        Ok(())
    });
}

/// Transactions through lapin: publishes to queues on both shards seen
/// only after tx.commit, a rollback that drops publishes and forgets an
/// ack (the delivery is acked again and committed), and the 406 cases:
/// confirm.select on a tx channel, tx.commit without tx.select.
#[test]
fn lapin_transactions() {
    let b = TestBroker::start();
    let url = format!("amqp://guest:guest@{}/%2f", b.amqp);
    let queues = [queue_on(0, 2, "lapin-tx"), queue_on(1, 2, "lapin-tx")];
    on_thread(Duration::from_secs(60), async move {
        let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
        let probe = conn.create_channel().await?;
        let [qa, qb] = [queues[0].as_str(), queues[1].as_str()];
        for q in [qa, qb] {
            let opts = QueueDeclareOptions { durable: true, ..Default::default() };
            probe.queue_declare(q, opts, FieldTable::default()).await?;
        }
        let ch = conn.create_channel().await?;
        ch.tx_select().await?;
        let persistent = BasicProperties::default().with_delivery_mode(2);
        for (q, body) in [(qa, "a1"), (qb, "b1"), (qa, "a2")] {
            ch.basic_publish("", q, BasicPublishOptions::default(), body.as_bytes(), persistent.clone()).await?;
        }
        assert_eq!((depth(&probe, qa).await?, depth(&probe, qb).await?), (0, 0), "nothing before the commit");
        ch.tx_commit().await?;
        assert_eq!((depth(&probe, qa).await?, depth(&probe, qb).await?), (2, 1), "one commit, both shards");
        ch.basic_publish("", qb, BasicPublishOptions::default(), b"dropped", persistent.clone()).await?;
        ch.tx_rollback().await?;
        assert_eq!(depth(&probe, qb).await?, 1, "rolled back");
        // An ack rolled back is forgotten: the same tag is acked again.
        let got = ch.basic_get(qa, BasicGetOptions::default()).await?.expect("a1");
        assert_eq!(got.delivery.data, b"a1");
        let tag = got.delivery.delivery_tag;
        ch.basic_ack(tag, BasicAckOptions::default()).await?;
        ch.tx_rollback().await?;
        ch.basic_ack(tag, BasicAckOptions::default()).await?;
        ch.tx_commit().await?;
        ch.close(200, "bye").await?;
        assert_eq!(depth(&probe, qa).await?, 1, "a1 acked at commit, a2 left");
        // 406: confirm after tx, commit without select.
        let bad = conn.create_channel().await?;
        bad.tx_select().await?;
        let e = bad.confirm_select(ConfirmSelectOptions::default()).await.unwrap_err();
        assert!(e.to_string().contains("PRECONDITION_FAILED"), "{e}");
        let bad = conn.create_channel().await?;
        let e = bad.tx_commit().await.unwrap_err();
        assert!(e.to_string().contains("not transactional"), "{e}");
        conn.close(200, "bye").await?;
        Ok(())
    });
}

/// Messages ready in `q`, from a passive declare.
async fn depth(probe: &lapin::Channel, q: &str) -> lapin::Result<u32> {
    let opts = QueueDeclareOptions { passive: true, ..Default::default() };
    Ok(probe.queue_declare(q, opts, FieldTable::default()).await?.message_count())
}
