//! How an AMQP connection reads its socket: through the shared
//! [`FrameReader`] with the [`Amqp`] framing, in place (frames are handled
//! where they lie in the reader's buffer), with bounded buffers and
//! absolute deadlines (docs/security.md). The read loop is
//! `AmqpConn::read_all` (conn.rs); it ends with an [`AmqpReadError`].
//!
//! - Before connection.open the reader's limit is the smaller of
//!   `handshake_bytes_max` and frame_max, checked from a frame's header
//!   before its body is read, and reads are small. After it, the buffer
//!   holds at most one partial frame of frame_max plus one read.
//! - Deadlines never restart per read, so trickled bytes cannot extend
//!   them: the whole handshake (protocol header through connection.open)
//!   within `handshake_timeout_ms` of accept; a started frame within
//!   `frame_timeout_ms` of its first byte; with heartbeats, a peer silent
//!   for two intervals is dead. The reader's [`Clock`] keeps the last
//!   byte and the partial frame's first; [`ReadClock`] the rest.

use super::conn::{conn_fault, AmqpConn, Phase};
use crate::protocol::amqp::frame::{FrameError, FRAME_MIN_SIZE, PROTOCOL_HEADER};
use crate::protocol::amqp::method::code;
use crate::rt::reader::{Amqp, Clock, FrameReader, ReadError, HANDSHAKE_READ_BYTES, READ_BYTES};
use futures_lite::AsyncRead;
use std::cell::Cell;
use std::time::{Duration, Instant};

/// How long a closing connection waits for the client's close-ok.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// How a read of this connection ends it: the reader's error, with AMQP's
/// framing error ([`FrameError::ProtocolHeader`] for a peer that does not
/// open with AMQP 0-9-1's header).
pub type AmqpReadError = ReadError<FrameError>;

/// Why a connection's reading ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReadEnd {
    /// The reader's end: the peer closed, a deadline passed, the socket
    /// failed, or the peer did not open with AMQP 0-9-1's header.
    #[error("{0}")]
    Read(#[from] AmqpReadError),
    #[error("no write progress within send_timeout_ms = {0}")]
    Stalled(u64),
    #[error("write failed, or the shard ended the connection")]
    WriteEnded,
}

/// What the deadlines need beyond the reader's [`Clock`] (last byte, the
/// partial frame's first byte).
pub struct ReadClock {
    pub accepted_at: Instant,
    /// The protocol header arrived (connection.start went out): before
    /// it, the peer is not known to speak AMQP and hears no close.
    pub header_done: Cell<bool>,
    /// When the broker's connection.close went out: close-ok is awaited
    /// for `CLOSE_WAIT` from then, not per read.
    closing_since: Cell<Option<Instant>>,
}

impl ReadClock {
    pub fn new() -> Self {
        Self { accepted_at: Instant::now(), header_done: Cell::new(false), closing_since: Cell::new(None) }
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

    /// A reader for a new connection: frames bounded by the handshake
    /// budget, handshake-sized reads.
    pub(super) fn new_reader(&self) -> FrameReader<Amqp> {
        FrameReader::new(self.frame_limit(), HANDSHAKE_READ_BYTES)
    }

    fn read_deadline(&self, clock: &Clock) -> Option<Instant> {
        let c = &self.shard.config;
        let st = self.st.borrow();
        match st.phase {
            Phase::StartOk | Phase::TuneOk | Phase::Open => Some(self.clock.accepted_at + ms(c.handshake_timeout_ms)),
            Phase::Closing => {
                let since = self.clock.closing_since.get().unwrap_or_else(Instant::now);
                self.clock.closing_since.set(Some(since));
                Some(since + CLOSE_WAIT)
            }
            Phase::Done => Some(Instant::now()),
            Phase::Running => {
                let frame = clock.frame_started.map(|t| t + ms(c.frame_timeout_ms));
                let hb = u64::from(st.heartbeat);
                // Two missed heartbeats: the peer is dead.
                let silent = (hb > 0).then(|| clock.last_byte + Duration::from_secs(hb * 2));
                match (frame, silent) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        }
    }

    /// Reads the 8-byte protocol header; `Ok` once it is buffered (at the
    /// reader's front), whatever it says.
    pub(super) async fn read_protocol_header<R: AsyncRead + Unpin>(
        &self,
        r: &mut R,
        reader: &mut FrameReader<Amqp>,
    ) -> Result<(), AmqpReadError> {
        let res = reader.read_at_least(r, PROTOCOL_HEADER.len(), |c| self.read_deadline(c)).await;
        self.read_ended(res, reader)
    }

    /// Reads until a whole frame is buffered, within the limits of the
    /// connection's phase (the handshake budget and small reads until
    /// connection.open). `Err` ends the connection, after a
    /// connection.close to the peer where one helps it understand; except
    /// [`ReadError::Decode`], which the caller answers (`frame_fault`).
    pub(super) async fn read_more<R: AsyncRead + Unpin>(
        &self,
        r: &mut R,
        reader: &mut FrameReader<Amqp>,
    ) -> Result<(), AmqpReadError> {
        let read_bytes = if self.handshaking() { HANDSHAKE_READ_BYTES } else { READ_BYTES };
        reader.set_limits(self.frame_limit(), read_bytes);
        let res = reader.fill_in_place(r, |c| self.read_deadline(c)).await;
        self.read_ended(res, reader)
    }

    fn read_ended(&self, res: Result<(), AmqpReadError>, reader: &FrameReader<Amqp>) -> Result<(), AmqpReadError> {
        if let Err(ReadError::Timeout { buffered }) = res {
            self.timed_out(buffered, &reader.clock());
        }
        res
    }

    /// Closes the connection (501 FRAME_ERROR) for a framing error.
    pub(super) fn frame_fault(&self, e: FrameError) {
        let text = match e {
            FrameError::TooLarge { size, max } if self.st.borrow().phase != Phase::Running => {
                format!("frame of {size} bytes before connection.open exceeds {max} (handshake_bytes_max or frame_max)")
            }
            e => e.to_string(),
        };
        self.fail(conn_fault(code::FRAME_ERROR, text, (0, 0)));
    }

    /// Says which deadline passed: to the log, and to the peer when it
    /// can still hear it.
    fn timed_out(&self, buffered: usize, clock: &Clock) {
        let c = &self.shard.config;
        let phase = self.st.borrow().phase;
        let (why, tell) = match phase {
            Phase::StartOk | Phase::TuneOk | Phase::Open => (
                format!("handshake not done within handshake_timeout_ms = {}", c.handshake_timeout_ms),
                self.clock.header_done.get(),
            ),
            Phase::Running if buffered > 0 && self.frame_overdue(clock) => (
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
            self.fail(conn_fault(code::FRAME_ERROR, why, (0, 0)));
        }
    }

    fn frame_overdue(&self, clock: &Clock) -> bool {
        let t = ms(self.shard.config.frame_timeout_ms);
        clock.frame_started.is_some_and(|s| Instant::now() >= s + t)
    }
}
