//! The tokio client: the glommio client's API on tokio, every handle
//! `Send + Sync` (cargo feature `tokio`).
//!
//! The same shard-aware protocol: one connection per shard it uses, each
//! queue's traffic straight to the shard (and, on a cluster, the node)
//! that owns it. It is an I/O shell over the client's shared core
//! (`client::core`): the handshake, request bookkeeping, frame dispatch,
//! ack ranges, batches and cluster routes are the glommio client's; this
//! module adds tokio sockets, tasks and timers.
//!
//! Call it from inside a tokio runtime with its I/O and time drivers on
//! (`#[tokio::main]`, or a `Builder` with `enable_all`): each connection
//! spawns a reader, a writer and (with heartbeats) a beat task.
//!
//! ```no_run
//! # async fn demo() -> ringmq::client::Result<()> {
//! use futures_lite::StreamExt;
//! use ringmq::client::{tokio::Client, ClientOptions, ProducerOptions};
//!
//! let client = Client::connect(ClientOptions { url: "ringmq://127.0.0.1:5680".into(), ..Default::default() }).await?;
//! client.declare("jobs", false).await?;
//! let producer = client.producer("jobs", ProducerOptions::default()).await?;
//! producer.send(b"hello").await?;
//! let mut consumer = client.subscribe("jobs", 100).await?;
//! if let Some(d) = consumer.next().await {
//!     let d = d?;
//!     consumer.ack(d.tag);
//! }
//! client.close().await;
//! # Ok(())
//! # }
//! ```

mod conn;
mod consumer;
mod io;
mod producer;
mod recover;

pub use conn::Conn;
pub use consumer::Consumer;
pub use producer::{Confirmation, Producer};
pub use recover::Events;

use super::core::incoming::Response;
use super::core::methods::shell_client_methods;
use super::core::routes::{OwnedMap, RouteBook};
use super::core::topology::Topology;
use super::{
    ClientError, ClientOptions, ConsumerOptions, Delivery, ExchangeOptions, ProducerOptions, Result, ServerInfo, Target,
};
use crate::protocol::Cmd;
use conn::lock;
use io::Dialer;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// An async client on tokio: `Send + Sync`, so one client can serve every
/// task (wrap it in an `Arc`).
pub struct Client {
    opts: ClientOptions,
    /// Plain or TLS, for every connection (the first and each shard's).
    dialer: Arc<Dialer>,
    /// With `ClientOptions::recovery`: what recovery shares.
    hub: Option<Arc<recover::Hub>>,
    info: ServerInfo,
    first: Arc<Conn>,
    by_shard: Mutex<Vec<Option<Arc<Conn>>>>,
    next_consumer_id: AtomicU32,
    /// The pull-consumer id used for `get` on each queue.
    pull_ids: Mutex<HashMap<String, u32>>,
    /// On a clustered broker: the map and where queues live.
    routes: Mutex<RouteBook>,
    /// Connections to other nodes' shards.
    remote: Mutex<HashMap<SocketAddr, Arc<Conn>>>,
}

impl Client {
    /// Connects to `opts.url` (`ringmq://HOST:PORT`, or `ringmqs://` for
    /// TLS) and shakes hands; the connections to other shards open on
    /// first use.
    pub async fn connect(opts: ClientOptions) -> Result<Client> {
        // Credentials, vhost and options in the URL win (`client::url`).
        let (opts, url) = opts.resolved()?;
        if let Some(r) = &opts.recovery {
            r.validate()?;
        }
        let dialer = Arc::new(Dialer::new(&opts, &url)?);
        let hub = opts.recovery.clone().map(recover::Hub::new);
        // The map comes with the first connection's handshake.
        let want_map = opts.shard_aware && opts.cluster_aware;
        let (first, map) = Conn::open(&dialer, url.addr, &opts, want_map, hub.clone()).await?;
        if let Some(hub) = &hub {
            tokio::spawn(recover::supervise(hub.clone(), dialer.clone(), opts.clone()));
        }
        let info = first.info().clone();
        let mut by_shard = vec![None; info.shard_addrs.len()];
        by_shard[usize::from(info.shard_id)] = Some(first.clone());
        let mut routes = RouteBook::default();
        if let Some(map) = map {
            if let Some(hub) = &hub {
                hub.set_map(&map);
            }
            routes.set(map);
        }
        Ok(Client {
            routes: Mutex::new(routes),
            remote: Mutex::default(),
            opts,
            dialer,
            hub,
            info,
            first,
            by_shard: Mutex::new(by_shard),
            next_consumer_id: AtomicU32::new(1),
            pull_ids: Mutex::default(),
        })
    }

    /// The recovery record, when recovery is on.
    fn topology(&self) -> Option<MutexGuard<'_, Topology>> {
        self.hub.as_ref().map(|h| lock(&h.topology))
    }

    /// The pull consumers' ids, by queue.
    fn pull_ids(&self) -> MutexGuard<'_, HashMap<String, u32>> {
        lock(&self.pull_ids)
    }

    /// The cluster map as this client last fetched it (empty on a single node).
    pub fn cluster_map(&self) -> OwnedMap {
        lock(&self.routes).map().clone()
    }

    /// The connection that carries `queue`'s traffic: the owner's, opened
    /// on first use, when shard-aware.
    pub async fn conn_for(&self, queue: &str) -> Result<Arc<Conn>> {
        if self.hub.as_ref().is_some_and(|h| h.is_closing()) {
            return Err(ClientError::Closed("the client closed, or its recovery gave up".into()));
        }
        if !self.opts.shard_aware {
            return Ok(self.first.clone());
        }
        if lock(&self.routes).is_clustered() {
            return self.cluster_conn(queue).await;
        }
        self.shard_conn(usize::from(self.info.owner_of(queue))).await
    }

    /// The connection to this node's shard `owner`, opened on first use.
    async fn shard_conn(&self, owner: usize) -> Result<Arc<Conn>> {
        let known = lock(&self.by_shard)[owner].clone().filter(|c| !c.is_closed());
        if let Some(c) = known {
            return Ok(c);
        }
        let (c, _) =
            Conn::open(&self.dialer, self.info.shard_addrs[owner], &self.opts, false, self.hub.clone()).await?;
        if usize::from(c.info().shard_id) != owner {
            return Err(ClientError::Protocol(format!("dialled shard {owner}, reached shard {}", c.info().shard_id)));
        }
        // Two tasks may have dialled at once: the first one kept wins.
        let mut shards = lock(&self.by_shard);
        match shards[owner].clone().filter(|k| !k.is_closed()) {
            Some(kept) => {
                c.shut();
                Ok(kept)
            }
            None => {
                shards[owner] = Some(c.clone());
                Ok(c)
            }
        }
    }

    /// Fetches the map over the first connection.
    async fn refresh_map(&self) -> Result<()> {
        match self.first.request(Cmd::MapGet).await? {
            Response::Map(m) => {
                if let Some(hub) = &self.hub {
                    hub.set_map(&m);
                }
                lock(&self.routes).set(m);
                Ok(())
            }
            other => Err(ClientError::Protocol(format!("unexpected reply to MapGet: {other:?}"))),
        }
    }

    /// On a clustered broker: the connection to `queue`'s owning node and
    /// shard (opened on first use), or the first one when that node is out
    /// of reach (its node forwards, and answers for a dead one).
    async fn cluster_conn(&self, queue: &str) -> Result<Arc<Conn>> {
        if self.first.take_map_changed() {
            self.refresh_map().await?;
        }
        let cached = lock(&self.routes).cached(queue);
        let addr = match cached {
            Some(a) => a,
            None => {
                let v = self.first.simple(Cmd::Locate { queue }).await?;
                // The node that answered: another than the URL's after a failover.
                let via = self.first.node_info();
                let resolved = lock(&self.routes).resolve(queue, v, &via);
                match resolved {
                    Some(a) => a,
                    None => {
                        self.refresh_map().await?;
                        return Ok(self.first.clone());
                    }
                }
            }
        };
        if let Some(own) = self.info.shard_addrs.iter().position(|a| *a == addr) {
            return self.shard_conn(own).await;
        }
        let known = lock(&self.remote).get(&addr).filter(|c| !c.is_closed()).cloned();
        if let Some(c) = known {
            return Ok(c);
        }
        match Conn::open(&self.dialer, addr, &self.opts, false, self.hub.clone()).await {
            Ok((c, _)) => {
                lock(&self.remote).insert(addr, c.clone());
                Ok(c)
            }
            Err(e) => {
                tracing::debug!(%addr, error = %e, queue, "the queue's node is out of reach; through the first connection");
                lock(&self.routes).forget(queue);
                Ok(self.first.clone())
            }
        }
    }

    shell_client_methods! {
        /// that drops the oldest unread; every call reads the same queue.
        /// Without recovery the stream is empty.
        events;
        /// Declares an exchange: `kind` is direct, fanout, topic or headers.
        declare_exchange;
        /// Removes a binding made with [`Client::bind_queue`].
        unbind_queue;
        /// Removes a binding made with [`Client::bind_exchange`].
        unbind_exchange;
        /// (`PropsBuilder::reply_to`); a replier publishes to it as to a
        /// queue. Replies are never acked, and are lost if this client is
        /// gone. One per client.
        reply_consumer;
        /// returned delivery (see [`Client::ack_get`]).
        get;
    }

    /// Publishes one message (with properties) to `queue`, or to a direct
    /// reply-to name, and waits for the confirm: for a replier, which
    /// answers each request once.
    pub async fn reply(&self, reply_to: &str, props: &[u8], body: &[u8]) -> Result<()> {
        let p = self.producer(reply_to, ProducerOptions { batch_max: 1, ..Default::default() }).await?;
        p.publish_with(props, body).await?.await
    }

    fn next_id(&self) -> u32 {
        loop {
            let id = self.next_consumer_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 {
                return id;
            }
        }
    }

    /// Every connection this client opened, once each.
    fn all_conns(&self) -> Vec<Arc<Conn>> {
        let mut all = vec![self.first.clone()];
        let shards: Vec<Arc<Conn>> = lock(&self.by_shard).iter().flatten().cloned().collect();
        let remote: Vec<Arc<Conn>> = lock(&self.remote).values().cloned().collect();
        for c in shards.into_iter().chain(remote) {
            if !all.iter().any(|a| Arc::ptr_eq(a, &c)) {
                all.push(c);
            }
        }
        all
    }

    /// Closes every connection after flushing what is queued on them (acks
    /// included). The closes run together: one to a broker that does not
    /// read must not keep the others open.
    pub async fn close(&self) {
        if let Some(hub) = &self.hub {
            hub.close();
        }
        let closing: Vec<_> =
            self.all_conns().into_iter().map(|c| tokio::spawn(async move { c.close().await })).collect();
        for task in closing {
            let _ = task.await;
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("url", &self.opts.url).field("info", &self.info).finish_non_exhaustive()
    }
}

/// A client dropped without [`Client::close`] still closes its
/// connections: what is queued is written, then each socket shuts.
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
