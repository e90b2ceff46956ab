//! Queues on other nodes (issue 17; `docs/cluster.md`, "Placement and
//! forwarding"): the shard mesh, carried across nodes.
//!
//! A clustered node knows where every classic queue lives (the metadata
//! group's placement, copied to each shard: [`Placement`]). A request for
//! a queue on another node goes where a request for a queue on another
//! shard goes, to its owner, named by a `u16` as shards are: ids from
//! [`REMOTE_BASE`] up are *slots*, each a (node, shard) pair this node
//! talks to ([`SlotKey`]), interned node-wide ([`RemoteShared`]). So the
//! front ends, the fan-ins and the delivery gate work unchanged: they hold
//! an owner id, and `Shard::submit` and `Shard::route_reply` carry it
//! over a data link instead of the mesh.
//!
//! - Each shard dials, on demand, the owning shard of each remote node it
//!   has traffic for ([`peer`]): one TCP connection per (this shard, that
//!   shard), authenticated like the Raft link (HMAC with the cluster
//!   secret, TLS when the link has it), carrying [`wire::DataMsg`].
//! - Each shard listens for its peers' links ([`serve`]) and handles what
//!   arrives as requests from connections on another shard: the remote
//!   connection is `ConnRef { shard: slot, conn_id }`, its replies go back
//!   over the link it came from.
//!
//! A single node never interns a slot, never dials, and pays one
//! `is_empty` per `owner_of`.

pub mod peer;
pub mod serve;
pub mod wire;

use crate::cluster::link::LinkConfig;
use crate::cluster::NodeId;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The next data message on a link, either side: pings answered (on
/// `outbox`), pongs skipped; a close, a frame out of place or a read
/// error (the idle deadline among them) ends the link. The inner `Err`: a
/// payload that does not decode.
pub(crate) async fn next_message(
    r: &mut futures_lite::io::ReadHalf<crate::rt::Transport>,
    frames: &mut crate::cluster::link::handshake::Frames,
    idle: std::time::Duration,
    outbox: Option<&crate::rt::Outbox>,
) -> Result<Result<wire::DataMsg, String>, crate::cluster::link::LinkError> {
    use crate::cluster::link::LinkError;
    use crate::protocol::link::{CloseCode, Frame};
    // Time this side spent not reading (back pressure before the call) is
    // not the peer's idleness.
    let resumed = std::time::Instant::now();
    loop {
        let deadline = move |c: &crate::rt::reader::Clock| Some(c.last_byte.max(resumed) + idle);
        match frames.next(r, deadline).await {
            Ok(Frame::Data { payload }) => return Ok(wire::decode(payload)),
            Ok(Frame::Ping) => {
                if let Some(o) = outbox {
                    o.push(|b| Frame::Pong.encode(b));
                }
            }
            Ok(Frame::Pong) => {}
            Ok(Frame::Close { code, reason }) => return Err(LinkError::Closed { code, reason: reason.into() }),
            Ok(other) => {
                let why = format!("{} on a data link", other.name());
                return Err(LinkError::refuse(CloseCode::UnexpectedFrame, why));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Owner ids from here up are remote slots; below it, this node's shards
/// (at most 1024, validated).
pub const REMOTE_BASE: u16 = 0x8000;
/// Slots a node interns at most (each a (node, shard, home shard,
/// direction) it has talked to).
pub const SLOTS_MAX: usize = (u16::MAX - REMOTE_BASE) as usize;

#[inline]
pub fn is_remote(owner: u16) -> bool {
    owner >= REMOTE_BASE
}

/// Which way a slot's link goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    /// This node's shard `home` dialled `shard` of `node`: requests go
    /// out on it.
    Out,
    /// Connections on `shard` of `node`, whose requests arrive on links
    /// accepted by this node's shard `home`: replies go back on them.
    In,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotKey {
    pub node: NodeId,
    pub shard: u16,
    pub home: u16,
    pub dir: Dir,
}

/// What the shards of a node share: the slot table, this node's id, and
/// the link's settings once the member runs.
#[derive(Default)]
pub struct RemoteShared {
    slots: Mutex<Slots>,
    link: Mutex<Option<LinkConfig>>,
    me: AtomicU64,
    clustered: AtomicBool,
}

#[derive(Default)]
struct Slots {
    keys: Vec<SlotKey>,
    index: HashMap<SlotKey, u16>,
}

impl RemoteShared {
    /// The slot for `key`, interned on first use; `None` once
    /// [`SLOTS_MAX`] are taken.
    pub fn slot(&self, key: SlotKey) -> Option<u16> {
        let mut s = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(id) = s.index.get(&key) {
            return Some(*id);
        }
        if s.keys.len() >= SLOTS_MAX {
            return None;
        }
        let id = REMOTE_BASE + crate::protocol::wire::len16(s.keys.len());
        s.keys.push(key);
        s.index.insert(key, id);
        Some(id)
    }

    pub fn key(&self, slot: u16) -> Option<SlotKey> {
        let s = self.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        s.keys.get(usize::from(slot.checked_sub(REMOTE_BASE)?)).copied()
    }

    /// The member runs (again, after a join at run time): its id and the
    /// settings data links dial and accept with.
    pub fn set_member(&self, me: NodeId, link: LinkConfig) {
        self.me.store(me, Ordering::Release);
        *self.link.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(link);
        self.clustered.store(true, Ordering::Release);
    }

    pub fn link(&self) -> Option<LinkConfig> {
        self.link.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// This node's id in its cluster (0 until the member runs).
    pub fn me(&self) -> NodeId {
        self.me.load(Ordering::Acquire)
    }

    pub fn is_clustered(&self) -> bool {
        self.clustered.load(Ordering::Acquire)
    }
}

/// How a member is reached: by its peers' shards (`data`, one per shard:
/// its shard count) and by native clients (`native`, each shard's own).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeAddrs {
    pub name: String,
    pub native: Vec<String>,
    pub data: Vec<String>,
}

impl From<&crate::cluster::meta::NodeInfo> for NodeAddrs {
    fn from(i: &crate::cluster::meta::NodeInfo) -> Self {
        Self { name: i.name.clone(), native: i.shard_addrs.clone(), data: i.data_addrs.clone() }
    }
}

/// A change to a shard's copy of the placement (sent by shard 0 as the
/// group applies them).
#[derive(Debug, Clone)]
pub enum PlacementMsg {
    /// A member's addresses.
    Node {
        id: NodeId,
        addrs: NodeAddrs,
    },
    /// A member left: its queues go too.
    NodeGone {
        id: NodeId,
    },
    Place {
        queue: String,
        node: NodeId,
    },
    Unplace {
        queue: String,
        node: NodeId,
    },
    /// The whole state (a snapshot was installed).
    Reset {
        nodes: Vec<(NodeId, NodeAddrs)>,
        queues: Vec<(String, NodeId)>,
    },
}

/// A shard's copy of where queues live and how to reach each node.
#[derive(Default)]
pub struct Placement {
    queues: HashMap<String, NodeId>,
    /// In node id order: the cluster map's order, alike on every node.
    nodes: std::collections::BTreeMap<NodeId, NodeAddrs>,
}

impl Placement {
    /// Applies a change; `true` when the cluster map changed.
    pub fn apply(&mut self, m: PlacementMsg) -> bool {
        match m {
            PlacementMsg::Node { id, addrs } => {
                return self.nodes.insert(id, addrs.clone()).as_ref() != Some(&addrs);
            }
            PlacementMsg::NodeGone { id } => {
                self.queues.retain(|_, n| *n != id);
                return self.nodes.remove(&id).is_some();
            }
            PlacementMsg::Place { queue, node } => {
                self.queues.insert(queue, node);
            }
            PlacementMsg::Unplace { queue, node } => {
                if self.queues.get(&queue) == Some(&node) {
                    self.queues.remove(&queue);
                }
            }
            PlacementMsg::Reset { nodes, queues } => {
                self.nodes = nodes.into_iter().collect();
                self.queues = queues.into_iter().collect();
                return true;
            }
        }
        false
    }

    /// The cluster map's version: a hash of the nodes and their native
    /// addresses (FNV-1a), so every node gives the same for the same map.
    pub fn map_version(&self) -> u32 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |b: &[u8]| {
            for x in b.iter().chain(&[0xff]) {
                h = (h ^ u64::from(*x)).wrapping_mul(0x0100_0000_01b3);
            }
        };
        for (id, n) in &self.nodes {
            eat(&id.to_le_bytes());
            eat(n.name.as_bytes());
            for a in &n.native {
                eat(a.as_bytes());
            }
        }
        // The two halves folded.
        u32::try_from((h >> 32) ^ (h & 0xffff_ffff)).unwrap_or(u32::MAX)
    }

    /// The map for native clients, as node `me` gives it.
    pub fn map(&self, me: NodeId) -> crate::protocol::cluster_map::ClusterMap<'_> {
        use crate::protocol::cluster_map::{ClusterMap, MapNode, HERE};
        let nodes: Vec<MapNode<'_>> = self
            .nodes
            .values()
            .map(|n| MapNode { name: &n.name, shard_addrs: n.native.iter().map(String::as_str).collect() })
            .collect();
        let this = self.index_of(me).unwrap_or(HERE);
        ClusterMap { version: self.map_version(), this, nodes }
    }

    /// `node`'s index in the map.
    pub fn index_of(&self, node: NodeId) -> Option<u16> {
        self.nodes.keys().position(|n| *n == node).and_then(|i| u16::try_from(i).ok())
    }

    /// The node `queue` is placed on, if any.
    #[inline]
    pub fn node_of(&self, queue: &str) -> Option<NodeId> {
        if self.queues.is_empty() {
            return None;
        }
        self.queues.get(queue).copied()
    }

    /// The shard of `node` that owns `queue`, and its data address.
    pub fn shard_on(&self, node: NodeId, queue: &str) -> Option<(u16, &str)> {
        let addrs = &self.nodes.get(&node)?.data;
        let n = u32::try_from(addrs.len()).ok().filter(|n| *n > 0)?;
        let shard = crate::protocol::shard_hash::shard_for(queue, n);
        let addr = addrs.get(usize::try_from(shard).ok()?)?;
        Some((crate::protocol::wire::saturate(shard), addr))
    }

    /// The data address of `shard` of `node`.
    pub fn addr_of(&self, node: NodeId, shard: u16) -> Option<&str> {
        self.nodes.get(&node)?.data.get(usize::from(shard)).map(String::as_str)
    }

    pub fn has_node(&self, node: NodeId) -> bool {
        self.nodes.contains_key(&node)
    }
}

/// Accepted links by the (node, shard) that dialled them.
pub type Accepted = HashMap<(NodeId, u16), Vec<Rc<serve::Incoming>>>;

/// A shard's part: its placement copy, its links.
#[derive(Default)]
pub struct RemotePart {
    pub shared: Arc<RemoteShared>,
    pub placement: RefCell<Placement>,
    /// Links this shard dialled, by slot.
    pub peers: RefCell<HashMap<u16, Rc<peer::Peer>>>,
    /// Links this shard accepted, by the node and shard that dialled
    /// (the newest last).
    pub incoming: RefCell<Accepted>,
    /// The shard itself, for the tasks its links start.
    pub me: RefCell<std::rc::Weak<super::shard::Shard>>,
    /// Slot keys seen here (saves the node-wide lock on the reply path).
    keys: RefCell<HashMap<u16, SlotKey>>,
    /// Requests sent over this shard's links, and taken over them.
    pub forwarded: std::cell::Cell<u64>,
    pub served: std::cell::Cell<u64>,
}

impl RemotePart {
    pub fn new(shared: Arc<RemoteShared>) -> Self {
        Self { shared, ..Default::default() }
    }

    /// Data links up now: dialled from here, and accepted here.
    pub fn links_up(&self) -> u64 {
        let out = self.peers.borrow().values().filter(|p| p.is_up()).count();
        let inc: usize = self.incoming.borrow().values().map(Vec::len).sum();
        (out + inc) as u64
    }

    pub fn key(&self, slot: u16) -> Option<SlotKey> {
        if let Some(k) = self.keys.borrow().get(&slot) {
            return Some(*k);
        }
        let k = self.shared.key(slot)?;
        self.keys.borrow_mut().insert(slot, k);
        Some(k)
    }

    /// The owner id of `queue` when it lives on another node: the slot of
    /// its owning shard there, as dialled from shard `home`.
    #[inline]
    pub fn remote_owner(&self, queue: &str, home: u16) -> Option<u16> {
        let p = self.placement.borrow();
        let node = p.node_of(queue)?;
        if node == self.shared.me() {
            return None;
        }
        let (shard, _) = p.shard_on(node, queue)?;
        let slot = self.shared.slot(SlotKey { node, shard, home, dir: Dir::Out });
        if slot.is_none() {
            tracing::error!(node, shard, "cluster: no slot left for another node's shard ({SLOTS_MAX} in use)");
        }
        slot
    }
}
