//! What a frame from the broker means to a connection, decided once for
//! every shell: [`classify`] turns it into an [`Incoming`] the shell acts
//! on (complete a waiter, hand deliveries to a consumer, answer a ping).

use super::delivery::{Delivery, Origin};
use super::routes::OwnedMap;
use crate::client::{ClientError, Result, ServerInfo};
use crate::protocol::{Cmd, DeliverOrigin, Entries, Frame};
use bytes::Bytes;
use std::sync::Arc;

/// A reply as the waiting request sees it.
#[derive(Debug, Clone)]
pub enum Response {
    /// Done; the value is the command's result (a count, an id), 0 if none.
    Ok(u64),
    /// This many publishes of the batch confirmed.
    Confirm(u32),
    /// A `get`'s message, or `None` when the queue was empty.
    Get(Option<Delivery>),
    /// The cluster map (`MapGet`'s answer), its addresses resolved.
    Map(OwnedMap),
    /// A Subscribe to the direct reply-to pseudo-queue: the generated name.
    ReplyTo(String),
}

/// A frame from the broker, as a connection acts on it.
#[derive(Debug)]
pub enum Incoming<'a> {
    /// The answer to request `rid`.
    Reply(u64, Result<Response>),
    /// Deliveries for a consumer, tags counting up from `first_tag`.
    Deliver {
        /// The consumer they are for.
        consumer_id: u32,
        /// The first delivery's tag.
        first_tag: u64,
        /// For consumers that asked (`SUBSCRIBE_ORIGIN`).
        origin: Option<DeliverOrigin<'a>>,
        /// The messages, borrowed from the read buffer.
        entries: Entries<'a>,
    },
    /// The broker ended a consumer (its queue deleted, ...).
    Cancelled {
        /// The consumer ended.
        consumer_id: u32,
        /// Why, as the broker said it.
        error: ClientError,
    },
    /// Answer with a `Pong` of the same request id.
    Ping(u64),
    /// A beat, or nothing this client acts on.
    Nothing,
    /// The broker stopped reading this connection (a resource alarm).
    Blocked(String),
    /// The alarm cleared: the broker reads this connection again.
    Unblocked,
    /// The cluster map moved: fetch it again before the next lookup.
    MapChanged(u32),
}

/// Classifies frame `f`, whose bytes lie in `chunk`. An error ends the
/// connection: a fatal broker error, an error for no request, a command a
/// broker never sends a client.
#[inline]
pub fn classify<'a>(chunk: &Bytes, f: Frame<'a>, info: &ServerInfo) -> Result<Incoming<'a>> {
    let rid = f.request_id;
    Ok(match f.cmd {
        Cmd::Deliver { consumer_id, first_tag, origin, entries } => {
            Incoming::Deliver { consumer_id, first_tag, origin, entries }
        }
        Cmd::Confirm { count } => Incoming::Reply(rid, Ok(Response::Confirm(count))),
        Cmd::Ok { value } => Incoming::Reply(rid, Ok(Response::Ok(value))),
        Cmd::GetEmpty => Incoming::Reply(rid, Ok(Response::Get(None))),
        Cmd::ReplyTo { name, .. } => Incoming::Reply(rid, Ok(Response::ReplyTo(name.to_string()))),
        Cmd::GetOk { consumer_id, tag, entry, .. } => {
            Incoming::Reply(rid, Ok(Response::Get(Some(Delivery::from_entry(chunk, consumer_id, tag, &entry, None)))))
        }
        Cmd::Error { fatal, code, message } => {
            let e = ClientError::Server { code, message: message.into() };
            if fatal || rid == 0 {
                return Err(e);
            }
            Incoming::Reply(rid, Err(e))
        }
        Cmd::ConsumerCancelled { consumer_id, code, message } => {
            tracing::warn!(consumer_id, code, "the broker cancelled a consumer: {message}");
            Incoming::Cancelled { consumer_id, error: ClientError::Server { code, message: message.into() } }
        }
        Cmd::Ping => Incoming::Ping(rid),
        Cmd::Pong => Incoming::Nothing,
        Cmd::Blocked { reason } => {
            tracing::debug!("the broker blocked this connection: {reason}");
            Incoming::Blocked(reason.to_string())
        }
        Cmd::Unblocked => Incoming::Unblocked,
        Cmd::Map(m) => map(rid, &m, info),
        Cmd::MapChanged { version } => map_changed(version),
        other => return Err(ClientError::Protocol(format!("the broker sent {}", other.name()))),
    })
}

/// The deliveries of a `Deliver` frame, sliced out of `chunk`; with an
/// origin, they share one copy of it.
pub fn deliveries<'a>(
    chunk: &'a Bytes,
    consumer_id: u32,
    first_tag: u64,
    origin: Option<DeliverOrigin<'_>>,
    entries: Entries<'a>,
) -> impl Iterator<Item = Delivery> + 'a {
    let origin: Option<Arc<Origin>> = origin.as_ref().map(Origin::from_wire);
    entries
        .iter()
        .enumerate()
        .map(move |(i, e)| Delivery::from_entry(chunk, consumer_id, first_tag + i as u64, &e, origin.clone()))
}

/// Rare (once a connection, and when the map moves): out of `classify`'s
/// hot body, which every delivery runs through.
#[cold]
#[inline(never)]
fn map<'a>(rid: u64, m: &crate::protocol::cluster_map::ClusterMap<'_>, info: &ServerInfo) -> Incoming<'a> {
    Incoming::Reply(rid, OwnedMap::from_wire(m, info).map(Response::Map))
}

#[cold]
#[inline(never)]
fn map_changed<'a>(version: u32) -> Incoming<'a> {
    tracing::debug!(version, "the cluster map changed");
    Incoming::MapChanged(version)
}
