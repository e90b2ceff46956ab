//! Short loadgen runs against a real ringmq broker, over the native protocol
//! and over ringmq's AMQP front end: the JSON summary's counts must match and
//! nothing may be lost, duplicated or reordered.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

use ringmq::server::config::Config;
use ringmq::server::Broker;
use std::process::Command;

fn start_broker(dir: &std::path::Path) -> Broker {
    let config = Config {
        cores: 2,
        pin_cores: false,
        listen: "127.0.0.1:0".parse().unwrap(),
        amqp_listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.join("data"),
        ..Config::default()
    };
    Broker::start(config).expect("broker starts")
}

fn run_loadgen(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let hgrm = dir.path().join("run.hgrm");
    // Output goes to files and the run has a deadline: a hang fails the
    // test with what the generator printed, instead of stalling CI.
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringmq-loadgen"))
        .args(args)
        // A max-rate run can leave a backlog (a fan-out to 3 queues, on a
        // machine the other tests share): the consumers get up to 30 s to
        // drain it, and a run stops as soon as everything has arrived, so
        // only a real loss waits the whole time.
        .args(["--drain", "30"])
        .args(["--json", json.to_str().unwrap(), "--hgrm", hgrm.to_str().unwrap(), "--quiet"])
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("loadgen runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let printed = || {
        format!(
            "{}\n{}",
            std::fs::read_to_string(&out_path).unwrap_or_default(),
            std::fs::read_to_string(&err_path).unwrap_or_default()
        )
    };
    let status = status.unwrap_or_else(|| panic!("loadgen still running after 90 s: {}", printed()));
    assert!(status.success(), "loadgen failed: {}", printed());
    let hist = std::fs::read_to_string(&hgrm).unwrap();
    assert!(hist.contains("Value     Percentile"), "hgrm file has the percentile table");
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

fn count(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} missing in {v}"))
}

fn check_clean(v: &serde_json::Value, confirmed: bool) {
    let sent = count(v, "sent");
    assert!(sent > 0, "something was sent: {v}");
    assert_eq!(count(v, "received"), sent, "every sent message arrived: {v}");
    if confirmed {
        assert_eq!(count(v, "confirmed"), sent, "every sent message was confirmed: {v}");
    }
    assert_eq!(count(v, "lost"), 0, "{v}");
    assert_eq!(count(v, "duplicates"), 0, "{v}");
    assert_eq!(count(v, "reordered"), 0, "{v}");
    for key in ["latency_us", "confirm_latency_us"] {
        for p in ["p50", "p90", "p99", "p999", "max"] {
            assert!(v[key][p].is_number(), "{key}.{p} in {v}");
        }
    }
    assert!(v["msgs_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["bytes_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn max_rate_run_with_confirms_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    let url = format!("ringmq://{}", broker.native_addr);
    let v =
        run_loadgen(&["--url", &url, "--size", "64", "--duration", "2", "--warmup", "1", "--confirm", "--cores", "0"]);
    check_clean(&v, true);
    broker.stop().expect("the broker stops cleanly");
}

#[test]
fn fixed_rate_run_across_shards_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    let url = format!("ringmq://{}", broker.native_addr);
    let v = run_loadgen(&[
        "--url",
        &url,
        "--producers",
        "2",
        "--consumers",
        "2",
        "--queues",
        "2",
        "--rate",
        "20000",
        "--duration",
        "2",
        "--warmup",
        "1",
        "--confirm",
        "--cores",
        "0",
    ]);
    check_clean(&v, true);
    let sent = count(&v, "sent");
    // 3 s at 20k msg/s: the schedule holds within a generous margin.
    assert!(sent > 30_000 && sent <= 61_000, "sent {sent} at --rate 20000 over 3 s");
    // The latency over time: a point every ~200 ms, warmup included, whose
    // counts add up to every delivery.
    let points = v["latency_over_time"].as_array().expect("latency_over_time");
    assert!(points.len() >= 10, "{} points over 3 s", points.len());
    assert!(points[0]["t_s"].as_f64().unwrap() < 0.0, "the first point is in the warmup: {}", points[0]);
    let counted: u64 = points.iter().map(|p| p["count"].as_u64().unwrap()).sum();
    assert_eq!(counted, count(&v, "received"), "every delivery is in one interval");
    assert!(points.iter().all(|p| p["p99_us"].as_f64() <= p["max_us"].as_f64()));
    // The generator's own lateness: one sample per batch sent in the
    // window.
    let lag = &v["send_lag_us"];
    let batches = lag["count"].as_u64().expect("send_lag_us.count");
    assert!(batches > 0 && batches <= count(&v, "sent"), "{batches} send-lag samples for {sent} sent");
    assert!(lag["p50"].as_f64() <= lag["max"].as_f64(), "{lag}");
    broker.stop().expect("the broker stops cleanly");
}

#[test]
fn amqp_mode_against_ringmq_amqp_front_end_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    let url = format!("amqp://guest:guest@{}/%2f", broker.amqp_addr);
    let v =
        run_loadgen(&["--url", &url, "--size", "64", "--duration", "2", "--warmup", "1", "--confirm", "--cores", "0"]);
    check_clean(&v, true);
    broker.stop().expect("the broker stops cleanly");
}

/// A queue prefix whose queues `PREFIX-0..n` are spread over both shards.
fn prefix_over_two_shards(n: usize) -> String {
    (0..100)
        .map(|i| format!("fanout-{i}"))
        .find(|p| {
            let shards: std::collections::HashSet<u32> =
                (0..n).map(|q| ringmq::protocol::shard_for(&format!("{p}-{q}"), 2)).collect();
            shards.len() == 2
        })
        .expect("some prefix spreads the queues")
}

/// Checks a routed run: every published message reached `fanout` queues,
/// and each (queue, producer) stream arrived whole, once, in order.
fn check_routed(v: &serde_json::Value, fanout: u64) {
    let sent = count(v, "sent");
    assert!(sent > 0, "something was sent: {v}");
    assert_eq!(v["fanout"].as_f64(), Some(fanout as f64), "{v}");
    assert_eq!(count(v, "expected"), fanout * sent, "{v}");
    assert_eq!(count(v, "received"), fanout * sent, "every queue got every message: {v}");
    assert_eq!(count(v, "confirmed"), sent, "every publish was confirmed: {v}");
    assert_eq!(count(v, "lost"), 0, "{v}");
    assert_eq!(count(v, "duplicates"), 0, "{v}");
    assert_eq!(count(v, "reordered"), 0, "{v}");
    let (published, delivered) = (v["send_msgs_per_s"].as_f64().unwrap(), v["delivered_per_s"].as_f64().unwrap());
    assert!(published > 0.0 && delivered > 0.0, "{v}");
    assert_eq!(v["msgs_per_s"].as_f64(), Some(delivered), "{v}");
}

#[test]
fn fanout_run_over_two_shards_delivers_every_message_to_every_queue() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    let url = format!("ringmq://{}", broker.native_addr);
    let prefix = prefix_over_two_shards(3);
    let v = run_loadgen(&[
        "--url",
        &url,
        "--exchange",
        "lg-fanout",
        "--queues",
        "3",
        "--consumers",
        "3",
        "--queue-prefix",
        &prefix,
        "--duration",
        "2",
        "--warmup",
        "1",
        "--confirm",
        "--cores",
        "0",
    ]);
    check_routed(&v, 3);
    assert_eq!(v["config"]["exchange"]["kind"], "fanout", "{v}");
    broker.stop().expect("the broker stops cleanly");
}

#[test]
fn topic_run_over_amqp_routes_each_producer_to_its_queue() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    let url = format!("amqp://guest:guest@{}/%2f", broker.amqp_addr);
    let prefix = prefix_over_two_shards(2);
    let v = run_loadgen(&[
        "--url",
        &url,
        "--exchange",
        "lg-topic",
        "--exchange-type",
        "topic",
        "--producers",
        "2",
        "--consumers",
        "2",
        "--queues",
        "2",
        "--queue-prefix",
        &prefix,
        "--rate",
        "20000",
        "--duration",
        "2",
        "--warmup",
        "1",
        "--confirm",
        "--cores",
        "0",
    ]);
    check_routed(&v, 1);
    broker.stop().expect("the broker stops cleanly");
}

/// `ringmq-loadgen tx` against ringmq's AMQP front end: transactions of 10
/// persistent messages commit, and the line it prints says how many.
#[test]
fn tx_mode_commits_against_ringmq() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    let url = format!("amqp://guest:guest@{}/%2f", broker.amqp_addr);
    let out = Command::new(env!("CARGO_BIN_EXE_ringmq-loadgen"))
        .args(["tx", "--url", &url, "--per-tx", "10", "--persistent", "--duration", "1", "--warmup", "0.2"])
        .output()
        .expect("loadgen runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let commits: u64 = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("commits="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no commits= in {text:?}"));
    assert!(commits > 10, "{text}");
    assert!(text.starts_with("tx per_tx=10 size=16 persistent=true "), "{text}");
    broker.stop().expect("the broker stops cleanly");
}
