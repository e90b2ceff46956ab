//! `kill -9` of a real `ringmq serve` while an AMQP client (lapin) commits
//! transactions that span two shards: each transaction publishes 3
//! persistent messages to a durable queue on shard 0 and 2 to one on
//! shard 1. After each restart, the check is what docs/amqp.md
//! ("Transactions", "After a crash") says a crash leaves:
//!
//! - every transaction whose commit-ok the client received is in both
//!   queues, whole, in commit order, once;
//! - of the one transaction in flight at the kill (published, commit sent
//!   or not, no commit-ok), each queue holds all of its share or none:
//!   both, neither, or one queue's share without the other's (the parts
//!   are stored by two shards' logs, flushed independently);
//! - nothing else: no later transaction, no duplicate, no gap.
//!
//! Cycles: RINGMQ_TX_CRASH_CYCLES (default 8). The outcomes seen for the
//! in-flight transaction are printed.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::lapin_thread::on_thread;

use common::queue_on;
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Messages each transaction publishes to the queue on shard 0 and on 1.
const SHARE: [u32; 2] = [3, 2];

/// Starts `ringmq serve` on `dir` with two shards; its AMQP address.
fn serve(dir: &std::path::Path) -> (Child, String) {
    let (child, line) = common::process::serve(dir, &[]);
    (child, format!("amqp://guest:guest@{}/%2f", common::process::field(&line, "amqp")))
}

/// Message `i` of transaction `tx`'s share: its coordinates, padded.
fn body(tx: i64, i: u32) -> Vec<u8> {
    let mut b = format!("{tx}:{i}:").into_bytes();
    b.resize(200, b'.');
    b
}

fn parse(b: &[u8]) -> (i64, u32) {
    let s = std::str::from_utf8(b).expect("a body is text");
    let mut it = s.split(':');
    let tx = it.next().and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("a bad body {s:?}"));
    let i = it.next().and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("a bad body {s:?}"));
    assert_eq!(b, body(tx, i), "a body changed");
    (tx, i)
}

/// Commits transactions until the connection breaks; `committed` is the
/// last one whose commit-ok came. An error before `killed` is a failure.
async fn commit_until_killed(url: String, queues: [String; 2], committed: Arc<AtomicI64>, killed: Arc<AtomicBool>) {
    let run = async {
        let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
        let ch = conn.create_channel().await?;
        for q in &queues {
            let opts = QueueDeclareOptions { durable: true, ..Default::default() };
            ch.queue_declare(q, opts, FieldTable::default()).await?;
        }
        ch.tx_select().await?;
        let props = BasicProperties::default().with_delivery_mode(2);
        for tx in 0.. {
            for (q, share) in queues.iter().zip(SHARE) {
                for i in 0..share {
                    ch.basic_publish("", q, BasicPublishOptions::default(), &body(tx, i), props.clone()).await?;
                }
            }
            ch.tx_commit().await?;
            committed.store(tx, Ordering::SeqCst);
        }
        lapin::Result::Ok(())
    };
    if let Err(e) = run.await {
        assert!(killed.load(Ordering::SeqCst), "the client failed with no kill under way: {e}");
    }
}

/// Every message in `q`, taken with no-ack.
async fn drain(url: String, q: String) -> lapin::Result<Vec<(i64, u32)>> {
    let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    let mut got = Vec::new();
    while let Some(m) = ch.basic_get(&q, BasicGetOptions { no_ack: true }).await? {
        got.push(parse(&m.delivery.data));
    }
    conn.close(200, "bye").await?;
    Ok(got)
}

/// Checks one queue after a restart: transactions 0..=`committed`, each
/// share whole and in order, then maybe the in-flight one whole; returns
/// whether that one is there.
fn check(got: &[(i64, u32)], share: u32, committed: i64, q: &str) -> bool {
    let whole = |upto: i64| -> Vec<(i64, u32)> { (0..=upto).flat_map(|tx| (0..share).map(move |i| (tx, i))).collect() };
    if got == whole(committed) {
        return false;
    }
    assert_eq!(
        got,
        whole(committed + 1),
        "{q}: expected transactions 0..={committed} (committed) and maybe {} whole, got {} messages: {:?}",
        committed + 1,
        got.len(),
        &got[got.len().saturating_sub(8)..]
    );
    true
}

#[test]
fn kill_9_during_multi_shard_commits_keeps_every_committed_transaction() {
    let cycles: u64 = std::env::var("RINGMQ_TX_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let dir = tempfile::tempdir().unwrap();
    let (mut child, mut url) = serve(dir.path());
    // The in-flight transaction after the restart: [neither, shard 0's
    // share only, shard 1's only, both].
    let mut outcomes = [0u32; 4];
    for cycle in 0..cycles {
        let queues = [queue_on(0, 2, &format!("tx-crash-{cycle}")), queue_on(1, 2, &format!("tx-crash-{cycle}"))];
        let committed = Arc::new(AtomicI64::new(-1));
        let killed = Arc::new(AtomicBool::new(false));
        let (done_tx, done) = mpsc::channel();
        let client = {
            let (url, queues, committed, killed) = (url.clone(), queues.clone(), committed.clone(), killed.clone());
            std::thread::spawn(move || {
                futures_lite::future::block_on(commit_until_killed(url, queues, committed, killed));
                let _ = done_tx.send(());
            })
        };
        // Running: some commits done, then the kill lands mid-stream.
        let start = Instant::now();
        while committed.load(Ordering::SeqCst) < 5 {
            assert!(start.elapsed() < Duration::from_secs(30), "no commits within 30 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50 + cycle * 37 % 200));
        killed.store(true, Ordering::SeqCst);
        child.kill().expect("kill -9");
        child.wait().unwrap();
        done.recv_timeout(Duration::from_secs(30)).expect("the client stops once the broker is gone");
        client.join().unwrap();
        let committed = committed.load(Ordering::SeqCst);
        (child, url) = serve(dir.path());
        let mut present = [false; 2];
        for (k, q) in queues.iter().enumerate() {
            let got = on_thread(Duration::from_secs(60), drain(url.clone(), q.clone()));
            present[k] = check(&got, SHARE[k], committed, q);
        }
        outcomes[usize::from(present[0]) | usize::from(present[1]) << 1] += 1;
        eprintln!(
            "cycle {cycle}: {} committed; the one in flight: on shard 0 {}, on shard 1 {}",
            committed + 1,
            present[0],
            present[1]
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
    eprintln!(
        "in-flight transaction after {cycles} kills: neither {}, shard 0 only {}, shard 1 only {}, both {}",
        outcomes[0], outcomes[1], outcomes[2], outcomes[3]
    );
}
