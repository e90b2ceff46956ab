//! `ringmq serve` as a child process (for the tests that kill it with
//! -9): started with two unpinned shards on ports 0, its ready line read.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Starts `ringmq serve --data-dir dir` with `extra` flags; the child and
/// its ready line (`ringmq ready native=... amqp=...`).
pub fn serve(dir: &std::path::Path, extra: &[&std::ffi::OsStr]) -> (Child, String) {
    // Every listener on a port of its own: brokers of tests running side
    // by side must not meet on the default metrics port.
    let metrics: &[&str] =
        if extra.iter().any(|a| *a == "--metrics-listen") { &[] } else { &["--metrics-listen", "127.0.0.1:0"] };
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringmq"))
        .args(["serve", "--cores", "2", "--no-pin", "--listen", "127.0.0.1:0", "--amqp-listen", "127.0.0.1:0"])
        .args(metrics)
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ringmq serve starts");
    let mut line = String::new();
    let out = child.stdout.take().expect("piped stdout");
    BufReader::new(out).read_line(&mut line).expect("ready line");
    (child, line)
}

/// The `key=` field of a ready line.
pub fn field(line: &str, key: &str) -> String {
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {key} in the ready line {line:?}"))
        .to_string()
}
