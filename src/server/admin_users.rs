//! User management for operators (`ringmq ctl add-user` and the rest, and
//! `/api/users`): requests are turned into a [`UserChange`] on the shard
//! that took them (a password is hashed here and goes no further), and
//! shard 0 applies the change everywhere (`shard/users.rs`).

use super::shard::Shard;
use super::stats::{AdminReply, AdminReq};
use crate::auth::change::{ChangeError, UserChange};
use crate::auth::password::{PasswordHash, ALGORITHM};
use crate::auth::permissions::{Permission, DEFAULT_VHOST};
use crate::protocol::op;
use serde_json::{json, Value};
use std::rc::Rc;

/// Why a user change failed: refused by the rules (the caller's mistake),
/// or applied but not confirmed stored everywhere (the broker's trouble).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserChangeFailed {
    #[error("{0}")]
    Refused(#[from] ChangeError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotStored(String),
}

/// Sends a change to shard 0 and waits for its answer.
pub async fn change(shard: &Shard, change: UserChange) -> Result<(), UserChangeFailed> {
    let metadata = crate::server::shard::routing_replica::METADATA_SHARD;
    // A clustered node's change waits on the group (up to its own 10 s
    // deadline, then the node's shards): longer than a gather.
    let wait = crate::server::cluster::node::CLUSTER_COMMAND_WAIT;
    let reply = shard.admin_within(&[metadata], wait, |_| AdminReq::Users(change.clone())).await;
    match reply.into_iter().next() {
        Some((_, AdminReply::Users(r))) => r,
        Some((_, AdminReply::Done(Err(e)))) => Err(UserChangeFailed::NotStored(e)),
        _ => Err(UserChangeFailed::NotStored("shard 0 did not answer".into())),
    }
}

/// A password hash from a request: `password` (hashed here) or RabbitMQ's
/// `password_hash` (with `hashing_algorithm`, if given, RabbitMQ's sha256).
pub fn hash_from(body: &Value) -> Result<PasswordHash, UserChangeFailed> {
    let bad = |why: &str| UserChangeFailed::BadRequest(why.into());
    if let Some(a) = body.get("hashing_algorithm").and_then(Value::as_str) {
        if a != ALGORITHM {
            return Err(bad("only rabbit_password_hashing_sha256 hashes are supported"));
        }
    }
    match (body.get("password").and_then(Value::as_str), body.get("password_hash").and_then(Value::as_str)) {
        (Some(p), None) => PasswordHash::new(p.as_bytes()).map_err(|e| UserChangeFailed::NotStored(e.to_string())),
        (None, Some(h)) => PasswordHash::parse(h).map_err(|e| UserChangeFailed::BadRequest(e.to_string())),
        _ => Err(bad("give exactly one of password and password_hash")),
    }
}

/// Tags as RabbitMQ's API takes them: a comma-separated string or a list.
pub fn tags_from(body: &Value) -> Result<Vec<String>, UserChangeFailed> {
    match body.get("tags") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s.split(',').map(|t| t.trim().to_string()).collect()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| t.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| UserChangeFailed::BadRequest("tags must be strings".into())),
        Some(_) => Err(UserChangeFailed::BadRequest("tags must be a string or a list of strings".into())),
    }
}

/// Setting `user`'s permissions in `vhost` from RabbitMQ's body:
/// `{"configure", "write", "read"}`, each a regular expression.
pub fn permission_change(user: &str, vhost: &str, body: &Value) -> Result<UserChange, UserChangeFailed> {
    let text = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| UserChangeFailed::BadRequest(format!("\"{k}\" must be a string (a regular expression)")))
    };
    let permission = Permission::new(text("configure")?, text("write")?, text("read")?).map_err(ChangeError::from)?;
    Ok(UserChange::SetPermissions { name: user.into(), vhost: vhost.into(), permission })
}

/// `ringmq ctl`'s user commands; the JSON of the answer.
pub async fn run(shard: &Rc<Shard>, command: u8, arg: &str) -> Value {
    if command == op::ADMIN_LIST_USERS {
        return shard.users_json();
    }
    if command == op::ADMIN_LIST_PERMISSIONS {
        return shard.permissions_json();
    }
    if command == op::ADMIN_LIST_VHOSTS {
        return shard.vhosts_json();
    }
    let made = if command == op::ADMIN_DELETE_USER {
        Ok(UserChange::Delete { name: arg.to_string() })
    } else if command == op::ADMIN_ADD_VHOST {
        Ok(UserChange::AddVhost { vhost: arg.to_string(), create_only: true })
    } else if command == op::ADMIN_DELETE_VHOST {
        Ok(UserChange::DeleteVhost { vhost: arg.to_string() })
    } else {
        serde_json::from_str::<Value>(arg)
            .map_err(|e| UserChangeFailed::BadRequest(format!("the argument is not JSON: {e}")))
            .and_then(|v| ctl_change(command, &v))
    };
    let r = match made {
        Ok(c) => {
            let what = c.describe();
            let mut answer = json!({ "done": what });
            if let Some(user) = c.user() {
                answer["user"] = json!(user);
            }
            if let Some(vhost) = c.vhost() {
                answer["vhost"] = json!(vhost);
            }
            change(shard, c).await.map(|()| answer)
        }
        Err(e) => Err(e),
    };
    r.unwrap_or_else(|e| json!({ "error": e.to_string() }))
}

/// The change a ctl command's JSON argument asks for.
fn ctl_change(command: u8, v: &Value) -> Result<UserChange, UserChangeFailed> {
    let name = v.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    match command {
        op::ADMIN_ADD_USER => Ok(UserChange::Put { name, hash: hash_from(v)?, tags: tags_from(v)?, create_only: true }),
        op::ADMIN_CHANGE_PASSWORD => Ok(UserChange::Password { name, hash: hash_from(v)? }),
        op::ADMIN_SET_USER_TAGS => Ok(UserChange::Tags { name, tags: tags_from(v)? }),
        op::ADMIN_SET_PERMISSIONS | op::ADMIN_CLEAR_PERMISSIONS => {
            let name = v.get("user").and_then(Value::as_str).unwrap_or_default();
            let vhost = v.get("vhost").and_then(Value::as_str).unwrap_or(DEFAULT_VHOST);
            if command == op::ADMIN_SET_PERMISSIONS {
                permission_change(name, vhost, v)
            } else {
                Ok(UserChange::ClearPermissions { name: name.into(), vhost: vhost.into() })
            }
        }
        other => Err(UserChangeFailed::BadRequest(format!("unknown user command {other}"))),
    }
}
