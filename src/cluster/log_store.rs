//! The durable Raft log and vote, in one directory:
//!
//! | file | holds | written by |
//! |---|---|---|
//! | `log` | one record per entry, in index order | appends (pwrite + fdatasync), `set_len` on a conflict, a rewrite after a purge |
//! | `vote` | the vote | [`files::replace_file`](super::files) (temporary file, fdatasync, rename, directory sync) |
//! | `purged` | the last purged log id | the same |
//! | `committed` | the last committed log id this member heard of | the same; optional: a missing or damaged one means "none" |
//!
//! An append is fdatasync'ed before openraft is told it is flushed, so an
//! entry a leader counts toward a majority is on that member's disk (the
//! design's rule: a confirmed change is fdatasync'ed on a majority).
//!
//! Entries are also kept in memory, from the purge point on: openraft
//! reads them back for replication and to apply, and the snapshot policy
//! keeps that window small (it is metadata). Memory and file agree after
//! every call returns; a failed write stops the store (`poisoned`), since
//! after a failed fdatasync what the page cache holds is unknown.

use super::files::{self, blocking, decode, encode, read_file, replace_file};
use super::record::{self, Next, Scanner};
use super::{StoreError, StoreLimits};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogId, LogState, RaftLogId, RaftLogReader, RaftTypeConfig, StorageError, StorageIOError, Vote};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::BufReader;
use std::ops::RangeBounds;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

const LOG: &str = "log";
const VOTE: &str = "vote";
const PURGED: &str = "purged";
/// openraft's optional "committed" pointer: with it, a restarted member
/// re-applies what it knows was committed before it hears from a leader,
/// so a node's metadata is whole as soon as it starts.
const COMMITTED: &str = "committed";

/// A vote or a log id encodes in well under this.
const SMALL_RECORD_BYTES_MAX: u32 = 4096;

/// An entry in memory, with where its record starts in `log`.
struct Stored<C: RaftTypeConfig> {
    entry: Entry<C>,
    offset: u64,
}

/// What the store and its readers share (one thread: `Rc<RefCell>`,
/// borrowed only between awaits).
struct Mem<C: RaftTypeConfig> {
    entries: BTreeMap<u64, Stored<C>>,
    last_purged: Option<LogId<C::NodeId>>,
    vote: Option<Vote<C::NodeId>>,
    committed: Option<LogId<C::NodeId>>,
}

/// The durable log of one member of a Raft group whose entries are
/// openraft's `Entry<C>`.
pub struct LogStore<C: RaftTypeConfig> {
    dir: PathBuf,
    limits: StoreLimits,
    file: Arc<File>,
    /// Bytes of whole records in `log`: where the next append goes.
    len: u64,
    mem: Rc<RefCell<Mem<C>>>,
    poisoned: bool,
}

/// A reader over the same entries, for openraft's replication tasks.
pub struct LogReader<C: RaftTypeConfig> {
    mem: Rc<RefCell<Mem<C>>>,
}

/// The files as read back, before decoding (decoding happens on the
/// executor's thread, where the entries will live; they need not be Send).
pub(super) struct RawLog {
    file: File,
    len: u64,
    vote: Option<Vec<u8>>,
    purged: Option<Vec<u8>>,
    committed: Option<Vec<u8>>,
    records: Vec<(u64, Vec<u8>)>,
}

/// Reads `dir`'s files, cutting a torn tail off `log` (durably). Creates
/// the directory and an empty log if they are missing. Blocking.
pub(super) fn read_raw(dir: &Path, limits: StoreLimits) -> Result<RawLog, StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    for name in [LOG, VOTE, PURGED, COMMITTED] {
        // A replacement that crashed before its rename: the old file stands.
        files::remove_if_there(dir.join(format!("{name}.tmp")))?;
    }
    let vote = read_file(&dir.join(VOTE), SMALL_RECORD_BYTES_MAX)?;
    let purged = read_file(&dir.join(PURGED), SMALL_RECORD_BYTES_MAX)?;
    let committed = read_file(&dir.join(COMMITTED), SMALL_RECORD_BYTES_MAX).unwrap_or_else(|e| {
        // Only a hint: without it the member waits for a leader to learn
        // what is committed.
        tracing::warn!(error = %e, "raft log: ignoring a damaged committed pointer");
        None
    });

    let path = dir.join(LOG);
    let io = |e| StoreError::io(&path, e);
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut scan = Scanner::new(BufReader::new(&file), file_len, limits.raft_entry_bytes_max);
    let mut records = Vec::new();
    let len = loop {
        match scan.next_record() {
            Ok(Next::Record { offset, payload }) => records.push((offset, payload)),
            Ok(Next::End) => break file_len,
            Ok(Next::Torn { offset }) => {
                tracing::warn!(
                    path = %path.display(),
                    offset,
                    cut = file_len - offset,
                    "raft log: cutting a torn tail (a write never confirmed)"
                );
                file.set_len(offset).map_err(io)?;
                file.sync_data().map_err(io)?;
                break offset;
            }
            Err(source) => return Err(StoreError::Record { path: path.clone(), source }),
        }
    };
    Ok(RawLog { file, len, vote, purged, committed, records })
}

impl<C> LogStore<C>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
    C::D: Clone,
{
    /// Opens (or creates) the log in `dir`, recovering what it holds.
    /// Must run on a glommio executor (its file I/O goes to the blocking
    /// pool).
    pub async fn open(dir: impl Into<PathBuf>, limits: StoreLimits) -> Result<Self, StoreError> {
        let dir = dir.into();
        let d = dir.clone();
        let raw = blocking(move || read_raw(&d, limits)).await?;
        Self::from_raw(dir, limits, raw)
    }

    /// Decodes what [`read_raw`] found and checks that the entries follow
    /// one another from the purge point.
    pub(super) fn from_raw(dir: PathBuf, limits: StoreLimits, raw: RawLog) -> Result<Self, StoreError> {
        let vote = match &raw.vote {
            Some(b) => Some(decode::<Vote<C::NodeId>>(&dir.join(VOTE), 0, b)?),
            None => None,
        };
        let last_purged = match &raw.purged {
            Some(b) => Some(decode::<LogId<C::NodeId>>(&dir.join(PURGED), 0, b)?),
            None => None,
        };
        let committed = match &raw.committed {
            Some(b) => decode::<LogId<C::NodeId>>(&dir.join(COMMITTED), 0, b).ok(),
            None => None,
        };
        let path = dir.join(LOG);
        let purged_index = last_purged.as_ref().map(|l| l.index);
        let mut entries = BTreeMap::new();
        let mut prev: Option<u64> = None;
        for (offset, payload) in &raw.records {
            let entry: Entry<C> = decode(&path, *offset, payload)?;
            let index = entry.get_log_id().index;
            let expected = match (prev, purged_index) {
                // Past the purge point: right after it, or after the entry
                // before (entries up to it may linger, and may stop short
                // of it, when a purge past the end of the log crashed
                // before its rewrite).
                (prev, Some(p)) if index > p => Some(prev.map_or(p, |q| q.max(p)).saturating_add(1)),
                (Some(q), _) => Some(q.saturating_add(1)),
                (None, _) => None,
            };
            if expected.is_some_and(|want| want != index) {
                return Err(StoreError::Inconsistent {
                    path,
                    offset: *offset,
                    what: format!("entry {index} where {expected:?} was due"),
                });
            }
            prev = Some(index);
            if purged_index.is_some_and(|p| index <= p) {
                continue; // purged, the rewrite that drops it not yet done
            }
            let offset = *offset;
            entries.insert(index, Stored { entry, offset });
        }
        Ok(Self {
            dir,
            limits,
            file: Arc::new(raw.file),
            len: raw.len,
            mem: Rc::new(RefCell::new(Mem { entries, last_purged, vote, committed })),
            poisoned: false,
        })
    }

    /// Rewrites `log` with only the entries in memory (after a purge), so
    /// purged entries stop taking room: a new file, fdatasync'ed, renamed
    /// over the old one, the directory synced.
    async fn rewrite(&mut self) -> Result<(), StoreError> {
        let mut buf = Vec::new();
        let mut offsets = Vec::new();
        for (index, s) in self.mem.borrow().entries.iter() {
            offsets.push((*index, buf.len() as u64));
            let payload = encode(&s.entry, self.limits.raft_entry_bytes_max)?;
            record::encode_into(&mut buf, &payload);
        }
        let dir = self.dir.clone();
        let len = buf.len() as u64;
        let file = blocking(move || -> Result<File, StoreError> {
            let tmp = dir.join(format!("{LOG}.tmp"));
            let path = dir.join(LOG);
            let write = || -> std::io::Result<()> {
                let f = File::create(&tmp)?;
                f.write_all_at(&buf, 0)?;
                f.sync_data()
            };
            write().map_err(|e| StoreError::io(&tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| StoreError::io(&path, e))?;
            files::sync_dir(&dir)?;
            OpenOptions::new().read(true).write(true).open(&path).map_err(|e| StoreError::io(&path, e))
        })
        .await?;
        self.file = Arc::new(file);
        self.len = len;
        let mut mem = self.mem.borrow_mut();
        for (index, offset) in offsets {
            if let Some(s) = mem.entries.get_mut(&index) {
                s.offset = offset;
            }
        }
        Ok(())
    }
}

/// What every write answers once one has failed.
fn poisoned<NID: openraft::NodeId>() -> StorageError<NID> {
    let e = std::io::Error::other("an earlier write to the raft log failed");
    StorageIOError::write_logs(&e).into()
}

fn entries_in<C, RB>(mem: &Mem<C>, range: RB) -> Vec<Entry<C>>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
    C::D: Clone,
    RB: RangeBounds<u64>,
{
    mem.entries.range(range).map(|(_, s)| s.entry.clone()).collect()
}

impl<C> RaftLogReader<C> for LogReader<C>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
    C::D: Clone,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<C>>, StorageError<C::NodeId>> {
        Ok(entries_in(&self.mem.borrow(), range))
    }
}

impl<C> RaftLogReader<C> for LogStore<C>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
    C::D: Clone,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<C>>, StorageError<C::NodeId>> {
        Ok(entries_in(&self.mem.borrow(), range))
    }
}

impl<C> RaftLogStorage<C> for LogStore<C>
where
    C: RaftTypeConfig<Entry = Entry<C>>,
    C::D: Clone,
{
    type LogReader = LogReader<C>;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<C::NodeId>> {
        let mem = self.mem.borrow();
        let last_purged_log_id = mem.last_purged.clone();
        let last_log_id = match mem.entries.last_key_value() {
            Some((_, s)) => Some(s.entry.get_log_id().clone()),
            None => last_purged_log_id.clone(),
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader { mem: self.mem.clone() }
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        let fail = |e: StoreError| StorageError::from(StorageIOError::write_vote(&e));
        let payload = encode(vote, SMALL_RECORD_BYTES_MAX).map_err(fail)?;
        let dir = self.dir.clone();
        blocking(move || replace_file(&dir, VOTE, &payload)).await.map_err(fail)?;
        self.mem.borrow_mut().vote = Some(vote.clone());
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<C::NodeId>>, StorageError<C::NodeId>> {
        Ok(self.mem.borrow().vote.clone())
    }

    async fn save_committed(&mut self, committed: Option<LogId<C::NodeId>>) -> Result<(), StorageError<C::NodeId>> {
        let fail = |e: StoreError| StorageError::from(StorageIOError::write_logs(&e));
        if committed.is_none() || self.mem.borrow().committed == committed {
            return Ok(());
        }
        let payload = encode(&committed, SMALL_RECORD_BYTES_MAX).map_err(fail)?;
        let dir = self.dir.clone();
        blocking(move || replace_file(&dir, COMMITTED, &payload)).await.map_err(fail)?;
        self.mem.borrow_mut().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<C::NodeId>>, StorageError<C::NodeId>> {
        // Never past the log's end: what is not in the log cannot be
        // re-applied (a pointer from a log that was since cut).
        let m = self.mem.borrow();
        let last = m.entries.keys().next_back().copied().or(m.last_purged.as_ref().map(|l| l.index));
        Ok(m.committed.clone().filter(|c| last.is_some_and(|l| c.index <= l)))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> Result<(), StorageError<C::NodeId>>
    where
        I: IntoIterator<Item = Entry<C>>,
    {
        if self.poisoned {
            return Err(poisoned());
        }
        let fail = |e: StoreError| StorageError::from(StorageIOError::write_logs(&e));
        let mut buf = Vec::new();
        let mut added = Vec::new();
        for entry in entries {
            let payload = encode(&entry, self.limits.raft_entry_bytes_max).map_err(fail)?;
            added.push((buf.len() as u64, entry));
            record::encode_into(&mut buf, &payload);
        }
        let (file, at, n) = (self.file.clone(), self.len, buf.len() as u64);
        let path = self.dir.join(LOG);
        let res = blocking(move || {
            file.write_all_at(&buf, at).and_then(|()| file.sync_data()).map_err(|e| StoreError::io(path, e))
        })
        .await;
        if let Err(e) = res {
            self.poisoned = true;
            callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
            return Err(fail(e));
        }
        {
            let mut mem = self.mem.borrow_mut();
            for (rel, entry) in added {
                let index = entry.get_log_id().index;
                let offset = at + rel;
                mem.entries.insert(index, Stored { entry, offset });
            }
        }
        self.len = at + n;
        // Only now, with the entries on disk, may openraft count them.
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        if self.poisoned {
            return Err(poisoned());
        }
        let cut = match self.mem.borrow().entries.get(&log_id.index) {
            Some(s) => s.offset,
            None => return Ok(()), // nothing at or after it
        };
        let (file, path) = (self.file.clone(), self.dir.join(LOG));
        let res =
            blocking(move || file.set_len(cut).and_then(|()| file.sync_data()).map_err(|e| StoreError::io(path, e)))
                .await;
        if let Err(e) = res {
            self.poisoned = true;
            return Err(StorageIOError::write_logs(&e).into());
        }
        drop(self.mem.borrow_mut().entries.split_off(&log_id.index));
        self.len = cut;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> Result<(), StorageError<C::NodeId>> {
        if self.poisoned {
            return Err(poisoned());
        }
        let fail = |e: StoreError| StorageError::from(StorageIOError::write_logs(&e));
        // The purge point first: once it is durable, recovery skips the
        // entries up to it whether or not the rewrite below happened.
        let payload = encode(&log_id, SMALL_RECORD_BYTES_MAX).map_err(fail)?;
        let dir = self.dir.clone();
        blocking(move || replace_file(&dir, PURGED, &payload)).await.map_err(fail)?;
        let first_kept = {
            let mut mem = self.mem.borrow_mut();
            let kept = mem.entries.split_off(&log_id.index.saturating_add(1));
            mem.entries = kept;
            mem.last_purged = Some(log_id);
            mem.entries.first_key_value().map(|(_, s)| s.offset)
        };
        // Rewrite only when the dead prefix is at least as big as what is
        // kept, so purging costs amortized O(1) per entry.
        let dead = first_kept.unwrap_or(self.len);
        if dead > 0 && dead >= self.len - dead {
            if let Err(e) = self.rewrite().await {
                self.poisoned = true;
                return Err(fail(e));
            }
        }
        Ok(())
    }
}
