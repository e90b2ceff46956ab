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
//! A client whose dependencies are missing fails its test. A test is skipped
//! only when a person asked for it by name in `RINGMQ_SKIP_CLIENTS` (comma
//! separated: `node`, `java`, `go`), which `./scripts/test.sh` also reads and
//! names in its summary line; nothing on disk can make a test skip.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::pika::{finish, Run};
use common::TestBroker;
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
fn run(mut cmd: Command, amqp: std::net::SocketAddr) -> Run {
    cmd.env("AMQP_PORT", amqp.port().to_string()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap_or_else(|e| panic!("start {cmd:?}: {e}"));
    finish(child, SCENARIO)
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

#[test]
fn node_amqplib() {
    if skip_requested("node") {
        return;
    }
    let dir = root().join("tests/node");
    require(dir.join("node_modules/amqplib/package.json").exists(), "tests/node/node_modules (amqplib)");
    let b = TestBroker::start();
    let mut cmd = Command::new("node");
    cmd.arg("scenario.js").current_dir(&dir);
    scenario_ok(&run(cmd, b.amqp), "node amqplib", "node amqplib scenario: ok");
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

#[test]
fn java_amqp_client() {
    if skip_requested("java") {
        return;
    }
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
    let b = TestBroker::start();
    let mut cmd = Command::new("java");
    cmd.arg("-cp").arg(std::env::join_paths(&full).expect("class path")).arg("Scenario");
    scenario_ok(&run(cmd, b.amqp), "java amqp-client", "java amqp-client scenario: ok");
}

#[test]
fn go_amqp091() {
    if skip_requested("go") {
        return;
    }
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
    let b = TestBroker::start();
    scenario_ok(&run(Command::new(&exe), b.amqp), "go amqp091-go", "go amqp091-go scenario: ok");
}
