//! The RPC payloads: openraft's requests and responses in postcard, the
//! encoding the Raft log already uses. A payload is bounded by the frame
//! it came in; postcard reads it strictly (no bytes left over).

use super::{LinkError, Links};
use crate::cluster::service;
use crate::cluster::{Apply, MetaRaft};
use crate::protocol::link::RpcKind;
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::Raft;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub(super) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, LinkError> {
    postcard::to_allocvec(v).map_err(LinkError::Encode)
}

pub(super) fn decode<T: DeserializeOwned>(what: &'static str, b: &[u8]) -> Result<T, LinkError> {
    match postcard::take_from_bytes(b) {
        Ok((v, [])) => Ok(v),
        Ok(_) => Err(LinkError::Payload { what, source: postcard::Error::DeserializeBadEncoding }),
        Err(source) => Err(LinkError::Payload { what, source }),
    }
}

/// A request a peer sent, decoded.
pub(super) enum Request<A: Apply> {
    Vote(VoteRequest<u64>),
    Append(AppendEntriesRequest<MetaRaft<A>>),
    Snapshot(InstallSnapshotRequest<MetaRaft<A>>),
    /// A member's own request (`cluster::service`).
    Service(service::Request<A>),
}

impl<A: Apply> Request<A> {
    pub(super) fn decode(kind: RpcKind, payload: &[u8]) -> Result<Self, LinkError> {
        use service::Request as S;
        Ok(match kind {
            RpcKind::Vote => Request::Vote(decode("vote request", payload)?),
            RpcKind::Append => Request::Append(decode("append request", payload)?),
            RpcKind::Snapshot => Request::Snapshot(decode("snapshot request", payload)?),
            RpcKind::Propose => Request::Service(S::Propose(decode("proposed change", payload)?)),
            RpcKind::Join => Request::Service(S::Join(decode("join request", payload)?)),
            RpcKind::Forget => Request::Service(S::Forget(decode("forget request", payload)?)),
            RpcKind::Status if payload.is_empty() => Request::Service(S::Status),
            RpcKind::Status => {
                let source = postcard::Error::DeserializeBadEncoding;
                return Err(LinkError::Payload { what: "status request", source });
            }
        })
    }

    /// The member a Raft request speaks for: the candidate of a vote, the
    /// leader of an append or a snapshot. A peer may speak only for the
    /// node id it authenticated as. A member's own requests speak for
    /// nobody (`None`).
    pub(super) fn sender(&self) -> Option<u64> {
        match self {
            Request::Vote(r) => r.vote.leader_id().voted_for(),
            Request::Append(r) => r.vote.leader_id().voted_for(),
            Request::Snapshot(r) => r.vote.leader_id().voted_for(),
            Request::Service(_) => None,
        }
    }

    /// Hands the request to the local member and encodes its answer
    /// (`Result<response, RaftError>`, as the dialler decodes it).
    pub(super) async fn answer(self, raft: &Raft<MetaRaft<A>>, links: &Links) -> Result<Vec<u8>, LinkError> {
        match self {
            Request::Vote(r) => encode(&raft.vote(r).await),
            Request::Append(r) => encode(&raft.append_entries(r).await),
            Request::Snapshot(r) => {
                let res: Result<_, RaftError<u64, InstallSnapshotError>> = raft.install_snapshot(r).await;
                encode(&res)
            }
            Request::Service(r) => Ok(r.answer(raft, links).await),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::meta::ClusterMeta;
    use openraft::Vote;
    use proptest::prelude::*;

    proptest! {
        /// A peer's payload of any kind is hostile: it decodes or is
        /// refused, never panics (the broker's own metadata commands
        /// and user changes among them).
        #[test]
        fn any_payload_of_any_kind_decodes_or_is_refused(
            kind in proptest::sample::select(RpcKind::ALL.to_vec()),
            payload in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let _ = Request::<ClusterMeta>::decode(kind, &payload);
        }
    }

    #[test]
    fn payloads_decode_strictly() {
        let req = VoteRequest::new(Vote::new(3, 2u64), None);
        let mut b = encode(&req).unwrap();
        let back: VoteRequest<u64> = decode("vote request", &b).unwrap();
        assert_eq!(back, req);
        b.push(0);
        assert!(decode::<VoteRequest<u64>>("vote request", &b).is_err(), "a trailing byte");
        assert!(decode::<VoteRequest<u64>>("vote request", &b[..2]).is_err(), "a cut payload");
    }
}
