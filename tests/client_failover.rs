//! Failover (docs/client-recovery.md, "Recovery", "Failover"; issue 21 item 2): a
//! tokio client with recovery, connected by URL to node n1 of a cluster of
//! three `ringmq serve` processes, consumes and publishes with confirms on
//! a queue that lives on n2; n1 is killed with `kill -9` for good. The
//! client's first connection (its declares, locates, admin calls) moves to
//! another node of the cluster map, the events say so (Disconnected from
//! n1, Reconnected to n2 or n3), the declarations are replayed through the
//! new node (the queue on n2 is declared again, the two that lived on n1
//! are counted as failed, and the connection to n1's other shard stays
//! down without holding anything up), publishing and consuming on n2 go on, and every
//! confirmed message is received at least once. The glommio client does
//! the same (`glommio_client_fails_over_too`): its rounds of redials are
//! the same core's (`client::core::rounds`).
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod cluster;
mod common;

use cluster::{three, Node};
use common::{body_seq, seq_body, STEP};
use futures_lite::StreamExt;
use ringmq::client::tokio::Client;
use ringmq::client::{ClientOptions, Event, ProducerOptions, Recovery};
use ringmq::protocol::ErrorCode;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Books {
    confirmed: BTreeSet<u64>,
    /// Times each sequence number was received.
    received: HashMap<u64, u32>,
}

fn count(events: &Mutex<Vec<Event>>, f: impl Fn(&Event) -> bool) -> usize {
    events.lock().unwrap().iter().filter(|e| f(e)).count()
}

#[test]
fn first_connection_fails_over_when_its_node_dies_for_good() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = three(root.path());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let started = Instant::now();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(40), scenario(&mut nodes)).await.expect("within 40 s")
    });
    assert!(started.elapsed() < Duration::from_secs(40), "under 40 s: {:?}", started.elapsed());
}

async fn scenario(nodes: &mut [Node]) {
    let (u1, u2) = (format!("ringmq://{}", nodes[0].native), format!("ringmq://{}", nodes[1].native));
    let n1_url = nodes[0].native;
    {
        // The queue lives on n2: declared there first.
        let placer = Client::connect(ClientOptions { url: u2, ..Default::default() }).await.unwrap();
        placer.declare("fo-live", true).await.unwrap();
        placer.close().await;

        let options = ClientOptions {
            url: u1,
            recovery: Some(Recovery {
                backoff_min: Duration::from_millis(50),
                backoff_max: Duration::from_millis(400),
                ..Default::default()
            }),
            ..Default::default()
        };
        let client = tokio::time::timeout(STEP, Client::connect(options)).await.unwrap().unwrap();
        // n1's addresses: its shards', and the URL's (the first connection's).
        let mut n1_shards: Vec<SocketAddr> = client.info().shard_addrs.clone();
        n1_shards.push(n1_url);
        let map = client.cluster_map();
        assert_eq!(map.nodes.len(), 3, "the map lists every node");
        let events = Arc::new(Mutex::new(Vec::new()));
        {
            let mut stream = client.events();
            let events = events.clone();
            tokio::spawn(async move {
                while let Some(e) = stream.next().await {
                    events.lock().unwrap().push(e);
                }
            });
        }
        // Recorded: a redeclare of n2's queue, and a queue that lives on n1.
        client.declare("fo-live", true).await.unwrap();
        client.declare("fo-on-n1", false).await.unwrap();
        // And one on n1's other shard, with a consumer: a second connection
        // to n1, which stays down without holding up the failover.
        let info = client.info().clone();
        let other = (0..).map(|i| format!("fo-n1-other-{i}")).find(|q| info.owner_of(q) != info.shard_id).unwrap();
        client.declare(&other, false).await.unwrap();
        let mut stranded = client.subscribe(&other, 10).await.unwrap();
        let carrier = client.conn_for("fo-live").await.unwrap();
        assert!(!n1_shards.contains(&carrier.addr()), "fo-live's traffic goes straight to n2");

        let books = Arc::new(Mutex::new(Books::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut consumer = client.subscribe("fo-live", 200).await.unwrap();
        let consuming = {
            let (books, stop) = (books.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Acquire) {
                    match tokio::time::timeout(Duration::from_millis(200), consumer.next()).await {
                        Ok(Some(Ok(d))) => {
                            *books.lock().unwrap().received.entry(body_seq(&d.body)).or_default() += 1;
                            consumer.ack(d.tag);
                        }
                        Ok(Some(Err(e))) => panic!("the consumer's stream yielded {e}: its node lives"),
                        Ok(None) => panic!("the consumer's stream ended"),
                        Err(_) => {}
                    }
                }
                consumer
            })
        };
        let producer = Arc::new(
            client
                .producer("fo-live", ProducerOptions { persistent: true, batch_max: 32, ..Default::default() })
                .await
                .unwrap(),
        );
        let publishing = {
            let (books, stop, producer) = (books.clone(), stop.clone(), producer.clone());
            tokio::spawn(async move {
                let mut seq = 0u64;
                let mut waits = Vec::new();
                while !stop.load(Ordering::Acquire) {
                    let c = producer.publish(&seq_body(seq, 64)).await.expect("publishing to n2 goes on");
                    let books = books.clone();
                    waits.push(tokio::spawn(async move {
                        match c.await {
                            Ok(()) => _ = books.lock().unwrap().confirmed.insert(seq),
                            Err(e) => panic!("confirmation of {seq}: {e}: the queue's node lives"),
                        }
                    }));
                    seq += 1;
                    if seq.is_multiple_of(100) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                producer.flush().unwrap();
                for w in waits {
                    w.await.unwrap();
                }
            })
        };

        tokio::time::sleep(Duration::from_millis(1000)).await;
        let before_kill = books.lock().unwrap().confirmed.len();
        assert!(before_kill > 0, "confirms before the kill");
        nodes[0].kill();
        let killed_at = Instant::now();

        // The first connection moves to n2 or n3.
        let moved = |e: &Event| matches!(e, Event::Reconnected { addr, .. } if !n1_shards.contains(addr));
        let deadline = Instant::now() + Duration::from_secs(15);
        while count(&events, moved) == 0 {
            assert!(Instant::now() < deadline, "failed over within 15 s: {:?}", events.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let failover = killed_at.elapsed();
        let to = events.lock().unwrap().iter().find_map(|e| match e {
            Event::Reconnected { addr, .. } if !n1_shards.contains(addr) => Some(*addr),
            _ => None,
        });
        let to = to.unwrap();
        // (The map's order is the cluster's, not n1, n2, n3.)
        assert!(map.nodes.iter().any(|n| n.contains(&to)), "{to} is a shard of n2 or n3: {map:?}");
        let disconnected = |e: &Event| matches!(e, Event::Disconnected { addr, .. } if n1_shards.contains(addr));
        assert!(count(&events, disconnected) >= 2, "Disconnected from n1 (both connections) first");
        let replayed = |e: &Event| matches!(e, Event::TopologyRecovered { records: 3, failed: 2 });
        let deadline = Instant::now() + Duration::from_secs(10);
        while count(&events, replayed) == 0 {
            assert!(
                Instant::now() < deadline,
                "declarations replayed through the new node, the one on n1 failed: {:?}",
                events.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Each refusal was reported, with the broker's code.
        let refused: Vec<_> = events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                Event::RedeclareFailed { what, error } => Some((what.clone(), error.code())),
                _ => None,
            })
            .collect();
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert!(refused.iter().any(|(w, _)| w == "queue fo-on-n1"), "{refused:?}");
        let gone = Some(ErrorCode::NodeUnavailable);
        assert!(refused.iter().all(|(_, c)| *c == gone), "the broker answered NodeUnavailable: {refused:?}");
        eprintln!("refused on replay: {refused:?}");
        // Admin traffic goes through the new node: a new queue is placed there.
        // (A new queue's placement needs the cluster's leader: while n2 and
        // n3 elect one, n1 having led, the broker answers ClusterUnavailable.)
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match tokio::time::timeout(STEP, client.declare("fo-after", false)).await.unwrap() {
                Ok(_) => break,
                Err(e) if e.code() == Some(ErrorCode::ClusterUnavailable) && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("declaring through the new node: {e}"),
            }
        }
        let admin_back = killed_at.elapsed();

        // Publishing and consuming on n2 went on.
        let at_failover = books.lock().unwrap().confirmed.len();
        let deadline = Instant::now() + Duration::from_secs(10);
        while books.lock().unwrap().confirmed.len() < at_failover + 2000 {
            assert!(Instant::now() < deadline, "confirms after the failover");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.store(true, Ordering::Release);
        publishing.await.unwrap();
        let mut consumer = consuming.await.unwrap();

        let confirmed = books.lock().unwrap().confirmed.clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let missing = {
                let b = books.lock().unwrap();
                confirmed.iter().filter(|s| !b.received.contains_key(s)).count()
            };
            if missing == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{missing} confirmed messages never received");
            if let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(200), consumer.next()).await {
                let d = d.unwrap();
                *books.lock().unwrap().received.entry(body_seq(&d.body)).or_default() += 1;
                consumer.ack(d.tag);
            }
        }
        let duplicates: u32 = books.lock().unwrap().received.values().map(|n| n - 1).sum();
        eprintln!(
            "{before_kill} confirmed before the kill, {} in all, every one received ({duplicates} duplicates); \
             failed over to {to} after {failover:?}, a new queue declared after {admin_back:?}; events {:?}",
            confirmed.len(),
            events.lock().unwrap()
        );
        // The consumer of the queue on n1 is still there, waiting for its
        // node: no error, no end.
        let quiet = tokio::time::timeout(Duration::from_millis(300), stranded.next()).await;
        assert!(quiet.is_err(), "n1's consumer waits: {quiet:?}");
        client.close().await;
    }
}

/// The glommio client, on one executor: connected by URL to n1, it
/// consumes and publishes with confirms on a queue living on n2 (and
/// subscribes to one on n1's other shard) while another thread kills n1
/// with `kill -9` for good once confirms flow. Its first connection moves
/// to n2 or n3, the declarations are replayed there (the queue on n1
/// refused with `NodeUnavailable`), a new queue is declared through it,
/// publishing goes on, and every confirmed message is received.
#[test]
fn glommio_client_fails_over_too() {
    let root = tempfile::tempdir().unwrap();
    let nodes = Arc::new(Mutex::new(three(root.path())));
    let (u1, u2, n1_url) = {
        let n = nodes.lock().unwrap();
        (format!("ringmq://{}", n[0].native), format!("ringmq://{}", n[1].native), n[0].native)
    };
    let confirming = Arc::new(AtomicBool::new(false));
    let killer = {
        let (nodes, confirming) = (nodes.clone(), confirming.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !confirming.load(Ordering::Acquire) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            nodes.lock().unwrap()[0].kill();
            Instant::now()
        })
    };
    let started = Instant::now();
    let report = common::run_local(Duration::from_secs(40), move || glommio_scenario(u1, u2, n1_url, confirming));
    let killed_at = killer.join().unwrap();
    eprintln!("glommio: {report}; the whole test {:?} ({:?} after the kill)", started.elapsed(), killed_at.elapsed());
    drop(nodes);
}

async fn glommio_scenario(u1: String, u2: String, n1_url: SocketAddr, confirming: Arc<AtomicBool>) -> String {
    use std::cell::RefCell;
    use std::rc::Rc;
    let placer = ringmq::client::Client::connect(ClientOptions { url: u2, ..Default::default() }).await.unwrap();
    placer.declare("gfo-live", true).await.unwrap();
    placer.close().await;
    let options = ClientOptions {
        url: u1,
        recovery: Some(Recovery {
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_millis(400),
            ..Default::default()
        }),
        ..Default::default()
    };
    let client = ringmq::client::Client::connect(options).await.unwrap();
    let mut n1_shards: Vec<SocketAddr> = client.info().shard_addrs.clone();
    n1_shards.push(n1_url);
    assert_eq!(client.cluster_map().nodes.len(), 3, "the map lists every node");
    let events = common::recovery::events(client.events());
    client.declare("gfo-live", true).await.unwrap();
    client.declare("gfo-on-n1", false).await.unwrap();
    let info = client.info().clone();
    let other = (0..).map(|i| format!("gfo-n1-other-{i}")).find(|q| info.owner_of(q) != info.shard_id).unwrap();
    client.declare(&other, false).await.unwrap();
    let mut stranded = client.subscribe(&other, 10).await.unwrap();
    let carrier = client.conn_for("gfo-live").await.unwrap();
    assert!(!n1_shards.contains(&carrier.addr()), "gfo-live's traffic goes straight to n2");

    let confirmed = Rc::new(RefCell::new(BTreeSet::new()));
    let received: common::recovery::Received = Rc::default();
    let stop = Rc::new(std::cell::Cell::new(false));
    let consumer = client.subscribe("gfo-live", 200).await.unwrap();
    let consuming = common::recovery::consume(consumer, received.clone(), stop.clone());
    let producer = client
        .producer("gfo-live", ProducerOptions { persistent: true, batch_max: 32, ..Default::default() })
        .await
        .unwrap();
    let moved = |e: &Event| matches!(e, Event::Reconnected { addr, .. } if !n1_shards.contains(addr));
    let replayed = |e: &Event| matches!(e, Event::TopologyRecovered { records: 3, failed: 2 });
    let started = Instant::now();
    let (mut seq, mut waits, mut at_failover) = (0u64, Vec::new(), None);
    loop {
        let n = confirmed.borrow().len();
        if n > 0 && started.elapsed() > Duration::from_millis(800) {
            confirming.store(true, Ordering::Release);
        }
        if at_failover.is_none() && events.borrow().iter().any(replayed) {
            at_failover = Some(n);
        }
        if at_failover.is_some_and(|at| n >= at + 1500) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(25),
            "failed over and publishing went on: {:?}",
            events.borrow()
        );
        waits.push(common::recovery::publish(&producer, seq, &confirmed).await);
        seq += 1;
    }
    common::recovery::settle(&producer, waits).await;
    stop.set(true);
    let mut consumer = consuming.await;
    let to = events.borrow().iter().find(|e| moved(e)).cloned();
    assert!(to.is_some(), "Reconnected to n2 or n3: {:?}", events.borrow());
    let refused: Vec<_> = events
        .borrow()
        .iter()
        .filter_map(|e| match e {
            Event::RedeclareFailed { what, error } => Some((what.clone(), error.code())),
            _ => None,
        })
        .collect();
    assert!(refused.iter().any(|(w, _)| w == "queue gfo-on-n1"), "{refused:?}");
    assert!(refused.iter().all(|(_, c)| *c == Some(ErrorCode::NodeUnavailable)), "{refused:?}");
    // Admin traffic goes through the new node (once n2 and n3 elected a
    // leader, n1 having led).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match client.declare("gfo-after", false).await {
            Ok(_) => break,
            Err(e) if e.code() == Some(ErrorCode::ClusterUnavailable) && Instant::now() < deadline => {
                glommio::timer::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("declaring through the new node: {e}"),
        }
    }

    let all = confirmed.borrow().clone();
    let missing = common::recovery::drain(&mut consumer, &all, &received).await;
    assert_eq!(missing, 0, "every confirmed message received");
    // n1's consumer waits for its node: no error, no end.
    let quiet = glommio::timer::timeout(Duration::from_millis(300), async { Ok(stranded.next().await) }).await;
    assert!(quiet.is_err(), "n1's consumer waits: {quiet:?}");
    client.close().await;
    let duplicates: u32 = received.borrow().values().map(|n| n - 1).sum();
    format!(
        "{} confirmed, every one received ({duplicates} duplicates), {} after the failover; events {:?}",
        confirmed.borrow().len(),
        confirmed.borrow().len() - at_failover.unwrap_or(0),
        events.borrow()
    )
}
