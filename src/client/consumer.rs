//! A glommio consumer: a stream of deliveries under prefetch. Acks are
//! collected into ranges (`core::acks`) and sent together when the task
//! yields.

use super::conn::Conn;
use super::core::acks::AckBook;
use super::core::cmds;
use super::core::incoming::deliveries;
use super::{ClientError, ConsumerOptions, Delivery, Result};
use crate::protocol::{Cmd, DeliverOrigin, Entries};
use bytes::Bytes;
use futures_lite::Stream;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Default)]
pub(crate) struct ConsumerState {
    ready: RefCell<VecDeque<Delivery>>,
    waker: RefCell<Option<Waker>>,
    closed: RefCell<Option<ClientError>>,
    error_reported: Cell<bool>,
    acks: RefCell<AckBook>,
    /// Recovery subscribes it again after a redial.
    recovers: bool,
    /// Recovery: added to the broker's tags (which start again on each new
    /// connection) so the application's go on counting up; acks of tags
    /// below `epoch_start` are of an earlier connection and are dropped.
    tag_base: Cell<u64>,
    epoch_start: Cell<u64>,
    last_tag: Cell<u64>,
}

impl ConsumerState {
    fn new(recovers: bool) -> Rc<Self> {
        Rc::new(Self { recovers, ..Self::default() })
    }

    pub(crate) fn recovers(&self) -> bool {
        self.recovers
    }

    /// A new connection: its tags follow the last one handed out, and
    /// acks collected for the old one are void.
    pub(crate) fn new_epoch(&self) {
        self.tag_base.set(self.last_tag.get());
        self.epoch_start.set(self.last_tag.get() + 1);
        self.acks.borrow_mut().take();
    }

    /// The deliveries of one `Deliver` frame.
    pub(crate) fn push_frame(
        &self,
        chunk: &Bytes,
        consumer_id: u32,
        first_tag: u64,
        origin: Option<DeliverOrigin<'_>>,
        entries: Entries<'_>,
    ) {
        let first = first_tag + self.tag_base.get();
        self.last_tag.set(self.last_tag.get().max(first + u64::from(entries.len()).saturating_sub(1)));
        self.ready.borrow_mut().extend(deliveries(chunk, consumer_id, first, origin, entries));
        self.wake();
    }

    pub(crate) fn close(&self, e: ClientError) {
        self.closed.borrow_mut().get_or_insert(e);
        self.wake();
    }

    fn wake(&self) {
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    pub(crate) fn take_acks(&self) -> AckBook {
        self.acks.borrow_mut().take()
    }
}

/// A subscription to one queue (glommio): deliveries as a `Stream`, acks
/// gathered into ranges and sent in batches.
pub struct Consumer {
    conn: Rc<Conn>,
    id: u32,
    state: Rc<ConsumerState>,
}

impl Consumer {
    pub(crate) async fn subscribe(conn: Rc<Conn>, queue: &str, id: u32, o: ConsumerOptions) -> Result<Consumer> {
        if let Some(hub) = conn.hub() {
            hub.topology.borrow().check_consumer()?;
        }
        let state = ConsumerState::new(conn.hub().is_some());
        // Registered first: the first delivery may follow the reply at once.
        conn.add_consumer(id, state.clone());
        let cmd = cmds::subscribe(id, queue, &o);
        if let Err(e) = conn.simple(cmd).await {
            conn.remove_consumer(id);
            return Err(e);
        }
        if let Some(hub) = conn.hub() {
            hub.topology.borrow_mut().consumer_added(id, queue, o);
        }
        Ok(Consumer { conn, id, state })
    }

    /// The consumer of direct replies (`protocol::reply_to`) on `conn`,
    /// and the generated name requests carry as their `reply_to`.
    pub(crate) async fn reply_to(conn: Rc<Conn>, id: u32) -> Result<(String, Consumer)> {
        // Not recovered: a new connection's reply-to name is another.
        let state = ConsumerState::new(false);
        conn.add_consumer(id, state.clone());
        let cmd = Cmd::Subscribe {
            consumer_id: id,
            prefetch: 1,
            queue: crate::protocol::reply_to::PSEUDO_QUEUE,
            priority: 0,
            origin: false,
        };
        match conn.request(cmd).await {
            Ok(super::conn::Response::ReplyTo(name)) => Ok((name, Consumer { conn, id, state })),
            other => {
                conn.remove_consumer(id);
                Err(match other {
                    Err(e) => e,
                    Ok(r) => ClientError::Protocol(format!("unexpected reply {r:?} to a reply-to subscribe")),
                })
            }
        }
    }

    /// The consumer id this client gave it.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Acks one delivery. Sent with the other acks of this turn.
    pub fn ack(&self, tag: u64) {
        let s = &self.state;
        if tag < s.epoch_start.get() {
            return;
        }
        s.acks.borrow_mut().ack(tag - s.tag_base.get());
        self.conn.acks_pending(self.id);
    }

    /// Rejects one delivery; `requeue` puts it back at the queue's head.
    pub fn nack(&self, tag: u64, requeue: bool) {
        let s = &self.state;
        if tag < s.epoch_start.get() {
            return;
        }
        s.acks.borrow_mut().nack(tag - s.tag_base.get(), requeue);
        self.conn.acks_pending(self.id);
    }

    /// Deliveries received and not yet taken from the stream.
    pub fn buffered(&self) -> usize {
        self.state.ready.borrow().len()
    }

    /// Stops the subscription; the broker requeues what was not acked.
    pub async fn cancel(self) -> Result<()> {
        self.conn.send_acks(self.id, &self.state);
        if let Some(hub) = self.conn.hub() {
            hub.topology.borrow_mut().consumer_removed(self.id);
        }
        let r = self.conn.simple(Cmd::Unsubscribe { consumer_id: self.id }).await;
        self.conn.remove_consumer(self.id);
        r.map(|_| ())
    }
}

impl Stream for Consumer {
    type Item = Result<Delivery>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let s = &self.state;
        if let Some(d) = s.ready.borrow_mut().pop_front() {
            return Poll::Ready(Some(Ok(d)));
        }
        if let Some(e) = s.closed.borrow().clone() {
            if s.error_reported.replace(true) {
                return Poll::Ready(None);
            }
            return Poll::Ready(Some(Err(e)));
        }
        *s.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // Acks taken so far must reach the broker even if the task never
        // yielded to the ack sender; closing the client flushes them.
        self.conn.send_acks(self.id, &self.state);
        if let Some(hub) = self.conn.hub() {
            hub.topology.borrow_mut().consumer_removed(self.id);
        }
        self.conn.remove_consumer(self.id);
    }
}
