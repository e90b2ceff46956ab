//! The reads themselves, for [`FrameReader`]: through the stream
//! (`AsyncRead`), or on a plain socket (`read_directly`) a non-blocking
//! `recv` straight into the buffer while bytes are waiting and a receive in
//! the executor's ring ([`RecvRing`]) once the socket is found empty.

use super::{FrameReader, Framing, ReadError, HANDSHAKE_READ_BYTES};
use futures_lite::{AsyncRead, AsyncReadExt};
use glommio::net::RecvRing;
use std::time::Instant;

/// The most one receive through the ring asks for. It waits on an idle
/// socket with its buffer pinned, so an idle connection holds this much
/// more; a receive that fills it is followed by direct `recv`s of the full
/// read size, so a busy peer's reads stay large.
pub const RING_RECV_BYTES: usize = HANDSHAKE_READ_BYTES;

impl<F: Framing> FrameReader<F> {
    pub(super) async fn read_some<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        want: usize,
        deadline: Option<Instant>,
    ) -> Result<usize, ReadError<F::Error>> {
        let start = self.buf.len();
        if let Some(d) = deadline {
            if Instant::now() >= d {
                return Err(ReadError::Timeout { buffered: start });
            }
        }
        if let Some(fd) = self.fd {
            // A `recv` only while the ring holds nothing (bytes would come
            // out of order) and the socket was not found empty last time.
            if !self.drained && !self.ring.as_ref().is_some_and(RecvRing::holds) {
                match self.recv_now(fd, want) {
                    Ok(Some(n)) => {
                        self.waited = false;
                        self.count_read(n, start);
                        return Ok(n);
                    }
                    Ok(None) => {}
                    Err(e) => return Err(ReadError::Io(e)),
                }
            }
            return self.recv_ring(fd, want, deadline).await;
        }
        self.extend_for_read(want);
        let dst = &mut self.buf[start..];
        let (res, waited) = match deadline {
            None => noting_pending(r.read(dst)).await,
            Some(d) => {
                let t = d.saturating_duration_since(Instant::now());
                match noting_pending(glommio::timer::timeout(t, async { Ok(r.read(dst).await) })).await {
                    (Ok(res), waited) => (res, waited),
                    (Err(_), _) => {
                        self.waited = true;
                        self.truncate_read(start, want, 0);
                        return Err(ReadError::Timeout { buffered: start });
                    }
                }
            }
        };
        self.waited = waited;
        match res {
            Ok(n) => {
                self.truncate_read(start, want, n);
                self.count_read(n, start);
                Ok(n)
            }
            Err(e) => {
                self.truncate_read(start, want, 0);
                Err(ReadError::Io(e))
            }
        }
    }

    /// A read of up to `want` bytes through the ring: what it already
    /// holds, or a receive that waits for the socket (POLL_FIRST: the
    /// caller found it empty, or the last receive drained it). Copied from
    /// the ring's buffer after the end of `buf` (at most
    /// [`RING_RECV_BYTES`], so a small copy: a larger arrival is read on
    /// with `recv`s straight into `buf`). On a deadline the receive stays
    /// in the ring for the next read.
    async fn recv_ring(
        &mut self,
        fd: std::os::fd::RawFd,
        want: usize,
        deadline: Option<Instant>,
    ) -> Result<usize, ReadError<F::Error>> {
        let start = self.buf.len();
        let max = want.min(RING_RECV_BYTES);
        let at = self.buf.as_ptr();
        self.buf.reserve(max);
        if self.buf.as_ptr() != at {
            self.spare_init = 0;
        }
        let ring = self.ring.get_or_insert_with(|| RecvRing::new(fd));
        let buf = &mut self.buf;
        let recv = std::future::poll_fn(|cx| {
            ring.poll_recv(cx, max, true).map_ok(|got| {
                buf.extend_from_slice(got);
                got.len()
            })
        });
        let (res, waited) = match deadline {
            None => noting_pending(recv).await,
            Some(d) => {
                let t = d.saturating_duration_since(Instant::now());
                match noting_pending(glommio::timer::timeout(t, async { Ok(recv.await) })).await {
                    (Ok(res), waited) => (res, waited),
                    (Err(_), _) => {
                        self.waited = true;
                        return Err(ReadError::Timeout { buffered: start });
                    }
                }
            }
        };
        self.waited = waited;
        let n = res.map_err(ReadError::Io)?;
        // `extend_from_slice` wrote after the old end, within the reserve.
        self.spare_init = self.spare_init.saturating_sub(n);
        self.drained = n < max;
        self.count_read(n, start);
        Ok(n)
    }

    /// A read of `n` bytes after `start` buffered ones: the traffic and
    /// the clock.
    fn count_read(&mut self, n: usize, start: usize) {
        if n > 0 {
            self.read_totals = (self.read_totals.0 + n as u64, self.read_totals.1 + 1);
            let now = Instant::now();
            self.clock.last_byte = now;
            if start == 0 {
                self.clock.frame_started = Some(now);
            }
        }
    }

    /// One non-blocking `recv` of up to `want` bytes into the buffer's
    /// capacity after its end, unwritten or not: `None` when the socket
    /// has nothing yet.
    fn recv_now(&mut self, fd: std::os::fd::RawFd, want: usize) -> std::io::Result<Option<usize>> {
        let at = self.buf.as_ptr();
        self.buf.reserve(want);
        if self.buf.as_ptr() != at {
            self.spare_init = 0;
        }
        let len = self.buf.len();
        let spare = &mut self.buf.spare_capacity_mut()[..want];
        // SAFETY: `fd` is the socket of the stream the caller reads through
        // (`read_directly`'s contract), open while this borrow lasts.
        let sock = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        // MSG_DONTWAIT (Linux): the shard's thread never blocks here.
        match socket2::SockRef::from(&sock).recv_with_flags(spare, 0x40) {
            Ok(n) => {
                // SAFETY: the kernel wrote the first `n` bytes after `len`,
                // within the capacity reserved above.
                unsafe { self.buf.set_len(len + n) };
                self.spare_init = self.spare_init.saturating_sub(n);
                Ok(Some(n))
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::Interrupted => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Makes the buffer `want` bytes longer for a read into them, zeroing
    /// only what no earlier read or fill wrote (`spare_init`).
    fn extend_for_read(&mut self, want: usize) {
        let at = self.buf.as_ptr();
        self.buf.reserve(want);
        if self.buf.as_ptr() != at {
            // Moved within its allocation or to a new one: what follows
            // the end may never have been written.
            self.spare_init = 0;
        }
        let len = self.buf.len();
        let reuse = self.spare_init.min(want);
        debug_assert!(self.buf.capacity() - len >= want, "reserved above");
        // SAFETY: `reuse` bytes after `len` lie within the capacity (they
        // were reserved above) and were written by an earlier zero-fill or
        // read since the buffer last moved (`spare_init` is reset whenever
        // `as_ptr` changes and counts only bytes past the end); `BytesMut`
        // never un-writes memory it keeps, and `advance` and `split` leave
        // the bytes after the end where they were.
        unsafe { self.buf.set_len(len + reuse) };
        self.buf.resize(len + want, 0);
        self.spare_init -= reuse;
    }

    /// Ends a read of `want` bytes at `start` that got `got`: the rest of
    /// the window stays written, for the next read to reuse.
    fn truncate_read(&mut self, start: usize, want: usize, got: usize) {
        self.buf.truncate(start + got);
        self.spare_init += want - got;
    }
}

/// Awaits `fut` and says whether it ever returned `Pending`.
async fn noting_pending<F: std::future::Future>(fut: F) -> (F::Output, bool) {
    let mut fut = std::pin::pin!(fut);
    let mut pended = false;
    let out = std::future::poll_fn(|cx| {
        let p = fut.as_mut().poll(cx);
        pended |= p.is_pending();
        p
    })
    .await;
    (out, pended)
}
