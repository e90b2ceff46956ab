//! Shard 0's side of every change to the routing table (see
//! `docs/routing.md`): it applies the change to its table, stores durable
//! definitions, broadcasts the change to every peer, and answers once
//! every peer has applied it. The peers' side (`on_meta_apply`) and the
//! requests that bring changes here are in `routing_replica.rs`.

use super::routing_replica::{route_error, METADATA_SHARD};
use super::Shard;
use crate::protocol::ErrorCode;
use crate::routing::{BindingDef, Change, Dest, RoutingTable};
use crate::server::mesh::MeshMsg;
use crate::server::types::{ConnRef, QueueError};
use bytes::Bytes;
use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};

/// A binding as a set key: what makes two bindings the same.
type BindingKey = (String, Dest, String, Bytes);

fn key_of(b: &BindingDef) -> BindingKey {
    (b.source.clone(), b.dest.clone(), b.key.clone(), b.args.clone())
}

/// An answer to a table change held until every peer has the change:
/// (version, to, request id, result).
type Waiting = (u64, ConnRef, u64, Result<u64, QueueError>);

/// Shard 0's agreement on routing changes: which bindings are stored with
/// the definitions, how far each peer has applied the table, and the
/// answers waiting for them. One part of `Shard` (empty on other shards).
#[derive(Default)]
pub struct MetaOwner {
    /// Bindings stored with the definitions (durable source and
    /// destination).
    durable_bindings: RefCell<HashSet<BindingKey>>,
    /// The table version each peer has applied.
    peer_versions: RefCell<Vec<u64>>,
    /// Answers waiting until every peer has reached their version.
    waiting: RefCell<VecDeque<Waiting>>,
}

impl MetaOwner {
    /// A binding loaded from the stored definitions.
    fn stored(&self, b: &BindingDef) {
        self.durable_bindings.borrow_mut().insert(key_of(b));
    }

    /// Whether `b` is stored with the definitions.
    pub(super) fn is_stored(&self, b: &BindingDef) -> bool {
        self.durable_bindings.borrow().contains(&key_of(b))
    }

    /// Keeps the set of stored bindings in step; true when it changed.
    fn track(&self, table: &RoutingTable, change: &Change, durable_dest: bool) -> bool {
        let mut set = self.durable_bindings.borrow_mut();
        let before = set.len();
        match change {
            Change::Bind(b) => {
                let dest_durable = match &b.dest {
                    Dest::Queue(_) => durable_dest,
                    Dest::Exchange(x) => table.exchange(x).is_some_and(|x| x.durable),
                };
                if dest_durable && table.exchange(&b.source).is_some_and(|x| x.durable) {
                    set.insert(key_of(b));
                }
            }
            Change::Unbind(b) => {
                set.remove(&key_of(b));
            }
            Change::DeleteExchange(n) => {
                set.retain(|(s, d, _, _)| s != n && !matches!(d, Dest::Exchange(x) if x == n));
            }
            Change::QueueGone(q) => set.retain(|(_, d, _, _)| !matches!(d, Dest::Queue(x) if x == q)),
            Change::DeclareExchange(_) => {}
        }
        set.len() != before
    }

    /// Peer `peer` (of `count` shards) has applied the table up to `version`.
    fn peer_applied(&self, count: u16, peer: u16, version: u64) {
        let mut v = self.peer_versions.borrow_mut();
        v.resize(usize::from(count), 0);
        v[usize::from(peer)] = v[usize::from(peer)].max(version);
    }

    /// The version every peer of shard `me` has applied.
    fn applied_by_all(&self, count: u16, me: u16) -> u64 {
        let mut v = self.peer_versions.borrow_mut();
        v.resize(usize::from(count), 0);
        (0..count).filter(|p| *p != me).map(|p| v[usize::from(p)]).min().unwrap_or(u64::MAX)
    }

    /// Holds an answer until every peer has its version.
    fn hold(&self, w: Waiting) {
        self.waiting.borrow_mut().push_back(w);
    }

    /// The oldest held answer whose version is `low` or earlier.
    fn next_released(&self, low: u64) -> Option<Waiting> {
        let mut w = self.waiting.borrow_mut();
        match w.front() {
            Some((v, ..)) if *v <= low => w.pop_front(),
            _ => None,
        }
    }
}

impl Shard {
    /// Shard 0 at start: loads the stored definitions into its table, then
    /// sends the whole table to every peer.
    ///
    /// On a clustered node the table comes from the cluster instead (the
    /// member has applied what it holds by now, and sent each change to
    /// the peers as it did): the file's routing part is not read.
    pub fn publish_definitions(&self) -> Result<(), crate::storage::StorageError> {
        debug_assert_eq!(self.id, METADATA_SHARD);
        if self.cluster_node().is_some() {
            for peer in (0..self.count).filter(|p| *p != self.id) {
                self.mesh.forward(peer, MeshMsg::MetaReady);
            }
            self.set_routing_ready();
            return Ok(());
        }
        let path = self.config.data_dir.join(crate::storage::definitions::FILE);
        let defs = crate::storage::definitions::load(&path)?.routing;
        {
            let mut table = self.routing.table.borrow_mut();
            for c in &defs {
                if let Err(e) = table.apply(c) {
                    tracing::warn!(error = %e, change = ?c, "stored definition not applied");
                } else if let Change::Bind(b) = c {
                    self.meta.stored(b);
                }
            }
            tracing::info!(changes = defs.len(), version = table.version(), "routing definitions loaded");
        }
        let table = self.routing.table.borrow();
        let snapshot = table.snapshot();
        let first = table.version() + 1 - snapshot.len() as u64;
        for (version, change) in (first..).zip(snapshot) {
            for peer in (0..self.count).filter(|p| *p != self.id) {
                self.mesh.forward(peer, MeshMsg::MetaApply { version, change: change.clone() });
            }
        }
        for peer in (0..self.count).filter(|p| *p != self.id) {
            self.mesh.forward(peer, MeshMsg::MetaReady);
        }
        self.set_routing_ready();
        Ok(())
    }

    /// Shard 0: a peer has applied changes up to `version`; answers every
    /// change that all peers now have.
    pub(super) fn on_meta_applied(&self, peer: u16, version: u64) {
        if self.id != METADATA_SHARD {
            return;
        }
        self.meta.peer_applied(self.count, peer, version);
        self.release_waiting();
        self.users.progressed();
    }

    /// Shard 0: the metadata version every peer has applied.
    pub(super) fn meta_applied_by_all(&self) -> u64 {
        self.meta.applied_by_all(self.count, self.id)
    }

    /// Answers every held change that all peers have applied.
    fn release_waiting(&self) {
        let low = self.meta.applied_by_all(self.count, self.id);
        while let Some((_, to, request_id, result)) = self.meta.next_released(low) {
            self.reply_result(to, request_id, result);
        }
    }

    /// Shard 0: applies a change, stores it when it touches durable
    /// definitions, broadcasts it, and answers once every shard has applied
    /// it: after Ok, a publish on any connection sees the change.
    pub(super) fn on_meta(&self, from: ConnRef, request_id: u64, change: Change, flags: (bool, bool), count: u64) {
        let (durable_dest, if_unused) = flags;
        if self.is_clustered() {
            return self.propose_meta(from, request_id, change, if_unused, count);
        }
        let r = self.apply_meta(&change, durable_dest, if_unused, true);
        if let Ok(true) = r {
            // Written by the definitions task, off this thread.
            self.definitions_changed();
        }
        let version = self.routing.table.borrow().version();
        if r.is_ok() && self.count > 1 {
            for peer in (0..self.count).filter(|p| *p != self.id) {
                self.mesh.forward(peer, MeshMsg::MetaApply { version, change: change.clone() });
            }
        }
        if from.conn_id == 0 {
            return;
        }
        let r = r.map(|_| count);
        // While a definitions write is due, every answer waits for it: a
        // durable change is answered once it is on disk, and answers keep
        // their order.
        if !self.hold_for_definitions(version, from, request_id, &r) {
            self.answer_meta(version, from, request_id, r);
        }
    }

    /// Answers a change now, or once every peer has applied `version`.
    pub(super) fn answer_meta(&self, version: u64, to: ConnRef, request_id: u64, r: Result<u64, QueueError>) {
        match r {
            Ok(v) if self.count > 1 => {
                self.meta.hold((version, to, request_id, Ok(v)));
                self.release_waiting();
            }
            r => self.reply_result(to, request_id, r),
        }
    }

    /// Applies a change to the table; `Ok(true)` when the stored
    /// definitions changed and the file must be written. `caps`: hold it
    /// to `exchanges_max` and `bindings_max` (a change the cluster
    /// committed is not held: the node that took it checked).
    pub(super) fn apply_meta(
        &self,
        change: &Change,
        durable_dest: bool,
        if_unused: bool,
        caps: bool,
    ) -> Result<bool, QueueError> {
        if self.id != METADATA_SHARD {
            return Err(QueueError::new(ErrorCode::Internal, "routing change sent to a shard that does not own it"));
        }
        let mut table = self.routing.table.borrow_mut();
        if let (Change::DeleteExchange(name), true) = (change, if_unused) {
            if table.bindings().any(|b| &b.source == name) {
                return Err(QueueError::new(ErrorCode::ExchangeMismatch, format!("exchange '{name}' in use")));
            }
        }
        if caps {
            self.check_caps(&table, change)?;
        }
        let was_durable = |t: &RoutingTable, n: &str| t.exchange(n).is_some_and(|x| x.durable);
        let store = match change {
            Change::DeclareExchange(d) => d.durable && table.exchange(&d.name).is_none(),
            Change::DeleteExchange(n) => was_durable(&table, n),
            _ => false,
        };
        let mut auto_deleted = Vec::new();
        table.apply_collect(change, &mut auto_deleted).map_err(|e| route_error(&e))?;
        let mut store = store | self.meta.track(&table, change, durable_dest);
        for gone in auto_deleted {
            // An auto-deleted exchange leaves the stored definitions, with
            // its bindings.
            self.meta.track(&table, &Change::DeleteExchange(gone), false);
            store = true;
        }
        Ok(store)
    }
}
