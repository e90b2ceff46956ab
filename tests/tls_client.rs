//! ringmq's own client and tools over TLS (`ringmqs://`), against a real
//! broker with certificates made for the test (`common::tls`):
//!
//! - the async and the blocking client publish with confirms to a queue on
//!   each shard of a 2-shard broker and consume them back: the follow-on
//!   connections go to the shards' TLS addresses (the TLS Hello's shard
//!   map), verified against the URL's host name;
//! - a CA that did not sign the broker's certificate is refused with an
//!   error that says so; TLS files with a plain URL are refused;
//! - with `tls_client_certs = required`: no certificate, an expired one and
//!   one from another CA are refused, the CA's is accepted;
//! - `ringmq pub`, `sub` and `ctl` with `--ca`, `--tls`, `--cert`, `--key`.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::tls::TestCerts;
use common::{maybe_within, queue_on, run_local, within, TestBroker, QUIET, STEP};
use futures_lite::StreamExt;
use ringmq::client::{blocking, Client, ClientError, ClientOptions, ProducerOptions};
use ringmq::server::tls::ClientCerts;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringmq");

/// A 2-shard broker with every TLS listener on.
fn tls_broker(certs: &TestCerts, client_certs: ClientCerts) -> TestBroker {
    TestBroker::start_with(2, |c| {
        certs.configure(c);
        c.tls_client_certs = client_certs;
    })
}

/// `ringmqs://localhost:PORT` of the broker's shared TLS listener.
fn tls_url(b: &TestBroker) -> String {
    format!("ringmqs://localhost:{}", b.tls.expect("tls_listen is on").port())
}

fn opts(url: String, ca: PathBuf) -> ClientOptions {
    ClientOptions { url, tls_ca_file: Some(ca), ..Default::default() }
}

fn with_cert(o: ClientOptions, certs: &TestCerts, name: &str) -> ClientOptions {
    ClientOptions {
        tls_cert_file: Some(certs.path(&format!("{name}.pem"))),
        tls_key_file: Some(certs.path(&format!("{name}.key"))),
        ..o
    }
}

/// Publishes `n` messages with confirms to `queue`, consumes and acks them
/// back in order, and leaves the queue empty.
async fn round_trip(c: &Client, queue: &str, n: usize) {
    c.declare(queue, false).await.unwrap();
    let p = c.producer(queue, ProducerOptions { batch_max: 8, confirm: true, ..Default::default() }).await.unwrap();
    let mut confs = Vec::new();
    for i in 0..n {
        confs.push(p.publish(format!("{queue}-{i}").as_bytes()).await.unwrap());
    }
    p.flush().unwrap();
    for conf in confs {
        within("confirm", STEP, conf).await.expect("confirmed over TLS");
    }
    let mut consumer = c.subscribe(queue, 64).await.unwrap();
    for i in 0..n {
        let d = within("delivery", STEP, consumer.next()).await.expect("stream open").expect("delivery");
        assert_eq!(d.body, format!("{queue}-{i}").as_bytes(), "in order, intact");
        consumer.ack(d.tag);
    }
    assert!(maybe_within(QUIET, consumer.next()).await.is_none(), "nothing more");
    within("cancel", STEP, consumer.cancel()).await.unwrap();
    assert_eq!(c.declare_passive(queue).await.unwrap(), 0, "every message acked");
}

#[test]
fn async_client_over_tls_reaches_every_shard() {
    let certs = TestCerts::new("guest");
    let b = tls_broker(&certs, ClientCerts::None);
    let o = opts(tls_url(&b), certs.path("ca.pem"));
    let tls_shards = b.tls_shards.clone();
    run_local(Duration::from_secs(30), move || async move {
        let c = within("connect", STEP, Client::connect(o)).await.expect("TLS connect with the test CA");
        assert!(c.is_tls());
        // The TLS Hello lists the shards' TLS addresses: every follow-on
        // connection below is a TLS handshake to one of them (a plain
        // connection there would fail), checked against "localhost".
        assert_eq!(c.info().shard_addrs, tls_shards, "the shard map of a TLS connection is the TLS one");
        for shard in 0..2 {
            let q = queue_on(shard, 2, "tls-async");
            let conn = c.conn_for(&q).await.unwrap();
            assert_eq!(conn.info().shard_id, shard as u16, "the owner's own connection");
            round_trip(&c, &q, 200).await;
        }
        c.close().await;
    });
    // An IP address is a server name too: the broker's certificate has 127.0.0.1.
    let o = opts(format!("ringmqs://{}", b.tls.unwrap()), certs.path("ca.pem"));
    run_local(Duration::from_secs(30), move || async move {
        let c = within("connect", STEP, Client::connect(o)).await.expect("TLS to 127.0.0.1");
        round_trip(&c, &queue_on(1, 2, "tls-ip"), 10).await;
        c.close().await;
    });
}

#[test]
fn a_ca_that_did_not_sign_the_broker_is_refused_with_a_clear_error() {
    let certs = TestCerts::new("guest");
    let b = tls_broker(&certs, ClientCerts::None);
    let wrong = opts(tls_url(&b), certs.path("other-ca.pem"));
    let w = wrong.clone();
    let err = run_local(Duration::from_secs(20), move || async move {
        within("connect", STEP, Client::connect(w)).await.err().expect("the other CA's client must not connect")
    });
    assert!(matches!(&err, ClientError::Tls(m) if m.contains("not signed by a CA this client trusts")), "async: {err}");
    let err = blocking::Client::connect(wrong).err().expect("blocking: the other CA's client must not connect");
    assert!(matches!(&err, ClientError::Tls(m) if m.contains("not signed by a CA this client trusts")), "{err}");

    // TLS files with a plain URL: refused before any byte is sent, so a
    // password never crosses in clear by mistake.
    let plain = opts(b.url(), certs.path("ca.pem"));
    let err = blocking::Client::connect(plain).err().expect("TLS files with ringmq://");
    assert!(matches!(&err, ClientError::Invalid(m) if m.contains("ringmqs://")), "{err}");
    // A CA file that holds no certificate.
    let bad = opts(tls_url(&b), certs.path("client.key"));
    let err = blocking::Client::connect(bad).err().expect("a key is no CA");
    assert!(matches!(&err, ClientError::Tls(m) if m.contains("no PEM certificate")), "{err}");
    // A plain client on the TLS port, and a TLS client on the plain port:
    // an error, not a hang.
    let o = ClientOptions { url: format!("ringmq://{}", b.tls.unwrap()), ..Default::default() };
    let t = Instant::now();
    assert!(blocking::Client::connect(o).is_err());
    let o = opts(format!("ringmqs://localhost:{}", b.native.port()), certs.path("ca.pem"));
    let err = blocking::Client::connect(o.clone()).err().expect("TLS to the plain port");
    eprintln!("blocking TLS to the plain port: {err}");
    let err = run_local(Duration::from_secs(20), move || async move { Client::connect(o).await.err() });
    eprintln!("async TLS to the plain port: {}", err.expect("async TLS to the plain port"));
    assert!(t.elapsed() < Duration::from_secs(15), "within the connect timeouts");
}

#[test]
fn blocking_client_over_tls_with_heartbeats() {
    let certs = TestCerts::new("guest");
    let b = tls_broker(&certs, ClientCerts::None);
    // Beats every 150 ms from the client's heartbeat thread, through the
    // same TLS session the calling thread reads from.
    let o = ClientOptions { heartbeat_ms: 300, ..opts(tls_url(&b), certs.path("ca.pem")) };
    let mut c = blocking::Client::connect(o).expect("blocking TLS connect");
    assert!(c.is_tls());
    assert_eq!(c.info().shard_addrs, b.tls_shards);
    assert_eq!(c.info().heartbeat_ms, 300);
    let queues = [queue_on(0, 2, "tls-blocking"), queue_on(1, 2, "tls-blocking")];
    let mut subs = Vec::new();
    for q in &queues {
        c.declare(q, false).unwrap();
        let bodies: Vec<Vec<u8>> = (0..100).map(|i| format!("{q}-{i}").into_bytes()).collect();
        let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        c.publish(q, &refs, false).expect("confirmed over TLS");
        subs.push(c.subscribe(q, 1000).unwrap());
    }
    // Idle for several intervals: only the heartbeat thread writes, and
    // the broker (which closes after two silent intervals) keeps us.
    std::thread::sleep(Duration::from_millis(1200));
    for (q, sub) in queues.iter().zip(&subs) {
        for i in 0..100 {
            let d = c.recv(sub, STEP).unwrap().expect("a delivery");
            assert_eq!(d.body, format!("{q}-{i}").as_bytes());
            c.ack(sub, d.tag).unwrap();
        }
        assert!(c.recv(sub, QUIET).unwrap().is_none(), "nothing more");
    }
    // Acks written while the heartbeat thread writes too: all of them took.
    std::thread::sleep(Duration::from_millis(700));
    for q in &queues {
        assert!(c.get(q, true).unwrap().is_none(), "every message was acked");
    }
    // Large frames (several TLS records each) both ways.
    let big = vec![b'x'; 200_000];
    c.publish(&queues[0], &[&big, &big], false).unwrap();
    for _ in 0..2 {
        let d = c.recv(&subs[0], STEP).unwrap().expect("a large delivery");
        assert_eq!(d.body.len(), big.len());
        c.ack(&subs[0], d.tag).unwrap();
    }
}

#[test]
fn client_certificates_when_the_broker_requires_them() {
    let certs = TestCerts::new("guest");
    let b = tls_broker(&certs, ClientCerts::Required);
    let base = opts(tls_url(&b), certs.path("ca.pem"));

    // Without a certificate, with an expired one, with another CA's:
    // refused, and the broker's alert says why (TLS 1.3 reports it after
    // the client's Finished; should the broker's close overtake the
    // alert, the connection just ends).
    for (what, o, says) in [
        ("no certificate", base.clone(), "the broker requires a client certificate"),
        ("an expired certificate", with_cert(base.clone(), &certs, "expired"), "refused this client's certificate"),
        (
            "another CA's certificate",
            with_cert(base.clone(), &certs, "other-client"),
            "refused this client's certificate",
        ),
    ] {
        let err = blocking::Client::connect(o.clone()).err().unwrap_or_else(|| panic!("blocking, {what}: accepted"));
        let err2 = run_local(Duration::from_secs(20), move || async move {
            within("connect", STEP, Client::connect(o)).await.err()
        })
        .unwrap_or_else(|| panic!("async, {what}: accepted"));
        for e in [&err, &err2] {
            assert!(
                matches!(e, ClientError::Tls(m) if m.contains(says))
                    || matches!(e, ClientError::Closed(_) | ClientError::Io(_)),
                "{what}: {e}"
            );
        }
    }

    // The CA's certificate: in, for both clients, on both shards.
    let good = with_cert(base, &certs, "client");
    let mut c = blocking::Client::connect(good.clone()).expect("a certificate the CA signed");
    for shard in 0..2 {
        let q = queue_on(shard, 2, "tls-mtls");
        c.declare(&q, false).unwrap();
        c.publish(&q, &[b"signed"], false).unwrap();
        assert_eq!(c.get(&q, true).unwrap().expect("the message").body, &b"signed"[..]);
    }
    run_local(Duration::from_secs(30), move || async move {
        let c = within("connect", STEP, Client::connect(good)).await.expect("async with the CA's certificate");
        for shard in 0..2 {
            round_trip(&c, &queue_on(shard, 2, "tls-mtls-async"), 20).await;
        }
        c.close().await;
    });
}

/// Runs the binary; fails after `limit`.
fn run(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringmq");
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "`ringmq {}` still running after {limit:?}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn pub_sub_and_ctl_over_tls() {
    let certs = TestCerts::new("guest");
    let b = tls_broker(&certs, ClientCerts::None);
    let url = tls_url(&b);
    let ca = certs.path("ca.pem");
    let ca = ca.to_str().unwrap();
    let limit = Duration::from_secs(30);
    let q = "tls-tools";

    let p = run(&["pub", "--url", &url, "--ca", ca, "--queue", q, "--count", "500", "--confirm"], limit);
    assert!(p.status.success(), "pub: {}", text(&p.stderr));
    assert_eq!(text(&p.stdout).lines().last(), Some("published 500 confirmed 500"));

    // ctl, with --tls and a bare HOST:PORT.
    let bare = format!("localhost:{}", b.tls.unwrap().port());
    let l = run(&["ctl", "--url", &bare, "--tls", "--ca", ca, "--json", "list-queues", "--interval", "0.1"], limit);
    assert!(l.status.success(), "ctl: {}", text(&l.stderr));
    let v: serde_json::Value = serde_json::from_slice(&l.stdout).unwrap();
    let row = v.as_array().unwrap().iter().find(|r| r["name"] == q).unwrap_or_else(|| panic!("{q} in {v}"));
    assert_eq!(row["ready"], 500);

    let s =
        run(&["sub", "--url", &url, "--ca", ca, "--queue", q, "--count", "500", "--quiet", "--timeout", "5"], limit);
    assert!(s.status.success(), "sub: {}", text(&s.stderr));
    assert_eq!(text(&s.stdout).lines().last(), Some("received 500"));

    let d = run(&["ctl", "--url", &url, "--ca", ca, "delete-queue", q], limit);
    assert!(d.status.success(), "ctl delete-queue: {}", text(&d.stderr));

    // The wrong CA: each tool fails and says why.
    let other = certs.path("other-ca.pem");
    let other = other.to_str().unwrap();
    for args in [
        vec!["pub", "--url", &url, "--ca", other, "--queue", q, "hello"],
        vec!["sub", "--url", &url, "--ca", other, "--queue", q, "--timeout", "1"],
        vec!["ctl", "--url", &url, "--ca", other, "shards"],
    ] {
        let o = run(&args, limit);
        assert!(!o.status.success(), "{args:?} succeeded with the wrong CA");
        assert!(text(&o.stderr).contains("not signed by a CA this client trusts"), "{args:?}: {}", text(&o.stderr));
    }
    // --ca with a plain URL is refused, not silently ignored.
    let o = run(&["ctl", "--url", &b.url(), "--ca", ca, "shards"], limit);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("ringmqs://"), "{}", text(&o.stderr));
}

#[test]
fn tools_with_a_client_certificate() {
    let certs = TestCerts::new("guest");
    let b = tls_broker(&certs, ClientCerts::Required);
    let url = tls_url(&b);
    let path = |n: &str| certs.path(n).to_str().unwrap().to_string();
    let (ca, cert, key) = (path("ca.pem"), path("client.pem"), path("client.key"));
    let limit = Duration::from_secs(30);

    let o = run(&["ctl", "--url", &url, "--ca", &ca, "shards"], limit);
    assert!(!o.status.success(), "ctl without a certificate got in");
    let o = run(&["ctl", "--url", &url, "--ca", &ca, "--cert", &cert, "--key", &key, "shards"], limit);
    assert!(o.status.success(), "ctl with the CA's certificate: {}", text(&o.stderr));
    assert!(text(&o.stdout).starts_with("shard"), "{}", text(&o.stdout));
    let p = run(
        &["pub", "--url", &url, "--ca", &ca, "--cert", &cert, "--key", &key, "--queue", "m", "--confirm", "x"],
        limit,
    );
    assert!(p.status.success(), "pub with a certificate: {}", text(&p.stderr));
    assert_eq!(text(&p.stdout).lines().last(), Some("published 1 confirmed 1"));
    // A certificate without its key is a usage error.
    let o = run(&["ctl", "--url", &url, "--ca", &ca, "--cert", &cert, "shards"], limit);
    assert!(!o.status.success());
}
