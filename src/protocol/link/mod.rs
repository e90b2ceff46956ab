//! The inter-node link's codec (issue 17): the frames cluster members
//! exchange over TCP, sans-IO like the native codec ([`super::frame`]):
//! `decode(&[u8], frame_bytes_max)` answers `Incomplete` or a frame
//! borrowing the input and its length; encoding appends to a `BytesMut`.
//! The transport is `cluster::link`; the byte layout and the handshake
//! are in `docs/cluster.md`, "The link".
//!
//! Every frame is an 8-byte header (`body_len` u32 LE, `opcode`, `flags`,
//! a reserved u16) and a body. The size limit is checked from the header
//! alone ([`peek_len`]), before any of the body is read; `flags` and the
//! reserved field must be zero, so garbage is refused at its first header.
//!
//! The handshake, both sides: the dialling member sends [`Hello`], the
//! listening one answers its own (after checking the version and the
//! cluster id); the dialler then proves it knows the cluster secret
//! ([`Frame::Auth`], an HMAC over [`auth_transcript`]) and the listener,
//! once convinced, proves it back. Before that a listener holds at most a
//! [`HELLO_FRAME_BYTES_MAX`]-byte frame. The HMAC itself is computed by the
//! transport: this module depends on nothing but `bytes` and `zerocopy`.

#[cfg(test)]
mod proptests;

use crate::protocol::wire::len32;
use bytes::{BufMut, BytesMut};
use zerocopy::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Sent first in a [`Hello`]: a link peer, not a client on the wrong port.
pub const MAGIC: [u8; 4] = *b"RGLK";
/// The link version this build speaks. A peer with another is refused
/// ([`CloseCode::VersionUnsupported`]). 2: the data links' requests
/// (postcard, `server::remote::wire`) gained `Subscribe::auto_ack` and
/// `Publish::mandatory`, which a version 1 peer would misread.
pub const VERSION: u16 = 2;
/// Bytes in a frame header; part of the wire format.
pub const HEADER_BYTES: usize = 8;
/// The longest node name, in bytes of UTF-8 (its length is one byte).
pub const NODE_NAME_BYTES_MAX: usize = 255;
/// The longest `Close` reason, in bytes of UTF-8.
pub const REASON_BYTES_MAX: usize = 255;
/// Bytes of a handshake nonce and of an `Auth` proof (HMAC-SHA256).
pub const NONCE_BYTES: usize = 32;
pub const PROOF_BYTES: usize = 32;
/// The largest `Hello` frame (with the longest name): the frame limit a
/// listener holds an unauthenticated peer to.
pub const HELLO_FRAME_BYTES_MAX: usize = HEADER_BYTES + HELLO_FIXED_BYTES + 1 + NODE_NAME_BYTES_MAX;
const HELLO_FIXED_BYTES: usize = 4 + 2 + 16 + 8 + NONCE_BYTES;
/// Bytes an `Rpc` frame adds to its payload (header, id, kind).
pub const RPC_OVERHEAD_BYTES: usize = HEADER_BYTES + 8 + 1;

/// Opcodes: stable, part of the wire format (never renumber).
pub mod op {
    pub const HELLO: u8 = 1;
    pub const AUTH: u8 = 2;
    pub const RPC: u8 = 3;
    pub const RPC_REPLY: u8 = 4;
    pub const PING: u8 = 5;
    pub const PONG: u8 = 6;
    pub const CLOSE: u8 = 7;
    pub const DATA: u8 = 8;
}

/// The fixed header before every body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct LinkHeader {
    pub body_len: U32,
    pub opcode: u8,
    /// None defined yet: must be zero, so a future flag is never ignored.
    pub flags: u8,
    pub reserved: U16,
}

const _: () = assert!(core::mem::size_of::<LinkHeader>() == HEADER_BYTES);

/// Which Raft RPC an `Rpc` frame carries (its payload's type). Stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RpcKind {
    Vote = 1,
    Append = 2,
    Snapshot = 3,
    /// A metadata change a member forwards to the leader.
    Propose = 4,
    /// A new node asks to join (the only request a joining peer, whose
    /// `Hello` carries no cluster id, may send).
    Join = 5,
    /// A member asks the leader to remove a node from the cluster.
    Forget = 6,
    /// A member asks the leader how it sees the cluster.
    Status = 7,
}

impl RpcKind {
    pub const ALL: [RpcKind; 7] = [
        RpcKind::Vote,
        RpcKind::Append,
        RpcKind::Snapshot,
        RpcKind::Propose,
        RpcKind::Join,
        RpcKind::Forget,
        RpcKind::Status,
    ];

    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u8 == v)
    }

    pub fn name(self) -> &'static str {
        match self {
            RpcKind::Vote => "vote",
            RpcKind::Append => "append",
            RpcKind::Snapshot => "snapshot",
            RpcKind::Propose => "propose",
            RpcKind::Join => "join",
            RpcKind::Forget => "forget",
            RpcKind::Status => "status",
        }
    }

    /// Raft's own RPCs, which speak for the member that sends them.
    pub fn is_raft(self) -> bool {
        matches!(self, RpcKind::Vote | RpcKind::Append | RpcKind::Snapshot)
    }
}

/// Why a side closed the link, carried by `Close`. Stable (never
/// renumber); a code this build does not know still decodes (as a `u16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum CloseCode {
    /// The member is stopping.
    Shutdown = 1,
    /// A frame that does not decode, or a payload that does not.
    BadFrame = 2,
    /// A frame over the receiver's `frame_bytes_max`.
    FrameTooLarge = 3,
    VersionUnsupported = 4,
    /// The peer belongs to another cluster.
    WrongCluster = 5,
    /// The peer's proof does not check out: it does not know the secret.
    AuthFailed = 6,
    /// The handshake did not finish within its deadline.
    HandshakeTimeout = 7,
    /// The peer is not the member expected there (a dialler reached
    /// another node id than it dialled, a peer claimed the listener's own
    /// id, or an RPC spoke for another member than the one authenticated).
    WrongNode = 8,
    /// A frame that has no place at this point (an RPC before the
    /// handshake, a second Hello, a reply nobody asked for).
    UnexpectedFrame = 9,
    /// Nothing arrived for the idle timeout.
    IdleTimeout = 10,
    /// The peer is not a member of this cluster (it was forgotten): it
    /// may not take part in elections.
    NotMember = 11,
}

impl CloseCode {
    pub fn from_u16(v: u16) -> Option<Self> {
        use CloseCode::*;
        Some(match v {
            1 => Shutdown,
            2 => BadFrame,
            3 => FrameTooLarge,
            4 => VersionUnsupported,
            5 => WrongCluster,
            6 => AuthFailed,
            7 => HandshakeTimeout,
            8 => WrongNode,
            9 => UnexpectedFrame,
            10 => IdleTimeout,
            11 => NotMember,
            _ => return None,
        })
    }

    pub fn as_u16(self) -> u16 {
        self as u16
    }
}

/// The first frame each side sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello<'a> {
    pub version: u16,
    pub cluster_id: [u8; 16],
    pub node_id: u64,
    /// 1 to [`NODE_NAME_BYTES_MAX`] bytes of UTF-8 (for logs and status).
    pub node_name: &'a str,
    /// Fresh random bytes for this connection: a proof made for one
    /// connection is worth nothing on another.
    pub nonce: [u8; NONCE_BYTES],
}

/// A decoded frame. Borrows the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    Hello(Hello<'a>),
    Auth {
        proof: [u8; PROOF_BYTES],
    },
    /// `payload` is opaque here (the cluster layer's encoding of the
    /// request `kind` names); `id` comes back on its reply.
    Rpc {
        id: u64,
        kind: RpcKind,
        payload: &'a [u8],
    },
    RpcReply {
        id: u64,
        payload: &'a [u8],
    },
    Ping,
    Pong,
    /// The sender is closing: `code` (a [`CloseCode`], or one a newer
    /// build knows), `reason` at most [`REASON_BYTES_MAX`] bytes.
    Close {
        code: u16,
        reason: &'a str,
    },
    /// Forwarded queue traffic (`server::remote`): a request for a queue
    /// the receiver owns, or a reply to one. `payload` is opaque here.
    Data {
        payload: &'a [u8],
    },
}

pub enum Decoded<'a> {
    /// Not a whole frame yet: read more bytes.
    Incomplete,
    /// A frame and the number of bytes it used.
    Frame(Frame<'a>, usize),
}

/// What the decoder found wrong with the bytes it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("link frame of {len} bytes exceeds frame_bytes_max {max}")]
    TooLarge { len: usize, max: usize },
    #[error("unknown link opcode 0x{0:02x}")]
    UnknownOpcode(u8),
    #[error("link header with flags 0x{flags:02x} and reserved 0x{reserved:04x}: not a ringmq link")]
    Reserved { flags: u8, reserved: u16 },
    #[error("malformed link {what}: {why}")]
    Malformed { what: &'static str, why: &'static str },
}

impl DecodeError {
    /// The code a `Close` for this error carries.
    pub fn close_code(&self) -> CloseCode {
        match self {
            DecodeError::TooLarge { .. } => CloseCode::FrameTooLarge,
            _ => CloseCode::BadFrame,
        }
    }
}

/// Decodes one frame from the front of `buf`, checking `frame_bytes_max`
/// from the header alone, before anything else.
pub fn decode(buf: &[u8], frame_bytes_max: usize) -> Result<Decoded<'_>, DecodeError> {
    let Some((h, len)) = peek(buf, frame_bytes_max)? else {
        return Ok(Decoded::Incomplete);
    };
    if buf.len() < len {
        return Ok(Decoded::Incomplete);
    }
    let frame = decode_body(h.opcode, &buf[HEADER_BYTES..len])?;
    Ok(Decoded::Frame(frame, len))
}

/// Length of the frame at the front of `buf` once its header has arrived,
/// after checking the header and the size limit; `None` before that.
pub fn peek_len(buf: &[u8], frame_bytes_max: usize) -> Result<Option<usize>, DecodeError> {
    Ok(peek(buf, frame_bytes_max)?.map(|(_, len)| len))
}

fn peek(buf: &[u8], frame_bytes_max: usize) -> Result<Option<(LinkHeader, usize)>, DecodeError> {
    let Ok((h, _)) = LinkHeader::read_from_prefix(buf) else {
        return Ok(None);
    };
    if h.flags != 0 || h.reserved.get() != 0 {
        return Err(DecodeError::Reserved { flags: h.flags, reserved: h.reserved.get() });
    }
    if !(op::HELLO..=op::DATA).contains(&h.opcode) {
        return Err(DecodeError::UnknownOpcode(h.opcode));
    }
    // In u64: `HEADER_BYTES + body_len` must not wrap where usize is 32 bits.
    let len = HEADER_BYTES as u64 + u64::from(h.body_len.get());
    match usize::try_from(len) {
        Ok(len) if len <= frame_bytes_max => Ok(Some((h, len))),
        _ => Err(DecodeError::TooLarge { len: usize::try_from(len).unwrap_or(usize::MAX), max: frame_bytes_max }),
    }
}

/// A bounds-checked reader of a body's fields: a short body is an error,
/// never a panic.
struct Cursor<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Cursor<'a> {
    fn bad(&self, why: &'static str) -> DecodeError {
        DecodeError::Malformed { what: self.what, why }
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(self.bad("body shorter than its fields"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A string with a one-byte length: at most 255 bytes, by its field.
    fn str8(&mut self) -> Result<&'a str, DecodeError> {
        let n = usize::from(self.u8()?);
        let b = self.bytes(n)?;
        std::str::from_utf8(b).map_err(|_| self.bad("string is not UTF-8"))
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.bad("trailing bytes after the last field"))
        }
    }
}

fn name(opcode: u8) -> &'static str {
    match opcode {
        op::HELLO => "Hello",
        op::AUTH => "Auth",
        op::RPC => "Rpc",
        op::RPC_REPLY => "RpcReply",
        op::PING => "Ping",
        op::PONG => "Pong",
        op::CLOSE => "Close",
        op::DATA => "Data",
        _ => "frame",
    }
}

fn decode_body(opcode: u8, body: &[u8]) -> Result<Frame<'_>, DecodeError> {
    let mut c = Cursor { buf: body, what: name(opcode) };
    let frame = match opcode {
        op::HELLO => {
            if c.bytes(4)? != MAGIC {
                return Err(c.bad("bad magic: not a ringmq link peer"));
            }
            let version = c.u16()?;
            let cluster_id = c.array()?;
            let node_id = c.u64()?;
            let nonce = c.array()?;
            let node_name = c.str8()?;
            if node_name.is_empty() {
                return Err(c.bad("empty node name"));
            }
            Frame::Hello(Hello { version, cluster_id, node_id, node_name, nonce })
        }
        op::AUTH => Frame::Auth { proof: c.array()? },
        op::RPC => {
            let id = c.u64()?;
            let kind = RpcKind::from_u8(c.u8()?).ok_or(c.bad("unknown RPC kind"))?;
            Frame::Rpc { id, kind, payload: c.rest() }
        }
        op::RPC_REPLY => Frame::RpcReply { id: c.u64()?, payload: c.rest() },
        op::PING => Frame::Ping,
        op::PONG => Frame::Pong,
        op::CLOSE => Frame::Close { code: c.u16()?, reason: c.str8()? },
        op::DATA => Frame::Data { payload: c.rest() },
        other => return Err(DecodeError::UnknownOpcode(other)),
    };
    c.finish()?;
    Ok(frame)
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char
/// boundary: a string cut to its field is still UTF-8 the decoder takes.
fn cut(s: &str, max: usize) -> &[u8] {
    let mut n = s.len().min(max);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    &s.as_bytes()[..n]
}

fn put_str8(buf: &mut BytesMut, s: &str) {
    let b = cut(s, usize::from(u8::MAX));
    buf.put_u8(u8::try_from(b.len()).unwrap_or(u8::MAX));
    buf.put_slice(b);
}

impl Frame<'_> {
    pub fn opcode(&self) -> u8 {
        match self {
            Frame::Hello(_) => op::HELLO,
            Frame::Auth { .. } => op::AUTH,
            Frame::Rpc { .. } => op::RPC,
            Frame::RpcReply { .. } => op::RPC_REPLY,
            Frame::Ping => op::PING,
            Frame::Pong => op::PONG,
            Frame::Close { .. } => op::CLOSE,
            Frame::Data { .. } => op::DATA,
        }
    }

    pub fn name(&self) -> &'static str {
        name(self.opcode())
    }

    /// The bytes [`Frame::encode`] appends: lets a sender check a frame
    /// against the peer's limit before building it.
    pub fn encoded_len(&self) -> usize {
        HEADER_BYTES
            + match self {
                Frame::Hello(h) => HELLO_FIXED_BYTES + 1 + h.node_name.len().min(NODE_NAME_BYTES_MAX),
                Frame::Auth { .. } => PROOF_BYTES,
                Frame::Rpc { payload, .. } => 9 + payload.len(),
                Frame::RpcReply { payload, .. } => 8 + payload.len(),
                Frame::Ping | Frame::Pong => 0,
                Frame::Close { reason, .. } => 3 + reason.len().min(REASON_BYTES_MAX),
                Frame::Data { payload } => payload.len(),
            }
    }

    /// Appends the encoded frame to `buf`. A node name or reason over its
    /// bound is cut (at a char boundary) rather than mis-framed; callers
    /// check them first (`cluster::link::LinkConfig` refuses a long name).
    /// A payload must fit the peer's `frame_bytes_max` (at most 4 GiB by
    /// the length field): check [`Frame::encoded_len`] first.
    pub fn encode(&self, buf: &mut BytesMut) {
        let body_len = self.encoded_len() - HEADER_BYTES;
        let h =
            LinkHeader { body_len: U32::new(len32(body_len)), opcode: self.opcode(), flags: 0, reserved: U16::new(0) };
        buf.reserve(HEADER_BYTES + body_len);
        buf.put_slice(h.as_bytes());
        match self {
            Frame::Hello(h) => {
                buf.put_slice(&MAGIC);
                buf.put_u16_le(h.version);
                buf.put_slice(&h.cluster_id);
                buf.put_u64_le(h.node_id);
                buf.put_slice(&h.nonce);
                put_str8(buf, h.node_name);
            }
            Frame::Auth { proof } => buf.put_slice(proof),
            Frame::Rpc { id, kind, payload } => {
                buf.put_u64_le(*id);
                buf.put_u8(*kind as u8);
                buf.put_slice(payload);
            }
            Frame::RpcReply { id, payload } => {
                buf.put_u64_le(*id);
                buf.put_slice(payload);
            }
            Frame::Ping | Frame::Pong => {}
            Frame::Close { code, reason } => {
                buf.put_u16_le(*code);
                put_str8(buf, reason);
            }
            Frame::Data { payload } => buf.put_slice(payload),
        }
    }
}

/// Which side of the handshake a proof speaks for: the two proofs differ
/// in this label, so a listener cannot hand the dialler's proof back as
/// its own (a reflection), nor the reverse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Dialler,
    Listener,
}

/// Bytes of an [`auth_transcript`].
pub const TRANSCRIPT_BYTES: usize = 16 + 2 + 16 + 2 * (8 + NONCE_BYTES);

/// What an `Auth` proof is the HMAC-SHA256 of (keyed with the cluster
/// secret): who proves it, the version and cluster id, and both sides'
/// node ids and nonces, dialler first. Fixed-size fields only, so two
/// different handshakes never give the same bytes.
pub fn auth_transcript(role: Role, dialler: &Hello<'_>, listener: &Hello<'_>) -> [u8; TRANSCRIPT_BYTES] {
    let mut t = [0u8; TRANSCRIPT_BYTES];
    let label: &[u8; 16] = match role {
        Role::Dialler => b"ringmq-link-dial",
        Role::Listener => b"ringmq-link-lstn",
    };
    let mut w = &mut t[..];
    w.put_slice(label);
    w.put_u16_le(dialler.version);
    w.put_slice(&dialler.cluster_id);
    w.put_u64_le(dialler.node_id);
    w.put_slice(&dialler.nonce);
    w.put_u64_le(listener.node_id);
    w.put_slice(&listener.nonce);
    debug_assert!(w.is_empty(), "the transcript's fields fill it");
    t
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
