//! ringmq-loadgen: a thread-per-core load generator for ringmq and AMQP 0-9-1
//! brokers, with open-loop (coordinated-omission-free) latency measurement.
//! See docs/loadgen.md.

mod amqp;
mod checker;
mod driver;
mod header;
#[cfg(feature = "native")]
mod native;
mod omb;
mod plot;
mod plot_series;
mod runner;
mod schedule;
mod selfcheck;
mod series;
mod stall;
mod stats;
mod verdict;
mod workload;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "ringmq-loadgen",
    version,
    about = "Thread-per-core load generator for ringmq (ringmq://, ringmqs://) and AMQP 0-9-1 (amqp://, amqps://) brokers",
    args_conflicts_with_subcommands = true,
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

/// The exit codes, as `--help` shows them (docs/loadgen.md too).
const EXIT_CODES: &str = "Exit codes:
  0  the run passed its integrity check (or a subcommand succeeded)
  1  an error ended the run (connection refused, bad URL, a client failed)
  2  a bad command line
  3  the run finished, and messages were lost, duplicated or reordered
     beyond what the workload allows (`--reconnect` allows redeliveries
     and unconfirmed loss; `--allow` names more); the summary and the
     JSON's `integrity_failures` say which";

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Draws latency by percentile (log scale) of one or more runs into an
    /// SVG; or, with --over-time, latency over time; or, with --by-size,
    /// throughput by message size.
    Plot {
        /// Output SVG file.
        out: PathBuf,
        /// Runs: `--json` or `--hgrm` files of ringmq-loadgen (or any HdrHistogram .hgrm).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Title of the plot.
        #[arg(long, default_value = "End-to-end latency by percentile")]
        title: String,
        /// Logarithmic latency axis (default: linear, like HdrHistogram's plotter).
        #[arg(long)]
        log_y: bool,
        /// Latency over time instead: p50, p99 and max of each ~200 ms
        /// interval of each run (`--json` files only).
        #[arg(long, conflicts_with = "by_size")]
        over_time: bool,
        /// Throughput by message size instead: one line per run label, the
        /// median msg/s of its runs at each size (`--json` files only).
        #[arg(long, conflicts_with = "per_second")]
        by_size: bool,
        /// The per-second series instead: publish and delivery rates over
        /// time, and each second's p50 and p99 (`--json` files only).
        #[arg(long, conflicts_with = "over_time")]
        per_second: bool,
    },
    /// Closed-loop AMQP transactions on one channel: N publishes and a
    /// tx.commit, waiting for commit-ok each time; prints commits per second.
    Tx(TxArgs),
}

#[derive(Args, Debug)]
struct TxArgs {
    /// Broker: amqp://USER:PASS@HOST:PORT/VHOST (amqps:// for TLS).
    #[arg(long)]
    url: String,
    /// The queue the transactions publish to (declared, durable with
    /// --persistent, and purged before and after the run).
    #[arg(long, default_value = "loadgen-tx")]
    queue: String,
    /// Messages published in each transaction.
    #[arg(long, default_value_t = 1)]
    per_tx: u32,
    /// Message size in bytes.
    #[arg(long, default_value_t = 16)]
    size: usize,
    /// Persistent messages (delivery-mode 2) to a durable queue.
    #[arg(long)]
    persistent: bool,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of transactions before the measured ones.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Broker: amqp://USER:PASS@HOST:PORT/VHOST or ringmq://HOST:PORT;
    /// amqps:// and ringmqs:// for TLS.
    #[arg(long)]
    url: Option<String>,
    /// No broker: the generator's own latency floor at --rate against a
    /// loopback sink (docs/loadgen.md; src/selfcheck.rs).
    #[arg(long, conflicts_with = "url", requires = "rate")]
    self_check: bool,
    /// TLS: the CA certificate (PEM) the broker's must chain to (default:
    /// the system's bundle). For amqps:// the URL's `cacertfile` wins.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// TLS: a client certificate (PEM), for brokers that ask for one
    /// (amqps://: the URL's `certfile` wins).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS: the client certificate's key (PEM; amqps://: `keyfile` wins).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Producers (each publishes to queue `id % queues`).
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Consumers (each consumes from queue `id % queues`).
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Number of queues.
    #[arg(long, default_value_t = 1)]
    queues: usize,
    /// Publish through this exchange (declared by the run; every queue is
    /// bound to it) instead of straight into the queues.
    #[arg(long)]
    exchange: Option<String>,
    /// Type of --exchange: fanout (every queue gets every message), direct
    /// (bound and routed by queue name) or topic (bound with `<queue>.#`,
    /// routed with `<queue>.x`).
    #[arg(long, value_enum, requires = "exchange", default_value = "fanout")]
    exchange_type: workload::ExchangeKind,
    /// Message size in bytes, at least 16 (the header).
    #[arg(long, default_value_t = 16)]
    size: usize,
    /// Measured seconds (after the warmup).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of warmup, sent and checked but not measured.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Total publish rate, messages a second, open loop. Default: as fast
    /// as possible. Several (`1000,5000,20000`) are steps, each held for
    /// --step-secs of the measured window (the last until the end; the
    /// warmup runs at the first): the per-second series shows each.
    #[arg(long, value_delimiter = ',', conflicts_with = "rate_ramp")]
    rate: Vec<f64>,
    /// Seconds each --rate step lasts.
    #[arg(long, value_name = "SECS")]
    step_secs: Option<f64>,
    /// A rate rising (or falling) linearly from FROM to TO msg/s over the
    /// measured window (the warmup runs at FROM): finds the knee of the
    /// latency curve in one run.
    #[arg(long, value_name = "FROM:TO")]
    rate_ramp: Option<String>,
    /// Most messages a producer writes at once (one syscall / one native batch).
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Persistent messages in durable queues.
    #[arg(long)]
    persistent: bool,
    /// Publisher confirms; measures publish-to-confirm latency.
    #[arg(long)]
    confirm: bool,
    /// Unconfirmed publishes a producer may have in flight (with --confirm).
    #[arg(long, default_value_t = 4096)]
    inflight: usize,
    /// Consumer prefetch (unacked deliveries per consumer).
    #[arg(long, default_value_t = 1000)]
    prefetch: u16,
    /// Ack (with `multiple`) every N deliveries; default prefetch/4.
    #[arg(long)]
    ack_every: Option<u64>,
    /// Worker cores, e.g. `0,1` or `0-3`; default all online cores.
    #[arg(long)]
    cores: Option<String>,
    /// Seconds consumers wait after the run for messages still in flight.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Queue name prefix; queues are PREFIX-0, PREFIX-1, ...
    /// Default `loadgen-transient` or `loadgen-durable`.
    #[arg(long)]
    queue_prefix: Option<String>,
    /// Do not purge the queues before the run.
    #[arg(long)]
    no_purge: bool,
    /// Native driver, clustered broker: send everything through the node
    /// of --url (it forwards) instead of straight to each queue's node.
    #[arg(long)]
    no_cluster_aware: bool,
    /// Name of this run in the table, JSON and plots.
    #[arg(long)]
    label: Option<String>,
    /// Write the summary as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the run as an OpenMessaging Benchmark result file (OMB's
    /// field names: publishRate, consumeRate, backlog, endToEndLatency*,
    /// publishLatency* with --confirm, aggregated*; milliseconds).
    #[arg(long, value_name = "FILE")]
    omb_json: Option<PathBuf>,
    /// What the workload may do without failing the run (exit code 3):
    /// `loss`, `duplicates`, `reorder` (comma-separated or repeated).
    #[arg(long, value_enum, value_delimiter = ',')]
    allow: Vec<verdict::Allow>,
    /// A queue argument for the declare, KEY=VALUE (repeatable), as for
    /// `ringmq pub`: `--queue-arg x-max-length=1000` (native driver).
    #[arg(long = "queue-arg", value_name = "KEY=VALUE")]
    queue_arg: Vec<String>,
    /// Write the end-to-end latency histogram in HdrHistogram's .hgrm format (us).
    #[arg(long)]
    hgrm: Option<PathBuf>,
    /// No live progress line.
    #[arg(long)]
    quiet: bool,
    /// Survive broker faults: a producer or consumer whose connection
    /// fails (or whose subscribe is refused) connects again, with backoff,
    /// until the run ends, instead of ending the run; one checker covers
    /// the whole run. The errors are counted by kind in the summary, and
    /// with --confirm `lost_confirmed` counts confirmed messages never
    /// received (for fault-injection runs: benches/cluster_chaos.sh).
    #[arg(long)]
    reconnect: bool,
    /// After the run, consumers stop once no new message has arrived for
    /// this many seconds and every producer is done (still at most
    /// --drain). For runs where some publishes are refused, so the
    /// expected count is never reached.
    #[arg(long, value_name = "SECS")]
    drain_idle: Option<f64>,
    /// With --reconnect: a consumer that has received nothing for this
    /// many seconds drops its connection and subscribes again (counted
    /// in the client errors). For subscriptions a broker ends without
    /// telling the client.
    #[arg(long, value_name = "SECS", requires = "reconnect")]
    resubscribe_idle: Option<f64>,
}

fn parse_cores(s: &str) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse()?, b.parse()?);
                if a > b {
                    bail!("bad core range {part}");
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse()?),
        }
    }
    if out.is_empty() {
        bail!("no cores in {s:?}");
    }
    Ok(out)
}

fn online_cores() -> Vec<usize> {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    (0..n).collect()
}

fn redact(url: &str) -> String {
    // amqp://user:pass@host -> amqp://user:***@host
    if let (Some(s), Some(at)) = (url.find("://"), url.rfind('@')) {
        if let Some(c) = url[s + 3..at].find(':') {
            return format!("{}:***{}", &url[..s + 3 + c], &url[at..]);
        }
    }
    url.to_string()
}

/// Where the run's results go, and what its verdict allows.
struct Outputs {
    json: Option<PathBuf>,
    hgrm: Option<PathBuf>,
    omb_json: Option<PathBuf>,
    allow: Vec<verdict::Allow>,
}

fn workload(a: RunArgs) -> Result<(runner::Workload, Outputs)> {
    let Some(url) = a.url else {
        bail!("--url is required (amqp[s]://USER:PASS@HOST:PORT/VHOST or ringmq[s]://HOST:PORT)");
    };
    if a.size < header::HEADER_LEN {
        bail!("--size must be at least {} bytes (the message header)", header::HEADER_LEN);
    }
    if a.producers > header::MAX_PRODUCERS {
        bail!("at most {} producers", header::MAX_PRODUCERS);
    }
    if a.producers + a.consumers == 0 {
        bail!("nothing to do: no producers and no consumers");
    }
    if a.queues == 0 {
        bail!("--queues must be at least 1");
    }
    if a.duration.is_nan() || a.duration <= 0.0 || a.warmup < 0.0 || a.drain < 0.0 {
        bail!("--duration must be positive; --warmup and --drain not negative");
    }
    if [a.drain_idle, a.resubscribe_idle].into_iter().flatten().any(|s| s.is_nan() || s <= 0.0) {
        bail!("--drain-idle and --resubscribe-idle must be positive");
    }
    let rate = schedule::RateProfile::from_flags(&a.rate, a.step_secs, a.rate_ramp.as_deref(), a.duration)?;
    if !a.queue_arg.is_empty() && !url.starts_with("ringmq") {
        bail!("--queue-arg is for the native driver (ringmq:// or ringmqs://)");
    }
    for q in &a.queue_arg {
        if !matches!(q.split_once('='), Some((k, _)) if !k.is_empty()) {
            bail!("--queue-arg {q:?} is not KEY=VALUE");
        }
    }
    let cores = match &a.cores {
        Some(s) => parse_cores(s).context("--cores")?,
        None => online_cores(),
    };
    // No more workers than clients.
    let cores: Vec<usize> = cores.into_iter().take((a.producers + a.consumers).max(1)).collect();
    let prefix =
        a.queue_prefix.unwrap_or_else(
            || {
                if a.persistent {
                    "loadgen-durable".into()
                } else {
                    "loadgen-transient".into()
                }
            },
        );
    let prefetch = a.prefetch.max(1);
    let ack_every = a.ack_every.unwrap_or((prefetch as u64 / 4).max(1)).clamp(1, prefetch as u64);
    if a.exchange.as_deref() == Some("") {
        bail!("--exchange needs a name; without --exchange, producers publish straight into the queues");
    }
    let exchange = a.exchange.map(|name| workload::Exchange { name, kind: a.exchange_type });
    let label = a.label.unwrap_or_else(|| {
        let mode = match &rate {
            Some(r) => r.describe(),
            None => "max rate".into(),
        };
        format!(
            "{} {}B {}p{}c{}q{} {}{}{}",
            url.split("://").next().unwrap_or("?"),
            a.size,
            a.producers,
            a.consumers,
            a.queues,
            exchange.as_ref().map_or(String::new(), |x| format!(" {}", x.kind.as_str())),
            mode,
            if a.persistent { " persistent" } else { "" },
            if a.confirm { " confirm" } else { "" }
        )
    });
    let w = runner::Workload {
        url: url.clone(),
        tls: workload::TlsFlags { ca: a.tls_ca, cert: a.tls_cert, key: a.tls_key },
        label,
        producers: a.producers,
        consumers: a.consumers,
        queues: (0..a.queues).map(|i| format!("{prefix}-{i}")).collect(),
        exchange,
        size: a.size,
        duration_s: a.duration,
        warmup_s: a.warmup,
        drain_s: a.drain,
        rate,
        batch: a.batch.max(1),
        persistent: a.persistent,
        confirm: a.confirm,
        max_inflight: a.inflight.max(1),
        prefetch,
        ack_every,
        cores,
        purge: !a.no_purge,
        cluster_aware: !a.no_cluster_aware,
        progress: !a.quiet,
        reconnect: a.reconnect,
        drain_idle_s: a.drain_idle,
        resubscribe_idle_s: a.resubscribe_idle,
        queue_args: a.queue_arg,
    };
    Ok((w, Outputs { json: a.json, hgrm: a.hgrm, omb_json: a.omb_json, allow: a.allow }))
}

fn main() {
    match real_main() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("ringmq-loadgen: {e:#}");
            std::process::exit(1);
        }
    }
}

/// The exit code (see `EXIT_CODES`), or the error that ended the run.
fn real_main() -> Result<i32> {
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::Plot { out, runs, title, log_y, over_time, by_size, per_second }) => {
            let svg = if per_second {
                plot_series::per_second_files(&runs, &title)?
            } else if over_time {
                plot::over_time_files(&runs, &title)?
            } else if by_size {
                plot::by_size_files(&runs, &title)?
            } else {
                plot::plot_files(&runs, &title, log_y)?
            };
            std::fs::write(&out, svg).with_context(|| format!("writing {}", out.display()))?;
            eprintln!("wrote {}", out.display());
            Ok(0)
        }
        Some(Cmd::Tx(a)) => tx(a).map(|()| 0),
        None if cli.run.self_check => selfcheck::from_args(cli.run).map(|()| 0),
        None => {
            let (mut w, out) = workload(cli.run)?;
            let real_url = w.url.clone();
            let summary = {
                let s = runner::run(w.clone())?;
                w.url = redact(&real_url);
                let mut s = s;
                s.url = w.url.clone();
                if let Some(c) = s.config.get_mut("url") {
                    *c = serde_json::Value::String(w.url.clone());
                }
                s
            };
            let mut summary = summary;
            summary.integrity_failures = verdict::judge(&summary, w.reconnect, &out.allow);
            print!("{}", summary.table());
            if let Some(path) = out.json {
                let text = serde_json::to_string_pretty(&summary)?;
                std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
            }
            if let Some(path) = out.hgrm {
                std::fs::write(&path, &summary.hgrm).with_context(|| format!("writing {}", path.display()))?;
            }
            if let Some(path) = out.omb_json {
                let text = serde_json::to_string_pretty(&omb::result(&summary, &w))?;
                std::fs::write(&path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
            }
            if summary.lost_confirmed > 0 {
                eprintln!("error: {} confirmed messages were never received", summary.lost_confirmed);
            }
            if summary.lost > 0 || summary.duplicates > 0 {
                eprintln!("warning: {} lost and {} duplicated messages", summary.lost, summary.duplicates);
            }
            if summary.stalls > 0 {
                eprintln!(
                    "warning: the generator stalled {} times (longest {} ms): this run measured the generator too",
                    summary.stalls, summary.stall_ms_max
                );
            }
            if summary.integrity_failures.is_empty() {
                return Ok(0);
            }
            eprintln!("FAILED integrity check: {}", summary.integrity_failures.join("; "));
            Ok(verdict::EXIT_INTEGRITY)
        }
    }
}

/// `ringmq-loadgen tx`: one line of results.
fn tx(a: TxArgs) -> Result<()> {
    let url = amqp::AmqpUrl::parse(&a.url)?;
    let report = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .name("loadgen-tx")
        .spawn(move || async move {
            let mut c = amqp::Connection::open(&url).await?;
            c.declare(&a.queue, a.persistent).await?;
            c.purge(&a.queue).await?;
            let spec = amqp::TxSpec {
                queue: &a.queue,
                per_tx: a.per_tx,
                size: a.size,
                persistent: a.persistent,
                seconds: a.duration,
                warmup: a.warmup,
            };
            let r = c.tx_run(&spec).await?;
            // A fresh connection: the tx channel's purge would wait for a commit.
            let mut c = amqp::Connection::open(&url).await?;
            c.purge(&a.queue).await?;
            c.close().await?;
            anyhow::Ok((r, a))
        })
        .map_err(|e| anyhow::anyhow!("starting the executor: {e}"))?
        .join()
        .map_err(|e| anyhow::anyhow!("executor: {e}"))??;
    let (r, a) = report;
    let h = &r.latency_us;
    println!(
        "tx per_tx={} size={} persistent={} commits={} seconds={:.2} commits_per_s={:.0} msgs_per_s={:.0} p50_us={} p99_us={} max_us={}",
        a.per_tx,
        a.size,
        a.persistent,
        r.commits,
        r.elapsed.as_secs_f64(),
        r.commits_per_s(),
        r.commits_per_s() * f64::from(a.per_tx),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.max()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_list() {
        assert_eq!(parse_cores("0,2-4, 7").unwrap(), vec![0, 2, 3, 4, 7]);
        assert!(parse_cores("3-1").is_err());
        assert!(parse_cores("").is_err());
    }

    #[test]
    fn password_is_redacted() {
        assert_eq!(redact("amqp://guest:secret@127.0.0.1:5672/%2f"), "amqp://guest:***@127.0.0.1:5672/%2f");
        assert_eq!(redact("ringmq://127.0.0.1:5555"), "ringmq://127.0.0.1:5555");
    }

    #[test]
    fn cli_parses() {
        let cli = Cli::try_parse_from([
            "ringmq-loadgen",
            "--url",
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            "--producers",
            "4",
            "--rate",
            "1000",
            "--confirm",
        ])
        .unwrap();
        let (w, _) = workload(cli.run).unwrap();
        assert_eq!(w.producers, 4);
        assert_eq!(w.rate, Some(schedule::RateProfile::Constant(1000.0)));
        assert!(w.confirm);
        assert_eq!(w.ack_every, 250);
        let cli = Cli::try_parse_from(["ringmq-loadgen", "plot", "o.svg", "a.json"]).unwrap();
        assert!(matches!(cli.cmd, Some(Cmd::Plot { .. })));
        let cli = Cli::try_parse_from(["x", "tx", "--url", "amqp://h", "--per-tx", "100", "--persistent"]).unwrap();
        assert!(matches!(cli.cmd, Some(Cmd::Tx(TxArgs { per_tx: 100, persistent: true, size: 16, .. }))));
        let cli = Cli::try_parse_from(["ringmq-loadgen", "plot", "o.svg", "a.json", "--over-time"]).unwrap();
        assert!(matches!(cli.cmd, Some(Cmd::Plot { over_time: true, by_size: false, .. })));
        assert!(Cli::try_parse_from(["x", "plot", "o.svg", "a.json", "--over-time", "--by-size"]).is_err());
        let cli = Cli::try_parse_from(["x", "--url", "amqp://h", "--size", "8"]).unwrap();
        assert!(workload(cli.run).is_err());
    }

    #[test]
    fn exchange_flags() {
        let cli = Cli::try_parse_from(["x", "--url", "ringmq://h:1", "--exchange", "bench", "--queues", "3"]).unwrap();
        let (w, _) = workload(cli.run).unwrap();
        let x = w.exchange.as_ref().unwrap();
        assert_eq!((x.name.as_str(), x.kind), ("bench", workload::ExchangeKind::Fanout));
        assert!(w.label.contains("3q fanout"), "{}", w.label);
        let cli = Cli::try_parse_from(["x", "--url", "ringmq://h:1", "--exchange", "b", "--exchange-type", "topic"]);
        assert_eq!(workload(cli.unwrap().run).unwrap().0.exchange.unwrap().kind, workload::ExchangeKind::Topic);
        // A type without an exchange is refused, and so is an unknown type.
        assert!(Cli::try_parse_from(["x", "--url", "ringmq://h:1", "--exchange-type", "direct"]).is_err());
        assert!(Cli::try_parse_from(["x", "--url", "u", "--exchange", "b", "--exchange-type", "headers"]).is_err());
        let cli = Cli::try_parse_from(["x", "--url", "ringmq://h:1"]).unwrap();
        assert!(workload(cli.run).unwrap().0.exchange.is_none());
    }

    #[test]
    fn tls_flags() {
        let cli = Cli::try_parse_from(["x", "--url", "ringmqs://localhost:1", "--tls-ca", "/ca.pem"]).unwrap();
        let (w, _) = workload(cli.run).unwrap();
        assert_eq!(w.tls.ca, Some(PathBuf::from("/ca.pem")));
        assert!(w.label.starts_with("ringmqs "), "{}", w.label);
        // A certificate without its key (and the other way round) is refused.
        assert!(Cli::try_parse_from(["x", "--url", "amqps://h", "--tls-cert", "c.pem"]).is_err());
        assert!(Cli::try_parse_from(["x", "--url", "amqps://h", "--tls-key", "k.pem"]).is_err());
        let cli =
            Cli::try_parse_from(["x", "--url", "amqps://h", "--tls-cert", "c.pem", "--tls-key", "k.pem"]).unwrap();
        let (w, _) = workload(cli.run).unwrap();
        assert_eq!((w.tls.cert.unwrap(), w.tls.key.unwrap()), ("c.pem".into(), "k.pem".into()));
    }
}
