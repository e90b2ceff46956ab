//! The inter-node link (issue 17, step 2): Raft's RPCs between cluster
//! members over TCP, in the link codec ([`crate::protocol::link`]).
//!
//! | file | what |
//! |---|---|
//! | [`handshake`] | both sides of the handshake: hellos, HMAC proofs checked in constant time; the frame-at-a-time reader over [`crate::rt::reader::FrameReader`] |
//! | [`outgoing`] | openraft's `RaftNetworkFactory`/`RaftNetwork`: one connection per peer, dialled with bounded exponential backoff, a deadline per RPC, a bounded window of RPCs in flight (tests: `outgoing_tests.rs`, against a listener the test plays) |
//! | [`joiner`] | a node with no cluster yet: dials a member, learns the cluster id, asks to join |
//! | [`incoming`] | the listener: accepts, runs the handshake under a deadline and a small budget, then hands RPCs to the local `Raft` and writes the replies |
//! | `rpc` | the payloads: openraft's requests and responses in postcard |
//!
//! A member dials each peer it sends RPCs to and listens for the peers
//! that send it theirs, so two members share two connections, each
//! carrying requests one way and replies the other. `docs/cluster.md`,
//! "The link", has the handshake, the bounds and the backoff.
//!
//! Everything a peer sends is hostile until its proof checks out, and
//! bounded after: frames by `frame_bytes_max` (checked from the header),
//! whole frames and idle links by deadlines, RPCs in flight by a window on
//! each side. A peer that breaks the protocol gets a `Close` frame and a
//! log line, and loses its connection; nothing it sends panics the node.

pub mod handshake;
pub mod incoming;
pub mod joiner;
pub mod outgoing;
mod rpc;

use crate::protocol::link::{CloseCode, DecodeError, NODE_NAME_BYTES_MAX};
use crate::rt::reader::ReadError;
use std::sync::Arc;
use std::time::Duration;

pub use incoming::serve;
pub use outgoing::{Links, Network};

use super::NodeId;

/// The shortest cluster secret taken: the proofs are only as strong as it.
pub const SECRET_BYTES_MIN: usize = 16;

/// TLS on the link, both ways: the listener asks every peer for a
/// certificate its CA signed, and the dialler checks that the listener's
/// certificate is signed by it and names the host it dialled. Under TLS
/// the HMAC handshake runs as before: TLS keeps the bytes private and
/// whole, the secret proves membership.
///
/// Both sides are asked for their settings at each connection, so a
/// certificate reloaded (SIGHUP) serves the next handshake.
pub struct LinkTls {
    pub acceptor: Box<dyn Fn() -> futures_rustls::TlsAcceptor + Send + Sync>,
    pub connector: Box<dyn Fn() -> Result<std::sync::Arc<rustls::ClientConfig>, String> + Send + Sync>,
}

/// Who this member is on the link and what it holds its peers to.
#[derive(Clone)]
pub struct LinkConfig {
    pub cluster_id: [u8; 16],
    pub node_id: NodeId,
    node_name: String,
    /// Shared by every member: proves a peer belongs to the cluster.
    secret: Arc<[u8]>,
    pub limits: LinkLimits,
    /// `None`: the link is plain TCP.
    pub tls: Option<Arc<LinkTls>>,
}

// By hand: the secret stays out of logs.
impl std::fmt::Debug for LinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkConfig")
            .field("cluster_id", &self.cluster_id)
            .field("node_id", &self.node_id)
            .field("node_name", &self.node_name)
            .field("limits", &self.limits)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl LinkConfig {
    pub fn new(
        cluster_id: [u8; 16],
        node_id: NodeId,
        node_name: impl Into<String>,
        secret: &[u8],
    ) -> Result<Self, ConfigError> {
        let node_name = node_name.into();
        if node_name.is_empty() || node_name.len() > NODE_NAME_BYTES_MAX {
            return Err(ConfigError::NodeName(node_name.len()));
        }
        if secret.len() < SECRET_BYTES_MIN {
            return Err(ConfigError::ShortSecret(secret.len()));
        }
        Ok(Self { cluster_id, node_id, node_name, secret: secret.into(), limits: LinkLimits::default(), tls: None })
    }

    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    pub(crate) fn secret(&self) -> &[u8] {
        &self.secret
    }
}

/// The link's bounds and deadlines; the defaults suit a LAN.
#[derive(Debug, Clone, Copy)]
pub struct LinkLimits {
    /// The largest frame either side takes once authenticated. An append
    /// that would encode larger goes back to openraft as `PayloadTooLarge`
    /// (it splits the entries); a snapshot chunk is smaller (openraft's
    /// `snapshot_max_chunk_size`, 3 MiB by default).
    pub frame_bytes_max: usize,
    /// RPCs one connection has in flight: a dialler with this many
    /// unanswered refuses the next (an error to openraft, never a silent
    /// drop); a listener stops reading until one is answered.
    pub rpcs_in_flight_max: usize,
    /// Bytes queued for one connection's socket before a dialler refuses
    /// another request (the peer is not reading).
    pub outbox_bytes_max: usize,
    /// From accept (or connect) to both proofs checked.
    pub handshake_timeout: Duration,
    pub connect_timeout: Duration,
    /// Redial delays: doubling from `backoff_min` to `backoff_max`, reset
    /// by a successful handshake.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// A dialler with nothing to say sends `Ping` this often...
    pub ping_interval: Duration,
    /// ...and either side drops a link it has heard nothing on for this long.
    pub idle_timeout: Duration,
    /// A frame whose first byte arrived must be whole within this.
    pub frame_timeout: Duration,
    /// A write that moves no bytes for this long breaks the link.
    pub send_timeout: Duration,
    /// Connections accepted and not yet authenticated, per listener: past
    /// it, a new one is closed at once.
    pub handshakes_max: usize,
}

impl Default for LinkLimits {
    fn default() -> Self {
        Self {
            // Above the Raft log's entry limit (4 MiB) with room for a
            // batch of them and for snapshot chunks.
            frame_bytes_max: 64 << 20,
            rpcs_in_flight_max: 64,
            outbox_bytes_max: 128 << 20,
            handshake_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            ping_interval: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(10),
            frame_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(10),
            handshakes_max: 64,
        }
    }
}

/// A configuration the link cannot run with.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("a node name is 1 to {NODE_NAME_BYTES_MAX} bytes of UTF-8 (this one is {0})")]
    NodeName(usize),
    #[error("the cluster secret is {0} bytes: at least {SECRET_BYTES_MIN} are needed")]
    ShortSecret(usize),
}

/// Why a link, or one RPC on it, failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Read(ReadError<DecodeError>),
    /// The peer sent `Close`.
    #[error("peer closed the link with code {code} ({name}): {reason}", name = close_name(*code))]
    Closed { code: u16, reason: String },
    /// This side refused the peer (and told it so with `Close`).
    #[error("refused ({code:?}): {why}")]
    Refused { code: CloseCode, why: String },
    #[error("the handshake did not finish within {0:?}")]
    HandshakeTimeout(Duration),
    #[error("{0} unanswered RPCs: the window is full")]
    WindowFull(usize),
    #[error("{0} bytes queued and not written: the peer is not reading")]
    Backlog(usize),
    #[error("not connected: {0}")]
    NotConnected(String),
    #[error("the link broke before the reply came")]
    Lost,
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("a frame of {len} bytes is over the link's limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("address {addr}: {why}")]
    Address { addr: String, why: String },
    #[error("encoding an RPC: {0}")]
    Encode(postcard::Error),
    #[error("a {what} that does not decode: {source}")]
    Payload { what: &'static str, source: postcard::Error },
    #[error("the link is shut down")]
    Shutdown,
    #[error("TLS: {0}")]
    Tls(String),
}

impl LinkError {
    /// A refusal to send the peer as `Close`, and to log.
    pub(crate) fn refuse(code: CloseCode, why: impl Into<String>) -> Self {
        LinkError::Refused { code, why: why.into() }
    }

    /// The `Close` this error sends the peer, if it is the peer's fault
    /// and the link can still carry one.
    pub(crate) fn close_code(&self) -> Option<CloseCode> {
        match self {
            LinkError::Refused { code, .. } => Some(*code),
            LinkError::Read(ReadError::Decode(e)) => Some(e.close_code()),
            LinkError::Read(ReadError::Timeout { .. }) => Some(CloseCode::IdleTimeout),
            LinkError::HandshakeTimeout(_) => Some(CloseCode::HandshakeTimeout),
            LinkError::Payload { .. } => Some(CloseCode::BadFrame),
            LinkError::Shutdown => Some(CloseCode::Shutdown),
            _ => None,
        }
    }
}

/// Ends a link's connection: the `Close` that `why` calls for (if any),
/// then the writer flushes what is queued and shuts the socket; a peer
/// that does not read is not waited for long.
pub(crate) async fn close_and_flush(outbox: &crate::rt::Outbox, writer: glommio::Task<()>, why: &LinkError) {
    if let Some(code) = why.close_code() {
        let reason = why.to_string();
        outbox.push(|b| crate::protocol::link::Frame::Close { code: code.as_u16(), reason: &reason }.encode(b));
    }
    outbox.close();
    let _ = glommio::timer::timeout(Duration::from_secs(1), async {
        writer.await;
        Ok(())
    })
    .await;
}

fn close_name(code: u16) -> String {
    CloseCode::from_u16(code).map_or_else(|| "unknown".into(), |c| format!("{c:?}"))
}

impl From<ReadError<DecodeError>> for LinkError {
    fn from(e: ReadError<DecodeError>) -> Self {
        LinkError::Read(e)
    }
}
