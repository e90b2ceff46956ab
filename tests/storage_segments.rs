//! Prepared segments (`storage/housekeep.rs`): the next segment is created
//! and allocated ahead of the roll. Records written into one recover (the
//! allocated zeros after them are the clean end of the data); a crash
//! leaves an unused one behind, which recovery deletes, still cutting the
//! torn tail of the real last segment instead of calling it damage; a
//! clean close leaves none. Dead segments go through the same task: kept
//! (up to `segments_recycled_max`) and reused as the next segments, or
//! deleted. A reused file's old records never come back as data, after a
//! crash or a clean close, and a crash at any step of the reuse leaves a
//! log that recovers.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::run_local;
use ringmq::storage::io::{segment_path, DmaIo, LogIo};
use ringmq::storage::{Storage, StorageOptions};
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

const SEGMENT: u64 = 65_536;

fn opts(dir: &Path) -> StorageOptions {
    common::log_options(dir, SEGMENT)
}

fn opts_deleting(dir: &Path) -> StorageOptions {
    StorageOptions { segments_recycled_max: 0, ..opts(dir) }
}

fn body(seq: u64) -> Vec<u8> {
    let mut b = format!("m-{seq}-").into_bytes();
    b.resize(900, b'a' + (seq % 26) as u8);
    b
}

fn segments(dir: &Path) -> Vec<u64> {
    ringmq::storage::io::list_segments(dir).unwrap()
}

async fn open(dir: &Path) -> (Storage<u64>, Vec<(u64, Vec<u8>)>) {
    let (log, msgs, _) = open_with(opts(dir)).await;
    (log, msgs)
}

/// The log, its recovered messages, and the bytes recovery cut as a torn tail.
async fn open_with(o: StorageOptions) -> (Storage<u64>, Vec<(u64, Vec<u8>)>, u64) {
    let io: Rc<dyn LogIo> = Rc::new(DmaIo);
    let (log, rec) = Storage::<u64>::open(io, o).await.expect("recovery");
    let cut = rec.report.truncated_bytes;
    let mut msgs = Vec::new();
    for mut q in rec.queues {
        let ms: Vec<_> = q.messages.iter().copied().collect();
        msgs.extend(ms.iter().map(|m| (m.seq, q.take_entry(m).expect("in memory").to_vec())));
    }
    (log, msgs, cut)
}

/// Publishes `range` into queue `q`, a flush and a housekeeping round
/// every 10 messages (as the shard's tasks would).
async fn publish(log: &Storage<u64>, q: u32, range: std::ops::Range<u64>) {
    for s in range {
        log.publish(q, s, &body(s)).unwrap();
        if s % 10 == 9 {
            assert!(log.flush().await.result.is_ok());
            log.housekeep_once().await;
        }
    }
    assert!(log.flush().await.result.is_ok());
    log.housekeep_once().await;
}

#[test]
fn records_in_prepared_segments_recover_and_a_clean_close_leaves_no_spare() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(Duration::from_secs(30), move || async move {
        let (log, _) = open(&path).await;
        let q = log.declare("q", &[]).unwrap();
        publish(&log, q, 0..300).await;
        // ~270 KiB of records: several rolls, each into a prepared segment.
        let segs = segments(&path);
        assert!(segs.len() >= 5, "rolled several times: {segs:?}");
        let spare = *segs.last().unwrap();
        let len = std::fs::metadata(segment_path(&path, spare)).unwrap().len();
        assert_eq!(len, SEGMENT, "the next segment is prepared at full size");
        log.close().await.result.unwrap();
        drop(log);
        assert!(!segments(&path).contains(&spare), "a clean close deletes the spare");
        let (log, msgs) = open(&path).await;
        let want: Vec<(u64, Vec<u8>)> = (0..300).map(|s| (s, body(s))).collect();
        assert_eq!(msgs, want, "every message, in order, intact");
        log.close().await.result.unwrap();
    });
}

#[test]
fn a_crash_leaves_a_spare_that_recovery_deletes_and_the_torn_tail_before_it_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(Duration::from_secs(30), move || async move {
        let (log, _) = open(&path).await;
        let q = log.declare("q", &[]).unwrap();
        publish(&log, q, 0..100).await;
        let segs = segments(&path);
        let (spare, last) = (segs[segs.len() - 1], segs[segs.len() - 2]);
        assert!(std::fs::read(segment_path(&path, spare)).unwrap().iter().all(|&b| b == 0));
        // The crash: no close. Then a torn record at the end of the data
        // of the last written segment (a write that landed in part).
        drop(log);
        let last_path = segment_path(&path, last);
        let mut bytes = std::fs::read(&last_path).unwrap();
        let end = bytes.iter().rposition(|&b| b != 0).unwrap() + 1;
        let at = end.div_ceil(4096) * 4096;
        if bytes.len() < at + 64 {
            bytes.resize(at + 4096, 0);
        }
        bytes[at..at + 64].copy_from_slice(&[0x5a; 64]);
        std::fs::write(&last_path, &bytes).unwrap();
        let (log, msgs) = open(&path).await;
        let want: Vec<(u64, Vec<u8>)> = (0..100).map(|s| (s, body(s))).collect();
        assert_eq!(msgs, want, "every flushed message, in order, intact");
        // The spare's number went to the segment the reopened log writes.
        let head = std::fs::read(segment_path(&path, spare)).unwrap();
        assert!(head[..4096].iter().any(|&b| b != 0), "segment {spare} now starts with a header");
        let cut = std::fs::metadata(&last_path).unwrap().len();
        assert_eq!(cut as usize, at, "the torn record was cut off the last real segment");
        // The log goes on after it: a new segment, everything readable.
        publish(&log, q, 100..120).await;
        log.close().await.result.unwrap();
        drop(log);
        let (log, msgs) = open(&path).await;
        assert_eq!(msgs.len(), 120);
        log.close().await.result.unwrap();
    });
}

#[test]
fn dead_segments_are_deleted_by_housekeeping_not_by_the_flush() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(Duration::from_secs(30), move || async move {
        let (log, _, _) = open_with(opts_deleting(&path)).await;
        let q = log.declare("q", &[]).unwrap();
        for s in 0..200u64 {
            log.publish(q, s, &body(s)).unwrap();
            if s % 10 == 9 {
                assert!(log.flush().await.result.is_ok());
            }
        }
        for s in 0..200u64 {
            log.ack(q, s, body(s).len());
        }
        assert!(log.flush().await.result.is_ok());
        let before = segments(&path);
        assert!(before.len() >= 3, "{before:?}");
        assert!(segment_path(&path, before[0]).exists(), "the flush itself deletes nothing");
        log.housekeep_once().await;
        let after = segments(&path);
        assert!(after.len() <= 2, "only the segment in use and the spare are left: {after:?}");
        log.close().await.result.unwrap();
    });
}

/// Publishes `range`, acking all but every `keep`th message as it goes (a
/// consumer keeping up), with a flush and a housekeeping round every 10.
async fn churn(log: &Storage<u64>, q: u32, range: std::ops::Range<u64>, keep: u64) {
    for s in range {
        log.publish(q, s, &body(s)).unwrap();
        if s % keep != 0 {
            log.ack(q, s, body(s).len());
        }
        if s % 10 == 9 {
            assert!(log.flush().await.result.is_ok());
            if log.compaction_due() {
                log.compact_step().await;
            }
            log.housekeep_once().await;
        }
    }
    assert!(log.flush().await.result.is_ok());
    log.housekeep_once().await;
}

#[test]
fn dead_segments_are_reused_and_their_old_records_never_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(Duration::from_secs(60), move || async move {
        let (log, _) = open(&path).await;
        let q = log.declare("q", &[]).unwrap();
        // Every 100th message stays unacked: old segments keep dying
        // (compaction moves the few live ones) and files get reused.
        let mut most = 0;
        for round in 0..20u64 {
            churn(&log, q, round * 100..(round + 1) * 100, 100).await;
            most = most.max(segments(&path).len());
        }
        let last = *segments(&path).last().unwrap();
        assert!(last > 25, "~2 MB of records rolled through many segments: {last}");
        assert!(log.segments_reused() + 6 > last, "{} of {last} segments were reused files", log.segments_reused());
        assert!(most <= 8, "kept for reuse: at most 2 dead segments beside the live ones ({most} files)");
        // A crash: recovery reads past the data of reused files only as
        // far as their own records go.
        drop(log);
        let (log, msgs, cut) = open_with(opts(&path)).await;
        let want: Vec<(u64, Vec<u8>)> = (0..2000).step_by(100).map(|s| (s, body(s))).collect();
        assert_eq!(msgs, want, "the unacked messages, in order, nothing resurrected");
        assert!(cut > 0, "the last segment's stale tail was cut");
        // More churn after the crash, then a clean close: sealed, so the
        // next start cuts nothing, though the last file is a reused one.
        churn(&log, q, 2000..4000, 100).await;
        log.close().await.result.unwrap();
        drop(log);
        let (log, msgs, cut) = open_with(opts(&path)).await;
        let want: Vec<(u64, Vec<u8>)> = (0..4000).step_by(100).map(|s| (s, body(s))).collect();
        assert_eq!(msgs, want, "after a clean close");
        assert_eq!(cut, 0, "a clean close leaves no torn tail to cut");
        log.close().await.result.unwrap();
    });
}

#[test]
fn a_crash_between_the_rename_and_the_wipe_of_a_reused_segment_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(Duration::from_secs(30), move || async move {
        let (log, _) = open(&path).await;
        let q = log.declare("q", &[]).unwrap();
        churn(&log, q, 0..2000, 100).await;
        assert!(log.segments_reused() > 10, "the last segment is a reused file, stale records after its data");
        let segs = segments(&path);
        let (first, last) = (segs[0], *segs.last().unwrap());
        let old = std::fs::read(segment_path(&path, first)).unwrap();
        drop(log);
        // The crash left segment `first` renamed to the next number with
        // its header still there (the wipe had not landed): a whole old
        // segment, under a newer name, after the real last one.
        std::fs::write(segment_path(&path, last + 1), &old).unwrap();
        let (log, msgs) = open(&path).await;
        let want: Vec<(u64, Vec<u8>)> = (0..2000).step_by(100).map(|s| (s, body(s))).collect();
        assert_eq!(msgs, want, "nothing of the stale copy is read");
        log.close().await.result.unwrap();
    });
}

/// Logs written before format 2 (unseeded checksums, no seal) still
/// recover, and the log goes on after them in format 2.
#[test]
fn a_version_1_log_still_recovers() {
    use ringmq::storage::record::{encode, encode_publish, Record, Seed, BLOCK};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let mut b = Vec::new();
    let header = Record::Segment { version: 1, shard: 0, shard_count: 1, segment: 1, next_queue_id: 2 };
    encode(&mut b, Seed::V1, &header);
    encode(&mut b, Seed::V1, &Record::Declare { queue: 1, next_seq: 0, name: b"old" });
    for s in 0..5 {
        encode_publish(&mut b, Seed::V1, 1, s, &body(s));
    }
    encode(&mut b, Seed::V1, &Record::Ack { queue: 1, ranges: vec![(1, 2)] });
    b.resize(b.len().div_ceil(BLOCK) * BLOCK, 0);
    std::fs::write(segment_path(&path, 1), &b).unwrap();
    run_local(Duration::from_secs(30), move || async move {
        let (log, msgs) = open(&path).await;
        let want: Vec<(u64, Vec<u8>)> = [0, 3, 4].iter().map(|&s| (s, body(s))).collect();
        assert_eq!(msgs, want);
        log.ack(1, 0, body(0).len());
        publish(&log, 1, 5..8).await;
        log.close().await.result.unwrap();
        drop(log);
        let (log, msgs) = open(&path).await;
        let want: Vec<(u64, Vec<u8>)> = [3, 4, 5, 6, 7].iter().map(|&s| (s, body(s))).collect();
        assert_eq!(msgs, want, "version 1 and version 2 segments together");
        log.close().await.result.unwrap();
    });
}

/// A stream's stored offsets are written again at the start of every
/// segment: once the segment that first held them is reclaimed (deleted),
/// they still recover, the latest per reference.
#[test]
fn stream_offsets_outlive_the_segment_that_held_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(Duration::from_secs(60), move || async move {
        let (log, _, _) = open_with(opts_deleting(&path)).await;
        let q = log.declare("stream", &[]).unwrap();
        log.store_offset(q, "billing", 5).unwrap();
        log.store_offset(q, "audit", 1).unwrap();
        log.store_offset(q, "billing", 7).unwrap();
        let first = segments(&path)[0];
        // Enough to roll several segments, each acked so they die.
        for round in 0..4u64 {
            let range = round * 100..(round + 1) * 100;
            publish(&log, q, range.clone()).await;
            for s in range {
                log.ack(q, s, body(s).len());
            }
        }
        assert!(log.flush().await.result.is_ok());
        log.housekeep_once().await;
        assert!(!segments(&path).contains(&first), "the first segment was reclaimed: {:?}", segments(&path));
        assert!(log.close().await.result.is_ok());
        let io: Rc<dyn LogIo> = Rc::new(DmaIo);
        let (_log, rec) = Storage::<u64>::open(io, opts(&path)).await.expect("recovery");
        let mut offsets = rec.queues[0].offsets.clone();
        offsets.sort();
        assert_eq!(offsets, vec![("audit".to_string(), 1), ("billing".to_string(), 7)]);
    });
}
