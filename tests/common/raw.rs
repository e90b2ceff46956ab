//! Raw protocol connections over std sockets: exact bytes written, whole
//! frames read with timeouts, for byte-exact and hostile-input tests; and
//! the witnesses that check other clients were not harmed.

use super::*;

/// One whole frame as received, decoded on demand.
#[derive(Clone)]
pub struct RawFrame(Vec<u8>);

impl RawFrame {
    pub fn frame(&self) -> Frame<'_> {
        match protocol::decode(&self.0, usize::MAX) {
            Ok(Decoded::Frame(f, n)) if n == self.0.len() => f,
            _ => unreachable!("a RawFrame holds exactly one valid frame"),
        }
    }

    pub fn request_id(&self) -> u64 {
        self.frame().request_id
    }
}

impl std::fmt::Debug for RawFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.frame())
    }
}

/// How a read ended without a frame.
#[derive(Debug)]
pub enum NoFrame {
    Timeout,
    /// Orderly close (read returned 0).
    Eof,
    /// Connection reset or another socket error: also a close.
    Broken(std::io::Error),
}

/// Bytes the broker sent that did not decode: always a test failure.
const RECV_FRAME_MAX: usize = 64 << 20;

/// A raw connection: writes exact bytes, reads whole frames with timeouts.
pub struct Raw {
    pub s: TcpStream,
    buf: Vec<u8>,
    next_rid: u64,
    next_consumer: u32,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect_timeout(&addr, STEP).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        s.set_nodelay(true).unwrap();
        s.set_write_timeout(Some(STEP)).unwrap();
        Raw { s, buf: Vec::new(), next_rid: 1, next_consumer: 1 }
    }

    /// Wraps a socket connected some other way (e.g. with socket options).
    pub fn from_stream(s: TcpStream) -> Raw {
        s.set_nodelay(true).unwrap();
        s.set_write_timeout(Some(STEP)).unwrap();
        Raw { s, buf: Vec::new(), next_rid: 1, next_consumer: 1 }
    }

    /// Connects with a receive buffer of about `rcvbuf` bytes (set before
    /// connecting, so the advertised window is small too): a client that
    /// reads slowly, or not at all, backs up into the broker quickly.
    pub fn connect_small_rcvbuf(addr: SocketAddr, rcvbuf: usize) -> Raw {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
        sock.set_recv_buffer_size(rcvbuf).expect("SO_RCVBUF");
        sock.connect_timeout(&addr.into(), STEP).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        let s: TcpStream = sock.into();
        s.set_nodelay(true).unwrap();
        s.set_write_timeout(Some(STEP)).unwrap();
        Raw { s, buf: Vec::new(), next_rid: 1, next_consumer: 1 }
    }

    /// Completes the handshake on a connected `Raw`; returns its shard.
    pub fn handshake(&mut self) -> u16 {
        let rid = self.send(Cmd::Hello {
            version: protocol::VERSION,
            user: "guest",
            password: "guest",
            heartbeat_ms: None,
            vhost: None,
        });
        let f = self.recv();
        match f.frame() {
            Frame { request_id, cmd: Cmd::HelloOk(h) } if request_id == rid => h.shard_id,
            other => panic!("expected HelloOk, got {other:?}"),
        }
    }

    /// Connects and completes the handshake as guest/guest; returns the
    /// shard the connection landed on.
    pub fn hello(addr: SocketAddr) -> (Raw, u16) {
        let mut r = Raw::connect(addr);
        let rid = r.send(Cmd::Hello {
            version: protocol::VERSION,
            user: "guest",
            password: "guest",
            heartbeat_ms: None,
            vhost: None,
        });
        let f = r.recv();
        let shard = match f.frame() {
            Frame { request_id, cmd: Cmd::HelloOk(h) } => {
                assert_eq!(request_id, rid, "HelloOk echoes the Hello's request id");
                h.shard_id
            }
            other => panic!("expected HelloOk, got {other:?}"),
        };
        (r, shard)
    }

    pub fn rid(&mut self) -> u64 {
        let r = self.next_rid;
        self.next_rid += 1;
        r
    }

    pub fn consumer_id(&mut self) -> u32 {
        let c = self.next_consumer;
        self.next_consumer += 1;
        c
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap_or_else(|e| panic!("write {} bytes: {e}", bytes.len()));
    }

    /// Writes; returns the error instead of failing (the broker may have
    /// closed already).
    pub fn try_write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.s.write_all(bytes)
    }

    pub fn shutdown_write(&mut self) {
        self.s.shutdown(Shutdown::Write).expect("shutdown write");
    }

    /// Encodes and sends `cmd` with a fresh request id, which it returns.
    pub fn send(&mut self, cmd: Cmd<'_>) -> u64 {
        let rid = self.rid();
        self.send_rid(rid, cmd);
        rid
    }

    pub fn send_rid(&mut self, request_id: u64, cmd: Cmd<'_>) {
        let mut b = BytesMut::new();
        Frame { request_id, cmd }.encode(&mut b);
        self.write(&b);
    }

    /// The next frame, or why there is none within `d`.
    pub fn try_recv(&mut self, d: Duration) -> Result<RawFrame, NoFrame> {
        let deadline = Instant::now() + d;
        loop {
            match protocol::decode(&self.buf, RECV_FRAME_MAX) {
                Ok(Decoded::Frame(_, n)) => {
                    let bytes: Vec<u8> = self.buf.drain(..n).collect();
                    return Ok(RawFrame(bytes));
                }
                Ok(Decoded::Incomplete) => {}
                Err(e) => panic!("the broker sent bytes that do not decode: {e}"),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NoFrame::Timeout);
            }
            self.s.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 64 * 1024];
            match self.s.read(&mut chunk) {
                Ok(0) => {
                    assert!(self.buf.is_empty(), "the broker closed inside a frame ({} bytes)", self.buf.len());
                    return Err(NoFrame::Eof);
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(NoFrame::Broken(e)),
            }
        }
    }

    /// The next frame; fails the test if none arrives within `STEP`.
    pub fn recv(&mut self) -> RawFrame {
        match self.try_recv(STEP) {
            Ok(f) => f,
            Err(e) => panic!("expected a frame from the broker, got {e:?}"),
        }
    }

    /// Asserts that nothing arrives for `QUIET` (and the connection stays open).
    pub fn expect_silence(&mut self) {
        match self.try_recv(QUIET) {
            Err(NoFrame::Timeout) => {}
            Ok(f) => panic!("expected nothing, got {f:?}"),
            Err(e) => panic!("expected nothing, the connection ended: {e:?}"),
        }
    }

    /// The next frame must be an Error with `code`, flagged fatal exactly
    /// when the code is fatal. Returns its request id and message.
    pub fn expect_error(&mut self, code: ErrorCode) -> (u64, String) {
        let f = self.recv();
        match f.frame() {
            Frame { request_id, cmd: Cmd::Error { fatal, code: c, message } } => {
                assert_eq!(
                    ErrorCode::from_u16(c),
                    Some(code),
                    "expected error {code:?} ({}), got {c} {message:?}",
                    code.as_u16()
                );
                assert_eq!(fatal, code.is_fatal(), "FATAL flag of {code:?}");
                assert!(!message.is_empty(), "the error says why");
                (request_id, message.to_string())
            }
            other => panic!("expected Error {code:?}, got {other:?}"),
        }
    }

    /// The broker must close the connection (after any frames already
    /// checked): no more frames, then EOF or reset within `STEP`.
    pub fn expect_closed(&mut self) {
        match self.try_recv(STEP) {
            Err(NoFrame::Eof) | Err(NoFrame::Broken(_)) => {}
            Err(NoFrame::Timeout) => panic!("the broker did not close the connection within {STEP:?}"),
            Ok(f) => panic!("expected the connection to close, got {f:?}"),
        }
    }

    /// Ping must be answered by a Pong with the same request id.
    pub fn ping(&mut self) {
        let rid = self.send(Cmd::Ping);
        let f = self.recv();
        match f.frame() {
            Frame { request_id, cmd: Cmd::Pong } if request_id == rid => {}
            other => panic!("expected Pong {rid}, got {other:?}"),
        }
    }

    /// The next frame must be `Ok` answering `rid`; returns its value.
    pub fn expect_ok(&mut self, rid: u64) -> u64 {
        let f = self.recv();
        match f.frame() {
            Frame { request_id, cmd: Cmd::Ok { value } } if request_id == rid => value,
            other => panic!("expected Ok for request {rid}, got {other:?}"),
        }
    }

    pub fn declare(&mut self, queue: &str) -> u64 {
        let rid = self.send(Cmd::Declare { flags: 0, queue, args: &[] });
        self.expect_ok(rid)
    }

    /// Sends one Publish frame carrying `bodies`; returns its request id.
    pub fn publish(&mut self, queue: &str, bodies: &[&[u8]], confirm: bool) -> u64 {
        let rid = self.rid();
        let flags = if confirm { protocol::op::PUBLISH_CONFIRM } else { 0 };
        let mut b = BytesMut::new();
        let mut w = BatchWriter::begin_publish(&mut b, rid, flags, queue);
        for body in bodies {
            w.push(&mut b, 0, &[], body);
        }
        w.finish(&mut b);
        self.write(&b);
        rid
    }

    /// Publishes one message with the AMQP property list `props`, and
    /// waits for its confirm.
    pub fn publish_props_confirmed(&mut self, queue: &str, props: &[u8], body: &[u8]) {
        let rid = self.rid();
        let mut b = BytesMut::new();
        let mut w = BatchWriter::begin_publish(&mut b, rid, protocol::op::PUBLISH_CONFIRM, queue);
        w.push(&mut b, 0, props, body);
        w.finish(&mut b);
        self.write(&b);
        self.expect_confirm(rid, 1);
    }

    /// Sends one PublishTo frame with CONFIRM carrying `n` small messages
    /// (`m0`, `m1`, ...) through `exchange`, routing key empty.
    pub fn publish_to(&mut self, exchange: &str, n: usize) -> u64 {
        let rid = self.rid();
        let mut b = BytesMut::new();
        let mut w = BatchWriter::begin_publish_to(&mut b, rid, protocol::op::PUBLISH_CONFIRM, exchange, "");
        for i in 0..n {
            w.push(&mut b, 0, &[], format!("m{i}").as_bytes());
        }
        w.finish(&mut b);
        self.write(&b);
        rid
    }

    /// Binds `queue` to a new fanout `exchange` and checks that this
    /// publisher, routing through it, is paused by the queue's owner once
    /// the queue is deep (`publish_pause_messages` = 100, a consumer on
    /// `owner` taking one message and never acking), and goes on once a
    /// consumer drains it. The owner is on another shard or node: its
    /// `PublishPaused` comes back with the first batch's confirm, so the
    /// batch already on its way is read and the next one is not.
    pub fn expect_routed_pause(&mut self, exchange: &str, queue: &str, owner: SocketAddr) {
        let rid = self.send(Cmd::ExchangeDeclare { flags: 0, exchange, kind: "fanout", args: &[] });
        self.expect_ok(rid);
        let rid = self.send(Cmd::Bind { flags: 0, source: exchange, destination: queue, routing_key: "", args: &[] });
        self.expect_ok(rid);
        let (mut slow, _) = Raw::hello(owner);
        slow.subscribe(queue, 1);
        let first = self.publish_to(exchange, 300);
        self.expect_confirm(first, 300);
        let second = self.publish_to(exchange, 10);
        self.expect_confirm(second, 10);
        let third = self.publish_to(exchange, 10);
        self.expect_silence();
        let (mut fast, _) = Raw::hello(owner);
        let (cid, mut got) = fast.subscribe(queue, 1000);
        got.extend(fast.expect_deliveries(cid, 309 - got.len()));
        self.expect_confirm(third, 10);
    }

    pub fn expect_confirm(&mut self, rid: u64, count: u32) {
        let f = self.recv();
        match f.frame() {
            Frame { request_id, cmd: Cmd::Confirm { count: c } } if request_id == rid && c == count => {}
            other => panic!("expected Confirm {{ count: {count} }} for request {rid}, got {other:?}"),
        }
    }

    pub fn publish_confirmed(&mut self, queue: &str, bodies: &[&[u8]]) {
        let rid = self.publish(queue, bodies, true);
        self.expect_confirm(rid, bodies.len() as u32);
    }

    /// Subscribes with a fresh consumer id and waits for the Ok; returns
    /// the consumer id and any deliveries that came with the reply.
    pub fn subscribe(&mut self, queue: &str, prefetch: u32) -> (u32, Vec<Delivered>) {
        let cid = self.consumer_id();
        let rid = self.send(Cmd::Subscribe { consumer_id: cid, prefetch, queue, priority: 0, origin: false });
        let mut early = Vec::new();
        loop {
            let f = self.recv();
            match f.frame() {
                Frame { request_id, cmd: Cmd::Ok { .. } } if request_id == rid => return (cid, early),
                Frame { cmd: Cmd::Deliver { consumer_id, .. }, .. } if consumer_id == cid => {
                    early.extend(deliveries(&f))
                }
                other => panic!("expected Ok for Subscribe {rid}, got {other:?}"),
            }
        }
    }

    /// Reads Deliver frames for `cid` until `n` messages have arrived.
    pub fn expect_deliveries(&mut self, cid: u32, n: usize) -> Vec<Delivered> {
        let out = self.expect_at_least(cid, n);
        assert_eq!(out.len(), n, "more deliveries than expected");
        out
    }

    /// Whole `Deliver` frames for consumer `cid` until `n` or more arrived.
    pub fn expect_at_least(&mut self, cid: u32, n: usize) -> Vec<Delivered> {
        let mut out = Vec::new();
        while out.len() < n {
            let f = self.recv();
            match f.frame() {
                Frame { cmd: Cmd::Deliver { consumer_id, .. }, .. } if consumer_id == cid => out.extend(deliveries(&f)),
                other => panic!("expected a Deliver for consumer {cid}, got {other:?}"),
            }
        }
        out
    }

    pub fn ack(&mut self, cid: u32, ranges: &[(u64, u64)]) -> u64 {
        let rid = self.rid();
        let mut b = BytesMut::new();
        protocol::encode_ack(&mut b, rid, None, cid, ranges);
        self.write(&b);
        rid
    }

    pub fn nack(&mut self, cid: u32, requeue: bool, ranges: &[(u64, u64)]) -> u64 {
        let rid = self.rid();
        let mut b = BytesMut::new();
        protocol::encode_ack(&mut b, rid, Some(requeue), cid, ranges);
        self.write(&b);
        rid
    }

    /// A full publish/consume/ack round trip on a fresh queue named
    /// `queue`, then a Ping: proves the connection and the queue's owner
    /// work. Works over the direct and the forwarded path.
    pub fn round_trip(&mut self, queue: &str) {
        assert_eq!(self.declare(queue), 0, "{queue} is a new queue");
        let bodies: [&[u8]; 3] = [b"rt-0", b"rt-1", b"rt-2"];
        self.publish_confirmed(queue, &bodies);
        let (cid, mut got) = self.subscribe(queue, 10);
        let rest = 3 - got.len();
        got.extend(self.expect_deliveries(cid, rest));
        let bodies_got: Vec<&[u8]> = got.iter().map(|d| d.body.as_slice()).collect();
        assert_eq!(bodies_got, bodies, "round trip delivers in order");
        assert_eq!(got[0].tag, 1);
        assert!(got.iter().all(|d| !d.redelivered));
        self.ack(cid, &[(1, 3)]);
        // Replies from the owner keep their order: an error for the ack
        // would arrive before this Ok.
        let rid = self.send(Cmd::Unsubscribe { consumer_id: cid });
        self.expect_ok(rid);
        let rid = self.send(Cmd::Delete { flags: protocol::op::DELETE_IF_EMPTY, queue });
        assert_eq!(self.expect_ok(rid), 0, "acked messages are gone, the queue is empty");
        self.ping();
    }
}

/// A delivered message, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub consumer_id: u32,
    pub tag: u64,
    pub redelivered: bool,
    pub body: Vec<u8>,
}

/// The messages of a Deliver frame.
pub fn deliveries(f: &RawFrame) -> Vec<Delivered> {
    match f.frame().cmd {
        Cmd::Deliver { consumer_id, first_tag, entries, .. } => entries
            .iter()
            .enumerate()
            .map(|(i, e)| Delivered {
                consumer_id,
                tag: first_tag + i as u64,
                redelivered: e.redelivered(),
                body: e.body.to_vec(),
            })
            .collect(),
        other => panic!("expected Deliver, got {other:?}"),
    }
}

/// Connections opened before a bad one, one per shard's own address, each
/// checked with a round trip on a queue of each shard (direct and
/// forwarded) once the bad input is done.
pub struct Witnesses {
    conns: Vec<Raw>,
    shards: u32,
}

impl Witnesses {
    pub fn open(b: &TestBroker) -> Self {
        let conns = b
            .shards
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let (r, shard) = Raw::hello(*a);
                assert_eq!(usize::from(shard), i, "a shard's own address reaches that shard");
                r
            })
            .collect();
        Self { conns, shards: b.shards.len() as u32 }
    }

    pub fn check(&mut self) {
        let n = self.shards;
        for (i, c) in self.conns.iter_mut().enumerate() {
            c.ping();
            for owner in 0..n {
                c.round_trip(&queue_on(owner, n, &format!("witness-via{i}")));
            }
        }
    }
}
