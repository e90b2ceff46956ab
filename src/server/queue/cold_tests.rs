//! The ready store with a cold part (`cold.rs`) against a plain deque of
//! `Message`s: the same order, messages and totals whatever the mix of
//! pushes, spills, pops, read-backs, requeues, relocations and purges.
#![allow(clippy::cast_possible_truncation)] // test data is small

use super::cold::{Cold, ITEM_BYTES};
use super::ready::Ready;
use crate::protocol::batch::{entry_body_len, put_entry};
use crate::server::types::{Message, Origin, Spilled};
use crate::storage::Loc;
use bytes::Bytes;
use proptest::prelude::*;
use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Arc;

/// The entry of message `seq` (lengths vary with it).
fn entry(seq: u64) -> Bytes {
    let mut b = bytes::BytesMut::new();
    put_entry(&mut b, 0, &[], &seq.to_le_bytes()[..(seq % 8) as usize]);
    b.freeze()
}

fn loc(seq: u64, len: usize) -> Loc {
    Loc { seg: NonZeroU32::new(1 + (seq % 3) as u32).unwrap(), off: seq as u32 * 64, len: len as u32 }
}

fn origin(k: u8) -> Option<Arc<Origin>> {
    (k > 0).then(|| Arc::new(Origin { exchange: format!("x{k}"), routing_key: "k".into() }))
}

/// As published: its entry in memory.
fn mem(seq: u64, persistent: bool) -> Message {
    Message::new(seq, entry(seq), persistent)
}

/// As recovery restores it past the budget: spilled, redelivered.
fn restored(seq: u64) -> Message {
    let e = entry(seq);
    let spilled = Spilled { loc: loc(seq, e.len()), body_len: entry_body_len(&e) as u32, recovered: true };
    Message { redelivered: true, spilled: Some(spilled), ..Message::new(seq, Bytes::new(), true) }
}

type Key = (u64, Bytes, bool, bool, u8, u64, Option<Origin>, Option<Spilled>);

fn key(m: &Message) -> Key {
    let o = m.origin.as_deref().cloned();
    (m.seq, m.entry.clone(), m.persistent, m.redelivered, m.prio, m.deadline, o, m.spilled)
}

fn all(r: &Ready) -> Vec<Key> {
    let mut v = Vec::new();
    r.for_each(|m| v.push(key(m)));
    v
}

fn hot_len(r: &Ready) -> usize {
    r.hot().count()
}

/// Same messages in the same order, same totals, and hot holds at least
/// `low` messages whenever cold is not empty.
fn check(r: &Ready, model: &VecDeque<Message>, low: usize) {
    assert_eq!(all(r), model.iter().map(key).collect::<Vec<_>>());
    let spilled: Vec<&Message> = model.iter().filter(|m| m.spilled.is_some()).collect();
    assert_eq!(r.len(), model.len());
    assert_eq!(r.bytes(), model.iter().map(|m| m.bytes() as u64).sum::<u64>());
    assert_eq!(r.body_bytes(), model.iter().map(Message::body_bytes).sum::<u64>());
    assert_eq!(r.spilled_len(), spilled.len());
    assert_eq!(r.spilled_bytes(), spilled.iter().map(|m| m.bytes() as u64).sum::<u64>());
    assert_eq!(r.front().map(|m| m.seq), model.front().map(|m| m.seq));
    assert!(r.cold_len() == 0 || hot_len(r) >= low, "hot {} cold {}", hot_len(r), r.cold_len());
}

fn model_spill(model: &mut VecDeque<Message>, seq: u64, l: Loc) -> bool {
    let Some(m) = model.iter_mut().find(|m| m.seq == seq) else { return false };
    if m.spilled.is_some() || !m.persistent || m.entry.len() != l.len as usize {
        return false;
    }
    m.spilled = Some(Spilled { loc: l, body_len: m.body_bytes() as u32, recovered: false });
    m.entry = Bytes::new();
    true
}

fn model_fill(model: &mut VecDeque<Message>, seq: u64, l: Loc) -> bool {
    let Some(m) = model.iter_mut().find(|m| m.seq == seq && m.spilled.is_some_and(|s| s.loc == l)) else {
        return false;
    };
    m.spilled = None;
    m.entry = entry(seq);
    true
}

fn model_relocate(model: &mut VecDeque<Message>, seq: u64, l: Loc) {
    if let Some(s) = model.iter_mut().find(|m| m.seq == seq).and_then(|m| m.spilled.as_mut()) {
        if s.loc.len == l.len {
            s.loc = l;
        }
    }
}

/// Both hold `ms`, pushed in order.
fn both(low: usize, high: usize, ms: impl IntoIterator<Item = Message>) -> (Ready, VecDeque<Message>) {
    let (mut r, mut model) = (Ready::with_marks(1, low, high), VecDeque::new());
    for m in ms {
        r.push_back(m.clone());
        model.push_back(m);
    }
    (r, model)
}

#[test]
fn fifo_across_hot_and_cold_with_gaps_and_origins() {
    let seqs = [0, 1, 2, 3, 5, 6, 7, 10, 11, 12, 13, 20, 21, 22];
    let deadline = |s: u64| if s > 11 { 500 } else { u64::MAX };
    let ms = seqs.iter().map(|&s| Message { origin: origin((s / 6) as u8), deadline: deadline(s), ..restored(s) });
    let (mut r, mut model) = both(2, 4, ms);
    assert_eq!((hot_len(&r), r.cold_len()), (2, 12));
    check(&r, &model, 2);
    while let Some(m) = r.pop_front() {
        assert_eq!(key(&m), key(&model.pop_front().unwrap()));
        check(&r, &model, 2);
    }
    assert!(model.is_empty() && r.cold_capacity_bytes() == 0);
}

#[test]
fn messages_behind_cold_keep_their_place_and_spilling_compacts_them() {
    let (mut r, mut model) = both(2, 4, (0..4).map(restored));
    // Transient, persistent in memory, a priority, another origin, a deadline.
    let extra = [
        mem(4, false),
        mem(5, true),
        Message { prio: 1, ..restored(6) },
        Message { origin: origin(3), ..restored(7) },
        Message { deadline: 99, ..mem(8, true) },
    ];
    for m in extra {
        r.push_back(m.clone());
        model.push_back(m);
    }
    check(&r, &model, 2);
    assert_eq!(r.cold().exceptions(), 4);
    // Spilled as the shard does after a publish: it becomes an item.
    for seq in [8, 5, 4] {
        let l = loc(seq, entry(seq).len());
        assert_eq!(r.spill(seq, l), model_spill(&mut model, seq, l), "seq {seq}");
    }
    assert_eq!(r.cold().exceptions(), 2, "the transient and the priority stay whole");
    check(&r, &model, 2);
    while let Some(m) = r.pop_front() {
        assert_eq!(key(&m), key(&model.pop_front().unwrap()));
        check(&r, &model, 2);
    }
}

#[test]
fn demotion_and_promotion_at_the_water_marks() {
    let (mut r, mut model) = both(4, 8, (0..10).map(|s| mem(s, true)));
    // Newest first, like `spill_over_budget`.
    for seq in (0..10).rev() {
        let l = loc(seq, entry(seq).len());
        assert!(r.spill(seq, l) && model_spill(&mut model, seq, l));
        check(&r, &model, 4);
    }
    assert_eq!((hot_len(&r), r.cold_len()), (8, 2), "demoted down to the high mark only");
    for (hot, cold) in [(7, 2), (6, 2), (5, 2), (4, 2), (4, 1), (4, 0), (3, 0)] {
        model.pop_front();
        r.pop_front();
        assert_eq!((hot_len(&r), r.cold_len()), (hot, cold));
        check(&r, &model, 4);
    }
}

#[test]
fn relocate_reaches_cold_items_and_exceptions() {
    let (mut r, mut model) = both(1, 2, (0..6).map(restored).chain([Message { prio: 1, ..restored(6) }]));
    assert_eq!((r.cold_len(), r.cold().exceptions()), (6, 1));
    for (seq, same) in [(3, true), (4, false), (6, true), (0, true), (9, true)] {
        let len = entry(seq).len() + usize::from(!same);
        let l = Loc { seg: NonZeroU32::new(9).unwrap(), off: 7 + seq as u32, len: len as u32 };
        r.relocate(seq, l);
        model_relocate(&mut model, seq, l);
        check(&r, &model, 1);
    }
    assert_eq!(model[3].spilled.unwrap().loc.segment(), 9);
    assert_eq!(model[4].spilled.unwrap().loc.segment(), 2, "another length: not this message's record");
}

#[test]
fn purge_sees_cold_messages_and_frees_them() {
    let mut q = super::Queue::new("q".into(), true, super::QueueLimits::messages(1 << 20), Default::default());
    let n = super::HOT_LOW as u64 + 1000;
    for seq in 0..n {
        let e = entry(seq);
        q.restore_spilled(seq, loc(seq, e.len()), entry_body_len(&e) as u32, 0, None);
    }
    assert_eq!(q.ready.cold_len(), 1000);
    let (mut seen, mut bytes) = (Vec::new(), 0);
    let purged = q.purge_each(|m| {
        seen.push(m.seq);
        bytes += m.bytes();
        assert!(m.persistent && m.spilled.is_some());
    });
    assert_eq!(purged as u64, n);
    assert_eq!(seen, (0..n).collect::<Vec<_>>());
    assert_eq!(bytes, (0..n).map(|s| entry(s).len()).sum::<usize>());
    assert_eq!((q.ready_len(), q.ready_bytes(), q.spilled_len(), q.ready.cold_capacity_bytes()), (0, 0, 0, 0));
}

#[test]
fn requeue_after_promotion_goes_back_to_the_head() {
    let (mut r, mut model) = both(2, 4, (0..8).map(restored));
    assert_eq!(r.cold_len(), 6);
    for seq in 0..3 {
        let l = loc(seq, entry(seq).len());
        // Read back (hot only), then delivered.
        if r.hot().any(|m| m.seq == seq) {
            assert!(r.fill(seq, l, entry(seq)).is_some() && model_fill(&mut model, seq, l));
        }
        let (a, b) = (r.pop_front().unwrap(), model.pop_front().unwrap());
        assert!(a.spilled.is_none());
        assert_eq!(key(&a), key(&b));
    }
    for seq in (0..3).rev() {
        let m = Message { redelivered: true, ..mem(seq, true) };
        r.insert_by_seq(m.clone());
        model.insert(0, m);
    }
    check(&r, &model, 2);
    assert_eq!(r.pop_front().map(|m| m.seq), Some(0));
}

#[test]
fn a_cold_message_costs_16_bytes() {
    assert_eq!(ITEM_BYTES, 16);
    let mut c = Cold::default();
    let n = 1_000_000u64;
    for seq in 0..n {
        // A gap now and then: a run every 1000 messages.
        c.push_back(restored(seq + seq / 1000));
    }
    let cost = c.capacity_bytes();
    assert!(cost < 20 << 20, "{cost} bytes for {n} messages");
    assert!((cost as u64) < n * 18, "{} bytes a message", cost as u64 / n);
    // Drained, it gives the memory back.
    for _ in 0..n - 100 {
        c.pop_front();
    }
    assert!(c.capacity_bytes() < 1 << 20, "{} bytes left", c.capacity_bytes());
}

#[derive(Debug, Clone)]
enum Op {
    Publish { gap: u8, persistent: bool, origin: u8, ttl: bool },
    Restore { gap: u8, origin: u8, ttl: bool },
    SpillNewest(u8),
    Spill(u16),
    Pop(u8),
    Fill(u8),
    Requeue(u8),
    Relocate(u16, bool),
    Expire(u8, bool),
    Purge,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3u8, any::<bool>(), 0..3u8, proptest::bool::weighted(0.3))
            .prop_map(|(gap, persistent, origin, ttl)| Op::Publish { gap, persistent, origin, ttl }),
        6 => (0..3u8, 0..2u8, proptest::bool::weighted(0.2))
            .prop_map(|(gap, origin, ttl)| Op::Restore { gap, origin, ttl }),
        3 => (1..6u8).prop_map(Op::SpillNewest),
        1 => any::<u16>().prop_map(Op::Spill),
        4 => (1..6u8).prop_map(Op::Pop),
        2 => (1..6u8).prop_map(Op::Fill),
        2 => (1..4u8).prop_map(Op::Requeue),
        1 => (any::<u16>(), any::<bool>()).prop_map(|(i, same)| Op::Relocate(i, same)),
        1 => (0..255u8, any::<bool>()).prop_map(|(at, keep)| Op::Expire(at, keep)),
        1 => Just(Op::Purge),
    ]
}

/// Applies `op` to both; `next` is the next free seq.
fn apply(r: &mut Ready, model: &mut VecDeque<Message>, next: &mut u64, op: Op) {
    let pick = |model: &VecDeque<Message>, i: u16| model.get(usize::from(i) % model.len().max(1)).map(|m| m.seq);
    match op {
        Op::Publish { gap, persistent, origin: o, ttl } => {
            let seq = *next + u64::from(gap);
            *next = seq + 1;
            // Neighbours often share a deadline (one publish batch).
            let deadline = if ttl { 100 + (seq / 4) % 200 } else { u64::MAX };
            let m = Message { deadline, origin: origin(o), ..mem(seq, persistent) };
            r.push_back(m.clone());
            model.push_back(m);
        }
        Op::Restore { gap, origin: o, ttl } => {
            let seq = *next + u64::from(gap);
            *next = seq + 1;
            let deadline = if ttl { 250 } else { u64::MAX };
            let m = Message { deadline, origin: origin(o), ..restored(seq) };
            r.push_back(m.clone());
            model.push_back(m);
        }
        Op::SpillNewest(k) => {
            let seqs: Vec<u64> = model.iter().rev().take(usize::from(k)).map(|m| m.seq).collect();
            for seq in seqs {
                let l = loc(seq, entry(seq).len());
                assert_eq!(r.spill(seq, l), model_spill(model, seq, l));
            }
        }
        Op::Spill(i) => {
            if let Some(seq) = pick(model, i) {
                let l = loc(seq, entry(seq).len());
                assert_eq!(r.spill(seq, l), model_spill(model, seq, l));
            }
        }
        Op::Pop(k) => {
            for _ in 0..k {
                assert_eq!(r.pop_front().as_ref().map(key), model.pop_front().as_ref().map(key));
            }
        }
        Op::Fill(k) => {
            let want: Vec<(u64, Loc)> =
                r.hot().filter_map(|m| Some((m.seq, m.spilled?.loc))).take(usize::from(k)).collect();
            for (seq, l) in want {
                assert!(r.fill(seq, l, entry(seq)).is_some() && model_fill(model, seq, l));
            }
        }
        Op::Requeue(k) => {
            // Delivered messages are in memory: dispatch stops at a spilled head.
            let mut out = Vec::new();
            while out.len() < usize::from(k) && r.front().is_some_and(|m| m.spilled.is_none()) {
                let (a, b) = (r.pop_front(), model.pop_front());
                assert_eq!(a.as_ref().map(key), b.as_ref().map(key));
                out.extend(a);
            }
            for m in out.into_iter().rev() {
                let m = Message { redelivered: true, ..m };
                r.insert_by_seq(m.clone());
                let at = model.partition_point(|x| x.seq < m.seq);
                model.insert(at, m);
            }
        }
        Op::Relocate(i, same) => {
            if let Some(seq) = pick(model, i) {
                let len = entry(seq).len() + usize::from(!same);
                let l = Loc { seg: NonZeroU32::new(5).unwrap(), off: 1000 + seq as u32, len: len as u32 };
                r.relocate(seq, l);
                model_relocate(model, seq, l);
            }
        }
        Op::Expire(at, keep) => {
            let now = 100 + u64::from(at);
            let mut got = Vec::new();
            let stopped = r.expire_heads(now, keep, |m| got.push(key(&m)));
            let (mut want, mut stop) = (Vec::new(), false);
            while let Some(m) = model.front().filter(|m| m.deadline <= now) {
                if keep && m.spilled.is_some() {
                    stop = true;
                    break;
                }
                want.extend(model.pop_front().as_ref().map(key));
            }
            assert_eq!((got, stopped), (want, stop));
        }
        Op::Purge => {
            assert_eq!(all(r), model.iter().map(key).collect::<Vec<_>>());
            r.clear();
            model.clear();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn ready_with_a_cold_part_behaves_like_one_deque(ops in proptest::collection::vec(op(), 1..200)) {
        let (low, high) = (3, 6);
        let (mut r, mut model, mut next) = (Ready::with_marks(1, low, high), VecDeque::new(), 0);
        for op in ops {
            apply(&mut r, &mut model, &mut next, op);
            check(&r, &model, low);
        }
    }
}
