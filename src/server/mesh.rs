//! Cross-shard traffic: one typed message enum over glommio's bounded
//! channel mesh. Messages for a peer are queued and sent as one batch per
//! channel send, so a forwarded publish costs a fraction of a hop.

use super::stats::{AdminReply, AdminReq};
use super::types::{ConnRef, Reply, Request};
use crate::routing::Change;
use crate::rt::Notify;
use glommio::channels::channel_mesh::Senders;
use glommio::{GlommioError, ResourceType};
use std::cell::{Cell, RefCell};

/// Everything one shard says to another.
#[derive(Debug)]
pub enum MeshMsg {
    /// A request from a connection on the sending shard for a queue the
    /// receiving shard owns.
    Request { from: ConnRef, request_id: u64, req: Request },
    /// A reply (or delivery) for a connection on the receiving shard.
    Reply { conn_id: u64, reply: Reply },
    /// An operator's request (metrics, HTTP API, `ringmq ctl`) from shard
    /// `from`, which waits for the `AdminReply` with the same token.
    Admin { from: u16, token: u64, req: AdminReq },
    /// The answer from `shard`.
    AdminReply { shard: u16, token: u64, reply: AdminReply },
    /// A routing-table change from shard 0, the metadata owner; applying it
    /// must bring the receiver's copy to `version`.
    MetaApply { version: u64, change: Change },
    /// A user change from shard 0 (`shard/users.rs`), under metadata
    /// `version` (the routing table's counter orders both kinds).
    UsersApply { version: u64, change: crate::auth::change::UserChange },
    /// A peer's copy of the routing table is at `version`.
    MetaApplied { shard: u16, version: u64 },
    /// Shard 0 has sent its recovered table: the receiver may open for traffic.
    MetaReady,
    /// A request for `shard` of another `node`, from a connection on the
    /// receiving shard: it goes out on that shard's own data link.
    RemoteRequest { node: u64, shard: u16, from: ConnRef, request_id: u64, req: Request },
    /// A reply for a connection on another node, whose data link the
    /// receiving shard accepted.
    RemoteReply { to: ConnRef, reply: Reply },
    /// A change to the shards' copy of the queues' placement (from shard 0).
    Placement(super::remote::PlacementMsg),
}

pub type Batch = Vec<MeshMsg>;

pub struct Mesh {
    senders: Senders<Batch>,
    pending: Vec<RefCell<Batch>>,
    kick: Vec<Notify>,
    /// Signalled when a pending queue drains, for connections that wait.
    space: Notify,
    pending_max: usize,
    forwarded: Cell<u64>,
}

impl Mesh {
    pub fn new(senders: Senders<Batch>, peers: usize, pending_max: usize) -> Self {
        Self {
            senders,
            pending: (0..peers).map(|_| RefCell::new(Vec::new())).collect(),
            kick: (0..peers).map(|_| Notify::default()).collect(),
            space: Notify::default(),
            pending_max,
            forwarded: Cell::new(0),
        }
    }

    /// Queues a message for `peer`; its flusher sends it with the others
    /// queued in the same turn.
    pub fn forward(&self, peer: u16, msg: MeshMsg) {
        let p = usize::from(peer);
        self.pending[p].borrow_mut().push(msg);
        self.forwarded.set(self.forwarded.get() + 1);
        self.kick[p].notify();
    }

    pub fn forwarded_total(&self) -> u64 {
        self.forwarded.get()
    }

    fn over_limit(&self) -> bool {
        self.pending.iter().any(|p| p.borrow().len() >= self.pending_max)
    }

    /// Waits while any peer's queue is full: back pressure for the
    /// connections that feed the mesh.
    pub async fn wait_for_space(&self) {
        loop {
            let n = self.space.notified();
            if !self.over_limit() {
                return;
            }
            n.await;
        }
    }

    /// Sends `peer`'s queued messages, batch by batch. A send that fails
    /// (the peer has stopped) hands the batch back to `failed`.
    pub async fn flush_loop(&self, peer: u16, failed: impl Fn(Batch)) {
        let p = usize::from(peer);
        loop {
            let n = self.kick[p].notified();
            let batch = std::mem::take(&mut *self.pending[p].borrow_mut());
            if batch.is_empty() {
                n.await;
                continue;
            }
            let result = self.senders.send_to(p, batch).await;
            self.space.notify();
            match result {
                Ok(()) => {}
                Err(GlommioError::Closed(ResourceType::Channel(batch))) => failed(batch),
                // Only an out-of-range peer index gets here, and peers come
                // from the shard map, so this is a bug, not a runtime case.
                Err(e) => tracing::error!(peer, error = %e, "mesh send failed; batch lost (bug)"),
            }
        }
    }
}
