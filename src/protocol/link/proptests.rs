//! Property tests for the link codec: round trips for every frame, no
//! panics on arbitrary input, every strict prefix of a frame Incomplete,
//! and the size limit from the header alone.

use super::*;
use proptest::prelude::*;

const MAX: usize = 1 << 20;

/// An owned mirror of `Frame`, so proptest can generate it.
#[derive(Debug, Clone)]
enum O {
    Hello { version: u16, cluster_id: [u8; 16], node_id: u64, node_name: String, nonce: [u8; 32] },
    Auth([u8; 32]),
    Rpc { id: u64, kind: RpcKind, payload: Vec<u8> },
    RpcReply { id: u64, payload: Vec<u8> },
    Ping,
    Pong,
    Close { code: u16, reason: String },
    Data(Vec<u8>),
}

impl O {
    fn frame(&self) -> Frame<'_> {
        match self {
            O::Hello { version, cluster_id, node_id, node_name, nonce } => Frame::Hello(Hello {
                version: *version,
                cluster_id: *cluster_id,
                node_id: *node_id,
                node_name,
                nonce: *nonce,
            }),
            O::Auth(proof) => Frame::Auth { proof: *proof },
            O::Rpc { id, kind, payload } => Frame::Rpc { id: *id, kind: *kind, payload },
            O::RpcReply { id, payload } => Frame::RpcReply { id: *id, payload },
            O::Ping => Frame::Ping,
            O::Pong => Frame::Pong,
            O::Close { code, reason } => Frame::Close { code: *code, reason },
            O::Data(payload) => Frame::Data { payload },
        }
    }
}

/// UTF-8 of `lo..=255` bytes, multi-byte chars included (cut on a char
/// boundary to fit the one-byte length).
fn str8(lo: usize) -> impl Strategy<Value = String> {
    "\\PC{0,120}".prop_filter_map("a string of the field's size", move |s| {
        let mut n = s.len().min(255);
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        let s = s[..n].to_string();
        (s.len() >= lo).then_some(s)
    })
}

fn owned() -> impl Strategy<Value = O> {
    let kind = proptest::sample::select(RpcKind::ALL.to_vec());
    let payload = prop::collection::vec(any::<u8>(), 0..600);
    prop_oneof![
        (any::<u16>(), any::<[u8; 16]>(), any::<u64>(), str8(1), any::<[u8; 32]>()).prop_map(
            |(version, cluster_id, node_id, node_name, nonce)| O::Hello {
                version,
                cluster_id,
                node_id,
                node_name,
                nonce
            }
        ),
        any::<[u8; 32]>().prop_map(O::Auth),
        (any::<u64>(), kind, payload.clone()).prop_map(|(id, kind, payload)| O::Rpc { id, kind, payload }),
        (any::<u64>(), payload.clone()).prop_map(|(id, payload)| O::RpcReply { id, payload }),
        payload.prop_map(O::Data),
        Just(O::Ping),
        Just(O::Pong),
        (any::<u16>(), str8(0)).prop_map(|(code, reason)| O::Close { code, reason }),
    ]
}

fn encoded(o: &O) -> BytesMut {
    let mut b = BytesMut::new();
    o.frame().encode(&mut b);
    b
}

proptest! {
    #[test]
    fn round_trip(o in owned(), tail in prop::collection::vec(any::<u8>(), 0..16)) {
        let mut b = encoded(&o);
        let len = b.len();
        prop_assert_eq!(len, o.frame().encoded_len());
        // Bytes after the frame (the next one's start) are not read.
        b.extend_from_slice(&tail);
        match decode(&b, MAX) {
            Ok(Decoded::Frame(f, n)) => {
                prop_assert_eq!(n, len);
                prop_assert_eq!(f, o.frame());
            }
            Ok(Decoded::Incomplete) => prop_assert!(false, "a whole frame is Incomplete"),
            Err(e) => prop_assert!(false, "a valid frame fails: {}", e),
        }
        prop_assert_eq!(peek_len(&b, MAX), Ok(Some(len)));
    }

    #[test]
    fn strict_prefixes_are_incomplete(o in owned()) {
        let b = encoded(&o);
        for n in 0..b.len() {
            prop_assert!(
                matches!(decode(&b[..n], MAX), Ok(Decoded::Incomplete)),
                "prefix of {} of {} bytes", n, b.len()
            );
        }
    }

    #[test]
    fn the_limit_is_checked_from_the_header(o in owned()) {
        let b = encoded(&o);
        let max = b.len() - 1;
        // The header alone already fails: nothing of the body is needed.
        let e = decode(&b[..HEADER_BYTES], max).err();
        prop_assert_eq!(e, Some(DecodeError::TooLarge { len: b.len(), max }));
    }

    #[test]
    fn arbitrary_bytes_never_panic(buf in prop::collection::vec(any::<u8>(), 0..512), max in 0usize..1024) {
        let mut rest = &buf[..];
        // Frame after frame, as a connection reads them.
        while let Ok(Decoded::Frame(f, n)) = decode(rest, max) {
            prop_assert!(n >= HEADER_BYTES && n <= rest.len() && n <= max);
            // What decodes re-encodes to the same bytes: one encoding each.
            let mut again = BytesMut::new();
            f.encode(&mut again);
            prop_assert_eq!(&again[..], &rest[..n]);
            rest = &rest[n..];
        }
    }

    /// Valid headers with arbitrary bodies: the body decoder sees every
    /// opcode with every body length, and never panics.
    #[test]
    fn arbitrary_bodies_never_panic(opcode in 1u8..=7, body in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut b = BytesMut::new();
        let h = LinkHeader { body_len: U32::new(len32(body.len())), opcode, flags: 0, reserved: U16::new(0) };
        b.put_slice(h.as_bytes());
        b.put_slice(&body);
        if let Ok(Decoded::Frame(f, n)) = decode(&b, MAX) {
            prop_assert_eq!(n, b.len());
            prop_assert_eq!(f.opcode(), opcode);
        }
    }
}
