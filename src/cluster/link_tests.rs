//! Raft groups over the real link: three members on 127.0.0.1, each on
//! its own glommio executor thread with its own directory, talking TCP
//! through `cluster::link` (the harness is `test_group`). Peers that do
//! not belong are played from the test's thread over blocking sockets,
//! speaking the link codec by hand.

use super::link::handshake::proof;
use super::link::{LinkConfig, LinkLimits};
use super::test_group::*;
use super::test_kv::KvCommand;
use super::test_net::C;
use crate::protocol::link::{self, CloseCode, Decoded, Frame, Hello, Role, RpcKind, NONCE_BYTES, VERSION};
use bytes::BytesMut;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{BasicNode, Vote};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const CLUSTER: [u8; 16] = *b"ringmq-test-clus";
const SECRET: &[u8] = b"a secret the three members share";

fn link_config(id: u64, secret: &[u8]) -> LinkConfig {
    let mut c = LinkConfig::new(CLUSTER, id, format!("node-{id}"), secret).unwrap();
    // Short enough that a restart is caught up and a silent peer dropped
    // well within a test's deadlines.
    c.limits = LinkLimits {
        handshake_timeout: Duration::from_millis(800),
        backoff_max: Duration::from_millis(400),
        ping_interval: Duration::from_millis(200),
        idle_timeout: Duration::from_secs(2),
        ..LinkLimits::default()
    };
    c
}

fn tcp(id: u64, listen: SocketAddr, secret: &[u8]) -> Net {
    Net::Tcp { listen, link: Box::new(link_config(id, secret)) }
}

/// The members' log lines, shown with a failing test's output (and with
/// `--nocapture`).
fn logs() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter("ringmq=info").try_init();
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn node(m: &Member) -> BasicNode {
    BasicNode::new(m.addr.unwrap().to_string())
}

/// Three members on fresh ports, initialized; answers them, their
/// directories and the leader's id.
fn group() -> (tempfile::TempDir, HashMap<u64, PathBuf>, HashMap<u64, Member>, u64, u64) {
    logs();
    let (root, dirs) = dirs();
    let members: HashMap<u64, Member> =
        dirs.iter().map(|(id, dir)| (*id, start(*id, dir, &tcp(*id, any_port(), SECRET)))).collect();
    let nodes = members.iter().map(|(id, m)| (*id, node(m))).collect();
    members[&1].ask(|tx| Control::Init(nodes, tx)).unwrap();
    let (leader, term) = leader(&members, 0);
    (root, dirs, members, leader, term)
}

/// A peer played by hand over a blocking socket.
struct Raw {
    s: std::net::TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Raw {
        let s = std::net::TcpStream::connect_timeout(&addr, STEP_DEADLINE).unwrap();
        s.set_read_timeout(Some(STEP_DEADLINE)).unwrap();
        Raw { s, buf: Vec::new() }
    }

    fn send(&mut self, f: &Frame<'_>) {
        let mut b = BytesMut::new();
        f.encode(&mut b);
        self.s.write_all(&b).unwrap();
    }

    /// The next frame, given to `f`; `None` once the member closed.
    fn recv<T>(&mut self, f: impl FnOnce(Frame<'_>) -> T) -> Option<T> {
        loop {
            if let Decoded::Frame(frame, n) = link::decode(&self.buf, 1 << 20).unwrap() {
                let t = f(frame);
                self.buf.drain(..n);
                return Some(t);
            }
            let mut chunk = [0u8; 4096];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("reading from the member: {e}"),
            }
        }
    }

    /// The `Close` code the member sends, then the end of the stream.
    fn closed_with(&mut self) -> u16 {
        let code = self.recv(|f| match f {
            Frame::Close { code, .. } => code,
            other => panic!("expected Close, got {other:?}"),
        });
        let code = code.expect("a Close before the end");
        assert!(self.recv(|f| format!("{f:?}")).is_none(), "the member closes after its Close");
        code
    }

    /// Runs the dialler's side of the handshake as node 99 with `secret`;
    /// answers whether the member proved itself back.
    fn handshake(addr: SocketAddr, secret: &[u8]) -> (Raw, bool) {
        Self::handshake_in(addr, secret, CLUSTER)
    }

    /// The same, claiming `cluster` (all zeros: a node that is joining).
    fn handshake_in(addr: SocketAddr, secret: &[u8], cluster: [u8; 16]) -> (Raw, bool) {
        let mut raw = Raw::connect(addr);
        let mine =
            Hello { version: VERSION, cluster_id: cluster, node_id: 99, node_name: "raw", nonce: [5; NONCE_BYTES] };
        raw.send(&Frame::Hello(mine.clone()));
        let (id, nonce) = raw
            .recv(|f| match f {
                Frame::Hello(h) => (h.node_id, h.nonce),
                other => panic!("expected Hello, got {other:?}"),
            })
            .expect("the member's Hello");
        let theirs = Hello { node_id: id, nonce, node_name: "member", cluster_id: CLUSTER, ..mine.clone() };
        raw.send(&Frame::Auth { proof: proof(secret, Role::Dialler, &mine, &theirs) });
        let back = raw.recv(|f| match f {
            Frame::Auth { proof: p } => Some(p == proof(SECRET, Role::Listener, &mine, &theirs)),
            Frame::Close { code, .. } => {
                assert_eq!(code, CloseCode::AuthFailed.as_u16());
                None
            }
            other => panic!("expected Auth or Close, got {other:?}"),
        });
        match back.flatten() {
            Some(ok) => (raw, ok),
            None => (raw, false),
        }
    }
}

#[test]
fn three_members_over_tcp_elect_replicate_and_catch_up_after_a_restart() {
    let started = Instant::now();
    let (_root, dirs, mut members, first, term) = group();

    let last = members[&first].ask(|tx| Control::Write(writes(0, 100), tx)).unwrap();
    applied_everywhere(&members, last);
    for m in members.values() {
        assert_eq!(dump(m).1, expected(100));
    }

    // The leader's executor goes away (its sockets with it); the other two
    // elect a new leader over TCP and go on.
    let stopped = members.remove(&first).unwrap();
    let addr = stopped.addr.unwrap();
    stopped.stop();
    let (second, _) = leader(&members, term);
    let last = members[&second].ask(|tx| Control::Write(writes(100, 150), tx)).unwrap();
    applied_everywhere(&members, last);

    // It restarts from its directory on its old address: the others'
    // links redial it, and it catches up on what it missed.
    members.insert(first, start(first, &dirs[&first], &tcp(first, addr, SECRET)));
    applied_everywhere(&members, last);
    for (id, m) in &members {
        assert_eq!(dump(m).1, expected(150), "member {id}");
    }
    let last = members[&second].ask(|tx| Control::Write(vec![KvCommand::set("after", "restart")], tx)).unwrap();
    applied_everywhere(&members, last);

    for (_, m) in members {
        m.stop();
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "the test took {took:?}");
}

#[test]
fn peers_that_send_garbage_after_the_handshake_are_dropped_and_the_group_keeps_working() {
    let started = Instant::now();
    let (_root, _dirs, members, leader, _) = group();
    let target = members.iter().find(|(id, _)| **id != leader).map(|(_, m)| m.addr.unwrap()).unwrap();

    // Bytes that are no frame: refused at the first header.
    let (mut raw, ok) = Raw::handshake(target, SECRET);
    assert!(ok, "the member proved itself to a peer with the secret");
    raw.s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(raw.closed_with(), CloseCode::BadFrame.as_u16());

    // A header claiming a frame over the limit: refused from the header.
    let (mut raw, _) = Raw::handshake(target, SECRET);
    raw.s.write_all(&[0xff, 0xff, 0xff, 0x7f, link::op::RPC, 0, 0, 0]).unwrap();
    assert_eq!(raw.closed_with(), CloseCode::FrameTooLarge.as_u16());

    // A whole frame whose payload is not a request.
    let (mut raw, _) = Raw::handshake(target, SECRET);
    raw.send(&Frame::Rpc { id: 1, kind: RpcKind::Append, payload: &[0xff; 64] });
    assert_eq!(raw.closed_with(), CloseCode::BadFrame.as_u16());

    // A vote from a node that is not a member (a forgotten one, still
    // asking for votes): it may not disrupt elections.
    let (mut raw, _) = Raw::handshake(target, SECRET);
    let vote = postcard::to_allocvec(&VoteRequest::new(Vote::new(1_000, 99), None)).unwrap();
    raw.send(&Frame::Rpc { id: 1, kind: RpcKind::Vote, payload: &vote });
    assert_eq!(raw.closed_with(), CloseCode::NotMember.as_u16());

    // A well-formed append that speaks for another member than the one
    // that authenticated.
    let (mut raw, _) = Raw::handshake(target, SECRET);
    let append = AppendEntriesRequest::<C> {
        vote: Vote::new_committed(1_000, leader),
        prev_log_id: None,
        leader_commit: None,
        entries: Vec::new(),
    };
    raw.send(&Frame::Rpc { id: 1, kind: RpcKind::Append, payload: &postcard::to_allocvec(&append).unwrap() });
    assert_eq!(raw.closed_with(), CloseCode::WrongNode.as_u16());

    // A second Hello after the handshake.
    let (mut raw, _) = Raw::handshake(target, SECRET);
    let hello = Hello { version: VERSION, cluster_id: CLUSTER, node_id: 99, node_name: "again", nonce: [1; 32] };
    raw.send(&Frame::Hello(hello));
    assert_eq!(raw.closed_with(), CloseCode::UnexpectedFrame.as_u16());

    // An authenticated peer that pings is answered.
    let (mut raw, _) = Raw::handshake(target, SECRET);
    raw.send(&Frame::Ping);
    assert_eq!(raw.recv(|f| f == Frame::Pong), Some(true));

    // The group never noticed: it commits and applies on every member.
    let last = members[&leader].ask(|tx| Control::Write(writes(0, 20), tx)).unwrap();
    applied_everywhere(&members, last);
    for m in members.values() {
        assert_eq!(dump(m).1, expected(20));
    }
    for (_, m) in members {
        m.stop();
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "the test took {took:?}");
}

#[test]
fn peers_without_the_secret_or_from_another_cluster_are_refused_and_get_nothing() {
    let started = Instant::now();
    let (root, _dirs, mut members, leader, _) = group();
    let target = members[&leader].addr.unwrap();

    // A dialler with the wrong secret: the member refuses its proof and
    // never sends one of its own.
    let (mut raw, ok) = Raw::handshake(target, b"not the secret, but long enough");
    assert!(!ok);
    assert!(raw.recv(|f| format!("{f:?}")).is_none(), "closed after refusing");

    // Another cluster: refused at its Hello, before any proof.
    let mut raw = Raw::connect(target);
    let other = Hello { version: VERSION, cluster_id: [7; 16], node_id: 99, node_name: "x", nonce: [1; 32] };
    raw.send(&Frame::Hello(other));
    assert_eq!(raw.closed_with(), CloseCode::WrongCluster.as_u16());

    // A node with no cluster yet (joining) must still know the secret...
    let (mut raw, ok) = Raw::handshake_in(target, b"not the secret, but long enough", [0; 16]);
    assert!(!ok);
    assert!(raw.recv(|f| format!("{f:?}")).is_none(), "closed after refusing");
    // ...and with it, may ask to join but nothing else.
    let (mut raw, ok) = Raw::handshake_in(target, SECRET, [0; 16]);
    assert!(ok, "a joining node with the secret is authenticated");
    let vote = postcard::to_allocvec(&VoteRequest::new(Vote::new(1_000, 99), None)).unwrap();
    raw.send(&Frame::Rpc { id: 1, kind: RpcKind::Vote, payload: &vote });
    assert_eq!(raw.closed_with(), CloseCode::UnexpectedFrame.as_u16());

    // Another link version.
    let mut raw = Raw::connect(target);
    let newer = Hello { version: VERSION + 1, cluster_id: CLUSTER, node_id: 99, node_name: "x", nonce: [1; 32] };
    raw.send(&Frame::Hello(newer));
    assert_eq!(raw.closed_with(), CloseCode::VersionUnsupported.as_u16());

    // A connection that says nothing: closed at the handshake deadline.
    let mut raw = Raw::connect(target);
    let waited = Instant::now();
    assert_eq!(raw.closed_with(), CloseCode::HandshakeTimeout.as_u16());
    assert!(waited.elapsed() >= Duration::from_millis(700), "closed after {:?}", waited.elapsed());

    // A member started with the wrong secret, added as a learner: the
    // leader's link to it fails its handshake (each side refuses the
    // other's proof), so nothing reaches it while the group goes on.
    let wrong = start(4, &root.path().join("node-4"), &tcp(4, any_port(), b"another secret, 16+ bytes"));
    let learner = node(&wrong);
    members[&leader].ask(|tx| Control::AddLearner(4, learner, tx)).unwrap();
    let last = members[&leader].ask(|tx| Control::Write(writes(0, 30), tx)).unwrap();
    applied_everywhere(&members, last);
    // Give the leader's replication time to try (and fail) a few times.
    std::thread::sleep(Duration::from_millis(500));
    let (applied, state) = dump(&wrong);
    assert_eq!(applied, None, "the member without the secret applied nothing");
    assert!(state.is_empty());
    assert_eq!(wrong.metrics.borrow().last_log_index, None, "and logged nothing");
    wrong.stop();

    for (_, m) in members.drain() {
        m.stop();
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "the test took {took:?}");
}
