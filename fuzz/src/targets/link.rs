//! The inter-node link's frames (`protocol::link`): what a cluster peer,
//! or anyone who reaches the cluster port, can send.

use bytes::BytesMut;
use ringmq::protocol::link::{decode as decode_frame, peek_len, Decoded, HEADER_BYTES};

/// Feeds arbitrary bytes to the link decoder, frame after frame as a
/// connection reads them, and checks that every accepted frame
/// re-encodes to exactly its bytes (one encoding per frame), that
/// `encoded_len` and `peek_len` agree with the decoder, and that every
/// strict prefix of a frame is Incomplete.
pub fn link(data: &[u8]) {
    // The first byte picks a frame limit, so the size check is fuzzed too.
    let Some((&pick, mut rest)) = data.split_first() else { return };
    let frame_bytes_max = HEADER_BYTES + usize::from(pick) * 16;
    let mut out = BytesMut::new();
    while let Ok(Decoded::Frame(frame, used)) = decode_frame(rest, frame_bytes_max) {
        assert!(used >= HEADER_BYTES && used <= rest.len() && used <= frame_bytes_max);
        assert_eq!(peek_len(rest, frame_bytes_max), Ok(Some(used)));
        assert_eq!(frame.encoded_len(), used, "encoded_len of {frame:?}");
        out.clear();
        frame.encode(&mut out);
        assert_eq!(&out[..], &rest[..used], "re-encoded frame differs: {frame:?}");
        for cut in [0, 1, HEADER_BYTES - 1, HEADER_BYTES, used / 2, used - 1] {
            if cut < used {
                assert!(matches!(decode_frame(&rest[..cut], frame_bytes_max), Ok(Decoded::Incomplete)));
            }
        }
        rest = &rest[used..];
    }
}

/// A data link's payload (`server::remote::wire`): what another node's
/// shard sends for its connections' queues. Whatever decodes must encode
/// again and decode to the same encoding (no value the decoder accepts is
/// one the encoder cannot write), and a request's queue arguments were
/// parsed on the way in.
pub fn data_link(data: &[u8]) {
    use ringmq::server::remote::wire::{decode, encode};
    let Ok(msg) = decode(data) else { return };
    let mut once = BytesMut::new();
    encode(&msg, &mut once, usize::MAX).expect("a decoded message encodes");
    let again = decode(&once[HEADER_BYTES..]).expect("an encoded message decodes");
    let mut twice = BytesMut::new();
    encode(&again, &mut twice, usize::MAX).expect("it encodes again");
    assert_eq!(once, twice, "a second round trip changed {msg:?}");
}
