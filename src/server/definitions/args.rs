//! Arguments between JSON and AMQP field tables: a definitions file holds
//! `"arguments": {...}`, the broker keeps the declare's table. Integers
//! become signed 64-bit (`l`, as RabbitMQ's management API encodes them),
//! other numbers doubles, strings long strings, lists arrays and objects
//! tables; the export shows them back through `admin::table_json`.

use super::parse::shown;
use crate::protocol::field_table::{Table, Value as Field};
use crate::server::policy::QueueArgs;
use serde_json::Value;

/// The queue arguments ringmq implements (docs/policies.md), and the one
/// it accepts without effect (`x-queue-mode`, noted).
const QUEUE_ARGS: &[&str] = &[
    "x-message-ttl",
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
    "x-overflow",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-priority",
    "x-single-active-consumer",
    "x-queue-leader-locator",
    "x-queue-type",
    "x-queue-mode",
];

/// `arguments` (absent or null: none) as a raw field table.
pub fn json_table(v: Option<&Value>, what: &str) -> Result<Vec<u8>, String> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(m)) => Ok(table_of(m, what)?.encode()),
        Some(_) => Err(format!("{what}: 'arguments' must be a JSON object")),
    }
}

fn table_of(m: &serde_json::Map<String, Value>, what: &str) -> Result<Table, String> {
    let mut t = Vec::with_capacity(m.len());
    for (k, v) in m {
        if k.is_empty() || k.len() > 255 {
            return Err(format!("{what}: an argument name must be 1 to 255 bytes, not '{}'", shown(k)));
        }
        t.push((k.clone(), field_of(v, what)?));
    }
    Ok(Table(t))
}

/// One JSON value as a field. Recursion follows the JSON's nesting, which
/// serde_json bounds (128 levels) while parsing.
fn field_of(v: &Value, what: &str) -> Result<Field, String> {
    Ok(match v {
        Value::Null => Field::Void,
        Value::Bool(b) => Field::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Field::I64(i),
            (None, Some(f)) if n.is_f64() => Field::F64(f),
            _ => return Err(format!("{what}: the number {n} does not fit a signed 64-bit integer")),
        },
        Value::String(s) => Field::LongStr(s.as_bytes().to_vec()),
        Value::Array(a) => Field::Array(a.iter().map(|i| field_of(i, what)).collect::<Result<_, _>>()?),
        Value::Object(m) => Field::Table(table_of(m, what)?),
    })
}

/// A queue's `arguments`: every one must be an argument ringmq knows, with
/// a value it accepts (`QueueArgs::parse`, as a client's declare).
pub fn queue_args(v: Option<&Value>, queue: &str, what: &str, notes: &mut Vec<String>) -> Result<QueueArgs, String> {
    if let Some(Value::Object(m)) = v {
        if let Some(k) = m.keys().find(|k| !QUEUE_ARGS.contains(&k.as_str())) {
            return Err(format!("{what}: argument '{}' is not supported", shown(k)));
        }
        if let Some(mode) = m.get("x-queue-mode") {
            match mode.as_str() {
                Some("lazy" | "default") => notes.push(format!(
                    "{what}: x-queue-mode is kept but has no effect (ringmq spills messages to its log under memory pressure)"
                )),
                _ => return Err(format!("{what}: x-queue-mode must be \"default\" or \"lazy\"")),
            }
        }
    }
    let raw = json_table(v, what)?;
    QueueArgs::parse(&raw, queue).map_err(|e| format!("{what}: {}", e.message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments_round_trip_through_a_field_table() {
        let v = json!({"x-message-ttl": 60000, "x-dead-letter-exchange": "dlx", "nested": {"a": [1, true, null, 2.5]}});
        let raw = json_table(Some(&v), "q").unwrap();
        assert_eq!(crate::server::admin::table_json(&raw), v);
    }

    #[test]
    fn unknown_and_unsupported_queue_arguments_are_named() {
        let mut notes = Vec::new();
        let e = queue_args(Some(&json!({"x-bogus": 1})), "q", "queue 'q'", &mut notes).unwrap_err();
        assert!(e.contains("x-bogus"), "{e}");
        let e = queue_args(Some(&json!({"x-queue-type": "quorum"})), "q", "queue 'q'", &mut notes).unwrap_err();
        assert!(e.contains("quorum"), "{e}");
        let e = queue_args(Some(&json!({"x-message-ttl": "soon"})), "q", "queue 'q'", &mut notes).unwrap_err();
        assert!(e.contains("x-message-ttl"), "{e}");
        let big = json!({"x-max-length": u64::MAX});
        assert!(queue_args(Some(&big), "q", "queue 'q'", &mut notes).is_err());
        queue_args(Some(&json!({"x-queue-mode": "lazy"})), "q", "queue 'q'", &mut notes).unwrap();
        assert_eq!(notes.len(), 1);
    }
}
