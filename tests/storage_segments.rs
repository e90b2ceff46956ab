//! Prepared segments (`storage/housekeep.rs`): the next segment is created
//! and allocated ahead of the roll. Records written into one recover (the
//! allocated zeros after them are the clean end of the data); a crash
//! leaves an unused one behind, which recovery deletes, still cutting the
//! torn tail of the real last segment instead of calling it damage; a
//! clean close leaves none. Dead segments go through the same task.

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

fn body(seq: u64) -> Vec<u8> {
    let mut b = format!("m-{seq}-").into_bytes();
    b.resize(900, b'a' + (seq % 26) as u8);
    b
}

fn segments(dir: &Path) -> Vec<u64> {
    ringmq::storage::io::list_segments(dir).unwrap()
}

async fn open(dir: &Path) -> (Storage<u64>, Vec<(u64, Vec<u8>)>) {
    let io: Rc<dyn LogIo> = Rc::new(DmaIo);
    let (log, rec) = Storage::<u64>::open(io, opts(dir)).await.expect("recovery");
    let mut msgs = Vec::new();
    for mut q in rec.queues {
        let ms: Vec<_> = q.messages.iter().copied().collect();
        msgs.extend(ms.iter().map(|m| (m.seq, q.take_entry(m).expect("in memory").to_vec())));
    }
    (log, msgs)
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
        let (log, _) = open(&path).await;
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
