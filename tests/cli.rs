//! The `ringmq` binary: `serve` as a child process, `pub` and `sub` against
//! it, and SIGTERM. Every child is killed if the test fails, and every wait
//! is bounded.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringmq");

/// Kills the child when dropped unless it has already been waited for.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn pid(&self) -> u32 {
        self.0.as_ref().expect("running").id()
    }

    /// Waits up to `d` for the child to exit.
    fn wait_for(&mut self, d: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + d;
        loop {
            let child = self.0.as_mut().expect("running");
            if let Some(st) = child.try_wait().expect("try_wait") {
                self.0 = None;
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A `ringmq serve` child with 2 shards on ephemeral ports.
struct Server {
    child: ChildGuard,
    native: String,
    shards: Vec<String>,
    /// The ready line (every listener's address).
    ready: String,
    /// Lines of stdout after the ready line.
    _stdout: mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

fn start_server() -> Server {
    start_server_with("")
}

/// `start_server` with `config` (TOML) as its `--config` file.
fn start_server_with(config: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let config_file = dir.path().join("ringmq.toml");
    std::fs::write(&config_file, config).unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--cores", "2", "--no-pin", "--data-dir"])
        .arg(&data)
        .args(["--amqp-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--config"])
        .arg(&config_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn ringmq serve");
    let mut child = ChildGuard(Some(child));
    let stdout = child.0.as_mut().unwrap().stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = match rx.recv_timeout(Duration::from_secs(15)) {
        Ok(l) => l,
        Err(e) => {
            let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
            panic!("no ready line from ringmq serve ({e:?}); its log:\n{log}");
        }
    };
    let (native, shards) = parse_ready(&line);
    assert_eq!(shards.len(), 2, "{line}");
    Server { child, native, shards, ready: line, _stdout: rx, _dir: dir }
}

/// `ringmq ready native=ADDR shards=A,B`
fn parse_ready(line: &str) -> (String, Vec<String>) {
    let rest = line.strip_prefix("ringmq ready ").unwrap_or_else(|| panic!("not the ready line: {line:?}"));
    let mut native = None;
    let mut shards = None;
    for part in rest.split_whitespace() {
        if let Some(v) = part.strip_prefix("native=") {
            native = Some(v.to_string());
        } else if let Some(v) = part.strip_prefix("shards=") {
            shards = Some(v.split(',').map(str::to_string).collect::<Vec<_>>());
        }
    }
    let native = native.unwrap_or_else(|| panic!("no native= in {line:?}"));
    let shards = shards.unwrap_or_else(|| panic!("no shards= in {line:?}"));
    for a in std::iter::once(&native).chain(&shards) {
        a.parse::<std::net::SocketAddr>().unwrap_or_else(|e| panic!("{a:?} is not an address: {e}"));
    }
    (native, shards)
}

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Output {
    fn last_line(&self) -> &str {
        self.stdout.lines().last().unwrap_or("")
    }
}

/// Runs the binary with `args`; kills it and fails after `limit`.
fn run(args: &[&str], limit: Duration) -> Output {
    let child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringmq");
    let mut g = ChildGuard(Some(child));
    let read = |r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let mut r = r;
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = read(Box::new(g.0.as_mut().unwrap().stdout.take().unwrap()));
    let err = read(Box::new(g.0.as_mut().unwrap().stderr.take().unwrap()));
    let status =
        g.wait_for(limit).unwrap_or_else(|| panic!("`ringmq {}` did not finish within {limit:?}", args.join(" ")));
    Output { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

fn url(addr: &str) -> String {
    format!("ringmq://{addr}")
}

#[test]
fn pub_then_sub_through_the_binary() {
    let s = start_server();
    let u = url(&s.native);
    let p = run(
        &["pub", "--url", &u, "--queue", "q", "--count", "1000", "--size", "32", "--confirm"],
        Duration::from_secs(30),
    );
    assert!(p.status.success(), "pub failed: {:?}\n{}", p.status, p.stderr);
    assert_eq!(p.last_line(), "published 1000 confirmed 1000", "stdout:\n{}", p.stdout);

    let r = run(
        &["sub", "--url", &u, "--queue", "q", "--count", "1000", "--quiet", "--timeout", "5"],
        Duration::from_secs(30),
    );
    assert!(r.status.success(), "sub failed: {:?}\n{}", r.status, r.stderr);
    assert_eq!(r.last_line(), "received 1000", "stdout:\n{}", r.stdout);
    assert_eq!(r.stdout.lines().count(), 1, "--quiet prints only the count:\n{}", r.stdout);

    // The queue was drained and acked: nothing left.
    let r = run(&["sub", "--url", &u, "--queue", "q", "--timeout", "1", "--quiet"], Duration::from_secs(15));
    assert!(!r.status.success(), "sub must fail on timeout");
    assert_eq!(r.last_line(), "received 0", "messages acked by the first `ringmq sub` came back:\n{}", r.stdout);
}

#[test]
fn sub_prints_messages_and_pub_without_shard_awareness() {
    let s = start_server();
    // Publish through each shard's own address, not shard-aware, so one of
    // the two is forwarded whichever shard owns the queue.
    for (i, addr) in s.shards.iter().enumerate() {
        let msg = format!("hello-{i}");
        let p = run(
            &["pub", "--url", &url(addr), "--queue", "greetings", "--no-shard-aware", "--confirm", &msg],
            Duration::from_secs(15),
        );
        assert!(p.status.success(), "{:?}\n{}", p.status, p.stderr);
        assert_eq!(p.last_line(), "published 1 confirmed 1");
    }
    let r = run(
        &["sub", "--url", &url(&s.native), "--queue", "greetings", "--count", "2", "--timeout", "5"],
        Duration::from_secs(15),
    );
    assert!(r.status.success(), "{:?}\n{}", r.status, r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines, ["hello-0", "hello-1", "received 2"], "stdout:\n{}", r.stdout);
}

#[test]
fn sub_times_out_on_an_empty_queue() {
    let s = start_server();
    let started = Instant::now();
    let r = run(
        &["sub", "--url", &url(&s.native), "--queue", "empty", "--timeout", "1", "--quiet"],
        Duration::from_secs(15),
    );
    assert!(!r.status.success(), "a timeout is a failure: {:?}", r.status);
    assert_eq!(r.last_line(), "received 0", "stdout:\n{}", r.stdout);
    assert!(started.elapsed() >= Duration::from_millis(900), "gave up after {:?}", started.elapsed());
}

#[test]
fn pub_without_a_broker_fails_but_reports() {
    // A port nobody listens on: bound (so no other test can take it) but
    // not listening, so a connect is refused.
    let hold = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    hold.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    let port = hold.local_addr().unwrap().as_socket().unwrap().port();
    let u = format!("ringmq://127.0.0.1:{port}");
    let p = run(&["pub", "--url", &u, "--queue", "q", "--count", "10", "--confirm"], Duration::from_secs(15));
    assert!(!p.status.success(), "pub must fail: {:?}", p.status);
    assert_eq!(p.last_line(), "published 0 confirmed 0", "stdout:\n{}", p.stdout);
    assert!(!p.stderr.is_empty(), "it says why on stderr");

    let r = run(&["sub", "--url", &u, "--queue", "q", "--timeout", "1"], Duration::from_secs(15));
    assert!(!r.status.success());
    assert_eq!(r.last_line(), "received 0", "stdout:\n{}", r.stdout);
    drop(hold);
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut s = start_server();
    // It serves before the signal.
    let p = run(&["pub", "--url", &url(&s.native), "--queue", "t", "--confirm", "x"], Duration::from_secs(15));
    assert_eq!(p.last_line(), "published 1 confirmed 1", "{}", p.stderr);
    // A connected client hears that the broker is going away.
    let (mut conn, _) = common::Raw::hello(s.native.parse().unwrap());
    let pid = s.child.pid() as libc::pid_t;
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let st = s.child.wait_for(Duration::from_secs(5)).expect("ringmq serve stops within 5 s of SIGTERM");
    assert!(st.success(), "exit status after SIGTERM: {st:?}");
    conn.expect_error(ringmq::protocol::ErrorCode::ShuttingDown);
    conn.expect_closed();
}

#[test]
fn queue_args_from_the_command_line() {
    let s = start_server();
    let u = url(&s.native);
    let max3 = ["--queue-arg", "x-max-length=3", "--queue-arg", "x-overflow=drop-head"];
    let mut args = vec!["pub", "--url", &u, "--queue", "limited", "--count", "10", "--confirm"];
    args.extend_from_slice(&max3);
    let p = run(&args, Duration::from_secs(30));
    assert!(p.status.success(), "pub failed: {:?}\n{}", p.status, p.stderr);
    assert_eq!(p.last_line(), "published 10 confirmed 10", "drop-head accepts every publish");
    let mut args = vec!["sub", "--url", &u, "--queue", "limited", "--count", "3", "--timeout", "5"];
    args.extend_from_slice(&max3);
    let r = run(&args, Duration::from_secs(30));
    assert!(r.status.success(), "sub failed: {:?}\n{}", r.status, r.stderr);
    let got: Vec<&str> = r.stdout.lines().map(|l| l.trim_end_matches('.')).collect();
    assert_eq!(got, ["7", "8", "9", "received 3"], "only the newest 3 were kept");

    let bad =
        run(&["pub", "--url", &u, "--queue", "bad", "--queue-arg", "x-max-priority=300", "x"], Duration::from_secs(15));
    assert!(!bad.status.success());
    assert!(bad.stderr.contains("invalid arg 'x-max-priority'"), "{}", bad.stderr);
    let bad = run(&["pub", "--url", &u, "--queue", "bad", "--queue-arg", "novalue", "x"], Duration::from_secs(15));
    assert!(!bad.status.success());
    assert!(bad.stderr.contains("KEY=VALUE"), "{}", bad.stderr);
}

/// Sends bytes that are no ringmq frame and waits for the broker to close.
fn garbage_connection(addr: &str) {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(&[0xff; 16]).unwrap();
    let mut sink = Vec::new();
    let _ = c.read_to_end(&mut sink);
    assert!(!sink.is_empty(), "the broker says why it closes");
}

#[test]
fn a_flood_of_bad_connections_logs_a_bounded_number_of_lines() {
    let s = start_server_with("unauthenticated_log_lines_per_s = 3\n");
    for _ in 0..60 {
        garbage_connection(&s.native);
    }
    // The next second's first line sums up the ones skipped.
    std::thread::sleep(Duration::from_millis(1100));
    for a in &s.shards {
        garbage_connection(a);
    }
    let log = std::fs::read_to_string(s._dir.path().join("serve.log")).unwrap();
    let closing = log.lines().filter(|l| l.contains("closing connection")).count();
    let skipped: u64 = log
        .lines()
        .filter(|l| l.contains("were skipped"))
        .filter_map(|l| l.split("skipped=").nth(1)?.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    // At most 3 a second per shard: 2 shards, at most 2 seconds here.
    assert!((1..=12).contains(&closing), "{closing} closing lines:\n{log}");
    assert!(skipped + closing as u64 >= 60, "{skipped} skipped, {closing} logged:\n{log}");
}

/// Every file under `dir`, read whole.
fn files_under(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else if let Ok(b) = std::fs::read(&p) {
            out.push((p, b));
        }
    }
}

#[test]
fn passwords_appear_in_neither_the_log_nor_the_data_dir() {
    let s = start_server_with("[[users]]\nname = \"app\"\npassword = \"hunter2-secret\"\ntags = [\"administrator\"]\n");
    let addr: std::net::SocketAddr = s.native.parse().unwrap();
    // A good login, durable state written, and refused logins with
    // other passwords.
    let mut ok = common::Raw::connect(addr);
    ok.send(ringmq::protocol::Cmd::Hello {
        version: ringmq::protocol::VERSION,
        user: "app",
        password: "hunter2-secret",
        heartbeat_ms: None,
        vhost: None,
    });
    assert!(matches!(ok.recv().frame().cmd, ringmq::protocol::Cmd::HelloOk(_)));
    ok.declare("kept");
    for (user, password) in [("app", "wrong-pw-123"), ("nobody", "hunter2-secret")] {
        let mut r = common::Raw::connect(addr);
        r.send(ringmq::protocol::Cmd::Hello {
            version: ringmq::protocol::VERSION,
            user,
            password,
            heartbeat_ms: None,
            vhost: None,
        });
        r.expect_error(ringmq::protocol::ErrorCode::AuthFailed);
    }
    std::thread::sleep(Duration::from_millis(300));
    let log = std::fs::read_to_string(s._dir.path().join("serve.log")).unwrap();
    assert!(log.contains("login refused"), "refusals are logged:\n{log}");
    let mut files = Vec::new();
    files_under(&s._dir.path().join("data"), &mut files);
    assert!(!files.is_empty());
    for secret in ["hunter2-secret", "wrong-pw-123"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
        for (p, bytes) in &files {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} in {}", p.display());
        }
    }
}

/// `key=ADDR` from the ready line.
fn ready_addr(s: &Server, key: &str) -> std::net::SocketAddr {
    let prefix = format!("{key}=");
    let v = s.ready.split_whitespace().find_map(|p| p.strip_prefix(prefix.as_str()));
    v.unwrap_or_else(|| panic!("no {key}= in {:?}", s.ready)).parse().unwrap()
}

#[test]
fn sighup_reloads_the_tls_certificate_and_keeps_the_old_one_on_a_bad_file() {
    use common::tls::{client_config, connect, https_request, TestCerts};
    let (first, second) = (TestCerts::new("guest"), TestCerts::new("guest"));
    // The broker reads its certificate from files of its own, replaced below.
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = (files.path().join("server.pem"), files.path().join("server.key"));
    std::fs::copy(first.path("server.pem"), &cert).unwrap();
    std::fs::copy(first.path("server.key"), &key).unwrap();
    let server = start_server_with(&format!(
        "https_listen = \"127.0.0.1:0\"\ntls_cert_file = {:?}\ntls_key_file = {:?}\n",
        cert.to_str().unwrap(),
        key.to_str().unwrap()
    ));
    let https = ready_addr(&server, "https");
    let (trust_first, trust_second) =
        (client_config(&first.path("ca.pem"), None), client_config(&second.path("ca.pem"), None));
    let mut kept = connect(https, trust_first.clone()).unwrap();
    assert_eq!(https_request(&mut kept, "GET", "/api/overview", ("guest", "guest")).0, 200);
    assert!(connect(https, trust_second.clone()).is_err(), "the second CA's client trusts the first certificate");

    // Rotate: the new pair in place, then SIGHUP.
    std::fs::copy(second.path("server.pem"), &cert).unwrap();
    std::fs::copy(second.path("server.key"), &key).unwrap();
    let hup = |pid: u32| assert!(Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap().success());
    hup(server.child.pid());
    let deadline = Instant::now() + Duration::from_secs(5);
    while connect(https, trust_second.clone()).is_err() {
        assert!(Instant::now() < deadline, "the new certificate is not served 5 s after SIGHUP");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(connect(https, trust_first.clone()).is_err(), "the old certificate is still served");
    // A connection made before the rotation goes on.
    assert_eq!(https_request(&mut kept, "GET", "/api/overview", ("guest", "guest")).0, 200);

    // A broken file: the reload fails, is logged, and the broker keeps
    // serving the certificate it has.
    std::fs::write(&cert, "not a certificate").unwrap();
    hup(server.child.pid());
    let log = server._dir.path().join("serve.log");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&log).unwrap().contains("TLS reload failed") {
        assert!(Instant::now() < deadline, "no reload failure in the log 5 s after SIGHUP");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut s = connect(https, trust_second).unwrap();
    assert_eq!(https_request(&mut s, "GET", "/api/overview", ("guest", "guest")).0, 200);
}

/// `pub` waits for confirms unless told not to: `Hello World!` ends with
/// `published 1 confirmed 1`, `--no-confirm` says nothing was confirmed
/// (not `confirmed 0`, which reads as a failure), and a message the broker
/// refuses fails the run.
#[test]
fn pub_confirms_by_default_and_says_so_when_told_not_to() {
    let s = start_server();
    let u = url(&s.native);
    let limit = Duration::from_secs(15);
    let p = run(&["pub", "--url", &u, "--queue", "hello", "Hello World!"], limit);
    assert!(p.status.success(), "{:?}\n{}", p.status, p.stderr);
    assert_eq!(p.stdout, "published 1 confirmed 1\n");
    let p = run(&["pub", "--url", &u, "--queue", "hello", "--count", "10", "--no-confirm"], limit);
    assert!(p.status.success(), "{:?}\n{}", p.status, p.stderr);
    assert_eq!(p.stdout, "published 10 (not confirmed: --no-confirm)\n");
    let p = run(&["pub", "--url", &u, "--queue", "hello", "--confirm", "x"], limit);
    assert_eq!(p.last_line(), "published 1 confirmed 1", "--confirm is still taken: {}", p.stderr);
    let both = run(&["pub", "--url", &u, "--queue", "hello", "--confirm", "--no-confirm", "x"], limit);
    assert_eq!(both.status.code(), Some(2), "a usage error: {}", both.stderr);
    let r = run(&["sub", "--url", &u, "--queue", "hello", "--count", "12", "--quiet", "--timeout", "5"], limit);
    assert_eq!(r.last_line(), "received 12", "{}", r.stderr);

    // A queue that refuses what passes its length: the refusal is heard.
    let full = ["--queue-arg", "x-max-length=1", "--queue-arg", "x-overflow=reject-publish"];
    let mut args = vec!["pub", "--url", &u, "--queue", "one", "--count", "3", "--batch", "1"];
    args.extend_from_slice(&full);
    let p = run(&args, limit);
    assert!(!p.status.success(), "a refused message fails the run: {}", p.stdout);
    assert!(p.last_line().ends_with(" confirmed 1"), "{}\n{}", p.stdout, p.stderr);
}

/// `sub --count N` subscribes with a prefetch of at most N, so the messages
/// pushed past its count (back in the queue, marked redelivered, once it
/// exits) are at most N, not 8191; `--count 0` subscribes to nothing.
#[test]
fn sub_count_bounds_what_it_takes() {
    let s = start_server();
    let u = url(&s.native);
    let limit = Duration::from_secs(30);
    let p = run(&["pub", "--url", &u, "--queue", "few", "--count", "1000", "--size", "8"], limit);
    assert_eq!(p.last_line(), "published 1000 confirmed 1000", "{}", p.stderr);

    let r = run(&["sub", "--url", &u, "--queue", "few", "--count", "0"], limit);
    assert!(r.status.success(), "{:?}\n{}", r.status, r.stderr);
    assert_eq!(r.stdout, "received 0\n");
    let r = run(&["sub", "--url", &u, "--queue", "few", "--count", "1", "--timeout", "5"], limit);
    assert!(r.status.success(), "{:?}\n{}", r.status, r.stderr);
    assert_eq!(r.stdout, "0.......\nreceived 1\n");

    let r = run(&["sub", "--url", &u, "--queue", "few", "--count", "999", "--timeout", "5"], limit);
    assert!(r.status.success(), "{:?}\n{}", r.status, r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.last(), Some(&"received 999"));
    let redelivered = lines.iter().filter(|l| l.ends_with(" (redelivered)")).count();
    assert!(redelivered <= 1, "{redelivered} redelivered after `sub --count 1`:\n{}", r.stdout);
    let seqs: Vec<u64> = lines[..999]
        .iter()
        .map(|l| l.trim_end_matches(" (redelivered)").trim_end_matches('.').parse().unwrap())
        .collect();
    assert_eq!(seqs, (1..1000).collect::<Vec<u64>>(), "every message once, in order");
}

/// The README's fanout example, as written, on a broker started from
/// `dist/ringmq.toml` (the flags override its addresses and data dir):
/// `sub --count 0` declares and binds, so the publish that follows reaches
/// the queue whether or not the consumer started in the background has
/// subscribed yet.
#[test]
fn the_readme_fanout_example_on_the_sample_config() {
    let s = start_server_with(include_str!("../dist/ringmq.toml"));
    let u = url(&s.native);
    let limit = Duration::from_secs(30);
    let setup = ["sub", "--url", &u, "--queue", "audit", "--bind", "logs", "--exchange-type", "fanout", "--count", "0"];
    let r = run(&setup, limit);
    assert!(r.status.success(), "{:?}\n{}", r.status, r.stderr);
    assert_eq!(r.stdout, "received 0\n");

    let consumer = Command::new(BIN)
        .args(["sub", "--url", &u, "--queue", "audit", "--count", "1000", "--quiet", "--timeout", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut consumer = ChildGuard(Some(consumer));
    let mut stdout = consumer.0.as_mut().unwrap().stdout.take().unwrap();
    let p = run(&["pub", "--url", &u, "--exchange", "logs", "--count", "1000"], limit);
    assert!(p.status.success(), "{:?}\n{}", p.status, p.stderr);
    assert_eq!(p.stdout, "published 1000 confirmed 1000\n");
    let st = consumer.wait_for(limit).expect("the consumer ends once it has its 1000");
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    assert!(st.success(), "{st:?}: {out}");
    assert_eq!(out, "received 1000\n");

    let b = run(&["ctl", "--url", &u, "list-bindings"], limit);
    assert!(b.status.success(), "{}", b.stderr);
    let row = b.stdout.lines().find(|l| l.starts_with("logs ")).unwrap_or_else(|| panic!("{}", b.stdout));
    assert_eq!(row.split_whitespace().take(3).collect::<Vec<_>>(), ["logs", "audit", "queue"], "{}", b.stdout);
}
