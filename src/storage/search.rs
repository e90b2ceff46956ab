//! The search behind a torn-tail verdict (`docs/storage.md`, Recovery):
//! whether any record that verifies starts after a bad one. A segment is
//! hostile input, so the search is bounded: cheap O(1) shape checks come
//! before a checksum is paid for, and the checksum work is capped.

use super::record::{
    align8, checksum, decode, stream_offset_len, u32_at, usize_at, Seed, HEADER_BYTES, STREAM_CHUNK_PAYLOAD, T_ACK,
    T_DECLARE, T_DELETE, T_ORIGIN, T_PUBLISH, T_PURGE, T_QUEUE_ARGS, T_SEAL, T_SEGMENT, T_STREAM_CHUNK,
    T_STREAM_OFFSET,
};

/// CRC work (bytes checksummed) allowed per byte searched by
/// [`valid_record_after`]: a crafted file cannot make the search quadratic.
/// A reused segment's old records (another seed) each cost one checksum of
/// their length, so an honest file needs about one byte per byte; the
/// margin is for old payloads that look like headers.
const SEARCH_CRC_PER_BYTE: usize = 16;

/// Whether `t` is a record type the log writes: what a header must name
/// before its checksum is worth computing.
fn known_type(t: u8) -> bool {
    matches!(
        t,
        T_SEGMENT
            | T_DECLARE
            | T_DELETE
            | T_PURGE
            | T_PUBLISH
            | T_ACK
            | T_QUEUE_ARGS
            | T_SEAL
            | T_STREAM_OFFSET
            | T_STREAM_CHUNK
            | T_ORIGIN
    )
}

/// Whether a header-shaped `rec` has the shape its type gives a record,
/// checked in O(1) before its checksum is paid for: a publish holds
/// exactly one whole entry, acks and purges a whole number of ranges, a
/// seal and a delete nothing. Old payloads in a reused segment that look
/// like headers claiming megabytes otherwise spent the CRC budget, and a
/// torn tail after kill -9 was taken for damage: the node refused to start.
fn plausible(rec: &[u8]) -> bool {
    let p = &rec[HEADER_BYTES..];
    match rec[8] {
        T_SEGMENT => p.len() == 28,
        T_DELETE | T_SEAL => p.is_empty(),
        T_ACK | T_PURGE => p.len() >= 4 && usize_at(p, 0).and_then(|n| n.checked_mul(16)) == Some(p.len() - 4),
        T_PUBLISH => p.len() >= 8 && crate::protocol::batch::parse_entry(&p[8..]).is_ok(),
        // A name, and the arguments table of a declare (at most 64 KiB).
        T_DECLARE | T_QUEUE_ARGS => p.len() <= 8 + (64 << 10) + 1024,
        T_STREAM_OFFSET => stream_offset_len(p.len()),
        T_STREAM_CHUNK => p.len() == STREAM_CHUNK_PAYLOAD,
        T_ORIGIN => super::origin::plausible_payload(p),
        _ => false,
    }
}

/// Whether a record that verifies under `seed` starts anywhere in `buf`
/// after `bad` (the offset of a bad record): then the bad bytes are not a
/// torn tail but damage with data behind it. Every 8-aligned offset is
/// tried. Past the CRC budget the answer is `true`: when it cannot tell,
/// recovery must not cut.
pub fn valid_record_after(buf: &[u8], bad: usize, seed: Seed) -> bool {
    let mut budget = buf.len().saturating_mul(SEARCH_CRC_PER_BYTE);
    let mut o = align8(bad.saturating_add(1));
    while o.saturating_add(HEADER_BYTES) <= buf.len() {
        let rec_ok = match usize_at(buf, o) {
            Some(len) if len >= HEADER_BYTES && len <= buf.len() - o => {
                let rec = &buf[o..o + len];
                // Cheap checks first: a type the log writes, reserved
                // bytes zero. Without the type check, the payloads of a
                // reused segment's old records (zeros and lengths) spent
                // the budget, and a torn tail after kill -9 was taken for
                // damage: the broker refused to start.
                if known_type(rec[8]) && rec[9..12].iter().all(|&b| b == 0) && plausible(rec) {
                    if budget < len {
                        return true;
                    }
                    budget -= len;
                    checksum(rec, seed) == u32_at(rec, 4) && decode(rec).is_some()
                } else {
                    false
                }
            }
            _ => false,
        };
        if rec_ok {
            return true;
        }
        o += 8;
    }
    false
}
