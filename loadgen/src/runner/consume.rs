//! A consumer's side of a run: the sink that checks and times each
//! delivery, and the loop that subscribes again after a failure.

use super::{note_error, wall, Shared, Window, WorkerStats, BACKOFF_MAX, BACKOFF_MIN};
use crate::amqp::Sink;
use crate::checker::OrderTrack;
use crate::driver::Consumer;
use crate::header::{now_ns, Header};
use crate::stats;
use anyhow::Result;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

pub(super) struct ConsumerSink {
    pub(super) stats: Rc<RefCell<WorkerStats>>,
    pub(super) shared: Arc<Shared>,
    /// The queue this consumer reads.
    pub(super) queue: usize,
    pub(super) order: OrderTrack,
    pub(super) window: Option<Window>,
    pub(super) new: u64,
    /// When the current subscription last got a delivery, or began (ns).
    pub(super) last_any: u64,
}

impl ConsumerSink {
    fn window(&mut self) -> Option<Window> {
        if self.window.is_none() {
            let t0 = self.shared.t0.load(Relaxed);
            if t0 != 0 {
                self.window = Some(Window::new(t0, &self.shared.w));
            }
        }
        self.window
    }
}

impl Sink for ConsumerSink {
    fn deliver(&mut self, prefix: &[u8], now: u64) {
        self.last_any = now;
        let win = self.window();
        let mut st = self.stats.borrow_mut();
        let Some(h) = Header::read(prefix) else {
            st.checker.malformed += 1;
            return;
        };
        let Some(win) = win.filter(|w| h.intended_ns >= w.t0) else {
            st.checker.foreign += 1;
            return;
        };
        let seen = st.checker.record(&mut self.order, self.queue, h.producer, h.seq);
        if seen == crate::checker::Seen::Duplicate {
            return;
        }
        self.new += 1;
        let lat = now.saturating_sub(h.intended_ns);
        stats::record(&mut st.interval, lat);
        if win.contains(h.intended_ns) {
            stats::record(&mut st.latency, lat);
        }
        if win.contains(now) {
            st.window_received += 1;
        }
    }

    fn flush(&mut self) {
        if self.new > 0 {
            self.shared.received.fetch_add(self.new, Relaxed);
            self.shared.last_new.fetch_max(now_ns(), Relaxed);
            self.new = 0;
        }
    }

    fn should_stop(&mut self, now: u64) -> bool {
        if self.shared.abort.load(Relaxed) {
            return true;
        }
        let Some(win) = self.window() else {
            return false;
        };
        let s = &self.shared;
        if now < win.end {
            return false;
        }
        if now >= win.end + (s.w.drain_s * 1e9) as u64 {
            return true;
        }
        let producers_done = s.producers_done.load(Relaxed) == s.w.producers;
        if let (Some(idle), true) = (s.w.drain_idle_s, producers_done) {
            let idle = (idle * 1e9) as u64;
            if now >= win.end + idle && now.saturating_sub(s.last_new.load(Relaxed)) >= idle {
                return true;
            }
        }
        s.w.producers == 0 || (producers_done && s.received.load(Relaxed) >= s.expected.load(Relaxed))
    }

    fn stale(&mut self, now: u64) -> Option<String> {
        let idle = self.shared.w.resubscribe_idle_s?;
        let silent = now.saturating_sub(self.last_any);
        (self.shared.w.reconnect && silent >= (idle * 1e9) as u64)
            .then(|| format!("no delivery for {idle} s: subscribing again"))
    }
}

/// Runs a consumer until the run ends; with `--reconnect`, a failed
/// connection or subscription is made again (with backoff) and the same
/// sink (checker and order tracking) goes on.
pub(super) async fn consume(mut cons: Option<Consumer>, sink: &mut ConsumerSink) -> Result<()> {
    let shared = sink.shared.clone();
    let queue = &shared.w.queues[sink.queue];
    let what = format!("consumer of {queue}");
    let mut backoff = BACKOFF_MIN;
    loop {
        let c = match cons.take() {
            Some(c) => c,
            None => {
                if sink.should_stop(now_ns()) {
                    return Ok(());
                }
                glommio::timer::sleep(backoff).await;
                match shared.target.consumer(queue, &shared.w.spec()).await {
                    Ok(c) => {
                        sink.stats.borrow_mut().reconnects += 1;
                        sink.last_any = now_ns();
                        eprintln!("[{:.3}] {what}: subscribed again", wall());
                        backoff = BACKOFF_MIN;
                        c
                    }
                    Err(e) => {
                        note_error(&sink.stats, &format!("{what} reconnecting"), &e);
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        continue;
                    }
                }
            }
        };
        match c.run(&mut *sink).await {
            Ok(()) => return Ok(()),
            Err(e) if shared.w.reconnect => {
                sink.flush();
                note_error(&sink.stats, &what, &e);
            }
            Err(e) => return Err(e),
        }
    }
}
