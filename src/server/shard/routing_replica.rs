//! Routing on a shard: its replica of the routing table (a read-only copy
//! of the one `crate::routing::RoutingTable` shard 0 owns), publishes
//! through exchanges (routed where they arrive, then sent once per owning
//! shard), confirms gathered from several owners, and the requests that
//! take a change to shard 0, whose side of it is in `meta.rs` (see
//! `docs/routing.md`).

use super::{bump, Shard};
use crate::protocol::field_table::{self, TableError};
use crate::protocol::{Entries, ErrorCode};
use crate::routing::{headers_of, BindingDef, Change, Dest, ExchangeDef, ExchangeKind, RouteError, RoutingTable};
use crate::rt::Notify;
use crate::server::mesh::MeshMsg;
use crate::server::types::{ConnRef, Origin, QueueError, Reply, Request, Target};
use bytes::{Bytes, BytesMut};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;

/// The shard that owns the routing table: every change goes through it.
pub const METADATA_SHARD: u16 = 0;

/// Connection ids with this bit name a fan-in on the shard, not a socket:
/// replies to them are gathered until every owner has answered.
pub(super) const FANIN_BIT: u64 = 1 << 63;

/// A confirm waiting on several owners.
struct FanIn {
    to: ConnRef,
    request_id: u64,
    parts: usize,
    count: u32,
    mandatory: bool,
    routed: bool,
    error: Option<(ErrorCode, String)>,
}

/// This shard's replica of the routing table, which follows shard 0's,
/// and the confirms of routed publishes waiting on several owners. One
/// part of `Shard` (its field `routing`).
pub struct RoutingReplica {
    pub table: RefCell<RoutingTable>,
    /// Set once the table holds everything shard 0 recovered.
    ready: Cell<bool>,
    ready_notify: Notify,
    /// Fan-ins by token (`FANIN_BIT`), and the last token given.
    fanin: RefCell<HashMap<u64, FanIn>>,
    next_token: Cell<u64>,
}

impl Default for RoutingReplica {
    fn default() -> Self {
        Self {
            table: RefCell::new(RoutingTable::new()),
            ready: Cell::new(false),
            ready_notify: Notify::default(),
            fanin: RefCell::new(HashMap::new()),
            next_token: Cell::new(0),
        }
    }
}

/// Flags of a routed publish.
#[derive(Debug, Clone, Copy)]
pub struct PubOpts {
    pub persistent: bool,
    pub confirm: bool,
    pub mandatory: bool,
}

/// The wire code and text for a refused table change.
pub fn route_error(e: &RouteError) -> QueueError {
    let code = match e {
        RouteError::NotFound(_) => ErrorCode::ExchangeNotFound,
        RouteError::Mismatch(_) => ErrorCode::ExchangeMismatch,
        RouteError::AccessRefused(_) => ErrorCode::AccessRefused,
        RouteError::BadArgument(_) | RouteError::UnknownKind(_) => ErrorCode::InvalidArgument,
    };
    QueueError::new(code, e.to_string())
}

/// Builds an exchange definition from a declare; refuses unknown types,
/// reserved names and malformed arguments.
pub fn exchange_def(
    name: &str,
    kind: &str,
    durable: bool,
    auto_delete: bool,
    internal: bool,
    args: Bytes,
) -> Result<ExchangeDef, QueueError> {
    if name.is_empty() || name.starts_with("amq.") {
        return Err(QueueError::new(
            ErrorCode::AccessRefused,
            format!("exchange name '{name}' contains reserved prefix 'amq.*' or is the default exchange"),
        ));
    }
    check_exchange_name(name)?;
    let kind = kind.parse::<ExchangeKind>().map_err(|e| route_error(&e))?;
    let alternate = alternate_of(&args)?.map(str::to_owned);
    Ok(ExchangeDef { name: name.to_owned(), kind, durable, auto_delete, internal, alternate, args })
}

/// Exchange names as RabbitMQ allows them: letters, digits, `-_.:`.
pub fn check_exchange_name(name: &str) -> Result<(), QueueError> {
    let ok = name.len() <= 255 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(QueueError::new(
            ErrorCode::InvalidArgument,
            format!("bad exchange name {name:?}: use letters, digits, '-', '_', '.', ':' (at most 255)"),
        ))
    }
}

/// Checks that `args` (native ExchangeDeclare or Bind arguments) is a
/// well-formed AMQP field table nesting at most `depth_max` levels. Too
/// deep is fatal (`TableTooDeep`); otherwise malformed is refused.
pub fn check_table(args: &[u8], depth_max: u32) -> Result<(), QueueError> {
    let depth_max = usize::try_from(depth_max).unwrap_or(usize::MAX);
    field_table::validate(args, depth_max).map_err(|e| match e {
        TableError::TooDeep { .. } => QueueError::new(ErrorCode::TableTooDeep, format!("arguments: {e}")),
        _ => QueueError::new(ErrorCode::InvalidArgument, format!("arguments are not a valid field table: {e}")),
    })
}

fn alternate_of(args: &[u8]) -> Result<Option<&str>, QueueError> {
    match field_table::get(args, "alternate-exchange") {
        None => Ok(None),
        Some((b'S', v)) => std::str::from_utf8(v)
            .map(Some)
            .map_err(|_| QueueError::new(ErrorCode::InvalidArgument, "alternate-exchange is not UTF-8")),
        Some(_) => Err(QueueError::new(ErrorCode::InvalidArgument, "alternate-exchange must be a string")),
    }
}

impl Shard {
    pub fn routing_ready(&self) -> bool {
        self.routing.ready.get()
    }

    /// Exchanges in every vhost, the default and `amq.*` ones included (as
    /// RabbitMQ counts them), from this shard's copy of the routing table:
    /// every shard holds the same, so this is not summed.
    pub fn exchange_count(&self) -> usize {
        self.routing.table.borrow().exchanges().count()
    }

    /// Waits until this shard's table holds everything shard 0 recovered.
    pub async fn wait_routing_ready(&self) {
        loop {
            let n = self.routing.ready_notify.notified();
            if self.routing.ready.get() {
                return;
            }
            n.await;
        }
    }

    pub fn set_routing_ready(&self) {
        self.routing.ready.set(true);
        self.routing.ready_notify.notify();
    }

    /// A peer's side of a broadcast change: its copy follows shard 0's.
    pub(super) fn on_meta_apply(&self, version: u64, change: Change) {
        let mut table = self.routing.table.borrow_mut();
        if version <= table.version() {
            // The start-up snapshot of a table this shard already has.
            return;
        }
        if let Err(e) = table.apply(&change) {
            tracing::error!(shard = self.id, error = %e, ?change, "broadcast routing change failed here (bug)");
        }
        if table.version() != version {
            tracing::error!(shard = self.id, local = table.version(), version, "routing table copy out of step (bug)");
        }
        self.mesh.forward(METADATA_SHARD, MeshMsg::MetaApplied { shard: self.id, version });
    }

    /// Publishes a batch through `exchange`: routed here, from this shard's
    /// copy of the table, then sent once to each owner of a target queue.
    /// Returns a local target queue whose backlog is past
    /// `publish_pause_messages`, for the connection to pause on, as
    /// `publish_to_queue` does (and asking `may_pause` the same way).
    #[allow(clippy::too_many_arguments)]
    pub fn publish_to(
        &self,
        from: ConnRef,
        request_id: u64,
        o: PubOpts,
        exchange: &str,
        key: &str,
        (entries, count): (Bytes, u32),
        may_pause: impl FnOnce() -> bool,
    ) -> Option<String> {
        let targets = match self.route_batch(exchange, key, &entries, count) {
            Ok((t, routed)) => {
                // Decided here, from this shard's copy of the table, for
                // the whole batch (a queue deleted while the batch is on
                // its way is not counted again).
                bump(&self.counters.routed, u64::from(routed));
                if t.is_empty() {
                    self.count_unroutable(Some(o.mandatory), u64::from(count));
                } else {
                    // Headers: the messages that matched no binding are
                    // dropped, even from a mandatory publish.
                    bump(&self.counters.unroutable_dropped, u64::from(count - routed));
                }
                t
            }
            Err(e) => {
                self.route_reply(from, Reply::error(request_id, e.code, e.message));
                return None;
            }
        };
        let origin = Arc::new(Origin {
            exchange: crate::routing::vhost::name_of(exchange).to_owned(),
            routing_key: key.to_owned(),
        });
        self.send_routed(from, request_id, o, targets, count, Some(origin)).filter(|_| may_pause())
    }

    pub(super) fn route_batch(
        &self,
        exchange: &str,
        key: &str,
        entries: &Bytes,
        count: u32,
    ) -> Result<(Vec<Target>, u32), QueueError> {
        let table = self.routing.table.borrow();
        let x = table.exchange(exchange).ok_or_else(|| {
            QueueError::new(
                ErrorCode::ExchangeNotFound,
                format!("no exchange {}", crate::routing::vhost::describe(exchange)),
            )
        })?;
        if x.internal {
            return Err(QueueError::new(
                ErrorCode::AccessRefused,
                format!("cannot publish to internal exchange '{exchange}'"),
            ));
        }
        let mut out = Vec::new();
        if x.kind != ExchangeKind::Headers {
            // One decision for the whole batch: every message has the same key.
            table.route(exchange, key, None, &mut out).map_err(|e| route_error(&e))?;
            let routed = if out.is_empty() { 0 } else { count };
            let targets = out.iter().map(|q| Target { queue: (*q).to_owned(), entries: entries.clone(), count });
            return Ok((targets.collect(), routed));
        }
        // Headers: each message decides for itself.
        let parsed = Entries::parse(entries, count)
            .map_err(|e| QueueError::new(ErrorCode::Internal, format!("routed batch failed validation: {e}")))?;
        let mut per_queue: Vec<(String, BytesMut, u32)> = Vec::new();
        let mut routed = 0;
        for (e, raw) in parsed.iter().zip(parsed.raw_iter()) {
            table.route(exchange, key, headers_of(e.props), &mut out).map_err(|e| route_error(&e))?;
            routed += u32::from(!out.is_empty());
            for q in out.drain(..) {
                let i = match per_queue.iter().position(|(n, _, _)| n == q) {
                    Some(i) => i,
                    None => {
                        per_queue.push((q.to_owned(), BytesMut::new(), 0));
                        per_queue.len() - 1
                    }
                };
                per_queue[i].1.extend_from_slice(raw);
                per_queue[i].2 += 1;
            }
        }
        let targets = per_queue.into_iter().map(|(queue, b, count)| Target { queue, entries: b.freeze(), count });
        Ok((targets.collect(), routed))
    }

    /// Sends each owner its targets in one request. With confirms and more
    /// than one owner, the answers meet in a fan-in here first.
    fn send_routed(
        &self,
        from: ConnRef,
        request_id: u64,
        o: PubOpts,
        targets: Vec<Target>,
        count: u32,
        origin: Option<Arc<Origin>>,
    ) -> Option<String> {
        if targets.is_empty() {
            self.unroutable(from, request_id, o, count);
            return None;
        }
        let mut groups: Vec<(u16, Vec<Target>)> = Vec::new();
        for t in targets {
            let owner = self.owner_of(&t.queue);
            match groups.iter_mut().find(|(o, _)| *o == owner) {
                Some((_, ts)) => ts.push(t),
                None => groups.push((owner, vec![t])),
            }
        }
        let mut via = from;
        let mut mandatory = o.mandatory;
        if o.confirm && groups.len() > 1 {
            let token = self.routing.next_token.get() + 1;
            self.routing.next_token.set(token);
            let f = FanIn { to: from, request_id, parts: groups.len(), count, mandatory, routed: false, error: None };
            self.routing.fanin.borrow_mut().insert(token, f);
            via = ConnRef { shard: self.id, conn_id: FANIN_BIT | token };
            // Each owner says NoRoute when none of its queues exist; the
            // fan-in decides whether the batch as a whole was routed.
            mandatory = true;
        }
        let mut local: Vec<String> = Vec::new();
        for (owner, targets) in groups {
            if owner == self.id {
                local.extend(targets.iter().map(|t| t.queue.clone()));
            }
            let (persistent, confirm, origin) = (o.persistent, o.confirm, origin.clone());
            let req = Request::PublishMany { persistent, confirm, mandatory, targets, count, origin };
            self.submit(via, request_id, owner, req);
        }
        local.into_iter().find(|q| self.over_publish_pause(q))
    }

    fn unroutable(&self, to: ConnRef, request_id: u64, o: PubOpts, count: u32) {
        if o.mandatory {
            let msg = "the message was routed to no queue (NO_ROUTE)";
            self.route_reply(to, Reply::error(request_id, ErrorCode::NoRoute, msg));
        } else if o.confirm {
            self.route_reply(to, Reply::Confirm { request_id, count });
        }
    }

    /// Whether a reply is addressed to a fan-in; if so it is consumed.
    pub(super) fn fanin_reply(&self, conn_id: u64, reply: Reply) -> Option<Reply> {
        if conn_id & FANIN_BIT == 0 {
            return Some(reply);
        }
        if conn_id & super::tx::TX_FANIN_BIT != 0 {
            self.tx_fanin_reply(conn_id, reply);
            return None;
        }
        let token = conn_id & !FANIN_BIT;
        let mut map = self.routing.fanin.borrow_mut();
        let Some(f) = map.get_mut(&token) else {
            tracing::error!(token, "reply for an unknown fan-in (bug)");
            return None;
        };
        match reply {
            Reply::Confirm { .. } => f.routed = true,
            Reply::Error { code: ErrorCode::NoRoute | ErrorCode::QueueNotFound, .. } => {}
            Reply::Error { code, message, .. } => {
                f.error.get_or_insert((code, message));
            }
            other => tracing::error!(?other, "unexpected reply to a fan-in (bug)"),
        }
        f.parts -= 1;
        if f.parts > 0 {
            return None;
        }
        let f = map.remove(&token)?;
        drop(map);
        let o = PubOpts { persistent: false, confirm: true, mandatory: f.mandatory };
        match f.error {
            Some((code, message)) => self.route_reply(f.to, Reply::error(f.request_id, code, message)),
            None if f.routed => self.route_reply(f.to, Reply::Confirm { request_id: f.request_id, count: f.count }),
            None => self.unroutable(f.to, f.request_id, o, f.count),
        }
        None
    }

    /// The owner's side of a routed publish: every target queue here gets
    /// its share; one reply for the request.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn publish_many(
        &self,
        from: ConnRef,
        request_id: u64,
        o: PubOpts,
        targets: Vec<Target>,
        count: u32,
        origin: Option<Arc<Origin>>,
    ) {
        let mut routed = false;
        let mut log = None;
        for t in targets {
            let parsed = match Entries::parse(&t.entries, t.count) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "routed batch failed validation (bug)");
                    let msg = "routed batch was corrupt";
                    return self.route_reply(from, Reply::error(request_id, ErrorCode::Internal, msg));
                }
            };
            let msgs = parsed.raw_iter().map(|raw| t.entries.slice_ref(raw));
            match self.enqueue(o.persistent, false, &t.queue, msgs, origin.as_ref()) {
                Ok((n, l)) => {
                    bump(&self.counters.published, u64::from(n));
                    routed = true;
                    log = log.or(l);
                    // A publisher on another shard or node cannot watch
                    // this queue: told to pause as a direct one is.
                    self.pause_if_remote(from, &t.queue);
                }
                // Deleted since the table was read: like an unbound queue.
                Err(e) if e.code == ErrorCode::QueueNotFound => {}
                Err(e) => {
                    tracing::debug!(queue = %t.queue, code = ?e.code, "routed publish refused: {}", e.message);
                    return self.route_reply(from, Reply::error(request_id, e.code, e.message));
                }
            }
        }
        // Length limits may have dropped heads (drop-head): republish them.
        self.flush_dead_letters();
        if !routed {
            return self.unroutable(from, request_id, o, count);
        }
        if o.confirm {
            self.confirm(from, request_id, count, log.as_deref());
        }
    }

    /// Declares an exchange for a connection (through shard 0).
    pub fn declare_exchange(&self, from: ConnRef, request_id: u64, def: ExchangeDef) {
        let req =
            Request::Meta { change: Change::DeclareExchange(def), durable_dest: false, if_unused: false, count: 0 };
        self.submit(from, request_id, METADATA_SHARD, req);
    }

    /// A passive declare: answered from this shard's copy of the table.
    pub fn check_exchange(&self, from: ConnRef, request_id: u64, name: &str) {
        let r = match self.routing.table.borrow().exchange(name) {
            Some(_) => Ok(0),
            None => Err(QueueError::new(
                ErrorCode::ExchangeNotFound,
                format!("no exchange {}", crate::routing::vhost::describe(name)),
            )),
        };
        self.reply_result(from, request_id, r);
    }

    /// Deletes an exchange. Deleting one that does not exist succeeds, as
    /// in RabbitMQ (deletes are idempotent).
    pub fn delete_exchange(&self, from: ConnRef, request_id: u64, name: String, if_unused: bool) {
        if self.routing.table.borrow().exchange(&name).is_none() && !name.is_empty() && !name.starts_with("amq.") {
            return self.reply_result(from, request_id, Ok(0));
        }
        let req = Request::Meta { change: Change::DeleteExchange(name), durable_dest: false, if_unused, count: 0 };
        self.submit(from, request_id, METADATA_SHARD, req);
    }

    /// Binds or unbinds: a queue's owner checks the queue first.
    pub fn bind(&self, from: ConnRef, request_id: u64, binding: BindingDef, unbind: bool) {
        match &binding.dest {
            Dest::Queue(q) => {
                let owner = self.owner_of(q);
                self.submit(from, request_id, owner, Request::BindQueue { binding, unbind });
            }
            Dest::Exchange(_) => {
                let change = if unbind { Change::Unbind(binding) } else { Change::Bind(binding) };
                let req = Request::Meta { change, durable_dest: false, if_unused: false, count: 0 };
                self.submit(from, request_id, METADATA_SHARD, req);
            }
        }
    }

    /// The queue owner's check of a binding, passed on to shard 0.
    pub(super) fn bind_queue(&self, from: ConnRef, request_id: u64, binding: BindingDef, unbind: bool) {
        let Dest::Queue(name) = &binding.dest else { return };
        let durable = {
            let queues = self.queues.borrow();
            match queues.get(name) {
                None => return self.reply_result(from, request_id, Err(super::not_found(name))),
                Some(q) => {
                    if let Err(e) = super::check_lock(q, from) {
                        return self.reply_result(from, request_id, Err(e));
                    }
                    q.durable
                }
            }
        };
        let change = if unbind { Change::Unbind(binding) } else { Change::Bind(binding) };
        self.submit(
            from,
            request_id,
            METADATA_SHARD,
            Request::Meta { change, durable_dest: durable, if_unused: false, count: 0 },
        );
    }

    /// A queue is gone: shard 0 drops the bindings to it. With `reply`
    /// (connection, request id, count) and bindings to drop, the Ok goes
    /// out from there once every shard has dropped them, so a publish
    /// after it cannot reach a new queue of the same name through them;
    /// returns whether it was handed on.
    /// Whether this shard's table has `binding`.
    pub fn routing_has(&self, binding: &BindingDef) -> bool {
        self.routing.table.borrow().bindings().any(|b| b == binding)
    }

    pub(super) fn queue_gone(&self, name: &str, reply: Option<(ConnRef, u64, u64)>) -> bool {
        self.unplace(name);
        let bound = self.routing.table.borrow().bindings().any(|b| matches!(&b.dest, Dest::Queue(q) if q == name));
        if !bound {
            return false;
        }
        let (from, request_id, count) = reply.unwrap_or((ConnRef { shard: self.id, conn_id: 0 }, 0, 0));
        let change = Change::QueueGone(name.to_owned());
        let req = Request::Meta { change, durable_dest: false, if_unused: false, count };
        self.submit(from, request_id, METADATA_SHARD, req);
        reply.is_some()
    }
}
