//! The AMQP front end byte by byte, over std sockets: protocol header
//! mismatch, heartbeats both ways and dead-peer detection, framing errors.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use bytes::{BufMut, BytesMut};
use common::TestBroker;
use ringmq::protocol::amqp::frame::{self, Decoded, FrameWriter};
use ringmq::protocol::amqp::method::{self, id};
use ringmq::protocol::amqp::wire::{put_longstr, put_shortstr, Reader};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

/// What arrived: a frame (kind, channel, payload) or the end of the stream.
#[derive(Debug)]
enum Got {
    Frame(u8, u16, Vec<u8>),
    Closed,
    Timeout,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        Raw { s, buf: Vec::new() }
    }

    fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).expect("write");
    }

    fn next(&mut self, within: Duration) -> Got {
        let end = Instant::now() + within;
        loop {
            if let Ok(Decoded::Frame(f, n)) = frame::decode(&self.buf, 1 << 20) {
                let got = Got::Frame(f.kind, f.channel, f.payload.to_vec());
                self.buf.drain(..n);
                return got;
            }
            if Instant::now() >= end {
                return Got::Timeout;
            }
            let mut tmp = [0u8; 4096];
            match self.s.read(&mut tmp) {
                Ok(0) => return Got::Closed,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return Got::Closed,
            }
        }
    }

    /// The next method frame (skipping heartbeats): its id and arguments.
    fn method(&mut self) -> ((u16, u16), Vec<u8>) {
        loop {
            match self.next(Duration::from_secs(5)) {
                Got::Frame(frame::METHOD, _, p) => {
                    let mut r = Reader::new(&p);
                    let mid = (r.u16().unwrap(), r.u16().unwrap());
                    return (mid, r.rest().to_vec());
                }
                Got::Frame(frame::HEARTBEAT, _, _) => continue,
                other => panic!("expected a method, got {other:?}"),
            }
        }
    }

    fn put_method(&mut self, channel: u16, mid: (u16, u16), f: impl FnOnce(&mut BytesMut)) {
        let mut b = BytesMut::new();
        method::put(&mut b, channel, mid, f);
        self.send(&b);
    }

    /// Channel 1, opened, with the queue `name` declared on it.
    fn channel_with_queue(&mut self, name: &str) {
        self.put_method(1, id::CHANNEL_OPEN, |b| put_shortstr(b, ""));
        assert_eq!(self.method().0, id::CHANNEL_OPEN_OK);
        self.put_method(1, id::QUEUE_DECLARE, |b| {
            b.put_u16(0);
            put_shortstr(b, name);
            b.put_u8(0);
            b.put_u32(0);
        });
        assert_eq!(self.method().0, id::QUEUE_DECLARE_OK);
    }

    /// Header, start-ok (guest), tune-ok with `heartbeat`, open.
    fn handshake(addr: SocketAddr, heartbeat: u16) -> Raw {
        let mut c = Raw::connect(addr);
        c.send(frame::PROTOCOL_HEADER);
        assert_eq!(c.method().0, id::CONNECTION_START);
        c.put_method(0, id::CONNECTION_START_OK, |b| {
            b.put_u32(0);
            put_shortstr(b, "PLAIN");
            put_longstr(b, b"\0guest\0guest");
            put_shortstr(b, "en_US");
        });
        let (mid, args) = c.method();
        assert_eq!(mid, id::CONNECTION_TUNE);
        let mut r = Reader::new(&args);
        let (_ch_max, frame_max, hb) = (r.u16().unwrap(), r.u32().unwrap(), r.u16().unwrap());
        assert!(frame_max >= 4096 && hb > 0, "tune proposes a frame_max and a heartbeat");
        c.put_method(0, id::CONNECTION_TUNE_OK, |b| {
            b.put_u16(0);
            b.put_u32(frame_max);
            b.put_u16(heartbeat);
        });
        c.put_method(0, id::CONNECTION_OPEN, |b| {
            put_shortstr(b, "/");
            put_shortstr(b, "");
            b.put_u8(0);
        });
        assert_eq!(c.method().0, id::CONNECTION_OPEN_OK);
        c
    }
}

#[test]
fn wrong_protocol_header_gets_ours_and_a_close() {
    let b = TestBroker::start();
    let mut c = Raw::connect(b.amqp);
    c.send(b"AMQP\x00\x00\x08\x00");
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        let mut tmp = [0u8; 64];
        match c.s.read(&mut tmp) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&tmp[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    assert_eq!(got, frame::PROTOCOL_HEADER, "the broker answers with the version it speaks, then closes");
}

#[test]
fn heartbeats_both_ways_and_dead_peer_detected() {
    let b = TestBroker::start();
    // A live peer that sends heartbeats stays connected past 2 intervals.
    let mut live = Raw::handshake(b.amqp, 1);
    let start = Instant::now();
    let mut beats = 0;
    while start.elapsed() < Duration::from_millis(3500) {
        match live.next(Duration::from_millis(400)) {
            Got::Frame(frame::HEARTBEAT, 0, _) => beats += 1,
            Got::Timeout => {}
            other => panic!("live peer: unexpected {other:?}"),
        }
        let mut hb = BytesMut::new();
        frame::put_heartbeat(&mut hb);
        live.send(&hb);
    }
    assert!(beats >= 3, "the broker sends heartbeats (every half interval): {beats} in 3.5 s");

    // A silent peer is closed after two missed intervals.
    let mut dead = Raw::handshake(b.amqp, 1);
    let start = Instant::now();
    loop {
        match dead.next(Duration::from_secs(6)) {
            Got::Frame(frame::HEARTBEAT, ..) => continue,
            Got::Closed => break,
            other => panic!("silent peer: expected a close, got {other:?}"),
        }
    }
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(5), "closed after {took:?}");
}

#[test]
fn framing_errors_close_the_connection() {
    let b = TestBroker::start();
    // Bad frame end octet: 501.
    let mut c = Raw::handshake(b.amqp, 0);
    let mut f = BytesMut::new();
    let w = FrameWriter::method(&mut f, 1, id::CHANNEL_OPEN);
    put_shortstr(&mut f, "");
    w.finish(&mut f);
    let last = f.len() - 1;
    f[last] = 0;
    c.send(&f);
    let (mid, args) = c.method();
    assert_eq!(mid, id::CONNECTION_CLOSE);
    assert_eq!(Reader::new(&args).u16().unwrap(), 501);

    // A channel method before channel.open: 504.
    let mut c = Raw::handshake(b.amqp, 0);
    c.put_method(3, id::BASIC_QOS, |b| {
        b.put_u32(0);
        b.put_u16(1);
        b.put_u8(0);
    });
    let (mid, args) = c.method();
    assert_eq!(mid, id::CONNECTION_CLOSE);
    assert_eq!(Reader::new(&args).u16().unwrap(), 504);
    c.put_method(0, id::CONNECTION_CLOSE_OK, |_| ());
    assert!(matches!(c.next(Duration::from_secs(3)), Got::Closed));

    // A channel method on channel 0: 503.
    let mut c = Raw::handshake(b.amqp, 0);
    c.put_method(0, id::BASIC_QOS, |b| {
        b.put_u32(0);
        b.put_u16(1);
        b.put_u8(0);
    });
    let (mid, args) = c.method();
    assert_eq!(mid, id::CONNECTION_CLOSE);
    assert_eq!(Reader::new(&args).u16().unwrap(), 503);

    // A method whose arguments are cut short: 502.
    let mut c = Raw::handshake(b.amqp, 0);
    c.put_method(1, id::CHANNEL_OPEN, |b| put_shortstr(b, ""));
    assert_eq!(c.method().0, id::CHANNEL_OPEN_OK);
    c.put_method(1, id::QUEUE_DECLARE, |b| {
        b.put_u16(0);
        b.put_u8(200); // a short string of 200 bytes that is not there
    });
    let (mid, args) = c.method();
    assert_eq!(mid, id::CONNECTION_CLOSE);
    assert_eq!(Reader::new(&args).u16().unwrap(), 502);

    // A body frame without basic.publish: 505.
    let mut c = Raw::handshake(b.amqp, 0);
    c.put_method(1, id::CHANNEL_OPEN, |b| put_shortstr(b, ""));
    assert_eq!(c.method().0, id::CHANNEL_OPEN_OK);
    let mut f = BytesMut::new();
    frame::put_body(&mut f, 1, b"stray", 4096);
    c.send(&f);
    let (mid, args) = c.method();
    assert_eq!(mid, id::CONNECTION_CLOSE);
    assert_eq!(Reader::new(&args).u16().unwrap(), 505);
}

/// A publish whose method frame ends one read and whose content starts the
/// next still reaches its queue after the batch of the first read went out,
/// and so does one that changes persistence without changing its target.
/// A basic.publish on channel 1 to the default exchange, routed to `queue`.
fn put_publish(b: &mut BytesMut, queue: &str) {
    method::put(b, 1, id::BASIC_PUBLISH, |b| {
        b.put_u16(0);
        put_shortstr(b, "");
        put_shortstr(b, queue);
        b.put_u8(0);
    })
}

#[test]
fn publishes_split_across_reads_all_arrive() {
    let b = TestBroker::start();
    let mut c = Raw::handshake(b.amqp, 0);
    c.channel_with_queue("split");
    let publish = |b: &mut BytesMut| put_publish(b, "split");
    // Transient, transient, persistent (delivery-mode 2), transient.
    let props: [&[u8]; 4] = [&[0, 0], &[0, 0], &[0x10, 0, 2], &[0, 0]];
    let mut f = BytesMut::new();
    for (i, p) in props.iter().enumerate() {
        if i == 0 {
            publish(&mut f);
        }
        c.send(&f);
        std::thread::sleep(Duration::from_millis(30));
        f.clear();
        frame::put_content_header(&mut f, 1, 60, 3, p);
        frame::put_body(&mut f, 1, b"abc", 4096);
        if i + 1 < props.len() {
            publish(&mut f);
        }
    }
    c.send(&f);
    c.put_method(1, id::QUEUE_DECLARE, |b| {
        b.put_u16(0);
        put_shortstr(b, "split");
        b.put_u8(1); // passive
        b.put_u32(0);
    });
    let (mid, args) = c.method();
    assert_eq!(mid, id::QUEUE_DECLARE_OK, "{}", String::from_utf8_lossy(&args));
    let mut r = Reader::new(&args);
    r.shortstr().unwrap();
    assert_eq!(r.u32().unwrap(), 4, "messages in the queue");
}

/// A mandatory publish that reaches no queue in a transaction is returned
/// at commit, before commit-ok (RabbitMQ's order); methods pipelined in
/// one write are answered in order: select-ok, commit-ok, rollback-ok.
#[test]
fn tx_returns_come_before_commit_ok_and_replies_keep_their_order() {
    let b = TestBroker::start();
    let mut c = Raw::handshake(b.amqp, 0);
    c.put_method(1, id::CHANNEL_OPEN, |b| put_shortstr(b, ""));
    assert_eq!(c.method().0, id::CHANNEL_OPEN_OK);
    let mut f = BytesMut::new();
    method::put(&mut f, 1, id::TX_SELECT, |_| ());
    for key in ["tx-nowhere", "tx-nowhere-2"] {
        method::put(&mut f, 1, id::BASIC_PUBLISH, |b| {
            b.put_u16(0);
            put_shortstr(b, "");
            put_shortstr(b, key);
            b.put_u8(1); // mandatory
        });
        frame::put_content_header(&mut f, 1, 60, 3, &[0, 0]);
        frame::put_body(&mut f, 1, &key.as_bytes()[..3], 4096);
    }
    method::put(&mut f, 1, id::TX_COMMIT, |_| ());
    method::put(&mut f, 1, id::TX_ROLLBACK, |_| ());
    c.send(&f);
    assert_eq!(c.method().0, id::TX_SELECT_OK);
    for _ in 0..2 {
        let (mid, args) = c.method();
        assert_eq!(mid, id::BASIC_RETURN, "{}", String::from_utf8_lossy(&args));
        assert_eq!(Reader::new(&args).u16().unwrap(), 312);
        assert!(matches!(c.next(Duration::from_secs(5)), Got::Frame(frame::HEADER, 1, _)));
        assert!(matches!(c.next(Duration::from_secs(5)), Got::Frame(frame::BODY, 1, ref b) if b == b"tx-"));
    }
    assert_eq!(c.method().0, id::TX_COMMIT_OK);
    assert_eq!(c.method().0, id::TX_ROLLBACK_OK);
}

/// Publishes that reach the broker in one write after an idle spell (an
/// unbatched client's burst: the broker handles the first one alone, then
/// the rest of the chunk) and in one large write (handled whole) are all
/// delivered, in the order sent, to a consumer on the same connection.
#[test]
fn bursts_after_an_idle_spell_are_delivered_whole_and_in_order() {
    let b = TestBroker::start();
    let mut c = Raw::handshake(b.amqp, 0);
    c.channel_with_queue("burst");
    c.put_method(1, id::BASIC_CONSUME, |b| {
        b.put_u16(0);
        put_shortstr(b, "burst");
        put_shortstr(b, "tag");
        b.put_u8(0b10); // no-ack
        b.put_u32(0);
    });
    assert_eq!(c.method().0, id::BASIC_CONSUME_OK);
    let burst = |from: usize, n: usize, size: usize| {
        let mut f = BytesMut::new();
        for i in from..from + n {
            put_publish(&mut f, "burst");
            let mut body = format!("{i:08}").into_bytes();
            body.resize(size, b'.');
            frame::put_content_header(&mut f, 1, 60, body.len() as u64, &[0, 0]);
            frame::put_body(&mut f, 1, &body, 4096);
        }
        f
    };
    // Small bursts after pauses (the first publish alone, then the rest),
    // then one write of about 100 KiB (whole).
    let mut sent = 0;
    for n in [1, 2, 7, 20] {
        std::thread::sleep(Duration::from_millis(30));
        c.send(&burst(sent, n, 100));
        sent += n;
    }
    std::thread::sleep(Duration::from_millis(30));
    c.send(&burst(sent, 100, 1000));
    sent += 100;
    let mut got = Vec::new();
    while got.len() < sent {
        let (mid, _) = c.method();
        assert_eq!(mid, id::BASIC_DELIVER);
        assert!(matches!(c.next(Duration::from_secs(5)), Got::Frame(frame::HEADER, 1, _)));
        match c.next(Duration::from_secs(5)) {
            Got::Frame(frame::BODY, 1, p) => got.push(String::from_utf8_lossy(&p[..8]).into_owned()),
            other => panic!("expected a body, got {other:?}"),
        }
    }
    let want: Vec<String> = (0..sent).map(|i| format!("{i:08}")).collect();
    assert_eq!(got, want, "every message, in the order sent");
}
