//! The native front end: a connection reads, decodes and checks each
//! frame, then asks the core for it (`server::shard`'s client operations,
//! which go to the queue's owner, here or over the mesh).
//!
//! | piece | module |
//! |---|---|
//! | the listener: accept, register, the connection's tasks | [`accept`] |
//! | the connection: read loop, requests, consumer routes | this file |
//! | the commands: queue declare, publish (direct or through an exchange), exchange declare, bind, subscribe, get | `cmds` |
//! | what the shard hands the connection: replies, deliveries, evictions | `sink` |
//! | handshake, login, heartbeats, read deadlines | `session` |
//! | replies and deliveries into native frames | `encode` |

// Lengths and counts narrowed with `as` could wrap silently: here each
// narrowing says how (`protocol::wire::{len32, saturate}`, or an `allow`
// with the reason).
#![deny(clippy::cast_possible_truncation)]

pub mod accept;
mod cmds;
mod encode;
mod reply_to;

mod session;
mod sink;

pub use accept::accept_loop;
pub use encode::{encode_reply, DeliverLimits};

use crate::auth::permissions::Perm;
use crate::protocol::{self, op, Cmd, ErrorCode, Frame, StreamAt};
use crate::rt::reader::{for_each_frame_limited, FrameReader, Native, HANDSHAKE_READ_BYTES, READ_BYTES};
use crate::rt::{Notify, Outbox};
use crate::server::gate::DeliveryGate;
use crate::server::grants::{Grants, Kind};
use crate::server::ops::queue_name_ok;
use crate::server::shard::routing_replica::check_exchange_name;
use crate::server::shard::Shard;
use crate::server::types::{ConnRef, QueueError, Reply, Request, StreamOffset, StreamStart};
use bytes::Bytes;
use encode::{clip, frame};
use futures_lite::AsyncRead;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

/// Why the read loop ended with an error the client should hear about.
struct Fatal {
    request_id: u64,
    code: ErrorCode,
    message: String,
}

impl Fatal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { request_id: 0, code, message: message.into() }
    }
}

/// A consumer id this connection has opened, and where its queue lives.
struct ConsumerRoute {
    queue: String,
    owner: u16,
    pull: bool,
    /// It asked for the exchange and routing key with its deliveries
    /// (`SUBSCRIBE_ORIGIN`): the queue's name as the client gave it (the
    /// routing key of what came through the default exchange).
    origin: Option<Rc<str>>,
}

pub struct NativeConn {
    pub shard: Rc<Shard>,
    me: Cell<Option<ConnRef>>,
    peer: String,
    pub outbox: Outbox,
    /// Owners that stopped dispatching to it while its outbox is full.
    pub gate: DeliveryGate,
    handshaken: Cell<bool>,
    /// When the socket was accepted: the handshake deadline counts from here.
    accepted_at: Instant,
    /// Promoted from the unauthenticated cap to `connections_per_shard_max`.
    logged_in: Cell<bool>,
    /// What the user's tags allow with `Admin` (`ringmq ctl`).
    access: Cell<crate::auth::Access>,
    /// The user's permissions, from login on (`server/grants.rs`).
    grants: RefCell<Option<Grants>>,
    /// The negotiated heartbeat (0 = none), and the beat task's wake-up.
    heartbeat_ms: Cell<u32>,
    beat_kick: Notify,
    consumers: RefCell<HashMap<u32, ConsumerRoute>>,
    /// A consumer of this connection asked for exchange and routing key
    /// (`SUBSCRIBE_ORIGIN`): deliveries look their consumer up. Never set,
    /// they cost nothing more.
    origin_wanted: Cell<bool>,
    /// A queue on this shard whose backlog passed `publish_pause_messages`
    /// in the last chunk: reading waits until it drains.
    paused_on: RefCell<Option<String>>,
    /// Queues on another shard or node that told this connection to pause
    /// its publishes (`Reply::PublishPaused`), until `PublishResumed`.
    remote_paused: RefCell<Vec<String>>,
    remote_resumed: Notify,
    /// An `Admin` request of this connection is in flight.
    admin_busy: Rc<Cell<bool>>,
    /// Subscribe and first-Get requests in flight, so a refused one frees
    /// the consumer id it claimed.
    pending_routes: RefCell<HashMap<u64, u32>>,
    /// The last read carried a publish: under a resource alarm the
    /// connection then stops being read (`block_on_alarm`).
    published: Cell<bool>,
    /// It has published at least once (operators' `publishers`).
    publisher: Cell<bool>,
    /// The read buffer's capacity, for `held_bytes`.
    read_held: Cell<usize>,
    /// `FrameReader::read_totals` as of the last read (operators' traffic).
    read_totals: Cell<(u64, u64)>,
    /// It asked for the cluster map (`MapGet`): it is told when it moves.
    map_watch: Cell<bool>,
    /// Over TLS: the Hello's shard map gives the shards' TLS addresses.
    tls: bool,
    /// The vhost the Hello named (`/` until then, and when it named none).
    pub(super) vhost: std::cell::OnceCell<String>,
    /// Its direct reply-to consumer (`reply_to.rs`).
    reply: reply_to::ReplyConsumer,
}

fn check_queue_name(q: &str) -> Result<(), Fatal> {
    if !queue_name_ok(q) {
        return Err(Fatal::new(
            ErrorCode::BadQueueName,
            format!("bad queue name {q:?}: empty or has control characters"),
        ));
    }
    Ok(())
}

impl NativeConn {
    /// `tls`: it came in on `tls_listen`.
    pub fn new(shard: Rc<Shard>, peer: String, tls: bool) -> Self {
        Self {
            shard,
            me: Cell::new(None),
            peer,
            outbox: Outbox::default(),
            gate: DeliveryGate::default(),
            handshaken: Cell::new(false),
            accepted_at: Instant::now(),
            logged_in: Cell::new(false),
            access: Cell::new(crate::auth::Access::None),
            grants: RefCell::new(None),
            heartbeat_ms: Cell::new(0),
            beat_kick: Notify::default(),
            consumers: RefCell::new(HashMap::new()),
            origin_wanted: Cell::new(false),
            pending_routes: RefCell::new(HashMap::new()),
            admin_busy: Rc::new(Cell::new(false)),
            paused_on: RefCell::new(None),
            remote_paused: RefCell::new(Vec::new()),
            remote_resumed: Notify::default(),
            published: Cell::new(false),
            publisher: Cell::new(false),
            read_held: Cell::new(0),
            read_totals: Cell::new((0, 0)),
            map_watch: Cell::new(false),
            tls,
            vhost: std::cell::OnceCell::new(),
            reply: reply_to::ReplyConsumer::default(),
        }
    }

    /// The core's name for a queue or exchange the client named: scoped
    /// by the connection's vhost (no copy in `/`).
    #[inline]
    fn q<'a>(&self, name: &'a str) -> std::borrow::Cow<'a, str> {
        let vhost = self.vhost.get().map_or(protocol::vhost::DEFAULT_VHOST, String::as_str);
        protocol::vhost::qualify(vhost, name)
    }

    /// The shard map this connection's Hello answer gives: over TLS, the
    /// shards' TLS addresses, so a shard-aware client stays on TLS.
    fn shard_addrs(&self) -> &[String] {
        match self.tls {
            true => &self.shard.shard_addrs.tls,
            false => &self.shard.shard_addrs.plain,
        }
    }

    pub fn set_ref(&self, me: ConnRef) {
        self.me.set(Some(me));
    }

    fn limits(&self) -> DeliverLimits {
        let c = &self.shard.config;
        DeliverLimits { count_max: c.deliver_batch_max as usize, frame_bytes_max: c.frame_bytes_max as usize }
    }

    fn me(&self) -> ConnRef {
        self.me.get().expect("connection registered before reading")
    }

    fn send_error(&self, request_id: u64, code: ErrorCode, message: &str) {
        let limits = self.limits();
        self.outbox.push(|buf| encode_reply(buf, &limits, &Reply::error(request_id, code, message)));
    }

    /// Reads and handles frames until the peer closes, the stream breaks,
    /// or a fatal error; then releases the connection's consumers. `fd`:
    /// the plain socket under `r`, read directly and through the ring
    /// ([`FrameReader::read_directly`]).
    pub async fn read_loop<R: AsyncRead + Unpin>(&self, mut r: R, fd: Option<std::os::fd::RawFd>) {
        // A writer that broke (the peer stopped reading: send_timeout_ms)
        // ends the read too, or a peer that neither reads nor writes
        // would hold the connection forever.
        let result = futures_lite::future::or(self.read_frames(&mut r, fd), async {
            self.outbox.wait_ended().await;
            Ok(())
        })
        .await;
        if let Err(f) = result {
            let quiet = f.code == ErrorCode::ShuttingDown
                || (!self.logged_in.get() && !self.shard.conns.may_log_unauthenticated());
            if !quiet {
                tracing::warn!(peer = %self.peer, code = f.code.as_u16(), "closing connection: {}", f.message);
            }
            self.send_error(f.request_id, f.code, &f.message);
        } else if self.outbox.is_stalled() {
            let ms = self.shard.config.send_timeout_ms;
            tracing::warn!(peer = %self.peer, "closing connection: it read nothing for send_timeout_ms = {ms}");
        }
        self.release();
        self.outbox.close();
        self.beat_kick.notify();
    }

    fn release(&self) {
        let consumers = std::mem::take(&mut *self.consumers.borrow_mut());
        let queues = consumers.into_values().map(|c| (c.owner, c.queue));
        self.shard.release_connection(self.me(), self.logged_in.get(), 0, queues);
    }

    async fn read_frames<R: AsyncRead + Unpin>(&self, r: &mut R, fd: Option<std::os::fd::RawFd>) -> Result<(), Fatal> {
        let c = &self.shard.config;
        // Before login, nothing larger than handshake_bytes_max is buffered.
        let budget = c.handshake_bytes_max.min(c.frame_bytes_max) as usize;
        let mut reader = FrameReader::<Native>::new(budget, HANDSHAKE_READ_BYTES);
        if let Some(fd) = fd {
            reader.read_directly(fd);
        }
        let mut raised = false;
        loop {
            let chunk = match reader.fill(r, |clock| self.deadline(clock)).await {
                Ok(c) => c,
                Err(e) => return self.read_failed(e, &reader.clock()),
            };
            // Frames already read are decoded against the full limit: only
            // buffering is bounded by the budget (a Hello may be followed
            // in the same read by a large publish).
            let depth = usize::try_from(c.table_depth_max).unwrap_or(usize::MAX);
            let used = for_each_frame_limited(&chunk, c.frame_bytes_max as usize, depth, |f| {
                let rid = f.request_id;
                match self.on_frame(&chunk, f) {
                    Err(e) if !e.code.is_fatal() => {
                        tracing::info!(peer = %self.peer, code = e.code.as_u16(), "request refused: {}", e.message);
                        self.send_error(rid, e.code, &e.message);
                        Ok(())
                    }
                    other => other,
                }
            });
            if self.handshaken.get() && !raised {
                reader.set_limits(c.frame_bytes_max as usize, READ_BYTES);
                raised = true;
            }
            match used {
                Ok(n) => reader.keep(&chunk, n),
                Err(Ok(fatal)) => return Err(fatal),
                Err(Err(e)) => return Err(Fatal::new(e.code(), e.to_string())),
            }
            self.read_held.set(reader.held_bytes());
            self.read_totals.set(reader.read_totals());
            let held = Instant::now();
            self.outbox.wait_below(self.shard.config.outbox_bytes_max as usize).await;
            self.shard.wait_for_space().await;
            self.shard.wait_log_space().await;
            // A socket that always has bytes never makes this task wait:
            // give the shard's other connections their turn.
            glommio::yield_if_needed().await;
            let paused = self.paused_on.borrow_mut().take();
            if let Some(q) = paused {
                self.shard.wait_publish_resume(&q).await;
            }
            self.wait_remote_resume().await;
            if self.published.replace(false) && self.shard.alarm_in_effect() {
                self.block_on_alarm().await;
            }
            // Time the broker held back from reading is not the peer's.
            reader.excuse(held.elapsed());
            if self.outbox.is_closing() {
                return Ok(());
            }
        }
    }

    /// A queue's owner elsewhere (another shard, another node) is past
    /// `publish_pause_messages` and asks this connection to stop
    /// publishing (or may go on). A connection that also consumes is never
    /// paused: its acks may be what drains the queue.
    fn remote_pause(&self, queue: &str, pause: bool) {
        let mut paused = self.remote_paused.borrow_mut();
        if !pause {
            paused.retain(|q| q != queue);
            self.remote_resumed.notify();
        } else if self.consumers.borrow().is_empty() && !paused.iter().any(|q| q == queue) {
            paused.push(queue.to_string());
        }
    }

    async fn wait_remote_resume(&self) {
        loop {
            let n = self.remote_resumed.notified();
            if self.remote_paused.borrow().is_empty() || self.outbox.is_closing() {
                return;
            }
            futures_lite::future::or(n, self.outbox.wait_finished()).await;
        }
    }

    /// A resource alarm is in effect and this connection just published:
    /// it is told (`Blocked`), not read until every alarm has cleared (its
    /// publishes wait in the socket), then told `Unblocked`. Consumers
    /// and acks on other connections go on meanwhile.
    async fn block_on_alarm(&self) {
        let why = self.shard.alarms().reason();
        tracing::debug!(peer = %self.peer, "publisher blocked: {why}");
        self.outbox.push(|b| frame(b, 0, Cmd::Blocked { reason: clip(&why) }));
        self.shard.wait_alarm_clear(self.outbox.wait_finished()).await;
        self.outbox.push(|b| frame(b, 0, Cmd::Unblocked));
        tracing::debug!(peer = %self.peer, "publisher unblocked");
    }

    fn on_frame(&self, chunk: &Bytes, f: Frame<'_>) -> Result<(), Fatal> {
        let rid = f.request_id;
        if !self.handshaken.get() {
            return match f.cmd {
                Cmd::Hello { version, user, password, heartbeat_ms, vhost } => {
                    self.hello(rid, version, (user, password), heartbeat_ms, vhost)
                }
                other => Err(Fatal::new(ErrorCode::HandshakeRequired, format!("expected Hello, got {}", other.name()))),
            };
        }
        let shard = &self.shard;
        let me = self.me();
        match f.cmd {
            Cmd::Hello { .. } => {
                return Err(Fatal::new(ErrorCode::AlreadyHandshaken, "a second Hello on one connection"))
            }
            Cmd::Ping => self.outbox.push(|b| frame(b, rid, Cmd::Pong)),
            Cmd::Pong => {}
            Cmd::Declare { flags, queue, args } => self.declare(rid, flags, queue, args)?,
            Cmd::Delete { flags, queue } => {
                self.may(rid, Perm::Configure, Kind::Queue, queue)?;
                let (if_empty, if_unused) = (flags & op::DELETE_IF_EMPTY != 0, flags & op::DELETE_IF_UNUSED != 0);
                let queue = self.q(queue);
                let owner = shard.owner_of(&queue);
                let req = Request::Delete { if_empty, if_unused, queue: queue.into_owned() };
                shard.submit(me, rid, owner, req);
            }
            Cmd::Purge { queue } => {
                self.may(rid, Perm::Read, Kind::Queue, queue)?;
                let queue = self.q(queue);
                shard.submit(me, rid, shard.owner_of(&queue), Request::Purge { queue: queue.into_owned() })
            }
            Cmd::Publish { flags, queue, entries } => {
                self.published.set(true);
                self.publisher.set(true);
                shard.count_received(u64::from(entries.len()), flags & op::PUBLISH_CONFIRM != 0);
                self.may_publish(rid, "")?;
                self.publish(chunk, rid, flags, queue, entries)?
            }
            Cmd::PublishTo { flags, exchange, routing_key, entries } => {
                self.publisher.set(true);
                shard.count_received(u64::from(entries.len()), flags & op::PUBLISH_CONFIRM != 0);
                self.publish_to(chunk, rid, flags, (exchange, routing_key), entries)?
            }
            Cmd::ExchangeDeclare { flags, exchange, kind, args } => {
                self.declare_exchange(chunk, rid, flags, (exchange, kind), args)?
            }
            Cmd::ExchangeDelete { flags, exchange } => {
                check_exchange_name(exchange).map_err(|e| refused(rid, e))?;
                self.may(rid, Perm::Configure, Kind::Exchange, exchange)?;
                shard.delete_exchange(me, rid, self.q(exchange).into_owned(), flags & op::EXCHANGE_IF_UNUSED != 0);
            }
            Cmd::Bind { flags, source, destination, routing_key, args } => {
                self.bind(chunk, rid, flags, (source, destination, routing_key), args, false)?
            }
            Cmd::Unbind { flags, source, destination, routing_key, args } => {
                self.bind(chunk, rid, flags, (source, destination, routing_key), args, true)?
            }
            Cmd::Subscribe { consumer_id, prefetch, queue, priority, origin } => {
                self.may(rid, Perm::Read, Kind::Queue, queue)?;
                if queue == protocol::reply_to::PSEUDO_QUEUE {
                    return self.reply_subscribe(rid, consumer_id);
                }
                self.subscribe(rid, (consumer_id, prefetch, priority, origin), StreamStart::NATIVE, queue)?
            }
            Cmd::StoreOffset { queue, reference, offset } => {
                // Storing a read position is part of reading (RabbitMQ
                // asks read permission for its store_offset too).
                self.may(rid, Perm::Read, Kind::Queue, queue)?;
                check_queue_name(queue)?;
                let queue = self.q(queue);
                let req = Request::StoreOffset { queue: queue.to_string(), reference: reference.into(), offset };
                shard.submit(me, rid, shard.owner_of(&queue), req);
            }
            Cmd::QueryOffset { queue, reference } => {
                self.may(rid, Perm::Read, Kind::Queue, queue)?;
                check_queue_name(queue)?;
                let queue = self.q(queue);
                let req = Request::QueryOffset { queue: queue.to_string(), reference: reference.into() };
                shard.submit(me, rid, shard.owner_of(&queue), req);
            }
            Cmd::StreamSubscribe { consumer_id, prefetch, queue, at, origin } => {
                self.may(rid, Perm::Read, Kind::Queue, queue)?;
                let offset = match at {
                    StreamAt::First => StreamOffset::First,
                    StreamAt::Last => StreamOffset::Last,
                    StreamAt::Next => StreamOffset::Next,
                    StreamAt::Offset(o) => StreamOffset::Offset(o),
                    StreamAt::Timestamp(ms) => StreamOffset::Timestamp(ms),
                };
                let start = StreamStart { offset, ..StreamStart::NATIVE };
                self.subscribe(rid, (consumer_id, prefetch, 0, origin), start, queue)?
            }
            Cmd::Unsubscribe { consumer_id } if self.reply_unsubscribe(rid, consumer_id) => {}
            Cmd::Unsubscribe { consumer_id } => {
                let c =
                    self.consumers.borrow_mut().remove(&consumer_id).ok_or_else(|| unknown_consumer(consumer_id))?;
                shard.submit(me, rid, c.owner, Request::Unsubscribe { consumer_id, queue: c.queue });
            }
            Cmd::Ack { consumer_id, ranges } => {
                let (owner, queue) = self.route(consumer_id)?;
                shard.submit(me, rid, owner, Request::Ack { consumer_id, queue, ranges: ranges.iter().collect() });
            }
            Cmd::Nack { requeue, consumer_id, ranges } => {
                let (owner, queue) = self.route(consumer_id)?;
                let req = Request::Nack { consumer_id, queue, requeue, ranges: ranges.iter().collect() };
                shard.submit(me, rid, owner, req);
            }
            Cmd::Get { no_ack, consumer_id, queue } => {
                self.may(rid, Perm::Read, Kind::Queue, queue)?;
                self.get(rid, no_ack, consumer_id, queue)?
            }
            Cmd::MapGet => {
                self.map_watch.set(true);
                let body = shard.cluster_map_body();
                let mut c = protocol::wire::Cursor::new(&body, "Map");
                match protocol::cluster_map::decode(&mut c) {
                    Ok(map) => self.outbox.push(|b| frame(b, rid, Cmd::Map(map))),
                    Err(e) => tracing::error!(error = %e, "the cluster map did not encode (bug)"),
                }
            }
            Cmd::Locate { queue } => {
                check_queue_name(queue)?;
                let value = shard.locate(&self.q(queue));
                self.outbox.push(|b| frame(b, rid, Cmd::Ok { value }));
            }
            Cmd::Admin { command, arg } => {
                self.may_admin(rid, command)?;
                crate::server::admin::start(shard, me, rid, (command, arg), &self.admin_busy)
                    .map_err(|(code, message)| Fatal { request_id: rid, code, message })?
            }
            other => {
                return Err(Fatal {
                    request_id: rid,
                    code: ErrorCode::BadFrame,
                    message: format!("{} is sent by the server, not the client", other.name()),
                })
            }
        }
        Ok(())
    }

    /// `Admin` by the user's tags, as RabbitMQ's management tags: reading
    /// needs `management`, `monitoring` or `policymaker`, changing
    /// (purge, delete, close, thresholds) needs `administrator`.
    fn may_admin(&self, rid: u64, command: u8) -> Result<(), Fatal> {
        use crate::auth::Access;
        let changes = op::admin_needs_administrator(command);
        let needed = if changes { Access::Admin } else { Access::Read };
        if self.access.get() >= needed {
            return Ok(());
        }
        let tag = if changes { "administrator" } else { "management, monitoring or administrator" };
        Err(Fatal {
            request_id: rid,
            code: ErrorCode::AccessRefused,
            message: format!("this Admin command needs the {tag} tag"),
        })
    }

    fn check_sizes(&self, rid: u64, entries: &protocol::Entries<'_>) -> Result<(), Fatal> {
        let max = self.shard.config.message_bytes_max as usize;
        if let Some(e) = entries.iter().find(|e| e.props.len() + e.body.len() > max) {
            return Err(Fatal {
                request_id: rid,
                code: ErrorCode::MessageTooLarge,
                message: format!("a message of {} bytes exceeds message_bytes_max {max}", e.props.len() + e.body.len()),
            });
        }
        Ok(())
    }

    fn add_consumer(&self, consumer_id: u32, queue: &str, pull: bool, origin: Option<Rc<str>>) -> Result<u16, Fatal> {
        let mut consumers = self.consumers.borrow_mut();
        if consumers.contains_key(&consumer_id) {
            return Err(Fatal::new(ErrorCode::ConsumerExists, format!("consumer id {consumer_id} is already in use")));
        }
        let max = self.shard.config.consumers_per_connection_max;
        if consumers.len() >= max as usize {
            return Err(Fatal::new(ErrorCode::ConsumerLimit, format!("consumers_per_connection_max = {max} reached")));
        }
        let owner = self.shard.owner_of(queue);
        if origin.is_some() {
            self.origin_wanted.set(true);
        }
        consumers.insert(consumer_id, ConsumerRoute { queue: queue.into(), owner, pull, origin });
        Ok(owner)
    }

    /// The queue name to report for `consumer_id`'s deliveries through the
    /// default exchange, when it asked for exchange and routing key. One
    /// flag read for connections whose consumers never asked.
    #[inline]
    fn origin_queue(&self, consumer_id: u32) -> Option<Rc<str>> {
        if !self.origin_wanted.get() {
            return None;
        }
        self.consumers.borrow().get(&consumer_id).and_then(|c| c.origin.clone())
    }

    fn route(&self, consumer_id: u32) -> Result<(u16, String), Fatal> {
        let consumers = self.consumers.borrow();
        let c = consumers.get(&consumer_id).ok_or_else(|| unknown_consumer(consumer_id))?;
        Ok((c.owner, c.queue.clone()))
    }
}

/// A refused request: its error goes back, the connection stays.
fn refused(request_id: u64, e: QueueError) -> Fatal {
    Fatal { request_id, code: e.code, message: e.message }
}

fn unknown_consumer(id: u32) -> Fatal {
    Fatal::new(ErrorCode::UnknownConsumer, format!("no consumer {id} on this connection"))
}
