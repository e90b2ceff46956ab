//! basic.consume, basic.cancel and basic.get: the channel methods that
//! take messages from a queue.

use super::calls::Core;
use super::channel::OpKind;
use super::conn::{conn_fault, rid, AmqpConn, ConsumerInfo, Fault, State, KIND_IGNORE, KIND_OP};
use super::handlers::{ch_fault, channel, check_name};
use crate::protocol::amqp::method::{self, code, id, MethodId};
use crate::protocol::amqp::wire::put_shortstr;
use crate::protocol::vhost;
use crate::server::types::{Request, StreamStart};

/// basic.consume: checks (the arguments: `consume_args`), then a
/// consumer on the channel and a Subscribe to the queue's owner.
#[allow(clippy::too_many_arguments)]
pub(super) fn consume(
    c: &AmqpConn,
    core: &Core<'_>,
    st: &mut State,
    (n, mid): (u16, MethodId),
    (queue, tag): (&str, &str),
    (no_ack, exclusive, no_wait): (bool, bool, bool),
    args: &[u8],
) -> Result<(), Fault> {
    let shard = &c.shard;
    let queue = check_name(n, queue, mid)?;
    if st.consumers.values().any(|k| k.channel == n && k.tag == tag && !tag.is_empty()) {
        return Err(conn_fault(code::NOT_ALLOWED, format!("NOT_ALLOWED - attempt to reuse consumer tag '{tag}'"), mid));
    }
    if st.consumers.len() >= shard.config.consumers_per_connection_max as usize {
        return Err(conn_fault(code::RESOURCE_ERROR, "consumers_per_connection_max reached", mid));
    }
    if queue == crate::protocol::reply_to::PSEUDO_QUEUE {
        return c.reply_consume(st, (n, mid), tag, (no_ack, no_wait));
    }
    // RabbitMQ's wording: "invalid arg 'x-priority' for queue 'q' in vhost '/': ...".
    let priority = super::consume_args::priority(args, c.table_depth_max()).map_err(|e| {
        let text = match e.arg() {
            Some(arg) => {
                format!("PRECONDITION_FAILED - invalid arg '{arg}' for queue {}: {e}", vhost::describe(&c.q(queue)))
            }
            None => format!("PRECONDITION_FAILED - {e}"),
        };
        ch_fault(n, code::PRECONDITION_FAILED, text, mid)
    })?;
    let offset = super::consume_args::stream_offset(args, c.table_depth_max(), wall_ms()).map_err(|e| {
        let q = vhost::describe(&c.q(queue));
        ch_fault(
            n,
            code::PRECONDITION_FAILED,
            format!("PRECONDITION_FAILED - invalid arg 'x-stream-offset' for queue {q}: {e}"),
            mid,
        )
    })?;
    let cid = st.next_consumer;
    st.next_consumer += 1;
    let tag = if tag.is_empty() { format!("amq.ctag-{}.{}.{cid}", shard.id, c.me().conn_id) } else { tag.into() };
    let per_consumer = channel(st, n).prefetch_consumer;
    let per_channel = channel(st, n).prefetch_channel;
    let max = shard.config.prefetch_max;
    let prefetch = match (no_ack, per_consumer, per_channel) {
        (true, _, _) | (false, 0, 0) => max,
        (false, 0, p) | (false, p, 0) => u32::from(p).min(max),
        (false, a, b) => u32::from(a.min(b)).min(max),
    };
    let qualified = c.q(queue);
    let owner = shard.owner_of(&qualified);
    st.consumers.insert(
        cid,
        ConsumerInfo {
            channel: n,
            deliver: method::deliver_template(n, &tag, queue),
            tag,
            queue: qualified.clone().into_owned(),
            owner,
            no_ack,
            live: false,
            cancelled: false,
            direct: false,
        },
    );
    let ch = channel(st, n);
    ch.consumers.push(cid);
    let seq = ch.push_op(OpKind::Consume { consumer_id: cid, no_wait });
    let stream = StreamStart { offset, no_ack, prefetch_set: per_consumer != 0 || per_channel != 0 };
    let req = Request::Subscribe {
        consumer_id: cid,
        prefetch,
        queue: qualified.into_owned(),
        exclusive,
        priority,
        auto_ack: no_ack,
        stream,
    };
    core.submit(owner, rid(KIND_OP, n, seq), req);
    Ok(())
}

/// basic.cancel: the consumer is cancelled at its owner, and deliveries
/// held back for it go back to the queue.
pub(super) fn cancel(
    c: &AmqpConn,
    core: &Core<'_>,
    st: &mut State,
    n: u16,
    (tag, no_wait): (&str, bool),
) -> Result<(), Fault> {
    let direct = st.consumers.iter().find(|(_, k)| k.channel == n && k.tag == tag && k.direct).map(|(cid, _)| *cid);
    if let Some(cid) = direct {
        c.reply_cancel(st, n, cid);
    }
    let found = st.consumers.iter_mut().find(|(_, k)| k.channel == n && k.tag == tag && !k.cancelled);
    if let Some((&cid, k)) = found {
        k.cancelled = true;
        let req = Request::Cancel { consumer_id: cid, queue: k.queue.clone() };
        let owner = k.owner;
        // Held deliveries never reached the client: back to the queue.
        let ch = channel(st, n);
        let mut ranges = Vec::new();
        ch.held.retain(|h| {
            if h.consumer_id == cid {
                ranges.push((h.qtag, h.qtag));
                false
            } else {
                true
            }
        });
        core.submit(owner, rid(KIND_IGNORE, n, 0), req);
        if !ranges.is_empty() {
            let queue = st.consumers[&cid].queue.clone();
            let req = Request::Nack { consumer_id: cid, queue, requeue: true, ranges };
            core.submit(owner, rid(KIND_IGNORE, n, 0), req);
        }
    }
    if !no_wait {
        c.outbox.push(|b| method::put(b, n, id::BASIC_CANCEL_OK, |b| put_shortstr(b, tag)));
    }
    Ok(())
}

/// basic.get: one message from the queue's owner, through a getter
/// consumer kept per channel and queue (none with no_ack).
pub(super) fn get(
    c: &AmqpConn,
    core: &Core<'_>,
    st: &mut State,
    (n, mid): (u16, MethodId),
    (queue, no_ack): (&str, bool),
) -> Result<(), Fault> {
    let shard = &c.shard;
    let queue = check_name(n, queue, mid)?;
    let qualified = c.q(queue);
    let owner = shard.owner_of(&qualified);
    let cid = if no_ack {
        0
    } else if let Some((_, cid)) = channel(st, n).getters.iter().find(|(q, _)| q == queue) {
        *cid
    } else {
        let cid = st.next_consumer;
        st.next_consumer += 1;
        let info = ConsumerInfo {
            channel: n,
            tag: String::new(),
            queue: qualified.clone().into_owned(),
            owner,
            no_ack: false,
            live: false,
            cancelled: true,
            deliver: Vec::new(),
            direct: false,
        };
        st.consumers.insert(cid, info);
        let ch = channel(st, n);
        ch.getters.push((queue.into(), cid));
        ch.consumers.push(cid);
        cid
    };
    let seq = channel(st, n).push_op(OpKind::Get { consumer_id: cid, no_ack, queue: queue.into() });
    let req = Request::Get { consumer_id: cid, no_ack, queue: qualified.into_owned() };
    core.submit(owner, rid(KIND_OP, n, seq), req);
    Ok(())
}

/// Wall-clock milliseconds since the epoch (an `x-stream-offset` interval
/// counts back from it).
fn wall_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    crate::protocol::wire::u64_of(since.as_millis())
}
