//! What a data link carries (`Frame::Data`): the core's own requests and
//! replies, postcard-encoded. The link frame bounds the payload before any
//! of it is read; postcard reads lengths against the bytes that are there
//! (a claimed length past the payload fails, it is not allocated), and
//! what decodes is checked again where it lands (a publish's entries are
//! parsed by the owner as any forwarded batch, a queue's arguments are
//! parsed on arrival).

use super::super::types::{Reply, Request};
use crate::protocol::link::{LinkHeader, HEADER_BYTES};
use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};
use zerocopy::little_endian::{U16, U32};
use zerocopy::IntoBytes;

/// One message on a data link. `shard` and `conn` name the connection on
/// the dialling node (its shard there, its id there): the receiver keeps
/// them as they are and sends them back with the reply.
#[derive(Debug, Serialize, Deserialize)]
pub enum DataMsg {
    /// Dialler to listener: a request for a queue the listener's shard owns.
    Request { shard: u16, conn: u64, request_id: u64, req: Request },
    /// Listener to dialler: a reply or a delivery for that connection.
    Reply { shard: u16, conn: u64, reply: Reply },
}

/// Why a message was not encoded.
#[derive(Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// Its frame would be `len` bytes, past the link's limit.
    TooLarge {
        len: usize,
    },
    Serialize(String),
}

/// Appends `msg` as one `Data` frame of at most `frame_bytes_max` bytes;
/// on an error `buf` is as it was.
pub fn encode(msg: &DataMsg, buf: &mut BytesMut, frame_bytes_max: usize) -> Result<(), EncodeError> {
    let start = buf.len();
    buf.put_bytes(0, HEADER_BYTES);
    if let Err(e) = postcard::serialize_with_flavor(msg, Append(buf)) {
        buf.truncate(start);
        return Err(EncodeError::Serialize(e.to_string()));
    }
    let len = buf.len() - start;
    let body = len - HEADER_BYTES;
    if len > frame_bytes_max || body > u32::MAX as usize {
        buf.truncate(start);
        return Err(EncodeError::TooLarge { len });
    }
    let h = LinkHeader {
        body_len: U32::new(crate::protocol::wire::len32(body)),
        opcode: crate::protocol::link::op::DATA,
        flags: 0,
        reserved: U16::new(0),
    };
    buf[start..start + HEADER_BYTES].copy_from_slice(h.as_bytes());
    Ok(())
}

/// postcard writing straight into the frame's buffer (no second copy).
struct Append<'a>(&'a mut BytesMut);

impl postcard::ser_flavors::Flavor for Append<'_> {
    type Output = ();

    fn try_push(&mut self, b: u8) -> postcard::Result<()> {
        self.0.put_u8(b);
        Ok(())
    }

    fn try_extend(&mut self, b: &[u8]) -> postcard::Result<()> {
        self.0.put_slice(b);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// A `Data` frame's payload.
pub fn decode(payload: &[u8]) -> Result<DataMsg, String> {
    postcard::from_bytes(payload).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::link::{self, Decoded, Frame};
    use crate::server::types::{ConnRef, Delivered, Origin};
    use bytes::Bytes;
    use std::sync::Arc;

    fn frames_of(buf: &[u8]) -> Vec<DataMsg> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < buf.len() {
            match link::decode(&buf[at..], 1 << 20).unwrap() {
                Decoded::Frame(Frame::Data { payload }, n) => {
                    out.push(decode(payload).unwrap());
                    at += n;
                }
                _ => panic!("not a data frame"),
            }
        }
        out
    }

    #[test]
    fn requests_and_replies_round_trip_through_link_frames() {
        let mut b = BytesMut::new();
        let entries = Bytes::from_static(b"\x00\x00\x00\x00entry");
        let req = Request::Publish {
            persistent: true,
            confirm: true,
            partial: false,
            mandatory: Some(false),
            queue: "/\u{0}q".into(),
            entries: entries.clone(),
            count: 1,
        };
        encode(&DataMsg::Request { shard: 1, conn: 7, request_id: 9, req }, &mut b, 1 << 20).unwrap();
        let origin = Some(Arc::new(Origin { exchange: "x".into(), routing_key: "k".into() }));
        let msgs = vec![Delivered { redelivered: true, entry: entries.clone(), origin }];
        let reply = Reply::Deliver { owner: 1, consumer_id: 3, first_tag: 5, msgs };
        encode(&DataMsg::Reply { shard: 0, conn: 7, reply }, &mut b, 1 << 20).unwrap();
        let err = Reply::error(4, crate::protocol::ErrorCode::QueueNotFound, "no queue");
        encode(&DataMsg::Reply { shard: 0, conn: 7, reply: err }, &mut b, 1 << 20).unwrap();
        let got = frames_of(&b);
        assert_eq!(got.len(), 3);
        match &got[0] {
            DataMsg::Request { shard: 1, conn: 7, request_id: 9, req: Request::Publish { queue, entries: e, .. } } => {
                assert_eq!(queue, "/\u{0}q");
                assert_eq!(e, &entries);
            }
            other => panic!("{other:?}"),
        }
        match &got[1] {
            DataMsg::Reply { reply: Reply::Deliver { owner: 1, first_tag: 5, msgs, .. }, .. } => {
                assert!(msgs[0].redelivered);
                assert_eq!(msgs[0].origin.as_deref().map(|o| o.routing_key.as_str()), Some("k"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            &got[2],
            DataMsg::Reply { reply: Reply::Error { code: crate::protocol::ErrorCode::QueueNotFound, .. }, .. }
        ));
        let _ = ConnRef { shard: 0, conn_id: 0 };
    }

    /// A direct reply crosses the link with every field as sent; a prefix
    /// of it never decodes.
    #[test]
    fn a_direct_reply_round_trips() {
        let mut b = BytesMut::new();
        let entries = Bytes::from_static(b"\x00\x02\x00\x00\x00re");
        let req = Request::DirectReply {
            conn_id: u64::MAX,
            channel: 7,
            token: 0xfeed_f00d,
            entries: entries.clone(),
            count: 1,
            confirm: true,
            mandatory: false,
        };
        encode(&DataMsg::Request { shard: 1, conn: 2, request_id: 3, req }, &mut b, 1 << 20).unwrap();
        let payload = b[HEADER_BYTES..].to_vec();
        match decode(&payload).unwrap() {
            DataMsg::Request {
                req: Request::DirectReply { conn_id, channel, token, entries: e, count, confirm, mandatory },
                ..
            } => {
                assert_eq!(
                    (conn_id, channel, token, count, confirm, mandatory),
                    (u64::MAX, 7, 0xfeed_f00d, 1, true, false)
                );
                assert_eq!(e, entries);
            }
            other => panic!("{other:?}"),
        }
        for n in 0..payload.len() {
            assert!(decode(&payload[..n]).is_err(), "a strict prefix ({n} bytes) decodes");
        }
    }

    #[test]
    fn a_message_past_the_frame_limit_is_refused_and_leaves_the_buffer_alone() {
        let mut b = BytesMut::from(&b"before"[..]);
        let req = Request::Purge { queue: "q".repeat(200) };
        let e = encode(&DataMsg::Request { shard: 0, conn: 1, request_id: 1, req }, &mut b, 64).unwrap_err();
        assert!(matches!(e, EncodeError::TooLarge { len } if len > 64));
        assert_eq!(&b[..], b"before");
    }

    #[test]
    fn bad_arguments_and_garbage_do_not_decode() {
        // A declare whose arguments are not a field table.
        let mut b = BytesMut::new();
        let args = Box::new(crate::server::policy::QueueArgs::default());
        let req = Request::Declare {
            durable: true,
            passive: false,
            queue: "q".into(),
            exclusive: false,
            auto_delete: false,
            strict: true,
            args,
        };
        encode(&DataMsg::Request { shard: 0, conn: 1, request_id: 1, req }, &mut b, 1 << 20).unwrap();
        let payload = b[HEADER_BYTES..].to_vec();
        assert!(decode(&payload).is_ok());
        // Its last byte is the empty table's length (0): claim 3 bytes of
        // table that are not a table.
        let mut bad = payload.clone();
        let last = bad.len() - 1;
        bad[last] = 3;
        bad.extend_from_slice(&[0xff, 0xff, 0xff]);
        assert!(decode(&bad).is_err());
        for n in 0..payload.len() {
            assert!(decode(&payload[..n]).is_err(), "a strict prefix ({n} bytes) decodes");
        }
        assert!(decode(&[0xff; 32]).is_err());
    }
}
