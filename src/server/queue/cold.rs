//! The cold part of a single-level queue's ready messages: the spilled
//! backlog behind the first few thousand messages (`ready.rs` keeps those
//! as full `Message`s, the "hot" part). A backlog larger than RAM is tens
//! of millions of spilled messages whose `Message` would be mostly empty
//! fields; here each costs one 16-byte `Item`.
//!
//! Items sit in one deque in queue order. Runs of consecutive sequence
//! numbers with the same origin and deadline share those and their first
//! seq (`Run`), so the seq of an item is implied by its place in its run
//! (a batch published at once, or a recovered backlog, is one run even
//! with a TTL). A message an item cannot rebuild exactly (in memory,
//! transient, ...) is an exception: a marker item (segment 0, never a
//! real segment) keeps its place and the message itself waits in
//! `exceptions`, which is in queue order too (pushed at the back, popped
//! at the front, like the items).

use super::super::types::{Message, Origin, Spilled};
use crate::storage::Loc;
use bytes::Bytes;
use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Arc;

/// One spilled message: its record's location and its body length, with
/// its flags in the top bits of `meta`. `seg == 0`: an exception marker.
#[derive(Debug, Clone, Copy)]
struct Item {
    seg: u32,
    off: u32,
    len: u32,
    meta: u32,
}

const RECOVERED: u32 = 1 << 31;
const REDELIVERED: u32 = 1 << 30;
/// A longer body makes its message an exception.
const BODY_MAX: u32 = REDELIVERED - 1;
const MARKER: Item = Item { seg: 0, off: 0, len: 0, meta: 0 };

/// Consecutive items whose seqs follow each other and that share an
/// origin and a deadline.
#[derive(Debug)]
struct Run {
    /// The seq of its first item.
    seq: u64,
    /// Where its first item is, counted like `Cold::head`.
    first: u64,
    deadline: u64,
    origin: Option<Arc<Origin>>,
}

impl Run {
    fn new(m: &Message, first: u64) -> Self {
        Self { seq: m.seq, first, deadline: m.deadline, origin: m.origin.clone() }
    }

    /// Whether `m` may be one of its items (at the right seq).
    fn fits(&self, m: &Message) -> bool {
        self.deadline == m.deadline && self.origin == m.origin
    }
}

/// The per-message cost this part exists for.
pub const ITEM_BYTES: usize = std::mem::size_of::<Item>();
const _: () = assert!(ITEM_BYTES == 16);
const _: () = assert!(std::mem::size_of::<Run>() == 32);

/// Deques start small; a drained backlog gives its memory back once they
/// are a quarter full.
const SHRINK_MIN: usize = 4096;

#[derive(Debug, Default)]
pub struct Cold {
    items: VecDeque<Item>,
    runs: VecDeque<Run>,
    /// The position of `items[0]` in a count that only moves by pushes and
    /// pops at the front (wrapping), so runs keep their positions while
    /// the deque's indexes shift.
    head: u64,
    exceptions: VecDeque<Message>,
}

/// Whether an item can rebuild `m` exactly.
pub fn compactable(m: &Message) -> bool {
    compact(m).is_some()
}

/// The item that rebuilds `m` exactly, if one can.
fn compact(m: &Message) -> Option<Item> {
    // Destructured whole so a new field of `Message` must be decided here.
    // Seq, deadline and origin are the run's.
    let Message { seq: _, entry, persistent, redelivered, prio, deadline: _, origin: _, spilled } = m;
    let s = (*spilled)?;
    let exact = *persistent && *prio == 0 && entry.is_empty() && s.body_len <= BODY_MAX;
    let flags = if s.recovered { RECOVERED } else { 0 } | if *redelivered { REDELIVERED } else { 0 };
    exact.then_some(Item { seg: s.loc.seg.get(), off: s.loc.off, len: s.loc.len, meta: s.body_len | flags })
}

impl Item {
    fn message(self, seq: u64, run: &Run) -> Option<Message> {
        let loc = Loc { seg: NonZeroU32::new(self.seg)?, off: self.off, len: self.len };
        let spilled = Spilled { loc, body_len: self.meta & BODY_MAX, recovered: self.meta & RECOVERED != 0 };
        Some(Message {
            redelivered: self.meta & REDELIVERED != 0,
            deadline: run.deadline,
            origin: run.origin.clone(),
            spilled: Some(spilled),
            ..Message::new(seq, Bytes::new(), true)
        })
    }
}

impl Cold {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The seq of the first message.
    pub fn front_seq(&self) -> Option<u64> {
        self.runs.front().map(|r| r.seq)
    }

    /// Position (in `head`'s count) past the last item.
    fn end(&self) -> u64 {
        self.head.wrapping_add(self.items.len() as u64)
    }

    /// Items in run `i`.
    fn run_len(&self, i: usize) -> u64 {
        let end = self.runs.get(i + 1).map_or(self.end(), |n| n.first);
        end.wrapping_sub(self.runs[i].first)
    }

    pub fn reserve_exact(&mut self, n: usize) {
        self.items.reserve_exact(n);
    }

    /// Appends a message whose seq is past every one here.
    pub fn push_back(&mut self, m: Message) {
        let item = compact(&m).unwrap_or(MARKER);
        let last = self.runs.len().checked_sub(1);
        let next = last.map(|i| self.runs[i].seq + self.run_len(i));
        debug_assert!(next.is_none_or(|n| m.seq >= n), "cold is in seq order");
        let joins = next == Some(m.seq) && self.runs.back().is_some_and(|r| r.fits(&m));
        if !joins {
            self.runs.push_back(Run::new(&m, self.end()));
        }
        if item.seg == 0 {
            self.exceptions.push_back(m);
        }
        self.items.push_back(item);
    }

    /// Prepends a message whose seq is before every one here (demotion).
    pub fn push_front(&mut self, m: Message) {
        debug_assert!(self.front_seq().is_none_or(|s| m.seq < s), "cold is in seq order");
        let item = compact(&m).unwrap_or(MARKER);
        self.head = self.head.wrapping_sub(1);
        match self.runs.front_mut() {
            Some(r) if r.seq == m.seq + 1 && r.fits(&m) => {
                r.seq = m.seq;
                r.first = self.head;
            }
            _ => self.runs.push_front(Run::new(&m, self.head)),
        }
        if item.seg == 0 {
            self.exceptions.push_front(m);
        }
        self.items.push_front(item);
    }

    pub fn pop_front(&mut self) -> Option<Message> {
        let item = self.items.pop_front()?;
        self.head = self.head.wrapping_add(1);
        // The front run always starts at `head`: it moves with each pop.
        let r = self.runs.front_mut()?;
        let m = match item.seg {
            0 => self.exceptions.pop_front(),
            _ => item.message(r.seq, r),
        };
        r.seq += 1;
        r.first = self.head;
        let done = match self.runs.get(1) {
            Some(n) => n.first == self.head,
            None => self.items.is_empty(),
        };
        if done {
            self.runs.pop_front();
        }
        match self.items.is_empty() {
            true => self.clear(),
            false => self.shrink(),
        }
        m
    }

    /// (run, index into `items`) of message `seq`.
    fn locate(&self, seq: u64) -> Option<(usize, usize)> {
        let i = self.runs.partition_point(|r| r.seq <= seq).checked_sub(1)?;
        let r = &self.runs[i];
        let k = seq - r.seq;
        (k < self.run_len(i))
            .then(|| (i, crate::protocol::wire::usize_of(r.first.wrapping_add(k).wrapping_sub(self.head))))
    }

    fn exception_index(&self, seq: u64) -> Option<usize> {
        self.exceptions.binary_search_by_key(&seq, |m| m.seq).ok()
    }

    /// Message `seq` if it is kept whole here.
    pub fn exception_mut(&mut self, seq: u64) -> Option<&mut Message> {
        let i = self.exception_index(seq)?;
        self.exceptions.get_mut(i)
    }

    /// Exception `seq` has changed (spilled): an item takes its place
    /// when one can now rebuild it.
    pub fn settle(&mut self, seq: u64) {
        let (Some(x), Some((r, i))) = (self.exception_index(seq), self.locate(seq)) else { return };
        let m = &self.exceptions[x];
        let Some(item) = compact(m).filter(|_| self.runs[r].fits(m)) else { return };
        self.items[i] = item;
        self.exceptions.remove(x);
    }

    /// Compaction moved the record of `seq` (of the same length).
    pub fn relocate(&mut self, seq: u64, loc: Loc) {
        let Some((_, i)) = self.locate(seq) else { return };
        let item = &mut self.items[i];
        if item.seg != 0 {
            if item.len == loc.len {
                (item.seg, item.off) = (loc.seg.get(), loc.off);
            }
            return;
        }
        if let Some(s) = self.exception_mut(seq).and_then(|m| m.spilled.as_mut()) {
            if s.loc.len == loc.len {
                s.loc = loc;
            }
        }
    }

    /// Every message in order, rebuilt one at a time (a purge of a big
    /// backlog must not hold them all at once).
    pub fn for_each(&self, mut f: impl FnMut(&Message)) {
        let mut exceptions = self.exceptions.iter();
        for (i, r) in self.runs.iter().enumerate() {
            let start = crate::protocol::wire::usize_of(r.first.wrapping_sub(self.head));
            let items = self.items.range(start..start + crate::protocol::wire::usize_of(self.run_len(i)));
            for (seq, item) in (r.seq..).zip(items) {
                let m = match item.seg {
                    0 => exceptions.next().cloned(),
                    _ => item.message(seq, r),
                };
                if let Some(m) = m {
                    f(&m);
                }
            }
        }
    }

    /// Empties it and gives its memory back.
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    #[cfg(test)]
    pub fn exceptions(&self) -> usize {
        self.exceptions.len()
    }

    #[cfg(test)]
    /// Heap bytes held (capacity, not length).
    pub fn capacity_bytes(&self) -> usize {
        self.items.capacity() * ITEM_BYTES
            + self.runs.capacity() * std::mem::size_of::<Run>()
            + self.exceptions.capacity() * std::mem::size_of::<Message>()
    }

    fn shrink(&mut self) {
        shrink(&mut self.items);
        shrink(&mut self.runs);
        shrink(&mut self.exceptions);
    }
}

/// Halves the spare room of a deque that is under a quarter full (twice
/// its length stays, so pushes that follow do not grow it again at once).
fn shrink<T>(d: &mut VecDeque<T>) {
    if d.capacity() > SHRINK_MIN && d.len() < d.capacity() / 4 {
        d.shrink_to((d.len() * 2).max(SHRINK_MIN));
    }
}
