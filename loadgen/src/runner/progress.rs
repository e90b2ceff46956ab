//! The run's progress: the workers hand their interval histograms over on
//! a 200 ms grid, and the main thread collects them into the
//! latency-over-time and per-second series and prints a progress line.

use super::{Shared, Window, WorkerStats};
use crate::header::now_ns;
use crate::stats;
use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::io::{IsTerminal, Write};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Hands the worker's interval histogram to the progress printer every
/// 200 ms, until `done`.
pub(super) async fn hand_over_intervals(
    wi: usize,
    stats: Rc<RefCell<WorkerStats>>,
    shared: Arc<Shared>,
    done: Rc<std::cell::Cell<bool>>,
) {
    // On the collector's 200 ms grid, a little ahead of it, so that what
    // was received in a second is counted in that second.
    let win = Window::new(shared.t0.load(Relaxed), &shared.w);
    while !done.get() {
        let now = now_ns();
        let at = next_tick(win.start, now + HAND_OVER_LEAD_NS).saturating_sub(HAND_OVER_LEAD_NS);
        glommio::timer::sleep(Duration::from_nanos(at.saturating_sub(now).max(1))).await;
        let mut st = stats.borrow_mut();
        if let Ok(mut h) = shared.interval[wi].lock() {
            let _ = h.add(&st.interval);
        }
        if let Ok(mut h) = shared.confirm_interval[wi].lock() {
            let _ = h.add(&st.confirm_interval);
        }
        st.interval.reset();
        st.confirm_interval.reset();
    }
}

/// The collector's tick (`progress_loop`), and how long before each tick
/// the workers hand their interval histograms over.
const TICK_NS: u64 = 200_000_000;
const HAND_OVER_LEAD_NS: u64 = 20_000_000;

/// The first point of the `TICK_NS` grid through `origin` after `now`
/// (the grid runs before the origin too: the warmup).
fn next_tick(origin: u64, now: u64) -> u64 {
    if now < origin {
        origin - (origin - now - 1) / TICK_NS * TICK_NS
    } else {
        origin + ((now - origin) / TICK_NS + 1) * TICK_NS
    }
}

/// Takes (and empties) the workers' interval histograms into `into`.
fn collect(from: &[Mutex<Histogram<u64>>], into: &mut Histogram<u64>) {
    into.reset();
    for m in from {
        if let Ok(mut m) = m.lock() {
            let _ = into.add(&*m);
            m.reset();
        }
    }
}

/// The run's counters now, for the per-second series.
fn counts(shared: &Shared) -> crate::series::Counts {
    crate::series::Counts {
        sent: shared.sent.load(Relaxed),
        received: shared.received.load(Relaxed),
        expected: shared.expected.load(Relaxed),
    }
}

/// Collects the workers' interval histograms every 200 ms (as often as
/// they hand them over) into the latency-over-time series and the
/// per-second series, and prints a progress line once a second. The
/// ticks keep to a 200 ms grid through the window's start (the workers
/// hand over just before each), so that each second of the per-second
/// series closes on time with what was received in it.
pub(super) fn progress_loop(
    shared: &Shared,
    win: Window,
    workers: usize,
) -> (Vec<stats::TimePoint>, Vec<crate::series::SecondPoint>) {
    let tty = shared.w.progress && std::io::stderr().is_terminal();
    let mut last = (now_ns(), 0u64, 0u64);
    let mut printed = false;
    let mut points = Vec::new();
    let mut per_second = crate::series::PerSecond::new(win.t0, win.start);
    let mut second = stats::new_histogram();
    let mut interval = stats::new_histogram();
    let mut confirms = stats::new_histogram();
    while shared.workers_done.load(Relaxed) < workers {
        let now = now_ns();
        // The grid through the window's start, on which the seconds of
        // the per-second series end too.
        let next = next_tick(win.start, now);
        std::thread::sleep(Duration::from_nanos(next.saturating_sub(now).max(1)));
        let now = now_ns();
        shared.stalls.check(&shared.beats, now);
        collect(&shared.interval, &mut interval);
        collect(&shared.confirm_interval, &mut confirms);
        let t_s = (now as f64 - win.start as f64) / 1e9;
        points.extend(stats::TimePoint::from_hist(t_s, &interval));
        per_second.add(&interval, &confirms);
        per_second.tick(now, counts(shared));
        let _ = second.add(&interval);
        if now < last.0 + 1_000_000_000 {
            continue;
        }
        let h = &second;
        let (sent, recv) = (shared.sent.load(Relaxed), shared.received.load(Relaxed));
        let dt = (now - last.0) as f64 / 1e9;
        let phase = if now < win.start {
            "warmup"
        } else if now < win.end {
            "run"
        } else {
            "drain"
        };
        if tty {
            let t = (now as f64 - win.t0 as f64) / 1e9;
            let p99 =
                if h.is_empty() { "-".to_string() } else { format!("{:.0}us", h.value_at_quantile(0.99) as f64 / 1e3) };
            let mut e = std::io::stderr().lock();
            let _ = write!(
                e,
                "\r\x1b[K{phase:>6} {t:5.1}s  pub {:>9.0}/s  recv {:>9.0}/s  sent {sent}  confirmed {}  received {recv}  p99 {p99}",
                (sent - last.1) as f64 / dt,
                (recv - last.2) as f64 / dt,
                shared.confirmed.load(Relaxed),
            );
            let _ = e.flush();
            printed = true;
        }
        second.reset();
        last = (now, sent, recv);
    }
    // The intervals the workers handed over after the last collection.
    collect(&shared.interval, &mut interval);
    collect(&shared.confirm_interval, &mut confirms);
    let now = now_ns();
    points.extend(stats::TimePoint::from_hist((now as f64 - win.start as f64) / 1e9, &interval));
    per_second.add(&interval, &confirms);
    per_second.finish(now, counts(shared));
    if printed {
        eprintln!();
    }
    (points, per_second.points)
}

#[cfg(test)]
mod tests {
    use super::{next_tick, TICK_NS};

    #[test]
    fn ticks_keep_to_a_grid_through_the_window_start() {
        let start = 10 * TICK_NS;
        assert_eq!(next_tick(start, start), start + TICK_NS);
        assert_eq!(next_tick(start, start + 1), start + TICK_NS);
        assert_eq!(next_tick(start, start - 1), start);
        assert_eq!(next_tick(start, start - TICK_NS), start);
        assert_eq!(next_tick(start, start - TICK_NS - 1), start - TICK_NS);
        assert_eq!(next_tick(start, 0), TICK_NS, "strictly after now");
        // Five ticks make a second of the per-second series.
        assert_eq!(next_tick(start, start + 4 * TICK_NS + 7), start + 5 * TICK_NS);
    }
}
