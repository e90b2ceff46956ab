//! The publisher's hot path: one basic.publish with its content header and
//! body frames, encoded once per producer for a fixed target and size with
//! the shared codec's writers, then stamped per message.

use bytes::{BufMut, BytesMut};
use ringmq::protocol::amqp::frame;
use ringmq::protocol::amqp::method::{self, id};
use ringmq::protocol::amqp::wire::{put_bits, put_shortstr};

/// Property flags and list of a persistent message: delivery-mode 2.
const PERSISTENT: [u8; 3] = [0x10, 0x00, 2];

/// The bytes of one `basic.publish` + content header + body, for a fixed
/// target and size; [`PublishTemplate::stamp`] writes a message by copying
/// it and overwriting the first bytes of the body.
#[derive(Clone, Debug)]
pub struct PublishTemplate {
    bytes: Vec<u8>,
    /// Offset of the first body byte in `bytes`.
    body_at: usize,
}

impl PublishTemplate {
    /// `exchange` "" is the default exchange: `routing_key` names the queue.
    /// Body frames are at most `frame_max` bytes whole.
    pub fn new(
        channel: u16,
        exchange: &str,
        routing_key: &str,
        size: usize,
        persistent: bool,
        frame_max: usize,
    ) -> Self {
        let mut b = BytesMut::with_capacity(size + 128);
        method::put(&mut b, channel, id::BASIC_PUBLISH, |b| {
            b.put_u16(0);
            put_shortstr(b, exchange);
            put_shortstr(b, routing_key);
            put_bits(b, &[false, false]); // mandatory, immediate
        });
        let props: &[u8] = if persistent { &PERSISTENT } else { &[] };
        frame::put_content_header(&mut b, channel, 60, size as u64, props);
        // The first body frame's payload follows its type, channel and size.
        let body_at = b.len() + 7;
        frame::put_body(&mut b, channel, &vec![0; size], frame_max);
        PublishTemplate { bytes: b.to_vec(), body_at }
    }

    /// Bytes per message on the wire.
    #[cfg(test)]
    pub fn wire_len(&self) -> usize {
        self.bytes.len()
    }

    /// Appends one message whose body starts with `prefix` (which must fit in
    /// the first body frame).
    pub fn stamp(&self, out: &mut BytesMut, prefix: &[u8]) {
        let at = out.len() + self.body_at;
        out.extend_from_slice(&self.bytes);
        out[at..at + prefix.len()].copy_from_slice(prefix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringmq::protocol::amqp::client::split;
    use ringmq::protocol::amqp::frame::Decoded;
    use ringmq::protocol::amqp::wire::Reader;

    /// Every frame in `b`, as (type, payload).
    fn frames(b: &[u8], frame_max: usize) -> Vec<(u8, Vec<u8>)> {
        let mut rest = b;
        let mut out = Vec::new();
        while let Decoded::Frame(f, n) = frame::decode(rest, frame_max).unwrap() {
            out.push((f.kind, f.payload.to_vec()));
            rest = &rest[n..];
        }
        assert!(rest.is_empty());
        out
    }

    #[test]
    fn publish_template_layout() {
        let t = PublishTemplate::new(1, "", "q1", 40, true, 131072);
        let mut out = BytesMut::new();
        t.stamp(&mut out, b"HEADER");
        t.stamp(&mut out, b"second");
        assert_eq!(out.len(), 2 * t.wire_len());
        let frames = frames(&out, 131072);
        assert_eq!(frames.len(), 6);
        let (mid, args) = split(&frames[0].1).unwrap();
        assert_eq!(mid, id::BASIC_PUBLISH);
        let mut r = Reader::new(args);
        assert_eq!(r.u16().unwrap(), 0);
        assert_eq!(r.shortstr_bytes().unwrap(), b"");
        assert_eq!(r.shortstr_bytes().unwrap(), b"q1");
        assert_eq!(r.u8().unwrap(), 0);
        assert_eq!(frames[1].0, frame::HEADER);
        assert_eq!(frame::content_body_size(&frames[1].1), Some(40));
        // Property flags: delivery-mode present, value 2 (persistent).
        assert_eq!(&frames[1].1[12..], &[0x10, 0, 2]);
        assert_eq!(frames[2].0, frame::BODY);
        assert_eq!(frames[2].1.len(), 40);
        assert_eq!(&frames[2].1[..6], b"HEADER");
        assert_eq!(&frames[5].1[..6], b"second");
        assert!(frames[5].1[6..].iter().all(|&b| b == 0));
        // The broker's parser takes it: the method, and a persistent message.
        let (_, m) = method::parse(&frames[0].1).unwrap();
        assert!(matches!(m, method::Method::Publish { exchange: "", routing_key: "q1", .. }));
        assert_eq!(method::delivery_mode(&frames[1].1[12..], 32), Ok(2));
    }

    #[test]
    fn large_bodies_are_split_at_frame_max() {
        let t = PublishTemplate::new(1, "x", "q", 10_000, false, 4096);
        let mut out = BytesMut::new();
        t.stamp(&mut out, b"x");
        let bodies: Vec<usize> =
            frames(&out, 4096).iter().filter(|(kind, _)| *kind == frame::BODY).map(|(_, p)| p.len()).collect();
        assert_eq!(bodies, vec![4088, 4088, 1824]);
        let (mid, args) = split(&out[7..]).unwrap();
        assert_eq!(mid, id::BASIC_PUBLISH);
        let mut r = Reader::new(args);
        r.u16().unwrap();
        assert_eq!((r.shortstr_bytes().unwrap(), r.shortstr_bytes().unwrap()), (&b"x"[..], &b"q"[..]));
    }
}
