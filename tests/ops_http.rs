//! Prometheus `/metrics` and the HTTP management API against a real broker.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::scrape::sample;
use common::{queue_on, Raw, TestBroker};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// `guest:guest`, base64.
const GUEST: &str = "Z3Vlc3Q6Z3Vlc3Q=";

/// One HTTP/1.1 request over a fresh socket: (status, body).
fn http(addr: SocketAddr, method: &str, path: &str, auth: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics listener");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = auth.map(|a| format!("Authorization: Basic {a}\r\n")).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: test\r\n{auth}Connection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("a whole response");
    let status = raw.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("{raw}"));
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// Scrapes until `check` holds (acks land asynchronously), or panics.
fn scrape_until(addr: SocketAddr, path: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = http(addr, "GET", path, None);
        assert_eq!(status, 200, "{body}");
        if check(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "metrics never matched:\n{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn metrics_count_what_the_test_did() {
    let b = TestBroker::start();
    let (q0, q1) = (queue_on(0, 2, "ops-m"), queue_on(1, 2, "ops-m"));
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

    let want = [
        ("ringmq_messages_published_total", 7.0),
        ("ringmq_messages_confirmed_total", 7.0),
        ("ringmq_messages_delivered_total", 4.0),
        ("ringmq_messages_acked_total", 3.0),
        ("ringmq_messages_redelivered_total", 0.0),
        ("ringmq_messages_dead_lettered_total", 0.0),
        ("ringmq_messages_ready", 3.0),
        ("ringmq_messages_unacked", 1.0),
        ("ringmq_queues", 2.0),
        ("ringmq_connections{protocol=\"native\"}", 1.0),
        ("ringmq_connections{protocol=\"amqp\"}", 0.0),
        ("ringmq_publish_confirm_latency_seconds_count", 7.0),
    ];
    let body = scrape_until(b.metrics, "/metrics", |t| want.iter().all(|(s, v)| sample(t, s) == Some(*v)));
    for q in [&q0, &q1] {
        let ready = if *q == q0 { 0.0 } else { 3.0 };
        let s = format!("ringmq_queue_messages_ready{{queue=\"{q}\",vhost=\"/\"}}");
        assert_eq!(sample(&body, &s), Some(ready), "{s} in\n{body}");
    }
    let s = format!("ringmq_queue_messages_unacked{{queue=\"{q0}\",vhost=\"/\"}}");
    assert_eq!(sample(&body, &s), Some(1.0));
    let s = format!("ringmq_queue_consumers{{queue=\"{q0}\",vhost=\"/\"}}");
    assert_eq!(sample(&body, &s), Some(1.0));
    // Queue 1 lives on shard 1: publishes to it crossed the mesh unless the
    // connection landed there; either way the counter is present.
    assert!(sample(&body, "ringmq_forwarded_requests_total").is_some());
    assert!(body.contains("# TYPE ringmq_publish_confirm_latency_seconds histogram"));
    assert!(body.contains("ringmq_storage_fsyncs_total"));
    assert!(body.contains("ringmq_storage_disk_bytes"));
    let per_object = scrape_until(b.metrics, "/metrics/per-object", |_| true);
    assert!(per_object.contains(&format!("queue=\"{q1}\"")));

    // An AMQP socket counts under its own protocol from its accept on.
    let amqp = TcpStream::connect(b.amqp).unwrap();
    scrape_until(b.metrics, "/metrics", |t| {
        sample(t, "ringmq_connections{protocol=\"amqp\"}") == Some(1.0)
            && sample(t, "ringmq_connections{protocol=\"native\"}") == Some(1.0)
    });
    drop(amqp);
}

#[test]
fn many_queues_keep_per_queue_series_out_of_metrics() {
    let b = TestBroker::start();
    let (mut raw, _) = Raw::hello(b.native);
    // Enough for several slices of the chunked snapshot and formatting on
    // each shard (STATS_CHUNK, FORMAT_CHUNK).
    let n = 3 * ringmq::server::admin::FORMAT_CHUNK + 17;
    assert!(n as u64 > ringmq::server::stats::PER_QUEUE_SERIES_MAX);
    for i in 0..n {
        raw.declare(&format!("ops-many-{i}"));
    }
    let (status, body) = http(b.metrics, "GET", "/metrics", None);
    assert_eq!(status, 200);
    assert!(!body.contains("ringmq_queue_messages_ready{"), "per-queue series in /metrics");
    assert_eq!(sample(&body, "ringmq_queues"), Some(n as f64));
    let (_, detail) = http(b.metrics, "GET", "/metrics/per-object", None);
    assert!(detail.contains("ringmq_queue_messages_ready{queue=\"ops-many-0\",vhost=\"/\"} 0"));
    // Every queue exactly once in each series, whole lines only.
    for series in ["ringmq_queue_messages_ready", "ringmq_queue_messages_unacked", "ringmq_queue_consumers"] {
        let mut names: Vec<&str> = detail
            .lines()
            .filter_map(|l| l.strip_prefix(series)?.strip_prefix("{queue=\""))
            .map(|l| l.split('"').next().unwrap())
            .collect();
        assert_eq!(names.len(), n, "{series}");
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n, "{series} has duplicates");
    }
    assert!(detail.ends_with('\n'));
    let (status, body) = http(b.metrics, "GET", "/api/queues", Some(GUEST));
    assert_eq!(status, 200);
    let qs: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let mut names: Vec<&str> = qs.as_array().unwrap().iter().map(|q| q["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), n);
}

#[test]
fn management_api() {
    let b = TestBroker::start();
    let (q0, q1) = (queue_on(0, 2, "ops-api"), queue_on(1, 2, "ops-api"));
    let (mut raw, _) = Raw::hello(b.native);
    raw.declare(&q0);
    raw.declare(&q1);
    raw.publish_confirmed(&q1, &[b"x", b"y"]);

    // Bad or missing credentials: 401 with a challenge.
    let bad = "Z3Vlc3Q6d3Jvbmc="; // guest:wrong
    for auth in [None, Some(bad), Some("not-base64!")] {
        let (status, body) = http(b.metrics, "GET", "/api/overview", auth);
        assert_eq!(status, 401, "{auth:?}: {body}");
    }

    let json = |path: &str| {
        let (status, body) = http(b.metrics, "GET", path, Some(GUEST));
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    };
    let o = json("/api/overview");
    assert_eq!(o["product_name"], "ringmq");
    assert_eq!(o["queue_totals"]["messages_ready"], 2);
    assert_eq!(o["object_totals"]["queues"], 2);
    let stats = &o["message_stats"];
    assert_eq!((stats["publish"].as_u64(), stats["drop_unroutable"].as_u64()), (Some(2), Some(0)), "{o}");
    assert_eq!((stats["deliver_get"].as_u64(), stats["get_empty"].as_u64()), (Some(0), Some(0)), "{o}");

    let qs = json("/api/queues");
    let names: Vec<&str> = qs.as_array().unwrap().iter().map(|q| q["name"].as_str().unwrap()).collect();
    assert!(names.contains(&q0.as_str()) && names.contains(&q1.as_str()), "{qs}");
    let q = json(&format!("/api/queues/%2F/{q1}"));
    assert_eq!(q["name"], q1.as_str());
    assert_eq!(q["vhost"], "/");
    assert_eq!(q["messages"], 2);
    assert_eq!(q["messages_ready"], 2);
    assert_eq!(q["messages_unacknowledged"], 0);
    assert_eq!(q["consumers"], 0);
    assert_eq!(q["durable"], false);
    let (status, _) = http(b.metrics, "GET", "/api/queues/%2F/no-such-queue", Some(GUEST));
    assert_eq!(status, 404);

    let ex = json("/api/exchanges");
    assert_eq!(ex[0]["name"], "");
    assert_eq!(json("/api/vhosts")[0]["name"], "/");

    let conns = json("/api/connections");
    let conns = conns.as_array().unwrap();
    assert_eq!(conns.len(), 1, "{conns:?}");
    assert_eq!(conns[0]["protocol"], "ringmq");
    // Its traffic: it published and was answered.
    for k in ["recv_oct", "recv_cnt", "send_oct", "send_cnt"] {
        assert!(conns[0][k].as_u64().is_some_and(|v| v > 0), "{k}: {conns:?}");
    }

    // Deleting: the queue goes, a second delete is a 404.
    let (status, body) = http(b.metrics, "DELETE", &format!("/api/queues/%2F/{q1}"), Some(GUEST));
    assert_eq!(status, 204, "{body}");
    let (status, _) = http(b.metrics, "DELETE", &format!("/api/queues/%2F/{q1}"), Some(GUEST));
    assert_eq!(status, 404);
    assert_eq!(json("/api/overview")["object_totals"]["queues"], 1);
    let (status, _) = http(b.metrics, "DELETE", &format!("/api/queues/%2F/{q1}"), Some(bad));
    assert_eq!(status, 401);

    // Closing the connection: the client sees the broker's goodbye.
    let name = conns[0]["name"].as_str().unwrap().to_string();
    let (status, body) = http(b.metrics, "DELETE", &format!("/api/connections/{name}"), Some(GUEST));
    assert_eq!(status, 204, "{body}");
    raw.expect_error(ringmq::protocol::ErrorCode::ShuttingDown);
    let (status, _) = http(b.metrics, "DELETE", "/api/connections/9:9", Some(GUEST));
    assert_eq!(status, 404);
}

/// Reads until the broker closes the socket; how long that took, or a
/// panic after `limit`. Whatever arrived before the close is returned too.
fn until_closed(s: &mut TcpStream, limit: Duration) -> (Duration, String) {
    let start = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (start.elapsed(), String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // A reset is a close too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (start.elapsed(), String::from_utf8_lossy(&got).into_owned())
            }
            Err(e) => panic!("the broker did not close the connection within {limit:?}: {e}"),
        }
    }
}

#[test]
fn http_timeouts_close_stalled_and_idle_connections() {
    let b = TestBroker::start_with(2, |c| {
        c.http_request_timeout_ms = 500;
        c.http_idle_timeout_ms = 1500;
    });
    let limit = Duration::from_secs(5);

    // Half a request, then nothing: closed once the head is 500 ms late,
    // while other requests are served meanwhile.
    let mut half = TcpStream::connect(b.metrics).unwrap();
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n").unwrap();
    let started = Instant::now();
    for _ in 0..3 {
        let (status, body) = http(b.metrics, "GET", "/metrics", None);
        assert_eq!(status, 200, "{body}");
    }
    let (_, got) = until_closed(&mut half, limit);
    assert!(got.is_empty(), "a half request got an answer: {got}");
    let total = started.elapsed();
    assert!(total >= Duration::from_millis(400) && total < Duration::from_secs(4), "closed after {total:?}");

    // A request trickled a byte at a time keeps the socket busy but its
    // head never completes: closed at the request timeout all the same.
    let mut trickle = TcpStream::connect(b.metrics).unwrap();
    let started = Instant::now();
    let mut closed = false;
    for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: ".iter().cycle().take(100) {
        if trickle.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        if started.elapsed() > limit {
            break;
        }
    }
    if !closed {
        until_closed(&mut trickle, limit);
    }
    let total = started.elapsed();
    assert!(total < Duration::from_secs(4), "a trickled request stayed open {total:?}");

    // A keep-alive connection that goes quiet after its answer: closed
    // after the idle timeout, not before.
    let mut idle = TcpStream::connect(b.metrics).unwrap();
    idle.write_all(b"GET /api/exchanges HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let started = Instant::now();
    let (_, got) = until_closed(&mut idle, limit);
    let total = started.elapsed();
    assert!(got.starts_with("HTTP/1.1 401"), "{got}");
    assert!(total >= Duration::from_millis(1300) && total < Duration::from_secs(4), "idle close after {total:?}");

    // The listener is still fine.
    assert_eq!(http(b.metrics, "GET", "/metrics", None).0, 200);
}

#[test]
fn http_head_and_body_limits() {
    let b = TestBroker::start();
    // A head over HEADER_BYTES_MAX: 431, then the connection closes.
    let mut s = TcpStream::connect(b.metrics).unwrap();
    let big = "x".repeat(ringmq::http::HEADER_BYTES_MAX + 1024);
    write!(s, "GET /metrics HTTP/1.1\r\nHost: test\r\nX-Big: {big}\r\n\r\n").unwrap();
    let (_, got) = until_closed(&mut s, Duration::from_secs(5));
    assert!(got.starts_with("HTTP/1.1 431"), "{got}");

    // A body announced far larger than anything the broker reads: the
    // answer comes, and the connection closes instead of reading it.
    let mut s = TcpStream::connect(b.metrics).unwrap();
    write!(s, "DELETE /api/queues/%2F/none HTTP/1.1\r\nHost: test\r\nAuthorization: Basic {GUEST}\r\nContent-Length: 10000000000\r\n\r\n").unwrap();
    s.write_all(&[b'x'; 1000]).unwrap();
    let (_, got) = until_closed(&mut s, Duration::from_secs(5));
    assert!(got.starts_with("HTTP/1.1 404"), "{got}");
    assert_eq!(http(b.metrics, "GET", "/metrics", None).0, 200);
}
