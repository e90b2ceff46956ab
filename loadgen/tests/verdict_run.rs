//! The loadgen's exit code, per-second series, rate steps and OMB result
//! file, from short runs against a real ringmq broker: a clean stepped run
//! exits 0 with a per-second series that follows the steps; a run into a
//! length-limited queue (the broker drops the oldest messages for real)
//! exits 3, unless the run says it allows loss.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

use ringmq::server::config::Config;
use ringmq::server::Broker;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn start_broker(dir: &Path) -> Broker {
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

struct Run {
    code: i32,
    printed: String,
    json: Value,
    omb: Option<Value>,
}

/// Runs the loadgen with `args` (plus `--json`, `--omb-json`, `--quiet`),
/// at most 60 s.
fn loadgen(args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let (json, omb) = (dir.path().join("run.json"), dir.path().join("omb.json"));
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringmq-loadgen"))
        .args(args)
        .args(["--json", json.to_str().unwrap(), "--omb-json", omb.to_str().unwrap(), "--quiet"])
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("loadgen still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let printed = format!(
        "{}\n{}",
        std::fs::read_to_string(&out_path).unwrap_or_default(),
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    let read = |p: &Path| std::fs::read_to_string(p).ok().map(|t| serde_json::from_str(&t).unwrap());
    let json = read(&json).unwrap_or_else(|| panic!("no JSON summary: {printed}"));
    Run { code: status.code().unwrap_or(-1), printed, json, omb: read(&omb) }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn a_stepped_run_passes_with_a_per_second_series_and_an_omb_file() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    let url = format!("ringmq://{}", broker.native_addr);
    // 1 s of warmup at 500/s, then 500/s for 2 s and 2000/s for 2 s.
    let r = loadgen(&[
        "--url",
        &url,
        "--rate",
        "500,2000",
        "--step-secs",
        "2",
        "--duration",
        "4",
        "--warmup",
        "1",
        "--confirm",
        "--queue-prefix",
        "lg-steps",
    ]);
    assert_eq!(r.code, 0, "a clean run exits 0: {}", r.printed);
    let v = &r.json;
    assert_eq!(v["lost"], 0);
    assert_eq!(v["integrity_failures"], serde_json::json!([]));
    assert_eq!(v["config"]["rate"], serde_json::json!({ "steps": [500.0, 2000.0], "step_s": 2.0 }));
    let series = v["per_second"].as_array().unwrap();
    let second =
        |t: f64| series.iter().find(|p| f(&p["t_s"]) == t).unwrap_or_else(|| panic!("no second {t} in {series:?}"));
    // Whole seconds of each step publish at its rate (the generator keeps
    // to its schedule; a second's edges move by up to a few ms).
    for (t, rate) in [(0.0, 500.0), (1.0, 500.0), (2.0, 2000.0), (3.0, 2000.0)] {
        let p = second(t);
        let publish = f(&p["publish_rate"]);
        assert!((publish - rate).abs() / rate < 0.25, "second {t}: publish {publish}, step {rate}: {p}");
        assert!(f(&p["deliver_rate"]) > 0.0, "{p}");
        assert!(f(&p["p50_us"]) > 0.0 && f(&p["p99_us"]) >= f(&p["p50_us"]), "{p}");
        assert!(p["confirm_latency_us"]["count"].as_u64().unwrap() > 0, "{p}");
    }
    assert!(series.iter().any(|p| f(&p["t_s"]) < 0.0), "the warmup is in the series");
    let omb = r.omb.expect("the OMB file");
    let publish = omb["publishRate"].as_array().unwrap();
    assert_eq!(publish.len(), 4, "one sample per measured second: {omb}");
    assert!(f(&publish[3]) > 3.0 * f(&publish[0]), "the step shows: {publish:?}");
    assert_eq!(omb["consumeRate"].as_array().unwrap().len(), 4);
    assert_eq!(omb["backlog"].as_array().unwrap().len(), 4);
    for key in [
        "aggregatedEndToEndLatency50pct",
        "aggregatedEndToEndLatency99pct",
        "aggregatedEndToEndLatencyMax",
        "aggregatedPublishLatency99pct",
        "aggregatedPublishLatencyAvg",
    ] {
        assert!(f(&omb[key]) > 0.0, "{key} in {omb}");
    }
    // Milliseconds: OMB's unit.
    let e2e_ms = f(&omb["aggregatedEndToEndLatency50pct"]);
    assert!((e2e_ms - f(&v["latency_us"]["p50"]) / 1000.0).abs() < 1e-9);
    assert_eq!(omb["endToEndLatency99pct"].as_array().unwrap().len(), 4);
    assert_eq!(omb["messageSize"], 16);
    drop(broker);
}

#[test]
fn messages_dropped_by_the_broker_make_the_exit_code_3() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    let url = format!("ringmq://{}", broker.native_addr);
    // A queue of at most one ready message that drops its oldest: batches
    // of 64 published into it at once lose all but the first one or two
    // (the consumer takes one at a time).
    let args = [
        "--url",
        &url,
        "--duration",
        "1",
        "--warmup",
        "0",
        "--drain",
        "1",
        "--drain-idle",
        "0.5",
        "--batch",
        "64",
        "--prefetch",
        "1",
        "--ack-every",
        "1",
        "--queue-prefix",
        "lg-lossy",
        "--queue-arg",
        "x-max-length=1",
    ];
    let r = loadgen(&args);
    assert_eq!(r.code, 3, "lost messages fail the run: {}", r.printed);
    let lost = r.json["lost"].as_u64().unwrap();
    assert!(lost > 0, "{}", r.json);
    let failures = r.json["integrity_failures"].as_array().unwrap();
    assert!(failures.iter().any(|f| f.as_str().unwrap().contains("lost")), "{failures:?}");
    assert!(r.printed.contains("FAILED integrity check"), "{}", r.printed);
    // The same workload, saying it drops on purpose, passes.
    let mut allowed = args.to_vec();
    allowed.extend(["--allow", "loss"]);
    let r = loadgen(&allowed);
    assert_eq!(r.code, 0, "{}", r.printed);
    assert!(r.json["lost"].as_u64().unwrap() > 0);
    drop(broker);
}
