//! What comes back from the queues: replies to synchronous methods (sent
//! in the order the methods came), publisher confirms and returns, and
//! deliveries, which `deliver.rs` encodes into the outbox.
//!
//! The shard calls `ConnSink` while it is busy with its queues, possibly
//! in the middle of a call this connection made with its state borrowed,
//! so the sink only files what comes (the inbox, `conn.rs`) or, when
//! nothing is waiting and the state is free, encodes deliveries straight
//! from the queue's store. Everything else runs from `drain_inbox`, in
//! the connection's own turn, where it may call the core.

use super::channel::{ChState, OpKind, Settled};
use super::conn::{split_rid, AmqpConn, Fault, Phase, State, KIND_CLOSE, KIND_OP, KIND_PUB};
use super::deliver::{drain_held, put_content};
use crate::protocol::amqp::method::{self, code, id, MethodId};
use crate::protocol::amqp::wire::{put_bits, put_shortstr};
use crate::protocol::batch::parse_entry;
use crate::protocol::reply_to::is_reply_name;
use crate::protocol::{Entries, ErrorCode};
use crate::server::queue::Deliveries;
use crate::server::shard::{ConnSink, SinkBuffers};
use crate::server::types::{Delivered, Reply};
use bytes::{BufMut, Bytes, BytesMut};

impl ConnSink for AmqpConn {
    fn send(&self, reply: Reply) {
        if let Reply::Deliver { consumer_id, first_tag, msgs, .. } = &reply {
            let ds = msgs.iter().map(|m| (m.redelivered, &m.entry, m.origin.as_ref()));
            if self.deliver_now(*consumer_id, *first_tag, ds) {
                return;
            }
        }
        self.inbox.borrow_mut().push_back(reply);
        self.kick.notify();
    }

    fn deliver(&self, consumer_id: u32, first_tag: u64, msgs: Deliveries<'_>) {
        let ds = msgs.clone().map(|m| (m.redelivered, m.entry, m.origin));
        if self.deliver_now(consumer_id, first_tag, ds) {
            return;
        }
        // Held as a copy (the bodies are shared): the store's slots may
        // be acked or requeued before the inbox is drained.
        let msgs = msgs.map(Delivered::from).collect();
        let reply = Reply::Deliver { owner: self.shard.id, consumer_id, first_tag, msgs };
        self.inbox.borrow_mut().push_back(reply);
        self.kick.notify();
    }

    fn shut_down(&self, why: &str) {
        self.fail(Fault::Conn {
            code: code::CONNECTION_FORCED,
            text: format!("CONNECTION_FORCED - {why}"),
            cause: (0, 0),
        });
        self.outbox.close();
    }

    fn evict(&self, why: &str) {
        // Before connection.start went out, AMQP has no way to say why.
        if self.outbox.pushes() > 0 {
            self.fail(Fault::Conn {
                code: code::CONNECTION_FORCED,
                text: format!("CONNECTION_FORCED - {why}"),
                cause: (0, 0),
            });
        }
        self.outbox.abort();
    }

    fn login_user(&self) -> Option<String> {
        self.grants.borrow().as_ref().map(|g| g.user().to_string())
    }

    fn login_vhost(&self) -> Option<String> {
        self.vhost.get().cloned()
    }

    fn describe(&self) -> (&'static str, String) {
        ("amqp", self.peer.map(|p| p.to_string()).unwrap_or_default())
    }

    fn channels(&self) -> usize {
        // The shard asks from its own turn, never while this connection
        // holds its state; should it ever, the count reads 0 for that
        // snapshot rather than panicking.
        self.st.try_borrow().map_or(0, |st| st.channels.len())
    }

    fn channel_rows(&self) -> Vec<crate::server::stats::ChannelRow> {
        // As `channels`: never asked while the state is borrowed; empty
        // rather than a panic should it be.
        self.st.try_borrow().map_or_else(|_| Vec::new(), |st| super::channel::rows(&st.channels, &st.consumers))
    }

    fn direct_reply(&self, channel: u32, token: u64, msgs: &[Bytes]) -> bool {
        self.take_direct_reply(channel, token, msgs)
    }

    fn buffers(&self) -> Option<SinkBuffers<'_>> {
        // Transactions' buffers count as read bytes held (memory alarm).
        let held = self.read_held.get() + crate::protocol::wire::usize_of(self.tx_held.get());
        Some(SinkBuffers::on(&self.shard, &self.outbox, (held, self.read_totals.get()), &self.gate))
    }
}

impl AmqpConn {
    /// Handles what the shard filed in the inbox, oldest first, until it
    /// is empty. Only from the connection's own turn (never from the
    /// shard), with no borrow of the state held: handling may call the core.
    pub fn drain_inbox(&self) {
        loop {
            let Some(reply) = self.inbox.borrow_mut().pop_front() else { return };
            self.on_reply(reply);
        }
    }

    fn on_reply(&self, reply: Reply) {
        if let Reply::Deliver { consumer_id, first_tag, msgs, .. } = reply {
            let ds = msgs.iter().map(|m| (m.redelivered, &m.entry, m.origin.as_ref()));
            self.on_deliveries(consumer_id, first_tag, ds);
            return;
        }
        if let Reply::ConsumerGone { consumer_id } = reply {
            self.consumer_gone(consumer_id);
            return;
        }
        if let Reply::ConsumerTimeout { consumer_id, timeout_ms, .. } = reply {
            self.consumer_timed_out(consumer_id, timeout_ms);
            return;
        }
        if let Reply::PublishPaused { queue } | Reply::PublishResumed { queue } = &reply {
            self.remote_pause(queue, matches!(reply, Reply::PublishPaused { .. }));
            return;
        }
        let r = match &reply {
            Reply::Ok { request_id, .. }
            | Reply::Error { request_id, .. }
            | Reply::Confirm { request_id, .. }
            | Reply::GetOk { request_id, .. }
            | Reply::GetEmpty { request_id }
            | Reply::TxCommitted { request_id, .. } => *request_id,
            _ => return,
        };
        let (kind, n, seq) = split_rid(r);
        if kind == KIND_CLOSE {
            self.close_wait_done();
            return;
        }
        let fault = {
            let mut st = self.st.borrow_mut();
            match kind {
                KIND_OP => {
                    if let Some(op) = st.channels.get_mut(&n).and_then(|ch| ch.ops.iter_mut().find(|o| o.seq == seq)) {
                        op.result = Some(reply);
                    }
                    self.drain_ops(&mut st, n)
                }
                KIND_PUB => self.on_publish_reply(&mut st, n, seq, reply),
                _ => {
                    if let Reply::Error { code, message, .. } = reply {
                        tracing::debug!(code = ?code, "AMQP background request refused: {message}");
                    }
                    None
                }
            }
        };
        if let Some(f) = fault {
            self.fail(f);
        }
    }
}

/// Maps a queue owner's refusal to an AMQP channel or connection error.
fn fault_for(n: u16, code: ErrorCode, message: String, cause: MethodId) -> Fault {
    let (amqp, hard) = match code {
        ErrorCode::QueueNotFound | ErrorCode::ExchangeNotFound | ErrorCode::NodeUnavailable => (code::NOT_FOUND, false),
        ErrorCode::AccessRefused => (code::ACCESS_REFUSED, false),
        ErrorCode::ExchangeMismatch => (code::PRECONDITION_FAILED, false),
        ErrorCode::QueueLocked => (code::RESOURCE_LOCKED, false),
        ErrorCode::QueueMismatch
        | ErrorCode::BadQueueName
        | ErrorCode::UnknownDeliveryTag
        | ErrorCode::InvalidArgument => (code::PRECONDITION_FAILED, false),
        ErrorCode::QueueFull => (code::PRECONDITION_FAILED, false),
        // As RabbitMQ's vhost and cluster limits: a channel error.
        ErrorCode::QueueLimit | ErrorCode::DefinitionLimit => (code::PRECONDITION_FAILED, false),
        // AMQP has no channel code for "try again"; the text says what.
        ErrorCode::ClusterUnavailable => (code::PRECONDITION_FAILED, false),
        ErrorCode::ConsumerLimit | ErrorCode::StorageFull => (code::RESOURCE_ERROR, true),
        ErrorCode::ShardUnavailable | ErrorCode::ShuttingDown => (code::CONNECTION_FORCED, true),
        ErrorCode::PersistenceUnavailable | ErrorCode::StreamUnsupported => (code::NOT_IMPLEMENTED, true),
        _ => (code::INTERNAL_ERROR, true),
    };
    let prefix = match amqp {
        code::NOT_FOUND => "NOT_FOUND - ",
        code::RESOURCE_LOCKED => "RESOURCE_LOCKED - ",
        code::PRECONDITION_FAILED => "PRECONDITION_FAILED - ",
        code::ACCESS_REFUSED => "ACCESS_REFUSED - ",
        _ => "",
    };
    let text = format!("{prefix}{message}");
    if hard {
        Fault::Conn { code: amqp, text, cause }
    } else {
        Fault::Channel { channel: n, code: amqp, text, cause }
    }
}

impl AmqpConn {
    /// Emits the replies of a channel's synchronous methods, in order.
    fn drain_ops(&self, st: &mut State, n: u16) -> Option<Fault> {
        loop {
            let ch = st.channels.get_mut(&n)?;
            if ch.state != ChState::Open || ch.ops.front().is_none_or(|o| o.result.is_none()) {
                return None;
            }
            let op = ch.ops.pop_front()?;
            let reply = op.result?;
            let cause: MethodId = match &op.kind {
                OpKind::Declare { .. } => id::QUEUE_DECLARE,
                OpKind::Purge { .. } => id::QUEUE_PURGE,
                OpKind::Delete { .. } => id::QUEUE_DELETE,
                OpKind::Consume { .. } => id::BASIC_CONSUME,
                OpKind::Get { .. } => id::BASIC_GET,
                OpKind::Simple { cause, .. } => *cause,
                OpKind::Commit { .. } => id::TX_COMMIT,
            };
            if let Reply::Error { code, message, .. } = reply {
                if let OpKind::Consume { consumer_id, .. } = op.kind {
                    st.consumers.remove(&consumer_id);
                }
                return Some(fault_for(n, code, message, cause));
            }
            let frame_max = st.frame_max;
            match (op.kind, reply) {
                (OpKind::Declare { queue, exclusive, no_wait }, Reply::Ok { value, .. }) => {
                    let qualified = self.q(&queue);
                    if exclusive && !st.exclusive.iter().any(|(q, _)| *q == qualified) {
                        let owner = self.shard.owner_of(&qualified);
                        st.exclusive.push((qualified.into_owned(), owner));
                    }
                    if !no_wait {
                        self.outbox.push(|b| {
                            method::put(b, n, id::QUEUE_DECLARE_OK, |b| {
                                put_shortstr(b, &queue);
                                // Declare's value packs messages (low) and consumers (high);
                                // a live direct reply-to name has its one consumer.
                                let value = if is_reply_name(&queue) { 1 << 32 } else { value };
                                let (messages, consumers) = (value & 0xFFFF_FFFF, value >> 32);
                                b.put_u32(crate::protocol::wire::saturate(messages));
                                b.put_u32(crate::protocol::wire::saturate(consumers));
                            })
                        });
                    }
                }
                (OpKind::Purge { no_wait: false }, Reply::Ok { value, .. }) => self.outbox.push(|b| {
                    method::put(b, n, id::QUEUE_PURGE_OK, |b| b.put_u32(crate::protocol::wire::saturate(value)))
                }),
                (OpKind::Delete { no_wait: false }, Reply::Ok { value, .. }) => self.outbox.push(|b| {
                    method::put(b, n, id::QUEUE_DELETE_OK, |b| b.put_u32(crate::protocol::wire::saturate(value)))
                }),
                (OpKind::Consume { consumer_id, no_wait }, Reply::Ok { .. }) => {
                    if let Some(k) = st.consumers.get_mut(&consumer_id) {
                        k.live = true;
                        if !no_wait {
                            let tag = &k.tag;
                            self.outbox.push(|b| method::put(b, n, id::BASIC_CONSUME_OK, |b| put_shortstr(b, tag)));
                        }
                    }
                    drain_held(self, st, n);
                }
                (OpKind::Get { consumer_id, no_ack, queue }, Reply::GetOk { tag: qtag, remaining, msg, .. }) => {
                    let ch = st.channels.get_mut(&n)?;
                    let tag = ch.assign_tag((!no_ack).then_some((consumer_id, qtag)));
                    let Ok(e) = parse_entry(&msg.entry) else { continue };
                    let (exchange, key) =
                        msg.origin.as_ref().map_or(("", queue.as_str()), |o| (&o.exchange, &o.routing_key));
                    self.outbox.push(|b| {
                        method::put(b, n, id::BASIC_GET_OK, |b| {
                            b.put_u64(tag);
                            put_bits(b, &[msg.redelivered]);
                            put_shortstr(b, exchange);
                            put_shortstr(b, key);
                            b.put_u32(remaining);
                        });
                        put_content(b, n, e.props, e.body, frame_max);
                    });
                }
                (OpKind::Simple { ok, no_wait: false, .. }, Reply::Ok { .. }) => {
                    self.outbox.push(|b| method::put(b, n, ok, |_| ()))
                }
                (OpKind::Commit { returns }, Reply::TxCommitted { routed, .. }) => {
                    self.outbox.push(|b| put_commit_ok(b, n, &returns, &routed, frame_max));
                }
                (OpKind::Get { .. }, Reply::GetEmpty { .. }) => {
                    self.outbox.push(|b| method::put(b, n, id::BASIC_GET_EMPTY, |b| put_shortstr(b, "")))
                }
                _ => {}
            }
        }
    }

    fn on_publish_reply(&self, st: &mut State, n: u16, seq: u64, reply: Reply) -> Option<Fault> {
        let frame_max = st.frame_max;
        let ch = st.channels.get_mut(&n)?;
        let tracked = ch.outstanding.iter().any(|o| o.first_seq == seq);
        match reply {
            Reply::Confirm { count, .. } => ch.settle_count(seq, count),
            Reply::Error { code: ErrorCode::QueueNotFound | ErrorCode::NoRoute, .. } => {
                ch.settle(seq, Settled::NoRoute)
            }
            // The exchange went between the publish and its routing.
            Reply::Error { code: ErrorCode::ExchangeNotFound, message, .. } => {
                return Some(fault_for(n, ErrorCode::ExchangeNotFound, message, id::BASIC_PUBLISH))
            }
            Reply::Error { code, message, .. } => {
                // Without confirms there is no other way to say it.
                if !tracked && code == ErrorCode::PersistenceUnavailable {
                    return Some(Fault::Channel {
                        channel: n,
                        code: code::NOT_IMPLEMENTED,
                        text: format!("NOT_IMPLEMENTED - {message} (use publisher confirms to get basic.nack instead)"),
                        cause: id::BASIC_PUBLISH,
                    });
                }
                // RabbitMQ's word for a resource it lacks (a full disk).
                if !tracked && code == ErrorCode::StorageFull {
                    return Some(Fault::Conn {
                        code: code::RESOURCE_ERROR,
                        text: format!("RESOURCE_ERROR - {message}"),
                        cause: id::BASIC_PUBLISH,
                    });
                }
                if !tracked && code == ErrorCode::StoragePoisoned {
                    return Some(Fault::Conn {
                        code: code::INTERNAL_ERROR,
                        text: format!("INTERNAL_ERROR - {message}"),
                        cause: id::BASIC_PUBLISH,
                    });
                }
                tracing::debug!(?code, "AMQP publish refused: {message}");
                ch.settle(seq, Settled::Nack);
            }
            _ => {}
        }
        while let Some((tags, how, returns)) = ch.pop_settled() {
            if let Some(r) = returns {
                if let Ok(parsed) = Entries::parse(&r.entries, r.count) {
                    self.outbox.push(|b| {
                        for e in parsed.iter() {
                            super::publish::put_return(b, n, &r, e.props, e.body, frame_max);
                        }
                    });
                }
            }
            if let Some((first, last)) = tags {
                let ack = how != Settled::Nack;
                self.outbox.push(|b| method::put_confirm(b, n, ack, last, last > first));
            }
        }
        None
    }

    fn consumer_gone(&self, cid: u32) {
        let mut st = self.st.borrow_mut();
        // After the client's connection.close, only close-ok may go out.
        let notify = st.cancel_notify && st.phase == Phase::Running;
        let Some(k) = st.consumers.get_mut(&cid) else { return };
        if k.cancelled {
            return;
        }
        k.cancelled = true;
        let n = k.channel;
        let tag = k.tag.clone();
        if let Some(ch) = st.channels.get_mut(&n) {
            ch.held.retain(|h| h.consumer_id != cid);
            if notify && ch.state == ChState::Open {
                self.outbox.push(|b| {
                    method::put(b, n, id::BASIC_CANCEL, |b| {
                        put_shortstr(b, &tag);
                        put_bits(b, &[true]);
                    })
                });
            }
        }
    }

    /// The queue cancelled a consumer for `consumer_timeout_ms` and
    /// requeued its unacked messages: as RabbitMQ, the whole channel is
    /// closed with 406 (its other consumers' unacked are requeued too).
    fn consumer_timed_out(&self, cid: u32, timeout_ms: u64) {
        let n = {
            let mut st = self.st.borrow_mut();
            // Already gone from the queue: no Unsubscribe for it.
            let Some(k) = st.consumers.remove(&cid) else { return };
            let Some(ch) = st.channels.get_mut(&k.channel) else { return };
            ch.consumers.retain(|c| *c != cid);
            if ch.state != ChState::Open || st.phase != Phase::Running {
                return;
            }
            k.channel
        };
        self.fail(Fault::Channel {
            channel: n,
            code: code::PRECONDITION_FAILED,
            text: format!(
                "PRECONDITION_FAILED - delivery acknowledgement on channel {n} timed out. Timeout value used: \
                 {timeout_ms} ms. This timeout value can be configured, see consumers doc guide to learn more"
            ),
            cause: (0, 0),
        });
        self.kick.notify();
    }
}

/// tx.commit-ok, after a basic.return for each message of a mandatory
/// publish that reached no queue, as RabbitMQ sends them.
fn put_commit_ok(
    b: &mut BytesMut,
    n: u16,
    returns: &[(u32, super::channel::Returned)],
    routed: &[u32],
    frame_max: usize,
) {
    for (i, r) in returns {
        if routed.binary_search(i).is_ok() {
            continue;
        }
        if let Ok(parsed) = Entries::parse(&r.entries, r.count) {
            for e in parsed.iter() {
                super::publish::put_return(b, n, r, e.props, e.body, frame_max);
            }
        }
    }
    method::put(b, n, id::TX_COMMIT_OK, |_| ());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_amqp_codes() {
        let f = fault_for(1, ErrorCode::QueueNotFound, "no queue 'x'".into(), id::QUEUE_DECLARE);
        assert!(matches!(f, Fault::Channel { code: 404, ref text, .. } if text.starts_with("NOT_FOUND")));
        assert!(matches!(
            fault_for(1, ErrorCode::QueueLocked, String::new(), (0, 0)),
            Fault::Channel { code: 405, .. }
        ));
        assert!(matches!(
            fault_for(1, ErrorCode::QueueMismatch, String::new(), (0, 0)),
            Fault::Channel { code: 406, .. }
        ));
        assert!(matches!(fault_for(1, ErrorCode::Internal, String::new(), (0, 0)), Fault::Conn { code: 541, .. }));
    }
}
