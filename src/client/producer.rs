//! A glommio producer: messages for one queue gathered into batches
//! (`batch_max` messages, or `linger` after the first; `core::batch`),
//! each sent as one `Publish` frame. A message's confirmation resolves
//! when its batch is confirmed.

use super::conn::{Conn, Response};
use super::core::batch::{self, Batch};
use super::core::kept::{self, confirm_outcome, shell_kept_methods};
use super::{ClientError, ProducerOptions, Result, Target};
use crate::rt::{Notify, Slot, SlotWait};
use std::cell::{Cell, RefCell, RefMut};
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};

type Outcome = Result<()>;

/// The batch being filled, and the outcome its messages await.
type Open = kept::Open<Rc<Slot<Outcome>>>;

/// The unconfirmed batches, kept for recovery (`core::kept`).
type Book = kept::Kept<Rc<Batch>, Rc<Slot<Outcome>>>;
type Kept = RefCell<Book>;

pub(crate) struct Inner {
    conn: Rc<Conn>,
    /// With recovery on and confirms: the unconfirmed batches.
    kept: Option<Kept>,
    target: Target,
    opts: ProducerOptions,
    open: RefCell<Open>,
    kick: Rc<Notify>,
    in_flight: Cell<u32>,
    space: Notify,
    /// Bytes of entries that still fit one frame.
    entries_bytes_max: usize,
}

/// Publishes to one target (glommio): messages gathered into batches, and
/// with confirms, each batch's confirmation awaited or handed back.
pub struct Producer {
    inner: Rc<Inner>,
}

/// Resolves when the message's batch is confirmed (or, without confirms,
/// handed to the socket).
pub struct Confirmation {
    wait: SlotWait<Outcome>,
    batch: u64,
}

impl Confirmation {
    /// The batch the message went out in: messages of one batch are
    /// confirmed or refused together.
    pub fn batch(&self) -> u64 {
        self.batch
    }

    /// The outcome, if the batch has been settled; never waits.
    pub fn outcome(&self) -> Option<Outcome> {
        self.wait.peek()
    }
}

impl Future for Confirmation {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        Pin::new(&mut self.wait).poll(cx)
    }
}

impl Producer {
    pub(crate) fn new(conn: Rc<Conn>, target: Target, opts: ProducerOptions) -> Result<Producer> {
        let entries_bytes_max = batch::entries_bytes_max(&target, &opts, conn.info())?;
        let keeps = opts.confirm && conn.hub().is_some();
        let inner = Rc::new(Inner {
            kept: keeps.then(Kept::default),
            conn,
            target,
            opts,
            open: RefCell::new(Open::new(1, Slot::new())),
            kick: Rc::default(),
            in_flight: Cell::new(0),
            space: Notify::default(),
            entries_bytes_max,
        });
        if let (true, Some(hub)) = (keeps, inner.conn.hub()) {
            hub.add_producer(&inner);
        }
        let weak = Rc::downgrade(&inner);
        glommio::spawn_local(linger_loop(weak)).detach();
        Ok(Producer { inner })
    }

    /// Adds a message to the open batch. Waits only while `in_flight_max`
    /// batches are unconfirmed.
    pub async fn publish(&self, body: &[u8]) -> Result<Confirmation> {
        self.publish_with(&[], body).await
    }

    /// [`Producer::publish`] with properties ([`crate::protocol::props::PropsBuilder`]).
    pub async fn publish_with(&self, props: &[u8], body: &[u8]) -> Result<Confirmation> {
        let i = &self.inner;
        batch::check_message(i.conn.info(), props, body)?;
        // Back pressure from the socket: the writer drains before we add more.
        i.conn.wait_writable().await;
        // A max-rate publisher would otherwise keep the executor from its
        // other tasks (readers, consumers) until the socket fills.
        glommio::yield_if_needed().await;
        if let Some(e) = i.conn.take_error() {
            return Err(e);
        }
        if !i.open.borrow().batch.fits(props, body, i.entries_bytes_max) {
            i.wait_window().await;
            i.flush()?;
        }
        let (first, full, done, batch) = {
            let mut open = i.open.borrow_mut();
            let count = open.batch.push(props, body);
            (count == 1, count >= i.opts.batch_max, open.done.clone(), open.batch.id)
        };
        if full {
            i.wait_window().await;
            i.flush()?;
        } else if first {
            i.kick.notify();
        }
        Ok(Confirmation { wait: done.wait(), batch })
    }

    /// Publishes and waits for the confirm.
    pub async fn send(&self, body: &[u8]) -> Result<()> {
        self.publish(body).await?.await
    }

    /// Sends the open batch now.
    pub fn flush(&self) -> Result<()> {
        self.inner.flush()
    }

    /// Batches sent and not yet confirmed.
    pub fn in_flight(&self) -> u32 {
        self.inner.in_flight.get()
    }

    /// Why the broker is not reading this producer's connection (a memory
    /// or disk alarm, `Blocked`); `None` while it is read. Publishing
    /// while blocked is allowed: the batches wait in the socket, and
    /// `publish` waits once 4 MiB are queued. See also
    /// [`Conn::wait_unblocked`].
    pub fn blocked(&self) -> Option<String> {
        self.inner.conn.blocked()
    }

    /// The connection this producer publishes on.
    pub fn conn(&self) -> &Rc<Conn> {
        &self.inner.conn
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        let _ = self.inner.flush();
        // Wakes the linger task so it sees the producer is gone.
        self.inner.kick.notify();
    }
}

impl Inner {
    /// Waits while `in_flight_max` batches await their confirms. The open
    /// batch keeps filling meanwhile, so a slow broker gets bigger batches.
    async fn wait_window(&self) {
        if self.kept.is_some() {
            self.conn.wait_up().await;
        }
        while self.opts.confirm && self.in_flight.get() >= self.opts.in_flight_max {
            let n = self.space.notified();
            if self.in_flight.get() < self.opts.in_flight_max || self.conn.is_closed() {
                return;
            }
            n.await;
        }
    }

    fn flush(self: &Rc<Self>) -> Result<()> {
        if self.kept.is_some() {
            return self.flush_kept();
        }
        let Some(open) = self.open.borrow_mut().take(Slot::new) else { return Ok(()) };
        let flags = batch::publish_flags(&self.opts, &self.target);
        let rid = self.conn.next_request_id();
        let done = open.done.clone();
        let waiter = if self.opts.confirm {
            self.in_flight.set(self.in_flight.get() + 1);
            let me = Rc::downgrade(self);
            let d = done.clone();
            let expect = open.batch.count();
            Some(Box::new(move |r: Result<Response>| {
                if let Some(me) = me.upgrade() {
                    me.in_flight.set(me.in_flight.get() - 1);
                    me.space.notify();
                }
                d.set(confirm_outcome(r, expect));
            }) as Box<dyn FnOnce(Result<Response>)>)
        } else {
            None
        };
        let target = &self.target;
        let r = self.conn.send_raw(rid, waiter, |b| open.batch.encode(b, rid, flags, target));
        if !self.opts.confirm {
            done.set(r.clone());
        }
        r
    }
}

/// What the shared recovery side (`core::kept::shell_kept_methods!`) needs
/// of this shell's producer: its cells, its in-flight count, and how a kept
/// batch is sent.
impl Inner {
    fn kept_book(&self) -> Option<RefMut<'_, Book>> {
        self.kept.as_ref().map(RefCell::borrow_mut)
    }

    fn open_batch(&self) -> RefMut<'_, Open> {
        self.open.borrow_mut()
    }

    fn window_taken(&self) {
        self.in_flight.set(self.in_flight.get() + 1);
    }

    fn window_freed(&self) {
        self.in_flight.set(self.in_flight.get() - 1);
        self.space.notify();
    }

    /// Sends kept batch `id` under a new request id.
    fn send_kept(self: &Rc<Self>, id: u64, batch: &Rc<Batch>, done: &Rc<Slot<Outcome>>) -> Result<()> {
        let rid = self.conn.next_request_id();
        let me = Rc::downgrade(self);
        let (d, expect) = (done.clone(), batch.count());
        let waiter = Box::new(move |r: Result<Response>| {
            let outcome = confirm_outcome(r, expect);
            match me.upgrade() {
                // The connection went down: recovery sends it again, or fails it.
                Some(me) if outcome.is_err() && me.conn.is_down() => {}
                Some(me) => me.settle_kept(id, outcome),
                None => d.set(outcome),
            }
        }) as Box<dyn FnOnce(Result<Response>)>;
        let flags = batch::publish_flags(&self.opts, &self.target);
        let target = &self.target;
        match self.conn.send_raw(rid, Some(waiter), |b| batch.encode(b, rid, flags, target)) {
            Ok(()) => Ok(()),
            // Refused while down: `send_raw` told the waiter, which kept it.
            Err(_) if self.conn.is_down() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

shell_kept_methods!(Rc, Slot::new);

async fn linger_loop(weak: Weak<Inner>) {
    let Some(kick) = weak.upgrade().map(|i| i.kick.clone()) else { return };
    loop {
        let n = kick.notified();
        let Some(linger) = weak.upgrade().map(|i| (i.open.borrow().batch.count() > 0).then_some(i.opts.linger)) else {
            return;
        };
        let Some(linger) = linger else {
            n.await;
            continue;
        };
        if linger.is_zero() {
            glommio::executor().yield_now().await;
        } else {
            glommio::timer::sleep(linger).await;
        }
        let Some(inner) = weak.upgrade() else { return };
        inner.wait_window().await;
        let _ = inner.flush();
    }
}
