//! Automatic recovery (docs/client-recovery.md, "Recovery"; issue 21 item 2):
//! `kill -9` a real `ringmq serve` while a tokio client with recovery
//! publishes persistent messages with confirms and another consumes,
//! restart it on the same ports and data dir, and check that the
//! application carries on: publishing resumes, the consumer's stream goes
//! on, the events say Disconnected, Reconnected, TopologyRecovered and
//! Resubscribed, a transient queue is declared again, and every confirmed
//! message is received at least once (by the sequence numbers in the
//! bodies, as the loadgen's checker counts; duplicates allowed, counted).
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::process::{free_ports, serve_at as serve};
use common::{body_seq, queue_on, seq_body};
use futures_lite::StreamExt;
use ringmq::client::tokio::Client;
use ringmq::client::{ClientError, ClientOptions, Event, ExchangeOptions, ProducerOptions, Recovery, Unconfirmed};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn options(port: u16, unconfirmed: Unconfirmed) -> ClientOptions {
    ClientOptions {
        url: format!("ringmq://127.0.0.1:{port}"),
        recovery: Some(Recovery {
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_millis(400),
            attempts_max: 200,
            unconfirmed,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[derive(Default)]
struct Books {
    confirmed: BTreeSet<u64>,
    failed: u64,
    /// Times each sequence number was received.
    received: HashMap<u64, u32>,
    redelivered: u64,
}

fn events_of(client: &Client, into: Arc<Mutex<Vec<Event>>>) {
    let mut events = client.events();
    tokio::spawn(async move {
        while let Some(e) = events.next().await {
            into.lock().unwrap().push(e);
        }
    });
}

fn saw(events: &Mutex<Vec<Event>>, f: impl Fn(&Event) -> bool) -> bool {
    events.lock().unwrap().iter().any(f)
}

#[test]
fn kill_9_mid_run_and_the_application_carries_on() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(40), scenario(Unconfirmed::Republish, 2)).await.expect("within 40 s");
    });
}

/// The same with `Unconfirmed::Fail`: what was in flight at the kill
/// resolves with `Closed` (and a `Failed` event says how many batches);
/// everything confirmed is still received.
#[test]
fn kill_9_with_unconfirmed_failed() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(40), scenario(Unconfirmed::Fail, 1)).await.expect("within 40 s");
    });
}

async fn scenario(unconfirmed: Unconfirmed, cycles: usize) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports();
    let mut child = serve(dir.path(), port);
    let q = queue_on(1, 2, "recover");
    let transient = queue_on(0, 2, "transient");

    let producer_client = Client::connect(options(port, unconfirmed)).await.unwrap();
    let consumer_client = Client::connect(options(port, Unconfirmed::Republish)).await.unwrap();
    let (pev, cev) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    events_of(&producer_client, pev.clone());
    events_of(&consumer_client, cev.clone());

    // Topology: a durable queue bound to a durable exchange, and a
    // transient queue the restart loses and recovery declares again.
    producer_client.declare(&q, true).await.unwrap();
    producer_client.declare(&transient, false).await.unwrap();
    producer_client
        .declare_exchange("recover-x", "direct", ExchangeOptions { durable: true, ..Default::default() })
        .await
        .unwrap();
    producer_client.bind_queue(&q, "recover-x", "k", &[]).await.unwrap();
    consumer_client.declare(&q, true).await.unwrap();

    let books = Arc::new(Mutex::new(Books::default()));
    let stop = Arc::new(AtomicBool::new(false));

    let mut consumer = consumer_client.subscribe(&q, 200).await.unwrap();
    let consuming = {
        let (books, stop) = (books.clone(), stop.clone());
        tokio::spawn(async move {
            let mut errors = 0;
            // Acks go in bunches, so deliveries are unacked at the kill
            // (they come back redelivered; acks of the old connection's
            // tags are dropped by the client).
            let mut held = Vec::new();
            while !stop.load(Ordering::Acquire) {
                match tokio::time::timeout(Duration::from_millis(200), consumer.next()).await {
                    Ok(Some(Ok(d))) => {
                        let mut b = books.lock().unwrap();
                        *b.received.entry(body_seq(&d.body)).or_default() += 1;
                        b.redelivered += u64::from(d.redelivered);
                        drop(b);
                        held.push(d.tag);
                        if held.len() >= 150 {
                            for t in held.drain(..) {
                                consumer.ack(t);
                            }
                        }
                    }
                    Ok(Some(Err(e))) => {
                        errors += 1;
                        panic!("the consumer's stream yielded {e} ({errors}): recovery should keep it going");
                    }
                    Ok(None) => panic!("the consumer's stream ended"),
                    Err(_) => {}
                }
            }
            for t in held {
                consumer.ack(t);
            }
            consumer
        })
    };

    let producer = Arc::new(
        producer_client
            .producer(&q, ProducerOptions { persistent: true, batch_max: 32, in_flight_max: 8, ..Default::default() })
            .await
            .unwrap(),
    );
    let publishing = {
        let (books, stop, producer) = (books.clone(), stop.clone(), producer.clone());
        tokio::spawn(async move {
            let mut seq = 0u64;
            let mut waits = Vec::new();
            while !stop.load(Ordering::Acquire) {
                let c = producer.publish(&seq_body(seq, 64)).await.expect("publish goes on through recovery");
                let books = books.clone();
                waits.push(tokio::spawn(async move {
                    let r = c.await;
                    let mut b = books.lock().unwrap();
                    match r {
                        Ok(()) => {
                            b.confirmed.insert(seq);
                        }
                        Err(ClientError::Closed(_)) => b.failed += 1,
                        Err(e) => panic!("confirmation of {seq}: {e}"),
                    }
                }));
                seq += 1;
                // About 10k messages a second: enough in flight at the kill.
                if seq.is_multiple_of(100) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            producer.flush().unwrap();
            for w in waits {
                w.await.unwrap();
            }
            seq
        })
    };

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let first_kill = books.lock().unwrap().confirmed.len();
    assert!(first_kill > 0, "confirms before the kill");
    for cycle in 0..cycles {
        let before_kill = books.lock().unwrap().confirmed.len();
        child.kill().expect("kill -9");
        child.wait().unwrap();
        let killed_at = Instant::now();
        tokio::time::sleep(Duration::from_millis(300)).await;
        child = serve(dir.path(), port);
        eprintln!("kill {cycle}: {before_kill} confirmed; restarted after {:?}", killed_at.elapsed());
        // Publishing resumes: confirms after the restart.
        let deadline = Instant::now() + Duration::from_secs(15);
        while books.lock().unwrap().confirmed.len() < before_kill + 2000 {
            assert!(Instant::now() < deadline, "publishing resumed after restart {cycle}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let before_kill = first_kill;
    stop.store(true, Ordering::Release);
    let published = publishing.await.unwrap();
    let consumer = consuming.await.unwrap();

    // Every confirmed message reaches the consumer: its stream goes on.
    let confirmed = books.lock().unwrap().confirmed.clone();
    let mut consumer = consumer;
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
            let mut b = books.lock().unwrap();
            *b.received.entry(body_seq(&d.body)).or_default() += 1;
            b.redelivered += u64::from(d.redelivered);
            drop(b);
            consumer.ack(d.tag);
        }
    }
    {
        let b = books.lock().unwrap();
        let duplicates: u64 = b.received.values().map(|n| u64::from(n - 1)).sum();
        eprintln!(
            "published {published}, confirmed {} ({before_kill} before the kill), failed {}, received {} distinct, \
             {duplicates} duplicates, {} flagged redelivered",
            confirmed.len(),
            b.failed,
            b.received.len(),
            b.redelivered
        );
        let failed_batches: usize = pev
            .lock()
            .unwrap()
            .iter()
            .map(|e| match e {
                Event::Failed { batches, .. } => *batches,
                _ => 0,
            })
            .sum();
        match unconfirmed {
            Unconfirmed::Republish => assert_eq!(b.failed, 0, "with Republish no confirmation fails"),
            // Each failed batch held at most 32 messages.
            Unconfirmed::Fail => assert!(
                b.failed <= failed_batches as u64 * 32 && (b.failed > 0) == (failed_batches > 0),
                "{} failed confirmations, {failed_batches} failed batches",
                b.failed
            ),
        }
    }
    eprintln!("producer's events: {:?}", pev.lock().unwrap());
    eprintln!("consumer's events: {:?}", cev.lock().unwrap());

    // The events tell the story, in order for each client.
    for (who, ev) in [("producer", &pev), ("consumer", &cev)] {
        let list = ev.lock().unwrap().clone();
        let pos = |f: &dyn Fn(&Event) -> bool| list.iter().position(f);
        let disc = pos(&|e| matches!(e, Event::Disconnected { .. })).unwrap_or_else(|| panic!("{who}: {list:?}"));
        let rounds = list.iter().filter(|e| matches!(e, Event::TopologyRecovered { .. })).count();
        assert!(rounds >= cycles, "{who}: a recovery per kill: {list:?}");
        let rec = pos(&|e| matches!(e, Event::Reconnected { .. })).unwrap_or_else(|| panic!("{who}: {list:?}"));
        let topo = pos(&|e| matches!(e, Event::TopologyRecovered { failed: 0, .. }))
            .unwrap_or_else(|| panic!("{who}: {list:?}"));
        assert!(disc < rec && rec < topo, "{who}: {list:?}");
        assert!(!list.iter().any(|e| matches!(e, Event::GaveUp { .. })), "{who}: {list:?}");
    }
    assert!(saw(&cev, |e| matches!(e, Event::Resubscribed { .. })), "{:?}", cev.lock().unwrap());
    // The transient queue was lost with the broker and declared again.
    producer_client.declare_passive(&transient).await.expect("the transient queue was declared again");

    producer_client.close().await;
    consumer_client.close().await;
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The glommio client, shorter: one client with recovery publishes and
/// consumes on one executor while another thread kills the broker with -9
/// and restarts it; publishing resumes and every confirmed message is
/// received.
#[test]
fn glommio_client_recovers_too() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports();
    let child = Arc::new(Mutex::new(serve(dir.path(), port)));
    let killer = {
        let (child, path) = (child.clone(), dir.path().to_path_buf());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1200));
            let mut c = child.lock().unwrap();
            c.kill().expect("kill -9");
            c.wait().unwrap();
            std::thread::sleep(Duration::from_millis(300));
            *c = serve(&path, port);
        })
    };
    let (confirmed, missing, duplicates, events) =
        common::run_local(Duration::from_secs(35), move || glommio_scenario(port));
    killer.join().unwrap();
    let mut c = child.lock().unwrap();
    c.kill().unwrap();
    c.wait().unwrap();
    eprintln!("glommio: {confirmed} confirmed, {missing} missing, {duplicates} duplicates; events {events:?}");
    assert_eq!(missing, 0, "every confirmed message received");
    let pos = |f: &dyn Fn(&Event) -> bool| events.iter().position(f);
    let disc = pos(&|e| matches!(e, Event::Disconnected { .. })).expect("Disconnected");
    let rec = pos(&|e| matches!(e, Event::Reconnected { .. })).expect("Reconnected");
    let topo = pos(&|e| matches!(e, Event::TopologyRecovered { failed: 0, .. })).expect("TopologyRecovered");
    let sub = pos(&|e| matches!(e, Event::Resubscribed { .. })).expect("Resubscribed");
    assert!(disc < rec && rec < topo && topo < sub, "{events:?}");
}

async fn glommio_scenario(port: u16) -> (usize, usize, u64, Vec<Event>) {
    use std::cell::RefCell;
    use std::rc::Rc;
    let c = ringmq::client::Client::connect(options(port, Unconfirmed::Republish)).await.unwrap();
    let q = queue_on(0, 2, "grecover");
    c.declare(&q, true).await.unwrap();
    let events = common::recovery::events(c.events());
    let confirmed = Rc::new(RefCell::new(BTreeSet::new()));
    let received: common::recovery::Received = Rc::default();
    let stop = Rc::new(std::cell::Cell::new(false));
    let consuming = common::recovery::consume(c.subscribe(&q, 200).await.unwrap(), received.clone(), stop.clone());
    let producer = c
        .producer(&q, ProducerOptions { persistent: true, batch_max: 32, in_flight_max: 8, ..Default::default() })
        .await
        .unwrap();
    let started = Instant::now();
    let mut at_reconnect = None;
    let mut waits = Vec::new();
    let mut seq = 0u64;
    loop {
        let recovered = events.borrow().iter().any(|e| matches!(e, Event::TopologyRecovered { .. }));
        if recovered && at_reconnect.is_none() {
            at_reconnect = Some(confirmed.borrow().len());
        }
        if at_reconnect.is_some_and(|n| confirmed.borrow().len() >= n + 1000) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "publishing resumed after the restart");
        waits.push(common::recovery::publish(&producer, seq, &confirmed).await);
        seq += 1;
    }
    common::recovery::settle(&producer, waits).await;
    stop.set(true);
    let mut consumer = consuming.await;
    let all = confirmed.borrow().clone();
    let missing = common::recovery::drain(&mut consumer, &all, &received).await;
    let duplicates = received.borrow().values().map(|n| u64::from(n - 1)).sum();
    c.close().await;
    let n = confirmed.borrow().len();
    let events = events.borrow().clone();
    (n, missing, duplicates, events)
}

/// The record is bounded: past `records_max` a declare is refused with a
/// typed error before it is sent (a redeclare is not a new record). And
/// when the broker stays gone, recovery gives up after `attempts_max`
/// redials: `GaveUp`, the consumer's stream ends with the error, requests
/// fail with `Closed`, and the event stream ends.
#[test]
fn bounded_record_and_giving_up() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports();
    let mut child = serve(dir.path(), port);
    let url = format!("ringmq://127.0.0.1:{port}");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let opts = ClientOptions {
            url,
            recovery: Some(Recovery {
                backoff_min: Duration::from_millis(10),
                backoff_max: Duration::from_millis(20),
                attempts_max: 3,
                records_max: 2,
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = Client::connect(opts).await.unwrap();
        let (a, b2, c3) = (queue_on(0, 2, "lim"), queue_on(1, 2, "lim"), queue_on(0, 2, "lim"));
        c.declare(&a, false).await.unwrap();
        c.declare(&b2, false).await.unwrap();
        c.declare(&a, false).await.expect("a redeclare is no new record");
        match c.declare(&c3, false).await {
            Err(ClientError::RecoveryLimit { what: "queues", max: 2 }) => {}
            other => panic!("{other:?}"),
        }
        assert!(c.declare_passive(&c3).await.is_err(), "the refused declare was not sent");
        let mut consumer = c.subscribe(&a, 10).await.unwrap();
        let mut events = c.events();
        // A delete frees its record.
        c.delete(&b2).await.unwrap();
        c.declare(&c3, false).await.expect("room again after the delete");
        // The broker goes for good.
        child.kill().expect("kill -9");
        child.wait().unwrap();
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), events.next()).await {
                Ok(Some(e)) => seen.push(e),
                Ok(None) => break,
                Err(_) => panic!("the event stream did not end: {seen:?}"),
            }
        }
        assert!(matches!(seen.first(), Some(Event::Disconnected { .. })), "{seen:?}");
        assert!(matches!(seen.last(), Some(Event::GaveUp { .. })), "{seen:?}");
        match tokio::time::timeout(Duration::from_secs(5), consumer.next()).await.expect("the stream ends") {
            Some(Err(ClientError::Closed(m))) => assert!(m.contains("recovery gave up"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(c.declare(&a, false).await, Err(ClientError::Closed(_))));
    });
}
