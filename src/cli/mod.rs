pub mod ctl;
pub mod ctl_defs;
pub mod ctl_health;
pub mod ctl_objects;
pub mod docgen;
pub mod props;
pub mod publish;
pub mod serve;
pub mod stdin_lines;
pub mod subscribe;

use clap::Args;
use ringmq::client::ClientOptions;
use std::future::Future;
use std::path::PathBuf;

/// How the client tools reach the broker.
#[derive(Args, Debug, Clone)]
pub struct ConnArgs {
    /// `ringmq://HOST:PORT`, or `ringmqs://HOST:PORT` for TLS (the
    /// broker's `tls_listen`); the broker's certificate must name HOST.
    #[arg(long, env = "RINGMQ_URL", default_value = "ringmq://127.0.0.1:5680")]
    pub url: String,
    /// TLS even without `ringmqs://` (for a bare HOST:PORT).
    #[arg(long)]
    pub tls: bool,
    /// The CA certificate (PEM) the broker's certificate must chain to;
    /// without it, the system's CA bundle.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// A client certificate (PEM), for a broker that asks for one.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    #[arg(long, env = "RINGMQ_USER", default_value = "guest")]
    pub user: String,
    /// The password; `RINGMQ_PASSWORD` keeps it off the command line
    /// (where `ps` shows it).
    #[arg(long, env = "RINGMQ_PASSWORD", hide_env_values = true, default_value = "guest")]
    pub password: String,
    /// Talk only to the shard you connect to (the broker forwards).
    #[arg(long)]
    pub no_shard_aware: bool,
    /// The vhost to work in (its queues are other vhosts' only by name).
    #[arg(long, default_value = "/")]
    pub vhost: String,
}

impl ConnArgs {
    pub fn options(&self) -> ClientOptions {
        ClientOptions {
            url: self.url.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            shard_aware: !self.no_shard_aware,
            tls: self.tls,
            tls_ca_file: self.ca.clone(),
            tls_cert_file: self.cert.clone(),
            tls_key_file: self.key.clone(),
            vhost: self.vhost.clone(),
            ..Default::default()
        }
    }
}

/// `--queue-arg KEY=VALUE` (repeatable) as a raw field table: integers
/// as integers, `true`/`false` as booleans, anything else as a string.
pub fn queue_args(args: &[String]) -> Result<Vec<u8>, String> {
    let mut b = ringmq::protocol::field_table::TableBuilder::new();
    for a in args {
        b = b.parse_arg(a).map_err(|e| e.to_string())?;
    }
    Ok(b.build())
}

/// Runs a tool's async body on one glommio executor.
pub fn run_local<T, F>(name: &str, f: impl FnOnce() -> F + Send + 'static) -> Result<T, String>
where
    T: Send + 'static,
    F: Future<Output = T> + 'static,
{
    let _ = ringmq::server::system::raise_memlock();
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name(name)
        .spawn(f)
        .map_err(|e| format!("cannot start the I/O executor: {e}"))?
        .join()
        .map_err(|e| format!("executor failed: {e}"))
}

/// Logs to stderr for the client tools (warnings only unless RUST_LOG says).
pub fn init_tool_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
