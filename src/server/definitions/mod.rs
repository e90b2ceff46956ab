//! Definitions export and import in RabbitMQ's JSON format (`GET`/`POST
//! /api/definitions`, `ringmq ctl export-definitions` / `import-definitions`,
//! `load_definitions` in the config): vhosts, users (RabbitMQ's
//! `rabbit_password_hashing_sha256` hashes, which ringmq stores as they
//! are), permissions, exchanges, queues with their arguments, bindings.
//!
//! An import is all or nothing as far as the rules go: the document is
//! read and every item checked ([`parse`]), then checked against what the
//! broker holds and its limits ([`apply::check`]); only then is anything
//! applied. What ringmq cannot honour (policies, an unknown queue
//! argument, a quorum queue, an unknown exchange type ...) is refused with
//! its name. A failure while applying (a disk error, a shard that does
//! not answer) stops there and says how far it got.

mod apply;
mod args;
mod batch;
pub mod boot;
mod export;
mod parse;
pub mod upload;

pub use apply::{import, ImportError, Imported};
pub use export::export;
pub use parse::parse;

use crate::auth::password::PasswordHash;
use crate::auth::permissions::Permission;
use crate::routing::{BindingDef, ExchangeDef};
use crate::server::config::Config;
use crate::server::policy::QueueArgs;
use crate::server::shard::Shard;
use crate::server::types::ConnRef;
use std::sync::Arc;

/// A definitions document, read and checked.
#[derive(Debug, Default)]
pub struct Definitions {
    pub vhosts: Vec<String>,
    pub users: Vec<UserItem>,
    pub permissions: Vec<PermissionItem>,
    pub exchanges: Vec<ExchangeItem>,
    pub queues: Vec<QueueItem>,
    pub bindings: Vec<BindingItem>,
    /// What was read but is not a definition ringmq keeps (the RabbitMQ
    /// version, a vhost's description): told to the caller, not dropped
    /// silently.
    pub notes: Vec<String>,
}

#[derive(Debug)]
pub struct UserItem {
    pub name: String,
    pub hash: PasswordHash,
    pub tags: Vec<String>,
}

#[derive(Debug)]
pub struct PermissionItem {
    pub user: String,
    pub vhost: String,
    pub permission: Arc<Permission>,
}

/// Names are qualified with the vhost, as the core keys them.
#[derive(Debug)]
pub struct ExchangeItem {
    pub vhost: String,
    pub def: ExchangeDef,
}

#[derive(Debug)]
pub struct QueueItem {
    pub vhost: String,
    pub name: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub args: QueueArgs,
}

#[derive(Debug)]
pub struct BindingItem {
    pub vhost: String,
    pub def: BindingDef,
}

/// The most items of each kind a document may hold: the broker's own
/// limits, so a document is refused before it is read whole.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub vhosts: usize,
    pub users: usize,
    pub permissions: usize,
    pub exchanges: usize,
    pub queues: usize,
    pub bindings: usize,
    pub table_depth: u32,
}

impl Limits {
    pub fn of(config: &Config) -> Self {
        let n = |v: u32| usize::try_from(v).unwrap_or(usize::MAX);
        let queues = n(config.queues_per_shard_max).saturating_mul(config.shard_count());
        Self {
            vhosts: n(config.vhosts_max),
            users: n(config.users_max),
            permissions: n(config.users_max).saturating_mul(n(config.vhosts_max)),
            exchanges: n(config.exchanges_max),
            queues,
            bindings: n(config.bindings_max),
            table_depth: config.table_depth_max,
        }
    }
}

/// Reads a document's bytes: at most `definitions_bytes_max` (the caller
/// has bounded them already; checked again here), JSON, then [`parse`].
pub fn read(bytes: &[u8], only_vhost: Option<&str>, config: &Config) -> Result<Definitions, String> {
    let max = config.definitions_bytes_max;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > max {
        return Err(format!("the document is {} bytes; definitions_bytes_max is {max}", bytes.len()));
    }
    let doc: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    parse(&doc, only_vhost, &Limits::of(config))
}

/// Reads the file `load_definitions` names, within `definitions_bytes_max`.
pub fn read_file(path: &std::path::Path, config: &Config) -> Result<Definitions, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    let max = config.definitions_bytes_max;
    f.take(max.saturating_add(1)).read_to_end(&mut bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    read(&bytes, None, config).map_err(|e| format!("{}: {e}", path.display()))
}

/// `ctl import-definitions`' parts (`upload`): the answer to one.
pub async fn import_part(shard: &Shard, conn: ConnRef, arg: &str) -> serde_json::Value {
    let max = shard.config.definitions_bytes_max;
    let doc = match upload::part(conn, arg, max) {
        Ok(upload::Part::More(n)) => return serde_json::json!({ "received": n }),
        Ok(upload::Part::Done(doc)) => doc,
        Err(e) => return serde_json::json!({ "error": e }),
    };
    let done = match read(&doc, None, &shard.config) {
        Ok(d) => import(shard, d).await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    match done {
        Ok(done) => serde_json::to_value(done).unwrap_or_default(),
        Err(e) => serde_json::json!({ "error": e }),
    }
}

#[cfg(test)]
mod tests;
