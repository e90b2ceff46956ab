//! The native protocol's frames: decode from a byte slice, encode into a
//! `BytesMut`. Sans-IO. (AMQP 0-9-1 framing is [`super::amqp::frame`].)

use super::batch::{put_entry, Entries, Entry, Ranges};
use super::error::DecodeError;
use super::field_table::{self, TABLE_DEPTH_MAX};
use super::header::{FrameHeader, HEADER_BYTES};
use super::op;
use super::wire::{put_str16, put_str8, Cursor};
use crate::protocol::wire::{len16, len32};
use bytes::{BufMut, BytesMut};
use zerocopy::{FromBytes, IntoBytes};

/// Protocol magic sent in `Hello`.
pub const MAGIC: [u8; 4] = *b"RGMQ";
/// Protocol version this build speaks.
pub const VERSION: u16 = 1;

/// A decoded frame: its request id and its command. Borrows the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    pub request_id: u64,
    pub cmd: Cmd<'a>,
}

/// The exchange and routing key a `Deliver` frame's messages were
/// published with (`DELIVER_ORIGIN`), for consumers that asked
/// (`SUBSCRIBE_ORIGIN`). Through the default exchange: `""` and the
/// queue's name. Each at most 255 bytes (a short string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliverOrigin<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
}

/// Where a `StreamSubscribe` starts: on the wire a kind byte and a `u64`
/// (0 first, 1 last, 2 next, each with value 0; 3 an offset; 4 a wall-clock
/// time in milliseconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamAt {
    First,
    Last,
    Next,
    Offset(u64),
    Timestamp(u64),
}

impl StreamAt {
    pub fn encode(self) -> (u8, u64) {
        match self {
            StreamAt::First => (0, 0),
            StreamAt::Last => (1, 0),
            StreamAt::Next => (2, 0),
            StreamAt::Offset(o) => (3, o),
            StreamAt::Timestamp(ms) => (4, ms),
        }
    }

    /// `None` for an unknown kind, or a value with a kind that takes none
    /// (one encoding per frame).
    pub fn decode(kind: u8, value: u64) -> Option<Self> {
        match (kind, value) {
            (0, 0) => Some(StreamAt::First),
            (1, 0) => Some(StreamAt::Last),
            (2, 0) => Some(StreamAt::Next),
            (3, o) => Some(StreamAt::Offset(o)),
            (4, ms) => Some(StreamAt::Timestamp(ms)),
            _ => None,
        }
    }
}

/// `Admin`: an operator command (`op::ADMIN_*`) and its argument (a queue
/// or connection name; empty for the listings). `AdminOk`: its answer, a
/// UTF-8 JSON document, the rest of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd<'a> {
    /// `heartbeat_ms`: the beat the client wants, an optional trailing
    /// field (clients before it send none: no heartbeats). `vhost`: the
    /// vhost to work in (`/` when absent), sent after the heartbeat field
    /// under flag `HELLO_VHOST` (the heartbeat is then 0 for none).
    Hello {
        version: u16,
        user: &'a str,
        password: &'a str,
        heartbeat_ms: Option<u32>,
        vhost: Option<&'a str>,
    },
    HelloOk(HelloOk<'a>),
    Ok {
        value: u64,
    },
    Error {
        fatal: bool,
        code: u16,
        message: &'a str,
    },
    Ping,
    Pong,
    /// Server notice (request id 0): a resource alarm is in effect and
    /// the connection, which published, is no longer read; `reason` says
    /// which alarm. `Unblocked` follows once every alarm has cleared.
    Blocked {
        reason: &'a str,
    },
    Unblocked,
    /// `args`: a raw AMQP field table (queue arguments), empty for none.
    /// The `DECLARE_HAS_ARGS` header flag is set exactly when it is not
    /// empty: `encode` sets it, `decode` reports it in `flags`.
    Declare {
        flags: u8,
        queue: &'a str,
        args: &'a [u8],
    },
    Delete {
        flags: u8,
        queue: &'a str,
    },
    Purge {
        queue: &'a str,
    },
    Publish {
        flags: u8,
        queue: &'a str,
        entries: Entries<'a>,
    },
    /// `args`: an AMQP 0-9-1 field table (without its length prefix),
    /// opaque to the codec; the broker parses it.
    ExchangeDeclare {
        flags: u8,
        exchange: &'a str,
        kind: &'a str,
        args: &'a [u8],
    },
    ExchangeDelete {
        flags: u8,
        exchange: &'a str,
    },
    Bind {
        flags: u8,
        source: &'a str,
        destination: &'a str,
        routing_key: &'a str,
        args: &'a [u8],
    },
    Unbind {
        flags: u8,
        source: &'a str,
        destination: &'a str,
        routing_key: &'a str,
        args: &'a [u8],
    },
    PublishTo {
        flags: u8,
        exchange: &'a str,
        routing_key: &'a str,
        entries: Entries<'a>,
    },
    Confirm {
        count: u32,
    },
    /// `priority`: the consumer priority (AMQP's `x-priority`), 0 by
    /// default. It travels only when not 0, under `SUBSCRIBE_PRIORITY`, so
    /// a Subscribe without it is byte for byte what older clients send.
    /// `origin` (flag `SUBSCRIBE_ORIGIN`): the consumer's `Deliver`
    /// frames carry the exchange and routing key.
    Subscribe {
        consumer_id: u32,
        prefetch: u32,
        queue: &'a str,
        priority: i64,
        origin: bool,
    },
    /// A stream consumer starting at `at` (`docs/streams.md`); a classic
    /// queue ignores `at`, as it ignores AMQP's `x-stream-offset`.
    StreamSubscribe {
        consumer_id: u32,
        prefetch: u32,
        queue: &'a str,
        at: StreamAt,
        origin: bool,
    },
    /// Server-side offset tracking: `offset` stored for `reference` on the
    /// stream `queue`.
    StoreOffset {
        queue: &'a str,
        reference: &'a str,
        offset: u64,
    },
    QueryOffset {
        queue: &'a str,
        reference: &'a str,
    },
    Unsubscribe {
        consumer_id: u32,
    },
    /// `origin` (flag `DELIVER_ORIGIN`): every entry of the frame was
    /// published through it; only to consumers that asked.
    Deliver {
        consumer_id: u32,
        first_tag: u64,
        origin: Option<DeliverOrigin<'a>>,
        entries: Entries<'a>,
    },
    /// The broker cancelled `consumer_id` (`code` says why, e.g.
    /// `ConsumerTimeout`); nothing more comes for it, and its unacked
    /// messages are back in the queue.
    ConsumerCancelled {
        consumer_id: u32,
        code: u16,
        message: &'a str,
    },
    /// The answer to a Subscribe to the direct reply-to pseudo-queue: the
    /// generated `name` (`protocol::reply_to`) replies are published to.
    ReplyTo {
        consumer_id: u32,
        name: &'a str,
    },
    Ack {
        consumer_id: u32,
        ranges: Ranges<'a>,
    },
    Nack {
        requeue: bool,
        consumer_id: u32,
        ranges: Ranges<'a>,
    },
    Get {
        no_ack: bool,
        consumer_id: u32,
        queue: &'a str,
    },
    GetOk {
        consumer_id: u32,
        tag: u64,
        remaining: u32,
        entry: Entry<'a>,
    },
    GetEmpty,
    Admin {
        command: u8,
        arg: &'a str,
    },
    AdminOk {
        json: &'a str,
    },
    /// The cluster map (`cluster_map`): asked for, sent, changed.
    MapGet,
    Map(super::cluster_map::ClusterMap<'a>),
    MapChanged {
        version: u32,
    },
    /// Where `queue` lives, answered `Ok` (`cluster_map::located`).
    Locate {
        queue: &'a str,
    },
}

/// The handshake reply: who the client is talking to and where every
/// shard listens, so it can send each queue's traffic to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloOk<'a> {
    pub version: u16,
    pub shard_id: u16,
    pub hash_id: u8,
    pub frame_bytes_max: u32,
    pub message_bytes_max: u32,
    pub prefetch_max: u32,
    pub shard_addrs: Vec<&'a str>,
    /// The negotiated heartbeat, an optional trailing field: sent only
    /// to a client whose Hello carried one (0 = no heartbeats).
    pub heartbeat_ms: Option<u32>,
}

pub enum Decoded<'a> {
    /// Not a whole frame yet: read more bytes.
    Incomplete,
    /// A frame and the number of bytes it used.
    Frame(Frame<'a>, usize),
}

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
fn decode_map<'a>(c: &mut Cursor<'a>) -> Result<super::cluster_map::ClusterMap<'a>, DecodeError> {
    super::cluster_map::decode(c)
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

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // test data is small
#[path = "frame_tests.rs"]
mod tests;
