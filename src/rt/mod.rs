//! Small single-threaded async pieces shared by the broker and the client:
//! a wake-up signal, a one-shot result slot, the batched socket writer, and
//! the frame reader both protocols read through (`reader`).

// Lengths and counts narrowed with `as` could wrap silently: here each
// narrowing says how (`protocol::wire::{len32, saturate}`, or an `allow`
// with the reason).
#![deny(clippy::cast_possible_truncation)]

pub mod framing;
pub mod notify;
pub mod outbox;
pub mod reader;
pub mod transport;
pub mod writev;

pub use notify::Notify;
pub use outbox::Outbox;
pub use transport::Transport;

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Lets the executor poll its rings (sockets, timers) before this task
/// goes on: for long, chunked work on a shard's thread.
///
/// A plain `yield_now` (and glommio's `yield_if_needed`, which yields only
/// once the task queue's 100 ms preemption timer or a cross-thread wake has
/// fired) puts the task back in its task queue, and glommio keeps running
/// that queue without polling io_uring while it has ready tasks: sockets
/// would still wait for the whole job. A short timer takes the task off the
/// queue, so the executor runs the other ready tasks, polls I/O, and comes
/// back.
pub async fn yield_to_io() {
    glommio::timer::sleep(Duration::from_micros(10)).await
}

/// Lets the executor poll for I/O (sockets, timers, mesh channels) before
/// this task goes on. A task whose reads the kernel answers at once never
/// returns Pending, and `yield_now` keeps it runnable: glommio polls for
/// I/O only when its task queues run dry or its preempt timer fires
/// (100 ms), so a busy connection left its shard's other sockets and the
/// mesh unattended that long. Waiting on a timer that is due almost at
/// once takes the task off the run queue until the executor's next poll.
/// (A shorter preempt timer would do the same, but glommio 0.9 can park
/// with runnable tasks when the timer fires before a run starts: see
/// `server::run_shard`'s tick.)
///
/// Still needed with the shard's latency task queue (`server::sched`,
/// issue 19): `yield_if_needed` there gives way only once the queue's
/// 1 ms budget is spent or a socket on the latency ring turned ready, so
/// one busy connection could still hold the shard's other sockets, the
/// mesh and the timers (main ring) for up to a millisecond, twice the
/// 500 µs slice; this timer gives way at the next reactor poll. Its cost
/// is one TIMEOUT submission per yield, paid only by a task that found
/// more work waiting (a read that waited does not arm it).
pub async fn yield_to_reactor() {
    glommio::timer::sleep(std::time::Duration::from_micros(1)).await;
}

/// A value set once and awaited by any number of futures on one thread.
pub struct Slot<T> {
    value: RefCell<Option<T>>,
    notify: Notify,
}

impl<T: Clone> Slot<T> {
    pub fn new() -> Rc<Self> {
        Rc::new(Self { value: RefCell::new(None), notify: Notify::default() })
    }

    /// Sets the value unless it is already set.
    pub fn set(&self, v: T) {
        let mut slot = self.value.borrow_mut();
        if slot.is_none() {
            *slot = Some(v);
            drop(slot);
            self.notify.notify();
        }
    }

    pub fn get(&self) -> Option<T> {
        self.value.borrow().clone()
    }

    pub fn wait(self: &Rc<Self>) -> SlotWait<T> {
        SlotWait { slot: self.clone() }
    }
}

pub struct SlotWait<T> {
    slot: Rc<Slot<T>>,
}

impl<T: Clone> SlotWait<T> {
    pub fn peek(&self) -> Option<T> {
        self.slot.get()
    }
}

impl<T: Clone> Future for SlotWait<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        if let Some(v) = self.slot.get() {
            return Poll::Ready(v);
        }
        let n = self.slot.notify.notified();
        futures_lite::pin!(n);
        // Registers the waker; the epoch check inside cannot fire here
        // because nothing ran between `get` and `notified`.
        let _ = n.poll(cx);
        match self.slot.get() {
            Some(v) => Poll::Ready(v),
            None => Poll::Pending,
        }
    }
}
