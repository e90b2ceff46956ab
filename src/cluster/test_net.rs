//! An in-process `RaftNetwork` between glommio executors, for tests only.
//!
//! It exists to test the runtime adapter and the storage under a real
//! Raft group: members on separate executor threads, exchanging openraft's
//! requests as values over bounded channels, with no network in the way.
//! The inter-node link (TCP, its own codec, bounds and authentication) is
//! `cluster::link`, tested the same way in `link_tests`.
//!
//! Each member has one inbox, a bounded `tokio::sync::mpsc` channel (the
//! runtime-free kind openraft itself uses; its wakers cross threads, and
//! glommio accepts a wake from another thread). A send to a full inbox or
//! to a member that is not running fails at once, and the failure goes
//! back to openraft as a network error, which it retries on its own
//! schedule: nothing is dropped silently. Replies come back on a oneshot.

use super::test_kv::Kv;
use super::MetaRaft;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, Raft};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

pub type C = MetaRaft<Kv>;

/// Requests a member's inbox holds before a sender is refused.
const INBOX_REQUESTS_MAX: usize = 64;

type Reply<T, E> = oneshot::Sender<Result<T, E>>;

/// One request, with where its answer goes.
pub enum Rpc {
    Append(AppendEntriesRequest<C>, Reply<AppendEntriesResponse<u64>, RaftError<u64>>),
    Vote(VoteRequest<u64>, Reply<VoteResponse<u64>, RaftError<u64>>),
    Snapshot(InstallSnapshotRequest<C>, Reply<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
}

/// Why a request did not reach its member or its answer did not come back.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("member {0} is not running")]
    NotRunning(u64),
    #[error("member {0}'s inbox is full ({INBOX_REQUESTS_MAX} requests)")]
    InboxFull(u64),
    #[error("member {0} stopped before it answered")]
    NoAnswer(u64),
}

/// The inboxes of the running members, by id; shared by every executor.
#[derive(Clone, Default)]
pub struct Router(Arc<Mutex<HashMap<u64, mpsc::Sender<Rpc>>>>);

impl Router {
    /// A fresh inbox for `id` (replacing a stopped member's).
    pub fn register(&self, id: u64) -> mpsc::Receiver<Rpc> {
        let (tx, rx) = mpsc::channel(INBOX_REQUESTS_MAX);
        self.0.lock().unwrap().insert(id, tx);
        rx
    }

    fn inbox(&self, id: u64) -> Option<mpsc::Sender<Rpc>> {
        self.0.lock().unwrap().get(&id).cloned()
    }
}

impl RaftNetworkFactory<C> for Router {
    type Network = Link;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Link {
        Link { target, router: self.clone() }
    }
}

/// One member's requests to another.
pub struct Link {
    target: u64,
    router: Router,
}

impl Link {
    async fn call<T, E>(&self, rpc: impl FnOnce(Reply<T, E>) -> Rpc) -> Result<T, RPCError<u64, BasicNode, E>>
    where
        E: std::error::Error,
    {
        let target = self.target;
        let unreachable = |e| RPCError::Unreachable(Unreachable::new(&e));
        let inbox = self.router.inbox(target).ok_or(unreachable(LinkError::NotRunning(target)))?;
        let (tx, rx) = oneshot::channel();
        inbox.try_send(rpc(tx)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => RPCError::Network(NetworkError::new(&LinkError::InboxFull(target))),
            mpsc::error::TrySendError::Closed(_) => unreachable(LinkError::NotRunning(target)),
        })?;
        match rx.await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(target, e))),
            Err(_) => Err(unreachable(LinkError::NoAnswer(target))),
        }
    }
}

impl RaftNetwork<C> for Link {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(|tx| Rpc::Append(rpc, tx)).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>> {
        self.call(|tx| Rpc::Snapshot(rpc, tx)).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(|tx| Rpc::Vote(rpc, tx)).await
    }
}

/// Answers a member's inbox, each request in its own task so a slow one
/// (a snapshot) does not hold up heartbeats. Ends when the inbox closes.
pub async fn serve(raft: Raft<C>, mut inbox: mpsc::Receiver<Rpc>) {
    while let Some(rpc) = inbox.recv().await {
        let raft = raft.clone();
        glommio::spawn_local(async move {
            // A send fails only if the caller gave up waiting; its side
            // has already reported that to openraft.
            match rpc {
                Rpc::Append(req, tx) => drop(tx.send(raft.append_entries(req).await)),
                Rpc::Vote(req, tx) => drop(tx.send(raft.vote(req).await)),
                Rpc::Snapshot(req, tx) => drop(tx.send(raft.install_snapshot(req).await)),
            }
        })
        .detach();
    }
}
