//! The native protocol's frames.

use bytes::BytesMut;
use ringmq::protocol::{decode as decode_frame, Decoded, HEADER_BYTES};

/// Feeds arbitrary bytes to `decode`, consuming frame after frame as a
/// connection would, and checks that every accepted frame re-encodes to
/// exactly the bytes it was decoded from (the encoding is canonical).
pub fn decode(data: &[u8]) {
    // The first byte picks a frame limit, so the size check is fuzzed too.
    let Some((&pick, mut rest)) = data.split_first() else { return };
    let frame_bytes_max = HEADER_BYTES + usize::from(pick) * 16;
    let mut out = BytesMut::new();
    while let Ok(Decoded::Frame(frame, used)) = decode_frame(rest, frame_bytes_max) {
        assert!(used >= HEADER_BYTES && used <= rest.len() && used <= frame_bytes_max);
        out.clear();
        frame.encode(&mut out);
        assert_eq!(&out[..], &rest[..used], "re-encoded frame differs: {frame:?}");
        match decode_frame(&out, frame_bytes_max) {
            Ok(Decoded::Frame(again, n)) => {
                assert_eq!(n, out.len());
                assert_eq!(again, frame);
            }
            _ => panic!("re-encoded frame does not decode: {frame:?}"),
        }
        // Every strict prefix of a whole frame is Incomplete.
        for cut in [0, used / 2, used - 1] {
            assert!(matches!(decode_frame(&rest[..cut], frame_bytes_max), Ok(Decoded::Incomplete)));
        }
        rest = &rest[used..];
    }
}

/// Direct reply-to names (`protocol::reply_to`): they come back from
/// replier clients, so any bytes. A name that decodes is the one its
/// fields encode to (lowercase hex, one version: canonical), and every
/// byte changed after the prefix either fails or names another target.
pub fn reply_name(data: &[u8]) {
    use ringmq::protocol::reply_to::{is_reply_name, ReplyTo};
    let Ok(to) = ReplyTo::decode(data) else { return };
    let name = to.encode();
    assert_eq!(name.as_bytes(), data, "a decoded name re-encodes to other bytes: {to:?}");
    assert!(is_reply_name(&name));
    assert_eq!(ReplyTo::decode(name.as_bytes()), Ok(to));
}
