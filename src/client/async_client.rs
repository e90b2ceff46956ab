//! The glommio client ([`Client`]): one connection per shard it uses,
//! each queue's traffic straight to its owner. Its connections, producers
//! and consumers are the glommio shell (`conn`, `producer`, `consumer`)
//! over the shared `core`.

use super::cluster;
use super::core::cmds;
use super::core::topology::{Binding, Topology};
use super::dial::Dialer;
use super::recover::{self, Events, Hub};
use super::{
    ClientError, ClientOptions, Conn, Consumer, ConsumerOptions, Delivery, ExchangeOptions, Producer, ProducerOptions,
    Result, ServerInfo, Target,
};
use crate::protocol;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

/// An async client on glommio. Not `Send`: use it on the executor that
/// created it.
pub struct Client {
    opts: ClientOptions,
    /// Plain or TLS, for every connection (the first and each shard's).
    dialer: Rc<Dialer>,
    /// With `ClientOptions::recovery`: what recovery shares.
    hub: Option<Rc<Hub>>,
    info: ServerInfo,
    first: Rc<Conn>,
    by_shard: RefCell<Vec<Option<Rc<Conn>>>>,
    next_consumer_id: Cell<u32>,
    /// The pull-consumer id used for `get` on each queue.
    pull_ids: RefCell<HashMap<String, u32>>,
    /// On a clustered broker: the map and where queues live.
    routes: cluster::Routes,
}

impl Client {
    /// Connects to `opts.url` and shakes hands; the connections to other shards open on first use.
    pub async fn connect(opts: ClientOptions) -> Result<Client> {
        // Credentials, vhost and options in the URL win (`client::url`).
        let (opts, url) = opts.resolved()?;
        if let Some(r) = &opts.recovery {
            r.validate()?;
        }
        let dialer = Rc::new(Dialer::new(&opts, &url)?);
        let hub = opts.recovery.clone().map(Hub::new);
        // The map comes with the first connection's handshake.
        let want_map = opts.shard_aware && opts.cluster_aware;
        let (first, map) = Conn::open_with(&dialer, url.addr, &opts, want_map, hub.clone()).await?;
        if let Some(hub) = &hub {
            glommio::spawn_local(recover::supervise(hub.clone(), dialer.clone(), opts.clone())).detach();
        }
        let info = first.info().clone();
        let mut by_shard = vec![None; info.shard_addrs.len()];
        by_shard[usize::from(info.shard_id)] = Some(first.clone());
        let routes = cluster::Routes::new(hub.clone());
        if let Some(map) = map {
            routes.set(map);
        }
        Ok(Client {
            routes,
            opts,
            dialer,
            hub,
            info,
            first,
            by_shard: RefCell::new(by_shard),
            next_consumer_id: Cell::new(1),
            pull_ids: RefCell::default(),
        })
    }

    /// What the first connection's handshake said (shards, limits).
    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    /// What recovery did (`ClientOptions::recovery`; docs/client-recovery.md,
    /// "Recovery"): a `Stream` of [`crate::client::Event`]s, ending when the
    /// client closes or recovery gives up. Events wait in a bounded queue
    /// that drops the oldest unread. Without recovery the stream is empty.
    pub fn events(&self) -> Events {
        Events::new(self.hub.clone())
    }

    /// Runs `f` on the recovery record, when recovery is on.
    fn record(&self, f: impl FnOnce(&mut Topology)) {
        if let Some(hub) = &self.hub {
            f(&mut hub.topology.borrow_mut());
        }
    }

    /// Refuses a new record past `Recovery::records_max` before anything
    /// is sent.
    fn admit(&self, f: impl FnOnce(&Topology) -> Result<()>) -> Result<()> {
        match &self.hub {
            Some(hub) => f(&hub.topology.borrow()),
            None => Ok(()),
        }
    }

    /// Whether this client's connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.dialer.is_tls()
    }

    /// The connection that carries `queue`'s traffic: the owner's, opened
    /// on first use, when shard-aware.
    pub async fn conn_for(&self, queue: &str) -> Result<Rc<Conn>> {
        if self.hub.as_ref().is_some_and(|h| h.is_closing()) {
            return Err(ClientError::Closed("the client closed, or its recovery gave up".into()));
        }
        if !self.opts.shard_aware {
            return Ok(self.first.clone());
        }
        if self.routes.is_clustered() {
            return self.cluster_conn(queue).await;
        }
        self.shard_conn(usize::from(self.info.owner_of(queue))).await
    }

    /// The connection to this node's shard `owner`, opened on first use.
    async fn shard_conn(&self, owner: usize) -> Result<Rc<Conn>> {
        if let Some(c) = self.by_shard.borrow()[owner].clone().filter(|c| !c.is_closed()) {
            return Ok(c);
        }
        let c = Conn::open(&self.dialer, self.info.shard_addrs[owner], &self.opts, self.hub.clone()).await?;
        if usize::from(c.info().shard_id) != owner {
            return Err(ClientError::Protocol(format!("dialled shard {owner}, reached shard {}", c.info().shard_id)));
        }
        self.by_shard.borrow_mut()[owner] = Some(c.clone());
        Ok(c)
    }

    /// On a clustered broker: the connection to `queue`'s owning node and
    /// shard (opened on first use), or the first one when that node is out
    /// of reach (its node forwards, and answers for a dead one).
    async fn cluster_conn(&self, queue: &str) -> Result<Rc<Conn>> {
        let Some(addr) = self.routes.owner_addr(&self.first, queue).await? else {
            return Ok(self.first.clone());
        };
        if let Some(own) = self.info.shard_addrs.iter().position(|a| *a == addr) {
            return self.shard_conn(own).await;
        }
        if let Some(c) = self.routes.conn(addr) {
            return Ok(c);
        }
        match Conn::open(&self.dialer, addr, &self.opts, self.hub.clone()).await {
            Ok(c) => {
                self.routes.keep(addr, c.clone());
                Ok(c)
            }
            Err(e) => {
                tracing::debug!(%addr, error = %e, queue, "the queue's node is out of reach; through the first connection");
                self.routes.forget(queue);
                Ok(self.first.clone())
            }
        }
    }

    /// The cluster map as this client last fetched it (empty on a single node).
    pub fn cluster_map(&self) -> cluster::OwnedMap {
        self.routes.map()
    }

    /// Declares a queue; returns its ready count.
    pub async fn declare(&self, queue: &str, durable: bool) -> Result<u64> {
        self.declare_with(queue, durable, &[]).await
    }

    /// Declares with queue arguments (policies: TTL, length limits,
    /// dead-lettering, priorities...), a raw AMQP field table as built by
    /// [`protocol::field_table::TableBuilder`]. A redeclare must repeat them.
    pub async fn declare_with(&self, queue: &str, durable: bool, args: &[u8]) -> Result<u64> {
        self.admit(|t| t.check_queue(queue))?;
        let n = self.conn_for(queue).await?.declare(queue, cmds::declare_flags(durable), args).await?;
        self.record(|t| t.queue_declared(queue, durable, args));
        Ok(n)
    }

    /// Checks that a queue exists; returns its ready count.
    pub async fn declare_passive(&self, queue: &str) -> Result<u64> {
        self.conn_for(queue).await?.declare(queue, protocol::op::DECLARE_PASSIVE, &[]).await
    }

    /// Deletes a queue; returns the messages it held.
    pub async fn delete(&self, queue: &str) -> Result<u64> {
        let n = self.conn_for(queue).await?.simple(protocol::Cmd::Delete { flags: 0, queue }).await?;
        self.record(|t| t.queue_deleted(queue));
        Ok(n)
    }

    /// Empties a queue; returns the messages removed.
    pub async fn purge(&self, queue: &str) -> Result<u64> {
        self.conn_for(queue).await?.simple(protocol::Cmd::Purge { queue }).await
    }

    /// A producer publishing straight into `queue`, over its owner's connection.
    pub async fn producer(&self, queue: &str, opts: ProducerOptions) -> Result<Producer> {
        Producer::new(self.conn_for(queue).await?, Target::Queue(queue.into()), opts)
    }

    /// A producer publishing through `exchange` with `routing_key`. It
    /// uses the connection to the shard that owns a queue named like the
    /// key, so a direct exchange routing by queue name saves a hop.
    pub async fn exchange_producer(
        &self,
        exchange: &str,
        routing_key: &str,
        opts: ProducerOptions,
    ) -> Result<Producer> {
        let conn = if routing_key.is_empty() { self.first.clone() } else { self.conn_for(routing_key).await? };
        let target = Target::Exchange { exchange: exchange.into(), routing_key: routing_key.into() };
        Producer::new(conn, target, opts)
    }

    /// Declares an exchange: `kind` is direct, fanout, topic or headers;
    /// `args` an AMQP field table (without its length), e.g. with
    /// `alternate-exchange`.
    pub async fn declare_exchange(&self, exchange: &str, kind: &str, o: ExchangeOptions<'_>) -> Result<()> {
        self.admit(|t| t.check_exchange(exchange))?;
        self.first.simple(cmds::exchange_declare(exchange, kind, o)).await?;
        self.record(|t| t.exchange_declared(exchange, kind, o));
        Ok(())
    }

    /// Checks that an exchange exists.
    pub async fn declare_exchange_passive(&self, exchange: &str) -> Result<()> {
        self.first.simple(cmds::exchange_passive(exchange)).await.map(|_| ())
    }

    /// Deletes an exchange (`if_unused`: only without bindings from it).
    pub async fn delete_exchange(&self, exchange: &str, if_unused: bool) -> Result<()> {
        self.first.simple(cmds::exchange_delete(exchange, if_unused)).await?;
        self.record(|t| t.exchange_deleted(exchange));
        Ok(())
    }

    /// Binds `queue` to `exchange` (`args`: an AMQP field table, for
    /// headers exchanges `x-match` and the header values).
    pub async fn bind_queue(&self, queue: &str, exchange: &str, routing_key: &str, args: &[u8]) -> Result<()> {
        let b = binding(false, exchange, queue, routing_key, args);
        self.admit(|t| t.check_binding(&b))?;
        let cmd = cmds::binding(false, false, exchange, queue, routing_key, args);
        self.conn_for(queue).await?.simple(cmd).await?;
        self.record(|t| t.bound(b));
        Ok(())
    }

    /// Removes a binding made with `bind_queue`.
    pub async fn unbind_queue(&self, queue: &str, exchange: &str, routing_key: &str, args: &[u8]) -> Result<()> {
        let cmd = cmds::binding(true, false, exchange, queue, routing_key, args);
        self.conn_for(queue).await?.simple(cmd).await?;
        self.record(|t| t.unbound(&binding(false, exchange, queue, routing_key, args)));
        Ok(())
    }

    /// Binds exchange `destination` to exchange `source`.
    pub async fn bind_exchange(&self, destination: &str, source: &str, routing_key: &str, args: &[u8]) -> Result<()> {
        let b = binding(true, source, destination, routing_key, args);
        self.admit(|t| t.check_binding(&b))?;
        let cmd = cmds::binding(false, true, source, destination, routing_key, args);
        self.first.simple(cmd).await?;
        self.record(|t| t.bound(b));
        Ok(())
    }

    /// Removes a binding made with `bind_exchange`.
    pub async fn unbind_exchange(&self, destination: &str, source: &str, routing_key: &str, args: &[u8]) -> Result<()> {
        let cmd = cmds::binding(true, true, source, destination, routing_key, args);
        self.first.simple(cmd).await?;
        self.record(|t| t.unbound(&binding(true, source, destination, routing_key, args)));
        Ok(())
    }

    /// Subscribes to `queue` with at most `prefetch` unacked deliveries.
    pub async fn subscribe(&self, queue: &str, prefetch: u32) -> Result<Consumer> {
        self.subscribe_with(queue, ConsumerOptions::new(prefetch)).await
    }

    /// `subscribe` with options beyond the prefetch (a consumer priority).
    pub async fn subscribe_with(&self, queue: &str, options: ConsumerOptions) -> Result<Consumer> {
        let id = self.next_id();
        Consumer::subscribe(self.conn_for(queue).await?, queue, id, options).await
    }

    /// Direct reply-to (RabbitMQ's `amq.rabbitmq.reply-to`; docs/client.md):
    /// a consumer of the replies sent to the returned name, with no queue
    /// behind it. Requests carry the name as their `reply_to` property
    /// (`PropsBuilder::reply_to`); a replier publishes to it as to a queue
    /// (AMQP: the default exchange, the name as the routing key). Replies
    /// are never acked (their tags are only counted), and are lost if
    /// this client is gone. One per client.
    pub async fn reply_consumer(&self) -> Result<(String, Consumer)> {
        Consumer::reply_to(self.first.clone(), self.next_id()).await
    }

    /// Pulls one message; it stays unacked until acked through the
    /// returned delivery's consumer id (see [`Client::ack_get`]).
    pub async fn get(&self, queue: &str, no_ack: bool) -> Result<Option<Delivery>> {
        // One pull consumer per queue: the broker keeps its unacked gets.
        let known = self.pull_ids.borrow().get(queue).copied();
        let id = known.unwrap_or_else(|| self.next_id());
        let r = self.conn_for(queue).await?.get(queue, id, no_ack).await;
        if known.is_none() && r.is_ok() && !no_ack {
            self.pull_ids.borrow_mut().insert(queue.to_string(), id);
        }
        r
    }

    /// Acks a message obtained with [`Client::get`]. A delivery from a
    /// socket that has since ended (recovery redialled) is refused with
    /// [`ClientError::StaleDelivery`] and nothing is sent: its tag could
    /// name another message on the new socket, and the broker requeued
    /// the message, which comes again flagged `redelivered`
    /// (docs/client-recovery.md, "Pull consumers across a reconnect").
    pub async fn ack_get(&self, queue: &str, d: &Delivery) -> Result<()> {
        self.conn_for(queue).await?.ack_now(d.consumer_id, d.tag, None).await
    }

    fn next_id(&self) -> u32 {
        let id = self.next_consumer_id.get();
        self.next_consumer_id.set(id.wrapping_add(1).max(1));
        id
    }

    /// Every connection this client opened, once each: the first, this
    /// node's shards' and, cluster-aware, other nodes' shards'.
    fn all_conns(&self) -> Vec<Rc<Conn>> {
        let mut all = vec![self.first.clone()];
        let shards = self.by_shard.borrow();
        for c in shards.iter().flatten().cloned().chain(self.routes.conns()) {
            if !all.iter().any(|a| Rc::ptr_eq(a, &c)) {
                all.push(c);
            }
        }
        all
    }

    /// Closes every connection after flushing what is queued on them. The
    /// closes run together: one to a broker that does not read (a frozen
    /// node) must not keep the others open, with their consumers' unacked
    /// deliveries held on the broker.
    pub async fn close(&self) {
        if let Some(hub) = &self.hub {
            hub.close();
        }
        let closing: Vec<_> =
            self.all_conns().into_iter().map(|c| glommio::spawn_local(async move { c.close().await })).collect();
        for task in closing {
            task.await;
        }
    }
}

/// A client dropped without [`Client::close`] (or while closing) still
/// closes its connections: what is queued is written, then each socket
/// shuts. Otherwise the reading tasks keep them open, and a broker keeps
/// the consumers on them, holding their unacked deliveries, for as long
/// as the process lives.
impl Drop for Client {
    fn drop(&mut self) {
        if let Some(hub) = &self.hub {
            hub.close();
        }
        for c in self.all_conns() {
            c.shut();
        }
    }
}

/// A binding as the recovery record keeps it.
fn binding(to_exchange: bool, source: &str, destination: &str, routing_key: &str, args: &[u8]) -> Binding {
    Binding {
        to_exchange,
        source: source.into(),
        destination: destination.into(),
        routing_key: routing_key.into(),
        args: args.to_vec(),
    }
}
