//! Queue semantics seen by consumers on a real 2-shard broker: redelivery
//! when a consumer's connection goes away, prefetch (credit), nack with and
//! without requeue, round-robin between consumers.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::{maybe_within, owner2, queue_on, run_local, within, Raw, TestBroker, QUIET, STEP};
use futures_lite::StreamExt;
use ringmq::client::{Client, ClientOptions, Consumer, ConsumerOptions, Delivery, ProducerOptions};
use ringmq::protocol::Cmd;
use std::time::Duration;

fn opts(url: String, shard_aware: bool) -> ClientOptions {
    ClientOptions { url, shard_aware, ..Default::default() }
}

async fn publish_all(c: &Client, queue: &str, bodies: impl IntoIterator<Item = String>) {
    let p = c.producer(queue, ProducerOptions { batch_max: 64, confirm: true, ..Default::default() }).await.unwrap();
    let mut confs = Vec::new();
    for b in bodies {
        confs.push(p.publish(b.as_bytes()).await.unwrap());
    }
    p.flush().unwrap();
    for conf in confs {
        within("confirm", STEP, conf).await.expect("confirmed");
    }
}

async fn next(c: &mut Consumer) -> Delivery {
    within("delivery", STEP, c.next()).await.expect("stream open").expect("delivery")
}

/// Asserts that no delivery arrives for `QUIET`.
async fn nothing_more(c: &mut Consumer) {
    if let Some(d) = maybe_within(QUIET, c.next()).await {
        panic!("expected no more deliveries, got {d:?}");
    }
}

/// Waits until `queue` holds `n` ready messages.
async fn wait_ready(c: &Client, queue: &str, n: u64) {
    let mut last = 0;
    for _ in 0..100 {
        last = c.declare_passive(queue).await.unwrap();
        if last == n {
            return;
        }
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    panic!("{queue}: {last} ready messages, expected {n}");
}

fn body(d: &Delivery) -> String {
    String::from_utf8(d.body.to_vec()).unwrap()
}

/// A consumer gets 6 of 10 messages (prefetch 6), acks the first 3, which
/// lets 3 more in, and its client closes: a new consumer gets the 6 unacked
/// ones back first, redelivered, in order, then the one never delivered,
/// not redelivered. The acked ones never come back.
fn redelivery_after_close(shard_aware: bool, via: usize) {
    let b = TestBroker::start();
    let url = b.shard_url(via);
    let q = queue_on(1 - via as u32, 2, "redeliver");
    run_local(common::TEST_DEADLINE, move || async move {
        let a = Client::connect(opts(url.clone(), shard_aware)).await.unwrap();
        a.declare(&q, false).await.unwrap();
        publish_all(&a, &q, (0..10).map(|i| format!("r-{i}"))).await;
        let mut ca = a.subscribe(&q, 6).await.unwrap();
        let mut tags = Vec::new();
        for i in 0..6 {
            let d = next(&mut ca).await;
            assert_eq!(body(&d), format!("r-{i}"));
            assert!(!d.redelivered);
            tags.push(d.tag);
        }
        nothing_more(&mut ca).await;
        for t in &tags[..3] {
            ca.ack(*t);
        }
        for i in 6..9 {
            assert_eq!(body(&next(&mut ca).await), format!("r-{i}"));
        }
        nothing_more(&mut ca).await;
        // close() sends the pending acks, then closes the sockets.
        a.close().await;
        drop(ca);

        let c = Client::connect(opts(url, shard_aware)).await.unwrap();
        // The broker requeues once it sees the connection end.
        wait_ready(&c, &q, 7).await;
        let mut cb = c.subscribe(&q, 100).await.unwrap();
        let mut got = Vec::new();
        for _ in 0..7 {
            let d = next(&mut cb).await;
            got.push((body(&d), d.redelivered));
            cb.ack(d.tag);
        }
        let want: Vec<(String, bool)> = (3..10).map(|i| (format!("r-{i}"), i < 9)).collect();
        assert_eq!(got, want, "unacked ones come back first, flagged; acked ones never");
        nothing_more(&mut cb).await;
        within("cancel", STEP, cb.cancel()).await.unwrap();
        assert_eq!(c.declare_passive(&q).await.unwrap(), 0);
        c.close().await;
    });
}

#[test]
fn redelivery_after_client_close_direct() {
    redelivery_after_close(true, 0);
}

#[test]
fn redelivery_after_client_close_forwarded() {
    redelivery_after_close(false, 1);
}

/// The consumer's socket is simply dropped, mid-stream, without acks.
#[test]
fn redelivery_after_socket_drop() {
    let b = TestBroker::start();
    for via in 0..2 {
        // One queue owned by the connection's shard, one forwarded.
        for owner in 0..2 {
            let q = queue_on(owner, 2, "drop");
            let (mut p, _) = Raw::hello(b.shards[1 - via]);
            p.declare(&q);
            let bodies: Vec<Vec<u8>> = (0..8).map(|i| format!("d-{i}").into_bytes()).collect();
            let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
            p.publish_confirmed(&q, &refs);

            let (mut r, _) = Raw::hello(b.shards[via]);
            let (cid, mut got) = r.subscribe(&q, 5);
            let rest = 5 - got.len();
            got.extend(r.expect_deliveries(cid, rest));
            assert_eq!(got.iter().map(|d| d.tag).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
            r.ack(cid, &[(1, 1), (3, 3)]);
            // Two acks, two more deliveries.
            let more = r.expect_deliveries(cid, 2);
            assert_eq!(more.iter().map(|d| d.tag).collect::<Vec<_>>(), [6, 7]);
            r.ping();
            drop(r);

            // The requeue happens when the broker notices the close.
            let deadline = std::time::Instant::now() + STEP;
            while p.declare(&q) != 6 {
                assert!(std::time::Instant::now() < deadline, "unacked messages were not requeued");
                std::thread::sleep(Duration::from_millis(20));
            }
            let (cid, mut got) = p.subscribe(&q, 100);
            let rest = 6 - got.len();
            got.extend(p.expect_deliveries(cid, rest));
            let seen: Vec<(String, bool)> =
                got.iter().map(|d| (String::from_utf8(d.body.clone()).unwrap(), d.redelivered)).collect();
            let want: Vec<(String, bool)> = [1, 3, 4, 5, 6, 7].iter().map(|i| (format!("d-{i}"), *i < 7)).collect();
            assert_eq!(seen, want, "via shard {via}, queue on shard {owner}");
            p.expect_silence();
            p.ack(cid, &[(1, 6)]);
            let rid = p.send(Cmd::Unsubscribe { consumer_id: cid });
            p.expect_ok(rid);
            assert_eq!(p.declare(&q), 0);
        }
    }
}

/// With prefetch N and no acks exactly N arrive; acking k lets k more in.
fn prefetch_respected(shard_aware: bool, via: usize) {
    let b = TestBroker::start();
    let url = b.shard_url(via);
    let q = queue_on(1 - via as u32, 2, "prefetch");
    run_local(common::TEST_DEADLINE, move || async move {
        let c = Client::connect(opts(url, shard_aware)).await.unwrap();
        c.declare(&q, false).await.unwrap();
        publish_all(&c, &q, (0..30).map(|i| format!("p-{i}"))).await;
        let mut consumer = c.subscribe(&q, 7).await.unwrap();
        let mut held = Vec::new();
        for i in 0..7 {
            let d = next(&mut consumer).await;
            assert_eq!(body(&d), format!("p-{i}"));
            held.push(d.tag);
        }
        nothing_more(&mut consumer).await;
        assert_eq!(consumer.buffered(), 0);

        // Ack 3 (not the oldest ones): exactly 3 more arrive.
        for t in [held[1], held[4], held[6]] {
            consumer.ack(t);
        }
        for i in 7..10 {
            assert_eq!(body(&next(&mut consumer).await), format!("p-{i}"));
        }
        nothing_more(&mut consumer).await;

        // Ack one more: one more arrives.
        consumer.ack(held[0]);
        assert_eq!(body(&next(&mut consumer).await), "p-10");
        nothing_more(&mut consumer).await;
        assert_eq!(c.declare_passive(&q).await.unwrap(), 19, "the rest waits in the queue");
        c.close().await;
    });
}

#[test]
fn prefetch_respected_direct() {
    prefetch_respected(true, 0);
}

#[test]
fn prefetch_respected_forwarded() {
    prefetch_respected(false, 0);
}

/// Prefetch 1 with a raw socket: exactly one Deliver of one message.
#[test]
fn prefetch_one_raw() {
    let b = TestBroker::start();
    let q = queue_on(1, 2, "pf1");
    let (mut r, _) = Raw::hello(b.shards[0]);
    r.declare(&q);
    r.publish_confirmed(&q, &[b"a", b"b", b"c"]);
    let (cid, mut got) = r.subscribe(&q, 1);
    if got.is_empty() {
        got = r.expect_deliveries(cid, 1);
    }
    assert_eq!(got.len(), 1);
    r.expect_silence();
    r.ack(cid, &[(1, 1)]);
    let d = r.expect_deliveries(cid, 1);
    assert_eq!((d[0].tag, d[0].body.as_slice()), (2, &b"b"[..]));
    r.expect_silence();
}

fn nack(shard_aware: bool, via: usize) {
    let b = TestBroker::start();
    let url = b.shard_url(via);
    let q = queue_on(1 - via as u32, 2, "nack");
    run_local(common::TEST_DEADLINE, move || async move {
        let c = Client::connect(opts(url.clone(), shard_aware)).await.unwrap();
        c.declare(&q, false).await.unwrap();
        publish_all(&c, &q, ["a", "b", "c"].map(String::from)).await;
        let mut consumer = c.subscribe(&q, 10).await.unwrap();
        let a = next(&mut consumer).await;
        let b = next(&mut consumer).await;
        let cc = next(&mut consumer).await;
        assert_eq!([body(&a), body(&b), body(&cc)], ["a", "b", "c"]);
        assert!(!a.redelivered);

        consumer.nack(a.tag, true);
        let again = next(&mut consumer).await;
        assert_eq!(body(&again), "a", "a requeued message comes back");
        assert!(again.redelivered, "flagged redelivered");
        assert_eq!(again.tag, 4, "with a new tag");

        consumer.nack(b.tag, false);
        consumer.ack(cc.tag);
        nothing_more(&mut consumer).await;
        consumer.ack(again.tag);
        within("cancel", STEP, consumer.cancel()).await.unwrap();
        assert_eq!(c.declare_passive(&q).await.unwrap(), 0, "a nack without requeue drops the message");
        c.close().await;

        // Nothing left for anybody.
        let c = Client::connect(opts(url, shard_aware)).await.unwrap();
        glommio::timer::sleep(Duration::from_millis(100)).await;
        assert!(c.get(&q, true).await.unwrap().is_none());
        c.close().await;
    });
}

#[test]
fn nack_requeue_and_drop_direct() {
    nack(true, 1);
}

#[test]
fn nack_requeue_and_drop_forwarded() {
    nack(false, 1);
}

/// Two consumers on one queue, one on the owner's connection and one
/// forwarded from the other shard, share the messages in turn.
#[test]
fn round_robin_between_two_consumers() {
    let b = TestBroker::start();
    let (url0, url1) = (b.shard_url(0), b.shard_url(1));
    let q = queue_on(0, 2, "rr");
    assert_eq!(owner2(&q), 0);
    run_local(common::TEST_DEADLINE, move || async move {
        let c0 = Client::connect(opts(url0, false)).await.unwrap();
        let c1 = Client::connect(opts(url1, false)).await.unwrap();
        c0.declare(&q, false).await.unwrap();
        let mut k0 = c0.subscribe(&q, 100).await.unwrap();
        let mut k1 = c1.subscribe(&q, 100).await.unwrap();

        // One batch of 20.
        publish_all(&c0, &q, (0..20).map(|i| i.to_string())).await;
        let mut got0 = Vec::new();
        let mut got1 = Vec::new();
        for _ in 0..10 {
            let d = next(&mut k0).await;
            got0.push(body(&d).parse::<u32>().unwrap());
            k0.ack(d.tag);
            let d = next(&mut k1).await;
            got1.push(body(&d).parse::<u32>().unwrap());
            k1.ack(d.tag);
        }
        nothing_more(&mut k0).await;
        nothing_more(&mut k1).await;
        let evens: Vec<u32> = (0..20).step_by(2).collect();
        let odds: Vec<u32> = (1..20).step_by(2).collect();
        assert!(
            (got0 == evens && got1 == odds) || (got0 == odds && got1 == evens),
            "messages alternate between the consumers: {got0:?} / {got1:?}"
        );

        // Messages one at a time keep alternating.
        let mut turns = Vec::new();
        for i in 0..6 {
            publish_all(&c1, &q, [format!("x{i}")]).await;
            let which =
                futures_lite::future::or(async { (0, next(&mut k0).await) }, async { (1, next(&mut k1).await) }).await;
            turns.push(which.0);
            let d = which.1;
            assert_eq!(body(&d), format!("x{i}"));
            if which.0 == 0 {
                k0.ack(d.tag);
            } else {
                k1.ack(d.tag);
            }
        }
        assert!(turns.windows(2).all(|w| w[0] != w[1]), "one message each in turn: {turns:?}");
        nothing_more(&mut k0).await;
        nothing_more(&mut k1).await;
        drop((k0, k1));
        c0.close().await;
        c1.close().await;
    });
}

/// docs/protocol.md: "On success the broker replies Ok, then sends Deliver
/// frames". A client may rely on it to know the subscription exists before
/// its first message.
#[test]
fn subscribe_ok_comes_before_deliveries() {
    let b = TestBroker::start();
    for via in 0..2 {
        for owner in 0..2 {
            let q = queue_on(owner, 2, "okfirst");
            let (mut r, _) = Raw::hello(b.shards[via]);
            r.declare(&q);
            r.publish_confirmed(&q, &[b"1", b"2"]);
            let rid = r.send(Cmd::Subscribe { consumer_id: 1, prefetch: 10, queue: &q, priority: 0, origin: false });
            let first = r.recv();
            match first.frame() {
                ringmq::protocol::Frame { request_id, cmd: Cmd::Ok { .. } } if request_id == rid => {}
                other => panic!("via shard {via}, queue on shard {owner}: expected Ok first, got {other:?}"),
            }
            assert_eq!(r.expect_deliveries(1, 2).len(), 2);
        }
    }
}

/// Acks taken with `Consumer::ack` reach the broker even when the consumer
/// is dropped right after (what `ringmq sub` does before `client.close()`):
/// the acked messages must not be redelivered to the next consumer.
#[test]
fn acks_are_sent_when_the_consumer_is_dropped() {
    let b = TestBroker::start();
    let url = b.url();
    let q = queue_on(1, 2, "dropacks");
    run_local(common::TEST_DEADLINE, move || async move {
        let c = Client::connect(opts(url.clone(), true)).await.unwrap();
        c.declare(&q, false).await.unwrap();
        publish_all(&c, &q, (0..300).map(|i| i.to_string())).await;
        let mut consumer = c.subscribe(&q, 1000).await.unwrap();
        for i in 0..300 {
            let d = next(&mut consumer).await;
            assert_eq!(body(&d), i.to_string());
            consumer.ack(d.tag);
        }
        drop(consumer);
        c.close().await;

        let c = Client::connect(opts(url, true)).await.unwrap();
        // Give the broker time to requeue anything unacked (it must not).
        glommio::timer::sleep(Duration::from_millis(300)).await;
        assert_eq!(c.declare_passive(&q).await.unwrap(), 0, "acked messages came back after the consumer was dropped");
        c.close().await;
    });
}

/// Consumer priorities through the native client (`ConsumerOptions`), the
/// consumers on both shards (one local to the queue, one forwarded): the
/// high one takes every message while it has credit, the low one only
/// while the high one is blocked (prefetch full, not acking), the high one
/// again once it acks; equal priorities share round-robin.
#[test]
fn consumer_priorities() {
    let b = TestBroker::start();
    let (url0, url1) = (b.shard_url(0), b.shard_url(1));
    let q = queue_on(0, 2, "prio");
    run_local(common::TEST_DEADLINE, move || async move {
        let c0 = Client::connect(opts(url0, false)).await.unwrap();
        let c1 = Client::connect(opts(url1, false)).await.unwrap();
        c0.declare(&q, false).await.unwrap();
        // The low one first: registration order must not matter.
        let mut low = c0.subscribe_with(&q, ConsumerOptions::new(100).priority(-3)).await.unwrap();
        let mut high = c1.subscribe_with(&q, ConsumerOptions::new(2).priority(i64::MAX)).await.unwrap();

        publish_all(&c0, &q, ["a", "b", "c", "d", "e"].map(String::from)).await;
        let (h1, h2) = (next(&mut high).await, next(&mut high).await);
        assert_eq!((body(&h1), body(&h2)), ("a".into(), "b".into()), "round-robin would give the high one a and c");
        for want in ["c", "d", "e"] {
            assert_eq!(body(&next(&mut low).await), want);
        }
        nothing_more(&mut high).await;

        // Acked, and the ack through (a round trip on its connection after
        // the task yielded to the ack sender): the high one is served again.
        high.ack(h1.tag);
        high.ack(h2.tag);
        glommio::executor().yield_task_queue_now().await;
        c1.declare_passive(&q).await.unwrap();
        publish_all(&c0, &q, ["f", "g"].map(String::from)).await;
        assert_eq!((body(&next(&mut high).await), body(&next(&mut high).await)), ("f".into(), "g".into()));
        nothing_more(&mut low).await;
        drop((low, high));

        // Two at priority 1 above the default: they alternate, the default
        // one gets nothing.
        let q2 = queue_on(1, 2, "prio-rr");
        c0.declare(&q2, false).await.unwrap();
        let mut zero = c0.subscribe(&q2, 100).await.unwrap();
        let mut x = c0.subscribe_with(&q2, ConsumerOptions::new(100).priority(1)).await.unwrap();
        let mut y = c1.subscribe_with(&q2, ConsumerOptions::new(100).priority(1)).await.unwrap();
        publish_all(&c1, &q2, (0..6).map(|i| i.to_string())).await;
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(body(&next(&mut x).await));
            got.push(body(&next(&mut y).await));
        }
        got.sort();
        assert_eq!(got, ["0", "1", "2", "3", "4", "5"]);
        nothing_more(&mut zero).await;
        drop((zero, x, y));
        c0.close().await;
        c1.close().await;
    });
}
