//! Tests of `plot`: axes, scales and the SVG it draws.
use super::*;

#[test]
fn x_axis_is_log_of_inverse_tail() {
    assert!((xval(90.0, 6.0) - 1.0).abs() < 1e-9);
    assert!((xval(99.9, 6.0) - 3.0).abs() < 1e-9);
    assert_eq!(xval(100.0, 5.0), 5.0);
    assert_eq!(xval(0.0, 5.0), 0.0);
}

fn summary(label: &str, size: f64, rate: f64, over_time: &[(f64, f64)]) -> Summary {
    Summary {
        label: label.into(),
        msgs_per_s: rate,
        config: serde_json::json!({ "size": size }),
        latency_over_time: over_time
            .iter()
            .map(|&(t_s, v)| crate::stats::TimePoint { t_s, p50_us: v / 2.0, p99_us: v, max_us: v * 3.0, count: 10 })
            .collect(),
        ..Summary::default()
    }
}

fn write_runs(dir: &Path, runs: &[Summary]) -> Vec<std::path::PathBuf> {
    runs.iter()
        .enumerate()
        .map(|(i, s)| {
            let p = dir.join(format!("run-{i}.json"));
            std::fs::write(&p, serde_json::to_string(s).unwrap()).unwrap();
            p
        })
        .collect()
}

#[test]
fn over_time_has_three_lines_per_run() {
    let dir = tempfile::tempdir().unwrap();
    let runs = [
        summary("ringmq", 1024.0, 5000.0, &[(-1.0, 200.0), (0.2, 180.0), (0.4, 90_000.0)]),
        summary("rabbitmq", 1024.0, 5000.0, &[(0.2, 400.0), (0.4, 500.0)]),
    ];
    let svg = over_time_files(&write_runs(dir.path(), &runs), "t").unwrap();
    assert_eq!(svg.matches("<polyline").count(), 6);
    assert!(svg.contains("ringmq max") && svg.contains("rabbitmq p50"));
    assert!(svg.contains("stroke-dasharray"));
    // The log axis reaches the stall.
    assert!(svg.contains(">1000000<"), "{svg}");
    // A summary without a series is refused with the reason.
    let old = write_runs(dir.path(), &[summary("old", 16.0, 1.0, &[])]);
    assert!(over_time_files(&old, "t").unwrap_err().to_string().contains("latency_over_time"));
}

#[test]
fn linear_ticks_are_round() {
    let s = Scale::fit([-1.8, 6.1].into_iter(), false);
    assert_eq!((s.lo, s.hi), (-2.0, 7.0));
    let t: Vec<String> = s.ticks().into_iter().map(|t| t.1).collect();
    assert_eq!(t, ["-2", "-1", "0", "1", "2", "3", "4", "5", "6", "7"]);
    let s = Scale::fit([0.0, 95.0].into_iter(), false);
    assert_eq!((s.lo, s.hi, s.ticks().len()), (0.0, 100.0, 11));
}

#[test]
fn by_size_takes_the_median_of_each_size() {
    let dir = tempfile::tempdir().unwrap();
    let runs = [
        summary("ringmq", 16.0, 100.0, &[]),
        summary("ringmq", 16.0, 300.0, &[]),
        summary("ringmq", 16.0, 200.0, &[]),
        summary("ringmq", 1024.0, 50.0, &[]),
        summary("rabbitmq", 1024.0, 5.0, &[]),
    ];
    let svg = by_size_files(&write_runs(dir.path(), &runs), "t").unwrap();
    assert_eq!(svg.matches("<polyline").count(), 2);
    assert_eq!(svg.matches("<circle").count(), 3);
    assert!(svg.contains(">16 B<") && svg.contains(">1 KiB<"));
    assert_eq!(median(vec![100.0, 300.0, 200.0]), 200.0);
    assert_eq!(median(vec![1.0, 2.0]), 1.5);
}

#[test]
fn svg_has_one_line_per_run() {
    let runs = vec![
        Series { label: "rabbitmq <1>".into(), points: vec![(0.0, 10.0), (50.0, 20.0), (99.0, 80.0), (100.0, 300.0)] },
        Series { label: "ringmq".into(), points: vec![(0.0, 5.0), (99.9, 10.0), (100.0, 40.0)] },
    ];
    for log_y in [false, true] {
        let svg = svg(&runs, "t", log_y);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("rabbitmq &lt;1&gt;"));
        assert!(svg.contains("99.9%"));
        assert!(svg.ends_with("</svg>\n"));
    }
}
