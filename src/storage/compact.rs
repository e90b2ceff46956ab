//! Compaction: a sealed segment kept on disk by a few live messages has
//! its live publish records re-appended to the tail of the log (same queue
//! id, same sequence number), after which it holds nothing live and is
//! deleted by reclaim, once a flush that fdatasyncs has covered the copies.
//!
//! Only the oldest segment that still holds live messages is compacted:
//! reclaim deletes segments in order (a newer segment may hold the acks of
//! an older one's publishes), so that is the one that pins the log. It is
//! compacted when its own live bytes, or those of all sealed segments, fall
//! under `compact_live_ratio_pct` of their size. The work is done in steps
//! of `WINDOW` bytes read (one DMA read each), driven by the shard's
//! flusher between flushes, so it never holds up traffic for long.
//!
//! Crash windows: a crash mid-copy leaves a torn tail (cut at recovery) and
//! the old segment whole; a crash after the copies but before the deletion
//! leaves both copies, and replay keeps one per (queue, seq). Acks apply by
//! sequence number, wherever the publish they ack now sits.

use super::io::{segment_path, SegmentFile};
use super::log::Storage;
use super::record::{align_block, len_at, scan_at, Record};
use super::Loc;
use std::rc::Rc;

/// Bytes of the old segment read per step: a step scans and checksums
/// them and re-appends the live ones in one run of the flusher without a
/// yield, so this bounds that run (issue 19: no run over about 500 µs; a
/// 1 MiB window of small records is tens of thousands of checksums).
const WINDOW: usize = 256 << 10;

/// A live message compaction re-appended: its new location (the queue's
/// spilled copy, if any, must point there now).
#[derive(Debug, Clone, Copy)]
pub struct Moved {
    pub queue: u32,
    pub seq: u64,
    pub loc: Option<Loc>,
}

/// A compaction in progress.
pub(super) struct Compaction {
    seg: u64,
    file: Rc<dyn SegmentFile>,
    pos: u64,
    size: u64,
    copied: u64,
}

impl<W> Storage<W> {
    /// The segment due for compaction, if any.
    fn compaction_candidate(&self) -> Option<u64> {
        let ratio = u64::from(self.opts.compact_live_ratio_pct);
        if ratio == 0 {
            return None;
        }
        let st = self.st.borrow();
        if st.poisoned.is_some() {
            return None;
        }
        let open = self.writer.borrow().file.as_ref().map(|(s, _)| *s);
        let sealed = |s: u64| s < st.tail_seg && Some(s) != open && st.chunks.iter().all(|c| c.seg != s);
        let (&seg, info) = st.segs.iter().find(|(_, i)| i.live.count > 0)?;
        if !sealed(seg) || st.no_compact.contains(&seg) || info.size == 0 {
            return None;
        }
        let (mut live, mut size, mut n) = (0u64, 0u64, 0u32);
        for (_, i) in st.segs.range(seg..).take_while(|(s, _)| sealed(**s)) {
            live += i.live.bytes;
            size += i.size;
            n += 1;
        }
        let own = info.live.bytes * 100 < ratio * info.size;
        let all = n >= 2 && live * 100 < ratio * size;
        (own || all).then_some(seg)
    }

    /// Whether a compaction is running or due.
    pub fn compaction_due(&self) -> bool {
        self.compaction.borrow().is_some() || self.compaction_candidate().is_some()
    }

    /// One step of compaction (starting one when due): reads up to
    /// `WINDOW` bytes of the segment, re-appends its live publish records.
    /// Returns what moved.
    pub async fn compact_step(&self) -> Vec<Moved> {
        if self.compaction.borrow().is_none() {
            let Some(seg) = self.compaction_candidate() else { return Vec::new() };
            let path = segment_path(&self.opts.dir, seg);
            let opened = match self.io.open(&path).await {
                Ok(f) => f.size().await.map(|size| (f, size)),
                Err(e) => Err(e),
            };
            match opened {
                Ok((file, size)) => {
                    let live = self.st.borrow().segs.get(&seg).map(|i| i.live).unwrap_or_default();
                    tracing::info!(
                        shard = self.opts.shard,
                        segment = seg,
                        size,
                        live_messages = live.count,
                        live_bytes = live.bytes,
                        "compacting segment"
                    );
                    *self.compaction.borrow_mut() = Some(Compaction { seg, file, pos: 0, size, copied: 0 });
                }
                Err(e) => {
                    self.give_up(seg, &e.to_string());
                    return Vec::new();
                }
            }
        }
        let Some((seg, file, pos, size)) =
            self.compaction.borrow().as_ref().map(|c| (c.seg, c.file.clone(), c.pos, c.size))
        else {
            return Vec::new();
        };
        let mut want = usize::try_from(size.saturating_sub(pos)).map_or(WINDOW, |left| left.min(WINDOW));
        let mut buf = Vec::new();
        for _ in 0..2 {
            let since = std::time::Instant::now();
            buf = match file.read_at(pos, want).await {
                Ok(b) => {
                    self.io_counts.read(b.len(), since);
                    b
                }
                Err(e) => {
                    self.give_up(seg, &e.to_string());
                    return Vec::new();
                }
            };
            // A record larger than the window: read it whole.
            match len_at(&buf) {
                // `len` is from the file: checked against the segment's size.
                Some(len) if len > buf.len() && u64::try_from(len).is_ok_and(|l| l <= size.saturating_sub(pos)) => {
                    want = len
                }
                _ => break,
            }
        }
        let mut found = Vec::new();
        let end = scan_at(&buf, crate::protocol::wire::usize_of(pos), self.seed_of(seg), |_, r| {
            if matches!(r, Record::Publish { .. } | Record::StreamChunk { .. }) {
                found.push(r);
            }
        });
        let next = match end.bad {
            _ if buf.is_empty() || end.sealed => size,
            // Cut by the window's end: go on from that record.
            Some(_) if end.valid_end > 0 => pos + end.valid_end as u64,
            Some(why) => {
                self.give_up(seg, why);
                return Vec::new();
            }
            None if end.valid_end == buf.len() => pos + buf.len() as u64,
            // Block padding: the next record starts on the next block.
            None => align_block(crate::protocol::wire::usize_of(pos) + end.valid_end + 1) as u64,
        };
        let moved = self.copy_live(seg, found);
        let finished = next >= size;
        {
            let mut c = self.compaction.borrow_mut();
            if let Some(c) = c.as_mut() {
                c.pos = next;
                c.copied += moved.len() as u64;
            }
            if finished {
                let copied = c.take().map_or(0, |c| c.copied);
                let mut st = self.st.borrow_mut();
                let left = st.segs.get(&seg).map_or(0, |i| i.live.count);
                if left > 0 {
                    // Should not happen: live messages it did not find.
                    tracing::warn!(shard = self.opts.shard, segment = seg, left, "compaction left live messages");
                    st.no_compact.insert(seg);
                } else {
                    st.compacted.insert(seg);
                }
                tracing::info!(shard = self.opts.shard, segment = seg, copied, "segment compacted");
            }
        }
        if !moved.is_empty() || finished {
            self.kick();
        }
        moved
    }

    /// Re-appends the records of `found` that are still live in `seg`, the
    /// origin records of those (`origin.rs`), and the stream chunk records (their times) of messages still live
    /// anywhere: retention drops a stream's oldest first, so a chunk whose
    /// last message is gone has none left.
    fn copy_live(&self, seg: u64, found: Vec<Record<'_>>) -> Vec<Moved> {
        let mut st = self.st.borrow_mut();
        let st = &mut *st;
        if st.poisoned.is_some() {
            return Vec::new();
        }
        let mut moved = Vec::new();
        for r in found {
            let (queue, seq, entry) = match r {
                Record::Publish { queue, seq, entry } => (queue, seq, entry),
                Record::StreamChunk { queue, first, count, at_ms } => {
                    let last = first + u64::from(count) - 1; // checked by the decoder
                    if st.queues.get(&queue).is_some_and(|q| q.seg_of(last).is_some()) {
                        let chunk = Record::StreamChunk { queue, first, count, at_ms };
                        self.put(st, |b, seed| super::record::encode(b, seed, &chunk));
                    }
                    continue;
                }
                _ => continue,
            };
            let Some(q) = st.queues.get_mut(&queue) else { continue };
            if q.seg_of(seq) != Some(seg) {
                continue;
            }
            let bytes = super::record::publish_bytes(entry.len());
            q.remove(seq, bytes);
            if let Some(i) = st.segs.get_mut(&seg) {
                i.live.count = i.live.count.saturating_sub(1);
                i.live.bytes = i.live.bytes.saturating_sub(bytes);
            }
            let loc = self.put_publish(st, queue, seq, entry);
            moved.push(Moved { queue, seq, loc });
        }
        // Origin records are not copied as found: the log keeps the ones
        // still needed and logs them again after the copies they cover.
        let copied: Vec<(u32, u64)> = moved.iter().map(|m| (m.queue, m.seq)).collect();
        super::origin::relog_after_copies(self, st, &copied);
        moved
    }

    fn give_up(&self, seg: u64, why: &str) {
        tracing::warn!(shard = self.opts.shard, segment = seg, why, "compaction of this segment abandoned");
        *self.compaction.borrow_mut() = None;
        self.st.borrow_mut().no_compact.insert(seg);
    }
}
