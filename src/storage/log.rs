//! The running log of one shard: appends go into a pending buffer; the
//! shard's flusher task writes everything pending in one O_DIRECT write per
//! segment touched, fdatasyncs once (policy permitting), then hands back
//! the waiters (deferred confirms) of that flush. Also tracks which
//! segments still hold live messages (count and bytes), deletes the dead
//! ones, and hands out each publish record's location (for spilling).

use super::compact::Compaction;
use super::io::{LogIo, SegmentFile};
use super::record::{align_block, encode, encode_publish, merge_ranges, publish_bytes, Record, Seed, FORMAT_VERSION};
use super::recovery::{recover, Recovered};
use super::runs::{Live, QState};
use super::{FsyncPolicy, Loc, StorageError, StorageOptions};
use crate::rt::Notify;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;
use std::time::Instant;

pub(super) struct Chunk {
    pub(super) seg: u64,
    pub(super) bytes: Vec<u8>,
}

/// One segment: its live messages, (once sealed) its size, and the seed
/// of its checksums (its format version's).
#[derive(Debug, Clone, Copy)]
pub(super) struct SegInfo {
    pub(super) live: Live,
    pub(super) size: u64,
    pub(super) seed: Seed,
}

impl SegInfo {
    fn new(seg: u64) -> Self {
        Self { live: Live::default(), size: 0, seed: Seed::of(seg) }
    }
}

pub(super) struct State<W> {
    pub(super) poisoned: Option<String>,
    /// The poisoning write failed for want of space (ENOSPC or EDQUOT):
    /// refusals then say the disk is full (`docs/storage.md`).
    pub(super) disk_full: bool,
    pub(super) queues: HashMap<u32, QState>,
    next_queue_id: u32,
    /// The segment appends go to, and exactly where the next record lands
    /// in it (the offset a publish hands out as its location).
    pub(super) tail_seg: u64,
    pub(super) tail_bytes: u64,
    /// The tail segment ends with a seal record: the next append rolls.
    tail_sealed: bool,
    pub(super) chunks: Vec<Chunk>,
    pub(super) waiters: Vec<W>,
    pub(super) acks_pending: bool,
    /// Every segment on disk (or about to be) with its live messages.
    pub(super) segs: BTreeMap<u64, SegInfo>,
    /// Segments emptied by compaction: deleting one waits for a flush
    /// that fdatasyncs (its copies must be durable first).
    pub(super) compacted: BTreeSet<u64>,
    /// Segments compaction gave up on (unreadable); not tried again.
    pub(super) no_compact: BTreeSet<u64>,
    /// Dead segments a flush has covered, for housekeeping to delete.
    pub(super) doomed: BTreeSet<u64>,
    /// Chunk buffers written and cleared, kept for the next appends: a
    /// fresh one regrew (and recopied) its contents several times a flush.
    spare_bufs: Vec<Vec<u8>>,
    /// Written since the last fdatasync.
    pub(super) dirty: bool,
    pub(super) last_sync: Instant,
}

/// Chunk buffers kept for reuse, and the largest kept: one that grew
/// past it during a burst goes back to the allocator.
const SPARE_BUFS_MAX: usize = 4;
const SPARE_BUF_BYTES_MAX: usize = 4 << 20;

impl<W> State<W> {
    /// An empty buffer for a new chunk.
    fn chunk_buf(&mut self) -> Vec<u8> {
        self.spare_bufs.pop().unwrap_or_else(|| Vec::with_capacity(64 << 10))
    }

    /// A written chunk's buffer, for the next appends.
    pub(super) fn keep_chunk_buf(&mut self, mut b: Vec<u8>) {
        if self.spare_bufs.len() < SPARE_BUFS_MAX && b.capacity() <= SPARE_BUF_BYTES_MAX {
            b.clear();
            self.spare_bufs.push(b);
        }
    }
}

/// What a flush hands back: its waiters, and whether what they wait on
/// is stored (`Err` carries the reason the shard is now poisoned).
pub struct Flushed<W> {
    pub waiters: Vec<W>,
    pub result: Result<(), String>,
}

pub(super) struct Writer {
    pub(super) file: Option<(u64, Rc<dyn SegmentFile>)>,
    pub(super) pos: u64,
}

pub struct Storage<W> {
    pub(super) io: Rc<dyn LogIo>,
    pub(super) opts: StorageOptions,
    pub(super) st: RefCell<State<W>>,
    pub(super) writer: RefCell<Writer>,
    pub(super) kick: Notify,
    /// Wakes the housekeeping task (`housekeep.rs`): segments to delete,
    /// or a spare to prepare.
    pub(super) housekeeping: Notify,
    /// The next segment, created and zero-filled ahead of the roll.
    pub(super) spare: RefCell<Option<(u64, Rc<dyn SegmentFile>)>>,
    /// The segment being prepared, and a signal when that is done.
    pub(super) preparing: std::cell::Cell<Option<u64>>,
    /// The filesystem cannot allocate ahead (no fallocate): not tried again.
    pub(super) spare_unsupported: std::cell::Cell<bool>,
    pub(super) spare_done: Notify,
    /// Signalled after every flush (readers of spilled records wait on it).
    pub(super) flushed: Notify,
    pub(super) compaction: RefCell<Option<Compaction>>,
    /// Open segments that spilled entries are read from.
    pub(super) readers: RefCell<HashMap<u64, Rc<dyn SegmentFile>>>,
    pub(super) lock: glommio::sync::Semaphore,
    /// Bytes of the write in progress (taken from `chunks`).
    pub(super) writing: std::cell::Cell<usize>,
    /// fdatasync calls and the nanoseconds they took (for metrics).
    pub(super) syncs: std::cell::Cell<(u64, u64)>,
    /// Reads and writes of the log's files (for metrics).
    pub(super) io_counts: super::io_stats::IoCounters,
    /// Dead segments reused as new ones (for metrics).
    pub(super) reused: std::cell::Cell<u64>,
}

impl<W> Storage<W> {
    /// Recovers the shard's log, then starts a new segment for appends
    /// (written and synced before this returns).
    pub async fn open(io: Rc<dyn LogIo>, opts: StorageOptions) -> Result<(Self, Recovered), StorageError> {
        let mut rec = recover(&*io, &opts).await?;
        let mut segs: BTreeMap<u64, SegInfo> =
            rec.segments.iter().map(|&(s, size, seed)| (s, SegInfo { live: Live::default(), size, seed })).collect();
        let mut queues = HashMap::new();
        let mut stale_origins = Vec::new();
        for q in &rec.queues {
            let mut qs = QState::new(q.name.clone(), q.args.clone(), q.next_seq);
            qs.offsets = q.offsets.iter().cloned().collect();
            let (origins, stale) = super::origin::recovered_runs(q);
            qs.origins = origins;
            stale_origins.extend(stale.into_iter().map(|first| (q.id, first)));
            for m in &q.messages {
                let bytes = publish_bytes(usize::try_from(m.entry_len).unwrap_or(usize::MAX));
                let seg = u64::from(m.seg);
                qs.add(m.seq, seg, bytes);
                segs.entry(seg).or_insert_with(|| SegInfo::new(seg)).live.add(bytes);
            }
            queues.insert(q.id, qs);
        }
        let tail_seg = rec.segments.last().map_or(1, |s| s.0 + 1);
        segs.insert(tail_seg, SegInfo::new(tail_seg));
        let next_queue_id = rec.next_queue_id.max(rec.queues.iter().map(|q| q.id.saturating_add(1)).max().unwrap_or(1));
        rec.next_queue_id = next_queue_id;
        let st = State {
            poisoned: None,
            disk_full: false,
            queues,
            next_queue_id,
            tail_seg,
            tail_bytes: 0,
            tail_sealed: false,
            chunks: Vec::new(),
            waiters: Vec::new(),
            acks_pending: false,
            segs,
            compacted: BTreeSet::new(),
            no_compact: BTreeSet::new(),
            doomed: BTreeSet::new(),
            spare_bufs: Vec::new(),
            dirty: false,
            last_sync: Instant::now(),
        };
        let s = Self {
            io,
            opts,
            st: RefCell::new(st),
            writer: RefCell::new(Writer { file: None, pos: 0 }),
            kick: Notify::default(),
            housekeeping: Notify::default(),
            spare: RefCell::new(None),
            preparing: std::cell::Cell::new(None),
            spare_unsupported: std::cell::Cell::new(false),
            spare_done: Notify::default(),
            flushed: Notify::default(),
            compaction: RefCell::new(None),
            readers: RefCell::new(HashMap::new()),
            lock: glommio::sync::Semaphore::new(1),
            writing: std::cell::Cell::new(0),
            syncs: std::cell::Cell::new((0, 0)),
            io_counts: super::io_stats::IoCounters::default(),
            reused: std::cell::Cell::new(0),
        };
        {
            let mut st = s.st.borrow_mut();
            s.start_segment(&mut st, tail_seg);
            s.relog_stale(&mut st, stale_origins);
        }
        let f = s.sync_all().await;
        if let Err(e) = f.result {
            // A full disk must not keep the broker from serving what it
            // holds: it starts with the log poisoned as full (recovered
            // messages are delivered, persistent publishes refused).
            // Any other failure to write stops the start.
            if !s.disk_full() {
                return Err(StorageError::Poisoned(e));
            }
            tracing::error!(
                shard = s.opts.shard,
                dir = %s.opts.dir.display(),
                error = %e,
                "the disk is full at start: recovered messages are served, persistent publishes are refused until space is freed and the broker restarted"
            );
        }
        Ok((s, rec))
    }

    fn start_segment(&self, st: &mut State<W>, seg: u64) {
        let mut bytes = st.chunk_buf();
        let seed = Seed::of(seg);
        encode(
            &mut bytes,
            seed,
            &Record::Segment {
                version: FORMAT_VERSION,
                shard: self.opts.shard,
                shard_count: self.opts.shard_count,
                segment: seg,
                next_queue_id: st.next_queue_id,
            },
        );
        let mut ids: Vec<u32> = st.queues.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let q = &st.queues[&id];
            encode(&mut bytes, seed, &Record::Declare { queue: id, next_seq: q.next_seq, name: q.name.as_bytes() });
            if !q.args.is_empty() {
                encode(&mut bytes, seed, &Record::QueueArgs { queue: id, args: &q.args });
            }
            for (reference, &offset) in &q.offsets {
                encode(&mut bytes, seed, &Record::StreamOffset { queue: id, offset, reference: reference.as_bytes() });
            }
        }
        if let Some(old) = st.segs.get_mut(&st.tail_seg) {
            old.size = align_block(crate::protocol::wire::usize_of(st.tail_bytes)) as u64;
        }
        st.tail_seg = seg;
        st.tail_bytes = bytes.len() as u64;
        st.tail_sealed = false;
        st.segs.entry(seg).or_insert_with(|| SegInfo::new(seg));
        st.chunks.push(Chunk { seg, bytes });
    }

    /// Makes sure the last chunk is the tail segment's, rolling to a new
    /// segment first when the tail one is full (sealing it) or sealed.
    fn tail(&self, st: &mut State<W>) {
        if st.tail_bytes >= self.opts.segment_bytes || st.tail_sealed {
            self.seal(st);
            let next = st.tail_seg + 1;
            self.start_segment(st, next);
        } else {
            self.tail_chunk(st);
        }
    }

    fn tail_chunk(&self, st: &mut State<W>) {
        if st.chunks.last().is_none_or(|c| c.seg != st.tail_seg) {
            let (seg, bytes) = (st.tail_seg, st.chunk_buf());
            st.chunks.push(Chunk { seg, bytes });
        }
    }

    /// Ends the tail segment with a seal record (once): recovery reads
    /// nothing after it, which is what lets a segment file be reused
    /// (`record.rs`). The write that carries it is synced before anything
    /// lands in the next segment (`write_chunks`).
    pub(super) fn seal(&self, st: &mut State<W>) {
        if st.tail_sealed {
            return;
        }
        self.tail_chunk(st);
        self.append_tail(st, |b, seed| encode(b, seed, &Record::Seal));
        st.tail_sealed = true;
    }

    /// Appends what `f` encodes (with the tail segment's seed) to the
    /// tail, rolling first if it is full; returns where it starts
    /// (segment, offset).
    pub(super) fn put(&self, st: &mut State<W>, f: impl FnOnce(&mut Vec<u8>, Seed)) -> (u64, u64) {
        self.tail(st);
        self.append_tail(st, f)
    }

    /// Appends to the tail chunk as it is (no roll).
    fn append_tail(&self, st: &mut State<W>, f: impl FnOnce(&mut Vec<u8>, Seed)) -> (u64, u64) {
        let at = (st.tail_seg, st.tail_bytes);
        let b = &mut st.chunks.last_mut().expect("a tail chunk").bytes;
        let before = b.len();
        f(b, Seed::of(at.0));
        st.tail_bytes += (b.len() - before) as u64;
        at
    }

    /// Logs one publish record and counts it live; returns its location.
    pub(super) fn put_publish(&self, st: &mut State<W>, queue: u32, seq: u64, entry: &[u8]) -> Option<Loc> {
        let (seg, off) = self.put(st, |b, seed| encode_publish(b, seed, queue, seq, entry));
        let bytes = publish_bytes(entry.len());
        if let Some(q) = st.queues.get_mut(&queue) {
            q.add(seq, seg, bytes);
            st.segs.entry(seg).or_insert_with(|| SegInfo::new(seg)).live.add(bytes);
        }
        Loc::new(seg, off, entry.len())
    }

    pub(super) fn append<T>(&self, f: impl FnOnce(&mut State<W>) -> T) -> Result<T, StorageError> {
        let mut st = self.st.borrow_mut();
        if let Some(p) = &st.poisoned {
            return Err(StorageError::Poisoned(p.clone()));
        }
        let r = f(&mut st);
        drop(st);
        self.kick.notify();
        Ok(r)
    }

    pub(super) fn kick(&self) {
        self.kick.notify();
    }

    /// fdatasync calls so far and the total nanoseconds they took.
    pub fn sync_stats(&self) -> (u64, u64) {
        self.syncs.get()
    }

    pub(super) fn count_sync(&self, since: Instant) {
        let (n, t) = self.syncs.get();
        self.syncs.set((n + 1, t.saturating_add(crate::protocol::wire::u64_of(since.elapsed().as_nanos()))));
    }

    /// The log's reads and writes so far.
    pub fn io_totals(&self) -> super::io_stats::IoTotals {
        self.io_counts.totals()
    }

    /// Dead segments reused as new ones so far.
    pub fn segments_reused(&self) -> u64 {
        self.reused.get()
    }

    /// Logs a new durable queue and its arguments (a raw field table,
    /// empty for none); returns its id (never reused).
    pub fn declare(&self, name: &str, args: &[u8]) -> Result<u32, StorageError> {
        // Ids come from the log (a damaged one could name the last).
        if self.st.borrow().next_queue_id == u32::MAX {
            return Err(StorageError::QueueIdsExhausted);
        }
        self.append(|st| {
            let id = st.next_queue_id;
            st.next_queue_id += 1;
            st.queues.insert(id, QState::new(name.to_owned(), args.to_vec(), 0));
            self.put(st, |b, seed| {
                encode(b, seed, &Record::Declare { queue: id, next_seq: 0, name: name.as_bytes() });
                if !args.is_empty() {
                    encode(b, seed, &Record::QueueArgs { queue: id, args });
                }
            });
            id
        })
    }

    /// Logs a stream consumer's offset under `reference` (1..=255 bytes;
    /// checked by the caller). The offset is stored once the next flush is.
    pub fn store_offset(&self, queue: u32, reference: &str, offset: u64) -> Result<(), StorageError> {
        self.append(|st| {
            if let Some(q) = st.queues.get_mut(&queue) {
                q.offsets.insert(reference.to_owned(), offset);
            }
            self.put(st, |b, seed| {
                encode(b, seed, &Record::StreamOffset { queue, offset, reference: reference.as_bytes() })
            });
        })
    }

    /// Logs a stream's publish batch: `count` messages from `first`,
    /// appended at `at_ms` (after their publish records, in the same flush).
    pub fn stream_chunk(&self, queue: u32, first: u64, count: u32, at_ms: u64) -> Result<(), StorageError> {
        self.append(|st| {
            self.put(st, |b, seed| encode(b, seed, &Record::StreamChunk { queue, first, count, at_ms }));
        })
    }

    /// Logs a queue's deletion; its messages stop pinning segments.
    pub fn delete(&self, queue: u32) -> Result<(), StorageError> {
        self.append(|st| {
            if let Some(q) = st.queues.remove(&queue) {
                for (seg, n) in q.by_seg {
                    if let Some(l) = st.segs.get_mut(&seg) {
                        l.live.count = l.live.count.saturating_sub(n.count);
                        l.live.bytes = l.live.bytes.saturating_sub(n.bytes);
                    }
                }
            }
            self.put(st, |b, seed| encode(b, seed, &Record::Delete { queue }));
        })
    }

    /// Logs the purge of a durable queue's persistent messages, handed over
    /// one at a time by `walk` (sequence number and entry length), not in a
    /// list: a purge of a backlog of millions keeps only ranges. When the log is
    /// poisoned nothing is logged and `walk` is not called.
    pub fn purge<T>(&self, queue: u32, walk: impl FnOnce(&mut dyn FnMut(u64, usize)) -> T) -> Result<T, StorageError> {
        self.append(|st| {
            let mut ranges: Vec<(u64, u64)> = Vec::new();
            let t = walk(&mut |s, len| {
                forget(st, queue, s, len);
                match ranges.last_mut() {
                    Some(r) if r.1.checked_add(1) == Some(s) => r.1 = s,
                    _ => ranges.push((s, s)),
                }
            });
            merge_ranges(&mut ranges);
            if !ranges.is_empty() {
                self.put(st, |b, seed| encode(b, seed, &Record::Purge { queue, ranges }));
            }
            t
        })
    }

    /// Logs one persistent message of a durable queue; returns where its
    /// record is (`None` only past u32 segment numbers).
    pub fn publish(&self, queue: u32, seq: u64, entry: &[u8]) -> Result<Option<Loc>, StorageError> {
        self.append(|st| self.put_publish(st, queue, seq, entry))
    }

    /// Records an ack (or a drop) of a persistent message whose entry is
    /// `len` bytes; logged in ranges with the next flush. Lost acks only
    /// mean redelivery.
    pub fn ack(&self, queue: u32, seq: u64, len: usize) {
        let mut st = self.st.borrow_mut();
        if st.poisoned.is_some() {
            return;
        }
        forget(&mut st, queue, seq, len);
        if let Some(q) = st.queues.get_mut(&queue) {
            q.acks.push(seq);
            st.acks_pending = true;
        }
        drop(st);
        self.kick.notify();
    }

    /// Holds `w` until everything appended so far is stored.
    pub fn defer(&self, w: W) {
        self.st.borrow_mut().waiters.push(w);
        self.kick.notify();
    }

    /// Bytes appended and not yet written: pending, and being written.
    pub fn unwritten_bytes(&self) -> usize {
        let pending: usize = self.st.borrow().chunks.iter().map(|c| c.bytes.len()).sum();
        pending + self.writing.get()
    }

    /// Waits until at most `max` bytes are unwritten (or the log is
    /// poisoned: appends are refused then). The flusher is always at work
    /// while anything is pending, and signals `flushed` after each flush.
    pub async fn wait_unwritten_below(&self, max: usize) {
        loop {
            let n = self.flushed.notified();
            if self.unwritten_bytes() <= max || self.poisoned().is_some() {
                return;
            }
            n.await;
        }
    }

    /// Whether anything waits for a flush. Once poisoned only waiters do
    /// (they are answered with the error): acks and appends are never
    /// written, and counting them kept the flusher spinning.
    pub fn has_work(&self) -> bool {
        let st = self.st.borrow();
        if st.poisoned.is_some() {
            return !st.waiters.is_empty();
        }
        !st.chunks.is_empty() || !st.waiters.is_empty() || st.acks_pending
    }

    /// Waits until there is something to flush (or, under the interval
    /// policy, until an fdatasync is due).
    pub async fn wait_work(&self) {
        loop {
            let n = self.kick.notified();
            if self.has_work() {
                return;
            }
            let due = {
                let st = self.st.borrow();
                // Poisoned: no fdatasync is ever due again.
                (st.dirty && st.poisoned.is_none() && self.opts.fsync == FsyncPolicy::Interval)
                    .then(|| self.interval().saturating_sub(st.last_sync.elapsed()))
            };
            match due {
                Some(d) if d.is_zero() => return,
                Some(d) => {
                    futures_lite::future::or(n, async {
                        glommio::timer::sleep(d).await;
                    })
                    .await
                }
                None => n.await,
            }
        }
    }

    /// The checksum seed of segment `seg`'s records.
    pub(super) fn seed_of(&self, seg: u64) -> Seed {
        self.st.borrow().segs.get(&seg).map_or(Seed::of(seg), |i| i.seed)
    }

    /// Segments on disk (for tests and metrics).
    pub fn segments(&self) -> Vec<u64> {
        self.st.borrow().segs.keys().copied().collect()
    }

    /// Live record bytes and total bytes of the segments on disk.
    pub fn disk_usage(&self) -> (u64, u64) {
        let st = self.st.borrow();
        st.segs.values().fold((0, 0), |(l, t), i| (l + i.live.bytes, t + i.size))
    }
}

fn forget<W>(st: &mut State<W>, queue: u32, seq: u64, len: usize) {
    let bytes = publish_bytes(len);
    let Some(q) = st.queues.get_mut(&queue) else { return };
    if let Some(seg) = q.remove(seq, bytes) {
        q.forget_origin(seq);
        if let Some(l) = st.segs.get_mut(&seg) {
            l.live.sub(bytes);
        }
    }
}
