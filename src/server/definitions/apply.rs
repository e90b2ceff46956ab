//! Applying checked [`Definitions`]: first against what the broker holds
//! (a vhost, user, exchange or queue named must exist or come with the
//! document; what exists already must match; the counts stay within the
//! config's limits), then vhosts, users, permissions, exchanges, queues
//! and bindings, each through the same core paths a client's or an
//! operator's request takes ([`Shard::ask`], the user changes).

use super::batch::each;
use super::parse::shown;
use super::Definitions;
use crate::auth::change::UserChange;
use crate::protocol::vhost::{split, DEFAULT_VHOST};
use crate::routing::Dest;
use crate::server::admin_users;
use crate::server::shard::ask::Ask;
use crate::server::shard::Shard;
use crate::server::stats::QueueStats;
use crate::server::types::Request;
use std::collections::{HashMap, HashSet};

/// What an import did: the counts of each kind created or set (what
/// existed the same is not counted), and its notes.
#[derive(Debug, Default, serde::Serialize)]
pub struct Imported {
    pub vhosts: usize,
    pub users: usize,
    pub permissions: usize,
    pub exchanges: usize,
    pub queues: usize,
    pub bindings: usize,
    pub notes: Vec<String>,
}

/// Why an import did not happen, or did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// The document, or an item of it, is refused: nothing was applied.
    #[error("{0}")]
    Refused(String),
    /// The checks passed, and applying stopped part way (the broker's
    /// trouble: storage, a shard that did not answer).
    #[error("{0}")]
    Failed(String),
}

/// Checks `d` against the broker, then applies it.
pub async fn import(shard: &Shard, d: Definitions) -> Result<Imported, ImportError> {
    let existing = check(shard, &d).await.map_err(ImportError::Refused)?;
    let mut done = Imported { notes: d.notes.clone(), ..Default::default() };
    apply(shard, &d, &existing, &mut done).await.map_err(|e| {
        ImportError::Failed(format!(
            "{e} (after the checks passed; applied before it: {} vhosts, {} users, {} permissions, {} exchanges, {} queues, {} bindings)",
            done.vhosts, done.users, done.permissions, done.exchanges, done.queues, done.bindings
        ))
    })?;
    tracing::info!(
        vhosts = done.vhosts,
        users = done.users,
        exchanges = done.exchanges,
        queues = done.queues,
        bindings = done.bindings,
        "definitions imported"
    );
    Ok(done)
}

/// Every rule an item could break against the broker's state, checked
/// before anything is applied; the queues that exist already.
async fn check(shard: &Shard, d: &Definitions) -> Result<HashSet<String>, String> {
    let c = &shard.config;
    let vhosts: HashSet<String> = shard.vhost_names().into_iter().chain(d.vhosts.iter().cloned()).collect();
    let limit = |what: &str, n: usize, max: u32| match u32::try_from(n).map_or(true, |n| n > max) {
        true => Err(format!("DefinitionLimit: the import would make {n} {what}, over the limit of {max}")),
        false => Ok(()),
    };
    limit("vhosts", vhosts.len(), c.vhosts_max)?;
    let mut users: HashSet<String> = HashSet::new();
    if let Some(serde_json::Value::Array(us)) = Some(shard.users_json()) {
        users.extend(us.iter().filter_map(|u| u["name"].as_str().map(str::to_string)));
    }
    users.extend(d.users.iter().map(|u| u.name.clone()));
    limit("users", users.len(), c.users_max)?;
    let vhost_known = |v: &str, what: &str| match vhosts.contains(v) {
        true => Ok(()),
        false => Err(format!("{what}: no vhost '{}' (neither on the broker nor in the document)", shown(v))),
    };
    for p in &d.permissions {
        let what = format!("permissions of user '{}' in vhost '{}'", shown(&p.user), shown(&p.vhost));
        vhost_known(&p.vhost, &what)?;
        if !users.contains(&p.user) {
            return Err(format!("{what}: no such user (neither on the broker nor in the document)"));
        }
    }
    let exchanges = check_exchanges(shard, d, &vhost_known)?;
    let stats = shard.gather_stats(true).await;
    let existing: HashMap<&str, &QueueStats> =
        stats.iter().flat_map(|s| &s.queues).map(|q| (q.name.as_str(), q)).collect();
    check_queues(shard, d, &existing, &vhost_known)?;
    let queues: HashSet<&str> = existing.keys().copied().chain(d.queues.iter().map(|q| q.name.as_str())).collect();
    let table = shard.routing.table.borrow();
    let bound: HashSet<&crate::routing::BindingDef> = table.bindings().collect();
    let mut new_bindings = 0usize;
    for b in &d.bindings {
        let what = format!(
            "binding from '{}' to '{}' in vhost '{}'",
            shown(split(&b.def.source).1),
            shown(split(b.def.dest.name()).1),
            shown(&b.vhost)
        );
        vhost_known(&b.vhost, &what)?;
        if !exchanges.contains(b.def.source.as_str()) && !standard(&b.def.source) {
            return Err(format!("{what}: no source exchange '{}'", shown(split(&b.def.source).1)));
        }
        let dest_ok = match &b.def.dest {
            Dest::Queue(q) => queues.contains(q.as_str()),
            Dest::Exchange(x) => exchanges.contains(x.as_str()) || standard(x),
        };
        if !dest_ok {
            return Err(format!("{what}: no destination '{}'", shown(split(b.def.dest.name()).1)));
        }
        if !bound.contains(&b.def) {
            new_bindings += 1;
        }
    }
    limit("bindings", bound.len().saturating_add(new_bindings), c.bindings_max)?;
    Ok(existing.keys().map(|q| q.to_string()).collect())
}

/// A standard exchange (`amq.direct` ...), which every vhost has.
fn standard(qualified: &str) -> bool {
    matches!(split(qualified).1, "amq.direct" | "amq.fanout" | "amq.topic" | "amq.headers" | "amq.match")
}

/// Exchanges that exist must match the document's; the names of every
/// exchange there will be.
fn check_exchanges<'a>(
    shard: &'a Shard,
    d: &'a Definitions,
    vhost_known: &dyn Fn(&str, &str) -> Result<(), String>,
) -> Result<HashSet<String>, String> {
    let table = shard.routing.table.borrow();
    let mut names: HashSet<String> = table.exchanges().map(|x| x.name.clone()).collect();
    for x in &d.exchanges {
        let what = format!("exchange '{}' in vhost '{}'", shown(split(&x.def.name).1), shown(&x.vhost));
        vhost_known(&x.vhost, &what)?;
        if let Some(have) = table.exchange(&x.def.name) {
            let same = have.kind == x.def.kind
                && have.durable == x.def.durable
                && have.auto_delete == x.def.auto_delete
                && have.internal == x.def.internal
                && have.args == x.def.args;
            if !same {
                return Err(format!(
                    "{what} exists with type {} and other properties or arguments than the document's",
                    have.kind
                ));
            }
        }
        names.insert(x.def.name.clone());
    }
    let max = shard.config.exchanges_max;
    if u32::try_from(names.len()).map_or(true, |n| n > max) {
        return Err(format!(
            "DefinitionLimit: the import would make {} exchanges, over exchanges_max {max}",
            names.len()
        ));
    }
    Ok(names)
}

/// Queues that exist must match the document's (durability, arguments);
/// new ones must fit each owning shard's `queues_per_shard_max`.
fn check_queues(
    shard: &Shard,
    d: &Definitions,
    existing: &HashMap<&str, &QueueStats>,
    vhost_known: &dyn Fn(&str, &str) -> Result<(), String>,
) -> Result<(), String> {
    let mut per_shard: HashMap<u16, usize> = HashMap::new();
    for q in existing.values() {
        *per_shard.entry(q.shard).or_default() += 1;
    }
    let mut seen = HashSet::new();
    for q in &d.queues {
        let what = format!("queue '{}' in vhost '{}'", shown(split(&q.name).1), shown(&q.vhost));
        vhost_known(&q.vhost, &what)?;
        if !seen.insert(q.name.as_str()) {
            return Err(format!("{what} is in the document twice"));
        }
        match existing.get(q.name.as_str()) {
            Some(have) => {
                if have.exclusive {
                    return Err(format!("{what} exists, exclusive to a connection"));
                }
                if have.durable != q.durable {
                    return Err(format!(
                        "{what} exists with durable={}; the document has durable={}",
                        have.durable, q.durable
                    ));
                }
                let args = crate::server::policy::QueueArgs::parse(&have.args, &q.name).unwrap_or_default();
                args.equivalent(&q.args, &q.name).map_err(|e| format!("{what}: {e}"))?;
            }
            None => {
                let owner = shard.local_owner(&q.name);
                let n = per_shard.entry(owner).or_default();
                *n += 1;
                let max = shard.config.queues_per_shard_max;
                if u32::try_from(*n).map_or(true, |n| n > max) {
                    return Err(format!(
                        "DefinitionLimit: {what} would be queue {n} of shard {owner}, over queues_per_shard_max {max}"
                    ));
                }
            }
        }
    }
    Ok(())
}

async fn apply(shard: &Shard, d: &Definitions, existing: &HashSet<String>, done: &mut Imported) -> Result<(), String> {
    let vhosts = d.vhosts.iter().filter(|v| v.as_str() != DEFAULT_VHOST && !shard.has_vhost(v));
    each(vhosts, &mut done.vhosts, |v| {
        user_change(shard, UserChange::AddVhost { vhost: v.clone(), create_only: false })
    })
    .await?;
    each(d.users.iter(), &mut done.users, |u| {
        user_change(
            shard,
            UserChange::Put { name: u.name.clone(), hash: u.hash.clone(), tags: u.tags.clone(), create_only: false },
        )
    })
    .await?;
    each(d.permissions.iter(), &mut done.permissions, |p| {
        let (name, vhost, permission) = (p.user.clone(), p.vhost.clone(), p.permission.clone());
        user_change(shard, UserChange::SetPermissions { name, vhost, permission })
    })
    .await?;
    // What exists was checked equal: only what is new is asked for.
    let new_exchanges: Vec<_> =
        d.exchanges.iter().filter(|x| shard.routing.table.borrow().exchange(&x.def.name).is_none()).collect();
    each(new_exchanges.into_iter(), &mut done.exchanges, |x| async move {
        let what = format!("exchange '{}' in vhost '{}'", shown(split(&x.def.name).1), shown(&x.vhost));
        shard.ask(Ask::DeclareExchange(x.def.clone())).await.map(drop).map_err(|e| format!("{what}: {}", e.message))
    })
    .await?;
    let new_queues = d.queues.iter().filter(|q| !existing.contains(&q.name));
    each(new_queues, &mut done.queues, |q| async move {
        let req = Request::Declare {
            durable: q.durable,
            passive: false,
            queue: q.name.clone(),
            exclusive: false,
            auto_delete: q.auto_delete,
            strict: false,
            args: Box::new(q.args.clone()),
        };
        let what = format!("queue '{}' in vhost '{}'", shown(split(&q.name).1), shown(&q.vhost));
        let owner = shard.owner_of(&q.name);
        shard.ask(Ask::Request { owner, req }).await.map(drop).map_err(|e| format!("{what}: {}", e.message))
    })
    .await?;
    let new_bindings: Vec<_> = {
        let table = shard.routing.table.borrow();
        let bound: HashSet<&crate::routing::BindingDef> = table.bindings().collect();
        d.bindings.iter().filter(|b| !bound.contains(&b.def)).collect()
    };
    each(new_bindings.into_iter(), &mut done.bindings, |b| async move {
        let what = format!("binding from '{}' in vhost '{}'", shown(split(&b.def.source).1), shown(&b.vhost));
        shard.ask(Ask::Bind(b.def.clone())).await.map(drop).map_err(|e| format!("{what}: {}", e.message))
    })
    .await
}

async fn user_change(shard: &Shard, change: UserChange) -> Result<(), String> {
    let what = match (change.user(), change.vhost()) {
        (Some(u), Some(v)) => format!("permissions of user '{}' in vhost '{}'", shown(u), shown(v)),
        (Some(u), None) => format!("user '{}'", shown(u)),
        (None, v) => format!("vhost '{}'", shown(v.unwrap_or_default())),
    };
    admin_users::change(shard, change).await.map_err(|e| format!("{what}: {e}"))
}
