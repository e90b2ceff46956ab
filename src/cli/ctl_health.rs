//! `ringmq ctl status`, `ping` and `await-startup`: is the broker up, and
//! has it finished starting. Same connection and output conventions as the
//! rest of `ctl` (an aligned table, or the broker's JSON with `--json`;
//! exit 1 on failure with the reason on stderr).

use super::ctl::{exchange, table, Answer, CtlCommand, Failure, Within};
use super::ConnArgs;
use ringmq::protocol::{op, Cmd, ErrorCode};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The longest `--timeout` await-startup takes (a day).
const AWAIT_TIMEOUT_MAX_S: f64 = 86_400.0;
/// Pause between two attempts of await-startup.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// Each attempt of await-startup waits this long at most to connect (a
/// broker that is not there refuses at once; a dropped SYN must not eat
/// the whole timeout).
const ATTEMPT_CONNECT: Duration = Duration::from_secs(2);

pub fn run(conn: &ConnArgs, cmd: &CtlCommand, json: bool) -> ExitCode {
    let done = match cmd {
        CtlCommand::Status => status(conn, json),
        CtlCommand::Ping => ping(conn, json),
        CtlCommand::AwaitStartup { timeout } => await_startup(conn, json, *timeout),
        _ => Err("not a health command".to_string()),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringmq ctl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The broker's status JSON, asked once.
fn ask_status(conn: &ConnArgs, within: Within) -> Result<Value, Failure> {
    match exchange(conn, Cmd::Admin { command: op::ADMIN_STATUS, arg: "" }, within)? {
        Answer::Json(j) => serde_json::from_str(&j)
            .map_err(|e| Failure::Unreachable(format!("the broker answered with bad JSON: {e}"))),
        Answer::Pong => Err(Failure::Unreachable("the broker answered Pong to an Admin request".into())),
    }
}

fn status(conn: &ConnArgs, json: bool) -> Result<(), String> {
    let within = Within { connect: Duration::from_secs(5), answer: Duration::from_secs(30) };
    let v = ask_status(conn, within).map_err(|e| e.to_string())?;
    print_status(&v, json);
    Ok(())
}

fn print_status(v: &Value, json: bool) {
    if json {
        println!("{v}");
        return;
    }
    let mut row = v.clone();
    let alarms: Vec<&str> = v["alarms"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    row["alarms"] = if alarms.is_empty() { "none".into() } else { alarms.join(",").into() };
    let cols = [
        "node",
        "ready",
        "uptime_ms",
        "shards",
        "connections",
        "channels",
        "queues",
        "exchanges",
        "alarms",
        "sched_late_1ms",
    ];
    print!("{}", table(&cols, &[row]));
    let listeners: Vec<Value> = v["listeners"].as_array().cloned().unwrap_or_default();
    println!();
    print!("{}", table(&["protocol", "address"], &listeners));
}

/// Hello and a Ping; the round trip.
fn ping(conn: &ConnArgs, json: bool) -> Result<(), String> {
    let within = Within { connect: Duration::from_secs(5), answer: Duration::from_secs(10) };
    let start = Instant::now();
    match exchange(conn, Cmd::Ping, within).map_err(|e| e.to_string())? {
        Answer::Pong => {}
        Answer::Json(_) => return Err("the broker answered a Ping with AdminOk".into()),
    }
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    if json {
        println!("{}", json!({ "status": "ok", "url": conn.url, "rtt_ms": ms }));
    } else {
        println!("Ping succeeded: {} answered in {ms:.1} ms", conn.url);
    }
    Ok(())
}

/// Asks for the status until it says ready or `timeout_s` runs out. A
/// refused login is final (retrying cannot fix it); anything else (no
/// listener yet, a connection the broker does not serve yet, a start
/// still under way) is tried again.
fn await_startup(conn: &ConnArgs, json: bool, timeout_s: f64) -> Result<(), String> {
    if !(timeout_s > 0.0 && timeout_s <= AWAIT_TIMEOUT_MAX_S) {
        return Err(format!("--timeout must be above 0 and at most {AWAIT_TIMEOUT_MAX_S} seconds, got {timeout_s}"));
    }
    let deadline = Instant::now() + Duration::from_secs_f64(timeout_s);
    let mut last = String::from("no attempt finished");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("the broker was not ready within {timeout_s} s; last: {last}"));
        }
        // A connection the broker has accepted but not yet served waits
        // in its backlog: the answer may take until the deadline.
        let within = Within { connect: ATTEMPT_CONNECT.min(left), answer: left };
        match ask_status(conn, within) {
            Ok(v) if v["ready"] == true => {
                if json {
                    println!("{v}");
                } else {
                    println!("{} is ready", v["node"].as_str().unwrap_or("the broker"));
                }
                return Ok(());
            }
            Ok(_) => last = "the broker answers, and is still starting".into(),
            Err(Failure::Broker { code, message }) if is_final(code) => {
                return Err(format!("broker error {code}: {message}"));
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(RETRY_PAUSE.min(deadline.saturating_duration_since(Instant::now())));
    }
}

/// A refusal that another attempt would get again.
fn is_final(code: u16) -> bool {
    matches!(
        ErrorCode::from_u16(code),
        Some(ErrorCode::AuthFailed | ErrorCode::AccessRefused | ErrorCode::VhostNotFound)
    )
}
