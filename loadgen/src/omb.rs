//! `--omb-json FILE`: the run as an OpenMessaging Benchmark result file
//! (OMB's `TestResult`), so that OMB users can put ringmq's numbers next
//! to theirs with their own tools. OMB's field names and units: rates in
//! messages a second, latencies in milliseconds; series have one value
//! per sample (`sampleRateMillis`: here one second, of the measured
//! window only, as OMB leaves out its warmup).
//!
//! What maps: a "topic" is a queue, with one partition; the publish
//! latency is publish-to-confirm (OMB's is the send's acknowledgement), so
//! the publish fields are present only for a `--confirm` run; the
//! end-to-end latency is the loadgen's, from the intended send time. OMB's
//! `publishDelayLatency*` (how late the generator sent) and
//! `publishErrorRate` have no counterpart here and are left out rather
//! than filled with zeros.

use crate::series::SecondPoint;
use crate::stats::{Percentiles, Summary};
use crate::workload::Workload;
use serde_json::{json, Map, Value};

/// The OMB result document of a run.
pub fn result(s: &Summary, w: &Workload) -> Value {
    let samples: Vec<&SecondPoint> =
        s.per_second.iter().filter(|p| p.t_s >= 0.0 && p.t_s < w.duration_s.ceil()).collect();
    let driver = w.url.split("://").next().unwrap_or("ringmq");
    let mut o = Map::new();
    o.insert("workload".into(), json!(s.label));
    o.insert("driver".into(), json!(driver));
    o.insert("messageSize".into(), json!(w.size));
    o.insert("topics".into(), json!(w.queues.len()));
    o.insert("partitions".into(), json!(1));
    o.insert("producersPerTopic".into(), json!(w.producers.div_ceil(w.queues.len().max(1))));
    o.insert("consumersPerTopic".into(), json!(w.consumers.div_ceil(w.queues.len().max(1))));
    o.insert("sampleRateMillis".into(), json!(1000));
    o.insert("publishRate".into(), series(&samples, |p| p.publish_rate));
    o.insert("consumeRate".into(), series(&samples, |p| p.deliver_rate));
    o.insert("backlog".into(), series(&samples, |p| p.backlog as f64));
    latencies(&mut o, "endToEndLatency", &samples, |p| &p.latency_us, &s.latency_us, &s.latency_percentiles_us);
    if w.confirm {
        // The confirm histogram's curve is not kept point by point: the
        // quantile map gives the aggregated percentiles OMB lists.
        let q = quantile_points(&s.confirm_latency_us);
        latencies(&mut o, "publishLatency", &samples, |p| &p.confirm_latency_us, &s.confirm_latency_us, &q);
    }
    Value::Object(o)
}

/// Reads one figure of a set of percentiles.
type PercentileOf = fn(&Percentiles) -> f64;

fn series(samples: &[&SecondPoint], f: impl Fn(&SecondPoint) -> f64) -> Value {
    Value::Array(samples.iter().map(|p| json!(f(p))).collect())
}

/// `NAMEAvg`, `NAME50pct` ... `NAMEMax` series and their `aggregated`
/// values, in milliseconds, plus `aggregatedNAMEQuantiles`.
fn latencies(
    o: &mut Map<String, Value>,
    name: &str,
    samples: &[&SecondPoint],
    of: impl Fn(&SecondPoint) -> &Percentiles,
    all: &Percentiles,
    curve: &[(f64, f64)],
) {
    let ms = |us: f64| us / 1000.0;
    let fields: [(&str, PercentileOf); 8] = [
        ("Avg", |p| p.mean),
        ("50pct", |p| p.p50),
        ("75pct", |p| p.p75),
        ("95pct", |p| p.p95),
        ("99pct", |p| p.p99),
        ("999pct", |p| p.p999),
        ("9999pct", |p| p.p9999),
        ("Max", |p| p.max),
    ];
    let mut cap = name.to_string();
    if let Some(first) = cap.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    for (suffix, get) in fields {
        o.insert(format!("{name}{suffix}"), series(samples, |p| ms(get(of(p)))));
        o.insert(format!("aggregated{cap}{suffix}"), json!(ms(get(all))));
    }
    let quantiles: Map<String, Value> = curve.iter().map(|&(pct, us)| (format!("{pct}"), json!(ms(us)))).collect();
    o.insert(format!("aggregated{cap}Quantiles"), Value::Object(quantiles));
}

/// The percentiles a summary keeps, as (percentile %, us) points.
fn quantile_points(p: &Percentiles) -> Vec<(f64, f64)> {
    if p.count == 0 {
        return Vec::new();
    }
    vec![
        (50.0, p.p50),
        (75.0, p.p75),
        (90.0, p.p90),
        (95.0, p.p95),
        (99.0, p.p99),
        (99.9, p.p999),
        (99.99, p.p9999),
        (100.0, p.max),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_have_omb_names_and_units() {
        let lat = Percentiles { p50: 1500.0, p99: 4000.0, max: 9000.0, mean: 1600.0, count: 10, ..Default::default() };
        let point = |t_s: f64| SecondPoint {
            t_s,
            publish_rate: 1000.0,
            deliver_rate: 990.0,
            backlog: 10,
            latency_us: lat,
            confirm_latency_us: lat,
            ..Default::default()
        };
        let s = Summary {
            label: "run".into(),
            latency_us: lat,
            confirm_latency_us: lat,
            latency_percentiles_us: vec![(50.0, 1500.0), (100.0, 9000.0)],
            per_second: vec![point(-1.0), point(0.0), point(1.0), point(2.0)],
            ..Default::default()
        };
        let mut w = crate::workload::tests::workload(1, 1, 1, None);
        w.duration_s = 2.0;
        let v = result(&s, &w);
        assert_eq!(v["publishRate"], json!([1000.0, 1000.0]), "the warmup and drain seconds are left out");
        assert_eq!(v["consumeRate"], json!([990.0, 990.0]));
        assert_eq!(v["backlog"], json!([10.0, 10.0]));
        assert_eq!(v["aggregatedEndToEndLatency50pct"], json!(1.5));
        assert_eq!(v["aggregatedEndToEndLatencyMax"], json!(9.0));
        assert_eq!(v["endToEndLatency99pct"], json!([4.0, 4.0]));
        assert_eq!(v["aggregatedEndToEndLatencyQuantiles"]["100"], json!(9.0));
        assert_eq!(v["sampleRateMillis"], json!(1000));
        assert!(v.get("publishLatency99pct").is_none(), "no confirms, no publish latency");
        w.confirm = true;
        let v = result(&s, &w);
        assert_eq!(v["aggregatedPublishLatency99pct"], json!(4.0));
        assert_eq!(v["publishLatencyAvg"], json!([1.6, 1.6]));
    }
}
