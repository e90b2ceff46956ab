//! One plain function per fuzz target: `fn(&[u8])` that panics on a
//! finding. The libFuzzer binaries (`fuzz/fuzz_targets/*.rs`) call them,
//! and so does `tests/fuzz_corpus.rs` (which includes this file by path),
//! so `cargo test` replays every committed seed on the stable toolchain.
//!
//! Each target takes bytes as an attacker would hand them over (a socket,
//! a file) and checks more than "no panic": that what a decoder accepts
//! re-encodes to what it read, that two decoders of the same bytes agree,
//! that recovery's result describes the files it read.

mod amqp;
mod config;
mod diff;
mod link;
mod native;
mod storage;

pub use amqp::{amqp_frame, amqp_props, table};
pub use config::config;
pub use diff::amqp_diff;
pub use link::{data_link, link};
pub use native::{decode, reply_name};
pub use storage::{definitions, record, recovery};

/// A target: panics on a finding.
pub type Target = fn(&[u8]);

/// Every target by name: the name is its binary and its seed directory.
pub const ALL: &[(&str, Target)] = &[
    ("decode", decode),
    ("amqp_frame", amqp_frame),
    ("amqp_diff", amqp_diff),
    ("amqp_props", amqp_props),
    ("table", table),
    ("record", record),
    ("recovery", recovery),
    ("definitions", definitions),
    ("config", config),
    ("link", link),
    ("data_link", data_link),
    ("reply_name", reply_name),
];
