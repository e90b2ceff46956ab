//! Tests of the origin record (type 18, `origin.rs`): its codec as the
//! scanner sees it, hostile payloads, the log's bookkeeping of which
//! records it keeps, and the recovered cursor.
#![allow(clippy::cast_possible_truncation)] // test data is small

use super::super::record::{
    begin, encode, encode_publish, finish, scan, valid_record_after, Record, ScanEnd, Seed, SEQ_LIMIT, T_ORIGIN,
};
use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap, VecDeque};

fn seed() -> Seed {
    Seed::of(3)
}

/// A segment's start: a header, a declare, two publishes.
fn prefix() -> Vec<u8> {
    let mut b = Vec::new();
    let header = Record::Segment { version: 2, shard: 0, shard_count: 1, segment: 3, next_queue_id: 2 };
    encode(&mut b, seed(), &header);
    encode(&mut b, seed(), &Record::Declare { queue: 1, next_seq: 0, name: b"q" });
    encode_publish(&mut b, seed(), 1, 0, b"\0\x01\0\0\0a");
    encode_publish(&mut b, seed(), 1, 1, b"\0\x01\0\0\0b");
    b
}

fn records(buf: &[u8]) -> (Vec<Record<'_>>, ScanEnd) {
    let mut v = Vec::new();
    let end = scan(buf, seed(), |_, r| v.push(r));
    (v, end)
}

/// An origin record with a raw payload (what a hostile file may hold).
fn raw(buf: &mut Vec<u8>, payload: &[u8]) {
    let s = begin(buf, T_ORIGIN, 1);
    buf.extend_from_slice(payload);
    finish(buf, s, seed());
}

fn payload(first: u64, count: u32, ex_len: u16, rest: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&first.to_le_bytes());
    p.extend_from_slice(&count.to_le_bytes());
    p.extend_from_slice(&ex_len.to_le_bytes());
    p.extend_from_slice(rest);
    p
}

#[test]
fn origin_records_round_trip() {
    let long = "x".repeat(ORIGIN_NAME_BYTES_MAX);
    let cases: [(u64, u32, &str, &str); 5] = [
        (0, 1, "amq.direct", "orders.new"),
        (7, 300, "", "a key through the default exchange"),
        (SEQ_LIMIT - 2, 2, "x", ""),
        (1, u32::MAX, "\u{0}vhost\u{0}ex", "eu.fr.paris"),
        (9, 1, &long, &long),
    ];
    let mut last_publish = 0;
    scan(&prefix(), seed(), |o, _| last_publish = o);
    for (first, count, exchange, routing_key) in cases {
        let mut b = prefix();
        let r = Record::Origin {
            queue: 1,
            first,
            count,
            exchange: exchange.as_bytes(),
            routing_key: routing_key.as_bytes(),
        };
        encode(&mut b, seed(), &r);
        assert_eq!(b.len() % 8, 0);
        let (v, end) = records(&b);
        assert_eq!((end.bad, v.last()), (None, Some(&r)), "{exchange:?}");
        // Found by the torn-tail search behind damage: the publish
        // before it with a bad checksum is not a torn tail.
        b[last_publish + 4] ^= 0xff;
        let end = scan(&b, seed(), |_, _| {});
        assert_eq!((end.valid_end, end.bad), (last_publish, Some("checksum mismatch")));
        assert!(valid_record_after(&b, last_publish, seed()), "an origin record is data");
    }
}

#[test]
fn hostile_origin_payloads_are_malformed() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("shorter than its head", vec![0; 13]),
        ("a count of 0", payload(1, 0, 1, b"xk")),
        ("past SEQ_LIMIT", payload(SEQ_LIMIT - 1, 2, 1, b"xk")),
        ("a first of u64::MAX", payload(u64::MAX, 1, 1, b"xk")),
        ("an exchange past the payload", payload(1, 1, 3, b"xk")),
        ("an exchange length of u16::MAX", payload(1, 1, u16::MAX, b"")),
        ("an exchange that is not UTF-8", payload(1, 1, 2, b"\xff\xfekey")),
        ("a routing key that is not UTF-8", payload(1, 1, 1, b"x\xc3")),
        ("a routing key too long", payload(1, 1, 0, &vec![b'k'; ORIGIN_NAME_BYTES_MAX + 1])),
    ];
    for (what, p) in cases {
        let mut b = prefix();
        let at = b.len();
        raw(&mut b, &p);
        let (v, end) = records(&b);
        assert_eq!((end.valid_end, end.bad), (at, Some("malformed record")), "{what}");
        assert_eq!(v.len(), 4, "{what}");
        // Not taken for data behind a bad record either.
        assert!(!valid_record_after(&b, at - 8, seed()), "{what}");
    }
}

/// An origin record cut anywhere (a torn write) ends the data where it
/// starts, and nothing valid follows: the tail is cut, not refused.
#[test]
fn a_torn_origin_record_is_a_torn_tail() {
    let mut whole = prefix();
    let at = whole.len();
    let r = Record::Origin { queue: 1, first: 0, count: 2, exchange: b"amq.topic", routing_key: b"eu.de" };
    encode(&mut whole, seed(), &r);
    for cut in at + 1..whole.len() {
        let mut b = whole[..cut].to_vec();
        b.resize(whole.len() + 64, 0xa5);
        let end = scan(&b, seed(), |_, _| {});
        assert_eq!((end.valid_end, end.bad.is_some()), (at, true), "cut at {cut}");
        assert!(!valid_record_after(&b, at, seed()), "cut at {cut}");
    }
}

fn origin(x: &str) -> Arc<Origin> {
    Arc::new(Origin { exchange: x.into(), routing_key: format!("{x}.key") })
}

/// The log keeps a record while it covers a live message: `origin_at`
/// finds it for every number it covers, an ack of its last live message
/// drops it, and one that covers others stays.
#[test]
fn the_log_keeps_a_record_while_it_covers_a_live_message() {
    let mut q = QState::new("q".into(), Vec::new(), 0);
    for s in 0..10 {
        q.add(s, 1, 32);
    }
    q.origins.insert(2, OriginRun { count: 3, seg: 1, origin: origin("a") });
    q.origins.insert(7, OriginRun { count: 2, seg: 1, origin: origin("b") });
    let at: Vec<Option<u64>> = (0..10).map(|s| q.origin_at(s)).collect();
    assert_eq!(at, [None, None, Some(2), Some(2), Some(2), None, None, Some(7), Some(7), None]);
    for s in [2, 4] {
        q.remove(s, 32);
        q.forget_origin(s);
    }
    assert!(q.origins.contains_key(&2), "3 is live");
    assert!(q.any_live(2, 3) && !q.any_live(2, 1) && !q.any_live(4, 1));
    q.remove(3, 32);
    q.forget_origin(3);
    assert!(!q.origins.contains_key(&2), "nothing it covers is live");
    // Numbers no record covers change nothing.
    q.remove(0, 32);
    q.forget_origin(0);
    assert_eq!(q.origins.keys().copied().collect::<Vec<_>>(), vec![7]);
}

fn recovered(origins: Vec<(u64, u32, &str)>) -> RecoveredQueue {
    RecoveredQueue {
        id: 1,
        name: "q".into(),
        args: Vec::new(),
        next_seq: 0,
        messages: VecDeque::new(),
        entries: HashMap::new(),
        offsets: Vec::new(),
        chunks: Vec::new(),
        origins: origins
            .into_iter()
            .map(|(first, count, x)| super::super::RecoveredOrigin { first, count, seg: 1, origin: origin(x) })
            .collect(),
    }
}

#[test]
fn recovered_origins_are_taken_in_sequence_order() {
    let mut q = recovered(vec![(2, 2, "a"), (4, 1, "b"), (9, 3, "c")]);
    let got: Vec<Option<String>> = (0..14).map(|s| q.take_origin(s).map(|o| o.exchange.clone())).collect();
    let want = [None, None, Some("a"), Some("a"), Some("b"), None, None, None, None, Some("c"), Some("c"), Some("c")];
    let want: Vec<Option<String>> = want.iter().map(|o| o.map(String::from)).chain([None, None]).collect();
    assert_eq!(got, want);
    // Overlapping records (a crafted log) give an answer, never a panic.
    let mut q = recovered(vec![(0, 10, "a"), (3, 2, "b"), (5, 1, "c")]);
    assert!((0..12).all(|s| q.take_origin(s).is_some() == (s < 10)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any origin the log writes reads back as written.
    #[test]
    fn any_origin_round_trips(
        first in 0..SEQ_LIMIT - 1,
        count in 1u32..,
        exchange in "\\PC{0,40}",
        routing_key in "\\PC{0,300}",
    ) {
        let count = u64::from(count).min(SEQ_LIMIT - first) as u32;
        let mut b = prefix();
        let r = Record::Origin { queue: 1, first, count, exchange: exchange.as_bytes(), routing_key: routing_key.as_bytes() };
        encode(&mut b, seed(), &r);
        let (v, end) = records(&b);
        prop_assert_eq!(end.bad, None);
        prop_assert_eq!(v.last(), Some(&r));
    }

    /// Any payload behind a valid checksum is decoded or refused as
    /// malformed, never a panic; what decodes re-encodes to its bytes.
    #[test]
    fn any_origin_payload_decodes_or_is_malformed(p in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut b = prefix();
        let at = b.len();
        raw(&mut b, &p);
        let (v, end) = records(&b);
        match end.bad {
            None => {
                let r = v.last().cloned().expect("the record");
                let mut again = prefix();
                encode(&mut again, seed(), &r);
                prop_assert_eq!(&again[..], &b[..]);
            }
            Some(why) => prop_assert_eq!((end.valid_end, why), (at, "malformed record")),
        }
    }
}

/// Consecutive records of one origin, and a record's copies, are one run
/// in memory; another origin, a gap, or a run past u32 starts another.
#[test]
fn runs_of_one_origin_merge() {
    let (a, b) = (origin("a"), origin("b"));
    let run = |count, seg, o: &Arc<Origin>| OriginRun { count, seg, origin: o.clone() };
    let mut runs = BTreeMap::new();
    add_run(&mut runs, 0, run(10, 3, &a));
    add_run(&mut runs, 10, run(5, 2, &origin("a"))); // equal, not the same Arc
    add_run(&mut runs, 4, run(3, 9, &a)); // a copy of a part
    add_run(&mut runs, 15, run(1, 4, &b));
    add_run(&mut runs, 17, run(2, 4, &b)); // a gap before it
    add_run(&mut runs, 19, run(u32::MAX, 4, &b)); // continues, too long to merge
    let got: Vec<(u64, u32, u64, String)> =
        runs.iter().map(|(&f, r)| (f, r.count, r.seg, r.origin.exchange.clone())).collect();
    let want = [(0, 15, 2, "a"), (15, 1, 4, "b"), (17, 2, 4, "b"), (19, u32::MAX, 4, "b")];
    assert_eq!(got, want.map(|(f, n, s, x)| (f, n, s, x.to_string())));
}
