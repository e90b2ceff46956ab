//! Reads through the ring (`rt::reader` with `read_directly`, over the
//! patched glommio's `RecvRing`): real sockets on 127.0.0.1, a peer on a
//! plain thread, the reader on a glommio executor. A read that waits is a
//! receive submitted to the ring and owned by the reader, so these check
//! what that could break: bytes kept in order and none lost when a read
//! is cancelled mid-flight, a peer that sends a byte at a time, a close
//! while a read waits, frames larger than many reads, and a receive still
//! in the kernel when its owner is dropped.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure
#![allow(clippy::cast_possible_truncation)] // test lengths are small

use glommio::net::{RecvRing, TcpListener};
use glommio::LocalExecutorBuilder;
use glommio::Placement;
use ringmq::protocol::amqp::frame::{BODY, FRAME_END, OVERHEAD};
use ringmq::rt::reader::{Amqp, FrameReader, Framing, ReadError};
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Generous for a shared, busy machine: a lost wake-up is forever.
const WATCHDOG: Duration = Duration::from_secs(60);
const FRAME_MAX: usize = 4 << 20;

/// An AMQP body frame on channel 1 whose payload is `len` bytes numbered
/// from `seed`, so a byte out of place shows.
fn frame(seed: u32, len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len + OVERHEAD);
    f.push(BODY);
    f.extend_from_slice(&1u16.to_be_bytes());
    f.extend_from_slice(&(len as u32).to_be_bytes());
    f.extend((0..len).map(|i| (seed as usize * 31 + i * 7) as u8));
    f.push(FRAME_END);
    f
}

/// Runs `serve` on an executor with the accepted end of a connection whose
/// other end `peer` drives on this thread; fails on the watchdog.
fn with_connection<T: Send + 'static, F>(
    serve: impl FnOnce(glommio::net::TcpStream) -> F + Send + 'static,
    peer: impl FnOnce(std::net::TcpStream),
) -> T
where
    F: std::future::Future<Output = T> + 'static,
{
    let (addr_tx, addr_rx) = mpsc::channel::<SocketAddr>();
    let (tx, rx) = mpsc::channel();
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(move || async move {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let stream = listener.accept().await.unwrap();
            tx.send(serve(stream).await).unwrap();
        })
        .unwrap();
    let addr = addr_rx.recv_timeout(WATCHDOG).unwrap();
    let sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_nodelay(true).unwrap();
    peer(sock);
    let v = rx.recv_timeout(WATCHDOG).expect("the reader stalled");
    handle.join().unwrap();
    v
}

/// Reads frames in place until `count` have come or the stream ends;
/// returns them and how the reading ended.
async fn read_frames(
    s: &mut glommio::net::TcpStream,
    reader: &mut FrameReader<Amqp>,
    count: usize,
) -> (Vec<Vec<u8>>, Option<ReadError<ringmq::protocol::amqp::frame::FrameError>>) {
    let mut got = Vec::new();
    while got.len() < count {
        if let Err(e) = reader.fill_in_place(s, |_| None).await {
            return (got, Some(e));
        }
        let buf = reader.buffered();
        let len = amqp_len(buf).unwrap();
        got.push(buf[..len].to_vec());
        reader.consume(len);
    }
    (got, None)
}

/// The size of the whole frame `buf` starts with, if it holds it.
fn amqp_len(buf: &[u8]) -> Option<usize> {
    Amqp::frame_len(buf, FRAME_MAX).unwrap().filter(|l| *l <= buf.len())
}

fn reader_for(s: &glommio::net::TcpStream) -> FrameReader<Amqp> {
    let mut r = FrameReader::<Amqp>::new(FRAME_MAX, ringmq::rt::reader::READ_BYTES);
    r.read_directly(s.as_raw_fd());
    r
}

/// A peer that writes each byte on its own, pausing now and then so the
/// reader finds the socket empty between bytes: every frame arrives whole
/// and in order, whatever the reads cut.
#[test]
fn a_peer_sending_byte_by_byte() {
    let frames: Vec<Vec<u8>> = (0..40).map(|i| frame(i, [0, 1, 7, 300, 5000][i as usize % 5])).collect();
    let want = frames.clone();
    let n = frames.len();
    let (got, end) = with_connection(
        move |mut s| async move {
            let mut reader = reader_for(&s);
            read_frames(&mut s, &mut reader, n).await
        },
        move |mut sock| {
            let mut k = 0u32;
            for f in &frames {
                for b in f {
                    sock.write_all(&[*b]).unwrap();
                    k += 1;
                    if k.is_multiple_of(97) {
                        std::thread::sleep(Duration::from_micros(300));
                    }
                }
            }
        },
    );
    assert!(end.is_none(), "{end:?}");
    assert_eq!(got, want);
}

/// Frames of a MiB, four times the read size, written at once and read
/// with `fill` (the native path: whole frames as chunks, a large frame's
/// reads never past its end), then small ones after them.
#[test]
fn large_frames_across_many_reads() {
    let mut frames: Vec<Vec<u8>> = (0..4).map(|i| frame(i, 1 << 20)).collect();
    frames.extend((4..20).map(|i| frame(i, 40)));
    let want = frames.clone();
    let total: usize = frames.iter().map(Vec::len).sum();
    let got = with_connection(
        move |s| async move {
            let mut s = s;
            let mut reader = reader_for(&s);
            let mut bytes = Vec::new();
            while bytes.len() < total {
                let chunk = reader.fill(&mut s, |_| None).await.unwrap();
                let mut used = 0;
                while let Some(len) = amqp_len(&chunk[used..]) {
                    used += len;
                }
                bytes.extend_from_slice(&chunk[..used]);
                reader.keep(&chunk, used);
            }
            bytes
        },
        move |mut sock| {
            let all: Vec<u8> = frames.concat();
            sock.write_all(&all).unwrap();
        },
    );
    assert_eq!(got, want.concat());
}

/// A read that waits in the ring and is dropped (its deadline passes, or
/// the caller's `or` picks another branch) leaves its receive with the
/// reader: the bytes that arrive next are read next, none lost, none out
/// of order.
#[test]
fn a_read_cancelled_mid_flight_loses_nothing() {
    let frames: Vec<Vec<u8>> = (0..30).map(|i| frame(i, 10 + i as usize)).collect();
    let want = frames.clone();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let got = with_connection(
        move |mut s| async move {
            let mut reader = reader_for(&s);
            let mut got = Vec::new();
            for round in 0..10 {
                // A deadline that passes while the socket is silent.
                let soon = Instant::now() + Duration::from_millis(5);
                let res = reader.fill_in_place(&mut s, |_| Some(soon)).await;
                assert!(matches!(res, Err(ReadError::Timeout { .. })), "round {round}: {res:?}");
                // A read dropped by the caller.
                let raced = futures_lite::future::or(
                    async {
                        reader.fill_in_place(&mut s, |_| None).await.unwrap();
                        false
                    },
                    async {
                        glommio::timer::sleep(Duration::from_millis(5)).await;
                        true
                    },
                )
                .await;
                assert!(raced, "round {round}: nothing was sent yet");
                ready_tx.send(()).unwrap();
                let (mut frames, end) = read_frames(&mut s, &mut reader, 3).await;
                assert!(end.is_none(), "{end:?}");
                got.append(&mut frames);
            }
            got
        },
        move |mut sock| {
            for three in frames.chunks(3) {
                ready_rx.recv_timeout(WATCHDOG).unwrap();
                // Let the reader wait in the ring first.
                std::thread::sleep(Duration::from_millis(2));
                for f in three {
                    sock.write_all(f).unwrap();
                }
            }
        },
    );
    assert_eq!(got, want);
}

/// The peer closes while a read waits in the ring: between frames that is
/// the end of the stream; inside one, a truncated frame.
#[test]
fn closed_while_a_read_waits() {
    let (_, end) = with_connection(
        move |mut s| async move {
            let mut reader = reader_for(&s);
            read_frames(&mut s, &mut reader, 2).await
        },
        move |mut sock| {
            sock.write_all(&frame(1, 20)).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        },
    );
    assert!(matches!(end, Some(ReadError::Eof)), "{end:?}");

    let (got, end) = with_connection(
        move |mut s| async move {
            let mut reader = reader_for(&s);
            read_frames(&mut s, &mut reader, 2).await
        },
        move |mut sock| {
            let f = frame(2, 100);
            sock.write_all(&f[..50]).unwrap();
            std::thread::sleep(Duration::from_millis(50));
        },
    );
    assert!(got.is_empty());
    assert!(matches!(end, Some(ReadError::Truncated { buffered: 50 })), "{end:?}");
}

/// `RecvRing` on its own: a receive asked for many bytes and abandoned by
/// its future hands them out later to smaller asks, in order; and a ring
/// dropped with a receive still in the kernel cancels it, the executor
/// carrying on (the buffer stays with the reactor until the kernel is done).
#[test]
fn a_receive_outlives_its_future_and_its_owner() {
    let payload: Vec<u8> = (0..3000u32).map(|i| (i * 13) as u8).collect();
    let want = payload.clone();
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let got = with_connection(
        move |s| async move {
            let mut ring = RecvRing::new(s.as_raw_fd());
            // Polled once (submitted, waiting), then abandoned.
            let first = futures_lite::future::poll_once(std::future::poll_fn(|cx| {
                ring.poll_recv(cx, 4096, true).map_ok(<[u8]>::len)
            }))
            .await;
            assert!(first.is_none(), "nothing was sent yet");
            assert!(ring.holds());
            ready_tx.send(()).unwrap();
            let mut got = Vec::new();
            while got.len() < 3000 {
                let n = std::future::poll_fn(|cx| {
                    ring.poll_recv(cx, 100, true).map_ok(|b| {
                        got.extend_from_slice(b);
                        b.len()
                    })
                })
                .await
                .unwrap();
                assert!(n > 0 && n <= 100, "{n}");
            }
            // Rings dropped with a receive in the kernel (submitted and
            // waiting: the executor has slept since), while the peer's
            // bytes come: the kernel completes or cancels each receive
            // into a buffer the reactor still holds. The executor carries
            // on, and a later ring reads what comes after.
            for i in 0..10u64 {
                let mut doomed = RecvRing::new(s.as_raw_fd());
                let pending = futures_lite::future::poll_once(std::future::poll_fn(|cx| {
                    doomed.poll_recv(cx, 4096, true).map_ok(<[u8]>::len)
                }))
                .await;
                assert!(pending.is_none());
                glommio::timer::sleep(Duration::from_millis(2)).await;
                ready_tx.send(()).unwrap();
                let t = Instant::now();
                while t.elapsed() < Duration::from_micros(i * 100) {
                    std::hint::spin_loop();
                }
                drop(doomed);
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
            drop(ring);
            ready_tx.send(()).unwrap();
            let mut last = RecvRing::new(s.as_raw_fd());
            let mut tail = Vec::new();
            while !tail.ends_with(b"tail") {
                std::future::poll_fn(|cx| {
                    last.poll_recv(cx, 4096, true).map_ok(|b| {
                        tail.extend_from_slice(b);
                        b.len()
                    })
                })
                .await
                .unwrap();
            }
            assert!(tail[..tail.len() - 4].iter().all(|b| *b == 7), "only the peer's 7s before the tail");
            got
        },
        move |mut sock| {
            ready_rx.recv_timeout(WATCHDOG).unwrap();
            std::thread::sleep(Duration::from_millis(5));
            sock.write_all(&payload).unwrap();
            for _ in 0..10 {
                ready_rx.recv_timeout(WATCHDOG).unwrap();
                sock.write_all(&[7u8; 4096]).unwrap();
            }
            ready_rx.recv_timeout(WATCHDOG).unwrap();
            // Whatever the dropped rings left unread comes first.
            std::thread::sleep(Duration::from_millis(20));
            sock.write_all(b"tail").unwrap();
        },
    );
    assert_eq!(got, want);
}
