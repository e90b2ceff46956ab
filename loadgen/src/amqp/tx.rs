//! AMQP transactions, closed loop (`ringmq-loadgen tx`, docs/loadgen.md):
//! one connection, one channel in tx mode; each transaction is
//! `--per-tx` publishes and a tx.commit written with one syscall, then
//! the wait for commit-ok. Reports commits per second and the commit
//! round trip's percentiles.

use super::{Connection, CHANNEL};
use anyhow::Result;
use bytes::BufMut;
use hdrhistogram::Histogram;
use ringmq::protocol::amqp::frame;
use ringmq::protocol::amqp::method::{self, id};
use ringmq::protocol::amqp::wire::{put_bits, put_shortstr};
use std::time::{Duration, Instant};

/// What one run measured.
pub struct TxReport {
    pub commits: u64,
    pub elapsed: Duration,
    /// Publish-and-commit round trips, in microseconds.
    pub latency_us: Histogram<u64>,
}

impl TxReport {
    pub fn commits_per_s(&self) -> f64 {
        self.commits as f64 / self.elapsed.as_secs_f64()
    }
}

/// The shape of a run.
pub struct TxSpec<'a> {
    pub queue: &'a str,
    pub per_tx: u32,
    pub size: usize,
    pub persistent: bool,
    pub seconds: f64,
    pub warmup: f64,
}

impl Connection {
    pub async fn tx_select(&mut self) -> Result<()> {
        self.rpc(id::TX_SELECT, id::TX_SELECT_OK, |_| ()).await?;
        Ok(())
    }

    /// `per_tx` publishes to `queue` and a commit, in one write; waits
    /// for commit-ok.
    async fn transaction(&mut self, s: &TxSpec<'_>, body: &[u8]) -> Result<()> {
        // delivery-mode 2, or no properties.
        let props: &[u8] = if s.persistent { &[0x10, 0x00, 2] } else { &[0, 0] };
        for _ in 0..s.per_tx {
            method::put(&mut self.wbuf, CHANNEL, id::BASIC_PUBLISH, |b| {
                b.put_u16(0);
                put_shortstr(b, "");
                put_shortstr(b, s.queue);
                put_bits(b, &[false, false]);
            });
            frame::put_content_header(&mut self.wbuf, CHANNEL, 60, body.len() as u64, props);
            frame::put_body(&mut self.wbuf, CHANNEL, body, self.frame_max);
        }
        self.rpc(id::TX_COMMIT, id::TX_COMMIT_OK, |_| ()).await?;
        Ok(())
    }

    /// Commits transactions for `warmup`, then counts them for `seconds`.
    pub async fn tx_run(&mut self, s: &TxSpec<'_>) -> Result<TxReport> {
        self.tx_select().await?;
        let body = vec![b'x'; s.size];
        let warm_end = Instant::now() + Duration::from_secs_f64(s.warmup);
        while Instant::now() < warm_end {
            self.transaction(s, &body).await?;
        }
        let mut latency_us = Histogram::new_with_bounds(1, 60_000_000, 3)?;
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(s.seconds);
        let mut commits = 0;
        loop {
            let t = Instant::now();
            if t >= end {
                break;
            }
            self.transaction(s, &body).await?;
            latency_us.saturating_record(t.elapsed().as_micros().try_into().unwrap_or(u64::MAX));
            commits += 1;
        }
        Ok(TxReport { commits, elapsed: start.elapsed(), latency_us })
    }
}
