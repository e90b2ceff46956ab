//! AMQP transactions on a channel, as RabbitMQ has them: after
//! tx.select, publishes and acks (nacks, rejects) are buffered by the
//! channel and take effect at tx.commit; tx.rollback drops the publishes
//! and forgets the acks (their deliveries are unacked again). Confirms
//! and transactions exclude each other on a channel (406 either way).
//!
//! The buffer is bounded by `tx_messages_max` (per transaction) and
//! `tx_bytes_max` (the connection's transactions together): 406 past
//! either. The commit itself is the core's
//! (`server::shard::tx`): routed on this shard, applied by each owner in
//! one step, answered once what was logged is fdatasync'ed. Mandatory
//! publishes that reached no queue are returned before commit-ok.
//!
//! Non-transactional channels pay one flag check per publish batch and
//! per ack: `Channel::tx` is `None`.

use super::calls::Core;
use super::channel::{Channel, OpKind, Returned};
use super::conn::{rid, AmqpConn, Fault, State, KIND_OP};
use crate::protocol::amqp::method::{code, id, MethodId};
use crate::server::shard::tx::TxPublish;
use crate::server::types::{Reply, TxAck};
use bytes::Bytes;
use std::cell::Cell;

/// A channel's open transaction.
#[derive(Default)]
pub struct Tx {
    /// Publish batches, in the order they were published.
    publishes: Vec<Buffered>,
    /// Deliveries acked, nacked or rejected, taken from the channel's tags.
    acks: Vec<TakenTag>,
    /// Counted against `tx_messages_max` and `tx_bytes_max`.
    messages: u64,
    bytes: u64,
}

/// One publish batch: consecutive messages to one target.
struct Buffered {
    exchange: String,
    routing_key: String,
    mandatory: bool,
    persistent: bool,
    entries: Bytes,
    count: u32,
}

/// A delivery tag the transaction took: (tag, consumer, queue tag), and
/// `None` for an ack, `Some(requeue)` for a nack or reject.
struct TakenTag {
    tag: u64,
    consumer_id: u32,
    qtag: u64,
    nack: Option<bool>,
}

fn precondition(n: u16, text: String, cause: MethodId) -> Fault {
    Fault::Channel { channel: n, code: code::PRECONDITION_FAILED, text, cause }
}

/// What a transaction is held to: `tx_messages_max` per transaction,
/// and `tx_bytes_max` for the transactions of one connection together
/// (`held`, the connection's total: a client cannot multiply it by
/// opening channels). The held bytes count for the memory alarm too.
#[derive(Clone, Copy)]
pub struct TxLimits<'a> {
    pub messages_max: u32,
    pub bytes_max: u64,
    pub held: &'a Cell<u64>,
}

impl Tx {
    /// Counts `messages` more (of `bytes`) against the limits: the
    /// refusal's text when either would be passed.
    pub fn reserve(&mut self, messages: u64, bytes: u64, l: TxLimits<'_>) -> Result<(), String> {
        self.messages += messages;
        self.bytes += bytes;
        l.held.set(l.held.get() + bytes);
        if self.messages > u64::from(l.messages_max) {
            let max = l.messages_max;
            return Err(format!(
                "PRECONDITION_FAILED - transaction holds more than tx_messages_max = {max} messages and acks"
            ));
        }
        if l.held.get() > l.bytes_max {
            let max = l.bytes_max;
            return Err(format!(
                "PRECONDITION_FAILED - the connection's transactions hold more than tx_bytes_max = {max} bytes"
            ));
        }
        Ok(())
    }

    /// Gives back the bytes it counted in the connection's total (at
    /// commit, rollback, or when its channel goes).
    pub fn release(&self, held: &Cell<u64>) {
        held.set(held.get().saturating_sub(self.bytes));
    }

    /// Messages published and acks (nacks, rejects) it holds until commit.
    pub fn uncommitted(&self) -> (u64, u64) {
        let messages = self.publishes.iter().map(|b| u64::from(b.count)).sum();
        (messages, self.acks.len() as u64)
    }

    /// A publish batch the channel built (`publish::flush_batch`).
    pub fn push_publish(
        &mut self,
        (exchange, routing_key): (&str, &str),
        flags: (bool, bool),
        entries: Bytes,
        count: u32,
    ) {
        let (mandatory, persistent) = flags;
        let (exchange, routing_key) = (exchange.to_owned(), routing_key.to_owned());
        self.publishes.push(Buffered { exchange, routing_key, mandatory, persistent, entries, count });
    }
}

/// The limits a connection's transactions are held to.
pub fn limits(c: &AmqpConn) -> TxLimits<'_> {
    let cfg = &c.shard.config;
    TxLimits { messages_max: cfg.tx_messages_max, bytes_max: cfg.tx_bytes_max, held: &c.tx_held }
}

/// tx.select: idempotent; refused on a channel in confirm mode.
pub fn select(c: &AmqpConn, st: &mut State, n: u16, mid: MethodId) -> Result<(), Fault> {
    let ch = channel(st, n)?;
    if ch.confirm {
        return Err(precondition(n, "PRECONDITION_FAILED - cannot switch from confirm to tx mode".into(), mid));
    }
    ch.tx.get_or_insert_with(Box::default);
    answer_in_order(c, st, n, id::TX_SELECT_OK, mid);
    Ok(())
}

/// Takes the tags an ack, nack or reject names into the transaction;
/// they stay counted as unacked (channel prefetch) until the commit.
/// `Ok(false)`: `tag` is not an unacked delivery of the channel.
pub fn take(
    ch: &mut Channel,
    (tag, multiple): (u64, bool),
    nack: Option<bool>,
    max: TxLimits<'_>,
) -> Result<bool, String> {
    if ch.tx.is_none() {
        return Ok(false);
    }
    let mut taken = Vec::new();
    let found = ch.take_tags_numbered(tag, multiple, |tag, consumer_id, qtag| {
        taken.push(TakenTag { tag, consumer_id, qtag, nack });
    });
    let Some(n) = found else { return Ok(false) };
    ch.unacked += crate::protocol::wire::len32(n);
    let Some(tx) = ch.tx.as_mut() else { return Ok(false) };
    tx.acks.append(&mut taken);
    tx.reserve(n as u64, 0, max)?;
    Ok(true)
}

/// tx.commit: the buffered publishes and acks go to the core at once,
/// and a fresh transaction starts; commit-ok (after the returns) comes
/// when every owner has applied and stored its part (`out.rs`).
pub fn commit(c: &AmqpConn, core: &Core<'_>, st: &mut State, n: u16, mid: MethodId) -> Result<(), Fault> {
    let ch = channel(st, n)?;
    let Some(tx) = ch.tx.as_mut() else {
        return Err(precondition(n, "PRECONDITION_FAILED - channel is not transactional".into(), mid));
    };
    let tx = std::mem::take(&mut **tx);
    tx.release(&c.tx_held);
    ch.unacked = ch.unacked.saturating_sub(crate::protocol::wire::len32(tx.acks.len()));
    let mut returns = Vec::new();
    let mut publishes = Vec::with_capacity(tx.publishes.len());
    for (i, p) in tx.publishes.into_iter().enumerate() {
        let i = crate::protocol::wire::len32(i);
        if p.mandatory {
            let r = Returned {
                exchange: p.exchange.clone(),
                key: p.routing_key.clone(),
                entries: p.entries.clone(),
                count: p.count,
            };
            returns.push((i, r));
        }
        // The default exchange's key is a queue name, scoped like one.
        let (exchange, key) = match p.exchange.is_empty() {
            true => (String::new(), c.q_owned(p.routing_key)),
            false => (c.q_owned(p.exchange), p.routing_key),
        };
        publishes.push(TxPublish { exchange, key, persistent: p.persistent, entries: p.entries, count: p.count });
    }
    let acks = ack_requests(st, tx.acks);
    let seq = channel(st, n)?.push_op(OpKind::Commit { returns });
    core.commit_tx(rid(KIND_OP, n, seq), publishes, acks);
    // Credit the acks freed: held deliveries may go now.
    super::deliver::drain_held(c, st, n);
    Ok(())
}

/// The taken tags as the owners' ack and nack requests, merged into
/// ranges per consumer and kind, each with its queue's owner. A consumer
/// that is gone (its queue requeued its messages) has nothing to ack.
fn ack_requests(st: &State, mut taken: Vec<TakenTag>) -> Vec<(u16, TxAck)> {
    taken.sort_unstable_by_key(|t| (t.consumer_id, t.nack, t.qtag));
    let mut out: Vec<(u16, TxAck)> = Vec::new();
    for t in taken {
        let Some(k) = st.consumers.get(&t.consumer_id) else { continue };
        match out.last_mut() {
            Some((_, a)) if a.consumer_id == t.consumer_id && a.nack == t.nack => match a.ranges.last_mut() {
                Some(r) if r.1 + 1 == t.qtag => r.1 = t.qtag,
                _ => a.ranges.push((t.qtag, t.qtag)),
            },
            _ => {
                let a = TxAck {
                    consumer_id: t.consumer_id,
                    queue: k.queue.clone(),
                    nack: t.nack,
                    ranges: vec![(t.qtag, t.qtag)],
                };
                out.push((k.owner, a));
            }
        }
    }
    out
}

/// tx.rollback: the publishes are dropped, and the deliveries the
/// transaction acked are unacked again under their tags.
pub fn rollback(c: &AmqpConn, st: &mut State, n: u16, mid: MethodId) -> Result<(), Fault> {
    let ch = channel(st, n)?;
    let Some(tx) = ch.tx.as_mut() else {
        return Err(precondition(n, "PRECONDITION_FAILED - channel is not transactional".into(), mid));
    };
    let tx = std::mem::take(&mut **tx);
    tx.release(&c.tx_held);
    let mut acks = tx.acks;
    acks.sort_unstable_by_key(|t| t.tag);
    let live: Vec<bool> = acks.iter().map(|t| st.consumers.contains_key(&t.consumer_id)).collect();
    let ch = channel(st, n)?;
    for (t, live) in acks.into_iter().zip(live) {
        if live {
            ch.restore_tag(t.tag, (t.consumer_id, t.qtag));
        } else {
            // Its consumer is gone and its messages requeued.
            ch.unacked = ch.unacked.saturating_sub(1);
        }
    }
    answer_in_order(c, st, n, id::TX_ROLLBACK_OK, mid);
    Ok(())
}

/// Answers a method with no fields of its own after the channel's
/// pending synchronous methods (a commit may still be in flight).
fn answer_in_order(c: &AmqpConn, st: &mut State, n: u16, ok: MethodId, cause: MethodId) {
    let Some(ch) = st.channels.get_mut(&n) else { return };
    let seq = ch.push_op(OpKind::Simple { ok, cause, no_wait: false });
    // Filed in the inbox like any reply, handled after this method.
    c.shard.route_reply(c.me(), Reply::Ok { request_id: rid(KIND_OP, n, seq), value: 0 });
}

fn channel(st: &mut State, n: u16) -> Result<&mut Channel, Fault> {
    st.channels.get_mut(&n).ok_or_else(|| Fault::Conn {
        code: code::CHANNEL_ERROR,
        text: format!("channel {n} is not open"),
        cause: (0, 0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(held: &Cell<u64>) -> TxLimits<'_> {
        TxLimits { messages_max: 3, bytes_max: 1000, held }
    }

    #[test]
    fn limits_count_messages_and_the_connections_bytes() {
        let held = Cell::new(0);
        let mut tx = Tx::default();
        assert!(tx.reserve(2, 100, limits(&held)).is_ok());
        assert!(tx.reserve(1, 800, limits(&held)).is_ok());
        let e = tx.reserve(1, 0, limits(&held)).unwrap_err();
        assert!(e.contains("tx_messages_max = 3"), "{e}");
        // Another channel's transaction shares the connection's bytes.
        let mut other = Tx::default();
        let e = other.reserve(1, 101, limits(&held)).unwrap_err();
        assert!(e.contains("tx_bytes_max = 1000"), "{e}");
        tx.release(&held);
        other.release(&held);
        assert_eq!(held.get(), 0);
        assert!(Tx::default().reserve(1, 1000, limits(&held)).is_ok());
    }

    /// Acks taken into a transaction leave their tags unknown (a second
    /// ack is refused) but counted unacked; a rollback's restore makes
    /// them acknowledgeable again under the same tags.
    #[test]
    fn taken_tags_come_back_on_rollback() {
        let mut ch = Channel::new();
        ch.tx = Some(Box::default());
        for q in 1..=4 {
            ch.assign_tag(Some((7, q)));
        }
        let held = Cell::new(0);
        assert_eq!(take(&mut ch, (2, true), None, limits(&held)), Ok(true));
        assert_eq!(take(&mut ch, (1, false), None, limits(&held)), Ok(false), "acked twice");
        assert_eq!(take(&mut ch, (4, false), Some(true), limits(&held)), Ok(true));
        assert_eq!(ch.unacked, 4, "still counted against the channel's prefetch");
        assert_eq!(take(&mut ch, (4, false), None, limits(&held)), Ok(false), "taken already");
        let mut taken = std::mem::take(&mut ch.tx.as_mut().unwrap().acks);
        taken.sort_unstable_by_key(|t| t.tag);
        for t in &taken {
            ch.restore_tag(t.tag, (t.consumer_id, t.qtag));
        }
        let mut all = Vec::new();
        assert_eq!(ch.take_tags_numbered(0, true, |tag, c, q| all.push((tag, c, q))), Some(4));
        assert_eq!(all, vec![(1, 7, 1), (2, 7, 2), (3, 7, 3), (4, 7, 4)]);
    }
}
