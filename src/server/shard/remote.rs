//! A shard's side of queues on other nodes (`server::remote`): requests
//! for them out over this shard's data links, replies for remote
//! connections back over the links they came on, the shard's copy of the
//! placement, and the placement of a queue at its first declare.

use super::super::remote::peer::{refuse, Peer};
use super::super::remote::{is_remote, Dir, PlacementMsg, SlotKey};
use super::super::stats::{AdminReply, AdminReq};
use super::super::types::{ConnRef, QueueError, Reply, Request};
use super::Shard;
use crate::cluster::meta::QueueDef;
use crate::cluster::NodeId;
use crate::protocol::ErrorCode;
use crate::server::mesh::MeshMsg;
use std::rc::Rc;
use std::time::Duration;

/// How long a declare waits for its placement (the group's own deadline
/// for a change is 10 s; a little more, so its answer arrives first).
const PLACE_WAIT: Duration = Duration::from_secs(12);

impl Shard {
    /// A request for an owner on another node. It goes out on the link of
    /// the asking connection's own shard, so that each connection's
    /// requests and their replies keep to one link (and one order).
    pub(super) fn remote_submit(&self, owner: u16, from: ConnRef, request_id: u64, req: Request) {
        let Some(key) = self.remote.key(owner).filter(|k| k.dir == Dir::Out) else {
            tracing::error!(owner, "a request for an unknown remote owner (bug)");
            return refuse(self, from, request_id, &req, ErrorCode::Internal, "unknown remote owner");
        };
        if is_remote(from.shard) {
            // A request that came from another node is served here, never
            // sent on to a third.
            let why = "the queue is on another node than the one asked";
            return refuse(self, from, request_id, &req, ErrorCode::NodeUnavailable, why);
        }
        if from.shard != self.id {
            let msg = MeshMsg::RemoteRequest { node: key.node, shard: key.shard, from, request_id, req };
            return self.mesh.forward(from.shard, msg);
        }
        self.send_remote(key.node, key.shard, from, request_id, req);
    }

    /// Sends over this shard's link to `shard` of `node` (dialled on first use).
    pub(super) fn send_remote(&self, node: NodeId, shard: u16, from: ConnRef, request_id: u64, req: Request) {
        let Some(me) = self.remote_me() else { return };
        let key = SlotKey { node, shard, home: self.id, dir: Dir::Out };
        let Some(slot) = self.remote.shared.slot(key) else {
            return refuse(self, from, request_id, &req, ErrorCode::NodeUnavailable, "no slot left for the node");
        };
        let peer = self.remote.peers.borrow().get(&slot).cloned();
        let peer = match peer {
            Some(p) => p,
            None => {
                let addr = self.remote.placement.borrow().addr_of(node, shard).map(str::to_string);
                let Some(addr) = addr else {
                    let why = format!("node {node} is not a member this node knows");
                    return refuse(self, from, request_id, &req, ErrorCode::NodeUnavailable, &why);
                };
                let p = Rc::new(Peer::new(slot, key, addr));
                self.remote.peers.borrow_mut().insert(slot, p.clone());
                p
            }
        };
        peer.send(&me, from, request_id, req);
    }

    fn remote_me(&self) -> Option<Rc<Shard>> {
        self.remote.me.borrow().upgrade()
    }

    /// A reply for a connection on another node: over a link that node's
    /// shard dialled to this node, from this shard (the one that accepted
    /// it) or handed to it.
    pub(super) fn remote_reply(&self, to: ConnRef, reply: Reply) {
        let Some(key) = self.remote.key(to.shard).filter(|k| k.dir == Dir::In) else {
            return tracing::error!(shard = to.shard, "a reply for an unknown remote connection (bug); dropped");
        };
        if key.home != self.id {
            return self.mesh.forward(key.home, MeshMsg::RemoteReply { to, reply });
        }
        let link = self.remote.incoming.borrow().get(&(key.node, key.shard)).and_then(|l| l.last().cloned());
        match link {
            Some(l) => l.reply(key.shard, to.conn_id, reply),
            // The link ended; its connections were released here.
            None => tracing::debug!(node = key.node, "reply for a connection whose link ended; dropped"),
        }
    }

    /// A change to this shard's copy of the placement (from shard 0). When
    /// the cluster map moved, every connection here that asked for the map
    /// is told (`MapChanged`).
    pub(super) fn on_placement(&self, m: PlacementMsg) {
        let moved = self.remote.placement.borrow_mut().apply(m);
        if moved {
            let version = self.remote.placement.borrow().map_version();
            self.conns.for_each(|_, s| s.map_changed(version));
        }
    }

    /// Where `queue` (qualified) lives, as `Locate` answers it
    /// (`protocol::cluster_map::located`).
    pub fn locate(&self, queue: &str) -> u64 {
        use crate::protocol::cluster_map::{locate_value, HERE};
        let p = self.remote.placement.borrow();
        let me = self.remote.shared.me();
        let at = p.node_of(queue).filter(|n| *n != me && self.remote.shared.is_clustered());
        let found = at.and_then(|n| Some((p.index_of(n)?, p.shard_on(n, queue)?.0)));
        let (node, shard) = found.unwrap_or((HERE, self.local_owner(queue)));
        locate_value(p.map_version(), node, shard)
    }

    /// The cluster map as a `Map` body (no nodes on a single node).
    pub fn cluster_map_body(&self) -> bytes::BytesMut {
        let mut b = bytes::BytesMut::new();
        self.remote.placement.borrow().map(self.remote.shared.me()).encode(&mut b);
        b
    }

    /// Shard 0: a placement change the group applied, to every shard.
    pub(in crate::server) fn broadcast_placement(&self, m: PlacementMsg) {
        for peer in (0..self.count).filter(|p| *p != self.id) {
            self.mesh.forward(peer, MeshMsg::Placement(m.clone()));
        }
        self.on_placement(m);
    }

    /// A declare of a queue this shard does not hold, on a clustered node:
    /// its placement first. `None`: taken (answered later).
    pub(super) fn placing(&self, from: ConnRef, request_id: u64, req: Request) -> Option<Request> {
        let Request::Declare { passive: false, queue, .. } = &req else { return Some(req) };
        if !self.remote.shared.is_clustered() {
            return Some(req);
        }
        if self.queues.borrow().contains_key(queue) {
            // A queue from before this node was clustered: placed now.
            if self.remote.placement.borrow().node_of(queue).is_none() {
                self.place_existing(queue.clone());
            }
            return Some(req);
        }
        let me = self.remote_me()?;
        glommio::spawn_local(async move { me.place_then_declare(from, request_id, req).await }).detach();
        None
    }

    async fn place_then_declare(self: Rc<Self>, from: ConnRef, request_id: u64, req: Request) {
        let Request::Declare { queue, exclusive, auto_delete, durable, args, .. } = &req else { return };
        // An exclusive queue lives with its connection; one asked from
        // another node was placed there already.
        let balanced = args.balanced && !*exclusive && !is_remote(from.shard);
        let def =
            QueueDef { durable: *durable, exclusive: *exclusive, auto_delete: *auto_delete, args: args.raw.clone() };
        let ask = AdminReq::Place { queue: queue.clone(), balanced, remove: false, def: Box::new(def) };
        let r = self.admin_within(&[0], PLACE_WAIT, move |_| ask.clone()).await;
        let placed = match r.into_iter().next().map(|(_, r)| r) {
            Some(AdminReply::Placed(r)) => r,
            _ => Err(QueueError::new(ErrorCode::ClusterUnavailable, "cluster unavailable: placement not answered")),
        };
        let node = match placed {
            Ok(node) => node,
            Err(e) => return self.reply_result(from, request_id, Err(e)),
        };
        if node == self.remote.shared.me() {
            self.handle_placed(from, request_id, req);
            return;
        }
        if is_remote(from.shard) {
            let e = QueueError::new(ErrorCode::NodeUnavailable, format!("queue is placed on node {node}"));
            return self.reply_result(from, request_id, Err(e));
        }
        let shard = self.remote.placement.borrow().shard_on(node, queue).map(|(s, _)| s);
        match shard {
            Some(s) => self.remote_submit_to(node, s, from, request_id, req),
            None => {
                let e = QueueError::new(ErrorCode::NodeUnavailable, format!("node {node} is not known here yet"));
                self.reply_result(from, request_id, Err(e));
            }
        }
    }

    pub(super) fn remote_submit_to(&self, node: NodeId, shard: u16, from: ConnRef, request_id: u64, req: Request) {
        if from.shard != self.id {
            let msg = MeshMsg::RemoteRequest { node, shard, from, request_id, req };
            return self.mesh.forward(from.shard, msg);
        }
        self.send_remote(node, shard, from, request_id, req);
    }

    /// Places a queue this shard holds (fire-and-forget): another node's
    /// placement of the same name wins there, and is logged here.
    fn place_existing(&self, queue: String) {
        let Some(me) = self.remote_me() else { return };
        let def = match self.queues.borrow().get(&queue) {
            Some(q) => QueueDef {
                durable: q.durable,
                exclusive: q.exclusive_owner.is_some(),
                auto_delete: q.auto_delete,
                args: q.args.raw.clone(),
            },
            None => return,
        };
        let ask = AdminReq::Place { queue: queue.clone(), balanced: false, remove: false, def: Box::new(def) };
        glommio::spawn_local(async move {
            let r = me.admin_within(&[0], PLACE_WAIT, move |_| ask.clone()).await.into_iter().next();
            match r {
                Some((_, AdminReply::Placed(Ok(node)))) if node != me.remote.shared.me() => {
                    tracing::warn!(queue, node, "cluster: a queue of this node has the name of one placed on another");
                }
                Some((_, AdminReply::Placed(Err(e)))) => tracing::debug!(queue, error = %e.message, "cluster: placing"),
                _ => {}
            }
        })
        .detach();
    }

    /// A queue of this shard is gone: its placement goes too (a
    /// fire-and-forget change; one left behind, when the group is out of
    /// reach, names this node, which answers that the queue is not there,
    /// and the next declare anywhere places it again).
    pub(super) fn unplace(&self, queue: &str) {
        if !self.remote.shared.is_clustered() {
            return;
        }
        let Some(me) = self.remote_me() else { return };
        let ask = AdminReq::Place { queue: queue.to_string(), balanced: false, remove: true, def: Box::default() };
        glommio::spawn_local(async move {
            if let Some((_, AdminReply::Placed(Err(e)))) =
                me.admin_within(&[0], PLACE_WAIT, move |_| ask.clone()).await.into_iter().next()
            {
                tracing::warn!(error = %e.message, "cluster: a deleted queue's placement stays");
            }
        })
        .detach();
    }

    /// Shard 0: places `queue` (on this node, or with `balanced` on the
    /// member with the fewest queues), or removes this node's placement.
    pub(super) async fn place_queue(
        &self,
        queue: String,
        (balanced, remove): (bool, bool),
        def: QueueDef,
    ) -> Result<NodeId, QueueError> {
        use crate::cluster::meta::{MetaCommand, Refusal};
        let unavailable =
            |why: String| QueueError::new(ErrorCode::ClusterUnavailable, format!("cluster unavailable: {why}"));
        let node = self.cluster_node().ok_or_else(|| unavailable("this node is changing clusters".into()))?;
        let me = node.node_id;
        let command = if remove {
            MetaCommand::UnplaceQueue { queue, node: me }
        } else {
            let target = if balanced {
                node.view.read(|m| m.queue_counts().into_iter().min_by_key(|(id, n)| (*n, *id != me)).map(|(id, _)| id))
            } else {
                None
            };
            MetaCommand::PlaceQueue { queue, node: target.unwrap_or(me), def }
        };
        match node.propose(command.clone()).await {
            Ok(Ok(())) => Ok(match command {
                MetaCommand::PlaceQueue { node, .. } => node,
                _ => me,
            }),
            Ok(Err(Refusal::Placed(at))) => Ok(at),
            Ok(Err(r)) => Err(QueueError::new(ErrorCode::NodeUnavailable, r.to_string())),
            Err(e) => Err(unavailable(e.to_string())),
        }
    }
}
