// Live line charts on a <canvas>: a fixed window of samples per series,
// drawn again on each poll. No library.
"use strict";

class LineChart {
  /** `series`: [{key, label, color}]; `points`: samples kept; `id`: the
   *  canvas's. */
  constructor(title, series, points, id) {
    this.series = series;
    this.points = points;
    this.samples = [];
    this.canvas = el("canvas", { width: 520, height: 180, id });
    this.legend = el("div", { class: "legend" },
      series.map((s) => {
        const swatch = el("i");
        swatch.style.background = s.color; // CSSOM, which the CSP allows (a style attribute it would not)
        return el("span", {}, swatch, s.label);
      }));
    this.node = el("div", { class: "chart card" }, el("h3", {}, title), this.canvas, this.legend);
  }

  /** Adds one sample ({key: value}) and redraws. */
  push(sample) {
    this.samples.push(sample);
    if (this.samples.length > this.points) this.samples.shift();
    // How many it holds (the browser test reads it: the chart moves).
    this.canvas.dataset.samples = String(this.samples.length);
    this.draw();
  }

  draw() {
    const c = this.canvas, g = c.getContext("2d");
    const w = c.width, h = c.height, left = 56, bottom = 18, top = 8;
    g.clearRect(0, 0, w, h);
    let max = 0;
    for (const s of this.samples) for (const k of this.series) max = Math.max(max, s[k.key] || 0);
    max = niceCeil(max);
    g.strokeStyle = "#e4e6ea";
    g.fillStyle = "#777";
    g.font = "11px system-ui, sans-serif";
    for (let i = 0; i <= 4; i++) {
      const y = top + (h - top - bottom) * (1 - i / 4);
      g.beginPath(); g.moveTo(left, y); g.lineTo(w, y); g.stroke();
      g.fillText(fmtAxis(max * i / 4), 4, y + 4);
    }
    const n = this.points;
    const x = (i) => left + (w - left) * (i + n - this.samples.length) / (n - 1);
    const y = (v) => top + (h - top - bottom) * (1 - (max ? v / max : 0));
    for (const k of this.series) {
      g.strokeStyle = k.color;
      g.lineWidth = 2;
      g.beginPath();
      this.samples.forEach((s, i) => {
        const v = s[k.key] || 0;
        if (i === 0) g.moveTo(x(i), y(v)); else g.lineTo(x(i), y(v));
      });
      g.stroke();
    }
    g.lineWidth = 1;
  }
}

/** The smallest of 1, 2, 5 times a power of ten at or above `v`. */
function niceCeil(v) {
  if (v <= 0) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmtAxis(v) {
  if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (v >= 1e3) return (v / 1e3).toFixed(1) + "k";
  return v % 1 ? v.toFixed(1) : String(v);
}

/** Per-second rates from two readings of cumulative counters. */
class Rates {
  constructor() { this.last = new Map(); }

  /** The rates of `counters` ({name: total}) for `id` since its last call. */
  of(id, counters, now) {
    const prev = this.last.get(id);
    this.last.set(id, { t: now, c: counters });
    if (!prev || now <= prev.t) return null;
    const dt = (now - prev.t) / 1000, out = {};
    for (const [k, v] of Object.entries(counters)) out[k] = Math.max(0, ((v || 0) - (prev.c[k] || 0)) / dt);
    return out;
  }
}
