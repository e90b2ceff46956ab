//! A stream larger than memory: only the newest `stream_memory_bytes_max`
//! of a stream's entry bytes stay in memory (its window); older messages
//! keep their place in the log (`Loc`), and a consumer behind the window
//! is served from the log. Its reads are planned here and done by the
//! shard (`server::shard::stream_reads`): up to `stream_read_ahead_bytes`
//! of consecutive records per read (one DMA read where they lie together
//! in a segment, `storage::read`), the entries kept in the consumer's
//! read-ahead until delivered. The next read is asked for when half of
//! the read-ahead is delivered, so a consumer reading from disk rarely
//! waits for one; it holds at most about one and a half reads' worth.

use super::super::types::ConnRef;
use super::consumer::Consumer;
use super::stream::{Stored, Stream};
use super::Queue;
use crate::storage::Loc;
use bytes::Bytes;

/// Messages one read asks for at most (small ones: the read's list is
/// bounded as its bytes are).
const READ_MSGS_MAX: usize = 8192;

/// The entry of `m`, which is not in memory, for `c`: from `c`'s
/// read-ahead (what it has passed is dropped on the way). `None`: a read
/// is needed.
pub(super) fn entry_from_log(c: &mut Consumer, m: &Stored) -> Option<Bytes> {
    while c.stream_ahead.front().is_some_and(|(o, _)| *o < m.offset) {
        if let Some((_, e)) = c.stream_ahead.pop_front() {
            c.stream_ahead_bytes -= e.len() as u64;
        }
    }
    if c.stream_ahead.front().is_none_or(|(o, _)| *o != m.offset) {
        return None;
    }
    let (_, e) = c.stream_ahead.pop_front()?;
    c.stream_ahead_bytes -= e.len() as u64;
    Some(e)
}

/// Whether `c`, about to read message `next` (if any), needs its next read
/// asked for: behind the window, no read in flight, and under half of its
/// read-ahead left.
pub(super) fn wants_read(c: &Consumer, next: Option<&Stored>, read_ahead: u64) -> bool {
    next.is_some_and(|m| m.entry.is_empty()) && !c.stream_reading && c.stream_ahead_bytes < read_ahead / 2
}

impl Stream {
    /// Drops the oldest entries in memory to their place in the log while
    /// the stream holds more than its window. A message not (yet) logged
    /// stops it: it has nowhere else to be read from.
    pub(super) fn demote(&mut self) {
        while self.hot_bytes > self.memory_max {
            let Some(m) = self.msgs.get_mut(self.hot_from) else { break };
            if !m.entry.is_empty() {
                if m.loc.is_none() {
                    break;
                }
                self.hot_bytes -= m.entry.len() as u64;
                m.entry = Bytes::new();
            }
            self.hot_from += 1;
        }
    }

    /// Lets go of the publish batches' buffers none of whose entries is
    /// in memory any more (demoted to the log, or dropped by retention).
    /// A batch partly demoted keeps its buffer until the rest goes: the
    /// window may be passed by at most one batch's bytes.
    pub(super) fn drop_cold_runs(&mut self) {
        let first_hot = self.msgs.get(self.hot_from).map_or(u64::MAX, |m| m.offset);
        while self.runs.front().is_some_and(|r| r.end <= first_hot) {
            self.runs.pop_front();
        }
    }

    fn at_mut(&mut self, offset: u64) -> Option<&mut Stored> {
        let i = self.msgs.partition_point(|m| m.offset < offset);
        self.msgs.get_mut(i).filter(|m| m.offset == offset)
    }
}

impl Queue {
    /// After a publish to a stream: where its new messages' records are in
    /// the log; then the window applies.
    pub fn stream_locate(&mut self, locs: &[(u64, Loc)]) {
        let max = self.limits.stream_memory_bytes_max;
        let Some(s) = self.stream.as_mut() else { return };
        s.memory_max = max;
        for &(seq, loc) in locs {
            if let Some(m) = s.at_mut(seq) {
                m.loc = Some(loc);
            }
        }
        s.demote();
        s.drop_cold_runs();
    }

    /// Compaction moved a stream message's record.
    pub(super) fn stream_relocate(&mut self, seq: u64, loc: Loc) {
        if let Some(m) = self.stream.as_mut().and_then(|s| s.at_mut(seq)) {
            m.loc = Some(loc);
        }
    }

    /// The consumers that asked for a read since the last call.
    pub fn take_stream_reads(&mut self) -> Vec<(ConnRef, u32)> {
        self.stream.as_mut().map(|s| std::mem::take(&mut s.wants_read)).unwrap_or_default()
    }

    /// The next read for consumer `id` of `owner`: the records on disk
    /// from where its read-ahead ends, consecutive, up to `bytes_max` (and
    /// one record past it at most), stopping at the first in memory. The
    /// consumer is then marked reading. `None`: nothing to read (it is
    /// gone, reading already, or not behind the window).
    pub fn stream_read_plan(&mut self, owner: ConnRef, id: u32, bytes_max: u64) -> Option<Vec<(u64, Loc)>> {
        let i = self.consumer_index(owner, id)?;
        let s = self.stream.as_ref()?;
        let c = &mut self.consumers[i];
        if c.stream_reading {
            return None;
        }
        let from = c.stream_ahead.back().map_or(c.stream_next, |(o, _)| o + 1).max(c.stream_next);
        let (mut want, mut bytes) = (Vec::new(), 0u64);
        for m in s.msgs.range(s.msgs.partition_point(|m| m.offset < from)..) {
            let Some(loc) = m.loc.filter(|_| m.entry.is_empty()) else { break };
            if bytes >= bytes_max || want.len() >= READ_MSGS_MAX {
                break;
            }
            bytes += u64::from(loc.len);
            want.push((m.offset, loc));
        }
        c.stream_reading = !want.is_empty();
        (!want.is_empty()).then_some(want)
    }

    /// A read of `want` is done: its entries (`None`: it failed) go to
    /// the consumer's read-ahead, if it is still there.
    /// Only entries whose message is still on disk where it was read from
    /// are kept: not one of a stream deleted and declared again meanwhile.
    pub fn stream_fill(&mut self, owner: ConnRef, id: u32, want: &[(u64, Loc)], got: Option<Vec<Bytes>>) {
        let Some(i) = self.consumer_index(owner, id) else { return };
        let Some(s) = self.stream.as_ref() else { return };
        let c = &mut self.consumers[i];
        c.stream_reading = false;
        for (&(offset, loc), e) in want.iter().zip(got.unwrap_or_default()) {
            let at = s.msgs.get(s.msgs.partition_point(|m| m.offset < offset));
            if !at.is_some_and(|m| m.offset == offset && m.loc == Some(loc) && m.entry.is_empty()) {
                continue;
            }
            if c.stream_ahead.back().is_none_or(|(o, _)| *o < offset) {
                c.stream_ahead_bytes += e.len() as u64;
                c.stream_ahead.push_back((offset, e));
            }
        }
    }

    /// A stream's messages kept on disk only (behind its window), and
    /// their bytes (operators' `paged_out`); (0, 0) for a classic queue.
    pub fn stream_on_disk(&self) -> (u64, u64) {
        let Some(s) = self.stream.as_ref() else { return (0, 0) };
        (s.hot_from as u64, s.bytes().saturating_sub(s.hot_bytes))
    }

    /// Entry bytes a stream holds in memory: its window, and its
    /// consumers' read-ahead (0 for a classic queue).
    pub fn stream_mem_bytes(&self) -> u64 {
        let Some(s) = self.stream.as_ref() else { return 0 };
        s.hot_bytes + self.consumers.iter().map(|c| c.stream_ahead_bytes).sum::<u64>()
    }
}
