use super::*;
use crate::protocol::amqp::frame::FrameError;
use crate::protocol::BatchWriter;

/// Publish frames of one 40 KiB message each.
fn frames(n: usize) -> (Vec<u8>, usize) {
    let mut b = BytesMut::new();
    for i in 0..n {
        let mut w = BatchWriter::begin_publish(&mut b, i as u64, 0, "q");
        w.push(&mut b, 0, &[], &vec![7u8; 40 << 10]);
        w.finish(&mut b);
    }
    let len = b.len() / n;
    (b.to_vec(), len)
}

/// Large frames: once the reader knows their size, a chunk holds whole
/// frames only (a partial next frame in it would be kept alive by the
/// messages with it), and every frame arrives intact.
#[test]
fn large_frames_are_read_to_their_end() {
    let (bytes, len) = frames(8);
    let mut r = futures_lite::io::Cursor::new(bytes);
    let mut reader = FrameReader::<Native>::new(1 << 20, READ_BYTES);
    let mut seen = 0;
    futures_lite::future::block_on(async {
        while seen < 8 {
            let chunk = reader.fill(&mut r, |_| None).await.expect("a chunk");
            let used = for_each_frame::<()>(&chunk, 1 << 20, |_| Ok(())).expect("frames");
            assert_eq!(used % len, 0);
            if seen > 0 {
                assert_eq!(chunk.len(), used, "chunk {seen} ends where its frames do");
            }
            seen += used / len;
            reader.keep(&chunk, used);
        }
    });
    assert_eq!(seen, 8, "every frame, once");
}

#[test]
fn read_window_doubles_while_filled_and_falls_back() {
    assert_eq!(next_window(4096, 4096, READ_BYTES), 8192);
    assert_eq!(next_window(32 << 10, 32 << 10, READ_BYTES), READ_BYTES);
    assert_eq!(next_window(READ_BYTES, READ_BYTES, READ_BYTES), READ_BYTES);
    assert_eq!(next_window(READ_BYTES, 100, READ_BYTES), HANDSHAKE_READ_BYTES);
    assert_eq!(next_window(READ_BYTES, 9000, READ_BYTES), 16384);
    // Before login the window never passes the handshake read size.
    assert_eq!(next_window(4096, 4096, HANDSHAKE_READ_BYTES), HANDSHAKE_READ_BYTES);
}

/// AMQP frames (a method frame of `payload` bytes each).
fn amqp_frames(n: usize, payload: usize) -> Vec<u8> {
    let mut b = Vec::new();
    for _ in 0..n {
        b.push(crate::protocol::amqp::frame::METHOD);
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&(payload as u32).to_be_bytes());
        b.extend(std::iter::repeat_n(9u8, payload));
        b.push(crate::protocol::amqp::frame::FRAME_END);
    }
    b
}

/// In place: reads stop once a whole frame is at the front; frames
/// are consumed where they lie; the read size grows while reads fill
/// it and never shrinks.
#[test]
fn in_place_reads_whole_frames_and_grows_its_reads() {
    let mut bytes = crate::protocol::amqp::frame::PROTOCOL_HEADER.to_vec();
    bytes.extend(amqp_frames(40, 3000));
    let total = bytes.len();
    let mut r = futures_lite::io::Cursor::new(bytes);
    let mut reader = FrameReader::<Amqp>::new(4096, READ_BYTES);
    let mut seen = 0;
    futures_lite::future::block_on(async {
        reader.read_at_least(&mut r, 8, |_| None).await.expect("header");
        assert_eq!(&reader.buffered()[..8], crate::protocol::amqp::frame::PROTOCOL_HEADER);
        reader.consume(8);
        let mut consumed = 8;
        while seen < 40 {
            reader.fill_in_place(&mut r, |_| None).await.expect("a frame");
            let mut used = 0;
            while let Ok(Some(n)) = Amqp::frame_len(&reader.buffered()[used..], 4096) {
                if reader.buffered().len() - used < n {
                    break;
                }
                used += n;
                seen += 1;
            }
            assert!(used > 0);
            reader.consume(used);
            consumed += used;
        }
        assert_eq!(consumed, total);
        assert!(matches!(reader.fill_in_place(&mut r, |_| None).await, Err(ReadError::Eof)));
    });
    assert_eq!(reader.window, READ_BYTES, "filled reads doubled up to the read size");
}

/// A source that hands out at most `step` bytes a read (a chatty
/// peer's small reads) and, when `pend`, makes every other read wait.
struct Trickle {
    data: Vec<u8>,
    pos: usize,
    step: usize,
    pend: bool,
    pended: bool,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.pend && !self.pended {
            self.pended = true;
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        self.pended = false;
        let n = buf.len().min(self.step).min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        std::task::Poll::Ready(Ok(n))
    }
}

/// Small reads reuse the bytes an earlier read left written after
/// the buffer's end (no zeroing of the whole window per read), and
/// every frame still arrives byte for byte, in place and as chunks;
/// `waited` says whether the last read had to wait.
#[test]
fn small_reads_reuse_written_spare_bytes_and_keep_every_byte() {
    let amqp = amqp_frames(300, 37);
    for pend in [false, true] {
        let mut r = Trickle { data: amqp.clone(), pos: 0, step: 45, pend, pended: false };
        let mut reader = FrameReader::<Amqp>::new(4096, READ_BYTES);
        let mut got = Vec::new();
        futures_lite::future::block_on(async {
            while got.len() < amqp.len() {
                reader.fill_in_place(&mut r, |_| None).await.expect("a frame");
                assert_eq!(reader.waited(), pend, "the last read waited only when the source did");
                assert!(reader.spare_init > 0, "a short read left written bytes after the end");
                let n = Amqp::frame_len(reader.buffered(), 4096).expect("valid").expect("whole");
                got.extend_from_slice(&reader.buffered()[..n]);
                reader.consume(n);
            }
        });
        assert_eq!(got, amqp, "in place, pend {pend}");
    }
    let (native, _) = frames(3);
    let mut r = Trickle { data: native.clone(), pos: 0, step: 999, pend: true, pended: false };
    let mut reader = FrameReader::<Native>::new(1 << 20, READ_BYTES);
    let mut got = Vec::new();
    futures_lite::future::block_on(async {
        while got.len() < native.len() {
            let chunk = reader.fill(&mut r, |_| None).await.expect("a frame");
            let used = Native::frame_len(&chunk, 1 << 20).expect("valid").expect("whole");
            got.extend_from_slice(&chunk[..used]);
            reader.keep(&chunk, used);
        }
    });
    assert_eq!(got, native, "as chunks, with kept tails");
}

/// Every framing knows a frame's size from `HEADER_BYTES` and not before.
#[test]
fn framings_size_frames_from_their_header() {
    let (native, len) = frames(1);
    assert_eq!(Native::frame_len(&native[..Native::HEADER_BYTES - 1], 1 << 20).ok(), Some(None));
    assert_eq!(Native::frame_len(&native[..Native::HEADER_BYTES], 1 << 20).ok(), Some(Some(len)));
    assert!(matches!(Native::frame_len(&native, 1000), Err(DecodeError::TooLarge { .. })));
    let amqp = amqp_frames(1, 10);
    assert_eq!(Amqp::frame_len(&amqp[..Amqp::HEADER_BYTES - 1], 4096), Ok(None));
    assert_eq!(Amqp::frame_len(&amqp[..Amqp::HEADER_BYTES], 4096), Ok(Some(18)));
    assert_eq!(Amqp::frame_len(b"AMQP\0\0\x09\x01", 4096), Err(FrameError::UnknownType(b'A')));
    let mut link = BytesMut::new();
    protocol::link::Frame::RpcReply { id: 1, payload: &[5; 30] }.encode(&mut link);
    assert_eq!(Link::frame_len(&link[..Link::HEADER_BYTES - 1], 4096), Ok(None));
    assert_eq!(Link::frame_len(&link[..Link::HEADER_BYTES], 4096), Ok(Some(link.len())));
    let too_large = protocol::link::DecodeError::TooLarge { len: link.len(), max: 40 };
    assert_eq!(Link::frame_len(&link[..Link::HEADER_BYTES], 40), Err(too_large));
}

/// A link peer that sends a header claiming a huge frame before it has
/// authenticated is refused from the header: the reader holds no more
/// than its handshake read.
#[test]
fn link_refuses_a_frame_over_the_handshake_limit_from_its_header() {
    let mut b = BytesMut::new();
    protocol::link::Frame::Rpc { id: 1, kind: protocol::link::RpcKind::Append, payload: &[0; 100_000] }.encode(&mut b);
    b.truncate(protocol::link::HEADER_BYTES);
    let mut r = futures_lite::io::Cursor::new(b.to_vec());
    let max = protocol::link::HELLO_FRAME_BYTES_MAX;
    let mut reader = FrameReader::<Link>::new(max, HANDSHAKE_READ_BYTES);
    let res = futures_lite::future::block_on(reader.fill(&mut r, |_| None));
    assert!(matches!(res, Err(ReadError::Decode(protocol::link::DecodeError::TooLarge { len: 100_017, .. }))));
    assert!(reader.held_bytes() <= HANDSHAKE_READ_BYTES);
}

/// The front frame's size is checked before its body is read.
#[test]
fn in_place_refuses_a_frame_over_the_limit_from_its_header() {
    let mut bytes = amqp_frames(1, 100_000);
    bytes.truncate(7);
    let mut r = futures_lite::io::Cursor::new(bytes);
    let mut reader = FrameReader::<Amqp>::new(4096, HANDSHAKE_READ_BYTES);
    let res = futures_lite::future::block_on(reader.fill_in_place(&mut r, |_| None));
    assert!(matches!(res, Err(ReadError::Decode(FrameError::TooLarge { size: 100_008, max: 4096 }))), "{res:?}");
    assert!(reader.held_bytes() <= HANDSHAKE_READ_BYTES);
}

/// Publish frames of one message of `body` bytes each, and their length.
fn frames_of(n: usize, body: usize) -> (Vec<u8>, usize) {
    let mut b = BytesMut::new();
    for i in 0..n {
        let mut w = BatchWriter::begin_publish(&mut b, i as u64, 0, "q");
        w.push(&mut b, 0, &[], &vec![u8::try_from(i % 200).unwrap(); body]);
        w.finish(&mut b);
    }
    let len = b.len() / n;
    (b.to_vec(), len)
}

/// Reading whole frames (a client reading deliveries): once the peer has
/// sent a large frame whole, frames no larger are read into one buffer of
/// their size, each chunk exactly one frame, with nothing copied to grow
/// a buffer however the socket cuts the bytes; a header claiming more than
/// the peer ever sent whole still buys only the doubling steps.
#[test]
fn whole_frames_are_read_into_one_buffer_each() {
    let (mut bytes, len) = frames_of(6, 200 << 10);
    for step in [usize::MAX, 64 << 10, 7000] {
        let mut r = Trickle { data: bytes.clone(), pos: 0, step, pend: step == 7000, pended: false };
        let mut reader = FrameReader::<Native>::new(4 << 20, READ_BYTES);
        reader.expect_whole_frames();
        let mut got = Vec::new();
        futures_lite::future::block_on(async {
            while got.len() < bytes.len() {
                let chunk = reader.fill(&mut r, |_| None).await.expect("a frame");
                let used = for_each_frame::<()>(&chunk, 4 << 20, |_| Ok(())).expect("frames");
                assert_eq!(used, len, "one frame a chunk");
                assert_eq!(chunk.len(), len, "read to the frame's end, no further");
                got.extend_from_slice(&chunk[..used]);
                if got.len() == len {
                    assert!(reader.copied_growing > 0, "the first frame grows step by step");
                    reader.copied_growing = 0;
                }
                reader.keep(&chunk, used);
            }
        });
        assert_eq!(got, bytes, "every byte, step {step}");
        assert_eq!(reader.copied_growing, 0, "nothing copied after the first frame, step {step}");
    }
    // Then a header claiming a frame four times larger, and nothing else.
    let (big, _) = frames_of(1, 800 << 10);
    bytes.extend_from_slice(&big[..Native::HEADER_BYTES]);
    let mut r = futures_lite::io::Cursor::new(bytes);
    let mut reader = FrameReader::<Native>::new(4 << 20, READ_BYTES);
    reader.expect_whole_frames();
    futures_lite::future::block_on(async {
        for _ in 0..6 {
            let chunk = reader.fill(&mut r, |_| None).await.expect("a frame");
            reader.keep(&chunk, chunk.len());
        }
        assert!(matches!(reader.fill(&mut r, |_| None).await, Err(ReadError::Truncated { .. })));
    });
    assert!(reader.held_bytes() <= len + HANDSHAKE_READ_BYTES, "{} held", reader.held_bytes());
}
