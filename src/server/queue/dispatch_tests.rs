//! Consumer priorities (`dispatch.rs`): who gets messages, and the levels
//! kept right whatever the order consumers come and go in.

use super::tests::{collect, msgs, plain, publish, queue, strs, C};
use super::*;
use crate::protocol::field_table::TableBuilder;
use proptest::prelude::*;

const D: ConnRef = ConnRef { shard: 0, conn_id: 2 };

fn subscribe(q: &mut Queue, id: u32, prefetch: u32, priority: i64) {
    q.subscribe_with(C, id, prefetch, false, priority).unwrap();
}

/// The levels describe `consumers` exactly: one per run of equal
/// priorities, highest first, cursors in range.
fn check_levels(q: &Queue) {
    let mut start = 0;
    for l in &q.levels {
        assert!(l.end > start, "empty level {l:?}");
        assert!(l.rr < l.end - start, "cursor out of range {l:?}");
        assert!(q.consumers[start..l.end].iter().all(|c| c.priority == l.priority));
        start = l.end;
    }
    assert_eq!(start, q.consumers.len());
    assert!(q.levels.windows(2).all(|w| w[0].priority > w[1].priority));
}

#[test]
fn the_high_one_gets_all_while_it_has_credit() {
    let mut q = plain();
    subscribe(&mut q, 1, 100, 0);
    subscribe(&mut q, 2, 3, 10);
    publish(&mut q, msgs(0..2), 0).unwrap();
    assert_eq!(collect(&mut q), vec![(2, 1, strs(&["0", "1"]))]);
    // Blocked after one more: the rest go to the low one.
    publish(&mut q, msgs(2..5), 0).unwrap();
    assert_eq!(collect(&mut q), vec![(2, 3, strs(&["2"])), (1, 1, strs(&["3", "4"]))]);
    publish(&mut q, msgs(5..6), 0).unwrap();
    assert_eq!(collect(&mut q), vec![(1, 3, strs(&["5"]))], "high still blocked");
    // An ack unblocks it: it gets the next ones again.
    q.ack(C, 2, &[(1, 2)]).unwrap();
    publish(&mut q, msgs(6..9), 0).unwrap();
    assert_eq!(collect(&mut q), vec![(2, 4, strs(&["6", "7"])), (1, 4, strs(&["8"]))]);
    check_levels(&q);
}

#[test]
fn equal_priorities_round_robin_above_a_lower_one() {
    let mut q = plain();
    subscribe(&mut q, 9, 100, -5);
    subscribe(&mut q, 1, 100, 3);
    subscribe(&mut q, 2, 100, 3);
    publish(&mut q, msgs(0..4), 0).unwrap();
    assert_eq!(collect(&mut q), vec![(1, 1, strs(&["0", "2"])), (2, 1, strs(&["1", "3"]))]);
    // Passes of one, two and three messages: turns continue from the
    // last one served, one message each.
    let mut turns = Vec::new();
    for batch in [4..5, 5..7, 7..10] {
        publish(&mut q, msgs(batch), 0).unwrap();
        for (id, _, got) in collect(&mut q) {
            turns.extend(got.into_iter().map(|b| (b, id)));
        }
    }
    turns.sort_by_key(|(b, _)| b.parse::<u32>().unwrap());
    let ids: Vec<u32> = turns.into_iter().map(|(_, id)| id).collect();
    assert_eq!(ids, vec![1, 2, 1, 2, 1, 2]);
}

#[test]
fn a_consumer_with_no_room_counts_as_blocked() {
    let mut q = plain();
    q.subscribe_with(C, 1, 100, false, 5).unwrap();
    q.subscribe_with(D, 2, 100, false, 0).unwrap();
    publish(&mut q, msgs(0..2), 0).unwrap();
    let mut got = Vec::new();
    let d = q.dispatch_gated(&mut |_, id, _, ms| got.push((id, ms.len())), &|c| if c == C { 0 } else { usize::MAX }, 0);
    assert_eq!(got, vec![(2, 2)]);
    assert!(d.skipped, "the high one is to be dispatched to again once it has room");
}

#[test]
fn cancelled_and_pull_consumers_take_nothing_and_keep_levels_right() {
    let mut q = plain();
    subscribe(&mut q, 1, 100, 1);
    subscribe(&mut q, 2, 100, 0);
    publish(&mut q, msgs(0..3), 0).unwrap();
    // A get makes a pull consumer; it sits below every push consumer.
    assert!(q.get(C, 7, false, 0).unwrap().is_some());
    check_levels(&q);
    assert_eq!(q.consumers.last().map(|c| c.id), Some(7));
    q.cancel(C, 1).unwrap();
    assert_eq!(collect(&mut q), vec![(2, 1, strs(&["1", "2"]))]);
    q.unsubscribe(C, 1).unwrap();
    q.unsubscribe(C, 2).unwrap();
    check_levels(&q);
    assert_eq!(q.levels.len(), 1, "only the pull consumer's level is left");
}

#[test]
fn single_active_consumer_stays_with_the_first_registered() {
    let mut q = queue(TableBuilder::new().bool("x-single-active-consumer", true));
    subscribe(&mut q, 1, 10, 0);
    subscribe(&mut q, 2, 10, 100);
    publish(&mut q, msgs(0..2), 0).unwrap();
    assert_eq!(collect(&mut q), vec![(1, 1, strs(&["0", "1"]))], "a higher priority does not take over");
    q.unsubscribe(C, 1).unwrap();
    assert_eq!(collect(&mut q), vec![(2, 1, strs(&["0", "1"]))]);
}

#[test]
fn removal_keeps_the_cursor_on_its_consumer() {
    let mut q = plain();
    for id in 1..=3 {
        subscribe(&mut q, id, 100, 0);
    }
    publish(&mut q, msgs(0..1), 0).unwrap();
    assert_eq!(collect(&mut q), vec![(1, 1, strs(&["0"]))]);
    // Consumer 2 goes next; removing consumer 1 must not skip it.
    q.ack(C, 1, &[(1, 1)]).unwrap();
    q.unsubscribe(C, 1).unwrap();
    publish(&mut q, msgs(1..2), 0).unwrap();
    assert_eq!(collect(&mut q), vec![(2, 1, strs(&["1"]))]);
}

proptest! {
    /// Any order of subscribes (with some equal priorities), unsubscribes
    /// and closes: the levels match the consumers, which stay ordered by
    /// priority and then by registration.
    #[test]
    fn levels_follow_any_changes(ops in prop::collection::vec((0u8..4, 0u32..12, -2i64..3), 1..60)) {
        let mut q = plain();
        let other = ConnRef { shard: 1, conn_id: 9 };
        for (op, id, priority) in ops {
            let owner = if id % 3 == 0 { other } else { C };
            match op {
                0 | 1 => {
                    let _ = q.subscribe_with(owner, id, 5, false, priority);
                }
                2 => {
                    let _ = q.unsubscribe(owner, id);
                }
                _ => {
                    q.connection_closed(other);
                }
            }
            check_levels(&q);
            let order: Vec<(i64, u64)> = q.consumers.iter().map(|c| (-c.priority, c.registered)).collect();
            prop_assert!(order.windows(2).all(|w| w[0] < w[1]), "{:?}", order);
        }
    }
}
