//! Reading a definitions document (RabbitMQ's JSON format) into
//! [`Definitions`]: every field is checked here, before anything is
//! applied, and whatever ringmq cannot honour is refused with its name.
//! Fields that describe the RabbitMQ node rather than the definitions
//! (its version, its cluster name) are accepted and listed in
//! [`Definitions::notes`], never dropped without a word.

use super::args::{json_table, queue_args};
use super::{BindingItem, Definitions, ExchangeItem, Limits, PermissionItem, QueueItem, UserItem};
use crate::auth::password::{PasswordHash, ALGORITHM};
use crate::auth::permissions::Permission;
use crate::protocol::vhost::qualify;
use crate::routing::{BindingDef, Dest};
use crate::server::shard::routing_replica::{check_exchange_name, check_table, exchange_def};
use serde_json::{Map, Value};

/// Top-level keys of a whole-broker document.
const TOP: &[&str] = &[
    "rabbit_version",
    "rabbitmq_version",
    "product_name",
    "product_version",
    "users",
    "vhosts",
    "permissions",
    "topic_permissions",
    "parameters",
    "global_parameters",
    "policies",
    "queues",
    "exchanges",
    "bindings",
];

/// Global parameters that name the RabbitMQ node, not its definitions.
const NODE_PARAMETERS: &[&str] = &["cluster_name", "internal_cluster_id"];
/// Global parameters read (each must be one of `NODE_PARAMETERS`).
const GLOBAL_PARAMETERS_MAX: usize = 16;

/// Reads `doc`. `only_vhost`: a per-vhost document (`/api/definitions/
/// VHOST`): its items carry no `vhost` (one that does must name this one),
/// and it holds no users, vhosts or permissions.
pub fn parse(doc: &Value, only_vhost: Option<&str>, limits: &Limits) -> Result<Definitions, String> {
    let top = doc.as_object().ok_or("a definitions document is a JSON object")?;
    for k in top.keys() {
        if !TOP.contains(&k.as_str()) {
            return Err(format!("unknown top-level field '{}'", shown(k)));
        }
    }
    let mut d = Definitions::default();
    for k in ["rabbit_version", "rabbitmq_version", "product_name", "product_version"] {
        if let Some(v) = top.get(k) {
            d.notes.push(format!("{k} {} (informational)", shown(&v.to_string())));
        }
    }
    if only_vhost.is_some() {
        for k in ["users", "vhosts", "permissions", "topic_permissions", "global_parameters"] {
            if !list(top, k, 0)?.is_empty() {
                return Err(format!("'{k}' belongs in a whole-broker document, not in one vhost's"));
            }
        }
    }
    refuse_policies(top)?;
    refuse_parameters(top, &mut d)?;
    for v in list(top, "vhosts", limits.vhosts)? {
        d.vhosts.push(vhost_item(v, &mut d.notes)?);
    }
    for u in list(top, "users", limits.users)? {
        d.users.push(user_item(u)?);
    }
    for p in list(top, "permissions", limits.permissions)? {
        d.permissions.push(permission_item(p)?);
    }
    let vhost_of = |o: &Map<String, Value>, what: &str| item_vhost(o, only_vhost, what);
    for x in list(top, "exchanges", limits.exchanges)? {
        let o = obj(x, "an exchange")?;
        d.exchanges.push(exchange_item(o, &vhost_of(o, "exchange")?, limits.table_depth)?);
    }
    for q in list(top, "queues", limits.queues)? {
        let o = obj(q, "a queue")?;
        d.queues.push(queue_item(o, &vhost_of(o, "queue")?, &mut d.notes)?);
    }
    for b in list(top, "bindings", limits.bindings)? {
        let o = obj(b, "a binding")?;
        d.bindings.push(binding_item(o, &vhost_of(o, "binding")?, limits.table_depth)?);
    }
    Ok(d)
}

/// A name as an error message shows it: at most 255 characters.
pub(super) fn shown(s: &str) -> String {
    s.chars().take(255).collect()
}

/// The array under `key` (absent: empty), refused when it holds more than
/// `max` items (`DefinitionLimit`'s limits: checked before any is read).
fn list<'a>(top: &'a Map<String, Value>, key: &str, max: usize) -> Result<&'a [Value], String> {
    match top.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) if a.len() <= max => Ok(a),
        Some(Value::Array(a)) => Err(format!("'{key}' holds {} items; the limit here is {max}", a.len())),
        Some(_) => Err(format!("'{key}' must be a list")),
    }
}

fn obj<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, String> {
    v.as_object().ok_or_else(|| format!("{what} must be a JSON object"))
}

/// Refuses fields not in `known`, naming the first.
fn only(o: &Map<String, Value>, known: &[&str], what: &str) -> Result<(), String> {
    match o.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(format!("{what}: unknown field '{}' (ringmq does not know what to do with it)", shown(k))),
        None => Ok(()),
    }
}

fn text<'a>(o: &'a Map<String, Value>, key: &str, what: &str) -> Result<&'a str, String> {
    o.get(key).and_then(Value::as_str).ok_or_else(|| format!("{what}: '{key}' must be a string"))
}

fn flag(o: &Map<String, Value>, key: &str, default: bool, what: &str) -> Result<bool, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("{what}: '{key}' must be true or false")),
    }
}

/// An empty limits value (`{}` or `[]`), or a refusal: ringmq keeps no
/// per-user or per-vhost limits.
fn no_limits(o: &Map<String, Value>, what: &str) -> Result<(), String> {
    let empty = match o.get("limits") {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    };
    match empty {
        true => Ok(()),
        false => Err(format!("{what}: limits are not supported (ringmq has only the broker-wide config limits)")),
    }
}

fn refuse_policies(top: &Map<String, Value>) -> Result<(), String> {
    if let Some(p) = list(top, "policies", usize::MAX)?.first() {
        let name = p.get("name").and_then(Value::as_str).unwrap_or("?");
        let vhost = p.get("vhost").and_then(Value::as_str).unwrap_or("?");
        return Err(format!(
            "policy '{}' in vhost '{}': ringmq has no policies; set the queues' x-arguments instead (docs/policies.md)",
            shown(name),
            shown(vhost)
        ));
    }
    Ok(())
}

fn refuse_parameters(top: &Map<String, Value>, d: &mut Definitions) -> Result<(), String> {
    if let Some(p) = list(top, "parameters", usize::MAX)?.first() {
        let component = p.get("component").and_then(Value::as_str).unwrap_or("?");
        let name = p.get("name").and_then(Value::as_str).unwrap_or("?");
        return Err(format!(
            "parameter '{}' of component '{}': runtime parameters (federation, shovels, ...) are not supported",
            shown(name),
            shown(component)
        ));
    }
    if let Some(t) = list(top, "topic_permissions", usize::MAX)?.first() {
        let user = t.get("user").and_then(Value::as_str).unwrap_or("?");
        return Err(format!("topic permissions of user '{}' are not supported", shown(user)));
    }
    for g in list(top, "global_parameters", GLOBAL_PARAMETERS_MAX)? {
        let name = g.get("name").and_then(Value::as_str).unwrap_or("?");
        if !NODE_PARAMETERS.contains(&name) {
            return Err(format!("global parameter '{}' is not supported", shown(name)));
        }
        d.notes.push(format!("global parameter '{name}' names the RabbitMQ node; not a definition, not imported"));
    }
    Ok(())
}

fn vhost_item(v: &Value, notes: &mut Vec<String>) -> Result<String, String> {
    let o = obj(v, "a vhost")?;
    let known = ["name", "limits", "metadata", "description", "tags", "default_queue_type", "tracing"];
    let name = text(o, "name", "a vhost")?;
    let what = format!("vhost '{}'", shown(name));
    only(o, &known, &what)?;
    crate::auth::vhosts::check_name(name).map_err(|e| format!("{what}: {e}"))?;
    no_limits(o, &what)?;
    if flag(o, "tracing", false, &what)? {
        return Err(format!("{what}: tracing is not supported"));
    }
    let meta = o.get("metadata").and_then(Value::as_object);
    let field = |k: &str| o.get(k).or_else(|| meta.and_then(|m| m.get(k)));
    match field("default_queue_type").and_then(Value::as_str) {
        None | Some("classic" | "undefined") => {}
        Some(t) => return Err(format!("{what}: default queue type '{}' is not supported", shown(t))),
    }
    let described = field("description").and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    let tagged = field("tags").and_then(Value::as_array).is_some_and(|t| !t.is_empty());
    if described || tagged {
        notes.push(format!("{what}: its description and tags are not kept by ringmq"));
    }
    Ok(name.to_string())
}

fn user_item(v: &Value) -> Result<UserItem, String> {
    let o = obj(v, "a user")?;
    let name = text(o, "name", "a user")?;
    let what = format!("user '{}'", shown(name));
    only(o, &["name", "password_hash", "hashing_algorithm", "tags", "limits", "password"], &what)?;
    crate::auth::change::check_name(name).map_err(|e| format!("{what}: {e}"))?;
    no_limits(o, &what)?;
    let algorithm = o.get("hashing_algorithm").and_then(Value::as_str).unwrap_or(ALGORITHM);
    if algorithm != ALGORITHM {
        return Err(format!("{what}: hashing algorithm '{}' is not supported (only {ALGORITHM})", shown(algorithm)));
    }
    let hash = match (o.get("password_hash").and_then(Value::as_str), o.get("password").and_then(Value::as_str)) {
        (Some(h), None) => PasswordHash::parse(h).map_err(|e| format!("{what}: password_hash: {e}"))?,
        (None, Some(p)) => PasswordHash::new(p.as_bytes()).map_err(|e| format!("{what}: {e}"))?,
        _ => return Err(format!("{what}: give exactly one of password_hash and password")),
    };
    let tags = match o.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => s.split(',').map(|t| t.trim().to_string()).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|t| t.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("{what}: tags must be strings"))?,
        Some(_) => return Err(format!("{what}: tags must be a string or a list of strings")),
    };
    let tags = crate::auth::change::check_tags(&tags).map_err(|e| format!("{what}: {e}"))?;
    Ok(UserItem { name: name.to_string(), hash, tags })
}

fn permission_item(v: &Value) -> Result<PermissionItem, String> {
    let o = obj(v, "a permission")?;
    let (user, vhost) = (text(o, "user", "a permission")?, text(o, "vhost", "a permission")?);
    let what = format!("permissions of user '{}' in vhost '{}'", shown(user), shown(vhost));
    only(o, &["user", "vhost", "configure", "write", "read"], &what)?;
    let p = Permission::new(text(o, "configure", &what)?, text(o, "write", &what)?, text(o, "read", &what)?)
        .map_err(|e| format!("{what}: {e}"))?;
    Ok(PermissionItem { user: user.to_string(), vhost: vhost.to_string(), permission: p })
}

/// The item's vhost: its `vhost` field, or the per-vhost document's.
fn item_vhost(o: &Map<String, Value>, only_vhost: Option<&str>, what: &str) -> Result<String, String> {
    let given = o.get("vhost").map(|v| v.as_str().ok_or(format!("a {what}'s 'vhost' must be a string")));
    let v = match (given.transpose()?, only_vhost) {
        (Some(g), Some(o)) if g != o => {
            return Err(format!("a {what} of vhost '{}' in vhost '{o}''s document", shown(g)))
        }
        (Some(g), _) => g,
        (None, Some(o)) => o,
        (None, None) => return Err(format!("a {what} without 'vhost'")),
    };
    crate::auth::vhosts::check_name(v).map_err(|e| format!("a {what}'s vhost: {e}"))?;
    Ok(v.to_string())
}

fn exchange_item(o: &Map<String, Value>, vhost: &str, depth: u32) -> Result<ExchangeItem, String> {
    let name = text(o, "name", "an exchange")?;
    let what = format!("exchange '{}' in vhost '{}'", shown(name), shown(vhost));
    only(o, &["name", "vhost", "type", "durable", "auto_delete", "internal", "arguments"], &what)?;
    let args = json_table(o.get("arguments"), &what)?;
    if let Some((k, _, _)) = crate::protocol::field_table::entries(&args).find(|(k, _, _)| *k != b"alternate-exchange")
    {
        let k = String::from_utf8_lossy(k);
        return Err(format!("{what}: argument '{}' is not supported (only alternate-exchange)", shown(&k)));
    }
    check_table(&args, depth).map_err(|e| format!("{what}: {}", e.message))?;
    let kind = text(o, "type", &what)?;
    let (durable, auto_delete) = (flag(o, "durable", true, &what)?, flag(o, "auto_delete", false, &what)?);
    let internal = flag(o, "internal", false, &what)?;
    let def = exchange_def(name, kind, durable, auto_delete, internal, args.into())
        .map_err(|e| format!("{what}: {}", e.message))?;
    let def = crate::routing::ExchangeDef {
        name: qualify(vhost, &def.name).into_owned(),
        alternate: def.alternate.as_deref().map(|a| qualify(vhost, a).into_owned()),
        ..def
    };
    Ok(ExchangeItem { vhost: vhost.to_string(), def })
}

fn queue_item(o: &Map<String, Value>, vhost: &str, notes: &mut Vec<String>) -> Result<QueueItem, String> {
    let name = text(o, "name", "a queue")?;
    let what = format!("queue '{}' in vhost '{}'", shown(name), shown(vhost));
    only(o, &["name", "vhost", "durable", "auto_delete", "arguments", "type"], &what)?;
    if !crate::server::ops::queue_name_ok(name) || name.len() > 255 || name.starts_with("amq.") {
        return Err(format!(
            "{what}: not a queue name ringmq accepts (1 to 255 bytes, no control characters, no amq. prefix)"
        ));
    }
    match o.get("type").map(Value::as_str) {
        None | Some(Some("classic")) => {}
        Some(Some(t)) => return Err(format!("{what}: queue type '{}' is not supported (only classic)", shown(t))),
        Some(None) => return Err(format!("{what}: 'type' must be a string")),
    }
    let qualified = qualify(vhost, name).into_owned();
    let args = queue_args(o.get("arguments"), &qualified, &what, notes)?;
    let (durable, auto_delete) = (flag(o, "durable", true, &what)?, flag(o, "auto_delete", false, &what)?);
    Ok(QueueItem { vhost: vhost.to_string(), name: qualified, durable, auto_delete, args })
}

fn binding_item(o: &Map<String, Value>, vhost: &str, depth: u32) -> Result<BindingItem, String> {
    let known = ["source", "vhost", "destination", "destination_type", "routing_key", "arguments", "properties_key"];
    let (source, dest) = (text(o, "source", "a binding")?, text(o, "destination", "a binding")?);
    let what = format!("binding from '{}' to '{}' in vhost '{}'", shown(source), shown(dest), shown(vhost));
    only(o, &known, &what)?;
    if source.is_empty() {
        return Err(format!("{what}: the default exchange's bindings are implicit"));
    }
    check_exchange_name(source).map_err(|e| format!("{what}: {}", e.message))?;
    let dest = match text(o, "destination_type", &what)? {
        "queue" => {
            if !crate::server::ops::queue_name_ok(dest) || dest.len() > 255 {
                return Err(format!("{what}: not a queue name ringmq accepts"));
            }
            Dest::Queue(qualify(vhost, dest).into_owned())
        }
        "exchange" => {
            check_exchange_name(dest).map_err(|e| format!("{what}: {}", e.message))?;
            Dest::Exchange(qualify(vhost, dest).into_owned())
        }
        other => return Err(format!("{what}: destination_type '{}' is neither queue nor exchange", shown(other))),
    };
    let key =
        o.get("routing_key").map_or(Ok(""), |k| k.as_str().ok_or(format!("{what}: 'routing_key' must be a string")))?;
    if key.len() > 255 {
        return Err(format!("{what}: the routing key is longer than 255 bytes"));
    }
    let args = json_table(o.get("arguments"), &what)?;
    check_table(&args, depth).map_err(|e| format!("{what}: {}", e.message))?;
    let source = qualify(vhost, source).into_owned();
    let def = BindingDef { source, dest, key: key.to_string(), args: args.into() };
    Ok(BindingItem { vhost: vhost.to_string(), def })
}
