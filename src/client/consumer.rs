//! A glommio consumer: a stream of deliveries under prefetch. Acks are
//! collected into ranges (`core::acks`) and sent together when the task
//! yields.

use super::conn::Conn;
use super::core::acks::AckBook;
use super::core::cmds;
use super::{ClientError, ConsumerOptions, Delivery, Result};
use crate::protocol::Cmd;
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
}

impl ConsumerState {
    pub(crate) fn push_batch(&self, ds: impl Iterator<Item = Delivery>) {
        self.ready.borrow_mut().extend(ds);
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

pub struct Consumer {
    conn: Rc<Conn>,
    id: u32,
    state: Rc<ConsumerState>,
}

impl Consumer {
    pub(crate) async fn subscribe(conn: Rc<Conn>, queue: &str, id: u32, o: ConsumerOptions) -> Result<Consumer> {
        let state = Rc::new(ConsumerState::default());
        // Registered first: the first delivery may follow the reply at once.
        conn.add_consumer(id, state.clone());
        let cmd = cmds::subscribe(id, queue, &o);
        if let Err(e) = conn.simple(cmd).await {
            conn.remove_consumer(id);
            return Err(e);
        }
        Ok(Consumer { conn, id, state })
    }

    /// The consumer of direct replies (`protocol::reply_to`) on `conn`,
    /// and the generated name requests carry as their `reply_to`.
    pub(crate) async fn reply_to(conn: Rc<Conn>, id: u32) -> Result<(String, Consumer)> {
        let state = Rc::new(ConsumerState::default());
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
        self.state.acks.borrow_mut().ack(tag);
        self.conn.acks_pending(self.id);
    }

    /// Rejects one delivery; `requeue` puts it back at the queue's head.
    pub fn nack(&self, tag: u64, requeue: bool) {
        self.state.acks.borrow_mut().nack(tag, requeue);
        self.conn.acks_pending(self.id);
    }

    /// Deliveries received and not yet taken from the stream.
    pub fn buffered(&self) -> usize {
        self.state.ready.borrow().len()
    }

    /// Stops the subscription; the broker requeues what was not acked.
    pub async fn cancel(self) -> Result<()> {
        self.conn.send_acks(self.id, &self.state);
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
        self.conn.remove_consumer(self.id);
    }
}
