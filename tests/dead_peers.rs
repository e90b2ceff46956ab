//! Dead and stuck peers (issue 14 item 6): native heartbeats negotiated in
//! Hello/HelloOk, a silent peer closed after two intervals with its unacked
//! messages redelivered, the client library beating when idle, and a peer
//! that stops reading closed after send_timeout_ms. Real broker, real sockets.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use bytes::BytesMut;
use common::{deliveries, run_local, NoFrame, Raw, RawFrame, TestBroker, Witnesses, STEP};
use ringmq::protocol::{Cmd, ErrorCode, Frame, VERSION};
use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Connects and logs in asking for `heartbeat_ms`; returns the negotiated value.
fn hello_with_heartbeat(r: &mut Raw, heartbeat_ms: u32) -> u32 {
    let cmd = Cmd::Hello {
        version: VERSION,
        user: "guest",
        password: "guest",
        heartbeat_ms: Some(heartbeat_ms),
        vhost: None,
    };
    r.send(cmd);
    match r.recv().frame().cmd {
        Cmd::HelloOk(h) => h.heartbeat_ms.expect("a Hello with a heartbeat gets one back"),
        other => panic!("expected HelloOk, got {other:?}"),
    }
}

fn beat() -> Vec<u8> {
    let mut b = BytesMut::new();
    Frame { request_id: 0, cmd: Cmd::Pong }.encode(&mut b);
    b.to_vec()
}

fn is_beat(f: &RawFrame) -> bool {
    matches!(f.frame(), Frame { request_id: 0, cmd: Cmd::Pong })
}

#[test]
fn silent_native_peer_is_closed_and_its_unacked_redelivered() {
    let b = TestBroker::start_with(1, |c| c.heartbeat_ms = 300);
    let mut w = Witnesses::open(&b);
    let (mut p, _) = Raw::hello(b.native);
    p.declare("hb");
    p.publish_confirmed("hb", &[b"one"]);

    // The doomed consumer takes the message and then goes silent.
    let mut dead = Raw::connect(b.native);
    assert_eq!(hello_with_heartbeat(&mut dead, 300), 300);
    let (cid, mut got) = dead.subscribe("hb", 1);
    if got.is_empty() {
        got = dead.expect_deliveries(cid, 1);
    }
    assert_eq!(got[0].body, b"one");
    // The second consumer beats and waits.
    let mut live = Raw::connect(b.native);
    assert_eq!(hello_with_heartbeat(&mut live, 300), 300);
    let (live_cid, early) = live.subscribe("hb", 1);
    assert!(early.is_empty(), "the message is the silent consumer's");

    let silent_since = Instant::now();
    let (mut dead_beats, mut live_beats) = (0, 0);
    let mut dead_error = None;
    let mut redelivered = None;
    while silent_since.elapsed() < Duration::from_secs(4) && (dead_error.is_none() || redelivered.is_none()) {
        live.write(&beat());
        match live.try_recv(Duration::from_millis(50)) {
            Ok(f) if is_beat(&f) => live_beats += 1,
            Ok(f) => redelivered = Some(deliveries(&f)),
            Err(NoFrame::Timeout) => {}
            Err(e) => panic!("the live consumer lost its connection: {e:?}"),
        }
        if dead_error.is_none() {
            match dead.try_recv(Duration::from_millis(50)) {
                Ok(f) if is_beat(&f) => dead_beats += 1,
                Ok(f) => dead_error = Some((f, silent_since.elapsed())),
                Err(NoFrame::Timeout) => {}
                Err(e) => panic!("closed without an error: {e:?}"),
            }
        }
    }
    let (f, after) = dead_error.expect("the silent peer was never closed");
    match f.frame().cmd {
        Cmd::Error { code, message, .. } => {
            assert_eq!(ErrorCode::from_u16(code), Some(ErrorCode::HeartbeatTimeout), "{message}");
            assert!(message.contains("heartbeat"), "{message}");
        }
        other => panic!("expected HeartbeatTimeout, got {other:?}"),
    }
    assert!(after >= Duration::from_millis(550) && after < Duration::from_millis(2500), "closed after {after:?}");
    dead.expect_closed();
    assert!(dead_beats >= 1, "the broker beats to an idle peer");
    assert!(live_beats >= 1, "the broker beats to the live peer too");
    let d = redelivered.expect("the silent consumer's message went to the live one");
    assert_eq!((d[0].consumer_id, d[0].body.as_slice(), d[0].redelivered), (live_cid, &b"one"[..], true));
    live.ack(live_cid, &[(d[0].tag, d[0].tag)]);
    live.ping();
    w.check();
}

#[test]
fn client_library_beats_when_idle() {
    let b = TestBroker::start_with(1, |c| c.heartbeat_ms = 300);
    let opts = ringmq::client::ClientOptions { url: b.url(), heartbeat_ms: 60_000, ..Default::default() };

    // Blocking client: its beat thread keeps an idle connection alive
    // past several intervals.
    let mut c = ringmq::client::blocking::Client::connect(opts.clone()).expect("blocking connect");
    assert_eq!(c.info().heartbeat_ms, 300, "the broker's lower heartbeat wins");
    std::thread::sleep(Duration::from_millis(1500));
    c.declare("idle-blocking", false).expect("still connected after 5 intervals of idleness");

    // Async client: the same with its beat task.
    let o = opts.clone();
    run_local(Duration::from_secs(20), move || async move {
        let c = ringmq::client::Client::connect(o).await.expect("async connect");
        assert_eq!(c.info().heartbeat_ms, 300);
        glommio::timer::sleep(Duration::from_millis(1500)).await;
        c.declare("idle-async", false).await.expect("still connected after 5 intervals of idleness");
        c.close().await;
    });

    // A client that wants no heartbeat gets none and is never timed out.
    let quiet = ringmq::client::ClientOptions { heartbeat_ms: 0, ..opts };
    let mut c = ringmq::client::blocking::Client::connect(quiet).expect("connect without heartbeat");
    assert_eq!(c.info().heartbeat_ms, 0);
    std::thread::sleep(Duration::from_millis(800));
    c.declare("idle-none", false).expect("no heartbeat, no timeout");
}

/// A raw socket with a tiny receive buffer, logged in: the broker's
/// writes to it stall as soon as the kernel buffers fill.
fn small_window_client(addr: std::net::SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect_timeout(&addr.into(), STEP).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(STEP)).unwrap();
    s
}

#[test]
fn peer_that_stops_reading_is_closed_after_send_timeout() {
    let b = TestBroker::start_with(1, |c| c.send_timeout_ms = 500);
    let (mut p, _) = Raw::hello(b.native);
    p.declare("sink");
    // 24 MiB of messages: far more than the socket buffers on both ends hold.
    let body = vec![b'x'; 64 << 10];
    for _ in 0..24 {
        let batch: Vec<&[u8]> = (0..16).map(|_| body.as_slice()).collect();
        p.publish_confirmed("sink", &batch);
    }

    let mut stuck = Raw::from_stream(small_window_client(b.native));
    stuck.send(Cmd::Hello { version: VERSION, user: "guest", password: "guest", heartbeat_ms: None, vhost: None });
    assert!(matches!(stuck.recv().frame().cmd, Cmd::HelloOk(_)));
    let cid = stuck.consumer_id();
    stuck.send(Cmd::Subscribe { consumer_id: cid, prefetch: 1000, queue: "sink", priority: 0, origin: false });
    let subscribed = Instant::now();
    // ...and it never reads again. It was handed about `outbox_bytes_max`
    // of the queue (the rest stays for others); those come back, marked
    // redelivered, to a consumer that reads, once the broker gives up on it.
    let (mut next, _) = Raw::hello(b.native);
    let (next_cid, mut early) = next.subscribe("sink", 1);
    let mut fresh = 0;
    let first = loop {
        let d = if early.is_empty() { next.expect_deliveries(next_cid, 1) } else { std::mem::take(&mut early) };
        if d[0].redelivered {
            break d;
        }
        fresh += 1;
        assert!(fresh < 24 * 16, "the stuck consumer's messages were never requeued");
        next.ack(next_cid, &[(d[0].tag, d[0].tag)]);
    };
    let took = subscribed.elapsed();
    assert!(fresh < 24 * 16 - 64, "the stuck consumer held {} messages", 24 * 16 - fresh);
    assert!(took >= Duration::from_millis(450), "released after {took:?}, before send_timeout_ms");
    // The stuck socket ends after what the kernel buffered.
    let end = Instant::now() + Duration::from_secs(10);
    let mut tmp = vec![0u8; 1 << 20];
    loop {
        assert!(Instant::now() < end, "the stuck socket was not closed");
        match stuck.s.read(&mut tmp) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the stuck socket was not closed")
            }
            Err(_) => break,
        }
    }
    // The consumer that reads goes on: the next requeued message follows its ack.
    next.ack(next_cid, &[(first[0].tag, first[0].tag)]);
    let more = next.expect_deliveries(next_cid, 1);
    assert!(more[0].redelivered && more[0].body.len() == body.len());
    p.ping();
}

/// The kernel timer of the broker's side of the connection from
/// `client`'s local port to `server`: `tr` in /proc/net/tcp (2 = keepalive).
fn server_side_timer(server: std::net::SocketAddr, client: &TcpStream) -> u8 {
    let client_port = client.local_addr().unwrap().port();
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let port_of = |addr: &str| u16::from_str_radix(addr.rsplit(':').next().unwrap_or(""), 16).ok();
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 5 && port_of(f[1]) == Some(server.port()) && port_of(f[2]) == Some(client_port) {
            let tr = f[5].split(':').next().unwrap_or("");
            return u8::from_str_radix(tr, 16).expect("timer field");
        }
    }
    panic!("no broker-side socket for client port {client_port} in /proc/net/tcp")
}

#[test]
fn accepted_sockets_have_tcp_keepalive() {
    for (idle_ms, want) in [(5_000, 2), (0, 0)] {
        let b = TestBroker::start_with(1, |c| c.tcp_keepalive_idle_ms = idle_ms);
        let (r, _) = Raw::hello(b.native);
        let amqp = TcpStream::connect_timeout(&b.amqp, STEP).unwrap();
        let http = TcpStream::connect_timeout(&b.metrics, STEP).unwrap();
        // Let the broker accept the last two.
        std::thread::sleep(Duration::from_millis(100));
        for (what, addr, s) in [("native", b.native, &r.s), ("amqp", b.amqp, &amqp), ("http", b.metrics, &http)] {
            let tr = server_side_timer(addr, s);
            assert_eq!(tr, want, "{what}: keepalive timer with tcp_keepalive_idle_ms = {idle_ms}");
        }
    }
}
