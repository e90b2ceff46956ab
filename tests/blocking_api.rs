//! The blocking client's exchanges and properties, and URLs with
//! credentials, vhost and options for every client, against a real broker
//! on 127.0.0.1:0.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::{queue_on, TestBroker};
use ringmq::client::{blocking, ClientError, ClientOptions, ExchangeOptions};
use ringmq::protocol::props::{self, PropsBuilder};
use ringmq::protocol::ErrorCode;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn blocking_exchanges_and_properties() {
    let b = TestBroker::start();
    let mut c = blocking::Client::connect(ClientOptions { url: b.url(), ..Default::default() }).unwrap();
    let (qa, qb) = (queue_on(0, 2, "ba"), queue_on(1, 2, "bb"));
    c.declare(&qa, false).unwrap();
    c.declare(&qb, false).unwrap();
    c.declare_exchange("bx", "topic", ExchangeOptions::default()).unwrap();
    c.declare_exchange_passive("bx").unwrap();
    c.bind_queue(&qa, "bx", "eu.*", &[]).unwrap();
    c.bind_queue(&qb, "bx", "#", &[]).unwrap();
    let p = PropsBuilder::new().correlation_id("c7").kind("order").app_id("shop").build();
    c.publish_to("bx", "eu.de", &p, &[b"one", b"two"], false, true).unwrap();
    c.publish_to("bx", "us.ny", &[], &[b"three"], false, false).unwrap();
    let e = c.publish_to("bx-none", "k", &[], &[b"x"], false, false).unwrap_err();
    assert!(e.code().is_some(), "{e}");
    let sa = c.subscribe(&qa, 10).unwrap();
    for want in ["one", "two"] {
        let d = c.recv(&sa, WAIT).unwrap().expect("a delivery");
        assert_eq!(d.body, want.as_bytes());
        let pr = d.properties().expect("properties");
        assert_eq!(pr.short(props::CORRELATION_ID), Some(&b"c7"[..]));
        assert_eq!(pr.short(props::TYPE), Some(&b"order"[..]));
        assert_eq!(pr.short(props::APP_ID), Some(&b"shop"[..]));
        c.ack(&sa, d.tag).unwrap();
    }
    assert!(c.recv(&sa, Duration::from_millis(300)).unwrap().is_none());
    let sb = c.subscribe(&qb, 10).unwrap();
    let got: Vec<_> = (0..3).map(|_| c.recv(&sb, WAIT).unwrap().unwrap().body).collect();
    assert_eq!(got, [&b"one"[..], b"two", b"three"]);
    c.unbind_queue(&qb, "bx", "#", &[]).unwrap();
    let e = c.publish_to("bx", "us.ny", &[], &[b"nowhere"], false, true).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NoRoute), "{e}");
    c.publish_with(&qa, &PropsBuilder::new().message_id("m9").build(), &[b"direct"], false).unwrap();
    let d = c.recv(&sa, WAIT).unwrap().unwrap();
    assert_eq!(d.properties().unwrap().short(props::MESSAGE_ID), Some(&b"m9"[..]));
    c.delete_exchange("bx", false).unwrap();
    assert!(c.declare_exchange_passive("bx").is_err());
}

#[test]
fn urls_carry_credentials_vhost_and_options() {
    let b = TestBroker::start();
    let addr = b.native;
    // The URL's credentials win over the options' (wrong) password.
    let url = format!("ringmq://guest:guest@{addr}/?heartbeat_ms=2000&shard_aware=false");
    let o = ClientOptions { url, password: "wrong".into(), ..Default::default() };
    let mut c = blocking::Client::connect(o.clone()).unwrap();
    assert_eq!(c.info().heartbeat_ms, 2000, "the URL's heartbeat negotiated");
    c.declare("url-q", false).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let t = ringmq::client::tokio::Client::connect(o).await.unwrap();
        assert_eq!(t.info().heartbeat_ms, 2000);
        assert_eq!(t.declare_passive("url-q").await.unwrap(), 0);
        t.close().await;
    });
    // A vhost that does not exist is refused at the handshake; a wrong
    // password in the URL too; an unknown option before connecting.
    for (url, what) in [
        (format!("ringmq://guest:guest@{addr}/no-such-vhost"), "vhost"),
        (format!("ringmq://guest:nope@{addr}"), "password"),
    ] {
        let e = blocking::Client::connect(ClientOptions { url, ..Default::default() }).err().expect(what);
        assert!(matches!(e, ClientError::Server { .. }), "{what}: {e}");
    }
    let url = format!("ringmq://guest:secret@{addr}?hearbeat=1");
    let e = blocking::Client::connect(ClientOptions { url, ..Default::default() }).err().unwrap();
    assert!(matches!(&e, ClientError::BadUrl(m) if m.contains("hearbeat") && !m.contains("secret")), "{e}");
}
