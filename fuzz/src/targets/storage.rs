//! Storage: log records and the segment scanner, the real recovery over
//! segment files in a temporary directory, and the definitions file.
//!
//! Every record carries a CRC32C, so random bytes almost never reach the
//! decoders behind it. Unless the input's control byte says not to, the
//! targets recompute each record's checksum first, the way a writer
//! would, so that what gets fuzzed is what the checksum protects.

use ringmq::routing::RoutingTable;
use ringmq::storage::definitions;
use ringmq::storage::io::{segment_path, DmaIo};
use ringmq::storage::record::{self, align8, Record, Seed, BLOCK, HEADER_BYTES};
use ringmq::storage::recovery::{recover, Recovered};
use ringmq::storage::{FsyncPolicy, StorageOptions};
use std::path::Path;

/// The checksum seed of segment `seg` (docs/storage.md): the CRC32C of
/// its number, or 0 for a version 1 segment.
fn seed_value(seg: u64, v1: bool) -> u32 {
    if v1 {
        0
    } else {
        crc32c::crc32c(&seg.to_le_bytes())
    }
}

fn seed(seg: u64, v1: bool) -> Seed {
    if v1 {
        Seed::V1
    } else {
        Seed::of(seg)
    }
}

/// Walks `buf` as the scanner does (a zero length skips to the next block
/// of the file, which `buf` starts `base` bytes into) and writes each
/// record's checksum over what it holds.
fn fix_checksums(buf: &mut [u8], base: usize, seed: u32) {
    let mut o = 0;
    while o + 4 <= buf.len() {
        let len = u32::from_le_bytes(buf[o..o + 4].try_into().expect("4 bytes")) as usize;
        if len == 0 {
            o = (base + o + 1).div_ceil(BLOCK) * BLOCK - base;
            continue;
        }
        if len < HEADER_BYTES || len > buf.len() - o {
            return;
        }
        let rec = &buf[o..o + len];
        let crc = crc32c::crc32c_append(crc32c::crc32c_append(seed, &rec[..4]), &rec[8..]);
        buf[o + 4..o + 8].copy_from_slice(&crc.to_le_bytes());
        o += align8(len);
    }
}

/// Control byte: bits 0-2 the segment number - 1, bit 3 a version 1
/// seed, bit 4 leave checksums as they are, bits 6-7 the file offset the
/// bytes start at. The scanner's records re-encode to their bytes.
pub fn record(data: &[u8]) {
    let Some((&ctl, body)) = data.split_first() else { return };
    let (seg, v1) = (u64::from(ctl & 7) + 1, ctl & 8 != 0);
    let base = [0, 1360, 4040, 4088][usize::from(ctl >> 6)];
    let mut buf = body.to_vec();
    if ctl & 16 == 0 {
        fix_checksums(&mut buf, base, seed_value(seg, v1));
    }
    let mut seen = Vec::new();
    let end = record::scan_at(&buf, base, seed(seg, v1), |o, r| seen.push((o, r)));
    assert!(end.valid_end <= buf.len() && !(end.sealed && end.bad.is_some()));
    let mut last = None;
    for (o, r) in &seen {
        assert!(o % 8 == 0 && last < Some(*o) && *o < end.valid_end, "record offsets out of order");
        last = Some(*o);
        let len = record::len_at(&buf[*o..]).expect("a record has a length");
        let rec = &buf[*o..*o + len];
        let mut again = Vec::new();
        record::encode(&mut again, seed(seg, v1), r);
        // The same length, type and payload (the reserved header bytes are
        // covered by the checksum but not read).
        assert_eq!((&again[..4], again[8], &again[16..len]), (&rec[..4], rec[8], &rec[16..]), "{r:?}");
        if let Record::Publish { queue, seq, entry } = r {
            // The scan takes any entry bytes; a read-back also asks for one
            // well-formed message entry (recovery leaves that check to the
            // shard, which drops a bad one).
            let want = match ringmq::protocol::batch::parse_entry(entry) {
                Ok(_) => Ok((*queue, *seq, HEADER_BYTES + 8..len)),
                Err(_) => Err("malformed message entry"),
            };
            assert_eq!(record::verify_publish(rec, seed(seg, v1)), want);
        }
    }
    let _ = record::header_seed(&buf, seg);
    let _ = record::stale_header(&buf, seg);
}

thread_local! {
    /// One executor per thread: recovery is async (glommio DMA files).
    static EXECUTOR: glommio::LocalExecutor = {
        let _ = ringmq::server::system::raise_memlock();
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .make()
            .expect("a glommio executor (io_uring) starts")
    };
}

fn options(dir: &Path, skip_corrupt: bool, resident_bytes_max: u64) -> StorageOptions {
    StorageOptions {
        dir: dir.to_path_buf(),
        shard: 0,
        shard_count: 1,
        segment_bytes: 65_536,
        fsync: FsyncPolicy::Never,
        fsync_interval_ms: 1000,
        skip_corrupt,
        compact_live_ratio_pct: 0,
        segments_recycled_max: 0,
        resident_bytes_max,
    }
}

/// Control byte: bits 0-1 the first segment's number - 1, bit 2 write the
/// bytes as two segments, bit 3 `storage_skip_corrupt`, bit 4 a tiny
/// memory budget (entries stay on disk), bit 5 leave checksums as they
/// are, bit 6 no segment header of the harness's own in front, bit 7
/// version 1. The real recovery reads the files; what it recovers is
/// checked against them, and a second recovery of what the first one left
/// must recover the same.
pub fn recovery(data: &[u8]) {
    let Some((&ctl, body)) = data.split_first() else { return };
    let first = u64::from(ctl & 3) + 1;
    let segs: Vec<u64> = if ctl & 4 != 0 { vec![first, first + 1] } else { vec![first] };
    let v1 = ctl & 128 != 0;
    let dir = tempfile::tempdir().expect("a temporary directory");
    for &seg in &segs {
        let mut file = Vec::new();
        if ctl & 64 == 0 {
            let version = if v1 { 1 } else { 2 };
            let header = Record::Segment { version, shard: 0, shard_count: 1, segment: seg, next_queue_id: 1 };
            record::encode(&mut file, seed(seg, v1), &header);
        }
        file.extend_from_slice(body);
        if ctl & 32 == 0 {
            fix_checksums(&mut file, 0, seed_value(seg, v1));
        }
        std::fs::write(segment_path(dir.path(), seg), &file).expect("write a segment");
    }
    let opts = options(dir.path(), ctl & 8 != 0, if ctl & 16 != 0 { 64 } else { 1 << 20 });
    let run = || EXECUTOR.with(|ex| ex.run(async { recover(&DmaIo, &opts).await }));
    let Ok(once) = run() else { return };
    check_recovered(&once, dir.path());
    let twice = run().expect("recovering what a recovery left fails");
    assert_eq!(summary(&once), summary(&twice), "a second recovery differs");
}

type Summary = Vec<(u32, String, Vec<u8>, u64, Vec<(u64, u32, u32, u32)>, Vec<(u64, u32, String, String)>)>;

fn summary(r: &Recovered) -> Summary {
    let msgs =
        |q: &ringmq::storage::RecoveredQueue| q.messages.iter().map(|m| (m.seq, m.seg, m.off, m.entry_len)).collect();
    let origins = |q: &ringmq::storage::RecoveredQueue| {
        q.origins.iter().map(|o| (o.first, o.count, o.origin.exchange.clone(), o.origin.routing_key.clone())).collect()
    };
    r.queues.iter().map(|q| (q.id, q.name.clone(), q.args.clone(), q.next_seq, msgs(q), origins(q))).collect()
}

/// Each recovered message is where recovery says, in the file, and its
/// entry (in memory or not) is the one there.
fn check_recovered(r: &Recovered, dir: &Path) {
    assert!(r.queues.windows(2).all(|w| w[0].id < w[1].id), "queues sorted by id, once each");
    for q in &r.queues {
        assert!(q.id < r.next_queue_id || r.next_queue_id == u32::MAX);
        assert!(q.messages.iter().zip(q.messages.iter().skip(1)).all(|(a, b)| a.seq < b.seq));
        assert!(q.messages.iter().all(|m| m.seq < q.next_seq || m.seq == u64::MAX));
        assert!(q.entries.keys().all(|s| q.messages.iter().any(|m| m.seq == *s)), "an entry without a message");
        // Origin records (type 18): in sequence order, within the
        // sequence numbers a log can hold, each covering a message.
        assert!(q.origins.iter().zip(q.origins.iter().skip(1)).all(|(a, b)| a.first < b.first));
        for o in &q.origins {
            assert!(o.count > 0 && o.first + u64::from(o.count) <= ringmq::storage::SEQ_LIMIT);
            let covers = |m: &ringmq::storage::RecoveredMsg| m.seq >= o.first && m.seq - o.first < u64::from(o.count);
            assert!(q.messages.iter().any(covers), "an origin that covers no recovered message");
        }
        for m in &q.messages {
            let loc = m.loc().expect("a recovered message has a location");
            let file = std::fs::read(segment_path(dir, loc.segment())).expect("its segment is still there");
            let at = loc.off as usize;
            let rec = &file[at..at + loc.record_len() as usize];
            let seed = record::header_seed(&file, loc.segment()).expect("its segment has a header");
            match record::verify_publish(rec, seed) {
                Ok((queue, seq, range)) => {
                    assert_eq!((queue, seq), (q.id, m.seq));
                    if let Some(e) = q.entries.get(&m.seq) {
                        assert_eq!(&e[..], &rec[range]);
                    }
                }
                // Recovery returns every publish record that verifies; one
                // whose entry is not a message entry is dropped by the
                // shard (in memory) or fails its read-back (spilled).
                Err("malformed message entry") => {
                    if let Some(e) = q.entries.get(&m.seq) {
                        assert!(ringmq::protocol::batch::parse_entry(e).is_err());
                    }
                }
                Err(e) => panic!("its record does not verify: {e}"),
            }
        }
    }
}

/// Control byte: bit 0 leave the bytes as they are; otherwise they are
/// framed as a definitions file (magic in front, checksum behind). What
/// decodes re-encodes to the same changes, applies to a routing table as
/// shard 0 applies it at start, and that table's snapshot seeds a peer's.
pub fn definitions(data: &[u8]) {
    let Some((&ctl, body)) = data.split_first() else { return };
    let file = if ctl & 1 == 0 {
        let mut f = b"RGMQDEFS".to_vec();
        f.extend_from_slice(body);
        let crc = crc32c::crc32c(&f);
        f.extend_from_slice(&crc.to_le_bytes());
        f
    } else {
        body.to_vec()
    };
    let Ok(defs) = definitions::decode(&file) else { return };
    let again = definitions::encode(&defs);
    assert_eq!(definitions::decode(&again).as_ref(), Ok(&defs), "definitions do not round-trip");
    let mut table = RoutingTable::new();
    for c in &defs.routing {
        let _ = table.apply(c);
    }
    let snapshot = table.snapshot();
    let peer = RoutingTable::from_snapshot(table.version(), &snapshot).expect("a peer takes shard 0's snapshot");
    assert_eq!(peer.snapshot(), snapshot);
    let durable =
        definitions::Definitions { routing: table.durable_snapshot(|_| true), users: defs.users, vhosts: defs.vhosts };
    assert_eq!(definitions::decode(&definitions::encode(&durable)), Ok(durable));
}
