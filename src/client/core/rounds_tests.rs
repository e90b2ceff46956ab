use super::*;
use crate::client::core::topology::Topology;

fn info(shard_id: u16, shards: &[u16], frame: u32) -> ServerInfo {
    ServerInfo {
        shard_id,
        frame_bytes_max: frame,
        message_bytes_max: 1 << 20,
        prefetch_max: 1000,
        shard_addrs: shards.iter().map(|p| SocketAddr::from(([127, 0, 0, 1], *p))).collect(),
        heartbeat_ms: 0,
        vhost: "/".into(),
    }
}

fn quick(attempts_max: u32) -> Recovery {
    Recovery {
        backoff_min: Duration::from_millis(1),
        backoff_max: Duration::from_millis(2),
        attempts_max,
        ..Default::default()
    }
}

#[test]
fn only_the_first_connection_fails_over_and_only_after_its_rounds() {
    let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let nodes = vec![vec![a(11), a(12)], vec![a(21), a(22)]];
    let on_n1 = info(1, &[11, 12], 1 << 20);
    let mut r = Rounds::new(&quick(0));
    for _ in 0..FAILOVER_AFTER {
        assert_eq!(r.target(true, &nodes, &on_n1), None, "its own node first");
        assert!(matches!(r.after(false, true, None), AfterRound::Wait { or_lost: false, .. }));
    }
    assert_eq!(r.target(false, &nodes, &on_n1), None, "a shard's connection never moves");
    assert_eq!(r.target(true, &nodes, &on_n1), Some(a(22)), "then the next node, same shard number");
    assert_eq!(r.target(true, &nodes, &on_n1), None, "then its own again");
    assert_eq!(r.reconnected(a(22)), Event::Reconnected { addr: a(22), attempt: FAILOVER_AFTER + 1 });
}

#[test]
fn a_round_ends_recovery_waits_or_gives_up_as_the_first_connection_stands() {
    let mut r = Rounds::new(&quick(2));
    assert_eq!(r.after(true, false, None), AfterRound::Done);
    assert!(matches!(r.after(true, true, None), AfterRound::Wait { or_lost: true, .. }));
    let e = ClientError::Io("refused".into());
    match r.after(true, true, Some(e.clone())) {
        AfterRound::EndStillDown(ClientError::Closed(m)) => assert!(m.contains("on this connection"), "{m}"),
        other => panic!("{other:?}"),
    }
    let mut r = Rounds::new(&quick(1));
    match r.after(false, true, Some(e)) {
        AfterRound::GiveUp(ClientError::Closed(m)) => assert!(m.starts_with("recovery gave up: "), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_redialled_socket_must_be_its_shard_with_the_first_limits() {
    let a = SocketAddr::from(([127, 0, 0, 1], 1));
    let was = info(1, &[11, 12], 1 << 20);
    assert_eq!(redial_addr(None, &was, a), SocketAddr::from(([127, 0, 0, 1], 12)));
    assert_eq!(redial_addr(Some(a), &was, a), a);
    assert!(check_redialled(a, &info(1, &[11, 12], 1 << 20), &was, &was, false).is_ok());
    assert!(check_redialled(a, &info(0, &[11, 12], 1 << 20), &was, &was, false).is_err(), "another shard");
    assert!(check_redialled(a, &info(0, &[21], 1 << 20), &was, &was, true).is_ok(), "a failover may");
    assert!(check_redialled(a, &info(0, &[21], 1 << 19), &was, &was, true).is_err(), "other limits");
}

#[test]
fn redeclare_reports_each_refusal_then_the_total() {
    let mut t = Topology::new(10);
    t.queue_declared("a", true, &[]);
    t.queue_declared("b", false, &[]);
    let records = t.records().to_vec();
    let mut events = Vec::new();
    let send = |c: Cmd<'_>| {
        let refuse = matches!(c, Cmd::Declare { queue: "b", .. });
        async move {
            if refuse {
                Err(ClientError::Server { code: 72, message: "node unavailable".into() })
            } else {
                Ok(0)
            }
        }
    };
    futures_lite::future::block_on(redeclare(&records, send, |e| events.push(e)));
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(&events[0], Event::RedeclareFailed { what, .. } if what == "queue b"));
    assert_eq!(events[1], Event::TopologyRecovered { records: 2, failed: 1 });
}
