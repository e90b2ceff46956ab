//! Encoding what goes back to a native client: replies and deliveries,
//! straight from the queue's stored entries into the connection's outbox.

use crate::protocol::{self, BatchWriter, Cmd, Entry, ErrorCode, Frame, ENTRY_REDELIVERED};
use crate::rt::outbox::OutBuf;
use crate::server::types::{Origin, Reply};
use bytes::{BufMut, Bytes, BytesMut};

/// Entries of at least this many bytes are queued by reference (sent from
/// where they are stored, no copy into the outbox) when the outbox sends
/// vectored. Below it a copy costs less than what a reference costs: a
/// reference count taken and dropped, and one more slice for the kernel
/// to walk.
pub const BY_REF_BYTES_MIN: usize = 512;

/// How deliveries are cut into frames.
pub struct DeliverLimits {
    pub count_max: usize,
    pub frame_bytes_max: usize,
}

/// Appends Deliver frames, each within the message count and frame size
/// limits (a single message always fits: message_bytes_max is validated
/// to leave room for framing). Entries of [`BY_REF_BYTES_MIN`] or more go
/// by reference when `out` takes references: the frame is its header in
/// the outbox's buffer followed by the entries as stored (an entry whose
/// redelivered flag must change gets its flags byte written and the rest
/// referenced). Entries given with the buffer they lie in (a stream's
/// publish batch, `run`) that follow each other there, flags as stored,
/// go as one slice of it: one reference for the lot, by reference once
/// the lot reaches [`BY_REF_BYTES_MIN`] whatever each entry's size.
pub(super) fn encode_deliveries<'a>(
    out: &mut OutBuf<'_>,
    limits: &DeliverLimits,
    consumer_id: u32,
    first_tag: u64,
    msgs: impl Iterator<Item = (bool, &'a Bytes, Option<&'a Bytes>)>,
) {
    // The open frame, and where it starts in what `out` will send.
    let mut w: Option<(BatchWriter, usize)> = None;
    // Entries of the open frame not yet put into `out`: `run[from..to]`.
    let mut pending: Option<(&Bytes, usize, usize)> = None;
    for (tag, (redelivered, entry, run)) in (first_tag..).zip(msgs) {
        if let Some((open, at)) = &w {
            let len = out.len() + pending.map_or(0, |(_, from, to)| to - from) - at;
            if open.count() as usize >= limits.count_max || len + entry.len() > limits.frame_bytes_max {
                put_pending(out, &mut pending);
                if let Some((done, at)) = w.take() {
                    let len = out.len() - at;
                    done.finish_sized(out.buf, len);
                }
            }
        }
        let (writer, _) = w.get_or_insert_with(|| {
            let at = out.len();
            (BatchWriter::begin_deliver(out.buf, consumer_id, tag), at)
        });
        let flags = (entry[0] & !ENTRY_REDELIVERED) | if redelivered { ENTRY_REDELIVERED } else { 0 };
        if let Some((run, at)) = run.filter(|_| flags == entry[0]).and_then(|r| Some((r, place_in(r, entry)?))) {
            match &mut pending {
                Some((p, _, to)) if std::ptr::eq(*p, run) && *to == at => *to += entry.len(),
                _ => {
                    put_pending(out, &mut pending);
                    pending = Some((run, at, at + entry.len()));
                }
            }
            writer.count_one();
            continue;
        }
        put_pending(out, &mut pending);
        if entry.len() < BY_REF_BYTES_MIN {
            writer.push_raw_entry(out.buf, redelivered, entry);
            continue;
        }
        if flags == entry[0] {
            out.put_ref(entry.clone());
        } else {
            out.buf.put_u8(flags);
            out.put_ref(entry.slice(1..));
        }
        writer.count_one();
    }
    put_pending(out, &mut pending);
    if let Some((done, at)) = w {
        let len = out.len() - at;
        done.finish_sized(out.buf, len);
    }
}

/// Where `entry` lies in `run`, when it is a slice of it.
fn place_in(run: &Bytes, entry: &Bytes) -> Option<usize> {
    let at = (entry.as_ptr() as usize).checked_sub(run.as_ptr() as usize)?;
    (at.checked_add(entry.len())? <= run.len()).then_some(at)
}

/// Puts the entries gathered from one run into `out`: by reference as one
/// slice of the run, or copied when they come to less than
/// [`BY_REF_BYTES_MIN`].
fn put_pending(out: &mut OutBuf<'_>, pending: &mut Option<(&Bytes, usize, usize)>) {
    let Some((run, from, to)) = pending.take() else { return };
    if to - from < BY_REF_BYTES_MIN {
        out.buf.extend_from_slice(&run[from..to]);
    } else {
        out.put_ref(run.slice(from..to));
    }
}

/// [`encode_deliveries`] for a consumer that asked for exchange and
/// routing key (`SUBSCRIBE_ORIGIN`): each frame carries them once, and a
/// new frame starts where they change (messages of one publish share
/// them, so runs are long). No origin: the default exchange, routed by
/// the queue's name.
pub(super) fn encode_deliveries_from<'a>(
    buf: &mut BytesMut,
    limits: &DeliverLimits,
    consumer_id: u32,
    first_tag: u64,
    queue: &str,
    msgs: impl Iterator<Item = (bool, &'a [u8], Option<&'a Origin>)>,
) {
    let same = |a: Option<&Origin>, b: Option<&Origin>| match (a, b) {
        (Some(a), Some(b)) => std::ptr::eq(a, b) || a == b,
        (None, None) => true,
        _ => false,
    };
    let mut w: Option<(BatchWriter, Option<&Origin>)> = None;
    for (tag, (redelivered, entry, origin)) in (first_tag..).zip(msgs) {
        if let Some((open, o)) = &w {
            if !same(*o, origin)
                || open.count() as usize >= limits.count_max
                || open.frame_len(buf) + entry.len() > limits.frame_bytes_max
            {
                if let Some((done, _)) = w.take() {
                    done.finish(buf);
                }
            }
        }
        let (writer, _) = w.get_or_insert_with(|| {
            let (exchange, key) = origin.map_or(("", queue), |o| (o.exchange.as_str(), o.routing_key.as_str()));
            (BatchWriter::begin_deliver_from(buf, consumer_id, tag, exchange, key), origin)
        });
        writer.push_raw_entry(buf, redelivered, entry);
    }
    if let Some((done, _)) = w {
        done.finish(buf);
    }
}

/// Appends the native encoding of a reply.
pub fn encode_reply(buf: &mut BytesMut, limits: &DeliverLimits, reply: &Reply) {
    match reply {
        Reply::Deliver { consumer_id, first_tag, msgs, .. } => encode_deliveries(
            &mut OutBuf::copying(buf),
            limits,
            *consumer_id,
            *first_tag,
            msgs.iter().map(|m| (m.redelivered, &m.entry, None)),
        ),
        Reply::Ok { request_id, value } => frame(buf, *request_id, Cmd::Ok { value: *value }),
        Reply::Error { request_id, code, message } => {
            frame(buf, *request_id, Cmd::Error { fatal: code.is_fatal(), code: code.as_u16(), message: clip(message) })
        }
        Reply::Confirm { request_id, count } => frame(buf, *request_id, Cmd::Confirm { count: *count }),
        Reply::GetOk { request_id, consumer_id, tag, remaining, msg } => {
            // Stored entries were validated on the way in.
            let Ok(stored) = protocol::batch::parse_entry(&msg.entry) else {
                tracing::error!("stored entry failed to parse (bug)");
                return;
            };
            let flags = if msg.redelivered { protocol::ENTRY_REDELIVERED } else { 0 };
            let entry = Entry { flags, ..stored };
            frame(buf, *request_id, Cmd::GetOk { consumer_id: *consumer_id, tag: *tag, remaining: *remaining, entry });
        }
        Reply::GetEmpty { request_id } => frame(buf, *request_id, Cmd::GetEmpty),
        Reply::ConsumerTimeout { consumer_id, message, .. } => frame(
            buf,
            0,
            Cmd::ConsumerCancelled {
                consumer_id: *consumer_id,
                code: ErrorCode::ConsumerTimeout.as_u16(),
                message: clip(message),
            },
        ),
        // The queue went (deleted, or its node is out of reach): nothing
        // more comes for the consumer.
        Reply::ConsumerGone { consumer_id } => frame(
            buf,
            0,
            Cmd::ConsumerCancelled {
                consumer_id: *consumer_id,
                code: ErrorCode::QueueNotFound.as_u16(),
                message: "the queue was deleted, or its node is out of reach",
            },
        ),
        // Handled by the connection (it stops reading publishes).
        Reply::PublishPaused { .. } | Reply::PublishResumed { .. } => {}
        // Transactions are AMQP's: a native connection never starts one.
        Reply::TxCommitted { .. } => {}
        Reply::AdminOk { request_id, json } => frame(buf, *request_id, Cmd::AdminOk { json }),
    }
}

pub(super) fn frame(buf: &mut BytesMut, request_id: u64, cmd: Cmd<'_>) {
    Frame { request_id, cmd }.encode(buf);
}

/// Error texts are bounded so an error frame always fits.
pub(super) fn clip(s: &str) -> &str {
    let mut end = s.len().min(1024);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
#[path = "encode_tests.rs"]
mod tests;
