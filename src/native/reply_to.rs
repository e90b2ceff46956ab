//! Direct reply-to on the native protocol (`protocol::reply_to`;
//! docs/protocol.md, "0x34 ReplyTo"): a Subscribe to the pseudo-queue
//! makes the connection's one reply consumer and is answered with the
//! generated name (`ReplyTo`); a Publish (or a PublishTo the default
//! exchange) to a generated name goes straight to the requester's
//! connection (`Shard::direct_reply`); what arrives for the reply consumer
//! is delivered without acks (tags count on, as for any consumer).

use super::encode::{encode_deliveries, frame};
use super::{Fatal, NativeConn};
use crate::protocol::{op, reply_to, Cmd, Entries, ErrorCode};
use crate::server::ops::slice_of;
use crate::server::shard::ReplyOpts;
use bytes::Bytes;

/// The connection's reply consumer, once it subscribed to the pseudo-queue.
#[derive(Default)]
pub(super) struct ReplyConsumer {
    /// Its consumer id.
    pub id: std::cell::Cell<Option<u32>>,
    /// The random token its generated name carries (drawn at each
    /// Subscribe): a name without it reaches nobody, and no name outlives
    /// its consumer.
    token: std::cell::Cell<u64>,
    /// The last delivery tag given (tags start at 1).
    tag: std::cell::Cell<u64>,
}

impl NativeConn {
    /// Subscribe to [`reply_to::PSEUDO_QUEUE`]: one reply consumer per
    /// connection, answered `ReplyTo` with its generated name.
    pub(super) fn reply_subscribe(&self, rid: u64, consumer_id: u32) -> Result<(), Fatal> {
        let taken = self.reply.id.get().is_some() || self.consumers.borrow().contains_key(&consumer_id);
        if taken {
            let why = "this connection has its reply consumer already, or the consumer id is in use";
            return Err(Fatal { request_id: rid, code: ErrorCode::ConsumerExists, message: why.into() });
        }
        self.reply.id.set(Some(consumer_id));
        self.reply.token.set(rand::random());
        self.reply.tag.set(0);
        let name = self.shard.reply_name(self.me(), consumer_id, self.reply.token.get());
        self.outbox.push(|b| frame(b, rid, Cmd::ReplyTo { consumer_id, name: &name }));
        Ok(())
    }

    /// Unsubscribe of the reply consumer: `false` if `consumer_id` is not it.
    pub(super) fn reply_unsubscribe(&self, rid: u64, consumer_id: u32) -> bool {
        if self.reply.id.get() != Some(consumer_id) {
            return false;
        }
        self.reply.id.set(None);
        self.outbox.push(|b| frame(b, rid, Cmd::Ok { value: 0 }));
        true
    }

    /// A Publish to a generated name, or (`mandatory` from its flags) a
    /// PublishTo the default exchange with one as its key.
    pub(super) fn publish_reply(
        &self,
        chunk: &Bytes,
        rid: u64,
        flags: u8,
        name: &str,
        entries: &Entries<'_>,
    ) -> Result<(), Fatal> {
        let o = ReplyOpts { confirm: flags & op::PUBLISH_CONFIRM != 0, mandatory: flags & op::PUBLISH_MANDATORY != 0 };
        let batch = (slice_of(chunk, entries.raw()), entries.len());
        self.shard.direct_reply(self.me(), rid, name, o, batch);
        Ok(())
    }

    /// A Declare of the pseudo-queue (nothing to make: Ok) or of a
    /// generated name (Ok while its consumer is there, error 10 if not);
    /// `false` for any other name.
    pub(super) fn reply_declare(&self, rid: u64, queue: &str) -> bool {
        if queue == reply_to::PSEUDO_QUEUE {
            self.outbox.push(|b| frame(b, rid, Cmd::Ok { value: 0 }));
            return true;
        }
        if !reply_to::is_reply_name(queue) {
            return false;
        }
        self.shard.reply_alive(self.me(), rid, queue);
        true
    }

    /// `ConnSink::direct_reply`: delivered to the reply consumer if
    /// `token` is this connection's and `channel` its consumer id.
    pub(super) fn take_direct_reply(&self, channel: u32, token: u64, msgs: &[Bytes]) -> bool {
        if token != self.reply.token.get() || self.reply.id.get() != Some(channel) {
            return false;
        }
        if msgs.is_empty() {
            return true;
        }
        let first_tag = self.reply.tag.get() + 1;
        self.reply.tag.set(self.reply.tag.get().saturating_add(msgs.len() as u64));
        let limits = self.limits();
        self.outbox
            .push_parts(|b| encode_deliveries(b, &limits, channel, first_tag, msgs.iter().map(|m| (false, m, None))));
        true
    }
}
