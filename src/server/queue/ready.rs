//! The ready messages of one queue: one FIFO per priority level (a single
//! level unless the queue has `x-max-priority`). The highest non-empty
//! level is the head; within a level, publish order. A bitmap of the
//! non-empty levels keeps finding the head O(1) for 256 levels.

use super::super::types::Message;
use std::collections::VecDeque;

pub struct Ready {
    levels: Vec<VecDeque<Message>>,
    /// Bit `p` set: `levels[p]` is not empty.
    nonempty: [u64; 4],
    len: usize,
    /// Whole entries (publish pause, stats).
    bytes: u64,
    /// Bodies only (`x-max-length-bytes`).
    body_bytes: u64,
}

impl Ready {
    /// `levels`: 1 for a plain queue, `x-max-priority + 1` otherwise.
    pub fn new(levels: usize) -> Self {
        let levels = levels.clamp(1, 256);
        Self {
            levels: (0..levels).map(|_| VecDeque::new()).collect(),
            nonempty: [0; 4],
            len: 0,
            bytes: 0,
            body_bytes: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
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

    pub fn reserve(&mut self, n: usize) {
        if self.levels.len() == 1 {
            self.levels[0].reserve(n);
        }
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
    }

    fn sub(&mut self, m: &Message) {
        self.len -= 1;
        self.bytes -= m.bytes() as u64;
        self.body_bytes -= m.body_bytes();
    }

    pub fn push_back(&mut self, m: Message) {
        let p = self.level_of(&m);
        self.add(&m);
        self.levels[p].push_back(m);
        self.mark(p);
    }

    /// Puts a message back in publish order within its level (requeue,
    /// usually at the front).
    pub fn insert_by_seq(&mut self, m: Message) {
        let p = self.level_of(&m);
        self.add(&m);
        let level = &mut self.levels[p];
        let pos = level.partition_point(|r| r.seq < m.seq);
        level.insert(pos, m);
        self.mark(p);
    }

    /// The next message to deliver.
    #[cfg(test)]
    pub fn front(&self) -> Option<&Message> {
        self.levels[self.top()?].front()
    }

    pub fn pop_front(&mut self) -> Option<Message> {
        let p = self.top()?;
        let m = self.levels[p].pop_front()?;
        self.mark(p);
        self.sub(&m);
        Some(m)
    }

    /// The earliest deadline among the level heads (expiry looks only at
    /// heads, as RabbitMQ does).
    pub fn head_deadline(&self) -> Option<u64> {
        self.levels.iter().filter_map(|l| l.front()).map(|m| m.deadline).filter(|d| *d != u64::MAX).min()
    }

    /// Removes every level head whose deadline is at or before `now`,
    /// repeatedly, handing each to `expired`.
    pub fn expire_heads(&mut self, now: u64, mut expired: impl FnMut(Message)) {
        for p in 0..self.levels.len() {
            while self.levels[p].front().is_some_and(|m| m.deadline <= now) {
                if let Some(m) = self.levels[p].pop_front() {
                    self.sub(&m);
                    expired(m);
                }
            }
            self.mark(p);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Message> {
        self.levels.iter().rev().flatten()
    }

    pub fn clear(&mut self) {
        self.levels.iter_mut().for_each(VecDeque::clear);
        self.nonempty = [0; 4];
        self.len = 0;
        self.bytes = 0;
        self.body_bytes = 0;
    }
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
        r.expire_heads(60, |m| gone.push(m.seq));
        assert_eq!(gone, vec![2]);
        r.expire_heads(100, |m| gone.push(m.seq));
        assert_eq!(gone, vec![2, 5]);
        assert!(r.is_empty());
        let _ = Bytes::new();
    }
}
