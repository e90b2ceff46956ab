//! The tokio client (`ringmq::client::tokio`) against a real broker on
//! 127.0.0.1:0, as the glommio client is tested (round_trip.rs,
//! delivery.rs, routing.rs): round trips over both paths of a 2-shard
//! broker, confirms across many batches, redelivery and nacks, exchanges
//! with properties, direct reply-to (RPC), errors the broker answers, and
//! a hostile "broker" (a raw socket) sending bad frames. Every client
//! runs on a multi-threaded tokio runtime, its handles moved between
//! tasks.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::{queue_on, TestBroker, QUIET, STEP, TEST_DEADLINE};
use futures_lite::StreamExt;
use ringmq::client::tokio::{Client, Consumer};
use ringmq::client::{
    ClientError, ClientOptions, ConsumerOptions as ClientConsumerOptions, Delivery, ExchangeOptions, ProducerOptions,
};
use ringmq::protocol::field_table::{Table, Value};
use ringmq::protocol::props::{self, PropsBuilder};
use ringmq::protocol::{Cmd, ErrorCode, Frame, HelloOk};
use std::future::Future;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;
use zerocopy::IntoBytes;

/// Runs `f` on a 2-thread tokio runtime, failing the test after `TEST_DEADLINE`.
fn run<F: Future<Output = ()> + Send + 'static>(f: F) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        tokio::time::timeout(TEST_DEADLINE, tokio::spawn(f))
            .await
            .expect("the test's client code finishes within its deadline")
            .expect("the test's task does not panic");
    });
}

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut).await.unwrap_or_else(|_| panic!("{what}: nothing within {STEP:?}"))
}

async fn connect(url: String, shard_aware: bool) -> Client {
    within("connect", Client::connect(ClientOptions { url, shard_aware, ..Default::default() })).await.unwrap()
}

async fn next(c: &mut Consumer) -> Delivery {
    within("delivery", c.next()).await.expect("stream open").expect("delivery")
}

async fn nothing_more(c: &mut Consumer) {
    if let Ok(d) = tokio::time::timeout(QUIET, c.next()).await {
        panic!("expected no more deliveries, got {d:?}");
    }
}

fn body(d: &Delivery) -> String {
    String::from_utf8(d.body.to_vec()).unwrap()
}

async fn publish_all(c: &Client, queue: &str, n: usize, batch_max: u32) {
    let p = c.producer(queue, ProducerOptions { batch_max, ..Default::default() }).await.unwrap();
    let mut confs = Vec::new();
    for i in 0..n {
        confs.push(p.publish(format!("m-{i}").as_bytes()).await.unwrap());
    }
    p.flush().unwrap();
    for conf in confs {
        within("confirm", conf).await.expect("confirmed");
    }
}

#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Client>();
    check::<Consumer>();
    check::<ringmq::client::tokio::Producer>();
    check::<ringmq::client::tokio::Confirmation>();
}

/// Declare, publish with confirms, consume in order, ack, cancel; then
/// get with and without ack, purge, delete: direct and forwarded.
fn round_trip(shard_aware: bool) {
    let b = TestBroker::start();
    let url = b.url();
    run(async move {
        let c = connect(url, shard_aware).await;
        assert_eq!(c.info().shard_count(), 2);
        for shard in 0..2 {
            let q = queue_on(shard, 2, "tk");
            let owner = c.conn_for(&q).await.unwrap().info().shard_id;
            assert_eq!(u32::from(owner), if shard_aware { shard } else { u32::from(c.info().shard_id) });
            assert_eq!(c.declare(&q, false).await.unwrap(), 0, "new queue");
            publish_all(&c, &q, 50, 16).await;
            assert_eq!(c.declare_passive(&q).await.unwrap(), 50, "every confirmed message is ready");
            let mut consumer = c.subscribe(&q, 100).await.unwrap();
            for i in 0..50u64 {
                let d = next(&mut consumer).await;
                assert_eq!(body(&d), format!("m-{i}"), "FIFO");
                assert_eq!(d.tag, i + 1, "tags count up from 1 per consumer");
                assert!(!d.redelivered);
                consumer.ack(d.tag);
            }
            nothing_more(&mut consumer).await;
            within("cancel", consumer.cancel()).await.unwrap();
            assert_eq!(c.declare_passive(&q).await.unwrap(), 0, "acked messages are not requeued");

            publish_all(&c, &q, 3, 8).await;
            let d = c.get(&q, false).await.unwrap().expect("a message");
            assert_eq!(body(&d), "m-0");
            c.ack_get(&q, &d).await.unwrap();
            let d = c.get(&q, true).await.unwrap().expect("a message");
            assert_eq!((body(&d).as_str(), d.tag), ("m-1", 0), "no_ack: nothing to ack");
            assert_eq!(c.purge(&q).await.unwrap(), 1);
            assert!(c.get(&q, true).await.unwrap().is_none());
            assert_eq!(c.delete(&q).await.unwrap(), 0);
        }
        c.close().await;
    });
}

#[test]
fn round_trip_direct() {
    round_trip(true);
}

#[test]
fn round_trip_forwarded() {
    round_trip(false);
}

/// 5,000 messages from four tasks sharing one producer: every one
/// confirmed, each task's in order, the window and the linger timer both
/// at work (batches of 32, 4 in flight).
#[test]
fn confirms_across_tasks_and_batches() {
    let b = TestBroker::start();
    let url = b.url();
    run(async move {
        let c = Arc::new(connect(url, true).await);
        let q = queue_on(1, 2, "conf");
        c.declare(&q, false).await.unwrap();
        let opts = ProducerOptions { batch_max: 32, in_flight_max: 4, ..Default::default() };
        let p = Arc::new(c.producer(&q, opts).await.unwrap());
        let mut tasks = Vec::new();
        for t in 0..4 {
            let p = p.clone();
            tasks.push(tokio::spawn(async move {
                let mut confs = Vec::new();
                for i in 0..1250 {
                    confs.push(p.publish(format!("{t}:{i}").as_bytes()).await.unwrap());
                }
                for conf in confs {
                    within("confirm", conf).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(p.in_flight(), 0);
        assert_eq!(c.declare_passive(&q).await.unwrap(), 5000);
        let mut consumer = c.subscribe(&q, 1000).await.unwrap();
        let mut seen = [0u32; 4];
        for _ in 0..5000 {
            let d = next(&mut consumer).await;
            let (t, i) = body(&d)
                .split_once(':')
                .map(|(t, i)| (t.parse::<usize>().unwrap(), i.parse::<u32>().unwrap()))
                .unwrap();
            assert_eq!(i, seen[t], "task {t}'s messages in order");
            seen[t] += 1;
            consumer.ack(d.tag);
        }
        within("cancel", consumer.cancel()).await.unwrap();
        assert_eq!(c.declare_passive(&q).await.unwrap(), 0, "every ack took");
        c.close().await;
    });
}

/// Unacked deliveries come back, flagged, to the next consumer when the
/// client closes; nack requeues or drops.
#[test]
fn redelivery_and_nack() {
    let b = TestBroker::start();
    let url = b.url();
    run(async move {
        let q = queue_on(0, 2, "redel");
        let c = connect(url.clone(), true).await;
        c.declare(&q, false).await.unwrap();
        publish_all(&c, &q, 4, 4).await;
        let mut consumer = c.subscribe(&q, 10).await.unwrap();
        let first: Vec<Delivery> = vec![next(&mut consumer).await, next(&mut consumer).await];
        consumer.ack(first[0].tag);
        for _ in 0..2 {
            next(&mut consumer).await;
        }
        c.close().await;
        drop(consumer);

        let c = connect(url, true).await;
        let mut consumer = c.subscribe(&q, 10).await.unwrap();
        for i in 1..4 {
            let d = next(&mut consumer).await;
            assert_eq!(body(&d), format!("m-{i}"), "the unacked ones, in order");
            assert!(d.redelivered, "flagged as redelivered");
            if i == 1 {
                consumer.nack(d.tag, true);
            } else {
                consumer.nack(d.tag, false);
            }
        }
        let d = next(&mut consumer).await;
        assert_eq!(body(&d), "m-1", "a requeued nack comes back");
        consumer.ack(d.tag);
        nothing_more(&mut consumer).await;
        within("cancel", consumer.cancel()).await.unwrap();
        assert_eq!(c.declare_passive(&q).await.unwrap(), 0, "dropped by nack, or acked");
        c.close().await;
    });
}

/// Direct, fanout and headers exchanges over queues on both shards,
/// properties and headers carried to the consumer, mandatory without a
/// route refused.
#[test]
fn exchanges_and_properties() {
    let b = TestBroker::start();
    let url = b.url();
    run(async move {
        let c = connect(url, true).await;
        let (qa, qb) = (queue_on(0, 2, "xa"), queue_on(1, 2, "xb"));
        for q in [&qa, &qb] {
            c.declare(q, false).await.unwrap();
        }
        let mut subs = vec![c.subscribe(&qa, 100).await.unwrap(), c.subscribe(&qb, 100).await.unwrap()];
        c.declare_exchange("tdx", "direct", ExchangeOptions::default()).await.unwrap();
        c.declare_exchange_passive("tdx").await.unwrap();
        c.bind_queue(&qa, "tdx", "a", &[]).await.unwrap();
        c.bind_queue(&qb, "tdx", "a", &[]).await.unwrap();
        c.bind_queue(&qb, "tdx", "b", &[]).await.unwrap();
        let mut headers = Table::default();
        headers.set("tenant", Value::str("acme"));
        let expect_headers = headers.clone();
        let props = PropsBuilder::new()
            .content_type("text/plain")
            .correlation_id("c-1")
            .message_id("m-1")
            .headers(headers)
            .build();
        let p = c.exchange_producer("tdx", "a", ProducerOptions { batch_max: 1, ..Default::default() }).await.unwrap();
        p.publish_with(&props, b"to a").await.unwrap().await.unwrap();
        let p = c.exchange_producer("tdx", "b", ProducerOptions::default()).await.unwrap();
        p.send(b"to b").await.unwrap();
        let d = next(&mut subs[0]).await;
        assert_eq!(body(&d), "to a");
        let pr = d.properties().expect("properties");
        assert_eq!(pr.short(props::CORRELATION_ID), Some(&b"c-1"[..]));
        assert_eq!(pr.short(props::CONTENT_TYPE), Some(&b"text/plain"[..]));
        assert_eq!(pr.headers, Some(expect_headers), "headers as published");
        assert_eq!(body(&next(&mut subs[1]).await), "to a");
        assert_eq!(body(&next(&mut subs[1]).await), "to b");
        nothing_more(&mut subs[0]).await;

        c.declare_exchange("tfx", "fanout", ExchangeOptions::default()).await.unwrap();
        c.bind_queue(&qa, "tfx", "", &[]).await.unwrap();
        c.bind_queue(&qb, "tfx", "", &[]).await.unwrap();
        c.exchange_producer("tfx", "", ProducerOptions::default()).await.unwrap().send(b"all").await.unwrap();
        for s in &mut subs {
            assert_eq!(body(&next(s).await), "all");
        }
        c.unbind_queue(&qa, "tfx", "", &[]).await.unwrap();
        c.exchange_producer("tfx", "", ProducerOptions::default()).await.unwrap().send(b"b only").await.unwrap();
        assert_eq!(body(&next(&mut subs[1]).await), "b only");
        nothing_more(&mut subs[0]).await;

        let opts = ProducerOptions { mandatory: true, ..Default::default() };
        let p = c.exchange_producer("tdx", "nowhere", opts).await.unwrap();
        let e = p.send(b"lost").await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::NoRoute), "{e}");
        c.delete_exchange("tdx", false).await.unwrap();
        let e = c.declare_exchange_passive("tdx").await.unwrap_err();
        assert!(e.code().is_some(), "{e}");
        c.close().await;
    });
}

/// A consumer that asks (`ConsumerOptions::with_origin`, the wire's
/// `SUBSCRIBE_ORIGIN`) gets each delivery's exchange and routing key, on
/// the owning shard's connection and through another shard (which
/// forwards); a run of one origin shares a frame, and a change starts the
/// next. One that does not ask gets none.
#[test]
fn deliveries_carry_exchange_and_routing_key_when_asked() {
    let b = TestBroker::start();
    let url = b.url();
    run(async move {
        for shard_aware in [true, false] {
            let c = connect(url.clone(), shard_aware).await;
            let (q, plain) = (queue_on(1, 2, "orig"), queue_on(1, 2, "orig-plain"));
            let x = format!("ox-{shard_aware}");
            c.declare(&q, false).await.unwrap();
            c.declare(&plain, false).await.unwrap();
            c.declare_exchange(&x, "topic", ExchangeOptions::default()).await.unwrap();
            c.bind_queue(&q, &x, "eu.#", &[]).await.unwrap();
            c.bind_queue(&plain, &x, "eu.#", &[]).await.unwrap();
            // Published before anyone consumes: delivered as one run.
            let de = c.exchange_producer(&x, "eu.de", ProducerOptions::default()).await.unwrap();
            let fr = c.exchange_producer(&x, "eu.fr", ProducerOptions::default()).await.unwrap();
            let direct = c.producer(&q, ProducerOptions::default()).await.unwrap();
            for i in 0..3 {
                de.send(format!("de-{i}").as_bytes()).await.unwrap();
            }
            direct.send(b"direct").await.unwrap();
            fr.send(b"fr-0").await.unwrap();
            de.send(b"de-3").await.unwrap();
            let mut with = c.subscribe_with(&q, ClientConsumerOptions::new(100).with_origin()).await.unwrap();
            let want = [
                ("de-0", x.as_str(), "eu.de"),
                ("de-1", &x, "eu.de"),
                ("de-2", &x, "eu.de"),
                ("direct", "", q.as_str()),
                ("fr-0", &x, "eu.fr"),
                ("de-3", &x, "eu.de"),
            ];
            for (i, (text, exchange, key)) in want.iter().enumerate() {
                let d = next(&mut with).await;
                assert_eq!(body(&d), *text);
                assert_eq!(d.tag, i as u64 + 1, "tags run across frames");
                assert_eq!((d.exchange(), d.routing_key()), (Some(*exchange), Some(*key)), "{text}");
                with.ack(d.tag);
            }
            let mut without = c.subscribe(&plain, 100).await.unwrap();
            for _ in 0..5 {
                let d = next(&mut without).await;
                assert_eq!((d.exchange(), d.routing_key(), d.origin.is_none()), (None, None, true));
                without.ack(d.tag);
            }
            c.close().await;
        }
    });
}

/// RPC over direct reply-to: a requester's replies come to its reply
/// consumer, matched by correlation id; the replier runs in another task.
#[test]
fn request_reply() {
    let b = TestBroker::start();
    let url = b.url();
    run(async move {
        let server = Arc::new(connect(url.clone(), true).await);
        let q = queue_on(0, 2, "rpc");
        server.declare(&q, false).await.unwrap();
        let mut requests = server.subscribe(&q, 10).await.unwrap();
        let srv = server.clone();
        let replier = tokio::spawn(async move {
            for _ in 0..3 {
                let d = next(&mut requests).await;
                let pr = d.properties().expect("request properties");
                let to = String::from_utf8(pr.short(props::REPLY_TO).unwrap().to_vec()).unwrap();
                let corr = String::from_utf8(pr.short(props::CORRELATION_ID).unwrap().to_vec()).unwrap();
                let answer = format!("re: {}", body(&d));
                srv.reply(&to, &PropsBuilder::new().correlation_id(&corr).build(), answer.as_bytes()).await.unwrap();
                requests.ack(d.tag);
            }
        });
        let client = connect(url, true).await;
        let (name, mut replies) = client.reply_consumer().await.unwrap();
        let p = client.producer(&q, ProducerOptions { batch_max: 1, ..Default::default() }).await.unwrap();
        for i in 0..3 {
            let props = PropsBuilder::new().reply_to(&name).correlation_id(&format!("id-{i}")).build();
            p.publish_with(&props, format!("q{i}").as_bytes()).await.unwrap().await.unwrap();
            let d = next(&mut replies).await;
            assert_eq!(body(&d), format!("re: q{i}"));
            let pr = d.properties().unwrap();
            assert_eq!(pr.short(props::CORRELATION_ID), Some(format!("id-{i}").as_bytes()));
        }
        within("replier", replier).await.unwrap();
        client.close().await;
    });
}

/// What the broker refuses comes back as an error with its code, and the
/// connection goes on; a fatal refusal (bad credentials) fails connect.
#[test]
fn broker_errors() {
    let b = TestBroker::start();
    let url = b.url();
    run(async move {
        let c = connect(url.clone(), true).await;
        let e = c.declare_passive("no-such-queue").await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::QueueNotFound), "{e}");
        let e = c.subscribe("no-such-queue", 10).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::QueueNotFound), "{e}");
        let q = queue_on(1, 2, "err");
        c.declare(&q, false).await.unwrap();
        let e = c.subscribe(&q, c.info().prefetch_max + 1).await.unwrap_err();
        assert!(e.code().is_some(), "prefetch over the broker's limit: {e}");
        let p = c.producer(&q, ProducerOptions::default()).await.unwrap();
        let big = vec![0u8; c.info().message_bytes_max as usize + 1];
        assert!(matches!(p.publish(&big).await, Err(ClientError::Invalid(_))), "refused before sending");
        p.send(b"still fine").await.unwrap();
        assert_eq!(c.declare_passive(&q).await.unwrap(), 1, "the connection goes on");
        c.close().await;

        let opts = ClientOptions { url, password: "wrong".into(), ..Default::default() };
        let e = within("connect", Client::connect(opts)).await.expect_err("refused");
        assert!(matches!(e, ClientError::Server { .. }), "{e}");
    });
}

/// A fake broker on a real socket: a valid HelloOk, then `after`. Returns
/// its address; it serves one connection.
fn hostile_broker(after: Vec<u8>) -> std::net::SocketAddr {
    fake_broker(after, None)
}

/// [`hostile_broker`] negotiating `heartbeat_ms`.
fn fake_broker(after: Vec<u8>, heartbeat_ms: Option<u32>) -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut hello = [0u8; 256];
        let _ = s.read(&mut hello);
        let shard = addr.to_string();
        let ok = HelloOk {
            version: ringmq::protocol::VERSION,
            shard_id: 0,
            hash_id: ringmq::protocol::HASH_ID,
            frame_bytes_max: 1 << 16,
            message_bytes_max: 1 << 15,
            prefetch_max: 100,
            shard_addrs: vec![shard.as_str()],
            heartbeat_ms,
        };
        let mut out = bytes::BytesMut::new();
        Frame { request_id: 0, cmd: Cmd::HelloOk(ok) }.encode(&mut out);
        let _ = s.write_all(&out);
        std::thread::sleep(Duration::from_millis(100));
        let _ = s.write_all(&after);
        // Reads what the client sent (unread bytes would turn the close
        // into a reset), then closes: an end of stream where `after` ends.
        // With heartbeats on, it stays silent until the client gives up on
        // it (a loaded machine may space the client's beats past 300 ms:
        // closing then would end the test with EOF, not the heartbeat).
        let idle = if heartbeat_ms.is_some() { 10_000 } else { 300 };
        s.set_read_timeout(Some(Duration::from_millis(idle))).unwrap();
        let mut sink = [0u8; 4096];
        while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
        let _ = s.shutdown(std::net::Shutdown::Write);
    });
    addr
}

/// Bad bytes from the broker end the connection with a clear error: the
/// pending request and the consumer hear it, nothing panics or hangs.
#[test]
fn bad_input_from_the_broker() {
    let header = |op: u8, len: u32| ringmq::protocol::FrameHeader::new(op, 0, 7, len).as_bytes().to_vec();
    type Case = (&'static str, Vec<u8>, fn(&ClientError) -> bool);
    let cases: Vec<Case> = vec![
        ("garbage", vec![0xff; 64], |e| matches!(e, ClientError::Protocol(_))),
        ("a frame over the limit", header(ringmq::protocol::op::OK, 1 << 30), |e| {
            matches!(e, ClientError::Protocol(_))
        }),
        ("eof inside a frame", header(ringmq::protocol::op::OK, 100)[..10].to_vec(), |e| {
            matches!(e, ClientError::Closed(_))
        }),
        (
            "a fatal error",
            {
                let mut b = bytes::BytesMut::new();
                Frame { request_id: 0, cmd: Cmd::Error { fatal: true, code: 1, message: "go away" } }.encode(&mut b);
                b.to_vec()
            },
            |e| matches!(e, ClientError::Server { .. }),
        ),
    ];
    for (what, after, expect) in cases {
        let addr = hostile_broker(after);
        run(async move {
            // No cluster map asked for: this "broker" answers Hello only;
            // one connection, so the closed one is what `conn_for` shows.
            let opts = ClientOptions {
                url: format!("ringmq://{addr}"),
                cluster_aware: false,
                shard_aware: false,
                ..Default::default()
            };
            let c = within("connect", Client::connect(opts)).await.unwrap();
            let e = within(what, c.declare_passive("q")).await.unwrap_err();
            assert!(expect(&e), "{what}: {e:?}");
            assert!(c.conn_for("q").await.unwrap().is_closed(), "{what}: the connection is over");
        });
    }
}

/// Over TLS (`ringmqs://`): every follow-on connection to a shard is a
/// TLS handshake verified against the URL's host; a CA that did not sign
/// the broker's certificate is refused with a TLS error.
#[test]
fn over_tls_to_every_shard() {
    let certs = common::tls::TestCerts::new("guest");
    let b = TestBroker::start_with(2, |c| certs.configure(c));
    let url = format!("ringmqs://localhost:{}", b.tls.expect("tls_listen is on").port());
    let (ca, tls_shards) = (certs.path("ca.pem"), b.tls_shards.clone());
    let other = common::tls::TestCerts::new("guest");
    let wrong_ca = other.path("ca.pem");
    run(async move {
        let o = ClientOptions { url: url.clone(), tls_ca_file: Some(ca), ..Default::default() };
        let c = within("connect", Client::connect(o)).await.unwrap();
        assert!(c.is_tls());
        assert_eq!(c.info().shard_addrs, tls_shards, "the TLS shard map");
        for shard in 0..2 {
            let q = queue_on(shard, 2, "tls-tokio");
            assert_eq!(u32::from(c.conn_for(&q).await.unwrap().info().shard_id), shard);
            c.declare(&q, false).await.unwrap();
            publish_all(&c, &q, 200, 8).await;
            let mut consumer = c.subscribe(&q, 64).await.unwrap();
            for i in 0..200 {
                let d = next(&mut consumer).await;
                assert_eq!(body(&d), format!("m-{i}"), "in order, intact");
                consumer.ack(d.tag);
            }
            within("cancel", consumer.cancel()).await.unwrap();
            assert_eq!(c.declare_passive(&q).await.unwrap(), 0);
        }
        c.close().await;
        let o = ClientOptions { url, tls_ca_file: Some(wrong_ca), ..Default::default() };
        let e = within("connect", Client::connect(o)).await.expect_err("another CA's client must not connect");
        assert!(matches!(e, ClientError::Tls(_)), "{e}");
    });
}

/// Heartbeats: an idle client beats, so the broker keeps it past two
/// intervals; a broker gone silent (a fake one that negotiates 400 ms and
/// then says nothing) is given up after two intervals, with that reason.
#[test]
fn heartbeats_both_ways() {
    let b = TestBroker::start();
    let url = b.url();
    run(async move {
        let o = ClientOptions { url, heartbeat_ms: 500, ..Default::default() };
        let c = within("connect", Client::connect(o)).await.unwrap();
        assert_eq!(c.info().heartbeat_ms, 500, "negotiated");
        let q = queue_on(0, 2, "beat");
        c.declare(&q, false).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1800)).await;
        assert_eq!(c.declare_passive(&q).await.unwrap(), 0, "still connected after idling past two intervals");
        c.close().await;
    });
    let addr = fake_broker(Vec::new(), Some(400));
    run(async move {
        let o = ClientOptions {
            url: format!("ringmq://{addr}"),
            heartbeat_ms: 400,
            cluster_aware: false,
            shard_aware: false,
            ..Default::default()
        };
        let c = within("connect", Client::connect(o)).await.unwrap();
        let e = within("silence", c.declare_passive("q")).await.unwrap_err();
        assert!(matches!(&e, ClientError::Closed(m) if m.contains("heartbeat")), "{e:?}");
    });
}
