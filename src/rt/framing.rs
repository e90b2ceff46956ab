//! The framings the frame reader (`reader`) reads: how many bytes of a
//! frame's header give its size, for the native protocol, AMQP 0-9-1 and
//! the inter-node link.

use crate::protocol::amqp::frame::FrameError;
use crate::protocol::{self, DecodeError};

/// What the reader needs to know of a protocol's frames: how many bytes
/// of a header give the frame's size, and that size, checked against the
/// limit, before the body is read.
pub trait Framing {
    /// Bytes of a frame's front that [`Framing::frame_len`] needs.
    const HEADER_BYTES: usize;
    /// A header that is not one, or a frame over the limit.
    type Error: std::fmt::Debug + std::fmt::Display;
    /// The whole size of the frame `buf` starts with; `None` while fewer
    /// than `HEADER_BYTES` are there; an error for a bad header or a frame
    /// above `frame_bytes_max`.
    fn frame_len(buf: &[u8], frame_bytes_max: usize) -> Result<Option<usize>, Self::Error>;
}

/// The native protocol's frames ([`crate::protocol::frame`]).
#[derive(Debug, Clone, Copy)]
pub struct Native;

impl Framing for Native {
    const HEADER_BYTES: usize = protocol::HEADER_BYTES;
    type Error = DecodeError;
    #[inline(always)]
    fn frame_len(buf: &[u8], frame_bytes_max: usize) -> Result<Option<usize>, DecodeError> {
        protocol::frame::peek_len(buf, frame_bytes_max)
    }
}

/// AMQP 0-9-1 frames ([`crate::protocol::amqp::frame`]); the 8-byte
/// protocol header in front of them is read with
/// [`FrameReader::read_at_least`].
#[derive(Debug, Clone, Copy)]
pub struct Amqp;

impl Framing for Amqp {
    const HEADER_BYTES: usize = protocol::amqp::frame::SIZE_PREFIX;
    type Error = FrameError;
    #[inline(always)]
    fn frame_len(buf: &[u8], frame_max: usize) -> Result<Option<usize>, FrameError> {
        protocol::amqp::frame::peek_len(buf, frame_max)
    }
}

/// The inter-node link's frames ([`crate::protocol::link`]): cluster
/// members' handshakes and Raft RPCs.
#[derive(Debug, Clone, Copy)]
pub struct Link;

impl Framing for Link {
    const HEADER_BYTES: usize = protocol::link::HEADER_BYTES;
    type Error = protocol::link::DecodeError;
    #[inline(always)]
    fn frame_len(buf: &[u8], frame_bytes_max: usize) -> Result<Option<usize>, protocol::link::DecodeError> {
        protocol::link::peek_len(buf, frame_bytes_max)
    }
}
