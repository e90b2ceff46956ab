//! Latency histograms, their merging, and the run's summary (table, JSON, .hgrm).

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Histograms record nanoseconds, 3 significant digits, up to one hour.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// Records `ns`, clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, ns: u64) {
    let v = ns.clamp(1, h.high());
    h.record(v).expect("value clamped into range");
}

/// Merges histograms (one per worker) into one.
pub fn merge<'a>(hists: impl IntoIterator<Item = &'a Histogram<u64>>) -> Histogram<u64> {
    let mut out = new_histogram();
    for h in hists {
        out.add(h).expect("same bounds");
    }
    out
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
    pub count: u64,
    /// The rest of OpenMessaging Benchmark's percentiles (`--omb-json`).
    #[serde(default)]
    pub p75: f64,
    #[serde(default)]
    pub p95: f64,
    #[serde(default)]
    pub p9999: f64,
}

impl Percentiles {
    /// In microseconds from a nanosecond histogram.
    pub fn from_hist(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Percentiles {
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1000.0,
            count: h.len(),
            p75: us(h.value_at_quantile(0.75)),
            p95: us(h.value_at_quantile(0.95)),
            p9999: us(h.value_at_quantile(0.9999)),
        }
    }
}

/// The `--json` output. The first ten keys are the stable interface.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Summary {
    pub sent: u64,
    pub confirmed: u64,
    pub received: u64,
    pub msgs_per_s: f64,
    pub bytes_per_s: f64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub latency_us: Percentiles,
    pub confirm_latency_us: Percentiles,
    /// How late the generator itself sent, at a fixed rate: for each
    /// batch, the time from its first message's intended send to the
    /// publish call. A stall of the generator (or of its CPU) shows here
    /// as well as in the latency; one of the broker does not. Empty at
    /// full speed.
    #[serde(default)]
    pub send_lag_us: Percentiles,
    /// Extra detail.
    pub label: String,
    pub url: String,
    pub send_msgs_per_s: f64,
    /// Deliveries to consumers a second in the measured window (the same as
    /// `msgs_per_s` when there are consumers; 0 without).
    #[serde(default)]
    pub delivered_per_s: f64,
    /// Queues each published message reaches: 1 without an exchange, the
    /// number of queues through a fanout exchange.
    #[serde(default)]
    pub fanout: f64,
    /// Deliveries the consumers should get in all: for every producer,
    /// messages sent × the consumed queues they reach.
    #[serde(default)]
    pub expected: u64,
    pub nacked: u64,
    pub foreign: u64,
    /// Times a worker's executor stopped running for a second or more
    /// (`stall.rs`: a generator fault, woken with a signal), and the
    /// longest in ms. A run with stalls measured the generator too.
    #[serde(default)]
    pub stalls: u64,
    #[serde(default)]
    pub stall_ms_max: u64,
    /// With --confirm: confirmed messages no consumer received (the
    /// first few as "queue producer seq" in `lost_confirmed_samples`),
    /// and messages received whose publish was never confirmed.
    #[serde(default)]
    pub lost_confirmed: u64,
    #[serde(default)]
    pub lost_confirmed_samples: Vec<String>,
    #[serde(default)]
    pub unconfirmed_received: u64,
    /// Errors the clients saw, by kind (digits folded to N): failed
    /// connections and subscriptions, refused publishes.
    #[serde(default)]
    pub client_errors: std::collections::BTreeMap<String, u64>,
    /// Connections made again after a failure (--reconnect).
    #[serde(default)]
    pub reconnects: u64,
    pub config: serde_json::Value,
    /// (percentile in %, latency in us) points for plotting.
    pub latency_percentiles_us: Vec<(f64, f64)>,
    /// End-to-end latency over time: one point per interval of deliveries
    /// (about 200 ms), warmup and drain included.
    #[serde(default)]
    pub latency_over_time: Vec<TimePoint>,
    /// One point per second of the run (warmup and drain included): the
    /// publish and delivery rates and the latency of that second.
    #[serde(default)]
    pub per_second: Vec<crate::series::SecondPoint>,
    /// Why the run failed its integrity check (lost, duplicated or
    /// reordered messages the workload does not allow); empty when it
    /// passed. Non-empty makes the exit code 3.
    #[serde(default)]
    pub integrity_failures: Vec<String>,
    /// The `.hgrm` text of the end-to-end latency (written by `--hgrm`).
    #[serde(skip)]
    pub hgrm: String,
}

/// The end-to-end latency of the deliveries received in one interval.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct TimePoint {
    /// End of the interval, seconds from the start of the measured window
    /// (negative during the warmup).
    pub t_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub count: u64,
}

impl TimePoint {
    /// The point of a nanosecond histogram; `None` when it is empty.
    pub fn from_hist(t_s: f64, h: &Histogram<u64>) -> Option<TimePoint> {
        if h.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Some(TimePoint {
            t_s,
            p50_us: us(h.value_at_quantile(0.50)),
            p99_us: us(h.value_at_quantile(0.99)),
            max_us: us(h.max()),
            count: h.len(),
        })
    }
}

/// Points of the percentile curve, as HdrHistogram's `outputPercentileDistribution`.
pub fn percentile_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_quantiles(5).map(|v| (v.quantile_iterated_to() * 100.0, v.value_iterated_to() as f64 / 1000.0)).collect()
}

/// HdrHistogram's percentile-distribution text, values in microseconds.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut out = String::new();
    let scale = 1000.0;
    let _ = writeln!(out, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    if !h.is_empty() {
        let mut total = 0u64;
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let value = h.highest_equivalent(v.value_iterated_to()) as f64 / scale;
            if q < 1.0 {
                let _ = writeln!(out, "{:12.3} {:2.12} {:10} {:14.2}", value, q, total, 1.0 / (1.0 - q));
            } else {
                let _ = writeln!(out, "{:12.3} {:2.12} {:10}", value, q, total);
            }
        }
    }
    let _ = writeln!(out, "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]", h.mean() / scale, h.stdev() / scale);
    let _ = writeln!(out, "#[Max     = {:12.3}, Total count    = {:12}]", h.max() as f64 / scale, h.len());
    let _ = writeln!(out, "#[Buckets = {:12}, SubBuckets     = {:12}]", h.buckets(), h.distinct_values());
    out
}

/// Parses the rows of a `.hgrm` file into (percentile %, value) points.
pub fn parse_hgrm(text: &str) -> Vec<(f64, f64)> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.split_whitespace();
            let value: f64 = it.next()?.parse().ok()?;
            let q: f64 = it.next()?.parse().ok()?;
            Some((q * 100.0, value))
        })
        .collect()
}

impl Summary {
    /// The table for people.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "run            {}", self.label);
        let _ = writeln!(
            s,
            "messages       sent {}  confirmed {}  nacked {}  received {} (expected {}, fan-out {})",
            self.sent, self.confirmed, self.nacked, self.received, self.expected, self.fanout
        );
        let _ = writeln!(
            s,
            "integrity      lost {}  duplicates {}  reordered {}{}",
            self.lost,
            self.duplicates,
            self.reordered,
            if self.foreign > 0 {
                format!("  (ignored {} stale messages of other runs)", self.foreign)
            } else {
                String::new()
            }
        );
        if self.confirmed > 0 || self.nacked > 0 {
            let _ = writeln!(
                s,
                "confirmed      lost {}  (received unconfirmed {}){}",
                self.lost_confirmed,
                self.unconfirmed_received,
                if self.lost_confirmed_samples.is_empty() {
                    String::new()
                } else {
                    format!("  first: {}", self.lost_confirmed_samples.join(", "))
                }
            );
        }
        if self.reconnects > 0 || !self.client_errors.is_empty() {
            let _ = writeln!(
                s,
                "client errors  {}  reconnects {}",
                self.client_errors.values().sum::<u64>(),
                self.reconnects
            );
            for (k, n) in &self.client_errors {
                let _ = writeln!(s, "  {n:>8}  {k}");
            }
        }
        let _ = writeln!(
            s,
            "throughput     {:.0} msg/s  {:.2} MB/s  (publish {:.0} msg/s, deliver {:.0} msg/s)",
            self.msgs_per_s,
            self.bytes_per_s / 1e6,
            self.send_msgs_per_s,
            self.delivered_per_s
        );
        let _ = writeln!(
            s,
            "{:<14} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "latency (us)", "p50", "p90", "p99", "p99.9", "max", "count"
        );
        let rows =
            [("end to end", &self.latency_us), ("confirm", &self.confirm_latency_us), ("send lag", &self.send_lag_us)];
        for (name, p) in rows {
            if p.count == 0 {
                continue;
            }
            let _ = writeln!(
                s,
                "{:<14} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10}",
                name, p.p50, p.p90, p.p99, p.p999, p.max, p.count
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let mut parts = [new_histogram(), new_histogram(), new_histogram()];
        let mut all = new_histogram();
        for i in 0..30_000u64 {
            let v = 1_000 + (i * 7919) % 5_000_000;
            record(&mut parts[(i % 3) as usize], v);
            record(&mut all, v);
        }
        let merged = merge(parts.iter());
        assert_eq!(merged.len(), 30_000);
        assert_eq!(merged, all);
        assert_eq!(Percentiles::from_hist(&merged), Percentiles::from_hist(&all));
    }

    #[test]
    fn percentiles_in_microseconds() {
        let mut h = new_histogram();
        for us in 1..=1000u64 {
            record(&mut h, us * 1000);
        }
        let p = Percentiles::from_hist(&h);
        assert!((p.p50 - 500.0).abs() < 1.0, "{p:?}");
        assert!((p.p99 - 990.0).abs() < 1.0, "{p:?}");
        assert!((p.max - 1000.0).abs() < 1.0, "{p:?}");
        assert_eq!(p.count, 1000);
    }

    #[test]
    fn out_of_range_values_are_clamped() {
        let mut h = new_histogram();
        record(&mut h, 0);
        record(&mut h, u64::MAX);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn time_point_of_a_histogram() {
        let mut h = new_histogram();
        assert_eq!(TimePoint::from_hist(1.0, &h), None);
        for us in 1..=100u64 {
            record(&mut h, us * 1000);
        }
        let p = TimePoint::from_hist(-0.2, &h).unwrap();
        assert_eq!((p.t_s, p.count), (-0.2, 100));
        assert!((p.p50_us - 50.0).abs() < 0.1 && (p.p99_us - 99.0).abs() < 0.1 && (p.max_us - 100.0).abs() < 0.1);
    }

    #[test]
    fn hgrm_roundtrip() {
        let mut h = new_histogram();
        for us in 1..=10_000u64 {
            record(&mut h, us * 1000);
        }
        let text = hgrm(&h);
        assert!(text.contains("1/(1-Percentile)"));
        assert!(text.contains("#[Max     ="));
        let pts = parse_hgrm(&text);
        assert!(pts.len() > 20);
        let (q, v) = *pts.last().unwrap();
        assert_eq!(q, 100.0);
        assert!((v - 10_000.0).abs() / 10_000.0 < 0.001);
        // Monotonic in both coordinates.
        assert!(pts.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
    }
}
