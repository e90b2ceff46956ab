//! A three-member Raft group over `test_net`'s in-process transport: it
//! tests the runtime and the storage with no network in the way
//! (`link_tests` runs the same kind of group over TCP). The harness is
//! `test_group`.

use super::test_group::*;
use super::test_kv::KvCommand;
use super::test_net::Router;
use openraft::BasicNode;
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[test]
fn three_members_elect_replicate_fail_over_catch_up_and_snapshot() {
    let started = Instant::now();
    let (_root, dirs) = dirs();
    let net = Net::InProcess(Router::default());
    let mut members: HashMap<u64, Member> = dirs.iter().map(|(id, dir)| (*id, start(*id, dir, &net))).collect();

    let nodes = (1..=3).map(|id| (id, BasicNode::new(format!("in-process-{id}")))).collect();
    members[&1].ask(|tx| Control::Init(nodes, tx)).unwrap();
    let (first, term) = leader(&members, 0);

    // 100 writes through the leader, applied on all three alike.
    let last = members[&first].ask(|tx| Control::Write(writes(0, 100), tx)).unwrap();
    applied_everywhere(&members, last);
    for m in members.values() {
        assert_eq!(dump(m).1, expected(100));
    }

    // The leader's executor goes away; the other two elect a new one and
    // go on committing.
    let stopped = members.remove(&first).unwrap();
    let stopped_at = stopped.metrics.borrow().last_log_index.unwrap();
    stopped.stop();
    let (second, _) = leader(&members, term);
    assert_ne!(second, first);
    let last = members[&second].ask(|tx| Control::Write(writes(100, 150), tx)).unwrap();
    applied_everywhere(&members, last);
    assert_eq!(dump(&members[&second]).1, expected(150));

    // The old leader restarts from its directory: its log is as it left
    // it (everything it had appended was fdatasync'ed), and it catches up
    // on what it missed.
    let restarted = start(first, &dirs[&first], &net);
    let recovered = restarted.metrics.borrow().last_log_index;
    assert!(recovered >= Some(stopped_at), "recovered {recovered:?}, had {stopped_at}");
    members.insert(first, restarted);
    applied_everywhere(&members, last);
    for (id, m) in &members {
        assert_eq!(dump(m).1, expected(150), "member {id}");
    }

    // With every member up, the leader snapshots and purges; a new member
    // (a learner, empty) can then only be brought up by a snapshot sent
    // over the transport and installed from its file.
    let last = members[&second].ask(|tx| Control::Write(writes(150, 200), tx)).unwrap();
    applied_everywhere(&members, last);
    wait_until("the leader to purge its log", || members[&second].metrics.borrow().purged.is_some());
    let learner_dir = dirs[&first].with_file_name("node-4");
    members.insert(4, start(4, &learner_dir, &net));
    let node = BasicNode::new("in-process-4");
    members[&second].ask(|tx| Control::AddLearner(4, node, tx)).unwrap();
    applied_everywhere(&members, last);
    let learner = &members[&4];
    assert_eq!(dump(learner).1, expected(200));
    assert!(learner.metrics.borrow().snapshot.is_some(), "the learner holds a snapshot");
    assert!(learner_dir.join("sm").join("snapshot").exists());

    // And the restarted member takes part: one more write is applied on all.
    let last = members[&second].ask(|tx| Control::Write(vec![KvCommand::set("after", "restart")], tx)).unwrap();
    applied_everywhere(&members, last);
    assert_eq!(dump(&members[&first]).1.get("after").map(String::as_str), Some("restart"));

    for (_, m) in members {
        m.stop();
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "the group test took {took:?}");
}
