//! A pull consumer's `get` and its ack across a reconnect (docs/client-recovery.md,
//! "Pull consumers across a reconnect"; issue 21 item 2): a message is
//! pulled with `get`, the broker is killed with `kill -9` and restarted on
//! the same ports and data dir, and the old delivery's ack is refused with
//! `ClientError::StaleDelivery` (while the connection is down and after it
//! is back) instead of acking whatever carries the same tag on the new
//! connection; the message comes again, flagged `redelivered`, its ack on
//! the new connection works, and nothing is lost or acked twice. For the
//! tokio and the glommio client.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::process::{free_ports, serve_at};
use futures_lite::StreamExt;
use ringmq::client::{ClientError, ClientOptions, Delivery, Event, ProducerOptions, Recovery};
use std::process::Child;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const QUEUE: &str = "pulled";

fn options(port: u16) -> ClientOptions {
    ClientOptions {
        url: format!("ringmq://127.0.0.1:{port}"),
        recovery: Some(Recovery {
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_millis(400),
            attempts_max: 200,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn kill(child: &mut Child) {
    child.kill().expect("kill -9");
    child.wait().unwrap();
}

fn stale(r: ringmq::client::Result<()>, d: &Delivery) {
    match r {
        Err(ClientError::StaleDelivery { consumer_id, tag }) => {
            assert_eq!((consumer_id, tag), (d.consumer_id, d.tag));
        }
        other => panic!("the old delivery's ack is refused as stale: {other:?}"),
    }
}

#[test]
fn tokio_get_ack_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports();
    let mut child = serve_at(dir.path(), port);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        use ringmq::client::tokio::Client;
        let c = Client::connect(options(port)).await.unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        {
            let (mut stream, events) = (c.events(), events.clone());
            tokio::spawn(async move {
                while let Some(e) = stream.next().await {
                    events.lock().unwrap().push(e);
                }
            });
        }
        let saw = |f: &dyn Fn(&Event) -> bool| events.lock().unwrap().iter().any(f);
        c.declare(QUEUE, true).await.unwrap();
        let p = c.producer(QUEUE, ProducerOptions { persistent: true, ..Default::default() }).await.unwrap();
        for body in [b"m0", b"m1", b"m2"] {
            p.send(body).await.unwrap();
        }
        let old = c.get(QUEUE, false).await.unwrap().expect("m0");
        assert_eq!((&old.body[..], old.redelivered), (&b"m0"[..], false));

        kill(&mut child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !saw(&|e| matches!(e, Event::Disconnected { .. })) {
            assert!(Instant::now() < deadline, "Disconnected");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Down: refused at once, nothing sent.
        stale(c.ack_get(QUEUE, &old).await, &old);
        child = serve_at(dir.path(), port);
        while !saw(&|e| matches!(e, Event::TopologyRecovered { .. })) {
            assert!(Instant::now() < deadline, "recovered: {:?}", events.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Back: the broker's first tag on the new connection is the old
        // one's number too; the client's tags go on, and the old one is
        // still refused rather than acking the new delivery.
        let again = c.get(QUEUE, false).await.unwrap().expect("m0 again");
        assert_eq!((&again.body[..], again.redelivered), (&b"m0"[..], true), "requeued, flagged redelivered");
        assert!(again.tag > old.tag, "tags go on counting: {} after {}", again.tag, old.tag);
        stale(c.ack_get(QUEUE, &old).await, &old);
        c.ack_get(QUEUE, &again).await.unwrap();
        for want in [b"m1", b"m2"] {
            let d = c.get(QUEUE, false).await.unwrap().expect("the rest");
            assert_eq!(&d.body[..], want);
            c.ack_get(QUEUE, &d).await.unwrap();
        }
        assert!(c.get(QUEUE, false).await.unwrap().is_none(), "each acked once, none left");
        c.close().await;
        // A fresh client sees the queue empty: every ack reached the broker.
        let fresh = Client::connect(ClientOptions { url: format!("ringmq://127.0.0.1:{port}"), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(fresh.declare_passive(QUEUE).await.unwrap(), 0);
        fresh.close().await;
    });
    kill(&mut child);
}

/// What the glommio side asks of the thread that owns the broker.
enum Ask {
    Kill,
    Restart,
}

#[test]
fn glommio_get_ack_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports();
    let child = serve_at(dir.path(), port);
    let (ask, asked) = mpsc::channel();
    let (done, dones) = mpsc::channel();
    let owner = {
        let path = dir.path().to_path_buf();
        std::thread::spawn(move || {
            let mut child = child;
            for a in asked {
                match a {
                    Ask::Kill => kill(&mut child),
                    Ask::Restart => child = serve_at(&path, port),
                }
                let _ = done.send(());
            }
            kill(&mut child);
        })
    };
    common::run_local(Duration::from_secs(40), move || glommio_scenario(port, ask, dones));
    owner.join().unwrap();
}

async fn glommio_scenario(port: u16, ask: mpsc::Sender<Ask>, done: mpsc::Receiver<()>) {
    let wait_done = || async {
        let deadline = Instant::now() + Duration::from_secs(15);
        while done.try_recv().is_err() {
            assert!(Instant::now() < deadline, "the broker's thread answered");
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
    };
    let c = ringmq::client::Client::connect(options(port)).await.unwrap();
    let events = common::recovery::events(c.events());
    c.declare(QUEUE, true).await.unwrap();
    let p = c.producer(QUEUE, ProducerOptions { persistent: true, ..Default::default() }).await.unwrap();
    for body in [b"m0", b"m1"] {
        p.send(body).await.unwrap();
    }
    let old = c.get(QUEUE, false).await.unwrap().expect("m0");
    assert_eq!(&old.body[..], b"m0");
    ask.send(Ask::Kill).unwrap();
    wait_done().await;
    common::recovery::until(&events, "Disconnected", |e| matches!(e, Event::Disconnected { .. })).await;
    stale(c.ack_get(QUEUE, &old).await, &old);
    ask.send(Ask::Restart).unwrap();
    wait_done().await;
    common::recovery::until(&events, "recovered", |e| matches!(e, Event::TopologyRecovered { .. })).await;
    let again = c.get(QUEUE, false).await.unwrap().expect("m0 again");
    assert_eq!((&again.body[..], again.redelivered), (&b"m0"[..], true), "requeued, flagged redelivered");
    stale(c.ack_get(QUEUE, &old).await, &old);
    c.ack_get(QUEUE, &again).await.unwrap();
    let d = c.get(QUEUE, false).await.unwrap().expect("m1");
    assert_eq!(&d.body[..], b"m1");
    c.ack_get(QUEUE, &d).await.unwrap();
    assert!(c.get(QUEUE, false).await.unwrap().is_none(), "each acked once, none left");
    c.close().await;
    drop(ask);
}
