//! The fuzz seeds, built from real frames and files: native frames from
//! the project's encoders, AMQP client frames as lapin's codec
//! (amq-protocol) writes them and server frames from ringmq's, segment
//! files written by the storage layer, a definitions file, config texts.
//! Each is small: the fuzzer mutates from them.

use amq_protocol::protocol::basic;
use bytes::{Bytes, BytesMut};
use ringmq::protocol::amqp::{frame as aframe, method as amethod};
use ringmq::protocol::batch::{put_entry, BatchWriter, Ranges};
use ringmq::protocol::field_table::{Table, TableBuilder, Value};
use ringmq::protocol::props::PropsBuilder;
use ringmq::protocol::{op, Cmd, Frame};
use ringmq::routing::{BindingDef, Change, Dest, ExchangeDef, ExchangeKind};
use ringmq::storage::io::{DmaIo, LogIo};
use ringmq::storage::record::{align_block, BLOCK};
use ringmq::storage::{Origin, Storage};
use std::rc::Rc;
use std::time::Duration;

mod amqp;
use amqp::{amq_props, amqp_client_frames};

type Named = Vec<(String, Vec<u8>)>;

pub fn all() -> Vec<(&'static str, Named)> {
    let amqp = amqp_client_frames();
    let (segments, seg_numbers) = segment_files();
    vec![
        ("decode", prefixed(0xFF, native_frames())),
        ("amqp_frame", prefixed(0xFF, amqp.clone())),
        ("amqp_diff", amqp),
        ("amqp_props", properties()),
        ("table", tables()),
        // Control bytes: the file's own segment number, checksums fixed
        // (they are already right), and for recovery no harness header.
        ("record", segments.iter().zip(&seg_numbers).map(|((n, b), s)| (n.clone(), ctl(s - 1, b))).collect()),
        ("recovery", segments.iter().zip(&seg_numbers).map(|((n, b), s)| (n.clone(), ctl(64 | (s - 1), b))).collect()),
        ("definitions", definitions_files()),
        ("config", configs()),
        ("link", prefixed(0xFF, link_frames())),
        ("data_link", data_messages()),
        ("reply_name", reply_names()),
    ]
}

fn ctl(c: u64, body: &[u8]) -> Vec<u8> {
    let mut v = vec![u8::try_from(c).expect("a small control byte")];
    v.extend_from_slice(body);
    v
}

fn prefixed(pick: u8, seeds: Named) -> Named {
    seeds.into_iter().map(|(n, b)| (n, ctl(pick.into(), &b))).collect()
}

fn named(name: &str, b: impl AsRef<[u8]>) -> (String, Vec<u8>) {
    (name.to_string(), b.as_ref().to_vec())
}

fn queue_args() -> Vec<u8> {
    TableBuilder::new()
        .int("x-max-length", 1000)
        .str("x-overflow", "reject-publish")
        .str("x-dead-letter-exchange", "dlx")
        .int("x-message-ttl", 60_000)
        .build()
}

fn native_frames() -> Named {
    let mut out = Vec::new();
    let mut all = BytesMut::new();
    let mut frame = |name: &str, b: &mut BytesMut| {
        all.extend_from_slice(b);
        out.push(named(name, &b[..]));
        b.clear();
    };
    let mut b = BytesMut::new();
    let args = queue_args();
    let ranges = [1u64.to_le_bytes(), 3u64.to_le_bytes(), 7u64.to_le_bytes(), 7u64.to_le_bytes()].concat();
    let cmds = [
        ("hello", Cmd::Hello { version: 1, user: "guest", password: "guest", heartbeat_ms: None, vhost: None }),
        ("declare", Cmd::Declare { flags: op::DECLARE_DURABLE, queue: "orders", args: &args }),
        ("subscribe", Cmd::Subscribe { consumer_id: 1, prefetch: 100, queue: "orders", priority: 0, origin: false }),
        ("ack", Cmd::Ack { consumer_id: 1, ranges: Ranges::parse(&ranges, 2).expect("ranges") }),
        ("nack", Cmd::Nack { requeue: true, consumer_id: 1, ranges: Ranges::parse(&ranges[..16], 1).expect("ranges") }),
        ("get", Cmd::Get { no_ack: false, consumer_id: 2, queue: "orders" }),
        ("exchange-declare", Cmd::ExchangeDeclare { flags: 1, exchange: "logs", kind: "topic", args: &[] }),
        ("bind", Cmd::Bind { flags: 0, source: "logs", destination: "orders", routing_key: "a.*.c", args: &[] }),
        ("confirm", Cmd::Confirm { count: 2 }),
        ("error", Cmd::Error { fatal: true, code: 3, message: "frame too large" }),
        ("ping", Cmd::Ping),
        (
            "hello_vhost",
            Cmd::Hello { version: 1, user: "guest", password: "guest", heartbeat_ms: Some(5000), vhost: Some("prod") },
        ),
        // Subscribe with the PRIORITY flag (a negative priority: signed).
        (
            "subscribe_priority",
            Cmd::Subscribe { consumer_id: 3, prefetch: 10, queue: "orders", priority: -5, origin: false },
        ),
        (
            "stream-subscribe",
            Cmd::StreamSubscribe {
                consumer_id: 4,
                prefetch: 500,
                queue: "events",
                at: ringmq::protocol::StreamAt::Offset(1000),
                origin: true,
            },
        ),
        ("store-offset", Cmd::StoreOffset { queue: "events", reference: "billing", offset: 1000 }),
        ("query-offset", Cmd::QueryOffset { queue: "events", reference: "billing" }),
    ];
    for (i, (name, cmd)) in cmds.into_iter().enumerate() {
        Frame { request_id: i as u64 + 1, cmd }.encode(&mut b);
        frame(name, &mut b);
    }
    let props = PropsBuilder::new().content_type("text/plain").priority(3).expiration_ms(5000).build();
    let mut w = BatchWriter::begin_publish(&mut b, 20, 1, "orders");
    w.push(&mut b, 0, &props, b"hello");
    w.push(&mut b, 0, &[], b"world");
    w.finish(&mut b);
    frame("publish", &mut b);
    let mut w = BatchWriter::begin_publish_to(&mut b, 21, 0, "logs", "a.b.c");
    w.push(&mut b, 0, &[], b"routed");
    w.finish(&mut b);
    frame("publish-to", &mut b);
    let mut w = BatchWriter::begin_deliver(&mut b, 1, 40);
    w.push(&mut b, 0, &props, b"delivered");
    w.finish(&mut b);
    frame("deliver", &mut b);
    out.push(named("session", &all[..]));
    // The cluster map (issue 17), after the session so its seed stays.
    let map = ringmq::protocol::cluster_map::ClusterMap {
        version: 0x5eed,
        this: 0,
        nodes: vec![
            ringmq::protocol::cluster_map::MapNode { name: "n1", shard_addrs: vec!["10.0.0.1:5681", "10.0.0.1:5682"] },
            ringmq::protocol::cluster_map::MapNode { name: "n2", shard_addrs: vec!["10.0.0.2:5681"] },
        ],
    };
    let reply_name = reply_name_sample();
    let more = [
        ("map-get", Cmd::MapGet),
        ("map", Cmd::Map(map)),
        ("map-changed", Cmd::MapChanged { version: 0x5eee }),
        ("locate", Cmd::Locate { queue: "orders" }),
        // Direct reply-to (issue 18), appended so the seeds before stay.
        ("reply-to", Cmd::ReplyTo { consumer_id: 9, name: &reply_name }),
        // `ctl list-consumers` (Admin 0x1D), appended so the seeds before stay.
        ("admin-list-consumers", Cmd::Admin { command: op::ADMIN_LIST_CONSUMERS, arg: "" }),
    ];
    for (i, (name, cmd)) in more.into_iter().enumerate() {
        Frame { request_id: 60 + i as u64, cmd }.encode(&mut b);
        out.push(named(name, &b[..]));
        b.clear();
    }
    out
}

fn properties() -> Named {
    let mut h = Table::default();
    h.set("x-death", Value::Array(vec![Value::Table(Table(vec![("count".into(), Value::I64(1))]))]));
    let mut out = vec![
        named("none", [0u8, 0]),
        named("persistent", PropsBuilder::new().delivery_mode(2).build()),
        named(
            "native",
            PropsBuilder::new()
                .content_type("text/plain")
                .headers(h)
                .priority(9)
                .expiration_ms(1500)
                .message_id("id-1")
                .timestamp(1_700_000_000)
                .build(),
        ),
    ];
    let mut lapin = Vec::new();
    let p = amq_props();
    let (v, _) = cookie_factory::gen(basic::gen_properties(&p), Vec::new()).expect("amq-protocol encodes");
    lapin.extend_from_slice(&v);
    out.push(named("lapin", lapin));
    out
}

fn tables() -> Named {
    let mut inner = Table::default();
    inner.set("reason", Value::str("expired"));
    inner.set("count", Value::I64(2));
    inner.set("time", Value::Timestamp(1_700_000_000));
    let every = Table(vec![
        ("t".into(), Value::Bool(true)),
        ("b".into(), Value::I8(-1)),
        ("B".into(), Value::U8(200)),
        ("s".into(), Value::I16(-300)),
        ("u".into(), Value::U16(60000)),
        ("I".into(), Value::I32(-70000)),
        ("i".into(), Value::U32(4_000_000_000)),
        ("l".into(), Value::I64(i64::MIN)),
        ("f".into(), Value::F32(1.5)),
        ("d".into(), Value::F64(-2.25)),
        ("D".into(), Value::Decimal(2, 12345)),
        ("x".into(), Value::Bytes(vec![0, 1, 2])),
        ("V".into(), Value::Void),
    ]);
    let death = Table(vec![("x-death".into(), Value::Array(vec![Value::Table(inner.clone()), Value::Table(inner)]))]);
    vec![named("queue-args", queue_args()), named("every-type", every.encode()), named("x-death", death.encode())]
}

/// Segment files as the storage layer writes them: a durable queue with
/// arguments, publishes (two with an origin record), acks, a stream
/// offset, a purge and a delete of a second queue,
/// then a clean close (which seals). Each file is cut after its last
/// written block.
fn segment_files() -> (Named, Vec<u64>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().to_path_buf();
    crate::common::run_local(Duration::from_secs(30), move || async move {
        let io: Rc<dyn LogIo> = Rc::new(DmaIo);
        let (log, _) = Storage::<u64>::open(io, crate::common::log_options(&path, 65_536)).await.expect("open");
        let q = log.declare("orders", &queue_args()).expect("declare");
        let tmp = log.declare("scratch", &[]).expect("declare");
        let props = PropsBuilder::new().delivery_mode(2).priority(4).build();
        let mut lens = Vec::new();
        for s in 0..5u64 {
            let mut e = BytesMut::new();
            put_entry(&mut e, 0, if s % 2 == 0 { &props } else { &[] }, format!("message {s}").as_bytes());
            log.publish(q, s, &e).expect("publish");
            log.publish(tmp, s, &e).expect("publish");
            lens.push(e.len());
        }
        // Messages 3 and 4 came through an exchange (record type 18).
        let origin = Origin { exchange: "amq.topic".into(), routing_key: "orders.eu".into() };
        log.origin(q, 3, 2, &std::sync::Arc::new(origin)).expect("an origin");
        log.ack(q, 1, lens[1]);
        log.ack(q, 2, lens[2]);
        log.store_offset(q, "billing", 3).expect("a stream offset");
        log.purge(tmp, |each| (0..5u64).for_each(|s| each(s, lens[s as usize]))).expect("purge");
        log.delete(tmp).expect("delete");
        assert!(log.flush().await.result.is_ok());
        assert!(log.close().await.result.is_ok());
    });
    let mut out = Vec::new();
    let mut numbers = Vec::new();
    let mut files: Vec<_> =
        std::fs::read_dir(dir.path()).expect("the log dir").map(|e| e.expect("entry").path()).collect();
    files.sort();
    for f in files {
        let Some(n) = f.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".seg")) else { continue };
        let bytes = std::fs::read(&f).expect("a segment");
        let Some(last) = bytes.iter().rposition(|&b| b != 0) else { continue };
        let cut = align_block(last + 1).min(bytes.len()).max(BLOCK.min(bytes.len()));
        numbers.push(n.parse::<u64>().expect("a segment number"));
        out.push(named(&format!("segment-{n}"), &bytes[..cut]));
    }
    assert!(!out.is_empty(), "the log wrote a segment");
    (out, numbers)
}

fn definitions_files() -> Named {
    let mut x = ExchangeDef::new("logs", ExchangeKind::Topic);
    x.durable = true;
    x.alternate = Some("unrouted".into());
    let mut h = ExchangeDef::new("by-header", ExchangeKind::Headers);
    h.durable = true;
    let hargs = TableBuilder::new().str("x-match", "all").str("format", "pdf").build();
    let defs = vec![
        Change::DeclareExchange(x),
        Change::DeclareExchange(h),
        Change::DeclareExchange(ExchangeDef::new("unrouted", ExchangeKind::Fanout)),
        Change::Bind(BindingDef {
            source: "logs".into(),
            dest: Dest::Queue("q1".into()),
            key: "a.*.c".into(),
            args: Bytes::new(),
        }),
        Change::Bind(BindingDef {
            source: "by-header".into(),
            dest: Dest::Exchange("logs".into()),
            key: String::new(),
            args: Bytes::from(hargs),
        }),
    ];
    use ringmq::storage::definitions::{Definitions, StoredPermission, StoredUser};
    let users = vec![StoredUser {
        name: "rabbit".into(),
        password_hash: "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR".into(),
        tags: vec!["administrator".into()],
        permissions: vec![StoredPermission {
            vhost: "/".into(),
            configure: "^app-".into(),
            write: ".*".into(),
            read: String::new(),
        }],
    }];
    let file = ringmq::storage::definitions::encode(&Definitions {
        routing: defs,
        users: Some(users),
        vhosts: Some(vec!["/".into(), "v".into()]),
    });
    // Bit 0 of the control byte: the bytes are the whole file; clear,
    // the harness frames them (magic in front, checksum behind).
    vec![named("file", ctl(1, &file)), named("framed", ctl(0, &file[8..file.len() - 4]))]
}

fn configs() -> Named {
    vec![
        named(
            "operations-example",
            "cores = 2\ndata_dir = \"/var/lib/ringmq\"\nlisten = \"0.0.0.0:5680\"\nlog_format = \"json\"\n\
             message_bytes_max = 262144\n\n[[users]]\nname = \"app\"\npassword = \"secret\"\n",
        ),
        named(
            "limits",
            "frame_bytes_max = 1048576\nmessage_bytes_max = 1000000\nsegment_bytes = 67108864\nfsync = \"interval\"\n\
             fsync_interval_ms = 50\nmemory_budget_bytes = 536870912\ncompact_live_ratio_pct = 25\n\
             outbox_bytes_max = 4194304\nhttp_idle_timeout_ms = 60000\n",
        ),
    ]
}

/// The inter-node link: a whole handshake and an authenticated session
/// (a real vote request as the cluster layer encodes it), one seed per
/// frame and one with them all.
fn link_frames() -> Named {
    use ringmq::protocol::link::{Frame, Hello, RpcKind, VERSION};
    let hello = |id, name| Hello {
        version: VERSION,
        cluster_id: *b"ringmq-seed-clus",
        node_id: id,
        node_name: name,
        nonce: [id as u8; 32],
    };
    let vote = postcard::to_allocvec(&openraft::raft::VoteRequest::new(openraft::Vote::new(3, 1u64), None))
        .expect("a vote request encodes");
    let frames = [
        ("hello", Frame::Hello(hello(1, "node-1"))),
        ("hello-reply", Frame::Hello(hello(2, "nœud-2"))),
        ("auth", Frame::Auth { proof: [0xA5; 32] }),
        ("rpc-vote", Frame::Rpc { id: 1, kind: RpcKind::Vote, payload: &vote }),
        ("rpc-append", Frame::Rpc { id: 2, kind: RpcKind::Append, payload: &[0, 1, 2, 3] }),
        ("rpc-snapshot", Frame::Rpc { id: 3, kind: RpcKind::Snapshot, payload: &[] }),
        ("rpc-reply", Frame::RpcReply { id: 1, payload: &[0, 3, 0, 1, 1] }),
        ("ping", Frame::Ping),
        ("pong", Frame::Pong),
        ("close", Frame::Close { code: 6, reason: "node 99 does not know the cluster secret" }),
    ];
    let mut out = Vec::new();
    let mut all = BytesMut::new();
    for (name, f) in frames {
        let mut b = BytesMut::new();
        f.encode(&mut b);
        all.extend_from_slice(&b);
        out.push(named(name, &b[..]));
    }
    out.push(named("session", &all[..]));
    // The members' own requests: a joining node's Hello (no cluster id),
    // its join request, and a routing change forwarded to the leader.
    let joining = Hello { cluster_id: [0; 16], ..hello(7, "joiner") };
    let join =
        ringmq::cluster::service::JoinRequest { node_id: 7, name: "joiner".into(), addr: "127.0.0.1:25672".into() };
    let join = postcard::to_allocvec(&join).expect("a join request encodes");
    let change = ringmq::routing::Change::DeclareExchange(ringmq::routing::ExchangeDef::new(
        "x",
        ringmq::routing::ExchangeKind::Topic,
    ));
    let propose = ringmq::cluster::meta::MetaCommand::Routing { change, if_unused: false };
    let propose = postcard::to_allocvec(&propose).expect("a change encodes");
    let more = [
        ("hello-joining", Frame::Hello(joining)),
        ("rpc-join", Frame::Rpc { id: 4, kind: RpcKind::Join, payload: &join }),
        ("rpc-propose", Frame::Rpc { id: 5, kind: RpcKind::Propose, payload: &propose }),
        ("rpc-status", Frame::Rpc { id: 6, kind: RpcKind::Status, payload: &[] }),
    ];
    for (name, f) in more {
        let mut b = BytesMut::new();
        f.encode(&mut b);
        out.push(named(name, &b[..]));
    }
    // A data link's frames (forwarded queue traffic).
    for (name, payload) in data_messages() {
        let mut b = BytesMut::new();
        Frame::Data { payload: &payload }.encode(&mut b);
        out.push((format!("data-{name}"), b.to_vec()));
    }
    out
}

/// What a data link carries: a request of each kind a remote connection
/// sends, and the replies (a delivery with its origin, an error).
fn data_messages() -> Named {
    use ringmq::server::remote::wire::{encode, DataMsg};
    use ringmq::server::types::{Delivered, Origin, Reply, Request, Target};
    let mut entries = BytesMut::new();
    put_entry(&mut entries, 0, &[], b"hello");
    let entries = entries.freeze();
    let raw = TableBuilder::new().int("x-max-length", 10).str("x-queue-leader-locator", "balanced").build();
    let declare = Request::Declare {
        durable: true,
        passive: false,
        queue: "/\u{0}q".into(),
        exclusive: false,
        auto_delete: false,
        strict: true,
        args: Box::new(ringmq::server::policy::QueueArgs::parse(&raw, "q").expect("valid arguments")),
    };
    let publish = Request::Publish {
        persistent: true,
        confirm: true,
        partial: false,
        mandatory: Some(false),
        queue: "/\u{0}q".into(),
        entries: entries.clone(),
        count: 1,
    };
    let origin = Some(std::sync::Arc::new(Origin { exchange: "x".into(), routing_key: "k".into() }));
    let many = Request::PublishMany {
        persistent: false,
        confirm: true,
        mandatory: true,
        targets: vec![Target { queue: "/\u{0}q".into(), entries: entries.clone(), count: 1 }],
        count: 1,
        origin: origin.clone(),
    };
    let subscribe = Request::Subscribe {
        consumer_id: 1,
        prefetch: 100,
        queue: "/\u{0}q".into(),
        exclusive: false,
        priority: 0,
        auto_ack: false,
        stream: ringmq::server::types::StreamStart {
            offset: ringmq::server::types::StreamOffset::Offset(42),
            no_ack: false,
            prefetch_set: true,
        },
    };
    let ack = Request::Ack { consumer_id: 1, queue: "/\u{0}q".into(), ranges: vec![(1, 10)] };
    let msgs_entries = entries.clone();
    let msgs = vec![Delivered { redelivered: false, entry: entries, origin }];
    let deliver = Reply::Deliver { owner: 1, consumer_id: 1, first_tag: 1, msgs };
    let error = Reply::error(3, ringmq::protocol::ErrorCode::NodeUnavailable, "node 7 (shard 1) is unavailable");
    let direct = Request::DirectReply {
        conn_id: 7,
        channel: 1,
        token: 0x5eed,
        entries: msgs_entries,
        count: 1,
        confirm: true,
        mandatory: true,
    };
    let request = |request_id, req| DataMsg::Request { shard: 0, conn: 5, request_id, req };
    let reply = |reply| DataMsg::Reply { shard: 0, conn: 5, reply };
    let all = [
        ("declare", request(1, declare)),
        ("publish", request(2, publish)),
        ("publish-many", request(3, many)),
        ("subscribe", request(4, subscribe)),
        ("ack", request(0, ack)),
        ("credit", request(0, Request::DeliveriesCredit { bytes: 65536 })),
        ("deliver", reply(deliver)),
        ("error", reply(error)),
        ("direct-reply", request(5, direct)),
    ];
    all.into_iter()
        .map(|(name, m)| {
            let mut b = BytesMut::new();
            encode(&m, &mut b, usize::MAX).expect("a data message encodes");
            (name.to_string(), b[ringmq::protocol::link::HEADER_BYTES..].to_vec())
        })
        .collect()
}

/// A generated direct reply-to name.
fn reply_name_sample() -> String {
    use ringmq::protocol::reply_to::ReplyTo;
    ReplyTo { node: 0x1234_5678_9abc_def0, shard: 1, conn_id: 42, channel: 3, token: 0x5eed_5eed }.encode()
}

/// Direct reply-to names: a good one, one of another version, uppercase
/// hex, a cut one, the pseudo-queue itself.
fn reply_names() -> Named {
    let good = reply_name_sample();
    let prefix = ringmq::protocol::reply_to::PREFIX.len();
    let mut version = good.clone().into_bytes();
    version[prefix + 1] = b'2';
    vec![
        named("good", &good),
        named("version", &version),
        named("upper", format!("{}{}", &good[..prefix], good[prefix..].to_uppercase())),
        named("cut", &good[..good.len() - 1]),
        named("pseudo", ringmq::protocol::reply_to::PSEUDO_QUEUE),
    ]
}
