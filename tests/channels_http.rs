//! `GET /api/channels` (and per vhost, per connection) against a real
//! broker: each open AMQP channel of a real client (lapin) with its
//! connection, number, user, vhost, prefetch, unacked and unconfirmed
//! messages, consumers, and confirm or transaction mode, in RabbitMQ's
//! field names; a native connection lists none (its protocol has no
//! channels); a closed channel leaves the list; the same rules of access
//! as `/api/connections`.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::lapin_thread::on_thread;
use common::{http_get, Raw, TestBroker};
use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn get(addr: SocketAddr, path: &str, auth: &str) -> (u16, Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    (head[9..12].parse().unwrap(), serde_json::from_str(body).unwrap_or(Value::Null))
}

const GUEST: &str = "Z3Vlc3Q6Z3Vlc3Q="; // guest:guest

fn channels(addr: SocketAddr, path: &str) -> Vec<Value> {
    let (status, v) = get(addr, path, GUEST);
    assert_eq!(status, 200, "{path}: {v}");
    v.as_array().unwrap().clone()
}

/// Polls until `check` holds for `/api/channels` (deliveries and closes
/// reach the broker's state a moment after the client sees them).
fn until(addr: SocketAddr, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = channels(addr, "/api/channels");
        if check(&rows) {
            return rows;
        }
        assert!(Instant::now() < deadline, "{what}: /api/channels is {rows:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn channels_of_a_real_client_are_listed_with_their_state() {
    let b = TestBroker::start();
    // A native client: connected, consuming, but no channels.
    let (mut raw, _) = Raw::hello(b.native);
    raw.declare("native-q");
    raw.subscribe("native-q", 10);

    let url = format!("amqp://guest:guest@{}/%2f", b.amqp);
    let (step_tx, step_rx) = mpsc::channel::<u8>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let client = std::thread::spawn(move || {
        on_thread(Duration::from_secs(90), async move {
            let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
            // Channel 1: confirms, prefetch 5, a consumer holding 2 unacked.
            let c1 = conn.create_channel().await?;
            c1.confirm_select(ConfirmSelectOptions::default()).await?;
            c1.basic_qos(5, BasicQosOptions::default()).await?;
            c1.queue_declare("chq", QueueDeclareOptions::default(), FieldTable::default()).await?;
            for _ in 0..2 {
                let props = BasicProperties::default();
                c1.basic_publish("", "chq", BasicPublishOptions::default(), b"m", props).await?.await?;
            }
            let mut consumer =
                c1.basic_consume("chq", "k", BasicConsumeOptions::default(), FieldTable::default()).await?;
            for _ in 0..2 {
                consumer.next().await.expect("a delivery")?;
            }
            // Channel 2: a transaction, no consumers.
            let c2 = conn.create_channel().await?;
            c2.tx_select().await?;
            let _ = step_tx.send(1);
            let _ = go_rx.recv_timeout(Duration::from_secs(60));
            c2.close(200, "done").await?;
            let _ = step_tx.send(2);
            let _ = go_rx.recv_timeout(Duration::from_secs(60));
            conn.close(200, "bye").await?;
            Ok(())
        })
    });
    assert_eq!(step_rx.recv_timeout(Duration::from_secs(60)).unwrap(), 1);
    let rows = until(b.metrics, "two channels, 2 unacked on the first", |r| {
        r.len() == 2 && r[0]["messages_unacknowledged"] == 2
    });
    let (c1, c2) = (&rows[0], &rows[1]);
    let conn = c1["connection_details"]["name"].as_str().unwrap().to_string();
    assert_eq!(c2["connection_details"]["name"], conn.as_str());
    assert_eq!(c1["name"], format!("{conn} (1)"));
    assert_eq!(c1["number"], 1);
    assert_eq!(c2["number"], 2);
    for c in [c1, c2] {
        assert_eq!(c["user"], "guest");
        assert_eq!(c["vhost"], "/");
        assert_eq!(c["state"], "running");
        assert_eq!(c["connection_details"]["peer_host"], "127.0.0.1");
        assert!(c["node"].as_str().unwrap().starts_with("shard-"));
    }
    assert_eq!((c1["confirm"].as_bool(), c1["transactional"].as_bool()), (Some(true), Some(false)));
    assert_eq!((c2["confirm"].as_bool(), c2["transactional"].as_bool()), (Some(false), Some(true)));
    assert_eq!((c1["prefetch_count"].as_u64(), c2["prefetch_count"].as_u64()), (Some(5), Some(0)));
    assert_eq!((c1["consumer_count"].as_u64(), c2["consumer_count"].as_u64()), (Some(1), Some(0)));
    assert_eq!(c1["messages_unconfirmed"], 0, "both publishes were confirmed");
    assert_eq!(c2["messages_unacknowledged"], 0);

    // The same rows per vhost and per connection; none for another vhost
    // or the native connection.
    assert_eq!(channels(b.metrics, "/api/vhosts/%2F/channels"), rows);
    let per_conn = format!("/api/connections/{}/channels", conn.replace(':', "%3A"));
    assert_eq!(channels(b.metrics, &per_conn), rows);
    let (_, conns) = get(b.metrics, "/api/connections", GUEST);
    let native = conns.as_array().unwrap().iter().find(|c| c["protocol"] == "ringmq").unwrap()["name"].clone();
    let native_path = format!("/api/connections/{}/channels", native.as_str().unwrap().replace(':', "%3A"));
    assert_eq!(channels(b.metrics, &native_path), Vec::<Value>::new());
    let (status, _) = get(b.metrics, "/api/vhosts/other/channels", GUEST);
    assert_eq!(status, 200);
    // Credentials are needed, as for connections.
    let (status, _) = get(b.metrics, "/api/channels", "Z3Vlc3Q6bm9wZQ=="); // guest:nope
    assert_eq!(status, 401);

    // A closed channel leaves the list; the connection's close takes the rest.
    go_tx.send(()).unwrap();
    assert_eq!(step_rx.recv_timeout(Duration::from_secs(30)).unwrap(), 2);
    until(b.metrics, "the second channel gone", |r| r.len() == 1 && r[0]["number"] == 1);
    go_tx.send(()).unwrap();
    client.join().unwrap();
    until(b.metrics, "no channel left", <[Value]>::is_empty);
    assert!(http_get(b.metrics, "/metrics").contains("rabbitmq_channels 0"));
}
