//! The shard's clock and its one timer: a min-heap of (deadline, queue),
//! so only queues with a known next deadline (message TTL at the head,
//! `x-expires`) are ever looked at, and one task that sleeps until the
//! earliest of them.

use super::super::queue::Queue;
use super::Shard;
use crate::rt::notify::Notified;
use crate::rt::Notify;
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The clock of message and queue deadlines, and the deadlines armed on
/// it. One part of `Shard`.
pub struct Timers {
    epoch: Instant,
    /// (deadline, queue) for queues with something due.
    heap: RefCell<BinaryHeap<Reverse<(u64, String)>>>,
    /// Wakes the timer task when an earlier deadline is armed.
    kick: Notify,
}

impl Default for Timers {
    fn default() -> Self {
        Self { epoch: Instant::now(), heap: RefCell::default(), kick: Notify::default() }
    }
}

impl Timers {
    /// Milliseconds since this shard started: the clock of message and
    /// queue deadlines (monotonic, shard-local).
    pub fn now_ms(&self) -> u64 {
        crate::protocol::wire::u64_of(self.epoch.elapsed().as_millis())
    }

    /// Arms the queue's next deadline, unless one as early is armed.
    pub(super) fn arm(&self, q: &mut Queue) {
        let Some(d) = q.next_deadline() else { return };
        if q.timer_at.is_some_and(|t| t <= d) {
            return;
        }
        q.timer_at = Some(d);
        let mut heap = self.heap.borrow_mut();
        let earliest = heap.peek().is_none_or(|Reverse((t, _))| d < *t);
        heap.push(Reverse((d, q.name.clone())));
        if earliest {
            self.kick.notify();
        }
    }

    /// The earliest deadline armed.
    fn next(&self) -> Option<u64> {
        self.heap.borrow().peek().map(|Reverse((t, _))| *t)
    }

    /// Takes the queues whose deadline is `now` or earlier, each once.
    fn take_due(&self, now: u64) -> Vec<String> {
        let mut due = Vec::new();
        let mut heap = self.heap.borrow_mut();
        while heap.peek().is_some_and(|Reverse((t, _))| *t <= now) {
            if let Some(Reverse((_, name))) = heap.pop() {
                due.push(name);
            }
        }
        due.sort_unstable();
        due.dedup();
        due
    }

    /// Resolves once an earlier deadline is armed after this call.
    fn kicked(&self) -> Notified<'_> {
        self.kick.notified()
    }
}

impl Shard {
    /// The shard's timer task: sleeps until the earliest queue deadline
    /// (or until an earlier one is armed), then settles the queues due.
    pub async fn run_timers(self: Rc<Self>) {
        loop {
            let kicked = self.timers.kicked();
            let next = self.timers.next();
            let now = self.timers.now_ms();
            match next {
                Some(t) if t <= now => {
                    self.fire_timers(now);
                    // More may be due at once (`dead_letter_batch_max`):
                    // serve the sockets first, and let dead letters bound
                    // for other shards leave before making more.
                    crate::rt::yield_to_reactor().await;
                    self.mesh.wait_for_space().await;
                }
                Some(t) => {
                    let sleep = glommio::timer::sleep(Duration::from_millis(t - now));
                    futures_lite::future::or(kicked, sleep).await;
                }
                None => kicked.await,
            }
        }
    }

    fn fire_timers(&self, now: u64) {
        for name in self.timers.take_due(now) {
            let mut queues = self.queues.borrow_mut();
            let Some(q) = queues.get_mut(&name) else { continue };
            q.timer_at = None;
            if q.unused_deadline().is_some_and(|d| d <= now) {
                tracing::debug!(queue = %name, "queue unused for its x-expires");
                self.remove_queue(&mut queues, &name);
                continue;
            }
            self.settle(q);
        }
        self.flush_dead_letters();
    }
}
