//! Dispatch: ready messages to consumers under their credit and their
//! connections' room, by consumer priority, round-robin within one.
//!
//! Consumers are kept ordered by priority, highest first, and in
//! registration order within a priority (`insert_consumer`), so each
//! priority is one run of `Queue::consumers`: a [`Level`], with its own
//! round-robin cursor. Ordering happens when a consumer comes or goes;
//! a dispatch only walks the levels in order: no sort, no allocation per
//! message. A queue whose consumers all have one priority (the default,
//! 0) has one level and dispatches as it did before priorities.

use super::consumer::{Consumer, Deliveries};
use super::{Out, Queue};
use crate::server::types::ConnRef;

/// One priority's run of consumers: `Queue::consumers[start..end]`, where
/// `start` is the previous level's `end` (0 for the first).
#[derive(Debug, Clone, Copy)]
pub(super) struct Level {
    pub priority: i64,
    pub end: usize,
    /// Round-robin cursor within the level: the offset of the consumer
    /// that goes first in the next pass.
    pub rr: usize,
}

/// Per consumer, for one pass: the tag of the first message it gets, its
/// credit for the pass, and its connection's room in bytes.
type Slot = (u64, u32, usize);

impl Queue {
    /// Adds a consumer after every consumer of its priority or higher, so
    /// the order stays by priority (highest first), then by registration.
    pub(super) fn insert_consumer(&mut self, mut c: Consumer) -> usize {
        c.registered = self.next_registered;
        self.next_registered += 1;
        let p = c.priority;
        let at = self.consumers.partition_point(|k| k.priority >= p);
        self.consumers.insert(at, c);
        // The levels at or after the insertion point shift by one; the
        // new consumer ends its own level (or starts a new one).
        let l = self.levels.partition_point(|l| l.priority > p);
        match self.levels.get_mut(l) {
            Some(level) if level.priority == p => level.end += 1,
            _ => self.levels.insert(l, Level { priority: p, end: at + 1, rr: 0 }),
        }
        for level in &mut self.levels[l + 1..] {
            level.end += 1;
        }
        at
    }

    /// Removes consumer `i`; its level's cursor keeps pointing at the
    /// consumer it pointed at (or wraps), and an emptied level goes.
    pub(super) fn remove_consumer(&mut self, i: usize) -> Consumer {
        let c = self.consumers.remove(i);
        // Its level is the first that ends past it.
        let l = self.levels.partition_point(|l| l.end <= i);
        let start = if l == 0 { 0 } else { self.levels[l - 1].end };
        for level in &mut self.levels[l..] {
            level.end -= 1;
        }
        let level = &mut self.levels[l];
        let len = level.end - start;
        if len == 0 {
            self.levels.remove(l);
        } else {
            if level.rr > i - start {
                level.rr -= 1;
            }
            if level.rr >= len {
                level.rr = 0;
            }
        }
        c
    }

    /// With `x-single-active-consumer`, the one consumer dispatch may push
    /// to: the earliest-registered push consumer, whatever its priority
    /// (the active one stays active until it goes). `None` otherwise.
    fn single_active(&self) -> Option<Option<usize>> {
        if !self.args.single_active_consumer {
            return None;
        }
        let active = self.consumers.iter().enumerate().filter(|(_, c)| !c.pull).min_by_key(|(_, c)| c.registered);
        Some(active.map(|(i, _)| i))
    }

    /// `dispatch_gated` with every consumer's connection taking deliveries.
    pub fn dispatch(&mut self, out: Out<'_>, now: u64) -> usize {
        self.dispatch_gated(out, &|_| usize::MAX, now).sent
    }

    /// Pushes ready messages to consumers with credit: the highest
    /// priority first, round-robin one message per consumer per round
    /// within a priority; a lower priority gets messages only once every
    /// consumer above it has no credit or room left in this pass (it is
    /// "blocked", as RabbitMQ says). Each consumer's share is handed to
    /// `out` once, straight from its unacked store: no copies, no clones.
    /// Messages past their deadline are not delivered (they go to the dead
    /// list). `room` says how many bytes a consumer's connection may take
    /// in this call (`server/gate.rs`), asked once per consumer per call,
    /// not per message: a consumer with none is skipped, and one whose
    /// room runs out gets no more (it may pass its room by one message)
    /// and is reported in `Dispatched::full`.
    pub fn dispatch_gated(&mut self, out: Out<'_>, room: &dyn Fn(ConnRef) -> usize, now: u64) -> Dispatched {
        if self.stream.is_some() {
            return self.dispatch_stream(out, room, now);
        }
        let mut done = Dispatched::default();
        let only = self.single_active();
        if self.ready.is_empty() || self.consumers.is_empty() || only == Some(None) {
            return done;
        }
        let mut firsts: Vec<Slot> = Vec::with_capacity(self.consumers.len());
        for (i, c) in self.consumers.iter().enumerate() {
            let credit = if only.is_none_or(|o| o == Some(i)) { c.credit() } else { 0 };
            let bytes = if credit > 0 { room(c.owner) } else { 0 };
            if credit > 0 && bytes == 0 {
                done.skipped = true;
            }
            firsts.push((c.next_tag(), if bytes == 0 { 0 } else { credit }, bytes));
        }
        let sent = match only {
            Some(Some(i)) => self.fill_one(i, &mut firsts[i], now),
            _ => self.fill_levels(&mut firsts, now),
        };
        for (c, (first, _, bytes)) in self.consumers.iter_mut().zip(firsts) {
            let count = c.next_tag() - first;
            if count > 0 {
                if c.auto_ack {
                    done.sent_auto_ack += crate::protocol::wire::usize_of(count);
                }
                c.mark_sent(first, now);
                let lo = crate::protocol::wire::usize_of(first - c.base_tag);
                out(
                    c.owner,
                    c.id,
                    first,
                    Deliveries::unacked(c.unacked.range(lo..lo + crate::protocol::wire::usize_of(count))),
                );
                if bytes == 0 {
                    done.full.push(c.owner);
                }
            }
        }
        self.delivered_total += sent as u64;
        done.sent = sent;
        done
    }

    /// Each level in turn, highest priority first. A level that ends its
    /// pass with credit left ran the queue dry: the levels below get
    /// nothing.
    fn fill_levels(&mut self, firsts: &mut [Slot], now: u64) -> usize {
        let mut sent = 0;
        let mut start = 0;
        for l in 0..self.levels.len() {
            let end = self.levels[l].end;
            let slots = &mut firsts[start..end];
            sent += match slots {
                [one] => self.fill_one(start, one, now),
                _ => self.fill_rounds(l, start, slots, now),
            };
            if slots.iter().any(|s| s.1 > 0) {
                break;
            }
            start = end;
        }
        sent
    }

    /// Hands one message to consumer `i` out of its credit and room;
    /// returns whether it got one. A room that runs out ends its credit.
    fn give(&mut self, i: usize, slot: &mut Slot, now: u64) -> bool {
        let Some(m) = self.pop_live(now) else { return false };
        slot.2 = slot.2.saturating_sub(delivery_cost(m.entry.len()));
        slot.1 = if slot.2 == 0 { 0 } else { slot.1 - 1 };
        self.consumers[i].track(m);
        true
    }

    /// The single-consumer pass: as many as its credit and room allow.
    fn fill_one(&mut self, i: usize, slot: &mut Slot, now: u64) -> usize {
        let mut sent = 0;
        while slot.1 > 0 && self.give(i, slot, now) {
            sent += 1;
        }
        sent
    }

    /// Round-robin over level `l` (consumers from `start`, one slot each),
    /// one message per consumer per round, starting after the last one
    /// served: across passes of a message or two (a publish each), the
    /// consumers still take turns one message at a time.
    fn fill_rounds(&mut self, l: usize, start: usize, slots: &mut [Slot], now: u64) -> usize {
        let n = slots.len();
        let rr = self.levels[l].rr;
        let mut last = None;
        let mut sent = 0;
        'rounds: loop {
            let mut progressed = false;
            for k in 0..n {
                let j = (rr + k) % n;
                if slots[j].1 == 0 {
                    continue;
                }
                if !self.give(start + j, &mut slots[j], now) {
                    break 'rounds;
                }
                sent += 1;
                last = Some(j);
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        if let Some(j) = last {
            self.levels[l].rr = (j + 1) % n;
        }
        sent
    }
}

/// What one delivery is counted as against a connection's room: its entry
/// plus a generous allowance for the protocol's framing (an AMQP
/// basic.deliver, content header and body frame take under 128 bytes
/// around the entry's own).
#[inline]
pub fn delivery_cost(entry_len: usize) -> usize {
    entry_len.saturating_add(DELIVERY_FRAMING_BYTES)
}

pub const DELIVERY_FRAMING_BYTES: usize = 128;

/// What one dispatch did.
#[derive(Debug, Default)]
pub struct Dispatched {
    pub sent: usize,
    /// Of `sent`, those that went to auto-ack (no-ack) consumers.
    pub sent_auto_ack: usize,
    /// A consumer with credit was skipped because its connection takes
    /// no deliveries now: the queue must be dispatched again when it does.
    pub skipped: bool,
    /// Connections whose room ran out in this pass: the owner stops
    /// dispatching to them until they drain.
    pub full: Vec<ConnRef>,
}
