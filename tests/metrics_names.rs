//! ringmq's `/metrics` and `/metrics/per-object` against RabbitMQ's: a
//! real broker, real traffic, real HTTP scrapes, compared with the names,
//! types and label names a real RabbitMQ 3.10 served
//! (`tests/data/rabbitmq_prometheus_names.txt`, written by
//! `scripts/capture-rabbitmq-metrics.sh`).
//!
//! The comparison is complete: for each endpoint, every name of the
//! capture is either served by ringmq (with RabbitMQ's type and label
//! names) or listed in `tests/data/rabbitmq_not_provided.txt` with the
//! reason, never both; and every name ringmq serves is its own
//! (`ringmq_*`), one of the standard `process_*` series, or one it claims
//! in `ringmq::server::stats_rabbit`.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::scrape::{sample, scrape_until, AmqpHold};
use common::{queue_on, Raw, TestBroker};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const CAPTURE: &str = include_str!("data/rabbitmq_prometheus_names.txt");
const NOT_PROVIDED: &str = include_str!("data/rabbitmq_not_provided.txt");
const DASHBOARD: &str = include_str!("data/rabbitmq_overview_dashboard_names.txt");

/// The standard process series (Prometheus client libraries' names) that
/// ringmq serves beside RabbitMQ's.
const PROCESS: [&str; 5] = [
    "process_cpu_seconds_total",
    "process_start_time_seconds",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_max_fds",
];

/// A metric family: its type and the label names of its samples.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
}

/// endpoint ("metrics" or "per-object") -> name -> family.
type Families = BTreeMap<String, BTreeMap<String, Family>>;

fn capture() -> Families {
    let mut out = Families::new();
    for line in CAPTURE.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 4, "capture line {line:?}");
        let labels = if f[3] == "-" { BTreeSet::new() } else { f[3].split(',').map(String::from).collect() };
        let fam = Family { kind: f[2].to_string(), labels };
        out.entry(f[0].to_string()).or_default().insert(f[1].to_string(), fam);
    }
    out
}

/// endpoint -> names ringmq does not serve, each with a reason. A name
/// ending in `*` stands for every name it starts (families that have no
/// meaning outside an Erlang VM).
fn not_provided() -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for line in NOT_PROVIDED.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let mut f = line.splitn(3, char::is_whitespace);
        let (endpoint, name, reason) = (f.next().unwrap(), f.next().unwrap_or(""), f.next().unwrap_or("").trim());
        assert!(endpoint == "metrics" || endpoint == "per-object", "{line:?}");
        assert!(!reason.is_empty(), "every name not provided says why: {line:?}");
        out.entry(endpoint.to_string()).or_default().push((name.to_string(), reason.to_string()));
    }
    out
}

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// Parses an exposition: every sample belongs to a family declared once
/// by a `# TYPE` line before it; `_bucket`, `_sum`, `_count` samples to
/// their histogram or summary.
fn parse(text: &str) -> BTreeMap<String, Family> {
    let mut fams: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            let fam = Family { kind: kind.to_string(), labels: BTreeSet::new() };
            assert!(fams.insert(name.to_string(), fam).is_none(), "{name} declared twice");
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let end = line.find(['{', ' ']).unwrap();
        let name = &line[..end];
        let family = if fams.contains_key(name) {
            name.to_string()
        } else {
            let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
            assert!(fams.contains_key(base), "sample {line:?} has no # TYPE before it");
            base.to_string()
        };
        let labels = label_names(&line[end..]);
        fams.get_mut(&family).unwrap().labels.extend(labels.into_iter().filter(|l| l != "le" && l != "quantile"));
    }
    fams
}

/// The label names of a sample's `{...}` (values may hold `,` and `"`).
fn label_names(rest: &str) -> Vec<String> {
    let Some(body) = rest.strip_prefix('{') else { return Vec::new() };
    let mut names = Vec::new();
    let mut s = body;
    while let Some((name, after)) = s.split_once("=\"") {
        names.push(name.trim_start_matches(',').to_string());
        // Skip the value: up to the first `"` not escaped.
        let mut escaped = false;
        let mut end = after.len();
        for (i, c) in after.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = i;
                    break;
                }
                _ => escaped = false,
            }
        }
        s = &after[(end + 1).min(after.len())..];
        if s.starts_with('}') {
            break;
        }
    }
    names
}

/// Checks one endpoint's names; returns (served, not provided) RabbitMQ
/// names for the report.
fn compare(endpoint: &str, served: &BTreeMap<String, Family>, claimed: &[&str]) -> (usize, Vec<String>) {
    let capture = capture();
    let reference = &capture[endpoint];
    let not_provided = not_provided().remove(endpoint).unwrap_or_default();
    let claimed: BTreeSet<&str> = claimed.iter().copied().collect();
    for name in served.keys() {
        let known = name.starts_with("ringmq_") || PROCESS.contains(&name.as_str()) || claimed.contains(name.as_str());
        assert!(known, "{endpoint}: {name} is served but neither ringmq's own nor claimed in stats_rabbit");
    }
    for name in &claimed {
        let ours = served.get(*name).unwrap_or_else(|| panic!("{endpoint}: {name} is claimed but not served"));
        let theirs = reference.get(*name).unwrap_or_else(|| panic!("{endpoint}: RabbitMQ has no {name}"));
        assert_eq!(ours, theirs, "{endpoint}: {name}: ringmq's type and label names, then RabbitMQ's");
        let listed = not_provided.iter().find(|(p, _)| matches(p, name));
        assert!(listed.is_none(), "{endpoint}: {name} is served and also listed as not provided: {listed:?}");
    }
    let mut missing = Vec::new();
    for name in reference.keys() {
        if claimed.contains(name.as_str()) {
            continue;
        }
        let listed = not_provided.iter().find(|(p, _)| matches(p, name));
        assert!(listed.is_some(), "{endpoint}: RabbitMQ's {name} is neither served nor in rabbitmq_not_provided.txt");
        missing.push(name.clone());
    }
    // A stale entry (a name RabbitMQ does not have) would hide nothing,
    // but would make the list lie.
    for (pattern, _) in &not_provided {
        assert!(
            reference.keys().any(|n| matches(pattern, n)),
            "{endpoint}: {pattern} is listed as not provided but RabbitMQ has no such name"
        );
    }
    (claimed.len(), missing)
}

#[test]
fn rabbitmq_names_match_a_real_rabbitmq_and_the_list_is_complete() {
    let b = TestBroker::start();
    let (q0, q1) = (queue_on(0, 2, "names"), queue_on(1, 2, "names"));
    let (mut raw, _) = Raw::hello(b.native);
    raw.declare(&q0);
    raw.declare(&q1);
    raw.publish_confirmed(&q0, &[b"a", b"b", b"c", b"d"]);
    raw.publish_confirmed(&q1, &[b"e", b"f", b"g"]);
    // 4 delivered from q0, 3 of them acked; q1 keeps its 3 ready.
    let (cid, mut got) = raw.subscribe(&q0, 10);
    let rest = 4 - got.len();
    got.extend(raw.expect_deliveries(cid, rest));
    raw.ack(cid, &[(1, 3)]);
    raw.ping();

    let both = "{protocol=\"all\",queue_type=\"rabbit_classic_queue\"}";
    let want = [
        ("rabbitmq_queue_messages_ready".to_string(), 3.0),
        ("rabbitmq_queue_messages_unacked".into(), 1.0),
        ("rabbitmq_queue_messages".into(), 4.0),
        ("rabbitmq_queue_messages_published_total".into(), 7.0),
        ("rabbitmq_queues".into(), 2.0),
        ("rabbitmq_connections".into(), 1.0),
        ("rabbitmq_consumers".into(), 1.0),
        ("rabbitmq_channel_messages_acked_total".into(), 3.0),
        ("rabbitmq_channel_messages_confirmed_total".into(), 7.0),
        (format!("rabbitmq_global_messages_delivered_total{both}"), 4.0),
        (format!("rabbitmq_global_messages_acknowledged_total{both}"), 3.0),
        ("rabbitmq_global_messages_confirmed_total{protocol=\"all\"}".into(), 7.0),
        ("rabbitmq_alarms_memory_used_watermark".into(), 0.0),
        ("rabbitmq_queues_declared_total".into(), 2.0),
        ("rabbitmq_queues_created_total".into(), 2.0),
        ("rabbitmq_queues_deleted_total".into(), 0.0),
        ("ringmq_queues_created_total".into(), 2.0),
        ("rabbitmq_connections_opened_total".into(), 1.0),
        ("rabbitmq_connections_closed_total".into(), 0.0),
        // Native publishes: received per batch, routed by the owner.
        ("rabbitmq_global_messages_received_total{protocol=\"all\"}".into(), 7.0),
        ("rabbitmq_global_messages_received_confirm_total{protocol=\"all\"}".into(), 7.0),
        ("rabbitmq_global_messages_routed_total{protocol=\"all\"}".into(), 7.0),
        ("rabbitmq_channel_messages_published_total".into(), 7.0),
        (format!("rabbitmq_global_messages_delivered_consume_manual_ack_total{both}"), 4.0),
        (format!("rabbitmq_global_messages_delivered_consume_auto_ack_total{both}"), 0.0),
        ("rabbitmq_channel_messages_delivered_ack_total".into(), 4.0),
        // The native login; the publishing connection; where the 4
        // messages are (all in memory, none persistent: q0's and q1's
        // are not durable).
        ("rabbitmq_auth_attempts_succeeded_total{protocol=\"all\"}".into(), 1.0),
        ("rabbitmq_auth_attempts_total{protocol=\"all\"}".into(), 1.0),
        ("rabbitmq_global_publishers{protocol=\"all\"}".into(), 1.0),
        ("rabbitmq_queue_messages_ram".into(), 4.0),
        ("rabbitmq_queue_messages_unacked_ram".into(), 1.0),
        ("rabbitmq_queue_messages_persistent".into(), 0.0),
        ("rabbitmq_queue_messages_paged_out_bytes".into(), 0.0),
        ("rabbitmq_connection_channels".into(), 0.0),
    ];
    let metrics = scrape_until(&b, "/metrics", |t| want.iter().all(|(s, v)| sample(t, s) == Some(*v)));
    traffic_and_bytes(&metrics);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(sample(&metrics, &format!("ringmq_build_info{{version=\"{version}\"}}")), Some(1.0));
    assert!(metrics.contains(&format!("rabbitmq_build_info{{rabbitmq_version=\"{version}\"")));
    assert!(metrics.contains("rabbitmq_identity_info{rabbitmq_node=\"ringmq@"), "{metrics}");
    process_series(&metrics);
    // A connection that comes and goes counts as opened and closed.
    drop(std::net::TcpStream::connect(b.amqp).unwrap());
    scrape_until(&b, "/metrics", |t| {
        sample(t, "rabbitmq_connections_opened_total") == Some(2.0)
            && sample(t, "rabbitmq_connections_closed_total") == Some(1.0)
            && sample(t, "ringmq_connections_closed_total") == Some(1.0)
    });

    sockets(&metrics, 1.0);

    // A head message with a timestamp property: its queue's is served
    // (per object), and the oldest one on /metrics.
    let q2 = queue_on(0, 2, "names-ts");
    raw.declare(&q2);
    let ts = 1_700_000_000;
    raw.publish_props_confirmed(&q2, &ringmq::protocol::props::PropsBuilder::new().timestamp(ts).build(), b"t");
    let head = "rabbitmq_queue_head_message_timestamp";
    let metrics = scrape_until(&b, "/metrics", |t| sample(t, head) == Some(ts as f64));
    // An AMQP channel open while per-object is scraped: its series are
    // labelled by channel, and a family needs a sample to show its labels.
    let amqp = AmqpHold::open(&b);
    let per_object = scrape_until(&b, "/metrics/per-object", |t| t.contains("rabbitmq_consumer_prefetch{channel="));
    drop(amqp);
    let q = |name: &str, queue: &str| sample(&per_object, &format!("{name}{{queue=\"{queue}\",vhost=\"/\"}}"));
    assert_eq!(q("rabbitmq_queue_messages_ready", &q1), Some(3.0));
    assert_eq!(q("rabbitmq_queue_messages_unacked", &q0), Some(1.0));
    assert_eq!(q("rabbitmq_queue_messages", &q0), Some(1.0));
    assert_eq!(q("rabbitmq_queue_consumers", &q0), Some(1.0));
    assert_eq!(q("ringmq_queue_messages_published_total", &q0), Some(4.0));
    assert_eq!(q("ringmq_queue_messages_delivered_total", &q0), Some(4.0));
    assert_eq!(q("ringmq_queue_messages_published_total", &q1), Some(3.0));
    assert_eq!(q("ringmq_queue_messages_delivered_total", &q1), Some(0.0));
    assert!(q("rabbitmq_queue_messages_ready_bytes", &q1).is_some_and(|v| v >= 3.0));
    assert_eq!(q(head, &q2), Some(ts as f64));
    assert_eq!(q(head, &q1), None, "a head without a timestamp has no sample");

    let (served_m, missing_m) = compare("metrics", &parse(&metrics), &ringmq::server::stats_rabbit::aggregated_names());
    let (served_p, missing_p) =
        compare("per-object", &parse(&per_object), &ringmq::server::stats_rabbit::per_object_names());
    // The names of the stock RabbitMQ-Overview dashboard (3.10.8): all
    // served on /metrics, or known not to be.
    let dashboard: Vec<&str> = DASHBOARD.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
    let capture = capture();
    let lacking: Vec<&str> = dashboard
        .iter()
        .copied()
        .filter(|n| {
            assert!(capture["metrics"].contains_key(*n), "the dashboard's {n} is not in the capture");
            missing_m.iter().any(|m| m == n)
        })
        .collect();
    eprintln!("/metrics: {served_m} RabbitMQ names served, {} not provided", missing_m.len());
    eprintln!("/metrics/per-object: {served_p} served, {} not provided", missing_p.len());
    eprintln!(
        "RabbitMQ-Overview dashboard: {} of {} names served; not provided: {lacking:?}",
        dashboard.len() - lacking.len(),
        dashboard.len()
    );
    // Every panel of the stock dashboard has its series.
    assert!(lacking.is_empty(), "the RabbitMQ-Overview dashboard lacks {lacking:?}");
}

/// The connection's traffic moved, and a queue's bytes add up: ready
/// and unacked make the total, all in memory.
fn traffic_and_bytes(text: &str) {
    let get = |n: &str| sample(text, n).unwrap_or_else(|| panic!("{n} in\n{text}"));
    for n in ["incoming_bytes", "incoming_packets", "outgoing_bytes", "outgoing_packets"] {
        assert!(get(&format!("rabbitmq_connection_{n}_total")) > 0.0, "{n}");
    }
    let (ready, unacked) = (get("rabbitmq_queue_messages_ready_bytes"), get("rabbitmq_queue_messages_unacked_bytes"));
    assert!(ready > 0.0 && unacked > 0.0);
    assert_eq!(get("rabbitmq_queue_messages_bytes"), ready + unacked);
    assert_eq!(get("rabbitmq_queue_messages_ram_bytes"), ready + unacked);
}

/// Sockets: the client connections open (at least `open`: the scrape's
/// own HTTP connection is one too), below the caps.
fn sockets(text: &str, open: f64) {
    let got = sample(text, "rabbitmq_process_open_tcp_sockets").unwrap();
    let max = sample(text, "rabbitmq_process_max_tcp_sockets").unwrap();
    assert!(got >= open && max > got, "open {got}, max {max}");
}

/// The counters of the stock dashboard's message and channel panels move
/// with a real AMQP client (lapin): publishes received in confirm mode,
/// routed or unroutable (dropped, or returned when mandatory), deliveries
/// split by consume or get and by acknowledgement mode, empty gets, and
/// channels opened and closed. Acks of an auto-ack consumer are the
/// front end's, not the client's: not counted as acknowledged.
#[test]
fn amqp_traffic_moves_the_dashboard_counters() {
    use futures_lite::StreamExt;
    use lapin::options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
        ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    };
    use lapin::types::FieldTable;
    use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};

    let b = TestBroker::start();
    let url = format!("amqp://guest:guest@{}/%2f", b.amqp);
    let q = queue_on(1, 2, "dash");
    let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let client = std::thread::spawn(move || {
        common::lapin_thread::on_thread(Duration::from_secs(60), async move {
            let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
            let ch = conn.create_channel().await?;
            ch.confirm_select(ConfirmSelectOptions::default()).await?;
            conn.create_channel().await?.close(200, "done").await?;
            ch.queue_declare(&q, QueueDeclareOptions::default(), FieldTable::default()).await?;
            let x = "dash-x";
            ch.exchange_declare(x, ExchangeKind::Direct, ExchangeDeclareOptions::default(), FieldTable::default())
                .await?;
            ch.queue_bind(&q, x, "k", QueueBindOptions::default(), FieldTable::default()).await?;
            let props = BasicProperties::default;
            let publish = |exchange: &'static str, key: String, mandatory: bool| {
                let ch = ch.clone();
                async move {
                    let o = BasicPublishOptions { mandatory, ..Default::default() };
                    ch.basic_publish(exchange, &key, o, b"m", props()).await?.await
                }
            };
            // Routed: 2 by the queue's name, 1 through the exchange.
            publish("", q.clone(), false).await?;
            publish("", q.clone(), false).await?;
            publish(x, "k".into(), false).await?;
            // Unroutable: no such queue, no binding (dropped); no binding,
            // mandatory (returned).
            publish("", "dash-no-such-queue".into(), false).await?;
            publish(x, "none".into(), false).await?;
            publish(x, "none".into(), true).await?;
            // One get with auto-ack, one with manual ack (acked).
            assert!(ch.basic_get(&q, BasicGetOptions { no_ack: true }).await?.is_some());
            let got = ch.basic_get(&q, BasicGetOptions { no_ack: false }).await?.expect("a message");
            got.delivery.acker.ack(BasicAckOptions::default()).await?;
            // One pushed to an auto-ack consumer.
            let opts = BasicConsumeOptions { no_ack: true, ..Default::default() };
            let mut auto = ch.basic_consume(&q, "auto", opts, FieldTable::default()).await?;
            auto.next().await.expect("a delivery")?;
            ch.basic_cancel("auto", BasicCancelOptions::default()).await?;
            assert!(ch.basic_get(&q, BasicGetOptions { no_ack: false }).await?.is_none());
            // Two pushed to a consumer that acks them.
            publish("", q.clone(), false).await?;
            publish("", q.clone(), false).await?;
            let mut manual =
                ch.basic_consume(&q, "manual", BasicConsumeOptions::default(), FieldTable::default()).await?;
            for _ in 0..2 {
                manual.next().await.expect("a delivery")?.acker.ack(BasicAckOptions::default()).await?;
            }
            // Held open while the test scrapes.
            let _ = ready_tx.send(());
            let _ = hold_rx.recv_timeout(Duration::from_secs(30));
            conn.close(200, "bye").await?;
            Ok(())
        })
    });
    ready_rx.recv_timeout(Duration::from_secs(60)).expect("the client's traffic");
    let all = "{protocol=\"all\"}";
    let both = "{protocol=\"all\",queue_type=\"rabbit_classic_queue\"}";
    let want = [
        (format!("rabbitmq_global_messages_received_total{all}"), 8.0),
        (format!("rabbitmq_global_messages_received_confirm_total{all}"), 8.0),
        (format!("rabbitmq_global_messages_routed_total{all}"), 5.0),
        (format!("rabbitmq_global_messages_unroutable_dropped_total{all}"), 2.0),
        (format!("rabbitmq_global_messages_unroutable_returned_total{all}"), 1.0),
        (format!("rabbitmq_global_messages_delivered_get_auto_ack_total{both}"), 1.0),
        (format!("rabbitmq_global_messages_delivered_get_manual_ack_total{both}"), 1.0),
        (format!("rabbitmq_global_messages_delivered_consume_auto_ack_total{both}"), 1.0),
        (format!("rabbitmq_global_messages_delivered_consume_manual_ack_total{both}"), 2.0),
        (format!("rabbitmq_global_messages_delivered_total{both}"), 5.0),
        (format!("rabbitmq_global_messages_get_empty_total{both}"), 1.0),
        (format!("rabbitmq_global_messages_acknowledged_total{both}"), 3.0),
        ("rabbitmq_channel_messages_published_total".into(), 8.0),
        ("rabbitmq_channel_messages_unroutable_dropped_total".into(), 2.0),
        ("rabbitmq_channel_messages_unroutable_returned_total".into(), 1.0),
        ("rabbitmq_channel_get_total".into(), 1.0),
        ("rabbitmq_channel_get_ack_total".into(), 1.0),
        ("rabbitmq_channel_get_empty_total".into(), 1.0),
        ("rabbitmq_channel_messages_delivered_total".into(), 1.0),
        ("rabbitmq_channel_messages_delivered_ack_total".into(), 2.0),
        ("rabbitmq_channels_opened_total".into(), 2.0),
        ("rabbitmq_channels_closed_total".into(), 1.0),
        ("rabbitmq_channels".into(), 1.0),
        ("rabbitmq_connections".into(), 1.0),
    ];
    let metrics = scrape_until(&b, "/metrics", |t| want.iter().all(|(s, v)| sample(t, s) == Some(*v)));
    sockets(&metrics, 2.0);
    // The same global series on /metrics/per-object.
    let per_object = scrape_until(&b, "/metrics/per-object", |_| true);
    assert_eq!(sample(&per_object, &format!("rabbitmq_global_messages_routed_total{all}")), Some(5.0));
    assert_eq!(sample(&per_object, "rabbitmq_channels_opened_total"), Some(2.0));
    hold_tx.send(()).unwrap();
    client.join().unwrap();
    // The connection's last channel closes with it.
    scrape_until(&b, "/metrics", |t| {
        sample(t, "rabbitmq_channels_closed_total") == Some(2.0) && sample(t, "rabbitmq_connections") == Some(0.0)
    });
}

/// The process series read from /proc/self (this test's process: the
/// broker runs in it).
fn process_series(text: &str) {
    let get = |n: &str| sample(text, n).unwrap_or_else(|| panic!("{n} in\n{text}"));
    let open = get("process_open_fds");
    assert!(open >= 3.0 && get("process_max_fds") >= open);
    assert!(get("process_resident_memory_bytes") > 1e6);
    assert!(get("process_cpu_seconds_total") > 0.0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let start = get("process_start_time_seconds");
    assert!(start <= now + 1.0 && start > now - 3600.0, "started at {start}, now {now}");
    assert_eq!(sample(text, "rabbitmq_process_open_fds").map(|v| v > 0.0), Some(true));
}
