//! Where the live persistent messages of each durable queue are in the
//! log: runs of consecutive sequence numbers per segment, split on every
//! removal, with live counts and record bytes per segment.

use std::collections::{BTreeMap, HashMap};

/// A stretch of consecutive sequence numbers of one queue, all live and
/// all logged in one segment; keyed by its first in `QState::runs`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Run {
    pub(super) last: u64,
    pub(super) seg: u64,
}

/// Live persistent messages and their record bytes.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Live {
    pub(super) count: u64,
    pub(super) bytes: u64,
}

impl Live {
    pub(super) fn add(&mut self, bytes: u64) {
        self.count += 1;
        self.bytes += bytes;
    }

    pub(super) fn sub(&mut self, bytes: u64) {
        self.count = self.count.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(bytes);
    }
}

pub(super) struct QState {
    pub(super) name: String,
    /// Declare arguments, re-logged at the start of every segment.
    pub(super) args: Vec<u8>,
    /// Past every persistent sequence number logged for this queue.
    pub(super) next_seq: u64,
    /// Where every live persistent message is: runs split on removal, so
    /// a sequence number inside a run is live (it is what compaction asks).
    pub(super) runs: BTreeMap<u64, Run>,
    /// Live (unacked) persistent messages of this queue per segment.
    pub(super) by_seg: HashMap<u64, Live>,
    /// Acked since the last flush; logged as ranges by the next one.
    pub(super) acks: Vec<u64>,
    /// A stream's stored consumer offsets, re-logged at the start of
    /// every segment (as `args`) so reclaim never loses them.
    pub(super) offsets: BTreeMap<String, u64>,
    /// The origin records (by first sequence number) that still cover a
    /// live message (`origin.rs`).
    pub(super) origins: BTreeMap<u64, super::origin::OriginRun>,
}

impl QState {
    pub(super) fn new(name: String, args: Vec<u8>, next_seq: u64) -> Self {
        Self {
            name,
            args,
            next_seq,
            runs: BTreeMap::new(),
            by_seg: HashMap::new(),
            acks: Vec::new(),
            offsets: BTreeMap::new(),
            origins: BTreeMap::new(),
        }
    }

    pub(super) fn add(&mut self, seq: u64, seg: u64, bytes: u64) {
        match self.runs.range_mut(..=seq).next_back() {
            Some((_, r)) if r.seg == seg && r.last.checked_add(1) == Some(seq) => r.last = seq,
            _ => {
                self.runs.insert(seq, Run { last: seq, seg });
            }
        }
        self.by_seg.entry(seg).or_default().add(bytes);
        self.next_seq = self.next_seq.max(seq.saturating_add(1));
    }

    /// The segment holding live message `seq`.
    pub(super) fn seg_of(&self, seq: u64) -> Option<u64> {
        self.runs.range(..=seq).next_back().filter(|(_, r)| r.last >= seq).map(|(_, r)| r.seg)
    }

    /// Takes `seq` out of its run; returns its segment.
    pub(super) fn remove(&mut self, seq: u64, bytes: u64) -> Option<u64> {
        let (&first, &r) = self.runs.range(..=seq).next_back().filter(|(_, r)| r.last >= seq)?;
        self.runs.remove(&first);
        if first < seq {
            self.runs.insert(first, Run { last: seq - 1, seg: r.seg });
        }
        if seq < r.last {
            self.runs.insert(seq + 1, Run { last: r.last, seg: r.seg });
        }
        if let Some(n) = self.by_seg.get_mut(&r.seg) {
            n.sub(bytes);
            if n.count == 0 {
                self.by_seg.remove(&r.seg);
            }
        }
        Some(r.seg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_on_removal_and_never_cover_a_removed_seq() {
        let mut q = QState::new("q".into(), Vec::new(), 0);
        for s in 0..5 {
            q.add(s, 1, 10);
        }
        assert_eq!(q.remove(2, 10), Some(1));
        assert_eq!(q.seg_of(2), None);
        assert_eq!((q.seg_of(1), q.seg_of(3)), (Some(1), Some(1)));
        // Not adjacent to a removed number: a new run, not a merge over it.
        q.add(5, 1, 10);
        assert_eq!(q.remove(2, 10), None);
        // Moved by compaction.
        assert_eq!(q.remove(3, 10), Some(1));
        q.add(3, 7, 10);
        assert_eq!(q.seg_of(3), Some(7));
        assert_eq!(q.by_seg[&1].count, 4);
        assert_eq!(q.by_seg[&7].count, 1);
        assert_eq!(q.runs.len(), 3, "[0,1] [3,3]@7 [4,5]");
    }
}
