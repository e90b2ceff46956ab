//! Deliveries into the outbox: encoded at once when the connection is
//! free, from the inbox otherwise, or held while prefetch or flow stops
//! them; automatic acks gathered per batch.

use super::channel::{ChState, Held};
use super::conn::{AmqpConn, ConsumerInfo, State};
use crate::protocol::amqp::frame;
use crate::protocol::amqp::method;
use crate::protocol::batch::parse_entry;
use crate::server::types::Origin;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;

impl AmqpConn {
    /// Deliveries as the shard hands them over: encoded at once when
    /// nothing waits in the inbox (they must not overtake it) and the state
    /// is free. `false`: not handled, to be filed in the inbox.
    pub(super) fn deliver_now<'a>(
        &self,
        cid: u32,
        first_qtag: u64,
        msgs: impl Iterator<Item = DeliveryRef<'a>>,
    ) -> bool {
        if !self.inbox.borrow().is_empty() {
            return false;
        }
        let Ok(mut st) = self.st.try_borrow_mut() else { return false };
        // A cancelled consumer's go back to the queue: a call to the core,
        // made from the inbox.
        if st.consumers.get(&cid).is_some_and(|k| k.cancelled) {
            return false;
        }
        self.encode_deliveries(&mut st, cid, first_qtag, msgs);
        true
    }

    /// Deliveries filed in the inbox, handled in the connection's turn.
    pub(super) fn on_deliveries<'a>(&self, cid: u32, first_qtag: u64, msgs: impl Iterator<Item = DeliveryRef<'a>>) {
        let mut st = self.st.borrow_mut();
        let Some(k) = st.consumers.get(&cid) else { return };
        if !k.cancelled {
            self.encode_deliveries(&mut st, cid, first_qtag, msgs);
            return;
        }
        // A direct reply-to consumer has no queue to give them back to.
        if k.direct {
            return;
        }
        // Cancelled while these were on their way: back to the queue.
        let count = msgs.count() as u64;
        if count > 0 {
            let req = crate::server::types::Request::Nack {
                consumer_id: cid,
                queue: k.queue.clone(),
                requeue: true,
                ranges: vec![(first_qtag, first_qtag + count - 1)],
            };
            let (owner, rid) = (k.owner, super::conn::rid(super::conn::KIND_IGNORE, k.channel, 0));
            drop(st);
            self.shard.submit(self.me(), rid, owner, req);
        }
    }

    /// Sends (or holds, while prefetch or flow stops them) a batch of
    /// deliveries for one consumer.
    pub(super) fn encode_deliveries<'a>(
        &self,
        st: &mut State,
        cid: u32,
        first_qtag: u64,
        msgs: impl Iterator<Item = DeliveryRef<'a>>,
    ) {
        let frame_max = st.frame_max;
        let State { consumers, channels, .. } = st;
        // Unknown: its channel closed and its Unsubscribe requeues these.
        let Some(k) = consumers.get(&cid) else { return };
        let Some(ch) = channels.get_mut(&k.channel) else { return };
        let mut acks = self.acks.borrow_mut();
        // Direct replies have no queue to wait in: a channel that holds
        // them (flow off) keeps at most `prefetch_max`, and drops the rest.
        let held_max = self.shard.config.prefetch_max as usize;
        self.outbox.push(|b| {
            for ((redelivered, entry, origin), qtag) in msgs.zip(first_qtag..) {
                let can = ch.state == ChState::Open
                    && ch.flow
                    && ch.held.is_empty()
                    && k.live
                    && (k.no_ack || ch.has_credit());
                if !can && k.direct && ch.held.len() >= held_max {
                    tracing::debug!(channel = k.channel, "a direct reply for a channel holding {held_max}; dropped");
                    continue;
                }
                if !can {
                    let origin = origin.cloned();
                    ch.held.push_back(Held { consumer_id: cid, qtag, redelivered, entry: entry.clone(), origin });
                    continue;
                }
                write_delivery(b, ch, k, (cid, qtag), (redelivered, entry, origin), frame_max);
                if k.no_ack && !k.direct {
                    push_ack(&mut acks, cid, qtag);
                }
            }
        });
        if k.no_ack && !k.direct && !acks.is_empty() {
            self.kick.notify();
        }
    }
}

fn push_ack(acks: &mut Vec<(u32, u64, u64)>, cid: u32, qtag: u64) {
    match acks.last_mut() {
        Some(l) if l.0 == cid && l.2 + 1 == qtag => l.2 = qtag,
        _ => acks.push((cid, qtag, qtag)),
    }
}

/// One delivery as the queue hands it over: redelivered, the stored
/// entry, and the exchange and routing key it was published with.
pub(super) type DeliveryRef<'a> = (bool, &'a Bytes, Option<&'a Arc<Origin>>);

/// `ids` is (consumer id, the queue's delivery tag).
fn write_delivery(
    b: &mut BytesMut,
    ch: &mut super::channel::Channel,
    k: &ConsumerInfo,
    ids: (u32, u64),
    d: DeliveryRef<'_>,
    frame_max: usize,
) {
    let ((cid, qtag), (redelivered, entry, origin)) = (ids, d);
    let Ok(e) = parse_entry(entry) else {
        tracing::error!("stored entry failed to parse (bug)");
        return;
    };
    let tag = ch.assign_tag((!k.no_ack).then_some((cid, qtag)));
    match origin {
        // Through the default exchange (the routing key was the queue's
        // name): the consumer's prebuilt frame with the tag patched in.
        None if !k.deliver.is_empty() => {
            let (start, at) = (b.len(), method::deliver_tag_at(&k.deliver));
            b.extend_from_slice(&k.deliver);
            b[start + at..start + at + 8].copy_from_slice(&tag.to_be_bytes());
            b[start + at + 8] = u8::from(redelivered);
        }
        None => method::put_deliver(b, k.channel, &k.tag, tag, redelivered, "", &k.queue),
        Some(o) => method::put_deliver(b, k.channel, &k.tag, tag, redelivered, &o.exchange, &o.routing_key),
    }
    put_content(b, k.channel, e.props, e.body, frame_max);
}

/// Content header and body; properties that are not an AMQP property list
/// (a native publisher's) are left out.
pub(super) fn put_content(b: &mut BytesMut, n: u16, props: &[u8], body: &[u8], frame_max: usize) {
    let props = if props.is_empty() || method::props_are_amqp(props) { props } else { &[] };
    frame::put_content_header(b, n, 60, body.len() as u64, props);
    frame::put_body(b, n, body, frame_max);
}

/// Sends held deliveries that may go now (credit freed, flow on, consumer
/// confirmed).
pub fn drain_held(c: &AmqpConn, st: &mut State, n: u16) {
    let frame_max = st.frame_max;
    let State { consumers, channels, .. } = st;
    let Some(ch) = channels.get_mut(&n) else { return };
    if ch.held.is_empty() {
        return;
    }
    let mut acks = c.acks.borrow_mut();
    let mut any_ack = false;
    c.outbox.push(|b| {
        while let Some(h) = ch.held.front() {
            let Some(k) = consumers.get(&h.consumer_id).filter(|k| !k.cancelled) else {
                ch.held.pop_front();
                continue;
            };
            if !(ch.state == ChState::Open && ch.flow && k.live && (k.no_ack || ch.has_credit())) {
                break;
            }
            let Some(h) = ch.held.pop_front() else { break };
            write_delivery(b, ch, k, (h.consumer_id, h.qtag), (h.redelivered, &h.entry, h.origin.as_ref()), frame_max);
            if k.no_ack && !k.direct {
                push_ack(&mut acks, h.consumer_id, h.qtag);
                any_ack = true;
            }
        }
    });
    if any_ack {
        c.kick.notify();
    }
}
