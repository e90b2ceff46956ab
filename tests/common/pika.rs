//! Runs the Python pika scripts in `tests/pika/` against a test broker,
//! with the venv `./scripts/test.sh` creates. A missing venv is a failure,
//! not a skip: the AMQP front end is only tested through real clients.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What a script printed and how it ended (`None`: killed at its timeout).
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn assert_ok(&self, what: &str) {
        assert_eq!(self.code, Some(0), "{what} failed\n--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr);
    }
}

pub fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let py = root.join(".venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: the AMQP tests run pika from a venv; run ./scripts/test.sh (it creates .venv with pika)",
        py.display()
    );
    py
}

pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/pika").join(name)
}

/// Starts `tests/pika/<name>` with AMQP_PORT set (and `env`).
pub fn spawn(name: &str, amqp: SocketAddr, env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(python());
    cmd.arg(script(name))
        .env("AMQP_PORT", amqp.port().to_string())
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("start python")
}

/// Waits for a child up to `timeout`, killing it then; collects its output.
pub fn finish(mut child: Child, timeout: Duration) -> Run {
    let deadline = Instant::now() + timeout;
    let code = loop {
        match child.try_wait().expect("wait for python") {
            Some(st) => break st.code(),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    Run { code, stdout, stderr }
}

/// Runs a script to its end (at most `timeout`).
pub fn run(name: &str, amqp: SocketAddr, env: &[(&str, &str)], timeout: Duration) -> Run {
    finish(spawn(name, amqp, env), timeout)
}
