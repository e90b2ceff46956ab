//! A connection's socket tasks: the writer draining the shared buffer
//! (every request of a turn in one write), the beat task, and the reader
//! cutting whole frames into chunks for `on_frame`. Each belongs to one
//! socket (`gen`) and stops when a redial replaces it.

use super::{lock, Conn};
use crate::client::dial::io_error;
use crate::client::tokio::io::{Reader, Writer};
use crate::client::{ClientError, Result};
use crate::protocol::frame::peek_len;
use crate::protocol::{Cmd, Frame};
use bytes::{Bytes, BytesMut};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

impl Conn {
    pub(super) async fn write_loop(self: Arc<Self>, mut w: Writer, gen: u64) {
        let mut spare = BytesMut::with_capacity(64 * 1024);
        loop {
            let kicked = self.kick.notified();
            self.queue_acks();
            let (closing, n) = {
                let mut o = lock(&self.out);
                // A later socket replaced this one: it is dropped unwritten.
                if self.gen.load(Ordering::Acquire) != gen {
                    return;
                }
                std::mem::swap(&mut o.buf, &mut spare);
                // While recovery is under way publishers keep waiting.
                self.queued.store(if self.down.load(Ordering::Acquire) { usize::MAX } else { 0 }, Ordering::Relaxed);
                (o.closing, o.pushes)
            };
            if !spare.is_empty() {
                if let Err(e) = w.write_all(&spare).await {
                    self.on_error(gen, io_error(e));
                    if self.gen.load(Ordering::Acquire) != gen {
                        return;
                    }
                    break;
                }
                spare.clear();
                lock(&self.out).written = n;
                self.wrote.notify_waiters();
                continue;
            }
            if closing {
                break;
            }
            kicked.await;
        }
        w.shutdown().await;
        {
            let mut o = lock(&self.out);
            o.finished = true;
            o.closing = true;
        }
        self.wrote.notify_waiters();
    }

    /// Beats (an unsolicited Pong, request id 0) every half interval in
    /// which nothing else was sent, until the connection closes.
    pub(super) async fn beat_loop(self: Arc<Self>, gen: u64) {
        let half = Duration::from_millis(u64::from(self.info.heartbeat_ms) / 2);
        let mut seen = lock(&self.out).pushes;
        let current = || self.gen.load(Ordering::Acquire) == gen && !self.is_closed();
        while current() {
            tokio::time::sleep(half).await;
            if lock(&self.out).pushes == seen && current() {
                let _ = self.send_raw(0, None, |b| Frame { request_id: 0, cmd: Cmd::Pong }.encode(b));
            }
            seen = lock(&self.out).pushes;
        }
    }

    pub(super) async fn read_loop(self: Arc<Self>, mut r: Reader, mut buf: BytesMut, gen: u64) {
        let hb = u64::from(self.info.heartbeat_ms);
        let frame_max = self.info.frame_bytes_max as usize;
        let err = loop {
            // Whole frames at the front go out as one chunk: deliveries
            // are slices of it, no copy per message.
            let mut whole = 0;
            let bad = loop {
                match peek_len(&buf[whole..], frame_max) {
                    Ok(Some(len)) if whole + len <= buf.len() => whole += len,
                    Ok(_) => break None,
                    Err(e) => break Some(ClientError::Protocol(e.to_string())),
                }
            };
            // A later socket replaced this one: what it still brings is
            // of the old session (tags, replies) and is dropped.
            if self.gen.load(Ordering::Relaxed) != gen {
                return;
            }
            if whole > 0 {
                let chunk = buf.split_to(whole).freeze();
                if let Err(e) = self.on_chunk(&chunk) {
                    break e;
                }
            }
            if let Some(e) = bad {
                break e;
            }
            // With heartbeats, a broker silent for two intervals is gone.
            let read = if hb > 0 {
                match tokio::time::timeout(Duration::from_millis(2 * hb), r.read_into(&mut buf)).await {
                    Ok(n) => n,
                    Err(_) => {
                        break ClientError::Closed(format!(
                            "nothing from the broker for two heartbeat intervals ({hb} ms)"
                        ))
                    }
                }
            } else {
                r.read_into(&mut buf).await
            };
            match read {
                Ok(0) if buf.is_empty() => break ClientError::Closed("the broker closed the connection".into()),
                Ok(0) => break ClientError::Closed(format!("the broker closed inside a frame ({} bytes)", buf.len())),
                Ok(_) => {}
                Err(e) => break io_error(e),
            }
        };
        self.on_error(gen, err);
    }

    fn on_chunk(&self, chunk: &Bytes) -> Result<()> {
        let mut off = 0;
        while off < chunk.len() {
            let (f, len) = match crate::protocol::decode(&chunk[off..], self.info.frame_bytes_max as usize) {
                Ok(crate::protocol::Decoded::Frame(f, len)) => (f, len),
                Ok(crate::protocol::Decoded::Incomplete) => {
                    return Err(ClientError::Protocol("a frame shorter than its length".into()))
                }
                Err(e) => return Err(ClientError::Protocol(e.to_string())),
            };
            off += len;
            self.on_frame(chunk, f)?;
        }
        Ok(())
    }
}
