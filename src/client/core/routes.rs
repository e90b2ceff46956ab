//! The cluster-aware side of the client (issue 17; `protocol::cluster_map`),
//! without I/O: a client of a clustered broker gets the map with its first
//! handshake, asks where each queue lives (`Locate`) and sends its
//! traffic straight to the owning node's owning shard, over a connection
//! it opens there. A queue whose node cannot be reached, or a map that
//! moved under it, falls back to the first connection: that node forwards
//! (one hop more, never a wrong answer). The shells keep their
//! connections per address beside a [`RouteBook`].

use crate::client::{ClientError, Result, ServerInfo};
use crate::protocol::cluster_map::{located, ClusterMap, HERE};
use std::collections::HashMap;
use std::net::SocketAddr;

/// A cluster map with its addresses parsed (an unspecified IP, a broker
/// listening on `0.0.0.0`, becomes the one this client reached).
#[derive(Debug, Clone, Default)]
pub struct OwnedMap {
    /// The map's version: it moves with every membership change.
    pub version: u32,
    /// Each node's shards' native addresses, in map order.
    pub nodes: Vec<Vec<SocketAddr>>,
}

impl OwnedMap {
    pub(crate) fn from_wire(m: &ClusterMap<'_>, via: &ServerInfo) -> Result<Self> {
        let reached = via.shard_addrs.first().map(SocketAddr::ip);
        let mut nodes = Vec::with_capacity(m.nodes.len());
        for n in &m.nodes {
            let mut addrs = Vec::with_capacity(n.shard_addrs.len());
            for a in &n.shard_addrs {
                let mut addr: SocketAddr =
                    a.parse().map_err(|_| ClientError::Protocol(format!("bad address {a:?} in the cluster map")))?;
                if let (true, Some(ip)) = (addr.ip().is_unspecified(), reached) {
                    addr.set_ip(ip);
                }
                addrs.push(addr);
            }
            nodes.push(addrs);
        }
        Ok(Self { version: m.version, nodes })
    }
}

/// Queues whose location a client remembers, at most (then it forgets them all).
const LOCATED_MAX: usize = 65_536;

/// The map, and where each queue this client used lives.
#[derive(Debug, Default)]
pub struct RouteBook {
    map: OwnedMap,
    located: HashMap<String, SocketAddr>,
}

impl RouteBook {
    /// The map as last fetched.
    pub fn map(&self) -> &OwnedMap {
        &self.map
    }

    /// Whether the broker is clustered (its map lists nodes).
    pub fn is_clustered(&self) -> bool {
        !self.map.nodes.is_empty()
    }

    /// Takes a new map (and forgets where queues were).
    pub fn set(&mut self, map: OwnedMap) {
        self.map = map;
        self.located.clear();
    }

    /// Where `queue` was found before, if it was.
    pub fn cached(&self, queue: &str) -> Option<SocketAddr> {
        self.located.get(queue).copied()
    }

    /// Takes the answer to a `Locate` of `queue` asked over the connection
    /// `via` describes: the owning shard's address, remembered; `None`
    /// when the answer is of another map (fetch it again, and go through
    /// `via` meanwhile).
    pub fn resolve(&mut self, queue: &str, located_value: u64, via: &ServerInfo) -> Option<SocketAddr> {
        let (version, node, shard) = located(located_value);
        let addr = if version != self.map.version {
            None
        } else if node == HERE {
            via.shard_addrs.get(usize::from(shard)).copied()
        } else {
            self.map.nodes.get(usize::from(node)).and_then(|n| n.get(usize::from(shard))).copied()
        }?;
        if self.located.len() >= LOCATED_MAX {
            self.located.clear();
        }
        self.located.insert(queue.to_string(), addr);
        Some(addr)
    }

    /// `queue`'s node is out of reach: forget where it was.
    pub fn forget(&mut self, queue: &str) {
        self.located.remove(queue);
    }
}
