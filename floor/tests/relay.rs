//! ringmq-floor, the bare relay under the `ordinary` benchmark rows: each
//! mode forwards a publisher's bytes to its consumer unchanged and in
//! order, reads the consumer's acks, ends the pair when a side closes and
//! serves the next pair; a connection with a bad role byte costs only
//! itself. The real binary, over real sockets.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Relay {
    child: Child,
    addr: String,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(mode: &str, pairs: u32) -> Relay {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringmq-floor"))
        .args(["--mode", mode, "--pairs", &pairs.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.split_whitespace().find_map(|w| w.strip_prefix("addr=")).unwrap_or_else(|| panic!("{line}"));
    Relay { addr: addr.to_string(), child }
}

fn connect(addr: &str, role: u8) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[role]).unwrap();
    s
}

/// One pair: `n` messages of `len` bytes, each in `writes` writes, read
/// back whole and in order; an ack every 100.
fn relay_pair(addr: &str, n: usize, len: usize, writes: usize) {
    let mut c = connect(addr, b'C');
    let mut p = connect(addr, b'P');
    let mut got = vec![0u8; len];
    for i in 0..n {
        let msg: Vec<u8> = (0..len).map(|k| (i * 31 + k) as u8).collect();
        for part in msg.chunks(len.div_ceil(writes)) {
            p.write_all(part).unwrap();
        }
        c.read_exact(&mut got).unwrap();
        assert_eq!(got, msg, "message {i}");
        if i % 100 == 99 {
            c.write_all(&[1u8; 21]).unwrap();
        }
    }
    drop(p);
    // The publisher's close ends the pair: the consumer sees the end.
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{} bytes after the last message", rest.len());
}

fn relays_in_order(mode: &str) {
    let mut r = start(mode, 2);
    relay_pair(&r.addr, 1000, 75, 3);
    // The next pair on the same relay, one write a message.
    relay_pair(&r.addr, 300, 1083, 1);
    // Both pairs served: it exits by itself.
    assert!(r.child.wait().unwrap().success());
    let mut err = String::new();
    r.child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(err.matches("pair done").count(), 2, "{err}");
    assert!(err.contains("75000 B relayed"), "{err}");
}

#[test]
fn epoll_relays_in_order() {
    relays_in_order("epoll");
}

#[test]
fn blocking_relays_in_order() {
    relays_in_order("blocking");
}

#[test]
fn uring_relays_in_order() {
    relays_in_order("uring");
}

#[test]
fn a_bad_role_costs_only_its_connection() {
    let r = start("epoll", 1);
    let mut bad = TcpStream::connect(&r.addr).unwrap();
    bad.write_all(b"X").unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = [0u8; 1];
    // Closed by the relay: end of stream (or a reset).
    assert!(matches!(bad.read(&mut b), Ok(0) | Err(_)));
    relay_pair(&r.addr, 200, 75, 3);
}
