//! What a client declared, for recovery to declare again after a redial
//! (docs/client-recovery.md, "Recovery"): queues with their flags and arguments,
//! exchanges, bindings, in the order they were made, and consumers by id.
//! A delete removes the record (and the bindings that went with it on the
//! broker). Bounded: each kind holds at most `max` records, and one more
//! is refused with [`ClientError::RecoveryLimit`] before it is sent.

use crate::client::{ClientError, ConsumerOptions, ExchangeOptions, Result};
use crate::protocol::{op, Cmd};
use std::collections::BTreeMap;

/// One declaration to make again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A queue declared by this client.
    Queue {
        /// Its name.
        name: String,
        /// Declared durable.
        durable: bool,
        /// Its arguments, encoded as declared.
        args: Vec<u8>,
    },
    /// An exchange declared by this client.
    Exchange {
        /// Its name.
        name: String,
        /// Its kind (`direct`, `fanout`, `topic`, `headers`).
        kind: String,
        /// The declare flags (`op::EXCHANGE_*`).
        flags: u8,
        /// Its arguments, encoded as declared.
        args: Vec<u8>,
    },
    /// A binding made by this client.
    Binding(Binding),
}

/// A binding of a queue (or, `to_exchange`, an exchange) to `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The destination is an exchange, not a queue.
    pub to_exchange: bool,
    /// The exchange bound from.
    pub source: String,
    /// The queue (or exchange) bound to.
    pub destination: String,
    /// The binding key.
    pub routing_key: String,
    /// The binding's arguments (headers exchanges), encoded.
    pub args: Vec<u8>,
}

impl Binding {
    /// A binding as the recovery record keeps it.
    #[cfg(any(feature = "glommio", feature = "tokio"))]
    pub(crate) fn new(to_exchange: bool, source: &str, destination: &str, routing_key: &str, args: &[u8]) -> Binding {
        Binding {
            to_exchange,
            source: source.into(),
            destination: destination.into(),
            routing_key: routing_key.into(),
            args: args.to_vec(),
        }
    }
}

impl Record {
    /// The request that declares it again.
    pub fn cmd(&self) -> Cmd<'_> {
        match self {
            Record::Queue { name, durable, args } => {
                Cmd::Declare { flags: super::cmds::declare_flags(*durable), queue: name, args }
            }
            Record::Exchange { name, kind, flags, args } => {
                Cmd::ExchangeDeclare { flags: *flags, exchange: name, kind, args }
            }
            Record::Binding(b) => {
                super::cmds::binding(false, b.to_exchange, &b.source, &b.destination, &b.routing_key, &b.args)
            }
        }
    }

    /// What it declares, for an event: `queue NAME`, `exchange NAME`,
    /// `binding SOURCE -> DESTINATION (KEY)`.
    pub fn describe(&self) -> String {
        match self {
            Record::Queue { name, .. } => format!("queue {name}"),
            Record::Exchange { name, .. } => format!("exchange {name}"),
            Record::Binding(b) => format!("binding {} -> {} ({})", b.source, b.destination, b.routing_key),
        }
    }

    /// The queue whose owner should take it (a queue's declare, a binding
    /// to a queue); `None`: any connection will do.
    pub fn queue(&self) -> Option<&str> {
        match self {
            Record::Queue { name, .. } => Some(name),
            Record::Binding(b) if !b.to_exchange => Some(&b.destination),
            _ => None,
        }
    }
}

/// A consumer to subscribe again under the same id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The queue it reads.
    pub queue: String,
    /// The options it subscribed with.
    pub options: ConsumerOptions,
}

/// The record, in declaration order.
#[derive(Debug)]
pub struct Topology {
    records: Vec<Record>,
    consumers: BTreeMap<u32, ConsumerRecord>,
    max: usize,
}

impl Topology {
    /// An empty record holding at most `max` of each kind.
    pub fn new(max: usize) -> Self {
        Self { records: Vec::new(), consumers: BTreeMap::new(), max }
    }

    /// The declarations, in the order to replay them.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The consumer recorded under `id`.
    pub fn consumer(&self, id: u32) -> Option<&ConsumerRecord> {
        self.consumers.get(&id)
    }

    fn count(&self, kind: fn(&Record) -> bool) -> usize {
        self.records.iter().filter(|r| kind(r)).count()
    }

    fn admit(&self, what: &'static str, known: bool, count: usize) -> Result<()> {
        if known || count < self.max {
            return Ok(());
        }
        Err(ClientError::RecoveryLimit { what, max: self.max })
    }

    fn queue_at(&self, name: &str) -> Option<usize> {
        self.records.iter().position(|r| matches!(r, Record::Queue { name: n, .. } if n == name))
    }

    fn exchange_at(&self, name: &str) -> Option<usize> {
        self.records.iter().position(|r| matches!(r, Record::Exchange { name: n, .. } if n == name))
    }

    /// Whether a declare of queue `name` may be recorded (checked before
    /// it is sent).
    pub fn check_queue(&self, name: &str) -> Result<()> {
        self.admit("queues", self.queue_at(name).is_some(), self.count(|r| matches!(r, Record::Queue { .. })))
    }

    /// Refuses a new exchange past `records_max` (one already recorded passes).
    pub fn check_exchange(&self, name: &str) -> Result<()> {
        self.admit("exchanges", self.exchange_at(name).is_some(), self.count(|r| matches!(r, Record::Exchange { .. })))
    }

    /// Refuses a new binding past `records_max` (one already recorded passes).
    pub fn check_binding(&self, b: &Binding) -> Result<()> {
        let known = self.records.iter().any(|r| matches!(r, Record::Binding(x) if x == b));
        self.admit("bindings", known, self.count(|r| matches!(r, Record::Binding(_))))
    }

    /// Refuses a consumer past `records_max`.
    pub fn check_consumer(&self) -> Result<()> {
        self.admit("consumers", false, self.consumers.len())
    }

    /// A queue the broker declared: a redeclare keeps its place and takes
    /// the new flags and arguments.
    pub fn queue_declared(&mut self, name: &str, durable: bool, args: &[u8]) {
        let rec = Record::Queue { name: name.into(), durable, args: args.to_vec() };
        match self.queue_at(name) {
            Some(i) => self.records[i] = rec,
            None if self.check_queue(name).is_ok() => self.records.push(rec),
            None => tracing::warn!(queue = name, "recovery record full: the queue will not be declared again"),
        }
    }

    /// A queue deleted: its record goes, with its bindings (the broker
    /// removed them).
    pub fn queue_deleted(&mut self, name: &str) {
        self.records.retain(|r| match r {
            Record::Queue { name: n, .. } => n != name,
            Record::Binding(b) => b.to_exchange || b.destination != name,
            Record::Exchange { .. } => true,
        });
    }

    /// An exchange declared (`o`'s passive flag is never recorded: a
    /// passive declare does not reach here).
    pub fn exchange_declared(&mut self, name: &str, kind: &str, o: ExchangeOptions<'_>) {
        let flags = match super::cmds::exchange_declare(name, kind, o) {
            Cmd::ExchangeDeclare { flags, .. } => flags & !op::EXCHANGE_PASSIVE,
            _ => 0,
        };
        let rec = Record::Exchange { name: name.into(), kind: kind.into(), flags, args: o.args.to_vec() };
        match self.exchange_at(name) {
            Some(i) => self.records[i] = rec,
            None if self.check_exchange(name).is_ok() => self.records.push(rec),
            None => tracing::warn!(exchange = name, "recovery record full: the exchange will not be declared again"),
        }
    }

    /// An exchange deleted: its record goes, with every binding from it or
    /// to it.
    pub fn exchange_deleted(&mut self, name: &str) {
        self.records.retain(|r| match r {
            Record::Exchange { name: n, .. } => n != name,
            Record::Binding(b) => b.source != name && !(b.to_exchange && b.destination == name),
            Record::Queue { .. } => true,
        });
    }

    /// Records a binding made (once; a full record logs and skips it).
    pub fn bound(&mut self, b: Binding) {
        if self.records.iter().any(|r| matches!(r, Record::Binding(x) if *x == b)) {
            return;
        }
        match self.check_binding(&b) {
            Ok(()) => self.records.push(Record::Binding(b)),
            Err(_) => tracing::warn!(source = b.source, "recovery record full: the binding will not be made again"),
        }
    }

    /// Forgets a binding removed.
    pub fn unbound(&mut self, b: &Binding) {
        self.records.retain(|r| !matches!(r, Record::Binding(x) if x == b));
    }

    /// A consumer subscribed under `id`.
    pub fn consumer_added(&mut self, id: u32, queue: &str, options: ConsumerOptions) {
        if self.consumers.len() < self.max || self.consumers.contains_key(&id) {
            self.consumers.insert(id, ConsumerRecord { queue: queue.into(), options });
        }
    }

    /// A consumer cancelled (by the application or the broker) or dropped.
    pub fn consumer_removed(&mut self, id: u32) {
        self.consumers.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind(source: &str, destination: &str, to_exchange: bool) -> Binding {
        Binding {
            to_exchange,
            source: source.into(),
            destination: destination.into(),
            routing_key: "k".into(),
            args: vec![],
        }
    }

    fn names(t: &Topology) -> Vec<String> {
        t.records()
            .iter()
            .map(|r| match r {
                Record::Queue { name, .. } => format!("q:{name}"),
                Record::Exchange { name, .. } => format!("x:{name}"),
                Record::Binding(b) => format!("b:{}->{}", b.source, b.destination),
            })
            .collect()
    }

    #[test]
    fn replays_in_order_and_redeclare_keeps_its_place() {
        let mut t = Topology::new(10);
        t.queue_declared("a", true, &[]);
        t.exchange_declared("x", "topic", ExchangeOptions { durable: true, ..Default::default() });
        t.bound(bind("x", "a", false));
        t.bound(bind("x", "a", false));
        t.queue_declared("a", false, &[1, 2]);
        assert_eq!(names(&t), ["q:a", "x:x", "b:x->a"]);
        assert_eq!(t.records()[0], Record::Queue { name: "a".into(), durable: false, args: vec![1, 2] });
        match t.records()[1].cmd() {
            Cmd::ExchangeDeclare { flags, kind, .. } => assert_eq!((flags, kind), (op::EXCHANGE_DURABLE, "topic")),
            other => panic!("{other:?}"),
        }
        assert_eq!(t.records()[2].queue(), Some("a"));
    }

    #[test]
    fn deletes_take_their_bindings() {
        let mut t = Topology::new(10);
        t.queue_declared("a", true, &[]);
        t.queue_declared("b", true, &[]);
        t.exchange_declared("x", "direct", ExchangeOptions::default());
        t.exchange_declared("y", "fanout", ExchangeOptions::default());
        t.bound(bind("x", "a", false));
        t.bound(bind("x", "b", false));
        t.bound(bind("x", "y", true));
        t.bound(bind("y", "b", false));
        t.queue_deleted("a");
        assert_eq!(names(&t), ["q:b", "x:x", "x:y", "b:x->b", "b:x->y", "b:y->b"]);
        t.exchange_deleted("y");
        assert_eq!(names(&t), ["q:b", "x:x", "b:x->b"]);
        t.unbound(&bind("x", "b", false));
        assert_eq!(names(&t), ["q:b", "x:x"]);
    }

    #[test]
    fn full_record_refuses_new_names_only() {
        let mut t = Topology::new(2);
        t.queue_declared("a", true, &[]);
        t.queue_declared("b", true, &[]);
        assert_eq!(t.check_queue("c"), Err(ClientError::RecoveryLimit { what: "queues", max: 2 }));
        assert!(t.check_queue("a").is_ok(), "a redeclare is not a new record");
        t.queue_declared("c", true, &[]);
        assert_eq!(names(&t), ["q:a", "q:b"]);
        t.consumer_added(1, "a", ConsumerOptions::new(1));
        t.consumer_added(2, "a", ConsumerOptions::new(1));
        assert!(t.check_consumer().is_err());
        t.consumer_removed(1);
        assert!(t.check_consumer().is_ok());
        assert_eq!(t.consumer(2).map(|c| c.queue.as_str()), Some("a"));
    }
}
