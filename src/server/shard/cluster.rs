//! Shard 0's side of the cluster (the local half): routing changes asked
//! for on this node go to the metadata group instead of straight to the
//! table, and every change the group commits, wherever it was asked, is
//! applied here exactly as a single node applies its own (`meta.rs`:
//! shard 0's table, then every peer shard over the mesh).
//!
//! A client's change is answered once the group has committed it (on a
//! majority of the nodes' disks), this node has applied it, and every
//! shard here has it: after Ok, a publish on any connection of this node
//! sees it.

use super::routing_replica::{route_error, METADATA_SHARD};
use super::Shard;
use crate::auth::change::{ChangeLimits, UserChange};
use crate::cluster::meta::{ClusterMeta, MetaCommand, Refusal};
use crate::cluster::service::ServiceError;
use crate::cluster::Event;
use crate::protocol::ErrorCode;
use crate::routing::{Change, RoutingTable};
use crate::server::admin_users::UserChangeFailed;
use crate::server::cluster::{ClusterNode, Progress};
use crate::server::mesh::MeshMsg;
use crate::server::remote::PlacementMsg;
use crate::server::types::{ConnRef, QueueError};
use crate::storage::definitions::StoredAccess;
use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::{Rc, Weak};

/// Shard 0's handle on the member, once it runs (empty on other shards
/// and on a node that is not clustered).
#[derive(Default)]
pub struct ClusterPart {
    pub(super) node: RefCell<Option<Rc<ClusterNode>>>,
    /// The shard itself, to start the tasks that wait for the group.
    pub(super) me: RefCell<Weak<Shard>>,
    pub(super) progress: Rc<Progress>,
    /// Set once the node is clustered: from then on, every change goes
    /// to the group (refused while the member is being replaced).
    clustered: std::cell::Cell<bool>,
}

/// Why the group did not take a change, as a client hears it.
fn service_error(e: ServiceError) -> QueueError {
    QueueError::new(ErrorCode::ClusterUnavailable, format!("cluster unavailable: {e}"))
}

fn refusal_error(r: Refusal) -> QueueError {
    match r {
        Refusal::Route(e) => route_error(&e),
        Refusal::InUse(name) => QueueError::new(ErrorCode::ExchangeMismatch, format!("exchange '{name}' in use")),
        // Not answers to a routing change.
        other => QueueError::new(ErrorCode::Internal, other.to_string()),
    }
}

/// How often a node checks that the cluster's users are seeded.
const SEED_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

impl Shard {
    /// The member, on shard 0 of a clustered node.
    pub fn cluster_node(&self) -> Option<Rc<ClusterNode>> {
        self.cluster.node.borrow().clone()
    }

    pub fn cluster_progress(&self) -> Rc<Progress> {
        self.cluster.progress.clone()
    }

    /// Shard 0 of a clustered node: the member is running.
    pub fn set_cluster_node(self: &Rc<Self>, node: Rc<ClusterNode>) {
        *self.cluster.me.borrow_mut() = Rc::downgrade(self);
        self.remote.shared.set_member(node.node_id, node.links().config().clone());
        *self.cluster.node.borrow_mut() = Some(node);
        self.cluster.clustered.set(true);
        glommio::spawn_local(seed_users(Rc::downgrade(self))).detach();
    }

    /// Whether changes go to the cluster (even while its member is being
    /// replaced, when they are refused).
    pub(super) fn is_clustered(&self) -> bool {
        self.cluster.clustered.get()
    }

    /// The observer the state machine calls (the local half).
    pub fn cluster_observer(self: &Rc<Self>) -> crate::cluster::Observer<ClusterMeta> {
        let me = Rc::downgrade(self);
        Rc::new(move |e| {
            if let Some(s) = me.upgrade() {
                s.on_cluster_event(e);
            }
        })
    }

    fn on_cluster_event(&self, e: Event<'_, ClusterMeta>) {
        let index = match e {
            Event::Applied { index, command, response } => {
                match (command, response) {
                    (MetaCommand::Routing { change, .. }, Ok(())) => self.apply_committed(change),
                    (MetaCommand::Users(change), Ok(())) => self.apply_user_committed(change),
                    (MetaCommand::SeedAccess(access), Ok(())) => self.sync_users(access),
                    (MetaCommand::PlaceQueue { queue, node, .. }, Ok(())) => {
                        self.broadcast_placement(PlacementMsg::Place { queue: queue.clone(), node: *node })
                    }
                    (MetaCommand::UnplaceQueue { queue, node }, Ok(())) => {
                        self.broadcast_placement(PlacementMsg::Unplace { queue: queue.clone(), node: *node })
                    }
                    (MetaCommand::Node { id, info }, Ok(())) => {
                        self.broadcast_placement(PlacementMsg::Node { id: *id, addrs: info.into() })
                    }
                    (MetaCommand::NodeGone { id }, Ok(())) => {
                        self.broadcast_placement(PlacementMsg::NodeGone { id: *id })
                    }
                    _ => {}
                }
                index
            }
            Event::Installed { index, state } => {
                self.install_routing(state.routing());
                let nodes = state.nodes().iter().map(|(id, n)| (*id, n.into())).collect();
                let queues = state.queues().iter().map(|(q, p)| (q.clone(), p.node)).collect();
                self.broadcast_placement(PlacementMsg::Reset { nodes, queues });
                if let Some(access) = state.access() {
                    self.sync_users(&access);
                }
                index
            }
        };
        self.cluster.progress.applied_up_to(index);
    }

    /// A committed routing change: to shard 0's table, then every peer.
    /// The group already checked it against the same state, so it
    /// applies; if it does not, the node's copy has drifted (logged).
    fn apply_committed(&self, change: &Change) {
        match self.apply_meta(change, false, false, false) {
            Ok(store) => {
                if store {
                    self.definitions_changed();
                }
            }
            Err(e) => {
                tracing::error!(?change, error = %e.message, code = ?e.code, "cluster: a committed change did not apply on this node");
                return;
            }
        }
        let version = self.routing.table.borrow().version();
        for peer in (0..self.count).filter(|p| *p != self.id) {
            self.mesh.forward(peer, MeshMsg::MetaApply { version, change: change.clone() });
        }
    }

    /// A snapshot replaced the group's state (a node far behind): brings
    /// the table to it, change by change, so the peers follow the same
    /// way.
    pub(super) fn install_routing(&self, want: &RoutingTable) {
        let have = self.routing.table.borrow().snapshot();
        let want = want.snapshot();
        let keep: HashSet<&Change> = want.iter().collect();
        let had: HashSet<&Change> = have.iter().collect();
        // Bindings go before the exchanges they name; declares before
        // the bindings that need them (snapshots list declares first).
        for c in have.iter().rev().filter(|c| !keep.contains(c)) {
            let undo = match c {
                Change::Bind(b) => Change::Unbind(b.clone()),
                Change::DeclareExchange(d) => Change::DeleteExchange(d.name.clone()),
                _ => continue,
            };
            self.apply_committed(&undo);
        }
        for c in want.iter().filter(|c| !had.contains(c)) {
            self.apply_committed(c);
        }
    }

    /// A routing change asked for on this node: proposed to the group;
    /// answered once this node has applied it (`conn_id` 0: nobody
    /// waits).
    pub(super) fn propose_meta(&self, from: ConnRef, request_id: u64, change: Change, if_unused: bool, count: u64) {
        debug_assert_eq!(self.id, METADATA_SHARD);
        let (Some(node), Some(me)) = (self.cluster_node(), self.cluster.me.borrow().upgrade()) else {
            let e =
                QueueError::new(ErrorCode::ClusterUnavailable, "cluster unavailable: this node is changing clusters");
            return self.answer_proposal(from, request_id, Err(e));
        };
        // The bounds on what clients may declare, checked here against
        // this node's copy: a hostile client is stopped before the group
        // spends a log entry on it.
        if let Err(e) = self.check_caps(&self.routing.table.borrow(), &change) {
            return self.answer_proposal(from, request_id, Err(e));
        }
        glommio::spawn_local(async move {
            let r = match node.propose(MetaCommand::Routing { change, if_unused }).await {
                Ok(Ok(())) => Ok(count),
                Ok(Err(refusal)) => Err(refusal_error(refusal)),
                Err(e) => Err(service_error(e)),
            };
            match r {
                Ok(v) => {
                    let version = me.routing.table.borrow().version();
                    if from.conn_id != 0 {
                        me.answer_meta(version, from, request_id, Ok(v));
                    }
                }
                Err(e) => me.answer_proposal(from, request_id, Err(e)),
            }
        })
        .detach();
    }

    /// A committed user change: to shard 0's copy, then every peer (the
    /// group checked it against the same state: it applies).
    fn apply_user_committed(&self, change: &UserChange) {
        if let Err(e) = self.users.users.borrow_mut().apply(change, ChangeLimits::NONE) {
            tracing::error!(user = change.user(), error = %e, "cluster: a committed user change did not apply here");
            return;
        }
        self.user_change_applied(change);
    }

    /// Brings this node's users and vhosts to the cluster's (its seed, or
    /// a snapshot), change by change so the peers follow the same way.
    fn sync_users(&self, to: &StoredAccess) {
        let from = crate::auth::access::access_of(&self.users.users.borrow());
        for change in crate::auth::access::changes_between(&from, to) {
            self.apply_user_committed(&change);
        }
    }

    /// A user change asked for on this node: through the group; answered
    /// once every shard of this node has it.
    pub(super) async fn propose_users(&self, change: UserChange) -> Result<(), UserChangeFailed> {
        let Some(node) = self.cluster_node() else {
            return Err(UserChangeFailed::NotStored("cluster unavailable: this node is changing clusters".into()));
        };
        let mut r = node.propose(MetaCommand::Users(change.clone())).await;
        if let Ok(Err(Refusal::NotSeeded)) = r {
            // A cluster just formed: its users are this node's until the
            // seed says otherwise.
            let access = crate::auth::access::access_of(&self.users.users.borrow());
            let _ = node.propose(MetaCommand::SeedAccess(access)).await;
            r = node.propose(MetaCommand::Users(change)).await;
        }
        match r {
            Ok(Ok(())) => {
                let version = self.routing.table.borrow().version();
                self.wait_user_change(None, version).await
            }
            Ok(Err(Refusal::User(e))) => Err(UserChangeFailed::Refused(e)),
            Ok(Err(other)) => Err(UserChangeFailed::NotStored(other.to_string())),
            Err(e) => Err(UserChangeFailed::NotStored(format!("cluster unavailable: {e}"))),
        }
    }

    fn answer_proposal(&self, to: ConnRef, request_id: u64, r: Result<u64, QueueError>) {
        if to.conn_id == 0 {
            if let Err(e) = r {
                tracing::warn!(error = %e.message, "cluster: a change the broker made itself was not taken");
            }
            return;
        }
        self.reply_result(to, request_id, r);
    }
}

/// Until the cluster's users are seeded, offers this node's (the first
/// seed in the log wins: the node that formed the cluster, unless it
/// stopped before its seed was committed).
async fn seed_users(shard: Weak<Shard>) {
    let mut first = true;
    loop {
        if !std::mem::take(&mut first) {
            glommio::timer::sleep(SEED_EVERY).await;
        }
        let Some(s) = shard.upgrade() else { return };
        let Some(node) = s.cluster_node() else { return };
        if node.view.read(|m| m.is_seeded()) {
            return;
        }
        if node.raft().metrics().borrow().current_leader.is_none() {
            continue;
        }
        let access = crate::auth::access::access_of(&s.users.users.borrow());
        match node.propose(MetaCommand::SeedAccess(access)).await {
            Ok(Ok(())) | Ok(Err(Refusal::Seeded)) => return,
            Ok(Err(e)) => tracing::warn!(error = %e, "cluster: seeding the users"),
            Err(e) => tracing::debug!(error = %e, "cluster: seeding the users; retrying"),
        }
    }
}
