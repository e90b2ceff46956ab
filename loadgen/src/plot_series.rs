//! `plot --per-second`: the per-second series of one or more runs, as two
//! charts in one SVG: the publish and delivery rates over time (top), and
//! the p50 and p99 end-to-end latency of each second (bottom, log). With a
//! stepped or ramped `--rate`, the knee shows where the delivery rate stops
//! following the publish rate and the p99 climbs.

use crate::plot::{load_summary, Dash, XyChart, XySeries};
use anyhow::{bail, Result};
use std::path::Path;

/// Height of each of the two charts (XyChart draws 960 × 600).
const CHART_H: f64 = 600.0;

pub fn per_second_files(paths: &[impl AsRef<Path>], title: &str) -> Result<String> {
    let (mut rates, mut latency) = (Vec::new(), Vec::new());
    for (i, p) in paths.iter().enumerate() {
        let s = load_summary(p.as_ref())?;
        if s.per_second.is_empty() {
            bail!("{}: no per_second series in this summary (an older loadgen?)", p.as_ref().display());
        }
        let t = &s.per_second;
        let line = |name: &str, dash: Dash, f: fn(&crate::series::SecondPoint) -> f64| XySeries {
            label: format!("{} {name}", s.label),
            points: t.iter().map(|p| (p.t_s, f(p))).collect(),
            color: i,
            dash,
        };
        rates.push(line("publish", Dash::Solid, |p| p.publish_rate));
        rates.push(line("deliver", Dash::Dashed, |p| p.deliver_rate));
        // Seconds without deliveries have no latency: left out, not 0.
        let mut p50 = line("p50", Dash::Dotted, |p| p.p50_us);
        let mut p99 = line("p99", Dash::Solid, |p| p.p99_us);
        p50.points.retain(|p| p.1 > 0.0);
        p99.points.retain(|p| p.1 > 0.0);
        latency.extend([p50, p99]);
    }
    let x_label = "seconds into the measured window";
    let top = XyChart { title, x_label, y_label: "messages/s", log_x: false, log_y: false, x_ticks: None };
    let bottom = XyChart {
        title: "end-to-end latency of each second",
        x_label,
        y_label: "latency (µs, log)",
        log_x: false,
        log_y: true,
        x_ticks: None,
    };
    let mut o = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"960\" height=\"{h}\" viewBox=\"0 0 960 {h}\">\n",
        h = 2.0 * CHART_H
    );
    o.push_str(&top.svg(&rates).replacen("<svg ", "<svg y=\"0\" ", 1));
    o.push_str(&bottom.svg(&latency).replacen("<svg ", &format!("<svg y=\"{CHART_H}\" "), 1));
    o.push_str("</svg>\n");
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::SecondPoint;
    use crate::stats::Summary;

    #[test]
    fn two_charts_with_rates_and_latency() {
        let dir = tempfile::tempdir().unwrap();
        let point = |t_s: f64, rate: f64, p99: f64| SecondPoint {
            t_s,
            publish_rate: rate,
            deliver_rate: rate,
            p50_us: p99 / 2.0,
            p99_us: p99,
            ..Default::default()
        };
        let s = Summary {
            label: "steps".into(),
            per_second: vec![point(0.0, 1000.0, 500.0), point(1.0, 5000.0, 0.0), point(2.0, 20000.0, 9000.0)],
            ..Default::default()
        };
        let path = dir.path().join("run.json");
        std::fs::write(&path, serde_json::to_string(&s).unwrap()).unwrap();
        let svg = per_second_files(&[&path], "knee").unwrap();
        assert_eq!(svg.matches("<svg").count(), 3, "an outer svg with two charts");
        for label in ["steps publish", "steps deliver", "steps p50", "steps p99", "knee"] {
            assert!(svg.contains(label), "{label}");
        }
        assert_eq!(svg.matches("<polyline").count(), 4);
        let old = dir.path().join("old.json");
        std::fs::write(&old, serde_json::to_string(&Summary::default()).unwrap()).unwrap();
        assert!(per_second_files(&[&old], "t").unwrap_err().to_string().contains("per_second"));
    }
}
