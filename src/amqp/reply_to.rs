//! Direct reply-to (`amq.rabbitmq.reply-to`, as RabbitMQ has it;
//! `protocol::reply_to`, docs/amqp.md "Direct reply-to"):
//!
//! - basic.consume from the pseudo-queue, in no-ack mode only, makes the
//!   channel's reply consumer (no queue, no core call);
//! - a publish on that channel whose `reply_to` is the pseudo-queue has it
//!   replaced with the channel's generated name (refused with 406 while
//!   the channel has no reply consumer);
//! - a publish to the default exchange with a generated name as its key
//!   goes straight to the requester (`Shard::direct_reply`), which
//!   delivers it here (`ConnSink::direct_reply`);
//! - queue.declare of the pseudo-queue is Ok, of a generated name Ok
//!   while its consumer is there (404 once it is gone).
//!
//! The reply consumers are listed outside the state (`AmqpConn::replies`):
//! the shard asks for them while a handler may hold the state. Each has
//! its own random token, so a name outlives neither its consumer nor its
//! channel: a consumer made again on the same channel has a new name.

use super::channel::{Channel, OpKind};
use super::conn::{rid, AmqpConn, ConsumerInfo, Fault, State, KIND_OP};
use crate::protocol::amqp::method::{self, code, id, MethodId, QueueDeclare};
use crate::protocol::props;
use crate::protocol::reply_to::{is_reply_name, PSEUDO_QUEUE};
use crate::server::types::{Delivered, Reply};
use bytes::Bytes;

/// A reply consumer as the shard's calls find it.
pub struct ReplyRoute {
    pub channel: u16,
    pub cid: u32,
    /// The random token its name carries.
    pub token: u64,
}

fn ch_fault(channel: u16, text: &str, cause: MethodId) -> Fault {
    Fault::Channel { channel, code: code::PRECONDITION_FAILED, text: format!("PRECONDITION_FAILED - {text}"), cause }
}

fn channel(st: &mut State, n: u16) -> &mut Channel {
    st.channels.get_mut(&n).expect("the channel was checked open")
}

impl AmqpConn {
    /// basic.consume from the pseudo-queue (the caller checked the tag and
    /// the connection's consumer count): the channel's one reply consumer.
    pub(super) fn reply_consume(
        &self,
        st: &mut State,
        (n, mid): (u16, MethodId),
        tag: &str,
        (no_ack, no_wait): (bool, bool),
    ) -> Result<(), Fault> {
        if !no_ack {
            return Err(ch_fault(n, "reply consumer cannot acknowledge", mid));
        }
        if channel(st, n).reply_to.is_some() {
            return Err(ch_fault(n, "reply consumer already set", mid));
        }
        let cid = st.next_consumer;
        st.next_consumer += 1;
        let tag =
            if tag.is_empty() { format!("amq.ctag-{}.{}.{cid}", self.shard.id, self.me().conn_id) } else { tag.into() };
        let token = rand::random();
        let name = self.shard.reply_name(self.me(), u32::from(n), token);
        let info = ConsumerInfo {
            channel: n,
            // Replies show the default exchange and the name as their key.
            deliver: method::deliver_template(n, &tag, &name),
            tag,
            queue: name.clone(),
            owner: self.shard.id,
            no_ack: true,
            live: false,
            cancelled: false,
            direct: true,
        };
        st.consumers.insert(cid, info);
        let ch = channel(st, n);
        ch.consumers.push(cid);
        ch.reply_to = Some(name);
        let seq = ch.push_op(OpKind::Consume { consumer_id: cid, no_wait });
        self.replies.borrow_mut().push(ReplyRoute { channel: n, cid, token });
        // Answered at once, after the channel's earlier methods: the inbox
        // is drained once this frame is handled.
        self.file(Reply::Ok { request_id: rid(KIND_OP, n, seq), value: 0 });
        Ok(())
    }

    /// The reply consumer `cid` of channel `n` goes (basic.cancel, the
    /// channel closes): replies to its name are dropped from now on.
    pub(super) fn reply_cancel(&self, st: &mut State, n: u16, cid: u32) {
        st.consumers.remove(&cid);
        if let Some(ch) = st.channels.get_mut(&n) {
            ch.consumers.retain(|c| *c != cid);
            ch.held.retain(|h| h.consumer_id != cid);
            ch.reply_to = None;
        }
        self.replies.borrow_mut().retain(|r| r.cid != cid);
    }

    /// queue.declare of the pseudo-queue or of a generated name; `false`
    /// for any other name.
    pub(super) fn reply_declare(&self, st: &mut State, n: u16, d: &QueueDeclare<'_>) -> bool {
        let pseudo = d.queue == PSEUDO_QUEUE;
        if !pseudo && !is_reply_name(d.queue) {
            return false;
        }
        let kind = OpKind::Declare { queue: d.queue.into(), exclusive: false, no_wait: d.no_wait };
        let rid = rid(KIND_OP, n, channel(st, n).push_op(kind));
        if pseudo {
            self.file(Reply::Ok { request_id: rid, value: 0 });
        } else {
            self.shard.reply_alive(self.me(), rid, d.queue);
        }
        true
    }

    /// `ConnSink::direct_reply`: delivered to the reply consumer of
    /// channel `channel` if `token` is its own.
    pub(super) fn take_direct_reply(&self, channel: u32, token: u64, msgs: &[Bytes]) -> bool {
        let found =
            self.replies.borrow().iter().find(|r| u32::from(r.channel) == channel && r.token == token).map(|r| r.cid);
        let Some(cid) = found else { return false };
        if msgs.is_empty() {
            return true;
        }
        // No queue tags: a reply consumer is no-ack, its tags are never acked.
        let ds = msgs.iter().map(|m| (false, m, None));
        if !self.deliver_now(cid, 0, ds) {
            let msgs = msgs.iter().map(|e| Delivered { redelivered: false, entry: e.clone(), origin: None }).collect();
            self.file(Reply::Deliver { owner: self.shard.id, consumer_id: cid, first_tag: 0, msgs });
        }
        true
    }

    /// Puts a reply in the inbox, handled in the connection's own turn.
    fn file(&self, reply: Reply) {
        self.inbox.borrow_mut().push_back(reply);
        self.kick.notify();
    }
}

/// A publish header whose `reply_to` property is set (the caller checked
/// the flag bit): the pseudo-queue becomes the channel's generated name,
/// or the publish is refused while the channel has no reply consumer.
/// The name adds at most 255 bytes to a message under `message_bytes_max`.
pub(super) fn rewrite_reply_to(n: u16, ch: &mut Channel) -> Result<(), Fault> {
    if props::reply_to(&ch.content_props) != Some(PSEUDO_QUEUE.as_bytes()) {
        return Ok(());
    }
    let Some(name) = ch.reply_to.as_deref() else {
        return Err(ch_fault(n, "fast reply consumer does not exist", id::BASIC_PUBLISH));
    };
    ch.content_props = props::with_reply_to(&ch.content_props, name).map_err(|e| Fault::Channel {
        channel: n,
        code: code::SYNTAX_ERROR,
        text: e.to_string(),
        cause: id::BASIC_PUBLISH,
    })?;
    Ok(())
}
