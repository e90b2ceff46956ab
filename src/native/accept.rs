//! The native listener: each accepted socket becomes a [`NativeConn`]
//! served by its own read, write, heartbeat and delivery-gate tasks.

use super::NativeConn;
use crate::protocol::ErrorCode;
use crate::server::listener::Accepted;
use crate::server::shard::{ConnSink, Shard};
use crate::server::tls::ListenerTls;
use crate::server::types::Reply;
use futures_lite::io::split;
use glommio::net::TcpListener;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Accepts native-protocol connections (plain, or TLS when the listener
/// has it) until the task is dropped at shutdown.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, tls: Option<Arc<ListenerTls>>) {
    let what = if tls.is_some() { "native-tls" } else { "native" };
    crate::server::listener::accept_each(shard, listener, tls, what, serve).await
}

async fn serve(shard: Rc<Shard>, accepted: Accepted) {
    let peer = accepted.peer.map_or_else(|| "?".into(), |a| a.to_string());
    let conn = Rc::new(NativeConn::new(shard.clone(), peer.clone(), accepted.is_tls()));
    conn.outbox.set_send_timeout(Duration::from_millis(shard.config.send_timeout_ms));
    let registered = shard.conns.register(conn.clone() as Rc<dyn ConnSink>);
    let Some(me) = registered else {
        shard.conns.log_unauthenticated_refusal("native");
        if accepted.is_tls() {
            // Saying why would take a handshake: the refusal is the close.
            return;
        }
        let max = shard.config.unauthenticated_connections_max;
        let why = format!("unauthenticated_connections_max = {max} reached");
        conn.send(Reply::error(0, ErrorCode::UnauthenticatedLimit, why));
        conn.outbox.close();
        if let Ok(stream) = accepted.secure(&shard, Duration::ZERO).await {
            conn.outbox.write_loop(split(stream).1).await;
        }
        return;
    };
    conn.set_ref(me);
    let timeout = Duration::from_millis(shard.config.handshake_timeout_ms);
    // An eviction (unauthenticated_connections_max) ends a handshake too.
    let secured = futures_lite::future::or(accepted.secure(&shard, timeout), async {
        conn.outbox.wait_ended().await;
        Err(crate::server::tls::HandshakeError::Evicted)
    });
    let stream = match secured.await {
        Ok(s) => s,
        Err(_) => {
            shard.conns.unregister(me, false);
            return;
        }
    };
    tracing::debug!(shard = shard.id, %peer, conn = me.conn_id, tls = stream.is_tls(), "connection open");
    // A plain socket's writer sends vectored: deliveries of stored entries
    // go out by reference (rt::writev). TLS encrypts through a copy anyway.
    let fd = (!stream.is_tls()).then(|| std::os::fd::AsRawFd::as_raw_fd(stream.tcp()));
    let (reader, writer) = split(stream);
    let w = conn.clone();
    let writer_task = glommio::spawn_local(async move {
        match fd {
            Some(fd) => w.outbox.write_loop_vectored(writer, fd).await,
            None => w.outbox.write_loop(writer).await,
        }
    });
    let b = conn.clone();
    let beat_task = glommio::spawn_local(async move { b.beat_loop().await });
    let g = conn.clone();
    let gate = glommio::spawn_local(async move { g.gate.run(&g.shard, me, &g.outbox).await });
    conn.read_loop(reader, fd).await;
    beat_task.await;
    writer_task.await;
    gate.await;
    tracing::debug!(shard = shard.id, %peer, conn = me.conn_id, "connection closed");
}
