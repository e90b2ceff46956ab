//! `--self-check`: the generator's own latency floor, with no broker.
//!
//! A producer paced exactly as a real run's (`runner::run_producer`: the
//! same open-loop [`Schedule`], the same shortest sleep, batches of at most
//! `--batch`) writes `--size`-byte messages to a loopback sink, a thread
//! that reads and discards them. Each message's lateness is measured from
//! its intended send time to the moment its write returned: the timer's
//! slack, the executor's scheduling, the batching of messages due between
//! two wake-ups and the write itself. That is the part of a run's
//! end-to-end latency the generator adds on its own; a broker's figure is
//! only meaningful above it.
//!
//! The executor is watched as a run's workers are (`stall.rs`): one that
//! parks and misses its wake-up for a second is counted and woken. The
//! first 30 s self-check at 5 k/s on a busy machine (2026-12-05) hung
//! that way, its one thread in `io_cqring_wait` with its sleep long due.

use crate::header::now_ns;
use crate::schedule::{RateProfile, Schedule};
use anyhow::{anyhow, bail, Context, Result};
use futures_lite::AsyncWriteExt;
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// What `--self-check` was asked for.
#[derive(Debug, Clone)]
pub struct SelfCheck {
    pub rate: f64,
    pub size: usize,
    pub batch: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    /// The core the producer is pinned to (the first of `--cores`).
    pub core: Option<usize>,
}

/// The floor at one rate.
#[derive(Debug)]
pub struct Floor {
    pub sent: u64,
    pub measured: u64,
    pub bytes_read: u64,
    pub seconds: f64,
    /// Intended send time to write returned, nanoseconds.
    pub lateness: Histogram<u64>,
    /// Writes (syscalls) in the measured window.
    pub writes: u64,
    /// Times the executor missed a wake-up for a second, and the longest.
    pub stalls: u64,
    pub stall_ms_max: u64,
}

impl Floor {
    pub fn line(&self, c: &SelfCheck) -> String {
        let h = &self.lateness;
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
        format!(
            "self-check rate={} size={} batch={} sent={} measured={} writes={} seconds={:.2} p50_us={:.1} p99_us={:.1} p999_us={:.1} max_us={:.1} stalls={} stall_ms_max={}",
            c.rate,
            c.size,
            c.batch,
            self.sent,
            self.measured,
            self.writes,
            self.seconds,
            us(0.5),
            us(0.99),
            us(0.999),
            h.max() as f64 / 1e3,
            self.stalls,
            self.stall_ms_max
        )
    }
}

/// `ringmq-loadgen --self-check`: one line, the generator's own floor.
pub(crate) fn from_args(a: crate::RunArgs) -> Result<()> {
    let [rate] = a.rate[..] else {
        bail!("--self-check takes one fixed --rate");
    };
    let core = match &a.cores {
        Some(s) => crate::parse_cores(s).context("--cores")?.first().copied(),
        None => None,
    };
    let c = SelfCheck { rate, size: a.size, batch: a.batch, duration_s: a.duration, warmup_s: a.warmup, core };
    let floor = run(c.clone())?;
    println!("{}", floor.line(&c));
    if floor.bytes_read != floor.sent * c.size.max(1) as u64 {
        bail!("the sink read {} bytes, {} were written", floor.bytes_read, floor.sent * c.size.max(1) as u64);
    }
    Ok(())
}

pub fn run(c: SelfCheck) -> Result<Floor> {
    if !(c.rate.is_finite() && c.rate > 0.0) {
        bail!("--self-check needs a fixed --rate (messages a second)");
    }
    if c.duration_s.is_nan() || c.duration_s <= 0.0 || c.warmup_s < 0.0 {
        bail!("--duration must be positive and --warmup not negative");
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding the loopback sink")?;
    let addr = listener.local_addr()?;
    // The sink: reads and discards until the producer closes.
    let sink = std::thread::Builder::new().name("loadgen-sink".into()).spawn(move || -> std::io::Result<u64> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf)? {
                0 => return Ok(total),
                n => total += n as u64,
            }
        }
    })?;
    let placement = c.core.map_or(Placement::Unbound, Placement::Fixed);
    let cfg = c.clone();
    crate::stall::install();
    let beat = Arc::new(crate::stall::Beat::default());
    let ended = Arc::new(AtomicBool::new(false));
    let (b, e) = (beat.clone(), ended.clone());
    // The same executor settings as a run's workers (`runner::run`).
    let handle = LocalExecutorBuilder::new(placement)
        .name("loadgen-self-check")
        .spin_before_park(Duration::from_micros(0))
        .preempt_timer(Duration::from_micros(500))
        .spawn(move || async move {
            let r = produce(&cfg, addr, &b).await;
            b.finish();
            e.store(true, Relaxed);
            r
        })
        .map_err(|e| anyhow!("starting the executor: {e}"))?;
    let stalls = crate::stall::Stalls::default();
    while !ended.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        stalls.check(std::slice::from_ref(&*beat), now_ns());
    }
    let floor = handle.join().map_err(|e| anyhow!("executor: {e}"))??;
    let bytes_read = sink.join().map_err(|_| anyhow!("the sink thread panicked"))??;
    Ok(Floor {
        bytes_read,
        stalls: stalls.count.load(Relaxed),
        stall_ms_max: stalls.longest_ns.load(Relaxed) / 1_000_000,
        ..floor
    })
}

async fn produce(c: &SelfCheck, addr: std::net::SocketAddr, beat: &crate::stall::Beat) -> Result<Floor> {
    beat.start(now_ns());
    let mut s = glommio::net::TcpStream::connect(addr).await.map_err(|e| anyhow!("connecting to the sink: {e}"))?;
    s.set_nodelay(true).map_err(|e| anyhow!("TCP_NODELAY: {e}"))?;
    let t0 = now_ns();
    let start = t0 + (c.warmup_s * 1e9) as u64;
    let end = start + (c.duration_s * 1e9) as u64;
    let sched = Schedule::with_profile(t0, c.warmup_s, &RateProfile::Constant(c.rate), 1, 0);
    let total = sched.count_before(end);
    let batch = c.batch.max(1) as u64;
    let body = vec![0x5au8; c.size.max(1)];
    let mut out = Vec::with_capacity(body.len() * batch as usize);
    let mut lateness = crate::stats::new_histogram();
    let (mut seq, mut measured, mut writes) = (0u64, 0u64, 0u64);
    while seq < total {
        let now = now_ns();
        beat.beat(now);
        let due = sched.due(now).min(total);
        if due <= seq {
            let wait = sched.intended(seq).saturating_sub(now).max(crate::runner::MIN_SLEEP_NS);
            glommio::timer::sleep(Duration::from_nanos(wait)).await;
            continue;
        }
        let n = (due - seq).min(batch);
        out.clear();
        for _ in 0..n {
            out.extend_from_slice(&body);
        }
        s.write_all(&out).await.context("writing to the sink")?;
        let done = now_ns();
        for i in seq..seq + n {
            let intended = sched.intended(i);
            if intended >= start {
                crate::stats::record(&mut lateness, done.saturating_sub(intended));
                measured += 1;
            }
        }
        if sched.intended(seq) >= start {
            writes += 1;
        }
        seq += n;
        glommio::yield_if_needed().await;
    }
    s.close().await.map_err(|e| anyhow!("closing: {e}"))?;
    let seconds = (now_ns().saturating_sub(start)) as f64 / 1e9;
    Ok(Floor { sent: seq, measured, bytes_read: 0, seconds, lateness, writes, stalls: 0, stall_ms_max: 0 })
}
