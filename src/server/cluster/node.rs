//! This node as a member of the metadata group, on shard 0: it forms a
//! cluster of one, joins one through a seed, or restarts as the member
//! its identity names; then it serves the link and keeps its own record
//! (`NodeInfo`) current in the metadata.

use super::identity::{self, Identity};
use crate::cluster::link::{self, joiner, LinkConfig, Links, Network};
use crate::cluster::meta::{ClusterMeta, MetaCommand, NodeInfo};
use crate::cluster::service::{JoinRequest, Member, ServiceError};
use crate::cluster::{LogStore, NodeId, Observer, StateMachine, StateView, StoreLimits};
use crate::rt::Notify;
use openraft::{BasicNode, Raft};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a first start keeps trying its seeds before it gives up.
const JOIN_WAIT: Duration = Duration::from_secs(120);
/// How long a seed may take to answer a join (it catches the new node up
/// first).
const JOIN_ANSWER_WAIT: Duration = Duration::from_secs(60);
/// Pause between rounds over the seeds.
const JOIN_RETRY: Duration = Duration::from_millis(500);
/// How often the node checks that its record in the metadata is current.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(500);
/// The longest a metadata change waits for the group.
pub const PROPOSE_WAIT: Duration = Duration::from_secs(10);
/// The longest an operator's cluster command waits (a join catches the
/// new node up first).
pub const CLUSTER_COMMAND_WAIT: Duration = Duration::from_secs(90);

/// What `Broker::start` prepares for shard 0 (on the main thread, so a
/// bad secret or a taken port stops the start at once).
pub struct ClusterStart {
    /// Taken when the member starts serving it.
    pub listener: Option<std::net::TcpListener>,
    /// Each shard's data listener (`server::remote`), handed to the
    /// shards before the member starts.
    pub data_listeners: Vec<std::net::TcpListener>,
    pub secret: Vec<u8>,
    pub tls: Option<Arc<link::LinkTls>>,
    pub identity: Option<Identity>,
    pub name: String,
    pub advertise: String,
    pub join: Vec<String>,
}

/// How far the local half has brought the shards: the last log index
/// applied (shared by the observer and the proposers that wait for it).
#[derive(Default)]
pub struct Progress {
    applied: Cell<u64>,
    changed: Notify,
}

impl Progress {
    /// A new group (this node joined another cluster): its log starts
    /// over.
    pub fn reset(&self) {
        self.applied.set(0);
    }

    /// The local half has applied the entry at `index`.
    pub fn applied_up_to(&self, index: u64) {
        if index > self.applied.get() {
            self.applied.set(index);
            self.changed.notify();
        }
    }

    /// Waits until the local half has applied `index` (or `timeout`).
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let changed = self.changed.notified();
            if self.applied.get() >= index {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let _ = glommio::timer::timeout(left, async {
                changed.await;
                Ok(())
            })
            .await;
        }
    }
}

/// The running member (shard 0 only).
pub struct ClusterNode {
    pub member: Member<ClusterMeta>,
    pub view: StateView<ClusterMeta>,
    pub node_id: NodeId,
    pub cluster_id: String,
    pub name: String,
    /// Where the link listens and what peers dial: kept to start over in
    /// another cluster (`ctl join-cluster`).
    pub listen: std::net::SocketAddr,
    pub advertise: String,
    secret: Vec<u8>,
    tls: Option<Arc<link::LinkTls>>,
    info: NodeInfo,
    progress: Rc<Progress>,
    /// The link's listener: dropped to let the port go.
    tasks: std::cell::RefCell<Vec<glommio::Task<()>>>,
}

impl ClusterNode {
    pub fn raft(&self) -> &Raft<crate::cluster::MetaRaft<ClusterMeta>> {
        &self.member.raft
    }

    pub fn links(&self) -> &Links {
        &self.member.links
    }

    /// Stops the member: Raft, its links, the link's listener.
    pub async fn stop(&self) {
        if let Err(e) = self.raft().shutdown().await {
            tracing::warn!(error = %e, "cluster: the member did not stop cleanly");
        }
        self.tasks.borrow_mut().clear();
    }

    /// What this node starts from to join another cluster at `seed`
    /// (the listener is bound again once this member has let it go).
    pub fn restart_toward(&self, seed: String) -> (ClusterStart, NodeInfo) {
        let cs = ClusterStart {
            listener: None,
            data_listeners: Vec::new(),
            secret: self.secret.clone(),
            tls: self.tls.clone(),
            identity: None,
            name: self.name.clone(),
            advertise: self.advertise.clone(),
            join: vec![seed],
        };
        (cs, self.info.clone())
    }

    /// Proposes a change through the leader, and waits until this node
    /// has applied it too.
    pub async fn propose(&self, command: MetaCommand) -> Result<crate::cluster::meta::MetaResponse, ServiceError> {
        let written = self.member.propose(command, PROPOSE_WAIT).await?;
        if !self.progress.wait_applied(written.index, PROPOSE_WAIT).await {
            return Err(ServiceError::Unavailable("committed, but not yet applied on this node".into()));
        }
        written.response.ok_or_else(|| ServiceError::Unavailable("the change answered nothing".into()))
    }
}

fn raft_config() -> Arc<openraft::Config> {
    let c = openraft::Config {
        cluster_name: "ringmq".into(),
        heartbeat_interval: 200,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(5000),
        max_in_snapshot_log_to_keep: 1000,
        ..openraft::Config::default()
    };
    // Constant values that validate.
    Arc::new(c.validate().unwrap_or_default())
}

/// Starts the member: its files, Raft, the link's listener, and (on a
/// first start) forms or joins the cluster. `observe` is the local half.
pub async fn start(
    data_dir: &Path,
    mut cs: ClusterStart,
    observe: Observer<ClusterMeta>,
    progress: Rc<Progress>,
    info: NodeInfo,
) -> Result<Rc<ClusterNode>, String> {
    let first = cs.identity.is_none();
    let (identity, joining) = match (&cs.identity, cs.join.is_empty()) {
        (Some(id), _) => (id.clone(), None),
        (None, true) => (Identity::new(None), None),
        (None, false) => {
            let fresh = Identity::new(Some(link::handshake::NO_CLUSTER));
            let j = reach_a_seed(&cs, fresh.node_id).await?;
            let id = Identity::new(Some(j.cluster_id));
            (Identity { node_id: fresh.node_id, ..id }, Some(j))
        }
    };
    let cluster_id = identity.cluster_bytes()?;
    let node_id = identity.node_id;
    let mut config = LinkConfig::new(cluster_id, node_id, cs.name.clone(), &cs.secret).map_err(|e| e.to_string())?;
    config.tls = cs.tls.clone();
    let raft_dir = identity::dir(data_dir).join("raft");
    let limits = StoreLimits::default();
    let mut log = LogStore::open(raft_dir.join("log"), limits).await.map_err(|e| e.to_string())?;
    // What this member knew was committed when it stopped: re-applied
    // before the node serves (below).
    let committed = {
        use openraft::storage::RaftLogStorage;
        log.read_committed().await.ok().flatten().map_or(0, |l| l.index)
    };
    let (mut sm, view) =
        StateMachine::<ClusterMeta>::open(raft_dir.join("sm"), limits).await.map_err(|e| e.to_string())?;
    // The state the snapshot file holds, before openraft re-applies the
    // log after it.
    let from = view.last_applied().map_or(0, |l| l.index);
    view.read(|state| observe(crate::cluster::Event::Installed { index: from, state }));
    sm.observe(observe);
    let network = Network::<ClusterMeta>::new(config);
    let links = network.links();
    let raft = Raft::new(node_id, raft_config(), network, log, sm).await.map_err(|e| e.to_string())?;
    // A restarted node serves once it holds what it knew: the queues'
    // placement and the nodes' addresses among it (otherwise a queue on
    // another node would be "not found" here for a moment, and an AMQP
    // publish to it acked as unroutable).
    if committed > 0 && !progress.wait_applied(committed, REPLAY_WAIT).await {
        tracing::warn!(committed, "cluster: the committed log was not re-applied within {REPLAY_WAIT:?}; serving");
    }
    let listener = cs.listener.take().ok_or("the cluster listener was already taken")?;
    let listen = listener.local_addr().map_err(|e| e.to_string())?;
    // SAFETY: the fd comes from a listener this function owns.
    let listener = unsafe {
        use std::os::fd::{FromRawFd, IntoRawFd};
        glommio::net::TcpListener::from_raw_fd(listener.into_raw_fd())
    };
    let server = glommio::spawn_local(link::serve(listener, raft.clone(), links.clone()));
    let member = Member { raft, links };
    if !first {
        catch_up(&member, &progress, node_id).await;
    }
    if first && joining.is_none() {
        let members = BTreeMap::from([(node_id, BasicNode::new(&cs.advertise))]);
        member.raft.initialize(members).await.map_err(|e| format!("forming a cluster of one: {e}"))?;
        identity::save(data_dir, &identity).map_err(|e| format!("storing the cluster identity: {e}"))?;
        tracing::info!(node = node_id, name = %cs.name, "cluster: formed a new cluster of one");
    }
    if let Some(j) = joining {
        let req = JoinRequest { node_id, name: cs.name.clone(), addr: cs.advertise.clone() };
        if let Err(e) = ask_to_join(&cs, j, &req).await {
            // Not a member: the next start tries again from scratch.
            let _ = identity::reset(data_dir);
            return Err(e);
        }
        identity::save(data_dir, &identity).map_err(|e| format!("storing the cluster identity: {e}"))?;
        tracing::info!(node = node_id, name = %cs.name, "cluster: joined");
    }
    let node = Rc::new(ClusterNode {
        member,
        view,
        node_id,
        cluster_id: identity.cluster_id.clone(),
        name: cs.name,
        listen,
        advertise: cs.advertise,
        secret: cs.secret,
        tls: cs.tls,
        info,
        progress,
        tasks: std::cell::RefCell::new(vec![server]),
    });
    let narrator = narrate(node.raft().clone(), node.links().clone(), node.node_id);
    node.tasks.borrow_mut().push(glommio::spawn_local(narrator));
    let announcer = glommio::spawn_local(announce(Rc::downgrade(&node), node.info.clone()));
    // The announcer holds only a weak handle: it ends with the node.
    announcer.detach();
    Ok(node)
}

/// How long a restarted node waits to re-apply its committed log, and
/// then to catch up with the group, before it serves anyway.
const REPLAY_WAIT: Duration = Duration::from_secs(10);

/// A restarted node serves once it has what the group committed, as far
/// as it can learn within `REPLAY_WAIT`: the leader's commit (asked of
/// it, or, leading itself, confirmed by a quorum) applied here. What the
/// saved commit pointer re-applies may stop short of that (it is saved
/// lazily), and a queue placed after it would be "not found" here for a
/// moment: an AMQP publish to it acked as unroutable. Without a majority
/// it serves what it has once the wait is over (changes are refused
/// there anyway).
async fn catch_up(member: &Member<ClusterMeta>, progress: &Progress, me: NodeId) {
    let deadline = Instant::now() + REPLAY_WAIT;
    while Instant::now() < deadline {
        let leader = member.raft.metrics().borrow().current_leader;
        let left = deadline.saturating_duration_since(Instant::now());
        let target = match leader {
            Some(l) if l == me => match member.raft.ensure_linearizable().await {
                Ok(Some(log)) => Some(log.index),
                Ok(None) => Some(0),
                Err(_) => None,
            },
            Some(_) => member.status(left.min(Duration::from_secs(2))).await.ok().map(|v| v.committed.unwrap_or(0)),
            None => None,
        };
        if let Some(index) = target {
            if progress.wait_applied(index, deadline.saturating_duration_since(Instant::now())).await {
                return;
            }
        }
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!("cluster: not caught up with the group within {REPLAY_WAIT:?}; serving what this node has");
}

/// Dials the seeds in turn until one answers as a member of a cluster.
/// A link config for a node that has no cluster yet.
fn joining_config(cs: &ClusterStart, node_id: NodeId) -> Result<LinkConfig, String> {
    let mut config = LinkConfig::new(link::handshake::NO_CLUSTER, node_id, cs.name.clone(), &cs.secret)
        .map_err(|e| e.to_string())?;
    config.tls = cs.tls.clone();
    Ok(config)
}

async fn reach_a_seed(cs: &ClusterStart, node_id: NodeId) -> Result<joiner::Joining, String> {
    let config = joining_config(cs, node_id)?;
    let deadline = Instant::now() + JOIN_WAIT;
    let mut last = String::new();
    while Instant::now() < deadline {
        for seed in &cs.join {
            match joiner::dial(&config, seed).await {
                Ok(j) => {
                    tracing::info!(seed = %seed, member = %j.member, "cluster: reached a member to join through");
                    return Ok(j);
                }
                Err(e) => {
                    tracing::warn!(seed = %seed, error = %e, "cluster: cannot reach a seed; trying the next");
                    last = format!("{seed}: {e}");
                }
            }
        }
        glommio::timer::sleep(JOIN_RETRY).await;
    }
    Err(format!("no seed answered within {JOIN_WAIT:?} (last: {last})"))
}

/// Asks to join, following the answer to the leader.
async fn ask_to_join(cs: &ClusterStart, mut j: joiner::Joining, req: &JoinRequest) -> Result<(), String> {
    let config = joining_config(cs, req.node_id)?;
    for _ in 0..8 {
        match j.ask(req, JOIN_ANSWER_WAIT).await.map_err(|e| format!("asking to join: {e}"))? {
            Ok(()) => return Ok(()),
            Err(ServiceError::NotLeader { leader: Some((_, addr)) }) => {
                tracing::info!(leader = %addr, "cluster: the seed is not the leader; asking the leader");
                j = joiner::dial(&config, &addr).await.map_err(|e| format!("dialling the leader {addr}: {e}"))?;
            }
            Err(ServiceError::NotLeader { leader: None }) => {
                glommio::timer::sleep(JOIN_RETRY).await;
                let seed = cs.join.first().cloned().unwrap_or_default();
                j = joiner::dial(&config, &seed).await.map_err(|e| format!("dialling {seed}: {e}"))?;
            }
            Err(e) => return Err(format!("the cluster refused the join: {e}")),
        }
    }
    Err("the cluster's leader kept moving while this node asked to join".into())
}

/// Logs what an operator wants to know of the group as it happens: a new
/// leader (or none), and the membership as it changes; and stops dialling
/// a member that left (every member, not only the leader that removed it).
async fn narrate(raft: Raft<crate::cluster::MetaRaft<ClusterMeta>>, links: Links, me: NodeId) {
    let mut rx = raft.metrics();
    let (mut leader, mut members) = (None, Vec::new());
    loop {
        let m = rx.borrow().clone();
        if m.current_leader != leader {
            leader = m.current_leader;
            match leader {
                Some(l) if l == me => {
                    tracing::info!(term = m.current_term, "cluster: this node leads the metadata group")
                }
                Some(l) => tracing::info!(leader = l, term = m.current_term, "cluster: a new metadata leader"),
                None => tracing::warn!(term = m.current_term, "cluster: no metadata leader (no majority reachable?)"),
            }
        }
        let now: Vec<NodeId> = m.membership_config.membership().nodes().map(|(id, _)| *id).collect();
        if now != members {
            for gone in members.iter().filter(|id| !now.contains(id)) {
                links.forget(*gone);
            }
            members = now;
            tracing::info!(?members, "cluster: membership");
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Keeps this node's record in the metadata current: proposes it when
/// the applied state lacks it or holds an old one.
async fn announce(node: std::rc::Weak<ClusterNode>, info: NodeInfo) {
    loop {
        glommio::timer::sleep(ANNOUNCE_EVERY).await;
        let Some(n) = node.upgrade() else { return };
        let current = n.view.read(|m| m.nodes().get(&n.node_id) == Some(&info));
        let member = n.raft().metrics().borrow().membership_config.membership().get_node(&n.node_id).is_some();
        if current || !member {
            continue;
        }
        let cmd = MetaCommand::Node { id: n.node_id, info: info.clone() };
        if let Err(e) = n.propose(cmd).await {
            tracing::debug!(error = %e, "cluster: this node's record is not stored yet; retrying");
        }
    }
}
