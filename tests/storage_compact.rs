//! Compaction: a segment kept alive by a few old messages has them
//! re-appended to the tail and is deleted; after a restart the live
//! messages are all there, in order, intact; disk use went down. Also the
//! crash window between the copy and the deletion (both copies on disk):
//! replay keeps one per sequence number, and acks logged after the copy
//! still apply. Queue arguments (record 11) survive the deletion of the
//! segment they were declared in.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::run_local;
use ringmq::storage::io::{DmaIo, LogIo};
use ringmq::storage::{Storage, StorageOptions};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

/// Dead segments are deleted, not kept for reuse: these tests watch the
/// files go (reuse has its own tests in `storage_segments.rs`).
fn opts(dir: &Path) -> StorageOptions {
    StorageOptions { segments_recycled_max: 0, ..common::log_options(dir, 65_536) }
}

fn body(q: &str, seq: u64) -> Vec<u8> {
    let mut b = format!("{q}-{seq}-").into_bytes();
    b.resize(700, b'a' + (seq % 26) as u8);
    b
}

fn disk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum()
}

fn seg_file(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:016}.seg"))
}

/// The raw field table `keep` is declared with.
const KEEP_ARGS: &[u8] = b"\x0cx-max-lengthl\0\0\0\0\0\0\0\x05";

/// Fills the log: 20 messages of `keep` that stay live, then 600 of
/// `churn` (several segments), all acked. Returns the disk use before
/// compaction and the contents of segment 1 as they were then.
async fn fill(log: &Storage<u64>, dir: &Path) -> (u64, Vec<u8>) {
    let keep = log.declare("keep", KEEP_ARGS).unwrap();
    let churn = log.declare("churn", &[]).unwrap();
    for s in 0..20 {
        log.publish(keep, s, &body("keep", s)).unwrap();
    }
    for s in 0..600u64 {
        log.publish(churn, s, &body("churn", s)).unwrap();
        if s % 50 == 49 {
            assert!(log.flush().await.result.is_ok());
        }
    }
    for s in 0..600u64 {
        log.ack(churn, s, 700);
    }
    assert!(log.flush().await.result.is_ok());
    assert!(log.segments().len() >= 6, "several segments: {:?}", log.segments());
    (disk_bytes(dir), std::fs::read(seg_file(dir, 1)).unwrap())
}

/// A flush, then what the shard's housekeeping task does after one
/// (dead segments deleted, the next one prepared).
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

type Queues = Vec<(String, Vec<(u64, Vec<u8>)>)>;

async fn recovered(dir: &Path) -> Queues {
    recovered_with_args(dir).await.into_iter().map(|(n, _, m)| (n, m)).collect()
}

async fn recovered_with_args(dir: &Path) -> Vec<(String, Vec<u8>, Vec<(u64, Vec<u8>)>)> {
    let io: Rc<dyn LogIo> = Rc::new(DmaIo);
    let (log, rec) = Storage::<u64>::open(io, opts(dir)).await.expect("recovery");
    log.close().await.result.expect("close");
    rec.queues
        .into_iter()
        .map(|q| {
            let mut q = q;
            let ms: Vec<_> = q.messages.iter().copied().collect();
            let msgs = ms.iter().map(|m| (m.seq, q.take_entry(m).expect("in memory").to_vec())).collect();
            (q.name, q.args, msgs)
        })
        .collect()
}

#[test]
fn compaction_moves_live_messages_and_deletes_the_old_segment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(Duration::from_secs(30), move || async move {
        let io: Rc<dyn LogIo> = Rc::new(DmaIo);
        let (log, _) = Storage::<u64>::open(io, opts(&path)).await.unwrap();
        let (before, _) = fill(&log, &path).await;
        assert!(log.compaction_due(), "segment 1 holds only 20 live messages of ~90");
        let moved = compact_all(&log).await;
        assert_eq!(moved, 20, "the live messages of segment 1 were re-appended");
        assert!(!seg_file(&path, 1).exists(), "the compacted segment is deleted");
        let after = disk_bytes(&path);
        assert!(after * 3 < before, "disk use went down: {before} -> {after}");
        log.close().await.result.unwrap();
        drop(log);
        let qs = recovered_with_args(&path).await;
        let keep = qs.iter().find(|(n, _, _)| n == "keep").expect("keep survives");
        let want: Vec<(u64, Vec<u8>)> = (0..20).map(|s| (s, body("keep", s))).collect();
        assert_eq!(keep.2, want, "live messages in order, intact");
        assert_eq!(keep.1, KEEP_ARGS, "its arguments outlive the segment it was declared in");
        let churn = qs.iter().find(|(n, _, _)| n == "churn").expect("churn survives");
        assert!(churn.2.is_empty() && churn.1.is_empty(), "acked messages stay gone; no arguments");
    });
}

#[test]
fn crash_between_copy_and_delete_keeps_one_copy_and_later_acks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(Duration::from_secs(30), move || async move {
        let io: Rc<dyn LogIo> = Rc::new(DmaIo);
        let (log, _) = Storage::<u64>::open(io, opts(&path)).await.unwrap();
        let (_, old_seg1) = fill(&log, &path).await;
        compact_all(&log).await;
        // Acked after the copy: the ack sits after the copies in the log.
        for s in 0..5 {
            log.ack(1, s, 700);
        }
        log.close().await.result.unwrap();
        drop(log);
        // The crash window: the old segment is still there next to the copies.
        std::fs::write(seg_file(&path, 1), &old_seg1).unwrap();
        let qs = recovered(&path).await;
        let keep = qs.iter().find(|(n, _)| n == "keep").expect("keep survives");
        let want: Vec<(u64, Vec<u8>)> = (5..20).map(|s| (s, body("keep", s))).collect();
        assert_eq!(keep.1, want, "one copy per seq, acks after the copy applied");
        // Its messages are now accounted to the newer copies: the old
        // segment goes at the next start's first flush.
        let io: Rc<dyn LogIo> = Rc::new(DmaIo);
        let (log, _) = Storage::<u64>::open(io, opts(&path)).await.unwrap();
        flush_and_reclaim(&log).await;
        assert!(!seg_file(&path, 1).exists(), "the duplicate segment is reclaimed");
        log.close().await.result.unwrap();
    });
}

#[test]
fn compaction_of_a_segment_larger_than_its_read_window() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(Duration::from_secs(60), move || async move {
        let o = StorageOptions { segment_bytes: 4 << 20, ..opts(&path) };
        let io: Rc<dyn LogIo> = Rc::new(DmaIo);
        let (log, _) = Storage::<u64>::open(io, o.clone()).await.unwrap();
        let q = log.declare("mixed", &[]).unwrap();
        // ~6 MiB: segment 1 is read in several 1 MiB windows, records cut
        // at window ends, flushes leaving block padding in between.
        let n = 8_400u64;
        for s in 0..n {
            log.publish(q, s, &body("mixed", s)).unwrap();
            if s % 97 == 0 {
                assert!(log.flush().await.result.is_ok());
            }
        }
        for s in (0..n).filter(|s| s % 50 != 0) {
            log.ack(q, s, 700);
        }
        assert!(log.flush().await.result.is_ok());
        let moved = compact_all(&log).await;
        assert!(moved >= 80, "the live messages of segment 1 moved: {moved}");
        log.close().await.result.unwrap();
        drop(log);
        let qs = recovered(&path).await;
        let want: Vec<(u64, Vec<u8>)> = (0..n).filter(|s| s % 50 == 0).map(|s| (s, body("mixed", s))).collect();
        assert_eq!(qs[0].1, want, "every live message, once, in order, intact");
        assert!(!seg_file(&path, 1).exists(), "segment 1 compacted and deleted");
    });
}

/// A stream's chunk records (type 16: when each publish batch was
/// appended) move forward with its live messages: after the segment
/// they were written in is compacted and deleted, recovery still has the
/// times.
#[test]
fn compaction_carries_stream_chunk_times_forward() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(Duration::from_secs(30), move || async move {
        let io: Rc<dyn LogIo> = Rc::new(DmaIo);
        let (log, _) = Storage::<u64>::open(io, opts(&path)).await.unwrap();
        let keep = log.declare("keep", &[]).unwrap();
        let churn = log.declare("churn", &[]).unwrap();
        for s in 0..20 {
            log.publish(keep, s, &body("keep", s)).unwrap();
            if s % 10 == 9 {
                log.stream_chunk(keep, s - 9, 10, 1_000 * (s + 1)).unwrap();
            }
        }
        for s in 0..600u64 {
            log.publish(churn, s, &body("churn", s)).unwrap();
            if s % 50 == 49 {
                assert!(log.flush().await.result.is_ok());
            }
        }
        log.stream_chunk(churn, 0, 600, 7).unwrap();
        for s in 0..600u64 {
            log.ack(churn, s, 700);
        }
        assert!(log.flush().await.result.is_ok());
        assert_eq!(compact_all(&log).await, 20);
        assert!(!seg_file(&path, 1).exists(), "the compacted segment is deleted");
        log.close().await.result.unwrap();
        let io: Rc<dyn LogIo> = Rc::new(DmaIo);
        let (log, rec) = Storage::<u64>::open(io, opts(&path)).await.expect("recovery");
        log.close().await.result.unwrap();
        let q = rec.queues.iter().find(|q| q.name == "keep").unwrap();
        assert_eq!(q.chunks, vec![(0, 10, 10_000), (10, 10, 20_000)]);
        assert_eq!(q.messages.len(), 20);
        let churn = rec.queues.iter().find(|q| q.name == "churn").unwrap();
        assert!(churn.chunks.is_empty() && churn.messages.is_empty());
    });
}
