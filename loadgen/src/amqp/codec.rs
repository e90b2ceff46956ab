//! Hand-written AMQP 0-9-1 framing: just the parts the load generator uses.
//!
//! Everything works on byte slices and `Vec<u8>`; no allocation per message on
//! the hot path (publishes are stamped from a prebuilt template, deliveries
//! are parsed in place).

pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEADER: u8 = 2;
pub const FRAME_BODY: u8 = 3;
pub const FRAME_HEARTBEAT: u8 = 8;
pub const FRAME_END: u8 = 0xCE;

/// Frame header (type, channel, size) plus the frame-end octet.
pub const FRAME_OVERHEAD: usize = 8;

// (class, method) ids.
pub const CONNECTION_START: (u16, u16) = (10, 10);
pub const CONNECTION_START_OK: (u16, u16) = (10, 11);
pub const CONNECTION_TUNE: (u16, u16) = (10, 30);
pub const CONNECTION_TUNE_OK: (u16, u16) = (10, 31);
pub const CONNECTION_OPEN: (u16, u16) = (10, 40);
pub const CONNECTION_OPEN_OK: (u16, u16) = (10, 41);
pub const CONNECTION_CLOSE: (u16, u16) = (10, 50);
pub const CONNECTION_CLOSE_OK: (u16, u16) = (10, 51);
pub const CHANNEL_OPEN: (u16, u16) = (20, 10);
pub const CHANNEL_OPEN_OK: (u16, u16) = (20, 11);
pub const CHANNEL_CLOSE: (u16, u16) = (20, 40);
pub const CHANNEL_CLOSE_OK: (u16, u16) = (20, 41);
pub const EXCHANGE_DECLARE: (u16, u16) = (40, 10);
pub const EXCHANGE_DECLARE_OK: (u16, u16) = (40, 11);
pub const EXCHANGE_DELETE: (u16, u16) = (40, 20);
pub const EXCHANGE_DELETE_OK: (u16, u16) = (40, 21);
pub const QUEUE_DECLARE: (u16, u16) = (50, 10);
pub const QUEUE_DECLARE_OK: (u16, u16) = (50, 11);
pub const QUEUE_BIND: (u16, u16) = (50, 20);
pub const QUEUE_BIND_OK: (u16, u16) = (50, 21);
pub const QUEUE_PURGE: (u16, u16) = (50, 30);
pub const QUEUE_PURGE_OK: (u16, u16) = (50, 31);
pub const BASIC_QOS: (u16, u16) = (60, 10);
pub const BASIC_QOS_OK: (u16, u16) = (60, 11);
pub const BASIC_CONSUME: (u16, u16) = (60, 20);
pub const BASIC_CONSUME_OK: (u16, u16) = (60, 21);
pub const BASIC_PUBLISH: (u16, u16) = (60, 40);
pub const BASIC_DELIVER: (u16, u16) = (60, 60);
pub const BASIC_ACK: (u16, u16) = (60, 80);
pub const BASIC_NACK: (u16, u16) = (60, 120);
pub const CONFIRM_SELECT: (u16, u16) = (85, 10);
pub const CONFIRM_SELECT_OK: (u16, u16) = (85, 11);

/// A frame borrowed from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: u8,
    pub channel: u16,
    pub payload: &'a [u8],
}

#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// Need more bytes.
    Incomplete,
    /// A frame and the number of bytes it used.
    Frame(Frame<'a>, usize),
}

#[derive(Debug, PartialEq, Eq)]
pub struct FrameError(pub String);

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for FrameError {}

/// Decodes one frame from the front of `buf`.
pub fn decode_frame(buf: &[u8], frame_max: usize) -> Result<Decoded<'_>, FrameError> {
    if buf.len() < 7 {
        return Ok(Decoded::Incomplete);
    }
    let size = u32::from_be_bytes(buf[3..7].try_into().unwrap()) as usize;
    if size + FRAME_OVERHEAD > frame_max.max(4096) {
        return Err(FrameError(format!("frame of {size} bytes exceeds frame_max {frame_max}")));
    }
    let total = 7 + size + 1;
    if buf.len() < total {
        return Ok(Decoded::Incomplete);
    }
    if buf[total - 1] != FRAME_END {
        return Err(FrameError(format!("bad frame-end octet {:#x}", buf[total - 1])));
    }
    Ok(Decoded::Frame(
        Frame { kind: buf[0], channel: u16::from_be_bytes([buf[1], buf[2]]), payload: &buf[7..7 + size] },
        total,
    ))
}

/// Writes a frame header; returns the offset of the size field to patch.
fn begin_frame(out: &mut Vec<u8>, kind: u8, channel: u16) -> usize {
    out.push(kind);
    out.extend_from_slice(&channel.to_be_bytes());
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    at
}

fn end_frame(out: &mut Vec<u8>, size_at: usize) {
    let size = (out.len() - size_at - 4) as u32;
    out[size_at..size_at + 4].copy_from_slice(&size.to_be_bytes());
    out.push(FRAME_END);
}

/// Method arguments, big-endian as AMQP wants.
pub struct Args<'a>(pub &'a mut Vec<u8>);

impl Args<'_> {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn shortstr(&mut self, s: &str) -> &mut Self {
        let b = s.as_bytes();
        let n = b.len().min(255);
        self.0.push(n as u8);
        self.0.extend_from_slice(&b[..n]);
        self
    }
    pub fn longstr(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
        self
    }
    /// Packed bits, first argument in the lowest bit.
    pub fn bits(&mut self, bits: &[bool]) -> &mut Self {
        let mut v = 0u8;
        for (i, b) in bits.iter().enumerate() {
            if *b {
                v |= 1 << i;
            }
        }
        self.u8(v)
    }
    pub fn empty_table(&mut self) -> &mut Self {
        self.u32(0)
    }
    /// A field table of booleans (enough for client capabilities).
    pub fn bool_table(&mut self, entries: &[(&str, bool)]) -> &mut Self {
        let mut t = Vec::new();
        for (k, v) in entries {
            Args(&mut t).shortstr(k).u8(b't').u8(*v as u8);
        }
        self.longstr(&t)
    }
}

/// Appends a method frame; `args` writes the arguments.
pub fn method(out: &mut Vec<u8>, channel: u16, id: (u16, u16), args: impl FnOnce(&mut Args)) {
    let at = begin_frame(out, FRAME_METHOD, channel);
    out.extend_from_slice(&id.0.to_be_bytes());
    out.extend_from_slice(&id.1.to_be_bytes());
    args(&mut Args(out));
    end_frame(out, at);
}

pub fn heartbeat(out: &mut Vec<u8>) {
    out.extend_from_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
}

pub fn basic_ack(out: &mut Vec<u8>, channel: u16, tag: u64, multiple: bool) {
    method(out, channel, BASIC_ACK, |a| {
        a.u64(tag).bits(&[multiple]);
    });
}

/// The bytes of one `basic.publish` + content header + body, for a fixed
/// queue and size; [`PublishTemplate::stamp`] writes a message by copying it
/// and overwriting the first bytes of the body.
#[derive(Clone, Debug)]
pub struct PublishTemplate {
    bytes: Vec<u8>,
    /// Offset of the first body byte in `bytes`.
    body_at: usize,
}

impl PublishTemplate {
    /// `exchange` "" is the default exchange: `routing_key` names the queue.
    pub fn new(
        channel: u16,
        exchange: &str,
        routing_key: &str,
        size: usize,
        persistent: bool,
        frame_max: usize,
    ) -> Self {
        let mut out = Vec::with_capacity(size + 128);
        method(&mut out, channel, BASIC_PUBLISH, |a| {
            a.u16(0).shortstr(exchange).shortstr(routing_key).bits(&[false, false]);
        });
        // Content header: class, weight, body size, property flags, properties.
        let at = begin_frame(&mut out, FRAME_HEADER, channel);
        out.extend_from_slice(&60u16.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&(size as u64).to_be_bytes());
        if persistent {
            out.extend_from_slice(&0x1000u16.to_be_bytes()); // delivery-mode present
            out.push(2);
        } else {
            out.extend_from_slice(&0u16.to_be_bytes());
        }
        end_frame(&mut out, at);
        // Body frames of at most frame_max - 8 bytes each.
        let chunk = frame_max - FRAME_OVERHEAD;
        let mut body_at = 0;
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk);
            let at = begin_frame(&mut out, FRAME_BODY, channel);
            if body_at == 0 {
                body_at = out.len();
            }
            out.resize(out.len() + n, 0);
            end_frame(&mut out, at);
            left -= n;
        }
        PublishTemplate { bytes: out, body_at }
    }

    /// Bytes per message on the wire.
    #[cfg(test)]
    pub fn wire_len(&self) -> usize {
        self.bytes.len()
    }

    /// Appends one message whose body starts with `prefix` (which must fit in
    /// the first body frame).
    pub fn stamp(&self, out: &mut Vec<u8>, prefix: &[u8]) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        let at = start + self.body_at;
        out[at..at + prefix.len()].copy_from_slice(prefix);
    }
}

/// A reader over method arguments.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.pos + n > self.buf.len() {
            return Err(FrameError("truncated method arguments".into()));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, FrameError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }
    pub fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    pub fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }
    pub fn shortstr(&mut self) -> Result<&'a [u8], FrameError> {
        let n = self.u8()? as usize;
        self.take(n)
    }
    #[cfg(test)]
    pub fn longstr(&mut self) -> Result<&'a [u8], FrameError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

/// Splits a method payload into its (class, method) id and arguments.
pub fn method_id(payload: &[u8]) -> Result<((u16, u16), &[u8]), FrameError> {
    if payload.len() < 4 {
        return Err(FrameError("short method frame".into()));
    }
    Ok(((u16::from_be_bytes([payload[0], payload[1]]), u16::from_be_bytes([payload[2], payload[3]])), &payload[4..]))
}

/// `basic.deliver`: (delivery tag, redelivered).
pub fn parse_deliver(args: &[u8]) -> Result<(u64, bool), FrameError> {
    let mut r = Reader::new(args);
    r.shortstr()?; // consumer tag
    let tag = r.u64()?;
    let redelivered = r.u8()? & 1 != 0;
    Ok((tag, redelivered))
}

/// `basic.ack` / `basic.nack` from the broker: (delivery tag, multiple).
pub fn parse_ack(args: &[u8]) -> Result<(u64, bool), FrameError> {
    let mut r = Reader::new(args);
    let tag = r.u64()?;
    let multiple = r.u8()? & 1 != 0;
    Ok((tag, multiple))
}

/// Content header: the body size.
pub fn parse_content_header(payload: &[u8]) -> Result<u64, FrameError> {
    let mut r = Reader::new(payload);
    r.u16()?; // class
    r.u16()?; // weight
    r.u64()
}

/// `connection.tune`: (channel_max, frame_max, heartbeat).
pub fn parse_tune(args: &[u8]) -> Result<(u16, u32, u16), FrameError> {
    let mut r = Reader::new(args);
    Ok((r.u16()?, r.u32()?, r.u16()?))
}

/// `connection.close` / `channel.close`: (reply code, reply text, class, method).
pub fn parse_close(args: &[u8]) -> Result<(u16, String, u16, u16), FrameError> {
    let mut r = Reader::new(args);
    let code = r.u16()?;
    let text = String::from_utf8_lossy(r.shortstr()?).into_owned();
    let class = r.u16().unwrap_or(0);
    let method = r.u16().unwrap_or(0);
    Ok((code, text, class, method))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only_frame(buf: &[u8]) -> Frame<'_> {
        match decode_frame(buf, 131072).unwrap() {
            Decoded::Frame(f, n) => {
                assert_eq!(n, buf.len());
                f
            }
            Decoded::Incomplete => panic!("incomplete"),
        }
    }

    #[test]
    fn ack_frame_bytes() {
        let mut out = Vec::new();
        basic_ack(&mut out, 1, 0x0102, true);
        assert_eq!(
            out,
            [
                1, 0, 1, 0, 0, 0, 13, // method frame, channel 1, size 13
                0, 60, 0, 80, // basic.ack
                0, 0, 0, 0, 0, 0, 1, 2, // delivery tag
                1, // multiple
                0xCE
            ]
        );
        let f = only_frame(&out);
        let (id, args) = method_id(f.payload).unwrap();
        assert_eq!(id, BASIC_ACK);
        assert_eq!(parse_ack(args).unwrap(), (0x0102, true));
    }

    #[test]
    fn incomplete_and_bad_end() {
        let mut out = Vec::new();
        heartbeat(&mut out);
        for n in 0..out.len() {
            assert_eq!(decode_frame(&out[..n], 4096).unwrap(), Decoded::Incomplete);
        }
        let f = only_frame(&out);
        assert_eq!((f.kind, f.channel, f.payload.len()), (FRAME_HEARTBEAT, 0, 0));
        out[7] = 0;
        assert!(decode_frame(&out, 4096).is_err());
        // Oversized frames are refused before waiting for their bytes.
        let big = [1u8, 0, 0, 0x10, 0, 0, 0];
        assert!(decode_frame(&big, 131072).is_err());
    }

    #[test]
    fn publish_template_layout() {
        let t = PublishTemplate::new(1, "", "q1", 40, true, 131072);
        let mut out = Vec::new();
        t.stamp(&mut out, b"HEADER");
        t.stamp(&mut out, b"second");
        assert_eq!(out.len(), 2 * t.wire_len());
        let mut rest = &out[..];
        let mut frames = Vec::new();
        while let Decoded::Frame(f, n) = decode_frame(rest, 131072).unwrap() {
            frames.push((f.kind, f.payload.to_vec()));
            rest = &rest[n..];
        }
        assert!(rest.is_empty());
        assert_eq!(frames.len(), 6);
        let (id, args) = method_id(&frames[0].1).unwrap();
        assert_eq!(id, BASIC_PUBLISH);
        let mut r = Reader::new(args);
        assert_eq!(r.u16().unwrap(), 0);
        assert_eq!(r.shortstr().unwrap(), b"");
        assert_eq!(r.shortstr().unwrap(), b"q1");
        assert_eq!(r.u8().unwrap(), 0);
        assert_eq!(frames[1].0, FRAME_HEADER);
        assert_eq!(parse_content_header(&frames[1].1).unwrap(), 40);
        // Property flags: delivery-mode present, value 2 (persistent).
        assert_eq!(&frames[1].1[12..], &[0x10, 0, 2]);
        assert_eq!(frames[2].0, FRAME_BODY);
        assert_eq!(frames[2].1.len(), 40);
        assert_eq!(&frames[2].1[..6], b"HEADER");
        assert_eq!(&frames[5].1[..6], b"second");
        assert!(frames[5].1[6..].iter().all(|&b| b == 0));
    }

    #[test]
    fn large_bodies_are_split_at_frame_max() {
        let t = PublishTemplate::new(1, "x", "q", 10_000, false, 4096);
        let mut out = Vec::new();
        t.stamp(&mut out, b"x");
        let mut rest = &out[..];
        let mut bodies = Vec::new();
        while let Decoded::Frame(f, n) = decode_frame(rest, 4096).unwrap() {
            if f.kind == FRAME_BODY {
                bodies.push(f.payload.len());
            }
            rest = &rest[n..];
        }
        assert_eq!(bodies, vec![4088, 4088, 1824]);
        let (id, args) = method_id(&out[7..]).unwrap();
        assert_eq!(id, BASIC_PUBLISH);
        let mut r = Reader::new(args);
        r.u16().unwrap();
        assert_eq!((r.shortstr().unwrap(), r.shortstr().unwrap()), (&b"x"[..], &b"q"[..]));
    }

    #[test]
    fn deliver_close_and_tune() {
        let mut out = Vec::new();
        method(&mut out, 1, BASIC_DELIVER, |a| {
            a.shortstr("ctag").u64(42).bits(&[true]).shortstr("").shortstr("q");
        });
        let f = only_frame(&out);
        let (id, args) = method_id(f.payload).unwrap();
        assert_eq!(id, BASIC_DELIVER);
        assert_eq!(parse_deliver(args).unwrap(), (42, true));

        let mut out = Vec::new();
        method(&mut out, 0, CONNECTION_CLOSE, |a| {
            a.u16(403).shortstr("ACCESS_REFUSED").u16(10).u16(40);
        });
        let f = only_frame(&out);
        let (_, args) = method_id(f.payload).unwrap();
        assert_eq!(parse_close(args).unwrap(), (403, "ACCESS_REFUSED".to_string(), 10, 40));

        let mut out = Vec::new();
        method(&mut out, 0, CONNECTION_TUNE, |a| {
            a.u16(2047).u32(131072).u16(60);
        });
        let f = only_frame(&out);
        let (_, args) = method_id(f.payload).unwrap();
        assert_eq!(parse_tune(args).unwrap(), (2047, 131072, 60));
    }

    #[test]
    fn tables_and_bits() {
        let mut out = Vec::new();
        Args(&mut out).bool_table(&[("publisher_confirms", true)]).bits(&[false, true, false, true]);
        let mut r = Reader::new(&out);
        let table = r.longstr().unwrap();
        let mut t = Reader::new(table);
        assert_eq!(t.shortstr().unwrap(), b"publisher_confirms");
        assert_eq!(t.u8().unwrap(), b't');
        assert_eq!(t.u8().unwrap(), 1);
        assert_eq!(r.u8().unwrap(), 0b1010);
    }
}
