//! `ringmq ctl export-definitions FILE` and `import-definitions FILE`:
//! RabbitMQ's JSON definitions over the native `Admin` frame. An export
//! is one answer; an import goes in parts on one connection (an `Admin`
//! argument holds at most 65535 bytes; `server::definitions::upload`).

use super::ctl::{connect, exchange, Answer, WITHIN};
use super::ConnArgs;
use bytes::BytesMut;
use ringmq::protocol::{decode, op, Cmd, Decoded, Frame, VERSION};
use serde_json::Value;
use std::io::{Read, Write};
use std::process::ExitCode;

/// Bytes of the document per part (the marker makes it one more; an
/// argument holds 65535).
const PART_BYTES: usize = 60_000;
/// The largest file ctl reads (the broker's `definitions_bytes_max` is
/// the real bound; this only keeps ctl from reading a disk into memory).
const FILE_BYTES_MAX: u64 = 1 << 30;
/// The largest answer read.
const ANSWER_BYTES_MAX: usize = 1 << 30;

pub fn export(c: &ConnArgs, file: &str) -> ExitCode {
    let json = match exchange(c, Cmd::Admin { command: op::ADMIN_EXPORT_DEFINITIONS, arg: "" }, WITHIN) {
        Ok(Answer::Json(j)) => j,
        Ok(Answer::Pong) => return fail("the broker answered Pong to an Admin request"),
        Err(e) => return fail(&e.to_string()),
    };
    let v: Value = match serde_json::from_str(&json) {
        Ok(v) => v,
        Err(e) => return fail(&format!("the broker answered with bad JSON: {e}")),
    };
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        return fail(e);
    }
    let text = serde_json::to_string_pretty(&v).unwrap_or(json) + "\n";
    let written = match file {
        "-" => std::io::stdout().write_all(text.as_bytes()),
        path => std::fs::write(path, text.as_bytes()),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("{file}: {e}")),
    }
}

pub fn import(c: &ConnArgs, file: &str, json: bool) -> ExitCode {
    let doc = match read(file) {
        Ok(d) => d,
        Err(e) => return fail(&e),
    };
    let answer = match upload(c, &doc) {
        Ok(a) => a,
        Err(e) => return fail(&e),
    };
    if let Some(e) = answer.get("error").and_then(Value::as_str) {
        return fail(e);
    }
    if json {
        println!("{answer}");
        return ExitCode::SUCCESS;
    }
    let n = |k: &str| answer[k].as_u64().unwrap_or(0);
    println!(
        "imported {file}: {} vhosts, {} users, {} permissions, {} exchanges, {} queues, {} bindings",
        n("vhosts"),
        n("users"),
        n("permissions"),
        n("exchanges"),
        n("queues"),
        n("bindings")
    );
    for note in answer["notes"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        println!("note: {note}");
    }
    ExitCode::SUCCESS
}

fn fail(why: &str) -> ExitCode {
    eprintln!("ringmq ctl: {why}");
    ExitCode::FAILURE
}

/// The file (`-`: standard input) as text.
fn read(file: &str) -> Result<String, String> {
    let mut bytes = Vec::new();
    let r = match file {
        "-" => std::io::stdin().take(FILE_BYTES_MAX).read_to_end(&mut bytes),
        path => std::fs::File::open(path).and_then(|f| f.take(FILE_BYTES_MAX).read_to_end(&mut bytes)),
    };
    r.map_err(|e| format!("{file}: {e}"))?;
    String::from_utf8(bytes).map_err(|_| format!("{file}: not UTF-8 text (a JSON document is)"))
}

/// `doc` cut into parts at character boundaries, each at most
/// `PART_BYTES` bytes (at least one part, maybe empty).
fn parts(doc: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = doc;
    while rest.len() > PART_BYTES {
        let mut cut = PART_BYTES;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (part, r) = rest.split_at(cut);
        out.push(part);
        rest = r;
    }
    out.push(rest);
    out
}

/// Hello, then each part as an `Admin` frame, each answered before the
/// next goes; the last answer.
fn upload(c: &ConnArgs, doc: &str) -> Result<Value, String> {
    let (addr, mut s) = connect(c, WITHIN)?;
    let mut out = BytesMut::new();
    Frame {
        request_id: 1,
        cmd: Cmd::Hello { version: VERSION, user: &c.user, password: &c.password, heartbeat_ms: None, vhost: None },
    }
    .encode(&mut out);
    let parts = parts(doc);
    let mut buf = Vec::new();
    let mut last = Value::Null;
    for (i, part) in parts.iter().enumerate() {
        let marker = if i + 1 == parts.len() { '.' } else { '+' };
        let arg = format!("{marker}{part}");
        let rid = u64::try_from(i).unwrap_or(u64::MAX).saturating_add(2);
        Frame { request_id: rid, cmd: Cmd::Admin { command: op::ADMIN_IMPORT_DEFINITIONS, arg: &arg } }
            .encode(&mut out);
        s.write_all(&out).and_then(|()| s.flush()).map_err(|e| format!("{addr}: {e}"))?;
        out.clear();
        last = answer(&mut s, &mut buf, rid).map_err(|e| format!("{addr}: {e}"))?;
        if last.get("error").is_some() {
            break;
        }
    }
    Ok(last)
}

/// Reads frames until the answer to `rid`.
fn answer(s: &mut Box<dyn super::ctl::Stream>, buf: &mut Vec<u8>, rid: u64) -> Result<Value, String> {
    let mut chunk = [0u8; 64 << 10];
    loop {
        loop {
            let (frame, used) = match decode(buf, ANSWER_BYTES_MAX).map_err(|e| format!("bad frame: {e}"))? {
                Decoded::Incomplete => break,
                Decoded::Frame(f, n) => (f, n),
            };
            let got = match frame.cmd {
                Cmd::AdminOk { json } if frame.request_id == rid => {
                    Some(serde_json::from_str(json).map_err(|e| format!("bad JSON in the answer: {e}")))
                }
                Cmd::Error { code, message, .. } => Some(Err(format!("broker error {code}: {message}"))),
                _ => None,
            };
            buf.drain(..used);
            if let Some(r) = got {
                return r;
            }
        }
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the broker closed the connection".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cut_at_character_boundaries_and_rejoin() {
        let doc: String = "é".repeat(PART_BYTES);
        let p = parts(&doc);
        assert!(p.len() >= 2 && p.iter().all(|x| x.len() <= PART_BYTES));
        assert_eq!(p.concat(), doc);
        assert_eq!(parts(""), vec![""]);
    }
}
