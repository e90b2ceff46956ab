//! Recovery at shard start: replay every segment in order, verify every
//! checksum, cut a torn tail off the last segment, and rebuild each
//! durable queue as published minus acked.
//!
//! A message may appear in more than one segment (compaction re-appends
//! live records; a crash between the copy and the deletion of the old
//! segment leaves both): replay keeps one per (queue, seq), the last seen,
//! and an ack or purge applies by sequence number wherever the publish is.
//! Past `resident_bytes_max` of entries, recovered messages keep only their
//! location in the log (read back when delivered).

use super::io::{segment_path, LogIo, SegmentFile};
use super::origin::{add_run, OriginRun};
use super::record::{
    align_block, header_seed, owned, scan, stale_header, valid_record_after, Record, Seed, BLOCK, FORMAT_VERSION,
};
use super::{Loc, Origin, StorageError, StorageOptions};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The largest segment file recovery reads: the largest `segment_bytes`
/// (4 GiB) plus the record that crossed it (at most a frame, 256 MiB)
/// and its seal, rounded up generously. Record offsets are 32-bit, so a
/// longer segment is not one the log wrote.
pub const SEGMENT_FILE_MAX: u64 = (4 << 30) + (512 << 20);

/// A durable queue as the log left it.
#[derive(Debug)]
pub struct RecoveredQueue {
    pub id: u32,
    pub name: String,
    /// Its declare arguments (raw field table; empty for none).
    pub args: Vec<u8>,
    /// The next sequence number to hand out: past every one ever logged.
    pub next_seq: u64,
    /// Unacked persistent messages in sequence order.
    pub messages: VecDeque<RecoveredMsg>,
    /// The entries held in memory, by sequence number: the first
    /// `resident_bytes_max` bytes' worth; the others are read back from
    /// their `loc()` when delivered.
    pub entries: HashMap<u64, Bytes>,
    /// A stream's stored consumer offsets: (reference, offset), the last
    /// logged for each reference.
    pub offsets: Vec<(String, u64)>,
    /// A stream's chunks (publish batches) that still hold a recovered
    /// message, in offset order: (first, count, appended at, Unix ms).
    /// Logs written before chunk records existed have none.
    pub chunks: Vec<(u64, u32, u64)>,
    /// Where its messages were published to, by origin record (type 18),
    /// in sequence order: only those that cover a recovered message.
    /// A message no record covers came through the default exchange with
    /// the queue's name (or was logged before origin records existed).
    pub origins: VecDeque<RecoveredOrigin>,
}

/// Origin records as recovered: `count` messages from `first` were
/// published to `origin` (consecutive records with one origin are one
/// run); `seg` is the oldest segment one of them was read from.
#[derive(Debug, Clone)]
pub struct RecoveredOrigin {
    pub first: u64,
    pub count: u32,
    pub seg: u64,
    pub origin: Arc<Origin>,
}

/// One recovered message: 24 bytes, so a backlog of 20 M messages
/// replays through 480 MB of deque (its entries, past the memory budget,
/// stay on disk).
#[derive(Debug, Clone, Copy)]
pub struct RecoveredMsg {
    pub seq: u64,
    /// The segment of the copy kept (0 marks an acked slot during replay),
    /// and the record's offset in it.
    pub seg: u32,
    pub off: u32,
    pub entry_len: u32,
    /// The body's length (the entry's header says it): a queue counts it
    /// for `x-max-length-bytes` even while the entry is on disk.
    pub body_len: u32,
}

const _: () = assert!(std::mem::size_of::<RecoveredMsg>() == 24);

impl RecoveredMsg {
    pub fn loc(&self) -> Option<Loc> {
        Loc::new(u64::from(self.seg), u64::from(self.off), usize::try_from(self.entry_len).ok()?)
    }
}

impl RecoveredQueue {
    /// The entry of `m` if recovery kept it in memory.
    pub fn take_entry(&mut self, m: &RecoveredMsg) -> Option<Bytes> {
        self.entries.remove(&m.seq)
    }

    /// The origin of message `seq`, asked in ascending order (the records
    /// passed are dropped on the way); `None`: the default exchange.
    pub fn take_origin(&mut self, seq: u64) -> Option<Arc<Origin>> {
        // first + count <= SEQ_LIMIT: checked by the decoder.
        while self.origins.front().is_some_and(|o| o.first + u64::from(o.count) <= seq) {
            self.origins.pop_front();
        }
        self.origins.front().filter(|o| o.first <= seq).map(|o| o.origin.clone())
    }
}

#[derive(Debug, Default)]
pub struct RecoveryReport {
    pub segments: usize,
    pub records: u64,
    pub bytes_read: u64,
    /// Bytes cut off the last segment (a torn tail), and which file.
    pub truncated_bytes: u64,
    pub truncated_file: Option<PathBuf>,
    /// Corrupt sealed-segment tails skipped under `skip_corrupt`:
    /// (file, offset, bytes lost).
    pub skipped: Vec<(PathBuf, u64, u64)>,
    pub elapsed: Duration,
}

#[derive(Debug)]
pub struct Recovered {
    pub queues: Vec<RecoveredQueue>,
    pub report: RecoveryReport,
    /// Segments left on disk, ascending, with their sizes in bytes and
    /// the seed of their checksums.
    pub segments: Vec<(u64, u64, Seed)>,
    pub next_queue_id: u32,
}

/// A queue as replayed so far: messages in sequence order, acked ones
/// left as tombstones (`seg == 0`) until they reach the front.
struct Replay {
    name: String,
    args: Vec<u8>,
    next_seq: u64,
    msgs: VecDeque<RecoveredMsg>,
    entries: HashMap<u64, Bytes>,
    offsets: BTreeMap<String, u64>,
    /// Stream chunks by first offset: (count, at_ms); a copy compaction
    /// made replaces the original.
    chunks: BTreeMap<u64, (u32, u64)>,
    /// Origin records by first sequence number, runs of one origin merged
    /// (`origin::add_run`: copies and consecutive batches are one entry).
    origins: BTreeMap<u64, OriginRun>,
}

/// Entry bytes held in memory by the replay so far, and the cap.
struct Resident {
    bytes: u64,
    max: u64,
}

impl Resident {
    fn release(&mut self, m: &mut RecoveredMsg, entries: &mut HashMap<u64, Bytes>) {
        if entries.remove(&m.seq).is_some() {
            self.bytes -= u64::from(m.entry_len);
        }
        m.seg = 0;
    }
}

impl Replay {
    /// A publish: appended (the usual case), or a copy of one already seen
    /// (compaction; the later copy is kept), or an older one put in order.
    fn publish(&mut self, seg: u32, off: usize, seq: u64, entry: &[u8], res: &mut Resident) {
        // `seq` comes from the file: u64::MAX must not overflow.
        self.next_seq = self.next_seq.max(seq.saturating_add(1));
        let (Ok(off), Ok(len)) = (u32::try_from(off), u32::try_from(entry.len())) else { return };
        let body_len: u32 = crate::protocol::wire::saturate(crate::protocol::batch::entry_body_len(entry));
        let m = RecoveredMsg { seq, seg, off, entry_len: len, body_len };
        let at = match self.msgs.back() {
            Some(b) if b.seq >= seq => self.msgs.binary_search_by_key(&seq, |m| m.seq),
            _ => Err(self.msgs.len()),
        };
        if let Ok(i) = at {
            res.release(&mut self.msgs[i], &mut self.entries);
        }
        if m.loc().is_none() || res.bytes + u64::from(len) <= res.max {
            self.entries.insert(seq, owned(entry));
            res.bytes += u64::from(len);
        }
        match at {
            Ok(i) => self.msgs[i] = m,
            Err(i) => self.msgs.insert(i, m),
        }
    }

    fn remove_ranges(&mut self, ranges: &[(u64, u64)], res: &mut Resident) {
        for &(a, b) in ranges {
            if a > b {
                continue;
            }
            self.next_seq = self.next_seq.max(b.saturating_add(1));
            let from = self.msgs.partition_point(|m| m.seq < a);
            for m in self.msgs.range_mut(from..) {
                if m.seq > b {
                    break;
                }
                res.release(m, &mut self.entries);
            }
        }
        while self.msgs.front().is_some_and(|m| m.seg == 0) {
            self.msgs.pop_front();
        }
    }
}

/// Deletes the segments at the end of `segs` that were never written: the
/// next segment prepared ahead of a roll (`housekeep.rs`). A fresh one is
/// all zeros; a reused one starts with a zeroed block, or, if the crash
/// came between its rename and that wipe, with the intact header of the
/// older segment it was, or, if the wipe itself was torn by the power
/// loss, with some zeroed sectors and some of that old header. What they
/// share: no header of their own. Nothing in a segment without its own
/// header was ever synced (its header goes out in its first write, and
/// the previous segment is sealed and synced before that), so it holds
/// nothing confirmed. The segment before it is then the last one, whose
/// torn tail is cut. (The power-loss simulator, `sim.rs`, found the torn
/// wipe: the old test for "all zeros or a stale header" kept such a
/// segment, and the recovery then refused the previous segment's torn
/// tail as damage in a sealed segment.)
async fn drop_unused_tail(io: &dyn LogIo, dir: &Path, segs: &mut Vec<u64>) -> Result<(), StorageError> {
    while let Some(&seg) = segs.last() {
        let path = segment_path(dir, seg);
        let file = io.open(&path).await.map_err(|e| StorageError::io(&path, e))?;
        let head = file.read_at(0, BLOCK).await.map_err(|e| StorageError::io(&path, e))?;
        if header_seed(&head, seg).is_some() {
            return Ok(());
        }
        // A segment is deleted on this read: a fault on the way (a bit
        // flipped in transit) must not pass for an unused one.
        let again = file.read_at(0, BLOCK).await.map_err(|e| StorageError::io(&path, e))?;
        if again != head {
            return Err(unstable_read(&path));
        }
        let wiped = head.iter().all(|&b| b == 0);
        drop(file);
        io.remove(&path).await.map_err(|e| StorageError::io(&path, e))?;
        let stale = stale_header(&head, seg);
        tracing::debug!(file = %path.display(), wiped, stale, "unused prepared segment deleted");
        segs.pop();
    }
    Ok(())
}

/// Two reads of the same bytes differed: the device or the path to it is
/// failing, and nothing may be cut or deleted on what it returned.
fn unstable_read(path: &Path) -> StorageError {
    StorageError::io(path, std::io::Error::other("two reads of the same bytes differ: not cutting or deleting on them"))
}

/// Replays the log in `opts.dir`: every segment in order (see the module
/// doc), then the queues as published minus acked.
pub async fn recover(io: &dyn LogIo, opts: &StorageOptions) -> Result<Recovered, StorageError> {
    let t0 = Instant::now();
    let mut segs = io.segments_in(&opts.dir).await.map_err(|e| StorageError::io(&opts.dir, e))?;
    let mut report = RecoveryReport::default();
    let mut state = State {
        queues: HashMap::new(),
        res: Resident { bytes: 0, max: opts.resident_bytes_max },
        next_queue_id: 1,
        last_origin: None,
    };
    let mut keep = Vec::new();
    drop_unused_tail(io, &opts.dir, &mut segs).await?;
    let last = segs.last().copied();
    for seg in segs.drain(..) {
        let is_last = Some(seg) == last;
        if let Some(kept) = replay_segment(io, opts, seg, is_last, &mut state, &mut report).await? {
            keep.push(kept);
        }
    }
    let next_queue_id = state.next_queue_id;
    let queues = state.into_queues();
    report.elapsed = t0.elapsed();
    Ok(Recovered { queues, report, segments: keep, next_queue_id })
}

/// What the replay has built so far, across segments.
struct State {
    queues: HashMap<u32, Replay>,
    res: Resident,
    /// Past every queue id a header or a declare named.
    next_queue_id: u32,
    /// The origin of the last origin record: the next equal one shares it
    /// (a publisher's batches mostly go one way).
    last_origin: Option<Arc<Origin>>,
}

impl State {
    /// Applies one record that follows a valid segment header.
    fn apply(&mut self, seg32: u32, at: usize, r: Record<'_>) {
        match r {
            Record::Segment { .. } | Record::Seal => {}
            Record::Declare { queue, next_seq, name } => {
                self.next_queue_id = self.next_queue_id.max(queue.saturating_add(1));
                let name = String::from_utf8_lossy(name).into_owned();
                let q = self.queues.entry(queue).or_insert_with(|| Replay {
                    name: name.clone(),
                    args: Vec::new(),
                    next_seq: 0,
                    msgs: VecDeque::new(),
                    entries: HashMap::new(),
                    offsets: BTreeMap::new(),
                    chunks: BTreeMap::new(),
                    origins: BTreeMap::new(),
                });
                q.name = name;
                q.next_seq = q.next_seq.max(next_seq);
            }
            Record::Delete { queue } => {
                if let Some(mut q) = self.queues.remove(&queue) {
                    let entries = &mut q.entries;
                    q.msgs.iter_mut().for_each(|m| self.res.release(m, entries));
                }
            }
            Record::QueueArgs { queue, args } => {
                if let Some(q) = self.queues.get_mut(&queue) {
                    q.args = args.to_vec();
                }
            }
            Record::StreamOffset { queue, offset, reference } => {
                // UTF-8 checked by the decoder.
                if let (Some(q), Ok(r)) = (self.queues.get_mut(&queue), std::str::from_utf8(reference)) {
                    q.offsets.insert(r.to_owned(), offset);
                }
            }
            Record::Purge { queue, ranges } | Record::Ack { queue, ranges } => {
                if let Some(q) = self.queues.get_mut(&queue) {
                    q.remove_ranges(&ranges, &mut self.res);
                    // Retention drops a stream's oldest first: chunks
                    // wholly before its first message are gone for good.
                    let front = q.msgs.front().map_or(q.next_seq, |m| m.seq);
                    while q.chunks.first_key_value().is_some_and(|(&f, &(n, _))| f + u64::from(n) <= front) {
                        q.chunks.pop_first();
                    }
                }
            }
            Record::StreamChunk { queue, first, count, at_ms } => {
                if let Some(q) = self.queues.get_mut(&queue) {
                    q.chunks.insert(first, (count, at_ms));
                }
            }
            Record::Publish { queue, seq, entry } => {
                if let Some(q) = self.queues.get_mut(&queue) {
                    q.publish(seg32, at, seq, entry, &mut self.res);
                }
            }
            Record::Origin { queue, first, count, exchange, routing_key } => {
                let Some(q) = self.queues.get_mut(&queue) else { return };
                // Compared as bytes first: a log of many batches through
                // one exchange and key allocates their names once.
                let origin = match &self.last_origin {
                    Some(o) if o.exchange.as_bytes() == exchange && o.routing_key.as_bytes() == routing_key => {
                        o.clone()
                    }
                    // UTF-8 checked by the decoder.
                    _ => Arc::new(Origin {
                        exchange: String::from_utf8_lossy(exchange).into_owned(),
                        routing_key: String::from_utf8_lossy(routing_key).into_owned(),
                    }),
                };
                self.last_origin = Some(origin.clone());
                add_run(&mut q.origins, first, OriginRun { count, seg: u64::from(seg32), origin });
            }
        }
    }

    /// The queues as the log left them, by id; acked tombstones dropped.
    fn into_queues(self) -> Vec<RecoveredQueue> {
        let mut out: Vec<RecoveredQueue> = self
            .queues
            .into_iter()
            .map(|(id, q)| {
                let mut messages = q.msgs;
                messages.retain(|m| m.seg != 0);
                let front = messages.front().map_or(u64::MAX, |m| m.seq);
                let chunks =
                    q.chunks.into_iter().filter(|&(f, (n, _))| f + u64::from(n) > front).map(|(f, (n, at))| (f, n, at));
                // Only the records that cover a recovered message.
                let origins = q
                    .origins
                    .into_iter()
                    .filter(|(first, r)| {
                        let i = messages.partition_point(|m| m.seq < *first);
                        messages.get(i).is_some_and(|m| m.seq - first < u64::from(r.count))
                    })
                    .map(|(first, r)| RecoveredOrigin { first, count: r.count, seg: r.seg, origin: r.origin })
                    .collect();
                RecoveredQueue {
                    id,
                    name: q.name,
                    args: q.args,
                    next_seq: q.next_seq,
                    messages,
                    entries: q.entries,
                    offsets: q.offsets.into_iter().collect(),
                    chunks: chunks.collect(),
                    origins,
                }
            })
            .collect();
        out.sort_by_key(|q| q.id);
        out
    }
}

/// Replays one segment into `state`: its header checked, its records
/// applied, a bad record settled (`settle_bad_record`). Returns the
/// segment to keep (number, size counted, seed), or `None` when it was
/// deleted (the last one, created but never written).
async fn replay_segment(
    io: &dyn LogIo,
    opts: &StorageOptions,
    seg: u64,
    is_last: bool,
    state: &mut State,
    report: &mut RecoveryReport,
) -> Result<Option<(u64, u64, Seed)>, StorageError> {
    let path = segment_path(&opts.dir, seg);
    // Locations hold 32-bit segment numbers (4 billion segments).
    let seg32 = u32::try_from(seg).map_err(|_| StorageError::Corrupt {
        path: path.clone(),
        offset: 0,
        why: "segment number past 2^32",
    })?;
    let file = io.open(&path).await.map_err(|e| StorageError::io(&path, e))?;
    // Read whole: its size is bounded first (a file is attacker-written).
    let size = file.size().await.map_err(|e| StorageError::io(&path, e))?;
    if size > SEGMENT_FILE_MAX {
        return Err(StorageError::Oversized { path, size, max: SEGMENT_FILE_MAX });
    }
    let buf = file.read_all().await.map_err(|e| StorageError::io(&path, e))?;
    report.segments += 1;
    report.bytes_read = report.bytes_read.saturating_add(u64::try_from(buf.len()).unwrap_or(u64::MAX));
    // The first record's verdict; nothing after a bad header is applied.
    let mut header: Option<Result<(), StorageError>> = None;
    let mut records = 0u64;
    // No header at all: the scan stops at offset 0 and says why.
    let seed = header_seed(&buf, seg).unwrap_or(Seed::of(seg));
    let end = scan(&buf, seed, |at, r| {
        records += 1;
        if header.is_none() {
            header = Some(check_header(&r, &path, seg, seed, opts, &mut state.next_queue_id));
        } else if matches!(header, Some(Ok(()))) {
            state.apply(seg32, at, r);
        }
    });
    report.records += records;
    if let Some(Err(e)) = header {
        return Err(e);
    }
    if let Some(why) = end.bad {
        settle_bad_record(&*file, &path, &buf, (end.valid_end, why), seed, is_last, opts, report).await?;
    }
    if header.is_none() && is_last {
        // Created but never written (a crash right after the roll).
        drop(file);
        io.remove(&path).await.map_err(|e| StorageError::io(&path, e))?;
        return Ok(None);
    }
    if header.is_none() && !opts.skip_corrupt {
        return Err(StorageError::Corrupt { path, offset: 0, why: "missing segment header" });
    }
    // A prepared or reused segment is longer than its data: what
    // follows is not counted (compaction weighs live bytes against this).
    // Sizes of in-memory buffers: usize always fits u64 here.
    let size = match end.bad {
        None => align_block(end.valid_end) as u64,
        Some(_) if report.truncated_file.as_deref() == Some(path.as_path()) => end.valid_end as u64,
        Some(_) => buf.len() as u64,
    };
    Ok(Some((seg, size, seed)))
}

/// Checks a segment's first record: the header of this segment, in a
/// format version its seed matches, written by this shard of this many.
fn check_header(
    r: &Record<'_>,
    path: &Path,
    seg: u64,
    seed: Seed,
    opts: &StorageOptions,
    next_queue_id: &mut u32,
) -> Result<(), StorageError> {
    let path = path.to_path_buf();
    match *r {
        Record::Segment { version, shard, shard_count, next_queue_id: nq, segment } => {
            *next_queue_id = (*next_queue_id).max(nq);
            if segment != seg {
                Err(StorageError::Corrupt { path, offset: 0, why: "the segment header names another segment" })
            } else if Seed::for_version(version, seg) != Some(seed) {
                Err(StorageError::Version { path, found: version, supported: FORMAT_VERSION })
            } else if shard != opts.shard || shard_count != opts.shard_count {
                Err(StorageError::WrongShard {
                    path,
                    found_shard: shard,
                    found_count: shard_count,
                    shard: opts.shard,
                    count: opts.shard_count,
                })
            } else {
                Ok(())
            }
        }
        _ => Err(StorageError::Corrupt { path, offset: 0, why: "missing segment header" }),
    }
}

/// A bad record at `valid_end` in the segment read into `buf`: a torn
/// tail of the last segment is cut off; other damage is skipped under
/// `skip_corrupt` (the rest of the segment lost) or refused.
#[allow(clippy::too_many_arguments)]
async fn settle_bad_record(
    file: &dyn SegmentFile,
    path: &Path,
    buf: &[u8],
    (valid_end, why): (usize, &'static str),
    seed: Seed,
    is_last: bool,
    opts: &StorageOptions,
    report: &mut RecoveryReport,
) -> Result<(), StorageError> {
    // Sizes of in-memory buffers: usize always fits u64 here.
    let (len, valid_end64) = (buf.len() as u64, valid_end as u64);
    let lost = len - valid_end64;
    // A torn tail is bad bytes with nothing valid after them. A bad
    // record with records behind it is damage even in the last
    // segment: cutting it would drop what may have been confirmed.
    let torn = is_last && !valid_record_after(buf, valid_end, seed);
    if torn {
        // The file is cut on this read: a fault on the way must not
        // pass for a torn tail (and cut confirmed records).
        let again = file.read_all().await.map_err(|e| StorageError::io(path, e))?;
        if again != buf {
            return Err(unstable_read(path));
        }
        tracing::warn!(
            shard = opts.shard,
            file = %path.display(),
            offset = valid_end,
            cut_bytes = lost,
            why,
            "torn tail of the last segment cut off"
        );
        file.truncate(valid_end64).await.map_err(|e| StorageError::io(path, e))?;
        report.truncated_bytes = lost;
        report.truncated_file = Some(path.to_path_buf());
    } else if opts.skip_corrupt {
        tracing::error!(
            shard = opts.shard,
            file = %path.display(),
            offset = valid_end,
            lost_bytes = lost,
            why,
            last_segment = is_last,
            "corrupt record skipped (storage_skip_corrupt): the rest of the segment is lost (the file is left as it is)"
        );
        report.skipped.push((path.to_path_buf(), valid_end64, lost));
    } else {
        tracing::error!(
            shard = opts.shard,
            file = %path.display(),
            offset = valid_end,
            why,
            last_segment = is_last,
            "corrupt record with valid records after it: refusing to start"
        );
        let why = if is_last { "a bad record with valid records after it (damage, not a torn tail)" } else { why };
        return Err(StorageError::Corrupt { path: path.to_path_buf(), offset: valid_end64, why });
    }
    Ok(())
}
