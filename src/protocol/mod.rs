//! The native protocol: a sans-IO codec shared by the broker and the client.
//! `decode(&[u8])` returns `Incomplete` or a borrowed frame and its length;
//! encoding appends to a `BytesMut`. No sockets in here. The byte layout is
//! documented in `docs/protocol.md`.
//!
//! [`amqp`] is the AMQP 0-9-1 codec, sans-IO in the same way, shared by
//! the broker's AMQP front end and AMQP clients (the load generator).
//! [`link`] is the inter-node link's (cluster members' Raft RPCs).

// Lengths written into length fields go through `wire::len32`/`len16`
// (or are cut first), never a silent `as` that could mis-frame.
#![deny(clippy::cast_possible_truncation)]

pub mod amqp;
pub mod batch;
pub mod cluster_map;
pub mod error;
pub mod field_table;
pub mod frame;
pub mod header;
pub mod link;
pub mod op;
pub mod props;
#[cfg(test)]
mod proptests;
pub mod reply_to;
pub mod shard_hash;
pub mod vhost;
pub mod wire;

pub use batch::{BatchWriter, Entries, Entry, Ranges, ENTRY_REDELIVERED};
pub use error::{DecodeError, ErrorCode};
pub use frame::{decode, encode_ack, Cmd, Decoded, DeliverOrigin, Frame, HelloOk, StreamAt, MAGIC, VERSION};
pub use header::{FrameHeader, HEADER_BYTES};
pub use shard_hash::{shard_for, HASH_ID};
