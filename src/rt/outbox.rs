//! A connection's outgoing bytes. Replies are encoded straight into one
//! buffer; the writer task sends everything queued with one write, so a
//! turn's confirms and deliveries share a syscall. A write that makes no
//! progress for the send timeout (a peer that stopped reading) breaks the
//! connection.
//!
//! On a plain socket whose writer was started with its fd
//! ([`Outbox::write_loop_vectored`]), large buffers can be queued by
//! reference ([`OutBuf::put_ref`]: a stream's stored entries) and go out in
//! the same write as the encoded bytes around them, as one vectored
//! `sendmsg` (`writev.rs`): no copy into the outbox.

use super::writev::{self, Parts, IOV_MAX};
use super::Notify;
use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncWrite, AsyncWriteExt};
use std::cell::{Cell, RefCell};
use std::time::Duration;

#[derive(Default)]
pub struct Outbox {
    buf: RefCell<BytesMut>,
    /// Buffers queued by reference: each is sent at its offset into `buf`
    /// (ascending), and `ref_bytes` are their bytes.
    refs: RefCell<Vec<(usize, Bytes)>>,
    ref_bytes: Cell<usize>,
    /// The writer sends vectored (a plain socket): `put_ref` keeps a
    /// reference rather than copying.
    vectored: Cell<bool>,
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

    /// As [`Outbox::push`], where `f` may also queue buffers by reference
    /// ([`OutBuf::put_ref`]; copied when the writer does not send
    /// vectored).
    pub fn push_parts(&self, f: impl FnOnce(&mut OutBuf<'_>)) {
        if self.closing.get() || self.broken.get() {
            return;
        }
        let mut buf = self.buf.borrow_mut();
        let mut refs = self.refs.borrow_mut();
        let queued = self.ref_bytes.get();
        let mut out = OutBuf { buf: &mut buf, refs: self.vectored.get().then_some(&mut *refs), ref_bytes: queued };
        f(&mut out);
        self.ref_bytes.set(out.ref_bytes);
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
        self.buf.borrow().len() + self.ref_bytes.get()
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
        self.write_all_queued(w, None).await;
        self.finished.set(true);
        self.drained.notify();
    }

    /// [`Outbox::write_loop`] on a plain socket whose fd is `fd`: `w` must
    /// be that socket's writing half (it keeps the fd open), so buffers
    /// queued by reference can be sent with it in one vectored write.
    pub async fn write_loop_vectored<W: AsyncWrite + Unpin>(&self, w: W, fd: std::os::fd::RawFd) {
        self.vectored.set(true);
        self.write_all_queued(w, Some(fd)).await;
        self.finished.set(true);
        self.drained.notify();
    }

    async fn write_all_queued<W: AsyncWrite + Unpin>(&self, mut w: W, fd: Option<std::os::fd::RawFd>) {
        let mut spare = BytesMut::new();
        let mut spare_refs = Vec::new();
        loop {
            let n = self.wake_writer.notified();
            if self.queued_bytes() == 0 {
                if self.closing.get() {
                    break;
                }
                n.await;
                continue;
            }
            std::mem::swap(&mut *self.buf.borrow_mut(), &mut spare);
            std::mem::swap(&mut *self.refs.borrow_mut(), &mut spare_refs);
            let len = spare.len() + self.ref_bytes.replace(0);
            self.spare_bytes.set(spare.capacity());
            self.writing.set(len);
            let r = match fd {
                Some(fd) if !spare_refs.is_empty() => self.write_vectored(&mut w, fd, &spare, &spare_refs).await,
                _ => self.write_progressing(&mut w, &spare).await,
            };
            self.writing.set(0);
            if r.is_ok() {
                let (b, n) = self.written.get();
                self.written.set((b + len as u64, n + 1));
            }
            spare.clear();
            // The references go once written: a stored entry is not held
            // longer than its bytes take to leave.
            spare_refs.clear();
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

    /// `bytes` with `refs` inserted (`writev::Parts`): vectored sends
    /// while the socket takes them at once; when it is full, one ordinary
    /// write of the next slice, which waits for room (within the send
    /// timeout) as every write does.
    async fn write_vectored<W: AsyncWrite + Unpin>(
        &self,
        w: &mut W,
        fd: std::os::fd::RawFd,
        bytes: &[u8],
        refs: &[(usize, Bytes)],
    ) -> std::io::Result<()> {
        let mut parts = Parts::new(bytes, refs);
        let mut slices = Vec::with_capacity(IOV_MAX.min(2 * refs.len() + 1));
        while !parts.is_done() {
            parts.slices(IOV_MAX, &mut slices);
            let sent = writev::send_now(fd, &slices)?;
            slices.clear();
            let n = match sent {
                Some(n) => n,
                None => self.write_some(w, parts.current()).await?,
            };
            parts.advance(n);
        }
        Ok(())
    }

    /// One write of some of `bytes`, which must move bytes within the send
    /// timeout, if there is one.
    async fn write_some<W: AsyncWrite + Unpin>(&self, w: &mut W, bytes: &[u8]) -> std::io::Result<usize> {
        let n = match self.send_timeout.get() {
            None => w.write(bytes).await?,
            Some(t) => match glommio::timer::timeout(t, async { Ok(w.write(bytes).await) }).await {
                Ok(r) => r?,
                Err(_) => {
                    self.stalled.set(true);
                    let ms = t.as_millis();
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no write progress within send_timeout_ms = {ms}"),
                    ));
                }
            },
        };
        if n == 0 && !bytes.is_empty() {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        Ok(n)
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
            off += self.write_some(w, &bytes[off..]).await?;
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

/// The outbox's buffer as [`Outbox::push_parts`] lends it: encoded bytes
/// go into `buf`; large ones may be queued by reference.
pub struct OutBuf<'a> {
    pub buf: &'a mut BytesMut,
    refs: Option<&'a mut Vec<(usize, Bytes)>>,
    /// Bytes queued by reference so far, this push's included.
    ref_bytes: usize,
}

impl<'a> OutBuf<'a> {
    /// Over a plain buffer: everything is copied into it.
    pub fn copying(buf: &'a mut BytesMut) -> Self {
        Self { buf, refs: None, ref_bytes: 0 }
    }

    /// Over `buf` with references recorded in `refs` (each at its offset
    /// into `buf`), as the outbox's vectored writer takes them.
    pub fn referencing(buf: &'a mut BytesMut, refs: &'a mut Vec<(usize, Bytes)>) -> Self {
        let ref_bytes = refs.iter().map(|(_, b)| b.len()).sum();
        Self { buf, refs: Some(refs), ref_bytes }
    }

    /// Appends `b`: by reference (sent from where it is) when the writer
    /// sends vectored, else copied into `buf`.
    pub fn put_ref(&mut self, b: Bytes) {
        match &mut self.refs {
            Some(refs) => {
                self.ref_bytes += b.len();
                refs.push((self.buf.len(), b));
            }
            None => self.buf.extend_from_slice(&b),
        }
    }

    /// Bytes queued, both kinds: a position in what will be sent, for
    /// frame lengths.
    pub fn len(&self) -> usize {
        self.buf.len() + self.ref_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
