//! Sockets: bound on the main thread before the shards start (so a port 0
//! resolves once and every shard shares it), accepted on each shard by the
//! front ends' accept loops through [`accept_each`].

use super::shard::Shard;
use super::tls::{HandshakeError, ListenerTls};
use crate::rt::Transport;
use glommio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// A listening socket in transit from the main thread to its shard.
pub struct BoundSocket(RawFd);

impl BoundSocket {
    /// Binds with SO_REUSEPORT so every shard can share one address.
    pub fn bind(addr: SocketAddr) -> std::io::Result<(Self, SocketAddr)> {
        Self::bind_with(addr, true)
    }

    /// Binds the first socket of an address: without SO_REUSEPORT at bind
    /// time, so an address another process holds (another broker, even
    /// one that set SO_REUSEPORT too) is refused with `AddrInUse` instead
    /// of silently shared; SO_REUSEPORT is set before `listen`, so this
    /// broker's other shards can still join it.
    pub fn bind_first(addr: SocketAddr) -> std::io::Result<(Self, SocketAddr)> {
        Self::bind_with(addr, false)
    }

    fn bind_with(addr: SocketAddr, join: bool) -> std::io::Result<(Self, SocketAddr)> {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(join)?;
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        if !join {
            s.set_reuse_port(true)?;
        }
        s.listen(1024)?;
        let local = s.local_addr()?.as_socket().ok_or_else(|| std::io::Error::other("not an inet socket"))?;
        Ok((Self(s.into_raw_fd()), local))
    }

    /// Becomes a glommio listener on the shard that calls this.
    pub fn into_listener(self) -> TcpListener {
        let fd = self.0;
        std::mem::forget(self);
        // SAFETY: the fd came from `into_raw_fd` above and is owned only here.
        unsafe { TcpListener::from_raw_fd(fd) }
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        // SAFETY: still owned (not handed to a listener).
        drop(unsafe { Socket::from_raw_fd(self.0) });
    }
}

/// Accepts until the task is dropped at shutdown, serving each connection
/// in a task of its own; `what` names the listener in the log.
pub async fn accept_each<F, Fut>(
    shard: Rc<Shard>,
    listener: TcpListener,
    tls: Option<Arc<ListenerTls>>,
    what: &'static str,
    serve: F,
) where
    F: Fn(Rc<Shard>, Accepted) -> Fut,
    Fut: std::future::Future<Output = ()> + 'static,
{
    loop {
        match listener.accept().await {
            Ok(stream) => {
                set_keepalive(&shard.config, &stream);
                let peer = stream.peer_addr().ok();
                let _ = stream.set_nodelay(true);
                let accepted = Accepted { stream, peer, tls: tls.clone() };
                glommio::spawn_local(serve(shard.clone(), accepted)).detach();
            }
            Err(e) => {
                tracing::warn!(shard = shard.id, listener = what, error = %e, "accept failed");
                // Out of fds or similar: back off instead of spinning.
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// A socket just accepted, before its TLS handshake (when its listener
/// has TLS). The front end counts it under `unauthenticated_connections_max`
/// first, then calls [`Accepted::secure`], so handshakes in progress are
/// bounded like every other connection not logged in.
pub struct Accepted {
    stream: TcpStream,
    pub peer: Option<SocketAddr>,
    tls: Option<Arc<ListenerTls>>,
}

impl Accepted {
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The connection's byte stream: the socket itself, or TLS over it once
    /// the handshake is done. The handshake must finish within `timeout`
    /// (`handshake_timeout_ms`); a failed one is logged at debug (scanners
    /// and health checks fail handshakes all day) and counted.
    pub async fn secure(self, shard: &Shard, timeout: Duration) -> Result<Transport, HandshakeError> {
        let Some(tls) = self.tls else { return Ok(Transport::Plain(self.stream)) };
        let handshake = async { Ok(tls.acceptor().accept(self.stream).await) };
        let why = match glommio::timer::timeout(timeout, handshake).await {
            Ok(Ok(s)) => return Ok(Transport::ServerTls(Box::new(s))),
            Ok(Err(e)) => HandshakeError::Failed(e),
            Err(_) => HandshakeError::Timeout(timeout.as_millis()),
        };
        super::shard::bump(&shard.counters.tls_handshake_failures, 1);
        tracing::debug!(listener = tls.name, peer = ?self.peer, "{why}");
        Err(why)
    }
}

/// TCP keepalive (`tcp_keepalive_*`), so the kernel finds peers that
/// vanished without a FIN even when no heartbeat was negotiated.
pub fn set_keepalive(c: &super::config::Config, stream: &TcpStream) {
    if c.tcp_keepalive_idle_ms == 0 {
        return;
    }
    let ka = socket2::TcpKeepalive::new()
        .with_time(Duration::from_millis(c.tcp_keepalive_idle_ms))
        .with_interval(Duration::from_millis(c.tcp_keepalive_interval_ms))
        .with_retries(c.tcp_keepalive_probes);
    // SAFETY: the fd belongs to `stream`, which outlives this borrow.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    if let Err(e) = socket2::SockRef::from(&fd).set_tcp_keepalive(&ka) {
        tracing::debug!(error = %e, "cannot set TCP keepalive");
    }
}

/// Binds `addr` once per shard (SO_REUSEPORT); a port 0 resolves on the
/// first bind and the rest share it.
pub fn bind_shared(addr: SocketAddr, n: usize) -> Result<(Vec<BoundSocket>, SocketAddr), super::StartError> {
    let (first, local) = bind_first(addr)?;
    let mut all = vec![first];
    for _ in 1..n {
        all.push(bind(local)?.0);
    }
    Ok((all, local))
}

/// Each shard's own port beside a shared one: `requested` + 1 + i, or an
/// ephemeral port each when `requested` is 0.
pub fn bind_own(
    shared: SocketAddr,
    requested: u16,
    n: usize,
) -> Result<(Vec<BoundSocket>, Vec<SocketAddr>), super::StartError> {
    let mut socks = Vec::with_capacity(n);
    let mut addrs = Vec::with_capacity(n);
    for i in 0..n {
        let mut a = shared;
        let port =
            if requested == 0 { Some(0) } else { u16::try_from(i + 1).ok().and_then(|d| requested.checked_add(d)) };
        let Some(port) = port else {
            let source = std::io::Error::other("the shard ports pass 65535");
            return Err(super::StartError::Bind { addr: shared, source });
        };
        a.set_port(port);
        let (s, addr) = bind_first(a)?;
        socks.push(s);
        addrs.push(addr);
    }
    Ok((socks, addrs))
}

fn bind(addr: SocketAddr) -> Result<(BoundSocket, SocketAddr), super::StartError> {
    BoundSocket::bind(addr).map_err(|source| super::StartError::Bind { addr, source })
}

/// How long a start waits for an address in use to come free. A broker
/// killed with `kill -9` holds its listening sockets until the kernel has
/// torn its io_uring rings down, which can outlast its exit by a moment
/// when requests were in flight: a restart right after must not fail on
/// that. A port another live process holds is still refused, this much
/// later.
const BIND_RETRY: std::time::Duration = std::time::Duration::from_secs(3);

/// The first (or only) socket of an address: refused if another process
/// holds it (`BoundSocket::bind_first`) for longer than [`BIND_RETRY`].
fn bind_first(addr: SocketAddr) -> Result<(BoundSocket, SocketAddr), super::StartError> {
    let deadline = std::time::Instant::now() + BIND_RETRY;
    let mut logged = false;
    loop {
        match BoundSocket::bind_first(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && std::time::Instant::now() < deadline => {
                if !logged {
                    tracing::warn!(%addr, "address in use; retrying for {BIND_RETRY:?} (a stopped broker's sockets may still be closing)");
                    logged = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => return r.map_err(|source| super::StartError::Bind { addr, source }),
        }
    }
}

/// The native protocol's listeners on one address family: the shared
/// port, and each shard's own.
pub struct NativeListeners {
    pub shared: Vec<BoundSocket>,
    pub own: Vec<BoundSocket>,
    pub addr: SocketAddr,
    pub shard_addrs: Vec<SocketAddr>,
}

impl NativeListeners {
    pub fn bind(addr: SocketAddr, n: usize) -> Result<Self, super::StartError> {
        let (shared, local) = bind_shared(addr, n)?;
        let (own, shard_addrs) = bind_own(local, addr.port(), n)?;
        Ok(Self { shared, own, addr: local, shard_addrs })
    }
}

/// A shard's sockets, in transit to it.
pub struct ShardSockets {
    pub native: [BoundSocket; 2],
    pub native_tls: Option<[BoundSocket; 2]>,
    pub amqp: BoundSocket,
    pub amqps: Option<BoundSocket>,
    /// Metrics and management: shard 0 only.
    pub http: Option<BoundSocket>,
    pub https: Option<BoundSocket>,
}

/// Every listener the config asks for, bound before the shards start.
pub struct Bound {
    pub native: NativeListeners,
    pub native_tls: Option<NativeListeners>,
    pub amqp: (Vec<BoundSocket>, SocketAddr),
    pub amqps: Option<(Vec<BoundSocket>, SocketAddr)>,
    pub http: (BoundSocket, SocketAddr),
    pub https: Option<(BoundSocket, SocketAddr)>,
}

impl Bound {
    pub fn bind(c: &super::config::Config, n: usize) -> Result<Self, super::StartError> {
        Ok(Self {
            native: NativeListeners::bind(c.listen, n)?,
            native_tls: c.tls_listen.map(|a| NativeListeners::bind(a, n)).transpose()?,
            amqp: bind_shared(c.amqp_listen, n)?,
            amqps: c.amqps_listen.map(|a| bind_shared(a, n)).transpose()?,
            http: bind_first(c.metrics_listen)?,
            https: c.https_listen.map(bind_first).transpose()?,
        })
    }

    /// Hands each shard its sockets, in shard order.
    pub fn per_shard(self) -> Vec<ShardSockets> {
        let mut native = self.native.shared.into_iter().zip(self.native.own);
        let mut tls = self.native_tls.map(|t| t.shared.into_iter().zip(t.own));
        let mut amqp = self.amqp.0.into_iter();
        let mut amqps = self.amqps.map(|a| a.0.into_iter());
        let (mut http, mut https) = (Some(self.http.0), self.https.map(|h| h.0));
        let mut out = Vec::new();
        while let (Some((s, o)), Some(a)) = (native.next(), amqp.next()) {
            out.push(ShardSockets {
                native: [s, o],
                native_tls: tls.as_mut().and_then(Iterator::next).map(|(s, o)| [s, o]),
                amqp: a,
                amqps: amqps.as_mut().and_then(Iterator::next),
                http: http.take(),
                https: https.take(),
            });
        }
        out
    }
}
