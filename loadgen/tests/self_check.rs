//! `ringmq-loadgen --self-check`: the generator's own floor, measured
//! against its loopback sink with no broker, from the real binary.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

use std::collections::BTreeMap;
use std::process::Command;

fn loadgen(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ringmq-loadgen")).args(args).output().unwrap()
}

/// The `key=value` fields of the self-check line.
fn fields(out: &str) -> BTreeMap<String, f64> {
    let line = out.lines().find(|l| l.starts_with("self-check ")).unwrap_or_else(|| panic!("no result line: {out}"));
    line.split_whitespace()
        .skip(1)
        .map(|kv| kv.split_once('=').unwrap())
        .map(|(k, v)| (k.into(), v.parse().unwrap()))
        .collect()
}

#[test]
fn floor_at_a_fixed_rate() {
    let out = loadgen(&["--self-check", "--rate", "2000", "--duration", "1", "--warmup", "0.2", "--size", "128"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let f = fields(&stdout);
    // 2000/s for the measured second (the schedule is exact), 400 before it.
    assert_eq!(f["measured"], 2000.0, "{stdout}");
    assert_eq!(f["sent"], 2400.0, "{stdout}");
    assert!(f["writes"] >= 1.0 && f["writes"] <= 2000.0, "{stdout}");
    let (p50, p99, p999, max) = (f["p50_us"], f["p99_us"], f["p999_us"], f["max_us"]);
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= p999 && p999 <= max, "{stdout}");
    // The stall watch ran (a missed wake-up would be counted, not hung on).
    assert!(f.contains_key("stalls") && f.contains_key("stall_ms_max"), "{stdout}");
    // Late sends are counted, never dropped: the run takes its second.
    assert!(f["seconds"] >= 1.0, "{stdout}");
}

#[test]
fn needs_one_fixed_rate_and_no_broker() {
    // Without a rate there is no schedule to be late against.
    let out = loadgen(&["--self-check", "--duration", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    // A broker URL means a real run.
    let out = loadgen(&["--self-check", "--rate", "10", "--url", "ringmq://127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    // Rate steps are for real runs.
    let out = loadgen(&["--self-check", "--rate", "10,20", "--step-secs", "1", "--duration", "0.1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("one fixed --rate"));
}
