//! A blocking client over std sockets, for programs without an async
//! runtime: no io_uring, no async runtime (the `client` feature alone).
//! Same codec, same handshake and frame dispatch (`core`), same
//! shard-aware routing as the async clients; each call writes its request
//! and reads until its reply, buffering any deliveries that arrive
//! meanwhile.

use super::beats::Beater;
use super::core::cmds;
use super::core::handshake::Greeter;
use super::core::incoming::{classify, deliveries, Incoming, Response as Reply};
use super::dial::{io_error as io, Dialer, SyncStream};
use super::{ClientError, ClientOptions, ConsumerOptions, Delivery, ExchangeOptions, Result, ServerInfo};
use crate::protocol::{self, encode_ack, op, BatchWriter, Cmd, Frame};
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

struct Conn {
    /// What the handshake said.
    info: ServerInfo,
    /// Plain or TLS; the heartbeat thread writes through its own handle.
    stream: SyncStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    frame_bytes_max: usize,
    next_request_id: u64,
    deliveries: HashMap<u32, VecDeque<Delivery>>,
    /// Errors for requests that had no reply to wait for (acks).
    stray_error: Option<ClientError>,
    /// Why the broker stopped reading this connection (`Blocked`), until
    /// `Unblocked`.
    blocked: Option<String>,
    /// The negotiated heartbeat (0 = none) and the thread that beats.
    heartbeat_ms: u32,
    beater: Option<Beater>,
}

impl Conn {
    fn connect(dialer: &Dialer, addr: SocketAddr, opts: &ClientOptions) -> Result<(Conn, ServerInfo)> {
        let stream = dialer.connect_std(addr, opts.connect_timeout)?;
        let (info, rbuf) = greet(&stream, addr, opts)?;
        let mut c = Conn {
            frame_bytes_max: info.frame_bytes_max as usize,
            heartbeat_ms: info.heartbeat_ms,
            info: info.clone(),
            stream,
            rbuf,
            wbuf: BytesMut::new(),
            next_request_id: super::core::handshake::MAP_REQUEST_ID + 1,
            deliveries: HashMap::new(),
            stray_error: None,
            blocked: None,
            beater: None,
        };
        if info.heartbeat_ms > 0 {
            c.beater = Some(Beater::start(c.stream.writer().map_err(io)?, info.heartbeat_ms).map_err(io)?);
        }
        Ok((c, info))
    }

    fn rid(&mut self) -> u64 {
        self.next_request_id += 1;
        self.next_request_id - 1
    }

    fn flush(&mut self) -> Result<()> {
        match &self.beater {
            Some(b) => b.write(&self.wbuf).map_err(io)?,
            None => self.stream.write_all(&self.wbuf).map_err(io)?,
        }
        self.wbuf.clear();
        Ok(())
    }

    /// Reads one frame, with a deadline. Deliveries are buffered and
    /// reported as `Some((0, Ok(Reply::Ok(0))))` so callers loop on.
    #[allow(clippy::type_complexity)]
    fn read_reply(&mut self, deadline: Option<Instant>) -> Result<Option<(u64, Result<Reply>)>> {
        loop {
            if let Some(len) = protocol::frame::peek_len(&self.rbuf, self.frame_bytes_max)
                .map_err(|e| ClientError::Protocol(e.to_string()))?
            {
                if self.rbuf.len() >= len {
                    let chunk = self.rbuf.split_to(len).freeze();
                    return self.on_frame(&chunk).map(Some);
                }
            }
            let wait = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(w) if !w.is_zero() => Some(w),
                    _ => return Ok(None),
                },
                // With heartbeats the broker beats: two silent intervals mean it is gone.
                None if self.heartbeat_ms > 0 => Some(Duration::from_millis(2 * u64::from(self.heartbeat_ms))),
                None => None,
            };
            // Bounded: a frame's length was checked against the limit above,
            // and each read appends at most one socket read's worth.
            match self.stream.read_into(&mut self.rbuf, wait) {
                Ok(false) => return Err(ClientError::Closed("the broker closed the connection".into())),
                Ok(true) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if deadline.is_none() {
                        let hb = self.heartbeat_ms;
                        return Err(ClientError::Closed(format!(
                            "nothing from the broker for two heartbeat intervals ({hb} ms)"
                        )));
                    }
                    return Ok(None);
                }
                Err(e) => return Err(io(e)),
            }
        }
    }

    fn on_frame(&mut self, chunk: &Bytes) -> Result<(u64, Result<Reply>)> {
        let f = match protocol::decode(chunk, self.frame_bytes_max) {
            Ok(protocol::Decoded::Frame(f, _)) => f,
            Ok(protocol::Decoded::Incomplete) => return Err(ClientError::Protocol("short frame".into())),
            Err(e) => return Err(ClientError::Protocol(e.to_string())),
        };
        // Anything but a reply is reported as `(0, Ok(Ok(0)))`: callers loop on.
        let nothing = Ok((0, Ok(Reply::Ok(0))));
        match classify(chunk, f, &self.info)? {
            Incoming::Reply(rid, r) => Ok((rid, r)),
            Incoming::Deliver { consumer_id, first_tag, origin, entries } => {
                let q = self.deliveries.entry(consumer_id).or_default();
                q.extend(deliveries(chunk, consumer_id, first_tag, origin, entries));
                nothing
            }
            // Its deliveries already read stay readable; nothing more comes.
            Incoming::Cancelled { .. } | Incoming::Nothing | Incoming::MapChanged(_) => nothing,
            Incoming::Ping(rid) => {
                Frame { request_id: rid, cmd: Cmd::Pong }.encode(&mut self.wbuf);
                self.flush()?;
                nothing
            }
            Incoming::Blocked(reason) => {
                self.blocked = Some(reason);
                nothing
            }
            Incoming::Unblocked => {
                self.blocked = None;
                nothing
            }
        }
    }

    /// Sends a request and reads until its reply.
    fn request(&mut self, encode: impl FnOnce(u64, &mut BytesMut)) -> Result<Reply> {
        let rid = self.rid();
        encode(rid, &mut self.wbuf);
        self.flush()?;
        loop {
            match self.read_reply(None)? {
                Some((r, reply)) if r == rid => return reply,
                Some((0, _)) | None => {}
                Some((_, Err(e))) => self.stray_error = Some(e),
                Some(_) => {}
            }
        }
    }
}

/// The handshake (`core::handshake::Greeter`) within the connect
/// timeout; returns what the broker said and the bytes read after it.
fn greet(stream: &SyncStream, addr: SocketAddr, opts: &ClientOptions) -> Result<(ServerInfo, BytesMut)> {
    let mut greeter = Greeter::new(opts, addr, false);
    let mut out = BytesMut::new();
    greeter.hello(&mut out);
    stream.write_all(&out).map_err(io)?;
    let deadline = Instant::now() + opts.connect_timeout;
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    loop {
        let used = greeter.feed(&rbuf)?;
        let _ = rbuf.split_to(used);
        if greeter.is_done() {
            return Ok((greeter.finish()?.0, rbuf));
        }
        // Bounded: the greeter refuses a frame over its limit once its
        // length is in, and each read appends one socket read's worth.
        let late = || ClientError::Io("no handshake reply in time".into());
        let wait = deadline.checked_duration_since(Instant::now()).filter(|w| !w.is_zero()).ok_or_else(late)?;
        match stream.read_into(&mut rbuf, Some(wait)) {
            Ok(false) => return Err(ClientError::Closed("the broker closed the connection".into())),
            Ok(true) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Err(late()),
            Err(e) => return Err(io(e)),
        }
    }
}

/// A subscription made with [`Client::subscribe`].
#[derive(Debug, Clone)]
pub struct Subscription {
    /// The broker's id for it: acks and cancels name it.
    pub consumer_id: u32,
    shard: usize,
}

/// The blocking client. One connection per shard it uses.
pub struct Client {
    opts: ClientOptions,
    /// Plain or TLS, for every connection (the first and each shard's).
    dialer: Dialer,
    info: ServerInfo,
    first: usize,
    conns: Vec<Option<Conn>>,
    next_consumer_id: u32,
    /// The pull-consumer id used for `get` on each queue.
    pull_ids: HashMap<String, u32>,
}

impl Client {
    /// Connects to `opts.url` and shakes hands; the connections to other shards open on first use.
    pub fn connect(opts: ClientOptions) -> Result<Client> {
        // Credentials, vhost and options in the URL win (`client::url`).
        let (opts, url) = opts.resolved()?;
        let dialer = Dialer::new(&opts, &url)?;
        let (conn, info) = Conn::connect(&dialer, url.addr, &opts)?;
        let first = usize::from(info.shard_id);
        let mut conns: Vec<Option<Conn>> = (0..info.shard_addrs.len()).map(|_| None).collect();
        conns[first] = Some(conn);
        Ok(Client { opts, dialer, info, first, conns, next_consumer_id: 1, pull_ids: HashMap::new() })
    }

    /// What the first connection's handshake said (shards, limits).
    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    /// Whether this client's connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.dialer.is_tls()
    }

    /// Why the broker is not reading one of this client's connections (a
    /// memory or disk alarm, `Blocked`), as last heard; `None` when none
    /// is blocked. A blocked connection's publish waits for its confirm
    /// until the alarm clears.
    pub fn blocked(&self) -> Option<String> {
        self.conns.iter().flatten().find_map(|c| c.blocked.clone())
    }

    pub(super) fn conn(&mut self, queue: &str) -> Result<usize> {
        let i = if self.opts.shard_aware { usize::from(self.info.owner_of(queue)) } else { self.first };
        if self.conns[i].is_none() {
            let addr = self.info.shard_addrs[i];
            let (c, info) = Conn::connect(&self.dialer, addr, &self.opts)?;
            if usize::from(info.shard_id) != i {
                return Err(ClientError::Protocol(format!("dialled shard {i}, reached shard {}", info.shard_id)));
            }
            self.conns[i] = Some(c);
        }
        Ok(i)
    }

    fn request(&mut self, i: usize, encode: impl FnOnce(u64, &mut BytesMut)) -> Result<Reply> {
        let c = self.conns[i].as_mut().ok_or_else(|| ClientError::Closed("no connection".into()))?;
        c.request(encode)
    }

    fn simple(&mut self, queue: &str, cmd: impl FnOnce(&str) -> Cmd<'_>) -> Result<u64> {
        let i = self.conn(queue)?;
        match self.request(i, |rid, b| Frame { request_id: rid, cmd: cmd(queue) }.encode(b))? {
            Reply::Ok(v) => Ok(v),
            _ => Err(ClientError::Protocol("unexpected reply".into())),
        }
    }

    /// Declares a queue; returns its ready count.
    pub fn declare(&mut self, queue: &str, durable: bool) -> Result<u64> {
        self.declare_with(queue, durable, &[])
    }

    /// Declares with queue arguments (a raw AMQP field table, see
    /// [`crate::protocol::field_table::TableBuilder`]).
    pub fn declare_with(&mut self, queue: &str, durable: bool, args: &[u8]) -> Result<u64> {
        let flags = if durable { op::DECLARE_DURABLE } else { 0 };
        let i = self.conn(queue)?;
        match self.request(i, |rid, b| Frame { request_id: rid, cmd: Cmd::Declare { flags, queue, args } }.encode(b))? {
            Reply::Ok(v) => Ok(v),
            _ => Err(ClientError::Protocol("unexpected reply".into())),
        }
    }

    /// Deletes a queue; returns the messages it held.
    pub fn delete(&mut self, queue: &str) -> Result<u64> {
        self.simple(queue, |queue| Cmd::Delete { flags: 0, queue })
    }

    /// Empties a queue; returns the messages removed.
    pub fn purge(&mut self, queue: &str) -> Result<u64> {
        self.simple(queue, |queue| Cmd::Purge { queue })
    }

    /// Publishes a batch as one frame and waits for its confirm.
    pub fn publish(&mut self, queue: &str, bodies: &[&[u8]], persistent: bool) -> Result<()> {
        self.publish_with(queue, &[], bodies, persistent)
    }

    /// [`Client::publish`] with properties for every message (built with
    /// [`crate::protocol::props::PropsBuilder`]: headers, correlation id,
    /// reply-to, ...).
    pub fn publish_with(&mut self, queue: &str, props: &[u8], bodies: &[&[u8]], persistent: bool) -> Result<()> {
        let i = self.conn(queue)?;
        let target = super::Target::Queue(queue.into());
        self.publish_on(i, &target, persistent, false, props, bodies)
    }

    /// Publishes a batch through `exchange` with `routing_key` and waits
    /// for its confirm. `mandatory`: a batch that reaches no queue is
    /// refused (`NoRoute`) instead of confirmed.
    pub fn publish_to(
        &mut self,
        exchange: &str,
        routing_key: &str,
        props: &[u8],
        bodies: &[&[u8]],
        persistent: bool,
        mandatory: bool,
    ) -> Result<()> {
        // The shard owning a queue named like the key: a direct exchange
        // routing by queue name saves a hop.
        let i = if routing_key.is_empty() { self.first } else { self.conn(routing_key)? };
        let target = super::Target::Exchange { exchange: exchange.into(), routing_key: routing_key.into() };
        self.publish_on(i, &target, persistent, mandatory, props, bodies)
    }

    fn publish_on(
        &mut self,
        i: usize,
        target: &super::Target,
        persistent: bool,
        mandatory: bool,
        props: &[u8],
        bodies: &[&[u8]],
    ) -> Result<()> {
        let opts = super::ProducerOptions { persistent, mandatory, confirm: true, ..Default::default() };
        super::core::batch::entries_bytes_max(target, &opts, &self.info)?;
        for body in bodies {
            super::core::batch::check_message(&self.info, props, body)?;
        }
        let flags = super::core::batch::publish_flags(&opts, target);
        let reply = self.request(i, |rid, b| {
            let mut w = match target {
                super::Target::Queue(queue) => BatchWriter::begin_publish(b, rid, flags, queue),
                super::Target::Exchange { exchange, routing_key } => {
                    BatchWriter::begin_publish_to(b, rid, flags, exchange, routing_key)
                }
            };
            for body in bodies {
                w.push(b, 0, props, body);
            }
            w.finish(b);
        })?;
        match reply {
            Reply::Confirm(n) if n as usize == bodies.len() => Ok(()),
            _ => Err(ClientError::Protocol("publish not confirmed in full".into())),
        }
    }

    /// A request on the first connection (exchanges live on every shard).
    fn first_simple(&mut self, cmd: Cmd<'_>) -> Result<u64> {
        self.simple_on(self.first, cmd)
    }

    pub(super) fn simple_on(&mut self, i: usize, cmd: Cmd<'_>) -> Result<u64> {
        match self.request(i, |rid, b| Frame { request_id: rid, cmd }.encode(b))? {
            Reply::Ok(v) => Ok(v),
            _ => Err(ClientError::Protocol("unexpected reply".into())),
        }
    }

    /// Declares an exchange: `kind` is direct, fanout, topic or headers.
    pub fn declare_exchange(&mut self, exchange: &str, kind: &str, o: ExchangeOptions<'_>) -> Result<()> {
        self.first_simple(cmds::exchange_declare(exchange, kind, o)).map(|_| ())
    }

    /// Checks that an exchange exists.
    pub fn declare_exchange_passive(&mut self, exchange: &str) -> Result<()> {
        self.first_simple(cmds::exchange_passive(exchange)).map(|_| ())
    }

    /// Deletes an exchange (`if_unused`: only without bindings from it).
    pub fn delete_exchange(&mut self, exchange: &str, if_unused: bool) -> Result<()> {
        self.first_simple(cmds::exchange_delete(exchange, if_unused)).map(|_| ())
    }

    /// Binds `queue` to `exchange` (`args`: an AMQP field table, for
    /// headers exchanges `x-match` and the header values).
    pub fn bind_queue(&mut self, queue: &str, exchange: &str, routing_key: &str, args: &[u8]) -> Result<()> {
        let i = self.conn(queue)?;
        self.simple_on(i, cmds::binding(false, false, exchange, queue, routing_key, args)).map(|_| ())
    }

    /// Removes a binding made with `bind_queue`.
    pub fn unbind_queue(&mut self, queue: &str, exchange: &str, routing_key: &str, args: &[u8]) -> Result<()> {
        let i = self.conn(queue)?;
        self.simple_on(i, cmds::binding(true, false, exchange, queue, routing_key, args)).map(|_| ())
    }

    /// Binds exchange `destination` to exchange `source`.
    pub fn bind_exchange(&mut self, destination: &str, source: &str, routing_key: &str, args: &[u8]) -> Result<()> {
        self.first_simple(cmds::binding(false, true, source, destination, routing_key, args)).map(|_| ())
    }

    /// Removes a binding made with `bind_exchange`.
    pub fn unbind_exchange(&mut self, destination: &str, source: &str, routing_key: &str, args: &[u8]) -> Result<()> {
        self.first_simple(cmds::binding(true, true, source, destination, routing_key, args)).map(|_| ())
    }

    /// Subscribes to `queue` with at most `prefetch` unacked deliveries.
    pub fn subscribe(&mut self, queue: &str, prefetch: u32) -> Result<Subscription> {
        self.subscribe_with(queue, ConsumerOptions::new(prefetch))
    }

    /// `subscribe` with options beyond the prefetch (a consumer priority).
    pub fn subscribe_with(&mut self, queue: &str, o: ConsumerOptions) -> Result<Subscription> {
        let consumer_id = self.next_consumer_id;
        self.next_consumer_id += 1;
        let i = self.conn(queue)?;
        let cmd = crate::client::core::cmds::subscribe(consumer_id, queue, &o);
        match self.request(i, |rid, b| Frame { request_id: rid, cmd }.encode(b))? {
            Reply::Ok(_) => Ok(Subscription { consumer_id, shard: i }),
            _ => Err(ClientError::Protocol("unexpected reply".into())),
        }
    }

    /// The next delivery for `sub`, waiting at most `timeout`.
    pub fn recv(&mut self, sub: &Subscription, timeout: Duration) -> Result<Option<Delivery>> {
        let deadline = Instant::now() + timeout;
        let c = self.conns[sub.shard].as_mut().ok_or_else(|| ClientError::Closed("no connection".into()))?;
        loop {
            if let Some(d) = c.deliveries.get_mut(&sub.consumer_id).and_then(VecDeque::pop_front) {
                return Ok(Some(d));
            }
            match c.read_reply(Some(deadline))? {
                None => return Ok(None),
                Some((_, Err(e))) => c.stray_error = Some(e),
                Some(_) => {}
            }
        }
    }

    fn send_ack(&mut self, sub: &Subscription, tag: u64, nack: Option<bool>) -> Result<()> {
        let c = self.conns[sub.shard].as_mut().ok_or_else(|| ClientError::Closed("no connection".into()))?;
        if let Some(e) = c.stray_error.take() {
            return Err(e);
        }
        let rid = c.rid();
        encode_ack(&mut c.wbuf, rid, nack, sub.consumer_id, &[(tag, tag)]);
        c.flush()
    }

    /// Acks one delivery (written at once).
    pub fn ack(&mut self, sub: &Subscription, tag: u64) -> Result<()> {
        self.send_ack(sub, tag, None)
    }

    /// Rejects one delivery; `requeue` puts it back at the queue's head.
    pub fn nack(&mut self, sub: &Subscription, tag: u64, requeue: bool) -> Result<()> {
        self.send_ack(sub, tag, Some(requeue))
    }

    /// Pulls one message; with `no_ack` it is removed at once.
    pub fn get(&mut self, queue: &str, no_ack: bool) -> Result<Option<Delivery>> {
        let consumer_id = match self.pull_ids.get(queue) {
            Some(id) => *id,
            None => {
                self.next_consumer_id += 1;
                let id = self.next_consumer_id - 1;
                if !no_ack {
                    self.pull_ids.insert(queue.to_string(), id);
                }
                id
            }
        };
        let i = self.conn(queue)?;
        match self
            .request(i, |rid, b| Frame { request_id: rid, cmd: Cmd::Get { no_ack, consumer_id, queue } }.encode(b))?
        {
            Reply::Get(d) => Ok(d),
            _ => Err(ClientError::Protocol("unexpected reply".into())),
        }
    }

    /// Acks a message from [`Client::get`]. The blocking client does not
    /// reconnect: after its connection ended this fails with that error,
    /// and the broker has requeued the message (flagged `redelivered`).
    pub fn ack_get(&mut self, queue: &str, d: &Delivery) -> Result<()> {
        let i = self.conn(queue)?;
        self.send_ack(&Subscription { consumer_id: d.consumer_id, shard: i }, d.tag, None)
    }
}
