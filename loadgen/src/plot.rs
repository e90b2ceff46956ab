//! Latency-by-percentile plots in hand-written SVG, in the style of
//! HdrHistogram's plotter: the x axis is `1/(1-p)` on a log scale, so 90%,
//! 99%, 99.9%... are evenly spaced; one line per run.

use crate::stats::{parse_hgrm, Summary};
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::path::Path;

pub struct Series {
    pub label: String,
    /// (percentile in %, latency in us), increasing percentile.
    pub points: Vec<(f64, f64)>,
}

/// Reads a `--json` summary or an `.hgrm` file.
pub fn load(path: &Path) -> Result<Series> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    if text.trim_start().starts_with('{') {
        let s: Summary = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let label = if s.label.is_empty() { stem } else { s.label };
        return Ok(Series { label, points: s.latency_percentiles_us });
    }
    let points = parse_hgrm(&text);
    if points.is_empty() {
        bail!("{}: neither a loadgen JSON summary nor an .hgrm file", path.display());
    }
    Ok(Series { label: stem, points })
}

pub fn plot_files(paths: &[impl AsRef<Path>], title: &str, log_y: bool) -> Result<String> {
    let series = paths.iter().map(|p| load(p.as_ref())).collect::<Result<Vec<_>>>()?;
    Ok(svg(&series, title, log_y))
}

const COLORS: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// `log10(1/(1-p))` for p in percent, capped at the plot's right edge.
fn xval(pct: f64, max_x: f64) -> f64 {
    let q = pct / 100.0;
    if q >= 1.0 {
        return max_x;
    }
    (1.0 / (1.0 - q)).log10().min(max_x)
}

fn nice_ceiling(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= v {
            return m * mag;
        }
    }
    10.0 * mag
}

pub fn svg(series: &[Series], title: &str, log_y: bool) -> String {
    let a = Axes::fit(series, log_y);
    let (w, h) = (a.w, a.h);
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(o, r#"<text x="{}" y="28" text-anchor="middle" font-size="16">{}</text>"#, w / 2.0, esc(title));
    a.x_grid(&mut o);
    a.y_grid(&mut o);
    let (left, top, pw, ph) = (a.left, a.top, a.pw, a.ph);
    let _ = writeln!(o, r#"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#);
    a.lines_and_legend(&mut o, series);
    o.push_str("</svg>\n");
    o
}

/// The plot's geometry (pixels) and the ranges its axes cover.
struct Axes {
    w: f64,
    h: f64,
    left: f64,
    top: f64,
    /// The plot area's width and height.
    pw: f64,
    ph: f64,
    /// The x axis's right end, in decades of `1/(1-p)` (3 = 99.9%).
    max_x: f64,
    log_y: bool,
    y_lo: f64,
    y_hi: f64,
}

impl Axes {
    /// Axes that hold every point of every series.
    fn fit(series: &[Series], log_y: bool) -> Axes {
        let (w, h) = (960.0, 600.0);
        let (left, right, top, bottom) = (80.0, 30.0, 50.0, 70.0);
        // X: up to the highest percentile any run reached (max 99.9999%), at least 99.9%.
        let mut max_x: f64 = 3.0;
        let mut max_y: f64 = 0.0;
        let mut min_y = f64::MAX;
        for s in series {
            for &(p, v) in &s.points {
                if p < 100.0 {
                    max_x = max_x.max(xval(p, 6.0).ceil());
                }
                max_y = max_y.max(v);
                if v > 0.0 {
                    min_y = min_y.min(v);
                }
            }
        }
        let (y_lo, y_hi) = if log_y {
            let lo = 10f64.powf(min_y.min(max_y).max(0.001).log10().floor());
            (lo, 10f64.powf(max_y.max(lo * 10.0).log10().ceil()))
        } else {
            (0.0, nice_ceiling(max_y))
        };
        Axes { w, h, left, top, pw: w - left - right, ph: h - top - bottom, max_x: max_x.min(6.0), log_y, y_lo, y_hi }
    }

    fn px(&self, x: f64) -> f64 {
        self.left + self.pw * x / self.max_x
    }

    fn py(&self, v: f64) -> f64 {
        let (lo, hi) = (self.y_lo, self.y_hi);
        let f = if self.log_y { (v.max(lo).log10() - lo.log10()) / (hi.log10() - lo.log10()) } else { v / hi };
        self.top + self.ph * (1.0 - f)
    }

    /// Vertical lines at 0%, 90%, 99%, ... and the x axis's label.
    fn x_grid(&self, o: &mut String) {
        let (top, ph) = (self.top, self.ph);
        for k in 0..=(self.max_x as usize) {
            let x = self.px(k as f64);
            let label = match k {
                0 => "0%".to_string(),
                k => {
                    let p = 100.0 - 100.0 / 10f64.powi(k as i32);
                    format!("{}%", trim(p))
                }
            };
            let _ = writeln!(
                o,
                r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
                top + ph,
                top + ph + 18.0
            );
        }
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
            self.left + self.pw / 2.0,
            self.h - 25.0
        );
    }

    /// Horizontal lines (decades on a log axis, fifths otherwise) and the
    /// y axis's label.
    fn y_grid(&self, o: &mut String) {
        let left = self.left;
        let ticks: Vec<f64> = if self.log_y {
            let mut t = Vec::new();
            let mut v = self.y_lo;
            while v <= self.y_hi * 1.0001 {
                t.push(v);
                v *= 10.0;
            }
            t
        } else {
            (0..=5).map(|i| self.y_hi * i as f64 / 5.0).collect()
        };
        for v in ticks {
            let y = self.py(v);
            let _ = writeln!(
                o,
                r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                left + self.pw,
                left - 6.0,
                y + 4.0,
                trim(v)
            );
        }
        let _ = writeln!(
            o,
            r#"<text transform="translate(22 {:.1}) rotate(-90)" text-anchor="middle">latency (µs{})</text>"#,
            self.top + self.ph / 2.0,
            if self.log_y { ", log" } else { "" }
        );
    }

    /// One line per run, and its entry in the legend.
    fn lines_and_legend(&self, o: &mut String, series: &[Series]) {
        let left = self.left;
        for (i, s) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let pts: Vec<String> = s
                .points
                .iter()
                .map(|&(p, v)| format!("{:.1},{:.1}", self.px(xval(p, self.max_x)), self.py(v)))
                .collect();
            let _ =
                writeln!(o, r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#, pts.join(" "));
            let ly = self.top + 16.0 + 18.0 * i as f64;
            let _ = writeln!(
                o,
                r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                left + 12.0,
                left + 36.0,
                left + 42.0,
                ly + 4.0,
                esc(&s.label)
            );
        }
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_axis_is_log_of_inverse_tail() {
        assert!((xval(90.0, 6.0) - 1.0).abs() < 1e-9);
        assert!((xval(99.9, 6.0) - 3.0).abs() < 1e-9);
        assert_eq!(xval(100.0, 5.0), 5.0);
        assert_eq!(xval(0.0, 5.0), 0.0);
    }

    #[test]
    fn svg_has_one_line_per_run() {
        let runs = vec![
            Series {
                label: "rabbitmq <1>".into(),
                points: vec![(0.0, 10.0), (50.0, 20.0), (99.0, 80.0), (100.0, 300.0)],
            },
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
}
