//! The broker: N shards, each a glommio executor pinned to a core, owning
//! the queues that hash to it.

// Lengths and counts narrowed with `as` could wrap silently: here each
// narrowing says how (`protocol::wire::{len32, saturate, usize_of}`, or an
// `allow` with the reason).
#![deny(clippy::cast_possible_truncation)]

pub mod admin;
pub mod admin_users;
pub mod alarm;
pub mod cluster;
pub mod config;
pub mod deadletter;
pub mod definitions;
pub mod fatal;
pub mod gate;
pub mod grants;
pub mod health;
pub mod listener;
pub mod mesh;
pub mod notify;
pub mod ops;
pub mod policy;
pub mod process_stats;
pub mod queue;
pub mod remote;
pub mod sched;
pub mod shard;
mod shard_run;
pub mod stats;
pub mod stats_rabbit;
pub mod stats_rabbit_detail;
pub mod stats_rows;
pub mod system;
pub mod tls;
pub mod types;

use config::Config;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use shard::Shard;
use shard_run::{run_shard, ShardStart};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot create data dir {path}: {source}")]
    DataDir { path: std::path::PathBuf, source: std::io::Error },
    #[error("TLS: {0}")]
    Tls(tls::TlsError),
    #[error("cluster: {0}")]
    Cluster(String),
    #[error("storage: {0}")]
    Storage(String),
    #[error("{0}")]
    Definitions(String),
    #[error("glommio could not start shard {shard}: {message}. {hint}")]
    Executor { shard: usize, message: String, hint: String },
    #[error("cannot start the resource alarm monitor thread: {0}")]
    Monitor(std::io::Error),
    #[error("{ready} of {shards} shards were ready after {waited:?} (recovery or the routing table never finished); see the log")]
    NotReady { ready: usize, shards: usize, waited: Duration },
}

/// A running broker. Dropping it without `stop` leaves the shards running.
/// Its addresses are the bound ones (ports 0 resolved).
pub struct Broker {
    /// The shared native address every shard accepts on.
    pub native_addr: SocketAddr,
    /// Shard i's own native address.
    pub shard_addrs: Vec<SocketAddr>,
    /// The AMQP 0-9-1 address every shard accepts on.
    pub amqp_addr: SocketAddr,
    /// Prometheus `/metrics` and the HTTP management API (served by shard 0).
    pub metrics_addr: SocketAddr,
    /// The native protocol over TLS, and each shard's own TLS address.
    pub tls_addr: Option<SocketAddr>,
    pub tls_shard_addrs: Vec<SocketAddr>,
    pub amqps_addr: Option<SocketAddr>,
    pub https_addr: Option<SocketAddr>,
    /// The inter-node link's address, on a clustered node.
    pub cluster_addr: Option<SocketAddr>,
    /// The TLS listeners' certificates: `reload` on SIGHUP.
    pub tls: Arc<tls::TlsSet>,
    stop: Arc<AtomicBool>,
    threads: Vec<glommio::ExecutorJoinHandle<Result<(), fatal::ShardEnd>>>,
    /// A shard's id when its thread ends (`fatal::EndGuard`).
    ended: mpsc::Receiver<usize>,
    /// The resource alarm monitor (`alarm.rs`), once every shard is ready.
    monitor: Option<std::thread::JoinHandle<()>>,
}

/// A front end's accept loop for one shard's listener: given by the layer
/// above (`Broker::start` in `src/broker.rs`), so the core does not import
/// the protocols built on it. Called once per listener per shard; what it
/// returns runs for the shard's life.
pub type FrontEnd = fn(
    Rc<Shard>,
    glommio::net::TcpListener,
    Option<Arc<tls::ListenerTls>>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

/// The front end that serves each listener of a shard.
#[derive(Clone, Copy)]
pub struct FrontEnds {
    /// `listen` (shared by every shard) and each shard's own port.
    pub native: FrontEnd,
    /// `amqp_listen`, on every shard.
    pub amqp: FrontEnd,
    /// `metrics_listen`: metrics and the management API, shard 0 only.
    pub http: FrontEnd,
}

impl Broker {
    /// Validates the config, binds every listener, starts the shards with
    /// `fronts` serving the listeners, and returns once all of them accept
    /// connections.
    pub fn start_with(mut config: Config, fronts: FrontEnds) -> Result<Broker, StartError> {
        config.validate()?;
        // Hashed here, once, not by each shard with a salt of its own.
        let seeds: Result<Vec<_>, _> = config.users.iter().map(crate::auth::UserSeed::hashed).collect();
        config.users = seeds.map_err(|e| config::ConfigError::Invalid { key: "users", why: e.to_string() })?;
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| StartError::DataDir { path: config.data_dir.clone(), source })?;
        crate::storage::meta::check_shard_count(&config.data_dir, config.shard_count())
            .map_err(|e| StartError::Storage(e.to_string()))?;
        let stored_access = stored_access(&config)?;
        let n = config.shard_count();
        let memlock = system::raise_memlock();
        let tls = Arc::new(tls::TlsSet::load(&config).map_err(StartError::Tls)?);
        let bound = listener::Bound::bind(&config, n)?;
        let tls_shard_addrs = bound.native_tls.as_ref().map(|t| t.shard_addrs.clone()).unwrap_or_default();
        let (native_addr, shard_addrs) = (bound.native.addr, bound.native.shard_addrs.clone());
        let (amqp_addr, metrics_addr) = (bound.amqp.1, bound.http.1);
        let tls_addr = bound.native_tls.as_ref().map(|t| t.addr);
        let (amqps_addr, https_addr) = (bound.amqps.as_ref().map(|a| a.1), bound.https.as_ref().map(|h| h.1));
        let info = crate::cluster::meta::NodeInfo {
            name: config.node_name(),
            cluster_addr: config.cluster_advertised().unwrap_or_default(),
            native_addr: native_addr.to_string(),
            shard_addrs: shard_addrs.iter().map(ToString::to_string).collect(),
            amqp_addr: amqp_addr.to_string(),
            http_addr: metrics_addr.to_string(),
            data_addrs: Vec::new(),
        };
        let mut cluster = cluster::start::prepare(&config, info, &tls, n)?;
        let mut data_listeners =
            cluster.as_mut().map(|(c, _)| std::mem::take(&mut c.data_listeners)).unwrap_or_default();
        data_listeners.reverse();
        let cluster_addr = cluster.as_ref().and_then(|(c, _)| c.listener.as_ref()?.local_addr().ok());
        let status = Arc::new(health::NodeStatus::new(listeners_of(&bound, cluster_addr)));
        let config = Arc::new(config);
        let stop = Arc::new(AtomicBool::new(false));
        let remote = Arc::new(remote::RemoteShared::default());
        let alarms = alarm::Alarms::new(&config, n);
        let mesh = MeshBuilder::full(n, config.mesh_capacity as usize);
        let addrs = shard::ShardAddrs {
            plain: shard_addrs.iter().map(ToString::to_string).collect(),
            tls: tls_shard_addrs.iter().map(ToString::to_string).collect(),
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        let (boot, boot_go, boot_rx) = definitions::boot::channel();
        let mut boot = config.load_definitions.is_some().then_some(boot);
        let (ended_tx, ended) = mpsc::channel();
        let mut threads = Vec::new();
        let cpus = std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1);
        for (id, sockets) in bound.per_shard().into_iter().enumerate() {
            let start = ShardStart {
                id,
                count: n,
                config: config.clone(),
                sockets,
                tls: tls.clone(),
                addrs: addrs.clone(),
                mesh: mesh.clone(),
                stop: stop.clone(),
                alarms: alarms.clone(),
                stored_access: stored_access.clone(),
                fronts,
                cluster: if id == 0 { cluster.take() } else { None },
                data_listener: data_listeners.pop(),
                remote: remote.clone(),
                status: status.clone(),
                ready: ready_tx.clone(),
                boot_defs: if id == 0 { boot.take() } else { None },
            };
            let placement = if config.pin_cores { Placement::Fixed(id % cpus) } else { Placement::Unbound };
            let guard = fatal::EndGuard { shard: id, tx: ended_tx.clone() };
            let h = LocalExecutorBuilder::new(placement.clone())
                .blocking_thread_pool_placement(blocking_pool(&placement))
                .spin_before_park(std::time::Duration::from_micros(config.idle_spin_us))
                .name(&format!("ringmq-shard-{id}"))
                .spawn(move || async move {
                    let _guard = guard;
                    run_shard(start).await
                })
                .map_err(|e| executor_error(id, e.to_string(), memlock))?;
            threads.push(h);
        }
        drop(ready_tx);
        drop(ended_tx);
        let mut broker = Broker {
            native_addr,
            shard_addrs,
            amqp_addr,
            metrics_addr,
            tls_addr,
            tls_shard_addrs,
            amqps_addr,
            https_addr,
            cluster_addr,
            tls,
            stop,
            threads,
            monitor: None,
            ended,
        };
        for i in 0..n {
            let got = match ready_rx.recv_timeout(START_WAIT) {
                Ok(r) => Ok(r),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // The stuck shards cannot be joined; stop the others.
                    broker.stop.store(true, Ordering::SeqCst);
                    return Err(StartError::NotReady { ready: i, shards: n, waited: START_WAIT });
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => Err(mpsc::RecvError),
            };
            match got {
                Ok(Ok(_)) => {}
                Ok(Err(message)) => {
                    broker.stop.store(true, Ordering::SeqCst);
                    for h in broker.threads {
                        let _ = h.join();
                    }
                    return Err(StartError::Storage(message));
                }
                // A shard ended before it was ready: its join says why.
                Err(_) => return Err(broker.failed_start(memlock)),
            }
        }
        match alarms.spawn_monitor(broker.stop.clone()) {
            Ok(h) => broker.monitor = Some(h),
            Err(e) => {
                // The monitor's error is the one to report; shard failures
                // on the way down are logged by `stop`.
                let _ = broker.stop();
                return Err(StartError::Monitor(e));
            }
        }
        if config.load_definitions.is_some() {
            boot_go.store(true, Ordering::SeqCst);
            let outcome = boot_rx
                .recv_timeout(definitions::boot::BOOT_WAIT)
                .map_err(|_| format!("load_definitions: not applied within {:?}", definitions::boot::BOOT_WAIT));
            if let Err(why) = outcome.and_then(|r| r) {
                let _ = broker.stop();
                return Err(StartError::Definitions(why));
            }
        }
        // Every shard serves its listeners and (clustered) shard 0 has
        // caught up with the group: what `ctl await-startup` waits for.
        status.set_ready();
        Ok(broker)
    }

    fn failed_start(self, memlock: system::Memlock) -> StartError {
        self.stop.store(true, Ordering::SeqCst);
        let mut first = None;
        for (id, h) in self.threads.into_iter().enumerate() {
            if let Err(e) = h.join() {
                first.get_or_insert((id, e.to_string()));
            }
        }
        let (shard, message) = first.unwrap_or((0, "a shard stopped during start".into()));
        executor_error(shard, message, memlock)
    }

    /// Asks every shard to stop and waits until they have. `Err` names
    /// every shard that panicked or ended with an error (also logged):
    /// a broker whose shard died is not a broker that stopped well.
    pub fn stop(self) -> Result<(), fatal::ShardFailures> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(m) = self.monitor {
            if m.join().is_err() {
                tracing::error!("the resource alarm monitor panicked");
            }
        }
        let mut failed = Vec::new();
        for (id, h) in self.threads.into_iter().enumerate() {
            if let Some(f) = fatal::failure_of(id, h.join()) {
                tracing::error!(shard = f.shard, why = %f.why, "shard ended badly");
                failed.push(f);
            }
        }
        match failed.is_empty() {
            true => Ok(()),
            false => Err(fatal::ShardFailures(failed)),
        }
    }

    /// Blocks until the broker is asked to stop (`stopper()`), or until a
    /// shard thread ends without being asked: then its id (a shard that
    /// panicked or failed; the caller should stop the rest and report it).
    pub fn wait(&self) -> Option<usize> {
        loop {
            match self.ended.recv_timeout(STOP_POLL) {
                Ok(shard) if !self.stop.load(Ordering::SeqCst) => return Some(shard),
                Ok(_) | Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                Err(mpsc::RecvTimeoutError::Timeout) if self.stop.load(Ordering::SeqCst) => return None,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// A handle that stops the broker from another thread (signal handler).
    pub fn stopper(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Waits for the shards to end (after `stopper()` is set).
    pub fn join(self) -> Result<(), fatal::ShardFailures> {
        self.stop()
    }
}

/// Every listener the node bound, for the port-listener health check and
/// `ctl status`.
fn listeners_of(b: &listener::Bound, cluster: Option<SocketAddr>) -> Vec<health::Listener> {
    let mut v = Vec::new();
    let mut add = |protocol, addr| v.push(health::Listener { protocol, addr });
    add("native", b.native.addr);
    b.native.shard_addrs.iter().for_each(|a| add("native-shard", *a));
    if let Some(t) = &b.native_tls {
        add("native-tls", t.addr);
        t.shard_addrs.iter().for_each(|a| add("native-tls-shard", *a));
    }
    add("amqp", b.amqp.1);
    if let Some(a) = &b.amqps {
        add("amqps", a.1);
    }
    add("http", b.http.1);
    if let Some(h) = &b.https {
        add("https", h.1);
    }
    if let Some(c) = cluster {
        add("clustering", c);
    }
    v
}

/// Two blocking threads per shard, on the shard's core when it is
/// pinned: the log's writes run there (`storage/io.rs`), and so do its
/// housekeeping's renames, unlinks and directory fsyncs, which can take
/// tens of milliseconds and must not hold a flush up.
fn blocking_pool(placement: &Placement) -> glommio::PoolPlacement {
    const THREADS: usize = 2;
    match placement {
        Placement::Fixed(cpu) => match glommio::CpuSet::online() {
            Ok(all) => glommio::PoolPlacement::Custom(vec![all.filter(|l| l.cpu == *cpu); THREADS]),
            Err(_) => glommio::PoolPlacement::Unbound(THREADS),
        },
        _ => glommio::PoolPlacement::Unbound(THREADS),
    }
}

fn executor_error(shard: usize, message: String, memlock: system::Memlock) -> StartError {
    StartError::Executor { shard, message, hint: memlock.hint() }
}

/// How long `Broker::start` waits for every shard to recover and report
/// ready (large logs take a while: about 22 s for 8 GB here).
const START_WAIT: Duration = Duration::from_secs(600);

/// How long a stopping shard waits for its log's final flush.
pub(super) const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Ticks between checks of the stop flag.
pub(super) const STOP_POLL: Duration = Duration::from_millis(20);

/// The users and vhosts the definitions file holds, once changed at run
/// time; they replace the config's seeds (as RabbitMQ's database does its
/// `default_user`), and a bad one stops the start.
fn stored_access(config: &Config) -> Result<Option<Arc<crate::storage::definitions::StoredAccess>>, StartError> {
    let path = config.data_dir.join(crate::storage::definitions::FILE);
    let defs = crate::storage::definitions::load(&path).map_err(|e| StartError::Storage(e.to_string()))?;
    let Some(access) = defs.access() else { return Ok(None) };
    for v in &access.vhosts {
        let bad = |e: String| StartError::Storage(format!("{}: vhost '{v}': {e}", path.display()));
        crate::auth::vhosts::check_name(v).map_err(|e| bad(e.to_string()))?;
    }
    for u in &access.users {
        let bad = |e: String| StartError::Storage(format!("{}: user '{}': {e}", path.display(), u.name));
        crate::auth::password::PasswordHash::parse(&u.password_hash).map_err(|e| bad(e.to_string()))?;
        for p in &u.permissions {
            shard::users_stored_permission(&u.name, p).map_err(|e| bad(e.to_string()))?;
            if !access.vhosts.contains(&p.vhost) {
                return Err(bad(format!("permissions in vhost '{}', which is not stored", p.vhost)));
            }
        }
    }
    let (users, vhosts) = (access.users.len(), access.vhosts.len());
    tracing::info!(users, vhosts, "users and vhosts from the definitions file (the config's users are not used)");
    Ok(Some(Arc::new(access)))
}
