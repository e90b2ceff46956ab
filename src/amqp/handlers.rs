//! Channel methods: what a client sends on channels 1..=channel_max. Each
//! handler works on the borrowed state and calls the core directly
//! ([`Core`]): what the shard has for this connection meanwhile waits in
//! its inbox until the handler has returned (`calls.rs`).

use super::calls::Core;
use super::channel::{ChState, Channel, Content, OpKind};
use super::conn::{conn_fault, rid, AmqpConn, Fault, State, KIND_IGNORE, KIND_OP};
use super::consuming::{cancel, consume, get};
use crate::auth::permissions::Perm;
use crate::protocol::amqp::frame::{self, Frame};
use crate::protocol::amqp::method::{self, code, id, Method, MethodId, QueueDeclare};
use crate::protocol::amqp::wire;
use crate::server::grants::Kind;
use crate::server::ops::queue_name_ok;
use crate::server::policy::QueueArgs;
use crate::server::types::Request;
use bytes::{BufMut, BytesMut};
use std::cell::RefCell;

pub(super) fn ch_fault(channel: u16, code: u16, text: impl Into<String>, cause: MethodId) -> Fault {
    Fault::Channel { channel, code, text: text.into(), cause }
}

pub fn on_channel_frame(c: &AmqpConn, f: Frame<'_>) -> Result<(), Fault> {
    let n = f.channel;
    let mut st = c.st.borrow_mut();
    if n > st.channel_max {
        return Err(conn_fault(code::CHANNEL_ERROR, format!("channel {n} is above channel_max"), (20, 10)));
    }
    let core = Core::new(c, !st.consumers.is_empty());
    if f.kind != frame::METHOD {
        let Some(ch) = st.channels.get_mut(&n) else {
            return Err(conn_fault(code::CHANNEL_ERROR, format!("content on channel {n}, which is not open"), (0, 0)));
        };
        if ch.state == ChState::Closing {
            return Ok(());
        }
        let max = c.shard.config.message_bytes_max as usize;
        return super::publish::on_content(&c.shard, n, ch, f, max, &core);
    }
    // The hot path: a publish to the target of the batch being built. Its
    // names were checked (UTF-8, exchange) when the batch began; only the
    // exchange's existence is checked again, as for every publish.
    if let Some(ch) = st.channels.get_mut(&n).filter(|ch| ch.state == ChState::Open && ch.content.is_none()) {
        if let Some(p) = method::parse_publish(f.payload) {
            let known = p.exchange.is_empty()
                || c.shard.routing.table.borrow().exchange(&ch.batch_exchange_key).is_some_and(|x| !x.internal);
            if !p.immediate && known && ch.batch_takes(p.exchange, p.routing_key, p.mandatory) {
                let mandatory = p.mandatory;
                ch.content =
                    Some(Content { persistent: false, mandatory, body_len: 0, have_header: false, same_target: true });
                return Ok(());
            }
        }
    }
    let (mid, m) = method::parse_limited(f.payload, c.table_depth_max())
        .map_err(|e| conn_fault(code::SYNTAX_ERROR, e.to_string(), (0, 0)))?;
    let Some(ch) = st.channels.get_mut(&n) else {
        return match m {
            Method::ChannelOpen => {
                let mut ch = Channel::new();
                let g = AmqpConn::new_generation(&mut st);
                (ch.pub_seq, ch.confirm_base, ch.next_op) = (g, g, g + 1);
                st.channels.insert(n, ch);
                crate::server::shard::bump(&c.shard.counters.channels_opened, 1);
                c.outbox.push(|b| method::put(b, n, id::CHANNEL_OPEN_OK, |b| b.put_u32(0)));
                Ok(())
            }
            // A close-ok after our close, or a late frame: nothing to do.
            Method::ChannelCloseOk => Ok(()),
            _ => Err(conn_fault(code::CHANNEL_ERROR, format!("channel {n} is not open"), mid)),
        };
    };
    if ch.state == ChState::Closing {
        match m {
            Method::ChannelCloseOk => {
                st.channels.remove(&n);
            }
            Method::ChannelClose { .. } => {
                st.channels.remove(&n);
                c.outbox.push(|b| method::put(b, n, id::CHANNEL_CLOSE_OK, |_| ()));
            }
            _ => {}
        }
        return Ok(());
    }
    if ch.content.is_some() {
        return Err(conn_fault(code::UNEXPECTED_FRAME, "a method arrived inside a message's content frames", mid));
    }
    if let Method::Publish { exchange, routing_key, mandatory, immediate } = m {
        if immediate {
            return Err(conn_fault(code::NOT_IMPLEMENTED, "basic.publish immediate=true is not implemented", mid));
        }
        // amq.default is another name of the default exchange.
        let exchange = if exchange == "amq.default" { "" } else { exchange };
        c.may_publish(n, mid, exchange)?;
        if !exchange.is_empty() {
            let table = c.shard.routing.table.borrow();
            let vhost = c.vhost();
            match table.exchange(&c.q(exchange)) {
                None => {
                    let text = format!("NOT_FOUND - no exchange '{exchange}' in vhost '{vhost}'");
                    return Err(ch_fault(n, code::NOT_FOUND, text, mid));
                }
                Some(x) if x.internal => {
                    let text =
                        format!("ACCESS_REFUSED - cannot publish to internal exchange '{exchange}' in vhost '{vhost}'");
                    return Err(ch_fault(n, code::ACCESS_REFUSED, text, mid));
                }
                Some(_) => {}
            }
        }
        ch.content_exchange.clear();
        ch.content_exchange.push_str(exchange);
        ch.content_exchange_key.clear();
        ch.content_exchange_key.push_str(&c.q(exchange));
        ch.content =
            Some(Content { persistent: false, mandatory, body_len: 0, have_header: false, same_target: false });
        ch.content_queue.clear();
        ch.content_queue.push_str(routing_key);
        return Ok(());
    }
    // Anything else is ordered after this channel's publishes so far.
    super::publish::flush_batch(n, ch, &core);
    // Acks gathered here go out at the end of the read, merged into ranges.
    on_method(c, &core, &mut st, (n, mid), m)
}

fn on_method(
    c: &AmqpConn,
    core: &Core<'_>,
    st: &mut State,
    (n, mid): (u16, MethodId),
    m: Method<'_>,
) -> Result<(), Fault> {
    let shard = &c.shard;
    let ok = |f: &dyn Fn(&mut BytesMut), mid: MethodId| c.outbox.push(|b| method::put(b, n, mid, f));
    match m {
        Method::ChannelOpen => Err(conn_fault(code::CHANNEL_ERROR, format!("channel {n} is already open"), mid)),
        Method::ChannelClose { .. } => {
            release_channel(st, n, core, &c.acks);
            st.channels.remove(&n);
            ok(&|_| (), id::CHANNEL_CLOSE_OK);
            Ok(())
        }
        Method::ChannelCloseOk => Ok(()),
        Method::Flow { active } => {
            let ch = channel(st, n);
            ch.flow = active;
            ok(&|b| wire::put_bits(b, &[active]), id::CHANNEL_FLOW_OK);
            if active {
                super::deliver::drain_held(c, st, n);
            }
            Ok(())
        }
        Method::FlowOk => Ok(()),
        Method::ExchangeDeclare(d) => {
            if !d.passive {
                c.may(n, mid, Perm::Configure, Kind::Exchange, d.exchange)?;
            }
            super::routing::exchange_declare(st, n, mid, d, core)
        }
        Method::ExchangeDelete { exchange, if_unused, no_wait } => {
            c.may(n, mid, Perm::Configure, Kind::Exchange, exchange)?;
            super::routing::exchange_delete(st, (n, c.vhost()), mid, exchange, if_unused, no_wait, core)
        }
        Method::ExchangeBind { destination, source, routing_key, no_wait, args, unbind } => {
            c.may(n, mid, Perm::Write, Kind::Exchange, destination)?;
            c.may(n, mid, Perm::Read, Kind::Exchange, source)?;
            let dest = crate::routing::Dest::Exchange(destination.into());
            let ok = if unbind { id::EXCHANGE_UNBIND_OK } else { id::EXCHANGE_BIND_OK };
            super::routing::bind(st, n, mid, ok, (source, dest, routing_key), args, (no_wait, unbind), core)
        }
        Method::QueueBind { queue, exchange, routing_key, no_wait, args, unbind } => {
            let queue = check_name(n, queue, mid)?;
            c.may(n, mid, Perm::Write, Kind::Queue, queue)?;
            c.may(n, mid, Perm::Read, Kind::Exchange, exchange)?;
            let dest = crate::routing::Dest::Queue(queue.into());
            let ok = if unbind { id::QUEUE_UNBIND_OK } else { id::QUEUE_BIND_OK };
            super::routing::bind(st, n, mid, ok, (exchange, dest, routing_key), args, (no_wait, unbind), core)
        }
        Method::QueueDeclare(d) => declare(c, core, st, (n, mid), d),
        Method::QueuePurge { queue, no_wait } => {
            let queue = check_name(n, queue, mid)?;
            c.may(n, mid, Perm::Read, Kind::Queue, queue)?;
            let seq = channel(st, n).push_op(OpKind::Purge { no_wait });
            let queue = c.q(queue);
            let owner = shard.owner_of(&queue);
            let req = Request::Purge { queue: queue.into_owned() };
            core.submit(owner, rid(KIND_OP, n, seq), req);
            Ok(())
        }
        Method::QueueDelete { queue, if_unused, if_empty, no_wait } => {
            let queue = check_name(n, queue, mid)?;
            c.may(n, mid, Perm::Configure, Kind::Queue, queue)?;
            let seq = channel(st, n).push_op(OpKind::Delete { no_wait });
            let queue = c.q(queue);
            let owner = shard.owner_of(&queue);
            let req = Request::Delete { if_empty, if_unused, queue: queue.into_owned() };
            core.submit(owner, rid(KIND_OP, n, seq), req);
            Ok(())
        }
        Method::Qos { prefetch_size, prefetch_count, global } => {
            if prefetch_size != 0 {
                return Err(conn_fault(code::NOT_IMPLEMENTED, "basic.qos prefetch_size is not implemented", mid));
            }
            let ch = channel(st, n);
            if global {
                ch.prefetch_channel = prefetch_count;
            } else {
                ch.prefetch_consumer = prefetch_count;
            }
            ok(&|_| (), id::BASIC_QOS_OK);
            super::deliver::drain_held(c, st, n);
            Ok(())
        }
        Method::Consume { queue, tag, no_ack, exclusive, no_wait, args } => {
            c.may(n, mid, Perm::Read, Kind::Queue, queue)?;
            consume(c, core, st, (n, mid), (queue, tag), (no_ack, exclusive, no_wait), args)
        }
        Method::Cancel { tag, no_wait } => cancel(c, core, st, n, (tag, no_wait)),
        Method::Get { queue, no_ack } => {
            c.may(n, mid, Perm::Read, Kind::Queue, queue)?;
            get(c, core, st, (n, mid), (queue, no_ack))
        }
        Method::Ack { tag, multiple } => ack(c, st, n, mid, (tag, multiple)),
        Method::Nack { tag, multiple, requeue } => nack(c, core, st, (n, mid), (tag, multiple, requeue)),
        Method::Recover { requeue } => {
            if !requeue {
                return Err(conn_fault(code::NOT_IMPLEMENTED, "basic.recover requeue=false is not implemented", mid));
            }
            let mut ranges: Vec<(u32, u64, u64)> = Vec::new();
            channel(st, n).take_tags(0, true, |cid, q| ranges.push((cid, q, q)));
            nack_all(st, ranges, true, core);
            if mid == id::BASIC_RECOVER {
                ok(&|_| (), id::BASIC_RECOVER_OK);
            }
            super::deliver::drain_held(c, st, n);
            Ok(())
        }
        Method::ConfirmSelect { no_wait } => {
            let ch = channel(st, n);
            if ch.tx.is_some() {
                let text = "PRECONDITION_FAILED - cannot switch from tx to confirm mode";
                return Err(ch_fault(n, code::PRECONDITION_FAILED, text, mid));
            }
            if !ch.confirm {
                ch.confirm = true;
                ch.confirm_base = ch.pub_seq;
            }
            if !no_wait {
                ok(&|_| (), id::CONFIRM_SELECT_OK);
            }
            Ok(())
        }
        Method::TxSelect => super::tx::select(c, st, n, mid),
        Method::TxCommit => super::tx::commit(c, core, st, n, mid),
        Method::TxRollback => super::tx::rollback(c, st, n, mid),
        Method::Other(other) => Err(conn_fault(
            code::NOT_IMPLEMENTED,
            format!("NOT_IMPLEMENTED - method {}.{} is not implemented by ringmq", other.0, other.1),
            other,
        )),
        _ => Err(conn_fault(code::COMMAND_INVALID, format!("method {mid:?} is not valid on a channel"), mid)),
    }
}

/// basic.ack: the tags join the connection's ack ranges, flushed to the
/// owners once per turn.
#[inline]
fn ack(c: &AmqpConn, st: &mut State, n: u16, mid: MethodId, (tag, multiple): (u64, bool)) -> Result<(), Fault> {
    let ch = channel(st, n);
    if ch.tx.is_some() {
        return in_tx(c, st, (n, mid), (tag, multiple), None);
    }
    let mut acks = c.acks.borrow_mut();
    let taken = ch.take_tags(tag, multiple, |cid, q| match acks.last_mut() {
        Some(l) if l.0 == cid && l.2 + 1 == q => l.2 = q,
        _ => acks.push((cid, q, q)),
    });
    drop(acks);
    if taken.is_none() {
        return Err(ch_fault(
            n,
            code::PRECONDITION_FAILED,
            format!("PRECONDITION_FAILED - unknown delivery tag {tag}"),
            mid,
        ));
    }
    super::deliver::drain_held(c, st, n);
    Ok(())
}

/// basic.nack and basic.reject: the tags go back to their owners, to be
/// requeued or dropped.
fn nack(
    c: &AmqpConn,
    core: &Core<'_>,
    st: &mut State,
    (n, mid): (u16, MethodId),
    (tag, multiple, requeue): (u64, bool, bool),
) -> Result<(), Fault> {
    let mut ranges: Vec<(u32, u64, u64)> = Vec::new();
    let ch = channel(st, n);
    if ch.tx.is_some() {
        return in_tx(c, st, (n, mid), (tag, multiple), Some(requeue));
    }
    let taken = ch.take_tags(tag, multiple, |cid, q| match ranges.last_mut() {
        Some(l) if l.0 == cid && l.2 + 1 == q => l.2 = q,
        _ => ranges.push((cid, q, q)),
    });
    if taken.is_none() {
        return Err(ch_fault(
            n,
            code::PRECONDITION_FAILED,
            format!("PRECONDITION_FAILED - unknown delivery tag {tag}"),
            mid,
        ));
    }
    nack_all(st, ranges, requeue, core);
    super::deliver::drain_held(c, st, n);
    Ok(())
}

/// An ack, nack or reject on a transactional channel: held until commit.
fn in_tx(
    c: &AmqpConn,
    st: &mut State,
    (n, mid): (u16, MethodId),
    tags: (u64, bool),
    nack: Option<bool>,
) -> Result<(), Fault> {
    let max = super::tx::limits(c);
    match super::tx::take(channel(st, n), tags, nack, max) {
        Ok(true) => Ok(()),
        Ok(false) => {
            let text = format!("PRECONDITION_FAILED - unknown delivery tag {}", tags.0);
            Err(ch_fault(n, code::PRECONDITION_FAILED, text, mid))
        }
        Err(text) => Err(ch_fault(n, code::PRECONDITION_FAILED, text, mid)),
    }
}

pub(super) fn channel(st: &mut State, n: u16) -> &mut Channel {
    st.channels.get_mut(&n).expect("the channel was checked open")
}

pub(super) fn check_name(n: u16, q: &str, mid: MethodId) -> Result<&str, Fault> {
    if !queue_name_ok(q) {
        return Err(ch_fault(n, code::PRECONDITION_FAILED, format!("bad queue name {q:?}"), mid));
    }
    Ok(q)
}

fn nack_all(st: &State, ranges: Vec<(u32, u64, u64)>, requeue: bool, core: &Core<'_>) {
    for (cid, first, last) in ranges {
        if let Some(k) = st.consumers.get(&cid) {
            let req = Request::Nack { consumer_id: cid, queue: k.queue.clone(), requeue, ranges: vec![(first, last)] };
            core.submit(k.owner, rid(KIND_IGNORE, 0, 0), req);
        }
    }
}

fn declare(
    c: &AmqpConn,
    core: &Core<'_>,
    st: &mut State,
    (n, mid): (u16, MethodId),
    d: QueueDeclare<'_>,
) -> Result<(), Fault> {
    if c.reply_declare(st, n, &d) {
        return Ok(());
    }
    let name = if d.queue.is_empty() {
        if d.passive {
            return Err(ch_fault(n, code::NOT_FOUND, "NOT_FOUND - passive declare needs a queue name", mid));
        }
        let k = st.next_name;
        st.next_name += 1;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        format!("amq.gen-{}.{}.{k}.{nanos:08x}", c.shard.id, c.me().conn_id)
    } else {
        if d.queue.starts_with("amq.") && !d.passive {
            return Err(ch_fault(
                n,
                code::ACCESS_REFUSED,
                format!("ACCESS_REFUSED - queue name '{}' contains reserved prefix 'amq.*'", d.queue),
                mid,
            ));
        }
        check_name(n, d.queue, mid)?.to_string()
    };
    if !d.passive {
        c.may(n, mid, Perm::Configure, Kind::Queue, &name)?;
    }
    // A passive declare only checks existence: RabbitMQ ignores its arguments.
    let args = if d.passive { Ok(QueueArgs::default()) } else { QueueArgs::parse(d.args, &name) };
    let args = args.map_err(|e| {
        if e.unsupported {
            conn_fault(code::NOT_IMPLEMENTED, format!("NOT_IMPLEMENTED - {}", e.message), mid)
        } else {
            ch_fault(n, code::PRECONDITION_FAILED, format!("PRECONDITION_FAILED - {}", e.message), mid)
        }
    })?;
    let qualified = c.q(&name).into_owned();
    let owner = c.shard.owner_of(&qualified);
    let exclusive = d.exclusive && !d.passive;
    let seq = channel(st, n).push_op(OpKind::Declare { queue: name, exclusive, no_wait: d.no_wait });
    let req = Request::Declare {
        durable: d.durable,
        passive: d.passive,
        queue: qualified,
        exclusive,
        auto_delete: d.auto_delete,
        strict: true,
        args: Box::new(args),
    };
    core.submit(owner, rid(KIND_OP, n, seq), req);
    Ok(())
}

/// Gives a channel's consumers back to their queues (unacked messages are
/// requeued) and forgets them. The channel itself stays for the caller.
pub fn release_channel(st: &mut State, n: u16, core: &Core<'_>, acks: &RefCell<Vec<(u32, u64, u64)>>) {
    let Some(ch) = st.channels.get_mut(&n) else { return };
    super::publish::flush_batch(n, ch, core);
    ch.content = None;
    // An open transaction is dropped: its acks' deliveries are requeued
    // with the channel's other unacked ones.
    if let Some(tx) = ch.tx.take() {
        tx.release(core.tx_limits().held);
    }
    ch.held.clear();
    ch.ops.clear();
    ch.outstanding.clear();
    ch.tags.clear();
    ch.unacked = 0;
    ch.reply_to = None;
    let cids = std::mem::take(&mut ch.consumers);
    // Acks already taken from the client go first, so they are not requeued.
    let pending = std::mem::take(&mut *acks.borrow_mut());
    for (cid, first, last) in pending {
        if let Some(k) = st.consumers.get(&cid) {
            let req = Request::Ack { consumer_id: cid, queue: k.queue.clone(), ranges: vec![(first, last)] };
            core.submit(k.owner, rid(KIND_IGNORE, 0, 0), req);
        }
    }
    for cid in cids {
        if let Some(k) = st.consumers.remove(&cid) {
            if k.direct {
                core.forget_reply(cid);
                continue;
            }
            let req = Request::Unsubscribe { consumer_id: cid, queue: k.queue };
            core.submit(k.owner, rid(KIND_IGNORE, n, 0), req);
        }
    }
}
