//! Codec throughput: a `Publish` batch of 64 messages of 16 bytes, encoded
//! with `BatchWriter` and decoded with `decode`, counted in messages.
//!
//! `cargo bench --bench codec -- --warm-up-time 1 --measurement-time 3`
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ringmq::protocol::{decode, BatchWriter, Cmd, Decoded};

const MESSAGES: usize = 64;
const BODY: [u8; 16] = *b"0123456789abcdef";
const FRAME_BYTES_MAX: usize = 1 << 20;

fn publish_batch(buf: &mut BytesMut) {
    let mut w = BatchWriter::begin_publish(buf, 42, 0, "bench.queue");
    for _ in 0..MESSAGES {
        w.push(buf, 0, &[], &BODY);
    }
    w.finish(buf);
}

fn codec(c: &mut Criterion) {
    let mut frame = BytesMut::new();
    publish_batch(&mut frame);

    let mut g = c.benchmark_group("publish_64x16B");
    g.throughput(Throughput::Elements(MESSAGES as u64));

    g.bench_function("encode", |b| {
        let mut buf = BytesMut::with_capacity(frame.len());
        b.iter(|| {
            buf.clear();
            publish_batch(&mut buf);
            black_box(&buf);
        })
    });

    // `decode` validates every entry before it returns the frame.
    g.bench_function("decode", |b| {
        b.iter(|| match decode(black_box(&frame), FRAME_BYTES_MAX) {
            Ok(Decoded::Frame(f, n)) => black_box((f, n)),
            _ => unreachable!(),
        })
    });

    // What the broker does with it: decode, then walk every message.
    g.bench_function("decode_and_iterate", |b| {
        b.iter(|| {
            let Ok(Decoded::Frame(f, _)) = decode(black_box(&frame), FRAME_BYTES_MAX) else { unreachable!() };
            let Cmd::Publish { entries, .. } = f.cmd else { unreachable!() };
            let mut bytes = 0;
            for e in entries.iter() {
                bytes += e.body.len();
            }
            black_box(bytes)
        })
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
