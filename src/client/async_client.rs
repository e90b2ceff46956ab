//! The glommio client ([`Client`]): one connection per shard it uses,
//! each queue's traffic straight to its owner. Its connections, producers
//! and consumers are the glommio shell (`conn`, `producer`, `consumer`)
//! over the shared `core`.

use super::cluster;
use super::core::methods::shell_client_methods;
use super::core::topology::Topology;
use super::dial::Dialer;
use super::recover::{self, Events, Hub};
use super::{
    ClientError, ClientOptions, Conn, Consumer, ConsumerOptions, Delivery, ExchangeOptions, Producer, ProducerOptions,
    Result, ServerInfo, Target,
};
use std::cell::{Cell, RefCell, RefMut};
use std::collections::HashMap;
use std::rc::Rc;

/// An async client on glommio. Not `Send`: use it on the executor that
/// created it.
pub struct Client {
    opts: ClientOptions,
    /// Plain or TLS, for every connection (the first and each shard's).
    dialer: Rc<Dialer>,
    /// With `ClientOptions::recovery`: what recovery shares.
    hub: Option<Rc<Hub>>,
    info: ServerInfo,
    first: Rc<Conn>,
    by_shard: RefCell<Vec<Option<Rc<Conn>>>>,
    next_consumer_id: Cell<u32>,
    /// The pull-consumer id used for `get` on each queue.
    pull_ids: RefCell<HashMap<String, u32>>,
    /// On a clustered broker: the map and where queues live.
    routes: cluster::Routes,
}

impl Client {
    /// Connects to `opts.url` and shakes hands; the connections to other shards open on first use.
    pub async fn connect(opts: ClientOptions) -> Result<Client> {
        // Credentials, vhost and options in the URL win (`client::url`).
        let (opts, url) = opts.resolved()?;
        if let Some(r) = &opts.recovery {
            r.validate()?;
        }
        let dialer = Rc::new(Dialer::new(&opts, &url)?);
        let hub = opts.recovery.clone().map(Hub::new);
        // The map comes with the first connection's handshake.
        let want_map = opts.shard_aware && opts.cluster_aware;
        let (first, map) = Conn::open_with(&dialer, url.addr, &opts, want_map, hub.clone()).await?;
        if let Some(hub) = &hub {
            glommio::spawn_local(recover::supervise(hub.clone(), dialer.clone(), opts.clone())).detach();
        }
        let info = first.info().clone();
        let mut by_shard = vec![None; info.shard_addrs.len()];
        by_shard[usize::from(info.shard_id)] = Some(first.clone());
        let routes = cluster::Routes::new(hub.clone());
        if let Some(map) = map {
            routes.set(map);
        }
        Ok(Client {
            routes,
            opts,
            dialer,
            hub,
            info,
            first,
            by_shard: RefCell::new(by_shard),
            next_consumer_id: Cell::new(1),
            pull_ids: RefCell::default(),
        })
    }

    /// The recovery record, when recovery is on.
    fn topology(&self) -> Option<RefMut<'_, Topology>> {
        self.hub.as_ref().map(|h| h.topology.borrow_mut())
    }

    /// The pull consumers' ids, by queue.
    fn pull_ids(&self) -> RefMut<'_, HashMap<String, u32>> {
        self.pull_ids.borrow_mut()
    }

    /// The connection that carries `queue`'s traffic: the owner's, opened
    /// on first use, when shard-aware.
    pub async fn conn_for(&self, queue: &str) -> Result<Rc<Conn>> {
        if self.hub.as_ref().is_some_and(|h| h.is_closing()) {
            return Err(ClientError::Closed("the client closed, or its recovery gave up".into()));
        }
        if !self.opts.shard_aware {
            return Ok(self.first.clone());
        }
        if self.routes.is_clustered() {
            return self.cluster_conn(queue).await;
        }
        self.shard_conn(usize::from(self.info.owner_of(queue))).await
    }

    /// The connection to this node's shard `owner`, opened on first use.
    async fn shard_conn(&self, owner: usize) -> Result<Rc<Conn>> {
        if let Some(c) = self.by_shard.borrow()[owner].clone().filter(|c| !c.is_closed()) {
            return Ok(c);
        }
        let c = Conn::open(&self.dialer, self.info.shard_addrs[owner], &self.opts, self.hub.clone()).await?;
        if usize::from(c.info().shard_id) != owner {
            return Err(ClientError::Protocol(format!("dialled shard {owner}, reached shard {}", c.info().shard_id)));
        }
        self.by_shard.borrow_mut()[owner] = Some(c.clone());
        Ok(c)
    }

    /// On a clustered broker: the connection to `queue`'s owning node and
    /// shard (opened on first use), or the first one when that node is out
    /// of reach (its node forwards, and answers for a dead one).
    async fn cluster_conn(&self, queue: &str) -> Result<Rc<Conn>> {
        let Some(addr) = self.routes.owner_addr(&self.first, queue).await? else {
            return Ok(self.first.clone());
        };
        if let Some(own) = self.info.shard_addrs.iter().position(|a| *a == addr) {
            return self.shard_conn(own).await;
        }
        if let Some(c) = self.routes.conn(addr) {
            return Ok(c);
        }
        match Conn::open(&self.dialer, addr, &self.opts, self.hub.clone()).await {
            Ok(c) => {
                self.routes.keep(addr, c.clone());
                Ok(c)
            }
            Err(e) => {
                tracing::debug!(%addr, error = %e, queue, "the queue's node is out of reach; through the first connection");
                self.routes.forget(queue);
                Ok(self.first.clone())
            }
        }
    }

    /// The cluster map as this client last fetched it (empty on a single node).
    pub fn cluster_map(&self) -> cluster::OwnedMap {
        self.routes.map()
    }

    shell_client_methods! {
        /// that drops the oldest unread. Without recovery the stream is empty.
        events;
        /// Declares an exchange: `kind` is direct, fanout, topic or headers;
        /// `args` an AMQP field table (without its length), e.g. with
        /// `alternate-exchange`.
        declare_exchange;
        /// Removes a binding made with `bind_queue`.
        unbind_queue;
        /// Removes a binding made with `bind_exchange`.
        unbind_exchange;
        /// (`PropsBuilder::reply_to`); a replier publishes to it as to a queue
        /// (AMQP: the default exchange, the name as the routing key). Replies
        /// are never acked (their tags are only counted), and are lost if
        /// this client is gone. One per client.
        reply_consumer;
        /// returned delivery's consumer id (see [`Client::ack_get`]).
        get;
    }

    fn next_id(&self) -> u32 {
        let id = self.next_consumer_id.get();
        self.next_consumer_id.set(id.wrapping_add(1).max(1));
        id
    }

    /// Every connection this client opened, once each: the first, this
    /// node's shards' and, cluster-aware, other nodes' shards'.
    fn all_conns(&self) -> Vec<Rc<Conn>> {
        let mut all = vec![self.first.clone()];
        let shards = self.by_shard.borrow();
        for c in shards.iter().flatten().cloned().chain(self.routes.conns()) {
            if !all.iter().any(|a| Rc::ptr_eq(a, &c)) {
                all.push(c);
            }
        }
        all
    }

    /// Closes every connection after flushing what is queued on them. The
    /// closes run together: one to a broker that does not read (a frozen
    /// node) must not keep the others open, with their consumers' unacked
    /// deliveries held on the broker.
    pub async fn close(&self) {
        if let Some(hub) = &self.hub {
            hub.close();
        }
        let closing: Vec<_> =
            self.all_conns().into_iter().map(|c| glommio::spawn_local(async move { c.close().await })).collect();
        for task in closing {
            task.await;
        }
    }
}

/// A client dropped without [`Client::close`] (or while closing) still
/// closes its connections: what is queued is written, then each socket
/// shuts. Otherwise the reading tasks keep them open, and a broker keeps
/// the consumers on them, holding their unacked deliveries, for as long
/// as the process lives.
impl Drop for Client {
    fn drop(&mut self) {
        if let Some(hub) = &self.hub {
            hub.close();
        }
        for c in self.all_conns() {
            c.shut();
        }
    }
}
