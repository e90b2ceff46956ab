//! The requests behind the clients' calls that are the same in every
//! shell (flags from options, names checked).

use crate::client::ExchangeOptions;
use crate::protocol::{op, Cmd};

/// `Declare`'s flags for a (non-)durable queue.
pub fn declare_flags(durable: bool) -> u8 {
    if durable {
        op::DECLARE_DURABLE
    } else {
        0
    }
}

/// An exchange declare.
pub fn exchange_declare<'a>(exchange: &'a str, kind: &'a str, o: ExchangeOptions<'a>) -> Cmd<'a> {
    let flags = if o.durable { op::EXCHANGE_DURABLE } else { 0 }
        | if o.auto_delete { op::EXCHANGE_AUTO_DELETE } else { 0 }
        | if o.internal { op::EXCHANGE_INTERNAL } else { 0 };
    Cmd::ExchangeDeclare { flags, exchange, kind, args: o.args }
}

/// Checks that an exchange exists.
pub fn exchange_passive(exchange: &str) -> Cmd<'_> {
    Cmd::ExchangeDeclare { flags: op::EXCHANGE_PASSIVE, exchange, kind: "", args: &[] }
}

/// Deletes an exchange; `if_unused`: only when nothing is bound to it.
pub fn exchange_delete(exchange: &str, if_unused: bool) -> Cmd<'_> {
    Cmd::ExchangeDelete { flags: if if_unused { op::EXCHANGE_IF_UNUSED } else { 0 }, exchange }
}

/// A bind (or, with `unbind`, an unbind) of `destination` to exchange
/// `source`; `to_exchange`: `destination` is an exchange, else a queue.
pub fn binding<'a>(
    unbind: bool,
    to_exchange: bool,
    source: &'a str,
    destination: &'a str,
    routing_key: &'a str,
    args: &'a [u8],
) -> Cmd<'a> {
    let flags = if to_exchange { op::BIND_TO_EXCHANGE } else { 0 };
    if unbind {
        Cmd::Unbind { flags, source, destination, routing_key, args }
    } else {
        Cmd::Bind { flags, source, destination, routing_key, args }
    }
}

/// A consumer's subscribe: a `StreamSubscribe` when it starts at a stream
/// position, else a `Subscribe`.
pub fn subscribe<'a>(consumer_id: u32, queue: &'a str, o: &crate::client::ConsumerOptions) -> Cmd<'a> {
    match o.stream_at {
        Some(at) => Cmd::StreamSubscribe { consumer_id, prefetch: o.prefetch, queue, at, origin: o.origin },
        None => Cmd::Subscribe { consumer_id, prefetch: o.prefetch, queue, priority: o.priority, origin: o.origin },
    }
}
