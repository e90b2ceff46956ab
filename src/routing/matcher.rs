//! One matcher per exchange, chosen by its kind. The default exchange has
//! its own (it has no bindings: the routing key names the queue).

use super::headers::{HeadersMatcher, MessageHeaders};
use super::route::Sink;
use super::topic::TopicTrie;
use super::{BindingDef, Dest, ExchangeKind, RouteError};
use ahash::RandomState;
use std::collections::HashMap;

/// Destinations with a count of the bindings that lead to each. Several
/// bindings can share a matcher entry (the same queue bound to a topic
/// exchange with `a.#` and `a.#.#`, or with one key and two argument
/// tables), and the entry must stay until the last of them is unbound.
/// Each destination appears once, so one set never yields a duplicate.
#[derive(Debug, Default)]
pub(crate) struct DestSet {
    entries: Vec<(Dest, u32)>,
}

impl DestSet {
    pub(crate) fn add(&mut self, d: &Dest) {
        match self.entries.iter_mut().find(|(e, _)| e == d) {
            Some((_, n)) => *n += 1,
            None => self.entries.push((d.clone(), 1)),
        }
    }

    /// Drops one binding's reference; false if `d` was not there.
    pub(crate) fn remove(&mut self, d: &Dest) -> bool {
        let Some(i) = self.entries.iter().position(|(e, _)| e == d) else { return false };
        self.entries[i].1 -= 1;
        if self.entries[i].1 == 0 {
            self.entries.swap_remove(i);
        }
        true
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Dest> {
        self.entries.iter().map(|(d, _)| d)
    }
}

pub(crate) enum Matcher {
    /// The default exchange "": the routing key is the queue's name.
    Default,
    Direct(HashMap<String, DestSet, RandomState>),
    Fanout(DestSet),
    Topic(TopicTrie),
    Headers(HeadersMatcher),
}

impl Matcher {
    pub(crate) fn new(kind: ExchangeKind) -> Self {
        match kind {
            ExchangeKind::Direct => Matcher::Direct(HashMap::default()),
            ExchangeKind::Fanout => Matcher::Fanout(DestSet::default()),
            ExchangeKind::Topic => Matcher::Topic(TopicTrie::new()),
            ExchangeKind::Headers => Matcher::Headers(HeadersMatcher::default()),
        }
    }

    /// Adds a binding. Fails (changing nothing) only for a headers binding
    /// whose `x-match` is bad.
    pub(crate) fn add(&mut self, b: &BindingDef) -> Result<(), RouteError> {
        match self {
            // The table refuses bindings on "" before it gets here.
            Matcher::Default => return Err(RouteError::AccessRefused("cannot bind to the default exchange".into())),
            Matcher::Direct(map) => map.entry(b.key.clone()).or_default().add(&b.dest),
            Matcher::Fanout(set) => set.add(&b.dest),
            Matcher::Topic(trie) => trie.insert(&b.key, &b.dest),
            Matcher::Headers(h) => h.add(b)?,
        }
        Ok(())
    }

    /// Removes a binding that `add` accepted.
    pub(crate) fn remove(&mut self, b: &BindingDef) {
        match self {
            Matcher::Default => {}
            Matcher::Direct(map) => {
                if let Some(set) = map.get_mut(b.key.as_str()) {
                    set.remove(&b.dest);
                    if set.is_empty() {
                        map.remove(b.key.as_str());
                    }
                }
            }
            Matcher::Fanout(set) => {
                set.remove(&b.dest);
            }
            Matcher::Topic(trie) => {
                trie.remove(&b.key, &b.dest);
            }
            Matcher::Headers(h) => h.remove(b),
        }
    }

    /// Feeds every destination this exchange matches into `sink`.
    pub(crate) fn route<'a>(&'a self, key: &'a str, headers: &mut MessageHeaders<'_>, sink: &mut Sink<'a, '_>) {
        match self {
            Matcher::Default => sink.queue(key),
            Matcher::Direct(map) => {
                if let Some(set) = map.get(key) {
                    sink.set(set);
                }
            }
            Matcher::Fanout(set) => sink.set(set),
            Matcher::Topic(trie) => trie.route(key, sink),
            Matcher::Headers(h) => h.route(headers.get(), sink),
        }
    }
}
