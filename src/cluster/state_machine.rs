//! The metadata state machine: applies committed commands to an [`Apply`]
//! state, and keeps the latest snapshot of that state in one file,
//! `snapshot` in its directory (one record: the snapshot's meta and the
//! state, postcard; replaced whole: temporary file, fdatasync, rename,
//! directory sync).
//!
//! The state itself lives in memory. At start it is the snapshot's (or
//! the default); openraft then re-applies the committed entries after the
//! snapshot from the log. That is why a snapshot's file is written before
//! openraft hears it is built: openraft purges the log up to a built
//! snapshot, and what was purged must be in a file.

use super::files::{blocking, decode, encode, read_file, replace_file};
use super::snapshot_buf::SnapshotBuf;
use super::{Apply, MetaRaft, NodeId, StoreError, StoreLimits};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

const SNAPSHOT: &str = "snapshot";

type Meta = SnapshotMeta<NodeId, BasicNode>;
type Fail = StorageError<NodeId>;

/// The snapshot file's one record.
#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotFile {
    meta: Meta,
    /// The state, postcard: what travels to a member that installs it.
    data: Vec<u8>,
}

struct Applied<A> {
    state: A,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
}

/// Serializes writers of the snapshot file (a build runs in its own task,
/// beside installs) and remembers which snapshot the file holds.
type OnDisk = Rc<tokio::sync::Mutex<Option<Meta>>>;

/// What the state machine tells its observer, after the state changed.
pub enum Event<'a, A: Apply> {
    /// A committed command was applied, answering `response`.
    Applied { index: u64, command: &'a A::Command, response: &'a A::Response },
    /// A snapshot from the leader replaced the whole state.
    Installed { index: u64, state: &'a A },
}

/// Who hears of every change to the applied state, on the member's own
/// thread (the broker's local half: it brings its shards in step). It
/// must not call back into the state machine.
pub type Observer<A> = Rc<dyn Fn(Event<'_, A>)>;

/// The state machine openraft drives. Reads of the applied state go
/// through a [`StateView`].
pub struct StateMachine<A: Apply> {
    dir: PathBuf,
    limits: StoreLimits,
    applied: Rc<RefCell<Applied<A>>>,
    on_disk: OnDisk,
    observer: Option<Observer<A>>,
}

/// A read-only handle on the applied state, for the member's own use (the
/// broker will answer from it; the tests compare members with it).
pub struct StateView<A>(Rc<RefCell<Applied<A>>>);

impl<A> Clone for StateView<A> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<A: Apply> StateView<A> {
    /// Calls `f` with the state as applied so far.
    pub fn read<R>(&self, f: impl FnOnce(&A) -> R) -> R {
        f(&self.0.borrow().state)
    }

    /// The last entry applied.
    pub fn last_applied(&self) -> Option<LogId<NodeId>> {
        self.0.borrow().last_applied
    }
}

/// Builds one snapshot from a copy of the state taken when openraft asked
/// for the builder, so applies that go on meanwhile do not change it.
pub struct SnapshotBuilder<A> {
    dir: PathBuf,
    limits: StoreLimits,
    /// The state, encoded (or why it could not be).
    data: Result<Vec<u8>, StoreError>,
    meta: Meta,
    on_disk: OnDisk,
    _state: std::marker::PhantomData<fn() -> A>,
}

fn newer(a: &Meta, than: Option<&Meta>) -> bool {
    match than {
        Some(t) => a.last_log_id > t.last_log_id,
        None => true,
    }
}

/// Writes the snapshot file (blocking pool) unless it already holds one as
/// new; the caller holds the `OnDisk` lock.
async fn store(
    dir: PathBuf,
    limits: StoreLimits,
    file: SnapshotFile,
    on_disk: &mut Option<Meta>,
) -> Result<(), StoreError> {
    if !newer(&file.meta, on_disk.as_ref()) {
        return Ok(());
    }
    let payload = encode(&file, limits.snapshot_bytes_max)?;
    blocking(move || replace_file(&dir, SNAPSHOT, &payload)).await?;
    *on_disk = Some(file.meta);
    Ok(())
}

impl<A: Apply> StateMachine<A> {
    /// Opens the state machine in `dir`, starting from its snapshot file
    /// if there is one. Must run on a glommio executor.
    pub async fn open(dir: impl Into<PathBuf>, limits: StoreLimits) -> Result<(Self, StateView<A>), StoreError> {
        let dir = dir.into();
        let d = dir.clone();
        let raw = blocking(move || {
            std::fs::create_dir_all(&d).map_err(|e| StoreError::io(&d, e))?;
            super::files::remove_if_there(d.join(format!("{SNAPSHOT}.tmp")))?;
            read_file(&d.join(SNAPSHOT), limits.snapshot_bytes_max)
        })
        .await?;
        let mut applied = Applied { state: A::default(), last_applied: None, membership: StoredMembership::default() };
        let mut on_disk = None;
        if let Some(raw) = raw {
            let path = dir.join(SNAPSHOT);
            let file: SnapshotFile = decode(&path, 0, &raw)?;
            applied = Applied {
                state: decode(&path, 0, &file.data)?,
                last_applied: file.meta.last_log_id,
                membership: file.meta.last_membership.clone(),
            };
            on_disk = Some(file.meta);
        }
        let applied = Rc::new(RefCell::new(applied));
        let on_disk = Rc::new(tokio::sync::Mutex::new(on_disk));
        let sm = Self { dir, limits, applied: applied.clone(), on_disk, observer: None };
        Ok((sm, StateView(applied)))
    }

    /// Tells `observer` of every change from now on (set it before the
    /// state machine goes to `Raft::new`).
    pub fn observe(&mut self, observer: Observer<A>) {
        self.observer = Some(observer);
    }
}

impl<A: Apply> RaftSnapshotBuilder<MetaRaft<A>> for SnapshotBuilder<A> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<MetaRaft<A>>, Fail> {
        let sig = Some(self.meta.signature());
        let data = match &self.data {
            Ok(d) => d.clone(),
            Err(e) => return Err(StorageIOError::write_snapshot(sig, e).into()),
        };
        let fail = |e: StoreError| Fail::from(StorageIOError::write_snapshot(sig.clone(), &e));
        let file = SnapshotFile { meta: self.meta.clone(), data: data.clone() };
        let mut on_disk = self.on_disk.lock().await;
        store(self.dir.clone(), self.limits, file, &mut on_disk).await.map_err(fail)?;
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(SnapshotBuf::new(data, self.limits.snapshot_bytes_max)),
        })
    }
}

impl<A: Apply> RaftStateMachine<MetaRaft<A>> for StateMachine<A> {
    type SnapshotBuilder = SnapshotBuilder<A>;

    async fn applied_state(&mut self) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), Fail> {
        let a = self.applied.borrow();
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Option<A::Response>>, Fail>
    where
        I: IntoIterator<Item = Entry<MetaRaft<A>>>,
    {
        let mut out = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            // The borrow ends before the observer runs: it may read the
            // state through a `StateView`.
            let response = {
                let mut a = self.applied.borrow_mut();
                a.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => None,
                    EntryPayload::Normal(command) => Some((a.state.apply(&command), command)),
                    EntryPayload::Membership(m) => {
                        a.membership = StoredMembership::new(Some(entry.log_id), m);
                        None
                    }
                }
            };
            out.push(match response {
                Some((response, command)) => {
                    if let Some(o) = &self.observer {
                        o(Event::Applied { index, command: &command, response: &response });
                    }
                    Some(response)
                }
                None => None,
            });
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let a = self.applied.borrow();
        // Encoded now: the copy the builder works from, whatever is
        // applied while it writes.
        let data = encode(&a.state, self.limits.snapshot_bytes_max);
        let n: u32 = rand::random();
        let snapshot_id = match a.last_applied {
            Some(l) => format!("{}-{}-{n:08x}", l.leader_id, l.index),
            None => format!("empty-{n:08x}"),
        };
        SnapshotBuilder {
            dir: self.dir.clone(),
            limits: self.limits,
            data,
            meta: Meta { last_log_id: a.last_applied, last_membership: a.membership.clone(), snapshot_id },
            on_disk: self.on_disk.clone(),
            _state: std::marker::PhantomData,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<SnapshotBuf>, Fail> {
        Ok(Box::new(SnapshotBuf::new(Vec::new(), self.limits.snapshot_bytes_max)))
    }

    async fn install_snapshot(&mut self, meta: &Meta, snapshot: Box<SnapshotBuf>) -> Result<(), Fail> {
        let sig = Some(meta.signature());
        let data = snapshot.into_inner();
        // What a peer sent is hostile until it decodes within bounds.
        let max = crate::protocol::wire::usize_of(u64::from(self.limits.snapshot_bytes_max));
        if data.len() > max {
            let e = StoreError::TooBig { len: data.len(), max: self.limits.snapshot_bytes_max };
            return Err(StorageIOError::read_snapshot(sig, &e).into());
        }
        let state: A = decode(&self.dir.join(SNAPSHOT), 0, &data)
            .map_err(|e| Fail::from(StorageIOError::read_snapshot(sig.clone(), &e)))?;
        let file = SnapshotFile { meta: meta.clone(), data };
        let mut on_disk = self.on_disk.lock().await;
        store(self.dir.clone(), self.limits, file, &mut on_disk)
            .await
            .map_err(|e| Fail::from(StorageIOError::write_snapshot(sig.clone(), &e)))?;
        *self.applied.borrow_mut() =
            Applied { state, last_applied: meta.last_log_id, membership: meta.last_membership.clone() };
        if let Some(o) = &self.observer {
            let index = meta.last_log_id.map_or(0, |l| l.index);
            o(Event::Installed { index, state: &self.applied.borrow().state });
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<MetaRaft<A>>>, Fail> {
        let on_disk = self.on_disk.lock().await;
        let Some(meta) = on_disk.as_ref() else {
            return Ok(None);
        };
        let sig = Some(meta.signature());
        let fail = |e: StoreError| Fail::from(StorageIOError::read_snapshot(sig.clone(), &e));
        let (dir, max) = (self.dir.clone(), self.limits.snapshot_bytes_max);
        let raw = blocking(move || read_file(&dir.join(SNAPSHOT), max)).await.map_err(fail)?;
        let path = self.dir.join(SNAPSHOT);
        let Some(raw) = raw else {
            let e = std::io::Error::from(std::io::ErrorKind::NotFound);
            return Err(fail(StoreError::io(path, e)));
        };
        let file: SnapshotFile = decode(&path, 0, &raw).map_err(fail)?;
        Ok(Some(Snapshot {
            meta: file.meta,
            snapshot: Box::new(SnapshotBuf::new(file.data, self.limits.snapshot_bytes_max)),
        }))
    }
}
