//! The fixed 16-byte frame header that precedes every frame body.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Bytes in a frame header; part of the wire format.
pub const HEADER_BYTES: usize = 16;

/// On the wire: `body_len` (bytes after the header), `opcode`, `flags`,
/// `reserved` (must be zero: catches garbage early), `request_id` (echoed
/// in the reply so a pipelining client can match it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct FrameHeader {
    pub body_len: U32,
    pub opcode: u8,
    pub flags: u8,
    pub reserved: U16,
    pub request_id: U64,
}

const _: () = assert!(core::mem::size_of::<FrameHeader>() == HEADER_BYTES);

impl FrameHeader {
    pub fn new(opcode: u8, flags: u8, request_id: u64, body_len: u32) -> Self {
        Self { body_len: U32::new(body_len), opcode, flags, reserved: U16::new(0), request_id: U64::new(request_id) }
    }
}
