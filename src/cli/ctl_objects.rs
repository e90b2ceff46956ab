//! `ringmq ctl declare-queue | declare-exchange | bind | unbind | get`:
//! the operator's object commands, run as an ordinary native client
//! (`ringmq::client`: Declare, ExchangeDeclare, Bind, Unbind, Get, Nack) in
//! the connection's vhost, with the user's permissions. The answer is one
//! JSON object per row, printed as ctl prints the admin answers.

use super::ConnArgs;
use clap::Args;
use ringmq::client::{Client, ClientError, ExchangeOptions};
use serde_json::{json, Value};
use std::process::ExitCode;

/// `bind` and `unbind`.
#[derive(Args, Debug, Clone)]
pub struct BindArgs {
    /// The exchange messages come from.
    pub source: String,
    /// The queue (or, with `--to-exchange`, the exchange) they go to.
    pub destination: String,
    #[arg(long, default_value = "")]
    pub routing_key: String,
    /// DESTINATION is an exchange (an exchange-to-exchange binding).
    #[arg(long)]
    pub to_exchange: bool,
    /// A binding argument, KEY=VALUE (repeatable; headers exchanges match
    /// on them, with `x-match`).
    #[arg(long = "arg", value_name = "KEY=VALUE")]
    pub args: Vec<String>,
}

/// What the object commands do; `ctl.rs` hands them over.
#[derive(Debug, Clone)]
pub enum Object {
    DeclareQueue { name: String, durable: bool, args: Vec<String> },
    DeclareExchange { name: String, kind: String, durable: bool, auto_delete: bool, internal: bool, args: Vec<String> },
    Bind(BindArgs),
    Unbind(BindArgs),
    Get { queue: String, count: u32, remove: bool },
}

/// The most messages one `get` takes (each is held unacked until all are
/// read, then requeued).
pub const GET_COUNT_MAX: u32 = 10_000;

pub fn run(conn: &ConnArgs, what: Object, json_out: bool) -> ExitCode {
    super::init_tool_logging();
    if let Object::Get { count, .. } = &what {
        if *count == 0 || *count > GET_COUNT_MAX {
            eprintln!("ringmq ctl: --count must be 1 to {GET_COUNT_MAX}");
            return ExitCode::from(2);
        }
    }
    let opts = conn.options();
    let cols = columns(&what);
    let r = super::run_local("ringmq-ctl", move || async move {
        let client = Client::connect(opts).await.map_err(|e| e.to_string())?;
        let r = act(&client, what).await.map_err(|e| e.to_string());
        client.close().await;
        r
    });
    let rows = match r.and_then(|r| r) {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("ringmq ctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    if json_out {
        println!("{}", Value::Array(rows));
    } else {
        print!("{}", super::ctl::table(cols, &rows));
    }
    ExitCode::SUCCESS
}

fn columns(what: &Object) -> &'static [&'static str] {
    match what {
        Object::DeclareQueue { .. } => &["queue", "durable", "messages"],
        Object::DeclareExchange { .. } => &["exchange", "type", "durable", "declared"],
        Object::Bind(_) => &["source", "destination", "routing_key", "bound"],
        Object::Unbind(_) => &["source", "destination", "routing_key", "unbound"],
        Object::Get { .. } => &["body", "body_encoding", "redelivered", "properties", "headers"],
    }
}

fn table_arg(args: &[String]) -> Result<Vec<u8>, ClientError> {
    super::queue_args(args).map_err(|e| ClientError::Invalid(e.replace("queue argument", "argument")))
}

async fn act(c: &Client, what: Object) -> Result<Vec<Value>, ClientError> {
    Ok(match what {
        Object::DeclareQueue { name, durable, args } => {
            let n = c.declare_with(&name, durable, &table_arg(&args)?).await?;
            vec![json!({ "queue": name, "durable": durable, "messages": n })]
        }
        Object::DeclareExchange { name, kind, durable, auto_delete, internal, args } => {
            let args = table_arg(&args)?;
            let o = ExchangeOptions { durable, auto_delete, internal, args: &args };
            c.declare_exchange(&name, &kind, o).await?;
            vec![json!({ "exchange": name, "type": kind, "durable": durable, "declared": true })]
        }
        Object::Bind(b) => {
            let args = table_arg(&b.args)?;
            if b.to_exchange {
                c.bind_exchange(&b.destination, &b.source, &b.routing_key, &args).await?;
            } else {
                c.bind_queue(&b.destination, &b.source, &b.routing_key, &args).await?;
            }
            vec![
                json!({ "source": b.source, "destination": b.destination, "routing_key": b.routing_key, "bound": true }),
            ]
        }
        Object::Unbind(b) => {
            let args = table_arg(&b.args)?;
            if b.to_exchange {
                c.unbind_exchange(&b.destination, &b.source, &b.routing_key, &args).await?;
            } else {
                c.unbind_queue(&b.destination, &b.source, &b.routing_key, &args).await?;
            }
            vec![
                json!({ "source": b.source, "destination": b.destination, "routing_key": b.routing_key, "unbound": true }),
            ]
        }
        Object::Get { queue, count, remove } => get(c, &queue, count, remove).await?,
    })
}

/// Takes up to `count` messages, holding each unacked so that the next
/// get moves on, then acks them (`--remove`) or requeues them all: a
/// peek, as `rabbitmqadmin get` with `ackmode=ack_requeue_true`. Requeued
/// messages come back marked redelivered, as in RabbitMQ.
async fn get(c: &Client, queue: &str, count: u32, remove: bool) -> Result<Vec<Value>, ClientError> {
    let mut taken = Vec::new();
    let mut result = Ok(());
    for _ in 0..count {
        match c.get(queue, false).await {
            Ok(Some(d)) => taken.push(d),
            Ok(None) => break,
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let rows = taken.iter().map(|d| super::props::delivery_json(&d.body, &d.props, d.redelivered, None)).collect();
    // Settle what was taken even when a later get failed: nothing stays
    // held (closing the connection would requeue it too).
    let conn = c.conn_for(queue).await?;
    for d in &taken {
        let nack = if remove { None } else { Some(true) };
        conn.ack_now(d.consumer_id, d.tag, nack).await?;
    }
    // Acks have no answer: a request on the same connection after them is
    // answered only once the queue has taken them, so the messages are
    // back (or gone) when ctl exits.
    if !taken.is_empty() {
        c.declare_passive(queue).await?;
    }
    result.map(|()| rows)
}
