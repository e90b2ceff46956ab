//! Tests of the AMQP method codec: each method parsed from and written to its wire form.
use super::*;

#[test]
fn parse_publish_and_nack() {
    let mut b = BytesMut::new();
    b.put_u16(60);
    b.put_u16(40);
    b.put_u16(0);
    put_shortstr(&mut b, "");
    put_shortstr(&mut b, "hello");
    put_bits(&mut b, &[true, false]);
    let (mid, m) = parse(&b).unwrap();
    assert_eq!(mid, id::BASIC_PUBLISH);
    assert!(matches!(m, Method::Publish { exchange: "", routing_key: "hello", mandatory: true, immediate: false }));
    let mut n = BytesMut::new();
    n.put_u16(60);
    n.put_u16(120);
    n.put_u64(5);
    put_bits(&mut n, &[true, true]);
    assert!(matches!(parse(&n).unwrap().1, Method::Nack { tag: 5, multiple: true, requeue: true }));
    assert!(parse(&n[..8]).is_err());
}

/// Differences with amq-protocol (the differential fuzz target's
/// oracle): bytes after a method's fields, and methods missing their
/// reserved fields, were accepted; RabbitMQ and amq-protocol refuse both.
#[test]
fn every_field_and_nothing_after() {
    let mut open = BytesMut::new();
    open.put_slice(&[0, 10, 0, 40]);
    put_shortstr(&mut open, "/");
    assert!(parse(&open).is_err(), "connection.open without its reserved fields");
    put_shortstr(&mut open, "");
    put_bits(&mut open, &[false]);
    assert!(matches!(parse(&open), Ok((_, Method::Open { vhost: "/" }))));
    open.put_u8(0);
    assert_eq!(parse(&open).err(), Some(Syntax::Field("bytes after the method's last field")));
    assert!(parse(&[0, 20, 0, 10]).is_err(), "channel.open without its reserved short string");
    assert!(matches!(parse(&[0, 20, 0, 10, 0]), Ok((_, Method::ChannelOpen))));
    assert!(parse(&[0, 60, 0, 80, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]).is_err(), "ack with a byte too many");
    // Methods this server does not implement are not read at all.
    assert!(matches!(parse(&[0, 100, 0, 10, 1, 2, 3]), Ok((_, Method::Other((100, 10))))));
}

#[test]
fn deliver_template_patched_equals_encoded() {
    let tpl = deliver_template(3, "amq.ctag-1.2.3", "some-queue");
    let mut patched = tpl.clone();
    let at = deliver_tag_at(&tpl);
    patched[at..at + 8].copy_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
    patched[at + 8] = 1;
    let mut b = BytesMut::new();
    put_deliver(&mut b, 3, "amq.ctag-1.2.3", 0x0102_0304_0506_0708, true, "", "some-queue");
    assert_eq!(patched, b.to_vec());
}

#[test]
fn properties() {
    // content-type "t", delivery-mode 2.
    let p = [0x90, 0x00, 1, b't', 2];
    assert_eq!(delivery_mode(&p, 32), Ok(2));
    assert!(props_are_amqp(&p));
    assert!(!props_are_amqp(&p[..4]));
    assert!(!props_are_amqp(b"native stuff"));
    assert_eq!(delivery_mode(&[0, 0], 32), Ok(0));
}
