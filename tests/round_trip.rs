//! Round trips through the async client over both paths of a 2-shard
//! broker: direct (shard-aware: each queue's traffic goes to its owner's
//! own address) and forwarded (everything over one connection to a shard
//! that does not own the queue, so the broker forwards over its mesh).
//! Also FIFO order within a queue across many publish batches.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::{body_seq, maybe_within, owner2, queue_on, run_local, seq_body, within, TestBroker, QUIET, STEP};
use futures_lite::StreamExt;
use ringmq::client::{Client, ClientOptions, ProducerOptions};
use ringmq::protocol::ErrorCode;
use std::time::Duration;

fn direct(url: String) -> ClientOptions {
    ClientOptions { url, shard_aware: true, ..Default::default() }
}

fn forwarded(url: String) -> ClientOptions {
    ClientOptions { url, shard_aware: false, ..Default::default() }
}

/// Connects and checks the shard map against the broker's.
async fn connect(opts: ClientOptions, shards: &[std::net::SocketAddr]) -> Client {
    let c = within("connect", STEP, Client::connect(opts)).await.expect("connect");
    assert_eq!(c.info().shard_addrs, shards, "HelloOk carries every shard's address");
    assert_eq!(c.info().shard_count(), 2);
    c
}

/// The shard whose connection carries `queue`'s traffic in this client.
async fn carrier(c: &Client, queue: &str) -> u16 {
    c.conn_for(queue).await.expect("connection for queue").info().shard_id
}

/// Declare, publish with confirms, consume in order, ack; then check the
/// acks took (nothing comes back when the subscription ends).
async fn publish_consume_ack(c: &Client, queue: &str) {
    assert_eq!(c.declare(queue, false).await.unwrap(), 0, "new queue");
    let p = c.producer(queue, ProducerOptions { batch_max: 16, confirm: true, ..Default::default() }).await.unwrap();
    within("send", STEP, p.send(b"m-0")).await.expect("first message confirmed");
    let mut confs = Vec::new();
    for i in 1..50 {
        confs.push(p.publish(format!("m-{i}").as_bytes()).await.unwrap());
    }
    p.flush().unwrap();
    for conf in confs {
        within("confirm", STEP, conf).await.expect("confirmed");
    }
    assert_eq!(c.declare_passive(queue).await.unwrap(), 50, "every confirmed message is ready");

    let mut consumer = c.subscribe(queue, 100).await.unwrap();
    let mut tags = Vec::new();
    for i in 0..50 {
        let d = within("delivery", STEP, consumer.next()).await.expect("stream open").expect("delivery");
        assert_eq!(d.body, format!("m-{i}").as_bytes(), "FIFO");
        assert!(!d.redelivered);
        tags.push(d.tag);
        consumer.ack(d.tag);
    }
    assert_eq!(tags, (1..=50).collect::<Vec<u64>>(), "tags count up from 1 per consumer");
    assert!(maybe_within(QUIET, consumer.next()).await.is_none(), "nothing beyond what was published");
    // Unsubscribing requeues what is unacked: nothing, if the acks took.
    within("cancel", STEP, consumer.cancel()).await.unwrap();
    assert_eq!(c.declare_passive(queue).await.unwrap(), 0, "acked messages are not requeued");
    assert_eq!(c.delete(queue).await.unwrap(), 0);
}

/// Declare, purge, delete and get (with and without ack).
async fn queue_ops(c: &Client, queue: &str) {
    assert_eq!(c.declare(queue, false).await.unwrap(), 0);
    let p = c.producer(queue, ProducerOptions { batch_max: 5, ..Default::default() }).await.unwrap();
    let mut confs = Vec::new();
    for i in 0..5 {
        confs.push(p.publish(format!("g-{i}").as_bytes()).await.unwrap());
    }
    for conf in confs {
        within("confirm", STEP, conf).await.unwrap();
    }
    assert_eq!(c.declare(queue, false).await.unwrap(), 5, "declare of an existing queue: its ready count");
    let e = c.declare(queue, true).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::QueueMismatch), "{e}");

    let d0 = c.get(queue, false).await.unwrap().expect("a message");
    assert_eq!(d0.body, &b"g-0"[..]);
    assert!(!d0.redelivered);
    assert_eq!(d0.tag, 1);
    let d1 = c.get(queue, true).await.unwrap().expect("a message");
    assert_eq!(d1.body, &b"g-1"[..]);
    c.ack_get(queue, &d0).await.unwrap();
    let d2 = c.get(queue, false).await.unwrap().expect("a message");
    assert_eq!(d2.body, &b"g-2"[..]);
    // d2 stays unacked.
    assert_eq!(c.purge(queue).await.unwrap(), 2, "purge removes the ready messages");
    // The purge reply follows any error for the ack on the same path.
    assert!(c.conn_for(queue).await.unwrap().take_error().is_none(), "ack of a got message is accepted");
    assert!(c.get(queue, false).await.unwrap().is_none(), "empty after purge");
    assert_eq!(c.declare_passive(queue).await.unwrap(), 0);
}

/// After the client that got `g-2` without acking it closes, it is ready
/// again, redelivered; then the queue is deleted.
async fn unacked_get_comes_back(c: &Client, queue: &str) {
    let mut back = None;
    for _ in 0..40 {
        back = c.get(queue, false).await.unwrap();
        if back.is_some() {
            break;
        }
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
    let d = back.expect("the unacked got message is requeued when its connection closes");
    assert_eq!(d.body, &b"g-2"[..]);
    assert!(d.redelivered);
    c.ack_get(queue, &d).await.unwrap();
    assert_eq!(c.delete(queue).await.unwrap(), 0);
    let e = c.declare_passive(queue).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::QueueNotFound), "{e}");
    let e = c.get(queue, false).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::QueueNotFound), "{e}");
    let e = c.purge(queue).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::QueueNotFound), "{e}");
    // Deleted already: a second delete answers 0, as RabbitMQ's does.
    assert_eq!(c.delete(queue).await.unwrap(), 0);
}

#[test]
fn direct_path_round_trip() {
    let b = TestBroker::start();
    let (url, shards) = (b.url(), b.shards.clone());
    run_local(common::TEST_DEADLINE, move || async move {
        let c = connect(direct(url), &shards).await;
        for owner in 0..2u32 {
            let q = queue_on(owner, 2, "direct");
            assert_eq!(u32::from(carrier(&c, &q).await), owner, "shard-aware: the owner's connection");
            publish_consume_ack(&c, &q).await;
        }
        c.close().await;
    });
}

#[test]
fn forwarded_path_round_trip() {
    let b = TestBroker::start();
    let shards = b.shards.clone();
    run_local(common::TEST_DEADLINE, move || async move {
        for via in 0..2u16 {
            let c = connect(forwarded(format!("ringmq://{}", shards[usize::from(via)])), &shards).await;
            assert_eq!(c.info().shard_id, via);
            let q = queue_on(1 - u32::from(via), 2, "fwd");
            assert_ne!(owner2(&q), u32::from(via), "the queue lives on the other shard");
            assert_eq!(carrier(&c, &q).await, via, "not shard-aware: everything over the first connection");
            publish_consume_ack(&c, &q).await;
            c.close().await;
        }
    });
}

#[test]
fn direct_path_queue_operations() {
    let b = TestBroker::start();
    let (url, shards) = (b.url(), b.shards.clone());
    run_local(common::TEST_DEADLINE, move || async move {
        let qs = [queue_on(0, 2, "ops-direct"), queue_on(1, 2, "ops-direct")];
        let c = connect(direct(url.clone()), &shards).await;
        for q in &qs {
            assert_eq!(u32::from(carrier(&c, q).await), owner2(q));
            queue_ops(&c, q).await;
        }
        c.close().await;
        let c = connect(direct(url), &shards).await;
        for q in &qs {
            unacked_get_comes_back(&c, q).await;
        }
        c.close().await;
    });
}

#[test]
fn forwarded_path_queue_operations() {
    let b = TestBroker::start();
    let shards = b.shards.clone();
    run_local(common::TEST_DEADLINE, move || async move {
        for via in 0..2u16 {
            let url = format!("ringmq://{}", shards[usize::from(via)]);
            let q = queue_on(1 - u32::from(via), 2, "ops-fwd");
            let c = connect(forwarded(url.clone()), &shards).await;
            assert_eq!(carrier(&c, &q).await, via);
            assert_ne!(owner2(&q), u32::from(via));
            queue_ops(&c, &q).await;
            c.close().await;
            let c = connect(forwarded(url), &shards).await;
            unacked_get_comes_back(&c, &q).await;
            c.close().await;
        }
    });
}

const FIFO_COUNT: u64 = 10_000;

/// Receives `FIFO_COUNT` numbered messages and checks their order.
async fn consume_in_order(cc: Client, queue: String) {
    let mut consumer = cc.subscribe(&queue, 1000).await.unwrap();
    for want in 0..FIFO_COUNT {
        let d = within("delivery", STEP, consumer.next()).await.unwrap().unwrap();
        assert_eq!(body_seq(&d.body), want, "messages arrive in publish order");
        assert!(!d.redelivered);
        consumer.ack(d.tag);
    }
    assert!(maybe_within(QUIET, consumer.next()).await.is_none(), "no extra message");
    drop(consumer);
    cc.close().await;
}

/// Publishes `FIFO_COUNT` numbered messages with confirms, in batches of
/// `batch`, through `producer_opts` while a consumer through
/// `consumer_opts` (subscribed before publishing when `live`, after when
/// not) checks the order.
fn fifo(producer_opts: ClientOptions, consumer_opts: ClientOptions, queue: String, batch: u32, live: bool) {
    run_local(common::TEST_DEADLINE, move || async move {
        let pc = Client::connect(producer_opts).await.unwrap();
        let cc = Client::connect(consumer_opts).await.unwrap();
        assert_ne!(carrier(&pc, &queue).await, carrier(&cc, &queue).await, "one side is forwarded");
        pc.declare(&queue, false).await.unwrap();
        let mut cc = Some(cc);
        let task =
            if live { Some(glommio::spawn_local(consume_in_order(cc.take().unwrap(), queue.clone()))) } else { None };
        let p = pc
            .producer(&queue, ProducerOptions { batch_max: batch, confirm: true, ..Default::default() })
            .await
            .unwrap();
        let mut last = None;
        let mut batches = std::collections::BTreeSet::new();
        for seq in 0..FIFO_COUNT {
            let conf = p.publish(&seq_body(seq, 24)).await.unwrap();
            batches.insert(conf.batch());
            // Wait for a confirm now and then, so they are checked as we go.
            if let Some(prev) = last.replace(conf) {
                if seq % 1000 == 0 {
                    within("confirm", STEP, prev).await.expect("batch confirmed");
                }
            }
        }
        p.flush().unwrap();
        within("last confirm", STEP, last.unwrap()).await.expect("last batch confirmed");
        assert!(batches.len() as u64 >= FIFO_COUNT / u64::from(batch), "{} batches", batches.len());
        match task {
            Some(task) => within("consumer", common::TEST_DEADLINE, task).await,
            None => {
                assert_eq!(pc.declare_passive(&queue).await.unwrap(), FIFO_COUNT, "every confirmed message is ready");
                consume_in_order(cc.take().unwrap(), queue.clone()).await;
            }
        }
        assert_eq!(pc.declare_passive(&queue).await.unwrap(), 0);
        pc.close().await;
    });
}

#[test]
fn fifo_live_consumer_direct_producer_forwarded_consumer() {
    let b = TestBroker::start();
    let q = queue_on(0, 2, "fifo-live");
    fifo(direct(b.url()), forwarded(b.shard_url(1)), q, 250, true);
}

#[test]
fn fifo_backlog_forwarded_producer_direct_consumer() {
    let b = TestBroker::start();
    let q = queue_on(1, 2, "fifo-backlog");
    fifo(forwarded(b.shard_url(0)), direct(b.url()), q, 333, false);
}

/// `Client::get` many times on one client: each pull must not leave a
/// consumer behind on the connection (docs/protocol.md: later Gets from
/// the same queue reuse the pull consumer), or the client runs into
/// consumers_per_connection_max.
#[test]
fn many_gets_on_one_client() {
    let b = TestBroker::start_with(2, |c| c.consumers_per_connection_max = 8);
    let url = b.url();
    run_local(common::TEST_DEADLINE, move || async move {
        let c = Client::connect(direct(url)).await.unwrap();
        let q = queue_on(0, 2, "gets");
        c.declare(&q, false).await.unwrap();
        let p = c.producer(&q, ProducerOptions::default()).await.unwrap();
        let mut last = None;
        for i in 0..20 {
            last = Some(p.publish(format!("{i}").as_bytes()).await.unwrap());
        }
        within("confirm", STEP, last.unwrap()).await.unwrap();
        for i in 0..20 {
            let d = c.get(&q, false).await.unwrap_or_else(|e| panic!("get #{i}: {e}")).expect("a message");
            assert_eq!(d.body, i.to_string().as_bytes());
            c.ack_get(&q, &d).await.unwrap();
        }
        assert!(c.get(&q, false).await.unwrap().is_none());
        c.close().await;
    });
}
