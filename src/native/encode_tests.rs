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
        let msgs = || stored.iter().map(|(r, e)| (*r, e, None));
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

/// A Deliver frame's first tag and its entries' (redelivered, body).
type DecodedFrame = (u64, Vec<(bool, Vec<u8>)>);

/// The Deliver frames in `bytes`.
fn decoded(bytes: &[u8], limits: &DeliverLimits) -> Vec<DecodedFrame> {
    let mut rest = bytes;
    let mut frames = Vec::new();
    while !rest.is_empty() {
        let Ok(Decoded::Frame(frame, used)) = decode(rest, 1 << 20) else { panic!("a whole frame") };
        let Cmd::Deliver { first_tag, entries, .. } = frame.cmd else { panic!("not a Deliver") };
        assert!(entries.len() as usize <= limits.count_max);
        assert!(used <= limits.frame_bytes_max);
        frames.push((first_tag, entries.iter().map(|e| (e.redelivered(), e.body.to_vec())).collect()));
        rest = &rest[used..];
    }
    frames
}

/// Entries that lie back to back in one buffer (a stream's publish batch)
/// go as one reference per frame, small ones too, and the frames are byte
/// for byte the copied ones; an entry not in the run, or one whose flag
/// must change, ends the slice; a slice under `BY_REF_BYTES_MIN` is copied.
#[test]
fn entries_of_one_run_go_as_one_slice_per_frame() {
    let mut run = BytesMut::new();
    let mut ranges = Vec::new();
    for i in 0..30 {
        let at = run.len();
        let e = entry([16, 700, 40][i % 3], false);
        run.extend_from_slice(&e);
        ranges.push(at..run.len());
    }
    let run = run.freeze();
    let in_run: Vec<Bytes> = ranges.iter().map(|r| run.slice(r.clone())).collect();
    let outsider = entry(900, false);
    // 0..10 from the run, one entry from elsewhere, 10..20 from the run with
    // entry 16 (700 bytes) redelivered, then 20..30.
    let mut msgs: Vec<(bool, &Bytes, Option<&Bytes>)> = Vec::new();
    for (i, e) in in_run.iter().enumerate() {
        if i == 10 {
            msgs.push((false, &outsider, None));
        }
        msgs.push((i == 16, e, Some(&run)));
    }
    for limits in [
        DeliverLimits { count_max: 256, frame_bytes_max: 1 << 20 },
        DeliverLimits { count_max: 4, frame_bytes_max: 1 << 20 },
        DeliverLimits { count_max: 256, frame_bytes_max: 3000 },
    ] {
        let mut copied = BytesMut::new();
        let plain = msgs.iter().map(|&(r, e, _)| (r, e, None));
        encode_deliveries(&mut OutBuf::copying(&mut copied), &limits, 3, 100, plain);
        let (mut buf, mut refs) = (BytesMut::new(), Vec::new());
        let mut out = OutBuf::referencing(&mut buf, &mut refs);
        encode_deliveries(&mut out, &limits, 3, 100, msgs.iter().copied());
        assert_eq!(out.len(), copied.len());
        let sent = flatten(&buf, &refs);
        assert_eq!(sent, copied[..], "{:?}", limits.count_max);
        assert_eq!(decoded(&sent, &limits), decoded(&copied, &limits));
        // Every reference is a slice of the run or the outsider; slices of
        // the run never hold fewer than BY_REF_BYTES_MIN bytes.
        for (_, r) in &refs {
            let of_run = place_in(&run, r).is_some();
            assert!(of_run || r.as_ptr() == outsider.as_ptr(), "a reference to something else");
            assert!(!of_run || r.len() >= BY_REF_BYTES_MIN);
        }
        if limits.count_max == 256 && limits.frame_bytes_max == 1 << 20 {
            // One frame: the run before the outsider, the outsider, the run
            // up to the redelivered entry (its flags byte written, the rest
            // referenced), and the rest of the run.
            assert_eq!(refs.len(), 5, "{:?}", refs.iter().map(|r| r.1.len()).collect::<Vec<_>>());
        }
    }
}
