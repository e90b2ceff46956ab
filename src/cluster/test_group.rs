//! The harness of the group tests: Raft members, each on its own glommio
//! executor thread with its own data directory, no tokio runtime anywhere
//! (a tokio timer or spawn reached by openraft would panic its member's
//! thread). Members talk through `test_net`'s in-process transport
//! (`group_tests`) or over TCP through the real link (`link_tests`).
//!
//! A test drives the members from its own thread through control
//! channels (a `Raft` is `!Send`: it lives on its executor), and every wait
//! has a deadline, so a hang fails the test instead of hanging it.

use super::link::{self, LinkConfig};
use super::test_kv::{Kv, KvCommand};
use super::test_net::{serve, Router, C};
use super::{LogStore, StateMachine, StoreLimits};
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, Config, LogId, Raft, RaftMetrics, ServerState, SnapshotPolicy};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// The longest any one step may take before the test fails.
pub const STEP_DEADLINE: Duration = Duration::from_secs(10);

pub type Metrics = watch::Receiver<RaftMetrics<u64, BasicNode>>;
pub type WriteResult = Result<LogId<u64>, RaftError<u64, ClientWriteError<u64, BasicNode>>>;
pub type InitResult = Result<(), RaftError<u64, InitializeError<u64, BasicNode>>>;
/// A member's applied state: the last log id applied, and the map.
pub type Applied = (Option<LogId<u64>>, BTreeMap<String, String>);

pub enum Control {
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

pub struct Member {
    control: mpsc::Sender<Control>,
    pub metrics: Metrics,
    /// Where its link listens (TCP members).
    pub addr: Option<SocketAddr>,
    thread: std::thread::JoinHandle<()>,
}

/// How a member reaches the others.
#[derive(Clone)]
pub enum Net {
    /// `test_net`'s channels.
    InProcess(Router),
    /// The link: listen on `listen` (`127.0.0.1:0` for a fresh port, the
    /// old one for a restart), dial peers at their `BasicNode` address.
    Tcp { listen: SocketAddr, link: Box<LinkConfig> },
}

pub fn config() -> Arc<Config> {
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

pub fn start(id: u64, dir: &Path, net: &Net) -> Member {
    let (control, mut rx) = mpsc::channel::<Control>(16);
    let (ready_tx, ready_rx) = std_mpsc::channel();
    let inbox = match net {
        Net::InProcess(router) => Some(router.register(id)),
        Net::Tcp { .. } => None,
    };
    let (dir, net) = (dir.to_path_buf(), net.clone());
    let thread = std::thread::Builder::new()
        .name(format!("raft-{id}"))
        .spawn(move || {
            glommio::LocalExecutor::default().run(async move {
                let limits = StoreLimits::default();
                let log = LogStore::<C>::open(dir.join("log"), limits).await.unwrap();
                let (sm, view) = StateMachine::<Kv>::open(dir.join("sm"), limits).await.unwrap();
                let (raft, addr, _server) = match (net, inbox) {
                    (Net::InProcess(router), Some(inbox)) => {
                        let raft = Raft::new(id, config(), router, log, sm).await.unwrap();
                        let server = glommio::spawn_local(serve(raft.clone(), inbox));
                        (raft, None, server)
                    }
                    (Net::Tcp { listen, link }, _) => {
                        let listener = glommio::net::TcpListener::bind(listen).unwrap();
                        let addr = listener.local_addr().unwrap();
                        let network = link::Network::<Kv>::new(*link);
                        let links = network.links();
                        let raft = Raft::new(id, config(), network, log, sm).await.unwrap();
                        let server = glommio::spawn_local(link::serve(listener, raft.clone(), links));
                        (raft, Some(addr), server)
                    }
                    (Net::InProcess(_), None) => unreachable!("an in-process member has an inbox"),
                };
                ready_tx.send((raft.metrics(), addr)).unwrap();
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
    let (metrics, addr) = ready_rx.recv_timeout(STEP_DEADLINE).expect("the member started");
    Member { control, metrics, addr, thread }
}

impl Member {
    pub fn ask<T>(&self, make: impl FnOnce(std_mpsc::Sender<T>) -> Control) -> T {
        let (tx, rx) = std_mpsc::channel();
        let sent = self.control.try_send(make(tx));
        assert!(sent.is_ok(), "the member takes control requests");
        rx.recv_timeout(STEP_DEADLINE).expect("the member answered in time")
    }

    pub fn stop(self) {
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
pub fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + STEP_DEADLINE;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The member every running member agrees leads, once they agree.
pub fn leader(members: &HashMap<u64, Member>, newer_than_term: u64) -> (u64, u64) {
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

pub fn applied_everywhere(members: &HashMap<u64, Member>, upto: LogId<u64>) {
    wait_until(&format!("{upto} applied on every running member"), || {
        members.values().all(|m| m.metrics.borrow().last_applied >= Some(upto))
    });
}

pub fn writes(from: usize, to: usize) -> Vec<KvCommand> {
    (from..to).map(|i| KvCommand::set(format!("key-{i:03}"), format!("value-{i}"))).collect()
}

pub fn expected(n: usize) -> BTreeMap<String, String> {
    (0..n).map(|i| (format!("key-{i:03}"), format!("value-{i}"))).collect()
}

pub fn dump(m: &Member) -> Applied {
    m.ask(Control::Dump)
}

pub fn dirs() -> (tempfile::TempDir, HashMap<u64, PathBuf>) {
    let root = tempfile::tempdir().unwrap();
    let dirs = (1..=3).map(|id| (id, root.path().join(format!("node-{id}"))));
    let dirs = dirs.collect();
    (root, dirs)
}
