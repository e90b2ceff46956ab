//! Direct reply-to across the nodes of a cluster of three `ringmq serve`
//! processes: the requester on one node, the server on another, the
//! replies carried over the data link straight to the requester's
//! connection (no queue anywhere). Then the requester's node is named in
//! a reply after the requester is gone: dropped, or refused with
//! NoRoute when mandatory.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod cluster;
mod common;

use bytes::BytesMut;
use cluster::three;
use common::{run_local, within, Raw, STEP, TEST_DEADLINE};
use futures_lite::StreamExt;
use ringmq::client::{Client, ClientOptions, ProducerOptions};
use ringmq::protocol::props::{self, Props, PropsBuilder};
use ringmq::protocol::reply_to::ReplyTo;
use ringmq::protocol::{op, BatchWriter, Cmd, ErrorCode, Frame};
use std::time::Duration;

#[test]
fn replies_cross_nodes_straight_to_the_requester() {
    let root = tempfile::tempdir().unwrap();
    let nodes = three(root.path());
    let long = Duration::from_secs(60);

    // pika asks on n1, pika serves on n2.
    let env = [("RPC_QUEUE", "rpc-cluster"), ("RPC_COUNT", "5")];
    let server = common::pika::spawn("rpc_server.py", nodes[1].amqp, &env);
    common::pika::run("rpc_client.py", nodes[0].amqp, &env, long).assert_ok("rpc_client.py on n1");
    common::pika::finish(server, Duration::from_secs(20)).assert_ok("rpc_server.py on n2");

    // The native client asks on n3, pika serves on n1.
    let env = [("RPC_QUEUE", "rpc-cluster-native"), ("RPC_COUNT", "3")];
    let server = common::pika::spawn("rpc_server.py", nodes[0].amqp, &env);
    let url = format!("ringmq://{}", nodes[2].native);
    let name = run_local(TEST_DEADLINE, move || async move {
        let o = ClientOptions { url, shard_aware: false, ..Default::default() };
        let c = within("connect", STEP, Client::connect(o)).await.unwrap();
        c.declare("rpc-cluster-native", false).await.unwrap();
        let (name, mut replies) = within("reply consumer", STEP, c.reply_consumer()).await.unwrap();
        let p =
            c.producer("rpc-cluster-native", ProducerOptions { confirm: true, ..Default::default() }).await.unwrap();
        for i in 0..3 {
            let props = PropsBuilder::new().reply_to(&name).correlation_id(&format!("x{i}")).build();
            let conf = p.publish_with(&props, b"hello").await.unwrap();
            p.flush().unwrap();
            within("confirm", STEP, conf).await.unwrap();
        }
        for _ in 0..3 {
            let d = within("reply from n1", Duration::from_secs(20), replies.next()).await.expect("open").unwrap();
            assert_eq!(&d.body[..], b"re:hello");
            assert!(Props::parse(&d.props).unwrap().short(props::CORRELATION_ID).is_some());
        }
        c.close().await;
        name
    });
    common::pika::finish(server, Duration::from_secs(20)).assert_ok("rpc_server.py on n1");
    let to = ReplyTo::decode(name.as_bytes()).unwrap();
    assert_ne!(to.node, 0, "a clustered node names itself");

    // The requester (on n3) is gone: a declare of its name through n2
    // says so once n3 has seen the socket close, and a reply from n2
    // reaches nobody.
    let (mut r, _) = Raw::hello(nodes[1].native);
    cluster::wait_until("the requester's name is gone", || {
        r.send(Cmd::Declare { flags: op::DECLARE_PASSIVE, queue: &name, args: &[] });
        match r.recv().frame() {
            Frame { cmd: Cmd::Ok { .. }, .. } => false,
            Frame { cmd: Cmd::Error { code, .. }, .. } => {
                assert_eq!(ErrorCode::from_u16(code), Some(ErrorCode::QueueNotFound));
                true
            }
            other => panic!("expected Ok or Error, got {other:?}"),
        }
    });
    let rid = r.rid();
    let mut b = BytesMut::new();
    let mut w = BatchWriter::begin_publish_to(&mut b, rid, op::PUBLISH_CONFIRM | op::PUBLISH_MANDATORY, "", &name);
    w.push(&mut b, 0, &[], b"late");
    w.finish(&mut b);
    r.write(&b);
    let (answered, _) = r.expect_error(ErrorCode::NoRoute);
    assert_eq!(answered, rid);
    // A name naming a node that is not a member: dropped at once.
    let stranger = ReplyTo { node: to.node ^ 0x5a5a, ..to }.encode();
    let rid = r.publish(&stranger, &[b"lost"], true);
    r.expect_confirm(rid, 1);
    r.ping();
}
