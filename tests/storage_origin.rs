//! Origin records (type 18, docs/storage.md) in the running log over real
//! files: they come back with the messages they cover after a restart;
//! compaction and reclaim never leave a live message without its record,
//! also when its batch straddled a segment roll; a record older than a
//! message it covers (a crash between compaction's copies and their
//! record) is logged again at the start; a publish with the default
//! origin writes no byte more than before.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::run_local;
use ringmq::storage::io::{DmaIo, LogIo};
use ringmq::storage::record::{encode, encode_publish, scan, Record, Seed, BLOCK};
use ringmq::storage::{Origin, Recovered, Storage, StorageOptions};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// 64 KiB segments, dead ones deleted (not kept for reuse).
fn opts(dir: &Path) -> StorageOptions {
    StorageOptions { segments_recycled_max: 0, ..common::log_options(dir, 65_536) }
}

fn entry(tag: &str, seq: u64) -> Vec<u8> {
    let mut body = format!("{tag}-{seq}-").into_bytes();
    body.resize(700, b'a' + (seq % 26) as u8);
    let mut e = vec![0u8];
    e.extend_from_slice(&(body.len() as u32).to_le_bytes());
    e.extend_from_slice(&body);
    e
}

fn origin(x: &str, key: &str) -> Arc<Origin> {
    Arc::new(Origin { exchange: x.into(), routing_key: key.into() })
}

async fn open(dir: &Path) -> (Storage<u64>, Recovered) {
    let io: Rc<dyn LogIo> = Rc::new(DmaIo);
    Storage::<u64>::open(io, opts(dir)).await.expect("recovery")
}

/// Each recovered message of `queue` with its origin (exchange, key).
fn origins_of(rec: &mut Recovered, queue: &str) -> Vec<(u64, Option<(String, String)>)> {
    let q = rec.queues.iter_mut().find(|q| q.name == queue).expect("the queue");
    let seqs: Vec<u64> = q.messages.iter().map(|m| m.seq).collect();
    seqs.into_iter().map(|s| (s, q.take_origin(s).map(|o| (o.exchange.clone(), o.routing_key.clone())))).collect()
}

/// A flush, then what the shard's housekeeping task does after one.
async fn flush_and_reclaim(log: &Storage<u64>) {
    assert!(log.flush().await.result.is_ok());
    log.housekeep_once().await;
}

/// Runs compaction to the end, as the shard's flusher does.
async fn compact_all(log: &Storage<u64>) -> usize {
    let mut moved = 0;
    for _ in 0..10_000 {
        if !log.compaction_due() {
            break;
        }
        moved += log.compact_step().await.len();
        flush_and_reclaim(log).await;
    }
    flush_and_reclaim(log).await;
    moved
}

fn some(x: &str, key: &str) -> Option<(String, String)> {
    Some((x.into(), key.into()))
}

/// Batches with and without an origin, some acked: after a restart each
/// message has its own, and a log without any origin record (as written
/// before they existed) recovers every message with none.
#[test]
fn origins_come_back_with_their_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(Duration::from_secs(30), move || async move {
        let (log, _) = open(&path).await;
        let q = log.declare("q", &[]).unwrap();
        let plain = log.declare("plain", &[]).unwrap();
        for s in 0..9 {
            log.publish(q, s, &entry("q", s)).unwrap();
            log.publish(plain, s, &entry("plain", s)).unwrap();
        }
        // 0..3 by the queue's name (no record), 3..6 and 6..9 routed.
        log.origin(q, 3, 3, &origin("amq.topic", "eu.de")).unwrap();
        log.origin(q, 6, 3, &origin("orders", "new")).unwrap();
        log.ack(q, 4, entry("q", 4).len());
        log.ack(q, 7, entry("q", 7).len());
        log.ack(q, 8, entry("q", 8).len());
        log.close().await.result.unwrap();
        let (log, mut rec) = open(&path).await;
        log.close().await.result.unwrap();
        let want = vec![
            (0, None),
            (1, None),
            (2, None),
            (3, some("amq.topic", "eu.de")),
            (5, some("amq.topic", "eu.de")),
            (6, some("orders", "new")),
        ];
        assert_eq!(origins_of(&mut rec, "q"), want);
        assert!(origins_of(&mut rec, "plain").iter().all(|(_, o)| o.is_none()));
        let plain = rec.queues.iter().find(|q| q.name == "plain").unwrap();
        assert!(plain.origins.is_empty());
    });
}

/// 20 messages stay live, published in two batches with an origin, the
/// second straddling a segment roll (its record lands in the next
/// segment); 600 others are acked. Compaction moves the live ones
/// forward and reclaim deletes the old segments, the one holding the
/// first record copy too: the records moved with them.
#[test]
fn compaction_and_reclaim_keep_the_origins_of_live_messages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(Duration::from_secs(60), move || async move {
        let (log, _) = open(&path).await;
        let keep = log.declare("keep", &[]).unwrap();
        let churn = log.declare("churn", &[]).unwrap();
        let mut c = 0u64;
        // Most of segment 1 with churn, then the batches of `keep`.
        while c < 66 {
            log.publish(churn, c, &entry("churn", c)).unwrap();
            c += 1;
        }
        for s in 0..10 {
            log.publish(keep, s, &entry("keep", s)).unwrap();
        }
        log.origin(keep, 0, 10, &origin("x", "first")).unwrap();
        let before = log.segments();
        for s in 10..20 {
            log.publish(keep, s, &entry("keep", s)).unwrap();
        }
        log.origin(keep, 10, 10, &origin("x", "second")).unwrap();
        assert!(log.segments().len() > before.len(), "the second batch straddles a roll");
        while c < 666 {
            log.publish(churn, c, &entry("churn", c)).unwrap();
            c += 1;
            if c.is_multiple_of(50) {
                assert!(log.flush().await.result.is_ok());
            }
        }
        for s in 0..c {
            log.ack(churn, s, entry("churn", s).len());
        }
        assert!(log.flush().await.result.is_ok());
        assert!(compact_all(&log).await >= 20, "every keep message moved");
        let first_left = log.segments()[0];
        assert!(first_left > before.len() as u64 + 1, "segments up to the straddled roll deleted: {first_left}");
        log.close().await.result.unwrap();
        let (log, mut rec) = open(&path).await;
        log.close().await.result.unwrap();
        let got = origins_of(&mut rec, "keep");
        let want: Vec<_> = (0..20).map(|s| (s, some("x", if s < 10 { "first" } else { "second" }))).collect();
        assert_eq!(got, want);
    });
}

/// A crash between compaction's copies and their origin record leaves the
/// record older than the copies: the start logs it again in its new
/// segment, so reclaiming the old one cannot lose it.
#[test]
fn a_record_older_than_a_message_it_covers_is_logged_again_at_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    // Segment 1: the declare, the publishes and their record; segment 2:
    // copies of the publishes (compaction's), no record after them.
    let seg = |n: u64, body: &dyn Fn(&mut Vec<u8>, Seed)| {
        let seed = Seed::of(n);
        let mut b = Vec::new();
        let header = Record::Segment { version: 2, shard: 0, shard_count: 1, segment: n, next_queue_id: 2 };
        encode(&mut b, seed, &header);
        encode(&mut b, seed, &Record::Declare { queue: 1, next_seq: 0, name: b"q" });
        body(&mut b, seed);
        encode(&mut b, seed, &Record::Seal);
        b.resize(b.len().div_ceil(BLOCK) * BLOCK, 0);
        std::fs::write(path.join(format!("{n:016}.seg")), b).unwrap();
    };
    seg(1, &|b, seed| {
        for s in 0..2 {
            encode_publish(b, seed, 1, s, &entry("q", s));
        }
        let r = Record::Origin { queue: 1, first: 0, count: 2, exchange: b"ex", routing_key: b"rk" };
        encode(b, seed, &r);
    });
    seg(2, &|b, seed| {
        for s in 0..2 {
            encode_publish(b, seed, 1, s, &entry("q", s));
        }
    });
    let p = path.clone();
    run_local(Duration::from_secs(30), move || async move {
        let (log, mut rec) = open(&p).await;
        assert_eq!(origins_of(&mut rec, "q"), vec![(0, some("ex", "rk")), (1, some("ex", "rk"))]);
        log.close().await.result.unwrap();
    });
    let tail = std::fs::read(path.join(format!("{:016}.seg", 3))).unwrap();
    let mut again = Vec::new();
    scan(&tail, Seed::of(3), |_, r| {
        if let Record::Origin { first, count, exchange, routing_key, .. } = r {
            again.push((first, count, exchange.to_vec(), routing_key.to_vec()));
        }
    });
    assert_eq!(again, vec![(0, 2, b"ex".to_vec(), b"rk".to_vec())], "the record is in the new segment");
}

/// Bytes the log writes per message: the same with and without origin
/// records for a publish to a queue by its name (none are written), and
/// one record per batch (not per message) through an exchange.
#[test]
fn the_default_origin_costs_no_bytes_and_a_routed_batch_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(Duration::from_secs(30), move || async move {
        // One segment holds it all: no roll adds its header and declares.
        let io: Rc<dyn LogIo> = Rc::new(DmaIo);
        let (log, _) = Storage::<u64>::open(io, common::log_options(&path, 4 << 20)).await.unwrap();
        let q = log.declare("q", &[]).unwrap();
        assert!(log.flush().await.result.is_ok());
        let written = |log: &Storage<u64>| log.io_totals().write_bytes;
        let w0 = written(&log);
        // 100 batches of 10 messages of 16-byte bodies, by the queue's name.
        let small = |s: u64| {
            let mut e = vec![0u8, 16, 0, 0, 0];
            e.extend_from_slice(format!("{s:016}").as_bytes());
            e
        };
        let mut records = 0usize;
        for s in 0..1000 {
            let mut b = Vec::new();
            encode_publish(&mut b, Seed::of(1), q, s, &small(s));
            records += b.len();
            log.publish(q, s, &small(s)).unwrap();
        }
        assert!(log.flush().await.result.is_ok());
        let plain = written(&log) - w0;
        // Whole blocks: the records and the last block's padding only.
        assert_eq!(plain as usize, records.div_ceil(BLOCK) * BLOCK, "publish records only");
        let w1 = written(&log);
        let o = origin("amq.direct", "orders.new");
        for s in 1000..2000 {
            log.publish(q, s, &small(s)).unwrap();
            if s % 10 == 9 {
                log.origin(q, s - 9, 10, &o).unwrap();
            }
        }
        assert!(log.flush().await.result.is_ok());
        let routed = written(&log) - w1;
        let mut one = Vec::new();
        let r = Record::Origin { queue: q, first: 0, count: 10, exchange: b"amq.direct", routing_key: b"orders.new" };
        encode(&mut one, Seed::of(1), &r);
        assert_eq!(routed as usize, (records + 100 * one.len()).div_ceil(BLOCK) * BLOCK, "one record per batch");
        println!(
            "bytes per message: {:.1} by name, {:.1} through an exchange (batches of 10; a record is {} bytes)",
            plain as f64 / 1000.0,
            routed as f64 / 1000.0,
            one.len()
        );
        log.close().await.result.unwrap();
        // 100 records of one origin, one after another: one run in memory.
        let io: Rc<dyn LogIo> = Rc::new(DmaIo);
        let (log, rec) = Storage::<u64>::open(io, common::log_options(&path, 4 << 20)).await.unwrap();
        log.close().await.result.unwrap();
        let runs: Vec<(u64, u32)> = rec.queues[0].origins.iter().map(|o| (o.first, o.count)).collect();
        assert_eq!(runs, vec![(1000, 1000)]);
    });
}
