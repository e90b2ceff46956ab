//! One HTTP connection: hyper's HTTP/1 server over a glommio socket, with
//! the limits hyper leaves to its runtime. hyper's own header-read timeout
//! needs a `Send` timer, which glommio's are not, so a watchdog task here
//! closes a connection that
//!
//! - sends a request head that does not arrive whole within
//!   `http_request_timeout_ms` of its first byte (a stalled or trickled
//!   request), or
//! - moves no byte either way for `http_idle_timeout_ms` while no request
//!   is being handled (an idle keep-alive connection, a client that stopped
//!   reading its response).
//!
//! Request heads are limited to [`HEADER_BYTES_MAX`] (431 past it) and
//! [`HEADERS_MAX`] headers; a request body is read only by an endpoint that
//! takes one, bounded in bytes and time (`users::read_body`); any other
//! body is left unread: hyper answers, reads at most what is buffered, and
//! closes.

use crate::rt::Notify;
use crate::rt::Transport;
use crate::server::listener::Accepted;
use crate::server::shard::Shard;
use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncWrite};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use std::cell::Cell;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Bytes of a request head (request line and headers).
pub const HEADER_BYTES_MAX: usize = 16 * 1024;
/// Headers in one request.
pub const HEADERS_MAX: usize = 64;

/// What the watchdog looks at, updated by the socket and the service.
struct Activity {
    /// The last time a byte was read or written.
    last: Cell<Instant>,
    /// When the first byte of a request head not yet handed to the service
    /// arrived.
    head_since: Cell<Option<Instant>>,
    /// Requests being handled (the broker is working, not the client).
    handling: Cell<u32>,
    /// Wakes the watchdog when a request head starts, so its deadline
    /// counts from that byte even while the watchdog sleeps on the idle one.
    head_started: Notify,
}

impl Activity {
    fn moved(&self, read: bool) {
        let now = Instant::now();
        self.last.set(now);
        if read && self.head_since.get().is_none() {
            self.head_since.set(Some(now));
            self.head_started.notify();
        }
    }
}

/// Marks a request as being handled until dropped.
struct Handling(Rc<Activity>);

impl Handling {
    fn start(a: &Rc<Activity>) -> Self {
        a.head_since.set(None);
        a.handling.set(a.handling.get() + 1);
        Self(a.clone())
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        let a = &self.0;
        let now = Instant::now();
        a.handling.set(a.handling.get().saturating_sub(1));
        a.last.set(now);
        // Bytes of a pipelined request read meanwhile: its clock starts now.
        if a.head_since.get().is_some() {
            a.head_since.set(Some(now));
        }
    }
}

/// hyper's I/O traits over a glommio socket (hyper needs no runtime for an
/// HTTP/1 server connection: no executor, and no timer since none of its
/// timeouts is configured).
struct Io {
    stream: Transport,
    activity: Rc<Activity>,
}

impl hyper::rt::Read for Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        // Read into initialised memory, then copy: no unsafe, and these
        // are small requests.
        let mut tmp = [0u8; 4096];
        let want = tmp.len().min(buf.remaining());
        match Pin::new(&mut self.stream).poll_read(cx, &mut tmp[..want]) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.activity.moved(true);
                }
                buf.put_slice(&tmp[..n]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl hyper::rt::Write for Io {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 {
                self.activity.moved(false);
            }
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_close(cx)
    }
}

/// A response body made of ready chunks, one frame each: a large answer
/// (per-queue metrics, every queue as JSON) is built in slices with the
/// shard's sockets served between them, and sent without being copied
/// into one buffer.
pub struct Body {
    parts: VecDeque<Bytes>,
    remaining: u64,
}

impl Body {
    pub fn new(parts: Vec<Bytes>) -> Self {
        let remaining = parts.iter().map(|p| p.len() as u64).sum();
        Self { parts: parts.into_iter().filter(|p| !p.is_empty()).collect(), remaining }
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Self::new(vec![Bytes::from(s)])
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let next = self.parts.pop_front();
        if let Some(p) = &next {
            self.remaining -= p.len() as u64;
        }
        Poll::Ready(next.map(|p| Ok(Frame::data(p))))
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Serves one connection until the client closes it, it breaks, or the
/// watchdog gives up on it.
pub async fn serve(shard: Rc<Shard>, accepted: Accepted) {
    // HTTP requests authenticate one by one: the connection counts as
    // unauthenticated for its whole life.
    let Some(slot) = shard.conns.http_open() else {
        shard.conns.log_unauthenticated_refusal("http");
        return;
    };
    let peer = accepted.peer;
    let timeout = Duration::from_millis(shard.config.handshake_timeout_ms);
    let secured = futures_lite::future::or(accepted.secure(&shard, timeout), async {
        slot.evicted().await;
        Err(crate::server::tls::HandshakeError::Evicted)
    });
    let Ok(stream) = secured.await else { return };
    let idle = Duration::from_millis(shard.config.http_idle_timeout_ms);
    let request = Duration::from_millis(shard.config.http_request_timeout_ms);
    let activity = Rc::new(Activity {
        last: Cell::new(Instant::now()),
        head_since: Cell::new(None),
        handling: Cell::new(0),
        head_started: Notify::default(),
    });
    let a = activity.clone();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shard = shard.clone();
        let handling = Handling::start(&a);
        async move {
            let r: Response<Body> = super::handle(&shard, req, peer).await;
            drop(handling);
            Ok::<_, Infallible>(r)
        }
    });
    let io = Io { stream, activity: activity.clone() };
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .max_header_size(HEADER_BYTES_MAX)
        .max_headers(HEADERS_MAX)
        .serve_connection(io, svc);
    let served = async {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "HTTP connection ended");
        }
    };
    let watchdog = async {
        let why = watch(&activity, idle, request).await;
        if why.starts_with("request head") {
            // A stalled or trickled request: worth an operator's look.
            tracing::warn!("closing HTTP connection: {why}");
        } else {
            tracing::debug!("HTTP connection closed: {why}");
        }
    };
    let evicted = async {
        slot.evicted().await;
        tracing::debug!("HTTP connection evicted at unauthenticated_connections_max");
    };
    futures_lite::future::or(futures_lite::future::or(served, watchdog), evicted).await;
}

/// Returns (why) once the connection has overstayed one of its timeouts.
async fn watch(a: &Activity, idle: Duration, request: Duration) -> &'static str {
    loop {
        let started = a.head_started.notified();
        let now = Instant::now();
        let wait = if a.handling.get() > 0 {
            idle.min(request)
        } else {
            let idle_end = a.last.get() + idle;
            let head_end = a.head_since.get().map(|t| t + request);
            match head_end {
                Some(end) if now >= end => return "request head not complete within http_request_timeout_ms",
                _ if now >= idle_end => return "idle for http_idle_timeout_ms",
                Some(end) => end.min(idle_end) - now,
                None => idle_end - now,
            }
        };
        futures_lite::future::or(glommio::timer::sleep(wait), started).await;
    }
}
