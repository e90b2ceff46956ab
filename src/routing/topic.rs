//! Topic matching: a trie over the words of the binding patterns.
//!
//! A pattern is a list of dot-separated words; `*` stands for exactly one
//! word and `#` for zero or more. Each node of the trie is a pattern prefix
//! and holds the destinations of the patterns that end there. A routing key
//! is matched by walking the trie word by word, following at each node the
//! literal child for the key's word, the `*` child and the `#` child, so the
//! cost grows with the depth of the key (and the number of wildcards on the
//! way), not with the number of bindings.
//!
//! A node keeps its first literal child inline: most nodes of a real
//! namespace (`region.<r>.service.<s>`) have one, and a step to it then
//! costs no hash lookup (nor, often, a cache miss). Further literal
//! children live in one hash map keyed by `(node, word id)`.
//!
//! A word of up to 7 bytes is its own id (its bytes and length packed into
//! a u64), so most key words (`region`, `eu`, `orders`, `created`) need no
//! dictionary lookup; longer words are interned. A key's word ids are
//! computed once, up front; a long key word that no pattern uses gets
//! `UNKNOWN` and can only match `*` or `#`.
//!
//! `#.#` matches exactly what `#` matches, so consecutive `#`s are collapsed
//! when a pattern is inserted: a `#` node never has a `#` child. With two
//! separated `#`s in one pattern (`#.a.#`) a node can be reached at the same
//! key position along several paths; the walk remembers, per `#` node, the
//! lowest position it was entered at, so no (node, position) is explored
//! twice and the cost stays polynomial even for adversarial keys.
//!
//! Words follow RabbitMQ: the empty key (or pattern) has no words at all,
//! and otherwise splitting on `.` keeps empty words (`a..b` is three words).

use super::matcher::DestSet;
use super::route::Sink;
use super::small::SmallVec;
use super::Dest;
use ahash::RandomState;
use std::collections::HashMap;

/// "No node".
const NONE: u32 = u32::MAX;
const ROOT: u32 = 0;

/// See the module comment. Short ids have a length (0..=7) in the top byte,
/// so their top bit is clear; interned ids are `LONG | n`.
type WordId = u64;
const LONG: WordId = 1 << 63;
/// A long key word that no pattern has.
const UNKNOWN: WordId = u64::MAX;

fn short_id(w: &[u8]) -> Option<WordId> {
    if w.len() > 7 {
        return None;
    }
    let mut id = (w.len() as u64) << 56;
    for (i, b) in w.iter().enumerate() {
        id |= u64::from(*b) << (8 * i);
    }
    Some(id)
}

/// The words of a key or pattern. Splitting bytes on `.` is safe for UTF-8
/// (`.` never occurs inside a multi-byte character) and cheaper than
/// `str::split`.
fn words(s: &str) -> impl Iterator<Item = &[u8]> {
    // `take(0)`: the empty string is zero words, not one empty word.
    s.as_bytes().split(|b| *b == b'.').take(if s.is_empty() { 0 } else { usize::MAX })
}

/// One step of a pattern, with consecutive `#`s collapsed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step<'p> {
    Word(&'p [u8]),
    Star,
    Hash,
}

fn steps(pattern: &str) -> Vec<Step<'_>> {
    let mut out: Vec<Step<'_>> = Vec::new();
    for w in words(pattern) {
        let step = match w {
            b"*" => Step::Star,
            b"#" => Step::Hash,
            w => Step::Word(w),
        };
        if !(step == Step::Hash && out.last() == Some(&Step::Hash)) {
            out.push(step);
        }
    }
    out
}

/// A pattern with two or more (separated) `#`s: only these can reach a node
/// twice during one walk, so only they need the walk's memo.
fn multi_hash(steps: &[Step<'_>]) -> bool {
    steps.iter().filter(|s| **s == Step::Hash).count() >= 2
}

struct Node {
    star: u32,
    hash: u32,
    /// The inline literal child (`NONE` if empty) and its word.
    first: u32,
    first_word: WordId,
    /// Literal children in `TopicTrie::edges` (all but `first`).
    mapped: u32,
    /// Destinations of the patterns that end here.
    dests: DestSet,
}

impl Node {
    fn empty() -> Self {
        Node { star: NONE, hash: NONE, first: NONE, first_word: UNKNOWN, mapped: 0, dests: DestSet::default() }
    }

    fn is_unused(&self) -> bool {
        self.star == NONE && self.hash == NONE && self.first == NONE && self.mapped == 0 && self.dests.is_empty()
    }
}

/// An interned long word.
struct Word {
    n: u32,
    /// How many edges carry this word; the word is forgotten at zero.
    edges: u32,
}

pub(crate) struct TopicTrie {
    /// `nodes[0]` is the root; unused slots are listed in `free_nodes`.
    nodes: Vec<Node>,
    free_nodes: Vec<u32>,
    long_words: HashMap<Box<[u8]>, Word, RandomState>,
    free_words: Vec<u32>,
    next_word: u32,
    /// Literal edges other than the inline ones: (parent, word) to child.
    edges: HashMap<(u32, WordId), u32, RandomState>,
    /// Bindings whose pattern has separated `#`s (see `multi_hash`).
    multi_hash: usize,
}

impl TopicTrie {
    pub(crate) fn new() -> Self {
        Self {
            nodes: vec![Node::empty()],
            free_nodes: Vec::new(),
            long_words: HashMap::default(),
            free_words: Vec::new(),
            next_word: 0,
            edges: HashMap::default(),
            multi_hash: 0,
        }
    }

    fn new_node(&mut self) -> u32 {
        match self.free_nodes.pop() {
            Some(n) => n,
            None => {
                self.nodes.push(Node::empty());
                crate::protocol::wire::len32(self.nodes.len() - 1)
            }
        }
    }

    fn node(&self, n: u32) -> &Node {
        &self.nodes[n as usize]
    }

    fn node_mut(&mut self, n: u32) -> &mut Node {
        &mut self.nodes[n as usize]
    }

    /// The id of a word, `UNKNOWN` for a long word no pattern has.
    fn word_id(&self, w: &[u8]) -> WordId {
        short_id(w).unwrap_or_else(|| self.long_words.get(w).map_or(UNKNOWN, |x| LONG | u64::from(x.n)))
    }

    /// The child of `at` for a literal word, created if `create`.
    fn literal_child(&mut self, at: u32, w: &[u8], create: bool) -> u32 {
        let mut id = self.word_id(w);
        if id == UNKNOWN {
            if !create {
                return NONE;
            }
            let n = self.free_words.pop().unwrap_or_else(|| {
                self.next_word += 1;
                self.next_word - 1
            });
            self.long_words.insert(w.into(), Word { n, edges: 0 });
            id = LONG | u64::from(n);
        }
        if let Some(child) = self.find_literal(at, self.node(at), id) {
            return child;
        }
        if !create {
            return NONE;
        }
        let child = self.new_node();
        let node = &mut self.nodes[at as usize];
        if node.first == NONE {
            (node.first, node.first_word) = (child, id);
        } else {
            node.mapped += 1;
            self.edges.insert((at, id), child);
        }
        if let Some(word) = self.long_words.get_mut(w) {
            word.edges += 1;
        }
        child
    }

    /// The literal child of `node` (numbered `at`) for word `id`.
    fn find_literal(&self, at: u32, node: &Node, id: WordId) -> Option<u32> {
        if node.first != NONE && node.first_word == id {
            Some(node.first)
        } else if node.mapped > 0 {
            self.edges.get(&(at, id)).copied()
        } else {
            None
        }
    }

    fn child(&mut self, at: u32, step: Step<'_>, create: bool) -> u32 {
        let existing = match step {
            Step::Word(w) => return self.literal_child(at, w, create),
            Step::Star => self.node(at).star,
            Step::Hash => self.node(at).hash,
        };
        if existing != NONE || !create {
            return existing;
        }
        let child = self.new_node();
        match step {
            Step::Star => self.node_mut(at).star = child,
            _ => self.node_mut(at).hash = child,
        }
        child
    }

    pub(crate) fn insert(&mut self, pattern: &str, dest: &Dest) {
        let steps = steps(pattern);
        let mut at = ROOT;
        for s in &steps {
            at = self.child(at, *s, true);
        }
        self.node_mut(at).dests.add(dest);
        if multi_hash(&steps) {
            self.multi_hash += 1;
        }
    }

    /// Removes one binding of `dest` to `pattern` and prunes the nodes left
    /// unused. False if there was none.
    pub(crate) fn remove(&mut self, pattern: &str, dest: &Dest) -> bool {
        let steps = steps(pattern);
        let mut path = Vec::with_capacity(steps.len() + 1);
        path.push(ROOT);
        let mut at = ROOT;
        for s in &steps {
            at = self.child(at, *s, false);
            if at == NONE {
                return false;
            }
            path.push(at);
        }
        if !self.node_mut(at).dests.remove(dest) {
            return false;
        }
        if multi_hash(&steps) {
            self.multi_hash -= 1;
        }
        // Bottom up: unlink each node nothing uses any more.
        for i in (1..path.len()).rev() {
            let (node, parent) = (path[i], path[i - 1]);
            if !self.node(node).is_unused() {
                break;
            }
            match steps[i - 1] {
                Step::Star => self.node_mut(parent).star = NONE,
                Step::Hash => self.node_mut(parent).hash = NONE,
                Step::Word(w) => self.unlink_literal(parent, w),
            }
            self.free_nodes.push(node);
        }
        true
    }

    fn unlink_literal(&mut self, parent: u32, w: &[u8]) {
        let id = self.word_id(w);
        let node = &mut self.nodes[parent as usize];
        if node.first != NONE && node.first_word == id {
            (node.first, node.first_word) = (NONE, UNKNOWN);
        } else {
            node.mapped -= 1;
            self.edges.remove(&(parent, id));
        }
        if let Some(word) = self.long_words.get_mut(w) {
            word.edges -= 1;
            if word.edges == 0 {
                self.free_words.push(word.n);
                self.long_words.remove(w);
            }
        }
    }

    /// Feeds the destinations of every pattern matching `key` into `sink`
    /// (a destination may come from several nodes: the sink dedups).
    pub(crate) fn route<'a>(&'a self, key: &str, sink: &mut Sink<'a, '_>) {
        if self.node(ROOT).is_unused() {
            return;
        }
        let mut ids: SmallVec<WordId, 16> = SmallVec::new();
        for w in words(key) {
            ids.push(self.word_id(w));
        }
        let mut memo = HashMemo { on: self.multi_hash > 0, entered: SmallVec::new() };
        self.walk(ROOT, ids.as_slice(), 0, &mut memo, sink);
    }

    /// Matches the rest of the key, `key[i..]`, below node `at`.
    fn walk<'a>(&'a self, at: u32, key: &[WordId], i: usize, memo: &mut HashMemo, sink: &mut Sink<'a, '_>) {
        let node = self.node(at);
        if node.hash != NONE {
            // `#` swallows 0..=rest words: carry on below it from each.
            let end = memo.enter(node.hash, i, key.len() + 1);
            for j in i..end {
                self.walk(node.hash, key, j, memo, sink);
            }
        }
        let Some(&word) = key.get(i) else {
            if !node.dests.is_empty() {
                sink.set(&node.dests);
            }
            return;
        };
        if node.star != NONE {
            self.walk(node.star, key, i + 1, memo, sink);
        }
        if word != UNKNOWN {
            if let Some(child) = self.find_literal(at, node, word) {
                self.walk(child, key, i + 1, memo, sink);
            }
        }
    }

    /// Nodes in use, the root included (for tests: pruning leaves 1).
    #[cfg(test)]
    fn live_nodes(&self) -> usize {
        self.nodes.len() - self.free_nodes.len()
    }

    /// Whether every binding's trace is gone (for tests).
    #[cfg(test)]
    pub(crate) fn is_pristine(&self) -> bool {
        self.live_nodes() == 1 && self.long_words.is_empty() && self.edges.is_empty() && self.multi_hash == 0
    }
}

/// Per `#` node, the lowest key position the walk has entered it at: every
/// position from there to the end has been explored below it already.
struct HashMemo {
    on: bool,
    entered: SmallVec<(u32, u32), 16>,
}

impl HashMemo {
    /// Entering `node` at `from`: returns the end of the range of positions
    /// still to explore, `from..end`.
    fn enter(&mut self, node: u32, from: usize, end: usize) -> usize {
        if !self.on {
            return end;
        }
        let from32 = crate::protocol::wire::len32(from);
        for e in self.entered.as_mut_slice() {
            if e.0 == node {
                let low = e.1;
                e.1 = low.min(from32);
                return from.max(low as usize);
            }
        }
        self.entered.push((node, from32));
        end
    }
}
