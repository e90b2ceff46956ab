//! A tokio consumer: a `Stream` of deliveries under prefetch. Acks are
//! collected into ranges (`core::acks`) and sent by the connection's
//! writer on its next turn, together with every other ack of that turn.

use super::conn::{lock, Conn};
use crate::client::core::acks::AckBook;
use crate::client::core::cmds;
use crate::client::core::incoming::{deliveries, Response};
use crate::client::{ClientError, ConsumerOptions, Delivery, Result};
use crate::protocol::{Cmd, DeliverOrigin, Entries};
use bytes::Bytes;
use futures_lite::Stream;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct Inner {
    ready: VecDeque<Delivery>,
    waker: Option<Waker>,
    closed: Option<ClientError>,
    error_reported: bool,
    acks: AckBook,
    /// Recovery: what is added to the broker's tags (which start again on
    /// each new connection) so the application's go on counting up; tags
    /// below `epoch_start` are of an earlier connection and their acks
    /// are dropped (the broker requeued those messages).
    tag_base: u64,
    epoch_start: u64,
    /// The highest tag handed out so far.
    last_tag: u64,
}

/// What the connection's reader and the consumer share.
pub(crate) struct ConsumerShared {
    id: u32,
    inner: Mutex<Inner>,
    /// Acks wait for the writer: the consumer is on its list once.
    dirty: AtomicBool,
    /// Recovery subscribes it again after a redial.
    recovers: bool,
}

impl ConsumerShared {
    fn new(id: u32, recovers: bool) -> Arc<Self> {
        Arc::new(Self { id, inner: Mutex::default(), dirty: AtomicBool::new(false), recovers })
    }

    pub(crate) fn recovers(&self) -> bool {
        self.recovers
    }

    /// A new connection: its tags follow the last one handed out, and
    /// acks collected for the old one are void.
    pub(crate) fn new_epoch(&self) {
        let mut i = lock(&self.inner);
        i.tag_base = i.last_tag;
        i.epoch_start = i.last_tag + 1;
        i.acks = AckBook::default();
        self.dirty.store(false, Ordering::Release);
    }

    /// The deliveries of one `Deliver` frame.
    pub(crate) fn push_frame(
        &self,
        chunk: &Bytes,
        first_tag: u64,
        origin: Option<DeliverOrigin<'_>>,
        entries: Entries<'_>,
    ) {
        let w = {
            let mut i = lock(&self.inner);
            let first = first_tag + i.tag_base;
            i.last_tag = i.last_tag.max(first + u64::from(entries.len()).saturating_sub(1));
            i.ready.extend(deliveries(chunk, self.id, first, origin, entries));
            i.waker.take()
        };
        if let Some(w) = w {
            w.wake();
        }
    }

    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    pub(crate) fn close(&self, e: ClientError) {
        let w = {
            let mut i = lock(&self.inner);
            i.closed.get_or_insert(e);
            i.waker.take()
        };
        if let Some(w) = w {
            w.wake();
        }
    }

    /// The acks collected so far, if any.
    pub(crate) fn take_acks(&self) -> Option<AckBook> {
        self.dirty.store(false, Ordering::Release);
        let book = lock(&self.inner).acks.take();
        (!book.is_empty()).then_some(book)
    }
}

/// A subscription: a `Stream` of deliveries. `Send + Sync`; ack from any
/// task.
pub struct Consumer {
    conn: Arc<Conn>,
    shared: Arc<ConsumerShared>,
}

impl Consumer {
    pub(crate) async fn subscribe(conn: Arc<Conn>, queue: &str, id: u32, o: ConsumerOptions) -> Result<Consumer> {
        if let Some(hub) = conn.hub() {
            lock(&hub.topology).check_consumer()?;
        }
        let shared = ConsumerShared::new(id, conn.hub().is_some());
        // Registered first: the first delivery may follow the reply at once.
        conn.add_consumer(id, shared.clone());
        let cmd = cmds::subscribe(id, queue, &o);
        if let Err(e) = conn.simple(cmd).await {
            conn.remove_consumer(id);
            return Err(e);
        }
        if let Some(hub) = conn.hub() {
            lock(&hub.topology).consumer_added(id, queue, o);
        }
        Ok(Consumer { conn, shared })
    }

    /// The consumer of direct replies (`protocol::reply_to`) on `conn`,
    /// and the generated name requests carry as their `reply_to`.
    pub(crate) async fn reply_to(conn: Arc<Conn>, id: u32) -> Result<(String, Consumer)> {
        // Not recovered: a new connection's reply-to name is another.
        let shared = ConsumerShared::new(id, false);
        conn.add_consumer(id, shared.clone());
        let cmd = Cmd::Subscribe {
            consumer_id: id,
            prefetch: 1,
            queue: crate::protocol::reply_to::PSEUDO_QUEUE,
            priority: 0,
            origin: false,
        };
        match conn.request(cmd).await {
            Ok(Response::ReplyTo(name)) => Ok((name, Consumer { conn, shared })),
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
        self.shared.id
    }

    fn pending(&self) {
        if !self.shared.dirty.swap(true, Ordering::AcqRel) {
            self.conn.acks_pending(self.shared.id);
        }
    }

    /// Acks one delivery. Sent with the other acks of the writer's next turn.
    pub fn ack(&self, tag: u64) {
        {
            let mut i = lock(&self.shared.inner);
            if tag < i.epoch_start {
                return;
            }
            let wire = tag - i.tag_base;
            i.acks.ack(wire);
        }
        self.pending();
    }

    /// Rejects one delivery; `requeue` puts it back at the queue's head.
    pub fn nack(&self, tag: u64, requeue: bool) {
        {
            let mut i = lock(&self.shared.inner);
            if tag < i.epoch_start {
                return;
            }
            let wire = tag - i.tag_base;
            i.acks.nack(wire, requeue);
        }
        self.pending();
    }

    /// Deliveries received and not yet taken from the stream.
    pub fn buffered(&self) -> usize {
        lock(&self.shared.inner).ready.len()
    }

    /// Stops the subscription; the broker requeues what was not acked.
    pub async fn cancel(self) -> Result<()> {
        self.conn.send_acks(&self.shared);
        if let Some(hub) = self.conn.hub() {
            lock(&hub.topology).consumer_removed(self.shared.id);
        }
        let r = self.conn.simple(Cmd::Unsubscribe { consumer_id: self.shared.id }).await;
        self.conn.remove_consumer(self.shared.id);
        r.map(|_| ())
    }
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("id", &self.shared.id).finish_non_exhaustive()
    }
}

impl Stream for Consumer {
    type Item = Result<Delivery>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut i = lock(&self.shared.inner);
        if let Some(d) = i.ready.pop_front() {
            return Poll::Ready(Some(Ok(d)));
        }
        if let Some(e) = i.closed.clone() {
            if std::mem::replace(&mut i.error_reported, true) {
                return Poll::Ready(None);
            }
            return Poll::Ready(Some(Err(e)));
        }
        match &mut i.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // Acks taken so far must reach the broker: queued now.
        self.conn.send_acks(&self.shared);
        if let Some(hub) = self.conn.hub() {
            lock(&hub.topology).consumer_removed(self.shared.id);
        }
        self.conn.remove_consumer(self.shared.id);
    }
}
