//! The outbox's vectored write: the encoded bytes with, at recorded places,
//! buffers sent by reference (a stream's stored entries), handed to the
//! kernel as one `sendmsg` of up to [`IOV_MAX`] slices, so the entries go
//! from where they are stored to the socket with the kernel's copy only.
//!
//! glommio 0.9's `TcpStream` has no vectored write (its `poll_write` is a
//! non-blocking `send` first, then an io_uring poll for writability), so
//! this does the same with `sendmsg`: `MSG_DONTWAIT` on the raw socket, and
//! when the socket is full, one ordinary write of the next slice through
//! the stream, which waits for room as any write does.

use bytes::Bytes;
use std::io::{self, IoSlice};
use std::os::fd::{BorrowedFd, RawFd};

/// Slices per `sendmsg` (Linux's `UIO_MAXIOV`).
pub const IOV_MAX: usize = 1024;

/// `MSG_DONTWAIT | MSG_NOSIGNAL` (Linux): never block the shard's thread,
/// and a peer that closed is an `EPIPE` error, not a signal.
const SEND_FLAGS: i32 = 0x40 | 0x4000;

/// The bytes of one write: `buf` with `refs[k].1` inserted at offset
/// `refs[k].0` of it (offsets ascending), walked by a cursor as the
/// socket takes them.
pub struct Parts<'a> {
    buf: &'a [u8],
    refs: &'a [(usize, Bytes)],
    /// The part the cursor is in: even `2k` is the gap of `buf` before
    /// `refs[k]` (or its tail for `k = refs.len()`), odd `2k + 1` is
    /// `refs[k]`.
    part: usize,
    /// Bytes of that part already sent.
    within: usize,
}

impl<'a> Parts<'a> {
    pub fn new(buf: &'a [u8], refs: &'a [(usize, Bytes)]) -> Self {
        let mut p = Self { buf, refs, part: 0, within: 0 };
        p.skip_empty();
        p
    }

    fn count(&self) -> usize {
        2 * self.refs.len() + 1
    }

    fn slice(&self, part: usize) -> &'a [u8] {
        let k = part / 2;
        if part % 2 == 1 {
            return &self.refs[k].1;
        }
        let from = if k == 0 { 0 } else { self.refs[k - 1].0 };
        let to = self.refs.get(k).map_or(self.buf.len(), |r| r.0);
        &self.buf[from..to]
    }

    fn skip_empty(&mut self) {
        while self.part < self.count() && self.within >= self.slice(self.part).len() {
            self.part += 1;
            self.within = 0;
        }
    }

    pub fn is_done(&self) -> bool {
        self.part >= self.count()
    }

    /// What is left of the current part.
    pub fn current(&self) -> &'a [u8] {
        if self.is_done() {
            return &[];
        }
        &self.slice(self.part)[self.within..]
    }

    /// Up to `max` slices from the cursor on (empty ones left out).
    pub fn slices(&self, max: usize, out: &mut Vec<IoSlice<'a>>) {
        out.clear();
        let mut part = self.part;
        let mut within = self.within;
        while part < self.count() && out.len() < max {
            let s = &self.slice(part)[within..];
            if !s.is_empty() {
                out.push(IoSlice::new(s));
            }
            part += 1;
            within = 0;
        }
    }

    /// Moves the cursor past `n` bytes the socket took.
    pub fn advance(&mut self, mut n: usize) {
        while n > 0 && !self.is_done() {
            let left = self.slice(self.part).len() - self.within;
            if n < left {
                self.within += n;
                return;
            }
            n -= left;
            self.part += 1;
            self.within = 0;
        }
        self.skip_empty();
    }
}

/// One non-blocking `sendmsg` of `slices` on `fd`: `Ok(None)` when the
/// socket has no room.
pub fn send_now(fd: RawFd, slices: &[IoSlice<'_>]) -> io::Result<Option<usize>> {
    // SAFETY: `fd` is the socket of the stream the outbox's writer holds
    // for the whole write loop (`Outbox::write_loop_vectored`'s caller
    // passes the fd of the stream it passes as the writer), so it is open
    // for as long as this borrow lasts.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    match socket2::SockRef::from(&fd).send_vectored_with_flags(slices, SEND_FLAGS) {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Some(0)),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(p: &Parts<'_>) -> Vec<u8> {
        let mut v = Vec::new();
        p.slices(usize::MAX, &mut v);
        v.iter().flat_map(|s| s.to_vec()).collect()
    }

    #[test]
    fn parts_interleave_refs_at_their_offsets_and_advance_across_them() {
        let buf = b"HHHHxxyy";
        let refs = vec![(4, Bytes::from_static(b"AAA")), (4, Bytes::from_static(b"")), (6, Bytes::from_static(b"B"))];
        let mut p = Parts::new(buf, &refs);
        assert_eq!(flat(&p), b"HHHHAAAxxByy");
        p.advance(5);
        assert_eq!(p.current(), b"AA");
        assert_eq!(flat(&p), b"AAxxByy");
        p.advance(4);
        assert_eq!(p.current(), b"B");
        p.advance(1);
        assert_eq!(flat(&p), b"yy");
        p.advance(2);
        assert!(p.is_done());
        assert_eq!(p.current(), b"");
    }

    #[test]
    fn slices_stop_at_the_limit_and_skip_empty_parts() {
        let refs: Vec<_> = (0..5).map(|i| (0, Bytes::from(vec![b'a' + i; 2]))).collect();
        let p = Parts::new(b"", &refs);
        let mut v = Vec::new();
        p.slices(3, &mut v);
        assert_eq!(v.len(), 3);
        assert_eq!(&*v[2], b"cc");
    }
}
