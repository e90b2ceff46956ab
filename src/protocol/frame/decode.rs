//! Decoding a native frame: the header checked first (size limit, magic
//! opcode), then the body of each command, borrowing from the buffer.

use super::{Cmd, Decoded, DeliverOrigin, Frame, HelloOk, StreamAt, MAGIC};
use crate::protocol::batch::{Entries, Ranges};
use crate::protocol::error::DecodeError;
use crate::protocol::field_table::{self, TABLE_DEPTH_MAX};
use crate::protocol::header::{FrameHeader, HEADER_BYTES};
use crate::protocol::op;
use crate::protocol::wire::Cursor;
use zerocopy::FromBytes;

/// Decodes one frame from the front of `buf`. Checks `frame_bytes_max`
/// from the header alone, before anything is buffered or allocated.
/// Declare arguments may nest [`TABLE_DEPTH_MAX`] levels.
pub fn decode(buf: &[u8], frame_bytes_max: usize) -> Result<Decoded<'_>, DecodeError> {
    decode_limited(buf, frame_bytes_max, TABLE_DEPTH_MAX)
}

/// [`decode`] with the broker's `table_depth_max` for Declare arguments.
pub fn decode_limited(buf: &[u8], frame_bytes_max: usize, table_depth_max: usize) -> Result<Decoded<'_>, DecodeError> {
    let Some((h, len)) = peek(buf, frame_bytes_max)? else {
        return Ok(Decoded::Incomplete);
    };
    if buf.len() < len {
        return Ok(Decoded::Incomplete);
    }
    let body = &buf[HEADER_BYTES..len];
    let cmd = decode_body(h.opcode, h.flags, body, table_depth_max)?;
    Ok(Decoded::Frame(Frame { request_id: h.request_id.get(), cmd }, len))
}

/// Length of the frame at the front of `buf` once its header has arrived,
/// after checking the header and the size limit; `None` before that. Lets a
/// reader size its buffer for a frame before the body arrives.
pub fn peek_len(buf: &[u8], frame_bytes_max: usize) -> Result<Option<usize>, DecodeError> {
    Ok(peek(buf, frame_bytes_max)?.map(|(_, len)| len))
}

fn peek(buf: &[u8], frame_bytes_max: usize) -> Result<Option<(FrameHeader, usize)>, DecodeError> {
    let Ok((h, _)) = FrameHeader::read_from_prefix(buf) else {
        return Ok(None);
    };
    if h.reserved.get() != 0 {
        return Err(DecodeError::Reserved(h.reserved.get()));
    }
    if !op::is_known(h.opcode) {
        return Err(DecodeError::UnknownOpcode(h.opcode));
    }
    // In u64: `HEADER_BYTES + body_len` must not wrap where usize is 32 bits.
    let len = HEADER_BYTES as u64 + u64::from(h.body_len.get());
    match usize::try_from(len) {
        Ok(len) if len <= frame_bytes_max => Ok(Some((h, len))),
        _ => Err(DecodeError::TooLarge { len: usize::try_from(len).unwrap_or(usize::MAX), max: frame_bytes_max }),
    }
}

fn known_flags(flags: u8, known: u8, what: &'static str) -> Result<u8, DecodeError> {
    if flags & !known != 0 {
        return Err(DecodeError::Malformed { what, why: "unknown flags set" });
    }
    Ok(flags)
}

/// The arguments block of a Declare: `u32` length, then a non-empty AMQP
/// field table of at most `DECLARE_ARGS_BYTES_MAX` bytes, checked here so
/// the broker only ever sees a well-formed table.
fn declare_args<'a>(c: &mut Cursor<'a>, table_depth_max: usize) -> Result<&'a [u8], DecodeError> {
    let what = "Declare";
    let n = c.len32()?;
    if n == 0 {
        return Err(DecodeError::Malformed { what, why: "arguments flag with empty arguments" });
    }
    if n > op::DECLARE_ARGS_BYTES_MAX {
        return Err(DecodeError::Malformed { what, why: "arguments larger than 65535 bytes" });
    }
    let args = c.bytes(n)?;
    field_table::validate(args, table_depth_max).map_err(|err| DecodeError::Table { what, err })?;
    Ok(args)
}

fn decode_body(opcode: u8, flags: u8, body: &[u8], table_depth_max: usize) -> Result<Cmd<'_>, DecodeError> {
    let what = op::name(opcode);
    let mut c = Cursor::new(body, what);
    // Every opcode rejects flags it does not define, so a frame has exactly
    // one encoding and a future flag is never silently ignored.
    let flags = known_flags(flags, op::known_flags(opcode), what)?;
    let cmd = match opcode {
        op::HELLO => {
            if c.bytes(4)? != MAGIC {
                return Err(DecodeError::Malformed { what, why: "bad magic: not a ringmq client" });
            }
            let (version, user, password) = (c.u16()?, c.str16()?, c.str16()?);
            if flags & op::HELLO_VHOST != 0 {
                let heartbeat_ms = Some(c.u32()?).filter(|h| *h > 0);
                Cmd::Hello { version, user, password, heartbeat_ms, vhost: Some(c.str16()?) }
            } else {
                Cmd::Hello { version, user, password, heartbeat_ms: optional_u32(&mut c)?, vhost: None }
            }
        }
        op::HELLO_OK => {
            let version = c.u16()?;
            let shard_id = c.u16()?;
            let shard_count = c.u16()?;
            let hash_id = c.u8()?;
            let frame_bytes_max = c.u32()?;
            let message_bytes_max = c.u32()?;
            let prefetch_max = c.u32()?;
            // Each address takes at least its 2-byte length: bound the Vec
            // by the body before allocating it.
            if usize::from(shard_count) * 2 > c.remaining() || shard_count == 0 {
                return Err(DecodeError::Malformed { what, why: "bad shard count" });
            }
            if shard_id >= shard_count {
                return Err(DecodeError::Malformed { what, why: "shard id outside the shard map" });
            }
            let mut shard_addrs = Vec::with_capacity(shard_count.into());
            for _ in 0..shard_count {
                shard_addrs.push(c.str16()?);
            }
            Cmd::HelloOk(HelloOk {
                version,
                shard_id,
                hash_id,
                frame_bytes_max,
                message_bytes_max,
                prefetch_max,
                shard_addrs,
                heartbeat_ms: optional_u32(&mut c)?,
            })
        }
        op::OK => Cmd::Ok { value: c.u64()? },
        op::ERROR => {
            let fatal = flags & op::FLAG_FATAL != 0;
            Cmd::Error { fatal, code: c.u16()?, message: c.str16()? }
        }
        op::PING => Cmd::Ping,
        op::PONG => Cmd::Pong,
        op::BLOCKED => Cmd::Blocked { reason: c.str16()? },
        op::UNBLOCKED => Cmd::Unblocked,
        op::DECLARE => {
            let queue = c.str8()?;
            let args = if flags & op::DECLARE_HAS_ARGS != 0 { declare_args(&mut c, table_depth_max)? } else { &[] };
            Cmd::Declare { flags, queue, args }
        }
        op::DELETE => Cmd::Delete { flags, queue: c.str8()? },
        op::PURGE => Cmd::Purge { queue: c.str8()? },
        op::PUBLISH => {
            let queue = c.str8()?;
            let count = c.u32()?;
            Cmd::Publish { flags, queue, entries: Entries::parse(c.rest(), count)? }
        }
        op::EXCHANGE_DECLARE => {
            Cmd::ExchangeDeclare { flags, exchange: c.str8()?, kind: c.str8()?, args: table32(&mut c)? }
        }
        op::EXCHANGE_DELETE => Cmd::ExchangeDelete { flags, exchange: c.str8()? },
        op::BIND | op::UNBIND => {
            let (source, destination, routing_key) = (c.str8()?, c.str8()?, c.str8()?);
            let args = table32(&mut c)?;
            if opcode == op::BIND {
                Cmd::Bind { flags, source, destination, routing_key, args }
            } else {
                Cmd::Unbind { flags, source, destination, routing_key, args }
            }
        }
        op::PUBLISH_TO => {
            let (exchange, routing_key) = (c.str8()?, c.str8()?);
            let count = c.u32()?;
            Cmd::PublishTo { flags, exchange, routing_key, entries: Entries::parse(c.rest(), count)? }
        }
        op::CONFIRM => Cmd::Confirm { count: c.u32()? },
        op::SUBSCRIBE => {
            let (consumer_id, prefetch, queue) = (c.u32()?, c.u32()?, c.str8()?);
            let priority = if flags & op::SUBSCRIBE_PRIORITY != 0 { c.i64()? } else { 0 };
            // One encoding per frame: 0 is sent as no flag.
            if flags & op::SUBSCRIBE_PRIORITY != 0 && priority == 0 {
                return Err(DecodeError::Malformed { what, why: "priority flag with priority 0" });
            }
            Cmd::Subscribe { consumer_id, prefetch, queue, priority, origin: flags & op::SUBSCRIBE_ORIGIN != 0 }
        }
        op::STREAM_SUBSCRIBE => {
            let (consumer_id, prefetch, queue) = (c.u32()?, c.u32()?, c.str8()?);
            let at = StreamAt::decode(c.u8()?, c.u64()?).ok_or(DecodeError::Malformed {
                what,
                why: "stream position kind is not 0..=4, or a value is given for first, last or next",
            })?;
            Cmd::StreamSubscribe { consumer_id, prefetch, queue, at, origin: flags & op::SUBSCRIBE_ORIGIN != 0 }
        }
        op::STORE_OFFSET => Cmd::StoreOffset { queue: c.str8()?, reference: c.str8()?, offset: c.u64()? },
        op::QUERY_OFFSET => Cmd::QueryOffset { queue: c.str8()?, reference: c.str8()? },
        op::UNSUBSCRIBE => Cmd::Unsubscribe { consumer_id: c.u32()? },
        op::DELIVER => {
            let consumer_id = c.u32()?;
            let first_tag = c.u64()?;
            let origin = if flags & op::DELIVER_ORIGIN != 0 {
                Some(DeliverOrigin { exchange: c.str8()?, routing_key: c.str8()? })
            } else {
                None
            };
            let count = c.u32()?;
            Cmd::Deliver { consumer_id, first_tag, origin, entries: Entries::parse(c.rest(), count)? }
        }
        op::CONSUMER_CANCELLED => Cmd::ConsumerCancelled { consumer_id: c.u32()?, code: c.u16()?, message: c.str16()? },
        op::REPLY_TO => Cmd::ReplyTo { consumer_id: c.u32()?, name: c.str8()? },
        op::ACK => {
            let consumer_id = c.u32()?;
            let count = c.u32()?;
            Cmd::Ack { consumer_id, ranges: Ranges::parse(c.rest(), count)? }
        }
        op::NACK => {
            let requeue = flags & op::NACK_REQUEUE != 0;
            let consumer_id = c.u32()?;
            let count = c.u32()?;
            Cmd::Nack { requeue, consumer_id, ranges: Ranges::parse(c.rest(), count)? }
        }
        op::GET => {
            let no_ack = flags & op::GET_NO_ACK != 0;
            Cmd::Get { no_ack, consumer_id: c.u32()?, queue: c.str8()? }
        }
        op::GET_OK => {
            let consumer_id = c.u32()?;
            let tag = c.u64()?;
            let remaining = c.u32()?;
            let entries = Entries::parse(c.rest(), 1)?;
            let entry = entries.iter().next().ok_or(DecodeError::Malformed { what, why: "no entry" })?;
            Cmd::GetOk { consumer_id, tag, remaining, entry }
        }
        op::GET_EMPTY => Cmd::GetEmpty,
        op::MAP_GET => Cmd::MapGet,
        op::MAP => Cmd::Map(decode_map(&mut c)?),
        op::MAP_CHANGED => Cmd::MapChanged { version: c.u32()? },
        op::LOCATE => Cmd::Locate { queue: c.str8()? },
        op::ADMIN => {
            let command = c.u8()?;
            if command == 0 || command > op::ADMIN_COMMAND_MAX {
                return Err(DecodeError::Malformed { what, why: "unknown admin command" });
            }
            Cmd::Admin { command, arg: c.str16()? }
        }
        op::ADMIN_OK => {
            let json = std::str::from_utf8(c.rest()).map_err(|_| DecodeError::Malformed { what, why: "not UTF-8" })?;
            Cmd::AdminOk { json }
        }
        other => return Err(DecodeError::UnknownOpcode(other)),
    };
    c.finish()?;
    Ok(cmd)
}

/// A trailing field a newer peer adds: absent, or exactly a u32.
/// Rare (once a connection, and when the map moves): kept out of the
/// decoder's hot body, which every delivery runs through.
#[cold]
#[inline(never)]
fn decode_map<'a>(c: &mut Cursor<'a>) -> Result<crate::protocol::cluster_map::ClusterMap<'a>, DecodeError> {
    crate::protocol::cluster_map::decode(c)
}

fn optional_u32(c: &mut Cursor<'_>) -> Result<Option<u32>, DecodeError> {
    if c.remaining() == 0 {
        Ok(None)
    } else {
        c.u32().map(Some)
    }
}

/// A `u32`-length-prefixed block (argument tables).
fn table32<'a>(c: &mut Cursor<'a>) -> Result<&'a [u8], DecodeError> {
    let n = c.len32()?;
    c.bytes(n)
}
