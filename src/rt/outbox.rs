//! A connection's outgoing bytes. Replies are encoded straight into one
//! buffer; the writer task sends everything queued with one write, so a
//! turn's confirms and deliveries share a syscall.

use super::Notify;
use bytes::BytesMut;
use futures_lite::{AsyncWrite, AsyncWriteExt};
use std::cell::{Cell, RefCell};

#[derive(Default)]
pub struct Outbox {
    buf: RefCell<BytesMut>,
    /// Bytes the writer has taken from `buf` and not yet written (a socket
    /// that does not drain holds them here).
    writing: Cell<usize>,
    wake_writer: Notify,
    drained: Notify,
    closing: Cell<bool>,
    broken: Cell<bool>,
    finished: Cell<bool>,
}

impl Outbox {
    /// Encodes into the buffer with `f` and wakes the writer.
    pub fn push(&self, f: impl FnOnce(&mut BytesMut)) {
        if self.closing.get() || self.broken.get() {
            return;
        }
        f(&mut self.buf.borrow_mut());
        self.wake_writer.notify();
    }

    pub fn queued_bytes(&self) -> usize {
        self.buf.borrow().len()
    }

    /// Everything not yet written to the socket: queued, and taken by the
    /// writer for its current write. What the broker's memory holds for
    /// this connection.
    pub fn pending_bytes(&self) -> usize {
        self.queued_bytes() + self.writing.get()
    }

    /// Waits until at most `max` bytes are pending (queued or being
    /// written), or the outbox is closing.
    pub async fn wait_pending_below(&self, max: usize) {
        loop {
            let n = self.drained.notified();
            if self.pending_bytes() <= max || self.is_closing() {
                return;
            }
            n.await;
        }
    }

    /// Stops taking new bytes; the writer flushes what is queued, then
    /// shuts the socket's write side.
    pub fn close(&self) {
        self.closing.set(true);
        self.wake_writer.notify();
    }

    pub fn is_closing(&self) -> bool {
        self.closing.get() || self.broken.get()
    }

    pub fn is_broken(&self) -> bool {
        self.broken.get()
    }

    /// Waits until the writer has flushed and closed (or failed).
    pub async fn wait_finished(&self) {
        loop {
            let n = self.drained.notified();
            if self.finished.get() {
                return;
            }
            n.await;
        }
    }

    /// Waits until at most `max` bytes are queued (reader back pressure).
    pub async fn wait_below(&self, max: usize) {
        loop {
            let n = self.drained.notified();
            if self.queued_bytes() <= max || self.is_closing() {
                return;
            }
            n.await;
        }
    }

    /// The writer task: runs until closed and flushed, or the socket fails.
    pub async fn write_loop<W: AsyncWrite + Unpin>(&self, w: W) {
        self.write_all_queued(w).await;
        self.finished.set(true);
        self.drained.notify();
    }

    async fn write_all_queued<W: AsyncWrite + Unpin>(&self, mut w: W) {
        let mut spare = BytesMut::new();
        loop {
            let n = self.wake_writer.notified();
            if self.buf.borrow().is_empty() {
                if self.closing.get() {
                    break;
                }
                n.await;
                continue;
            }
            std::mem::swap(&mut *self.buf.borrow_mut(), &mut spare);
            self.writing.set(spare.len());
            let r = w.write_all(&spare).await;
            self.writing.set(0);
            spare.clear();
            self.drained.notify();
            if let Err(e) = r {
                tracing::debug!(error = %e, "write failed; connection broken");
                self.broken.set(true);
                self.drained.notify();
                return;
            }
        }
        let _ = w.flush().await;
        let _ = w.close().await;
    }
}
