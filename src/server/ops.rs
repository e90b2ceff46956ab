//! The core API: what a client can ask for, in no protocol's terms. Both
//! front ends (`native/`, `amqp/`) decode their frames, check what is
//! theirs to check (names, sizes, limits of their protocol), and call
//! these; each hides whether the queue is on this shard or another. The
//! answer comes back to the connection's `ConnSink` as a `Reply`, with
//! errors as `protocol::ErrorCode` (a front end maps them to its wire).
//!
//! | operation | call |
//! |---|---|
//! | declare, delete, purge a queue; subscribe; get | `Request::{Declare, Delete, Purge, Subscribe, Get}` through [`Shard::submit`] to [`Shard::owner_of`] the queue |
//! | ack, nack (reject is a nack), cancel, unsubscribe | `Request::{Ack, Nack, Cancel, Unsubscribe}` through [`Shard::submit`] to the owner the front end kept from the subscribe |
//! | publish to a queue | [`Shard::publish_to_queue`] |
//! | publish through an exchange | [`Shard::publish_to`] |
//! | commit an AMQP transaction: its publishes routed here, each owner's part applied in one step, one answer | [`Shard::commit_tx`] (`shard/tx.rs`) |
//! | declare, check, delete an exchange; bind, unbind | [`Shard::declare_exchange`], [`Shard::check_exchange`], [`Shard::delete_exchange`], [`Shard::bind`] |
//! | publish to a direct reply-to name; ask whether one is alive | [`Shard::direct_reply`], [`Shard::reply_alive`] (`shard/direct.rs`) |
//! | admin (`ringmq ctl`) | [`super::admin::start`] |
//! | the connection is gone | [`Shard::release_connection`] |
//! | names a client may use | [`queue_name_ok`], `shard::routing_replica::{check_exchange_name, check_table, exchange_def}` |

use super::shard::Shard;
use super::types::{ConnRef, PublishMode, Request};
use crate::protocol::Entries;
use bytes::Bytes;
use std::collections::HashMap;

/// A publish batch as a front end holds it.
pub enum PublishBatch<'a> {
    /// Entries decoded in place in a read chunk (native): `entries` lies
    /// within `chunk`, and each stored message is a slice of it.
    Read { chunk: &'a Bytes, entries: Entries<'a> },
    /// `count` entries the front end wrote itself (AMQP content frames):
    /// parsed only when the queue is on this shard (the owner parses a
    /// forwarded batch anyway).
    Built { entries: Bytes, count: u32 },
}

impl Shard {
    /// Publishes a batch to `queue`, wherever it lives: appended here when
    /// this shard owns it, sent to its owner otherwise (confirms and
    /// errors come back as replies either way). Returns the queue when it
    /// is here, past `publish_pause_messages`, and `may_pause()` holds,
    /// for the connection to stop reading until it drains
    /// (`wait_publish_resume`); an owner on another shard pauses the
    /// connection with a `PublishPaused` reply instead.
    ///
    /// `may_pause` is asked only then: a connection that also consumes is
    /// never paused (its acks may be what drains the queue).
    #[inline]
    pub fn publish_to_queue<Q: AsRef<str> + Into<String>>(
        &self,
        from: ConnRef,
        request_id: u64,
        mode: PublishMode,
        queue: Q,
        batch: PublishBatch<'_>,
        may_pause: impl FnOnce() -> bool,
    ) -> Option<String> {
        let owner = self.owner_of(queue.as_ref());
        if owner != self.id {
            let (entries, count) = match batch {
                PublishBatch::Read { chunk, entries } => (slice_of(chunk, entries.raw()), entries.len()),
                PublishBatch::Built { entries, count } => (entries, count),
            };
            let PublishMode { persistent, confirm, partial, mandatory } = mode;
            let req = Request::Publish { persistent, confirm, partial, mandatory, queue: queue.into(), entries, count };
            self.submit(from, request_id, owner, req);
            return None;
        }
        match batch {
            PublishBatch::Read { chunk, entries } => {
                self.publish_local(from, request_id, mode, queue.as_ref(), chunk, &entries)
            }
            PublishBatch::Built { entries, count } => {
                let Ok(parsed) = Entries::parse(&entries, count) else {
                    tracing::error!("publish batch failed validation (bug)");
                    return None;
                };
                self.publish_local(from, request_id, mode, queue.as_ref(), &entries, &parsed);
            }
        }
        (may_pause() && self.over_publish_pause(queue.as_ref())).then(|| queue.into())
    }

    /// Appends entries that lie within `buf` to a queue of this shard: one
    /// reference count a message, no copy.
    #[inline]
    fn publish_local(
        &self,
        from: ConnRef,
        request_id: u64,
        mode: PublishMode,
        queue: &str,
        buf: &Bytes,
        entries: &Entries<'_>,
    ) {
        let msgs = entries.raw_iter().map(|raw| buf.slice_ref(raw));
        self.publish(from, request_id, mode, queue, msgs);
    }

    /// A connection is gone: it leaves the shard's connection table, and
    /// the owner of each queue in `queues` (owner, name: the queues it
    /// consumed from or held exclusively) drops its consumers there and
    /// requeues what they had not acked. One request per owner.
    pub fn release_connection(
        &self,
        me: ConnRef,
        logged_in: bool,
        request_id: u64,
        queues: impl IntoIterator<Item = (u16, String)>,
    ) {
        let mut by_owner: HashMap<u16, Vec<String>> = HashMap::new();
        for (owner, queue) in queues {
            let qs = by_owner.entry(owner).or_default();
            if !qs.contains(&queue) {
                qs.push(queue);
            }
        }
        self.conns.unregister(me, logged_in);
        for (owner, queues) in by_owner {
            self.submit(me, request_id, owner, Request::ConnClosed { queues });
        }
    }
}

/// Whether a client may name a queue `q`: not empty, no control
/// characters (each front end says so in its protocol's terms).
#[inline]
pub fn queue_name_ok(q: &str) -> bool {
    !q.is_empty() && !q.chars().any(char::is_control)
}

/// `part` (a slice of `chunk`) as shared bytes: a reference count, no copy.
#[inline]
pub fn slice_of(chunk: &Bytes, part: &[u8]) -> Bytes {
    if part.is_empty() {
        Bytes::new()
    } else {
        chunk.slice_ref(part)
    }
}
