//! A producer's side of a run: its send loop (at full speed or on a
//! schedule), reconnecting, and the sink that counts its confirms.

use super::{error_kind, note_error, wait_for_start, wall, Shared, Window, WorkerStats, BACKOFF_MAX, BACKOFF_MIN};
use crate::amqp::ConfirmSink;
use crate::header::{now_ns, Header, HEADER_LEN};
use crate::schedule::Schedule;
use crate::stats;
use anyhow::Result;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

pub(super) async fn run_producer(
    p: usize,
    prod: crate::driver::Producer,
    shared: Arc<Shared>,
    stats: Rc<RefCell<WorkerStats>>,
) -> Result<()> {
    let w = &shared.w;
    let t0 = wait_for_start(&shared).await?;
    let win = Window::new(t0, w);
    let sched = w.rate.as_ref().map(|r| Schedule::with_profile(t0, w.warmup_s, r, w.producers, p));
    let total = sched.as_ref().map(|s| s.count_before(win.end));
    let batch = if w.confirm { w.batch.min(w.max_inflight) } else { w.batch }.max(1);
    let per_message = w.expected_per_message(p);
    let mut msgs: Vec<([u8; HEADER_LEN], u64)> = Vec::with_capacity(batch);
    let mut seq = 0u64;
    let header = |i: u64, t: u64| {
        let h = Header { producer: p as u32, seq: i, intended_ns: t };
        (h.to_bytes(), t)
    };
    let mut prod = Some(prod);
    let result = async {
        while !shared.abort.load(Relaxed) {
            if prod.is_none() {
                // --reconnect: the publishes due meanwhile go out once it
                // is back, late (their latency counts from the schedule).
                prod = reconnect_producer(p, &shared, &stats, win.end).await;
            }
            let Some(pr) = prod.as_mut() else { break };
            let now = now_ns();
            msgs.clear();
            match (&sched, total) {
                (Some(s), Some(total)) => {
                    if seq >= total {
                        break;
                    }
                    let due = s.due(now).min(total);
                    if due <= seq {
                        // Not less than MIN_SLEEP: a sleep per message at
                        // 100 k/s would keep this core busy with timers.
                        // The wait counts in the latency (measured from
                        // the intended send time).
                        let wait = s.intended(seq).saturating_sub(now).max(MIN_SLEEP_NS);
                        glommio::timer::sleep(Duration::from_nanos(wait)).await;
                        continue;
                    }
                    if win.contains(s.intended(seq)) {
                        stats::record(&mut stats.borrow_mut().send_lag, now.saturating_sub(s.intended(seq)));
                    }
                    let n = (due - seq).min(batch as u64);
                    msgs.extend((seq..seq + n).map(|i| header(i, s.intended(i))));
                }
                _ => {
                    if now >= win.end {
                        break;
                    }
                    msgs.extend((seq..seq + batch as u64).map(|i| header(i, now)));
                }
            }
            let in_window = msgs.iter().filter(|m| win.contains(m.1)).count() as u64;
            if let Err(e) = pr.publish(&msgs).await {
                if !w.reconnect {
                    return Err(e);
                }
                // Part of the batch may have reached the broker: it counts
                // as sent, and none of it will be confirmed.
                note_error(&stats, &format!("producer {p}"), &e);
                if let Some(old) = prod.take() {
                    // Closed, not dropped: a dropped client keeps its
                    // connection open.
                    let closing = async { old.finish(Duration::from_millis(500)).await.is_ok() };
                    let late = async {
                        glommio::timer::sleep(Duration::from_secs(3)).await;
                        false
                    };
                    if !futures_lite::future::or(closing, late).await {
                        eprintln!("[{:.3}] producer {p}: the failed connection did not close cleanly", wall());
                    }
                }
            }
            let n = msgs.len() as u64;
            seq += n;
            shared.sent.fetch_add(n, Relaxed);
            shared.expected.fetch_add(n * per_message, Relaxed);
            stats.borrow_mut().window_sent += in_window;
            // A write the kernel takes at once never returns Pending, so a
            // max-rate producer would keep consumers on this worker from
            // running at all: give way once the time slice is used up.
            glommio::yield_if_needed().await;
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    stats.borrow_mut().sent_by_producer.push((p, seq));
    let fin = match prod {
        Some(pr) => pr.finish(Duration::from_secs_f64(w.drain_s.max(1.0))).await,
        None => Ok(()),
    };
    shared.producers_done.fetch_add(1, Relaxed);
    result.and(fin)
}

/// The shortest sleep of a fixed-rate producer waiting for its next
/// message to be due.
pub(crate) const MIN_SLEEP_NS: u64 = 100_000;

/// Connects producer `p` again, with backoff, until it works or `until`
/// (ns) passes.
async fn reconnect_producer(
    p: usize,
    shared: &Arc<Shared>,
    stats: &Rc<RefCell<WorkerStats>>,
    until: u64,
) -> Option<crate::driver::Producer> {
    let w = &shared.w;
    let mut backoff = BACKOFF_MIN;
    while !shared.abort.load(Relaxed) && now_ns() < until {
        glommio::timer::sleep(backoff).await;
        let sink = confirm_sink(p, stats.clone(), shared.clone());
        match shared.target.producer(&w.route(p), &w.spec(), sink).await {
            Ok(pr) => {
                stats.borrow_mut().reconnects += 1;
                eprintln!("[{:.3}] producer {p}: connected again", wall());
                return Some(pr);
            }
            Err(e) => {
                note_error(stats, &format!("producer {p} reconnecting"), &e);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    None
}

/// Counts producer `p`'s confirms and nacks, and records the latency of
/// the confirms of messages meant to be sent inside the window.
pub(super) fn confirm_sink(p: usize, st: Rc<RefCell<WorkerStats>>, sh: Arc<Shared>) -> ConfirmSink {
    let per_message = sh.w.expected_per_message(p);
    let mut win: Option<Window> = None;
    Box::new(move |intended, seq, outcome| {
        let now = now_ns();
        let mut st = st.borrow_mut();
        if let Err(why) = outcome {
            st.nacked += 1;
            st.nacked_expected += per_message;
            *st.errors.entry(error_kind("publish not confirmed", &why)).or_default() += 1;
            return;
        }
        st.confirmed += 1;
        if let Some(b) = st.confirmed_seqs.get_mut(p) {
            b.insert(seq);
        }
        sh.confirmed.fetch_add(1, Relaxed);
        let win = *win.get_or_insert_with(|| Window::new(sh.t0.load(Relaxed), &sh.w));
        let lat = now.saturating_sub(intended);
        stats::record(&mut st.confirm_interval, lat);
        if win.contains(intended) {
            stats::record(&mut st.confirm_latency, lat);
        }
    })
}
