//! Tests of the record format and the scanner (`record.rs`).
#![allow(clippy::cast_possible_truncation)] // test data is small
#[test]
fn merge_ranges_sorts_and_joins_overlapping_and_touching() {
    let mut r = vec![(10, 12), (1, 3), (4, 4), (11, 15), (20, 20), (u64::MAX - 1, u64::MAX)];
    super::merge_ranges(&mut r);
    assert_eq!(r, vec![(1, 4), (10, 15), (20, 20), (u64::MAX - 1, u64::MAX)]);
}
use super::*;

const SEG: u64 = 7;

fn seed() -> Seed {
    Seed::of(SEG)
}

fn sample_of(segment: u64) -> Vec<u8> {
    let seed = Seed::of(segment);
    let mut b = Vec::new();
    let header = Record::Segment { version: 2, shard: 0, shard_count: 2, segment, next_queue_id: 3 };
    encode(&mut b, seed, &header);
    encode(&mut b, seed, &Record::Declare { queue: 1, next_seq: 0, name: b"q" });
    encode(&mut b, seed, &Record::QueueArgs { queue: 1, args: b"\x0cx-max-lengthl\0\0\0\0\0\0\0\x05" });
    for i in 0..5u64 {
        encode_publish(&mut b, seed, 1, i, format!("entry-{i}").as_bytes());
    }
    encode(&mut b, seed, &Record::Ack { queue: 1, ranges: vec![(0, 1), (3, 3)] });
    b
}

fn sample() -> Vec<u8> {
    sample_of(SEG)
}

fn records(buf: &[u8]) -> (Vec<Record<'_>>, ScanEnd) {
    let mut v = Vec::new();
    let end = scan(buf, seed(), |_, r| v.push(r));
    (v, end)
}

#[test]
fn round_trip_with_padding_between_writes() {
    let mut b = sample();
    b.resize(align_block(b.len()), 0);
    let first = b.len();
    encode(&mut b, seed(), &Record::Delete { queue: 1 });
    b.resize(align_block(b.len()), 0);
    let (v, end) = records(&b);
    assert_eq!(v.len(), 10);
    assert_eq!(v[9], Record::Delete { queue: 1 });
    assert_eq!(end, ScanEnd { valid_end: first + 16, bad: None, sealed: false });
    assert_eq!(v[8], Record::Ack { queue: 1, ranges: vec![(0, 1), (3, 3)] });
    assert!(matches!(v[2], Record::QueueArgs { queue: 1, args } if args.len() == 22));
}

#[test]
fn torn_tail_at_every_offset_recovers_to_last_whole_record() {
    let whole = sample();
    let mut ends = Vec::new();
    scan(&whole, seed(), |o, _| ends.push(o));
    ends.push(whole.len());
    for cut in 0..=whole.len() {
        // A torn write: the tail past `cut` is zeros or garbage.
        for fill in [0u8, 0xA5] {
            let mut b = whole[..cut].to_vec();
            b.resize(align_block(whole.len()), fill);
            let (v, end) = records(&b);
            // Records whose bytes survived the cut intact (a cut inside
            // a record's trailing zeros leaves it whole), in order.
            let intact = ends.windows(2).take_while(|w| b[w[0]..w[1]] == whole[w[0]..w[1]]).count();
            assert_eq!(v.len(), intact, "cut {cut} fill {fill}");
            assert_eq!(end.valid_end, ends[intact], "cut {cut} fill {fill}");
            assert!(intact == ends.len() - 1 || ends[intact + 1] > cut, "cut {cut}: a whole record was lost");
        }
    }
}

#[test]
fn every_bit_flip_is_detected() {
    let whole = sample();
    for byte in 0..whole.len() {
        for bit in 0..8 {
            let mut b = whole.clone();
            b[byte] ^= 1 << bit;
            let (v, end) = records(&b);
            let (good, _) = records(&whole);
            // Either the scan stops with an error at or before the flip,
            // or the flip was in padding of a record... which is also
            // caught: nothing after the flip is accepted silently.
            assert!(end.bad.is_some(), "flip at {byte}.{bit} undetected");
            assert!(end.valid_end <= byte, "flip at {byte}.{bit}: scan passed it");
            assert!(v.len() < good.len());
        }
    }
}

#[test]
fn scan_at_a_file_offset_finds_block_padding() {
    let mut b = Vec::new();
    encode_publish(&mut b, seed(), 1, 0, &[7; 3000]);
    let first = b.len();
    b.resize(BLOCK, 0);
    encode_publish(&mut b, seed(), 1, 1, b"x");
    // A window that starts mid-block, after the first record, as
    // compaction's windows may: the padding ends at the file's block.
    let (mut seen, mut at) = (Vec::new(), Vec::new());
    let end = scan_at(&b[first..], first, seed(), |o, r| {
        at.push(o);
        seen.push(r)
    });
    assert_eq!((end.bad, at), (None, vec![BLOCK - first]));
    assert_eq!(seen, vec![Record::Publish { queue: 1, seq: 1, entry: b"x" }]);
    // Read as if it started a block, the padding runs into the record.
    assert!(scan(&b[first..], seed(), |_, _| {}).bad.is_some());
}

/// A bad record with a whole record after it is damage; bad bytes
/// with nothing valid after them (zeros, garbage, a record of an
/// older use of the file) are a torn tail.
#[test]
fn a_valid_record_after_a_bad_one_is_found() {
    let buf = sample();
    let (recs, end) = records(&buf);
    assert!(end.bad.is_none() && recs.len() > 3);
    // The offset of the second record: damage it.
    let second = align8(len_at(&buf).unwrap());
    let mut damaged = buf.clone();
    damaged[second + 20] ^= 0x40;
    let end = scan(&damaged, seed(), |_, _| {});
    assert_eq!((end.valid_end, end.bad), (second, Some("checksum mismatch")));
    assert!(valid_record_after(&damaged, end.valid_end, seed()), "records follow the damage");
    // The same with only zeros or garbage after the bad record.
    let mut torn = damaged[..second + 24].to_vec();
    torn.resize(buf.len(), 0);
    assert!(!valid_record_after(&torn, second, seed()));
    let mut x = 0x9E37_79B9u32;
    for b in torn[second + 24..].iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    assert!(!valid_record_after(&torn, second, seed()));
    // Records of another segment (a reused file) are not data.
    assert!(!valid_record_after(&damaged, second, Seed::of(SEG + 1)));
}

/// A torn tail in a reused segment: after the new header, the file still
/// holds an older segment's records, whose payloads are full of
/// header-shaped bytes (zero reserved bytes, large lengths). None of them
/// is a record under this segment's seed, so the tail is torn, not damage
/// (found by the kill -9 crash test: the broker refused to start).
#[test]
fn an_older_use_of_a_reused_segment_is_not_data_after_a_torn_tail() {
    let new = Seed::of(SEG);
    let mut buf = Vec::new();
    let header = Record::Segment { version: 2, shard: 0, shard_count: 2, segment: SEG, next_queue_id: 3 };
    encode(&mut buf, new, &header);
    buf.resize(BLOCK, 0);
    // An older segment's publishes, whose bodies hold fake headers that
    // claim most of the file (type 0, reserved bytes zero).
    let old = Seed::of(SEG - 4);
    let mut body = vec![0u8; 4000];
    for at in (0..body.len() - 16).step_by(64) {
        body[at..at + 4].copy_from_slice(&60_000u32.to_le_bytes());
    }
    let mut seq = 0;
    while buf.len() < 16 * BLOCK {
        encode_publish(&mut buf, old, 2, seq, &body);
        seq += 1;
    }
    let end = scan(&buf, new, |_, _| {});
    assert_eq!(end.valid_end, BLOCK, "the header, then the older use");
    assert!(!valid_record_after(&buf, end.valid_end, new), "the older use is a torn tail");
    // One record of this segment's after it is still found: damage.
    let mut damaged = buf.clone();
    let mut rec = Vec::new();
    encode_publish(&mut rec, new, 2, 7, &entry(b"late"));
    damaged[8 * BLOCK..8 * BLOCK + rec.len()].copy_from_slice(&rec);
    assert!(valid_record_after(&damaged, end.valid_end, new));
}

/// Records whose checksums match but whose numbers could not have
/// been written are malformed: a sequence number at or past
/// `SEQ_LIMIT`, a range backwards, a range count the payload does not
/// hold (checked before anything is allocated for it).
#[test]
fn impossible_numbers_are_malformed() {
    let entry: &[u8] = b"\0\x01\0\0\0x";
    type Case = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<Case> = vec![
        Box::new(|b| encode_publish(b, seed(), 1, u64::MAX, entry)),
        Box::new(|b| encode_publish(b, seed(), 1, SEQ_LIMIT, entry)),
        Box::new(|b| encode(b, seed(), &Record::Declare { queue: 1, next_seq: SEQ_LIMIT + 1, name: b"q" })),
        Box::new(|b| encode(b, seed(), &Record::Ack { queue: 1, ranges: vec![(5, 4)] })),
        Box::new(|b| encode(b, seed(), &Record::Purge { queue: 1, ranges: vec![(0, u64::MAX)] })),
        Box::new(|b| {
            // An ack claiming u32::MAX ranges with one range's bytes.
            let s = begin(b, T_ACK, 1);
            b.put_u32_le(u32::MAX);
            b.put_u64_le(1);
            b.put_u64_le(2);
            finish(b, s, seed());
        }),
    ];
    for (i, case) in cases.iter().enumerate() {
        let mut buf = sample();
        let at = buf.len();
        case(&mut buf);
        let end = scan(&buf, seed(), |_, _| {});
        assert_eq!((end.valid_end, end.bad), (at, Some("malformed record")), "case {i}");
    }
    let mut ok = sample();
    encode_publish(&mut ok, seed(), 1, SEQ_LIMIT - 1, entry);
    assert_eq!(scan(&ok, seed(), |_, _| {}).bad, None, "the largest sequence number is fine");
}

#[test]
fn publish_verifies_alone() {
    // A message entry: flags 0 (no properties), u32 body length, body.
    const ENTRY: &[u8] = b"\0\x05\0\0\0hello";
    let mut b = Vec::new();
    encode_publish(&mut b, seed(), 3, 42, ENTRY);
    let n = HEADER_BYTES + 8 + ENTRY.len();
    assert_eq!(publish_bytes(ENTRY.len()), b.len() as u64);
    let (q, seq, r) = verify_publish(&b[..n], seed()).unwrap();
    assert_eq!((q, seq, &b[r]), (3, 42, ENTRY));
    // A record that verifies but whose entry's lengths do not add up.
    let mut bad = Vec::new();
    encode_publish(&mut bad, seed(), 3, 42, b"\0\x09\0\0\0hello");
    assert_eq!(verify_publish(&bad[..n], seed()), Err("malformed message entry"));
    assert_eq!(verify_publish(&b[..n], Seed::of(SEG + 1)), Err("checksum mismatch"), "another segment's");
    b[n - 1] ^= 1;
    assert_eq!(verify_publish(&b[..n], seed()), Err("checksum mismatch"));
    assert!(verify_publish(&b[..n - 1], seed()).is_err());
}

/// A reused file: the new segment's records, then what the file held
/// as an older segment. The old records verify under their own seed
/// only, so the scan stops where the new data ends; after a seal it
/// reads nothing at all.
#[test]
fn records_of_a_previous_use_of_the_file_are_not_data() {
    let old = sample_of(3);
    let (mut v, _) = (Vec::new(), ());
    assert_eq!(scan(&old, Seed::of(3), |_, r| v.push(r)).bad, None, "valid as segment 3");
    let mut new = Vec::new();
    encode(&mut new, seed(), &Record::Segment { version: 2, shard: 0, shard_count: 2, segment: SEG, next_queue_id: 3 });
    encode_publish(&mut new, seed(), 1, 9, b"new");
    new.resize(BLOCK, 0);
    let mut file = new.clone();
    file.extend_from_slice(&old);
    let (v, end) = records(&file);
    assert_eq!(v.len(), 2);
    assert_eq!((end.valid_end, end.bad, end.sealed), (BLOCK, Some("checksum mismatch"), false));
    // Sealed: the old bytes after the seal are never looked at.
    let mut sealed = new[..new.iter().rposition(|&b| b != 0).unwrap() + 1].to_vec();
    sealed.resize(align8(sealed.len()), 0);
    let at = sealed.len();
    encode(&mut sealed, seed(), &Record::Seal);
    sealed.resize(BLOCK, 0);
    sealed.extend_from_slice(&old);
    let (v, end) = records(&sealed);
    assert_eq!(v.len(), 2);
    assert_eq!(end, ScanEnd { valid_end: at + HEADER_BYTES, bad: None, sealed: true });
}

#[test]
fn header_tells_the_version_and_a_stale_header() {
    assert_eq!(header_seed(&sample(), SEG), Some(seed()));
    assert_eq!(header_seed(&sample(), SEG + 1), None);
    let mut v1 = Vec::new();
    encode(&mut v1, Seed::V1, &Record::Segment { version: 1, shard: 0, shard_count: 1, segment: 4, next_queue_id: 1 });
    assert_eq!(header_seed(&v1, 4), Some(Seed::V1));
    assert!(stale_header(&sample_of(3), SEG), "segment 3's header in file 7");
    assert!(stale_header(&v1, SEG), "a version 1 segment 4 reused as 7");
    assert!(!stale_header(&v1, 4), "in its own file");
    assert!(!stale_header(&sample(), SEG), "its own header");
    assert!(!stale_header(&sample_of(9), SEG), "a newer one is not a reused file");
    assert!(!stale_header(&[0u8; BLOCK], SEG));
    let mut flipped = sample_of(3);
    flipped[30] ^= 1;
    assert!(!stale_header(&flipped, SEG), "damage is not a stale header");
}

#[test]
fn ranges_merge() {
    assert_eq!(to_ranges(&mut [5, 1, 2, 3, 9, 8, 2]), vec![(1, 3), (5, 5), (8, 9)]);
    assert!(to_ranges(&mut []).is_empty());
}

/// The chaos run's file (a reused segment after kill -9): the older use's
/// message bodies hold header-shaped words (a known type, reserved bytes
/// zero) that claim most of the file. Without the shape check they spent
/// the CRC budget and the torn tail was taken for damage.
#[test]
fn header_shaped_payloads_of_an_older_use_do_not_exhaust_the_search() {
    let new = Seed::of(SEG);
    let old = Seed::of(SEG - 3);
    let mut buf = Vec::new();
    encode_publish(&mut buf, new, 1, 0, b"this use");
    let tail = align8(buf.len());
    buf.resize(tail, 0);
    // Bodies full of fake publish headers, each claiming 1 MiB.
    let mut body = vec![0u8; 4000];
    for at in (0..body.len() - 16).step_by(16) {
        body[at..at + 4].copy_from_slice(&(1u32 << 20).to_le_bytes());
        body[at + 8] = T_PUBLISH;
    }
    let mut seq = 0;
    while buf.len() < 4 << 20 {
        encode_publish(&mut buf, old, 2, seq, &body);
        seq += 1;
    }
    buf.resize(4 << 20, 0);
    assert!(!valid_record_after(&buf, tail, new), "the older use is a torn tail");
    // A record of this use after it is still found.
    let mut rec = Vec::new();
    encode_publish(&mut rec, new, 1, 1, &entry(b"late"));
    let at = 3 << 20;
    buf[at..at + rec.len()].copy_from_slice(&rec);
    assert!(valid_record_after(&buf, tail, new), "damage with this use's data behind it");
}

/// A message entry as the log writes it (the shard validated it).
fn entry(body: &[u8]) -> Vec<u8> {
    let mut b = bytes::BytesMut::new();
    crate::protocol::batch::put_entry(&mut b, 0, &[], body);
    b.to_vec()
}

#[test]
fn stream_offsets_round_trip_and_bad_ones_are_malformed() {
    let mut b = sample();
    let at = b.len();
    encode(&mut b, seed(), &Record::StreamOffset { queue: 3, offset: 42, reference: b"billing" });
    let (v, end) = records(&b);
    assert_eq!(v.last(), Some(&Record::StreamOffset { queue: 3, offset: 42, reference: b"billing" }));
    assert_eq!(end.bad, None);
    let long = [b'r'; STREAM_REFERENCE_BYTES_MAX + 1];
    let bad: [(u64, &[u8]); 4] = [(1, b""), (1, &long), (1, b"\xff\xfe"), (SEQ_LIMIT, b"r")];
    for (i, (offset, reference)) in bad.into_iter().enumerate() {
        let mut buf = b[..at].to_vec();
        encode(&mut buf, seed(), &Record::StreamOffset { queue: 3, offset, reference });
        let end = scan(&buf, seed(), |_, _| {});
        assert_eq!((end.valid_end, end.bad), (at, Some("malformed record")), "case {i}");
    }
}

#[test]
fn stream_chunks_round_trip_and_bad_ones_are_malformed() {
    let mut b = sample();
    let at = b.len();
    let chunk = Record::StreamChunk { queue: 3, first: 7, count: 2, at_ms: 1_764_000_000_000 };
    encode(&mut b, seed(), &chunk);
    let (v, end) = records(&b);
    assert_eq!(v.last(), Some(&chunk));
    assert_eq!(end.bad, None);
    // No message, or a range past the log's sequence numbers.
    let bad = [(1, 0), (SEQ_LIMIT, 1), (SEQ_LIMIT - 1, 2), (u64::MAX, u32::MAX)];
    for (i, (first, count)) in bad.into_iter().enumerate() {
        let mut buf = b[..at].to_vec();
        encode(&mut buf, seed(), &Record::StreamChunk { queue: 3, first, count, at_ms: 0 });
        let end = scan(&buf, seed(), |_, _| {});
        assert_eq!((end.valid_end, end.bad), (at, Some("malformed record")), "case {i}");
    }
    // A torn tail after one is still told from damage with data behind it.
    let mut buf = b[..at].to_vec();
    encode(&mut buf, seed(), &chunk);
    assert!(valid_record_after(&[&b[..at], &[0xff; 8][..], &buf[at..]].concat(), at, seed()));
}
