//! `ringmq serve` configured by `RINGMQ_*` environment variables (as a
//! container is): the real binary as a child process, its ready line, its
//! data directory, a login as the `RINGMQ_DEFAULT_USER` through `ringmq
//! ctl`, and its metrics over HTTP. Every child is killed if the test
//! fails, and every wait is bounded.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringmq");

/// Kills the child when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ringmq serve` with `env` set (and nothing else of ours inherited) and
/// `args`; the child and its ready line.
fn serve(env: &[(&str, String)], args: &[&str], log: &std::path::Path) -> (Guard, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve").args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("RINGMQ_")) {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let child =
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(std::fs::File::create(log).unwrap()).spawn().unwrap();
    let mut g = Guard(child);
    let stdout = g.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|e| {
        panic!("no ready line ({e:?}); log:\n{}", std::fs::read_to_string(log).unwrap_or_default())
    });
    (g, line)
}

/// The value of `key=` in the ready line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|p| p.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{key} in {line}"))
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    raw
}

/// `ringmq ctl` with a deadline: (success, stdout and stderr).
fn ctl(args: &[&str]) -> (bool, String) {
    let mut child =
        Command::new(BIN).arg("ctl").args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "ctl {args:?} did not finish");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut out).unwrap();
    (status.success(), out)
}

#[test]
fn environment_variables_configure_serve_and_flags_override_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("env-data");
    let any = "127.0.0.1:0".to_string();
    let env = [
        ("RINGMQ_CORES", "1".to_string()),
        ("RINGMQ_NO_PIN", "true".to_string()),
        ("RINGMQ_DATA_DIR", data.display().to_string()),
        ("RINGMQ_LISTEN", any.clone()),
        ("RINGMQ_AMQP_LISTEN", any.clone()),
        ("RINGMQ_METRICS_LISTEN", any.clone()),
        ("RINGMQ_NODE_NAME", "env-node@test".to_string()),
        ("RINGMQ_LOG_FORMAT", "json".to_string()),
        ("RINGMQ_DEFAULT_USER", "admin".to_string()),
        ("RINGMQ_DEFAULT_PASS", "env-secret".to_string()),
    ];
    let log = dir.path().join("serve.log");
    let (mut child, ready) = serve(&env, &[], &log);
    assert_eq!(field(&ready, "shards").split(',').count(), 1, "RINGMQ_CORES=1: {ready}");
    assert!(data.join("shard-0").is_dir(), "RINGMQ_DATA_DIR is where the shards keep their logs");
    let metrics = http_get(field(&ready, "metrics"), "/metrics");
    assert!(metrics.contains("rabbitmq_identity_info{rabbitmq_node=\"env-node@test\""), "{metrics}");
    // The default user logs in, as an administrator; a wrong password
    // does not.
    let url = format!("ringmq://{}", field(&ready, "native"));
    let (ok, out) = ctl(&["--url", &url, "--user", "admin", "--password", "env-secret", "list-users"]);
    assert!(ok && out.contains("admin") && out.contains("administrator"), "{out}");
    let (ok, out) = ctl(&["--url", &url, "--user", "admin", "--password", "wrong", "ping"]);
    assert!(!ok, "{out}");
    // RINGMQ_LOG_FORMAT=json: the log lines are JSON objects.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.lines().next().is_some_and(|l| l.starts_with('{')), "{text}");
    // The password is not in the log.
    assert!(!text.contains("env-secret"));
    child.0.kill().unwrap();
    child.0.wait().unwrap();

    // A flag wins over its variable.
    let log = dir.path().join("serve2.log");
    let (_child, ready) =
        serve(&env, &["--cores", "2", "--data-dir", &dir.path().join("two").display().to_string()], &log);
    assert_eq!(field(&ready, "shards").split(',').count(), 2, "--cores 2 over RINGMQ_CORES=1: {ready}");
}

/// Runs `ringmq serve` with `env` (listeners on ephemeral ports, a
/// temporary data directory), expecting it to refuse to start: its exit
/// code and stderr. A broker that starts instead is killed.
fn refused(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let err = dir.path().join("err");
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--cores", "1", "--no-pin", "--listen", "127.0.0.1:0", "--amqp-listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("RINGMQ_")) {
        cmd.env_remove(k);
    }
    let child = cmd.envs(env.iter().copied()).stdin(Stdio::null()).stdout(Stdio::null());
    let mut g = Guard(child.stderr(std::fs::File::create(&err).unwrap()).spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = g.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "ringmq serve started with {env:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), std::fs::read_to_string(&err).unwrap())
}

#[test]
fn a_bad_variable_is_refused_by_name() {
    let (code, err) = refused(&[("RINGMQ_CLUSTER_LISTEN", "not-an-address")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not-an-address") && err.contains("--cluster-listen"), "{err}");
    // A default user without its password is refused before anything starts.
    let (code, err) = refused(&[("RINGMQ_DEFAULT_USER", "admin")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--default-pass"), "{err}");
}
