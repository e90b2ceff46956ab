use super::*;
use crate::protocol::batch::put_entry;
use crate::protocol::{decode, Decoded};

fn entry(body_len: usize, redelivered: bool) -> Bytes {
    let mut b = BytesMut::new();
    let body: Vec<u8> = (0..body_len).map(|i| u8::try_from(i % 251).unwrap()).collect();
    put_entry(&mut b, if redelivered { ENTRY_REDELIVERED } else { 0 }, b"p", &body);
    b.freeze()
}

/// What the vectored writer sends: `buf` with the references at their offsets.
fn flatten(buf: &[u8], refs: &[(usize, Bytes)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    for (off, b) in refs {
        out.extend_from_slice(&buf[at..*off]);
        out.extend_from_slice(b);
        at = *off;
    }
    out.extend_from_slice(&buf[at..]);
    out
}

/// Entries around the threshold, stored with and without the redelivered
/// flag, delivered with and without it: the frames sent by reference are
/// byte for byte the copied ones, cut at the same count and size limits,
/// and only the large entries are referenced.
#[test]
fn frames_by_reference_are_the_copied_frames() {
    let stored: Vec<(bool, Bytes)> = (0..40)
        .map(|i| {
            let len = [10, BY_REF_BYTES_MIN - 9, BY_REF_BYTES_MIN, 3000][i % 4];
            (i % 3 == 0, entry(len, i % 5 == 0))
        })
        .collect();
    for limits in [
        DeliverLimits { count_max: 64, frame_bytes_max: 1 << 20 },
        DeliverLimits { count_max: 7, frame_bytes_max: 1 << 20 },
        DeliverLimits { count_max: 64, frame_bytes_max: 5000 },
    ] {
        let msgs = || stored.iter().map(|(r, e)| (*r, e));
        let mut copied = BytesMut::new();
        encode_deliveries(&mut OutBuf::copying(&mut copied), &limits, 3, 100, msgs());
        let (mut buf, mut refs) = (BytesMut::new(), Vec::new());
        buf.extend_from_slice(b"before");
        let mut out = OutBuf::referencing(&mut buf, &mut refs);
        encode_deliveries(&mut out, &limits, 3, 100, msgs());
        assert_eq!(out.len(), 6 + copied.len());
        assert_eq!(flatten(&buf, &refs)[6..], copied[..]);
        assert_eq!(refs.len(), stored.iter().filter(|(_, e)| e.len() >= BY_REF_BYTES_MIN).count());
        // And they decode: every entry, in order, with the flag asked for.
        let mut rest = &copied[..];
        let mut seen = Vec::new();
        while !rest.is_empty() {
            let Ok(Decoded::Frame(frame, used)) = decode(rest, 1 << 20) else { panic!("a whole frame") };
            match frame.cmd {
                Cmd::Deliver { consumer_id: 3, first_tag, entries, .. } => {
                    assert_eq!(first_tag, 100 + seen.len() as u64);
                    assert!(entries.len() as usize <= limits.count_max);
                    assert!(used <= limits.frame_bytes_max);
                    seen.extend(entries.iter().map(|e| (e.redelivered(), e.body.len())));
                }
                other => panic!("not a Deliver: {other:?}"),
            }
            rest = &rest[used..];
        }
        let want: Vec<_> =
            stored.iter().map(|(r, e)| (*r, crate::protocol::batch::parse_entry(e).unwrap().body.len())).collect();
        assert_eq!(seen, want);
    }
}
