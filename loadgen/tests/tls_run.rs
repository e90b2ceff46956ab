//! Short loadgen runs over TLS against a real ringmq broker: `ringmqs://`
//! (the client library's TLS, follow-on shard connections included) and
//! `amqps://` (the AMQP driver over rustls), with a CA made for the test.
//! The counts must match and nothing may be lost; a CA that did not sign
//! the broker's certificate must fail the run, saying why.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose};
use ringmq::server::config::Config;
use ringmq::server::Broker;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

/// Writes `ca.pem`, `other-ca.pem` and the broker's `server.pem` and
/// `server.key` (for `localhost` and 127.0.0.1, signed by `ca.pem`).
fn make_certs(dir: &Path) {
    let ca = |name: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        (cert, key)
    };
    let (ca_cert, ca_key) = ca("loadgen test CA");
    let (other, _) = ca("another CA");
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap().signed_by(
        &server_key,
        &ca_cert,
        &ca_key,
    );
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("other-ca.pem"), other.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server.unwrap().pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
}

/// A 2-shard broker with `tls_listen` and `amqps_listen` on.
fn start_broker(dir: &Path) -> Broker {
    make_certs(dir);
    let any = "127.0.0.1:0".parse().unwrap();
    let config = Config {
        cores: 2,
        pin_cores: false,
        listen: any,
        amqp_listen: any,
        metrics_listen: any,
        tls_listen: Some(any),
        amqps_listen: Some(any),
        tls_cert_file: Some(dir.join("server.pem")),
        tls_key_file: Some(dir.join("server.key")),
        data_dir: dir.join("data"),
        ..Config::default()
    };
    Broker::start(config).expect("broker starts")
}

/// Runs the loadgen (at most 60 s): its exit status, what it printed, and
/// its JSON summary when it wrote one.
fn run_loadgen(args: &[&str]) -> (ExitStatus, String, Option<serde_json::Value>) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringmq-loadgen"))
        .args(args)
        .args(["--json", json.to_str().unwrap(), "--quiet"])
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("loadgen runs");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("loadgen still running after 60 s: {}", std::fs::read_to_string(&err_path).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let printed = format!(
        "{}\n{}",
        std::fs::read_to_string(&out_path).unwrap_or_default(),
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    let summary = std::fs::read_to_string(&json).ok().map(|t| serde_json::from_str(&t).unwrap());
    (status, printed, summary)
}

fn clean_run(args: &[&str]) -> serde_json::Value {
    let (status, printed, v) = run_loadgen(args);
    assert!(status.success(), "loadgen failed: {printed}");
    let v = v.expect("a JSON summary");
    let count = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} missing in {v}"));
    let sent = count("sent");
    assert!(sent > 0, "something was sent: {v}");
    assert_eq!(count("received"), sent, "every sent message arrived: {v}");
    assert_eq!(count("confirmed"), sent, "every sent message was confirmed: {v}");
    for k in ["lost", "duplicates", "reordered"] {
        assert_eq!(count(k), 0, "{k}: {v}");
    }
    v
}

/// A queue prefix whose queues `PREFIX-0` and `PREFIX-1` are on different shards.
fn prefix_over_two_shards() -> String {
    (0..100)
        .map(|i| format!("tls-{i}"))
        .find(|p| {
            ringmq::protocol::shard_for(&format!("{p}-0"), 2) != ringmq::protocol::shard_for(&format!("{p}-1"), 2)
        })
        .expect("some prefix spreads the queues")
}

fn path(dir: &Path, name: &str) -> String {
    let p: PathBuf = dir.join(name);
    p.to_str().unwrap().to_string()
}

#[test]
fn ringmqs_run_over_two_shards_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    let url = format!("ringmqs://localhost:{}", broker.tls_addr.unwrap().port());
    let ca = path(dir.path(), "ca.pem");
    let prefix = prefix_over_two_shards();
    #[rustfmt::skip]
    let v = clean_run(&[
        "--url", &url, "--tls-ca", &ca,
        "--producers", "2", "--consumers", "2", "--queues", "2", "--queue-prefix", &prefix,
        "--rate", "5000", "--duration", "1", "--warmup", "0.5", "--confirm", "--cores", "0",
    ]);
    assert_eq!(v["config"]["tls"]["ca"], ca.as_str(), "{v}");

    // The wrong CA: the run fails before it starts, and says why.
    let other = path(dir.path(), "other-ca.pem");
    let (status, printed, _) = run_loadgen(&["--url", &url, "--tls-ca", &other, "--duration", "1", "--cores", "0"]);
    assert!(!status.success(), "a run with the wrong CA succeeded: {printed}");
    assert!(printed.contains("not signed by a CA this client trusts"), "{printed}");
    broker.stop().expect("the broker stops cleanly");
}

#[test]
fn amqps_run_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path());
    let port = broker.amqps_addr.unwrap().port();
    // The CA as RabbitMQ's URI spec gives it, in the query.
    let url = format!("amqps://guest:guest@localhost:{port}/%2f?cacertfile={}", path(dir.path(), "ca.pem"));
    #[rustfmt::skip]
    clean_run(&[
        "--url", &url, "--size", "64",
        "--producers", "2", "--consumers", "2", "--queues", "2", "--queue-prefix", &prefix_over_two_shards(),
        "--duration", "1", "--warmup", "0.5", "--confirm", "--cores", "0",
    ]);
    // --tls-ca gives it too; the wrong one fails the run.
    let url = format!("amqps://guest:guest@localhost:{port}/%2f");
    let other = path(dir.path(), "other-ca.pem");
    let (status, printed, _) = run_loadgen(&["--url", &url, "--tls-ca", &other, "--duration", "1", "--cores", "0"]);
    assert!(!status.success(), "a run with the wrong CA succeeded: {printed}");
    assert!(printed.contains("not signed by a CA this client trusts"), "{printed}");
    let ca = path(dir.path(), "ca.pem");
    #[rustfmt::skip]
    clean_run(&["--url", &url, "--tls-ca", &ca, "--rate", "5000", "--duration", "1", "--warmup", "0.5", "--confirm", "--cores", "0"]);
    broker.stop().expect("the broker stops cleanly");
}
