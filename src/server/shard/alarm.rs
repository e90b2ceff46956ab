//! A shard's side of the resource alarms (`server/alarm.rs`): the bytes
//! it accounts for, published to its slot, and the wait of connections
//! blocked while an alarm is in effect.
//!
//! Accounted bytes, per shard:
//! - each queue's ready entries held in memory, unacked entries, one
//!   `Message` per ready or unacked message in memory (its bookkeeping)
//!   and 16 bytes per spilled one; kept current by every settle
//!   (`account_queue`, a delta per queue);
//! - each connection's outbox and read buffer (`ConnSink::held_bytes`),
//!   summed by the tick every `CHECK_PERIOD`.
//!
//! Not counted: forwarded requests waiting on the mesh (bounded by
//! `mesh_pending_max`), the routing table, and the allocator's own
//! slack; the RSS cross-check in
//! the monitor is there to show what these add up to.

use super::super::alarm::{Alarms, CHECK_PERIOD, DECIDE_PERIOD};
use super::super::queue::Queue;
use super::super::types::Message;
use super::Shard;
use crate::rt::Notify;
use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

/// What one message costs besides its entry: its place in a queue.
const MESSAGE_OVERHEAD_BYTES: u64 = std::mem::size_of::<Message>() as u64;

pub struct ShardAlarm {
    pub shared: Arc<Alarms>,
    /// This shard's queues' accounted bytes (each queue's share as last
    /// counted: `Queue::alarm_accounted`).
    queue_bytes: Cell<u64>,
    /// Its connections' buffers, as the last tick summed them.
    conn_bytes: Cell<u64>,
    /// Signalled by every tick that finds no alarm in effect.
    clear: Notify,
    /// Connections waiting for the alarms to clear.
    blocked: Cell<u64>,
}

impl ShardAlarm {
    pub fn new(shared: Arc<Alarms>) -> Self {
        Self {
            shared,
            queue_bytes: Cell::new(0),
            conn_bytes: Cell::new(0),
            clear: Notify::default(),
            blocked: Cell::new(0),
        }
    }
}

/// What a spilled message costs: its record in the queue's cold part
/// (`queue/cold.rs`); its entry is on disk.
const SPILLED_MESSAGE_BYTES: u64 = 16;

/// A queue's accounted bytes: see the module comment. Spilled messages
/// count at their cold cost, or a backlog on disk (100 million messages
/// hold 1.6 GB) would raise the alarm at five times its real size.
fn queue_bytes(q: &Queue) -> u64 {
    // A stream's deliveries share its stored entries: counted once.
    if q.is_stream() {
        // Entries in memory (its window, its consumers' read-ahead), and
        // each message's place: what is behind the window is on disk.
        return q.mem_bytes() + q.stream_len() as u64 * crate::server::queue::STREAM_STORED_BYTES;
    }
    let (unacked, unacked_bytes) = q.unacked_totals();
    let spilled = q.spilled_len() as u64;
    let resident = (q.ready_len() as u64).saturating_sub(spilled) + unacked;
    q.mem_bytes() + unacked_bytes + resident * MESSAGE_OVERHEAD_BYTES + spilled * SPILLED_MESSAGE_BYTES
}

impl Shard {
    /// Counts `q`'s bytes into the shard's total (after every settle) and
    /// publishes the total: one relaxed store to this shard's own slot.
    pub(super) fn account_queue(&self, q: &mut Queue) {
        let now = queue_bytes(q);
        let a = &self.alarm;
        a.queue_bytes.set((a.queue_bytes.get() + now).saturating_sub(q.alarm_accounted));
        q.alarm_accounted = now;
        self.publish_accounted();
    }

    /// A queue went away: its bytes leave the total.
    pub(super) fn forget_queue_bytes(&self, q: &Queue) {
        let a = &self.alarm;
        a.queue_bytes.set(a.queue_bytes.get().saturating_sub(q.alarm_accounted));
        self.publish_accounted();
    }

    fn publish_accounted(&self) {
        let a = &self.alarm;
        a.shared.set_shard_bytes(self.id, a.queue_bytes.get() + a.conn_bytes.get());
    }

    /// This shard's accounted bytes, as last published.
    pub fn accounted_bytes(&self) -> u64 {
        self.alarm.queue_bytes.get() + self.alarm.conn_bytes.get()
    }

    /// Connections on this shard blocked by an alarm right now.
    pub fn blocked_connections(&self) -> u64 {
        self.alarm.blocked.get()
    }

    pub fn alarms(&self) -> &Arc<Alarms> {
        &self.alarm.shared
    }

    /// Whether a connection that just published must stop being read.
    #[inline]
    pub fn alarm_in_effect(&self) -> bool {
        self.alarm.shared.active() != 0
    }

    /// Waits until no alarm is in effect, or `stop` (the connection is
    /// closing) finishes first.
    pub async fn wait_alarm_clear(&self, stop: impl Future<Output = ()>) {
        let a = &self.alarm;
        a.blocked.set(a.blocked.get() + 1);
        let clear = async {
            loop {
                let n = a.clear.notified();
                if a.shared.active() == 0 {
                    return;
                }
                n.await;
            }
        };
        futures_lite::future::or(clear, stop).await;
        a.blocked.set(a.blocked.get().saturating_sub(1));
    }

    /// The shard's alarm task: every `DECIDE_PERIOD` it wakes the blocked
    /// connections when no alarm is in effect (every time, so an alarm
    /// raised and cleared in between loses no wake-up); every
    /// `CHECK_PERIOD` it sums its connections' buffers and publishes its
    /// accounted bytes.
    pub async fn run_alarm_tick(self: Rc<Self>) {
        let mut next_sum = std::time::Instant::now();
        loop {
            let now = std::time::Instant::now();
            if now >= next_sum {
                let held = self.conns.held_bytes();
                self.alarm.conn_bytes.set(held);
                self.publish_accounted();
                next_sum = now + CHECK_PERIOD;
            }
            if !self.alarm_in_effect() && self.alarm.blocked.get() > 0 {
                self.alarm.clear.notify();
            }
            // Publishers on other nodes paused by the alarm (`pause.rs`).
            if !self.alarm_in_effect() && self.publish_pause.has_remote() {
                self.publish_pause.notify_resume();
            }
            glommio::timer::sleep(DECIDE_PERIOD).await;
        }
    }
}
