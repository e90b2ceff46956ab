//! The values that cross between a connection and a queue's owner, locally
//! or over the mesh. All are `Send`: the same types serve both paths.

use super::policy::QueueArgs;
use crate::protocol::ErrorCode;
use crate::routing::{BindingDef, Change};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One queue's share of a routed batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    pub queue: String,
    pub entries: Bytes,
    pub count: u32,
}

/// One queue's share of a transaction's publish (`Request::TxPart`):
/// `publish` is the index of the client's publish batch it came from, so
/// the coordinator can tell which mandatory publishes reached no queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TxTarget {
    pub publish: u32,
    pub target: Target,
    pub persistent: bool,
    pub origin: Option<Arc<Origin>>,
}

/// An ack, or a nack (`requeue` set or not), a transaction applies at
/// commit: one consumer's queue-level tags.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TxAck {
    pub consumer_id: u32,
    pub queue: String,
    /// `None`: an ack; `Some(requeue)`: a nack or reject.
    pub nack: Option<bool>,
    pub ranges: Vec<(u64, u64)>,
}

/// A connection, named by the shard that holds its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConnRef {
    pub shard: u16,
    pub conn_id: u64,
}

/// A message as a queue holds it: its entry exactly as it came off the
/// wire (flags, properties, body), a slice of the buffer it was read into.
/// No copy between the socket and the consumer's frame, and one reference
/// count per message. A spilled message (over the shard's memory budget)
/// has an empty `entry` and its record's location in `spilled`; it is read
/// back before it is delivered, so a delivered message is never spilled.
#[derive(Debug, Clone)]
pub struct Message {
    pub seq: u64,
    pub entry: Bytes,
    pub persistent: bool,
    pub redelivered: bool,
    /// Its priority level (0 unless the queue has `x-max-priority`).
    pub prio: u8,
    /// When it expires, in the shard's milliseconds (`u64::MAX`: never).
    pub deadline: u64,
    /// The exchange and routing key it was published with, when they are
    /// not the default exchange and the queue's name (dead-lettering
    /// reports them in `x-death`). Routing sets it; `None` costs nothing.
    pub origin: Option<Arc<Origin>>,
    /// Set while the entry is on disk only (`queue/spill.rs`).
    pub spilled: Option<Spilled>,
}

/// Where a spilled message's entry is, and the sizes it counts for while
/// it is not in memory: `bytes()` and `body_bytes()` give the same answer
/// spilled or not, so the queue's byte accounting (`x-max-length-bytes`,
/// publish pause, stats) never depends on whether it was spilled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spilled {
    /// The log record; `loc.len` is the entry's length.
    pub loc: crate::storage::Loc,
    /// The body's length (what `x-max-length-bytes` counts).
    pub body_len: u32,
    /// Restored by recovery without its entry: its per-message
    /// `expiration` is applied when it is read back.
    pub recovered: bool,
}

/// Where a message was published to (see `Message::origin`); the log
/// records it too (`storage::origin`), so it survives a restart.
pub use crate::storage::Origin;

impl Message {
    /// A message as published: no priority, no deadline, default exchange.
    pub fn new(seq: u64, entry: Bytes, persistent: bool) -> Self {
        Self { seq, entry, persistent, redelivered: false, prio: 0, deadline: u64::MAX, origin: None, spilled: None }
    }

    /// The entry's length, whether it is in memory or spilled.
    pub fn bytes(&self) -> usize {
        self.spilled.map_or(self.entry.len(), |s| s.loc.len as usize)
    }

    /// Bytes of the body alone (`x-max-length-bytes` counts these), read
    /// from the entry's header (or kept in `spilled` while it is on disk).
    pub fn body_bytes(&self) -> u64 {
        match self.spilled {
            Some(s) => u64::from(s.body_len),
            None => crate::protocol::batch::entry_body_len(&self.entry),
        }
    }
}

/// How a publish batch is taken (see `Request::Publish`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishMode {
    pub persistent: bool,
    pub confirm: bool,
    pub partial: bool,
    /// A client's publish: `Some(mandatory)`, and the owner counts it as
    /// routed or, when the queue is not there, as unroutable (returned
    /// when mandatory, dropped otherwise). `None` for dead-lettering,
    /// which RabbitMQ does not count as received or routed.
    pub mandatory: Option<bool>,
}

/// A message on its way out to a consumer on another shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivered {
    pub redelivered: bool,
    pub entry: Bytes,
    pub origin: Option<Arc<Origin>>,
}

impl From<&Message> for Delivered {
    fn from(m: &Message) -> Self {
        Self { redelivered: m.redelivered, entry: m.entry.clone(), origin: m.origin.clone() }
    }
}

impl From<crate::server::queue::Delivery<'_>> for Delivered {
    fn from(d: crate::server::queue::Delivery<'_>) -> Self {
        Self { redelivered: d.redelivered, entry: d.entry.clone(), origin: d.origin.cloned() }
    }
}

/// Where a stream consumer starts reading (AMQP `x-stream-offset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum StreamOffset {
    /// The oldest message the stream still holds.
    First,
    /// The start of the last chunk (the last publish batch appended).
    Last,
    /// Only messages appended after the consumer attached (RabbitMQ's
    /// default).
    #[default]
    Next,
    /// This offset; below the first one held, the first; past the end, the
    /// end.
    Offset(u64),
    /// The first message appended at or after this wall-clock time
    /// (milliseconds since the epoch).
    Timestamp(u64),
}

/// A Subscribe's stream side: the offset, and what RabbitMQ refuses for a
/// stream consumer (automatic acks, no prefetch), told to the owner
/// because only it knows the queue is a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StreamStart {
    pub offset: StreamOffset,
    pub no_ack: bool,
    /// The consumer has a prefetch limit the client chose (AMQP basic.qos;
    /// every native consumer has one).
    pub prefetch_set: bool,
}

impl StreamStart {
    /// A native consumer: manual acks, its own prefetch, from `next`.
    pub const NATIVE: StreamStart = StreamStart { offset: StreamOffset::Next, no_ack: false, prefetch_set: true };
}

/// Both enums cross the inter-node link too (`server::remote`), postcard-
/// encoded; what arrives that way is checked as any other input.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    Declare {
        durable: bool,
        passive: bool,
        queue: String,
        /// Owned by the declaring connection: others get `QueueLocked`, and
        /// the queue goes when that connection closes.
        exclusive: bool,
        /// Deleted when its last consumer goes (after it had one).
        auto_delete: bool,
        /// A redeclare must match every flag (exclusive, auto-delete too),
        /// and the Ok value packs `consumers << 32 | ready` (ready capped
        /// at u32::MAX): what AMQP's queue.declare-ok needs.
        strict: bool,
        /// Policies (checked by the receiving connection). A redeclare
        /// must match them.
        args: Box<QueueArgs>,
    },
    Delete {
        if_empty: bool,
        /// Refuse while the queue has consumers.
        if_unused: bool,
        queue: String,
    },
    Purge {
        queue: String,
    },
    /// Messages routed through an exchange to queues of one owner: each
    /// target's entries go to its queue; one reply (confirm or error) for
    /// the whole request, `count` being the size of the original batch.
    PublishMany {
        persistent: bool,
        confirm: bool,
        mandatory: bool,
        targets: Vec<Target>,
        count: u32,
        /// The exchange and routing key, for deliveries and `x-death`.
        origin: Option<Arc<Origin>>,
    },
    /// A change to the routing table, handled by shard 0 (the metadata
    /// owner), which applies it, stores it if durable, and broadcasts it.
    Meta {
        change: Change,
        /// The binding's destination is durable (known by the queue's
        /// owner, which forwards the request).
        durable_dest: bool,
        /// `DeleteExchange` only: refuse while it is the source of bindings.
        if_unused: bool,
        /// The count the Ok carries (a queue delete's removed messages,
        /// answered once the queue's bindings are gone everywhere).
        count: u64,
    },
    /// A queue binding, sent first to the queue's owner, which checks the
    /// queue and forwards it to shard 0 as `Meta`.
    BindQueue {
        binding: BindingDef,
        unbind: bool,
    },
    /// `entries` holds `count` validated message entries back to back.
    /// `partial`: a queue whose `x-overflow` refuses part of the batch
    /// stores the rest and confirms only those (`Confirm.count` < count;
    /// AMQP nacks the others). Without it the whole batch is refused.
    Publish {
        persistent: bool,
        confirm: bool,
        partial: bool,
        /// `PublishMode::mandatory`.
        mandatory: Option<bool>,
        queue: String,
        entries: Bytes,
        count: u32,
    },
    Subscribe {
        consumer_id: u32,
        prefetch: u32,
        queue: String,
        /// The queue's only consumer (AMQP's exclusive consumer).
        exclusive: bool,
        /// Consumer priority (AMQP `x-priority`; 0 by default): the queue
        /// serves higher ones first (`server/queue/dispatch.rs`).
        priority: i64,
        /// AMQP no-ack: the front end acks what it sends; counted apart
        /// (`Consumer::auto_ack`).
        auto_ack: bool,
        /// What a stream queue needs to know of the consumer (a classic
        /// queue ignores it): where it starts, and the two things RabbitMQ
        /// requires of a stream consumer.
        stream: StreamStart,
    },
    Unsubscribe {
        consumer_id: u32,
        queue: String,
    },
    /// Stops pushing to a consumer but keeps its unacked messages, which
    /// can still be acked or nacked (AMQP basic.cancel). No reply.
    Cancel {
        consumer_id: u32,
        queue: String,
    },
    Ack {
        consumer_id: u32,
        queue: String,
        ranges: Vec<(u64, u64)>,
    },
    Nack {
        consumer_id: u32,
        queue: String,
        requeue: bool,
        ranges: Vec<(u64, u64)>,
    },
    Get {
        consumer_id: u32,
        no_ack: bool,
        queue: String,
    },
    /// One owner's share of a committed AMQP transaction
    /// (`shard/tx.rs`): applied in one step, answered with `TxCommitted`
    /// once what it logged is fdatasync'ed.
    TxPart {
        /// The connection whose consumers' tags `acks` names (the
        /// request itself may come from a fan-in).
        conn: ConnRef,
        publishes: Vec<TxTarget>,
        acks: Vec<TxAck>,
    },
    /// The connection is gone: drop its consumers on these queues and
    /// requeue what they had not acked.
    ConnClosed {
        queues: Vec<String>,
    },
    /// A direct reply (`protocol::reply_to`), for the requester's
    /// connection `conn_id` on the shard it is sent to: handed to that
    /// connection's reply consumer `channel` if that consumer holds
    /// `token`, dropped otherwise (no queue, nothing stored). `count` 0
    /// only asks whether the consumer is there (a declare of the name):
    /// answered `Ok` or `QueueNotFound`. Otherwise answered only with
    /// `confirm` (`Confirm`, delivered or dropped, as RabbitMQ confirms an
    /// unroutable publish) or `mandatory` (`NoRoute` when dropped).
    DirectReply {
        conn_id: u64,
        channel: u32,
        token: u64,
        entries: Bytes,
        count: u32,
        confirm: bool,
        mandatory: bool,
    },
    /// The connection's outbox has drained since the owner stopped
    /// dispatching to it (`server/gate.rs`): dispatch to it again. No reply.
    DeliveriesResume,
    /// A connection on another shard grants `bytes` of deliveries back as
    /// credit (`server/gate.rs`): the owner may forward that much more.
    DeliveriesCredit {
        bytes: usize,
    },
    // Last, so the link's variant numbers of the others stay as they were.
    /// Server-side offset tracking: store a stream consumer's offset
    /// under `reference` (answered Ok once stored, `docs/streams.md`).
    StoreOffset {
        queue: String,
        reference: String,
        offset: u64,
    },
    /// The offset stored under `reference`: Ok(offset), or
    /// `OffsetNotFound`.
    QueryOffset {
        queue: String,
        reference: String,
    },
}

/// What goes back to a connection. `ConsumerGone`: the consumer's queue
/// was deleted, nothing more will come (AMQP sends basic.cancel).
/// `AdminOk`: the answer to a native `Admin` frame (`ringmq ctl`).
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    Ok {
        request_id: u64,
        value: u64,
    },
    Error {
        request_id: u64,
        #[serde(with = "code_serde")]
        code: ErrorCode,
        message: String,
    },
    Confirm {
        request_id: u64,
        count: u32,
    },
    Deliver {
        /// The owner shard, which the connection grants credit back to.
        owner: u16,
        consumer_id: u32,
        first_tag: u64,
        msgs: Vec<Delivered>,
    },
    GetOk {
        request_id: u64,
        consumer_id: u32,
        tag: u64,
        remaining: u32,
        msg: Delivered,
    },
    GetEmpty {
        request_id: u64,
    },
    ConsumerGone {
        consumer_id: u32,
    },
    /// The consumer left a delivery unacked past `consumer_timeout_ms`:
    /// the queue dropped it and requeued its unacked messages.
    ConsumerTimeout {
        consumer_id: u32,
        timeout_ms: u64,
        message: String,
    },
    /// A publish of this connection took `queue` (on another shard) past
    /// `publish_pause_messages`: stop reading publishes until
    /// `PublishResumed` for it.
    PublishPaused {
        queue: String,
    },
    PublishResumed {
        queue: String,
    },
    AdminOk {
        request_id: u64,
        json: String,
    },
    /// A transaction's part (or, from the coordinator, the whole) is
    /// applied and stored: `routed` lists the publish indexes
    /// (`TxTarget::publish`) that reached at least one queue.
    TxCommitted {
        request_id: u64,
        routed: Vec<u32>,
    },
}

impl Reply {
    pub fn error(request_id: u64, code: ErrorCode, message: impl Into<String>) -> Self {
        Reply::Error { request_id, code, message: message.into() }
    }
}

/// A queue-level failure: its code goes on the wire, its text to the
/// client and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueError {
    pub code: ErrorCode,
    pub message: String,
}

impl QueueError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// An error code on the inter-node link: its stable number (an unknown
/// one, from a newer peer, reads as `Internal`).
mod code_serde {
    use crate::protocol::ErrorCode;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(c: &ErrorCode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(*c as u16)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ErrorCode, D::Error> {
        Ok(ErrorCode::from_u16(u16::deserialize(d)?).unwrap_or(ErrorCode::Internal))
    }
}
