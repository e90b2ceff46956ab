//! The member's own requests to the group, beside Raft's RPCs: a change
//! forwarded to the leader, a node asking to join, a node forgotten, the
//! leader's view of the cluster. Both halves are here: what a member asks
//! ([`Member`]) and how the leader answers (`answer`, called by the
//! link's listener).
//!
//! Every request goes to the leader. A member that is not the leader
//! answers `NotLeader` with where the leader is, and the asker tries
//! there (at most `HOPS_MAX` times: leadership that keeps moving is an
//! error, not a loop).

use super::link::{LinkError, Links};
use super::{Apply, MetaRaft, NodeId};
use crate::protocol::link::RpcKind;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, Raft, ServerState};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Redirects followed before a request gives up.
const HOPS_MAX: usize = 3;

/// A node asking to join: who it is and where its link listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    pub node_id: NodeId,
    pub name: String,
    pub addr: String,
}

/// Why the leader (or the member asked) did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ServiceError {
    /// Ask there instead (`None`: no leader is known, as in a minority).
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<(NodeId, String)> },
    /// The request is wrong, for good (a name that is taken, a node that
    /// is not there).
    #[error("{0}")]
    Refused(String),
    /// The group could not do it now (no quorum, shutting down).
    #[error("the cluster cannot do it now: {0}")]
    Unavailable(String),
}

/// A change the leader applied: its log index (a member waits until it
/// has applied that far itself) and what applying it answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Written<R> {
    pub index: u64,
    pub response: Option<R>,
}

/// One member as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub id: NodeId,
    pub addr: String,
    pub voter: bool,
    /// The leader's link to it is up (the leader itself: true).
    pub up: bool,
    /// The last log index it has stored, as far as the leader knows.
    pub matched: Option<u64>,
}

/// The leader's view of the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    pub leader: NodeId,
    pub term: u64,
    pub committed: Option<u64>,
    pub members: Vec<MemberView>,
}

/// A request, decoded from an `Rpc` frame of a service kind.
pub(crate) enum Request<A: Apply> {
    Propose(A::Command),
    Join(JoinRequest),
    Forget(NodeId),
    Status,
}

fn not_leader<A: Apply>(raft: &Raft<MetaRaft<A>>) -> ServiceError {
    let m = raft.metrics().borrow().clone();
    let leader = m.current_leader.and_then(|id| {
        let addr = m.membership_config.membership().get_node(&id).map(|n| n.addr.clone())?;
        Some((id, addr))
    });
    ServiceError::NotLeader { leader }
}

fn write_error<A: Apply>(
    raft: &Raft<MetaRaft<A>>,
    e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
) -> ServiceError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => not_leader(raft),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => ServiceError::Refused(e.to_string()),
        RaftError::Fatal(f) => ServiceError::Unavailable(f.to_string()),
    }
}

impl<A: Apply> Request<A> {
    /// Answers on this member: as the leader, or with where the leader is.
    pub(crate) async fn answer(self, raft: &Raft<MetaRaft<A>>, links: &Links) -> Vec<u8> {
        let encoded = match self {
            Request::Propose(c) => postcard::to_allocvec(&propose_here(raft, c).await),
            Request::Join(j) => postcard::to_allocvec(&join_here(raft, j).await),
            Request::Forget(id) => postcard::to_allocvec(&forget_here(raft, links, id).await),
            Request::Status => postcard::to_allocvec(&status_here(raft, links)),
        };
        // Each is a small enum of strings and numbers: it encodes.
        encoded.unwrap_or_default()
    }
}

/// Proposes `command` here, as the leader.
pub async fn propose_here<A: Apply>(
    raft: &Raft<MetaRaft<A>>,
    command: A::Command,
) -> Result<Written<A::Response>, ServiceError> {
    match raft.client_write(command).await {
        Ok(r) => Ok(Written { index: r.log_id.index, response: r.data }),
        Err(e) => Err(write_error(raft, e)),
    }
}

/// Adds a node as a learner, waits for it to catch up, then makes it a
/// voter. A node already in the group is answered at once (a retry).
async fn join_here<A: Apply>(raft: &Raft<MetaRaft<A>>, j: JoinRequest) -> Result<(), ServiceError> {
    let m = raft.metrics().borrow().clone();
    if m.current_leader != Some(m.id) {
        return Err(not_leader(raft));
    }
    let membership = m.membership_config.membership().clone();
    if membership.voter_ids().any(|v| v == j.node_id) {
        return Ok(());
    }
    tracing::info!(node = j.node_id, name = %j.name, addr = %j.addr, "cluster: a node asks to join");
    let node = BasicNode::new(&j.addr);
    raft.add_learner(j.node_id, node, true).await.map_err(|e| write_error(raft, e))?;
    if let Err(e) = change_membership(raft, ChangeMembers::AddVoterIds(BTreeSet::from([j.node_id]))).await {
        // A learner left behind would be dialled for ever: the node
        // forgets this attempt and tries again with a new id.
        let _ = raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([j.node_id])), false).await;
        return Err(e);
    }
    tracing::info!(node = j.node_id, name = %j.name, "cluster: node joined as a voter");
    Ok(())
}

/// Tries to change the membership for this long while another change is
/// in progress (two nodes joining at once).
const MEMBERSHIP_BUSY_WAIT: Duration = Duration::from_secs(30);

/// One membership change at a time: openraft refuses a change while the
/// last one is not committed, so a second join waits its turn.
async fn change_membership<A: Apply>(
    raft: &Raft<MetaRaft<A>>,
    change: ChangeMembers<NodeId, BasicNode>,
) -> Result<(), ServiceError> {
    let deadline = Instant::now() + MEMBERSHIP_BUSY_WAIT;
    loop {
        match raft.change_membership(change.clone(), false).await {
            Ok(_) => return Ok(()),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                openraft::error::ChangeMembershipError::InProgress(_),
            ))) if Instant::now() < deadline => {
                glommio::timer::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(write_error(raft, e)),
        }
    }
}

/// Removes a node from the group (voter or learner).
async fn forget_here<A: Apply>(raft: &Raft<MetaRaft<A>>, links: &Links, id: NodeId) -> Result<(), ServiceError> {
    let m = raft.metrics().borrow().clone();
    if m.current_leader != Some(m.id) {
        return Err(not_leader(raft));
    }
    let membership = m.membership_config.membership().clone();
    if membership.get_node(&id).is_none() {
        return Err(ServiceError::Refused(format!("node {id} is not a member")));
    }
    if id == m.id {
        return Err(ServiceError::Refused("the leader cannot forget itself; ask another node".into()));
    }
    let remove = match membership.voter_ids().any(|v| v == id) {
        true => ChangeMembers::RemoveVoters(BTreeSet::from([id])),
        false => ChangeMembers::RemoveNodes(BTreeSet::from([id])),
    };
    change_membership(raft, remove).await?;
    links.forget(id);
    tracing::info!(node = id, "cluster: node forgotten");
    Ok(())
}

/// The group as this member, the leader, sees it.
fn status_here<A: Apply>(raft: &Raft<MetaRaft<A>>, links: &Links) -> Result<GroupView, ServiceError> {
    let m = raft.metrics().borrow().clone();
    if m.current_leader != Some(m.id) {
        return Err(not_leader(raft));
    }
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let matched: BTreeMap<NodeId, Option<u64>> =
        m.replication.as_ref().map(|r| r.iter().map(|(id, l)| (*id, l.map(|l| l.index))).collect()).unwrap_or_default();
    let members = membership
        .nodes()
        .map(|(id, node)| MemberView {
            id: *id,
            addr: node.addr.clone(),
            voter: voters.contains(id),
            up: *id == m.id || links.is_up(*id).unwrap_or(false),
            matched: if *id == m.id { m.last_log_index } else { matched.get(id).copied().flatten() },
        })
        .collect();
    Ok(GroupView { leader: m.id, term: m.current_term, committed: m.last_applied.map(|l| l.index), members })
}

/// A member's side: asks the leader, following redirects.
pub struct Member<A: Apply> {
    pub raft: Raft<MetaRaft<A>>,
    pub links: Links,
}

impl<A: Apply> Member<A> {
    /// Where this member believes the leader is.
    fn leader(&self) -> Result<(NodeId, String), ServiceError> {
        match not_leader(&self.raft) {
            ServiceError::NotLeader { leader: Some(l) } => Ok(l),
            _ => Err(ServiceError::Unavailable("no leader is known (this node may be in a minority)".into())),
        }
    }

    fn is_leader(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        m.current_leader == Some(m.id) && m.state == ServerState::Leader
    }

    /// Sends `kind` to the leader and decodes its answer, following
    /// `NotLeader` answers.
    async fn ask<T: serde::de::DeserializeOwned>(
        &self,
        kind: RpcKind,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<T, ServiceError> {
        let deadline = Instant::now() + timeout;
        let mut target = self.leader()?;
        for _ in 0..HOPS_MAX {
            let reply = self.links.call(target.0, &target.1, kind, payload, deadline).await.map_err(unavailable)?;
            let answer: Result<T, ServiceError> = decode(kind, &reply)?;
            match answer {
                Err(ServiceError::NotLeader { leader: Some(l) }) if l.0 != self.links.config().node_id => target = l,
                other => return other,
            }
        }
        Err(ServiceError::Unavailable("the leader kept moving".into()))
    }

    /// Proposes a change through the leader; answers once the leader has
    /// applied it (the caller waits for this member's own apply).
    pub async fn propose(&self, command: A::Command, timeout: Duration) -> Result<Written<A::Response>, ServiceError> {
        if self.is_leader() {
            // A leader cut off from its majority waits for ever on its
            // own: the deadline is the caller's.
            let r = glommio::timer::timeout(timeout, async { Ok(propose_here(&self.raft, command).await) }).await;
            return r.unwrap_or_else(|_| Err(no_majority(timeout)));
        }
        let payload = postcard::to_allocvec(&command).map_err(|e| ServiceError::Refused(e.to_string()))?;
        self.ask(RpcKind::Propose, &payload, timeout).await
    }

    /// Removes node `id` from the group, through the leader.
    pub async fn forget(&self, id: NodeId, timeout: Duration) -> Result<(), ServiceError> {
        if self.is_leader() {
            let r =
                glommio::timer::timeout(timeout, async { Ok(forget_here(&self.raft, &self.links, id).await) }).await;
            return r.unwrap_or_else(|_| Err(no_majority(timeout)));
        }
        let payload = postcard::to_allocvec(&id).map_err(|e| ServiceError::Refused(e.to_string()))?;
        self.ask(RpcKind::Forget, &payload, timeout).await
    }

    /// The leader's view of the group.
    pub async fn status(&self, timeout: Duration) -> Result<GroupView, ServiceError> {
        if self.is_leader() {
            return status_here(&self.raft, &self.links);
        }
        self.ask(RpcKind::Status, &[], timeout).await
    }
}

fn no_majority(waited: Duration) -> ServiceError {
    ServiceError::Unavailable(format!("not committed within {waited:?}: no majority of the nodes answers"))
}

fn unavailable(e: LinkError) -> ServiceError {
    ServiceError::Unavailable(e.to_string())
}

/// A reply that does not decode is the peer's fault: an error, never a
/// panic.
fn decode<T: serde::de::DeserializeOwned>(kind: RpcKind, b: &[u8]) -> Result<T, ServiceError> {
    match postcard::take_from_bytes(b) {
        Ok((v, [])) => Ok(v),
        _ => Err(ServiceError::Unavailable(format!("the leader's {} reply does not decode", kind.name()))),
    }
}
