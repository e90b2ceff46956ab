use super::*;
use crate::protocol::field_table::TableBuilder;
use crate::protocol::props::PropsBuilder;
use bytes::Bytes;

pub(super) const C: ConnRef = ConnRef { shard: 0, conn_id: 1 };
const LIMITS: QueueLimits = QueueLimits::messages(100);

pub(super) fn entry(props: &[u8], body: &str) -> Bytes {
    let mut b = bytes::BytesMut::new();
    crate::protocol::batch::put_entry(&mut b, 0, props, body.as_bytes());
    b.freeze()
}

pub(super) fn msgs(r: std::ops::Range<u32>) -> Vec<Bytes> {
    r.map(|i| entry(&[], &i.to_string())).collect()
}

fn body(m: &Message) -> String {
    body_of(&m.entry)
}

fn body_of(entry: &[u8]) -> String {
    String::from_utf8(crate::protocol::batch::parse_entry(entry).unwrap().body.to_vec()).unwrap()
}

pub(super) fn queue(args: TableBuilder) -> Queue {
    Queue::new("q".into(), false, LIMITS, QueueArgs::parse(&args.build(), "q").unwrap())
}

pub(super) fn plain() -> Queue {
    queue(TableBuilder::new())
}

pub(super) fn publish(q: &mut Queue, e: Vec<Bytes>, now: u64) -> Result<Published, QueueError> {
    q.publish(false, true, now, e.into_iter(), None, |_, _| {})
}

fn collect_at(q: &mut Queue, now: u64) -> Vec<(u32, u64, Vec<String>)> {
    let mut v = Vec::new();
    q.dispatch(
        &mut |_, consumer_id, first_tag, msgs| {
            v.push((consumer_id, first_tag, msgs.map(|d| body_of(d.entry)).collect()));
        },
        now,
    );
    v
}

pub(super) fn collect(q: &mut Queue) -> Vec<(u32, u64, Vec<String>)> {
    collect_at(q, 0)
}

pub(super) fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn dead(q: &mut Queue) -> Vec<(String, Reason)> {
    q.take_dead().into_iter().map(|d| (body(&d.msg), d.reason)).collect()
}

#[test]
fn prefetch_and_fifo() {
    let mut q = plain();
    publish(&mut q, msgs(0..6), 0).unwrap();
    q.subscribe(C, 7, 3).unwrap();
    assert_eq!(collect(&mut q), vec![(7, 1, strs(&["0", "1", "2"]))]);
    assert!(collect(&mut q).is_empty(), "credit exhausted");
    q.ack(C, 7, &[(1, 2)]).unwrap();
    assert_eq!(collect(&mut q), vec![(7, 4, strs(&["3", "4"]))]);
}

#[test]
fn bad_ack_changes_nothing() {
    let mut q = plain();
    publish(&mut q, msgs(0..2), 0).unwrap();
    q.subscribe(C, 1, 10).unwrap();
    collect(&mut q);
    assert_eq!(q.ack(C, 1, &[(1, 1), (5, 5)]).unwrap_err().code, ErrorCode::UnknownDeliveryTag);
    assert_eq!(q.unacked_len(), 2);
    q.ack(C, 1, &[(2, 2)]).unwrap();
    assert_eq!(q.ack(C, 1, &[(2, 2)]).unwrap_err().code, ErrorCode::UnknownDeliveryTag);
    q.ack(C, 1, &[(1, 1)]).unwrap();
    assert_eq!(q.unacked_len(), 0);
}

#[test]
fn close_requeues_in_order_marked_redelivered() {
    let mut q = plain();
    publish(&mut q, msgs(0..3), 0).unwrap();
    q.subscribe(C, 1, 2).unwrap();
    collect(&mut q);
    assert_eq!(q.connection_closed(C), 2);
    let order: Vec<(String, bool)> = std::iter::from_fn(|| q.pop_live(0)).map(|m| (body(&m), m.redelivered)).collect();
    assert_eq!(order, vec![("0".into(), true), ("1".into(), true), ("2".into(), false)]);
}

#[test]
fn round_robin() {
    let mut q = plain();
    q.subscribe(C, 1, 100).unwrap();
    q.subscribe(C, 2, 100).unwrap();
    publish(&mut q, msgs(0..4), 0).unwrap();
    assert_eq!(collect(&mut q), vec![(1, 1, strs(&["0", "2"])), (2, 1, strs(&["1", "3"]))]);
}

#[test]
fn length_limit_refuses_whole_batch() {
    let mut q = Queue::new("q".into(), false, QueueLimits::messages(3), QueueArgs::default());
    publish(&mut q, msgs(0..2), 0).unwrap();
    assert_eq!(publish(&mut q, msgs(0..2), 0).unwrap_err().code, ErrorCode::QueueFull);
    assert_eq!(q.ready_len(), 2);
}

#[test]
fn priorities_highest_first_capped_at_max() {
    let mut q = queue(TableBuilder::new().int("x-max-priority", 5));
    let e: Vec<Bytes> = [(0, "low"), (9, "capped"), (5, "high"), (0, "low2"), (3, "mid")]
        .iter()
        .map(|(p, b)| entry(&PropsBuilder::new().priority(*p).build(), b))
        .collect();
    publish(&mut q, e, 0).unwrap();
    publish(&mut q, vec![entry(&[], "none")], 0).unwrap();
    q.subscribe(C, 1, 100).unwrap();
    assert_eq!(collect(&mut q), vec![(1, 1, strs(&["capped", "high", "mid", "low", "low2", "none"]))]);
}

#[test]
fn ttl_expires_at_the_head_and_zero_ttl_reaches_a_waiting_consumer() {
    let mut q = queue(TableBuilder::new().int("x-message-ttl", 100));
    publish(&mut q, msgs(0..2), 1000).unwrap();
    // Per-message expiration shorter than the queue's, behind the head:
    // it expires only once it is the head (RabbitMQ's rule).
    publish(&mut q, vec![entry(&PropsBuilder::new().expiration_ms(10).build(), "short")], 1050).unwrap();
    assert_eq!(q.next_deadline(), Some(1100));
    q.enforce(1099);
    assert!(dead(&mut q).is_empty());
    q.enforce(1100);
    assert_eq!(
        dead(&mut q),
        vec![("0".into(), Reason::Expired), ("1".into(), Reason::Expired), ("short".into(), Reason::Expired)]
    );
    let mut z = queue(TableBuilder::new().int("x-message-ttl", 0));
    z.subscribe(C, 1, 1).unwrap();
    publish(&mut z, msgs(0..2), 5).unwrap();
    assert_eq!(collect_at(&mut z, 5), vec![(1, 1, strs(&["0"]))]);
    z.enforce(5);
    assert_eq!(dead(&mut z), vec![("1".into(), Reason::Expired)]);
    // Requeued messages keep their deadline.
    z.nack(C, 1, true, &[(1, 1)]).unwrap();
    z.enforce(6);
    assert_eq!(dead(&mut z), vec![("0".into(), Reason::Expired)]);
}

#[test]
fn drop_head_and_reject_publish() {
    let mut q = queue(TableBuilder::new().int("x-max-length", 2));
    publish(&mut q, msgs(0..5), 0).unwrap();
    q.enforce(0);
    assert_eq!(q.ready_len(), 2);
    assert_eq!(
        dead(&mut q),
        vec![("0".into(), Reason::Maxlen), ("1".into(), Reason::Maxlen), ("2".into(), Reason::Maxlen)]
    );
    let mut b = queue(TableBuilder::new().int("x-max-length-bytes", 3));
    publish(&mut b, vec![entry(&[], "ab"), entry(&[], "cd")], 0).unwrap();
    b.enforce(0);
    assert_eq!(dead(&mut b), vec![("ab".into(), Reason::Maxlen)]);

    let mut r = queue(TableBuilder::new().int("x-max-length", 2).str("x-overflow", "reject-publish"));
    assert_eq!(publish(&mut r, msgs(0..3), 0).unwrap(), Published { accepted: 2, rejected: 1 });
    assert_eq!(publish(&mut r, msgs(3..4), 0).unwrap_err().code, ErrorCode::QueueFull);
    assert!(dead(&mut r).is_empty(), "reject-publish drops, no dead-lettering");
    // All or nothing (native): one message over refuses the batch.
    let mut a = queue(TableBuilder::new().int("x-max-length", 2).str("x-overflow", "reject-publish-dlx"));
    assert!(a.publish(false, false, 0, msgs(0..3).into_iter(), None, |_, _| {}).is_err());
    assert_eq!(a.ready_len(), 0);
    assert_eq!(dead(&mut a).len(), 3, "reject-publish-dlx dead-letters what it refuses");
}

#[test]
fn nack_without_requeue_goes_to_the_dead_list() {
    let mut q = plain();
    publish(&mut q, msgs(0..2), 0).unwrap();
    q.subscribe(C, 1, 10).unwrap();
    collect(&mut q);
    q.nack(C, 1, false, &[(2, 2)]).unwrap();
    assert_eq!(dead(&mut q), vec![("1".into(), Reason::Rejected)]);
}

#[test]
fn single_active_consumer_fails_over_in_registration_order() {
    let mut q = queue(TableBuilder::new().bool("x-single-active-consumer", true));
    let d = ConnRef { shard: 0, conn_id: 2 };
    q.subscribe(C, 1, 2).unwrap();
    q.subscribe(d, 2, 10).unwrap();
    publish(&mut q, msgs(0..4), 0).unwrap();
    assert_eq!(collect(&mut q), vec![(1, 1, strs(&["0", "1"]))], "only the first consumer gets messages");
    q.connection_closed(C);
    assert_eq!(collect(&mut q), vec![(2, 1, strs(&["0", "1", "2", "3"]))]);
}

#[test]
fn unused_deadline_only_without_consumers() {
    let mut q = queue(TableBuilder::new().int("x-expires", 500));
    q.touch(100);
    assert_eq!(q.next_deadline(), Some(600));
    q.subscribe(C, 1, 1).unwrap();
    assert_eq!(q.next_deadline(), None);
}

#[test]
fn removals_per_settle_are_capped_and_the_rest_stay_due() {
    let args = QueueArgs::parse(&TableBuilder::new().int("x-message-ttl", 10).build(), "q").unwrap();
    let limits = QueueLimits {
        messages_max: 100,
        removals_max: 3,
        stream_memory_bytes_max: u64::MAX,
        stream_read_ahead_bytes: 1 << 20,
    };
    let mut q = Queue::new("q".into(), false, limits, args);
    publish(&mut q, msgs(0..8), 0).unwrap();
    let mut gone = Vec::new();
    for _ in 0..3 {
        q.enforce(50);
        let batch = dead(&mut q);
        assert!(batch.len() <= 3, "{} removed in one settle", batch.len());
        // Still due: the timer fires again at once.
        if q.ready_len() > 0 {
            assert!(q.next_deadline().is_some_and(|d| d <= 50));
        }
        gone.extend(batch.into_iter().map(|(b, _)| b));
    }
    assert_eq!(gone, (0..8).map(|i| i.to_string()).collect::<Vec<_>>());
    // Dispatch stops at the cap too, and goes on at the next settle.
    publish(&mut q, msgs(8..13), 100).unwrap();
    publish(&mut q, msgs(13..14), 200).unwrap();
    q.subscribe(C, 1, 10).unwrap();
    assert!(collect_at(&mut q, 205).is_empty(), "five expired heads: three removed, then a stop");
    assert_eq!(dead(&mut q).len(), 3);
    assert_eq!(collect_at(&mut q, 205), vec![(1, 1, strs(&["13"]))]);
    assert_eq!(dead(&mut q).len(), 2);
}

#[test]
fn persistent_messages_are_counted_ready_and_unacked() {
    let mut q = plain();
    let persist = |q: &mut Queue, e: Vec<Bytes>| q.publish(true, true, 0, e.into_iter(), None, |_, _| {}).unwrap();
    persist(&mut q, msgs(0..3));
    publish(&mut q, msgs(3..5), 0).unwrap();
    let one = msgs(0..1)[0].len() as u64;
    assert_eq!(q.persistent_totals(), (3, 3 * one));
    // Delivered: still counted (unacked); acked, rejected or requeued
    // and taken again, counted where they are.
    q.subscribe(C, 1, 2).unwrap();
    collect(&mut q);
    assert_eq!(q.persistent_totals(), (3, 3 * one));
    q.ack(C, 1, &[(1, 1)]).unwrap();
    assert_eq!(q.persistent_totals(), (2, 2 * one));
    q.nack(C, 1, false, &[(2, 2)]).unwrap();
    assert_eq!(q.persistent_totals(), (1, one));
    assert_eq!(q.connection_closed(C), 0);
    q.purge();
    assert_eq!(q.persistent_totals(), (0, 0));
}
