//! Broker configuration: every limit lives here, with its unit in its name,
//! and is validated before any shard starts. Every field is a TOML key of
//! the same name (`--config FILE`); some also have a `serve` flag, the key
//! in kebab-case (`data_dir` is `--data-dir`). `dist/ringmq.toml` holds
//! every key at its default and `docs/operations.md` documents each
//! (`tests/config_sample.rs` checks both).

use crate::auth::{UserSeed, Users};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Shards to run, one per core; 0 means every online core.
    pub cores: usize,
    /// Pin shard i to CPU i (modulo the CPU count).
    pub pin_cores: bool,
    /// Microseconds a shard with nothing to do keeps polling its rings
    /// before it parks (glommio's spin before park); 0 parks at once. A
    /// spin saves the wake-up of a message that arrives within it, and
    /// burns the core for its length after every burst.
    pub idle_spin_us: u64,
    pub data_dir: PathBuf,
    /// Native protocol: every shard listens here (SO_REUSEPORT), and shard i
    /// also on port + 1 + i (an ephemeral port when this port is 0).
    pub listen: SocketAddr,
    pub amqp_listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    /// The native protocol over TLS (off when absent): every shard
    /// listens here, and shard i also on port + 1 + i (ephemeral at 0).
    pub tls_listen: Option<SocketAddr>,
    /// AMQP over TLS (RabbitMQ's 5671), off when absent.
    pub amqps_listen: Option<SocketAddr>,
    /// Metrics and management over HTTPS (shard 0), off when absent.
    pub https_listen: Option<SocketAddr>,
    /// The TLS listeners' certificate chain, key and CA (PEM); `amqps_*`
    /// and `https_*` override them for one listener.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub tls_ca_file: Option<PathBuf>,
    pub amqps_cert_file: Option<PathBuf>,
    pub amqps_key_file: Option<PathBuf>,
    pub amqps_ca_file: Option<PathBuf>,
    pub https_cert_file: Option<PathBuf>,
    pub https_key_file: Option<PathBuf>,
    pub https_ca_file: Option<PathBuf>,
    /// Client certificates per listener: none, optional or required.
    pub tls_client_certs: super::tls::ClientCerts,
    pub amqps_client_certs: super::tls::ClientCerts,
    pub https_client_certs: super::tls::ClientCerts,
    /// The user an AMQP `EXTERNAL` login takes from a client certificate:
    /// `common_name` or `distinguished_name`.
    pub tls_cert_login_from: super::tls::CertLogin,
    /// Who may log in (`src/auth/`): each with `password` (hashed at
    /// start) or RabbitMQ's `password_hash`, and RabbitMQ's `tags`.
    pub users: Vec<UserSeed>,
    /// Users who may log in only from a loopback address, on every
    /// listener (RabbitMQ's `loopback_users`).
    pub loopback_users: Vec<String>,
    /// Users that may exist; adding one more at run time is refused.
    pub users_max: u32,
    /// Vhosts that may exist, `/` included.
    pub vhosts_max: u32,
    pub log_format: LogFormat,
    /// A `RUST_LOG`-style filter, used when `RUST_LOG` is not set.
    pub log_filter: String,

    /// Clustering (`docs/cluster.md`): off unless `cluster_listen` is
    /// set. This node's name in the cluster (default `ringmq@HOSTNAME`).
    pub node_name: Option<String>,
    /// Where the inter-node link listens.
    pub cluster_listen: Option<SocketAddr>,
    /// The link address peers dial (default: `cluster_listen`, which must
    /// then name a specific address).
    pub cluster_advertise: Option<String>,
    /// Members of an existing cluster to join at the first start (a node
    /// with none forms a cluster of one).
    pub join: Vec<String>,
    /// The file holding the cluster's shared secret (at least 16 bytes):
    /// every node must have the same.
    pub cluster_secret_file: Option<PathBuf>,
    /// Discard this node's cluster state (its metadata log and identity)
    /// at start, and join afresh: for a node that was forgotten.
    pub cluster_reset: bool,
    /// TLS on the inter-node link (all three, or none): this node's
    /// certificate chain and key, and the CA that signs every member's.
    pub cluster_tls_cert_file: Option<PathBuf>,
    pub cluster_tls_key_file: Option<PathBuf>,
    pub cluster_tls_ca_file: Option<PathBuf>,

    /// Largest frame, header included.
    pub frame_bytes_max: u32,
    /// Largest message body plus properties.
    pub message_bytes_max: u32,
    /// Levels an AMQP field table may nest (client properties, queue,
    /// exchange and binding arguments, message headers; the outermost
    /// table is level 1). Deeper input closes the connection: AMQP 502
    /// SYNTAX_ERROR, native fatal `TableTooDeep`. 1..=255.
    pub table_depth_max: u32,
    /// Open connections per shard.
    pub connections_per_shard_max: u32,
    /// Queues owned by one shard.
    pub queues_per_shard_max: u32,
    /// References one stream stores consumer offsets under (server-side
    /// offset tracking, `StoreOffset`); a new one past it is refused.
    /// Each costs up to 280 bytes of memory and of log at every segment
    /// start (`docs/streams.md`).
    pub stream_offset_refs_max: u32,
    /// Entry bytes of its newest messages one stream holds in memory; the
    /// older ones keep only their place in the log, and a consumer behind
    /// the window reads them from disk (`docs/streams.md`, Memory).
    pub stream_memory_bytes_max: u64,
    /// A stream consumer reading from disk: entry bytes read ahead of it
    /// per read (one DMA read where the records lie together), held until
    /// delivered.
    pub stream_read_ahead_bytes: u64,
    /// Exchanges clients may declare (the default and `amq.*` ones are not
    /// counted); a declare past it is refused (`DefinitionLimit`, AMQP 406).
    pub exchanges_max: u32,
    /// Bindings in the routing table (every shard holds a copy of it); a
    /// bind past it is refused (`DefinitionLimit`, AMQP 406).
    pub bindings_max: u32,
    /// Ready messages one queue may hold; publishes beyond it are refused.
    pub queue_messages_max: u64,
    /// Ready messages in a queue with consumers above which publishers on
    /// the owning shard stop being read until it drains to half.
    pub publish_pause_messages: u64,
    /// The same in bytes of ready messages.
    pub publish_pause_bytes: u64,
    /// Highest prefetch (unacked messages) a consumer may ask for.
    pub prefetch_max: u32,
    /// Consumers (push and pull) one connection may hold.
    pub consumers_per_connection_max: u32,
    /// Messages (publishes, and acked, nacked or rejected deliveries) one
    /// AMQP transaction may buffer until its commit; past it the channel
    /// is closed (406).
    pub tx_messages_max: u32,
    /// Bytes of published messages (properties and bodies) the open AMQP
    /// transactions of one connection may buffer until their commits,
    /// all its channels together (at least `message_bytes_max`); past it
    /// the channel is closed (406).
    pub tx_bytes_max: u64,
    /// Messages in one Deliver frame.
    pub deliver_batch_max: u32,
    /// Batches in flight on each mesh channel between two shards.
    pub mesh_capacity: u32,
    /// Forwarded requests a shard may queue for one peer before the
    /// connections producing them wait.
    pub mesh_pending_max: u32,
    /// Time a new connection has, from accept, to complete its whole
    /// handshake (native: to HelloOk; AMQP: to connection.open-ok).
    pub handshake_timeout_ms: u64,
    /// Time a started frame has to arrive whole, from its first byte.
    pub frame_timeout_ms: u64,
    /// Bytes a connection that has not logged in may make the broker
    /// buffer: a frame header claiming more closes it (4096 ..= frame_bytes_max).
    pub handshake_bytes_max: u32,
    /// Connections per shard that have not logged in yet (native, AMQP,
    /// and every HTTP connection). They do not take `connections_per_shard_max`
    /// slots: a connection moves to that cap when it logs in.
    pub unauthenticated_connections_max: u32,
    /// Log lines a second per shard about connections that never logged
    /// in (bad frames, timeouts, evictions); past it they are counted and
    /// summed up in one line a second, so a flood cannot flood the log.
    pub unauthenticated_log_lines_per_s: u32,
    /// A write to a peer that makes no progress for this long closes the
    /// connection (a peer that stopped reading).
    pub send_timeout_ms: u64,
    /// Native heartbeat the broker offers in HelloOk (the lower non-zero of
    /// this and the client's wish is used; 0 = none). A peer silent for
    /// two intervals is closed.
    pub heartbeat_ms: u32,
    /// TCP keepalive on every accepted socket: idle time before the first
    /// probe (0 turns keepalive off), time between probes, and unanswered
    /// probes before the kernel drops the connection.
    pub tcp_keepalive_idle_ms: u64,
    pub tcp_keepalive_interval_ms: u64,
    pub tcp_keepalive_probes: u32,
    /// Bytes buffered for one connection's socket before its reader waits
    /// and the queues stop dispatching to its consumers (until it drains
    /// to half).
    pub outbox_bytes_max: u32,
    /// A consumer that leaves a delivery unacked this long is cancelled
    /// and its unacked messages requeued (AMQP: its channel is closed with
    /// 406, as RabbitMQ's `consumer_timeout`). 0 = never.
    pub consumer_timeout_ms: u64,
    /// Operator requests (native `Admin`, HTTP API, `/metrics`) in flight
    /// per shard; more are refused (`AdminBusy`, HTTP 503). A native
    /// connection has one in flight at most.
    pub admin_requests_per_shard_max: u32,
    /// HTTP (metrics and management API): a connection that moves no byte
    /// for this long while no request of it is being handled is closed.
    pub http_idle_timeout_ms: u64,
    /// `/metrics` asks for a login (a user with `management`, `monitoring`
    /// or `administrator`), as RabbitMQ's Prometheus plugin can; open by
    /// default, as RabbitMQ's is.
    pub metrics_auth_required: bool,
    /// HTTP: a request head must arrive whole within this of its first byte.
    pub http_request_timeout_ms: u64,
    /// A definitions document (RabbitMQ's JSON format: `POST
    /// /api/definitions`, `ctl import-definitions`, `load_definitions`)
    /// larger than this is refused (HTTP 413) before it is parsed.
    pub definitions_bytes_max: u64,
    /// A definitions file (RabbitMQ's JSON format, as `GET
    /// /api/definitions` exports it) imported at every start, once the
    /// shards are up and before the broker reports ready: read and checked
    /// at start (a bad file stops the start with its reason); what it
    /// defines is created or left as it is (an existing item that differs
    /// is refused). RabbitMQ's `load_definitions`.
    pub load_definitions: Option<PathBuf>,

    /// Storage (`docs/storage.md`): a log segment is sealed and a new one
    /// started once it holds this many bytes (65536 ..= 4 GiB).
    pub segment_bytes: u64,
    /// When the log is fdatasync'ed: `always` (default: a confirm means
    /// fdatasync'ed), `interval` (confirm after the O_DIRECT write, sync
    /// every `fsync_interval_ms`: a power loss can lose that window) or
    /// `never` (only at clean shutdown: a power loss can lose anything
    /// since the start; a process crash loses nothing written).
    pub fsync: crate::storage::FsyncPolicy,
    /// Period of the fdatasync under `fsync = "interval"`.
    pub fsync_interval_ms: u64,
    /// At recovery, skip a corrupt record in a sealed segment (losing the
    /// rest of that segment, reported in the log) instead of refusing to
    /// start.
    pub storage_skip_corrupt: bool,
    /// Compact the oldest sealed log segment (re-append its live messages,
    /// then delete it) once its live bytes, or those of all sealed
    /// segments, fall under this percentage of their size. 0 = never.
    pub compact_live_ratio_pct: u32,
    /// Dead log segments a shard keeps to reuse as its next segments
    /// (overwriting a file spares the filesystem the frees and
    /// allocations that stall flushes); the rest are deleted. 0 = delete all.
    pub segments_recycled_max: u32,
    /// Messages one queue expires or drops (and hands to dead-lettering)
    /// in one go; the rest follow on the shard's next turn, after its
    /// sockets are served and the mesh has room: bounds the dead-letter
    /// backlog a mass expiry builds.
    pub dead_letter_batch_max: u32,
    /// Per shard: bytes appended to the log and not yet written (a slow or
    /// stalled disk) above which the shard stops reading its connections
    /// and its mesh channels until the log catches up: what bounds the
    /// pending log chunks and the confirms waiting on them.
    pub log_unwritten_bytes_max: u64,
    /// Per shard: bytes of ready message entries held in memory above
    /// which newly published persistent messages of durable queues keep
    /// only their location in the log, and are read back when delivered.
    pub memory_budget_bytes: u64,
    /// Memory alarm: accounted memory (ready and unacked messages held in
    /// memory, connections' outboxes and read buffers, summed over every
    /// shard) above which every publishing connection is blocked until it
    /// falls back under. Unset: 0.4 of physical memory (or of a lower
    /// cgroup limit), resolved at start. At least 1048576.
    pub memory_high_watermark_bytes: Option<u64>,
    /// Disk alarm: free bytes on the data directory's filesystem under
    /// which every publishing connection is blocked until there is more.
    /// 0 turns the disk alarm off.
    pub disk_free_limit_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cores: 0,
            pin_cores: true,
            idle_spin_us: 0,
            data_dir: PathBuf::from("./ringmq-data"),
            listen: "127.0.0.1:5680".parse().expect("literal"),
            amqp_listen: "127.0.0.1:5672".parse().expect("literal"),
            metrics_listen: "127.0.0.1:15692".parse().expect("literal"),
            tls_listen: None,
            amqps_listen: None,
            https_listen: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_ca_file: None,
            amqps_cert_file: None,
            amqps_key_file: None,
            amqps_ca_file: None,
            https_cert_file: None,
            https_key_file: None,
            https_ca_file: None,
            tls_client_certs: super::tls::ClientCerts::None,
            amqps_client_certs: super::tls::ClientCerts::None,
            https_client_certs: super::tls::ClientCerts::None,
            tls_cert_login_from: super::tls::CertLogin::CommonName,
            users: vec![UserSeed::new("guest", "guest", &["administrator"])],
            loopback_users: vec!["guest".into()],
            users_max: 10_000,
            vhosts_max: 1_000,
            log_format: LogFormat::Text,
            // openraft narrates every vote at info, and logs each failed
            // replication to a peer that is down (the link says so once).
            log_filter: "info,openraft=error,openraft::replication=off".into(),
            node_name: None,
            cluster_listen: None,
            cluster_advertise: None,
            join: Vec::new(),
            cluster_secret_file: None,
            cluster_reset: false,
            cluster_tls_cert_file: None,
            cluster_tls_key_file: None,
            cluster_tls_ca_file: None,
            frame_bytes_max: 4 << 20,
            message_bytes_max: 1 << 20,
            table_depth_max: crate::protocol::wire::len32(crate::protocol::field_table::TABLE_DEPTH_MAX),
            connections_per_shard_max: 10_000,
            queues_per_shard_max: 100_000,
            stream_offset_refs_max: 1_000,
            stream_memory_bytes_max: 512 << 20,
            stream_read_ahead_bytes: 1 << 20,
            exchanges_max: 10_000,
            bindings_max: 1_000_000,
            queue_messages_max: 100_000_000,
            publish_pause_messages: 1_000_000,
            publish_pause_bytes: 64 << 20,
            prefetch_max: 65_535,
            consumers_per_connection_max: 1_024,
            tx_messages_max: 65_536,
            tx_bytes_max: 64 << 20,
            deliver_batch_max: 256,
            mesh_capacity: 1_024,
            mesh_pending_max: 65_536,
            handshake_timeout_ms: 10_000,
            frame_timeout_ms: 30_000,
            handshake_bytes_max: 64 << 10,
            unauthenticated_connections_max: 1_000,
            unauthenticated_log_lines_per_s: 10,
            send_timeout_ms: 30_000,
            heartbeat_ms: 60_000,
            tcp_keepalive_idle_ms: 60_000,
            tcp_keepalive_interval_ms: 10_000,
            tcp_keepalive_probes: 6,
            outbox_bytes_max: 8 << 20,
            consumer_timeout_ms: 1_800_000,
            admin_requests_per_shard_max: 16,
            definitions_bytes_max: 32 << 20,
            load_definitions: None,
            http_idle_timeout_ms: 60_000,
            metrics_auth_required: false,
            http_request_timeout_ms: 10_000,
            segment_bytes: 64 << 20,
            fsync: crate::storage::FsyncPolicy::Always,
            fsync_interval_ms: 10,
            storage_skip_corrupt: false,
            compact_live_ratio_pct: 25,
            segments_recycled_max: 2,
            memory_budget_bytes: 512 << 20,
            memory_high_watermark_bytes: None,
            // RabbitMQ's default: 50 MB.
            disk_free_limit_bytes: 50_000_000,
            log_unwritten_bytes_max: 64 << 20,
            dead_letter_batch_max: 16_384,
        }
    }
}

/// The listeners that speak TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsListener {
    Native,
    Amqps,
    Https,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {why}")]
    Invalid { key: &'static str, why: String },
}

fn check(ok: bool, key: &'static str, why: impl FnOnce() -> String) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid { key, why: why() })
    }
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Self::from_toml(&text).map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })
    }

    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The files a TLS listener uses: its own where set, else the shared
    /// `tls_*` ones; `None` without a certificate and key.
    pub fn tls_files(&self, l: TlsListener) -> Option<super::tls::TlsFiles> {
        let (cert, key, ca, client_certs) = match l {
            TlsListener::Native => (&None, &None, &None, self.tls_client_certs),
            TlsListener::Amqps => {
                (&self.amqps_cert_file, &self.amqps_key_file, &self.amqps_ca_file, self.amqps_client_certs)
            }
            TlsListener::Https => {
                (&self.https_cert_file, &self.https_key_file, &self.https_ca_file, self.https_client_certs)
            }
        };
        Some(super::tls::TlsFiles {
            cert: cert.as_ref().or(self.tls_cert_file.as_ref())?.clone(),
            key: key.as_ref().or(self.tls_key_file.as_ref())?.clone(),
            ca: ca.as_ref().or(self.tls_ca_file.as_ref()).cloned(),
            client_certs,
        })
    }

    /// Shards to run, once `cores = 0` is resolved to the online CPUs.
    pub fn shard_count(&self) -> usize {
        if self.cores == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
        } else {
            self.cores
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        check(self.cores <= 1024, "cores", || format!("{} is over 1024", self.cores))?;
        let spin = self.idle_spin_us;
        check(spin <= 10_000, "idle_spin_us", || format!("{spin} is over 10000 (10 ms)"))?;
        check(!self.users.is_empty(), "users", || "at least one user is needed".into())?;
        if let Err(e) = Users::new(&self.users, &self.loopback_users) {
            return Err(ConfigError::Invalid { key: "users", why: e.to_string() });
        }
        let (n, max) = (self.users.len(), self.users_max);
        check(n <= max as usize, "users_max", || format!("{max} is below the {n} users the config seeds"))?;
        let f = self.frame_bytes_max;
        check((1024..=256 << 20).contains(&f), "frame_bytes_max", || format!("{f} is outside 1024..=268435456"))?;
        let m = self.message_bytes_max;
        // A Publish carrying one message of the largest size must fit a frame.
        check(m >= 1 && u64::from(m) + 1024 <= u64::from(f), "message_bytes_max", || {
            format!("{m} must be at least 1 and leave 1024 bytes of framing below frame_bytes_max ({f})")
        })?;
        let d = self.table_depth_max;
        let ceiling = crate::protocol::field_table::TABLE_DEPTH_CEILING;
        check(d >= 1 && d as usize <= ceiling, "table_depth_max", || format!("{d} is outside 1..={ceiling}"))?;
        let sm = self.stream_memory_bytes_max;
        check((1 << 20..=1 << 50).contains(&sm), "stream_memory_bytes_max", || {
            format!("{sm} is outside 1048576..=1125899906842624")
        })?;
        let ra = self.stream_read_ahead_bytes;
        check((64 << 10..=64 << 20).contains(&ra), "stream_read_ahead_bytes", || {
            format!("{ra} is outside 65536..=67108864")
        })?;
        let tb = self.tx_bytes_max;
        check((u64::from(m)..=1 << 40).contains(&tb), "tx_bytes_max", || {
            format!("{tb} is outside message_bytes_max ({m})..=1099511627776")
        })?;
        let positive: [(&'static str, u64); 20] = [
            ("stream_offset_refs_max", self.stream_offset_refs_max.into()),
            ("tx_messages_max", self.tx_messages_max.into()),
            ("users_max", self.users_max.into()),
            ("vhosts_max", self.vhosts_max.into()),
            ("unauthenticated_connections_max", self.unauthenticated_connections_max.into()),
            ("exchanges_max", self.exchanges_max.into()),
            ("admin_requests_per_shard_max", self.admin_requests_per_shard_max.into()),
            ("dead_letter_batch_max", self.dead_letter_batch_max.into()),
            ("bindings_max", self.bindings_max.into()),
            ("publish_pause_messages", self.publish_pause_messages),
            ("publish_pause_bytes", self.publish_pause_bytes),
            ("connections_per_shard_max", self.connections_per_shard_max.into()),
            ("queues_per_shard_max", self.queues_per_shard_max.into()),
            ("queue_messages_max", self.queue_messages_max),
            ("prefetch_max", self.prefetch_max.into()),
            ("consumers_per_connection_max", self.consumers_per_connection_max.into()),
            ("deliver_batch_max", self.deliver_batch_max.into()),
            ("mesh_capacity", self.mesh_capacity.into()),
            ("mesh_pending_max", self.mesh_pending_max.into()),
            ("outbox_bytes_max", self.outbox_bytes_max.into()),
        ];
        for (key, v) in positive {
            check(v > 0, key, || "must be greater than 0".into())?;
        }
        check(self.handshake_timeout_ms > 0, "handshake_timeout_ms", || "must be greater than 0".into())?;
        check(self.frame_timeout_ms > 0, "frame_timeout_ms", || "must be greater than 0".into())?;
        // A day at most: these are timers, and a huge value is a mistake.
        const DAY_MS: u64 = 86_400_000;
        for (key, v) in [
            ("http_idle_timeout_ms", self.http_idle_timeout_ms),
            ("http_request_timeout_ms", self.http_request_timeout_ms),
            ("send_timeout_ms", self.send_timeout_ms),
        ] {
            check((1..=DAY_MS).contains(&v), key, || format!("{v} is outside 1..=86400000"))?;
        }
        self.validate_conns(DAY_MS)?;
        self.validate_definitions()?;
        self.validate_cluster()?;
        let ct = self.consumer_timeout_ms;
        check(ct <= 7 * DAY_MS, "consumer_timeout_ms", || format!("{ct} is over 604800000 (7 days); 0 turns it off"))?;
        let sb = self.segment_bytes;
        check((65_536..=4 << 30).contains(&sb), "segment_bytes", || format!("{sb} is outside 65536..=4294967296"))?;
        check(self.fsync_interval_ms > 0, "fsync_interval_ms", || "must be greater than 0".into())?;
        let r = self.compact_live_ratio_pct;
        check(r <= 90, "compact_live_ratio_pct", || format!("{r} is outside 0..=90 (0 turns compaction off)"))?;
        let n = self.segments_recycled_max;
        check(n <= 64, "segments_recycled_max", || format!("{n} is outside 0..=64"))?;
        let mb = self.memory_budget_bytes;
        check((1 << 20..=1 << 50).contains(&mb), "memory_budget_bytes", || {
            format!("{mb} is outside 1048576..=1125899906842624")
        })?;
        if let Some(w) = self.memory_high_watermark_bytes {
            let min = crate::server::alarm::MIN_WATERMARK_BYTES;
            check((min..=1 << 50).contains(&w), "memory_high_watermark_bytes", || {
                format!("{w} is outside {min}..=1125899906842624")
            })?;
        }
        let lu = self.log_unwritten_bytes_max;
        check(lu >= u64::from(f), "log_unwritten_bytes_max", || format!("must be at least frame_bytes_max ({f})"))?;
        check(u64::from(self.outbox_bytes_max) >= u64::from(f), "outbox_bytes_max", || {
            format!("must be at least frame_bytes_max ({f})")
        })?;
        check(
            self.listen.port() == 0 || usize::from(self.listen.port()) + self.shard_count() < 65_536,
            "listen",
            || "per-shard ports (port + 1 + shard) run past 65535".into(),
        )?;
        Ok(())
    }
}

impl Config {
    /// `definitions_bytes_max`, and `load_definitions` read and checked
    /// (its items against the broker come at boot).
    fn validate_definitions(&self) -> Result<(), ConfigError> {
        let db = self.definitions_bytes_max;
        check((1024..=1 << 30).contains(&db), "definitions_bytes_max", || {
            format!("{db} is outside 1024..=1073741824")
        })?;
        if let Some(path) = &self.load_definitions {
            crate::server::definitions::read_file(path, self)
                .map_err(|why| ConfigError::Invalid { key: "load_definitions", why })?;
        }
        Ok(())
    }

    /// The connection defences' keys (docs/security.md).
    fn validate_conns(&self, day_ms: u64) -> Result<(), ConfigError> {
        let (h, f) = (self.handshake_bytes_max, self.frame_bytes_max);
        // An AMQP peer may send frames of 4096 bytes (frame-min-size) before tune.
        check((4096..=f).contains(&h), "handshake_bytes_max", || {
            format!("{h} is outside 4096..=frame_bytes_max ({f})")
        })?;
        let hb = self.heartbeat_ms;
        check(hb == 0 || (100..=day_ms).contains(&u64::from(hb)), "heartbeat_ms", || {
            format!("{hb} is neither 0 (off) nor in 100..=86400000")
        })?;
        let idle = self.tcp_keepalive_idle_ms;
        check(idle == 0 || (1000..=day_ms).contains(&idle), "tcp_keepalive_idle_ms", || {
            format!("{idle} is neither 0 (off) nor in 1000..=86400000")
        })?;
        let iv = self.tcp_keepalive_interval_ms;
        check((1000..=day_ms).contains(&iv), "tcp_keepalive_interval_ms", || {
            format!("{iv} is outside 1000..=86400000")
        })?;
        let p = self.tcp_keepalive_probes;
        check((1..=127).contains(&p), "tcp_keepalive_probes", || format!("{p} is outside 1..=127"))?;
        Ok(())
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
