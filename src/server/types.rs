//! The values that cross between a connection and a queue's owner, locally
//! or over the mesh. All are `Send`: the same types serve both paths.

use crate::protocol::ErrorCode;
use bytes::Bytes;

/// A connection, named by the shard that holds its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    pub spilled: Option<crate::storage::Loc>,
}

impl Message {
    /// The entry's length, whether it is in memory or spilled.
    pub fn bytes(&self) -> usize {
        self.spilled.map_or(self.entry.len(), |l| l.len as usize)
    }
}

/// A message on its way out to a consumer on another shard.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub redelivered: bool,
    pub entry: Bytes,
}

impl From<&Message> for Delivered {
    fn from(m: &Message) -> Self {
        Self { redelivered: m.redelivered, entry: m.entry.clone() }
    }
}

#[derive(Debug)]
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
        /// AMQP semantics: a redeclare must match every flag, and the Ok
        /// value packs `consumers << 32 | ready` (ready capped at u32::MAX).
        amqp: bool,
    },
    Delete {
        if_empty: bool,
        queue: String,
    },
    Purge {
        queue: String,
    },
    /// `entries` holds `count` validated message entries back to back.
    Publish {
        persistent: bool,
        confirm: bool,
        queue: String,
        entries: Bytes,
        count: u32,
    },
    Subscribe {
        consumer_id: u32,
        prefetch: u32,
        queue: String,
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
    /// The connection is gone: drop its consumers on these queues and
    /// requeue what they had not acked.
    ConnClosed {
        queues: Vec<String>,
    },
}

/// What goes back to a connection. `ConsumerGone`: the consumer's queue
/// was deleted, nothing more will come (AMQP sends basic.cancel).
/// `AdminOk`: the answer to a native `Admin` frame (`ringmq ctl`).
#[derive(Debug)]
pub enum Reply {
    Ok { request_id: u64, value: u64 },
    Error { request_id: u64, code: ErrorCode, message: String },
    Confirm { request_id: u64, count: u32 },
    Deliver { consumer_id: u32, first_tag: u64, msgs: Vec<Delivered> },
    GetOk { request_id: u64, consumer_id: u32, tag: u64, remaining: u32, msg: Delivered },
    GetEmpty { request_id: u64 },
    ConsumerGone { consumer_id: u32 },
    AdminOk { request_id: u64, json: String },
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
