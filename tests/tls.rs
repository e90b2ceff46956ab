//! TLS on the broker's listeners, with certificates each test makes
//! (`common::tls`): AMQPS through pika, HTTPS through rustls, and what
//! must be refused (a wrong CA, an expired or foreign client certificate,
//! a plain client on a TLS port, a handshake that never comes). The
//! other clients over TLS are in `tls_client.rs` (ringmq's own client,
//! tools and loadgen) and `amqp_clients.rs` (Node, Go, Java).
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::pika::run;
use common::tls::{client_config, connect, https_request, TestCerts};
use common::{http_get, TestBroker};
use ringmq::server::tls::ClientCerts;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const SCRIPT: Duration = Duration::from_secs(30);

fn metric(metrics: SocketAddr, name: &str) -> u64 {
    let text = http_get(metrics, "/metrics");
    let line = text.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in /metrics"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Runs `tests/pika/tls.py` against `amqps` expecting `expect`, with the
/// CA, client certificate and mechanism the environment pairs give.
fn env<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn pika_tls(amqps: SocketAddr, certs: &TestCerts, expect: &str, extra: &[(&str, &str)]) -> String {
    let ca = certs.path("ca.pem");
    let mut env: Vec<(&str, &str)> = vec![("EXPECT", expect), ("AMQP_TLS_CA", ca.to_str().unwrap())];
    env.extend_from_slice(extra);
    let out = run("tls.py", amqps, &env, SCRIPT);
    out.assert_ok(&format!("pika over TLS expecting {expect} with {extra:?}"));
    out.stdout
}

#[test]
fn pika_round_trips_over_amqps_and_a_wrong_ca_is_refused() {
    let certs = TestCerts::new("guest");
    let b = TestBroker::start_with(2, |c| certs.configure(c));
    let amqps = b.amqps.unwrap();
    let out = pika_tls(amqps, &certs, "ok", &[]);
    assert!(out.contains("round trip over TLS"), "{out}");
    // The client trusts another CA: it refuses the broker's certificate.
    let other = certs.path("other-ca.pem");
    let out = pika_tls(amqps, &certs, "tls_refused", &[("AMQP_TLS_CA", other.to_str().unwrap())]);
    assert!(out.contains("TLS refused"), "{out}");
    // A plain AMQP client on the plain listener still works beside it.
    let out = run("tls.py", b.amqp, &[("EXPECT", "ok")], SCRIPT);
    out.assert_ok("pika without TLS on the plain listener");
}

#[test]
fn client_certificates_are_verified_and_external_logs_in_as_the_subject() {
    let certs = TestCerts::new("guest");
    let b = TestBroker::start_with(2, |c| {
        certs.configure(c);
        c.amqps_client_certs = ClientCerts::Required;
    });
    let amqps = b.amqps.unwrap();
    let p = |name: &str| certs.path(name).to_str().unwrap().to_string();
    let (client, client_key) = (p("client.pem"), p("client.key"));
    let with = |cert: &str, key: &str| vec![("AMQP_TLS_CERT", cert.to_string()), ("AMQP_TLS_KEY", key.to_string())];
    let before = metric(b.metrics, "ringmq_tls_handshake_failures_total");

    // Without a certificate, with an expired one, with one another CA signed.
    pika_tls(amqps, &certs, "tls_refused", &[]);
    pika_tls(amqps, &certs, "tls_refused", &env(&with(&p("expired.pem"), &p("expired.key"))));
    pika_tls(amqps, &certs, "tls_refused", &env(&with(&p("other-client.pem"), &p("other-client.key"))));
    let refused = metric(b.metrics, "ringmq_tls_handshake_failures_total") - before;
    assert!(refused >= 3, "{refused} handshake failures counted for 3 refusals");

    // The CA's certificate: PLAIN works, and so does EXTERNAL (CN=guest).
    let mut ok = with(&client, &client_key);
    pika_tls(amqps, &certs, "ok", &env(&ok));
    ok.push(("AMQP_EXTERNAL", "1".into()));
    let out = pika_tls(amqps, &certs, "ok", &env(&ok));
    assert!(out.contains("round trip over TLS"), "{out}");

    // EXTERNAL with a certificate that names no user: refused (403).
    let mut stranger = with(&p("stranger.pem"), &p("stranger.key"));
    stranger.push(("AMQP_EXTERNAL", "1".into()));
    pika_tls(amqps, &certs, "login_refused", &env(&stranger));
}

#[test]
fn external_is_not_offered_without_a_certificate() {
    let certs = TestCerts::new("guest");
    let b = TestBroker::start_with(1, |c| {
        certs.configure(c);
        c.amqps_client_certs = ClientCerts::Optional;
    });
    // Optional: a client without a certificate connects and logs in with
    // a password; EXTERNAL is not offered to it.
    pika_tls(b.amqps.unwrap(), &certs, "ok", &[]);
    pika_tls(b.amqps.unwrap(), &certs, "external_not_offered", &[("AMQP_EXTERNAL", "1")]);
}

#[test]
fn https_serves_management_and_metrics() {
    let certs = TestCerts::new("guest");
    let b = TestBroker::start_with(2, |c| certs.configure(c));
    let https = b.https.unwrap();
    let mut s = connect(https, client_config(&certs.path("ca.pem"), None)).unwrap();
    let (status, body) = https_request(&mut s, "GET", "/api/overview", ("guest", "guest"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"node\""), "{body}");
    // The same connection again (keep-alive), then a refusal.
    let (status, body) = https_request(&mut s, "GET", "/metrics", ("guest", "guest"));
    assert_eq!(status, 200);
    assert!(body.contains("ringmq_tls_handshake_failures_total"), "{body}");
    let (status, _) = https_request(&mut s, "GET", "/api/overview", ("guest", "wrong"));
    assert_eq!(status, 401);
    // A client that trusts another CA refuses the broker.
    let e = connect(https, client_config(&certs.path("other-ca.pem"), None)).map(|_| ()).expect_err("refused");
    assert!(e.to_string().contains("UnknownIssuer") || e.to_string().contains("certificate"), "{e}");
}

/// Reads until the broker closes the socket; how long that took.
fn closed_within(mut s: TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return start.elapsed(),
            // A TLS alert before the close.
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return start.elapsed(),
            Err(e) => panic!("the broker did not close the socket within {limit:?}: {e}"),
        }
    }
}

#[test]
fn a_plain_client_on_a_tls_port_and_a_silent_one_are_closed() {
    let certs = TestCerts::new("guest");
    let b = TestBroker::start_with(1, |c| {
        certs.configure(c);
        c.handshake_timeout_ms = 500;
    });
    let before = metric(b.metrics, "ringmq_tls_handshake_failures_total");
    // An AMQP protocol header where a ClientHello belongs.
    let mut s = TcpStream::connect(b.amqps.unwrap()).unwrap();
    s.write_all(b"AMQP\x00\x00\x09\x01").unwrap();
    closed_within(s, Duration::from_secs(5));
    // A client that connects and never speaks: closed at the handshake timeout.
    let s = TcpStream::connect(b.tls.unwrap()).unwrap();
    let took = closed_within(s, Duration::from_secs(5));
    assert!(took >= Duration::from_millis(400), "closed after {took:?}, before handshake_timeout_ms");
    let after = metric(b.metrics, "ringmq_tls_handshake_failures_total");
    assert_eq!(after - before, 2, "both failures are counted");
}

#[test]
fn a_broker_with_a_bad_key_does_not_start() {
    let certs = TestCerts::new("guest");
    let dir = tempfile::tempdir().unwrap();
    let mut c = ringmq::server::config::Config {
        cores: 1,
        listen: "127.0.0.1:0".parse().unwrap(),
        amqp_listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("data"),
        pin_cores: false,
        ..Default::default()
    };
    certs.configure(&mut c);
    // The client's key beside the server's certificate: not a pair.
    c.tls_key_file = Some(certs.path("client.key"));
    let e = ringmq::server::Broker::start(c.clone()).map(|_| ()).expect_err("refused");
    assert!(e.to_string().contains("do not make a pair"), "{e}");
    c.tls_key_file = None;
    let e = ringmq::server::Broker::start(c.clone()).map(|_| ()).expect_err("refused");
    assert!(e.to_string().contains("needs a certificate and key"), "{e}");
    c.tls_key_file = Some(certs.path("server.key"));
    c.amqps_client_certs = ClientCerts::Required;
    c.tls_ca_file = None;
    let e = ringmq::server::Broker::start(c).map(|_| ()).expect_err("refused");
    assert!(e.to_string().contains("need a CA file"), "{e}");
}

#[test]
fn handshakes_in_progress_count_as_connections_not_logged_in() {
    let certs = TestCerts::new("guest");
    let b = TestBroker::start_with(1, |c| {
        certs.configure(c);
        c.unauthenticated_connections_max = 2;
    });
    // Two silent sockets on the TLS ports fill the cap; a third evicts the
    // oldest, whose socket the broker closes long before the handshake
    // timeout (10 s here).
    let first = TcpStream::connect(b.amqps.unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let _second = TcpStream::connect(b.tls.unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let _third = TcpStream::connect(b.amqps.unwrap()).unwrap();
    let took = closed_within(first, Duration::from_secs(5));
    assert!(took < Duration::from_secs(5), "the oldest handshake was not evicted");
    // A full handshake and login still work: the cap evicts, it does not refuse.
    let out = pika_tls(b.amqps.unwrap(), &certs, "ok", &[]);
    assert!(out.contains("round trip over TLS"), "{out}");
}
