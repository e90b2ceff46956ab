//! The table as a whole: declare, bind, route, delete, snapshot.

use super::headers::test_table;
use super::*;
use bytes::Bytes;

fn qd(name: &str) -> Dest {
    Dest::Queue(name.into())
}

fn xd(name: &str) -> Dest {
    Dest::Exchange(name.into())
}

fn declare(t: &mut RoutingTable, name: &str, kind: ExchangeKind) {
    t.apply(&Change::DeclareExchange(ExchangeDef::new(name, kind))).unwrap();
}

fn binding(source: &str, dest: Dest, key: &str) -> BindingDef {
    BindingDef { source: source.into(), dest, key: key.into(), args: Bytes::new() }
}

fn bind(t: &mut RoutingTable, source: &str, dest: Dest, key: &str) -> Result<(), RouteError> {
    t.apply(&Change::Bind(binding(source, dest, key)))
}

fn routed_with(t: &RoutingTable, x: &str, key: &str, headers: Option<&[u8]>) -> Vec<String> {
    let mut out = Vec::new();
    t.route(x, key, headers, &mut out).unwrap();
    let mut v: Vec<String> = out.iter().map(|s| s.to_string()).collect();
    let n = v.len();
    v.sort();
    v.dedup();
    assert_eq!(v.len(), n, "route returned a queue twice");
    v
}

fn routed(t: &RoutingTable, x: &str, key: &str) -> Vec<String> {
    routed_with(t, x, key, None)
}

#[test]
fn a_new_table_has_the_standard_exchanges() {
    let t = RoutingTable::new();
    assert_eq!(t.version(), 0);
    let mut names: Vec<&str> = t.exchanges().map(|d| d.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["", "amq.direct", "amq.fanout", "amq.headers", "amq.match", "amq.topic"]);
    assert!(t.exchanges().all(|d| d.durable && !d.internal && !d.auto_delete));
    assert_eq!(t.exchange("amq.match").map(|d| d.kind), Some(ExchangeKind::Headers));
    assert_eq!(t.bindings().count(), 0);
    assert_eq!("topic".parse(), Ok(ExchangeKind::Topic));
    assert!(matches!("x-delayed".parse::<ExchangeKind>(), Err(RouteError::UnknownKind(k)) if k == "x-delayed"));
    assert_eq!(ExchangeKind::Headers.as_str(), "headers");
    let args = test_table(&[("x-other", b't', &[1]), ("alternate-exchange", b'S', b"ae")]);
    assert_eq!(ExchangeDef::alternate_from_args(&args).as_deref(), Some("ae"));
    assert_eq!(ExchangeDef::alternate_from_args(&[]), None);
}

#[test]
fn default_exchange_routes_by_queue_name_and_is_reserved() {
    let mut t = RoutingTable::new();
    assert_eq!(routed(&t, "", "orders"), ["orders"]);
    let refused = |r: Result<(), RouteError>| matches!(r, Err(RouteError::AccessRefused(_)));
    assert!(refused(bind(&mut t, "", qd("q"), "q")));
    assert!(refused(bind(&mut t, "amq.direct", xd(""), "q")));
    assert!(refused(t.apply(&Change::DeleteExchange(String::new()))));
    assert!(refused(t.apply(&Change::DeleteExchange("amq.topic".into()))));
    assert!(refused(t.apply(&Change::DeclareExchange(ExchangeDef::new("", ExchangeKind::Direct)))));
    assert!(refused(t.apply(&Change::DeclareExchange(ExchangeDef::new("amq.mine", ExchangeKind::Direct)))));
    let mut same = ExchangeDef::new("amq.direct", ExchangeKind::Direct);
    same.durable = true;
    t.apply(&Change::DeclareExchange(same)).unwrap();
    assert_eq!(t.version(), 1);
    let mut out = Vec::new();
    assert!(matches!(t.route("nope", "k", None, &mut out), Err(RouteError::NotFound(_))));
}

#[test]
fn direct_fanout_topic() {
    let mut t = RoutingTable::new();
    bind(&mut t, "amq.direct", qd("q1"), "a").unwrap();
    bind(&mut t, "amq.direct", qd("q2"), "a").unwrap();
    bind(&mut t, "amq.direct", qd("q3"), "b").unwrap();
    assert_eq!(routed(&t, "amq.direct", "a"), ["q1", "q2"]);
    assert!(routed(&t, "amq.direct", "c").is_empty());

    bind(&mut t, "amq.fanout", qd("f1"), "ignored").unwrap();
    bind(&mut t, "amq.fanout", qd("f2"), "").unwrap();
    assert_eq!(routed(&t, "amq.fanout", "anything"), ["f1", "f2"]);

    bind(&mut t, "amq.topic", qd("eu"), "region.eu.#").unwrap();
    bind(&mut t, "amq.topic", qd("orders"), "*.*.orders.*").unwrap();
    bind(&mut t, "amq.topic", qd("orders"), "#.orders.#").unwrap();
    assert_eq!(routed(&t, "amq.topic", "region.eu.orders.new"), ["eu", "orders"]);
    assert_eq!(routed(&t, "amq.topic", "region.us.orders"), ["orders"]);
    assert!(routed(&t, "amq.topic", "region.us").is_empty());
}

#[test]
fn headers_exchange_through_the_table() {
    let mut t = RoutingTable::new();
    let args = test_table(&[("x-match", b'S', b"any"), ("format", b'S', b"pdf"), ("region", b'S', b"eu")]);
    let b = BindingDef { source: "amq.match".into(), dest: qd("docs"), key: String::new(), args };
    t.apply(&Change::Bind(b.clone())).unwrap();
    let mut b2 = b.clone();
    b2.args = test_table(&[("format", b'S', b"pdf")]);
    t.apply(&Change::Bind(b2)).unwrap();
    let msg = test_table(&[("format", b'S', b"pdf")]);
    assert_eq!(routed_with(&t, "amq.match", "", Some(&msg)), ["docs"], "two bindings, one copy");
    assert!(routed_with(&t, "amq.match", "", Some(&test_table(&[("format", b'S', b"txt")]))).is_empty());
    assert!(routed_with(&t, "amq.match", "", None).is_empty());

    // A bad x-match is refused and changes nothing.
    let mut bad = b.clone();
    bad.args = test_table(&[("x-match", b'S', b"some")]);
    let v = t.version();
    let r = t.apply(&Change::Bind(bad));
    assert!(matches!(r, Err(RouteError::BadArgument(_))));
    assert_eq!((t.version(), t.bindings().count()), (v, 2));
    // Unbinding one leaves the other.
    t.apply(&Change::Unbind(b)).unwrap();
    assert!(routed_with(&t, "amq.match", "", Some(&test_table(&[("region", b'S', b"eu")]))).is_empty());
    assert_eq!(routed_with(&t, "amq.match", "", Some(&msg)), ["docs"]);
}

#[test]
fn exchange_to_exchange_bindings_and_cycles() {
    let mut t = RoutingTable::new();
    declare(&mut t, "a", ExchangeKind::Fanout);
    declare(&mut t, "b", ExchangeKind::Topic);
    declare(&mut t, "c", ExchangeKind::Direct);
    bind(&mut t, "a", xd("b"), "").unwrap();
    bind(&mut t, "a", qd("qa"), "").unwrap();
    bind(&mut t, "b", xd("c"), "k.#").unwrap();
    bind(&mut t, "b", qd("shared"), "#").unwrap();
    bind(&mut t, "c", qd("shared"), "k.1").unwrap();
    bind(&mut t, "c", qd("qc"), "k.1").unwrap();
    assert_eq!(routed(&t, "a", "k.1"), ["qa", "qc", "shared"]);
    assert_eq!(routed(&t, "a", "z"), ["qa", "shared"]);
    // Close the loops: c -> a, and a -> a.
    bind(&mut t, "c", xd("a"), "k.1").unwrap();
    bind(&mut t, "a", xd("a"), "").unwrap();
    assert_eq!(routed(&t, "b", "k.1"), ["qa", "qc", "shared"]);
    assert_eq!(routed(&t, "c", "k.1"), ["qa", "qc", "shared"]);
}

#[test]
fn alternate_exchanges() {
    let mut t = RoutingTable::new();
    let mut x = ExchangeDef::new("x", ExchangeKind::Direct);
    x.alternate = Some("ae".into());
    t.apply(&Change::DeclareExchange(x)).unwrap();
    declare(&mut t, "ae", ExchangeKind::Fanout);
    bind(&mut t, "x", qd("matched"), "k").unwrap();
    bind(&mut t, "ae", qd("unrouted"), "").unwrap();
    assert_eq!(routed(&t, "x", "k"), ["matched"]);
    assert_eq!(routed(&t, "x", "other"), ["unrouted"]);

    // Per exchange, as in RabbitMQ: x matches (an exchange), so x's
    // alternate is not used; y matches nothing, so y's alternate is.
    let mut y = ExchangeDef::new("y", ExchangeKind::Direct);
    y.alternate = Some("ae2".into());
    t.apply(&Change::DeclareExchange(y)).unwrap();
    declare(&mut t, "ae2", ExchangeKind::Fanout);
    bind(&mut t, "ae2", qd("y-unrouted"), "").unwrap();
    bind(&mut t, "x", xd("y"), "to-y").unwrap();
    assert_eq!(routed(&t, "x", "to-y"), ["y-unrouted"]);

    // Alternates in a cycle, and an alternate that does not exist.
    let mut p = ExchangeDef::new("p", ExchangeKind::Topic);
    p.alternate = Some("r".into());
    let mut r = ExchangeDef::new("r", ExchangeKind::Headers);
    r.alternate = Some("p".into());
    let mut lost = ExchangeDef::new("lost", ExchangeKind::Fanout);
    lost.alternate = Some("missing".into());
    for d in [p, r, lost] {
        t.apply(&Change::DeclareExchange(d)).unwrap();
    }
    assert!(routed(&t, "p", "k").is_empty());
    assert!(routed(&t, "lost", "k").is_empty());
    // A fanout with no bindings matched nothing: its alternate is used.
    let mut empty = ExchangeDef::new("empty", ExchangeKind::Fanout);
    empty.alternate = Some("ae".into());
    t.apply(&Change::DeclareExchange(empty)).unwrap();
    assert_eq!(routed(&t, "empty", "k"), ["unrouted"]);
    bind(&mut t, "r", qd("via-r"), "").unwrap();
    assert_eq!(routed(&t, "p", "k"), ["via-r"]);
}

#[test]
fn delete_exchange_removes_its_bindings_both_ways() {
    let mut t = RoutingTable::new();
    declare(&mut t, "src", ExchangeKind::Fanout);
    declare(&mut t, "mid", ExchangeKind::Fanout);
    bind(&mut t, "src", xd("mid"), "").unwrap();
    bind(&mut t, "src", qd("q0"), "").unwrap();
    bind(&mut t, "mid", qd("q1"), "").unwrap();
    bind(&mut t, "mid", xd("src"), "").unwrap();
    assert_eq!(routed(&t, "src", ""), ["q0", "q1"]);
    t.apply(&Change::DeleteExchange("mid".into())).unwrap();
    assert_eq!(t.exchange("mid"), None);
    assert_eq!(routed(&t, "src", ""), ["q0"]);
    assert_eq!(t.bindings().count(), 1);
    assert_eq!(t.incoming_len(), 1);
    assert!(matches!(t.apply(&Change::DeleteExchange("mid".into())), Err(RouteError::NotFound(_))));
    // Redeclared, it starts empty.
    declare(&mut t, "mid", ExchangeKind::Fanout);
    assert!(routed(&t, "mid", "").is_empty());
    assert_eq!(t.bindings_from("src").count(), 1);
}

#[test]
fn queue_gone_drops_every_binding_to_it() {
    let mut t = RoutingTable::new();
    bind(&mut t, "amq.direct", qd("q"), "a").unwrap();
    bind(&mut t, "amq.direct", qd("q"), "b").unwrap();
    bind(&mut t, "amq.topic", qd("q"), "#").unwrap();
    bind(&mut t, "amq.topic", qd("keep"), "#").unwrap();
    t.apply(&Change::QueueGone("q".into())).unwrap();
    assert!(routed(&t, "amq.direct", "a").is_empty());
    assert_eq!(routed(&t, "amq.topic", "x"), ["keep"]);
    assert!(t.bindings().all(|b| b.dest != qd("q")));
    assert_eq!(t.incoming_len(), 1);
    t.apply(&Change::QueueGone("never-bound".into())).unwrap();
}

#[test]
fn redeclare_must_match() {
    let mut t = RoutingTable::new();
    let mut d = ExchangeDef::new("x", ExchangeKind::Topic);
    d.durable = true;
    d.alternate = Some("ae".into());
    t.apply(&Change::DeclareExchange(d.clone())).unwrap();
    t.apply(&Change::DeclareExchange(d.clone())).unwrap();
    let variants: [fn(&mut ExchangeDef); 5] = [
        |d| d.kind = ExchangeKind::Direct,
        |d| d.durable = false,
        |d| d.auto_delete = true,
        |d| d.internal = true,
        |d| d.alternate = None,
    ];
    for change in variants {
        let mut other = d.clone();
        change(&mut other);
        let r = t.apply(&Change::DeclareExchange(other));
        assert_eq!(r, Err(RouteError::Mismatch("x".into())));
    }
    assert_eq!(t.version(), 2);
    assert_eq!(t.exchange("x"), Some(&d));
}

#[test]
fn version_counts_applied_changes() {
    let mut t = RoutingTable::new();
    declare(&mut t, "x", ExchangeKind::Direct);
    bind(&mut t, "x", qd("q"), "k").unwrap();
    bind(&mut t, "x", qd("q"), "k").unwrap(); // the same binding: no-op
    assert_eq!(t.bindings().count(), 1);
    assert_eq!(t.version(), 3);
    assert!(matches!(bind(&mut t, "nope", qd("q"), "k"), Err(RouteError::NotFound(_))));
    assert!(matches!(bind(&mut t, "x", xd("nope"), "k"), Err(RouteError::NotFound(_))));
    assert!(matches!(t.apply(&Change::Unbind(binding("nope", qd("q"), "k"))), Err(RouteError::NotFound(_))));
    assert_eq!(t.version(), 3);
    // Unbinding what is not bound is fine, as in RabbitMQ.
    t.apply(&Change::Unbind(binding("x", qd("q"), "other"))).unwrap();
    t.apply(&Change::Unbind(binding("x", qd("q"), "k"))).unwrap();
    assert!(routed(&t, "x", "k").is_empty());
    assert_eq!((t.version(), t.bindings().count(), t.incoming_len()), (5, 0, 0));
}

#[test]
fn internal_exchanges_take_no_publishes() {
    let mut t = RoutingTable::new();
    let mut d = ExchangeDef::new("inside", ExchangeKind::Fanout);
    d.internal = true;
    t.apply(&Change::DeclareExchange(d)).unwrap();
    bind(&mut t, "inside", qd("q"), "").unwrap();
    bind(&mut t, "amq.fanout", xd("inside"), "").unwrap();
    let mut out = Vec::new();
    assert!(matches!(t.route("inside", "", None, &mut out), Err(RouteError::AccessRefused(_))));
    assert_eq!(routed(&t, "amq.fanout", ""), ["q"]);
}

#[test]
fn auto_delete_cascades() {
    let mut t = RoutingTable::new();
    for name in ["outer", "inner"] {
        let mut d = ExchangeDef::new(name, ExchangeKind::Fanout);
        d.auto_delete = true;
        t.apply(&Change::DeclareExchange(d)).unwrap();
    }
    bind(&mut t, "outer", xd("inner"), "").unwrap();
    bind(&mut t, "inner", qd("q1"), "").unwrap();
    bind(&mut t, "inner", qd("q2"), "").unwrap();
    t.apply(&Change::Unbind(binding("inner", qd("q1"), ""))).unwrap();
    assert!(t.exchange("inner").is_some());
    let mut gone = Vec::new();
    t.apply_collect(&Change::QueueGone("q2".into()), &mut gone).unwrap();
    assert_eq!(gone, ["inner", "outer"]);
    assert_eq!((t.exchanges().count(), t.bindings().count(), t.incoming_len()), (6, 0, 0));
}

/// A table with a bit of everything, for the snapshot tests.
fn mixed() -> RoutingTable {
    let mut t = RoutingTable::new();
    let mut logs = ExchangeDef::new("logs", ExchangeKind::Topic);
    logs.durable = true;
    logs.alternate = Some("unrouted".into());
    let mut unrouted = ExchangeDef::new("unrouted", ExchangeKind::Fanout);
    unrouted.durable = true;
    unrouted.args = test_table(&[("note", b'S', b"kept as is")]);
    for d in [logs, unrouted, ExchangeDef::new("tmp", ExchangeKind::Headers)] {
        t.apply(&Change::DeclareExchange(d)).unwrap();
    }
    bind(&mut t, "logs", qd("errors"), "*.error").unwrap();
    bind(&mut t, "logs", qd("all"), "#").unwrap();
    bind(&mut t, "logs", xd("tmp"), "audit.#").unwrap();
    bind(&mut t, "unrouted", qd("dead"), "").unwrap();
    bind(&mut t, "amq.direct", qd("errors"), "e").unwrap();
    let args = test_table(&[("x-match", b'S', b"all"), ("kind", b'S', b"audit")]);
    t.apply(&Change::Bind(BindingDef { source: "tmp".into(), dest: qd("audits"), key: String::new(), args })).unwrap();
    t.apply(&Change::Unbind(binding("logs", qd("all"), "#"))).unwrap();
    t
}

fn same_routes(a: &RoutingTable, b: &RoutingTable) {
    let audit = test_table(&[("kind", b'S', b"audit")]);
    for x in ["logs", "unrouted", "tmp", "amq.direct", ""] {
        for key in ["db.error", "audit.x", "e", "nothing", ""] {
            for h in [None, Some(&audit[..])] {
                assert_eq!(routed_with(a, x, key, h), routed_with(b, x, key, h), "{x} {key}");
            }
        }
    }
}

#[test]
fn snapshot_round_trip() {
    let t = mixed();
    let snap = t.snapshot();
    assert!(matches!(snap[0], Change::DeclareExchange(_)));
    let copy = RoutingTable::from_snapshot(t.version(), &snap).unwrap();
    assert_eq!(copy.version(), t.version());
    same_routes(&t, &copy);
    assert_eq!(copy.snapshot(), snap);
    for d in t.exchanges() {
        assert_eq!(copy.exchange(&d.name), Some(d));
    }
    // Durable part: "tmp" is transient, and so are its bindings both ways;
    // the queue "dead" is said to be transient.
    let durable = t.durable_snapshot(|q| q != "dead");
    let names: Vec<String> = durable
        .iter()
        .map(|c| match c {
            Change::DeclareExchange(d) => d.name.clone(),
            Change::Bind(b) => format!("{}->{}", b.source, b.dest.name()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["logs", "unrouted", "amq.direct->errors", "logs->errors"]);
}

#[test]
fn each_vhost_has_its_own_standard_exchanges_and_dropping_it_leaves_the_others() {
    use super::vhost::qualify;
    let mut t = RoutingTable::new();
    t.add_vhost("a");
    t.add_vhost("a");
    t.add_vhost("/");
    assert_eq!(t.exchange_count(), 0, "standard exchanges are not counted");
    let (ax, aq) = (qualify("a", "amq.direct").into_owned(), qualify("a", "q").into_owned());
    assert!(t.exchange(&ax).is_some() && t.exchange("amq.direct").is_some());
    // The vhost's amq.* are as protected as `/`'s.
    assert!(t.apply(&Change::DeleteExchange(ax.clone())).is_err());
    let mine = qualify("a", "amq.mine").into_owned();
    assert!(t.apply(&Change::DeclareExchange(ExchangeDef::new(mine, ExchangeKind::Direct))).is_err());
    bind(&mut t, &ax, qd(&aq), "k").unwrap();
    bind(&mut t, "amq.direct", qd("q"), "k").unwrap();
    let logs = qualify("a", "logs").into_owned();
    declare(&mut t, &logs, ExchangeKind::Fanout);
    bind(&mut t, &logs, qd(&aq), "").unwrap();
    assert_eq!(t.exchange_count(), 1);
    assert_eq!(routed(&t, &ax, "k"), [aq]);
    assert_eq!(routed(&t, "amq.direct", "k"), ["q"]);
    let version = t.version();
    t.drop_vhost("a");
    assert_eq!(t.version(), version, "every copy drops it as it applies the deletion");
    assert!(t.exchange(&ax).is_none() && t.exchange(&logs).is_none());
    assert_eq!(t.exchange_count(), 0);
    assert_eq!(routed(&t, "amq.direct", "k"), ["q"], "'/' keeps its bindings");
    assert_eq!(t.binding_count(), 1);
    assert_eq!(t.incoming_len(), 1);
}
