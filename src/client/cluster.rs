//! The cluster-aware side of the client (issue 17; `protocol::cluster_map`):
//! a client of a clustered broker gets the map with its first handshake
//! (`super::handshake`), asks where each queue lives and sends
//! its traffic straight to the owning node's owning shard, over a
//! connection it opens there. A queue whose node cannot be reached, or a
//! map that moved under it, falls back to the first connection: that node
//! forwards (one hop more, never a wrong answer).

use super::conn::{Conn, Response};
use super::{ClientError, Result, ServerInfo};
use crate::protocol::cluster_map::{located, ClusterMap, HERE};
use crate::protocol::Cmd;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;

/// A cluster map with its addresses parsed (an unspecified IP, a broker
/// listening on `0.0.0.0`, becomes the one this client reached).
#[derive(Debug, Clone, Default)]
pub struct OwnedMap {
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

/// What a client knows of the cluster: the map, where each queue it used
/// lives, and its connections to other nodes' shards.
#[derive(Default)]
pub struct Routes {
    map: RefCell<OwnedMap>,
    located: RefCell<HashMap<String, SocketAddr>>,
    conns: RefCell<HashMap<SocketAddr, Rc<Conn>>>,
}

/// Queues whose location a client remembers, at most (then it forgets them all).
const LOCATED_MAX: usize = 65_536;

impl Routes {
    pub fn map(&self) -> OwnedMap {
        self.map.borrow().clone()
    }

    /// Whether the broker is clustered (its map lists nodes).
    pub fn is_clustered(&self) -> bool {
        !self.map.borrow().nodes.is_empty()
    }

    /// Takes a new map (and forgets where queues were).
    pub fn set(&self, map: OwnedMap) {
        *self.map.borrow_mut() = map;
        self.located.borrow_mut().clear();
    }

    /// Fetches the map over `via` (and forgets where queues were).
    pub async fn refresh(&self, via: &Conn) -> Result<()> {
        match via.request(Cmd::MapGet).await? {
            Response::Map(m) => {
                self.set(m);
                Ok(())
            }
            other => Err(ClientError::Protocol(format!("unexpected reply to MapGet: {other:?}"))),
        }
    }

    /// The address of the shard that owns `queue`: asked of the broker
    /// over `via` once, then remembered. `None`: `via` itself is best (the
    /// queue is its node's, or the map moved: fetched again for next time).
    pub async fn owner_addr(&self, via: &Conn, queue: &str) -> Result<Option<SocketAddr>> {
        if via.take_map_changed() {
            self.refresh(via).await?;
        }
        if let Some(a) = self.located.borrow().get(queue) {
            return Ok(Some(*a));
        }
        let (version, node, shard) = located(via.simple(Cmd::Locate { queue }).await?);
        let addr = {
            let map = self.map.borrow();
            if version != map.version {
                None
            } else if node == HERE {
                via.info().shard_addrs.get(usize::from(shard)).copied()
            } else {
                map.nodes.get(usize::from(node)).and_then(|n| n.get(usize::from(shard))).copied()
            }
        };
        let Some(addr) = addr else {
            self.refresh(via).await?;
            return Ok(None);
        };
        let mut located = self.located.borrow_mut();
        if located.len() >= LOCATED_MAX {
            located.clear();
        }
        located.insert(queue.to_string(), addr);
        Ok(Some(addr))
    }

    /// This client's open connection to `addr`, if any.
    pub fn conn(&self, addr: SocketAddr) -> Option<Rc<Conn>> {
        self.conns.borrow().get(&addr).filter(|c| !c.is_closed()).cloned()
    }

    /// Every connection this client opened to other nodes.
    pub fn conns(&self) -> Vec<Rc<Conn>> {
        self.conns.borrow().values().cloned().collect()
    }

    pub fn keep(&self, addr: SocketAddr, c: Rc<Conn>) {
        self.conns.borrow_mut().insert(addr, c);
    }

    /// `queue`'s node is out of reach: forget where it was.
    pub fn forget(&self, queue: &str) {
        self.located.borrow_mut().remove(queue);
    }
}
