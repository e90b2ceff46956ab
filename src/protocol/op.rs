//! Opcodes and per-opcode header flags. Values are part of the protocol.

pub const HELLO: u8 = 0x01;
pub const HELLO_OK: u8 = 0x02;
pub const OK: u8 = 0x03;
pub const ERROR: u8 = 0x04;
pub const PING: u8 = 0x05;
pub const PONG: u8 = 0x06;
/// Server notice: this connection is no longer read because a resource
/// alarm (memory, disk) is in effect; the body says why.
pub const BLOCKED: u8 = 0x07;
/// Server notice: the alarms cleared; the connection is read again.
pub const UNBLOCKED: u8 = 0x08;
/// Client to broker: send the cluster map (`protocol::cluster_map`).
pub const MAP_GET: u8 = 0x09;
/// Broker to client: the cluster map.
pub const MAP: u8 = 0x0A;
/// Broker to client: the cluster map changed (its new version).
pub const MAP_CHANGED: u8 = 0x0B;
/// Client to broker: where a queue lives (answered `Ok`).
pub const LOCATE: u8 = 0x17;
pub const DECLARE: u8 = 0x10;
pub const DELETE: u8 = 0x11;
pub const PURGE: u8 = 0x12;
pub const EXCHANGE_DECLARE: u8 = 0x13;
pub const EXCHANGE_DELETE: u8 = 0x14;
pub const BIND: u8 = 0x15;
pub const UNBIND: u8 = 0x16;
pub const PUBLISH: u8 = 0x20;
pub const CONFIRM: u8 = 0x21;
/// Publish through an exchange with a routing key.
pub const PUBLISH_TO: u8 = 0x22;
pub const SUBSCRIBE: u8 = 0x30;
pub const UNSUBSCRIBE: u8 = 0x31;
pub const DELIVER: u8 = 0x32;
/// Server to client: the broker cancelled a consumer (its unacked
/// messages went back to the queue), with an error code and why.
pub const CONSUMER_CANCELLED: u8 = 0x33;
/// Server to client: the answer to a Subscribe to the direct reply-to
/// pseudo-queue (`protocol::reply_to`): the generated name requests carry.
pub const REPLY_TO: u8 = 0x34;
/// Client to server: a consumer of a stream queue that starts at a given
/// position (`frame::StreamAt`); deliveries come as `Deliver` frames.
pub const STREAM_SUBSCRIBE: u8 = 0x35;
/// Client to server: store a stream consumer's offset under a reference
/// (server-side offset tracking); Ok once stored.
pub const STORE_OFFSET: u8 = 0x36;
/// Client to server: the offset stored under a reference: Ok(offset) or
/// Error `OffsetNotFound`.
pub const QUERY_OFFSET: u8 = 0x37;
pub const ACK: u8 = 0x40;
pub const NACK: u8 = 0x41;
pub const GET: u8 = 0x42;
pub const GET_OK: u8 = 0x43;
pub const GET_EMPTY: u8 = 0x44;
/// Operator commands (`ringmq ctl`), answered with `AdminOk` or `Error`.
pub const ADMIN: u8 = 0x50;
pub const ADMIN_OK: u8 = 0x51;

/// `Admin` commands (the body's first byte).
pub const ADMIN_LIST_QUEUES: u8 = 0x01;
pub const ADMIN_LIST_CONNECTIONS: u8 = 0x02;
pub const ADMIN_SHARDS: u8 = 0x03;
pub const ADMIN_PURGE_QUEUE: u8 = 0x04;
pub const ADMIN_DELETE_QUEUE: u8 = 0x05;
pub const ADMIN_CLOSE_CONNECTION: u8 = 0x06;
pub const ADMIN_LIST_EXCHANGES: u8 = 0x07;
pub const ADMIN_LIST_BINDINGS: u8 = 0x08;
/// Resource alarms: memory and disk against their thresholds.
pub const ADMIN_ALARMS: u8 = 0x09;
/// Sets the memory alarm's threshold (the argument: bytes, in decimal)
/// until the broker restarts.
pub const ADMIN_SET_MEMORY_HIGH_WATERMARK: u8 = 0x0A;
/// Sets the disk alarm's threshold (bytes, in decimal) until restart.
pub const ADMIN_SET_DISK_FREE_LIMIT: u8 = 0x0B;
/// Users (`docs/protocol.md`, "Admin"): every user with its tags and
/// password hash (no argument).
pub const ADMIN_LIST_USERS: u8 = 0x0C;
/// Adds a user; the argument is JSON: `{"name", "password" or
/// "password_hash", "tags": [...]}`. An existing name is refused.
pub const ADMIN_ADD_USER: u8 = 0x0D;
/// Deletes a user; the argument is its name.
pub const ADMIN_DELETE_USER: u8 = 0x0E;
/// `{"name", "password" or "password_hash"}`.
pub const ADMIN_CHANGE_PASSWORD: u8 = 0x0F;
/// `{"name", "tags": [...]}`: replaces the user's tags.
pub const ADMIN_SET_USER_TAGS: u8 = 0x10;
/// Every user's permissions (no argument).
pub const ADMIN_LIST_PERMISSIONS: u8 = 0x11;
/// `{"user", "vhost", "configure", "write", "read"}`: RabbitMQ's three
/// regular expressions for the user in the vhost.
pub const ADMIN_SET_PERMISSIONS: u8 = 0x12;
/// `{"user", "vhost"}`: the user may do nothing there.
pub const ADMIN_CLEAR_PERMISSIONS: u8 = 0x13;
/// No argument: every vhost, as `[{"name"}]`.
pub const ADMIN_LIST_VHOSTS: u8 = 0x14;
/// The vhost's name: it is created (refused if it exists).
pub const ADMIN_ADD_VHOST: u8 = 0x15;
/// The vhost's name: it is deleted, and every user's permissions in it.
pub const ADMIN_DELETE_VHOST: u8 = 0x16;
/// No argument: the cluster as this node sees it, as `{"cluster_id",
/// "node", "leader", "term", "nodes": [{"name", "id", "state", "voter",
/// "leader", "cluster_addr", "native_addr", "shard_addrs", "amqp_addr",
/// "http_addr"}]}`; a node that is not clustered shows itself alone.
pub const ADMIN_CLUSTER_STATUS: u8 = 0x17;
/// A node's name: it is removed from the cluster.
pub const ADMIN_FORGET_NODE: u8 = 0x18;
/// A member's link address (`HOST:PORT`): this node, alone in its own
/// cluster, leaves it and joins that member's.
pub const ADMIN_JOIN_CLUSTER: u8 = 0x19;
/// No argument: the node as `ringmq ctl status` shows it (`{"node",
/// "ready", "uptime_ms", "listeners", "alarms", ...}`,
/// `server::health::status_json`).
pub const ADMIN_STATUS: u8 = 0x1A;
/// No argument: every definition in RabbitMQ's JSON format (`GET
/// /api/definitions`), password hashes included.
pub const ADMIN_EXPORT_DEFINITIONS: u8 = 0x1B;
/// One part of a definitions document to import: `+` then the bytes when
/// more parts follow (answered `{"received": bytes so far}`), `.` then
/// the bytes for the last (answered with what was imported, or
/// `{"error"}`); `server::definitions::upload`.
pub const ADMIN_IMPORT_DEFINITIONS: u8 = 0x1C;
/// No argument (any other is refused): every consumer on the node, as
/// `[{"queue", "vhost", "shard", "connection", "consumer_id", "prefetch",
/// "unacked", "priority", "exclusive"}]` (`ringmq ctl list-consumers`).
pub const ADMIN_LIST_CONSUMERS: u8 = 0x1D;
/// The highest defined `Admin` command.
pub const ADMIN_COMMAND_MAX: u8 = ADMIN_LIST_CONSUMERS;

/// Whether an `Admin` command needs the administrator tag; the others need
/// management, monitoring or administrator. As in RabbitMQ, users are the
/// administrator's even to list.
pub fn admin_needs_administrator(command: u8) -> bool {
    matches!(
        command,
        ADMIN_PURGE_QUEUE
            | ADMIN_DELETE_QUEUE
            | ADMIN_CLOSE_CONNECTION
            | ADMIN_SET_MEMORY_HIGH_WATERMARK
            | ADMIN_SET_DISK_FREE_LIMIT
            | ADMIN_LIST_USERS
            | ADMIN_ADD_USER
            | ADMIN_DELETE_USER
            | ADMIN_CHANGE_PASSWORD
            | ADMIN_SET_USER_TAGS
            | ADMIN_LIST_PERMISSIONS
            | ADMIN_SET_PERMISSIONS
            | ADMIN_CLEAR_PERMISSIONS
            | ADMIN_ADD_VHOST
            | ADMIN_DELETE_VHOST
            | ADMIN_FORGET_NODE
            | ADMIN_JOIN_CLUSTER
            | ADMIN_EXPORT_DEFINITIONS
            | ADMIN_IMPORT_DEFINITIONS
    )
}

/// `Error`: the server closes the connection after this frame.
pub const FLAG_FATAL: u8 = 0x01;
/// `Hello`: a heartbeat (0 = none) and a vhost follow the password.
pub const HELLO_VHOST: u8 = 0x01;
/// `Declare`: the queue is durable (kept across restarts once storage lands).
pub const DECLARE_DURABLE: u8 = 0x01;
/// `Declare`: only check that the queue exists.
pub const DECLARE_PASSIVE: u8 = 0x02;
/// `Declare`: an arguments block (`u32` length + AMQP field table) follows
/// the queue name.
pub const DECLARE_HAS_ARGS: u8 = 0x04;
pub const DECLARE_KNOWN: u8 = DECLARE_DURABLE | DECLARE_PASSIVE | DECLARE_HAS_ARGS;
/// The largest arguments block a Declare may carry.
pub const DECLARE_ARGS_BYTES_MAX: usize = 65_535;
/// `Delete`: refuse when the queue holds messages.
pub const DELETE_IF_EMPTY: u8 = 0x01;
/// `Delete`: refuse while the queue has consumers.
pub const DELETE_IF_UNUSED: u8 = 0x02;
pub const DELETE_KNOWN: u8 = DELETE_IF_EMPTY | DELETE_IF_UNUSED;
/// `Publish`: messages are persistent.
pub const PUBLISH_PERSISTENT: u8 = 0x01;
/// `Publish`: reply with `Confirm` once the batch is safe.
pub const PUBLISH_CONFIRM: u8 = 0x02;
pub const PUBLISH_KNOWN: u8 = PUBLISH_PERSISTENT | PUBLISH_CONFIRM;
/// `PublishTo`: a batch routed to no queue is refused with `NoRoute`
/// instead of being confirmed and dropped.
pub const PUBLISH_MANDATORY: u8 = 0x04;
pub const PUBLISH_TO_KNOWN: u8 = PUBLISH_PERSISTENT | PUBLISH_CONFIRM | PUBLISH_MANDATORY;
/// `ExchangeDeclare` flags.
pub const EXCHANGE_DURABLE: u8 = 0x01;
pub const EXCHANGE_PASSIVE: u8 = 0x02;
pub const EXCHANGE_AUTO_DELETE: u8 = 0x04;
pub const EXCHANGE_INTERNAL: u8 = 0x08;
pub const EXCHANGE_DECLARE_KNOWN: u8 = EXCHANGE_DURABLE | EXCHANGE_PASSIVE | EXCHANGE_AUTO_DELETE | EXCHANGE_INTERNAL;
/// `ExchangeDelete`: refuse while the exchange has bindings.
pub const EXCHANGE_IF_UNUSED: u8 = 0x01;
/// `Bind` / `Unbind`: the destination is an exchange, not a queue.
pub const BIND_TO_EXCHANGE: u8 = 0x01;
/// `Subscribe`: a consumer priority (`i64`, not 0) follows the queue name;
/// without the flag the priority is 0.
pub const SUBSCRIBE_PRIORITY: u8 = 0x01;
/// `Subscribe`, `StreamSubscribe`: this consumer's `Deliver` frames carry
/// the exchange and routing key (`DELIVER_ORIGIN`). Without it they do
/// not, and the broker does no work for them.
pub const SUBSCRIBE_ORIGIN: u8 = 0x02;
/// `Deliver`: the exchange and routing key (two short strings) follow
/// `first_tag`; every entry of the frame was published with them.
pub const DELIVER_ORIGIN: u8 = 0x01;
/// `Nack`: put the messages back at the head of the queue.
pub const NACK_REQUEUE: u8 = 0x01;
/// `Get`: the message counts as acked once sent.
pub const GET_NO_ACK: u8 = 0x01;

/// The header flags `opcode` defines; any other bit set is a malformed
/// frame. Opcodes not listed define none.
pub fn known_flags(opcode: u8) -> u8 {
    match opcode {
        ERROR => FLAG_FATAL,
        HELLO => HELLO_VHOST,
        DECLARE => DECLARE_KNOWN,
        DELETE => DELETE_KNOWN,
        PUBLISH => PUBLISH_KNOWN,
        PUBLISH_TO => PUBLISH_TO_KNOWN,
        EXCHANGE_DECLARE => EXCHANGE_DECLARE_KNOWN,
        EXCHANGE_DELETE => EXCHANGE_IF_UNUSED,
        BIND | UNBIND => BIND_TO_EXCHANGE,
        SUBSCRIBE => SUBSCRIBE_PRIORITY | SUBSCRIBE_ORIGIN,
        STREAM_SUBSCRIBE => SUBSCRIBE_ORIGIN,
        DELIVER => DELIVER_ORIGIN,
        NACK => NACK_REQUEUE,
        GET => GET_NO_ACK,
        _ => 0,
    }
}

pub fn is_known(opcode: u8) -> bool {
    name(opcode) != "unknown"
}

pub fn name(opcode: u8) -> &'static str {
    match opcode {
        HELLO => "Hello",
        HELLO_OK => "HelloOk",
        OK => "Ok",
        ERROR => "Error",
        PING => "Ping",
        PONG => "Pong",
        BLOCKED => "Blocked",
        UNBLOCKED => "Unblocked",
        MAP_GET => "MapGet",
        MAP => "Map",
        MAP_CHANGED => "MapChanged",
        LOCATE => "Locate",
        DECLARE => "Declare",
        DELETE => "Delete",
        PURGE => "Purge",
        EXCHANGE_DECLARE => "ExchangeDeclare",
        EXCHANGE_DELETE => "ExchangeDelete",
        BIND => "Bind",
        UNBIND => "Unbind",
        PUBLISH_TO => "PublishTo",
        PUBLISH => "Publish",
        CONFIRM => "Confirm",
        SUBSCRIBE => "Subscribe",
        UNSUBSCRIBE => "Unsubscribe",
        DELIVER => "Deliver",
        CONSUMER_CANCELLED => "ConsumerCancelled",
        REPLY_TO => "ReplyTo",
        STREAM_SUBSCRIBE => "StreamSubscribe",
        STORE_OFFSET => "StoreOffset",
        QUERY_OFFSET => "QueryOffset",
        ACK => "Ack",
        NACK => "Nack",
        GET => "Get",
        GET_OK => "GetOk",
        GET_EMPTY => "GetEmpty",
        ADMIN => "Admin",
        ADMIN_OK => "AdminOk",
        _ => "unknown",
    }
}
