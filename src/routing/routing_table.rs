//! The routing table: exchanges, their bindings, and the changes to them.

use super::headers::check_table;
use super::matcher::Matcher;
use super::{BindingDef, Change, Dest, ExchangeDef, ExchangeKind, RouteError};
use ahash::RandomState;
use std::collections::HashMap;
use std::fmt;

/// The exchanges every table has (besides the default ""), all durable, as
/// in RabbitMQ. They cannot be deleted, and no other name may start with
/// `amq.`.
const STANDARD: [(&str, ExchangeKind); 5] = [
    ("amq.direct", ExchangeKind::Direct),
    ("amq.fanout", ExchangeKind::Fanout),
    ("amq.topic", ExchangeKind::Topic),
    ("amq.headers", ExchangeKind::Headers),
    ("amq.match", ExchangeKind::Headers),
];

/// The default exchange, or a standard one, of any vhost.
fn is_builtin(name: &str) -> bool {
    let name = super::vhost::name_of(name);
    name.is_empty() || STANDARD.iter().any(|(n, _)| *n == name)
}

pub(crate) struct Exchange {
    pub(crate) def: ExchangeDef,
    pub(crate) matcher: Matcher,
    /// Its bindings as a source, grouped by destination so that dropping a
    /// destination touches only its own bindings.
    bound: HashMap<Dest, Vec<BindingDef>, RandomState>,
}

/// Exchanges and bindings, with a version that counts the changes applied.
///
/// Every shard applies the same changes in the same order, so copies with
/// the same version have the same content.
pub struct RoutingTable {
    version: u64,
    pub(crate) exchanges: HashMap<String, Exchange, RandomState>,
    /// For each destination, the exchanges that have a binding to it: what
    /// `QueueGone` and deleting an exchange visit.
    incoming: HashMap<Dest, Vec<String>, RandomState>,
    /// Bindings in the table, kept so `bindings_max` costs no walk.
    binding_count: usize,
    /// Vhosts besides `/` whose standard exchanges the table holds.
    vhosts: usize,
}

impl Default for RoutingTable {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for RoutingTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoutingTable")
            .field("version", &self.version)
            .field("exchanges", &self.exchanges.len())
            .field("bindings", &self.bindings().count())
            .finish()
    }
}

impl RoutingTable {
    /// A table with the default exchange "" and the standard `amq.*` ones.
    pub fn new() -> Self {
        let mut t = Self {
            version: 0,
            exchanges: HashMap::default(),
            incoming: HashMap::default(),
            binding_count: 0,
            vhosts: 0,
        };
        let mut default = ExchangeDef::new("", ExchangeKind::Direct);
        default.durable = true;
        t.exchanges
            .insert(String::new(), Exchange { def: default, matcher: Matcher::Default, bound: HashMap::default() });
        for (name, kind) in STANDARD {
            let mut def = ExchangeDef::new(name, kind);
            def.durable = true;
            t.insert(def);
        }
        t
    }

    /// A table seeded from a peer's `snapshot`, taking the peer's version so
    /// that later changes keep the two in step.
    pub fn from_snapshot(version: u64, changes: &[Change]) -> Result<Self, RouteError> {
        let mut t = Self::new();
        for c in changes {
            t.apply(c)?;
        }
        t.version = version;
        Ok(t)
    }

    /// The number of changes applied successfully.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Counts a metadata change that is not a routing one (a user change):
    /// the version orders every change shard 0 broadcasts, so peers apply
    /// and acknowledge them all in one sequence. The new version.
    pub fn bump_version(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    /// Applies one change; the version goes up by one if it succeeds (also
    /// when it changes nothing, like an identical redeclare or unbinding a
    /// missing binding: the version counts applied changes, so that every
    /// copy that applied the same stream agrees). A refused change changes
    /// nothing.
    pub fn apply(&mut self, c: &Change) -> Result<(), RouteError> {
        self.apply_collect(c, &mut Vec::new())
    }

    /// `apply`, also naming the auto-delete exchanges the change deleted
    /// because it removed their last binding (appended to `auto_deleted`).
    pub fn apply_collect(&mut self, c: &Change, auto_deleted: &mut Vec<String>) -> Result<(), RouteError> {
        match c {
            Change::DeclareExchange(def) => self.declare(def)?,
            Change::DeleteExchange(name) => {
                if is_builtin(name) {
                    return Err(RouteError::AccessRefused(format!("exchange '{name}' cannot be deleted")));
                }
                if !self.exchanges.contains_key(name) {
                    return Err(RouteError::NotFound(name.clone()));
                }
                self.remove_exchange(name, auto_deleted);
            }
            Change::Bind(b) => self.bind(b)?,
            Change::Unbind(b) => self.unbind(b, auto_deleted)?,
            Change::QueueGone(q) => self.drop_dest(&Dest::Queue(q.clone()), auto_deleted),
        }
        self.version += 1;
        Ok(())
    }

    /// Exchanges declared by clients (the default and `amq.*` ones left out).
    pub fn exchange_count(&self) -> usize {
        self.exchanges.len().saturating_sub(1 + STANDARD.len() * (1 + self.vhosts))
    }

    /// A vhost other than `/` came to be: its standard exchanges. Every
    /// copy does this when it applies the change that made the vhost, so
    /// it is not a routing change and does not move the version. Its
    /// default exchange is not in the table: the front ends send a publish
    /// to "" straight to the queue its routing key names in that vhost.
    pub fn add_vhost(&mut self, vhost: &str) {
        if vhost == super::vhost::DEFAULT_VHOST {
            return;
        }
        let first = super::vhost::qualify(vhost, STANDARD[0].0);
        if self.exchanges.contains_key(first.as_ref()) {
            return;
        }
        self.vhosts += 1;
        for (name, kind) in STANDARD {
            let mut def = ExchangeDef::new(super::vhost::qualify(vhost, name).into_owned(), kind);
            def.durable = true;
            self.insert(def);
        }
    }

    /// A vhost was deleted: its exchanges go, and every binding from or to
    /// them or to its queues. Like `add_vhost`, every copy does it as it
    /// applies the deletion.
    pub fn drop_vhost(&mut self, vhost: &str) {
        if vhost == super::vhost::DEFAULT_VHOST {
            return;
        }
        let in_vhost = |n: &str| super::vhost::vhost_of(n) == vhost && n.starts_with('\0');
        let exchanges: Vec<String> = self.exchanges.keys().filter(|n| in_vhost(n)).cloned().collect();
        let queues: Vec<String> = self
            .incoming
            .keys()
            .filter_map(|d| match d {
                Dest::Queue(q) if in_vhost(q) => Some(q.clone()),
                _ => None,
            })
            .collect();
        let mut auto_deleted = Vec::new();
        for q in queues {
            self.drop_dest(&Dest::Queue(q), &mut auto_deleted);
        }
        for x in &exchanges {
            if self.exchanges.contains_key(x) {
                self.remove_exchange(x, &mut auto_deleted);
            }
        }
        if !exchanges.is_empty() {
            self.vhosts = self.vhosts.saturating_sub(1);
        }
    }

    pub fn binding_count(&self) -> usize {
        self.binding_count
    }

    /// Whether this exact binding exists (a bind of it would add nothing).
    pub fn is_bound(&self, b: &BindingDef) -> bool {
        self.exchanges.get(&b.source).and_then(|x| x.bound.get(&b.dest)).is_some_and(|l| l.contains(b))
    }

    pub fn exchange(&self, name: &str) -> Option<&ExchangeDef> {
        self.exchanges.get(name).map(|x| &x.def)
    }

    /// Every exchange, the default "" and the standard ones included, in no
    /// particular order.
    pub fn exchanges(&self) -> impl Iterator<Item = &ExchangeDef> {
        self.exchanges.values().map(|x| &x.def)
    }

    /// Every binding, in no particular order. The default exchange's
    /// implicit binding of each queue is not listed (the table does not know
    /// the queues).
    pub fn bindings(&self) -> impl Iterator<Item = &BindingDef> {
        self.exchanges.values().flat_map(|x| x.bound.values().flatten())
    }

    /// The bindings whose source is `exchange` (for `if-unused`).
    pub fn bindings_from(&self, exchange: &str) -> impl Iterator<Item = &BindingDef> {
        self.exchanges.get(exchange).into_iter().flat_map(|x| x.bound.values().flatten())
    }

    /// The whole table as changes, declares first, then binds, to seed a
    /// peer or a recovering shard (see `from_snapshot`). The default and
    /// standard exchanges are left out: every table has them.
    pub fn snapshot(&self) -> Vec<Change> {
        self.snapshot_where(|_| true, |_| true)
    }

    /// The durable part: durable exchanges, and the bindings from a durable
    /// exchange to a durable exchange or to a queue `queue_is_durable` says
    /// is durable (the table does not know queues).
    pub fn durable_snapshot(&self, queue_is_durable: impl Fn(&str) -> bool) -> Vec<Change> {
        self.snapshot_where(|x| x.durable, queue_is_durable)
    }

    fn snapshot_where(&self, keep: impl Fn(&ExchangeDef) -> bool, keep_queue: impl Fn(&str) -> bool) -> Vec<Change> {
        let mut declares: Vec<&ExchangeDef> = self.exchanges().filter(|d| !is_builtin(&d.name) && keep(d)).collect();
        declares.sort_by(|a, b| a.name.cmp(&b.name));
        let dest_kept = |d: &Dest| match d {
            Dest::Queue(q) => keep_queue(q),
            Dest::Exchange(x) => self.exchange(x).is_some_and(&keep),
        };
        let mut binds: Vec<&BindingDef> =
            self.bindings().filter(|b| self.exchange(&b.source).is_some_and(&keep) && dest_kept(&b.dest)).collect();
        binds.sort_by(|a, b| (&a.source, &a.dest, &a.key, &a.args).cmp(&(&b.source, &b.dest, &b.key, &b.args)));
        let declares = declares.into_iter().map(|d| Change::DeclareExchange(d.clone()));
        declares.chain(binds.into_iter().map(|b| Change::Bind(b.clone()))).collect()
    }

    /// Destinations with at least one binding (tests check it is tidied).
    #[cfg(test)]
    pub(crate) fn incoming_len(&self) -> usize {
        self.incoming.len()
    }

    /// Panics unless `incoming` and every exchange's `bound` agree (tests).
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        for (name, x) in &self.exchanges {
            for (dest, list) in &x.bound {
                assert!(!list.is_empty(), "{name}: empty list for {dest:?}");
                assert!(list.iter().all(|b| &b.source == name && &b.dest == dest));
                assert!(self.incoming.get(dest).is_some_and(|s| s.contains(name)), "{name} -> {dest:?}");
                assert_eq!(self.binding_count, self.bindings().count(), "binding count");
                if let Dest::Exchange(d) = dest {
                    assert!(self.exchanges.contains_key(d), "{name} -> missing {d}");
                }
            }
        }
        for (dest, sources) in &self.incoming {
            assert!(!sources.is_empty());
            for s in sources {
                assert!(self.exchanges.get(s).is_some_and(|x| x.bound.contains_key(dest)), "{s} -> {dest:?}");
            }
        }
    }

    fn insert(&mut self, def: ExchangeDef) {
        let matcher = Matcher::new(def.kind);
        self.exchanges.insert(def.name.clone(), Exchange { def, matcher, bound: HashMap::default() });
    }

    fn declare(&mut self, def: &ExchangeDef) -> Result<(), RouteError> {
        if def.name.is_empty() {
            return Err(RouteError::AccessRefused("the default exchange cannot be declared".into()));
        }
        if let Some(x) = self.exchanges.get(&def.name) {
            // RabbitMQ's equivalence: kind, flags and the alternate; other
            // arguments are not compared.
            let e = &x.def;
            let same = e.kind == def.kind
                && e.durable == def.durable
                && e.auto_delete == def.auto_delete
                && e.internal == def.internal
                && e.alternate == def.alternate;
            return if same { Ok(()) } else { Err(RouteError::Mismatch(def.name.clone())) };
        }
        if super::vhost::name_of(&def.name).starts_with("amq.") {
            let msg = format!("exchange name '{}' uses the reserved prefix 'amq.'", def.name);
            return Err(RouteError::AccessRefused(msg));
        }
        check_table(&def.args)?;
        self.insert(def.clone());
        Ok(())
    }

    /// What bind and unbind refuse: the default exchange at either end, and
    /// ends that do not exist (a queue's existence is the caller's to check).
    fn check_ends(&self, b: &BindingDef) -> Result<(), RouteError> {
        if b.source.is_empty() || b.dest == Dest::Exchange(String::new()) {
            return Err(RouteError::AccessRefused("the default exchange cannot be bound".into()));
        }
        if !self.exchanges.contains_key(&b.source) {
            return Err(RouteError::NotFound(b.source.clone()));
        }
        match &b.dest {
            Dest::Exchange(x) if !self.exchanges.contains_key(x) => Err(RouteError::NotFound(x.clone())),
            _ => Ok(()),
        }
    }

    fn bind(&mut self, b: &BindingDef) -> Result<(), RouteError> {
        self.check_ends(b)?;
        let Some(x) = self.exchanges.get_mut(&b.source) else { return Err(RouteError::NotFound(b.source.clone())) };
        if x.bound.get(&b.dest).is_some_and(|list| list.contains(b)) {
            return Ok(());
        }
        check_table(&b.args)?;
        // The last fallible step: it changes nothing when it fails.
        x.matcher.add(b)?;
        x.bound.entry(b.dest.clone()).or_default().push(b.clone());
        self.binding_count += 1;
        let sources = self.incoming.entry(b.dest.clone()).or_default();
        if !sources.contains(&b.source) {
            sources.push(b.source.clone());
        }
        Ok(())
    }

    fn unbind(&mut self, b: &BindingDef, auto_deleted: &mut Vec<String>) -> Result<(), RouteError> {
        self.check_ends(b)?;
        let Some(x) = self.exchanges.get_mut(&b.source) else { return Err(RouteError::NotFound(b.source.clone())) };
        // Unbinding what is not bound is fine, as in RabbitMQ.
        let Some(list) = x.bound.get_mut(&b.dest) else { return Ok(()) };
        let Some(i) = list.iter().position(|e| e == b) else { return Ok(()) };
        list.remove(i);
        self.binding_count -= 1;
        let emptied = list.is_empty();
        if emptied {
            x.bound.remove(&b.dest);
        }
        x.matcher.remove(b);
        if emptied {
            self.forget_source(&b.dest, &b.source);
        }
        self.auto_delete_if_unused(&b.source, auto_deleted);
        Ok(())
    }

    fn forget_source(&mut self, dest: &Dest, source: &str) {
        if let Some(sources) = self.incoming.get_mut(dest) {
            sources.retain(|s| s != source);
            if sources.is_empty() {
                self.incoming.remove(dest);
            }
        }
    }

    /// Removes an exchange with its bindings, as a source and as a
    /// destination.
    fn remove_exchange(&mut self, name: &str, auto_deleted: &mut Vec<String>) {
        let Some(x) = self.exchanges.remove(name) else { return };
        self.binding_count -= x.bound.values().map(Vec::len).sum::<usize>();
        for dest in x.bound.keys() {
            self.forget_source(dest, name);
        }
        self.drop_dest(&Dest::Exchange(name.to_string()), auto_deleted);
    }

    /// Removes every binding to `dest`.
    fn drop_dest(&mut self, dest: &Dest, auto_deleted: &mut Vec<String>) {
        let Some(sources) = self.incoming.remove(dest) else { return };
        for source in sources {
            let Some(x) = self.exchanges.get_mut(&source) else { continue };
            for b in x.bound.remove(dest).into_iter().flatten() {
                x.matcher.remove(&b);
                self.binding_count -= 1;
            }
            self.auto_delete_if_unused(&source, auto_deleted);
        }
    }

    /// RabbitMQ's auto-delete: an exchange goes when its last binding as a
    /// source goes (never just because it has none yet). It can cascade:
    /// deleting it removes its bindings as a destination, too.
    fn auto_delete_if_unused(&mut self, name: &str, auto_deleted: &mut Vec<String>) {
        let unused = self.exchanges.get(name).is_some_and(|x| x.def.auto_delete && x.bound.is_empty());
        if unused && !is_builtin(name) {
            auto_deleted.push(name.to_string());
            self.remove_exchange(name, auto_deleted);
        }
    }
}
