//! Plots in hand-written SVG. Latency by percentile, in the style of
//! HdrHistogram's plotter: the x axis is `1/(1-p)` on a log scale, so 90%,
//! 99%, 99.9%... are evenly spaced; one line per run. Latency over time
//! (`--over-time`) and throughput by message size (`--by-size`) are x-y
//! charts of the same runs' JSON summaries.

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

/// Reads a `--json` summary (the x-y charts need one; an `.hgrm` has no
/// time series or size).
pub(crate) fn load_summary(path: &Path) -> Result<Summary> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut s: Summary = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a loadgen JSON summary (--json)", path.display()))?;
    if s.label.is_empty() {
        s.label = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    }
    Ok(s)
}

/// Latency over time: p50 (dotted), p99 (solid) and max (dashed) of each
/// run's intervals, on a log latency axis; x is seconds from the start of
/// the measured window.
pub fn over_time_files(paths: &[impl AsRef<Path>], title: &str) -> Result<String> {
    let mut series = Vec::new();
    for (i, p) in paths.iter().enumerate() {
        let s = load_summary(p.as_ref())?;
        if s.latency_over_time.is_empty() {
            bail!("{}: no latency_over_time in this summary (an older loadgen?)", p.as_ref().display());
        }
        let t = &s.latency_over_time;
        for (name, dash, f) in [
            ("p50", Dash::Dotted, (|p: &crate::stats::TimePoint| p.p50_us) as fn(&_) -> f64),
            ("p99", Dash::Solid, |p| p.p99_us),
            ("max", Dash::Dashed, |p| p.max_us),
        ] {
            series.push(XySeries {
                label: format!("{} {name}", s.label),
                points: t.iter().map(|p| (p.t_s, f(p))).collect(),
                color: i,
                dash,
            });
        }
    }
    let chart = XyChart {
        title,
        x_label: "seconds into the measured window",
        y_label: "latency (µs, log)",
        log_x: false,
        log_y: true,
        x_ticks: None,
    };
    Ok(chart.svg(&series))
}

/// Throughput by message size: one line per label, the median msg/s of
/// the runs of each size, both axes log.
pub fn by_size_files(paths: &[impl AsRef<Path>], title: &str) -> Result<String> {
    // label -> size -> rates, in the order labels first appear.
    type RatesBySize = Vec<(f64, Vec<f64>)>;
    let mut groups: Vec<(String, RatesBySize)> = Vec::new();
    for p in paths {
        let s = load_summary(p.as_ref())?;
        let size = s
            .config
            .get("size")
            .and_then(|v| v.as_f64())
            .with_context(|| format!("{}: no config.size", p.as_ref().display()))?;
        let gi = match groups.iter().position(|g| g.0 == s.label) {
            Some(i) => i,
            None => {
                groups.push((s.label.clone(), Vec::new()));
                groups.len() - 1
            }
        };
        let g = &mut groups[gi].1;
        match g.iter_mut().find(|(sz, _)| *sz == size) {
            Some((_, rates)) => rates.push(s.msgs_per_s),
            None => g.push((size, vec![s.msgs_per_s])),
        }
    }
    let mut sizes: Vec<f64> = Vec::new();
    let mut series = Vec::new();
    for (i, (label, mut g)) in groups.into_iter().enumerate() {
        g.sort_by(|a, b| a.0.total_cmp(&b.0));
        let points = g.into_iter().map(|(size, rates)| {
            if !sizes.contains(&size) {
                sizes.push(size);
            }
            (size, median(rates))
        });
        series.push(XySeries { label, points: points.collect(), color: i, dash: Dash::Solid });
    }
    sizes.sort_by(f64::total_cmp);
    let ticks = sizes.iter().map(|&b| (b, size_label(b))).collect();
    let chart = XyChart {
        title,
        x_label: "message size",
        y_label: "messages/s (log)",
        log_x: true,
        log_y: true,
        x_ticks: Some(ticks),
    };
    Ok(chart.svg(&series))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn size_label(b: f64) -> String {
    if b >= 1024.0 && b % 1024.0 == 0.0 {
        format!("{} KiB", b / 1024.0)
    } else {
        format!("{b} B")
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Dash {
    Solid,
    Dashed,
    Dotted,
}

/// One line of an x-y chart.
pub(crate) struct XySeries {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// Index into COLORS.
    pub color: usize,
    pub dash: Dash,
}

pub(crate) struct XyChart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub log_x: bool,
    pub log_y: bool,
    /// Ticks at these values with these labels (default: decades on a log
    /// axis, fifths on a linear one).
    pub x_ticks: Option<Vec<(f64, String)>>,
}

/// One axis: its range, its scale, and where its ticks go.
struct Scale {
    lo: f64,
    hi: f64,
    log: bool,
}

impl Scale {
    fn fit(values: impl Iterator<Item = f64>, log: bool) -> Scale {
        let (mut lo, mut hi) = (f64::MAX, f64::MIN);
        for v in values.filter(|v| v.is_finite() && (!log || *v > 0.0)) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if lo > hi {
            (lo, hi) = if log { (1.0, 10.0) } else { (0.0, 1.0) };
        }
        if log {
            let lo = 10f64.powf(lo.log10().floor());
            Scale { lo, hi: 10f64.powf(hi.max(lo * 10.0).log10().ceil()), log }
        } else {
            let lo = lo.min(0.0);
            let step = Scale::step(hi - lo);
            Scale { lo: (lo / step).floor() * step, hi: ((hi / step).ceil() * step).max(lo + step), log }
        }
    }

    /// A round tick step (1, 2 or 5 times a power of ten) that cuts
    /// `span` into 4 to 10 parts.
    fn step(span: f64) -> f64 {
        if span <= 0.0 || !span.is_finite() {
            return 1.0;
        }
        let mag = 10f64.powf((span / 10.0).log10().floor());
        [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| span / s <= 10.0).unwrap_or(10.0 * mag)
    }

    /// Where `v` falls, 0 at `lo` and 1 at `hi`.
    fn frac(&self, v: f64) -> f64 {
        if self.log {
            (v.max(self.lo).log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }

    fn ticks(&self) -> Vec<(f64, String)> {
        if self.log {
            let mut t = Vec::new();
            let mut v = self.lo;
            while v <= self.hi * 1.0001 {
                t.push((v, trim(v)));
                v *= 10.0;
            }
            t
        } else {
            let step = Scale::step(self.hi - self.lo);
            let n = ((self.hi - self.lo) / step).round() as i64;
            (0..=n).map(|i| self.lo + step * i as f64).map(|v| (v, trim(v))).collect()
        }
    }
}

impl XyChart<'_> {
    pub(crate) fn svg(&self, series: &[XySeries]) -> String {
        let (w, h) = (960.0, 600.0);
        let (left, right, top, bottom) = (90.0, 30.0, 50.0, 70.0);
        let (pw, ph) = (w - left - right, h - top - bottom);
        let xs = Scale::fit(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)), self.log_x);
        let ys = Scale::fit(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)), self.log_y);
        let px = |x: f64| left + pw * xs.frac(x);
        let py = |y: f64| top + ph * (1.0 - ys.frac(y));
        let mut o = String::new();
        let _ = writeln!(
            o,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(o, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
        let _ = writeln!(
            o,
            r#"<text x="{}" y="28" text-anchor="middle" font-size="16">{}</text>"#,
            w / 2.0,
            esc(self.title)
        );
        for (v, label) in self.x_ticks.clone().unwrap_or_else(|| xs.ticks()) {
            let x = px(v);
            let _ = writeln!(
                o,
                r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                top + ph,
                top + ph + 18.0,
                esc(&label)
            );
        }
        for (v, label) in ys.ticks() {
            let y = py(v);
            let _ = writeln!(
                o,
                r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"##,
                left + pw,
                left - 6.0,
                y + 4.0
            );
        }
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            left + pw / 2.0,
            h - 25.0,
            esc(self.x_label)
        );
        let _ = writeln!(
            o,
            r#"<text transform="translate(20 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            top + ph / 2.0,
            esc(self.y_label)
        );
        let _ = writeln!(o, r#"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#);
        for (i, s) in series.iter().enumerate() {
            let color = COLORS[s.color % COLORS.len()];
            let dash = match s.dash {
                Dash::Solid => "",
                Dash::Dashed => r#" stroke-dasharray="8 4""#,
                Dash::Dotted => r#" stroke-dasharray="2 3""#,
            };
            let pts: Vec<String> = s.points.iter().map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
            let _ = writeln!(
                o,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"/>"#,
                pts.join(" ")
            );
            if self.log_x {
                // Few points: mark each.
                for &(x, y) in &s.points {
                    let _ = writeln!(o, r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{color}"/>"#, px(x), py(y));
                }
            }
            let ly = top + 16.0 + 18.0 * i as f64;
            let _ = writeln!(
                o,
                r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
                left + 12.0,
                left + 36.0,
                left + 42.0,
                ly + 4.0,
                esc(&s.label)
            );
        }
        o.push_str("</svg>\n");
        o
    }
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
#[path = "plot_tests.rs"]
mod tests;
