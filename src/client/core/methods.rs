//! The async clients' public calls that are the same in both shells but
//! for the connection type (`Rc<Conn>` on glommio, `Arc<Conn>` on tokio):
//! the admin calls, producers, subscriptions and pull, written once as a
//! macro each shell's `impl Client` expands.

/// Expands, inside a shell's `impl Client`, to the calls both shells share
/// to the letter: `info`, `events`, `is_tls`, declares, deletes and purges, exchanges and bindings,
/// producers, subscriptions and `get`, and the recovery record's helpers
/// (`record`, `admit`).
///
/// Needs from the shell, by name: `self.info`, `self.hub`, `self.dialer`,
/// `self.first` (the first connection),
/// `self.conn_for(queue)`, `self.next_id()`, `self.topology()` (the
/// recovery record, when recovery is on), `self.pull_ids()` (the pull
/// consumers' ids by queue), and `Producer`, `Consumer` and
/// `Events`, `ServerInfo`, `ProducerOptions`/`ConsumerOptions`/`ExchangeOptions`/`Delivery`/`Target`
/// in scope. The rustdoc of the calls whose wording differs between the
/// shells comes with the invocation (for `events`, `reply_consumer` and `get`, what
/// follows the words they share).
#[cfg(any(feature = "glommio", feature = "tokio"))]
macro_rules! shell_client_methods {
    (
        $(#[$events:meta])* events;
        $(#[$declare_exchange:meta])* declare_exchange;
        $(#[$unbind_queue:meta])* unbind_queue;
        $(#[$unbind_exchange:meta])* unbind_exchange;
        $(#[$reply_consumer:meta])* reply_consumer;
        $(#[$get:meta])* get;
    ) => {
        /// What the first connection's handshake said (shards, limits).
        pub fn info(&self) -> &ServerInfo {
            &self.info
        }

        /// What recovery did (`ClientOptions::recovery`; docs/client-recovery.md,
        /// "Recovery"): a `Stream` of [`crate::client::Event`]s, ending when the
        /// client closes or recovery gives up. Events wait in a bounded queue
        $(#[$events])*
        pub fn events(&self) -> Events {
            Events::new(self.hub.clone())
        }

        /// Whether this client's connections are TLS.
        pub fn is_tls(&self) -> bool {
            self.dialer.is_tls()
        }

        /// Runs `f` on the recovery record, when recovery is on.
        fn record(&self, f: impl FnOnce(&mut $crate::client::core::topology::Topology)) {
            if let Some(mut t) = self.topology() {
                f(&mut t);
            }
        }

        /// Refuses a new record past `Recovery::records_max` before anything
        /// is sent.
        fn admit(&self, f: impl FnOnce(&$crate::client::core::topology::Topology) -> Result<()>) -> Result<()> {
            match self.topology() {
                Some(t) => f(&t),
                None => Ok(()),
            }
        }

        /// Declares a queue; returns its ready count.
        pub async fn declare(&self, queue: &str, durable: bool) -> Result<u64> {
            self.declare_with(queue, durable, &[]).await
        }

        /// Declares with queue arguments (policies: TTL, length limits,
        /// dead-lettering, priorities...), a raw AMQP field table as built by
        /// [`protocol::field_table::TableBuilder`](crate::protocol::field_table::TableBuilder).
        /// A redeclare must repeat them.
        pub async fn declare_with(&self, queue: &str, durable: bool, args: &[u8]) -> Result<u64> {
            self.admit(|t| t.check_queue(queue))?;
            let flags = $crate::client::core::cmds::declare_flags(durable);
            let n = self.conn_for(queue).await?.simple($crate::protocol::Cmd::Declare { flags, queue, args }).await?;
            self.record(|t| t.queue_declared(queue, durable, args));
            Ok(n)
        }

        /// Checks that a queue exists; returns its ready count.
        pub async fn declare_passive(&self, queue: &str) -> Result<u64> {
            let cmd = $crate::protocol::Cmd::Declare { flags: $crate::protocol::op::DECLARE_PASSIVE, queue, args: &[] };
            self.conn_for(queue).await?.simple(cmd).await
        }

        /// Deletes a queue; returns the messages it held.
        pub async fn delete(&self, queue: &str) -> Result<u64> {
            let n = self.conn_for(queue).await?.simple($crate::protocol::Cmd::Delete { flags: 0, queue }).await?;
            self.record(|t| t.queue_deleted(queue));
            Ok(n)
        }

        /// Empties a queue; returns the messages removed.
        pub async fn purge(&self, queue: &str) -> Result<u64> {
            self.conn_for(queue).await?.simple($crate::protocol::Cmd::Purge { queue }).await
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

        $(#[$declare_exchange])*
        pub async fn declare_exchange(&self, exchange: &str, kind: &str, o: ExchangeOptions<'_>) -> Result<()> {
            self.admit(|t| t.check_exchange(exchange))?;
            self.first.simple($crate::client::core::cmds::exchange_declare(exchange, kind, o)).await?;
            self.record(|t| t.exchange_declared(exchange, kind, o));
            Ok(())
        }

        /// Checks that an exchange exists.
        pub async fn declare_exchange_passive(&self, exchange: &str) -> Result<()> {
            self.first.simple($crate::client::core::cmds::exchange_passive(exchange)).await.map(|_| ())
        }

        /// Deletes an exchange (`if_unused`: only without bindings from it).
        pub async fn delete_exchange(&self, exchange: &str, if_unused: bool) -> Result<()> {
            self.first.simple($crate::client::core::cmds::exchange_delete(exchange, if_unused)).await?;
            self.record(|t| t.exchange_deleted(exchange));
            Ok(())
        }

        /// Binds `queue` to `exchange` (`args`: an AMQP field table, for
        /// headers exchanges `x-match` and the header values).
        pub async fn bind_queue(&self, queue: &str, exchange: &str, routing_key: &str, args: &[u8]) -> Result<()> {
            let b = $crate::client::core::topology::Binding::new(false, exchange, queue, routing_key, args);
            self.admit(|t| t.check_binding(&b))?;
            let cmd = $crate::client::core::cmds::binding(false, false, exchange, queue, routing_key, args);
            self.conn_for(queue).await?.simple(cmd).await?;
            self.record(|t| t.bound(b));
            Ok(())
        }

        $(#[$unbind_queue])*
        pub async fn unbind_queue(&self, queue: &str, exchange: &str, routing_key: &str, args: &[u8]) -> Result<()> {
            let cmd = $crate::client::core::cmds::binding(true, false, exchange, queue, routing_key, args);
            self.conn_for(queue).await?.simple(cmd).await?;
            self.record(|t| t.unbound(&$crate::client::core::topology::Binding::new(false, exchange, queue, routing_key, args)));
            Ok(())
        }

        /// Binds exchange `destination` to exchange `source`.
        pub async fn bind_exchange(&self, destination: &str, source: &str, routing_key: &str, args: &[u8]) -> Result<()> {
            let b = $crate::client::core::topology::Binding::new(true, source, destination, routing_key, args);
            self.admit(|t| t.check_binding(&b))?;
            let cmd = $crate::client::core::cmds::binding(false, true, source, destination, routing_key, args);
            self.first.simple(cmd).await?;
            self.record(|t| t.bound(b));
            Ok(())
        }

        $(#[$unbind_exchange])*
        pub async fn unbind_exchange(&self, destination: &str, source: &str, routing_key: &str, args: &[u8]) -> Result<()> {
            let cmd = $crate::client::core::cmds::binding(true, true, source, destination, routing_key, args);
            self.first.simple(cmd).await?;
            self.record(|t| t.unbound(&$crate::client::core::topology::Binding::new(true, source, destination, routing_key, args)));
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
        $(#[$reply_consumer])*
        pub async fn reply_consumer(&self) -> Result<(String, Consumer)> {
            Consumer::reply_to(self.first.clone(), self.next_id()).await
        }

        /// Pulls one message; it stays unacked until acked through the
        $(#[$get])*
        pub async fn get(&self, queue: &str, no_ack: bool) -> Result<Option<Delivery>> {
            // One pull consumer per queue: the broker keeps its unacked gets.
            let known = self.pull_ids().get(queue).copied();
            let id = known.unwrap_or_else(|| self.next_id());
            let r = self.conn_for(queue).await?.get(queue, id, no_ack).await;
            if known.is_none() && r.is_ok() && !no_ack {
                self.pull_ids().insert(queue.to_string(), id);
            }
            r
        }

        /// Acks a message obtained with [`Client::get`]. A delivery from a
        /// socket that has since ended (recovery redialled) is refused with
        /// [`ClientError::StaleDelivery`](crate::client::ClientError::StaleDelivery)
        /// and nothing is sent: its tag could
        /// name another message on the new socket, and the broker requeued
        /// the message, which comes again flagged `redelivered`
        /// (docs/client-recovery.md, "Pull consumers across a reconnect").
        pub async fn ack_get(&self, queue: &str, d: &Delivery) -> Result<()> {
            self.conn_for(queue).await?.ack_now(d.consumer_id, d.tag, None).await
        }
    };
}
#[cfg(any(feature = "glommio", feature = "tokio"))]
pub(crate) use shell_client_methods;
