//! A three-member Raft group, each member on its own glommio executor
//! thread with its own data directory, no tokio runtime anywhere (a tokio
//! timer or spawn reached by openraft would panic its member's thread).
//! Members talk through `test_net`'s in-process transport, which exists
//! only to test the runtime and the storage: the real inter-node link
//! (TCP, its own codec) is the next step.
//!
//! The test drives the members from its own thread through control
//! channels (a `Raft` is `!Send`: it lives on its executor), and every wait
//! has a deadline, so a hang fails the test instead of hanging it.

use super::test_kv::{Kv, KvCommand};
use super::test_net::{serve, Router, C};
use super::{LogStore, StateMachine, StoreLimits};
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Config, LogId, Raft, RaftMetrics, ServerState, SnapshotPolicy};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// The longest any one step may take before the test fails.
const STEP_DEADLINE: Duration = Duration::from_secs(10);

type Metrics = watch::Receiver<RaftMetrics<u64, BasicNode>>;
type WriteResult = Result<LogId<u64>, RaftError<u64, ClientWriteError<u64, BasicNode>>>;
type InitResult = Result<(), RaftError<u64, InitializeError<u64, BasicNode>>>;
/// A member's applied state: the last log id applied, and the map.
type Applied = (Option<LogId<u64>>, BTreeMap<String, String>);

enum Control {
    Init(BTreeMap<u64, BasicNode>, std_mpsc::Sender<InitResult>),
    /// Adds a learner; answers the membership entry's log id.
    AddLearner(u64, BasicNode, std_mpsc::Sender<WriteResult>),
    /// Proposes each command in turn; answers the last one's log id.
    Write(Vec<KvCommand>, std_mpsc::Sender<WriteResult>),
    /// The applied state: last applied log id and the map.
    Dump(std_mpsc::Sender<Applied>),
    /// Ends the executor without shutting Raft down, as a crash would.
    Stop,
}

struct Member {
    control: mpsc::Sender<Control>,
    metrics: Metrics,
    thread: std::thread::JoinHandle<()>,
}

fn config() -> Arc<Config> {
    let c = Config {
        cluster_name: "ringmq-test".into(),
        // Wide margins: this machine runs benchmarks beside the tests.
        heartbeat_interval: 100,
        election_timeout_min: 500,
        election_timeout_max: 1000,
        // Snapshot and purge often, so a member that was away catches up
        // by installing a snapshot, not only by replaying the log.
        snapshot_policy: SnapshotPolicy::LogsSinceLast(30),
        max_in_snapshot_log_to_keep: 5,
        purge_batch_size: 1,
        ..Config::default()
    };
    Arc::new(c.validate().unwrap())
}

fn start(id: u64, dir: &Path, router: &Router) -> Member {
    let (control, mut rx) = mpsc::channel::<Control>(16);
    let (ready_tx, ready_rx) = std_mpsc::channel();
    let inbox = router.register(id);
    let (dir, router) = (dir.to_path_buf(), router.clone());
    let thread = std::thread::Builder::new()
        .name(format!("raft-{id}"))
        .spawn(move || {
            glommio::LocalExecutor::default().run(async move {
                let limits = StoreLimits::default();
                let log = LogStore::<C>::open(dir.join("log"), limits).await.unwrap();
                let (sm, view) = StateMachine::<Kv>::open(dir.join("sm"), limits).await.unwrap();
                let raft = Raft::new(id, config(), router, log, sm).await.unwrap();
                ready_tx.send(raft.metrics()).unwrap();
                let _server = glommio::spawn_local(serve(raft.clone(), inbox));
                while let Some(c) = rx.recv().await {
                    match c {
                        Control::Init(members, tx) => {
                            drop(tx.send(raft.initialize(members).await));
                        }
                        Control::AddLearner(id, node, tx) => {
                            drop(tx.send(raft.add_learner(id, node, false).await.map(|r| r.log_id)));
                        }
                        Control::Write(cmds, tx) => {
                            let mut last = None;
                            for cmd in cmds {
                                match raft.client_write(cmd).await {
                                    Ok(r) => last = Some(Ok(r.log_id)),
                                    Err(e) => {
                                        last = Some(Err(e));
                                        break;
                                    }
                                }
                            }
                            drop(tx.send(last.expect("at least one command")));
                        }
                        Control::Dump(tx) => {
                            drop(tx.send((view.last_applied(), view.read(|kv| kv.map.clone()))));
                        }
                        Control::Stop => break,
                    }
                }
                // `_server` and every openraft task are dropped with the
                // executor: no shutdown, the files are all that remain.
            });
        })
        .unwrap();
    let metrics = ready_rx.recv_timeout(STEP_DEADLINE).expect("the member started");
    Member { control, metrics, thread }
}

impl Member {
    fn ask<T>(&self, make: impl FnOnce(std_mpsc::Sender<T>) -> Control) -> T {
        let (tx, rx) = std_mpsc::channel();
        let sent = self.control.try_send(make(tx));
        assert!(sent.is_ok(), "the member takes control requests");
        rx.recv_timeout(STEP_DEADLINE).expect("the member answered in time")
    }

    fn stop(self) {
        let sent = self.control.try_send(Control::Stop);
        assert!(sent.is_ok(), "the member takes Stop");
        let deadline = Instant::now() + STEP_DEADLINE;
        while !self.thread.is_finished() {
            assert!(Instant::now() < deadline, "the member's executor did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
        self.thread.join().expect("the member's thread did not panic");
    }
}

/// Polls until `ok` holds, or fails the test with `what`.
fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + STEP_DEADLINE;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The member every running member agrees leads, once they agree.
fn leader(members: &HashMap<u64, Member>, newer_than_term: u64) -> (u64, u64) {
    let mut found = (0, 0);
    wait_until("a leader all running members agree on", || {
        let views: Vec<_> = members.iter().map(|(id, m)| (*id, m.metrics.borrow().clone())).collect();
        let Some(l) = views.iter().find(|(_, v)| v.state == ServerState::Leader) else {
            return false;
        };
        let agreed = views.iter().all(|(_, v)| v.current_leader == Some(l.0) && v.current_term == l.1.current_term);
        found = (l.0, l.1.current_term);
        agreed && l.1.current_term > newer_than_term
    });
    found
}

fn applied_everywhere(members: &HashMap<u64, Member>, upto: LogId<u64>) {
    wait_until(&format!("{upto} applied on every running member"), || {
        members.values().all(|m| m.metrics.borrow().last_applied >= Some(upto))
    });
}

fn writes(from: usize, to: usize) -> Vec<KvCommand> {
    (from..to).map(|i| KvCommand::set(format!("key-{i:03}"), format!("value-{i}"))).collect()
}

fn expected(n: usize) -> BTreeMap<String, String> {
    (0..n).map(|i| (format!("key-{i:03}"), format!("value-{i}"))).collect()
}

fn dump(m: &Member) -> Applied {
    m.ask(Control::Dump)
}

fn dirs() -> (tempfile::TempDir, HashMap<u64, PathBuf>) {
    let root = tempfile::tempdir().unwrap();
    let dirs = (1..=3).map(|id| (id, root.path().join(format!("node-{id}"))));
    let dirs = dirs.collect();
    (root, dirs)
}

#[test]
fn three_members_elect_replicate_fail_over_catch_up_and_snapshot() {
    let started = Instant::now();
    let (_root, dirs) = dirs();
    let router = Router::default();
    let mut members: HashMap<u64, Member> = dirs.iter().map(|(id, dir)| (*id, start(*id, dir, &router))).collect();

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
    let restarted = start(first, &dirs[&first], &router);
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
    members.insert(4, start(4, &learner_dir, &router));
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
