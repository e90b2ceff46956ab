//! The ready messages of one queue: one FIFO per priority level (a single
//! level unless the queue has `x-max-priority`). The highest non-empty
//! level is the head; within a level, publish order. A bitmap of the
//! non-empty levels keeps finding the head O(1) for 256 levels.
//!
//! Every level is in sequence order (publish appends, requeue inserts by
//! sequence number), so a message is found by a binary search per level.
//! Spilled messages (entry on disk only, `queue/spill.rs`) count here like
//! any other: `Message::bytes` / `body_bytes` give their original sizes.
//!
//! A single-level queue is its level ("hot": full `Message`s) followed by
//! a compact cold part (`cold.rs`) that holds a spilled backlog at 16
//! bytes a message. Hot is kept between `HOT_LOW` and `HOT_HIGH` messages
//! while cold is not empty (spilled messages past `HOT_HIGH` are demoted,
//! cold ones promoted below `HOT_LOW`), so the head, expiry and the
//! read-ahead windows (`fetch_windows`) only ever look at hot, and cold is
//! empty whenever hot is. Moving between the two changes no totals.

use super::super::types::{Message, Spilled};
use super::cold::{self, Cold};
use crate::storage::Loc;
use bytes::Bytes;
use std::collections::VecDeque;

/// Hot messages past which spilled ones go cold.
pub const HOT_HIGH: usize = 32768;
/// Hot messages below which cold ones come back; more than a read-ahead
/// window, which is read from hot only.
pub const HOT_LOW: usize = 16384;

pub struct Ready {
    levels: Vec<VecDeque<Message>>,
    /// Bit `p` set: `levels[p]` is not empty.
    nonempty: [u64; 4],
    len: usize,
    /// Whole entries (publish pause, stats).
    bytes: u64,
    /// Bodies only (`x-max-length-bytes`).
    body_bytes: u64,
    /// Spilled messages among them, and their entries' bytes.
    spilled: usize,
    spilled_bytes: u64,
    /// Persistent messages among them, and their entries' bytes (the
    /// operators' `messages_persistent`).
    persistent: usize,
    persistent_bytes: u64,
    /// Bytes of every message removed so far (wrapping): the bytes from
    /// the head to a message, counted once, stay known as the head moves
    /// (`Queue::fetch_windows`).
    removed: u64,
    /// After `levels[0]` of a single-level queue.
    cold: Cold,
    hot_low: usize,
    hot_high: usize,
}

impl Ready {
    /// `levels`: 1 for a plain queue, `x-max-priority + 1` otherwise.
    pub fn new(levels: usize) -> Self {
        Self::with_marks(levels, HOT_LOW, HOT_HIGH)
    }

    /// `new` with other water marks for hot (tests reach cold with few
    /// messages).
    pub(super) fn with_marks(levels: usize, hot_low: usize, hot_high: usize) -> Self {
        debug_assert!(0 < hot_low && hot_low < hot_high);
        let levels = levels.clamp(1, 256);
        Self {
            levels: (0..levels).map(|_| VecDeque::new()).collect(),
            nonempty: [0; 4],
            len: 0,
            bytes: 0,
            body_bytes: 0,
            spilled: 0,
            spilled_bytes: 0,
            persistent: 0,
            persistent_bytes: 0,
            removed: 0,
            cold: Cold::default(),
            hot_low,
            hot_high,
        }
    }

    /// Priority levels (1 without `x-max-priority`).
    pub fn levels(&self) -> usize {
        self.levels.len()
    }

    pub fn spilled_len(&self) -> usize {
        self.spilled
    }

    /// Entry bytes of the spilled messages (in `bytes()`, not in memory).
    pub fn spilled_bytes(&self) -> u64 {
        self.spilled_bytes
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Persistent messages and their entries' bytes.
    pub fn persistent(&self) -> (usize, u64) {
        (self.persistent, self.persistent_bytes)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn body_bytes(&self) -> u64 {
        self.body_bytes
    }

    /// Room in hot for `n` more messages, up to what hot holds when a
    /// backlog goes cold (recovery asks for the whole backlog).
    pub fn reserve(&mut self, n: usize) {
        if self.levels.len() == 1 && self.cold.is_empty() {
            self.levels[0].reserve(n.min(self.hot_high));
        }
    }

    /// Recovery: room in cold for `n` more messages, exactly, so a
    /// recovered backlog does not sit in a deque up to twice its size
    /// (hot may take up to `HOT_LOW` of them: a little room to spare).
    pub fn reserve_cold(&mut self, n: usize) {
        if self.levels.len() == 1 && n > self.hot_low {
            self.cold.reserve_exact(n);
        }
    }

    /// Messages in the cold part.
    #[cfg(test)]
    pub fn cold_len(&self) -> usize {
        self.cold.len()
    }

    #[cfg(test)]
    pub(super) fn cold(&self) -> &Cold {
        &self.cold
    }

    /// Heap bytes the cold part holds.
    #[cfg(test)]
    pub fn cold_capacity_bytes(&self) -> usize {
        self.cold.capacity_bytes()
    }

    fn level_of(&self, m: &Message) -> usize {
        usize::from(m.prio).min(self.levels.len() - 1)
    }

    fn mark(&mut self, p: usize) {
        if self.levels[p].is_empty() {
            self.nonempty[p / 64] &= !(1 << (p % 64));
        } else {
            self.nonempty[p / 64] |= 1 << (p % 64);
        }
    }

    /// The highest non-empty level.
    fn top(&self) -> Option<usize> {
        (0..4).rev().find(|&w| self.nonempty[w] != 0).map(|w| w * 64 + 63 - self.nonempty[w].leading_zeros() as usize)
    }

    fn add(&mut self, m: &Message) {
        self.len += 1;
        self.bytes += m.bytes() as u64;
        self.body_bytes += m.body_bytes();
        if let Some(s) = m.spilled {
            self.spilled += 1;
            self.spilled_bytes += u64::from(s.loc.len);
        }
        if m.persistent {
            self.persistent += 1;
            self.persistent_bytes += m.bytes() as u64;
        }
    }

    fn sub(&mut self, m: &Message) {
        self.len -= 1;
        self.bytes -= m.bytes() as u64;
        self.removed = self.removed.wrapping_add(m.bytes() as u64);
        self.body_bytes -= m.body_bytes();
        if let Some(s) = m.spilled {
            self.spilled -= 1;
            self.spilled_bytes -= u64::from(s.loc.len);
        }
        if m.persistent {
            self.persistent -= 1;
            self.persistent_bytes -= m.bytes() as u64;
        }
    }

    /// Appends a message. Behind a cold part it goes there; a spilled one
    /// (recovery) goes cold once hot holds enough.
    pub fn push_back(&mut self, m: Message) {
        self.add(&m);
        let single = self.levels.len() == 1;
        if single && (!self.cold.is_empty() || (self.levels[0].len() >= self.hot_low && cold::compactable(&m))) {
            return self.cold.push_back(m);
        }
        let p = self.level_of(&m);
        self.levels[p].push_back(m);
        self.mark(p);
    }

    /// Hot's newest spilled messages go cold while hot is past its high
    /// water mark.
    fn demote(&mut self) {
        if self.levels.len() != 1 {
            return;
        }
        let hot = &mut self.levels[0];
        while hot.len() > self.hot_high && hot.back().is_some_and(cold::compactable) {
            if let Some(m) = hot.pop_back() {
                self.cold.push_front(m);
            }
        }
    }

    /// Cold messages come back while hot is under its low water mark, so
    /// hot is empty only when cold is.
    fn promote(&mut self) {
        if self.cold.is_empty() {
            return;
        }
        while self.levels[0].len() < self.hot_low {
            let Some(m) = self.cold.pop_front() else { break };
            self.levels[0].push_back(m);
        }
        self.mark(0);
    }

    /// Puts a message back in publish order within its level (requeue,
    /// usually at the front).
    pub fn insert_by_seq(&mut self, m: Message) {
        // Requeued messages were delivered, so they came from hot.
        debug_assert!(self.cold.front_seq().is_none_or(|s| m.seq < s), "requeue behind cold");
        let p = self.level_of(&m);
        self.add(&m);
        let level = &mut self.levels[p];
        let pos = level.partition_point(|r| r.seq < m.seq);
        level.insert(pos, m);
        self.mark(p);
    }

    /// The next message to deliver: the one `pop_front` would return.
    pub fn front(&self) -> Option<&Message> {
        self.levels[self.top()?].front()
    }

    pub fn pop_front(&mut self) -> Option<Message> {
        let p = self.top()?;
        let m = self.levels[p].pop_front()?;
        self.mark(p);
        self.sub(&m);
        self.promote();
        Some(m)
    }

    /// The earliest deadline among the level heads (expiry looks only at
    /// heads, as RabbitMQ does).
    pub fn head_deadline(&self) -> Option<u64> {
        self.levels.iter().filter_map(|l| l.front()).map(|m| m.deadline).filter(|d| *d != u64::MAX).min()
    }

    /// Removes every level head whose deadline is at or before `now`,
    /// repeatedly, handing each to `expired`. With `keep_spilled`, a
    /// spilled head stops its level (its entry must be read back first);
    /// returns whether one did.
    #[cfg(test)]
    pub fn expire_heads(&mut self, now: u64, keep_spilled: bool, expired: impl FnMut(Message)) -> bool {
        self.expire_heads_max(now, keep_spilled, usize::MAX, expired)
    }

    /// `expire_heads`, removing at most `max` messages; the heads left
    /// are still due (their deadline has passed), so the queue's timer
    /// fires again at once.
    pub fn expire_heads_max(
        &mut self,
        now: u64,
        keep_spilled: bool,
        mut max: usize,
        mut expired: impl FnMut(Message),
    ) -> bool {
        let mut stopped = false;
        for p in 0..self.levels.len() {
            while let Some(m) = self.levels[p].front().filter(|m| m.deadline <= now && max > 0) {
                if keep_spilled && m.spilled.is_some() {
                    stopped = true;
                    break;
                }
                if let Some(m) = self.levels[p].pop_front() {
                    self.sub(&m);
                    expired(m);
                    max -= 1;
                }
                self.promote();
            }
            self.mark(p);
        }
        stopped
    }

    /// Where hot message `seq` is: (level, index).
    fn find(&self, seq: u64) -> Option<(usize, usize)> {
        self.levels.iter().enumerate().find_map(|(p, l)| {
            // Most levels are empty or do not reach `seq`.
            let (Some(f), Some(b)) = (l.front(), l.back()) else { return None };
            if f.seq > seq || b.seq < seq {
                return None;
            }
            // Sequence numbers usually follow each other (a read-back fills
            // a whole window in order): try the offset before searching.
            let guess = usize::try_from(seq - f.seq).unwrap_or(usize::MAX);
            if l.get(guess).is_some_and(|m| m.seq == seq) {
                return Some((p, guess));
            }
            l.binary_search_by_key(&seq, |m| m.seq).ok().map(|i| (p, i))
        })
    }

    /// Compaction moved the record of spilled message `seq`: it points to
    /// the copy (of the same length, else it is not this message's).
    pub fn relocate(&mut self, seq: u64, loc: Loc) {
        let Some((p, i)) = self.find(seq) else { return self.cold.relocate(seq, loc) };
        if let Some(s) = self.levels[p][i].spilled.as_mut() {
            if s.loc.len == loc.len {
                s.loc = loc;
            }
        }
    }

    /// Drops the in-memory entry of persistent message `seq`, whose record
    /// is at `loc` (an entry of `loc.len` bytes); it keeps counting for
    /// the same bytes. False when it is not here, already spilled, or not
    /// the entry `loc` holds.
    /// Spilled past hot's high water mark, it goes cold; a message behind
    /// cold (published while it was not empty) becomes an item there.
    pub fn spill(&mut self, seq: u64, loc: Loc) -> bool {
        let hot = self.find(seq);
        let m = match hot {
            Some((p, i)) => &mut self.levels[p][i],
            None => match self.cold.exception_mut(seq) {
                Some(m) => m,
                None => return false,
            },
        };
        if !spill_entry(m, loc) {
            return false;
        }
        self.spilled += 1;
        self.spilled_bytes += u64::from(loc.len);
        match hot {
            Some(_) => self.demote(),
            None => self.cold.settle(seq),
        }
        true
    }

    /// Puts back the entry of message `seq` read from `loc`; `None` when
    /// it is no longer here or no longer spilled at `loc`. The message's
    /// sizes are counted again from the entry (the same, for an entry that
    /// verified), so the totals stay exact whatever was read.
    pub fn fill(&mut self, seq: u64, loc: Loc, entry: Bytes) -> Option<(&mut Message, Spilled)> {
        let (p, i) = self.find(seq)?;
        let m = &mut self.levels[p][i];
        let s = m.spilled.filter(|s| s.loc == loc)?;
        let (bytes, body) = (m.bytes() as u64, m.body_bytes());
        m.spilled = None;
        m.entry = entry;
        self.bytes = self.bytes - bytes + m.bytes() as u64;
        self.body_bytes = self.body_bytes - body + m.body_bytes();
        if m.persistent {
            self.persistent_bytes = self.persistent_bytes - bytes + m.bytes() as u64;
        }
        self.spilled -= 1;
        self.spilled_bytes -= u64::from(loc.len);
        Some((m, s))
    }

    /// Hot messages in delivery order: the first `HOT_LOW` at least of the
    /// queue when it has a cold part.
    pub fn hot(&self) -> impl Iterator<Item = &Message> {
        self.levels.iter().rev().flatten()
    }

    /// Bytes of every message removed so far (wrapping).
    pub fn removed_bytes(&self) -> u64 {
        self.removed
    }

    /// The hot messages of a single-level queue from the first whose seq
    /// is at least `seq`, and how many come before it.
    pub fn hot_from(&self, seq: u64) -> (usize, impl Iterator<Item = &Message>) {
        debug_assert_eq!(self.levels.len(), 1, "only single-level queues spill");
        let hot = &self.levels[0];
        let i = hot.partition_point(|m| m.seq < seq);
        (i, hot.range(i..))
    }

    /// Every message in delivery order; cold ones are rebuilt one at a time.
    pub fn for_each(&self, mut f: impl FnMut(&Message)) {
        self.hot().for_each(&mut f);
        self.cold.for_each(f);
    }

    pub fn clear(&mut self) {
        self.levels.iter_mut().for_each(VecDeque::clear);
        self.cold.clear();
        self.nonempty = [0; 4];
        self.len = 0;
        self.removed = self.removed.wrapping_add(self.bytes);
        self.bytes = 0;
        self.body_bytes = 0;
        self.spilled = 0;
        self.spilled_bytes = 0;
        self.persistent = 0;
        self.persistent_bytes = 0;
    }
}

/// Drops the in-memory entry of `m`, whose record is at `loc`; false when
/// it is already spilled, transient, or not the entry `loc` holds.
fn spill_entry(m: &mut Message, loc: Loc) -> bool {
    if m.spilled.is_some() || !m.persistent || m.entry.len() != loc.len as usize {
        return false;
    }
    let body_len = u32::try_from(m.body_bytes()).unwrap_or(u32::MAX);
    m.spilled = Some(Spilled { loc, body_len, recovered: false });
    m.entry = Bytes::new();
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(seq: u64, prio: u8, deadline: u64) -> Message {
        let mut b = bytes::BytesMut::new();
        crate::protocol::batch::put_entry(&mut b, 0, &[], b"abc");
        Message { prio, deadline, ..Message::new(seq, b.freeze(), false) }
    }

    #[test]
    fn highest_priority_first_fifo_within() {
        let mut r = Ready::new(256);
        for (seq, p) in [(0, 1), (1, 200), (2, 1), (3, 0), (4, 200), (5, 64), (6, 63)] {
            r.push_back(msg(seq, p, u64::MAX));
        }
        assert_eq!(r.body_bytes(), 21);
        let order: Vec<u64> = std::iter::from_fn(|| r.pop_front()).map(|m| m.seq).collect();
        assert_eq!(order, vec![1, 4, 5, 6, 0, 2, 3]);
        assert!(r.is_empty() && r.bytes() == 0 && r.body_bytes() == 0);
    }

    #[test]
    fn requeue_goes_back_in_order_and_heads_expire() {
        let mut r = Ready::new(1);
        r.push_back(msg(5, 0, 100));
        r.insert_by_seq(msg(2, 0, 50));
        assert_eq!(r.front().map(|m| m.seq), Some(2));
        assert_eq!(r.head_deadline(), Some(50));
        let mut gone = Vec::new();
        r.expire_heads(60, false, |m| gone.push(m.seq));
        assert_eq!(gone, vec![2]);
        r.expire_heads(100, false, |m| gone.push(m.seq));
        assert_eq!(gone, vec![2, 5]);
        assert!(r.is_empty());
        let _ = Bytes::new();
    }
}
