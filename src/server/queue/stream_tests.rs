use super::tests::{collect, entry, msgs, publish, queue, C};
use super::*;
use crate::protocol::field_table::{TableBuilder, Value};
use crate::protocol::props::{Props, PropsBuilder};
use crate::server::types::{StreamOffset, StreamStart};

const D: ConnRef = ConnRef { shard: 0, conn_id: 2 };

fn stream(args: TableBuilder) -> Queue {
    queue(args.str("x-queue-type", "stream"))
}

fn start(offset: StreamOffset) -> StreamStart {
    StreamStart { offset, no_ack: false, prefetch_set: true }
}

/// The `x-stream-offset` header of each message of each delivery.
fn offsets(q: &mut Queue) -> Vec<(u32, Vec<i64>)> {
    let mut v = Vec::new();
    q.dispatch(
        &mut |_, id, _, ms| {
            let o = ms
                .map(|m| {
                    let e = crate::protocol::batch::parse_entry(m.entry).unwrap();
                    let p = Props::parse(e.props).unwrap();
                    match p.headers.unwrap().get("x-stream-offset") {
                        Some(Value::I64(o)) => *o,
                        other => panic!("no offset header: {other:?}"),
                    }
                })
                .collect();
            v.push((id, o));
        },
        0,
    );
    v
}

#[test]
fn consumers_read_from_their_own_offsets_and_acks_move_credit_only() {
    let mut q = stream(TableBuilder::new());
    publish(&mut q, msgs(0..5), 0).unwrap();
    publish(&mut q, msgs(5..10), 0).unwrap();
    assert_eq!(q.stream_len(), 10);
    q.subscribe_stream(C, 1, 3, start(StreamOffset::First)).unwrap();
    q.subscribe_stream(C, 2, 100, start(StreamOffset::Offset(7))).unwrap();
    q.subscribe_stream(C, 3, 100, start(StreamOffset::Last)).unwrap();
    q.subscribe_stream(C, 4, 100, start(StreamOffset::Next)).unwrap();
    q.subscribe_stream(D, 1, 100, start(StreamOffset::Offset(1 << 40))).unwrap();
    let got = offsets(&mut q);
    assert_eq!(got, vec![(1, vec![0, 1, 2]), (2, vec![7, 8, 9]), (3, vec![5, 6, 7, 8, 9])]);
    // An ack gives credit back; nothing leaves the stream.
    q.ack(C, 1, &[(1, 2)]).unwrap();
    assert_eq!(offsets(&mut q), vec![(1, vec![3, 4])]);
    assert_eq!(q.stream_len(), 10);
    // A nack with requeue neither requeues nor redelivers: credit only.
    q.nack(C, 1, true, &[(3, 5)]).unwrap();
    assert_eq!(offsets(&mut q), vec![(1, vec![5, 6, 7])]);
    assert!(!q.has_dead());
    // `next` and an offset past the end get what comes next.
    publish(&mut q, msgs(10..11), 0).unwrap();
    let got = offsets(&mut q);
    assert!(got.contains(&(4, vec![10])) && got.contains(&(1, vec![10])), "{got:?}");
    // A consumer gone puts nothing back.
    q.unsubscribe(C, 1).unwrap();
    q.connection_closed(D);
    assert_eq!(q.stream_len(), 11);
    assert_eq!(q.ready_len(), 0);
}

#[test]
fn deliveries_share_the_stored_entry() {
    let mut q = stream(TableBuilder::new());
    publish(&mut q, msgs(0..1), 0).unwrap();
    q.subscribe_stream(C, 1, 10, start(StreamOffset::First)).unwrap();
    q.subscribe_stream(C, 2, 10, start(StreamOffset::First)).unwrap();
    let mut ptrs = Vec::new();
    q.dispatch(&mut |_, _, _, ms| ptrs.extend(ms.map(|m| m.entry.as_ptr())), 0);
    assert_eq!(ptrs.len(), 2);
    assert_eq!(ptrs[0], ptrs[1], "one stored copy for every consumer");
}

/// Unacked stream deliveries are tags and offsets: they hold no reference
/// to the stored entry (no reference count per delivery or per ack), and
/// acks still check every tag.
#[test]
fn unacked_stream_deliveries_hold_no_reference() {
    let mut q = stream(TableBuilder::new());
    // Opaque properties: each entry is kept as its own buffer (not in a
    // run shared with the others), so `is_unique` tells who holds it.
    publish(&mut q, (0..3).map(|i| entry(&[0xff], &i.to_string())).collect(), 0).unwrap();
    q.subscribe_stream(C, 1, 10, start(StreamOffset::First)).unwrap();
    q.subscribe_stream(C, 2, 10, start(StreamOffset::First)).unwrap();
    let mut n = 0;
    q.dispatch(&mut |_, _, _, ms| n += ms.count(), 0);
    assert_eq!(n, 6);
    let s = q.stream.as_ref().unwrap();
    assert!(s.msgs.iter().all(|m| m.entry.is_unique()), "only the stream holds the entries");
    q.ack(C, 1, &[(3, 3), (1, 1)]).unwrap();
    assert_eq!(q.ack(C, 1, &[(1, 2)]).unwrap_err().code, ErrorCode::UnknownDeliveryTag);
    q.ack(C, 1, &[(2, 2)]).unwrap();
    q.ack(C, 2, &[(1, 3)]).unwrap();
}

#[test]
fn rabbitmq_refusals() {
    let mut q = stream(TableBuilder::new());
    let e = q.subscribe_stream(C, 1, 10, StreamStart { no_ack: true, ..start(StreamOffset::First) }).unwrap_err();
    assert_eq!(e.code, ErrorCode::StreamUnsupported);
    let e =
        q.subscribe_stream(C, 1, 10, StreamStart { prefetch_set: false, ..start(StreamOffset::First) }).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument);
    assert!(e.message.contains("consumer prefetch count is not set"), "{}", e.message);
    assert_eq!(q.get(C, 9, false, 0).unwrap_err().code, ErrorCode::StreamUnsupported);
    assert_eq!(q.refuse_on_stream("queue.purge").unwrap_err().code, ErrorCode::StreamUnsupported);
    q.subscribe_stream(C, 1, 10, start(StreamOffset::First)).unwrap();
    assert_eq!(q.subscribe_stream(C, 1, 10, start(StreamOffset::First)).unwrap_err().code, ErrorCode::ConsumerExists);
    // Acks of tags never delivered are refused as for any queue.
    assert_eq!(q.ack(C, 1, &[(1, u64::MAX)]).unwrap_err().code, ErrorCode::UnknownDeliveryTag);
    // The hard cap holds a stream without retention.
    let many: Vec<Bytes> = (0..101).map(|i| entry(&[], &i.to_string())).collect();
    assert_eq!(publish(&mut q, many, 0).unwrap_err().code, ErrorCode::QueueFull);
}

#[test]
fn retention_drops_whole_segments_oldest_first() {
    // 10-byte bodies in entries of about 40 bytes with the header; segments
    // of 100 bytes: about 3 entries each.
    let mut q = stream(TableBuilder::new().int("x-max-length-bytes", 300).int("x-stream-max-segment-size-bytes", 100));
    for i in 0..10 {
        publish(&mut q, (0..3).map(|k| entry(&[], &format!("m{:09}", i * 3 + k))).collect(), 0).unwrap();
    }
    let dropped = q.take_stream_dropped();
    assert!(!dropped.is_empty());
    let kept = q.stream_len() as u64;
    assert_eq!(dropped.len() as u64 + kept, 30);
    // Oldest first, contiguous, and what is kept is the rest in order.
    let firsts: Vec<u64> = dropped.iter().map(|d| d.0).collect();
    assert_eq!(firsts, (0..dropped.len() as u64).collect::<Vec<_>>());
    assert!(q.stream_bytes() <= 300 + 100, "{}", q.stream_bytes());
    assert!(q.take_stream_dropped().is_empty());
    // The runs of wholly dropped batches are let go.
    let s = q.stream.as_ref().unwrap();
    let first = s.first_offset().unwrap();
    assert!(s.runs.front().is_some_and(|r| r.first <= first && r.end > first), "first kept {first}");
    // A consumer asking for a dropped offset starts at the first kept.
    q.subscribe_stream(C, 1, 100, start(StreamOffset::Offset(0))).unwrap();
    let got = offsets(&mut q);
    assert_eq!(got[0].1.first().copied(), Some(i64::try_from(dropped.len()).unwrap()));
    assert_eq!(got[0].1.len() as u64, kept);
}

#[test]
fn age_retention_and_timestamps() {
    let mut q = stream(TableBuilder::new().str("x-max-age", "1s").int("x-stream-max-segment-size-bytes", 1));
    publish(&mut q, msgs(0..2), 0).unwrap();
    // Nothing is a second old yet: every segment but the last stays.
    assert_eq!(q.stream_len(), 2);
    assert!(q.take_stream_dropped().is_empty());
    // A timestamp in the future starts at the end; one in the past at the start.
    q.subscribe_stream(C, 1, 10, start(StreamOffset::Timestamp(u64::MAX))).unwrap();
    q.subscribe_stream(C, 2, 10, start(StreamOffset::Timestamp(0))).unwrap();
    assert_eq!(offsets(&mut q), vec![(2, vec![0, 1])]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    publish(&mut q, msgs(2..3), 0).unwrap();
    assert_eq!(q.take_stream_dropped().iter().map(|d| d.0).collect::<Vec<_>>(), vec![0, 1]);
    assert_eq!(q.stream_len(), 1);
}

#[test]
fn the_offset_header_joins_existing_headers_and_opaque_props_stay() {
    let mut t = crate::protocol::field_table::Table::default();
    t.set("k", Value::str("v"));
    let props = PropsBuilder::new().headers(t).message_id("id").build();
    let e = entry(&props, "body");
    let marked = with_offset_header(&e, 42);
    let parsed = crate::protocol::batch::parse_entry(&marked).unwrap();
    assert_eq!(parsed.body, b"body");
    let p = Props::parse(parsed.props).unwrap();
    let h = p.headers.clone().unwrap();
    assert_eq!(h.get("k").and_then(Value::as_str), Some("v"));
    assert_eq!(h.get("x-stream-offset"), Some(&Value::I64(42)));
    assert_eq!(p.short(crate::protocol::props::MESSAGE_ID), Some(&b"id"[..]));
    // No properties at all: a header is added.
    let bare = with_offset_header(&entry(&[], "b"), 1);
    assert!(Props::parse(crate::protocol::batch::parse_entry(&bare).unwrap().props).unwrap().headers.is_some());
    // Properties that are not AMQP's are left as they are.
    let opaque = entry(&[0xff], "b");
    assert_eq!(with_offset_header(&opaque, 1), opaque);
    // A classic queue is untouched by all this.
    let mut c = queue(TableBuilder::new());
    publish(&mut c, msgs(0..1), 0).unwrap();
    c.subscribe(C, 1, 10).unwrap();
    assert_eq!(collect(&mut c).len(), 1);
}

/// Past `stream_memory_bytes_max`, the oldest entries keep only their
/// place in the log; a consumer behind the window asks for a read, gets
/// one at a time, and is served from its read-ahead in order; retention
/// and a closed consumer leave the counts right.
#[test]
fn a_stream_past_its_window_is_read_from_the_log() {
    let mut q = stream(TableBuilder::new());
    q.limits.stream_memory_bytes_max = 200;
    let mut stored = Vec::new();
    q.publish(false, true, 0, msgs(0..10).into_iter(), None, |seq, e| stored.push((seq, e.clone()))).unwrap();
    let locs: Vec<(u64, crate::storage::Loc)> =
        stored.iter().map(|(seq, e)| (*seq, crate::storage::Loc::new(1, seq * 4096, e.len()).unwrap())).collect();
    q.stream_locate(&locs);
    let one = stored[0].1.len() as u64;
    assert!(q.stream_mem_bytes() <= 200 && q.stream_mem_bytes() > 200 - one, "{}", q.stream_mem_bytes());
    let cold = usize::try_from(10 - q.stream_mem_bytes() / one).unwrap();
    assert!(cold > 0);
    q.subscribe_stream(C, 1, 100, start(StreamOffset::First)).unwrap();
    // The head is on disk: nothing yet, a read asked for.
    assert_eq!(offsets(&mut q), vec![]);
    assert_eq!(q.take_stream_reads(), vec![(C, 1)]);
    let plan = q.stream_read_plan(C, 1, 1 << 20).unwrap();
    assert_eq!(plan, locs[..cold].to_vec(), "the records on disk, up to the first in memory");
    assert_eq!(q.stream_read_plan(C, 1, 1 << 20), None, "one read at a time");
    // A small read-ahead reads less (one record past the limit at most).
    let entries: Vec<Bytes> = stored[..cold].iter().map(|(_, e)| e.clone()).collect();
    q.stream_fill(C, 1, &plan, Some(entries));
    assert_eq!(q.stream_mem_bytes(), 200 - 200 % one + cold as u64 * one);
    assert_eq!(offsets(&mut q), vec![(1, (0..10).collect())]);
    assert_eq!(q.stream_mem_bytes(), 200 - 200 % one, "the read-ahead is delivered");
    // A failed read: asked again at the next dispatch.
    q.subscribe_stream(C, 2, 2, start(StreamOffset::First)).unwrap();
    assert_eq!(offsets(&mut q), vec![]);
    assert_eq!(q.take_stream_reads(), vec![(C, 2)]);
    let plan = q.stream_read_plan(C, 2, one).unwrap();
    assert_eq!(plan.len(), 1, "bytes_max bounds a read");
    q.stream_fill(C, 2, &plan, None);
    assert_eq!(offsets(&mut q), vec![]);
    assert_eq!(q.take_stream_reads(), vec![(C, 2)]);
    // Entries not from where the message is (now): dropped.
    let plan = q.stream_read_plan(C, 2, 1 << 20).unwrap();
    let elsewhere: Vec<(u64, crate::storage::Loc)> = plan
        .iter()
        .map(|&(o, l)| (o, crate::storage::Loc::new(2, u64::from(l.off), l.len as usize).unwrap()))
        .collect();
    q.stream_fill(C, 2, &elsewhere, Some(vec![stored[0].1.clone()]));
    assert_eq!(q.stream_mem_bytes(), 200 - 200 % one);
    // A consumer gone: its read is dropped when it comes back.
    let plan = q.stream_read_plan(C, 2, 1 << 20).unwrap();
    q.unsubscribe(C, 2).unwrap();
    q.stream_fill(C, 2, &plan, Some(vec![stored[0].1.clone()]));
    assert_eq!(q.stream_mem_bytes(), 200 - 200 % one);
}

/// The entries of one publish batch lie back to back in one buffer (its
/// run), which deliveries carry so a connection can send many as one
/// slice; an entry kept as it came is not in it; the run is let go once
/// none of its entries is in memory.
#[test]
fn a_publish_batch_is_stored_as_one_run() {
    let mut q = stream(TableBuilder::new());
    let mut stored = Vec::new();
    let mut batch = msgs(0..5);
    batch.insert(2, entry(&[0xff], "opaque"));
    q.publish(false, true, 0, batch.into_iter(), None, |seq, e| stored.push((seq, e.clone()))).unwrap();
    q.publish(false, true, 0, msgs(10..14).into_iter(), None, |seq, e| stored.push((seq, e.clone()))).unwrap();
    assert_eq!(q.stream.as_ref().unwrap().runs.len(), 2);
    q.subscribe_stream(C, 1, 100, start(StreamOffset::First)).unwrap();
    let mut got: Vec<(usize, usize, Option<usize>, usize)> = Vec::new();
    q.dispatch(
        &mut |_, _, _, ms| {
            got.extend(ms.map(|m| {
                (
                    m.entry.as_ptr() as usize,
                    m.entry.len(),
                    m.run.map(|r| r.as_ptr() as usize),
                    m.run.map_or(0, |r| r.len()),
                )
            }))
        },
        0,
    );
    assert_eq!(got.len(), 10);
    let (run1, run2) = (got[0].2.unwrap(), got[6].2.unwrap());
    assert_ne!(run1, run2);
    let inside = |(p, len, run, run_len): (usize, usize, Option<usize>, usize)| {
        run.is_some_and(|r| p >= r && p + len <= r + run_len)
    };
    for (i, &d) in got.iter().enumerate() {
        assert_eq!(inside(d), i != 2, "entry {i}: only the opaque one is outside its batch's run");
    }
    // Back to back, in offset order, from the first byte of the run.
    assert_eq!(got[0].0, run1);
    assert_eq!(got[0].0 + got[0].1, got[1].0);
    assert_eq!(got[3].0 + got[3].1, got[4].0);
    assert_eq!(got[1].0 + got[1].1, got[3].0, "the opaque entry takes no room in the run");
    assert_eq!(got[9].0 + got[9].1, run2 + got[9].3, "the run is exactly its entries");
    // What the log stores is what is delivered.
    assert_eq!(stored[1].1.as_ptr() as usize, got[1].0);
    // Demoted to the log: the first batch's run goes once all of it is out
    // of memory, the second's stays while any of its entries is in.
    let one = got[9].1 as u64;
    q.limits.stream_memory_bytes_max = 2 * one;
    let locs: Vec<(u64, crate::storage::Loc)> =
        stored.iter().map(|(seq, e)| (*seq, crate::storage::Loc::new(1, seq * 4096, e.len()).unwrap())).collect();
    q.stream_locate(&locs);
    let s = q.stream.as_ref().unwrap();
    assert_eq!(s.runs.len(), 1);
    assert_eq!(s.runs[0].first, 6);
    q.limits.stream_memory_bytes_max = 0;
    q.stream_locate(&[]);
    assert!(q.stream.as_ref().unwrap().runs.is_empty());
}
