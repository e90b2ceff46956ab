//! Encoding a native frame into a `BytesMut`: the header with its length
//! patched in after the body.

use super::{Cmd, Frame, MAGIC};
use crate::protocol::batch::put_entry;
use crate::protocol::header::{FrameHeader, HEADER_BYTES};
use crate::protocol::op;
use crate::protocol::wire::{len16, len32, put_str16, put_str8};
use bytes::{BufMut, BytesMut};
use zerocopy::IntoBytes;

fn put_table32(buf: &mut BytesMut, t: &[u8]) {
    buf.put_u32_le(len32(t.len()));
    buf.put_slice(t);
}

impl Frame<'_> {
    /// Appends the encoded frame to `buf`.
    pub fn encode(&self, buf: &mut BytesMut) {
        let start = buf.len();
        let (opcode, flags) = self.cmd.opcode_flags();
        buf.put_slice(FrameHeader::new(opcode, flags, self.request_id, 0).as_bytes());
        self.cmd.encode_body(buf);
        let body_len = len32(buf.len() - start - HEADER_BYTES);
        buf[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    }
}

impl Cmd<'_> {
    pub fn name(&self) -> &'static str {
        op::name(self.opcode_flags().0)
    }

    fn opcode_flags(&self) -> (u8, u8) {
        match self {
            Cmd::Hello { vhost, .. } => (op::HELLO, if vhost.is_some() { op::HELLO_VHOST } else { 0 }),
            Cmd::HelloOk(_) => (op::HELLO_OK, 0),
            Cmd::Ok { .. } => (op::OK, 0),
            Cmd::Error { fatal, .. } => (op::ERROR, if *fatal { op::FLAG_FATAL } else { 0 }),
            Cmd::Ping => (op::PING, 0),
            Cmd::Pong => (op::PONG, 0),
            Cmd::Blocked { .. } => (op::BLOCKED, 0),
            Cmd::Unblocked => (op::UNBLOCKED, 0),
            Cmd::Declare { flags, args, .. } => {
                let has = if args.is_empty() { 0 } else { op::DECLARE_HAS_ARGS };
                (op::DECLARE, (*flags & !op::DECLARE_HAS_ARGS) | has)
            }
            Cmd::Delete { flags, .. } => (op::DELETE, *flags),
            Cmd::Purge { .. } => (op::PURGE, 0),
            Cmd::Publish { flags, .. } => (op::PUBLISH, *flags),
            Cmd::ExchangeDeclare { flags, .. } => (op::EXCHANGE_DECLARE, *flags),
            Cmd::ExchangeDelete { flags, .. } => (op::EXCHANGE_DELETE, *flags),
            Cmd::Bind { flags, .. } => (op::BIND, *flags),
            Cmd::Unbind { flags, .. } => (op::UNBIND, *flags),
            Cmd::PublishTo { flags, .. } => (op::PUBLISH_TO, *flags),
            Cmd::Confirm { .. } => (op::CONFIRM, 0),
            Cmd::Subscribe { priority, origin, .. } => (
                op::SUBSCRIBE,
                if *priority == 0 { 0 } else { op::SUBSCRIBE_PRIORITY }
                    | if *origin { op::SUBSCRIBE_ORIGIN } else { 0 },
            ),
            Cmd::StreamSubscribe { origin, .. } => {
                (op::STREAM_SUBSCRIBE, if *origin { op::SUBSCRIBE_ORIGIN } else { 0 })
            }
            Cmd::StoreOffset { .. } => (op::STORE_OFFSET, 0),
            Cmd::QueryOffset { .. } => (op::QUERY_OFFSET, 0),
            Cmd::Unsubscribe { .. } => (op::UNSUBSCRIBE, 0),
            Cmd::Deliver { origin, .. } => (op::DELIVER, if origin.is_some() { op::DELIVER_ORIGIN } else { 0 }),
            Cmd::ConsumerCancelled { .. } => (op::CONSUMER_CANCELLED, 0),
            Cmd::ReplyTo { .. } => (op::REPLY_TO, 0),
            Cmd::Ack { .. } => (op::ACK, 0),
            Cmd::Nack { requeue, .. } => (op::NACK, if *requeue { op::NACK_REQUEUE } else { 0 }),
            Cmd::Get { no_ack, .. } => (op::GET, if *no_ack { op::GET_NO_ACK } else { 0 }),
            Cmd::GetOk { .. } => (op::GET_OK, 0),
            Cmd::GetEmpty => (op::GET_EMPTY, 0),
            Cmd::Admin { .. } => (op::ADMIN, 0),
            Cmd::AdminOk { .. } => (op::ADMIN_OK, 0),
            Cmd::MapGet => (op::MAP_GET, 0),
            Cmd::Map(_) => (op::MAP, 0),
            Cmd::MapChanged { .. } => (op::MAP_CHANGED, 0),
            Cmd::Locate { .. } => (op::LOCATE, 0),
        }
    }

    fn encode_body(&self, buf: &mut BytesMut) {
        match self {
            Cmd::Hello { version, user, password, heartbeat_ms, vhost } => {
                buf.put_slice(&MAGIC);
                buf.put_u16_le(*version);
                put_str16(buf, user);
                put_str16(buf, password);
                match vhost {
                    Some(v) => {
                        buf.put_u32_le(heartbeat_ms.unwrap_or(0));
                        put_str16(buf, v);
                    }
                    None => {
                        if let Some(hb) = heartbeat_ms {
                            buf.put_u32_le(*hb);
                        }
                    }
                }
            }
            Cmd::HelloOk(h) => {
                buf.put_u16_le(h.version);
                buf.put_u16_le(h.shard_id);
                buf.put_u16_le(len16(h.shard_addrs.len()));
                buf.put_u8(h.hash_id);
                buf.put_u32_le(h.frame_bytes_max);
                buf.put_u32_le(h.message_bytes_max);
                buf.put_u32_le(h.prefetch_max);
                for a in &h.shard_addrs {
                    put_str16(buf, a);
                }
                if let Some(hb) = h.heartbeat_ms {
                    buf.put_u32_le(hb);
                }
            }
            Cmd::Ok { value } => buf.put_u64_le(*value),
            Cmd::Error { code, message, .. } => {
                buf.put_u16_le(*code);
                put_str16(buf, message);
            }
            Cmd::Ping | Cmd::Pong | Cmd::GetEmpty | Cmd::Unblocked => {}
            Cmd::Blocked { reason } => put_str16(buf, reason),
            Cmd::Declare { queue, args, .. } => {
                put_str8(buf, queue);
                if !args.is_empty() {
                    buf.put_u32_le(len32(args.len()));
                    buf.put_slice(args);
                }
            }
            Cmd::Delete { queue, .. } | Cmd::Purge { queue } => put_str8(buf, queue),
            Cmd::Publish { queue, entries, .. } => {
                put_str8(buf, queue);
                buf.put_u32_le(entries.len());
                buf.put_slice(entries.raw());
            }
            Cmd::ExchangeDeclare { exchange, kind, args, .. } => {
                put_str8(buf, exchange);
                put_str8(buf, kind);
                put_table32(buf, args);
            }
            Cmd::ExchangeDelete { exchange, .. } => put_str8(buf, exchange),
            Cmd::Bind { source, destination, routing_key, args, .. }
            | Cmd::Unbind { source, destination, routing_key, args, .. } => {
                put_str8(buf, source);
                put_str8(buf, destination);
                put_str8(buf, routing_key);
                put_table32(buf, args);
            }
            Cmd::PublishTo { exchange, routing_key, entries, .. } => {
                put_str8(buf, exchange);
                put_str8(buf, routing_key);
                buf.put_u32_le(entries.len());
                buf.put_slice(entries.raw());
            }
            Cmd::Confirm { count } => buf.put_u32_le(*count),
            Cmd::Subscribe { consumer_id, prefetch, queue, priority, .. } => {
                buf.put_u32_le(*consumer_id);
                buf.put_u32_le(*prefetch);
                put_str8(buf, queue);
                if *priority != 0 {
                    buf.put_i64_le(*priority);
                }
            }
            Cmd::StreamSubscribe { consumer_id, prefetch, queue, at, .. } => {
                buf.put_u32_le(*consumer_id);
                buf.put_u32_le(*prefetch);
                put_str8(buf, queue);
                let (kind, value) = at.encode();
                buf.put_u8(kind);
                buf.put_u64_le(value);
            }
            Cmd::StoreOffset { queue, reference, offset } => {
                put_str8(buf, queue);
                put_str8(buf, reference);
                buf.put_u64_le(*offset);
            }
            Cmd::QueryOffset { queue, reference } => {
                put_str8(buf, queue);
                put_str8(buf, reference);
            }
            Cmd::Unsubscribe { consumer_id } => buf.put_u32_le(*consumer_id),
            Cmd::Deliver { consumer_id, first_tag, origin, entries } => {
                buf.put_u32_le(*consumer_id);
                buf.put_u64_le(*first_tag);
                if let Some(o) = origin {
                    put_str8(buf, o.exchange);
                    put_str8(buf, o.routing_key);
                }
                buf.put_u32_le(entries.len());
                buf.put_slice(entries.raw());
            }
            Cmd::ConsumerCancelled { consumer_id, code, message } => {
                buf.put_u32_le(*consumer_id);
                buf.put_u16_le(*code);
                put_str16(buf, message);
            }
            Cmd::ReplyTo { consumer_id, name } => {
                buf.put_u32_le(*consumer_id);
                put_str8(buf, name);
            }
            Cmd::Ack { consumer_id, ranges } | Cmd::Nack { consumer_id, ranges, .. } => {
                buf.put_u32_le(*consumer_id);
                buf.put_u32_le(len32(ranges.len()));
                buf.put_slice(ranges.raw());
            }
            Cmd::Get { consumer_id, queue, .. } => {
                buf.put_u32_le(*consumer_id);
                put_str8(buf, queue);
            }
            Cmd::GetOk { consumer_id, tag, remaining, entry } => {
                buf.put_u32_le(*consumer_id);
                buf.put_u64_le(*tag);
                buf.put_u32_le(*remaining);
                put_entry(buf, entry.flags, entry.props, entry.body);
            }
            Cmd::Admin { command, arg } => {
                buf.put_u8(*command);
                put_str16(buf, arg);
            }
            Cmd::AdminOk { json } => buf.put_slice(json.as_bytes()),
            Cmd::MapGet => {}
            Cmd::Map(m) => m.encode(buf),
            Cmd::MapChanged { version } => buf.put_u32_le(*version),
            Cmd::Locate { queue } => put_str8(buf, queue),
        }
    }
}

/// Appends an ack or nack frame for `ranges` without building a `Ranges`.
pub fn encode_ack(buf: &mut BytesMut, request_id: u64, nack: Option<bool>, consumer_id: u32, ranges: &[(u64, u64)]) {
    let (opcode, flags) = match nack {
        None => (op::ACK, 0),
        Some(requeue) => (op::NACK, if requeue { op::NACK_REQUEUE } else { 0 }),
    };
    let body_len = 8 + 16 * ranges.len();
    buf.reserve(HEADER_BYTES + body_len);
    buf.put_slice(FrameHeader::new(opcode, flags, request_id, len32(body_len)).as_bytes());
    buf.put_u32_le(consumer_id);
    buf.put_u32_le(len32(ranges.len()));
    for (a, b) in ranges {
        buf.put_u64_le(*a);
        buf.put_u64_le(*b);
    }
}
