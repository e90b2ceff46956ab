//! The native protocol's frames: decode from a byte slice, encode into a
//! `BytesMut`. Sans-IO. (AMQP 0-9-1 framing is [`super::amqp::frame`].)

use super::batch::{Entries, Entry, Ranges};

mod decode;
mod encode;
pub use decode::{decode, decode_limited, peek_len};
pub use encode::encode_ack;

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

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // test data is small
#[path = "frame_tests.rs"]
mod tests;
