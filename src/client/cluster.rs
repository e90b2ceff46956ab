//! The glommio client's cluster routes: the shared [`RouteBook`] (where
//! queues live, `core::routes`) and this client's connections to other
//! nodes' shards.

pub use super::core::routes::OwnedMap;
use super::core::routes::RouteBook;
use super::recover::Hub;
use super::{ClientError, Conn, Response, Result};
use crate::protocol::Cmd;
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;

/// What a client knows of the cluster: the map, where each queue it used
/// lives, and its connections to other nodes' shards.
#[derive(Default)]
pub struct Routes {
    book: RefCell<RouteBook>,
    conns: RefCell<HashMap<SocketAddr, Rc<Conn>>>,
    /// With recovery: told each new map (where the first connection fails
    /// over to).
    hub: Option<Rc<Hub>>,
}

impl Routes {
    pub(crate) fn new(hub: Option<Rc<Hub>>) -> Self {
        Self { hub, ..Default::default() }
    }

    /// The cluster map as last fetched (empty on a single node).
    pub fn map(&self) -> OwnedMap {
        self.book.borrow().map().clone()
    }

    /// Whether the broker is clustered (its map lists nodes).
    pub fn is_clustered(&self) -> bool {
        self.book.borrow().is_clustered()
    }

    /// Takes a new map (and forgets where queues were).
    pub fn set(&self, map: OwnedMap) {
        if let Some(hub) = &self.hub {
            hub.set_map(&map);
        }
        self.book.borrow_mut().set(map);
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
        if let Some(a) = self.book.borrow().cached(queue) {
            return Ok(Some(a));
        }
        let v = via.simple(Cmd::Locate { queue }).await?;
        // The node that answered: another than the URL's after a failover.
        let addr = self.book.borrow_mut().resolve(queue, v, &via.node_info());
        if addr.is_none() {
            self.refresh(via).await?;
        }
        Ok(addr)
    }

    /// This client's open connection to `addr`, if any.
    pub fn conn(&self, addr: SocketAddr) -> Option<Rc<Conn>> {
        self.conns.borrow().get(&addr).filter(|c| !c.is_closed()).cloned()
    }

    /// Every connection this client opened to other nodes.
    pub fn conns(&self) -> Vec<Rc<Conn>> {
        self.conns.borrow().values().cloned().collect()
    }

    /// Keeps `c` as the connection to `addr`, for queues whose owner is there.
    pub fn keep(&self, addr: SocketAddr, c: Rc<Conn>) {
        self.conns.borrow_mut().insert(addr, c);
    }

    /// `queue`'s node is out of reach: forget where it was.
    pub fn forget(&self, queue: &str) {
        self.book.borrow_mut().forget(queue);
    }
}
