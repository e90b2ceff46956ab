//! Spilled messages of a queue: past the shard's memory budget a
//! persistent message of a durable queue keeps only its record's location
//! (`Message::spilled`, entry empty). Dispatch stops at a spilled head; the
//! shard reads a window of upcoming spilled entries back (`fetch_window`,
//! then `fill`) and dispatches again. Ready messages stay in sequence
//! order, so every lookup here is a binary search by sequence number.

use super::Queue;
use crate::server::types::Message;
use crate::storage::Loc;
use bytes::Bytes;

/// Spilled ready messages of one queue, and the in-memory bytes the shard
/// last counted for it (its share of the shard's resident bytes).
#[derive(Debug, Default)]
pub struct SpillState {
    len: usize,
    bytes: u64,
    pub accounted: u64,
}

impl SpillState {
    pub(super) fn popped(&mut self, m: &Message) {
        if let Some(l) = m.spilled {
            self.len -= 1;
            self.bytes -= u64::from(l.len);
        }
    }

    pub(super) fn cleared(&mut self) {
        self.len = 0;
        self.bytes = 0;
    }
}

impl Queue {
    /// Ready messages whose entry is on disk only.
    pub fn spilled_len(&self) -> usize {
        self.spill.len
    }

    /// Bytes of ready entries held in memory.
    pub fn mem_bytes(&self) -> u64 {
        self.ready_bytes - self.spill.bytes
    }

    pub fn head_spilled(&self) -> bool {
        self.ready.front().is_some_and(|m| m.spilled.is_some())
    }

    pub fn front_seq(&self) -> Option<u64> {
        self.ready.front().map(|m| m.seq)
    }

    fn ready_mut(&mut self, seq: u64) -> Option<&mut Message> {
        let i = self.ready.binary_search_by_key(&seq, |m| m.seq).ok()?;
        self.ready.get_mut(i)
    }

    /// Drops the in-memory entry of ready message `seq`, keeping `loc`.
    pub fn spill(&mut self, seq: u64, loc: Loc) -> bool {
        let Some(m) = self.ready_mut(seq).filter(|m| m.spilled.is_none() && m.persistent) else { return false };
        m.entry = Bytes::new();
        m.spilled = Some(loc);
        self.spill.len += 1;
        self.spill.bytes += u64::from(loc.len);
        true
    }

    /// Recovery: room for `n` more ready messages.
    pub fn reserve_ready(&mut self, n: usize) {
        self.ready.reserve(n);
    }

    /// Recovery: a persistent message left on disk, in sequence order.
    pub fn restore_spilled(&mut self, seq: u64, loc: Loc) {
        self.restore(seq, Bytes::new());
        self.ready_bytes += u64::from(loc.len);
        if let Some(m) = self.ready.back_mut() {
            m.spilled = Some(loc);
        }
        self.spill.len += 1;
        self.spill.bytes += u64::from(loc.len);
    }

    /// Puts back the entry read from `loc`; false when the message is no
    /// longer there, or no longer spilled at `loc`.
    pub fn fill(&mut self, seq: u64, loc: Loc, entry: Bytes) -> bool {
        let Some(m) = self.ready_mut(seq).filter(|m| m.spilled == Some(loc)) else { return false };
        m.entry = entry;
        m.spilled = None;
        self.spill.len -= 1;
        self.spill.bytes -= u64::from(loc.len);
        true
    }

    /// Compaction moved the record of `seq`.
    pub fn relocate(&mut self, seq: u64, loc: Loc) {
        if let Some(m) = self.ready_mut(seq).filter(|m| m.spilled.is_some()) {
            m.spilled = Some(loc);
        }
    }

    /// The next spilled messages to read back so that about `max_bytes`
    /// (or `max_msgs`) of ready messages are in memory ahead of the
    /// consumers (empty when half of that is already there), and the
    /// sequence number past which the next window should be read.
    pub fn fetch_window(&self, max_bytes: u64, max_msgs: usize) -> (Vec<(u64, Loc)>, u64) {
        let mut out = Vec::new();
        let front = self.front_seq().unwrap_or(0);
        if self.spill.len == 0 {
            return (out, u64::MAX);
        }
        let (mut bytes, mut n, mut stop) = (0u64, 0usize, front);
        for m in &self.ready {
            stop = m.seq;
            match m.spilled {
                None if out.is_empty() => {
                    if bytes >= max_bytes / 2 || n >= max_msgs / 2 {
                        break;
                    }
                }
                // The window ends at the next message still in memory.
                None => break,
                Some(l) => out.push((m.seq, l)),
            }
            bytes += m.bytes() as u64;
            n += 1;
            if bytes >= max_bytes || n >= max_msgs {
                break;
            }
        }
        let mark = match out.get(out.len() / 2) {
            Some(&(seq, _)) => seq,
            None => stop,
        };
        (out, mark.max(front + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::super::QueueLimits;
    use super::*;
    use crate::server::types::ConnRef;
    use std::num::NonZeroU32;

    fn loc(off: u32) -> Loc {
        Loc { seg: NonZeroU32::MIN, off, len: 1 }
    }

    #[test]
    fn dispatch_stops_at_a_spilled_head_until_it_is_filled() {
        let c = ConnRef { shard: 0, conn_id: 1 };
        let mut q = Queue::new("q".into(), true, QueueLimits { messages_max: 100 });
        let entries: Vec<Bytes> = (0..4u8).map(|i| Bytes::from(vec![i])).collect();
        q.publish(true, entries.into_iter()).unwrap();
        assert!(q.spill(1, loc(10)) && q.spill(2, loc(20)));
        assert!(!q.spill(2, loc(20)), "already spilled");
        assert_eq!((q.spilled_len(), q.mem_bytes(), q.ready_bytes()), (2, 2, 4));
        q.subscribe(c, 1, 10).unwrap();
        let mut got = Vec::new();
        let mut out =
            |_: ConnRef, _: u32, _: u64, d: super::super::Deliveries<'_>| got.extend(d.map(|m| m.entry.to_vec()));
        assert_eq!(q.dispatch(&mut out), 1, "only the message before the spilled one");
        assert!(q.head_spilled());
        assert_eq!(q.fetch_window(1 << 20, 100), (vec![(1, loc(10)), (2, loc(20))], 2));
        assert!(!q.fill(1, loc(99), Bytes::from_static(b"x")), "another location");
        assert!(q.fill(1, loc(10), Bytes::from(vec![1])) && q.fill(2, loc(20), Bytes::from(vec![2])));
        assert_eq!(q.dispatch(&mut out), 3);
        assert_eq!(got, vec![vec![0], vec![1], vec![2], vec![3]]);
        assert_eq!((q.spilled_len(), q.mem_bytes()), (0, 0));
    }
}
