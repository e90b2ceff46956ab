//! A connection's outgoing bytes. Replies are encoded straight into one
//! buffer; the writer task sends everything queued with one write, so a
//! turn's confirms and deliveries share a syscall. A write that makes no
//! progress for the send timeout (a peer that stopped reading) breaks the
//! connection.

use super::Notify;
use bytes::BytesMut;
use futures_lite::{AsyncWrite, AsyncWriteExt};
use std::cell::{Cell, RefCell};
use std::time::Duration;

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
    /// Closed by the shard (`abort`): the reader stops too.
    aborted: Cell<bool>,
    finished: Cell<bool>,
    /// Capacity of the writer's second buffer (the one being written, or
    /// kept for the next swap), for [`Outbox::held_bytes`].
    spare_bytes: Cell<usize>,
    /// Pushes so far: a heartbeat goes out only when this has not moved.
    pushes: Cell<u64>,
    /// A write made no progress for the send timeout.
    stalled: Cell<bool>,
    send_timeout: Cell<Option<Duration>>,
    /// Bytes written so far, and the writes (one per batch the writer
    /// took): the operators' per-connection traffic.
    written: Cell<(u64, u64)>,
}

impl Outbox {
    /// Encodes into the buffer with `f` and wakes the writer.
    pub fn push(&self, f: impl FnOnce(&mut BytesMut)) {
        if self.closing.get() || self.broken.get() {
            return;
        }
        f(&mut self.buf.borrow_mut());
        self.pushes.set(self.pushes.get().wrapping_add(1));
        self.wake_writer.notify();
    }

    /// Bytes written to the socket so far, and the batches they went in.
    pub fn write_totals(&self) -> (u64, u64) {
        self.written.get()
    }

    /// Pushes so far (it only grows): unchanged means nothing was sent.
    pub fn pushes(&self) -> u64 {
        self.pushes.get()
    }

    /// A write that makes no progress for `t` breaks the connection.
    pub fn set_send_timeout(&self, t: Duration) {
        self.send_timeout.set(Some(t));
    }

    /// Whether the connection broke because the peer stopped reading.
    pub fn is_stalled(&self) -> bool {
        self.stalled.get()
    }

    /// Waits until the writer has failed or the outbox was aborted (never
    /// returns on a healthy connection): lets a reader stop waiting for a
    /// peer that is gone, or that the shard evicted.
    pub async fn wait_ended(&self) {
        loop {
            let n = self.drained.notified();
            if self.broken.get() || self.aborted.get() {
                return;
            }
            n.await;
        }
    }

    /// Closes (the writer flushes what is queued) and ends the reader's
    /// [`Outbox::wait_ended`]: the shard ending a connection whose peer
    /// may never send or read again.
    pub fn abort(&self) {
        self.aborted.set(true);
        self.close();
        self.drained.notify();
    }

    pub fn queued_bytes(&self) -> usize {
        self.buf.borrow().len()
    }

    /// Memory the outbox holds: both of its buffers' capacities.
    pub fn held_bytes(&self) -> usize {
        self.buf.borrow().capacity() + self.spare_bytes.get()
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
            self.spare_bytes.set(spare.capacity());
            self.writing.set(spare.len());
            let r = self.write_progressing(&mut w, &spare).await;
            self.writing.set(0);
            if r.is_ok() {
                let (b, n) = self.written.get();
                self.written.set((b + spare.len() as u64, n + 1));
            }
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

    /// Writes all of `bytes`; each write must move some bytes within the
    /// send timeout (the whole buffer may take longer on a slow link).
    async fn write_progressing<W: AsyncWrite + Unpin>(&self, w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
        let Some(t) = self.send_timeout.get() else {
            w.write_all(bytes).await?;
            return w.flush().await;
        };
        let mut off = 0;
        while off < bytes.len() {
            let rest = &bytes[off..];
            let n = match glommio::timer::timeout(t, async { Ok(w.write(rest).await) }).await {
                Ok(r) => r?,
                Err(_) => {
                    self.stalled.set(true);
                    let ms = t.as_millis();
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no write progress within send_timeout_ms = {ms}"),
                    ));
                }
            };
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            off += n;
        }
        // TLS holds records it could not send yet (a plain socket holds
        // nothing: its flush is free): they go now, not with the next batch.
        match glommio::timer::timeout(t, async { Ok(w.flush().await) }).await {
            Ok(r) => r,
            Err(_) => {
                self.stalled.set(true);
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no flush progress within send_timeout_ms"))
            }
        }
    }
}
