//! Reads a socket into whole frames. Bytes land in one buffer that is
//! frozen into a shared chunk once it holds whole frames, so message bodies
//! can be sliced out of it without a copy. A frame's size is known from its
//! header, so the buffer grows once to fit it, and the size limit is
//! checked before any of the body is read.

use crate::protocol::{self, DecodeError, Decoded, Frame};
use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncReadExt};
use std::time::Duration;

const READ_BYTES: usize = 64 * 1024;
/// Frames above this are read to their end and no further (see `fill`);
/// smaller ones share reads of `READ_BYTES`, wasting at most this much of
/// a chunk on a partial frame.
const LARGE_FRAME_BYTES: usize = READ_BYTES / 4;

#[derive(Debug)]
pub enum ReadError {
    /// The peer closed between frames.
    Eof,
    /// The peer closed inside a frame.
    Truncated {
        buffered: usize,
    },
    /// No bytes within the allowed time.
    Timeout {
        buffered: usize,
        after: Duration,
    },
    Decode(DecodeError),
    Io(std::io::Error),
}

pub struct FrameReader {
    buf: BytesMut,
    frame_bytes_max: usize,
    /// The length of the last large frame read (0 after a small one): a
    /// peer that sends frames of one size gets reads that end where its
    /// frames do, with no copy.
    last_large: usize,
}

impl FrameReader {
    pub fn new(frame_bytes_max: usize) -> Self {
        Self { buf: BytesMut::with_capacity(READ_BYTES), frame_bytes_max, last_large: 0 }
    }

    pub fn frame_bytes_max(&self) -> usize {
        self.frame_bytes_max
    }

    /// Memory the read buffer holds (its capacity; a chunk handed out is
    /// counted by whoever keeps it).
    pub fn held_bytes(&self) -> usize {
        self.buf.capacity()
    }

    /// Reads until at least one whole frame is buffered and returns the
    /// buffered bytes as a chunk. Hand back what was not used with
    /// [`FrameReader::keep`]. `timeout(buffered)` bounds each read.
    pub async fn fill<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        timeout: impl Fn(bool) -> Option<Duration>,
    ) -> Result<Bytes, ReadError> {
        loop {
            let need = protocol::frame::peek_len(&self.buf, self.frame_bytes_max).map_err(ReadError::Decode)?;
            if let Some(n) = need {
                if self.buf.len() >= n {
                    self.last_large = if n > LARGE_FRAME_BYTES { n } else { 0 };
                    return Ok(self.buf.split().freeze());
                }
            }
            let want = match need {
                // A large frame: read up to its end only, into a buffer of
                // exactly that size. Messages keep their chunk alive until
                // acked, so bytes read past the frame (the start of the
                // next one, copied out by `keep`) and a doubled buffer's
                // spare half would be held with them: with 64 KiB frames
                // that doubled the memory a backlog held.
                Some(n) if n > LARGE_FRAME_BYTES => n - self.buf.len(),
                Some(n) => (n - self.buf.len()).max(READ_BYTES),
                // The next frame's size is not known yet: expect another
                // like the last (up to two reads' worth, so a large one
                // does not make a small one pin a large buffer).
                None if self.last_large > 0 => self.last_large.min(2 * READ_BYTES),
                None => READ_BYTES,
            };
            self.make_room(want);
            let n = self.read_some(r, want, timeout(!self.buf.is_empty())).await?;
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
    }

    /// Returns the unused tail of a chunk (a partial frame) to the buffer.
    pub fn keep(&mut self, chunk: &Bytes, used: usize) {
        debug_assert!(self.buf.is_empty(), "keep follows fill");
        self.buf.extend_from_slice(&chunk[used..]);
    }

    async fn read_some<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        want: usize,
        t: Option<Duration>,
    ) -> Result<usize, ReadError> {
        let start = self.buf.len();
        self.buf.resize(start + want, 0);
        let dst = &mut self.buf[start..];
        let res = match t {
            None => r.read(dst).await,
            Some(t) => match glommio::timer::timeout(t, async { Ok(r.read(dst).await) }).await {
                Ok(res) => res,
                Err(_) => {
                    self.buf.truncate(start);
                    return Err(ReadError::Timeout { buffered: start, after: t });
                }
            },
        };
        match res {
            Ok(n) => {
                self.buf.truncate(start + n);
                Ok(n)
            }
            Err(e) => {
                self.buf.truncate(start);
                Err(ReadError::Io(e))
            }
        }
    }
}

/// Calls `f` on every whole frame at the front of `chunk`; returns the
/// bytes used. Stops at the first decode error or error from `f`.
pub fn for_each_frame<E>(
    chunk: &Bytes,
    frame_bytes_max: usize,
    f: impl FnMut(Frame<'_>) -> Result<(), E>,
) -> Result<usize, Result<E, DecodeError>> {
    for_each_frame_limited(chunk, frame_bytes_max, protocol::fieldtable::TABLE_DEPTH_MAX, f)
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
mod tests {
    use super::*;
    use crate::protocol::BatchWriter;

    /// Publish frames of one 40 KiB message each.
    fn frames(n: usize) -> (Vec<u8>, usize) {
        let mut b = BytesMut::new();
        for i in 0..n {
            let mut w = BatchWriter::begin_publish(&mut b, i as u64, 0, "q");
            w.push(&mut b, 0, &[], &vec![7u8; 40 << 10]);
            w.finish(&mut b);
        }
        let len = b.len() / n;
        (b.to_vec(), len)
    }

    /// Large frames: once the reader knows their size, a chunk holds whole
    /// frames only (a partial next frame in it would be kept alive by the
    /// messages with it), and every frame arrives intact.
    #[test]
    fn large_frames_are_read_to_their_end() {
        let (bytes, len) = frames(8);
        let mut r = futures_lite::io::Cursor::new(bytes);
        let mut reader = FrameReader::new(1 << 20);
        let mut seen = 0;
        futures_lite::future::block_on(async {
            while seen < 8 {
                let chunk = reader.fill(&mut r, |_| None).await.expect("a chunk");
                let used = for_each_frame::<()>(&chunk, 1 << 20, |_| Ok(())).expect("frames");
                assert_eq!(used % len, 0);
                if seen > 0 {
                    assert_eq!(chunk.len(), used, "chunk {seen} ends where its frames do");
                }
                seen += used / len;
                reader.keep(&chunk, used);
            }
        });
        assert_eq!(seen, 8, "every frame, once");
    }
}
