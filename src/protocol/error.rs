//! Stable numeric error codes (never renumber) and the codec's error type.

/// Error codes carried by `Error` frames. Values are part of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    BadFrame = 1,
    FrameTooLarge = 2,
    TruncatedFrame = 3,
    HandshakeRequired = 4,
    AlreadyHandshaken = 5,
    AuthFailed = 6,
    VersionUnsupported = 7,
    FrameTimeout = 8,
    QueueNotFound = 10,
    QueueMismatch = 11,
    QueueLimit = 12,
    QueueFull = 13,
    MessageTooLarge = 14,
    BadQueueName = 15,
    /// The queue is exclusive to another connection (AMQP 405).
    QueueLocked = 16,
    /// A Declare argument has the wrong type or is out of range (AMQP 406).
    InvalidArgument = 17,
    ExchangeNotFound = 18,
    /// A redeclare with another type or flags (AMQP 406).
    ExchangeMismatch = 19,
    /// `PublishTo` with MANDATORY reached no queue (AMQP 312 NO_ROUTE).
    NoRoute = 26,
    UnknownConsumer = 20,
    UnknownDeliveryTag = 21,
    ConsumerExists = 22,
    PrefetchOutOfRange = 23,
    ConsumerLimit = 24,
    /// The default exchange or an `amq.*` one cannot be changed (AMQP 403).
    AccessRefused = 25,
    ConnectionLimit = 30,
    ShardUnavailable = 31,
    ShuttingDown = 32,
    StoragePoisoned = 40,
    PersistenceUnavailable = 41,
    Internal = 50,
    /// A field table (queue, exchange or binding arguments) nests deeper
    /// than the broker's `table_depth_max`. Fatal: the frame is hostile or
    /// broken.
    TableTooDeep = 60,
    /// The handshake did not finish within `handshake_timeout_ms` of accept.
    HandshakeTimeout = 63,
    /// Nothing arrived for two negotiated heartbeat intervals.
    HeartbeatTimeout = 64,
    /// The shard holds `unauthenticated_connections_max` connections that
    /// have not logged in: this one was the oldest, evicted for a newcomer.
    UnauthenticatedLimit = 65,
    /// A consumer left a delivery unacked past `consumer_timeout_ms`: the
    /// broker cancelled it (`ConsumerCancelled`) and requeued its unacked
    /// messages (AMQP: channel closed with 406).
    ConsumerTimeout = 67,
    /// A configured count limit (`exchanges_max`, `bindings_max`) is
    /// reached (AMQP 406 PRECONDITION_FAILED, as RabbitMQ's limits).
    DefinitionLimit = 68,
    /// Too many operator requests in flight (`admin_requests_per_shard_max`,
    /// one snapshot at a time per connection): try again later.
    AdminBusy = 69,
    /// The vhost a Hello named does not exist (AMQP 530 NOT_ALLOWED).
    /// Fatal: the connection never logged in.
    VhostNotFound = 70,
    /// The disk holding the shard's log is full (a write failed with
    /// ENOSPC, or the broker started on a full disk): persistent messages
    /// for durable queues (and durable declares) are refused until space
    /// is freed and the broker restarted. Transient traffic, deliveries
    /// and acks go on. AMQP: basic.nack under confirms, else connection
    /// error 506 RESOURCE_ERROR.
    StorageFull = 42,
    /// A metadata change (a declare, a bind, a delete) that the cluster
    /// could not commit: no majority of the nodes is reachable from this
    /// one, or no leader answered in time. Not fatal: try again, or on a
    /// node in the majority. AMQP: a channel error.
    ClusterUnavailable = 71,
    /// The queue lives on a node this one cannot reach now (down, or cut
    /// off): its messages return with the node. Not fatal. AMQP: 404
    /// NOT_FOUND on the channel, as RabbitMQ answers for a classic queue
    /// whose home node is down.
    NodeUnavailable = 72,
    /// An operation a stream queue (`x-queue-type: stream`) does not
    /// support: a get, a purge, a consumer with automatic acks. Not
    /// fatal on the native protocol. AMQP: 540 NOT_IMPLEMENTED, a
    /// connection error, as RabbitMQ answers.
    StreamUnsupported = 83,
    /// No offset is stored for that reference on that stream (server-side
    /// offset tracking, `QueryOffset`). Not fatal.
    OffsetNotFound = 84,
}

impl ErrorCode {
    pub fn from_u16(v: u16) -> Option<Self> {
        use ErrorCode::*;
        Some(match v {
            1 => BadFrame,
            2 => FrameTooLarge,
            3 => TruncatedFrame,
            4 => HandshakeRequired,
            5 => AlreadyHandshaken,
            6 => AuthFailed,
            7 => VersionUnsupported,
            8 => FrameTimeout,
            10 => QueueNotFound,
            11 => QueueMismatch,
            12 => QueueLimit,
            13 => QueueFull,
            14 => MessageTooLarge,
            15 => BadQueueName,
            16 => QueueLocked,
            17 => InvalidArgument,
            18 => ExchangeNotFound,
            19 => ExchangeMismatch,
            26 => NoRoute,
            20 => UnknownConsumer,
            21 => UnknownDeliveryTag,
            22 => ConsumerExists,
            23 => PrefetchOutOfRange,
            24 => ConsumerLimit,
            25 => AccessRefused,
            30 => ConnectionLimit,
            31 => ShardUnavailable,
            32 => ShuttingDown,
            40 => StoragePoisoned,
            41 => PersistenceUnavailable,
            50 => Internal,
            60 => TableTooDeep,
            63 => HandshakeTimeout,
            64 => HeartbeatTimeout,
            65 => UnauthenticatedLimit,
            67 => ConsumerTimeout,
            68 => DefinitionLimit,
            69 => AdminBusy,
            70 => VhostNotFound,
            42 => StorageFull,
            71 => ClusterUnavailable,
            72 => NodeUnavailable,
            83 => StreamUnsupported,
            84 => OffsetNotFound,
            _ => return None,
        })
    }

    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// Whether the stream can no longer be trusted after this error, so
    /// the connection is closed once the error frame is written.
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            ErrorCode::BadFrame
                | ErrorCode::FrameTooLarge
                | ErrorCode::TruncatedFrame
                | ErrorCode::HandshakeRequired
                | ErrorCode::AuthFailed
                | ErrorCode::VhostNotFound
                | ErrorCode::VersionUnsupported
                | ErrorCode::FrameTimeout
                | ErrorCode::ConnectionLimit
                | ErrorCode::ShuttingDown
                | ErrorCode::TableTooDeep
                | ErrorCode::HandshakeTimeout
                | ErrorCode::HeartbeatTimeout
                | ErrorCode::UnauthenticatedLimit
        )
    }
}

/// What the decoder found wrong with the bytes it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {len} bytes exceeds frame_bytes_max {max}")]
    TooLarge { len: usize, max: usize },
    #[error("unknown opcode 0x{0:02x}")]
    UnknownOpcode(u8),
    #[error("reserved header bits set (0x{0:04x}): not a ringmq stream")]
    Reserved(u16),
    #[error("malformed {what}: {why}")]
    Malformed { what: &'static str, why: &'static str },
    /// Declare arguments nest deeper than the decoder's table depth limit.
    #[error("{what} arguments: {err}")]
    Table { what: &'static str, err: super::field_table::TableError },
}

impl DecodeError {
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            DecodeError::Table { err: super::field_table::TableError::TooDeep { .. }, .. } => ErrorCode::TableTooDeep,
            _ => ErrorCode::BadFrame,
        }
    }
}
