use super::*;
use crate::protocol::error::DecodeError;
use crate::protocol::header::{FrameHeader, HEADER_BYTES};
use crate::protocol::op;
use bytes::BytesMut;
use zerocopy::IntoBytes;

fn frame(opcode: u8, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut v = FrameHeader::new(opcode, flags, 7, body.len() as u32).as_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

fn decoded(buf: &[u8]) -> Result<Frame<'_>, DecodeError> {
    match decode(buf, 1 << 20)? {
        Decoded::Frame(f, n) => {
            assert_eq!(n, buf.len());
            Ok(f)
        }
        Decoded::Incomplete => panic!("incomplete"),
    }
}

#[test]
fn undefined_flags_rejected_on_every_opcode() {
    // Bug fixed: Ping, Confirm, Deliver, Subscribe... ignored their
    // flags, so two byte strings decoded to the same frame.
    assert!(decoded(&frame(op::PING, 0, &[])).is_ok());
    for (opcode, body) in [
        (op::PING, &[][..]),
        (op::PONG, &[]),
        (op::GET_EMPTY, &[]),
        (op::CONFIRM, &[1, 0, 0, 0]),
        (op::UNSUBSCRIBE, &[1, 0, 0, 0]),
        (op::OK, &[0; 8]),
    ] {
        let e = decoded(&frame(opcode, 0x80, body)).unwrap_err();
        assert_eq!(e, DecodeError::Malformed { what: op::name(opcode), why: "unknown flags set" });
    }
    assert!(decoded(&frame(op::NACK, op::NACK_REQUEUE, &[1, 0, 0, 0, 0, 0, 0, 0])).is_ok());
    assert!(decoded(&frame(op::NACK, 0x02, &[1, 0, 0, 0, 0, 0, 0, 0])).is_err());
}

#[test]
fn admin_list_consumers_decodes_and_its_neighbours_do_not() {
    // command u8, then the argument as str16 (u16 length, bytes).
    let bytes = frame(op::ADMIN, 0, &[op::ADMIN_LIST_CONSUMERS, 0, 0]);
    let f = decoded(&bytes).unwrap();
    assert_eq!(f.cmd, Cmd::Admin { command: op::ADMIN_LIST_CONSUMERS, arg: "" });
    let mut out = BytesMut::new();
    f.encode(&mut out);
    assert_eq!(&out[crate::protocol::header::HEADER_BYTES..], &[op::ADMIN_LIST_CONSUMERS, 0, 0]);
    // An argument is carried (the broker refuses it, not the codec).
    let with_arg = frame(op::ADMIN, 0, &[op::ADMIN_LIST_CONSUMERS, 1, 0, b'q']);
    let f = decoded(&with_arg).unwrap();
    assert_eq!(f.cmd, Cmd::Admin { command: op::ADMIN_LIST_CONSUMERS, arg: "q" });
    let bad = |body: &[u8]| decoded(&frame(op::ADMIN, 0, body)).is_err();
    assert!(bad(&[op::ADMIN_COMMAND_MAX + 1, 0, 0]), "past the last command");
    assert!(bad(&[op::ADMIN_LIST_CONSUMERS, 5, 0, b'q']), "argument shorter than its length");
    assert!(bad(&[op::ADMIN_LIST_CONSUMERS, 1, 0, 0xff]), "argument not UTF-8");
    assert!(bad(&[op::ADMIN_LIST_CONSUMERS]), "no argument length");
}

#[test]
fn empty_props_with_props_flag_rejected() {
    // Bug fixed: flag 0x02 with props_len 0 decoded, but `put_entry`
    // re-encodes it without the flag, so a GetOk did not round-trip.
    let mut body = vec![1, 0, 0, 0]; // consumer
    body.extend_from_slice(&5u64.to_le_bytes()); // tag
    body.extend_from_slice(&0u32.to_le_bytes()); // remaining
    body.extend_from_slice(&[0x02, 0, 0, 1, 0, 0, 0, b'x']);
    let e = decoded(&frame(op::GET_OK, 0, &body)).unwrap_err();
    assert_eq!(e, DecodeError::Malformed { what: "message entry", why: "properties flag with empty properties" });
}

#[test]
fn get_ok_round_trips() {
    let f = Frame {
        request_id: 3,
        cmd: Cmd::GetOk {
            consumer_id: 1,
            tag: 9,
            remaining: 4,
            entry: Entry { flags: 0x03, props: b"p", body: b"body" },
        },
    };
    let mut buf = BytesMut::new();
    f.encode(&mut buf);
    assert_eq!(decoded(&buf).unwrap(), f);
}

#[test]
fn hello_ok_shard_id_must_be_in_map() {
    let h = |shard_id| {
        let f = Frame {
            request_id: 1,
            cmd: Cmd::HelloOk(HelloOk {
                version: VERSION,
                shard_id,
                hash_id: 1,
                frame_bytes_max: 1 << 20,
                message_bytes_max: 1 << 16,
                prefetch_max: 1000,
                shard_addrs: vec!["127.0.0.1:5556", "127.0.0.1:5557"],
                heartbeat_ms: None,
            }),
        };
        let mut buf = BytesMut::new();
        f.encode(&mut buf);
        buf
    };
    assert!(decoded(&h(1)).is_ok());
    let e = decoded(&h(2)).unwrap_err();
    assert_eq!(e, DecodeError::Malformed { what: "HelloOk", why: "shard id outside the shard map" });
}

#[test]
fn too_large_checked_from_header_alone() {
    let hdr = FrameHeader::new(op::PUBLISH, 0, 1, u32::MAX);
    let e = decode(hdr.as_bytes(), 1 << 20).err().unwrap();
    assert_eq!(e, DecodeError::TooLarge { len: HEADER_BYTES + u32::MAX as usize, max: 1 << 20 });
    assert_eq!(e.code(), crate::protocol::ErrorCode::FrameTooLarge);
}

#[test]
fn deliver_origin_decodes_and_is_bounded() {
    // consumer 1, first tag 5, exchange "x", routing key "k.1", one entry "hi".
    let mut body = vec![1, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1, b'x', 3, b'k', b'.', b'1', 1, 0, 0, 0];
    body.extend_from_slice(&[0, 2, 0, 0, 0, b'h', b'i']);
    let buf = frame(op::DELIVER, op::DELIVER_ORIGIN, &body);
    match decoded(&buf).unwrap().cmd {
        Cmd::Deliver { consumer_id: 1, first_tag: 5, origin: Some(o), entries } => {
            assert_eq!((o.exchange, o.routing_key), ("x", "k.1"));
            assert_eq!(entries.iter().next().map(|e| e.body), Some(&b"hi"[..]));
        }
        other => panic!("{other:?}"),
    }
    // Without the flag the same bytes do not parse: the names are not
    // taken for entries.
    assert!(decoded(&frame(op::DELIVER, 0, &body)).is_err());
    // A routing key whose length runs past the frame.
    let cut = [1, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 200, b'k'];
    assert!(decoded(&frame(op::DELIVER, op::DELIVER_ORIGIN, &cut)).is_err());
    // Names that are not UTF-8.
    let bad = [1, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0, 0, 0];
    assert!(decoded(&frame(op::DELIVER, op::DELIVER_ORIGIN, &bad)).is_err());
}

#[test]
fn subscribe_origin_flag_round_trips_on_both_subscribes() {
    for cmd in [
        Cmd::Subscribe { consumer_id: 3, prefetch: 9, queue: "q", priority: 0, origin: true },
        Cmd::Subscribe { consumer_id: 3, prefetch: 9, queue: "q", priority: -4, origin: true },
        Cmd::StreamSubscribe { consumer_id: 3, prefetch: 9, queue: "s", at: StreamAt::Offset(7), origin: true },
    ] {
        let mut b = BytesMut::new();
        Frame { request_id: 2, cmd: cmd.clone() }.encode(&mut b);
        assert_eq!(decoded(&b).unwrap().cmd, cmd);
    }
    // A Subscribe without it is byte for byte what older clients send.
    let mut b = BytesMut::new();
    Frame {
        request_id: 2,
        cmd: Cmd::Subscribe { consumer_id: 3, prefetch: 9, queue: "q", priority: 0, origin: false },
    }
    .encode(&mut b);
    assert_eq!(b[5], 0, "no flags");
    // Bits past the defined ones are refused.
    let body = [3, 0, 0, 0, 9, 0, 0, 0, 1, b'q'];
    assert!(decoded(&frame(op::SUBSCRIBE, op::SUBSCRIBE_ORIGIN, &body)).is_ok());
    assert!(decoded(&frame(op::SUBSCRIBE, 0x04, &body)).is_err());
    let body = [3, 0, 0, 0, 9, 0, 0, 0, 1, b's', 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert!(decoded(&frame(op::STREAM_SUBSCRIBE, op::SUBSCRIBE_ORIGIN, &body)).is_ok());
    assert!(decoded(&frame(op::STREAM_SUBSCRIBE, op::SUBSCRIBE_PRIORITY, &body)).is_err());
}
