//! The native listener: each accepted socket becomes a [`NativeConn`]
//! served by its own read, write, heartbeat and delivery-gate tasks.

use super::NativeConn;
use crate::protocol::ErrorCode;
use crate::server::shard::{ConnSink, Shard};
use crate::server::types::Reply;
use futures_lite::io::split;
use glommio::net::{TcpListener, TcpStream};
use std::rc::Rc;
use std::time::Duration;

/// Accepts native-protocol connections until the task is dropped at shutdown.
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    crate::server::listener::accept_each(shard, listener, "native", serve).await
}

async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
    let _ = stream.set_nodelay(true);
    let conn = Rc::new(NativeConn::new(shard.clone(), peer.clone()));
    conn.outbox.set_send_timeout(Duration::from_millis(shard.config.send_timeout_ms));
    let registered = shard.conns.register(conn.clone() as Rc<dyn ConnSink>);
    let (reader, writer) = split(stream);
    let Some(me) = registered else {
        let max = shard.config.unauthenticated_connections_max;
        let why = format!("unauthenticated_connections_max = {max} reached");
        shard.conns.log_unauthenticated_refusal("native");
        conn.send(Reply::error(0, ErrorCode::UnauthenticatedLimit, why));
        conn.outbox.close();
        conn.outbox.write_loop(writer).await;
        return;
    };
    conn.set_ref(me);
    tracing::debug!(shard = shard.id, %peer, conn = me.conn_id, "connection open");
    let w = conn.clone();
    let writer_task = glommio::spawn_local(async move { w.outbox.write_loop(writer).await });
    let b = conn.clone();
    let beat_task = glommio::spawn_local(async move { b.beat_loop().await });
    let g = conn.clone();
    let gate = glommio::spawn_local(async move { g.gate.run(&g.shard, me, &g.outbox).await });
    conn.read_loop(reader).await;
    beat_task.await;
    writer_task.await;
    gate.await;
    tracing::debug!(shard = shard.id, %peer, conn = me.conn_id, "connection closed");
}
