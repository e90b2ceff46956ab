//! One AMQP connection: protocol header, SASL PLAIN, tune, open; the read
//! loop with heartbeat-based dead-peer detection; connection.close; and the
//! inbox that what the shard has for it waits in.
//!
//! Handlers call the core while they hold the state's borrow
//! (`calls.rs`): the shard never calls into the state during such a call.
//! Replies go to the inbox, and deliveries too whenever the state is
//! borrowed or the inbox holds anything (they must not overtake it);
//! `drain_inbox` handles them once the handler has returned: after each
//! frame, after each read, and in the tick loop, which the shard wakes.

use super::calls::Core;
use super::channel::{ChState, Channels};
use super::reading::{ReadClock, ReadEnd};
use crate::protocol::amqp::frame::{self, Decoded, Frame, FRAME_MIN_SIZE};
use crate::protocol::amqp::method::{self, code, id, Method, MethodId};
use crate::protocol::amqp::wire::put_shortstr;
use crate::rt::reader::{Amqp, FrameReader, ReadError};
use crate::rt::{Notify, Outbox};
use crate::server::shard::conns::EVICTED;
use crate::server::shard::{PromoteError, Shard};
use crate::server::types::{ConnRef, Reply, Request};
use bytes::BufMut;
use futures_lite::AsyncRead;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The largest chunk, read after a wait, whose first publish is handled
/// alone (`read_all`): an unbatched client's burst is a few publishes; a
/// batching client's chunks are larger, and splitting them cost AMQP 16 B
/// throughput 0.85× (docs/benchmarks.md, "The first publish of a burst").
const BURST_BYTES_MAX: usize = 16 * 1024;

/// Request id layout: kind (4 bits), channel (16), sequence (44).
pub const KIND_PUB: u64 = 1;
pub const KIND_OP: u64 = 2;
pub const KIND_IGNORE: u64 = 3;
/// Deletes of exclusive queues that connection.close-ok waits for.
pub const KIND_CLOSE: u64 = 4;
const SEQ_MASK: u64 = (1 << 44) - 1;

pub fn rid(kind: u64, channel: u16, seq: u64) -> u64 {
    kind << 60 | u64::from(channel) << 44 | (seq & SEQ_MASK)
}

/// The parts `rid` packed; the channel is the 16 bits it was given.
#[allow(clippy::cast_possible_truncation)] // bits 44..60 are the u16 channel
pub fn split_rid(rid: u64) -> (u64, u16, u64) {
    (rid >> 60, (rid >> 44) as u16, rid & SEQ_MASK)
}

/// Sequence numbers of each new channel start here, so replies meant for
/// a closed channel never match a reopened one.
const GENERATION: u64 = 1 << 30;

const CHANNEL_MAX: u16 = 2047;
const FRAME_MAX: u32 = 128 * 1024;
pub(super) const HEARTBEAT_S: u16 = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    StartOk,
    TuneOk,
    Open,
    Running,
    /// The server sent connection.close.
    Closing,
    Done,
}

/// An error that ends a channel or the connection.
#[derive(Debug)]
pub enum Fault {
    Conn { code: u16, text: String, cause: MethodId },
    Channel { channel: u16, code: u16, text: String, cause: MethodId },
}

pub fn conn_fault(code: u16, text: impl Into<String>, cause: MethodId) -> Fault {
    Fault::Conn { code, text: text.into(), cause }
}

pub struct ConsumerInfo {
    pub channel: u16,
    pub tag: String,
    pub queue: String,
    pub owner: u16,
    pub no_ack: bool,
    /// consume-ok has gone out: deliveries may follow.
    pub live: bool,
    /// basic.cancel (or its queue went): no more deliveries; its unacked
    /// can still be acked.
    pub cancelled: bool,
    /// `method::deliver_template` for push consumers (empty for basic.get).
    pub deliver: Vec<u8>,
    /// A direct reply-to consumer (`reply_to.rs`): no queue behind it
    /// (`queue` is its generated name), nothing to ack, cancel or requeue.
    pub direct: bool,
}

pub struct State {
    pub phase: Phase,
    pub frame_max: usize,
    pub channel_max: u16,
    pub heartbeat: u16,
    pub cancel_notify: bool,
    pub blocked_cap: bool,
    pub channels: Channels,
    /// Looked up for every delivery batch: ahash, not SipHash (the keys
    /// are our own consumer ids).
    pub consumers: HashMap<u32, ConsumerInfo, ahash::RandomState>,
    pub next_consumer: u32,
    pub next_generation: u64,
    pub next_name: u64,
    /// Exclusive queues this connection declared: (name, owner shard).
    pub exclusive: Vec<(String, u16)>,
    /// Exclusive-queue deletes still unanswered after the client's close.
    pub close_waits: u32,
}

pub struct AmqpConn {
    pub shard: Rc<Shard>,
    me: Cell<Option<ConnRef>>,
    pub peer: Option<SocketAddr>,
    pub outbox: Outbox,
    /// Owners that stopped dispatching to it while its outbox is full.
    pub gate: crate::server::gate::DeliveryGate,
    pub st: RefCell<State>,
    /// What the shard has for this connection, oldest first, until
    /// `drain_inbox` (the module doc).
    pub(super) inbox: RefCell<VecDeque<Reply>>,
    /// Acks to send to queue owners: (consumer id, first, last queue tag).
    pub acks: RefCell<Vec<(u32, u64, u64)>>,
    pub kick: Notify,
    pub(super) done: Cell<bool>,
    /// A local queue whose backlog passed `publish_pause_messages` in the
    /// last read: reading waits (connection.blocked) until it drains.
    pub(super) paused_on: RefCell<Option<String>>,
    /// Queues on other shards whose owners told this connection to pause
    /// (`Reply::PublishPaused`); `resumed` signals each `PublishResumed`.
    pub(super) remote_paused: RefCell<Vec<String>>,
    pub(super) resumed: Notify,
    /// The last read carried a publish: under a resource alarm the
    /// connection then stops being read (`block_if_needed`).
    pub(super) published: Cell<bool>,
    /// The read buffer's capacity, for `held_bytes`.
    pub(super) read_held: Cell<usize>,
    /// `FrameReader::read_totals` as of the last read (operators' traffic).
    pub(super) read_totals: Cell<(u64, u64)>,
    /// Bytes of publishes the channels' open transactions buffer
    /// (`tx.rs`): under `tx_bytes_max`, and in `held_bytes`.
    pub(super) tx_held: Cell<u64>,
    /// Accept time, last byte, the partial frame's first byte: deadlines.
    pub(super) clock: ReadClock,
    /// Promoted from the unauthenticated cap at connection.open.
    pub(super) logged_in: Cell<bool>,
    /// The user's permissions, from login on (`server/grants.rs`).
    pub(super) grants: RefCell<Option<crate::server::grants::Grants>>,
    /// Over TLS with a verified client certificate: the user it names
    /// (`EXTERNAL`), or why it names none.
    pub(super) certificate_login: RefCell<Option<Result<String, crate::server::tls::CertLoginError>>>,
    /// The vhost connection.open named (`/` until then).
    pub(super) vhost: std::cell::OnceCell<String>,
    /// Direct reply-to consumers, at most one a channel; outside the
    /// state, which may be borrowed when the shard asks (`reply_to.rs`).
    pub(super) replies: RefCell<Vec<super::reply_to::ReplyRoute>>,
}

impl AmqpConn {
    pub fn new(shard: Rc<Shard>, peer: Option<SocketAddr>) -> Self {
        let frame_max =
            (shard.config.frame_bytes_max).clamp(crate::protocol::wire::len32(FRAME_MIN_SIZE), FRAME_MAX) as usize;
        Self {
            shard,
            me: Cell::new(None),
            peer,
            outbox: Outbox::default(),
            gate: Default::default(),
            st: RefCell::new(State {
                phase: Phase::StartOk,
                frame_max,
                channel_max: CHANNEL_MAX,
                heartbeat: 0,
                cancel_notify: false,
                blocked_cap: false,
                channels: Channels::default(),
                consumers: HashMap::default(),
                next_consumer: 1,
                next_generation: 1,
                next_name: 1,
                exclusive: Vec::new(),
                close_waits: 0,
            }),
            inbox: RefCell::new(VecDeque::new()),
            acks: RefCell::new(Vec::new()),
            kick: Notify::default(),
            done: Cell::new(false),
            paused_on: RefCell::new(None),
            remote_paused: RefCell::new(Vec::new()),
            resumed: Notify::default(),
            published: Cell::new(false),
            read_held: Cell::new(0),
            read_totals: Cell::new((0, 0)),
            tx_held: Cell::new(0),
            clock: ReadClock::new(),
            logged_in: Cell::new(false),
            grants: RefCell::new(None),
            certificate_login: RefCell::new(None),
            vhost: std::cell::OnceCell::new(),
            replies: RefCell::new(Vec::new()),
        }
    }

    /// The vhost this connection works in.
    pub fn vhost(&self) -> &str {
        self.vhost.get().map_or(crate::routing::vhost::DEFAULT_VHOST, String::as_str)
    }

    /// The core's name for the queue or exchange `name` the client gave:
    /// scoped by the connection's vhost (no copy in `/`).
    #[inline]
    pub fn q<'a>(&self, name: &'a str) -> std::borrow::Cow<'a, str> {
        crate::routing::vhost::qualify(self.vhost(), name)
    }

    /// [`AmqpConn::q`] for an owned name (no copy in `/`).
    #[inline]
    pub fn q_owned(&self, name: String) -> String {
        crate::routing::vhost::qualify_owned(self.vhost(), name)
    }

    /// The TLS handshake verified a client certificate (DER).
    pub fn set_client_certificate(&self, der: &[u8]) {
        let login = crate::server::tls::certificate_login(der, self.shard.config.tls_cert_login_from);
        *self.certificate_login.borrow_mut() = Some(login);
    }

    /// Levels a field table from this peer may nest.
    pub fn table_depth_max(&self) -> usize {
        usize::try_from(self.shard.config.table_depth_max).unwrap_or(usize::MAX)
    }

    pub fn set_ref(&self, me: ConnRef) {
        self.me.set(Some(me));
    }

    pub fn me(&self) -> ConnRef {
        self.me.get().expect("connection registered before reading")
    }

    /// Sends heartbeats every half interval and flushes work queued from
    /// callbacks (auto-acks, requeues), until the connection ends.
    pub async fn tick_loop(&self) {
        let mut last_beat = Instant::now();
        while !self.done.get() {
            let hb = self.st.borrow().heartbeat;
            let every = if hb == 0 { Duration::from_secs(3600) } else { Duration::from_millis(u64::from(hb) * 500) };
            let n = self.kick.notified();
            let _ = glommio::timer::timeout(every, async {
                n.await;
                Ok(())
            })
            .await;
            self.flush_acks();
            self.drain_inbox();
            if hb > 0 && last_beat.elapsed() >= every {
                self.outbox.push(frame::put_heartbeat);
                last_beat = Instant::now();
            }
        }
    }

    /// `fd`: the plain socket under `r`, read directly and through the
    /// ring ([`FrameReader::read_directly`]).
    pub async fn read_loop<R: AsyncRead + Unpin>(&self, mut r: R, fd: Option<std::os::fd::RawFd>) {
        let mut reader = self.new_reader();
        if let Some(fd) = fd {
            reader.read_directly(fd);
        }
        // A writer that broke (send_timeout_ms: the peer stopped reading)
        // ends the read too.
        let read = self.read_all(&mut r, &mut reader);
        let broken = async {
            self.outbox.wait_ended().await;
            Err(if self.outbox.is_stalled() {
                let ms = self.shard.config.send_timeout_ms;
                tracing::warn!(peer = ?self.peer, "closing AMQP connection: it read nothing for send_timeout_ms = {ms}");
                ReadEnd::Stalled(ms)
            } else {
                ReadEnd::WriteEnded
            })
        };
        if let Err(why) = futures_lite::future::or(read, broken).await {
            tracing::debug!(peer = ?self.peer, "AMQP connection ends: {why}");
        }
        self.release();
        self.done.set(true);
        self.kick.notify();
        self.outbox.close();
    }

    /// Reads and handles frames until the connection ends: `Ok` when the
    /// close handshake finished.
    async fn read_all<R: AsyncRead + Unpin>(&self, r: &mut R, reader: &mut FrameReader<Amqp>) -> Result<(), ReadEnd> {
        self.read_protocol_header(r, reader).await?;
        if reader.buffered()[..8] != frame::PROTOCOL_HEADER[..] {
            // Spec 4.2.2: answer with the header we speak, then close.
            self.outbox.push(|b| b.put_slice(frame::PROTOCOL_HEADER));
            return Err(ReadEnd::Read(ReadError::Decode(frame::FrameError::ProtocolHeader)));
        }
        reader.consume(8);
        self.clock.header_done.set(true);
        self.outbox.push(|b| self.put_start(b));
        // After a read that waited and brought a small chunk (an unbatched
        // client's burst, up to BURST_BYTES_MAX), the chunk's first publish
        // is routed and its delivery written before the rest is handled:
        // the burst reaches a sleeping shard all at once, and its first
        // message would otherwise wait for the whole burst.
        let mut first_alone = false;
        loop {
            // The frames are handled where they lie in the reader's buffer.
            let buf = reader.buffered();
            let mut used = 0;
            let mut split = false;
            loop {
                let frame_max = self.frame_limit();
                if let Some(n) = self.whole_publish(&buf[used..], frame_max) {
                    used += n;
                    self.drain_inbox();
                    if first_alone && used < buf.len() {
                        first_alone = false;
                        split = true;
                        break;
                    }
                    continue;
                }
                match frame::decode(&buf[used..], frame_max) {
                    Ok(Decoded::Incomplete) => break,
                    Ok(Decoded::Frame(f, n)) => {
                        used += n;
                        if let Err(fault) = self.on_frame(f) {
                            self.fail(fault);
                        }
                        self.drain_inbox();
                    }
                    Err(e) => {
                        self.frame_fault(e);
                        used = buf.len();
                        break;
                    }
                }
                if self.st.borrow().phase == Phase::Done {
                    return Ok(());
                }
            }
            reader.consume(used);
            self.end_of_chunk();
            if self.st.borrow().phase == Phase::Done || self.outbox.is_broken() {
                return Ok(());
            }
            if split {
                // The rest is still buffered: let the writers run, then
                // handle it without reading.
                futures_lite::future::yield_now().await;
                continue;
            }
            // A read the kernel answers at once never returns Pending: let
            // the writer, the mesh and other connections run between chunks,
            // or a busy publisher starves them (acks and deliveries from
            // other shards, and its own forwarded publishes, wait). A read
            // that waited already let them run: no timer for it (a timer
            // submitted and cancelled per small read was most of a chatty
            // client's cost).
            let held = Instant::now();
            if !reader.waited() {
                crate::rt::yield_to_reactor().await;
            }
            self.outbox.wait_below(self.shard.config.outbox_bytes_max as usize).await;
            self.shard.wait_for_space().await;
            self.shard.wait_log_space().await;
            self.block_if_needed().await;
            self.read_held.set(reader.held_bytes());
            self.read_totals.set(reader.read_totals());
            // Time the broker held back from reading is not the peer's.
            reader.excuse(held.elapsed());
            match self.read_more(r, reader).await {
                Ok(()) => first_alone = reader.waited() && reader.buffered().len() <= BURST_BYTES_MAX,
                // The front frame's header is bad or over the limit: as
                // when decoding finds it, close and drop what was read.
                Err(ReadError::Decode(e)) => {
                    self.frame_fault(e);
                    reader.consume(reader.buffered().len());
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Flushes publish batches and acks gathered from one read.
    fn end_of_chunk(&self) {
        self.flush_batches();
        self.flush_acks();
        self.drain_inbox();
    }

    fn flush_batches(&self) {
        let mut st = self.st.borrow_mut();
        let core = Core::new(self, !st.consumers.is_empty());
        for (&ch, c) in st.channels.iter_mut() {
            super::publish::flush_batch(ch, c, &core);
        }
    }

    /// An exclusive queue's delete after the client's close was answered.
    pub fn close_wait_done(&self) {
        let mut st = self.st.borrow_mut();
        st.close_waits = st.close_waits.saturating_sub(1);
        if st.close_waits == 0 && st.phase == Phase::Closing {
            self.outbox.push(|b| method::put(b, 0, id::CONNECTION_CLOSE_OK, |_| ()));
        }
    }

    /// Sends the close for a fault and applies its consequences.
    pub fn fail(&self, fault: Fault) {
        match fault {
            Fault::Conn { code, text, cause } => {
                if self.logged_in.get() || self.shard.conns.may_log_unauthenticated() {
                    tracing::info!(peer = ?self.peer, code, "closing AMQP connection: {text}");
                }
                let mut st = self.st.borrow_mut();
                if matches!(st.phase, Phase::Closing | Phase::Done) {
                    return;
                }
                self.replies.borrow_mut().clear();
                // Before open-ok, there is nothing to wait for: just close.
                let handshaking = matches!(st.phase, Phase::StartOk | Phase::TuneOk | Phase::Open);
                st.phase = if handshaking { Phase::Done } else { Phase::Closing };
                self.outbox.push(|b| method::put_close(b, 0, id::CONNECTION_CLOSE, code, &text, cause));
            }
            Fault::Channel { channel, code, text, cause } => {
                tracing::debug!(peer = ?self.peer, channel, code, "closing AMQP channel: {text}");
                let mut st = self.st.borrow_mut();
                let core = Core::new(self, !st.consumers.is_empty());
                super::handlers::release_channel(&mut st, channel, &core, &self.acks);
                if let Some(ch) = st.channels.get_mut(&channel) {
                    ch.state = ChState::Closing;
                }
                self.outbox.push(|b| method::put_close(b, channel, id::CHANNEL_CLOSE, code, &text, cause));
            }
        }
    }

    fn on_frame(&self, f: Frame<'_>) -> Result<(), Fault> {
        let phase = self.st.borrow().phase;
        if f.kind == frame::HEARTBEAT {
            return if f.channel == 0 {
                Ok(())
            } else {
                Err(conn_fault(code::FRAME_ERROR, "heartbeat on a channel other than 0", (0, 0)))
            };
        }
        if phase == Phase::Closing {
            // Only the close handshake matters now.
            if f.kind == frame::METHOD && f.channel == 0 {
                match method::parse_limited(f.payload, self.table_depth_max()) {
                    Ok((id::CONNECTION_CLOSE_OK, _)) => self.st.borrow_mut().phase = Phase::Done,
                    Ok((id::CONNECTION_CLOSE, _)) => {
                        self.outbox.push(|b| method::put(b, 0, id::CONNECTION_CLOSE_OK, |_| ()));
                        self.st.borrow_mut().phase = Phase::Done;
                    }
                    _ => {}
                }
            }
            return Ok(());
        }
        if f.channel != 0 {
            if phase != Phase::Running {
                return Err(conn_fault(code::CHANNEL_ERROR, "channel frame before connection.open", (0, 0)));
            }
            return super::handlers::on_channel_frame(self, f);
        }
        if f.kind != frame::METHOD {
            return Err(conn_fault(code::UNEXPECTED_FRAME, "content frame on channel 0", (0, 0)));
        }
        let (mid, m) = method::parse_limited(f.payload, self.table_depth_max())
            .map_err(|e| conn_fault(code::SYNTAX_ERROR, e.to_string(), (0, 0)))?;
        if mid.0 != 10 {
            return Err(conn_fault(code::COMMAND_INVALID, format!("method {mid:?} on channel 0"), mid));
        }
        match (phase, m) {
            (Phase::StartOk, Method::StartOk { client_props, mechanism, response }) => {
                self.start_ok(client_props, mechanism, response)
            }
            (Phase::TuneOk, Method::TuneOk { channel_max, frame_max, heartbeat }) => {
                let mut st = self.st.borrow_mut();
                if channel_max > 0 {
                    st.channel_max = channel_max.min(CHANNEL_MAX);
                }
                if frame_max > 0 {
                    let frame_max = usize::try_from(frame_max).unwrap_or(usize::MAX);
                    if frame_max < FRAME_MIN_SIZE {
                        return Err(conn_fault(code::NOT_ALLOWED, "frame_max below 4096", mid));
                    }
                    st.frame_max = st.frame_max.min(frame_max);
                }
                st.heartbeat = heartbeat;
                st.phase = Phase::Open;
                drop(st);
                self.kick.notify();
                Ok(())
            }
            (Phase::Open, Method::Open { vhost }) => {
                self.open_vhost(vhost)?;
                // Logged in: from the unauthenticated cap to connections_per_shard_max.
                match self.shard.conns.promote(self.me()) {
                    Ok(()) => {}
                    Err(PromoteError::ConnectionLimit) => {
                        let max = self.shard.config.connections_per_shard_max;
                        let text = format!("connections_per_shard_max = {max} reached");
                        return Err(conn_fault(code::NOT_ALLOWED, text, mid));
                    }
                    Err(PromoteError::Evicted) => {
                        return Err(conn_fault(code::CONNECTION_FORCED, format!("CONNECTION_FORCED - {EVICTED}"), mid));
                    }
                }
                self.logged_in.set(true);
                self.st.borrow_mut().phase = Phase::Running;
                self.outbox.push(|b| method::put(b, 0, id::CONNECTION_OPEN_OK, |b| put_shortstr(b, "")));
                Ok(())
            }
            (Phase::Running, Method::Close { code, text }) => {
                tracing::debug!(peer = ?self.peer, code, "client closes the connection: {text}");
                // Exclusive queues are gone by the time close-ok goes out
                // (after this connection's publishes to them), and its
                // direct reply-to names reach nobody from now on.
                self.replies.borrow_mut().clear();
                self.flush_batches();
                let mut st = self.st.borrow_mut();
                // The client closes the socket once it has read close-ok;
                // closing first could reset the connection under its read.
                st.phase = Phase::Closing;
                let exclusive = std::mem::take(&mut st.exclusive);
                st.close_waits = crate::protocol::wire::len32(exclusive.len());
                if exclusive.is_empty() {
                    self.outbox.push(|b| method::put(b, 0, id::CONNECTION_CLOSE_OK, |_| ()));
                }
                drop(st);
                for (queue, owner) in exclusive {
                    let req = Request::Delete { if_empty: false, if_unused: false, queue };
                    self.shard.submit(self.me(), rid(KIND_CLOSE, 0, 0), owner, req);
                }
                Ok(())
            }
            (Phase::Running, Method::Other(id::CONNECTION_BLOCKED | id::CONNECTION_UNBLOCKED)) => Ok(()),
            (Phase::Running, Method::Other(other)) if other.0 == 10 => {
                Err(conn_fault(code::NOT_IMPLEMENTED, format!("connection method {other:?} is not implemented"), other))
            }
            _ => Err(conn_fault(code::UNEXPECTED_FRAME, format!("method {mid:?} is not expected now"), mid)),
        }
    }

    /// Gives the connection's consumers and exclusive queues back to their
    /// owners: unacked messages are requeued, exclusive queues deleted.
    fn release(&self) {
        self.end_of_chunk();
        let queues: Vec<(u16, String)> = {
            let mut st = self.st.borrow_mut();
            // Direct reply-to consumers have no queue to release.
            self.replies.borrow_mut().clear();
            let consumers =
                std::mem::take(&mut st.consumers).into_values().filter(|c| !c.direct).map(|c| (c.owner, c.queue));
            let exclusive = std::mem::take(&mut st.exclusive).into_iter().map(|(q, owner)| (owner, q));
            let queues = consumers.chain(exclusive).collect();
            st.channels.clear();
            queues
        };
        // The state is free: deliveries made meanwhile go nowhere (the
        // consumers are gone), replies to the inbox, never read again.
        self.shard.release_connection(self.me(), self.logged_in.get(), rid(KIND_IGNORE, 0, 0), queues);
    }

    /// Allocates a consumer id and a sequence base for a new channel.
    pub fn new_generation(st: &mut State) -> u64 {
        let g = st.next_generation;
        st.next_generation += 1;
        (g * GENERATION) & SEQ_MASK
    }
}
