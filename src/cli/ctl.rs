//! `ringmq ctl`: operator commands over the native protocol's `Admin`
//! frame. One blocking connection (std sockets, no executor; TLS with
//! `ringmqs://` or `--tls`): Hello, one `Admin`, its `AdminOk` JSON,
//! printed as an aligned table or as is with `--json`.

use super::ConnArgs;
use bytes::BytesMut;
use clap::{Args, Subcommand};
use ringmq::protocol::{decode, op, Cmd, Decoded, Frame, VERSION};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct CtlArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Print the broker's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub cmd: CtlCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum CtlCommand {
    /// Queues: name, shard, ready, unacked, consumers, publish and deliver
    /// rates (measured over `--interval` seconds), ready bytes.
    ListQueues {
        #[arg(long, default_value_t = 1.0)]
        interval: f64,
    },
    /// Open connections (native and AMQP) on every shard.
    ListConnections,
    /// Per-shard load: queues, messages, connections, counters.
    Shards,
    /// Drop a queue's ready messages.
    PurgeQueue { queue: String },
    /// Delete a queue (its consumers are told).
    DeleteQueue { queue: String },
    /// Close a connection, named `shard:id` as `list-connections` shows.
    CloseConnection { name: String },
    /// The cluster's nodes: state (up, down, joining, leaving), voter, the
    /// metadata leader, shards and addresses.
    ClusterStatus,
    /// Removes a node from the cluster (by name, as `cluster-status`
    /// shows it); it must be restarted with `--cluster-reset` to join
    /// again.
    ForgetNode { name: String },
    /// This node, alone in its own cluster, joins the cluster of the
    /// member whose link listens at ADDR (HOST:PORT); its own exchanges
    /// and bindings are replaced by that cluster's.
    JoinCluster { addr: String },
    /// Exchanges: name, type, flags, alternate exchange.
    ListExchanges,
    /// Bindings: source exchange, destination, routing key, arguments.
    ListBindings,
    /// Resource alarms: memory in use and disk free space against their
    /// thresholds, whether each alarm is in effect, blocked connections.
    Alarms,
    /// Sets the memory alarm's threshold in bytes, until the broker
    /// restarts (`memory_high_watermark_bytes` in the config is for good).
    SetMemoryHighWatermark { bytes: u64 },
    /// Sets the disk alarm's threshold in bytes (0 = off), until restart.
    SetDiskFreeLimit { bytes: u64 },
    /// Users: name and tags (`--json` adds the password hashes).
    ListUsers,
    /// Adds a user (refused if the name exists), stored for good. Without
    /// a password on the command line (where `ps` shows it), the first
    /// line of standard input is the password.
    AddUser {
        name: String,
        password: Option<String>,
        /// RabbitMQ's tags: administrator, monitoring, management, ...
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
    },
    /// Deletes a user.
    DeleteUser { name: String },
    /// Sets a user's password (from standard input when not given).
    ChangePassword { name: String, password: Option<String> },
    /// Replaces a user's tags (none clears them).
    SetUserTags { name: String, tags: Vec<String> },
    /// Every user's permissions.
    ListPermissions,
    /// Sets a user's permissions, as `rabbitmqctl set_permissions`: three
    /// regular expressions, for configure, write and read ("" allows
    /// nothing, ".*" everything).
    SetPermissions {
        user: String,
        configure: String,
        write: String,
        read: String,
        #[arg(long, default_value = "/")]
        vhost: String,
    },
    /// Removes a user's permissions: it may log in and do nothing.
    ClearPermissions {
        user: String,
        #[arg(long, default_value = "/")]
        vhost: String,
    },
    /// The vhosts.
    ListVhosts,
    /// Makes a vhost (refused if it exists); give users permissions in it.
    AddVhost { name: String },
    /// Deletes a vhost and everything in it: its queues with their
    /// messages, exchanges, bindings and permissions; its connections close.
    DeleteVhost { name: String },
    /// Every definition (vhosts, users with their password hashes,
    /// permissions, exchanges, queues with their arguments, bindings) in
    /// RabbitMQ's JSON format, written to FILE (`-`: standard output).
    ExportDefinitions { file: String },
    /// Imports a definitions file in RabbitMQ's JSON format (a RabbitMQ
    /// 3.x export, or ringmq's): checked whole first, then applied; what
    /// ringmq cannot honour is refused by name and nothing is applied.
    ImportDefinitions { file: String },
    /// The node: ready or starting, uptime, listeners, alarms, object
    /// totals.
    Status,
    /// Logs in and exchanges a Ping for a Pong: the broker answers
    /// clients. Exits 1 when it does not.
    Ping,
    /// Waits until the broker answers and has finished starting (every
    /// listener served, a clustered node caught up); exits 1 if it has not
    /// within `--timeout` seconds, or at once on a refused login.
    AwaitStartup {
        #[arg(long, default_value_t = 300.0)]
        timeout: f64,
    },
    /// Consumers: queue, connection (`shard:id`), consumer id, prefetch
    /// (0: none), unacked, priority, exclusive.
    ListConsumers,
    /// Declares a queue (nothing changes if it exists alike; refused if it
    /// exists with other settings); prints its ready messages.
    DeclareQueue {
        name: String,
        #[arg(long)]
        durable: bool,
        /// A queue argument, KEY=VALUE (repeatable), as for `ringmq pub`.
        #[arg(long = "queue-arg", value_name = "KEY=VALUE")]
        queue_arg: Vec<String>,
    },
    /// Declares an exchange of TYPE: direct, fanout, topic or headers.
    DeclareExchange {
        name: String,
        #[arg(value_name = "TYPE")]
        kind: String,
        #[arg(long)]
        durable: bool,
        #[arg(long)]
        auto_delete: bool,
        /// Only other exchanges may publish to it.
        #[arg(long)]
        internal: bool,
        /// An exchange argument, KEY=VALUE (repeatable), e.g.
        /// `alternate-exchange=unrouted`.
        #[arg(long = "arg", value_name = "KEY=VALUE")]
        args: Vec<String>,
    },
    /// Binds a queue (or, with --to-exchange, an exchange) to an exchange.
    Bind(super::ctl_objects::BindArgs),
    /// Removes a binding made as `bind` makes it.
    Unbind(super::ctl_objects::BindArgs),
    /// Shows up to --count messages of a queue and puts them back (marked
    /// redelivered), as `rabbitmqadmin get` with ackmode
    /// ack_requeue_true; `--remove` acks them instead.
    Get {
        queue: String,
        /// Messages to show, 1 to 10000 (fewer when the queue has fewer).
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Take the messages off the queue (ack) instead of requeueing them.
        #[arg(long)]
        remove: bool,
    },
}

pub fn run(a: CtlArgs) -> ExitCode {
    let number;
    let user;
    // Queues are named in the connection's vhost (`--vhost`).
    let queue_in = |q: &str| ringmq::protocol::vhost::qualify(&a.conn.vhost, q).into_owned();
    if let Some(object) = object_command(&a.cmd) {
        return super::ctl_objects::run(&a.conn, object, a.json);
    }
    let (command, arg) = match &a.cmd {
        CtlCommand::Status | CtlCommand::Ping | CtlCommand::AwaitStartup { .. } => {
            return super::ctl_health::run(&a.conn, &a.cmd, a.json)
        }
        // Run as a client, above.
        CtlCommand::DeclareQueue { .. }
        | CtlCommand::DeclareExchange { .. }
        | CtlCommand::Bind(_)
        | CtlCommand::Unbind(_)
        | CtlCommand::Get { .. } => return ExitCode::FAILURE,
        CtlCommand::ListConsumers => (op::ADMIN_LIST_CONSUMERS, ""),
        CtlCommand::ExportDefinitions { file } => return super::ctl_defs::export(&a.conn, file),
        CtlCommand::ImportDefinitions { file } => return super::ctl_defs::import(&a.conn, file, a.json),
        CtlCommand::ListQueues { .. } => (op::ADMIN_LIST_QUEUES, ""),
        CtlCommand::ListConnections => (op::ADMIN_LIST_CONNECTIONS, ""),
        CtlCommand::Shards => (op::ADMIN_SHARDS, ""),
        CtlCommand::PurgeQueue { queue } => {
            user = queue_in(queue);
            (op::ADMIN_PURGE_QUEUE, user.as_str())
        }
        CtlCommand::DeleteQueue { queue } => {
            user = queue_in(queue);
            (op::ADMIN_DELETE_QUEUE, user.as_str())
        }
        CtlCommand::ListVhosts => (op::ADMIN_LIST_VHOSTS, ""),
        CtlCommand::AddVhost { name } => (op::ADMIN_ADD_VHOST, name.as_str()),
        CtlCommand::DeleteVhost { name } => (op::ADMIN_DELETE_VHOST, name.as_str()),
        CtlCommand::CloseConnection { name } => (op::ADMIN_CLOSE_CONNECTION, name.as_str()),
        CtlCommand::ListExchanges => (op::ADMIN_LIST_EXCHANGES, ""),
        CtlCommand::ListBindings => (op::ADMIN_LIST_BINDINGS, ""),
        CtlCommand::ClusterStatus => (op::ADMIN_CLUSTER_STATUS, ""),
        CtlCommand::ForgetNode { name } => (op::ADMIN_FORGET_NODE, name.as_str()),
        CtlCommand::JoinCluster { addr } => (op::ADMIN_JOIN_CLUSTER, addr.as_str()),
        CtlCommand::Alarms => (op::ADMIN_ALARMS, ""),
        CtlCommand::SetMemoryHighWatermark { bytes } => {
            number = bytes.to_string();
            (op::ADMIN_SET_MEMORY_HIGH_WATERMARK, number.as_str())
        }
        CtlCommand::SetDiskFreeLimit { bytes } => {
            number = bytes.to_string();
            (op::ADMIN_SET_DISK_FREE_LIMIT, number.as_str())
        }
        CtlCommand::ListUsers => (op::ADMIN_LIST_USERS, ""),
        CtlCommand::DeleteUser { name } => (op::ADMIN_DELETE_USER, name.as_str()),
        CtlCommand::AddUser { name, password, tags } => {
            let Some(password) = password_or_stdin(password) else { return ExitCode::FAILURE };
            user = serde_json::json!({ "name": name, "password": password, "tags": tags }).to_string();
            (op::ADMIN_ADD_USER, user.as_str())
        }
        CtlCommand::ChangePassword { name, password } => {
            let Some(password) = password_or_stdin(password) else { return ExitCode::FAILURE };
            user = serde_json::json!({ "name": name, "password": password }).to_string();
            (op::ADMIN_CHANGE_PASSWORD, user.as_str())
        }
        CtlCommand::SetUserTags { name, tags } => {
            user = serde_json::json!({ "name": name, "tags": tags }).to_string();
            (op::ADMIN_SET_USER_TAGS, user.as_str())
        }
        CtlCommand::ListPermissions => (op::ADMIN_LIST_PERMISSIONS, ""),
        CtlCommand::SetPermissions { user: name, configure, write, read, vhost } => {
            let v = serde_json::json!({ "user": name, "vhost": vhost, "configure": configure, "write": write, "read": read });
            user = v.to_string();
            (op::ADMIN_SET_PERMISSIONS, user.as_str())
        }
        CtlCommand::ClearPermissions { user: name, vhost } => {
            user = serde_json::json!({ "user": name, "vhost": vhost }).to_string();
            (op::ADMIN_CLEAR_PERMISSIONS, user.as_str())
        }
    };
    let json = match request(&a.conn, command, arg) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("ringmq ctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut v: Value = match serde_json::from_str(&json) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("ringmq ctl: the broker answered with bad JSON: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let CtlCommand::ListQueues { interval } = a.cmd {
        match with_rates(&a.conn, v, interval) {
            Ok(with) => v = with,
            Err(e) => {
                eprintln!("ringmq ctl: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(e) = v.get("error").and_then(Value::as_str) {
        eprintln!("ringmq ctl: {e}");
        return ExitCode::FAILURE;
    }
    // Queues, exchanges and bindings of the `--vhost` vhost only, as
    // `rabbitmqctl -p`.
    if matches!(
        a.cmd,
        CtlCommand::ListQueues { .. }
            | CtlCommand::ListExchanges
            | CtlCommand::ListBindings
            | CtlCommand::ListConsumers
    ) {
        if let Value::Array(rows) = &mut v {
            rows.retain(|r| r["vhost"] == a.conn.vhost.as_str());
        }
    }
    if a.json {
        println!("{v}");
        return ExitCode::SUCCESS;
    }
    let cols: &[&str] = match a.cmd {
        CtlCommand::ListQueues { .. } => &[
            "name",
            "shard",
            "ready",
            "unacked",
            "consumers",
            "publish_rate",
            "deliver_rate",
            "ready_bytes",
            "durable",
        ],
        CtlCommand::ListConnections => &["name", "shard", "protocol", "peer", "vhost"],
        CtlCommand::Shards => &[
            "shard",
            "queues",
            "ready",
            "unacked",
            "consumers",
            "connections",
            "published",
            "delivered",
            "acked",
            "forwarded",
            "fsyncs",
            "disk_bytes",
        ],
        CtlCommand::PurgeQueue { .. } | CtlCommand::DeleteQueue { .. } => &["queue", "messages"],
        CtlCommand::CloseConnection { .. } => &["connection", "closed"],
        CtlCommand::ListExchanges => &["name", "type", "durable", "auto_delete", "internal", "alternate_exchange"],
        CtlCommand::ListBindings => &["source", "destination", "destination_type", "routing_key", "arguments"],
        CtlCommand::Alarms => &["kind", "alarm", "bytes", "limit_bytes", "blocked_connections", "note"],
        CtlCommand::ClusterStatus => {
            v = v["nodes"].take();
            &["name", "state", "voter", "leader", "shards", "native_addr", "amqp_addr", "cluster_addr"]
        }
        CtlCommand::ForgetNode { .. } => &["forgotten", "id"],
        CtlCommand::JoinCluster { .. } => &["joined"],
        CtlCommand::SetMemoryHighWatermark { .. } | CtlCommand::SetDiskFreeLimit { .. } => &["setting", "bytes"],
        CtlCommand::ListUsers => {
            for u in v.as_array_mut().into_iter().flatten() {
                let tags: Vec<&str> = u["tags"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                u["tags"] = tags.join(",").into();
            }
            &["name", "tags"]
        }
        CtlCommand::AddUser { .. }
        | CtlCommand::DeleteUser { .. }
        | CtlCommand::ChangePassword { .. }
        | CtlCommand::SetUserTags { .. }
        | CtlCommand::SetPermissions { .. }
        | CtlCommand::ClearPermissions { .. } => &["user", "done"],
        CtlCommand::ListPermissions => &["user", "vhost", "configure", "write", "read"],
        CtlCommand::ListVhosts => &["name"],
        CtlCommand::AddVhost { .. } | CtlCommand::DeleteVhost { .. } => &["vhost", "done"],
        CtlCommand::ListConsumers => {
            &["queue", "connection", "consumer_id", "prefetch", "unacked", "priority", "exclusive", "shard"]
        }
        // Answered above, by `ctl_health`, `ctl_objects` and `ctl_defs`.
        CtlCommand::Status
        | CtlCommand::Ping
        | CtlCommand::AwaitStartup { .. }
        | CtlCommand::DeclareQueue { .. }
        | CtlCommand::DeclareExchange { .. }
        | CtlCommand::Bind(_)
        | CtlCommand::Unbind(_)
        | CtlCommand::Get { .. }
        | CtlCommand::ExportDefinitions { .. }
        | CtlCommand::ImportDefinitions { .. } => &[],
    };
    let rows: Vec<Value> = match v {
        Value::Array(rows) => rows,
        other => vec![other],
    };
    print!("{}", table(cols, &rows));
    ExitCode::SUCCESS
}

/// The commands `ctl_objects` runs as a client, with what they do.
fn object_command(c: &CtlCommand) -> Option<super::ctl_objects::Object> {
    use super::ctl_objects::Object;
    Some(match c.clone() {
        CtlCommand::DeclareQueue { name, durable, queue_arg } => {
            Object::DeclareQueue { name, durable, args: queue_arg }
        }
        CtlCommand::DeclareExchange { name, kind, durable, auto_delete, internal, args } => {
            Object::DeclareExchange { name, kind, durable, auto_delete, internal, args }
        }
        CtlCommand::Bind(b) => Object::Bind(b),
        CtlCommand::Unbind(b) => Object::Unbind(b),
        CtlCommand::Get { queue, count, remove } => Object::Get { queue, count, remove },
        _ => return None,
    })
}

/// The password given, or the first line of standard input.
fn password_or_stdin(given: &Option<String>) -> Option<String> {
    if let Some(p) = given {
        return Some(p.clone());
    }
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(n) if n > 0 => Some(line.trim_end_matches(['\r', '\n']).to_string()),
        _ => {
            eprintln!("ringmq ctl: no password given, and none on standard input");
            None
        }
    }
}

/// Takes a second snapshot `interval` seconds after `first` and adds each
/// queue's publish and deliver rates (messages per second) to it.
/// A queue row's vhost and name: names repeat across vhosts.
fn queue_key(q: &Value) -> Option<(String, String)> {
    Some((q["vhost"].as_str()?.to_string(), q["name"].as_str()?.to_string()))
}

fn with_rates(conn: &ConnArgs, first: Value, interval: f64) -> Result<Value, String> {
    if !(interval > 0.0 && interval <= 3600.0) {
        return Err(format!("--interval must be above 0 and at most 3600 seconds, got {interval}"));
    }
    if first.get("error").is_some() {
        return Ok(first);
    }
    std::thread::sleep(std::time::Duration::from_secs_f64(interval));
    let json = request(conn, op::ADMIN_LIST_QUEUES, "")?;
    let mut second: Value =
        serde_json::from_str(&json).map_err(|e| format!("the broker answered with bad JSON: {e}"))?;
    let before: std::collections::HashMap<(String, String), (u64, u64)> = first
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|q| Some((queue_key(q)?, (q["published"].as_u64()?, q["delivered"].as_u64()?))))
        .collect();
    for q in second.as_array_mut().into_iter().flatten() {
        let (p0, d0) = queue_key(q).and_then(|k| before.get(&k).copied()).unwrap_or((0, 0));
        let rate = |now: &Value, then: u64| (now.as_u64().unwrap_or(0).saturating_sub(then) as f64 / interval).round();
        let (p, d) = (rate(&q["published"], p0), rate(&q["delivered"], d0));
        q["publish_rate"] = p.into();
        q["deliver_rate"] = d.into();
    }
    Ok(second)
}

/// An aligned table: strings left, numbers right.
pub fn table(cols: &[&str], rows: &[Value]) -> String {
    let cell = |r: &Value, c: &str| match &r[c] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        v => v.to_string(),
    };
    let cells: Vec<Vec<String>> = rows.iter().map(|r| cols.iter().map(|c| cell(r, c)).collect()).collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| cells.iter().map(|r| r[i].chars().count()).chain([c.len()]).max().unwrap_or(0))
        .collect();
    let numeric: Vec<bool> = (0..cols.len())
        .map(|i| !rows.is_empty() && rows.iter().all(|r| r[cols[i]].is_number() || r[cols[i]].is_null()))
        .collect();
    let line = |vals: &[String]| {
        let parts: Vec<String> = vals
            .iter()
            .enumerate()
            .map(
                |(i, v)| if numeric[i] { format!("{v:>w$}", w = widths[i]) } else { format!("{v:<w$}", w = widths[i]) },
            )
            .collect();
        format!("{}\n", parts.join("  ").trim_end())
    };
    let mut out = line(&cols.iter().map(|c| c.to_string()).collect::<Vec<_>>());
    for r in &cells {
        out.push_str(&line(r));
    }
    out
}

/// A byte stream to the broker: a socket, or TLS over one.
pub(super) trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// How long connecting (and the TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the broker may take to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer ctl reads.
const ANSWER_BYTES_MAX: usize = 1 << 30;

/// How long connecting, and then each answer, may take.
#[derive(Debug, Clone, Copy)]
pub(super) struct Within {
    pub connect: Duration,
    pub answer: Duration,
}

pub(super) const WITHIN: Within = Within { connect: CONNECT_TIMEOUT, answer: ANSWER_TIMEOUT };

pub(super) fn connect(c: &ConnArgs, within: Within) -> Result<(SocketAddr, Box<dyn Stream>), String> {
    let opts = c.options();
    let addr = ringmq::client::parse_url(&opts.url).map_err(|e| e.to_string())?;
    let tls = ringmq::client::tls::Tls::for_options(&opts).map_err(|e| e.to_string())?;
    let s = TcpStream::connect_timeout(&addr, within.connect).map_err(|e| format!("{addr}: {e}"))?;
    let _ = s.set_nodelay(true);
    let stream: Box<dyn Stream> = match tls {
        Some(tls) => {
            let t = tls.connect_std(s, within.connect).map_err(|e| format!("{addr}: {e}"))?;
            t.sock.set_read_timeout(Some(within.answer)).map_err(|e| e.to_string())?;
            Box::new(t)
        }
        None => {
            s.set_read_timeout(Some(within.answer)).map_err(|e| e.to_string())?;
            Box::new(s)
        }
    };
    Ok((addr, stream))
}

/// What the broker answered the frame after Hello with.
pub(super) enum Answer {
    Json(String),
    Pong,
}

/// Why no answer came: the broker refused (an `Error` frame: its code), or
/// it could not be reached or did not answer in time.
#[derive(Debug)]
pub(super) enum Failure {
    Broker { code: u16, message: String },
    Unreachable(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Broker { code, message } => write!(f, "broker error {code}: {message}"),
            Failure::Unreachable(why) => f.write_str(why),
        }
    }
}

/// Hello, then one `Admin` frame; the `AdminOk` JSON.
fn request(c: &ConnArgs, command: u8, arg: &str) -> Result<String, String> {
    match exchange(c, Cmd::Admin { command, arg }, WITHIN) {
        Ok(Answer::Json(json)) => Ok(json),
        Ok(Answer::Pong) => Err("the broker answered Pong to an Admin request".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Hello, then `cmd` (an `Admin` or a `Ping`); its answer.
pub(super) fn exchange(c: &ConnArgs, cmd: Cmd<'_>, within: Within) -> Result<Answer, Failure> {
    let (addr, mut s) = connect(c, within).map_err(Failure::Unreachable)?;
    let mut out = BytesMut::new();
    Frame {
        request_id: 1,
        cmd: Cmd::Hello { version: VERSION, user: &c.user, password: &c.password, heartbeat_ms: None, vhost: None },
    }
    .encode(&mut out);
    Frame { request_id: 2, cmd }.encode(&mut out);
    let gone = |e: std::io::Error| Failure::Unreachable(format!("{addr}: {e}"));
    s.write_all(&out).and_then(|()| s.flush()).map_err(gone)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 << 10];
    loop {
        // Frames from the buffer's front until the answer to request 2.
        loop {
            let decoded = decode(&buf, ANSWER_BYTES_MAX)
                .map_err(|e| Failure::Unreachable(format!("bad frame from the broker: {e}")))?;
            let (answer, used) = match decoded {
                Decoded::Incomplete => break,
                Decoded::Frame(f, n) => (
                    match f.cmd {
                        Cmd::AdminOk { json } => Some(Ok(Answer::Json(json.to_string()))),
                        Cmd::Pong => Some(Ok(Answer::Pong)),
                        Cmd::Error { code, message, .. } => {
                            Some(Err(Failure::Broker { code, message: message.to_string() }))
                        }
                        _ => None,
                    },
                    n,
                ),
            };
            if let Some(a) = answer {
                return a;
            }
            buf.drain(..used);
        }
        let n = s.read(&mut chunk).map_err(gone)?;
        if n == 0 {
            return Err(Failure::Unreachable(format!("{addr} closed the connection")));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
