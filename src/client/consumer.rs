//! A consumer: a stream of deliveries under prefetch. Acks are collected
//! into ranges and sent together when the task yields.

use super::conn::Conn;
use super::{ClientError, Result};
use crate::protocol::{Cmd, Entry};
use bytes::Bytes;
use futures_lite::Stream;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub consumer_id: u32,
    /// Tag to ack; 0 for a `get` with `no_ack`.
    pub tag: u64,
    pub redelivered: bool,
    pub props: Bytes,
    pub body: Bytes,
}

impl Delivery {
    pub(crate) fn from_entry(chunk: &Bytes, consumer_id: u32, tag: u64, e: &Entry<'_>) -> Self {
        let slice = |p: &[u8]| if p.is_empty() { Bytes::new() } else { chunk.slice_ref(p) };
        Self { consumer_id, tag, redelivered: e.redelivered(), props: slice(e.props), body: slice(e.body) }
    }
}

type Ranges = Vec<(u64, u64)>;

/// How a consumer subscribes ([`super::Client::subscribe_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerOptions {
    /// The most unacked deliveries the broker sends it (1 to the broker's
    /// `prefetch_max`).
    pub prefetch: u32,
    /// Consumer priority (AMQP's `x-priority`), 0 by default: the queue
    /// delivers to its highest-priority consumers that have credit,
    /// round-robin among equals, and to lower ones only while every
    /// higher one is blocked (prefetch full, or its connection full).
    pub priority: i64,
    /// A stream consumer's start (`StreamSubscribe`, docs/streams.md);
    /// `None`: a plain Subscribe (a stream then reads from `next`).
    pub stream_at: Option<crate::protocol::StreamAt>,
}

impl ConsumerOptions {
    pub fn new(prefetch: u32) -> Self {
        Self { prefetch, priority: 0, stream_at: None }
    }

    pub fn priority(self, priority: i64) -> Self {
        Self { priority, ..self }
    }

    /// Reads a stream from `at` (first, last, next, an offset, a time).
    pub fn stream_at(self, at: crate::protocol::StreamAt) -> Self {
        Self { stream_at: Some(at), ..self }
    }
}

#[derive(Default)]
pub(crate) struct ConsumerState {
    ready: RefCell<VecDeque<Delivery>>,
    waker: RefCell<Option<Waker>>,
    closed: RefCell<Option<ClientError>>,
    error_reported: Cell<bool>,
    acks: RefCell<Ranges>,
    nacks: RefCell<Vec<(bool, Ranges)>>,
}

/// Adds a tag to a list of ranges, kept ascending and disjoint as the
/// broker requires (it refuses overlapping or unordered ranges). Acking in
/// order extends the last range; an earlier tag is merged where it falls;
/// a tag already in a range is not added twice.
fn add_tag(ranges: &mut Ranges, tag: u64) {
    match ranges.last_mut() {
        None => return ranges.push((tag, tag)),
        Some(last) if last.1.checked_add(1) == Some(tag) => return last.1 = tag,
        Some(last) if tag > last.1 => return ranges.push((tag, tag)),
        Some(_) => {}
    }
    // The first range ending at or after `tag`: it exists (the last does).
    let i = ranges.partition_point(|r| r.1 < tag);
    if ranges[i].0 <= tag {
        return;
    }
    // ranges[i - 1].1 < tag < ranges[i].0
    let joins_prev = i > 0 && ranges[i - 1].1 + 1 == tag;
    let joins_next = ranges[i].0 == tag + 1;
    match (joins_prev, joins_next) {
        (true, true) => {
            ranges[i - 1].1 = ranges[i].1;
            ranges.remove(i);
        }
        (true, false) => ranges[i - 1].1 = tag,
        (false, true) => ranges[i].0 = tag,
        (false, false) => ranges.insert(i, (tag, tag)),
    }
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

    pub(crate) fn take_acks(&self) -> (Ranges, Vec<(bool, Ranges)>) {
        (std::mem::take(&mut *self.acks.borrow_mut()), std::mem::take(&mut *self.nacks.borrow_mut()))
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
        let cmd = match o.stream_at {
            Some(at) => Cmd::StreamSubscribe { consumer_id: id, prefetch: o.prefetch, queue, at },
            None => Cmd::Subscribe { consumer_id: id, prefetch: o.prefetch, queue, priority: o.priority },
        };
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

    pub fn id(&self) -> u32 {
        self.id
    }

    /// Acks one delivery. Sent with the other acks of this turn.
    pub fn ack(&self, tag: u64) {
        add_tag(&mut self.state.acks.borrow_mut(), tag);
        self.conn.acks_pending(self.id);
    }

    /// Rejects one delivery; `requeue` puts it back at the queue's head.
    pub fn nack(&self, tag: u64, requeue: bool) {
        {
            let mut nacks = self.state.nacks.borrow_mut();
            match nacks.last_mut() {
                Some((r, ranges)) if *r == requeue => add_tag(ranges, tag),
                _ => nacks.push((requeue, vec![(tag, tag)])),
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_coalesce() {
        let mut r = Vec::new();
        for t in [1, 2, 3, 5, 6, 9] {
            add_tag(&mut r, t);
        }
        assert_eq!(r, vec![(1, 3), (5, 6), (9, 9)]);
    }

    #[test]
    fn out_of_order_acks_stay_ascending_and_disjoint() {
        let mut r = Vec::new();
        for t in [5, 3, 9, 4, 1, 9, 7, 8, 2, 6, 3, 20, u64::MAX, 11] {
            add_tag(&mut r, t);
            assert!(r.windows(2).all(|w| w[0].1 + 1 < w[1].0), "{r:?}");
        }
        assert_eq!(r, vec![(1, 9), (11, 11), (20, 20), (u64::MAX, u64::MAX)]);
        let raw: Vec<u8> = r.iter().flat_map(|(a, b)| [a.to_le_bytes(), b.to_le_bytes()].concat()).collect();
        assert!(crate::protocol::Ranges::parse(&raw, 4).is_ok(), "the broker's decoder accepts them");
    }
}
