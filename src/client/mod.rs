//! The ringmq client: shard-aware, batch-first (guide: `docs/client.md`).
//!
//! - `Client` (cargo feature `glommio`): async on glommio. One connection
//!   per shard it uses; each queue's traffic goes straight to its owner
//!   ([`crate::protocol::shard_for`]). Not `Send`: one per executor.
//! - `tokio::Client` (cargo feature `tokio`): the same API on tokio, every
//!   handle `Send + Sync`.
//! - `Producer`: batches messages (`batch_max`, `linger`); `send`
//!   resolves when the broker confirms.
//! - `Consumer`: a `Stream` of deliveries under prefetch, with
//!   `ack`/`nack` sent as ranges.
//! - [`blocking`]: the same over std sockets, for programs without a
//!   runtime (feature `client` alone: no io_uring, no async runtime).
//!
//! Both async clients are I/O shells over one runtime-free [`core`]: the
//! handshake, request bookkeeping, frame dispatch, ack ranges, batches,
//! cluster routes and recovery's decisions (backoff, the record of what to
//! declare again, events) are written once; a shell adds sockets, tasks
//! and timers. With [`ClientOptions::recovery`] the async clients redial,
//! declare again, resubscribe and republish on their own
//! (`Client::events()` tells what happened).
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

#[cfg(feature = "glommio")]
mod async_client;
mod beats;
pub mod blocking;
#[cfg(feature = "glommio")]
pub mod cluster;
#[cfg(feature = "glommio")]
mod conn;
#[cfg(feature = "glommio")]
mod consumer;
pub mod core;
mod dial;
#[cfg(feature = "glommio")]
mod handshake;
#[cfg(feature = "glommio")]
mod producer;
#[cfg(feature = "glommio")]
mod recover;
mod streams;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "tokio")]
pub mod tokio;
pub mod url;

#[cfg(feature = "glommio")]
pub use async_client::Client;
#[cfg(feature = "glommio")]
pub use conn::Conn;
#[cfg(feature = "glommio")]
pub use consumer::Consumer;
pub use core::batch::{ProducerOptions, Target};
pub use core::delivery::{ConsumerOptions, Delivery};
pub use core::incoming::Response;
pub use core::recovery::{Event, Recovery, Unconfirmed};
#[cfg(feature = "glommio")]
pub use producer::{Confirmation, Producer};
#[cfg(feature = "glommio")]
pub use recover::Events;
pub use url::{parse_broker_url, parse_url, BrokerUrl};

use crate::protocol::{self, ErrorCode};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Flags and arguments of an exchange declare.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExchangeOptions<'a> {
    /// Survives a broker restart.
    pub durable: bool,
    /// Deleted when its last binding goes.
    pub auto_delete: bool,
    /// Not published to by clients, only by other exchanges.
    pub internal: bool,
    /// An AMQP field table without its length prefix; empty for none.
    pub args: &'a [u8],
}

/// The client's one error type (every shell's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The URL (its password masked) and what is wrong with it.
    #[error("bad url {0}; expected ringmq[s]://[USER[:PASSWORD]@]HOST:PORT[/VHOST][?OPTION=VALUE&...]")]
    BadUrl(String),
    /// A socket failed (connect refused or timed out, reset).
    #[error("i/o error: {0}")]
    Io(String),
    /// The TLS layer failed: a certificate not trusted or refused, a
    /// handshake that did not finish, a file that holds no certificate.
    #[error("TLS: {0}")]
    Tls(String),
    /// The broker refused a request: `code` is a stable
    /// [`ErrorCode`] ([`ClientError::code`]). Unless the broker said it
    /// was fatal, the connection goes on.
    #[error("broker error {code}: {message}")]
    Server {
        /// The stable error code (`ErrorCode`'s number).
        code: u16,
        /// The broker's text.
        message: String,
    },
    /// The connection ended (the broker closed it, heartbeats stopped,
    /// this client closed it): every pending request and consumer of it
    /// hears this.
    #[error("connection closed: {0}")]
    Closed(String),
    /// The broker sent bytes this client cannot take; the connection is
    /// closed.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Refused before anything was sent (a message over the broker's
    /// limit, a name over 255 bytes, options that contradict each other).
    #[error("{0}")]
    Invalid(String),
    /// Recovery's record is full (`Recovery::records_max`): the declare
    /// or subscribe was refused before it was sent.
    #[error("recovery records at most {max} {what}; refused one more")]
    RecoveryLimit {
        /// What is full: `queues`, `exchanges`, `bindings` or `consumers`.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// An ack of a message pulled with `get` on a socket that has since
    /// ended (recovery redialled): refused before it is sent, since the
    /// tag could name another message on the new socket. The broker
    /// requeued the message when the old socket ended; it comes again,
    /// flagged `redelivered` (docs/client-recovery.md, "Pull consumers across a
    /// reconnect").
    #[error("delivery tag {tag} of pull consumer {consumer_id} is from a connection that ended; the broker requeued its message")]
    StaleDelivery {
        /// The pull consumer.
        consumer_id: u32,
        /// The stale tag.
        tag: u64,
    },
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

/// A result with a [`ClientError`].
pub type Result<T> = std::result::Result<T, ClientError>;

/// How a client connects (every client takes the same options).
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `ringmq[s]://[USER[:PASSWORD]@]HOST:PORT[/VHOST][?OPTION=VALUE&...]`
    /// ([`url`]): what it says wins over the fields below.
    pub url: String,
    /// The user to log in as (the URL's wins).
    pub user: String,
    /// Its password (the URL's wins).
    pub password: String,
    /// Send each queue's traffic to the shard that owns it. Off: everything
    /// goes over the first connection and the broker forwards it.
    pub shard_aware: bool,
    /// With `shard_aware`, on a clustered broker: send each queue's
    /// traffic to the owning node's owning shard (`cluster.rs`). Off: the
    /// node connected to forwards what is not its own.
    pub cluster_aware: bool,
    /// For each connect, TLS handshake and the native handshake.
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
    /// The client certificate's private key (PEM).
    pub tls_key_file: Option<PathBuf>,
    /// The vhost to work in; its queues are other vhosts' only by name.
    pub vhost: String,
    /// Automatic recovery in the async clients (redial, declare again,
    /// resubscribe, republish; docs/client-recovery.md, "Recovery"). `None`, the
    /// default: a connection that ends stays ended. The blocking client
    /// ignores it.
    pub recovery: Option<Recovery>,
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
            recovery: None,
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

/// What the handshake told us.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// The shard that answered.
    pub shard_id: u16,
    /// The broker's limits: a frame, a message, a consumer's prefetch.
    pub frame_bytes_max: u32,
    /// The largest message body it takes.
    pub message_bytes_max: u32,
    /// The largest prefetch a consumer may ask for.
    pub prefetch_max: u32,
    /// Every shard's address on the listener reached (plain or TLS).
    pub shard_addrs: Vec<SocketAddr>,
    /// The negotiated heartbeat (0 = none).
    pub heartbeat_ms: u32,
    /// The vhost the connection works in: queue names hash with it.
    pub vhost: String,
}

impl ServerInfo {
    /// The broker's shards (on this node).
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
