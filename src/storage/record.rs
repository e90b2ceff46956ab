//! The on-disk record format (version 2; see `docs/storage.md`) and the
//! scanner that walks a segment, verifying every checksum.
//!
//! ```text
//! 0   u32  len       whole record: header (16) + payload; 0 marks padding
//! 4   u32  crc32c    seeded with the segment number, over bytes 0..4 and 8..len
//! 8   u8   type
//! 9   u8   reserved (0)
//! 10  u16  reserved (0)
//! 12  u32  queue id  (0 for the segment header)
//! 16  ...  payload
//! ```
//! Records start at 8-byte aligned offsets (a record occupies `len`
//! rounded up to 8). Every write ends on a `BLOCK` boundary; the bytes from
//! the last record to it are zero, and a zero `len` means "skip to the next
//! block" (the skipped bytes must be zero too).
//!
//! Version 2 exists so segment files can be reused: a dead segment is
//! renamed to the next number and written over (`housekeep.rs`), which
//! spares the filesystem the block frees (trims) and allocations that
//! made some flushes take tens of milliseconds. What the file held before
//! must never read as data: every checksum starts from the segment's own
//! number ([`Seed`]), so old records fail it, and a seal record ends every
//! segment the log leaves, so what follows it is not read at all. Version
//! 1 (unseeded, no seal) is still read.

use crate::protocol::batch::parse_entry;
use bytes::{BufMut, Bytes};

pub const HEADER_BYTES: usize = 16;
/// Writes are padded to this (O_DIRECT alignment on every device we know).
pub const BLOCK: usize = 4096;
pub const FORMAT_VERSION: u32 = 2;
pub const SEGMENT_MAGIC: &[u8; 8] = b"RINGMQSG";

pub const T_SEGMENT: u8 = 1;
pub const T_DECLARE: u8 = 2;
pub const T_DELETE: u8 = 3;
pub const T_PURGE: u8 = 4;
pub const T_PUBLISH: u8 = 5;
pub const T_ACK: u8 = 6;
// 7..=10: reserved for exchange records (routing).
/// A durable queue's declare arguments (policies), right after its declare.
pub const T_QUEUE_ARGS: u8 = 11;
/// The end of a segment's data: nothing after it is read.
pub const T_SEAL: u8 = 12;
/// A stream consumer's stored offset (server-side offset tracking): the
/// latest per (queue, reference) wins; re-logged at every segment start.
pub const T_STREAM_OFFSET: u8 = 13;
// 14..=15: reserved for the storage engine.
/// A stream's chunk: the messages of one publish batch (`count` sequence
/// numbers from `first`) and when they were appended (wall-clock ms), for
/// `x-max-age`, timestamp offsets and `last` after a restart. Logged
/// after the batch's publish records; compaction carries it forward while
/// any of its messages is live.
pub const T_STREAM_CHUNK: u8 = 16;
// 17: reserved for streams.
/// Where the messages of one publish batch were published to (exchange
/// and routing key), when that is not the default exchange and the
/// queue's name: `count` sequence numbers from `first`. Logged after the
/// batch's publish records, so never in an older segment than they are
/// (`origin.rs` keeps it so across compaction).
pub const T_ORIGIN: u8 = 18;
/// The longest reference a stream offset is stored under (a str8).
pub const STREAM_REFERENCE_BYTES_MAX: usize = 255;

/// Where a segment's checksums start: its number's CRC32C in version 2,
/// zero (a plain CRC32C) in version 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed(u32);

impl Seed {
    pub const V1: Seed = Seed(0);

    pub fn of(segment: u64) -> Self {
        Seed(crc32c::crc32c(&segment.to_le_bytes()))
    }

    /// The seed of a segment written in `version` (None: unknown version).
    pub fn for_version(version: u32, segment: u64) -> Option<Self> {
        match version {
            1 => Some(Seed::V1),
            2 => Some(Seed::of(segment)),
            _ => None,
        }
    }
}

pub fn align8(n: usize) -> usize {
    (n + 7) & !7
}

pub fn align_block(n: usize) -> usize {
    n.div_ceil(BLOCK) * BLOCK
}

/// A decoded record; byte fields borrow the segment buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    Segment {
        version: u32,
        shard: u16,
        shard_count: u16,
        segment: u64,
        next_queue_id: u32,
    },
    Declare {
        queue: u32,
        next_seq: u64,
        name: &'a [u8],
    },
    Delete {
        queue: u32,
    },
    Purge {
        queue: u32,
        ranges: Vec<(u64, u64)>,
    },
    Publish {
        queue: u32,
        seq: u64,
        entry: &'a [u8],
    },
    Ack {
        queue: u32,
        ranges: Vec<(u64, u64)>,
    },
    /// The raw AMQP field table the queue was declared with.
    QueueArgs {
        queue: u32,
        args: &'a [u8],
    },
    /// A stream's offset stored under `reference` (1..=255 bytes of UTF-8).
    StreamOffset {
        queue: u32,
        offset: u64,
        reference: &'a [u8],
    },
    /// A stream's publish batch: `count` messages from `first`, appended
    /// at `at_ms` (Unix milliseconds).
    StreamChunk {
        queue: u32,
        first: u64,
        count: u32,
        at_ms: u64,
    },
    /// A publish batch's origin: `count` messages from `first` were
    /// published through `exchange` (UTF-8, at most 65535 bytes) with
    /// `routing_key` (UTF-8, the rest of the payload, at most 65535 bytes).
    Origin {
        queue: u32,
        first: u64,
        count: u32,
        exchange: &'a [u8],
        routing_key: &'a [u8],
    },
    Seal,
}

pub(super) fn begin(buf: &mut Vec<u8>, kind: u8, queue: u32) -> usize {
    let start = buf.len();
    buf.put_u32_le(0);
    buf.put_u32_le(0);
    buf.put_u8(kind);
    buf.put_u8(0);
    buf.put_u16_le(0);
    buf.put_u32_le(queue);
    start
}

pub(super) fn finish(buf: &mut Vec<u8>, start: usize, seed: Seed) {
    let len = buf.len() - start;
    // A record is far below 4 GiB (a frame's entry at most); saturated,
    // a bug would show as a record that fails its length check.
    buf[start..start + 4].copy_from_slice(&crate::protocol::wire::len32(len).to_le_bytes());
    let crc = checksum(&buf[start..start + len], seed);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    buf.resize(start + align8(len), 0);
}

pub(super) fn checksum(rec: &[u8], seed: Seed) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c_append(seed.0, &rec[0..4]), &rec[8..])
}

/// Appends one encoded record of a segment checksummed from `seed` to
/// `buf` (which must end 8-aligned).
pub fn encode(buf: &mut Vec<u8>, seed: Seed, r: &Record<'_>) {
    debug_assert_eq!(buf.len() % 8, 0);
    let finish = |buf: &mut Vec<u8>, s| finish(buf, s, seed);
    match r {
        Record::Segment { version, shard, shard_count, segment, next_queue_id } => {
            let s = begin(buf, T_SEGMENT, 0);
            buf.put_slice(SEGMENT_MAGIC);
            buf.put_u32_le(*version);
            buf.put_u16_le(*shard);
            buf.put_u16_le(*shard_count);
            buf.put_u64_le(*segment);
            buf.put_u32_le(*next_queue_id);
            finish(buf, s);
        }
        Record::Declare { queue, next_seq, name } => {
            let s = begin(buf, T_DECLARE, *queue);
            buf.put_u64_le(*next_seq);
            buf.put_slice(name);
            finish(buf, s);
        }
        Record::Delete { queue } => {
            let s = begin(buf, T_DELETE, *queue);
            finish(buf, s);
        }
        Record::Purge { queue, ranges } | Record::Ack { queue, ranges } => {
            let kind = if matches!(r, Record::Purge { .. }) { T_PURGE } else { T_ACK };
            let s = begin(buf, kind, *queue);
            buf.put_u32_le(crate::protocol::wire::len32(ranges.len()));
            for &(a, b) in ranges {
                buf.put_u64_le(a);
                buf.put_u64_le(b);
            }
            finish(buf, s);
        }
        Record::Publish { queue, seq, entry } => encode_publish(buf, seed, *queue, *seq, entry),
        Record::QueueArgs { queue, args } => {
            let s = begin(buf, T_QUEUE_ARGS, *queue);
            buf.put_slice(args);
            finish(buf, s);
        }
        Record::StreamOffset { queue, offset, reference } => {
            let s = begin(buf, T_STREAM_OFFSET, *queue);
            buf.put_u64_le(*offset);
            buf.put_slice(reference);
            finish(buf, s);
        }
        Record::StreamChunk { queue, first, count, at_ms } => {
            let s = begin(buf, T_STREAM_CHUNK, *queue);
            buf.put_u64_le(*first);
            buf.put_u32_le(*count);
            buf.put_u64_le(*at_ms);
            finish(buf, s);
        }
        Record::Origin { queue, first, count, exchange, routing_key } => {
            let s = begin(buf, T_ORIGIN, *queue);
            super::origin::put_payload(buf, *first, *count, exchange, routing_key);
            finish(buf, s);
        }
        Record::Seal => {
            let s = begin(buf, T_SEAL, 0);
            finish(buf, s);
        }
    }
}

/// The hot path: one publish record, no intermediate `Record`.
pub fn encode_publish(buf: &mut Vec<u8>, seed: Seed, queue: u32, seq: u64, entry: &[u8]) {
    let s = begin(buf, T_PUBLISH, queue);
    buf.put_u64_le(seq);
    buf.put_slice(entry);
    finish(buf, s, seed);
}

/// Sorted, merged inclusive ranges of `seqs` (which it sorts).
pub fn to_ranges(seqs: &mut [u64]) -> Vec<(u64, u64)> {
    seqs.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &s in seqs.iter() {
        match out.last_mut() {
            Some((_, last)) if s <= *last + 1 => *last = (*last).max(s),
            _ => out.push((s, s)),
        }
    }
    out
}

/// Sorts `ranges` (inclusive) and merges those that overlap or touch.
pub fn merge_ranges(ranges: &mut Vec<(u64, u64)>) {
    ranges.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(ranges.len());
    for &(a, b) in ranges.iter() {
        match out.last_mut() {
            Some((_, last)) if a <= last.saturating_add(1) => *last = (*last).max(b),
            _ => out.push((a, b)),
        }
    }
    *ranges = out;
}

pub(super) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// A length or count read from a file, as a `usize`: `None` where it does
/// not fit (a 32-bit target), which every caller treats as damage.
pub(super) fn usize_at(b: &[u8], at: usize) -> Option<usize> {
    usize::try_from(u32_at(b, at)).ok()
}

pub(super) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn decode_ranges(p: &[u8]) -> Option<Vec<(u64, u64)>> {
    if p.len() < 4 {
        return None;
    }
    // The count is checked against the payload's size before anything is
    // allocated for it.
    let n = usize_at(p, 0)?;
    if p.len() != n.checked_mul(16)?.checked_add(4)? {
        return None;
    }
    let ranges: Vec<(u64, u64)> = (0..n).map(|i| (u64_at(p, 4 + 16 * i), u64_at(p, 12 + 16 * i))).collect();
    ranges.iter().all(|&(a, b)| a <= b && b < SEQ_LIMIT).then_some(ranges)
}

/// Sequence numbers in the log are below this (the log writes none
/// higher: it would take 2^62 publishes to one queue). A record that
/// names one is malformed, so no sequence arithmetic on file data can
/// overflow.
pub const SEQ_LIMIT: u64 = 1 << 62;

/// Decodes a record whose checksum already matched.
pub(super) fn decode(rec: &[u8]) -> Option<Record<'_>> {
    let kind = rec[8];
    let queue = u32_at(rec, 12);
    let p = &rec[HEADER_BYTES..];
    Some(match kind {
        T_SEGMENT => {
            if p.len() != 28 || &p[..8] != SEGMENT_MAGIC {
                return None;
            }
            Record::Segment {
                version: u32_at(p, 8),
                shard: u16::from_le_bytes([p[12], p[13]]),
                shard_count: u16::from_le_bytes([p[14], p[15]]),
                segment: u64_at(p, 16),
                next_queue_id: u32_at(p, 24),
            }
        }
        T_DECLARE if p.len() >= 8 && u64_at(p, 0) <= SEQ_LIMIT => {
            Record::Declare { queue, next_seq: u64_at(p, 0), name: &p[8..] }
        }
        T_DELETE if p.is_empty() => Record::Delete { queue },
        T_PURGE => Record::Purge { queue, ranges: decode_ranges(p)? },
        T_ACK => Record::Ack { queue, ranges: decode_ranges(p)? },
        // The entry is opaque here; the shard checks it before it
        // becomes a message (`durable.rs`), as does `verify_publish`.
        T_PUBLISH if p.len() >= 8 && u64_at(p, 0) < SEQ_LIMIT => {
            Record::Publish { queue, seq: u64_at(p, 0), entry: &p[8..] }
        }
        T_QUEUE_ARGS => Record::QueueArgs { queue, args: p },
        T_SEAL if p.is_empty() && queue == 0 => Record::Seal,
        T_STREAM_OFFSET if stream_offset_len(p.len()) && u64_at(p, 0) < SEQ_LIMIT => {
            let reference = &p[8..];
            std::str::from_utf8(reference).ok()?;
            Record::StreamOffset { queue, offset: u64_at(p, 0), reference }
        }
        // A chunk names at least one message, all below SEQ_LIMIT.
        T_STREAM_CHUNK if p.len() == STREAM_CHUNK_PAYLOAD => {
            let (first, count) = (u64_at(p, 0), u32_at(p, 8));
            if count == 0 || first.checked_add(u64::from(count)).is_none_or(|end| end > SEQ_LIMIT) {
                return None;
            }
            Record::StreamChunk { queue, first, count, at_ms: u64_at(p, 12) }
        }
        T_ORIGIN => {
            let (first, count, exchange, routing_key) = super::origin::decode_payload(p)?;
            Record::Origin { queue, first, count, exchange, routing_key }
        }
        _ => return None,
    })
}

/// Where a scan stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanEnd {
    /// Just past the last whole record (or its padding), or the seal.
    pub valid_end: usize,
    /// `None`: the data ended cleanly (zeros, the end of the buffer, or a
    /// seal). `Some`: a bad record at `valid_end`, and why.
    pub bad: Option<&'static str>,
    /// The data ended with a seal record.
    pub sealed: bool,
}

/// Walks `buf` from its start, handing every verified record to `each`
/// with its offset, and stops at the end, at a seal or at the first bad
/// record.
pub fn scan<'a>(buf: &'a [u8], seed: Seed, each: impl FnMut(usize, Record<'a>)) -> ScanEnd {
    scan_at(buf, 0, seed, each)
}

/// `scan` of a piece of a segment that starts at file offset `base` (a
/// record boundary): block padding is found relative to the file.
pub fn scan_at<'a>(buf: &'a [u8], base: usize, seed: Seed, mut each: impl FnMut(usize, Record<'a>)) -> ScanEnd {
    let mut o = 0;
    let end = |o, bad, sealed| ScanEnd { valid_end: o, bad, sealed };
    loop {
        if o + 4 > buf.len() {
            if buf[o..].iter().any(|&b| b != 0) {
                return end(o, Some("trailing bytes"), false);
            }
            return end(o, None, false);
        }
        let Some(len) = usize_at(buf, o) else { return end(o, Some("record length out of range"), false) };
        if len == 0 {
            let next = (align_block(base + o + 1) - base).min(buf.len());
            if buf[o..next].iter().any(|&b| b != 0) {
                return end(o, Some("non-zero bytes in block padding"), false);
            }
            // The end of the data: nothing but zeros follows.
            if next == buf.len() || buf[next..].iter().all(|&b| b == 0) {
                return end(o, None, false);
            }
            o = next;
            continue;
        }
        if len < HEADER_BYTES || len > buf.len() - o {
            return end(o, Some("record length out of range"), false);
        }
        let rec = &buf[o..o + len];
        if checksum(rec, seed) != u32_at(rec, 4) {
            return end(o, Some("checksum mismatch"), false);
        }
        let Some(r) = decode(rec) else { return end(o, Some("malformed record"), false) };
        let next = o.saturating_add(align8(len)).min(buf.len());
        if buf[o + len..next].iter().any(|&b| b != 0) {
            return end(o, Some("non-zero record padding"), false);
        }
        if r == Record::Seal {
            return end(next, None, true);
        }
        each(o, r);
        o = next;
    }
}

/// The seed that the segment header at the start of `buf` (segment
/// `segment` by its file name) verifies under: version 2's, else version
/// 1's. `None` if neither does (no header there).
pub fn header_seed(buf: &[u8], segment: u64) -> Option<Seed> {
    [Seed::of(segment), Seed::V1].into_iter().find(|&seed| header_at_start(buf, seed).is_some())
}

/// The segment header record at the start of `buf`, if it verifies under `seed`.
fn header_at_start(buf: &[u8], seed: Seed) -> Option<Record<'_>> {
    let len = len_at(buf)?;
    let rec = buf.get(..len).filter(|_| len >= HEADER_BYTES)?;
    if checksum(rec, seed) != u32_at(rec, 4) || rec[8] != T_SEGMENT {
        return None;
    }
    decode(rec)
}

/// Whether `buf` starts with the intact header of an *older* segment (of
/// either version): a file renamed for reuse whose header was not yet
/// wiped.
pub fn stale_header(buf: &[u8], segment: u64) -> bool {
    let Some(len) = len_at(buf).filter(|&l| l >= HEADER_BYTES + 28 && l <= buf.len()) else { return false };
    match decode(&buf[..len]) {
        Some(Record::Segment { version, segment: old, .. }) if old < segment => {
            Seed::for_version(version, old).is_some_and(|seed| header_at_start(buf, seed).is_some())
        }
        _ => false,
    }
}

/// Bytes a publish record of an `entry_len`-byte entry takes in a
/// segment (padding to 8 included): the unit of live-bytes accounting.
pub fn publish_bytes(entry_len: usize) -> u64 {
    let n = u64::try_from(entry_len).unwrap_or(u64::MAX);
    n.saturating_add(HEADER_BYTES as u64 + 8 + 7) & !7
}

/// Verifies one publish record read back on its own (`rec` is exactly the
/// record, without padding): its length, checksum and type. Returns its
/// queue id, sequence number and where the entry is in `rec`.
pub fn verify_publish(rec: &[u8], seed: Seed) -> Result<(u32, u64, std::ops::Range<usize>), &'static str> {
    if rec.len() < HEADER_BYTES + 8 || usize_at(rec, 0) != Some(rec.len()) {
        return Err("record length mismatch");
    }
    if checksum(rec, seed) != u32_at(rec, 4) {
        return Err("checksum mismatch");
    }
    if rec[8] != T_PUBLISH {
        return Err("not a publish record");
    }
    // Read back to be delivered as it is: one well-formed message entry.
    if parse_entry(&rec[HEADER_BYTES + 8..]).is_err() {
        return Err("malformed message entry");
    }
    Ok((u32_at(rec, 12), u64_at(rec, HEADER_BYTES), HEADER_BYTES + 8..rec.len()))
}

/// The `len` field of a record header at the start of `b`, if there is one.
pub fn len_at(b: &[u8]) -> Option<usize> {
    if b.len() < 4 {
        return None;
    }
    usize_at(b, 0)
}

pub use super::search::valid_record_after;

/// A whole entry copied out of the segment buffer.
pub fn owned(entry: &[u8]) -> Bytes {
    Bytes::copy_from_slice(entry)
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;

/// A stream chunk record's payload: first (u64), count (u32), at_ms (u64).
pub(super) const STREAM_CHUNK_PAYLOAD: usize = 20;

/// A stream offset record's payload: the offset and a 1..=255-byte reference.
pub(super) fn stream_offset_len(payload: usize) -> bool {
    (8 + 1..=8 + STREAM_REFERENCE_BYTES_MAX).contains(&payload)
}
