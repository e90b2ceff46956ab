//! The ringmq client: shard-aware, batch-first.
//!
//! - [`Client`]: async on glommio. One connection per shard it uses; each
//!   queue's traffic goes straight to its owner ([`crate::protocol::shard_for`]).
//! - [`Producer`]: batches messages (`batch_max`, `linger`); `send` resolves
//!   when the broker confirms.
//! - [`Consumer`]: a `Stream` of deliveries under prefetch, with `ack`/`nack`.
//! - [`blocking`]: the same over std sockets, for programs without a runtime.
//!
//! `ringmqs://HOST:PORT` connects over TLS (the `tls` cargo feature):
//! the broker's certificate is verified against
//! [`ClientOptions::tls_ca_file`] and the URL's host, and every follow-on
//! connection to another shard is TLS too, verified against the same name
//! ([`tls`]).

// Lengths and counts narrowed with `as` could wrap silently: here each
// narrowing says how (`protocol::wire::{len32, saturate}`, or an `allow`
// with the reason).
#![deny(clippy::cast_possible_truncation)]

mod beats;
pub mod blocking;
pub mod cluster;
mod conn;
mod consumer;
mod dial;
mod handshake;
mod producer;
#[cfg(feature = "tls")]
pub mod tls;

pub use conn::Conn;
pub use consumer::{Consumer, ConsumerOptions, Delivery};
pub use producer::{Confirmation, Producer, ProducerOptions, Target};

use crate::protocol::{self, ErrorCode};
use dial::Dialer;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

/// Flags and arguments of an exchange declare.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExchangeOptions<'a> {
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    /// An AMQP field table without its length prefix; empty for none.
    pub args: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("bad url {0:?}: expected ringmq://HOST:PORT or ringmqs://HOST:PORT")]
    BadUrl(String),
    #[error("i/o error: {0}")]
    Io(String),
    /// The TLS layer failed: a certificate not trusted or refused, a
    /// handshake that did not finish, a file that holds no certificate.
    #[error("TLS: {0}")]
    Tls(String),
    #[error("broker error {code}: {message}")]
    Server { code: u16, message: String },
    #[error("connection closed: {0}")]
    Closed(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("{0}")]
    Invalid(String),
}

impl ClientError {
    /// The broker's error code, when the broker refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => ErrorCode::from_u16(*code),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub url: String,
    pub user: String,
    pub password: String,
    /// Send each queue's traffic to the shard that owns it. Off: everything
    /// goes over the first connection and the broker forwards it.
    pub shard_aware: bool,
    /// With `shard_aware`, on a clustered broker: send each queue's
    /// traffic to the owning node's owning shard (`cluster.rs`). Off: the
    /// node connected to forwards what is not its own.
    pub cluster_aware: bool,
    pub connect_timeout: Duration,
    /// Heartbeat to ask the broker for (0 = none). The broker may lower
    /// it; both sides then beat when idle, and each closes the other after
    /// two silent intervals.
    pub heartbeat_ms: u32,
    /// TLS even when the URL does not say `ringmqs://` (a bare
    /// `HOST:PORT`, as `--tls` gives it).
    pub tls: bool,
    /// The CA certificates (PEM) the broker's certificate must chain to.
    /// `None`: the system's bundle (`/etc/ssl/certs/ca-certificates.crt`
    /// and the like), when there is one.
    pub tls_ca_file: Option<PathBuf>,
    /// A client certificate chain (PEM) for brokers that ask for one
    /// (`tls_client_certs`), with its key in `tls_key_file`.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// The vhost to work in; its queues are other vhosts' only by name.
    pub vhost: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            url: "ringmq://127.0.0.1:5680".into(),
            user: "guest".into(),
            password: "guest".into(),
            shard_aware: true,
            cluster_aware: true,
            connect_timeout: Duration::from_secs(5),
            heartbeat_ms: 60_000,
            tls: false,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            vhost: protocol::vhost::DEFAULT_VHOST.into(),
        }
    }
}

impl ClientOptions {
    /// The Hello these options send: no heartbeat field when none is
    /// wanted, and no vhost for `/` (what older brokers accept).
    pub(crate) fn hello(&self) -> protocol::Cmd<'_> {
        protocol::Cmd::Hello {
            version: protocol::VERSION,
            user: &self.user,
            password: &self.password,
            heartbeat_ms: (self.heartbeat_ms > 0).then_some(self.heartbeat_ms),
            vhost: (self.vhost != protocol::vhost::DEFAULT_VHOST).then_some(self.vhost.as_str()),
        }
    }
}

/// A broker URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub addr: SocketAddr,
    /// The host as written (without brackets for IPv6): the name the
    /// broker's certificate is checked against.
    pub host: String,
    /// `ringmqs://`.
    pub tls: bool,
}

/// Parses `ringmq://HOST:PORT` or `ringmqs://HOST:PORT` (the scheme may
/// be left out: plain).
pub fn parse_broker_url(url: &str) -> Result<BrokerUrl> {
    use std::net::ToSocketAddrs;
    let bad = || ClientError::BadUrl(url.into());
    let (tls, rest) = match (url.strip_prefix("ringmqs://"), url.strip_prefix("ringmq://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) if url.contains("://") => return Err(bad()),
        (None, None) => (false, url),
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') {
        return Err(bad());
    }
    let (host, _port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() {
        return Err(bad());
    }
    let addr = rest.to_socket_addrs().map_err(|_| bad())?.next().ok_or_else(bad)?;
    Ok(BrokerUrl { addr, host: host.to_string(), tls })
}

/// The address of `ringmq://HOST:PORT` or `ringmqs://HOST:PORT` (the
/// scheme may be left out).
pub fn parse_url(url: &str) -> Result<SocketAddr> {
    parse_broker_url(url).map(|u| u.addr)
}

/// What the handshake told us.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub shard_id: u16,
    pub frame_bytes_max: u32,
    pub message_bytes_max: u32,
    pub prefetch_max: u32,
    pub shard_addrs: Vec<SocketAddr>,
    /// The negotiated heartbeat (0 = none).
    pub heartbeat_ms: u32,
    /// The vhost the connection works in: queue names hash with it.
    pub vhost: String,
}

impl ServerInfo {
    pub fn shard_count(&self) -> u32 {
        crate::protocol::wire::len32(self.shard_addrs.len())
    }

    /// The shard that owns `queue` of the vhost: the hash covers the vhost
    /// (`docs/protocol.md`).
    pub fn owner_of(&self, queue: &str) -> u16 {
        // Below the shard count, which HelloOk carries as a u16.
        crate::protocol::wire::saturate(protocol::shard_for(
            &protocol::vhost::qualify(&self.vhost, queue),
            self.shard_count(),
        ))
    }

    /// Turns a `HelloOk` into addresses we can dial; an unspecified IP
    /// (a broker listening on 0.0.0.0) becomes the host we reached it on.
    pub(crate) fn from_hello(h: &protocol::HelloOk<'_>, via: SocketAddr) -> Result<Self> {
        if h.hash_id != protocol::HASH_ID {
            return Err(ClientError::Protocol(format!(
                "broker uses shard hash {}, this client knows {}",
                h.hash_id,
                protocol::HASH_ID
            )));
        }
        let mut shard_addrs = Vec::with_capacity(h.shard_addrs.len());
        for a in &h.shard_addrs {
            let mut addr: SocketAddr =
                a.parse().map_err(|_| ClientError::Protocol(format!("bad shard address {a:?}")))?;
            if addr.ip().is_unspecified() {
                addr.set_ip(via.ip());
            }
            shard_addrs.push(addr);
        }
        Ok(Self {
            shard_id: h.shard_id,
            frame_bytes_max: h.frame_bytes_max,
            message_bytes_max: h.message_bytes_max,
            prefetch_max: h.prefetch_max,
            shard_addrs,
            heartbeat_ms: h.heartbeat_ms.unwrap_or(0),
            vhost: protocol::vhost::DEFAULT_VHOST.into(),
        })
    }
}

/// An async client on glommio. Not `Send`: use it on the executor that
/// created it.
pub struct Client {
    opts: ClientOptions,
    /// Plain or TLS, for every connection (the first and each shard's).
    dialer: Dialer,
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
    pub async fn connect(opts: ClientOptions) -> Result<Client> {
        let url = parse_broker_url(&opts.url)?;
        let dialer = Dialer::new(&opts, &url)?;
        // The map comes with the first connection's handshake.
        let want_map = opts.shard_aware && opts.cluster_aware;
        let (first, map) = Conn::open_with(&dialer, url.addr, &opts, want_map).await?;
        let info = first.info().clone();
        let mut by_shard = vec![None; info.shard_addrs.len()];
        by_shard[usize::from(info.shard_id)] = Some(first.clone());
        let routes = cluster::Routes::default();
        if let Some(map) = map {
            routes.set(map);
        }
        Ok(Client {
            routes,
            opts,
            dialer,
            info,
            first,
            by_shard: RefCell::new(by_shard),
            next_consumer_id: Cell::new(1),
            pull_ids: RefCell::default(),
        })
    }

    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    /// Whether this client's connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.dialer.is_tls()
    }

    /// The connection that carries `queue`'s traffic: the owner's, opened
    /// on first use, when shard-aware.
    pub async fn conn_for(&self, queue: &str) -> Result<Rc<Conn>> {
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
        let c = Conn::open(&self.dialer, self.info.shard_addrs[owner], &self.opts).await?;
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
        match Conn::open(&self.dialer, addr, &self.opts).await {
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

    pub async fn declare(&self, queue: &str, durable: bool) -> Result<u64> {
        self.declare_with(queue, durable, &[]).await
    }

    /// Declares with queue arguments (policies: TTL, length limits,
    /// dead-lettering, priorities...), a raw AMQP field table as built by
    /// [`protocol::field_table::TableBuilder`]. A redeclare must repeat them.
    pub async fn declare_with(&self, queue: &str, durable: bool, args: &[u8]) -> Result<u64> {
        let flags = if durable { protocol::op::DECLARE_DURABLE } else { 0 };
        self.conn_for(queue).await?.declare(queue, flags, args).await
    }

    /// Checks that a queue exists; returns its ready count.
    pub async fn declare_passive(&self, queue: &str) -> Result<u64> {
        self.conn_for(queue).await?.declare(queue, protocol::op::DECLARE_PASSIVE, &[]).await
    }

    pub async fn delete(&self, queue: &str) -> Result<u64> {
        self.conn_for(queue).await?.simple(protocol::Cmd::Delete { flags: 0, queue }).await
    }

    pub async fn purge(&self, queue: &str) -> Result<u64> {
        self.conn_for(queue).await?.simple(protocol::Cmd::Purge { queue }).await
    }

    pub async fn producer(&self, queue: &str, opts: ProducerOptions) -> Result<Producer> {
        Producer::new(self.conn_for(queue).await?, Target::Queue(queue.into()), opts)
    }

    /// A producer publishing through `exchange` with `routing_key`. It
    /// uses the connection to the shard that owns a queue named like the
    /// key, so a direct exchange routing by queue name saves a hop.
    pub async fn exchange_producer(
        &self,
        exchange: &str,
        routing_key: &str,
        opts: ProducerOptions,
    ) -> Result<Producer> {
        let conn = if routing_key.is_empty() { self.first.clone() } else { self.conn_for(routing_key).await? };
        let target = Target::Exchange { exchange: exchange.into(), routing_key: routing_key.into() };
        Producer::new(conn, target, opts)
    }

    /// Declares an exchange: `kind` is direct, fanout, topic or headers;
    /// `args` an AMQP field table (without its length), e.g. with
    /// `alternate-exchange`.
    pub async fn declare_exchange(&self, exchange: &str, kind: &str, o: ExchangeOptions<'_>) -> Result<()> {
        use protocol::op::{EXCHANGE_AUTO_DELETE, EXCHANGE_DURABLE, EXCHANGE_INTERNAL};
        let flags = if o.durable { EXCHANGE_DURABLE } else { 0 }
            | if o.auto_delete { EXCHANGE_AUTO_DELETE } else { 0 }
            | if o.internal { EXCHANGE_INTERNAL } else { 0 };
        let cmd = protocol::Cmd::ExchangeDeclare { flags, exchange, kind, args: o.args };
        self.first.simple(cmd).await.map(|_| ())
    }

    /// Checks that an exchange exists.
    pub async fn declare_exchange_passive(&self, exchange: &str) -> Result<()> {
        let cmd =
            protocol::Cmd::ExchangeDeclare { flags: protocol::op::EXCHANGE_PASSIVE, exchange, kind: "", args: &[] };
        self.first.simple(cmd).await.map(|_| ())
    }

    pub async fn delete_exchange(&self, exchange: &str, if_unused: bool) -> Result<()> {
        let flags = if if_unused { protocol::op::EXCHANGE_IF_UNUSED } else { 0 };
        self.first.simple(protocol::Cmd::ExchangeDelete { flags, exchange }).await.map(|_| ())
    }

    /// Binds `queue` to `exchange` (`args`: an AMQP field table, for
    /// headers exchanges `x-match` and the header values).
    pub async fn bind_queue(&self, queue: &str, exchange: &str, routing_key: &str, args: &[u8]) -> Result<()> {
        let cmd = protocol::Cmd::Bind { flags: 0, source: exchange, destination: queue, routing_key, args };
        self.conn_for(queue).await?.simple(cmd).await.map(|_| ())
    }

    pub async fn unbind_queue(&self, queue: &str, exchange: &str, routing_key: &str, args: &[u8]) -> Result<()> {
        let cmd = protocol::Cmd::Unbind { flags: 0, source: exchange, destination: queue, routing_key, args };
        self.conn_for(queue).await?.simple(cmd).await.map(|_| ())
    }

    /// Binds exchange `destination` to exchange `source`.
    pub async fn bind_exchange(&self, destination: &str, source: &str, routing_key: &str, args: &[u8]) -> Result<()> {
        let flags = protocol::op::BIND_TO_EXCHANGE;
        let cmd = protocol::Cmd::Bind { flags, source, destination, routing_key, args };
        self.first.simple(cmd).await.map(|_| ())
    }

    pub async fn unbind_exchange(&self, destination: &str, source: &str, routing_key: &str, args: &[u8]) -> Result<()> {
        let flags = protocol::op::BIND_TO_EXCHANGE;
        let cmd = protocol::Cmd::Unbind { flags, source, destination, routing_key, args };
        self.first.simple(cmd).await.map(|_| ())
    }

    pub async fn subscribe(&self, queue: &str, prefetch: u32) -> Result<Consumer> {
        self.subscribe_with(queue, ConsumerOptions::new(prefetch)).await
    }

    /// `subscribe` with options beyond the prefetch (a consumer priority).
    pub async fn subscribe_with(&self, queue: &str, options: ConsumerOptions) -> Result<Consumer> {
        let id = self.next_id();
        Consumer::subscribe(self.conn_for(queue).await?, queue, id, options).await
    }

    /// Direct reply-to (RabbitMQ's `amq.rabbitmq.reply-to`; docs/client.md):
    /// a consumer of the replies sent to the returned name, with no queue
    /// behind it. Requests carry the name as their `reply_to` property
    /// (`PropsBuilder::reply_to`); a replier publishes to it as to a queue
    /// (AMQP: the default exchange, the name as the routing key). Replies
    /// are never acked (their tags are only counted), and are lost if
    /// this client is gone. One per client.
    pub async fn reply_consumer(&self) -> Result<(String, Consumer)> {
        Consumer::reply_to(self.first.clone(), self.next_id()).await
    }

    /// Pulls one message; it stays unacked until acked through the
    /// returned delivery's consumer id (see [`Client::ack_get`]).
    pub async fn get(&self, queue: &str, no_ack: bool) -> Result<Option<Delivery>> {
        // One pull consumer per queue: the broker keeps its unacked gets.
        let known = self.pull_ids.borrow().get(queue).copied();
        let id = known.unwrap_or_else(|| self.next_id());
        let r = self.conn_for(queue).await?.get(queue, id, no_ack).await;
        if known.is_none() && r.is_ok() && !no_ack {
            self.pull_ids.borrow_mut().insert(queue.to_string(), id);
        }
        r
    }

    /// Acks a message obtained with [`Client::get`].
    pub async fn ack_get(&self, queue: &str, d: &Delivery) -> Result<()> {
        self.conn_for(queue).await?.ack_now(d.consumer_id, d.tag, None).await
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
        for c in self.all_conns() {
            c.shut();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let u = parse_broker_url("ringmqs://localhost:5681").unwrap();
        assert_eq!((u.host.as_str(), u.addr.port(), u.tls), ("localhost", 5681, true));
        let u = parse_broker_url("ringmq://127.0.0.1:5680/").unwrap();
        assert_eq!((u.host.as_str(), u.tls), ("127.0.0.1", false));
        // No scheme: plain; IPv6 without its brackets as the server name.
        let u = parse_broker_url("[::1]:5680").unwrap();
        assert_eq!((u.host.as_str(), u.tls), ("::1", false));
        assert_eq!(parse_url("ringmqs://[::1]:1").unwrap(), "[::1]:1".parse().unwrap());
        for bad in ["amqps://localhost:5671", "ringmqs://", "ringmqs://localhost", "ringmq://h:1/vhost", ":1"] {
            assert!(matches!(parse_broker_url(bad), Err(ClientError::BadUrl(_))), "{bad}");
        }
    }
}
