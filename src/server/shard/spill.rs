//! The shard's memory budget for ready message entries
//! (`memory_budget_bytes`): past it, newly published persistent messages
//! of durable queues keep only their record's location in the log, and a
//! per-shard fetch task reads them back (DMA reads, a window of upcoming
//! messages at once) before they are delivered.
//!
//! Transient messages, and every message of a transient queue, have no
//! location: they count against the budget but always stay in memory; so
//! do the messages of a priority queue (`Queue::can_spill`).

use super::super::queue::Queue;
use super::durable::Durable;
use super::Shard;
use crate::rt::Notify;
use crate::storage::{Loc, Moved};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::time::Duration;

/// Read-ahead: bytes and messages kept in memory ahead of the consumers
/// of a queue with spilled messages (a window is read when half is left).
const WINDOW_BYTES: u64 = 2 << 20;
const WINDOW_MSGS: usize = 8192;
// A window is read from a queue's hot part (`Ready::hot`), which then
// must hold at least one whole window ahead of its cold part.
const _: () = assert!(WINDOW_MSGS < super::super::queue::HOT_LOW);

/// A `get` that found its queue's head on disk, retried after the fetch.
pub(super) struct PendingGet {
    pub from: super::ConnRef,
    pub request_id: u64,
    pub consumer_id: u32,
    pub no_ack: bool,
}

#[derive(Default)]
pub struct Spill {
    /// In-memory bytes of ready entries, summed over this shard's queues
    /// (each queue's share as last counted: `SpillState::accounted`).
    resident: Cell<u64>,
    /// Queues waiting for a read-back, each once.
    wanted: RefCell<VecDeque<String>>,
    queued: RefCell<HashSet<String>>,
    /// Per queue: read the next window once the head passes this seq.
    marks: RefCell<HashMap<String, u64>>,
    gets: RefCell<HashMap<String, Vec<PendingGet>>>,
    kick: Notify,
}

impl Shard {
    /// Counts `q`'s in-memory bytes into the shard's total, and asks for a
    /// read-back when its consumers are about to reach spilled messages,
    /// or when a spilled head is to be dead-lettered.
    pub(super) fn after_dispatch(&self, q: &mut Queue) {
        let now = q.mem_bytes();
        let r = &self.spill.resident;
        r.set((r.get() + now).saturating_sub(q.spill.accounted));
        q.spill.accounted = now;
        if q.spilled_len() == 0 {
            return;
        }
        if q.fetch_blocked() {
            return self.want_fetch(&q.name);
        }
        if q.consumer_count() == 0 {
            return;
        }
        let due = q.head_spilled()
            || match (self.spill.marks.borrow().get(&q.name), q.front_seq()) {
                (Some(&mark), Some(front)) => front >= mark,
                _ => true,
            };
        if due {
            self.want_fetch(&q.name);
        }
    }

    /// A queue went away: its bytes leave the total.
    pub(super) fn forget_resident(&self, q: &Queue) {
        let r = &self.spill.resident;
        r.set(r.get().saturating_sub(q.spill.accounted));
        self.spill.marks.borrow_mut().remove(&q.name);
    }

    pub fn resident_bytes(&self) -> u64 {
        self.spill.resident.get()
    }

    fn want_fetch(&self, name: &str) {
        if self.spill.queued.borrow_mut().insert(name.to_owned()) {
            self.spill.wanted.borrow_mut().push_back(name.to_owned());
            self.spill.kick.notify();
        }
    }

    /// After a publish into `q` (not yet counted): while the shard is over
    /// its budget, the newest of `locs` keep only their location.
    pub(super) fn spill_over_budget(&self, q: &mut Queue, locs: &[(u64, Loc)]) {
        if locs.is_empty() || !q.can_spill() {
            return;
        }
        let budget = self.config.memory_budget_bytes;
        let mut resident = (self.spill.resident.get() + q.mem_bytes()).saturating_sub(q.spill.accounted);
        for &(seq, loc) in locs.iter().rev() {
            if resident <= budget {
                break;
            }
            if q.spill(seq, loc) {
                resident = resident.saturating_sub(u64::from(loc.len));
            }
        }
    }

    /// A `get` on a queue whose head is spilled: answered after the read.
    pub(super) fn get_after_fetch(&self, queue: &str, g: PendingGet) {
        self.spill.gets.borrow_mut().entry(queue.to_owned()).or_default().push(g);
        self.want_fetch(queue);
    }

    /// Compaction moved records: spilled messages point to the copies.
    pub(super) fn relocate(&self, d: &Durable, moved: Vec<Moved>) {
        if moved.is_empty() {
            return;
        }
        let names: HashMap<u32, String> = d.ids.borrow().iter().map(|(n, id)| (*id, n.clone())).collect();
        let mut queues = self.queues.borrow_mut();
        for m in moved {
            let (Some(loc), Some(name)) = (m.loc, names.get(&m.queue)) else { continue };
            if let Some(q) = queues.get_mut(name) {
                q.relocate(m.seq, loc);
            }
        }
    }

    /// The read-back loop: takes a queue that asked, reads its next window
    /// of spilled entries, puts them back, dispatches.
    pub async fn run_fetcher(self: Rc<Self>) {
        let Some(d) = self.durable() else { return };
        loop {
            let n = self.spill.kick.notified();
            let Some(name) = self.spill.wanted.borrow_mut().pop_front() else {
                n.await;
                continue;
            };
            let want = self.queues.borrow().get(&name).map(|q| q.fetch_window(WINDOW_BYTES, WINDOW_MSGS));
            let id = d.ids.borrow().get(&name).copied();
            let (Some(want), Some(id)) = (want, id) else {
                // Gone, or (not expected) not in the log: nothing to read.
                // Pending gets are answered; the pause keeps a queue that
                // asks again from spinning this loop.
                let gone = !self.queues.borrow().contains_key(&name);
                self.fetched(&name);
                if !gone {
                    glommio::timer::sleep(Duration::from_secs(1)).await;
                }
                continue;
            };
            let (want, mark) = want;
            self.spill.marks.borrow_mut().insert(name.clone(), mark);
            if !want.is_empty() {
                match d.log.read_entries(id, &want).await {
                    Ok(entries) => {
                        if let Some(q) = self.queues.borrow_mut().get_mut(&name) {
                            for (&(seq, loc), e) in want.iter().zip(entries) {
                                q.fill(seq, loc, e);
                            }
                        }
                    }
                    Err(e) => {
                        // The messages stay queued; tried again a second later.
                        tracing::error!(shard = self.id, queue = %name, error = %e, "reading spilled messages back failed");
                        glommio::timer::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            self.fetched(&name);
        }
    }

    fn fetched(&self, name: &str) {
        self.spill.queued.borrow_mut().remove(name);
        if let Some(q) = self.queues.borrow_mut().get_mut(name) {
            self.settle(q);
        }
        let gets = self.spill.gets.borrow_mut().remove(name).unwrap_or_default();
        for g in gets {
            self.get(g.from, g.request_id, g.consumer_id, g.no_ack, name);
        }
        self.flush_dead_letters();
    }
}
