//! A minimal, pipelined AMQP 0-9-1 client on glommio, for load generation.
//!
//! One connection per producer or consumer, one channel (1) each. Publishes
//! are stamped from a template into one buffer and written with one syscall
//! per batch; confirms (`basic.ack`/`basic.nack`, with `multiple`) are read by
//! a separate task on the same executor; consumers ack with `multiple` every
//! `ack_every` deliveries.
//!
//! The framing, field types and method parsers are the broker's own codec,
//! `ringmq::protocol::amqp`; only the publish template is the loadgen's.
//!
//! `amqps://` runs the same over TLS (the ringmq client's, rustls): the
//! socket is a `ringmq::rt::Transport`, one match per read or write, and
//! every write is followed by a flush (TLS may hold a record until then).

mod consumer;
mod template;
mod tx;
mod url;

use crate::header::{Header, HEADER_LEN};
use anyhow::{anyhow, bail, Context, Result};
use bytes::{BufMut, BytesMut};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use glommio::net::TcpStream;
use glommio::sync::Semaphore;
use ringmq::protocol::amqp::client::{parse_close, parse_confirm, parse_tune, split};
use ringmq::protocol::amqp::frame::{self, Decoded, Frame, PROTOCOL_HEADER};
use ringmq::protocol::amqp::method::{self, code, id, MethodId};
use ringmq::protocol::amqp::wire::{put_bits, put_longstr, put_shortstr, Reader, TableWriter};
use ringmq::rt::Transport;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

pub use consumer::Consumer;
use template::PublishTemplate;
pub use tx::TxSpec;
pub use url::{AmqpTls, AmqpUrl};

const CHANNEL: u16 = 1;
const FRAME_MAX: u32 = 131072;

/// Buffered frame reader over any async reader.
struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    frame_max: usize,
}

impl FrameReader {
    fn new() -> Self {
        FrameReader { buf: vec![0; 256 * 1024], start: 0, end: 0, frame_max: FRAME_MAX as usize }
    }

    /// Reads more bytes; Ok(false) at end of stream.
    async fn fill<R: futures_lite::AsyncRead + Unpin>(&mut self, r: &mut R) -> std::io::Result<bool> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let n = self.buf.len() * 2;
                self.buf.resize(n, 0);
            }
        }
        let n = r.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n > 0)
    }

    /// The next complete frame, if buffered.
    fn next(&mut self) -> Result<Option<Frame<'_>>> {
        match frame::decode(&self.buf[self.start..self.end], self.frame_max)? {
            Decoded::Incomplete => Ok(None),
            Decoded::Frame(f, n) => {
                self.start += n;
                Ok(Some(f))
            }
        }
    }

    /// Reads until a whole frame is buffered; returns an owned copy.
    async fn read_frame<R: futures_lite::AsyncRead + Unpin>(&mut self, r: &mut R) -> Result<(u8, u16, Vec<u8>)> {
        loop {
            if let Some(f) = self.next()? {
                return Ok((f.kind, f.channel, f.payload.to_vec()));
            }
            if !self.fill(r).await? {
                bail!("connection closed by the broker");
            }
        }
    }
}

fn close_error(what: &str, args: &[u8]) -> anyhow::Error {
    match parse_close(args) {
        Ok(close) => anyhow!("broker closed the {what}: {close}"),
        Err(e) => anyhow!("broker closed the {what}: {e}"),
    }
}

/// connection.start-ok: PLAIN with `user` and `pass`, and the capabilities
/// this client relies on.
fn put_start_ok(b: &mut BytesMut, user: &str, pass: &str) {
    method::put(b, 0, id::CONNECTION_START_OK, |b| {
        let props = TableWriter::begin(b);
        props.str(b, "product", "ringmq-loadgen");
        let caps = props.table(b, "capabilities");
        for cap in ["publisher_confirms", "basic.nack", "consumer_cancel_notify"] {
            caps.bool(b, cap, true);
        }
        caps.finish(b);
        props.finish(b);
        put_shortstr(b, "PLAIN");
        put_longstr(b, format!("\0{user}\0{pass}").as_bytes());
        put_shortstr(b, "en_US");
    });
}

/// TLS over `tcp`, verified as `t` says, within `OPEN_TIMEOUT`.
async fn secure(tcp: TcpStream, t: &AmqpTls) -> Result<Transport> {
    let files = ringmq::client::tls::TlsFiles { ca: t.ca.clone(), cert: t.cert.clone(), key: t.key.clone() };
    let tls = ringmq::client::tls::Tls::new(&files, &t.server_name)?;
    Ok(tls.connect(tcp, OPEN_TIMEOUT).await?)
}

/// connection.close, the normal way.
fn put_close_bye(b: &mut BytesMut) {
    method::put_close(b, 0, id::CONNECTION_CLOSE, code::REPLY_SUCCESS, "bye", (0, 0));
}

/// A connection with channel 1 open, in the request/response phase.
pub struct Connection {
    stream: Transport,
    reader: FrameReader,
    wbuf: BytesMut,
    frame_max: usize,
}

/// How long connecting and the AMQP handshake may take.
const OPEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

impl Connection {
    /// Connects, authenticates and opens channel 1, within `OPEN_TIMEOUT`:
    /// a broker that accepts the socket but never finishes the handshake
    /// (a RabbitMQ still starting, say) must not hang the run.
    pub async fn open(url: &AmqpUrl) -> Result<Connection> {
        match glommio::timer::timeout(OPEN_TIMEOUT, async { Ok(Self::open_unbounded(url).await) }).await {
            Ok(r) => r,
            Err(_) => Err(anyhow!("no AMQP handshake with {} within {OPEN_TIMEOUT:?}", url.addr)),
        }
    }

    async fn open_unbounded(url: &AmqpUrl) -> Result<Connection> {
        let tcp =
            TcpStream::connect(url.addr.as_str()).await.map_err(|e| anyhow!("connecting to {}: {e}", url.addr))?;
        tcp.set_nodelay(true).map_err(|e| anyhow!("TCP_NODELAY: {e}"))?;
        let stream = match &url.tls {
            Some(t) => secure(tcp, t).await.map_err(|e| anyhow!("connecting to {}: {e}", url.addr))?,
            None => Transport::Plain(tcp),
        };
        let mut c = Connection {
            stream,
            reader: FrameReader::new(),
            wbuf: BytesMut::with_capacity(4096),
            frame_max: FRAME_MAX as usize,
        };
        c.stream.write_all(PROTOCOL_HEADER).await?;
        c.stream.flush().await?;
        c.expect(id::CONNECTION_START).await?;
        put_start_ok(&mut c.wbuf, &url.user, &url.pass);
        c.flush().await?;
        let tune = parse_tune(&c.expect(id::CONNECTION_TUNE).await?)?;
        let frame_max = if tune.frame_max == 0 { FRAME_MAX } else { tune.frame_max.min(FRAME_MAX) };
        c.frame_max = frame_max as usize;
        c.reader.frame_max = c.frame_max;
        method::put(&mut c.wbuf, 0, id::CONNECTION_TUNE_OK, |b| {
            // Heartbeats off: runs are short and both ends are on loopback.
            b.put_u16(tune.channel_max.min(16));
            b.put_u32(frame_max);
            b.put_u16(0);
        });
        method::put(&mut c.wbuf, 0, id::CONNECTION_OPEN, |b| {
            put_shortstr(b, &url.vhost);
            put_shortstr(b, "");
            put_bits(b, &[false]);
        });
        c.flush().await?;
        c.expect(id::CONNECTION_OPEN_OK).await?;
        c.rpc(id::CHANNEL_OPEN, id::CHANNEL_OPEN_OK, |b| put_shortstr(b, "")).await?;
        Ok(c)
    }

    async fn flush(&mut self) -> Result<()> {
        self.stream.write_all(&self.wbuf).await?;
        self.stream.flush().await?;
        self.wbuf.clear();
        Ok(())
    }

    /// Waits for method `id`, skipping heartbeats; fails on a close.
    async fn expect(&mut self, want: MethodId) -> Result<Vec<u8>> {
        loop {
            let (kind, _ch, payload) = self.reader.read_frame(&mut self.stream).await?;
            if kind != frame::METHOD {
                continue;
            }
            let (got, args) = split(&payload)?;
            if got == want {
                return Ok(args.to_vec());
            }
            match got {
                id::CONNECTION_CLOSE => return Err(close_error("connection", args)),
                id::CHANNEL_CLOSE => return Err(close_error("channel", args)),
                _ => {} // e.g. a stray basic.ack during setup
            }
        }
    }

    /// Sends method `mid`, whose arguments `args` writes, and waits for `reply`.
    async fn rpc(&mut self, mid: MethodId, reply: MethodId, args: impl FnOnce(&mut BytesMut)) -> Result<Vec<u8>> {
        let ch = if mid.0 == 10 { 0 } else { CHANNEL };
        method::put(&mut self.wbuf, ch, mid, args);
        self.flush().await?;
        self.expect(reply).await
    }

    pub async fn declare(&mut self, queue: &str, durable: bool) -> Result<()> {
        self.rpc(id::QUEUE_DECLARE, id::QUEUE_DECLARE_OK, |b| {
            b.put_u16(0);
            put_shortstr(b, queue);
            // passive, durable, exclusive, auto-delete, no-wait
            put_bits(b, &[false, durable, false, false, false]);
            b.put_u32(0); // no arguments
        })
        .await
        .with_context(|| format!("declaring queue {queue}"))?;
        Ok(())
    }

    /// exchange.declare of `kind` (direct, fanout, topic, ...).
    pub async fn declare_exchange(&mut self, exchange: &str, kind: &str, durable: bool) -> Result<()> {
        self.rpc(id::EXCHANGE_DECLARE, id::EXCHANGE_DECLARE_OK, |b| {
            b.put_u16(0);
            put_shortstr(b, exchange);
            put_shortstr(b, kind);
            // passive, durable, auto-delete, internal, no-wait
            put_bits(b, &[false, durable, false, false, false]);
            b.put_u32(0);
        })
        .await
        .with_context(|| format!("declaring {kind} exchange {exchange}"))?;
        Ok(())
    }

    /// queue.bind of `queue` to `exchange` with `key`.
    pub async fn bind(&mut self, queue: &str, exchange: &str, key: &str) -> Result<()> {
        self.rpc(id::QUEUE_BIND, id::QUEUE_BIND_OK, |b| {
            b.put_u16(0);
            put_shortstr(b, queue);
            put_shortstr(b, exchange);
            put_shortstr(b, key);
            put_bits(b, &[false]); // no-wait
            b.put_u32(0);
        })
        .await
        .with_context(|| format!("binding queue {queue} to exchange {exchange} with key {key:?}"))?;
        Ok(())
    }

    /// exchange.delete, then closes the connection. An exchange that does
    /// not exist is no error (brokers that close the channel for it get
    /// their channel.close-ok).
    pub async fn delete_exchange(mut self, exchange: &str) {
        let r = self
            .rpc(id::EXCHANGE_DELETE, id::EXCHANGE_DELETE_OK, |b| {
                b.put_u16(0);
                put_shortstr(b, exchange);
                put_bits(b, &[false, false]); // if-unused, no-wait
            })
            .await;
        if r.is_err() {
            method::put(&mut self.wbuf, CHANNEL, id::CHANNEL_CLOSE_OK, |_| {});
        }
        let _ = self.close().await;
    }

    pub async fn purge(&mut self, queue: &str) -> Result<u32> {
        let ok = self
            .rpc(id::QUEUE_PURGE, id::QUEUE_PURGE_OK, |b| {
                b.put_u16(0);
                put_shortstr(b, queue);
                put_bits(b, &[false]); // no-wait
            })
            .await?;
        Ok(Reader::new(&ok).u32()?)
    }

    /// connection.close, waiting for close-ok (up to 2 s).
    pub async fn close(mut self) -> Result<()> {
        put_close_bye(&mut self.wbuf);
        self.flush().await?;
        let wait = self.expect(id::CONNECTION_CLOSE_OK);
        let timeout = async {
            glommio::timer::sleep(Duration::from_secs(2)).await;
            Ok(Vec::new())
        };
        futures_lite::future::or(wait, timeout).await?;
        Ok(())
    }

    /// Turns this connection into a publisher to `exchange` with
    /// `routing_key` (exchange "": straight into the queue named by the key).
    pub async fn into_producer(
        mut self,
        exchange: &str,
        routing_key: &str,
        size: usize,
        persistent: bool,
        confirm: Option<ConfirmSink>,
        max_inflight: usize,
    ) -> Result<Producer> {
        if confirm.is_some() {
            self.rpc(id::CONFIRM_SELECT, id::CONFIRM_SELECT_OK, |b| put_bits(b, &[false])).await?;
        }
        let template = PublishTemplate::new(CHANNEL, exchange, routing_key, size, persistent, self.frame_max);
        let Connection { stream, reader, .. } = self;
        let (rd, wr) = futures_lite::io::split(stream);
        let state = Rc::new(ConfirmState {
            pending: RefCell::new(VecDeque::new()),
            front_tag: Cell::new(1),
            sem: Semaphore::new(max_inflight as u64),
            confirm: confirm.is_some(),
            sink: RefCell::new(confirm),
            closed: Cell::new(false),
        });
        let reader_task = glommio::spawn_local(producer_reader(rd, reader, state.clone())).detach();
        Ok(Producer { wr, template, wbuf: BytesMut::with_capacity(64 * 1024), state, reader_task, max_inflight })
    }

    /// Turns this connection into a consumer of `queue`.
    pub async fn into_consumer(mut self, queue: &str, prefetch: u16, ack_every: u64) -> Result<Consumer> {
        self.rpc(id::BASIC_QOS, id::BASIC_QOS_OK, |b| {
            b.put_u32(0);
            b.put_u16(prefetch);
            put_bits(b, &[false]); // global
        })
        .await?;
        self.rpc(id::BASIC_CONSUME, id::BASIC_CONSUME_OK, |b| {
            b.put_u16(0);
            put_shortstr(b, queue);
            put_shortstr(b, "");
            // no-local, no-ack, exclusive, no-wait
            put_bits(b, &[false, false, false, false]);
            b.put_u32(0);
        })
        .await?;
        self.stream
            .tcp()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| anyhow!("setting the read timeout: {e}"))?;
        Ok(Consumer { conn: self, ack_every: ack_every.max(1) })
    }
}

/// Where confirm results go: called with (intended send time, sequence,
/// outcome: `Ok` when confirmed, `Err(why)` when refused or never to be
/// confirmed).
pub type ConfirmSink = Box<dyn FnMut(u64, u64, Result<(), &str>)>;

struct ConfirmState {
    /// Intended send time and sequence of each unconfirmed publish, and
    /// whether it has been confirmed out of order already.
    pending: RefCell<VecDeque<(u64, u64, bool)>>,
    /// Delivery tag of `pending[0]`.
    front_tag: Cell<u64>,
    sem: Semaphore,
    sink: RefCell<Option<ConfirmSink>>,
    confirm: bool,
    closed: Cell<bool>,
}

impl ConfirmState {
    fn settle(&self, tag: u64, multiple: bool, ack: bool) {
        let mut pending = self.pending.borrow_mut();
        let front = self.front_tag.get();
        if tag < front {
            return;
        }
        let idx = (tag - front) as usize;
        if idx >= pending.len() {
            return;
        }
        let mut sink = self.sink.borrow_mut();
        let mut mark = |slot: &mut (u64, u64, bool)| {
            if !slot.2 {
                slot.2 = true;
                if let Some(s) = sink.as_mut() {
                    s(slot.0, slot.1, if ack { Ok(()) } else { Err("basic.nack") });
                }
            }
        };
        if multiple {
            for slot in pending.iter_mut().take(idx + 1) {
                mark(slot);
            }
        } else {
            mark(&mut pending[idx]);
        }
        let mut popped = 0;
        while pending.front().is_some_and(|s| s.2) {
            pending.pop_front();
            popped += 1;
        }
        self.front_tag.set(front + popped);
        if popped > 0 {
            self.sem.signal(popped);
        }
    }
}

async fn producer_reader(mut rd: ReadHalf<Transport>, mut reader: FrameReader, state: Rc<ConfirmState>) -> Result<()> {
    let result = async {
        loop {
            while let Some(f) = reader.next()? {
                if f.kind != frame::METHOD {
                    continue;
                }
                let (mid, args) = split(f.payload)?;
                match mid {
                    id::BASIC_ACK | id::BASIC_NACK => {
                        let c = parse_confirm(args)?;
                        state.settle(c.delivery_tag, c.multiple, mid == id::BASIC_ACK);
                    }
                    id::CONNECTION_CLOSE_OK => return Ok(()),
                    id::CONNECTION_CLOSE => return Err(close_error("connection", args)),
                    id::CHANNEL_CLOSE => return Err(close_error("channel", args)),
                    _ => {}
                }
            }
            if !reader.fill(&mut rd).await? {
                bail!("connection closed by the broker");
            }
        }
    }
    .await;
    state.closed.set(true);
    state.sem.close();
    if let Err(e) = &result {
        eprintln!("amqp producer: {e:#}");
    }
    result
}

pub struct Producer {
    wr: WriteHalf<Transport>,
    template: PublishTemplate,
    wbuf: BytesMut,
    state: Rc<ConfirmState>,
    reader_task: glommio::task::JoinHandle<Result<()>>,
    max_inflight: usize,
}

impl Producer {
    /// Publishes one message per `(header bytes, intended time)`, in one write.
    /// With confirms, first waits until they fit in the in-flight window.
    pub async fn publish(&mut self, msgs: &[([u8; HEADER_LEN], u64)]) -> Result<()> {
        if self.state.confirm {
            self.state.sem.acquire(msgs.len() as u64).await.map_err(|_| anyhow!("connection lost"))?;
            let mut pending = self.state.pending.borrow_mut();
            for (hdr, intended) in msgs {
                let seq = Header::read(hdr).map_or(0, |h| h.seq);
                pending.push_back((*intended, seq, false));
            }
        } else if self.state.closed.get() {
            bail!("connection lost");
        }
        self.wbuf.clear();
        for (hdr, _) in msgs {
            self.template.stamp(&mut self.wbuf, hdr);
        }
        self.wr.write_all(&self.wbuf).await?;
        self.wr.flush().await?;
        Ok(())
    }

    /// Waits (up to `timeout`) for outstanding confirms, then closes.
    pub async fn finish(mut self, timeout: Duration) -> Result<()> {
        if self.state.confirm {
            let all = self.max_inflight as u64;
            let wait = async { self.state.sem.acquire(all).await.is_ok() };
            let time = async {
                glommio::timer::sleep(timeout).await;
                false
            };
            if !futures_lite::future::or(wait, time).await && !self.state.closed.get() {
                eprintln!(
                    "amqp producer: {} publishes still unconfirmed after {:?}",
                    self.state.pending.borrow().len(),
                    timeout
                );
            }
        }
        self.wbuf.clear();
        put_close_bye(&mut self.wbuf);
        let _ = self.wr.write_all(&self.wbuf).await;
        let _ = self.wr.flush().await;
        let reader = async {
            let _ = (&mut self.reader_task).await;
        };
        futures_lite::future::or(reader, glommio::timer::sleep(Duration::from_secs(2))).await;
        Ok(())
    }
}

/// What a consumer does with each delivery.
pub trait Sink {
    /// One message; `prefix` is the start of its body (up to the header length).
    fn deliver(&mut self, prefix: &[u8], now_ns: u64);
    /// After every batch of deliveries read with one syscall.
    fn flush(&mut self);
    /// Polled after every batch and at least every 100 ms.
    fn should_stop(&mut self, now_ns: u64) -> bool;
    /// Polled with `should_stop`: `Some(why)` ends this subscription with
    /// an error, so that a `--reconnect` run subscribes again
    /// (`--resubscribe-idle`).
    fn stale(&mut self, _now_ns: u64) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringmq::protocol::amqp::method::Method;
    use ringmq::protocol::amqp::wire::{has_capability, table_get};

    /// What the loadgen writes, read by the broker's parser.
    #[test]
    fn start_ok_and_close_as_the_broker_reads_them() {
        let mut b = BytesMut::new();
        put_start_ok(&mut b, "guest", "pw");
        put_close_bye(&mut b);
        let Ok(Decoded::Frame(f, n)) = frame::decode(&b, 4096) else { panic!("no frame") };
        let Ok((_, Method::StartOk { client_props, mechanism, response })) = method::parse(f.payload) else {
            panic!("not a start-ok")
        };
        assert_eq!((mechanism, response), ("PLAIN", &b"\0guest\0pw"[..]));
        assert_eq!(table_get(client_props, "product"), Some((b'S', &b"ringmq-loadgen"[..])));
        for cap in ["publisher_confirms", "basic.nack", "consumer_cancel_notify"] {
            assert!(has_capability(client_props, cap), "{cap}");
        }
        let Ok(Decoded::Frame(f, _)) = frame::decode(&b[n..], 4096) else { panic!("no close") };
        assert!(matches!(method::parse(f.payload), Ok((_, Method::Close { code: 200, text: "bye" }))));
    }

    #[test]
    fn confirms_in_and_out_of_order() {
        let got = Rc::new(RefCell::new(Vec::new()));
        let g = got.clone();
        let state = ConfirmState {
            pending: RefCell::new((0..5).map(|i| (100 + i, i, false)).collect()),
            front_tag: Cell::new(1),
            sem: Semaphore::new(0),
            sink: RefCell::new(Some(Box::new(move |t, _, r| g.borrow_mut().push((t, r.is_ok()))))),
            confirm: true,
            closed: Cell::new(false),
        };
        state.settle(3, false, false); // nack of tag 3 alone
        assert_eq!(state.front_tag.get(), 1);
        state.settle(2, true, true); // tags 1, 2
        assert_eq!(state.front_tag.get(), 4);
        state.settle(5, true, true); // tags 4, 5 (3 already settled)
        assert_eq!(state.front_tag.get(), 6);
        assert_eq!(state.sem.available(), 5);
        assert_eq!(*got.borrow(), vec![(102, false), (100, true), (101, true), (103, true), (104, true)]);
        state.settle(1, true, true); // stale: ignored
        assert_eq!(got.borrow().len(), 5);
    }
}
