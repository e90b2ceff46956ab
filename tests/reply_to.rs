//! Direct reply-to (`amq.rabbitmq.reply-to`; docs/amqp.md "Direct
//! reply-to", docs/protocol.md "0x34 ReplyTo"): RPC round trips between
//! pika, lapin and ringmq's own client, requester and replier on
//! different shards, and the refusals over the wire. Each test starts its
//! own broker (2 shards).
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use bytes::BytesMut;
use common::lapin_thread::on_thread;
use common::pika::{finish, run, spawn};
use common::{queue_on, run_local, within, Raw, TestBroker, STEP, TEST_DEADLINE};
use futures_lite::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use ringmq::client::{Client, ClientOptions, ProducerOptions};
use ringmq::protocol::props::{self, Props, PropsBuilder};
use ringmq::protocol::reply_to::{ReplyTo, PSEUDO_QUEUE};
use ringmq::protocol::{op, BatchWriter, Cmd, ErrorCode, Frame};
use std::time::Duration;

const SCRIPT: Duration = Duration::from_secs(60);

/// pika against pika, servers on the requester's shard and the other;
/// the refusals; forged names; the requester gone (tests/pika/reply_to.py).
#[test]
fn pika_direct_reply_to_round_trips_and_refusals() {
    let b = TestBroker::start();
    run("reply_to.py", b.amqp, &[], SCRIPT).assert_ok("reply_to.py");
}

/// A lapin requester, a pika server (tests/pika/rpc_server.py) on the
/// other shard.
#[test]
fn lapin_requester_pika_server() {
    let b = TestBroker::start();
    let queue = queue_on(1, 2, "rpc-lapin");
    let (url, amqp) = (format!("amqp://guest:guest@{}/%2f", b.amqp), b.amqp);
    let server = on_thread(Duration::from_secs(40), async move {
        let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
        let ch = conn.create_channel().await?;
        // Which shard lapin landed on (amq.gen-SHARD.CONN...): the server goes to the other.
        let exclusive = QueueDeclareOptions { exclusive: true, ..Default::default() };
        let mine = ch.queue_declare("", exclusive, FieldTable::default()).await?;
        let shard: u32 = mine.name().as_str()["amq.gen-".len()..].split('.').next().unwrap().parse().unwrap();
        let other = (1 - shard).to_string();
        let env = [("RPC_QUEUE", queue.as_str()), ("RPC_COUNT", "5"), ("RPC_SHARD", other.as_str())];
        let mut server = spawn("rpc_server.py", amqp, &env);
        let asked = ask_five(&ch, &queue).await;
        let closed = conn.close(200, "bye").await;
        match asked.and(closed) {
            Ok(()) => Ok(server),
            Err(e) => {
                let _ = server.kill();
                let _ = server.wait();
                Err(e)
            }
        }
    });
    finish(server, Duration::from_secs(20)).assert_ok("rpc_server.py");
}

/// Five requests with direct reply-to through lapin, and their replies.
async fn ask_five(ch: &lapin::Channel, queue: &str) -> lapin::Result<()> {
    ch.queue_declare(queue, QueueDeclareOptions::default(), FieldTable::default()).await?;
    let no_ack = BasicConsumeOptions { no_ack: true, ..Default::default() };
    let mut replies = ch.basic_consume(PSEUDO_QUEUE, "", no_ack, FieldTable::default()).await?;
    for i in 0..5 {
        let props = BasicProperties::default()
            .with_reply_to(PSEUDO_QUEUE.into())
            .with_correlation_id(format!("lapin-{i}").into());
        ch.basic_publish("", queue, BasicPublishOptions::default(), format!("q{i}").as_bytes(), props).await?;
    }
    let mut got = Vec::new();
    while got.len() < 5 {
        let d = replies.next().await.expect("reply stream open")?;
        assert!(d.routing_key.as_str().starts_with("amq.rabbitmq.reply-to."), "{}", d.routing_key);
        let corr = d.properties.correlation_id().as_ref().map(|c| c.to_string()).unwrap_or_default();
        got.push((corr, String::from_utf8_lossy(&d.data).into_owned()));
    }
    got.sort();
    let want: Vec<(String, String)> = (0..5).map(|i| (format!("lapin-{i}"), format!("re:q{i}"))).collect();
    assert_eq!(got, want);
    Ok(())
}

/// The native client asks (its reply consumer on shard 0), pika serves
/// from shard 1.
#[test]
fn native_requester_pika_server() {
    let b = TestBroker::start();
    let queue = queue_on(1, 2, "rpc-native-req");
    // The server on shard 1, the requester on shard 0.
    let env = [("RPC_QUEUE", queue.as_str()), ("RPC_COUNT", "4"), ("RPC_SHARD", "1")];
    let server = spawn("rpc_server.py", b.amqp, &env);
    let url = b.shard_url(0);
    run_local(TEST_DEADLINE, move || async move {
        let c = Client::connect(ClientOptions { url, ..Default::default() }).await.unwrap();
        c.declare(&queue, false).await.unwrap();
        let (name, mut replies) = within("reply consumer", STEP, c.reply_consumer()).await.unwrap();
        let to = ReplyTo::decode(name.as_bytes()).unwrap();
        assert_eq!(to.shard, 0, "the name names the requester's shard");
        let p = c.producer(&queue, ProducerOptions { confirm: true, ..Default::default() }).await.unwrap();
        for i in 0..4 {
            let props = PropsBuilder::new().reply_to(&name).correlation_id(&format!("n-{i}")).build();
            let conf = p.publish_with(&props, format!("ask{i}").as_bytes()).await.unwrap();
            p.flush().unwrap();
            within("confirm", STEP, conf).await.unwrap();
        }
        let mut got = Vec::new();
        for _ in 0..4 {
            let d = within("reply", STEP, replies.next()).await.expect("open").expect("reply");
            let props = Props::parse(&d.props).unwrap();
            let corr = String::from_utf8(props.short(props::CORRELATION_ID).unwrap().to_vec()).unwrap();
            got.push((corr, String::from_utf8(d.body.to_vec()).unwrap()));
        }
        got.sort();
        let want: Vec<(String, String)> = (0..4).map(|i| (format!("n-{i}"), format!("re:ask{i}"))).collect();
        assert_eq!(got, want);
        within("cancel", STEP, replies.cancel()).await.unwrap();
        c.close().await;
    });
    finish(server, Duration::from_secs(20)).assert_ok("rpc_server.py");
}

/// pika asks from shard 0 (tests/pika/rpc_client.py), the native client
/// serves from shard 1: it reads each request's `reply_to` and publishes the reply to
/// that name as to a queue.
#[test]
fn pika_requester_native_server() {
    let b = TestBroker::start();
    let queue = queue_on(1, 2, "rpc-native-srv");
    // The requester on shard 0, the server on shard 1.
    let env = [("RPC_QUEUE", queue.as_str()), ("RPC_COUNT", "6"), ("RPC_SHARD", "0")];
    let client = spawn("rpc_client.py", b.amqp, &env);
    let url = b.shard_url(1);
    let q = queue.clone();
    run_local(TEST_DEADLINE, move || async move {
        let c = Client::connect(ClientOptions { url, ..Default::default() }).await.unwrap();
        c.declare(&q, false).await.unwrap();
        let mut requests = c.subscribe(&q, 16).await.unwrap();
        for _ in 0..6 {
            let d = within("request", Duration::from_secs(20), requests.next()).await.expect("open").expect("request");
            let props = Props::parse(&d.props).unwrap();
            let reply_to = std::str::from_utf8(props.short(props::REPLY_TO).unwrap()).unwrap().to_string();
            assert!(ringmq::protocol::reply_to::is_reply_name(&reply_to), "{reply_to}");
            let corr = std::str::from_utf8(props.short(props::CORRELATION_ID).unwrap()).unwrap().to_string();
            let p = c.producer(&reply_to, ProducerOptions { confirm: true, ..Default::default() }).await.unwrap();
            let mut body = b"re:".to_vec();
            body.extend_from_slice(&d.body);
            let conf = p.publish_with(&PropsBuilder::new().correlation_id(&corr).build(), &body).await.unwrap();
            p.flush().unwrap();
            within("reply confirmed", STEP, conf).await.unwrap();
            requests.ack(d.tag);
        }
        c.close().await;
    });
    finish(client, Duration::from_secs(20)).assert_ok("rpc_client.py");
}

/// The native protocol's rules, frame by frame: Subscribe to the
/// pseudo-queue is answered `ReplyTo`; one reply consumer a connection;
/// a reply from another shard is delivered with consecutive tags and is
/// never acked; forged names reach nobody (confirmed and dropped, error
/// 26 with MANDATORY, error 10 on Declare); the requester gone too.
#[test]
fn native_reply_to_over_the_wire() {
    let b = TestBroker::start();
    let (mut req, req_shard) = Raw::hello(b.shards[0]);
    let (mut rep, rep_shard) = Raw::hello(b.shards[1]);
    assert_ne!(req_shard, rep_shard, "requester and replier on different shards");
    let cid = req.consumer_id();
    let rid =
        req.send(Cmd::Subscribe { consumer_id: cid, prefetch: 1, queue: PSEUDO_QUEUE, priority: 0, origin: false });
    let name = match req.recv().frame() {
        Frame { request_id, cmd: Cmd::ReplyTo { consumer_id, name } } if request_id == rid && consumer_id == cid => {
            name.to_string()
        }
        other => panic!("expected ReplyTo, got {other:?}"),
    };
    let to = ReplyTo::decode(name.as_bytes()).unwrap();
    assert_eq!((to.shard, to.channel), (req_shard, cid));
    // One reply consumer a connection.
    let again = req.consumer_id();
    req.send(Cmd::Subscribe { consumer_id: again, prefetch: 1, queue: PSEUDO_QUEUE, priority: 0, origin: false });
    req.expect_error(ErrorCode::ConsumerExists);

    // A declare of the name: there (Ok 0); of the pseudo-queue: Ok.
    let rid = rep.send(Cmd::Declare { flags: op::DECLARE_PASSIVE, queue: &name, args: &[] });
    assert_eq!(rep.expect_ok(rid), 0);
    let rid = rep.send(Cmd::Declare { flags: 0, queue: PSEUDO_QUEUE, args: &[] });
    rep.expect_ok(rid);

    // Replies from the other shard, by Publish and by PublishTo "".
    let rid = rep.publish(&name, &[b"r1", b"r2"], true);
    rep.expect_confirm(rid, 2);
    let rid = publish_to_default(&mut rep, &name, op::PUBLISH_CONFIRM | op::PUBLISH_MANDATORY, b"r3");
    rep.expect_confirm(rid, 1);
    let mut tags = Vec::new();
    while tags.len() < 3 {
        match req.recv().frame() {
            Frame { cmd: Cmd::Deliver { consumer_id, first_tag, entries, .. }, .. } => {
                assert_eq!(consumer_id, cid);
                for (i, e) in entries.iter().enumerate() {
                    tags.push((first_tag + i as u64, e.body.to_vec()));
                }
            }
            other => panic!("expected a Deliver, got {other:?}"),
        }
    }
    assert_eq!(tags, vec![(1, b"r1".to_vec()), (2, b"r2".to_vec()), (3, b"r3".to_vec())]);
    // Never acked: the reply consumer is no queue's.
    let mut ack = BytesMut::new();
    ringmq::protocol::encode_ack(&mut ack, req.rid(), None, cid, &[(1, 1)]);
    req.write(&ack);
    req.expect_error(ErrorCode::UnknownConsumer);
    // From the requester's own connection too: delivered, then confirmed.
    let rid = req.publish(&name, &[b"self"], true);
    match req.recv().frame() {
        Frame { cmd: Cmd::Deliver { consumer_id, first_tag, .. }, .. } => {
            assert_eq!((consumer_id, first_tag), (cid, 4))
        }
        other => panic!("expected the Deliver of its own reply, got {other:?}"),
    }
    req.expect_confirm(rid, 1);

    // Forged: garbled, and well formed with another token.
    let other = ReplyTo { token: to.token ^ 1, ..to }.encode();
    for bad in [format!("{PSEUDO_QUEUE}.nothex"), other.clone()] {
        let rid = rep.publish(&bad, &[b"forged"], true);
        rep.expect_confirm(rid, 1);
        let rid = publish_to_default(&mut rep, &bad, op::PUBLISH_CONFIRM | op::PUBLISH_MANDATORY, b"forged");
        assert_eq!(rep.expect_error(ErrorCode::NoRoute).0, rid);
        let rid = rep.send(Cmd::Declare { flags: op::DECLARE_PASSIVE, queue: &bad, args: &[] });
        assert_eq!(rep.expect_error(ErrorCode::QueueNotFound).0, rid);
    }
    req.expect_silence();

    // Unsubscribed: the name reaches nobody.
    let rid = req.send(Cmd::Unsubscribe { consumer_id: cid });
    req.expect_ok(rid);
    let rid = publish_to_default(&mut rep, &name, op::PUBLISH_MANDATORY, b"late");
    assert_eq!(rep.expect_error(ErrorCode::NoRoute).0, rid);
    req.expect_silence();
    // Subscribed again: a new name; the old one stays dead.
    let cid2 = req.consumer_id();
    let rid =
        req.send(Cmd::Subscribe { consumer_id: cid2, prefetch: 1, queue: PSEUDO_QUEUE, priority: 0, origin: false });
    let name2 = match req.recv().frame() {
        Frame { request_id, cmd: Cmd::ReplyTo { name, .. } } if request_id == rid => name.to_string(),
        other => panic!("expected ReplyTo, got {other:?}"),
    };
    assert_ne!(name2, name, "each reply consumer has its own token");
    let rid = publish_to_default(&mut rep, &name, op::PUBLISH_MANDATORY, b"old");
    assert_eq!(rep.expect_error(ErrorCode::NoRoute).0, rid);
    let rid = rep.publish(&name2, &[b"new"], true);
    rep.expect_confirm(rid, 1);
    match req.recv().frame() {
        Frame { cmd: Cmd::Deliver { consumer_id, first_tag, entries, .. }, .. } => {
            assert_eq!((consumer_id, first_tag, entries.len()), (cid2, 1, 1));
        }
        other => panic!("expected a Deliver, got {other:?}"),
    }
    req.expect_silence();
    drop(req);
    rep.send(Cmd::Declare { flags: op::DECLARE_PASSIVE, queue: &name, args: &[] });
    rep.expect_error(ErrorCode::QueueNotFound);
    rep.ping();
}

/// One PublishTo the default exchange with `key`, one message.
fn publish_to_default(r: &mut Raw, key: &str, flags: u8, body: &[u8]) -> u64 {
    let rid = r.rid();
    let mut b = BytesMut::new();
    let mut w = BatchWriter::begin_publish_to(&mut b, rid, flags, "", key);
    w.push(&mut b, 0, &[], body);
    w.finish(&mut b);
    r.write(&b);
    rid
}
