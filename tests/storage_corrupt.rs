//! Damage in the middle of the last segment, on a real broker's files: a
//! bad record with confirmed records after it is not a torn tail. The
//! broker refuses to start and says where and what to do, leaving the file
//! as it was; with `storage_skip_corrupt` it starts, keeps what precedes
//! the damage, and still does not cut the file (the rest is reported lost
//! in the log, not silently dropped).
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::{body_seq, seq_body};
use ringmq::client::blocking::Client;
use ringmq::client::ClientOptions;
use ringmq::server::config::Config;
use ringmq::server::{Broker, StartError};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn start(dir: &Path, skip_corrupt: bool) -> Result<Broker, StartError> {
    Broker::start(Config {
        cores: 1,
        listen: "127.0.0.1:0".parse().unwrap(),
        amqp_listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        pin_cores: false,
        storage_skip_corrupt: skip_corrupt,
        ..Default::default()
    })
}

fn client(b: &Broker) -> Client {
    Client::connect(ClientOptions { url: format!("ringmq://{}", b.native_addr), ..Default::default() })
        .expect("connect")
}

/// The last segment of shard 0.
fn last_segment(dir: &Path) -> PathBuf {
    let shard = dir.join("shard-0");
    let segs = ringmq::storage::io::list_segments(&shard).unwrap();
    ringmq::storage::io::segment_path(&shard, *segs.last().expect("a segment"))
}

#[test]
fn a_bad_record_followed_by_confirmed_records_in_the_last_segment_is_refused_or_skipped_never_cut() {
    let dir = tempfile::tempdir().unwrap();
    let b = start(dir.path(), false).expect("first start");
    let mut c = client(&b);
    c.declare("dq", true).unwrap();
    // Three confirmed batches: three flushes, three writes.
    for batch in 0..3u64 {
        let bodies: Vec<Vec<u8>> = (batch * 10..batch * 10 + 10).map(|i| seq_body(i, 512)).collect();
        let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        c.publish("dq", &refs, true).expect("confirmed");
    }
    drop(c);
    b.stop().expect("the broker stops cleanly");

    // Flip one byte in the body of message 12: its record no longer
    // verifies; messages 13..30 follow it, whole and confirmed.
    let seg = last_segment(dir.path());
    let mut bytes = std::fs::read(&seg).unwrap();
    let mut needle = 12u64.to_le_bytes().to_vec();
    needle.extend_from_slice(b"........");
    let at = bytes.windows(needle.len()).position(|w| w == needle).expect("message 12's body in the last segment");
    bytes[at + 100] ^= 0x20;
    std::fs::write(&seg, &bytes).unwrap();

    match start(dir.path(), false) {
        Err(StartError::Storage(msg)) => {
            assert!(msg.contains("corrupt record"), "{msg}");
            assert!(msg.contains("valid records after it"), "says it is not a torn tail: {msg}");
            assert!(msg.contains("storage_skip_corrupt"), "says what to do: {msg}");
        }
        Err(e) => panic!("expected a storage error, got {e}"),
        Ok(b) => {
            b.stop().expect("stops");
            panic!("the broker started on a last segment damaged in the middle");
        }
    }
    assert_eq!(std::fs::read(&seg).unwrap(), bytes, "the refused start changed nothing");

    // Skipping: what precedes the damage comes back; the file is kept whole.
    let b = start(dir.path(), true).expect("starts with storage_skip_corrupt");
    let mut c = client(&b);
    assert_eq!(c.declare("dq", true).unwrap(), 12, "messages 0..12 precede the damage");
    let sub = c.subscribe("dq", 100).unwrap();
    for i in 0..12 {
        let d = c.recv(&sub, Duration::from_secs(5)).unwrap().expect("a recovered message");
        assert_eq!(body_seq(&d.body), i);
    }
    drop(c);
    b.stop().expect("the broker stops cleanly");
    assert_eq!(std::fs::read(&seg).unwrap(), bytes, "the damaged segment is not cut");
}
