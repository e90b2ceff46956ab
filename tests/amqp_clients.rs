//! Other unmodified AMQP 0-9-1 clients against the AMQP front end, each
//! running the same scenario (default exchange: publish with confirms,
//! consume with prefetch and ack, nack with requeue, get, declare, purge,
//! delete, a 404 channel error) as a program of its own language:
//!
//! | client | program | installed by `./scripts/test.sh` into |
//! |---|---|---|
//! | Node's amqplib | `tests/node/scenario.js` | `tests/node/node_modules` (`npm ci`) |
//! | RabbitMQ's Java client | `tests/java/Scenario.java` | `target/client-deps/java` (jars) |
//! | amqp091-go | `tests/go/scenario.go` | `target/client-deps/gopath` (source) |
//!
//! Each scenario also runs over TLS (`amqps_listen`, client certificates
//! optional): with `AMQP_TLS_CA` it connects to `localhost` and verifies the
//! broker against that CA alone, logging in with PLAIN as guest; with
//! `AMQP_TLS_CERT` and `AMQP_TLS_KEY` too it presents a client certificate
//! (CN=guest) and logs in with EXTERNAL. Each program prints a
//! `transport: tls ...` line once its connection is open, which the tests
//! check along with the scenario's last line. A broker certificate that the
//! given CA did not sign fails the connection (Node, Go and Java each).
//!
//! A client whose dependencies are missing fails its test. A test is skipped
//! only when a person asked for it by name in `RINGMQ_SKIP_CLIENTS` (comma
//! separated: `node`, `java`, `go`), which `./scripts/test.sh` also reads and
//! names in its summary line; nothing on disk can make a test skip.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::pika::{finish, Run};
use common::tls::TestCerts;
use common::TestBroker;
use ringmq::server::tls::ClientCerts;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Compiling and running one scenario.
const SCENARIO: Duration = Duration::from_secs(90);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deps() -> PathBuf {
    root().join("target/client-deps")
}

/// True when `RINGMQ_SKIP_CLIENTS` names `client`: the run skips it on a
/// person's request, said on stderr and in `./scripts/test.sh`'s summary.
fn skip_requested(client: &str) -> bool {
    let list = std::env::var("RINGMQ_SKIP_CLIENTS").unwrap_or_default();
    let asked = list.split([',', ' ']).any(|c| c.trim() == client);
    if asked {
        eprintln!("SKIPPED the {client} client: RINGMQ_SKIP_CLIENTS={list} asks for it");
    }
    asked
}

/// Panics, telling how to install, unless `ready`.
fn require(ready: bool, what: &str) {
    assert!(
        ready,
        "{what} is missing: run ./scripts/install-clients.sh (./scripts/test.sh runs it), \
         or skip this client on purpose with RINGMQ_SKIP_CLIENTS"
    );
}

/// Runs `cmd` with AMQP_PORT set, bounded by [`SCENARIO`].
fn run(cmd: Command, amqp: std::net::SocketAddr) -> Run {
    run_env(cmd, amqp, Vec::new())
}

/// As [`run`], with `env` added to the program's environment.
fn run_env(mut cmd: Command, amqp: std::net::SocketAddr, env: Vec<(&str, OsString)>) -> Run {
    cmd.env("AMQP_PORT", amqp.port().to_string()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.envs(env);
    let child = cmd.spawn().unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    finish(child, SCENARIO)
}

/// How a scenario connects over TLS.
#[derive(Clone, Copy)]
enum Tls {
    /// Trusting `ca.pem`, PLAIN as guest.
    Plain,
    /// Trusting `ca.pem`, with the client certificate (CN=guest): EXTERNAL.
    External,
    /// Trusting only `other-ca.pem`, which did not sign the broker's
    /// certificate: the connection must fail.
    WrongCa,
}

/// The scenario's environment for `tls`.
fn tls_env(certs: &TestCerts, tls: Tls) -> Vec<(&'static str, OsString)> {
    let ca = match tls {
        Tls::WrongCa => "other-ca.pem",
        Tls::Plain | Tls::External => "ca.pem",
    };
    let mut env = vec![("AMQP_TLS_CA", certs.path(ca).into_os_string())];
    if let Tls::External = tls {
        env.push(("AMQP_TLS_CERT", certs.path("client.pem").into_os_string()));
        env.push(("AMQP_TLS_KEY", certs.path("client.key").into_os_string()));
    }
    env
}

/// A broker with every TLS listener on, client certificates optional on
/// AMQPS, and certificates for a client whose CN is `guest`.
fn tls_broker() -> (TestBroker, TestCerts, std::net::SocketAddr) {
    let certs = TestCerts::new("guest");
    let b = TestBroker::start_with(2, |c| {
        certs.configure(c);
        c.amqps_client_certs = ClientCerts::Optional;
    });
    let amqps = b.amqps.expect("the AMQPS listener is on");
    (b, certs, amqps)
}

/// Runs a scenario over TLS in each mode against one broker: the full
/// scenario with PLAIN, then with EXTERNAL, then a refused connection when
/// the broker's certificate is checked against the wrong CA.
fn over_tls(client: &str, last_line: &str, program: impl Fn() -> Command) {
    let (_b, certs, amqps) = tls_broker();
    for (tls, login) in [(Tls::Plain, "PLAIN"), (Tls::External, "EXTERNAL")] {
        let out = run_env(program(), amqps, tls_env(&certs, tls));
        scenario_ok(&out, &format!("{client} over TLS, login {login}"), last_line);
        let transport = out.stdout.lines().find(|l| l.starts_with("transport: ")).unwrap_or_default();
        assert!(
            transport.starts_with("transport: tls") && transport.ends_with(&format!("login {login}")),
            "{client}: not over TLS with {login}: {transport:?}\n{}",
            out.stdout
        );
        eprintln!("{client}: {transport}");
    }
    let out = run_env(program(), amqps, tls_env(&certs, Tls::WrongCa));
    assert_ne!(out.code, Some(0), "{client} trusted a broker that its CA did not sign\n{}", out.stdout);
    assert!(!out.stdout.contains(last_line) && !out.stdout.contains("transport: "), "{client}: {}", out.stdout);
    let why = out.stderr.to_lowercase();
    assert!(
        why.contains("certificate") || why.contains("certification path"),
        "{client} failed, but not on the broker's certificate\n{}",
        out.stderr
    );
    eprintln!("{client}, wrong CA: {}", out.stderr.lines().find(|l| l.contains("FAILED")).unwrap_or_default());
}

/// Runs a build step to its end; its output on failure.
fn build(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn scenario_ok(out: &Run, client: &str, last_line: &str) {
    out.assert_ok(client);
    assert!(out.stdout.contains(last_line), "{client} did not finish its scenario\n{}", out.stdout);
}

/// The Node scenario's command, once amqplib is installed.
fn node() -> impl Fn() -> Command {
    let dir = root().join("tests/node");
    require(dir.join("node_modules/amqplib/package.json").exists(), "tests/node/node_modules (amqplib)");
    move || {
        let mut cmd = Command::new("node");
        cmd.arg("scenario.js").current_dir(&dir);
        cmd
    }
}

#[test]
fn node_amqplib() {
    if skip_requested("node") {
        return;
    }
    let node = node();
    let b = TestBroker::start();
    scenario_ok(&run(node(), b.amqp), "node amqplib", "node amqplib scenario: ok");
}

#[test]
fn node_amqplib_over_tls() {
    if skip_requested("node") {
        return;
    }
    over_tls("node amqplib", "node amqplib scenario: ok", node());
}

fn jars(dir: &Path) -> Vec<PathBuf> {
    let mut jars: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| Some(e.ok()?.path())).filter(|p| p.extension().is_some_and(|x| x == "jar")).collect()
        })
        .unwrap_or_default();
    jars.sort();
    jars
}

/// Compiles the Java scenario into a temporary directory (kept alive by the
/// returned closure) and returns its command.
fn java() -> impl Fn() -> Command {
    let jars = jars(&deps().join("java"));
    let ready = jars.iter().any(|j| j.to_string_lossy().contains("amqp-client"));
    require(ready, "target/client-deps/java (amqp-client jar)");
    let classes = tempfile::tempdir().expect("temp dir");
    let cp = std::env::join_paths(&jars).expect("jar paths");
    let mut javac = Command::new("javac");
    javac.arg("-d").arg(classes.path()).arg("-cp").arg(&cp).arg(root().join("tests/java/Scenario.java"));
    build(javac, "javac tests/java/Scenario.java");
    let mut full = vec![classes.path().to_path_buf()];
    full.extend(jars);
    let class_path = std::env::join_paths(&full).expect("class path");
    move || {
        let _keep = &classes;
        let mut cmd = Command::new("java");
        cmd.arg("-cp").arg(&class_path).arg("Scenario");
        cmd
    }
}

#[test]
fn java_amqp_client() {
    if skip_requested("java") {
        return;
    }
    let java = java();
    let b = TestBroker::start();
    scenario_ok(&run(java(), b.amqp), "java amqp-client", "java amqp-client scenario: ok");
}

#[test]
fn java_amqp_client_over_tls() {
    if skip_requested("java") {
        return;
    }
    over_tls("java amqp-client", "java amqp-client scenario: ok", java());
}

/// Builds the Go scenario into a temporary directory (kept alive by the
/// returned closure) and returns its command.
fn go() -> impl Fn() -> Command {
    let gopath = deps().join("gopath");
    require(
        gopath.join("src/github.com/rabbitmq/amqp091-go/channel.go").exists(),
        "target/client-deps/gopath (amqp091-go)",
    );
    let bin = tempfile::tempdir().expect("temp dir");
    let exe = bin.path().join("scenario");
    let mut go = Command::new("go");
    // GOPATH mode: the library's source is on disk, no module download.
    go.args(["build", "-o"])
        .arg(&exe)
        .arg("scenario.go")
        .current_dir(root().join("tests/go"))
        .env("GO111MODULE", "off")
        .env("GOPATH", &gopath)
        .env("GOCACHE", deps().join("go-cache"))
        .env("GOFLAGS", "");
    build(go, "go build tests/go/scenario.go");
    move || {
        let _keep = &bin;
        Command::new(&exe)
    }
}

#[test]
fn go_amqp091() {
    if skip_requested("go") {
        return;
    }
    let go = go();
    let b = TestBroker::start();
    scenario_ok(&run(go(), b.amqp), "go amqp091-go", "go amqp091-go scenario: ok");
}

#[test]
fn go_amqp091_over_tls() {
    if skip_requested("go") {
        return;
    }
    over_tls("go amqp091-go", "go amqp091-go scenario: ok", go());
}
