//! `ringmq serve`: config from defaults, then `--config FILE`, then flags.

use clap::Args;
use ringmq::auth::UserSeed;
use ringmq::server::config::{Config, LogFormat};
use ringmq::server::Broker;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML config file, with any of the keys in docs/operations.md
    /// (dist/ringmq.toml has every one at its default). The flags below
    /// are some of those keys in kebab-case, and override the file; each
    /// may also be given as the environment variable RINGMQ_ and the key
    /// in upper case (RINGMQ_DATA_DIR), which a flag overrides in turn.
    #[arg(long, env = "RINGMQ_CONFIG")]
    config: Option<PathBuf>,
    /// Shards (one per core); 0 = one per CPU this process may use. A data
    /// directory refuses another shard count than the one it was made with.
    #[arg(long, env = "RINGMQ_CORES")]
    cores: Option<usize>,
    #[arg(long, env = "RINGMQ_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Native protocol address (shard i also listens on port + 1 + i).
    #[arg(long, env = "RINGMQ_LISTEN")]
    listen: Option<SocketAddr>,
    #[arg(long, env = "RINGMQ_AMQP_LISTEN")]
    amqp_listen: Option<SocketAddr>,
    #[arg(long, env = "RINGMQ_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// The native protocol over TLS (shard i also on port + 1 + i).
    #[arg(long, env = "RINGMQ_TLS_LISTEN")]
    tls_listen: Option<SocketAddr>,
    /// AMQP over TLS (RabbitMQ uses 5671).
    #[arg(long, env = "RINGMQ_AMQPS_LISTEN")]
    amqps_listen: Option<SocketAddr>,
    /// Metrics and management over HTTPS.
    #[arg(long, env = "RINGMQ_HTTPS_LISTEN")]
    https_listen: Option<SocketAddr>,
    /// The TLS listeners' certificate chain (PEM).
    #[arg(long, env = "RINGMQ_TLS_CERT_FILE")]
    tls_cert_file: Option<PathBuf>,
    /// The TLS listeners' private key (PEM).
    #[arg(long, env = "RINGMQ_TLS_KEY_FILE")]
    tls_key_file: Option<PathBuf>,
    /// The CA that signs client certificates (PEM).
    #[arg(long, env = "RINGMQ_TLS_CA_FILE")]
    tls_ca_file: Option<PathBuf>,
    /// text or json
    #[arg(long, env = "RINGMQ_LOG_FORMAT")]
    log_format: Option<String>,
    /// Do not pin shards to cores.
    #[arg(long, env = "RINGMQ_NO_PIN")]
    no_pin: bool,
    /// This node's name in a cluster (default ringmq@HOSTNAME).
    #[arg(long, env = "RINGMQ_NODE_NAME")]
    node_name: Option<String>,
    /// Clustering: where the inter-node link listens (off without it).
    #[arg(long, env = "RINGMQ_CLUSTER_LISTEN")]
    cluster_listen: Option<SocketAddr>,
    /// The link address peers dial (default: --cluster-listen).
    #[arg(long, env = "RINGMQ_CLUSTER_ADVERTISE")]
    cluster_advertise: Option<String>,
    /// Members of a cluster to join at the first start: HOST:PORT,...
    #[arg(long, env = "RINGMQ_JOIN", value_delimiter = ',')]
    join: Vec<String>,
    /// The file holding the cluster's shared secret.
    #[arg(long, env = "RINGMQ_CLUSTER_SECRET_FILE")]
    cluster_secret_file: Option<PathBuf>,
    /// Discard this node's cluster state and join afresh.
    #[arg(long, env = "RINGMQ_CLUSTER_RESET")]
    cluster_reset: bool,
    /// TLS on the inter-node link: this node's certificate chain (PEM).
    #[arg(long, env = "RINGMQ_CLUSTER_TLS_CERT_FILE")]
    cluster_tls_cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "RINGMQ_CLUSTER_TLS_KEY_FILE")]
    cluster_tls_key_file: Option<PathBuf>,
    /// The CA that signs every member's certificate (PEM).
    #[arg(long, env = "RINGMQ_CLUSTER_TLS_CA_FILE")]
    cluster_tls_ca_file: Option<PathBuf>,
    /// An administrator to add to the configured users, as RabbitMQ's
    /// RABBITMQ_DEFAULT_USER: for a container, where `guest` (loopback
    /// only) cannot log in from outside. Needs --default-pass (better
    /// given as RINGMQ_DEFAULT_PASS, out of the process list).
    #[arg(long, env = "RINGMQ_DEFAULT_USER", requires = "default_pass")]
    default_user: Option<String>,
    /// The password of --default-user.
    #[arg(long, env = "RINGMQ_DEFAULT_PASS", hide_env_values = true, requires = "default_user")]
    default_pass: Option<String>,
}

fn load(a: &ServeArgs) -> Result<Config, String> {
    let mut c = match &a.config {
        Some(p) => Config::from_file(p).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    if let Some(v) = a.cores {
        c.cores = v;
    }
    if let Some(v) = &a.data_dir {
        c.data_dir = v.clone();
    }
    if let Some(v) = a.listen {
        c.listen = v;
    }
    if let Some(v) = a.amqp_listen {
        c.amqp_listen = v;
    }
    if let Some(v) = a.metrics_listen {
        c.metrics_listen = v;
    }
    c.tls_listen = a.tls_listen.or(c.tls_listen);
    c.amqps_listen = a.amqps_listen.or(c.amqps_listen);
    c.https_listen = a.https_listen.or(c.https_listen);
    c.tls_cert_file = a.tls_cert_file.clone().or(c.tls_cert_file.take());
    c.tls_key_file = a.tls_key_file.clone().or(c.tls_key_file.take());
    c.tls_ca_file = a.tls_ca_file.clone().or(c.tls_ca_file.take());
    if let Some(v) = &a.log_format {
        c.log_format = match v.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => return Err(format!("--log-format: expected text or json, got {other:?}")),
        };
    }
    if a.no_pin {
        c.pin_cores = false;
    }
    c.node_name = a.node_name.clone().or(c.node_name.take());
    c.cluster_listen = a.cluster_listen.or(c.cluster_listen);
    c.cluster_advertise = a.cluster_advertise.clone().or(c.cluster_advertise.take());
    if !a.join.is_empty() {
        c.join = a.join.clone();
    }
    c.cluster_secret_file = a.cluster_secret_file.clone().or(c.cluster_secret_file.take());
    c.cluster_reset |= a.cluster_reset;
    c.cluster_tls_cert_file = a.cluster_tls_cert_file.clone().or(c.cluster_tls_cert_file.take());
    c.cluster_tls_key_file = a.cluster_tls_key_file.clone().or(c.cluster_tls_key_file.take());
    c.cluster_tls_ca_file = a.cluster_tls_ca_file.clone().or(c.cluster_tls_ca_file.take());
    if let (Some(user), Some(pass)) = (&a.default_user, &a.default_pass) {
        add_default_user(&mut c, user, pass);
    }
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

/// Adds (or replaces, by name) an administrator that may log in from
/// anywhere: it is taken out of `loopback_users`.
fn add_default_user(c: &mut Config, user: &str, pass: &str) {
    c.users.retain(|u| u.name != user);
    c.users.push(UserSeed::new(user, pass, &["administrator"]));
    c.loopback_users.retain(|u| u != user);
}

fn init_logging(c: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&c.log_filter));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match c.log_format {
        LogFormat::Json => b.json().try_init(),
        LogFormat::Text => b.try_init(),
    };
}

pub fn run(a: ServeArgs) -> ExitCode {
    let config = match load(&a) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringmq: bad configuration: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config);
    // One dead thread must not leave a broker that looks healthy.
    ringmq::server::fatal::exit_on_panic();
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringmq: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Here, once, before the broker's threads and sockets exist: inside
    // `Broker::start` the probe ran beside other brokers' sockets in one
    // process (the test suite) and their connections were cut within
    // milliseconds (the cause is not pinned down; without the probe there
    // they are not).
    if let Err(e) = ringmq::server::system::probe_io_uring() {
        tracing::error!("{e}");
        eprintln!("ringmq: cannot start: {e}");
        return ExitCode::FAILURE;
    }
    let shards = config.shard_count();
    let broker = match Broker::start(config) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("ringmq: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let own: Vec<String> = broker.shard_addrs.iter().map(ToString::to_string).collect();
    tracing::info!(shards, native = %broker.native_addr, shard_addrs = ?own, "ringmq ready");
    tracing::info!(amqp = %broker.amqp_addr, "AMQP 0-9-1 listener ready");
    tracing::info!(metrics = %broker.metrics_addr, "metrics and HTTP management listener ready");
    // A machine-readable line for scripts and tests.
    println!("{}", ready_line(&broker, &own));
    // Broker::start returned: every listener is served and a clustered
    // node has caught up. Now the service manager may start what needs us.
    notify(&format!("READY=1\nSTATUS=serving native={} amqp={}", broker.native_addr, broker.amqp_addr));
    let stop = broker.stopper();
    let mut signals = signals;
    let on_signal = stop.clone();
    let tls = broker.tls.clone();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if sig == SIGHUP {
                // Certificate rotation: new handshakes take the new files.
                tls.reload();
                continue;
            }
            tracing::info!(signal = sig, "stopping");
            break;
        }
        on_signal.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    // Until a signal, or until a shard ends unasked (a panic ends the
    // process before this, through the hook above).
    let died = broker.wait();
    if let Some(shard) = died {
        tracing::error!(shard, "a shard ended unexpectedly: stopping the broker");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    notify("STOPPING=1");
    let result = broker.join();
    if let Err(e) = &result {
        tracing::error!("shards failed: {e}");
        eprintln!("ringmq: shards failed: {e}");
    }
    if died.is_some() || result.is_err() {
        return ExitCode::from(ringmq::server::fatal::EXIT_PANIC);
    }
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Tells systemd (`Type=notify`); a failure is logged, not fatal: the
/// broker serves either way, and systemd reports the missing readiness.
fn notify(state: &str) {
    match ringmq::server::notify::sd_notify(state) {
        Ok(true) => tracing::debug!(state, "told the service manager"),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, state, "could not notify the service manager (NOTIFY_SOCKET)"),
    }
}

/// `ringmq ready native=... shards=... amqp=... metrics=...`, then each TLS
/// listener that is on (`tls=`, `tls_shards=`, `amqps=`, `https=`).
fn ready_line(b: &Broker, own: &[String]) -> String {
    let mut line = format!(
        "ringmq ready native={} shards={} amqp={} metrics={}",
        b.native_addr,
        own.join(","),
        b.amqp_addr,
        b.metrics_addr
    );
    if let Some(a) = b.tls_addr {
        let shards: Vec<String> = b.tls_shard_addrs.iter().map(ToString::to_string).collect();
        line += &format!(" tls={a} tls_shards={}", shards.join(","));
    }
    if let Some(a) = b.amqps_addr {
        line += &format!(" amqps={a}");
    }
    if let Some(a) = b.https_addr {
        line += &format!(" https={a}");
    }
    if let Some(a) = b.cluster_addr {
        line += &format!(" cluster={a}");
    }
    line
}
