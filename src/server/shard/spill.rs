//! The shard's memory budget for ready message entries
//! (`memory_budget_bytes`): past it, newly published persistent messages
//! of durable queues keep only their record's location in the log, and a
//! per-shard fetch task reads them back (DMA reads, a window of upcoming
//! messages at once) before they are delivered.
//!
//! Transient messages, and every message of a transient queue, have no
//! location: they count against the budget but always stay in memory; so
//! do the messages of a priority queue (`Queue::can_spill`).
//!
//! This is the shard's side; a queue's spilled messages and read-ahead
//! windows are `server::queue::spill`.

use super::super::queue::{Ahead, Queue, ReadAhead};
use super::durable::Durable;
use super::Shard;
use crate::rt::Notify;
use crate::storage::{Loc, Moved};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;
use std::time::Duration;

/// Read-ahead: kept in memory or in flight ahead of the consumers of a
/// queue with spilled messages, read in windows of up to 2 MiB, several
/// in flight at once (one window at a time left the consumers waiting on
/// each read: the drain ran at the speed of one read after another).
const READ_AHEAD: ReadAhead =
    ReadAhead { lead_bytes: 8 << 20, lead_msgs: 8192, window_bytes: 2 << 20, window_msgs: 4096 };
/// Windows in flight per queue, and per shard.
const WINDOWS_MAX: usize = 4;
const SHARD_WINDOWS_MAX: usize = 16;
// Windows are read from a queue's hot part (`Ready::hot`), which then must
// hold at least the lead and one whole window ahead of its cold part.
const _: () = assert!(READ_AHEAD.lead_msgs + READ_AHEAD.window_msgs < super::super::queue::HOT_LOW);

/// The windows of one queue being read.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    windows: usize,
    /// Up to the end of the last window.
    ahead: Ahead,
}

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
    /// Queues with windows being read, and how many those are in all.
    in_flight: RefCell<HashMap<String, InFlight>>,
    windows: Cell<usize>,
    /// Queues that found the shard's windows all taken: asked again when
    /// one is done.
    deferred: RefCell<Vec<String>>,
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
        if q.is_stream() {
            self.stream_reads_due(q);
        }
        self.account_queue(q);
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
        // While windows are in flight, the last one done dispatches and
        // asks again if the head is still spilled.
        let reading = self.spill.in_flight.borrow().contains_key(&q.name);
        let due = (q.head_spilled() && !reading)
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
        self.forget_queue_bytes(q);
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

    /// The read-back loop: takes a queue that asked and starts reading its
    /// next windows of spilled entries (`read_window` puts them back and
    /// dispatches).
    pub async fn run_fetcher(self: Rc<Self>) {
        let Some(d) = self.durable() else { return };
        loop {
            let n = self.spill.kick.notified();
            let Some(name) = self.spill.wanted.borrow_mut().pop_front() else {
                n.await;
                continue;
            };
            self.spill.queued.borrow_mut().remove(&name);
            let flight = self.spill.in_flight.borrow().get(&name).copied();
            let reading = flight.map_or(0, |f| f.windows);
            if reading >= WINDOWS_MAX {
                // The next one done asks again.
                continue;
            }
            let most = (WINDOWS_MAX - reading).min(SHARD_WINDOWS_MAX.saturating_sub(self.spill.windows.get()));
            if most == 0 {
                self.spill.deferred.borrow_mut().push(name);
                continue;
            }
            let ahead = flight.map(|f| f.ahead);
            let want = self.queues.borrow().get(&name).map(|q| q.fetch_windows(ahead, READ_AHEAD, most));
            let id = d.ids.borrow().get(&name).copied();
            let (Some(want), Some(id)) = (want, id) else {
                if flight.is_some() {
                    continue;
                }
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
            self.spill.marks.borrow_mut().insert(name.clone(), want.mark);
            if want.windows.is_empty() {
                if flight.is_none() {
                    self.fetched(&name);
                }
                continue;
            }
            let f = InFlight { windows: reading + want.windows.len(), ahead: want.ahead };
            self.spill.in_flight.borrow_mut().insert(name.clone(), f);
            self.spill.windows.set(self.spill.windows.get() + want.windows.len());
            for w in want.windows {
                glommio::spawn_local(self.clone().read_window(d.clone(), name.clone(), id, w)).detach();
            }
        }
    }

    /// Reads one window back, puts its entries back in the queue, and
    /// dispatches.
    async fn read_window(self: Rc<Self>, d: Rc<Durable>, name: String, id: u32, want: Vec<(u64, Loc)>) {
        match d.log.read_entries(id, &want).await {
            Ok(entries) => {
                if let Some(q) = self.queues.borrow_mut().get_mut(&name) {
                    for (&(seq, loc), e) in want.iter().zip(entries) {
                        q.fill(seq, loc, e);
                    }
                }
            }
            Err(e) => {
                // The messages stay queued; read again from the head a
                // second later, once no window of the queue is in flight.
                tracing::error!(shard = self.id, queue = %name, error = %e, "reading spilled messages back failed");
                glommio::timer::sleep(Duration::from_secs(1)).await;
            }
        }
        {
            let mut in_flight = self.spill.in_flight.borrow_mut();
            // The last window done ends the queue's run of windows: the
            // next one starts from the head, so a message a window left
            // spilled (moved by compaction meanwhile) is read again.
            if let Some(f) = in_flight.get_mut(&name) {
                f.windows -= 1;
                if f.windows == 0 {
                    in_flight.remove(&name);
                }
            }
        }
        self.spill.windows.set(self.spill.windows.get().saturating_sub(1));
        let deferred = std::mem::take(&mut *self.spill.deferred.borrow_mut());
        for q in deferred {
            self.want_fetch(&q);
        }
        self.fetched(&name);
    }

    fn fetched(&self, name: &str) {
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
