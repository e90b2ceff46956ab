use super::*;
use serde_json::{json, Value};

fn limits() -> Limits {
    Limits::of(&Config::default())
}

fn refused(doc: Value) -> String {
    match parse(&doc, None, &limits()) {
        Ok(_) => panic!("accepted: {doc}"),
        Err(e) => e,
    }
}

/// The export captured from RabbitMQ 3.10 (tests/rabbitmq/export.sh).
const RABBIT: &str = include_str!("../../../tests/data/rabbitmq-definitions.json");

#[test]
fn a_rabbitmq_export_reads_whole() {
    let doc: Value = serde_json::from_str(RABBIT).unwrap();
    let d = parse(&doc, None, &limits()).unwrap();
    assert_eq!(d.vhosts, vec!["/".to_string(), "staging".to_string()]);
    assert_eq!(d.users.len(), 2);
    let alice = d.users.iter().find(|u| u.name == "alice").unwrap();
    assert!(alice.hash.verify(b"wonderland"), "RabbitMQ's hash is ringmq's");
    assert_eq!(alice.tags, vec!["monitoring".to_string()]);
    assert_eq!(d.permissions.len(), 4);
    assert_eq!(d.queues.len(), 6);
    let eu = d.queues.iter().find(|q| q.name == "orders.eu").unwrap();
    assert_eq!(eu.args.message_ttl, Some(60000));
    assert_eq!(eu.args.dead_letter_exchange.as_deref(), Some("dlx"));
    let staged = d.queues.iter().find(|q| q.vhost == "staging").unwrap();
    assert_eq!(staged.name, crate::protocol::vhost::qualify("staging", "stage.q"));
    assert!(staged.args.single_active_consumer);
    assert_eq!(d.exchanges.len(), 7);
    let events = d.exchanges.iter().find(|x| x.def.name == "events").unwrap();
    assert_eq!(events.def.alternate.as_deref(), Some("unrouted"));
    assert_eq!(d.bindings.len(), 8);
    assert!(d.notes.iter().any(|n| n.contains("3.10")), "{:?}", d.notes);
}

#[test]
fn what_ringmq_cannot_honour_is_refused_by_name() {
    let q = |args: Value| json!({"queues": [{"name": "q1", "vhost": "/", "durable": true, "arguments": args}]});
    assert!(refused(q(json!({"x-queue-type": "quorum"}))).contains("quorum"));
    assert!(refused(q(json!({"x-bogus": 1}))).contains("x-bogus"));
    let typed = json!({"queues": [{"name": "s", "vhost": "/", "type": "stream"}]});
    assert!(refused(typed).contains("stream"));
    let x = json!({"exchanges": [{"name": "d", "vhost": "/", "type": "x-delayed-message"}]});
    let e = refused(x);
    assert!(e.contains("x-delayed-message") && e.contains("'d'"), "{e}");
    let p = json!({"policies": [{"name": "ha-all", "vhost": "/", "pattern": ".*", "definition": {}}]});
    assert!(refused(p).contains("ha-all"));
    let f = json!({"parameters": [{"component": "federation-upstream", "name": "up", "vhost": "/", "value": {}}]});
    assert!(refused(f).contains("federation-upstream"));
    assert!(refused(json!({"shovels": []})).contains("shovels"));
    let u = json!({"users": [{"name": "b", "password_hash": "x", "hashing_algorithm": "rabbit_password_hashing_md5"}]});
    assert!(refused(u).contains("rabbit_password_hashing_md5"));
    let lim = json!({"vhosts": [{"name": "v", "limits": {"max-queues": 1}}]});
    assert!(refused(lim).contains("limits"));
    let extra = json!({"queues": [{"name": "q", "vhost": "/", "exclusive": true}]});
    assert!(refused(extra).contains("exclusive"));
    assert!(refused(json!([])).contains("object"));
    let g = json!({"global_parameters": [{"name": "mqtt_port_to_vhost_mapping", "value": {}}]});
    assert!(refused(g).contains("mqtt_port_to_vhost_mapping"));
    let named = json!({"global_parameters": [{"name": "cluster_name", "value": "rabbit@h"}]});
    let d = parse(&named, None, &limits()).unwrap();
    assert!(d.notes.iter().any(|n| n.contains("cluster_name")), "{:?}", d.notes);
}

#[test]
fn counts_are_bounded_before_the_items_are_read() {
    let mut l = limits();
    l.queues = 2;
    let qs: Vec<Value> = (0..3).map(|i| json!({"name": format!("q{i}"), "vhost": "/"})).collect();
    let e = match parse(&json!({ "queues": qs }), None, &l) {
        Err(e) => e,
        Ok(_) => panic!("three queues over a limit of two"),
    };
    assert!(e.contains("queues") && e.contains('2'), "{e}");
}

#[test]
fn a_vhost_document_takes_its_vhost() {
    let doc = json!({"queues": [{"name": "q", "durable": true}], "bindings": [
        {"source": "amq.direct", "destination": "q", "destination_type": "queue", "routing_key": "k"}]});
    let d = parse(&doc, Some("v"), &limits()).unwrap();
    assert_eq!(d.queues[0].name, crate::protocol::vhost::qualify("v", "q"));
    assert_eq!(d.bindings[0].def.source, crate::protocol::vhost::qualify("v", "amq.direct"));
    let other = json!({"queues": [{"name": "q", "vhost": "w"}]});
    assert!(parse(&other, Some("v"), &limits()).is_err());
    let users = json!({"users": [{"name": "u", "password": "p"}]});
    assert!(parse(&users, Some("v"), &limits()).is_err());
}

#[test]
fn hostile_documents_are_refused_without_a_panic() {
    let deep = "[".repeat(100_000);
    assert!(read(deep.as_bytes(), None, &Config::default()).is_err());
    let deep_args = format!(
        "{{\"queues\":[{{\"name\":\"q\",\"vhost\":\"/\",\"arguments\":{}1{}}}]}}",
        "{\"a\":".repeat(100),
        "}".repeat(100)
    );
    assert!(read(deep_args.as_bytes(), None, &Config::default()).is_err());
    for bad in ["", "null", "{\"queues\": 5}", "{\"queues\": [5]}", "{\"users\": [{\"name\": 5}]}", "\u{0}"] {
        assert!(read(bad.as_bytes(), None, &Config::default()).is_err(), "{bad}");
    }
    let c = Config { definitions_bytes_max: 1024, ..Config::default() };
    assert!(read(&vec![b' '; 2048], None, &c).unwrap_err().contains("definitions_bytes_max"));
}

mod any_json {
    use super::*;
    use proptest::prelude::*;

    /// Names the parser looks for, so random documents reach its depths.
    const WORDS: &[&str] = &[
        "name",
        "vhost",
        "type",
        "durable",
        "auto_delete",
        "internal",
        "arguments",
        "source",
        "destination",
        "destination_type",
        "routing_key",
        "user",
        "configure",
        "write",
        "read",
        "password_hash",
        "password",
        "hashing_algorithm",
        "tags",
        "limits",
        "metadata",
        "queue",
        "exchange",
        "classic",
        "quorum",
        "direct",
        "topic",
        "headers",
        "x-message-ttl",
        "x-max-priority",
        "x-overflow",
        "x-queue-mode",
        "alternate-exchange",
        "x-match",
        "/",
        "",
        "amq.direct",
        "rabbit_password_hashing_sha256",
        "lazy",
        "(",
        ".*",
    ];

    fn word() -> impl Strategy<Value = String> {
        prop_oneof![proptest::sample::select(WORDS).prop_map(str::to_string), ".{0,8}"]
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            any::<u64>().prop_map(|i| json!(i)),
            any::<f64>().prop_map(|f| json!(f)),
            word().prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(word(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// An item: an object of the parser's field names, any values.
    fn item() -> impl Strategy<Value = Value> {
        let field = (proptest::sample::select(WORDS), value());
        proptest::collection::vec(field, 0..10)
            .prop_map(|fs| Value::Object(fs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Any JSON, in any of the document's lists: an answer, never a panic.
        #[test]
        fn any_document_is_answered(items in proptest::collection::vec(item(), 0..4), key in proptest::sample::select(TOP_KEYS)) {
            let doc = json!({ key: items });
            let _ = parse(&doc, None, &limits());
            let _ = parse(&doc, Some("v"), &limits());
        }

        /// Any bytes: an answer, never a panic.
        #[test]
        fn any_bytes_are_answered(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = read(&bytes, None, &Config::default());
        }
    }

    const TOP_KEYS: &[&str] = &[
        "users",
        "vhosts",
        "permissions",
        "queues",
        "exchanges",
        "bindings",
        "policies",
        "parameters",
        "global_parameters",
        "topic_permissions",
    ];
}
