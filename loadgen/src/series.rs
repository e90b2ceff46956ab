//! The per-second series: for each second of the run, the publish and
//! delivery rates, the backlog, and the end-to-end and confirm latency of
//! that second. Built on the main thread from what the workers already
//! hand over every 200 ms (their interval histograms) and from the run's
//! counters, so it costs the hot path nothing: a delivery or a confirm is
//! one histogram record, as before.
//!
//! Seconds are aligned on the start of the measured window, as the rate
//! steps are (`schedule::RateProfile`): the point with `t_s = 3` covers
//! seconds 3 to 4 of the measured window; warmup seconds are negative.

use crate::stats::{new_histogram, Percentiles};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// One second of the run.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct SecondPoint {
    /// Start of the second, seconds from the start of the measured window.
    pub t_s: f64,
    /// Messages published a second (sent; with --confirm, confirmed or not).
    pub publish_rate: f64,
    /// Deliveries a second (first deliveries; duplicates are not counted).
    pub deliver_rate: f64,
    /// Deliveries still expected at the end of the second: sent × fan-out
    /// minus received, over the whole run so far.
    pub backlog: i64,
    /// End-to-end latency of the second's deliveries, microseconds
    /// (0 when nothing arrived).
    pub p50_us: f64,
    pub p99_us: f64,
    pub latency_us: Percentiles,
    /// Publish-to-confirm latency of the second's confirms (--confirm).
    pub confirm_latency_us: Percentiles,
}

/// Counters read at a tick: messages sent, received and expected so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub sent: u64,
    pub received: u64,
    pub expected: u64,
}

/// Builds the series from ticks of the progress loop.
pub struct PerSecond {
    window_start: u64,
    /// The end of the second being filled (ns of the monotonic clock).
    edge: u64,
    /// When the second being filled began, and the counters then.
    began: u64,
    at_start: Counts,
    e2e: Histogram<u64>,
    confirm: Histogram<u64>,
    pub points: Vec<SecondPoint>,
}

const SECOND_NS: u64 = 1_000_000_000;

impl PerSecond {
    /// A series for a run that starts at `t0` and measures from
    /// `window_start` on.
    pub fn new(t0: u64, window_start: u64) -> PerSecond {
        // The first edge: the first whole second of the window's grid after t0.
        let behind = window_start.saturating_sub(t0);
        let edge = window_start - behind / SECOND_NS * SECOND_NS;
        let edge = if edge <= t0 { edge + SECOND_NS } else { edge };
        PerSecond {
            window_start,
            edge,
            began: t0,
            at_start: Counts::default(),
            e2e: new_histogram(),
            confirm: new_histogram(),
            points: Vec::new(),
        }
    }

    /// The end of the second being filled (the progress loop's 200 ms
    /// grid runs through it).
    #[cfg(test)]
    pub fn next_edge(&self) -> u64 {
        self.edge
    }

    /// Adds latencies the workers handed over.
    pub fn add(&mut self, e2e: &Histogram<u64>, confirm: &Histogram<u64>) {
        let _ = self.e2e.add(e2e);
        let _ = self.confirm.add(confirm);
    }

    /// Closes the second when `now` has reached its edge.
    pub fn tick(&mut self, now: u64, c: Counts) {
        if now >= self.edge {
            self.close(now, c);
            // A stall longer than a second: the next edge after `now`.
            while self.edge <= now {
                self.edge += SECOND_NS;
            }
        }
    }

    /// Closes the last (partial) second at the end of the run, if
    /// anything happened in it.
    pub fn finish(&mut self, now: u64, c: Counts) {
        let idle = c.sent == self.at_start.sent && c.received == self.at_start.received && self.e2e.is_empty();
        if !idle && now > self.began {
            self.close(now, c);
        }
    }

    fn close(&mut self, now: u64, c: Counts) {
        let secs = (now - self.began) as f64 / 1e9;
        let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
        let latency = Percentiles::from_hist(&self.e2e);
        let start = self.edge.saturating_sub(SECOND_NS).max(self.began);
        let t_s = ((start as f64 - self.window_start as f64) / 1e9).floor();
        let backlog = i64::try_from(c.expected).unwrap_or(i64::MAX) - i64::try_from(c.received).unwrap_or(i64::MAX);
        self.points.push(SecondPoint {
            t_s,
            publish_rate: rate(c.sent, self.at_start.sent),
            deliver_rate: rate(c.received, self.at_start.received),
            backlog: backlog.max(0),
            p50_us: latency.p50,
            p99_us: latency.p99,
            latency_us: latency,
            confirm_latency_us: Percentiles::from_hist(&self.confirm),
        });
        self.e2e.reset();
        self.confirm.reset();
        self.began = now;
        self.at_start = c;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::record;

    #[test]
    fn seconds_are_aligned_on_the_window_and_carry_rates_and_latency() {
        let t0 = 10 * SECOND_NS;
        // 1.5 s of warmup: the first second is a half one (-1.5 to -1).
        let start = t0 + 1_500_000_000;
        let mut s = PerSecond::new(t0, start);
        assert_eq!(s.next_edge(), t0 + 500_000_000);
        let mut e2e = new_histogram();
        let none = new_histogram();
        for us in 1..=100 {
            record(&mut e2e, us * 1000);
        }
        s.add(&e2e, &none);
        s.tick(s.next_edge(), Counts { sent: 100, received: 100, expected: 100 });
        assert_eq!(s.points.len(), 1);
        let p = &s.points[0];
        assert_eq!(p.t_s, -2.0);
        assert!((p.publish_rate - 200.0).abs() < 1e-6, "{p:?}");
        assert!((p.p50_us - 50.0).abs() < 0.1 && (p.p99_us - 99.0).abs() < 0.1, "{p:?}");
        // A whole second: 1000 sent, 900 received, 100 behind.
        s.tick(s.next_edge() - 1, Counts { sent: 500, received: 500, expected: 500 });
        assert_eq!(s.points.len(), 1, "not at the edge yet");
        s.tick(s.next_edge(), Counts { sent: 1100, received: 1000, expected: 1100 });
        let p = &s.points[1];
        assert_eq!((p.t_s, p.backlog), (-1.0, 100));
        assert!((p.publish_rate - 1000.0).abs() < 1e-6 && (p.deliver_rate - 900.0).abs() < 1e-6, "{p:?}");
        assert_eq!(p.latency_us.count, 0);
        s.tick(s.next_edge(), Counts { sent: 2100, received: 2100, expected: 2100 });
        assert_eq!(s.points[2].t_s, 0.0);
        // The end: a partial second is closed when something happened in it.
        let at = s.next_edge() - 500_000_000;
        s.finish(at, Counts { sent: 2100, received: 2100, expected: 2100 });
        assert_eq!(s.points.len(), 3, "nothing happened");
        s.finish(at, Counts { sent: 2200, received: 2200, expected: 2200 });
        assert_eq!(s.points.len(), 4);
        assert!((s.points[3].publish_rate - 200.0).abs() < 1e-6);
    }

    #[test]
    fn a_stall_skips_to_the_next_edge() {
        let mut s = PerSecond::new(0, 0);
        assert_eq!(s.next_edge(), SECOND_NS);
        s.tick(3 * SECOND_NS + 5, Counts { sent: 3000, received: 3000, expected: 3000 });
        assert_eq!(s.points.len(), 1);
        assert_eq!(s.next_edge(), 4 * SECOND_NS);
    }
}
