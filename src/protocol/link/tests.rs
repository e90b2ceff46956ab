//! Tests of the inter-node link codec: frames, the handshake and its transcript.
use super::*;

fn hello(name: &str) -> Hello<'_> {
    Hello { version: VERSION, cluster_id: [7; 16], node_id: 3, node_name: name, nonce: [9; NONCE_BYTES] }
}

fn one(f: &Frame<'_>) -> BytesMut {
    let mut b = BytesMut::new();
    f.encode(&mut b);
    assert_eq!(b.len(), f.encoded_len(), "{}: encoded_len agrees", f.name());
    b
}

#[test]
fn the_longest_hello_is_the_handshake_limit() {
    let name = "n".repeat(NODE_NAME_BYTES_MAX);
    let b = one(&Frame::Hello(hello(&name)));
    assert_eq!(b.len(), HELLO_FRAME_BYTES_MAX);
    assert!(matches!(decode(&b, HELLO_FRAME_BYTES_MAX), Ok(Decoded::Frame(Frame::Hello(_), _))));
    // One byte under the limit: refused from the header alone.
    let e = decode(&b[..HEADER_BYTES], HELLO_FRAME_BYTES_MAX - 1).err();
    assert_eq!(e, Some(DecodeError::TooLarge { len: HELLO_FRAME_BYTES_MAX, max: HELLO_FRAME_BYTES_MAX - 1 }));
}

#[test]
fn a_hello_without_a_name_or_with_a_foreign_magic_is_refused() {
    let mut b = one(&Frame::Hello(hello("x")));
    let last = b.len() - 2;
    // The name's length byte set to 0 and the body one byte shorter.
    b[last] = 0;
    b.truncate(last + 1);
    b[0] -= 1;
    assert!(matches!(decode(&b, 1024), Err(DecodeError::Malformed { why: "empty node name", .. })));
    let mut b = one(&Frame::Hello(hello("x")));
    b[HEADER_BYTES] = b'X';
    assert!(matches!(decode(&b, 1024), Err(DecodeError::Malformed { what: "Hello", .. })));
}

#[test]
fn header_garbage_is_refused_before_the_body() {
    // A native frame header (16 bytes, reserved fields elsewhere) or
    // an HTTP request is refused at its first eight bytes.
    assert!(decode(b"GET / HTTP/1.1\r\n", 1 << 20).is_err());
    let mut b = one(&Frame::Ping);
    b[5] = 1;
    assert_eq!(decode(&b, 64).err(), Some(DecodeError::Reserved { flags: 1, reserved: 0 }));
    let mut b = one(&Frame::Ping);
    b[4] = 0;
    assert_eq!(decode(&b, 64).err(), Some(DecodeError::UnknownOpcode(0)));
    let mut b = one(&Frame::Rpc { id: 1, kind: RpcKind::Vote, payload: b"x" });
    b[HEADER_BYTES + 8] = 8;
    assert!(matches!(decode(&b, 64), Err(DecodeError::Malformed { why: "unknown RPC kind", .. })));
}

#[test]
fn a_u32_max_body_is_too_large_not_a_wrap() {
    let h = LinkHeader { body_len: U32::new(u32::MAX), opcode: op::RPC, flags: 0, reserved: U16::new(0) };
    let whole = HEADER_BYTES + usize::try_from(u32::MAX).unwrap();
    assert_eq!(peek_len(h.as_bytes(), usize::MAX), Ok(Some(whole)));
    assert!(matches!(peek_len(h.as_bytes(), 64 << 20), Err(DecodeError::TooLarge { .. })));
}

#[test]
fn transcripts_differ_by_role_and_by_every_field() {
    let (d, l) = (hello("a"), Hello { node_id: 4, nonce: [1; NONCE_BYTES], ..hello("b") });
    let base = auth_transcript(Role::Dialler, &d, &l);
    assert_ne!(base, auth_transcript(Role::Listener, &d, &l));
    assert_ne!(base, auth_transcript(Role::Dialler, &l, &d));
    assert_ne!(base, auth_transcript(Role::Dialler, &Hello { nonce: [8; NONCE_BYTES], ..d.clone() }, &l));
    assert_ne!(base, auth_transcript(Role::Dialler, &d, &Hello { node_id: 5, ..l.clone() }));
    assert_ne!(base, auth_transcript(Role::Dialler, &Hello { cluster_id: [0; 16], ..d.clone() }, &l));
    // The names are for logs: they do not enter the proof.
    assert_eq!(base, auth_transcript(Role::Dialler, &hello("other"), &l));
}

#[test]
fn close_codes_are_stable() {
    for v in 0..=20u16 {
        if let Some(c) = CloseCode::from_u16(v) {
            assert_eq!(c.as_u16(), v);
        }
    }
    assert_eq!(CloseCode::AuthFailed.as_u16(), 6);
    assert_eq!(CloseCode::NotMember.as_u16(), 11);
    assert_eq!(CloseCode::from_u16(12), None);
    assert_eq!(RpcKind::from_u8(8), None);
    assert_eq!(RpcKind::Status as u8, 7);
    for k in RpcKind::ALL {
        assert_eq!(RpcKind::from_u8(k as u8), Some(k));
    }
}
