//! The topic trie on its own: wildcards, pruning, the `#` memo. The
//! property test against the definition of `*` and `#` is in `proptests`.

use super::topic::TopicTrie;
use super::Dest;
use crate::routing::route::collect;

pub(crate) fn q(i: usize) -> Dest {
    Dest::Queue(format!("q{i}"))
}

pub(crate) fn matches(t: &TopicTrie, key: &str) -> Vec<String> {
    let mut v: Vec<String> = collect(|sink| t.route(key, sink)).into_iter().map(str::to_string).collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn wildcards() {
    let mut t = TopicTrie::new();
    let pats = ["a.*.c", "a.#", "#", "#.c", "*", "", "a..b", "#.#.c", "a.#.b.#", "eight-ch.seven-c.#"];
    for (i, p) in pats.iter().enumerate() {
        t.insert(p, &q(i));
    }
    assert_eq!(matches(&t, "a.b.c"), ["q0", "q1", "q2", "q3", "q7", "q8"]);
    assert_eq!(matches(&t, ""), ["q2", "q5"]);
    assert_eq!(matches(&t, "a"), ["q1", "q2", "q4"]);
    assert_eq!(matches(&t, "a..b"), ["q1", "q2", "q6", "q8"]);
    assert_eq!(matches(&t, "."), ["q2"]);
    assert_eq!(matches(&t, "c"), ["q2", "q3", "q4", "q7"]);
    // Words of 8 bytes and more are interned, shorter ones are their own id.
    assert_eq!(matches(&t, "eight-ch.seven-c"), ["q2", "q9"]);
    assert_eq!(matches(&t, "eight-cx.seven-c"), ["q2"]);
    assert_eq!(matches(&t, "eight-ch"), ["q2", "q4"]);
}

#[test]
fn unbind_prunes_and_shared_nodes_survive() {
    let mut t = TopicTrie::new();
    t.insert("a.#", &q(0));
    t.insert("a.#.#", &q(0)); // the same node as a.#
    t.insert("a.b.*", &q(1));
    t.insert("long-word.#", &q(2));
    assert!(t.remove("a.#", &q(0)));
    assert_eq!(matches(&t, "a.x"), ["q0"]);
    assert!(t.remove("a.#.#", &q(0)));
    assert!(!t.remove("a.#", &q(0)));
    assert!(!t.remove("a.b.*", &q(0)));
    assert_eq!(matches(&t, "a.b.c"), ["q1"]);
    assert!(t.remove("a.b.*", &q(1)));
    assert_eq!(matches(&t, "long-word"), ["q2"]);
    assert!(t.remove("long-word.#", &q(2)));
    assert!(t.is_pristine());
}

#[test]
fn many_hashes_on_a_long_key_stay_cheap() {
    // Without the memo: some 200^4 / 4! paths, each walked to its end.
    let mut t = TopicTrie::new();
    t.insert("#.a.#.a.#.a.#.a.#.b", &q(0));
    let key = vec!["a"; 200].join(".");
    assert!(matches(&t, &key).is_empty());
    assert_eq!(matches(&t, &format!("{key}.b")), ["q0"]);
}
