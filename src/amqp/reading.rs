//! How an AMQP connection reads its socket: bounded buffers and absolute
//! deadlines (docs/security.md).
//!
//! - Before connection.open the buffer stays under `handshake_bytes_max`:
//!   frames are decoded against the smaller of it and frame_max, and reads
//!   are small. After it, the buffer holds at most one partial frame of
//!   frame_max plus one read.
//! - Deadlines never restart per read, so trickled bytes cannot extend
//!   them: the whole handshake (protocol header through connection.open)
//!   within `handshake_timeout_ms` of accept; a started frame within
//!   `frame_timeout_ms` of its first byte; with heartbeats, a peer silent
//!   for two intervals is dead.

use super::conn::{conn_fault, AmqpConn, Phase};
use crate::protocol::amqp::frame::FRAME_MIN_SIZE;
use crate::protocol::amqp::method::code;
use crate::rt::reader::{next_window, HANDSHAKE_READ_BYTES, READ_BYTES};
use bytes::BytesMut;
use futures_lite::{AsyncRead, AsyncReadExt};
use std::cell::Cell;
use std::time::{Duration, Instant};

/// How long a closing connection waits for the client's close-ok.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// When bytes arrived, for the deadlines.
pub struct ReadClock {
    pub accepted_at: Instant,
    /// The protocol header arrived (connection.start went out): before
    /// it, the peer is not known to speak AMQP and hears no close.
    pub header_done: Cell<bool>,
    pub last_byte: Cell<Instant>,
    /// The first byte of the partial frame in the buffer (`None`: no partial frame).
    pub frame_started: Cell<Option<Instant>>,
    /// The next read's size after login (see `reader::next_window`).
    window: Cell<usize>,
    /// When the broker's connection.close went out: close-ok is awaited
    /// for `CLOSE_WAIT` from then, not per read.
    closing_since: Cell<Option<Instant>>,
}

impl ReadClock {
    pub fn new() -> Self {
        let now = Instant::now();
        Self {
            accepted_at: now,
            header_done: Cell::new(false),
            last_byte: Cell::new(now),
            frame_started: Cell::new(None),
            window: Cell::new(HANDSHAKE_READ_BYTES),
            closing_since: Cell::new(None),
        }
    }

    /// After the buffer's whole frames were handled: `left` bytes remain;
    /// `consumed` says whether any frame was. When one was, the rest
    /// arrived with the last read (the frame before it ended there).
    pub fn after_frames(&self, left: usize, consumed: bool) {
        let started = match (left, consumed, self.frame_started.get()) {
            (0, _, _) => None,
            (_, false, Some(t)) => Some(t),
            _ => Some(self.last_byte.get()),
        };
        self.frame_started.set(started);
    }
}

impl ReadClock {
    /// The broker did not read for `held` (back pressure): that time does
    /// not count against the peer's frame deadline, and the peer counts as
    /// heard from now (its bytes may be waiting unread).
    pub fn excuse(&self, held: Duration) {
        if held.is_zero() {
            return;
        }
        self.frame_started.set(self.frame_started.get().map(|t| t + held));
        self.last_byte.set(Instant::now());
    }
}

impl Default for ReadClock {
    fn default() -> Self {
        Self::new()
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

impl AmqpConn {
    fn handshaking(&self) -> bool {
        !matches!(self.st.borrow().phase, Phase::Running | Phase::Closing | Phase::Done)
    }

    /// The frame size decoding allows now: bounded by the handshake budget
    /// until connection.open.
    pub(super) fn frame_limit(&self) -> usize {
        let frame_max = self.st.borrow().frame_max.max(FRAME_MIN_SIZE);
        if self.handshaking() {
            frame_max.min(self.shard.config.handshake_bytes_max as usize)
        } else {
            frame_max
        }
    }

    fn read_deadline(&self) -> Option<Instant> {
        let c = &self.shard.config;
        let st = self.st.borrow();
        let clock = &self.clock;
        match st.phase {
            Phase::StartOk | Phase::TuneOk | Phase::Open => Some(clock.accepted_at + ms(c.handshake_timeout_ms)),
            Phase::Closing => {
                let since = clock.closing_since.get().unwrap_or_else(Instant::now);
                clock.closing_since.set(Some(since));
                Some(since + CLOSE_WAIT)
            }
            Phase::Done => Some(Instant::now()),
            Phase::Running => {
                let frame = clock.frame_started.get().map(|t| t + ms(c.frame_timeout_ms));
                let hb = u64::from(st.heartbeat);
                // Two missed heartbeats: the peer is dead.
                let silent = (hb > 0).then(|| clock.last_byte.get() + Duration::from_secs(hb * 2));
                match (frame, silent) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        }
    }

    /// Reads more bytes into `buf`; `Err` ends the connection (after a
    /// connection.close to the peer where one helps it understand).
    pub(super) async fn read_more<R: AsyncRead + Unpin>(&self, r: &mut R, buf: &mut BytesMut) -> Result<(), ReadEnd> {
        let start = buf.len();
        let deadline = self.read_deadline();
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(self.timed_out(start));
        }
        let want = if self.handshaking() { HANDSHAKE_READ_BYTES } else { self.clock.window.get() };
        buf.resize(start + want, 0);
        let res = match deadline {
            None => r.read(&mut buf[start..]).await,
            Some(d) => {
                let t = d.saturating_duration_since(Instant::now());
                match glommio::timer::timeout(t, async { Ok(r.read(&mut buf[start..]).await) }).await {
                    Ok(res) => res,
                    Err(_) => {
                        buf.truncate(start);
                        return Err(self.timed_out(start));
                    }
                }
            }
        };
        match res {
            Ok(0) => {
                buf.truncate(start);
                Err(ReadEnd::PeerClosed)
            }
            Ok(n) => {
                buf.truncate(start + n);
                // Grows while reads fill it, never shrinks: the buffer is
                // reused (its capacity stays), so a smaller read saves no
                // memory and only costs a busy connection more reads.
                if n >= want {
                    self.clock.window.set(next_window(want, n, READ_BYTES));
                }
                let now = Instant::now();
                self.clock.last_byte.set(now);
                if start == 0 {
                    self.clock.frame_started.set(Some(now));
                }
                Ok(())
            }
            Err(e) => {
                buf.truncate(start);
                Err(ReadEnd::Io(e))
            }
        }
    }

    /// Says which deadline passed: to the log, and to the peer when it
    /// can still hear it.
    fn timed_out(&self, buffered: usize) -> ReadEnd {
        let c = &self.shard.config;
        let phase = self.st.borrow().phase;
        let (why, tell) = match phase {
            Phase::StartOk | Phase::TuneOk | Phase::Open => (
                format!("handshake not done within handshake_timeout_ms = {}", c.handshake_timeout_ms),
                self.clock.header_done.get(),
            ),
            Phase::Running if buffered > 0 && self.frame_overdue() => (
                format!(
                    "a frame did not arrive whole within frame_timeout_ms = {} of its first byte",
                    c.frame_timeout_ms
                ),
                true,
            ),
            Phase::Running => {
                let hb = self.st.borrow().heartbeat;
                (format!("missed heartbeats: nothing received for two intervals of {hb} s"), false)
            }
            _ => ("no close-ok from the peer".to_string(), false),
        };
        // With `tell`, `fail` logs it.
        if phase != Phase::Closing && !tell && (self.logged_in.get() || self.shard.conns.may_log_unauthenticated()) {
            tracing::warn!(peer = ?self.peer, "closing AMQP connection: {why}");
        }
        if tell {
            self.fail(conn_fault(code::FRAME_ERROR, why.clone(), (0, 0)));
        }
        ReadEnd::Deadline(why)
    }

    fn frame_overdue(&self) -> bool {
        let t = ms(self.shard.config.frame_timeout_ms);
        self.clock.frame_started.get().is_some_and(|s| Instant::now() >= s + t)
    }
}

/// Why a connection's reading ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReadEnd {
    #[error("peer closed")]
    PeerClosed,
    #[error("not an AMQP 0-9-1 protocol header")]
    NotAmqp,
    #[error("{0}")]
    Io(std::io::Error),
    /// A deadline passed: which one, in words.
    #[error("{0}")]
    Deadline(String),
    #[error("no write progress within send_timeout_ms = {0}")]
    Stalled(u64),
    #[error("write failed, or the shard ended the connection")]
    WriteEnded,
}
