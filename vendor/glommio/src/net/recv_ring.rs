// ringmq patch: this file is ringmq's (RINGMQ-PATCHES.md, "Receives
// through the ring"), under glommio's licence.
//
//! A stream socket's receives submitted to the ring (IORING_OP_RECV), for a
//! reader that has just found its socket empty.
//!
//! `TcpStream`'s own read tries a `recv` first and, on EAGAIN, submits a
//! POLL_ADD and calls `recv` again once it completes: three syscalls' worth
//! of work (two `recv`s, the POLL_ADD's submission) for every arrival on an
//! idle socket. Here the receive itself is submitted, with
//! `IORING_RECVSEND_POLL_FIRST`, so the kernel waits for the socket and
//! copies the bytes into this receiver's buffer before the completion wakes
//! the executor: no `recv` syscall at all, and the submission rides on the
//! `io_uring_enter` the executor makes anyway to sleep.
//!
//! Cancel safety, both kinds: the receive in flight belongs to the
//! [`RecvRing`], not to the future polling it, so a dropped read future
//! loses no bytes (the next call returns them); and dropping the
//! `RecvRing` with a receive in flight cancels it while the reactor keeps
//! the buffer alive until the kernel's completion comes back, so the kernel
//! never writes into freed memory.

use crate::{
    reactor::Reactor,
    sys::{DmaBuffer, Source, SourceType},
};
use std::{
    io,
    os::unix::io::RawFd,
    rc::Weak,
    task::{Context, Poll},
};

/// Receives from one stream socket through the executor's ring. See the
/// module documentation.
#[derive(Debug)]
pub struct RecvRing {
    reactor: Weak<Reactor>,
    fd: RawFd,
    /// The receive in flight, or completed and not yet taken.
    source: Option<Source>,
    /// Bytes received and not yet handed out: the buffer, and the range of
    /// it still to hand out (a caller asked for fewer than arrived).
    rest: Option<(DmaBuffer, usize, usize)>,
    /// The last receive's buffer, reused by the next.
    spare: Option<DmaBuffer>,
    /// The size of the buffer (the spare, the rest's or the one in flight).
    buf_bytes: usize,
}

impl RecvRing {
    /// Receives from `fd` on the current executor (panics outside one).
    /// The caller keeps the socket open while this is in use, and reads it
    /// by no other way while [`RecvRing::holds`].
    pub fn new(fd: RawFd) -> Self {
        Self {
            reactor: std::rc::Rc::downgrade(&crate::executor().reactor()),
            fd,
            source: None,
            rest: None,
            spare: None,
            buf_bytes: 0,
        }
    }

    /// Whether a receive is in flight or received bytes wait here: while
    /// this holds, reading the socket by another way (a `recv`) would take
    /// bytes out of order.
    pub fn holds(&self) -> bool {
        self.source.is_some() || self.rest.is_some()
    }

    /// Memory this receiver holds: its buffer's size (in flight or kept),
    /// once it has made one.
    pub fn held_bytes(&self) -> usize {
        self.buf_bytes
    }

    /// Up to `max` bytes (`max` > 0) from the socket: those already
    /// received first, then the receive in flight's, else a new receive of
    /// up to `max` bytes is submitted (with the executor's next submission;
    /// `poll_first` when the caller knows the socket empty, so the kernel
    /// waits for it before trying). An empty slice: the peer closed. The
    /// slice is valid until the next call.
    pub fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
        max: usize,
        poll_first: bool,
    ) -> Poll<io::Result<&[u8]>> {
        assert!(max > 0, "a receive of no bytes reads as the peer's close");
        if self.rest.is_none() {
            match &self.source {
                Some(src) => match src.result() {
                    None => {
                        src.add_waiter_single(cx.waker());
                        return Poll::Pending;
                    }
                    Some(res) => {
                        let src = self.source.take().expect("matched above");
                        let buf = match src.extract_source_type() {
                            SourceType::SockRecv(b) => b,
                            _ => unreachable!("a receive's source"),
                        };
                        match res {
                            Err(e) => {
                                self.spare = buf;
                                return Poll::Ready(Err(e));
                            }
                            Ok(n) => {
                                let buf = buf.expect("a completed receive has its buffer");
                                self.rest = Some((buf, 0, n));
                            }
                        }
                    }
                },
                None => {
                    let reactor = match self.reactor.upgrade() {
                        Some(r) => r,
                        None => return Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
                    };
                    // The reactor reuses the spare if it is large enough.
                    let spare = self.spare.take();
                    self.buf_bytes = spare.as_ref().map_or(0, |b| b.len()).max(max);
                    let src = reactor.recv_ring(self.fd, max, spare, poll_first);
                    src.add_waiter_single(cx.waker());
                    self.source = Some(src);
                    return Poll::Pending;
                }
            }
        }
        let (_, from, to) = self.rest.as_mut().expect("set above");
        let at = *from;
        let k = (*to - at).min(max);
        *from += k;
        if *from == *to {
            // All handed out: the buffer serves the next receive.
            let (buf, _, _) = self.rest.take().expect("set above");
            let buf = self.spare.insert(buf);
            return Poll::Ready(Ok(&buf.as_bytes()[at..at + k]));
        }
        let (buf, _, _) = self.rest.as_ref().expect("set above");
        Poll::Ready(Ok(&buf.as_bytes()[at..at + k]))
    }
}
