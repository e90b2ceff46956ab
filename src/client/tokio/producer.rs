//! A tokio producer: messages gathered into batches (`core::batch`:
//! `batch_max` messages, or `linger` after the first), each sent as one
//! `Publish` frame. A message's [`Confirmation`] resolves when its batch
//! is confirmed; every message of a batch shares one outcome.

use super::conn::{lock, Conn, Waiter};
use crate::client::core::batch::{self, Batch};
use crate::client::core::incoming::Response;
use crate::client::core::kept::{self, confirm_outcome, shell_kept_methods};
use crate::client::{ClientError, ProducerOptions, Result, Target};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use tokio::sync::Notify;

type Outcome = Result<()>;

/// A batch's outcome, and the messages' tasks waiting for it.
#[derive(Default)]
struct Done {
    inner: Mutex<(Option<Outcome>, Vec<Waker>)>,
}

impl Done {
    fn set(&self, v: Outcome) {
        let wakers = {
            let mut i = lock(&self.inner);
            if i.0.is_some() {
                return;
            }
            i.0 = Some(v);
            std::mem::take(&mut i.1)
        };
        for w in wakers {
            w.wake();
        }
    }
}

/// Resolves when the message's batch is confirmed (or, without confirms,
/// handed to the socket). `Send`.
pub struct Confirmation {
    done: Arc<Done>,
    batch: u64,
    /// Where this confirmation's waker sits in the batch's list.
    slot: Option<usize>,
}

impl Confirmation {
    /// The batch the message went out in: messages of one batch are
    /// confirmed or refused together.
    pub fn batch(&self) -> u64 {
        self.batch
    }

    /// The outcome, if the batch has been settled; never waits.
    pub fn outcome(&self) -> Option<Outcome> {
        lock(&self.done.inner).0.clone()
    }
}

impl Future for Confirmation {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let done = self.done.clone();
        let mut i = lock(&done.inner);
        if let Some(v) = &i.0 {
            return Poll::Ready(v.clone());
        }
        match self.slot {
            Some(s) if s < i.1.len() => {
                if !i.1[s].will_wake(cx.waker()) {
                    i.1[s] = cx.waker().clone();
                }
            }
            _ => {
                i.1.push(cx.waker().clone());
                self.slot = Some(i.1.len() - 1);
            }
        }
        Poll::Pending
    }
}

/// The batch being filled, and the outcome its messages await.
type Open = kept::Open<Arc<Done>>;

/// The unconfirmed batches, kept for recovery (`core::kept`).
type Book = kept::Kept<Arc<Batch>, Arc<Done>>;
type Kept = Mutex<Book>;

pub(crate) struct Inner {
    conn: Arc<Conn>,
    /// With recovery on and confirms: the unconfirmed batches.
    kept: Option<Kept>,
    target: Target,
    opts: ProducerOptions,
    flags: u8,
    open: Mutex<Open>,
    /// Wakes the linger task: a batch has its first message, or the
    /// producer is gone.
    kick: Notify,
    in_flight: AtomicU32,
    space: Notify,
    entries_bytes_max: usize,
}

/// Publishes to one queue, or through one exchange with one routing key.
/// `Send + Sync`: share it (in an `Arc`) between tasks.
pub struct Producer {
    inner: Arc<Inner>,
}

impl Producer {
    pub(crate) fn new(conn: Arc<Conn>, target: Target, opts: ProducerOptions) -> Result<Producer> {
        let entries_bytes_max = batch::entries_bytes_max(&target, &opts, conn.info())?;
        let keeps = opts.confirm && conn.hub().is_some();
        let inner = Arc::new(Inner {
            flags: batch::publish_flags(&opts, &target),
            kept: keeps.then(Kept::default),
            conn,
            target,
            opts,
            open: Mutex::new(Open::new(1, Arc::default())),
            kick: Notify::new(),
            in_flight: AtomicU32::new(0),
            space: Notify::new(),
            entries_bytes_max,
        });
        if let (true, Some(hub)) = (keeps, inner.conn.hub()) {
            hub.add_producer(&inner);
        }
        tokio::spawn(linger_loop(Arc::downgrade(&inner)));
        Ok(Producer { inner })
    }

    /// Adds a message to the open batch. Waits only while `in_flight_max`
    /// batches are unconfirmed, or the socket has 4 MiB queued.
    pub async fn publish(&self, body: &[u8]) -> Result<Confirmation> {
        self.publish_with(&[], body).await
    }

    /// [`Producer::publish`] with properties
    /// ([`crate::protocol::props::PropsBuilder`]).
    pub async fn publish_with(&self, props: &[u8], body: &[u8]) -> Result<Confirmation> {
        let i = &self.inner;
        batch::check_message(i.conn.info(), props, body)?;
        i.conn.wait_writable().await;
        // A max-rate publisher would otherwise keep a current-thread
        // runtime from its other tasks (the writer, readers, consumers)
        // until the socket's buffer fills: yields once its budget is spent.
        tokio::task::consume_budget().await;
        if let Some(e) = i.conn.take_error() {
            return Err(e);
        }
        // One lock a message: the check and the push together.
        let push = |open: &mut Open| {
            let count = open.batch.push(props, body);
            (count == 1, count >= i.opts.batch_max, open.done.clone(), open.batch.id)
        };
        let pushed = {
            let mut open = lock(&i.open);
            open.batch.fits(props, body, i.entries_bytes_max).then(|| push(&mut open))
        };
        let (first, full, done, batch) = match pushed {
            Some(p) => p,
            // Until the open batch has gone (with recovery, a connection
            // that went down meanwhile holds it: then wait again).
            None => loop {
                i.wait_window().await;
                i.flush()?;
                let mut open = lock(&i.open);
                if open.batch.fits(props, body, i.entries_bytes_max) {
                    break push(&mut open);
                }
            },
        };
        if full {
            i.wait_window().await;
            i.flush()?;
        } else if first {
            i.kick.notify_one();
        }
        Ok(Confirmation { done, batch, slot: None })
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
        self.inner.in_flight.load(Ordering::Acquire)
    }

    /// Why the broker is not reading this producer's connection (a memory
    /// or disk alarm); `None` while it is read.
    pub fn blocked(&self) -> Option<String> {
        self.inner.conn.blocked()
    }

    /// The connection this producer publishes on.
    pub fn conn(&self) -> &Arc<Conn> {
        &self.inner.conn
    }
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").field("target", &self.inner.target).finish_non_exhaustive()
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        let _ = self.inner.flush();
        // Wakes the linger task so it sees the producer is gone.
        self.inner.kick.notify_one();
    }
}

impl Inner {
    /// Waits while `in_flight_max` batches await their confirms. The open
    /// batch keeps filling meanwhile, so a slow broker gets bigger batches.
    async fn wait_window(&self) {
        if self.kept.is_some() {
            self.conn.wait_up().await;
        }
        if !self.opts.confirm {
            return;
        }
        loop {
            let n = self.space.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.in_flight.load(Ordering::Acquire) < self.opts.in_flight_max || self.conn.is_closed() {
                return;
            }
            n.await;
        }
    }

    fn flush(self: &Arc<Self>) -> Result<()> {
        if self.kept.is_some() {
            return self.flush_kept();
        }
        let Some(open) = lock(&self.open).take(Arc::default) else { return Ok(()) };
        let rid = self.conn.next_request_id();
        let done = open.done.clone();
        let waiter = if self.opts.confirm {
            self.in_flight.fetch_add(1, Ordering::AcqRel);
            let me: Weak<Inner> = Arc::downgrade(self);
            let d = done.clone();
            let expect = open.batch.count();
            Some(Box::new(move |r: Result<Response>| {
                if let Some(me) = me.upgrade() {
                    me.in_flight.fetch_sub(1, Ordering::AcqRel);
                    me.space.notify_waiters();
                }
                d.set(confirm_outcome(r, expect));
            }) as Waiter)
        } else {
            None
        };
        let (flags, target) = (self.flags, &self.target);
        let r = self.conn.send_raw(rid, waiter, |b| open.batch.encode(b, rid, flags, target)).map(|_| ());
        if r.is_err() && self.opts.confirm {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
        if !self.opts.confirm || r.is_err() {
            done.set(r.clone());
        }
        r
    }
}

/// What the shared recovery side (`core::kept::shell_kept_methods!`) needs
/// of this shell's producer: its cells, its in-flight count, and how a kept
/// batch is sent.
impl Inner {
    fn kept_book(&self) -> Option<MutexGuard<'_, Book>> {
        self.kept.as_ref().map(lock)
    }

    fn open_batch(&self) -> MutexGuard<'_, Open> {
        lock(&self.open)
    }

    fn window_taken(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    fn window_freed(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.space.notify_waiters();
    }

    /// Sends kept batch `id` under a new request id.
    fn send_kept(self: &Arc<Self>, id: u64, batch: &Arc<Batch>, done: &Arc<Done>) -> Result<()> {
        let rid = self.conn.next_request_id();
        let me: Weak<Inner> = Arc::downgrade(self);
        let (d, expect) = (done.clone(), batch.count());
        let waiter = Box::new(move |r: Result<Response>| {
            let outcome = confirm_outcome(r, expect);
            match me.upgrade() {
                // The connection went down: recovery sends it again, or fails it.
                Some(me) if outcome.is_err() && me.conn.is_down() => {}
                Some(me) => me.settle_kept(id, outcome),
                None => d.set(outcome),
            }
        }) as Waiter;
        let (flags, target) = (self.flags, &self.target);
        match self.conn.send_raw(rid, Some(waiter), |b| batch.encode(b, rid, flags, target)) {
            Ok(_) => Ok(()),
            // Refused while down: kept for recovery.
            Err(_) if self.conn.is_down() => Ok(()),
            Err(e) => {
                self.settle_kept(id, Err(e.clone()));
                Err(e)
            }
        }
    }
}

shell_kept_methods!(Arc, Arc::default);

async fn linger_loop(weak: Weak<Inner>) {
    loop {
        let (linger, pending) = {
            let Some(i) = weak.upgrade() else { return };
            let pending = lock(&i.open).batch.count() > 0;
            (i.opts.linger, pending)
        };
        if !pending {
            // The producer's drop kicks too: then the upgrade above fails.
            let Some(i) = weak.upgrade() else { return };
            i.kick.notified().await;
            continue;
        }
        if linger.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(linger).await;
        }
        let Some(inner) = weak.upgrade() else { return };
        inner.wait_window().await;
        let _ = inner.flush();
    }
}
