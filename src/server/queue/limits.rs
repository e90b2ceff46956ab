//! The policies a queue applies by itself: publishing under the length
//! limits (`x-overflow`), message TTL (queue `x-message-ttl` and the
//! per-message `expiration`, both checked lazily at the head only), and
//! the unused-queue deadline (`x-expires`). Removed messages go to the
//! dead list; the shard logs them gone and dead-letters them.

use super::super::deadletter::Reason;
use super::super::policy::Overflow;
use super::super::types::{Message, Origin, QueueError};
use super::Queue;
use crate::protocol::batch::{parse_entry, ENTRY_HAS_PROPS};
use crate::protocol::{props, ErrorCode};
use bytes::Bytes;
use std::sync::Arc;

/// A message removed without an ack.
#[derive(Debug)]
pub struct Dead {
    pub msg: Message,
    pub reason: Reason,
    /// Whether it was stored in the queue (and so, if persistent in a
    /// durable queue, logged): a publish refused by `reject-publish-dlx`
    /// never was.
    pub logged: bool,
}

/// What a publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub accepted: u32,
    /// Refused by `reject-publish(-dlx)` (the batch's last messages).
    pub rejected: u32,
}

impl Queue {
    /// A message as it enters the queue: priority and deadline from its
    /// properties and the queue's arguments.
    pub(super) fn incoming(
        &self,
        seq: u64,
        entry: Bytes,
        persistent: bool,
        now: u64,
        origin: Option<Arc<Origin>>,
    ) -> Message {
        let mut m = Message { origin, ..Message::new(seq, entry, persistent) };
        let mut ttl = self.args.message_ttl.map(u64::from);
        // Only entries with properties can carry a priority or expiration.
        if m.entry.first().is_some_and(|f| f & ENTRY_HAS_PROPS != 0) {
            if let Some(s) = parse_entry(&m.entry).ok().and_then(|e| props::scan(e.props)) {
                if let Some(max) = self.args.max_priority {
                    m.prio = s.priority.unwrap_or(0).min(max);
                }
                if let Some(ms) = s.expiration.and_then(props::expiration_ms) {
                    ttl = Some(ttl.map_or(ms, |t| t.min(ms)));
                }
            }
        }
        if let Some(t) = ttl {
            m.deadline = now.saturating_add(t);
        }
        m
    }

    /// Whether one more message would find the queue full, RabbitMQ's
    /// test: at or over `x-max-length`, or at or over `x-max-length-bytes`.
    fn full(&self, len: u64, body_bytes: u64) -> bool {
        self.args.max_length.is_some_and(|m| len >= m) || self.args.max_length_bytes.is_some_and(|m| body_bytes >= m)
    }

    fn hard_cap(&self, n: u64) -> Result<(), QueueError> {
        if self.ready.len() as u64 + n <= self.limits.messages_max {
            return Ok(());
        }
        Err(QueueError::new(
            ErrorCode::QueueFull,
            format!(
                "queue '{}' holds {} messages; {} more would pass queue_messages_max {}",
                self.name,
                self.ready.len(),
                n,
                self.limits.messages_max
            ),
        ))
    }

    /// How many of `entries` fit before the queue is full, counting the
    /// ones just accepted.
    fn fitting(&self, entries: &[Bytes]) -> usize {
        let (mut len, mut body) = (self.ready.len() as u64, self.ready.body_bytes());
        for (i, e) in entries.iter().enumerate() {
            if self.full(len, body) {
                return i;
            }
            len += 1;
            body += Message::new(0, e.clone(), false).body_bytes();
        }
        entries.len()
    }

    /// Whether a publish may be refused in part (`reject-publish(-dlx)`
    /// with a limit set).
    fn rejects(&self) -> bool {
        self.args.overflow != Overflow::DropHead
            && (self.args.max_length.is_some() || self.args.max_length_bytes.is_some())
    }

    /// Appends a batch. The `queue_messages_max` cap refuses a whole batch.
    /// With `reject-publish(-dlx)`, the messages that find the queue full
    /// are refused (dead-lettered with `-dlx`); unless `partial`, a batch
    /// that does not fit whole is refused whole, so a native confirm
    /// always covers every message. `stored` sees each accepted message
    /// with its sequence number (the durable log).
    pub fn publish(
        &mut self,
        persistent: bool,
        partial: bool,
        now: u64,
        entries: impl ExactSizeIterator<Item = Bytes>,
        origin: Option<&Arc<Origin>>,
        stored: impl FnMut(u64, &Bytes),
    ) -> Result<Published, QueueError> {
        if self.stream.is_some() {
            let accepted = self.stream_publish(entries, origin, stored)?;
            return Ok(Published { accepted, rejected: 0 });
        }
        let n = entries.len();
        self.hard_cap(n as u64)?;
        if !self.rejects() {
            // The hot path: no refusals possible, no intermediate Vec.
            self.append(persistent, now, entries, origin, stored);
            return Ok(Published { accepted: crate::protocol::wire::len32(n), rejected: 0 });
        }
        let entries: Vec<Bytes> = entries.collect();
        let fit = self.fitting(&entries);
        let take = if fit < n && !partial { 0 } else { fit };
        let mut rest = entries.into_iter();
        self.append(persistent, now, rest.by_ref().take(take), origin, stored);
        let rejected = crate::protocol::wire::len32(n - take);
        if self.args.overflow == Overflow::RejectPublishDlx {
            for entry in rest {
                let msg = self.incoming(u64::MAX, entry, persistent, now, origin.cloned());
                self.dead.push(Dead { msg, reason: Reason::Maxlen, logged: false });
            }
        }
        if take == 0 && n > 0 {
            return Err(self.full_error(rejected));
        }
        Ok(Published { accepted: crate::protocol::wire::len32(take), rejected })
    }

    fn append(
        &mut self,
        persistent: bool,
        now: u64,
        entries: impl ExactSizeIterator<Item = Bytes>,
        origin: Option<&Arc<Origin>>,
        mut stored: impl FnMut(u64, &Bytes),
    ) {
        self.ready.reserve(entries.len());
        self.published_total += entries.len() as u64;
        for entry in entries {
            stored(self.next_seq, &entry);
            let msg = self.incoming(self.next_seq, entry, persistent, now, origin.cloned());
            self.next_seq += 1;
            self.ready.push_back(msg);
        }
    }

    fn full_error(&self, n: u32) -> QueueError {
        let limit = match (self.args.max_length, self.args.max_length_bytes) {
            (Some(l), Some(b)) => format!("x-max-length {l}, x-max-length-bytes {b}"),
            (Some(l), None) => format!("x-max-length {l}"),
            (None, Some(b)) => format!("x-max-length-bytes {b}"),
            (None, None) => String::new(),
        };
        QueueError::new(
            ErrorCode::QueueFull,
            format!(
                "queue '{}' is full ({limit}, x-overflow {}): {n} messages refused",
                self.name,
                self.args.overflow.name()
            ),
        )
    }

    /// The next message that may still be delivered: heads past their
    /// deadline (strictly: a TTL of 0 still reaches a waiting consumer)
    /// go to the dead list on the way.
    /// A spilled head stops it: the shard reads it back first (and so
    /// does an expired spilled head that will be dead-lettered).
    pub(super) fn pop_live(&mut self, now: u64) -> Option<Message> {
        loop {
            let m = self.ready.front()?;
            if m.deadline < now {
                if self.dead.len() >= self.limits.removals_max {
                    // The rest expire on the next settle (the timer is due).
                    return None;
                }
                if m.spilled.is_some() && self.dead_letters() {
                    self.spill.blocked = true;
                    return None;
                }
                let m = self.ready.pop_front()?;
                self.dead.push(Dead { msg: m, reason: Reason::Expired, logged: true });
                continue;
            }
            if m.spilled.is_some() {
                return None;
            }
            return self.ready.pop_front();
        }
    }

    /// After a request's dispatch: expires heads whose deadline has come,
    /// and with `drop-head` drops heads while the queue is over a limit.
    /// A spilled head that is to be dead-lettered stays until the shard
    /// has read its entry back (`fetch_blocked`).
    pub fn enforce(&mut self, now: u64) {
        let keep_spilled = self.dead_letters();
        let dead = &mut self.dead;
        // Bounded per settle: a queue of millions expiring at once must not
        // hold the shard (or build one huge dead-letter batch).
        let budget = self.limits.removals_max.saturating_sub(dead.len());
        self.spill.blocked = self.ready.expire_heads_max(now, keep_spilled, budget, |msg| {
            dead.push(Dead { msg, reason: Reason::Expired, logged: true })
        });
        if self.args.overflow != Overflow::DropHead {
            return;
        }
        let over = |q: &Queue| {
            q.args.max_length.is_some_and(|m| q.ready.len() as u64 > m)
                || q.args.max_length_bytes.is_some_and(|m| q.ready.body_bytes() > m)
        };
        while over(self) {
            if keep_spilled && self.head_spilled() {
                self.spill.blocked = true;
                break;
            }
            let Some(msg) = self.ready.pop_front() else { break };
            self.dead.push(Dead { msg, reason: Reason::Maxlen, logged: true });
        }
    }

    /// Messages removed since the last call.
    pub fn take_dead(&mut self) -> Vec<Dead> {
        std::mem::take(&mut self.dead)
    }

    pub fn has_dead(&self) -> bool {
        !self.dead.is_empty()
    }

    /// A declare, a get or a consumer change: `x-expires` counts from here.
    pub fn touch(&mut self, now: u64) {
        self.last_used = now;
    }

    /// When an `x-expires` queue without consumers is due for deletion.
    pub fn unused_deadline(&self) -> Option<u64> {
        let e = self.args.expires?;
        (self.consumer_count() == 0).then(|| self.last_used.saturating_add(u64::from(e)))
    }

    /// The earliest moment something is due: a head's expiry or the
    /// queue's own. Not the heads while a spilled one is being read back
    /// for dead-lettering: the read settles the queue again.
    pub fn next_deadline(&self) -> Option<u64> {
        let heads = if self.spill.blocked { None } else { self.ready.head_deadline() };
        match (heads, self.unused_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
