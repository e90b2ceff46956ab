//! Reads a socket into whole frames, for both protocols: the reader is
//! generic over a [`Framing`] (the native protocol's [`Native`], AMQP
//! 0-9-1's [`Amqp`], the inter-node link's [`Link`]) that tells a frame's total size from its header, so
//! the size limit is checked before any of the body is read, and fails
//! with one [`ReadError`] that carries the protocol's framing error.
//!
//! Two ways to take the frames, sharing the deadlines ([`Clock`]), the
//! limits and the reads themselves:
//!
//! - [`FrameReader::fill`] (the native broker and client): bytes land in one
//!   buffer that is frozen into a shared chunk once it holds whole frames,
//!   so message bodies can be sliced out of it without a copy; the unused
//!   tail goes back with [`FrameReader::keep`]. The buffer grows with the
//!   bytes that actually arrive (at most doubling per read), never to what
//!   a header claims, so a peer that sends headers claiming huge frames and
//!   nothing else costs little memory; large frames are read to their end
//!   and no further, since messages keep their chunk alive until acked.
//! - [`FrameReader::fill_in_place`] (AMQP): the frames are handled where they
//!   lie ([`FrameReader::buffered`]) and dropped with
//!   [`FrameReader::consume`]; the buffer is reused, nothing in it outlives
//!   the handling (AMQP copies what it keeps), so reads are not cut at frame
//!   ends and the read size grows while reads fill it and never shrinks.
//!
//! The reads themselves are in `reader/io.rs`: through the stream, or on a plain
//! socket ([`FrameReader::read_directly`]) a `recv` while bytes wait and a
//! receive in the executor's ring once the socket is found empty.

use crate::protocol::{self, DecodeError, Decoded, Frame};
use bytes::{Buf, Bytes, BytesMut};
use futures_lite::AsyncRead;
use glommio::net::RecvRing;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

/// The read size once logged in: a busy publisher's batches.
pub const READ_BYTES: usize = 64 * 1024;
/// The read size before login (a handshake is a few hundred bytes), and
/// the first step of growing a partly read frame.
pub const HANDSHAKE_READ_BYTES: usize = 4 * 1024;
/// Frames above this are read to their end and no further (see `fill`);
/// smaller ones share reads, wasting at most this much of a chunk on a
/// partial frame.
const LARGE_FRAME_BYTES: usize = READ_BYTES / 4;

pub use super::framing::{Amqp, Framing, Link, Native};

#[derive(Debug)]
pub enum ReadError<E = DecodeError> {
    /// The peer closed between frames.
    Eof,
    /// The peer closed inside a frame.
    Truncated {
        buffered: usize,
    },
    /// The deadline the caller set passed; `buffered` bytes of a frame
    /// had arrived.
    Timeout {
        buffered: usize,
    },
    /// The protocol's framing error: a bad header, or a frame over the
    /// limit (found before its body was read).
    Decode(E),
    Io(std::io::Error),
}

impl<E: std::fmt::Display> std::fmt::Display for ReadError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Eof => write!(f, "peer closed"),
            ReadError::Truncated { buffered } => write!(f, "peer closed with {buffered} bytes of an unfinished frame"),
            ReadError::Timeout { buffered } => write!(f, "read deadline passed with {buffered} bytes of a frame"),
            ReadError::Decode(e) => e.fmt(f),
            ReadError::Io(e) => e.fmt(f),
        }
    }
}

impl<E: std::fmt::Debug + std::fmt::Display> std::error::Error for ReadError<E> {}

/// What a caller's deadline is measured from.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// When the first byte of the frame being read arrived (`None` between frames).
    pub frame_started: Option<Instant>,
    /// When the last byte arrived (or the reader was made).
    pub last_byte: Instant,
}

mod io;
pub use io::RING_RECV_BYTES;

pub struct FrameReader<F: Framing = Native> {
    buf: BytesMut,
    frame_bytes_max: usize,
    /// The largest read between frames, and the current one: it doubles
    /// while reads fill it and falls back when they do not, so an idle
    /// connection holds a small buffer and a busy one reads in large ones.
    read_bytes: usize,
    window: usize,
    clock: Clock,
    /// The length of the last large frame read (0 after a small one): a
    /// peer that sends frames of one size gets reads that end where its
    /// frames do, with no copy.
    last_large: usize,
    /// Bytes after the buffer's end, within its capacity, that an earlier
    /// read or zero-fill wrote: the next read reuses them instead of
    /// zeroing its whole window again (a 64 KiB memset per small read).
    spare_init: usize,
    /// Whether the last read had to wait for the socket: the executor
    /// then polled I/O and ran other tasks, so the caller need not yield.
    waited: bool,
    /// Bytes read so far, and the reads that returned some: the
    /// operators' per-connection traffic (one add per read, not per frame).
    read_totals: (u64, u64),
    /// A plain socket's fd ([`FrameReader::read_directly`]): reads try a
    /// non-blocking `recv` into the buffer's unwritten capacity first.
    fd: Option<std::os::fd::RawFd>,
    /// The same socket's receives through the executor's ring, made by the
    /// first read that finds it empty. It owns the receive in flight, so a
    /// read future dropped mid-way (a caller's `or`, a deadline) loses no
    /// bytes: the next read returns them.
    ring: Option<RecvRing>,
    /// Whether the last read went through the ring and got less than it
    /// asked: the socket was empty then, so the next read waits in the ring
    /// again rather than try a `recv` that would most likely fail.
    drained: bool,
    /// [`FrameReader::expect_whole_frames`]: the largest large frame read
    /// whole so far, which later reads may be sized for at once; 0 when
    /// not asked for.
    whole_frames: Option<usize>,
    /// Bytes copied into a larger buffer to grow a partly read frame.
    copied_growing: u64,
    framing: PhantomData<F>,
}

impl<F: Framing> FrameReader<F> {
    /// `frame_bytes_max` bounds a frame (and so the buffer); `read_bytes`
    /// is the size of a read when no frame is being grown.
    pub fn new(frame_bytes_max: usize, read_bytes: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(read_bytes.min(HANDSHAKE_READ_BYTES)),
            frame_bytes_max,
            read_bytes,
            window: read_bytes.min(HANDSHAKE_READ_BYTES),
            clock: Clock { frame_started: None, last_byte: Instant::now() },
            last_large: 0,
            spare_init: 0,
            waited: true,
            read_totals: (0, 0),
            fd: None,
            ring: None,
            drained: false,
            whole_frames: None,
            copied_growing: 0,
            framing: PhantomData,
        }
    }

    pub fn frame_bytes_max(&self) -> usize {
        self.frame_bytes_max
    }

    /// Bytes read so far, and the reads that returned some.
    pub fn read_totals(&self) -> (u64, u64) {
        self.read_totals
    }

    /// Memory the read buffer holds (its capacity, and the ring receive's
    /// buffer; a chunk handed out is counted by whoever keeps it).
    pub fn held_bytes(&self) -> usize {
        self.buf.capacity() + self.ring.as_ref().map_or(0, RecvRing::held_bytes)
    }

    /// Reads of the plain socket `fd` (the one every read is given) try a
    /// non-blocking `recv` straight into the buffer's unwritten capacity
    /// first while the socket has bytes waiting, and when it has none wait
    /// in the executor's ring with a receive ([`RecvRing`]) instead of
    /// through the stream. A chunk handed out keeps its buffer, so most
    /// reads start a fresh one: through the stream, each byte read was
    /// first zeroed (a client reading a stream at gigabytes a second spent
    /// as much on the memset as on its frames). And a read that waits costs
    /// no syscall of its own: the stream's wait was a `recv` that failed, a
    /// POLL_ADD and a second `recv` (an ordinary AMQP client, one publish
    /// per write, paid all three per message). The stream is not read at
    /// all. The caller must pass the same socket's stream to every read, so
    /// the fd stays open while the reader uses it, and must not read the
    /// socket any other way.
    pub fn read_directly(&mut self, fd: std::os::fd::RawFd) {
        self.fd = Some(fd);
    }

    /// Sizes reads for whole large frames once the peer has sent one: a
    /// frame no larger than the largest it sent whole is read into one
    /// buffer of its size (no growing step by step, which copied what had
    /// arrived at each step: more than the frame's bytes again for a
    /// 256 KiB frame), and after a large frame the next read expects one
    /// like it, whole. Memory per connection stays bounded by what the
    /// peer has really sent (a header alone still buys only the doubling
    /// steps); an idle connection may hold one such frame's buffer. For
    /// a client reading its broker's deliveries.
    pub fn expect_whole_frames(&mut self) {
        self.whole_frames.get_or_insert(0);
    }

    /// New limits, e.g. once the peer has logged in.
    pub fn set_limits(&mut self, frame_bytes_max: usize, read_bytes: usize) {
        self.frame_bytes_max = frame_bytes_max;
        self.read_bytes = read_bytes;
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// Whether the last read waited for the socket (returned `Pending`):
    /// if not, the bytes were there at once and the task never gave the
    /// executor a chance to poll I/O or run other tasks.
    pub fn waited(&self) -> bool {
        self.waited
    }

    /// The broker did not read for `held` (back pressure): that time does
    /// not count against the peer's frame deadline, and bytes may be
    /// waiting unread, so the peer counts as heard from now.
    pub fn excuse(&mut self, held: Duration) {
        if held.is_zero() {
            return;
        }
        self.clock.frame_started = self.clock.frame_started.map(|t| t + held);
        self.clock.last_byte = Instant::now();
    }

    /// Reads until at least one whole frame is buffered and returns the
    /// buffered bytes as a chunk. Hand back what was not used with
    /// [`FrameReader::keep`]. `deadline(clock)` bounds the wait: it is asked
    /// again before every read, so it can be measured from the frame's
    /// first byte or the connection's start rather than per read.
    pub async fn fill<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        deadline: impl Fn(&Clock) -> Option<Instant>,
    ) -> Result<Bytes, ReadError<F::Error>> {
        loop {
            let need = F::frame_len(&self.buf, self.frame_bytes_max).map_err(ReadError::Decode)?;
            if let Some(n) = need {
                if self.buf.len() >= n {
                    self.last_large = if n > LARGE_FRAME_BYTES { n } else { 0 };
                    if let Some(w) = self.whole_frames.as_mut() {
                        *w = (*w).max(self.last_large);
                    }
                    return Ok(self.buf.split().freeze());
                }
            }
            let want = match need {
                // A small frame: finish it and read on in the same read, so
                // a busy peer's frames keep sharing reads (reading only to
                // its end halved the frames per read: 18 % off e2e 16 B).
                Some(n) if !self.buf.is_empty() && n <= LARGE_FRAME_BYTES => (n - self.buf.len()).max(self.window),
                // A large one no larger than one the peer sent whole: the
                // rest of it at once.
                Some(n) if !self.buf.is_empty() && self.whole_frames.is_some_and(|w| n <= w) => n - self.buf.len(),
                // A large one: grow with what arrived, at most doubling per
                // read, from a small step, so a header alone never buys its
                // body's size (a peer that sends only headers holds a few
                // KiB each). The step never passes the frame's end:
                // messages keep their chunk alive until acked, so bytes read
                // past a large frame (the start of the next one, copied out
                // by `keep`) would be held with them.
                Some(n) if !self.buf.is_empty() => (n - self.buf.len()).min(self.buf.len().max(HANDSHAKE_READ_BYTES)),
                // The next frame's size is not known yet: after a large
                // frame (a logged-in peer that sent it whole), expect another
                // like it, up to two reads' worth.
                _ if self.last_large > 0 && self.whole_frames.is_some() => self.last_large,
                _ if self.last_large > 0 => self.last_large.min(2 * self.read_bytes),
                _ => self.window,
            };
            self.make_room(want);
            let n = self.read_some(r, want, deadline(&self.clock)).await?;
            self.window = next_window(want, n, self.read_bytes);
            if n == 0 {
                return Err(if self.buf.is_empty() {
                    ReadError::Eof
                } else {
                    ReadError::Truncated { buffered: self.buf.len() }
                });
            }
        }
    }

    /// Grows the buffer to hold `want` more bytes with one allocation of
    /// exactly that size (`BytesMut` would double it).
    fn make_room(&mut self, want: usize) {
        let len = self.buf.len();
        if self.buf.capacity() - len >= want {
            return;
        }
        let mut grown = BytesMut::with_capacity(len + want);
        grown.extend_from_slice(&self.buf);
        self.buf = grown;
        self.spare_init = 0;
        if len > 0 {
            self.copied_growing += len as u64;
        }
    }

    /// Returns the unused tail of a chunk (a partial frame) to the buffer.
    /// The chunk ended with the last read, so that read started the tail.
    pub fn keep(&mut self, chunk: &Bytes, used: usize) {
        debug_assert!(self.buf.is_empty(), "keep follows fill");
        let at = self.buf.as_ptr();
        let tail = &chunk[used..];
        self.buf.extend_from_slice(tail);
        // Moved or reallocated: nothing after the end is known written.
        self.spare_init = if self.buf.as_ptr() == at { self.spare_init.saturating_sub(tail.len()) } else { 0 };
        self.clock.frame_started = (!self.buf.is_empty()).then_some(self.clock.last_byte);
    }

    /// Reads until the buffer starts with a whole frame, leaving the bytes
    /// where they are: handle them from [`FrameReader::buffered`], drop
    /// what was handled with [`FrameReader::consume`]. The front frame's
    /// size is checked against the limit before more of it is read. Each
    /// read is the read size, which doubles while reads fill it and never
    /// shrinks (the buffer is reused: a smaller read would save no memory);
    /// the buffer grows as `BytesMut` does, moving the partial frame to its
    /// front when there is room. `deadline` as for [`FrameReader::fill`].
    pub async fn fill_in_place<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        deadline: impl Fn(&Clock) -> Option<Instant>,
    ) -> Result<(), ReadError<F::Error>> {
        loop {
            if let Some(n) = F::frame_len(&self.buf, self.frame_bytes_max).map_err(ReadError::Decode)? {
                if self.buf.len() >= n {
                    return Ok(());
                }
            }
            self.read_in_place(r, &deadline).await?;
        }
    }

    /// Reads until at least `n` bytes are buffered, whatever they are (a
    /// protocol header in front of the frames), in place.
    pub async fn read_at_least<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        n: usize,
        deadline: impl Fn(&Clock) -> Option<Instant>,
    ) -> Result<(), ReadError<F::Error>> {
        while self.buf.len() < n {
            self.read_in_place(r, &deadline).await?;
        }
        Ok(())
    }

    async fn read_in_place<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        deadline: &impl Fn(&Clock) -> Option<Instant>,
    ) -> Result<(), ReadError<F::Error>> {
        let want = self.window.min(self.read_bytes);
        let n = self.read_some(r, want, deadline(&self.clock)).await?;
        if n == 0 {
            return Err(if self.buf.is_empty() {
                ReadError::Eof
            } else {
                ReadError::Truncated { buffered: self.buf.len() }
            });
        }
        if n >= want {
            self.window = next_window(want, n, self.read_bytes);
        }
        Ok(())
    }

    /// The bytes read in place and not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Drops the first `used` bytes read in place (handled frames). What
    /// is left is a partial frame: when a frame was consumed, the last read
    /// started it; otherwise it started when it did.
    pub fn consume(&mut self, used: usize) {
        self.buf.advance(used);
        self.clock.frame_started = match (self.buf.len(), used) {
            (0, _) => None,
            (_, 0) => self.clock.frame_started.or(Some(self.clock.last_byte)),
            _ => Some(self.clock.last_byte),
        };
    }
}

/// The next read size after a read of `want` bytes got `got`: double
/// while reads fill it, else what was used (a power of two), within
/// `HANDSHAKE_READ_BYTES..=max`.
pub fn next_window(want: usize, got: usize, max: usize) -> usize {
    let floor = HANDSHAKE_READ_BYTES.min(max);
    let next = if got >= want { want.saturating_mul(2) } else { got.next_power_of_two() };
    next.clamp(floor, max)
}

/// Calls `f` on every whole frame at the front of `chunk`; returns the
/// bytes used. Stops at the first decode error or error from `f`.
pub fn for_each_frame<E>(
    chunk: &Bytes,
    frame_bytes_max: usize,
    f: impl FnMut(Frame<'_>) -> Result<(), E>,
) -> Result<usize, Result<E, DecodeError>> {
    for_each_frame_limited(chunk, frame_bytes_max, protocol::field_table::TABLE_DEPTH_MAX, f)
}

/// [`for_each_frame`] with the broker's `table_depth_max` for the field
/// tables the decoder checks (Declare arguments).
pub fn for_each_frame_limited<E>(
    chunk: &Bytes,
    frame_bytes_max: usize,
    table_depth_max: usize,
    mut f: impl FnMut(Frame<'_>) -> Result<(), E>,
) -> Result<usize, Result<E, DecodeError>> {
    let mut off = 0;
    loop {
        match protocol::frame::decode_limited(&chunk[off..], frame_bytes_max, table_depth_max) {
            Ok(Decoded::Incomplete) => return Ok(off),
            Ok(Decoded::Frame(frame, len)) => {
                f(frame).map_err(Ok)?;
                off += len;
            }
            Err(e) => return Err(Err(e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // test lengths are small
#[path = "reader_tests.rs"]
mod tests;
