//! Exchange and binding methods: exchange.declare / delete / bind / unbind
//! and queue.bind / unbind. Each becomes a change to the routing table,
//! sent to shard 0 (through the queue's owner for queue bindings); the
//! -ok goes out when the change is applied everywhere the asking
//! connection can publish.

use super::calls::Core;
use super::channel::OpKind;
use super::conn::{rid, Fault, State, KIND_OP};
use crate::protocol::amqp::method::{code, id, ExchangeDeclare, MethodId};
use crate::routing::{BindingDef, Dest};
use crate::server::shard::routing_replica::{check_exchange_name, exchange_def};
use crate::server::types::QueueError;
use bytes::Bytes;

fn ch_fault(channel: u16, code: u16, text: impl Into<String>, cause: MethodId) -> Fault {
    Fault::Channel { channel, code, text: text.into(), cause }
}

/// A refusal found before anything was sent, with RabbitMQ's reply code.
fn refused(n: u16, e: QueueError, cause: MethodId) -> Fault {
    use crate::protocol::ErrorCode;
    let (amqp, prefix) = match e.code {
        ErrorCode::AccessRefused => (code::ACCESS_REFUSED, "ACCESS_REFUSED - "),
        ErrorCode::ExchangeNotFound | ErrorCode::QueueNotFound => (code::NOT_FOUND, "NOT_FOUND - "),
        _ => (code::PRECONDITION_FAILED, "PRECONDITION_FAILED - "),
    };
    ch_fault(n, amqp, format!("{prefix}{}", e.message), cause)
}

fn push_op(st: &mut State, n: u16, ok: MethodId, cause: MethodId, no_wait: bool) -> Option<u64> {
    let ch = st.channels.get_mut(&n)?;
    Some(ch.push_op(OpKind::Simple { ok, cause, no_wait }))
}

pub fn exchange_declare(
    st: &mut State,
    n: u16,
    mid: MethodId,
    d: ExchangeDeclare<'_>,
    core: &Core<'_>,
) -> Result<(), Fault> {
    let Some(seq) = push_op(st, n, id::EXCHANGE_DECLARE_OK, mid, d.no_wait) else { return Ok(()) };
    let rid = rid(KIND_OP, n, seq);
    // The default exchange exists under both its names.
    let name = if d.exchange == "amq.default" { "" } else { d.exchange };
    if d.passive || name.is_empty() {
        if name.is_empty() && !d.passive && d.kind != "direct" {
            let text = "PRECONDITION_FAILED - the default exchange is of type 'direct'";
            return Err(ch_fault(n, code::PRECONDITION_FAILED, text, mid));
        }
        core.check_exchange(rid, name);
        return Ok(());
    }
    let def = exchange_def(name, d.kind, d.durable, d.auto_delete, d.internal, Bytes::copy_from_slice(d.args))
        .map_err(|e| refused(n, e, mid))?;
    core.declare_exchange(rid, def);
    Ok(())
}

pub fn exchange_delete(
    st: &mut State,
    (n, vhost): (u16, &str),
    mid: MethodId,
    exchange: &str,
    if_unused: bool,
    no_wait: bool,
    core: &Core<'_>,
) -> Result<(), Fault> {
    if exchange.is_empty() || exchange.starts_with("amq.") {
        let text = format!("ACCESS_REFUSED - exchange '{exchange}' in vhost '{vhost}' cannot be deleted");
        return Err(ch_fault(n, code::ACCESS_REFUSED, text, mid));
    }
    check_exchange_name(exchange).map_err(|e| refused(n, e, mid))?;
    let Some(seq) = push_op(st, n, id::EXCHANGE_DELETE_OK, mid, no_wait) else { return Ok(()) };
    core.delete_exchange(rid(KIND_OP, n, seq), exchange, if_unused);
    Ok(())
}

/// queue.bind / unbind and exchange.bind / unbind. `names` is (source,
/// destination, routing key); `flags` is (no_wait, unbind).
#[allow(clippy::too_many_arguments)]
pub fn bind(
    st: &mut State,
    n: u16,
    mid: MethodId,
    ok: MethodId,
    names: (&str, Dest, &str),
    args: &[u8],
    flags: (bool, bool),
    core: &Core<'_>,
) -> Result<(), Fault> {
    let (source, dest, key) = names;
    let (no_wait, unbind) = flags;
    let source = if source == "amq.default" { "" } else { source };
    if source.is_empty() || matches!(&dest, Dest::Exchange(x) if x.is_empty() || x == "amq.default") {
        let text = "ACCESS_REFUSED - operation not permitted on the default exchange";
        return Err(ch_fault(n, code::ACCESS_REFUSED, text, mid));
    }
    check_exchange_name(source).map_err(|e| refused(n, e, mid))?;
    if let Dest::Exchange(x) = &dest {
        check_exchange_name(x).map_err(|e| refused(n, e, mid))?;
    }
    let Some(seq) = push_op(st, n, ok, mid, no_wait) else { return Ok(()) };
    let binding = BindingDef { source: source.into(), dest, key: key.into(), args: Bytes::copy_from_slice(args) };
    core.bind(rid(KIND_OP, n, seq), binding, unbind);
    Ok(())
}
