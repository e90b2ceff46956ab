//! The log store and the state machine on real files: what survives a
//! reopen, and what recovery makes of a torn, damaged or hostile file.

#![allow(clippy::cast_possible_truncation)] // test data is small

use super::log_store::{read_raw, LogStore};
use super::record::{self, ScanError, HEADER_BYTES};
use super::snapshot_buf::SnapshotBuf;
use super::test_kv::{Kv, KvCommand};
use super::{MetaRaft, StateMachine, StoreError, StoreLimits};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder, Vote};
use std::path::Path;

type C = MetaRaft<Kv>;

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64) -> Entry<C> {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(KvCommand::set(format!("k{index}"), format!("t{term}"))),
    }
}

fn run<T>(f: impl std::future::Future<Output = T> + 'static) -> T {
    glommio::LocalExecutor::default().run(f)
}

async fn entries(store: &mut LogStore<C>, from: u64, to: u64) -> Vec<(u64, u64)> {
    let got = store.try_get_log_entries(from..to).await.unwrap();
    got.iter().map(|e| (e.log_id.leader_id.term, e.log_id.index)).collect()
}

#[test]
fn append_truncate_purge_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let limits = StoreLimits::default();
        let mut s = LogStore::<C>::open(&path, limits).await.unwrap();
        assert_eq!(s.read_vote().await.unwrap(), None);
        s.blocking_append((0..10).map(|i| entry(1, i))).await.unwrap();
        let vote = Vote::new_committed(1, 1);
        s.save_vote(&vote).await.unwrap();

        // A conflict from index 7: a new leader's entries replace 7..=9.
        s.truncate(log_id(1, 7)).await.unwrap();
        s.blocking_append((7..9).map(|i| entry(2, i))).await.unwrap();
        s.purge(log_id(1, 3)).await.unwrap();
        drop(s);

        let mut s = LogStore::<C>::open(&path, limits).await.unwrap();
        assert_eq!(s.read_vote().await.unwrap(), Some(vote));
        let st = s.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id, Some(log_id(1, 3)));
        assert_eq!(st.last_log_id, Some(log_id(2, 8)));
        let want = vec![(1, 4), (1, 5), (1, 6), (2, 7), (2, 8)];
        assert_eq!(entries(&mut s, 0, 100).await, want);
        let mut reader = s.get_log_reader().await;
        assert_eq!(reader.try_get_log_entries(6..8).await.unwrap().len(), 2);

        // Purging most of it rewrites the file without the dead prefix.
        let before = std::fs::metadata(path.join("log")).unwrap().len();
        s.purge(log_id(1, 6)).await.unwrap();
        let after = std::fs::metadata(path.join("log")).unwrap().len();
        assert!(after < before, "{after} < {before}");
        s.blocking_append([entry(2, 9)]).await.unwrap();
        drop(s);

        let mut s = LogStore::<C>::open(&path, limits).await.unwrap();
        assert_eq!(entries(&mut s, 0, 100).await, vec![(2, 7), (2, 8), (2, 9)]);
        // Purging past the last entry (a follower that installed a
        // snapshot) leaves an empty log whose last id is the purge point.
        s.purge(log_id(3, 20)).await.unwrap();
        drop(s);
        let mut s = LogStore::<C>::open(&path, limits).await.unwrap();
        let st = s.get_log_state().await.unwrap();
        assert_eq!(st.last_log_id, Some(log_id(3, 20)));
        assert!(entries(&mut s, 0, 100).await.is_empty());
        s.blocking_append([entry(3, 21)]).await.unwrap();
        assert_eq!(entries(&mut s, 0, 100).await, vec![(3, 21)]);
    });
}

#[test]
fn an_entry_over_the_limit_is_refused_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run(async move {
        let limits = StoreLimits { raft_entry_bytes_max: 64, ..StoreLimits::default() };
        let mut s = LogStore::<C>::open(&path, limits).await.unwrap();
        let big = Entry { log_id: log_id(1, 0), payload: EntryPayload::Normal(KvCommand::set("k", "v".repeat(100))) };
        assert!(s.blocking_append([big]).await.is_err());
        assert_eq!(std::fs::metadata(path.join("log")).unwrap().len(), 0);
    });
}

/// A log file of entries 0..n (term 1), and each record's offset.
fn write_log(dir: &Path, n: u64) -> (Vec<u8>, Vec<u64>) {
    let mut bytes = Vec::new();
    let mut offsets = Vec::new();
    for i in 0..n {
        offsets.push(bytes.len() as u64);
        record::encode_into(&mut bytes, &postcard::to_allocvec(&entry(1, i)).unwrap());
    }
    std::fs::write(dir.join("log"), &bytes).unwrap();
    (bytes, offsets)
}

fn recover(dir: &Path, limits: StoreLimits) -> Result<LogStore<C>, StoreError> {
    let raw = read_raw(dir, limits)?;
    LogStore::from_raw(dir.to_path_buf(), limits, raw)
}

fn indexes(s: &mut LogStore<C>) -> Vec<u64> {
    let got = futures_lite::future::block_on(s.try_get_log_entries(..)).unwrap();
    got.iter().map(|e| e.log_id.index).collect()
}

#[test]
fn recovery_cuts_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, offsets) = write_log(dir.path(), 4);
    // The fourth record half written: a crash mid-append, never confirmed.
    let cut = offsets[3] + 5;
    std::fs::write(dir.path().join("log"), &bytes[..cut as usize]).unwrap();
    let mut s = recover(dir.path(), StoreLimits::default()).unwrap();
    assert_eq!(indexes(&mut s), vec![0, 1, 2]);
    let len = std::fs::metadata(dir.path().join("log")).unwrap().len();
    assert_eq!(len, offsets[3], "the torn part is cut off on disk");
    // A second recovery finds a clean file.
    drop(s);
    let mut s = recover(dir.path(), StoreLimits::default()).unwrap();
    assert_eq!(indexes(&mut s), vec![0, 1, 2]);
}

#[test]
fn recovery_reports_a_damaged_middle_record_with_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (mut bytes, offsets) = write_log(dir.path(), 4);
    let at = offsets[1] as usize + HEADER_BYTES + 2;
    bytes[at] ^= 0x10;
    std::fs::write(dir.path().join("log"), &bytes).unwrap();
    match recover(dir.path(), StoreLimits::default()) {
        Err(StoreError::Record { source: ScanError::BadCrc { offset }, .. }) => assert_eq!(offset, offsets[1]),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a damaged record in the middle was accepted"),
    }
    // Nothing was cut: the records after it may be confirmed ones.
    let len = std::fs::metadata(dir.path().join("log")).unwrap().len();
    assert_eq!(len, bytes.len() as u64);
}

#[test]
fn recovery_refuses_an_oversize_length_without_allocating_it() {
    let dir = tempfile::tempdir().unwrap();
    let limits = StoreLimits::default();
    for claimed in [limits.raft_entry_bytes_max + 1, u32::MAX] {
        let (mut bytes, _) = write_log(dir.path(), 2);
        let at = bytes.len() as u64;
        // A header claiming `claimed` bytes, then a little data: read as a
        // torn tail it would be cut; believed, it would be allocated.
        bytes.extend_from_slice(&claimed.to_le_bytes());
        bytes.extend_from_slice(&[0xAB; 64]);
        std::fs::write(dir.path().join("log"), &bytes).unwrap();
        match recover(dir.path(), limits) {
            Err(StoreError::Record { source: ScanError::Oversize { offset, len, max }, .. }) => {
                assert_eq!(offset, at);
                assert_eq!((len, max), (claimed, limits.raft_entry_bytes_max));
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("an oversize record was accepted"),
        }
        let len = std::fs::metadata(dir.path().join("log")).unwrap().len();
        assert_eq!(len, bytes.len() as u64, "nothing cut");
    }
}

#[test]
fn recovery_refuses_entries_out_of_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    for i in [0, 1, 3] {
        record::encode_into(&mut bytes, &postcard::to_allocvec(&entry(1, i)).unwrap());
    }
    std::fs::write(dir.path().join("log"), &bytes).unwrap();
    match recover(dir.path(), StoreLimits::default()) {
        Err(StoreError::Inconsistent { what, .. }) => assert!(what.contains("entry 3"), "{what}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a gap in the log was accepted"),
    }
}

#[test]
fn entries_left_before_a_purge_point_past_them_are_skipped() {
    // A purge past the end of the log (a follower that installed a
    // snapshot) whose rewrite a crash prevented: the old entries stay in
    // the file, and the next append lands after them.
    let dir = tempfile::tempdir().unwrap();
    let (mut bytes, _) = write_log(dir.path(), 4);
    let purged = postcard::to_allocvec(&log_id(2, 10)).unwrap();
    super::files::replace_file(dir.path(), "purged", &purged).unwrap();
    record::encode_into(&mut bytes, &postcard::to_allocvec(&entry(2, 11)).unwrap());
    std::fs::write(dir.path().join("log"), &bytes).unwrap();
    let mut s = recover(dir.path(), StoreLimits::default()).unwrap();
    assert_eq!(indexes(&mut s), vec![11]);

    // But an entry at or before the purge point after a kept one is not a
    // log this store wrote.
    record::encode_into(&mut bytes, &postcard::to_allocvec(&entry(2, 5)).unwrap());
    std::fs::write(dir.path().join("log"), &bytes).unwrap();
    assert!(matches!(recover(dir.path(), StoreLimits::default()), Err(StoreError::Inconsistent { .. })));
}

#[test]
fn a_damaged_vote_file_is_an_error_not_a_missing_vote() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vote"), [9u8; 12]).unwrap();
    assert!(recover(dir.path(), StoreLimits::default()).is_err());
}

fn set(term: u64, index: u64, key: &str, value: &str) -> Entry<C> {
    Entry { log_id: log_id(term, index), payload: EntryPayload::Normal(KvCommand::set(key, value)) }
}

#[test]
fn snapshots_are_built_to_and_installed_from_files() {
    let a_dir = tempfile::tempdir().unwrap();
    let b_dir = tempfile::tempdir().unwrap();
    let (a_path, b_path) = (a_dir.path().to_path_buf(), b_dir.path().to_path_buf());
    run(async move {
        let limits = StoreLimits::default();
        let (mut a, a_view) = StateMachine::<Kv>::open(&a_path, limits).await.unwrap();
        assert!(a.get_current_snapshot().await.unwrap().is_none());
        let out = a.apply([set(1, 1, "x", "1"), set(1, 2, "y", "2"), set(1, 3, "x", "3")]).await.unwrap();
        assert_eq!(out, vec![Some(None), Some(None), Some(Some("1".to_string()))]);

        let mut builder = a.get_snapshot_builder().await;
        // Applied after the builder was made: not in this snapshot.
        a.apply([set(1, 4, "z", "4")]).await.unwrap();
        let snap = builder.build_snapshot().await.unwrap();
        assert_eq!(snap.meta.last_log_id, Some(log_id(1, 3)));
        assert!(a_path.join("snapshot").exists());
        assert_eq!(a_view.read(|kv| kv.map.len()), 3);

        // Another member installs it, from its own file after a restart.
        let (mut b, _) = StateMachine::<Kv>::open(&b_path, limits).await.unwrap();
        let current = a.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, snap.meta);
        b.install_snapshot(&current.meta, current.snapshot).await.unwrap();
        drop(b);
        let (mut b, b_view) = StateMachine::<Kv>::open(&b_path, limits).await.unwrap();
        assert_eq!(b_view.last_applied(), Some(log_id(1, 3)));
        let want: Vec<(String, String)> = vec![("x".into(), "3".into()), ("y".into(), "2".into())];
        assert_eq!(b_view.read(|kv| kv.map.clone().into_iter().collect::<Vec<_>>()), want);
        let (applied, _) = b.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(1, 3)));

        // A snapshot that does not decode is refused, and changes nothing.
        let garbage = Box::new(SnapshotBuf::new(vec![0xFF; 9], limits.snapshot_bytes_max));
        let mut meta = current.meta.clone();
        meta.last_log_id = Some(log_id(2, 9));
        assert!(b.install_snapshot(&meta, garbage).await.is_err());
        assert_eq!(b_view.last_applied(), Some(log_id(1, 3)));
        let on_disk = b.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(on_disk.meta, current.meta);
    });
}
