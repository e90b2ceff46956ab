//! The broker's metadata as the cluster agrees on it: the [`Apply`] state
//! of the metadata group. Every member applies the same committed
//! commands in the same order to a [`ClusterMeta`], so every member
//! reaches the same answer to each one (a declare that clashes is refused
//! everywhere, not only where it was asked); the broker's local half then
//! brings the node's own shards in step (`server::shard::cluster`).
//!
//! What it holds, so far: the routing table (exchanges and bindings), the
//! users, vhosts and permissions, the nodes' addresses, and which node
//! each classic queue lives on.

use super::{Apply, NodeId};
use crate::auth::change::{ChangeError, ChangeLimits, UserChange};
use crate::auth::Users;
use crate::routing::{Change, RouteError, RoutingTable};
use crate::storage::definitions::StoredAccess;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// A node as it announces itself: where clients and peers reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    /// The inter-node link (the Raft member's address).
    pub cluster_addr: String,
    /// The native protocol's shared address, and each shard's own.
    pub native_addr: String,
    pub shard_addrs: Vec<String>,
    pub amqp_addr: String,
    pub http_addr: String,
    /// Each shard's listener for forwarded queue traffic
    /// (`server::remote`), in shard order: its length is the node's shard
    /// count.
    pub data_addrs: Vec<String>,
}

/// One change to the cluster's metadata, as the log carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// A node's addresses (it announces them when it starts, and again
    /// when they change).
    Node { id: NodeId, info: NodeInfo },
    /// A node was forgotten: its record goes.
    NodeGone { id: NodeId },
    /// A routing change; `if_unused` refuses to delete an exchange that
    /// is the source of a binding.
    Routing { change: Change, if_unused: bool },
    /// The users and vhosts the cluster starts from: the forming node's.
    /// Only the first one in the log takes effect.
    SeedAccess(StoredAccess),
    /// A change to the users, vhosts or permissions (its password hash
    /// made where it was asked; no password travels).
    Users(UserChange),
    /// A classic queue (its vhost-qualified name) lives on `node`, as its
    /// first declare defined it. Taken when the queue is not placed yet or
    /// is placed there already (the first definition stands: a redeclare
    /// is checked against the queue itself, by its node); otherwise
    /// refused with where it is ([`Refusal::Placed`]).
    PlaceQueue { queue: String, node: NodeId, def: QueueDef },
    /// The queue on `node` is gone (a placement on another node stays).
    UnplaceQueue { queue: String, node: NodeId },
}

/// A queue's definition as its first declare gave it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDef {
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    /// The declare's arguments (a raw field table).
    pub args: bytes::Bytes,
}

/// Where a queue lives, and how it was defined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placed {
    pub node: NodeId,
    pub def: QueueDef,
}

/// Why a command was refused: the same on every member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Route(RouteError),
    #[error("exchange '{0}' in use")]
    InUse(String),
    #[error("{0}")]
    User(ChangeError),
    /// A user change before the users were seeded (a cluster that has just
    /// formed): try again.
    #[error("the cluster's users are not set up yet")]
    NotSeeded,
    /// A second seed: the first one stands.
    #[error("the cluster's users are set up already")]
    Seeded,
    /// The queue lives on another node.
    #[error("the queue is placed on node {0}")]
    Placed(NodeId),
    /// A placement on a node that is not a member.
    #[error("node {0} is not a member")]
    UnknownNode(NodeId),
}

/// What applying a command answers.
pub type MetaResponse = Result<(), Refusal>;

/// The metadata state: what every member holds alike.
#[derive(Debug, Default)]
pub struct ClusterMeta {
    routing: RoutingTable,
    nodes: BTreeMap<NodeId, NodeInfo>,
    /// `None` until seeded. The limits on counts (`users_max`,
    /// `vhosts_max`) are the asking node's to check: configs may differ.
    users: Option<Users>,
    /// Where each classic queue lives (by vhost-qualified name).
    queues: BTreeMap<String, Placed>,
}

impl ClusterMeta {
    pub fn queues(&self) -> &BTreeMap<String, Placed> {
        &self.queues
    }

    /// Queues placed on each member (members with none count 0): what
    /// `x-queue-leader-locator: balanced` compares.
    pub fn queue_counts(&self) -> BTreeMap<NodeId, usize> {
        let mut counts: BTreeMap<NodeId, usize> = self.nodes.keys().map(|n| (*n, 0)).collect();
        for p in self.queues.values() {
            if let Some(c) = counts.get_mut(&p.node) {
                *c += 1;
            }
        }
        counts
    }

    fn place(&mut self, queue: &str, node: NodeId, def: &QueueDef) -> MetaResponse {
        if !self.nodes.contains_key(&node) {
            return Err(Refusal::UnknownNode(node));
        }
        match self.queues.get(queue) {
            Some(at) if at.node != node => Err(Refusal::Placed(at.node)),
            Some(_) => Ok(()),
            None => {
                self.queues.insert(queue.to_string(), Placed { node, def: def.clone() });
                Ok(())
            }
        }
    }

    fn unplace(&mut self, queue: &str, node: NodeId) {
        if self.queues.get(queue).is_some_and(|p| p.node == node) {
            self.queues.remove(queue);
        }
    }

    pub fn routing(&self) -> &RoutingTable {
        &self.routing
    }

    pub fn nodes(&self) -> &BTreeMap<NodeId, NodeInfo> {
        &self.nodes
    }

    /// The users and vhosts, once seeded.
    pub fn access(&self) -> Option<StoredAccess> {
        self.users.as_ref().map(crate::auth::access::access_of)
    }

    pub fn is_seeded(&self) -> bool {
        self.users.is_some()
    }

    /// The node called `name`, if one is.
    pub fn node_named(&self, name: &str) -> Option<(NodeId, &NodeInfo)> {
        self.nodes.iter().find(|(_, n)| n.name == name).map(|(id, n)| (*id, n))
    }

    fn route(&mut self, change: &Change, if_unused: bool) -> MetaResponse {
        if let (Change::DeleteExchange(name), true) = (change, if_unused) {
            if self.routing.bindings_from(name).next().is_some() {
                return Err(Refusal::InUse(name.clone()));
            }
        }
        self.routing.apply(change).map_err(Refusal::Route)
    }
}

impl Apply for ClusterMeta {
    type Command = MetaCommand;
    type Response = MetaResponse;

    fn apply(&mut self, command: &MetaCommand) -> MetaResponse {
        match command {
            MetaCommand::Node { id, info } => {
                self.nodes.insert(*id, info.clone());
                Ok(())
            }
            MetaCommand::NodeGone { id } => {
                self.nodes.remove(id);
                // Its queues went with it (their data is on its disk).
                self.queues.retain(|_, p| p.node != *id);
                Ok(())
            }
            MetaCommand::Routing { change, if_unused } => self.route(change, *if_unused),
            MetaCommand::SeedAccess(access) => match self.users {
                Some(_) => Err(Refusal::Seeded),
                None => {
                    self.users = Some(crate::auth::access::users_from(access, &[]));
                    Ok(())
                }
            },
            MetaCommand::Users(change) => match &mut self.users {
                None => Err(Refusal::NotSeeded),
                Some(u) => u.apply(change, ChangeLimits::NONE).map_err(Refusal::User),
            },
            MetaCommand::PlaceQueue { queue, node, def } => self.place(queue, *node, def),
            MetaCommand::UnplaceQueue { queue, node } => {
                self.unplace(queue, *node);
                Ok(())
            }
        }
    }
}

/// The state as a snapshot carries it: the table as the changes that
/// rebuild it (`RoutingTable::snapshot`), with its version.
#[derive(Serialize, Deserialize)]
struct Image {
    routing_version: u64,
    routing: Vec<Change>,
    nodes: BTreeMap<NodeId, NodeInfo>,
    access: Option<StoredAccess>,
    queues: BTreeMap<String, Placed>,
}

impl Serialize for ClusterMeta {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let image = Image {
            routing_version: self.routing.version(),
            routing: self.routing.snapshot(),
            nodes: self.nodes.clone(),
            access: self.access(),
            queues: self.queues.clone(),
        };
        image.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ClusterMeta {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let image = Image::deserialize(d)?;
        // A snapshot from a peer is hostile until it rebuilds cleanly.
        let routing = RoutingTable::from_snapshot(image.routing_version, &image.routing)
            .map_err(|e| serde::de::Error::custom(format!("a snapshot's routing table does not rebuild: {e}")))?;
        let users = image.access.map(|a| crate::auth::access::users_from(&a, &[]));
        Ok(Self { routing, nodes: image.nodes, users, queues: image.queues })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::{BindingDef, Dest, ExchangeDef, ExchangeKind};
    use bytes::Bytes;

    fn declare(name: &str, kind: ExchangeKind) -> MetaCommand {
        MetaCommand::Routing { change: Change::DeclareExchange(ExchangeDef::new(name, kind)), if_unused: false }
    }

    fn bind(source: &str, queue: &str) -> MetaCommand {
        let b =
            BindingDef { source: source.into(), dest: Dest::Queue(queue.into()), key: "k".into(), args: Bytes::new() };
        MetaCommand::Routing { change: Change::Bind(b), if_unused: false }
    }

    #[test]
    fn members_that_apply_the_same_commands_answer_alike() {
        let cmds = [
            declare("x", ExchangeKind::Direct),
            declare("x", ExchangeKind::Fanout),
            bind("x", "q"),
            bind("nope", "q"),
            MetaCommand::Routing { change: Change::DeleteExchange("x".into()), if_unused: true },
        ];
        let (mut a, mut b) = (ClusterMeta::default(), ClusterMeta::default());
        let ra: Vec<_> = cmds.iter().map(|c| a.apply(c)).collect();
        let rb: Vec<_> = cmds.iter().map(|c| b.apply(c)).collect();
        assert_eq!(ra, rb);
        assert_eq!(ra[0], Ok(()));
        assert!(matches!(ra[1], Err(Refusal::Route(RouteError::Mismatch(_)))), "{:?}", ra[1]);
        assert_eq!(ra[2], Ok(()));
        assert!(matches!(ra[3], Err(Refusal::Route(RouteError::NotFound(_)))), "{:?}", ra[3]);
        assert_eq!(ra[4], Err(Refusal::InUse("x".into())));
        assert_eq!(a.routing().snapshot(), b.routing().snapshot());
    }

    #[test]
    fn a_snapshot_round_trips_and_a_bad_one_is_refused() {
        let mut m = ClusterMeta::default();
        m.apply(&declare("x", ExchangeKind::Topic)).unwrap();
        m.apply(&bind("x", "q")).unwrap();
        let info = NodeInfo {
            name: "n1".into(),
            cluster_addr: "127.0.0.1:1".into(),
            native_addr: "127.0.0.1:2".into(),
            shard_addrs: vec!["127.0.0.1:3".into()],
            amqp_addr: "127.0.0.1:4".into(),
            http_addr: "127.0.0.1:5".into(),
            data_addrs: vec!["127.0.0.1:6".into()],
        };
        m.apply(&MetaCommand::Node { id: 7, info: info.clone() }).unwrap();
        let bytes = postcard::to_allocvec(&m).unwrap();
        let back: ClusterMeta = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.routing().snapshot(), m.routing().snapshot());
        assert_eq!(back.routing().version(), m.routing().version());
        assert_eq!(back.node_named("n1"), Some((7, &info)));
        assert_eq!(back.access(), None);

        // Users: refused before the seed, the first seed stands, changes
        // apply and travel in the snapshot.
        let add = MetaCommand::Users(UserChange::AddVhost { vhost: "v".into(), create_only: true });
        assert_eq!(m.apply(&add), Err(Refusal::NotSeeded));
        let seed = StoredAccess { users: Vec::new(), vhosts: vec!["/".into()] };
        m.apply(&MetaCommand::SeedAccess(seed.clone())).unwrap();
        assert_eq!(m.apply(&MetaCommand::SeedAccess(seed)), Err(Refusal::Seeded));
        m.apply(&add).unwrap();
        assert!(matches!(m.apply(&add), Err(Refusal::User(_))), "an existing vhost with create_only");
        let back: ClusterMeta = postcard::from_bytes(&postcard::to_allocvec(&m).unwrap()).unwrap();
        assert_eq!(back.access().unwrap().vhosts, ["/", "v"]);

        // A binding from an exchange the image never declares.
        let bad = Image {
            routing_version: 1,
            routing: vec![bind_change("missing", "q")],
            nodes: BTreeMap::new(),
            access: None,
            queues: BTreeMap::new(),
        };
        let bytes = postcard::to_allocvec(&bad).unwrap();
        assert!(postcard::from_bytes::<ClusterMeta>(&bytes).is_err());
    }

    #[test]
    fn a_queue_is_placed_once_and_goes_with_its_node() {
        let mut m = ClusterMeta::default();
        let def = QueueDef { durable: true, args: bytes::Bytes::from_static(b"\x00"), ..Default::default() };
        let place = |queue: &str, node| MetaCommand::PlaceQueue { queue: queue.into(), node, def: def.clone() };
        assert_eq!(m.apply(&place("q", 1)), Err(Refusal::UnknownNode(1)), "not a member");
        for id in [1, 2] {
            let info = NodeInfo {
                name: format!("n{id}"),
                cluster_addr: String::new(),
                native_addr: String::new(),
                shard_addrs: Vec::new(),
                amqp_addr: String::new(),
                http_addr: String::new(),
                data_addrs: Vec::new(),
            };
            m.apply(&MetaCommand::Node { id, info }).unwrap();
        }
        assert_eq!(m.apply(&place("q", 1)), Ok(()));
        assert_eq!(m.apply(&place("q", 1)), Ok(()), "placed there already");
        assert_eq!(m.apply(&place("q", 2)), Err(Refusal::Placed(1)));
        m.apply(&place("r", 2)).unwrap();
        assert_eq!(m.queue_counts(), BTreeMap::from([(1, 1), (2, 1)]));
        m.apply(&MetaCommand::UnplaceQueue { queue: "q".into(), node: 2 }).unwrap();
        assert_eq!(m.queues().get("q").map(|p| p.node), Some(1), "only its own node unplaces it");
        assert_eq!(m.queues()["q"].def, def, "the first declare's definition");
        let back: ClusterMeta = postcard::from_bytes(&postcard::to_allocvec(&m).unwrap()).unwrap();
        assert_eq!(back.queues(), m.queues());
        m.apply(&MetaCommand::NodeGone { id: 1 }).unwrap();
        assert_eq!(m.queues().keys().collect::<Vec<_>>(), ["r"]);
        m.apply(&MetaCommand::UnplaceQueue { queue: "r".into(), node: 2 }).unwrap();
        assert!(m.queues().is_empty());
    }

    fn bind_change(source: &str, queue: &str) -> Change {
        match bind(source, queue) {
            MetaCommand::Routing { change, .. } => change,
            _ => unreachable!(),
        }
    }
}
