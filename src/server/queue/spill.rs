//! Spilled messages of a queue: past the shard's memory budget a
//! persistent message of a durable queue keeps only its record's location
//! (`Message::spilled`, entry empty). Dispatch stops at a spilled head; the
//! shard reads windows of upcoming spilled entries back ahead of the
//! consumers (`fetch_windows`, then `fill`) and dispatches again.
//!
//! Only queues with a single priority level spill (no `x-max-priority`):
//! there the head is the oldest message and the read-ahead window is the
//! next messages in sequence order. A priority queue keeps its entries in
//! memory (they still count against the budget).
//!
//! Policies: a spilled head that expires or is dropped over a length limit
//! is removed at once when the queue has no dead-letter exchange (its log
//! record is acked; nothing reads it). With one, dead-lettering needs the
//! entry (`x-death` goes into its properties): the head stays, the queue
//! is marked `fetch_blocked`, the shard reads it back, and the next settle
//! removes and dead-letters it like any other message.
//!
//! This is the queue's side; the shard's side (the budget, the fetch task
//! that reads entries back) is `server::shard::spill`.

use super::super::types::{Origin, Spilled};
use super::Queue;
use crate::protocol::batch::{parse_entry, ENTRY_HAS_PROPS};
use crate::protocol::props;
use crate::storage::Loc;
use bytes::Bytes;
use std::sync::Arc;

/// The shard's bookkeeping for one queue.
#[derive(Debug, Default)]
pub struct SpillState {
    /// The in-memory bytes the shard last counted for this queue (its
    /// share of the shard's resident bytes).
    pub accounted: u64,
    /// A spilled head must be read back before it can be removed
    /// (dead-lettered): expiry and drop-head wait for the read.
    pub(super) blocked: bool,
    /// Recovery's clock (`restore`'s `now`): the per-message TTL of a
    /// message restored spilled counts from there once it is read.
    pub(super) restored_at: u64,
}

impl Queue {
    /// Ready messages whose entry is on disk only.
    pub fn spilled_len(&self) -> usize {
        self.ready.spilled_len()
    }

    /// Bytes of ready entries held in memory.
    pub fn mem_bytes(&self) -> u64 {
        self.ready.bytes() - self.ready.spilled_bytes() + self.stream_mem_bytes()
    }

    /// Whether the message dispatch would take next is on disk only.
    pub fn head_spilled(&self) -> bool {
        self.ready.front().is_some_and(|m| m.spilled.is_some())
    }

    /// Whether expiry or drop-head waits for a spilled head to be read.
    pub fn fetch_blocked(&self) -> bool {
        self.spill.blocked
    }

    pub fn front_seq(&self) -> Option<u64> {
        self.ready.front().map(|m| m.seq)
    }

    /// Whether this queue's messages may be spilled: durable, one level.
    pub fn can_spill(&self) -> bool {
        self.durable && self.ready.levels() == 1 && self.stream.is_none()
    }

    /// Whether a removed message goes to a dead-letter exchange (and so
    /// needs its entry).
    pub(super) fn dead_letters(&self) -> bool {
        self.args.dead_letter_exchange.is_some()
    }

    /// Drops the in-memory entry of ready message `seq`, keeping `loc`.
    pub fn spill(&mut self, seq: u64, loc: Loc) -> bool {
        self.can_spill() && self.ready.spill(seq, loc)
    }

    /// Recovery: room for `n` more ready messages, `spilled` of them left
    /// on disk.
    pub fn reserve_ready(&mut self, n: usize, spilled: usize) {
        if self.stream.is_some() {
            return; // a stream's messages are not in `ready`
        }
        self.ready.reserve(n);
        if self.can_spill() {
            self.ready.reserve_cold(spilled);
        }
    }

    /// Recovery: a persistent message left on disk, in sequence order, with
    /// its entry's body length (for `x-max-length-bytes`). Only for queues
    /// that `can_spill`: the shard reads the others' entries back first.
    pub fn restore_spilled(&mut self, seq: u64, loc: Loc, body_len: u32, now: u64, origin: Option<Arc<Origin>>) {
        debug_assert!(self.can_spill());
        let mut m = self.incoming(seq, Bytes::new(), true, now, origin);
        m.redelivered = true;
        m.spilled = Some(Spilled { loc, body_len, recovered: true });
        self.ready.push_back(m);
        self.set_next_seq(seq + 1);
        self.spill.restored_at = now;
    }

    /// Puts back the entry read from `loc`; false when the message is no
    /// longer there, or no longer spilled at `loc`.
    pub fn fill(&mut self, seq: u64, loc: Loc, entry: Bytes) -> bool {
        let Some((m, s)) = self.ready.fill(seq, loc, entry) else { return false };
        if s.recovered {
            // Its per-message expiration, unknown until now.
            if let Some(ms) = expiration_ms(&m.entry) {
                m.deadline = m.deadline.min(self.spill.restored_at.saturating_add(ms));
            }
        }
        true
    }

    /// Compaction moved the record of `seq`.
    pub fn relocate(&mut self, seq: u64, loc: Loc) {
        if self.stream.is_some() {
            return self.stream_relocate(seq, loc);
        }
        self.ready.relocate(seq, loc);
    }

    /// The next spilled messages to read back, in windows of at most
    /// `most`, until the lead of `ra` is in memory or in flight ahead of
    /// the consumers (none when it already is). With `ahead`, the
    /// messages before `ahead.seq` are in memory or being read already,
    /// and are not walked again. Returns the windows, the sequence number
    /// the head must reach before the next window is due, and where the
    /// read-ahead stands after these windows.
    pub fn fetch_windows(&self, ahead: Option<Ahead>, ra: ReadAhead, most: usize) -> Fetch {
        let front = self.front_seq().unwrap_or(0);
        let removed = self.ready.removed_bytes();
        let mut fetch = Fetch { windows: Vec::new(), mark: u64::MAX, ahead: Ahead { seq: 0, end: removed } };
        if self.ready.spilled_len() == 0 {
            return fetch;
        }
        // Less what the head has taken since they were counted (requeued
        // messages are not counted: a little more is read then).
        let (skip, mut lead) = ahead.map_or((0, 0), |a| (a.seq, a.end.saturating_sub(removed)));
        let (start, hot) = self.ready.hot_from(skip);
        let mut lead_n = start;
        let mut cur = Vec::new();
        let mut bytes = 0u64;
        fetch.ahead = Ahead { seq: skip, end: removed.wrapping_add(lead) };
        // Hot holds more than a lead and a window whenever there is a cold
        // part.
        for m in hot {
            if cur.is_empty() && (lead >= ra.lead_bytes || lead_n >= ra.lead_msgs || fetch.windows.len() >= most) {
                break;
            }
            let size = m.bytes() as u64;
            (lead, lead_n) = (lead + size, lead_n + 1);
            match m.spilled {
                // A window ends at the next message in memory.
                None if !cur.is_empty() => fetch.windows.push(std::mem::take(&mut cur)),
                None => {}
                Some(s) => {
                    cur.push((m.seq, s.loc));
                    bytes += size;
                    fetch.ahead.seq = m.seq + 1;
                    fetch.ahead.end = removed.wrapping_add(lead);
                    if bytes >= ra.window_bytes || cur.len() >= ra.window_msgs {
                        fetch.windows.push(std::mem::take(&mut cur));
                    }
                }
            }
            if cur.is_empty() {
                bytes = 0;
            }
        }
        if !cur.is_empty() {
            fetch.windows.push(cur);
        }
        // Due again once the head has passed what is ahead beyond the lead.
        let over = lead.saturating_sub(ra.lead_bytes);
        let over_n = lead_n.saturating_sub(ra.lead_msgs);
        let (mut passed, mut passed_n) = (0u64, 0usize);
        let mark = self.ready.hot().find(|m| {
            let due = passed > over && passed_n > over_n;
            passed += m.bytes() as u64;
            passed_n += 1;
            due
        });
        fetch.mark = mark.map_or(front + 1, |m| m.seq.max(front + 1));
        fetch
    }
}

/// Where a queue's read-ahead stands: the messages before `seq` are in
/// memory or being read, and end `end` bytes into the count of removed
/// bytes (`Ready::removed_bytes`), so the bytes they hold ahead of the
/// head are known without walking them again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ahead {
    pub seq: u64,
    pub end: u64,
}

/// What `fetch_windows` found.
#[derive(Debug, PartialEq, Eq)]
pub struct Fetch {
    pub windows: Vec<Vec<(u64, Loc)>>,
    pub mark: u64,
    pub ahead: Ahead,
}

/// How far ahead of its consumers a queue's spilled messages are read
/// back.
#[derive(Debug, Clone, Copy)]
pub struct ReadAhead {
    /// Bytes (or messages) kept in memory or in flight ahead of the head.
    pub lead_bytes: u64,
    pub lead_msgs: usize,
    /// Most read in one window.
    pub window_bytes: u64,
    pub window_msgs: usize,
}

/// The per-message `expiration` of an entry, in milliseconds.
fn expiration_ms(entry: &[u8]) -> Option<u64> {
    if entry.first().is_none_or(|f| f & ENTRY_HAS_PROPS == 0) {
        return None;
    }
    let s = props::scan(parse_entry(entry).ok()?.props)?;
    s.expiration.and_then(props::expiration_ms)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::cast_possible_truncation)] // test data is small
    use super::super::{Message, QueueArgs, QueueLimits};
    use super::*;
    use crate::protocol::field_table::TableBuilder;
    use crate::protocol::props::PropsBuilder;
    use crate::server::types::ConnRef;
    use std::num::NonZeroU32;

    const C: ConnRef = ConnRef { shard: 0, conn_id: 1 };

    fn loc(off: u32, len: usize) -> Loc {
        Loc { seg: NonZeroU32::MIN, off, len: len as u32 }
    }

    fn entry(props: &[u8], body: &[u8]) -> Bytes {
        let mut b = bytes::BytesMut::new();
        crate::protocol::batch::put_entry(&mut b, 0, props, body);
        b.freeze()
    }

    fn queue(args: TableBuilder) -> Queue {
        let args = QueueArgs::parse(&args.build(), "q").unwrap();
        Queue::new("q".into(), true, QueueLimits::messages(100), args)
    }

    /// Publishes persistent entries; returns each one's (seq, loc).
    fn publish(q: &mut Queue, entries: &[Bytes], now: u64) -> Vec<(u64, Loc)> {
        let mut locs = Vec::new();
        q.publish(true, true, now, entries.iter().cloned(), None, |seq, e| {
            locs.push((seq, loc(seq as u32 * 100, e.len())))
        })
        .unwrap();
        locs
    }

    fn bodies<'a>(d: impl Iterator<Item = super::super::Delivery<'a>>) -> Vec<Vec<u8>> {
        d.map(|m| parse_entry(m.entry).unwrap().body.to_vec()).collect()
    }

    fn ra(bytes: u64, msgs: usize) -> ReadAhead {
        ReadAhead { lead_bytes: bytes, lead_msgs: msgs, window_bytes: bytes, window_msgs: msgs }
    }

    /// A spilled backlog costs this per message.
    const _: () = assert!(std::mem::size_of::<Message>() <= 80);

    #[test]
    fn dispatch_stops_at_a_spilled_head_until_it_is_filled() {
        let mut q = queue(TableBuilder::new());
        let entries: Vec<Bytes> = (0..4u8).map(|i| entry(&[], &[i])).collect();
        let locs = publish(&mut q, &entries, 0);
        let len = entries[0].len() as u64;
        assert!(q.spill(1, locs[1].1) && q.spill(2, locs[2].1));
        assert!(!q.spill(2, locs[2].1), "already spilled");
        assert!(!q.spill(3, loc(300, 99)), "not the entry that location holds");
        assert_eq!((q.spilled_len(), q.mem_bytes(), q.ready_bytes()), (2, 2 * len, 4 * len));
        q.subscribe(C, 1, 10).unwrap();
        let mut got = Vec::new();
        let mut out = |_: ConnRef, _: u32, _: u64, d: super::super::Deliveries<'_>| got.extend(bodies(d));
        assert_eq!(q.dispatch(&mut out, 0), 1, "only the message before the spilled one");
        assert!(q.head_spilled());
        let f = q.fetch_windows(None, ra(1 << 20, 100), 4);
        let ahead = Ahead { seq: 3, end: 3 * len };
        assert_eq!(f, Fetch { windows: vec![vec![locs[1], locs[2]]], mark: 2, ahead });
        let one = Some(Ahead { seq: 2, end: 2 * len });
        assert_eq!(q.fetch_windows(one, ra(1 << 20, 100), 4).windows, vec![vec![locs[2]]], "1 is in flight");
        let both = Some(Ahead { seq: 3, end: 3 * len });
        assert!(q.fetch_windows(both, ra(1 << 20, 100), 4).windows.is_empty(), "both are in flight");
        assert!(!q.fill(1, loc(99, len as usize), entries[1].clone()), "another location");
        assert!(q.fill(1, locs[1].1, entries[1].clone()) && q.fill(2, locs[2].1, entries[2].clone()));
        assert_eq!(q.dispatch(&mut out, 0), 3);
        assert_eq!(got, vec![vec![0], vec![1], vec![2], vec![3]]);
        assert_eq!((q.spilled_len(), q.mem_bytes()), (0, 0));
    }

    #[test]
    fn windows_follow_each_other_until_the_lead_is_read() {
        let mut q = queue(TableBuilder::new());
        let entries: Vec<Bytes> = (0..10u8).map(|i| entry(&[], &[i])).collect();
        let locs = publish(&mut q, &entries, 0);
        for &(seq, l) in &locs[2..] {
            assert!(q.spill(seq, l));
        }
        let ra = ReadAhead { lead_bytes: u64::MAX, lead_msgs: 6, window_bytes: u64::MAX, window_msgs: 2 };
        // Two in memory, then windows of two up to six ahead of the head.
        let w = |r: std::ops::Range<usize>| locs[r].to_vec();
        let len = entries[0].len() as u64;
        let f = q.fetch_windows(None, ra, 4);
        assert_eq!((f.windows, f.mark, f.ahead), (vec![w(2..4), w(4..6)], 1, Ahead { seq: 6, end: 6 * len }));
        assert_eq!(q.fetch_windows(None, ra, 1).windows, vec![w(2..4)], "one window at most");
        let f = q.fetch_windows(Some(Ahead { seq: 4, end: 4 * len }), ra, 4);
        assert_eq!((f.windows, f.mark), (vec![w(4..6)], 1), "2 and 3 are in flight");
        let ahead = Some(f.ahead);
        let f = q.fetch_windows(ahead, ra, 4);
        assert_eq!((f.windows, f.mark), (vec![], 1), "due again once the head has moved past one");
        q.subscribe(C, 1, 1).unwrap();
        assert_eq!(q.dispatch(&mut |_, _, _, _| {}, 0), 1);
        // The head took one message: the bytes ahead are known without a walk.
        let f = q.fetch_windows(ahead, ra, 4);
        assert_eq!((f.windows, f.mark, f.ahead), (vec![w(6..8)], 3, Ahead { seq: 8, end: 8 * len }));
        // A window ends at a message in memory.
        assert!(q.fill(7, locs[7].1, entries[7].clone()));
        assert_eq!(q.fetch_windows(ahead, ra, 4).windows, vec![w(6..7)]);
    }

    #[test]
    fn byte_accounting_is_the_same_spilled_or_not() {
        let mut q = queue(TableBuilder::new().int("x-max-length-bytes", 1000));
        let p = PropsBuilder::new().content_type("text/plain").build();
        let entries = vec![entry(&p, b"hello"), entry(&[], b"world!!"), entry(&p, b"")];
        let locs = publish(&mut q, &entries, 0);
        let (bytes, body) = (q.ready_bytes(), q.ready.body_bytes());
        assert_eq!(body, 12);
        for &(seq, l) in &locs {
            assert!(q.spill(seq, l));
        }
        assert_eq!((q.ready_bytes(), q.ready.body_bytes(), q.mem_bytes()), (bytes, body, 0));
        // Read back one, pop it; pop one still spilled (drop-head, expiry).
        assert!(q.fill(0, locs[0].1, entries[0].clone()));
        assert_eq!((q.ready_bytes(), q.ready.body_bytes()), (bytes, body));
        let a = q.ready.pop_front().unwrap();
        let b = q.ready.pop_front().unwrap();
        assert!(a.spilled.is_none() && b.spilled.is_some());
        assert!(q.fill(2, locs[2].1, entries[2].clone()));
        q.ready.pop_front().unwrap();
        assert_eq!((q.ready_bytes(), q.ready.body_bytes(), q.spilled_len(), q.mem_bytes()), (0, 0, 0, 0));
    }

    #[test]
    fn priority_queues_do_not_spill() {
        let mut q = queue(TableBuilder::new().int("x-max-priority", 5));
        let locs = publish(&mut q, &[entry(&[], b"a")], 0);
        assert!(!q.can_spill() && !q.spill(0, locs[0].1));
    }

    #[test]
    fn a_spilled_head_is_dropped_without_a_dead_letter_exchange() {
        let mut q = queue(TableBuilder::new().int("x-message-ttl", 10));
        let entries = vec![entry(&[], b"a"), entry(&[], b"b")];
        let locs = publish(&mut q, &entries, 0);
        assert!(q.spill(0, locs[0].1));
        q.enforce(20);
        let dead = q.take_dead();
        assert_eq!(dead.len(), 2);
        assert!(dead[0].msg.spilled.is_some() && dead[0].msg.bytes() == entries[0].len());
        assert!(!q.fetch_blocked());
        assert_eq!((q.ready_len(), q.ready_bytes(), q.ready.body_bytes(), q.spilled_len()), (0, 0, 0, 0));
    }

    #[test]
    fn a_spilled_head_waits_for_its_entry_before_it_is_dead_lettered() {
        let args = TableBuilder::new().int("x-message-ttl", 10).str("x-dead-letter-exchange", "dlx");
        let mut q = queue(args);
        let entries = vec![entry(&[], b"a"), entry(&[], b"b")];
        let locs = publish(&mut q, &entries, 0);
        assert!(q.spill(0, locs[0].1));
        q.enforce(20);
        assert!(q.fetch_blocked() && q.take_dead().is_empty());
        assert_eq!(q.next_deadline(), None, "no timer while the read is pending");
        q.subscribe(C, 1, 10).unwrap();
        assert_eq!(q.dispatch(&mut |_, _, _, _| {}, 20), 0);
        assert_eq!(q.fetch_windows(None, ra(1 << 20, 100), 4).windows, vec![vec![locs[0]]]);
        assert!(q.fill(0, locs[0].1, entries[0].clone()));
        q.enforce(20);
        let dead = q.take_dead();
        assert!(!q.fetch_blocked() && dead.len() == 2);
        assert!(dead.iter().all(|d| d.msg.spilled.is_none() && !d.msg.entry.is_empty()));
        assert_eq!((q.ready_len(), q.ready_bytes(), q.ready.body_bytes()), (0, 0, 0));
    }

    #[test]
    fn drop_head_over_the_length_limit_removes_spilled_messages_too() {
        let mut q = queue(TableBuilder::new().int("x-max-length", 1));
        let entries = vec![entry(&[], b"a"), entry(&[], b"b"), entry(&[], b"c")];
        let locs = publish(&mut q, &entries, 0);
        assert!(q.spill(0, locs[0].1) && q.spill(1, locs[1].1));
        q.enforce(0);
        assert_eq!(q.take_dead().len(), 2);
        assert_eq!((q.ready_len(), q.spilled_len(), q.ready_bytes()), (1, 0, entries[2].len() as u64));
    }

    #[test]
    fn a_recovered_spilled_message_gets_its_expiration_when_read() {
        let mut q = queue(TableBuilder::new());
        let p = PropsBuilder::new().expiration_ms(50).build();
        let e = entry(&p, b"xyz");
        let l = loc(0, e.len());
        q.restore_spilled(7, l, 3, 1000, None);
        assert_eq!((q.ready_len(), q.ready.body_bytes(), q.ready_bytes(), q.next_seq()), (1, 3, e.len() as u64, 8));
        assert_eq!(q.next_deadline(), None, "unknown until read");
        assert!(q.fill(7, l, e));
        assert_eq!(q.next_deadline(), Some(1050));
        assert_eq!((q.ready.body_bytes(), q.spilled_len()), (3, 0));
    }
}
