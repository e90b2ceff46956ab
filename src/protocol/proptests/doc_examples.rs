//! The codec against the byte-for-byte examples and tables in
//! `docs/protocol.md`, and the error codes' stable numbers.

use super::*;

#[test]
fn error_codes_are_stable_and_round_trip() {
    let mut known = Vec::new();
    for v in 0..=u16::MAX {
        if let Some(c) = ErrorCode::from_u16(v) {
            assert_eq!(c.as_u16(), v);
            known.push(v);
        }
    }
    // Pinned: codes are never renumbered (append new ones only).
    for v in [1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 20, 21, 22, 23, 24, 30, 31, 32, 40, 50] {
        assert!(known.contains(&v), "error code {v} vanished");
    }
    assert_eq!(DecodeError::TooLarge { len: 1, max: 0 }.code(), ErrorCode::FrameTooLarge);
    assert!(DecodeError::UnknownOpcode(0xff).code().is_fatal());
}

/// The Publish example in `docs/protocol.md`, byte for byte.
#[test]
fn publish_example_in_the_docs() {
    let mut buf = BytesMut::new();
    let mut w = BatchWriter::begin_publish(&mut buf, 7, op::PUBLISH_CONFIRM, "q");
    w.push(&mut buf, 0, &[], b"hi");
    w.finish(&mut buf);
    let want: [u8; 29] = [
        0x0d, 0, 0, 0, 0x20, 0x02, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, // header
        0x01, b'q', // queue
        1, 0, 0, 0, // count
        0, 2, 0, 0, 0, b'h', b'i', // entry
    ];
    assert_eq!(&buf[..], &want[..]);
}

/// The Declare-with-arguments example in `docs/protocol.md`, byte for byte.
#[test]
fn declare_args_example_in_the_docs() {
    let args = crate::protocol::field_table::TableBuilder::new().int("x-max-length", 10).build();
    let mut buf = BytesMut::new();
    Frame { request_id: 3, cmd: Cmd::Declare { flags: 0, queue: "q", args: &args } }.encode(&mut buf);
    let mut want = vec![0x1c, 0, 0, 0, 0x10, 0x04, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0]; // header
    want.extend_from_slice(&[0x01, b'q']); // queue
    want.extend_from_slice(&[0x16, 0, 0, 0]); // args_len 22
    want.push(0x0c);
    want.extend_from_slice(b"x-max-length");
    want.extend_from_slice(&[b'l', 0, 0, 0, 0, 0, 0, 0, 0x0a]);
    assert_eq!(&buf[..], &want[..]);
    match decode(&buf, MAX) {
        Ok(Decoded::Frame(Frame { cmd: Cmd::Declare { flags, args: a, .. }, .. }, _)) => {
            assert_eq!((flags, a), (op::DECLARE_HAS_ARGS, &args[..]))
        }
        _ => panic!("the example does not decode"),
    }
    // The flag without arguments, or arguments that are not a table, are malformed.
    let mut bad = buf.to_vec();
    bad[18] = 0x15;
    bad[0] = 0x1b;
    bad.pop();
    assert!(decode(&bad, MAX).is_err());
}

/// The Subscribe-with-priority example in `docs/protocol.md`, byte for
/// byte; without the flag the body is what clients before priorities send.
#[test]
fn subscribe_priority_example_in_the_docs() {
    let mut buf = BytesMut::new();
    Frame {
        request_id: 4,
        cmd: Cmd::Subscribe { consumer_id: 1, prefetch: 10, queue: "q", priority: -2, origin: false },
    }
    .encode(&mut buf);
    let mut want = vec![0x12, 0, 0, 0, 0x30, 0x01, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0]; // header
    want.extend_from_slice(&[1, 0, 0, 0, 10, 0, 0, 0]); // consumer_id, prefetch
    want.extend_from_slice(&[0x01, b'q']); // queue
    want.extend_from_slice(&[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]); // priority -2
    assert_eq!(&buf[..], &want[..]);
    let mut old = BytesMut::new();
    Frame {
        request_id: 4,
        cmd: Cmd::Subscribe { consumer_id: 1, prefetch: 10, queue: "q", priority: 0, origin: false },
    }
    .encode(&mut old);
    assert_eq!(&old[..], &[&[0x0a, 0, 0, 0, 0x30, 0][..], &want[6..26]].concat()[..], "no flag, no field");
    // The flag with priority 0 has another encoding already: malformed.
    let mut zero = want.clone();
    zero[26..].fill(0);
    assert!(matches!(
        decode(&zero, MAX),
        Err(DecodeError::Malformed { what: "Subscribe", why: "priority flag with priority 0" })
    ));
    // The flag with the field cut short is malformed too, not a priority 0.
    let mut short = want[..30].to_vec();
    short[0] = 14;
    assert!(decode(&short, MAX).is_err());
}

/// The table in `docs/protocol.md`, so other-language clients can check
/// their implementation against it.
#[test]
fn shard_hash_vectors_in_the_docs() {
    use crate::protocol::shard_hash::{fnv1a64, shard_for};
    let table: [(&str, u64, [u32; 6]); 6] = [
        ("", 0xcbf2_9ce4_8422_2325, [0, 1, 1, 1, 1, 13]),
        ("a", 0xaf63_dc4c_8601_ec8c, [0, 1, 2, 2, 2, 12]),
        ("hello", 0xa430_d846_80aa_bd0b, [0, 1, 2, 2, 2, 2]),
        ("q0", 0x08d2_1207_b572_d2e4, [0, 0, 0, 0, 0, 0]),
        ("q1", 0x08d2_1307_b572_d497, [0, 0, 0, 0, 7, 9]),
        ("orders", 0x0012_5d92_50be_8b4c, [0, 0, 0, 3, 7, 10]),
    ];
    for (q, h, shards) in table {
        assert_eq!(fnv1a64(q.as_bytes()), h, "fnv1a64({q:?})");
        for (n, want) in [1, 2, 3, 4, 8, 16].into_iter().zip(shards) {
            assert_eq!(shard_for(q, n), want, "shard_for({q:?}, {n})");
        }
    }
}
