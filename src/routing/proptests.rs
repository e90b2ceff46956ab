//! Property tests: the topic trie against the definition of `*` and `#`,
//! and whole tables, after random changes, against a brute-force router.

use super::topic::TopicTrie;
use super::topic_tests::{matches, q};
use super::*;
use proptest::prelude::*;

/// The definition of `*` and `#`, by brute force.
fn naive(p: &[&str], k: &[&str]) -> bool {
    match p.split_first() {
        None => k.is_empty(),
        Some((&"#", rest)) => (0..=k.len()).any(|n| naive(rest, &k[n..])),
        Some((&"*", rest)) => !k.is_empty() && naive(rest, &k[1..]),
        Some((w, rest)) => k.first() == Some(w) && naive(rest, &k[1..]),
    }
}

/// RabbitMQ's words: "" is no words at all.
fn split(s: &str) -> Vec<&str> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split('.').collect()
    }
}

fn topic_match(pattern: &str, key: &str) -> bool {
    naive(&split(pattern), &split(key))
}

/// Short words, and words of 8 bytes and more (interned by the trie).
fn pattern_word() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("a"), Just("b"), Just("c"), Just(""), Just("*"), Just("#"), Just("longword"), Just("seven-c")]
}

fn key_word() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("a"), Just("b"), Just("c"), Just(""), Just("d"), Just("longword"), Just("longwore")]
}

fn joined(words: impl Strategy<Value = &'static str>, max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(words, 0..max).prop_map(|w| w.join("."))
}

proptest! {
    #[test]
    fn trie_agrees_with_the_definition(
        patterns in prop::collection::vec(joined(pattern_word(), 6), 1..24),
        keys in prop::collection::vec(joined(key_word(), 7), 1..16),
        removed in prop::collection::vec(any::<bool>(), 24),
    ) {
        let mut t = TopicTrie::new();
        for (i, p) in patterns.iter().enumerate() {
            t.insert(p, &q(i));
        }
        let mut live = vec![true; patterns.len()];
        let expect = |live: &[bool], k: &str| -> Vec<String> {
            let mut v: Vec<String> = (0..patterns.len())
                .filter(|i| live[*i] && topic_match(&patterns[*i], k))
                .map(|i| format!("q{i}"))
                .collect();
            v.sort();
            v
        };
        for k in &keys {
            prop_assert_eq!(matches(&t, k), expect(&live, k), "key {:?}", k);
        }
        for (i, p) in patterns.iter().enumerate() {
            if removed[i] {
                prop_assert!(t.remove(p, &q(i)));
                live[i] = false;
            }
        }
        for k in &keys {
            prop_assert_eq!(matches(&t, k), expect(&live, k), "key {:?} after removals", k);
        }
        for (i, p) in patterns.iter().enumerate() {
            if live[i] {
                prop_assert!(t.remove(p, &q(i)));
            }
        }
        prop_assert!(t.is_pristine());
    }
}

/// Exchanges the random changes use; `amq.topic` exercises the refusals.
const NAMES: [&str; 5] = ["a", "b", "c", "d", "amq.topic"];
const QUEUES: [&str; 3] = ["q1", "q2", "q3"];
const KINDS: [ExchangeKind; 4] =
    [ExchangeKind::Direct, ExchangeKind::Fanout, ExchangeKind::Topic, ExchangeKind::Headers];

fn dest() -> impl Strategy<Value = Dest> {
    prop_oneof![
        (0..QUEUES.len()).prop_map(|i| Dest::Queue(QUEUES[i].into())),
        (0..NAMES.len()).prop_map(|i| Dest::Exchange(NAMES[i].into())),
    ]
}

fn binding() -> impl Strategy<Value = BindingDef> {
    (0..NAMES.len(), dest(), joined(pattern_word(), 4)).prop_map(|(s, dest, key)| BindingDef {
        source: NAMES[s].into(),
        dest,
        key,
        args: bytes::Bytes::new(),
    })
}

fn change() -> impl Strategy<Value = Change> {
    let declare = (0..NAMES.len(), 0..KINDS.len(), prop::option::of(0..NAMES.len()), prop::bool::weighted(0.2));
    prop_oneof![
        3 => declare.prop_map(|(n, k, alt, auto_delete)| {
            let mut d = ExchangeDef::new(NAMES[n], KINDS[k]);
            d.alternate = alt.map(|a| NAMES[a].to_string());
            d.auto_delete = auto_delete;
            Change::DeclareExchange(d)
        }),
        1 => (0..NAMES.len()).prop_map(|n| Change::DeleteExchange(NAMES[n].into())),
        6 => binding().prop_map(Change::Bind),
        2 => binding().prop_map(Change::Unbind),
        1 => (0..QUEUES.len()).prop_map(|n| Change::QueueGone(QUEUES[n].into())),
    ]
}

/// Routing by brute force over `bindings()`: every reached exchange once,
/// its alternate when none of its own bindings matched.
fn reference(t: &RoutingTable, exchange: &str, key: &str) -> Vec<String> {
    let mut reached = vec![exchange.to_string()];
    let mut queues = Vec::new();
    let mut i = 0;
    while let Some(name) = reached.get(i).cloned() {
        i += 1;
        let Some(def) = t.exchange(&name) else { continue };
        let hits: Vec<&BindingDef> = t
            .bindings()
            .filter(|b| b.source == name)
            .filter(|b| match def.kind {
                ExchangeKind::Direct => b.key == key,
                ExchangeKind::Topic => topic_match(&b.key, key),
                // Headers bindings here have no pairs: `all` matches.
                ExchangeKind::Fanout | ExchangeKind::Headers => true,
            })
            .collect();
        let mut next: Vec<String> = hits
            .iter()
            .filter_map(|b| match &b.dest {
                Dest::Queue(q) => {
                    queues.push(q.clone());
                    None
                }
                Dest::Exchange(x) => Some(x.clone()),
            })
            .collect();
        if hits.is_empty() {
            next.extend(def.alternate.clone());
        }
        for x in next {
            if !reached.contains(&x) {
                reached.push(x);
            }
        }
    }
    queues.sort();
    queues.dedup();
    queues
}

fn routed(t: &RoutingTable, exchange: &str, key: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    t.route(exchange, key, None, &mut out).ok()?;
    let mut v: Vec<String> = out.iter().map(|s| s.to_string()).collect();
    v.sort();
    Some(v)
}

proptest! {
    #[test]
    fn tables_route_like_the_reference(
        changes in prop::collection::vec(change(), 1..40),
        keys in prop::collection::vec(joined(key_word(), 4), 1..6),
    ) {
        let mut t = RoutingTable::new();
        for c in &changes {
            let (version, before) = (t.version(), t.snapshot());
            match t.apply(c) {
                Ok(()) => prop_assert_eq!(t.version(), version + 1),
                Err(_) => {
                    prop_assert_eq!(t.version(), version);
                    prop_assert_eq!(&t.snapshot(), &before, "a refused change changed the table");
                }
            }
            t.check_invariants();
        }
        let copy = RoutingTable::from_snapshot(t.version(), &t.snapshot()).expect("a snapshot applies");
        copy.check_invariants();
        for x in NAMES {
            for k in &keys {
                let got = routed(&t, x, k);
                match &got {
                    None => prop_assert!(t.exchange(x).is_none()),
                    // `routed` sorted without dedup: equality also says no duplicates.
                    Some(v) => prop_assert_eq!(v, &reference(&t, x, k), "{} {:?}", x, k),
                }
                prop_assert_eq!(routed(&copy, x, k), got);
            }
        }
    }
}
