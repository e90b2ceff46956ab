//! Sockets: bound on the main thread before the shards start (so a port 0
//! resolves once and every shard shares it), accepted on each shard by the
//! front ends' accept loops through [`accept_each`].

use super::shard::Shard;
use glommio::net::{TcpListener, TcpStream};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

/// A listening socket in transit from the main thread to its shard.
pub struct BoundSocket(RawFd);

impl BoundSocket {
    /// Binds with SO_REUSEPORT so every shard can share one address.
    pub fn bind(addr: SocketAddr) -> std::io::Result<(Self, SocketAddr)> {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
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
pub async fn accept_each<F, Fut>(shard: Rc<Shard>, listener: TcpListener, what: &'static str, serve: F)
where
    F: Fn(Rc<Shard>, TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + 'static,
{
    loop {
        match listener.accept().await {
            Ok(stream) => {
                set_keepalive(&shard.config, &stream);
                glommio::spawn_local(serve(shard.clone(), stream)).detach();
            }
            Err(e) => {
                tracing::warn!(shard = shard.id, listener = what, error = %e, "accept failed");
                // Out of fds or similar: back off instead of spinning.
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
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
