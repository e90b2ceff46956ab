//! A snapshot in flight: an in-memory buffer that refuses to grow past
//! `snapshot_bytes_max`.
//!
//! openraft 0.9 receives a snapshot in chunks, each "seek to the chunk's
//! offset, write its bytes" into this buffer. The offset and the bytes come
//! from a peer, which is hostile until checked: a plain `Cursor<Vec<u8>>`
//! would zero-fill up to any offset it is told, so one chunk claiming an
//! offset near 2^64 would be an allocation of that size. Here a write that
//! would end past the bound fails (openraft then drops the transfer), and
//! a seek only moves the position.
//!
//! It is tokio's `AsyncRead + AsyncWrite + AsyncSeek` because openraft's
//! snapshot type must be; these are plain traits, no tokio runtime runs.

use std::io::{self, Cursor, SeekFrom};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// A bounded snapshot buffer (see the module's doc).
#[derive(Debug)]
pub struct SnapshotBuf {
    cursor: Cursor<Vec<u8>>,
    max_bytes: u64,
}

/// A write would have taken a snapshot past its bound.
#[derive(Debug, thiserror::Error)]
#[error("a snapshot write ending at byte {end} passes snapshot_bytes_max ({max})")]
pub struct SnapshotTooBig {
    pub end: u128,
    pub max: u64,
}

impl SnapshotBuf {
    /// A buffer holding `data`, positioned at its start.
    pub fn new(data: Vec<u8>, max_bytes: u32) -> Self {
        Self { cursor: Cursor::new(data), max_bytes: u64::from(max_bytes) }
    }

    pub fn get_ref(&self) -> &[u8] {
        self.cursor.get_ref()
    }

    pub fn into_inner(self) -> Vec<u8> {
        self.cursor.into_inner()
    }
}

impl AsyncRead for SnapshotBuf {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.cursor).poll_read(cx, buf)
    }
}

impl AsyncWrite for SnapshotBuf {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        // In u128: a position near u64::MAX plus a length cannot wrap.
        let end = u128::from(self.cursor.position()) + buf.len() as u128;
        if end > u128::from(self.max_bytes) {
            let e = SnapshotTooBig { end, max: self.max_bytes };
            return Poll::Ready(Err(io::Error::other(e)));
        }
        Pin::new(&mut self.cursor).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.cursor).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.cursor).poll_shutdown(cx)
    }
}

impl AsyncSeek for SnapshotBuf {
    fn start_seek(mut self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        Pin::new(&mut self.cursor).start_seek(position)
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Pin::new(&mut self.cursor).poll_complete(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;
    use std::future::poll_fn;

    fn write(b: &mut SnapshotBuf, at: u64, data: &[u8]) -> io::Result<usize> {
        block_on(async {
            Pin::new(&mut *b).start_seek(SeekFrom::Start(at))?;
            poll_fn(|cx| Pin::new(&mut *b).poll_complete(cx)).await?;
            poll_fn(|cx| Pin::new(&mut *b).poll_write(cx, data)).await
        })
    }

    #[test]
    fn chunks_within_the_bound_land_where_they_say() {
        let mut b = SnapshotBuf::new(Vec::new(), 16);
        assert_eq!(write(&mut b, 0, b"0123").unwrap(), 4);
        assert_eq!(write(&mut b, 4, b"456789abcdef").unwrap(), 12);
        assert_eq!(b.get_ref(), b"0123456789abcdef");
    }

    #[test]
    fn a_chunk_past_the_bound_is_refused_without_growing_the_buffer() {
        let mut b = SnapshotBuf::new(Vec::new(), 16);
        assert!(write(&mut b, 10, b"0123456").is_err());
        // A hostile offset: a plain cursor would zero-fill up to it.
        assert!(write(&mut b, u64::MAX - 1, b"xyz").is_err());
        assert!(write(&mut b, 1 << 40, b"x").is_err());
        assert!(b.get_ref().is_empty());
    }
}
