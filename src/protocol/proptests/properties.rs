//! The properties themselves: round trips, pipelining, prefixes, garbage
//! and the size limit, over the generators of the parent module.

use super::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_cmd_round_trips(rid in any::<u64>(), o in owned_cmd()) {
        let buf = encoded(rid, &o);
        let back = decode_whole(&buf)?;
        with_frame(rid, &o, |f| -> Result<(), TestCaseError> {
            prop_assert_eq!(&back, f);
            Ok(())
        })?;
        // And the encoding is canonical: re-encoding gives the same bytes.
        let mut again = BytesMut::new();
        back.encode(&mut again);
        prop_assert_eq!(&again[..], &buf[..]);
    }

    #[test]
    fn pipelined_frames_decode_in_order(frames in prop::collection::vec((any::<u64>(), owned_cmd()), 1..6)) {
        let mut stream = BytesMut::new();
        for (rid, o) in &frames {
            stream.extend_from_slice(&encoded(*rid, o));
        }
        let mut at = 0;
        for (rid, o) in &frames {
            let Ok(Decoded::Frame(f, n)) = decode(&stream[at..], MAX) else {
                return Err(TestCaseError::fail("frame in a stream did not decode"));
            };
            with_frame(*rid, o, |want| -> Result<(), TestCaseError> {
                prop_assert_eq!(&f, want);
                Ok(())
            })?;
            at += n;
        }
        prop_assert_eq!(at, stream.len());
        prop_assert!(matches!(decode(&stream[at..], MAX), Ok(Decoded::Incomplete)));
    }

    #[test]
    fn strict_prefixes_are_incomplete(rid in any::<u64>(), o in owned_cmd()) {
        let buf = encoded(rid, &o);
        for n in 0..buf.len() {
            prop_assert!(
                matches!(decode(&buf[..n], MAX), Ok(Decoded::Incomplete)),
                "prefix of {} of {} bytes", n, buf.len()
            );
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(buf in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&buf, MAX);
        let _ = decode(&buf, 64);
    }

    /// Field tables and property lists from arbitrary bytes: no panic;
    /// what parses re-encodes to something that parses the same (bytes
    /// compared: floats may be NaN).
    #[test]
    fn tables_and_properties_never_panic_and_reparse(buf in prop::collection::vec(any::<u8>(), 0..256)) {
        use crate::protocol::{field_table::Table, props};
        if let Ok(t) = Table::parse(&buf) {
            let raw = t.encode();
            prop_assert_eq!(Table::parse(&raw).map(|x| x.encode()).ok(), Some(raw));
        }
        let _ = props::scan(&buf);
        if let Ok(p) = props::Props::parse(&buf) {
            let h = p.headers.clone().unwrap_or_default();
            let out = props::rewrite(&buf, &h, true).expect("a parsed property list rewrites");
            let again = props::Props::parse(&out).expect("a rewritten property list parses");
            prop_assert_eq!(again.headers.as_ref().map(|t| t.encode()), Some(h.encode()));
            prop_assert!(!again.is_set(props::EXPIRATION));
        }
    }

    /// Whatever a native publisher's builder is given (strings past the
    /// 255 bytes of a short string are cut there), its properties parse
    /// back to the same fields.
    #[test]
    fn built_properties_parse_back(
        fields in prop::collection::vec(prop::option::of("[a-z0-9./-]{0,300}"), 8),
        ts in prop::option::of(any::<u64>()),
        prio in prop::option::of(any::<u8>()),
    ) {
        use crate::protocol::props::{self, PropsBuilder};
        let set = |b: PropsBuilder, i: usize, f: fn(PropsBuilder, &str) -> PropsBuilder| match &fields[i] {
            Some(v) => f(b, v),
            None => b,
        };
        let mut b = PropsBuilder::new();
        b = set(b, 0, PropsBuilder::content_type);
        b = set(b, 1, PropsBuilder::content_encoding);
        b = set(b, 2, PropsBuilder::correlation_id);
        b = set(b, 3, PropsBuilder::reply_to);
        b = set(b, 4, PropsBuilder::message_id);
        b = set(b, 5, PropsBuilder::kind);
        b = set(b, 6, PropsBuilder::user_id);
        b = set(b, 7, PropsBuilder::app_id);
        if let Some(t) = ts { b = b.timestamp(t); }
        if let Some(p) = prio { b = b.priority(p); }
        let raw = b.build();
        let p = props::Props::parse(&raw).expect("built properties parse");
        let ids = [props::CONTENT_TYPE, props::CONTENT_ENCODING, props::CORRELATION_ID, props::REPLY_TO,
            props::MESSAGE_ID, props::TYPE, props::USER_ID, props::APP_ID];
        for (i, id) in ids.into_iter().enumerate() {
            let want = fields[i].as_ref().map(|v| &v.as_bytes()[..v.len().min(255)]);
            prop_assert_eq!(p.short(id), want, "field {}", id);
        }
        prop_assert_eq!(p.timestamp(), ts);
        prop_assert_eq!(p.octet(props::PRIORITY), prio);
    }

    #[test]
    fn framed_garbage_never_panics_and_round_trips(buf in framed_garbage()) {
        // `peek_len` agrees with `decode` on the frame's length.
        prop_assert_eq!(peek_len(&buf, MAX).ok().flatten(), Some(buf.len()));
        if let Ok(Decoded::Frame(f, n)) = decode(&buf, MAX) {
            prop_assert_eq!(n, buf.len());
            let mut again = BytesMut::new();
            f.encode(&mut again);
            prop_assert_eq!(&again[..], &buf[..], "accepted frame is not canonical");
        }
    }

    /// Any prefix is Incomplete or fails on its header: a decoder never
    /// reports a body error before the whole body is there.
    #[test]
    fn prefixes_of_arbitrary_input(
        buf in prop_oneof![framed_garbage(), prop::collection::vec(any::<u8>(), 0..128)],
        max in prop_oneof![Just(MAX), 16usize..400],
    ) {
        for n in 0..=buf.len() {
            let r = decode(&buf[..n], max);
            if n < HEADER_BYTES {
                prop_assert!(matches!(r, Ok(Decoded::Incomplete)));
                continue;
            }
            let body_len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            match header_error(&buf, max) {
                Some(e) => prop_assert_eq!(r.err(), Some(e)),
                None if n < HEADER_BYTES + body_len => prop_assert!(matches!(r, Ok(Decoded::Incomplete))),
                None => {
                    if let Ok(Decoded::Frame(_, used)) = r {
                        prop_assert_eq!(used, HEADER_BYTES + body_len);
                    }
                }
            }
        }
    }

    #[test]
    fn too_large_rejected_before_the_body(
        opcode in prop::sample::select(&OPCODES[..]),
        max in HEADER_BYTES..(1usize << 24),
        excess in 1u64..(1 << 32),
        sent in 0usize..64,
    ) {
        let body_len = (max - HEADER_BYTES) as u64 + excess;
        prop_assume!(body_len <= u64::from(u32::MAX));
        let mut buf = FrameHeader::new(opcode, 0, 1, body_len as u32).as_bytes().to_vec();
        buf.resize(HEADER_BYTES + sent, 0); // only part of the body has arrived
        let len = HEADER_BYTES + body_len as usize;
        prop_assert_eq!(decode(&buf, max).err(), Some(DecodeError::TooLarge { len, max }));
    }

    #[test]
    fn batch_writer_publish_decodes_to_its_entries(
        rid in any::<u64>(),
        flags in 0..=op::PUBLISH_KNOWN,
        queue in queue(),
        es in entries(),
        prefix in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        // A non-empty buffer first: the writer must patch its own frame only.
        let mut buf = BytesMut::from(&prefix[..]);
        let mut w = BatchWriter::begin_publish(&mut buf, rid, flags, &queue);
        for e in &es {
            w.push(&mut buf, if e.0 { ENTRY_REDELIVERED } else { 0 }, &e.1, &e.2);
        }
        prop_assert_eq!(w.count() as usize, es.len());
        prop_assert_eq!(w.frame_len(&buf), buf.len() - prefix.len());
        w.finish(&mut buf);
        prop_assert_eq!(&buf[..prefix.len()], &prefix[..]);
        let f = decode_whole(&buf[prefix.len()..])?;
        prop_assert_eq!(f.request_id, rid);
        let Cmd::Publish { flags: got_flags, queue: got_queue, entries } = f.cmd else {
            return Err(TestCaseError::fail("not a Publish"));
        };
        prop_assert_eq!(got_flags, flags);
        prop_assert_eq!(got_queue, &queue[..]);
        prop_assert_eq!(entries.len() as usize, es.len());
        let got: Vec<OwnedEntry> =
            entries.iter().map(|e| (e.redelivered(), e.props.to_vec(), e.body.to_vec())).collect();
        prop_assert_eq!(got, es);
    }

    #[test]
    fn batch_writer_deliver_decodes_to_its_entries(consumer_id in any::<u32>(), first_tag in 1..u64::MAX, es in entries()) {
        let mut buf = BytesMut::new();
        let mut w = BatchWriter::begin_deliver(&mut buf, consumer_id, first_tag);
        for e in &es {
            w.push(&mut buf, if e.0 { ENTRY_REDELIVERED } else { 0 }, &e.1, &e.2);
        }
        w.finish(&mut buf);
        let f = decode_whole(&buf)?;
        let want = O::Deliver { consumer_id, first_tag, origin: None, entries: es };
        with_frame(0, &want, |w| -> Result<(), TestCaseError> {
            prop_assert_eq!(&f, w);
            Ok(())
        })?;
    }

    #[test]
    fn batch_writer_deliver_from_decodes_to_its_origin_and_entries(
        consumer_id in any::<u32>(),
        first_tag in 1..u64::MAX,
        exchange in prop_oneof![Just(String::new()), queue()],
        key in queue(),
        es in entries(),
    ) {
        let mut buf = BytesMut::new();
        let mut w = BatchWriter::begin_deliver_from(&mut buf, consumer_id, first_tag, &exchange, &key);
        for e in &es {
            w.push(&mut buf, if e.0 { ENTRY_REDELIVERED } else { 0 }, &e.1, &e.2);
        }
        w.finish(&mut buf);
        let f = decode_whole(&buf)?;
        let want = O::Deliver { consumer_id, first_tag, origin: Some((exchange, key)), entries: es };
        with_frame(0, &want, |w| -> Result<(), TestCaseError> {
            prop_assert_eq!(&f, w);
            Ok(())
        })?;
    }

    #[test]
    fn encode_ack_matches_frame_encode(rid in any::<u64>(), consumer_id in any::<u32>(), rs in ranges(), nack in any::<Option<bool>>()) {
        let mut buf = BytesMut::new();
        encode_ack(&mut buf, rid, nack, consumer_id, &rs);
        let o = match nack {
            None => O::Ack { consumer_id, ranges: rs },
            Some(requeue) => O::Nack { requeue, consumer_id, ranges: rs },
        };
        prop_assert_eq!(&buf[..], &encoded(rid, &o)[..]);
        decode_whole(&buf)?;
    }

    #[test]
    fn admin_unknown_command_rejected(command in prop_oneof![Just(0u8), op::ADMIN_COMMAND_MAX + 1..=u8::MAX], arg in queue()) {
        let mut body = vec![command];
        body.extend_from_slice(&(arg.len() as u16).to_le_bytes());
        body.extend_from_slice(arg.as_bytes());
        let mut v = FrameHeader::new(op::ADMIN, 0, 1, body.len() as u32).as_bytes().to_vec();
        v.extend_from_slice(&body);
        prop_assert_eq!(decode(&v, MAX).err(), Some(DecodeError::Malformed { what: "Admin", why: "unknown admin command" }));
    }
}

#[test]
fn admin_example_in_the_docs() {
    let mut buf = BytesMut::new();
    Frame { request_id: 2, cmd: Cmd::Admin { command: op::ADMIN_LIST_QUEUES, arg: "" } }.encode(&mut buf);
    let want = [3, 0, 0, 0, 0x50, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0x01, 0, 0];
    assert_eq!(&buf[..], &want[..]);
}

proptest! {
    /// Every kind byte and value: the five defined positions decode to
    /// themselves and encode back to the same bytes; anything else is
    /// refused, never taken as some other position.
    #[test]
    fn stream_positions_have_one_encoding(kind in any::<u8>(), value in prop_oneof![Just(0u64), any::<u64>()]) {
        match StreamAt::decode(kind, value) {
            Some(at) => prop_assert_eq!(at.encode(), (kind, value)),
            None => prop_assert!(kind > 4 || (kind < 3 && value != 0)),
        }
    }
}
