//! AMQP client frames as lapin's codec (amq-protocol) writes them: a
//! client's whole session, frame group by frame group.

use super::*;
use amq_protocol::frame::{gen_frame, AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::{basic, channel, confirm, connection, exchange, queue, tx, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable};

fn amq(channel: u16, class: AMQPClass) -> AMQPFrame {
    AMQPFrame::Method(channel, class)
}

fn encode_amq(frames: &[AMQPFrame]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        let (v, _) = cookie_factory::gen(gen_frame(f), Vec::new()).expect("amq-protocol encodes");
        out.extend_from_slice(&v);
    }
    out
}

fn amq_table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert((*k).into(), v.clone());
    }
    t
}

pub(super) fn amq_props() -> basic::AMQPProperties {
    basic::AMQPProperties::default()
        .with_content_type("application/json".into())
        .with_headers(amq_table(&[("trace", AMQPValue::LongString("abc".into())), ("n", AMQPValue::LongLongInt(7))]))
        .with_delivery_mode(2)
        .with_priority(5)
        .with_expiration("60000".into())
        .with_message_id("m-1".into())
        .with_timestamp(1_700_000_000)
}

/// A client's session as lapin writes it, frame group by frame group.
pub(super) fn amqp_client_frames() -> Named {
    use AMQPClass::{Basic, Channel, Confirm, Connection, Exchange, Queue};
    let caps = amq_table(&[
        ("publisher_confirms", AMQPValue::Boolean(true)),
        ("basic.nack", AMQPValue::Boolean(true)),
        ("consumer_cancel_notify", AMQPValue::Boolean(true)),
    ]);
    let client_properties =
        amq_table(&[("product", AMQPValue::LongString("lapin".into())), ("capabilities", AMQPValue::FieldTable(caps))]);
    let args = amq_table(&[
        ("x-max-length", AMQPValue::LongLongInt(10)),
        ("x-queue-mode", AMQPValue::LongString("lazy".into())),
    ]);
    let publish = basic::Publish { exchange: "".into(), routing_key: "q".into(), mandatory: true, immediate: false };
    let header = AMQPContentHeader { class_id: 60, body_size: 5, properties: amq_props() };
    let groups: Vec<(&str, Vec<AMQPFrame>)> = vec![
        (
            "handshake",
            vec![
                amq(
                    0,
                    Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                        client_properties,
                        mechanism: "PLAIN".into(),
                        response: "\0guest\0guest".into(),
                        locale: "en_US".into(),
                    })),
                ),
                amq(
                    0,
                    Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                        channel_max: 2047,
                        frame_max: 131_072,
                        heartbeat: 60,
                    })),
                ),
                amq(0, Connection(connection::AMQPMethod::Open(connection::Open { virtual_host: "/".into() }))),
                amq(1, Channel(channel::AMQPMethod::Open(channel::Open {}))),
                amq(1, Confirm(confirm::AMQPMethod::Select(confirm::Select { nowait: false }))),
            ],
        ),
        (
            "topology",
            vec![
                amq(
                    1,
                    Exchange(exchange::AMQPMethod::Declare(exchange::Declare {
                        exchange: "logs".into(),
                        kind: "topic".into(),
                        passive: false,
                        durable: true,
                        auto_delete: false,
                        internal: false,
                        nowait: false,
                        arguments: FieldTable::default(),
                    })),
                ),
                amq(
                    1,
                    Queue(queue::AMQPMethod::Declare(queue::Declare {
                        queue: "q".into(),
                        passive: false,
                        durable: true,
                        exclusive: false,
                        auto_delete: false,
                        nowait: false,
                        arguments: args,
                    })),
                ),
                amq(
                    1,
                    Queue(queue::AMQPMethod::Bind(queue::Bind {
                        queue: "q".into(),
                        exchange: "logs".into(),
                        routing_key: "a.#".into(),
                        nowait: false,
                        arguments: FieldTable::default(),
                    })),
                ),
                amq(1, Basic(basic::AMQPMethod::Qos(basic::Qos { prefetch_count: 50, global: false }))),
                amq(
                    1,
                    Basic(basic::AMQPMethod::Consume(basic::Consume {
                        queue: "q".into(),
                        consumer_tag: "ctag-1".into(),
                        no_local: false,
                        no_ack: false,
                        exclusive: false,
                        nowait: false,
                        arguments: FieldTable::default(),
                    })),
                ),
            ],
        ),
        (
            "publish",
            vec![
                amq(1, Basic(basic::AMQPMethod::Publish(publish))),
                AMQPFrame::Header(1, 60, Box::new(header)),
                AMQPFrame::Body(1, b"hello".to_vec()),
            ],
        ),
        (
            "acks",
            vec![
                amq(1, Basic(basic::AMQPMethod::Ack(basic::Ack { delivery_tag: 3, multiple: true }))),
                amq(1, Basic(basic::AMQPMethod::Nack(basic::Nack { delivery_tag: 4, multiple: false, requeue: true }))),
                amq(1, Basic(basic::AMQPMethod::Reject(basic::Reject { delivery_tag: 5, requeue: false }))),
                amq(1, Basic(basic::AMQPMethod::Get(basic::Get { queue: "q".into(), no_ack: true }))),
                amq(
                    1,
                    Basic(basic::AMQPMethod::Cancel(basic::Cancel { consumer_tag: "ctag-1".into(), nowait: false })),
                ),
                AMQPFrame::Heartbeat(0),
            ],
        ),
        (
            "close",
            vec![
                amq(
                    1,
                    Channel(channel::AMQPMethod::Close(channel::Close {
                        reply_code: 200,
                        reply_text: "bye".into(),
                        class_id: 0,
                        method_id: 0,
                    })),
                ),
                amq(
                    0,
                    Connection(connection::AMQPMethod::Close(connection::Close {
                        reply_code: 200,
                        reply_text: "bye".into(),
                        class_id: 0,
                        method_id: 0,
                    })),
                ),
            ],
        ),
    ];
    let mut out: Named = groups.iter().map(|(name, frames)| named(name, encode_amq(frames))).collect();
    // What ringmq itself writes: a delivery, a confirm, a close.
    let mut b = BytesMut::new();
    amethod::put_deliver(&mut b, 1, "ctag-1", 9, true, "logs", "a.b");
    let props = PropsBuilder::new().content_type("text/plain").delivery_mode(2).build();
    aframe::put_content_header(&mut b, 1, 60, 3, &props);
    aframe::put_body(&mut b, 1, b"abc", 4096);
    amethod::put_confirm(&mut b, 1, false, 12, true);
    amethod::put_close(&mut b, 1, amethod::id::CHANNEL_CLOSE, 406, "PRECONDITION_FAILED", amethod::id::QUEUE_DECLARE);
    aframe::put_heartbeat(&mut b);
    out.push(named("server", &b[..]));
    // A transaction as lapin writes one: select, a publish and an ack,
    // commit, then a rollback; and what ringmq answers (their -oks).
    let publish = basic::Publish { exchange: "".into(), routing_key: "q".into(), mandatory: true, immediate: false };
    let header = AMQPContentHeader { class_id: 60, body_size: 2, properties: basic::AMQPProperties::default() };
    let tx_frames = vec![
        amq(1, AMQPClass::Tx(tx::AMQPMethod::Select(tx::Select {}))),
        amq(1, AMQPClass::Basic(basic::AMQPMethod::Publish(publish))),
        AMQPFrame::Header(1, 60, Box::new(header)),
        AMQPFrame::Body(1, b"tx".to_vec()),
        amq(1, AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack { delivery_tag: 1, multiple: false }))),
        amq(1, AMQPClass::Tx(tx::AMQPMethod::Commit(tx::Commit {}))),
        amq(1, AMQPClass::Tx(tx::AMQPMethod::Rollback(tx::Rollback {}))),
    ];
    let mut b = BytesMut::from(&encode_amq(&tx_frames)[..]);
    for ok in [amethod::id::TX_SELECT_OK, amethod::id::TX_COMMIT_OK, amethod::id::TX_ROLLBACK_OK] {
        amethod::put(&mut b, 1, ok, |_| ());
    }
    out.push(named("tx", &b[..]));
    out
}
