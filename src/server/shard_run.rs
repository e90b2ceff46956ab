//! One shard's life on its executor: the mesh joined, storage recovered,
//! its tasks started on their task queues, the listeners served, and the
//! orderly stop.

use super::config::Config;
use super::listener::{self, BoundSocket};
use super::mesh::{Batch, Mesh};
use super::sched::Class;
use super::shard::{self, Shard};
use super::{alarm, cluster, definitions, fatal, health, remote, tls, FrontEnd, FrontEnds, CLOSE_WAIT, STOP_POLL};
use glommio::channels::channel_mesh::MeshBuilder;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

pub(super) struct ShardStart {
    pub(super) id: usize,
    pub(super) count: usize,
    pub(super) config: Arc<Config>,
    pub(super) sockets: listener::ShardSockets,
    pub(super) tls: Arc<tls::TlsSet>,
    pub(super) addrs: shard::ShardAddrs,
    pub(super) mesh: MeshBuilder<Batch, glommio::channels::channel_mesh::Full>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) alarms: Arc<alarm::Alarms>,
    /// The definitions file's users, when it holds them (read once here,
    /// for every shard's copy).
    pub(super) stored_access: Option<Arc<crate::storage::definitions::StoredAccess>>,
    /// Serve the listeners (the front ends above this layer).
    pub(super) fronts: FrontEnds,
    /// Shard 0 of a clustered node: what its member starts from.
    pub(super) cluster: Option<(cluster::ClusterStart, crate::cluster::meta::NodeInfo)>,
    /// A clustered node: this shard's data listener (`server::remote`).
    pub(super) data_listener: Option<std::net::TcpListener>,
    pub(super) remote: Arc<remote::RemoteShared>,
    pub(super) status: Arc<health::NodeStatus>,
    /// `Err` carries why the shard could not start (storage recovery).
    pub(super) ready: mpsc::Sender<Result<usize, String>>,
    /// Shard 0 with `load_definitions`: the import to run once all are ready.
    pub(super) boot_defs: Option<definitions::boot::Boot>,
}

/// One shard's life. `Err` says why it ended badly (also logged); a
/// panic unwinds through it and `Broker::stop` reports that too.
pub(super) async fn run_shard(s: ShardStart) -> Result<(), fatal::ShardEnd> {
    // A tick from the start, before the mesh join: the executor never
    // sleeps longer than this with nothing armed. Seen in tests: a shard
    // starting up (waiting on a mesh message or a DMA read) slept in
    // io_uring_enter until a signal interrupted it, about 100 s later; a
    // shard still joining the mesh slept for good (a start that never
    // became ready under load). Each wake-up also polls the cross-shard
    // channels, so a missed notification is picked up at the next tick.
    let tick = glommio::spawn_local(async {
        loop {
            glommio::timer::sleep(STOP_POLL).await;
        }
    });
    let Ok((senders, mut receivers)) = s.mesh.join().await else {
        tracing::error!(shard = s.id, "could not join the shard mesh");
        return Err(fatal::ShardEnd::MeshJoin);
    };
    if senders.peer_id() != s.id {
        tracing::error!(shard = s.id, peer = senders.peer_id(), "mesh peer order does not match shard order");
        return Err(fatal::ShardEnd::MeshOrder(senders.peer_id()));
    }
    let mesh = Mesh::new(senders, s.count, s.config.mesh_pending_max as usize);
    let stored_access = s.stored_access.as_deref();
    // `cores` is at most 1024 (validated).
    let (id, count) = (crate::protocol::wire::len16(s.id), crate::protocol::wire::len16(s.count));
    let node = shard::NodeShared { alarms: s.alarms, remote: s.remote, status: s.status };
    let shard = Rc::new(Shard::new(id, count, s.config.clone(), s.addrs, mesh, node, stored_access));
    *shard.remote.me.borrow_mut() = Rc::downgrade(&shard);
    let sched = shard.sched.clone();
    let mut tasks = sched.start_probes();
    for (peer, rx) in receivers.streams() {
        let sh = shard.clone();
        tasks.push(sched.spawn(Class::Latency, async move {
            while let Some(batch) = rx.recv().await {
                // A disk behind: the peer's requests wait in the channel.
                sh.wait_log_space().await;
                for msg in batch {
                    sh.on_mesh(msg);
                }
                // A receive that finds batches waiting never returns
                // Pending: without this a peer's flood of forwarded
                // publishes keeps this shard's sockets from being polled.
                crate::rt::yield_to_reactor().await;
            }
            tracing::debug!(shard = sh.id, peer, "mesh receiver closed");
        })?);
    }
    for peer in (0..s.count).filter(|p| *p != s.id) {
        let sh = shard.clone();
        tasks.push(sched.spawn(Class::Latency, async move {
            let sh2 = sh.clone();
            let peer = crate::protocol::wire::len16(peer);
            sh.mesh.flush_loop(peer, move |b| sh2.on_mesh_failure(peer, b)).await
        })?);
    }
    // Recovery and the routing table before the first connection (the
    // sockets are bound: the kernel holds connections meanwhile).
    if let Err(e) = shard.open_storage().await {
        tracing::error!(shard = s.id, "{e}");
        let _ = s.ready.send(Err(format!("shard {}: {e}", s.id)));
        return Err(fatal::ShardEnd::Recovery(e));
    }
    shard.delete_orphan_queues();
    if let Some(cs) = s.cluster {
        // Before the definitions: the table comes from the cluster.
        if let Err(e) = cluster::start::run(&shard, cs).await {
            tracing::error!(shard = s.id, "{e}");
            let _ = s.ready.send(Err(e.clone()));
            return Err(fatal::ShardEnd::Cluster(e));
        }
    }
    // Group commit on its own queue; compaction, spill reads, sweeps and
    // the definitions rewrite on the bulk one (`server::sched`).
    tasks.push(sched.spawn(Class::Flush, shard.clone().run_flusher())?);
    tasks.push(sched.spawn(Class::Bulk, shard.clone().run_housekeeping())?);
    // Reads spilled messages back (memory budget).
    tasks.push(sched.spawn(Class::Bulk, shard.clone().run_fetcher())?);
    // Reads streams from the log for consumers behind their window.
    tasks.push(sched.spawn(Class::Bulk, shard.clone().run_stream_reader())?);
    // TTL and x-expires: one timer task per shard.
    tasks.push(sched.spawn(Class::Bulk, shard.clone().run_timers())?);
    tasks.push(sched.spawn(Class::Latency, shard.clone().run_remote_resumes())?);
    // Resource alarms: this shard's accounted bytes, and wake-ups of the
    // connections blocked on an alarm once it clears.
    tasks.push(glommio::spawn_local(shard.clone().run_alarm_tick()));
    // consumer_timeout_ms: one sweep per shard.
    tasks.push(sched.spawn(Class::Bulk, shard.clone().run_consumer_timeouts())?);
    if shard.id == shard::routing_replica::METADATA_SHARD {
        tasks.push(sched.spawn(Class::Bulk, shard.clone().run_definitions_writer())?);
        if let Err(e) = shard.publish_definitions() {
            tracing::error!(shard = s.id, "{e}");
            let _ = s.ready.send(Err(e.to_string()));
            return Err(fatal::ShardEnd::Definitions(e));
        }
    }
    // Another shard failing its start (its storage refused to open) never
    // sends the routing table: the broker's stop ends the wait.
    let stopped = async {
        while !s.stop.load(Ordering::SeqCst) {
            glommio::timer::sleep(STOP_POLL).await;
        }
        false
    };
    let ready = async {
        shard.wait_routing_ready().await;
        true
    };
    if !futures_lite::future::or(ready, stopped).await {
        tracing::info!(shard = s.id, "stopped before the routing table arrived");
        shard.close_storage().await;
        return Ok(());
    }
    tasks.extend(serve_listeners(&shard, s.sockets, &s.tls, s.fronts)?);
    if let Some(l) = s.data_listener {
        // SAFETY: the fd is this listener's own, handed over whole.
        let l = unsafe {
            <glommio::net::TcpListener as std::os::fd::FromRawFd>::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(l))
        };
        tasks.push(sched.spawn(Class::Latency, remote::serve::serve(shard.clone(), l))?);
    }
    if let Some(boot) = s.boot_defs {
        tasks.push(sched.spawn(Class::Bulk, definitions::boot::run(shard.clone(), boot, s.stop.clone()))?);
    }
    tracing::info!(shard = s.id, "shard ready");
    let _ = s.ready.send(Ok(s.id));
    while !s.stop.load(Ordering::SeqCst) {
        glommio::timer::sleep(STOP_POLL).await;
    }
    shard.conns.shut_down_all("the broker is shutting down");
    // The final flush is bounded: a stuck device must not keep the process
    // from exiting (what was confirmed is already synced).
    let closed = glommio::timer::timeout(CLOSE_WAIT, async {
        shard.close_storage().await;
        Ok(())
    })
    .await;
    if closed.is_err() {
        tracing::error!(shard = s.id, "storage did not close within {CLOSE_WAIT:?}; stopping without the final flush");
    }
    // Let writers flush the goodbye frames; tasks are dropped with the executor.
    glommio::timer::sleep(Duration::from_millis(50)).await;
    tracing::info!(shard = s.id, "shard stopped");
    drop(tasks);
    drop(tick);
    match closed {
        Ok(()) => Ok(()),
        Err(_) => Err(fatal::ShardEnd::CloseTimeout(CLOSE_WAIT)),
    }
}

/// Starts a front end's accept loop on each of the shard's sockets: the
/// client protocols on the latency queue (a connection's tasks join the
/// queue of the accept loop that spawns them), HTTP (scrapes, the
/// management API) on the bulk one.
fn serve_listeners(
    shard: &Rc<Shard>,
    sockets: listener::ShardSockets,
    tls: &tls::TlsSet,
    fronts: FrontEnds,
) -> Result<Vec<glommio::Task<()>>, fatal::ShardEnd> {
    type Serving = (FrontEnd, BoundSocket, Option<Arc<tls::ListenerTls>>, Class);
    let mut serving: Vec<Serving> = Vec::new();
    for sock in sockets.native {
        serving.push((fronts.native, sock, None, Class::Latency));
    }
    for sock in sockets.native_tls.into_iter().flatten() {
        serving.push((fronts.native, sock, tls.native.clone(), Class::Latency));
    }
    serving.push((fronts.amqp, sockets.amqp, None, Class::Latency));
    if let Some(sock) = sockets.amqps {
        serving.push((fronts.amqp, sock, tls.amqps.clone(), Class::Latency));
    }
    if let Some(sock) = sockets.http {
        serving.push((fronts.http, sock, None, Class::Bulk));
    }
    if let Some(sock) = sockets.https {
        serving.push((fronts.http, sock, tls.https.clone(), Class::Bulk));
    }
    serving
        .into_iter()
        .map(|(front, sock, tls, class)| shard.sched.spawn(class, front(shard.clone(), sock.into_listener(), tls)))
        .collect()
}
