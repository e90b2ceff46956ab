//! The client's side of the method codec: the methods a server sends,
//! parsed over their arguments (the bytes after the class and method ids,
//! which [`split`] takes off). Each parser reads the fields a client acts
//! on, in order, and errs if one is missing; fields after those are not
//! read (basic.deliver's exchange and routing key: the hot path in).
//!
//! A client writes its own methods with [`method::put`](super::method::put)
//! and the [`wire`](super::wire) writers, acks with
//! [`method::put_ack`](super::method::put_ack), answers heartbeats with
//! [`frame::put_heartbeat`](super::frame::put_heartbeat), and takes a whole
//! delivery at once with [`frame::whole_content`](super::frame::whole_content).

use super::method::MethodId;
use super::wire::{Reader, Result};

/// A method frame's payload as its class and method ids and its arguments.
pub fn split(payload: &[u8]) -> Result<(MethodId, &[u8])> {
    let mut r = Reader::new(payload);
    let mid = (r.u16()?, r.u16()?);
    Ok((mid, r.rest()))
}

/// basic.deliver's delivery tag and redelivered flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deliver {
    pub delivery_tag: u64,
    pub redelivered: bool,
}

/// basic.deliver: consumer tag (skipped), delivery tag, redelivered.
#[inline]
pub fn parse_deliver(args: &[u8]) -> Result<Deliver> {
    let mut r = Reader::new(args);
    r.shortstr_bytes()?;
    Ok(Deliver { delivery_tag: r.u64()?, redelivered: r.bit()? })
}

/// A publisher confirm: basic.ack or basic.nack from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirm {
    pub delivery_tag: u64,
    /// Every tag up to `delivery_tag` is settled.
    pub multiple: bool,
}

/// basic.ack / basic.nack: delivery tag, multiple (a nack's requeue bit,
/// meaningless from a server, is not read).
pub fn parse_confirm(args: &[u8]) -> Result<Confirm> {
    let mut r = Reader::new(args);
    Ok(Confirm { delivery_tag: r.u64()?, multiple: r.bit()? })
}

/// connection.tune: the server's limits (0: none) and heartbeat interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tune {
    pub channel_max: u16,
    pub frame_max: u32,
    /// Seconds; 0 turns heartbeats off.
    pub heartbeat: u16,
}

pub fn parse_tune(args: &[u8]) -> Result<Tune> {
    let mut r = Reader::new(args);
    Ok(Tune { channel_max: r.u16()?, frame_max: r.u32()?, heartbeat: r.u16()? })
}

/// connection.close or channel.close from the server. Displays as
/// `CODE TEXT (in method CLASS.METHOD)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close<'a> {
    pub code: u16,
    /// Shown lossily if it is not UTF-8: it is only ever reported.
    pub text: &'a [u8],
    /// The method that caused the close; (0, 0) when none did, or when the
    /// server left the ids off.
    pub cause: MethodId,
}

/// connection.close / channel.close: reply code, reply text, and the class
/// and method ids of the cause if present.
pub fn parse_close(args: &[u8]) -> Result<Close<'_>> {
    let mut r = Reader::new(args);
    let (code, text) = (r.u16()?, r.shortstr_bytes()?);
    let cause = (r.u16().unwrap_or(0), r.u16().unwrap_or(0));
    Ok(Close { code, text, cause })
}

impl std::fmt::Display for Close<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (class, method) = self.cause;
        write!(f, "{} {} (in method {class}.{method})", self.code, String::from_utf8_lossy(self.text))
    }
}

#[cfg(test)]
mod tests {
    use super::super::frame::{self, Decoded, Frame};
    use super::super::method::{self, id};
    use super::super::wire::{put_bits, put_shortstr, Syntax};
    use super::*;
    use bytes::{BufMut, BytesMut};

    fn only_frame(b: &[u8]) -> Frame<'_> {
        let Ok(Decoded::Frame(f, n)) = frame::decode(b, 131072) else { panic!("no frame") };
        assert_eq!(n, b.len());
        f
    }

    #[test]
    fn ack_frame_bytes() {
        let mut b = BytesMut::new();
        method::put_ack(&mut b, 1, 0x0102, true);
        assert_eq!(
            b[..],
            [
                1, 0, 1, 0, 0, 0, 13, // method frame, channel 1, size 13
                0, 60, 0, 80, // basic.ack
                0, 0, 0, 0, 0, 0, 1, 2, // delivery tag
                1, // multiple
                0xCE
            ]
        );
        let (mid, args) = split(only_frame(&b).payload).unwrap();
        assert_eq!(mid, id::BASIC_ACK);
        assert_eq!(parse_confirm(args), Ok(Confirm { delivery_tag: 0x0102, multiple: true }));
        // The server's confirms, both kinds.
        for (ack, mid) in [(true, id::BASIC_ACK), (false, id::BASIC_NACK)] {
            let mut b = BytesMut::new();
            method::put_confirm(&mut b, 1, ack, 7, false);
            let (got, args) = split(only_frame(&b).payload).unwrap();
            assert_eq!((got, parse_confirm(args)), (mid, Ok(Confirm { delivery_tag: 7, multiple: false })));
        }
        assert!(split(&[0, 60, 0]).is_err());
        assert!(parse_confirm(&[0; 8]).is_err(), "no multiple bit");
    }

    #[test]
    fn deliver_as_the_broker_writes_it() {
        let mut b = BytesMut::new();
        method::put_deliver(&mut b, 1, "ctag", 42, true, "", "q");
        let (mid, args) = split(only_frame(&b).payload).unwrap();
        assert_eq!(mid, id::BASIC_DELIVER);
        assert_eq!(parse_deliver(args), Ok(Deliver { delivery_tag: 42, redelivered: true }));
        let tpl = method::deliver_template(1, "ctag", "q");
        let (_, args) = split(only_frame(&tpl).payload).unwrap();
        assert_eq!(parse_deliver(args), Ok(Deliver { delivery_tag: 0, redelivered: false }));
        // Cut inside the consumer tag or the delivery tag.
        assert!(parse_deliver(&args[..3]).is_err());
        assert!(parse_deliver(&args[..8]).is_err());
    }

    #[test]
    fn whole_deliveries() {
        let mut b = BytesMut::new();
        method::put_deliver(&mut b, 1, "ctag", 9, false, "", "q");
        frame::put_content_header(&mut b, 1, 60, 3, &[]);
        frame::put_body(&mut b, 1, b"abc", 4096);
        let (m, h, body, used) = frame::whole_content(&b, 4096, id::BASIC_DELIVER).unwrap();
        assert_eq!(
            (frame::content_body_size(h.payload), body.map(|f| f.payload), used),
            (Some(3), Some(&b"abc"[..]), b.len())
        );
        assert_eq!(parse_deliver(&m.payload[4..]).unwrap().delivery_tag, 9);
        assert!(frame::whole_content(&b, 4096, id::BASIC_PUBLISH).is_none(), "another method");
        assert!(frame::whole_publish(&b, 4096).is_none());
        assert_eq!(frame::content_body_size(&h.payload[..11]), None);
    }

    #[test]
    fn tune_and_close() {
        let mut b = BytesMut::new();
        method::put(&mut b, 0, id::CONNECTION_TUNE, |b| {
            b.put_u16(2047);
            b.put_u32(131072);
            b.put_u16(60);
        });
        let (mid, args) = split(only_frame(&b).payload).unwrap();
        assert_eq!(mid, id::CONNECTION_TUNE);
        assert_eq!(parse_tune(args), Ok(Tune { channel_max: 2047, frame_max: 131072, heartbeat: 60 }));
        assert!(parse_tune(&args[..7]).is_err());

        let mut b = BytesMut::new();
        method::put_close(&mut b, 0, id::CONNECTION_CLOSE, 403, "ACCESS_REFUSED", id::CONNECTION_OPEN);
        let (mid, args) = split(only_frame(&b).payload).unwrap();
        assert_eq!(mid, id::CONNECTION_CLOSE);
        let close = parse_close(args).unwrap();
        assert_eq!(close, Close { code: 403, text: b"ACCESS_REFUSED", cause: (10, 40) });
        assert_eq!(close.to_string(), "403 ACCESS_REFUSED (in method 10.40)");
        // Without the cause's ids; text that is not UTF-8.
        let mut terse = BytesMut::new();
        terse.put_u16(320);
        put_shortstr(&mut terse, "bye");
        assert_eq!(parse_close(&terse).map(|c| c.cause), Ok((0, 0)));
        assert_eq!(parse_close(&[1, 64, 2, 0xff, b'x']).unwrap().to_string(), "320 \u{fffd}x (in method 0.0)");
        assert_eq!(parse_close(&[1, 64, 9, b'x']), Err(Syntax::Field("field runs past the end of its frame")));
    }

    #[test]
    fn bits_after_the_tag() {
        let mut b = BytesMut::new();
        b.put_u64(5);
        put_bits(&mut b, &[true, true]);
        assert_eq!(parse_confirm(&b), Ok(Confirm { delivery_tag: 5, multiple: true }));
    }
}
