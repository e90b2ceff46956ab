//! The AMQP 0-9-1 front end: unmodified RabbitMQ clients (pika, lapin,
//! amqp091-go, ...) on `amqp_listen`, on every shard, over the same queues
//! the native protocol serves. See `docs/amqp.md` for what is supported.
//!
//! | piece | module |
//! |---|---|
//! | the codec, sans-IO: field types, framing, methods, reply codes | [`crate::protocol::amqp`] |
//! | per-channel state: tags, confirms, held deliveries, pending methods | [`channel`] |
//! | the connection: handshake, heartbeats, read loop, close | [`conn`] |
//! | the login: PLAIN, and EXTERNAL with a TLS client certificate | `login` |
//! | channel methods: queue, basic, confirm | [`handlers`] |
//! | basic.consume's arguments (`x-priority`) | `consume_args` |
//! | the user's permissions on each method (403 closes the channel) | `grants` |
//! | the core as handlers call it, with the state borrowed | [`calls`] |
//! | gathered acks, pauses (deep queues, resource alarms) | [`flow`] |
//! | exchange and binding methods, sent to the routing table's owner | [`routing`] |
//! | the hot path in: publish content into entries, batches per queue | [`publish`] |
//! | what comes back from the queues: replies and deliveries | [`out`] |
//! | transactions: tx.select / commit / rollback, the channel's buffer | [`tx`] |
//! | direct reply-to: the reply consumer, `reply_to` rewritten, replies delivered | `reply_to` |
//!
//! Everything is hand-written: the hot path (publish with its content
//! frames, deliver, ack/nack) works on the read buffer's bytes with no
//! allocation per message beyond the stored entry, and the cold path is
//! small enough that the `amq-protocol` crate would not pay for itself.

// Lengths and counts narrowed with `as` could wrap silently: here each
// narrowing says how (`protocol::wire::{len32, saturate}`, or an `allow`
// with the reason).
#![deny(clippy::cast_possible_truncation)]

pub mod calls;
pub mod channel;
pub mod conn;
mod consume_args;
mod consuming;
mod deliver;
pub mod flow;
mod grants;
pub mod handlers;
mod login;
pub mod out;
pub mod publish;
mod reading;
mod reply_to;
pub mod routing;
pub mod tx;

use crate::server::listener::Accepted;
use crate::server::shard::{ConnSink, Shard};
use crate::server::tls::ListenerTls;
use glommio::net::TcpListener;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Accepts AMQP connections (plain, or AMQPS when the listener has TLS)
/// until the task is dropped at shutdown.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, tls: Option<Arc<ListenerTls>>) {
    let what = if tls.is_some() { "amqps" } else { "amqp" };
    crate::server::listener::accept_each(shard, listener, tls, what, serve).await
}

async fn serve(shard: Rc<Shard>, accepted: Accepted) {
    let peer = accepted.peer;
    let conn = Rc::new(conn::AmqpConn::new(shard.clone(), peer));
    conn.outbox.set_send_timeout(Duration::from_millis(shard.config.send_timeout_ms));
    let Some(me) = shard.conns.register(conn.clone() as Rc<dyn ConnSink>) else {
        // Closed before any byte: AMQP has no way to say why before tune.
        shard.conns.log_unauthenticated_refusal("amqp");
        return;
    };
    conn.set_ref(me);
    let timeout = Duration::from_millis(shard.config.handshake_timeout_ms);
    // An eviction (unauthenticated_connections_max) ends a handshake too.
    let secured = futures_lite::future::or(accepted.secure(&shard, timeout), async {
        conn.outbox.wait_ended().await;
        Err(crate::server::tls::HandshakeError::Evicted)
    });
    let Ok(stream) = secured.await else {
        shard.conns.unregister(me, false);
        return;
    };
    if let Some(der) = stream.peer_certificate() {
        conn.set_client_certificate(der);
    }
    // A plain socket is read directly and through the ring (rt::reader);
    // the read half keeps the fd open while the reader uses it.
    let fd = (!stream.is_tls()).then(|| std::os::fd::AsRawFd::as_raw_fd(stream.tcp()));
    let (reader, writer) = futures_lite::io::split(stream);
    let w = conn.clone();
    let writer_task = glommio::spawn_local(async move { w.outbox.write_loop(writer).await });
    let t = conn.clone();
    let ticker = glommio::spawn_local(async move { t.tick_loop().await });
    let g = conn.clone();
    let gate = glommio::spawn_local(async move { g.gate.run(&g.shard, me, &g.outbox).await });
    conn.read_loop(reader, fd).await;
    ticker.await;
    writer_task.await;
    gate.await;
    tracing::debug!(shard = shard.id, ?peer, conn = me.conn_id, "AMQP connection closed");
}
