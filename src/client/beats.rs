//! Heartbeats for the blocking client, which has no task to send them: a
//! thread writes a beat (an unsolicited Pong, request id 0) whenever the
//! connection has written nothing for half the negotiated interval. The
//! connection's own writes go through the same writer, which lets one
//! writer at a time at the socket (over TLS, through the one rustls
//! session), so frames never interleave.

use super::dial::SyncWriter;
use crate::protocol::{Cmd, Frame};
use bytes::BytesMut;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

struct Shared {
    writer: SyncWriter,
    stop: AtomicBool,
    epoch: Instant,
    /// Milliseconds after `epoch` of the last write.
    last_write_ms: AtomicU64,
}

impl Shared {
    fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes)?;
        self.last_write_ms
            .store(u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
        Ok(())
    }
}

pub struct Beater {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Beater {
    /// Starts beating through `writer` every `heartbeat_ms / 2` of idleness.
    pub fn start(writer: SyncWriter, heartbeat_ms: u32) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            writer,
            stop: AtomicBool::new(false),
            epoch: Instant::now(),
            last_write_ms: AtomicU64::new(0),
        });
        let s = shared.clone();
        let half = u64::from(heartbeat_ms / 2).max(1);
        let thread = std::thread::Builder::new().name("ringmq-beats".into()).spawn(move || {
            let mut beat = BytesMut::new();
            Frame { request_id: 0, cmd: Cmd::Pong }.encode(&mut beat);
            loop {
                std::thread::park_timeout(Duration::from_millis(half));
                if s.stop.load(Ordering::Relaxed) {
                    return;
                }
                let idle = u64::try_from(s.epoch.elapsed().as_millis())
                    .unwrap_or(u64::MAX)
                    .saturating_sub(s.last_write_ms.load(Ordering::Relaxed));
                if idle >= half && s.write(&beat).is_err() {
                    return;
                }
            }
        })?;
        Ok(Self { shared, thread: Some(thread) })
    }

    /// Writes the connection's own bytes.
    pub fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.shared.write(bytes)
    }
}

impl Drop for Beater {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}
