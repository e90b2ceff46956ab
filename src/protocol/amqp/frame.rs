//! AMQP 0-9-1 framing, sans-IO: `decode` takes bytes and returns a frame
//! borrowed from them (or `Incomplete`); the `put_*` functions append whole
//! frames to a `BytesMut`. (The native protocol's frames are
//! [`crate::protocol::frame`].)
//!
//! Frame: `type u8, channel u16, size u32, payload[size], 0xCE`.

use crate::protocol::wire::len32;
use bytes::{BufMut, BytesMut};

pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

pub const METHOD: u8 = 1;
pub const HEADER: u8 = 2;
pub const BODY: u8 = 3;
pub const HEARTBEAT: u8 = 8;
pub const FRAME_END: u8 = 0xCE;

/// Type, channel and size in front of the payload, plus the end octet.
pub const OVERHEAD: usize = 8;
/// Type, channel and size: the bytes that give a frame's size.
pub const SIZE_PREFIX: usize = 7;
/// The smallest frame_max a peer may negotiate (spec 4.2.3).
pub const FRAME_MIN_SIZE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: u8,
    pub channel: u16,
    pub payload: &'a [u8],
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    Incomplete,
    /// A frame and the bytes it used.
    Frame(Frame<'a>, usize),
}

/// Framing errors close the connection with 501 FRAME_ERROR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    TooLarge {
        size: usize,
        max: usize,
    },
    BadEnd(u8),
    UnknownType(u8),
    /// The 8 bytes in front of the frames are not AMQP 0-9-1's header.
    ProtocolHeader,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::TooLarge { size, max } => write!(f, "frame of {size} bytes exceeds frame_max {max}"),
            FrameError::BadEnd(b) => write!(f, "frame end octet is {b:#04x}, not 0xce"),
            FrameError::UnknownType(t) => write!(f, "unknown frame type {t}"),
            FrameError::ProtocolHeader => write!(f, "not an AMQP 0-9-1 protocol header"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Decodes one frame from the front of `buf`. `frame_max` bounds the whole
/// frame (overhead included) and is checked before the payload is awaited.
/// Both sides use it: a frame type other than method, header, body and
/// heartbeat is a connection error (spec 4.2.3), [`FrameError::UnknownType`].
pub fn decode(buf: &[u8], frame_max: usize) -> Result<Decoded<'_>, FrameError> {
    let Some(total) = peek_len(buf, frame_max)? else {
        return Ok(Decoded::Incomplete);
    };
    let kind = buf[0];
    let channel = u16::from_be_bytes([buf[1], buf[2]]);
    let size = total - OVERHEAD;
    if buf.len() < total {
        return Ok(Decoded::Incomplete);
    }
    if buf[total - 1] != FRAME_END {
        return Err(FrameError::BadEnd(buf[total - 1]));
    }
    Ok(Decoded::Frame(Frame { kind, channel, payload: &buf[7..7 + size] }, total))
}

/// The whole size of the frame `buf` starts with, from its first
/// [`SIZE_PREFIX`] bytes (`None` before they are there): its type is
/// checked, and its size against `frame_max` (overhead included), before
/// the payload is awaited.
#[inline]
pub fn peek_len(buf: &[u8], frame_max: usize) -> Result<Option<usize>, FrameError> {
    if buf.len() < SIZE_PREFIX {
        return Ok(None);
    }
    let kind = buf[0];
    if !matches!(kind, METHOD | HEADER | BODY | HEARTBEAT) {
        return Err(FrameError::UnknownType(kind));
    }
    // Checked before any arithmetic: `size` is the peer's u32.
    let total = payload_size(buf).and_then(|n| n.checked_add(OVERHEAD)).unwrap_or(usize::MAX);
    if total > frame_max {
        return Err(FrameError::TooLarge { size: total, max: frame_max });
    }
    Ok(Some(total))
}

/// A method frame, its content header and at most one body frame.
pub type WholeContent<'a> = (Frame<'a>, Frame<'a>, Option<Frame<'a>>, usize);

/// A whole basic.publish at the front of `buf`: its method frame, content
/// header and at most one body frame, on one channel, each well formed and
/// within `frame_max`, and the bytes they use. `None` for anything else:
/// the frame-by-frame path takes it (and reports its errors).
#[inline]
pub fn whole_publish(buf: &[u8], frame_max: usize) -> Option<WholeContent<'_>> {
    whole_content(buf, frame_max, (60, 40))
}

/// [`whole_publish`] for any content-carrying method `(class, method)`:
/// the broker takes basic.publish this way, a client basic.deliver.
#[inline]
pub fn whole_content(buf: &[u8], frame_max: usize, (class, method): (u16, u16)) -> Option<WholeContent<'_>> {
    let Ok(Decoded::Frame(m, a)) = decode(buf, frame_max) else { return None };
    let [c0, c1] = class.to_be_bytes();
    let [m0, m1] = method.to_be_bytes();
    if m.kind != METHOD || m.payload.get(..4)? != [c0, c1, m0, m1] {
        return None;
    }
    let Ok(Decoded::Frame(h, b)) = decode(&buf[a..], frame_max) else { return None };
    if h.kind != HEADER || h.channel != m.channel {
        return None;
    }
    let body_len = content_body_size(h.payload)?;
    if body_len == 0 {
        return Some((m, h, None, a + b));
    }
    let Ok(Decoded::Frame(body, c)) = decode(&buf[a + b..], frame_max) else { return None };
    let whole = body.kind == BODY && body.channel == m.channel && body.payload.len() as u64 == body_len;
    whole.then_some((m, h, Some(body), a + b + c))
}

/// The body size a content header's payload gives (class u16, weight u16,
/// body size u64, then the properties); `None` if it is shorter.
#[inline]
pub fn content_body_size(payload: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(payload.get(4..12)?.try_into().ok()?))
}

/// Bytes a frame will need once its payload is known, from a prefix of at
/// least 7 bytes; used to size reads.
pub fn peek_total(buf: &[u8]) -> Option<usize> {
    payload_size(buf)?.checked_add(OVERHEAD)
}

/// The payload size a frame header (at least 7 bytes) gives.
fn payload_size(buf: &[u8]) -> Option<usize> {
    let b = buf.get(3..7)?;
    usize::try_from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])).ok()
}

/// An open frame whose size is patched in by `finish`.
#[must_use]
pub struct FrameWriter {
    at: usize,
}

impl FrameWriter {
    pub fn begin(b: &mut BytesMut, kind: u8, channel: u16) -> Self {
        let at = b.len();
        b.put_u8(kind);
        b.put_u16(channel);
        b.put_u32(0);
        Self { at }
    }

    /// Starts a method frame with its class and method ids.
    pub fn method(b: &mut BytesMut, channel: u16, (class, method): (u16, u16)) -> Self {
        let w = Self::begin(b, METHOD, channel);
        b.put_u16(class);
        b.put_u16(method);
        w
    }

    pub fn finish(self, b: &mut BytesMut) {
        let size = len32(b.len() - self.at - 7);
        b[self.at + 3..self.at + 7].copy_from_slice(&size.to_be_bytes());
        b.put_u8(FRAME_END);
    }
}

/// A content header frame: class, weight 0, body size, then the property
/// flags and list exactly as stored (`props` empty means no properties).
/// Written field by field (no size patching): one per delivery.
pub fn put_content_header(b: &mut BytesMut, channel: u16, class: u16, body_len: u64, props: &[u8]) {
    let props: &[u8] = if props.is_empty() { &[0, 0] } else { props };
    let size = 12 + props.len();
    b.reserve(size + OVERHEAD);
    b.put_u8(HEADER);
    b.put_u16(channel);
    b.put_u32(len32(size));
    b.put_u16(class);
    b.put_u16(0);
    b.put_u64(body_len);
    b.put_slice(props);
    b.put_u8(FRAME_END);
}

/// Body frames, each at most `frame_max` bytes whole.
pub fn put_body(b: &mut BytesMut, channel: u16, body: &[u8], frame_max: usize) {
    let chunk = frame_max.max(FRAME_MIN_SIZE) - OVERHEAD;
    b.reserve(body.len() + body.len().div_ceil(chunk) * OVERHEAD);
    for part in body.chunks(chunk) {
        b.put_u8(BODY);
        b.put_u16(channel);
        b.put_u32(len32(part.len()));
        b.put_slice(part);
        b.put_u8(FRAME_END);
    }
}

pub fn put_heartbeat(b: &mut BytesMut) {
    b.put_slice(&[HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_incomplete() {
        let mut b = BytesMut::new();
        let w = FrameWriter::method(&mut b, 3, (60, 80));
        b.put_u64(9);
        b.put_u8(0);
        w.finish(&mut b);
        put_heartbeat(&mut b);
        for cut in 0..b.len() - 8 {
            assert_eq!(decode(&b[..cut], 4096), Ok(Decoded::Incomplete), "cut at {cut}");
        }
        let Ok(Decoded::Frame(f, n)) = decode(&b, 4096) else { panic!("no frame") };
        assert_eq!((f.kind, f.channel, f.payload.len(), n), (METHOD, 3, 13, 21));
        assert_eq!(peek_total(&b), Some(21));
        let Ok(Decoded::Frame(h, 8)) = decode(&b[n..], 4096) else { panic!("no heartbeat") };
        assert_eq!(h.kind, HEARTBEAT);
    }

    #[test]
    fn whole_publishes_only() {
        let mut b = BytesMut::new();
        let w = FrameWriter::method(&mut b, 2, (60, 40));
        b.put_u16(0);
        b.put_u8(0);
        b.put_u8(1);
        b.put_u8(b'q');
        b.put_u8(0);
        w.finish(&mut b);
        let method_len = b.len();
        put_content_header(&mut b, 2, 60, 3, &[]);
        put_body(&mut b, 2, b"abc", 4096);
        let Some((m, h, Some(body), used)) = whole_publish(&b, 4096) else { panic!("not whole") };
        assert_eq!((m.channel, h.kind, body.payload, used), (2, HEADER, &b"abc"[..], b.len()));
        for cut in 0..b.len() {
            assert!(whole_publish(&b[..cut], 4096).is_none(), "cut at {cut}");
        }
        assert!(whole_publish(&b[method_len..], 4096).is_none(), "no method first");
        // A body in two frames, or on another channel: frame by frame.
        let mut two = b[..method_len].to_vec();
        let mut rest = BytesMut::new();
        put_content_header(&mut rest, 2, 60, 3, &[]);
        put_body(&mut rest, 2, b"ab", 4096);
        put_body(&mut rest, 2, b"c", 4096);
        two.extend_from_slice(&rest);
        assert!(whole_publish(&two, 4096).is_none());
        let mut other = b[..method_len].to_vec();
        let mut rest = BytesMut::new();
        put_content_header(&mut rest, 3, 60, 0, &[]);
        other.extend_from_slice(&rest);
        assert!(whole_publish(&other, 4096).is_none());
    }

    #[test]
    fn limits_and_bad_bytes() {
        let mut b = BytesMut::new();
        put_body(&mut b, 1, &[7; 5000], 4096);
        assert!(matches!(decode(&b, 4096), Ok(Decoded::Frame(f, 4096)) if f.payload.len() == 4088));
        assert_eq!(decode(&b, 100), Err(FrameError::TooLarge { size: 4096, max: 100 }));
        b[4095] = 0;
        assert_eq!(decode(&b, 4096), Err(FrameError::BadEnd(0)));
        assert_eq!(decode(&[9, 0, 0, 0, 0, 0, 0, 0xCE], 4096), Err(FrameError::UnknownType(9)));
        // Oversized frames are refused from their header, before their bytes.
        let big = [METHOD, 0, 0, 0x10, 0, 0, 0];
        assert_eq!(decode(&big, 131072), Err(FrameError::TooLarge { size: 0x1000_0000 + OVERHEAD, max: 131072 }));
        assert_eq!(peek_len(&big, 131072), Err(FrameError::TooLarge { size: 0x1000_0000 + OVERHEAD, max: 131072 }));
    }

    /// `peek_len` (what the reader sizes reads by) agrees with `decode` on
    /// every prefix: the length, `None` while the size is not there yet,
    /// and the header's errors.
    #[test]
    fn peek_len_agrees_with_decode() {
        let mut b = BytesMut::new();
        put_body(&mut b, 3, &[1; 300], 4096);
        for cut in 0..=b.len() {
            let p = &b[..cut];
            match (peek_len(p, 4096), decode(p, 4096)) {
                (Ok(None), Ok(Decoded::Incomplete)) => assert!(cut < SIZE_PREFIX),
                (Ok(Some(n)), Ok(Decoded::Incomplete)) => assert!(n == b.len() && cut < n),
                (Ok(Some(n)), Ok(Decoded::Frame(_, m))) => assert_eq!((n, m), (b.len(), b.len())),
                other => panic!("prefix of {cut}: {other:?}"),
            }
        }
        assert_eq!(peek_len(&[9, 0, 0, 0, 0, 0, 0], 4096), Err(FrameError::UnknownType(9)));
        assert_eq!(peek_len(&b, 100), Err(FrameError::TooLarge { size: b.len(), max: 100 }));
    }
}
