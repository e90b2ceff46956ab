//! The shard's side of streams larger than memory (`queue::stream_read`):
//! the reads from the log for stream consumers behind their stream's
//! in-memory window. A consumer asks after a dispatch; a reader task takes
//! the asks in order and runs at most `STREAM_READS_MAX` reads at once
//! (each at most `stream_read_ahead_bytes`), so many slow consumers at
//! different offsets hold at most their read-ahead each, and the disk
//! sees a bounded queue. A read's entries go to its consumer's read-ahead
//! and the stream is dispatched; a failed read is retried a second later.

use super::durable::Durable;
use super::Shard;
use crate::rt::Notify;
use crate::server::queue::Queue;
use crate::server::types::ConnRef;
use crate::storage::Loc;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

/// Reads from the log in flight at once per shard, for all its streams.
const STREAM_READS_MAX: usize = 8;

#[derive(Default)]
pub struct StreamReads {
    /// Consumers waiting for a read: (stream, connection, consumer id).
    pending: RefCell<VecDeque<(String, ConnRef, u32)>>,
    in_flight: Cell<usize>,
    kick: Notify,
}

impl Shard {
    /// After a dispatch of stream `q`: the reads its consumers asked for
    /// are queued (each consumer once).
    pub(super) fn stream_reads_due(&self, q: &mut Queue) {
        let wants = q.take_stream_reads();
        if wants.is_empty() {
            return;
        }
        let mut pending = self.stream_reads.pending.borrow_mut();
        for (owner, id) in wants {
            if !pending.iter().any(|(n, o, i)| *o == owner && *i == id && *n == q.name) {
                pending.push_back((q.name.clone(), owner, id));
            }
        }
        self.stream_reads.kick.notify();
    }

    /// The reader task: starts the queued reads, `STREAM_READS_MAX` at once.
    pub async fn run_stream_reader(self: Rc<Self>) {
        let Some(d) = self.durable() else { return };
        let r = &self.stream_reads;
        loop {
            let n = r.kick.notified();
            let next = match r.in_flight.get() < STREAM_READS_MAX {
                true => r.pending.borrow_mut().pop_front(),
                false => None,
            };
            let Some((name, owner, id)) = next else {
                n.await;
                continue;
            };
            let ra = self.config.stream_read_ahead_bytes;
            let plan = self.queues.borrow_mut().get_mut(&name).and_then(|q| q.stream_read_plan(owner, id, ra));
            let log_id = d.ids.borrow().get(&name).copied();
            let (Some(want), Some(log_id)) = (plan, log_id) else { continue };
            r.in_flight.set(r.in_flight.get() + 1);
            glommio::spawn_local(self.clone().read_stream(d.clone(), name, (owner, id), log_id, want)).detach();
        }
    }

    async fn read_stream(
        self: Rc<Self>,
        d: Rc<Durable>,
        name: String,
        (owner, id): (ConnRef, u32),
        log_id: u32,
        want: Vec<(u64, Loc)>,
    ) {
        let got = match d.log.read_entries(log_id, &want).await {
            Ok(entries) => Some(entries),
            Err(e) => {
                // Moved by compaction meanwhile, or a failing disk: the
                // consumer asks again at its next dispatch, a second on.
                tracing::error!(shard = self.id, queue = %name, error = %e, "reading a stream from the log failed");
                glommio::timer::sleep(Duration::from_secs(1)).await;
                None
            }
        };
        let r = &self.stream_reads;
        r.in_flight.set(r.in_flight.get().saturating_sub(1));
        r.kick.notify();
        if let Some(q) = self.queues.borrow_mut().get_mut(&name) {
            q.stream_fill(owner, id, &want, got);
            self.settle(q);
        }
    }
}
