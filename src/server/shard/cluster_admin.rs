//! Shard 0's answers to `ctl cluster-status`, `forget-node` and
//! `join-cluster` (and `/api/nodes`).

use super::Shard;
use crate::cluster::meta::{MetaCommand, NodeInfo};
use crate::cluster::service::GroupView;
use crate::cluster::NodeId;
use crate::server::cluster::node::{self, ClusterNode};
use crate::server::stats::ClusterAsk;
use serde_json::{json, Value};
use std::rc::Rc;
use std::time::Duration;

/// How long `cluster-status` waits for the leader's view.
const STATUS_WAIT: Duration = Duration::from_secs(2);

impl Shard {
    pub(super) async fn cluster_admin(&self, ask: ClusterAsk) -> Value {
        let Some(node) = self.cluster_node() else {
            return match ask {
                ClusterAsk::Status => self.standalone_status(),
                _ => json!({ "error": "this node is not clustered (start it with --cluster-listen)" }),
            };
        };
        match ask {
            ClusterAsk::Status => cluster_status(&node).await,
            ClusterAsk::Forget { name } => forget(&node, &name).await,
            ClusterAsk::Join { addr } => self.join_other(node, addr).await,
        }
    }

    /// The cluster's gauges for `/metrics`, from this node's own view (a
    /// scrape asks nobody else): empty when the node is not clustered.
    pub fn cluster_prometheus(&self) -> String {
        let Some(node) = self.cluster_node() else { return String::new() };
        let m = node.raft().metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let members = membership.nodes().count();
        let voters = membership.voter_ids().count();
        // This node's links to the others that are up (a follower dials
        // only when it has something to say: the leader's view is in
        // `cluster-status`).
        let links_up =
            membership.nodes().filter(|(id, _)| **id != node.node_id && node.links().is_up(**id) == Some(true)).count();
        let leader = u8::from(m.current_leader == Some(node.node_id));
        let known = u8::from(m.current_leader.is_some());
        let applied = m.last_applied.map_or(0, |l| l.index);
        let mut o = String::new();
        for (name, help, v) in [
            (
                "ringmq_cluster_members",
                "Nodes in the cluster's membership (voters and joining learners).",
                members as u64,
            ),
            ("ringmq_cluster_voters", "Nodes that vote on metadata changes.", voters as u64),
            ("ringmq_cluster_links_up", "This node's links to other members that are up.", links_up as u64),
            ("ringmq_cluster_is_leader", "1 if this node leads the metadata group.", u64::from(leader)),
            (
                "ringmq_cluster_leader_known",
                "1 if this node knows a leader (0: no majority reachable).",
                u64::from(known),
            ),
            ("ringmq_cluster_term", "The metadata group's current term.", m.current_term),
            ("ringmq_cluster_applied_index", "The last metadata log entry this node applied.", applied),
        ] {
            o.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"));
        }
        o
    }

    /// A node that is not clustered is a cluster of one.
    fn standalone_status(&self) -> Value {
        let a = &self.shard_addrs;
        json!({
            "cluster_id": null, "node": self.config.node_name(), "leader": self.config.node_name(), "term": 0,
            "nodes": [{
                "name": self.config.node_name(), "id": 0, "state": "up", "voter": true, "leader": true,
                "cluster_addr": null, "shard_addrs": a.plain, "shards": a.plain.len(),
            }],
        })
    }

    /// `ctl join-cluster ADDR`: a node alone in its own cluster leaves it
    /// and joins the cluster at `addr`. Its exchanges and bindings go (the
    /// other cluster's replace them), as `rabbitmqctl join_cluster` after
    /// `reset`.
    async fn join_other(&self, node: Rc<ClusterNode>, addr: String) -> Value {
        let membership = node.raft().metrics().borrow().membership_config.membership().clone();
        if membership.nodes().count() > 1 {
            let why = "this node is already in a cluster with other nodes: forget it there first, \
                       then start it with --cluster-reset";
            return json!({ "error": why });
        }
        let Some(me) = self.cluster.me.borrow().upgrade() else {
            return json!({ "error": "the shard is stopping" });
        };
        let (mut cs, info) = node.restart_toward(addr.clone());
        let listen = node.listen;
        // The old member stops: its files go, and so does the table it
        // gave the shards (the new cluster's arrives as it is applied).
        *self.cluster.node.borrow_mut() = None;
        node.stop().await;
        drop(node);
        // The old member's listener closes with its tasks (glommio closes
        // the socket on its reactor, a moment later).
        match rebind(listen).await {
            Ok(l) => cs.listener = Some(l),
            Err(e) => return json!({ "error": format!("{listen}: {e}; this node is now in no cluster: restart it") }),
        }
        self.install_routing(&crate::routing::RoutingTable::default());
        let none = crate::server::remote::PlacementMsg::Reset { nodes: Vec::new(), queues: Vec::new() };
        self.broadcast_placement(none);
        self.cluster.progress.reset();
        if let Err(e) = crate::server::cluster::identity::reset(&self.config.data_dir) {
            return json!({ "error": format!("discarding this node's cluster state: {e}") });
        }
        let observer = me.cluster_observer();
        match node::start(&self.config.data_dir, cs, observer, self.cluster.progress.clone(), info).await {
            Ok(n) => {
                me.set_cluster_node(n);
                json!({ "joined": addr })
            }
            Err(e) => json!({ "error": format!("joining {addr}: {e}; this node is now in no cluster: restart it") }),
        }
    }
}

/// Binds the link's address again, waiting up to a second for the old
/// listener to let it go.
async fn rebind(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let mut tries = 0;
    loop {
        match std::net::TcpListener::bind(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 20 => {
                tries += 1;
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
            r => return r,
        }
    }
}

/// The cluster as this node sees it, with the leader's view of who is up.
async fn cluster_status(node: &ClusterNode) -> Value {
    let m = node.raft().metrics().borrow().clone();
    let group: Option<GroupView> = node.member.status(STATUS_WAIT).await.ok();
    let records = node.view.read(|meta| meta.nodes().clone());
    let membership = m.membership_config.membership().clone();
    let voters: Vec<NodeId> = membership.voter_ids().collect();
    // In a joint configuration (a change under way), a voter of the old
    // configuration that the new one drops is leaving.
    let joint = membership.get_joint_config();
    let leaving = |id: &NodeId| joint.len() > 1 && joint.last().is_some_and(|new| !new.contains(id));
    let name_of = |id: NodeId| records.get(&id).map_or_else(|| format!("node-{id}"), |n| n.name.clone());
    let nodes: Vec<Value> = membership
        .nodes()
        .map(|(id, basic)| {
            let voter = voters.contains(id);
            let up = group.as_ref().and_then(|g| g.members.iter().find(|v| v.id == *id)).map(|v| v.up);
            let state = match (voter, up) {
                _ if leaving(id) => "leaving",
                (false, _) => "joining",
                (true, Some(true)) => "up",
                (true, Some(false)) => "down",
                (true, None) if *id == node.node_id => "up",
                (true, None) => "unknown",
            };
            node_json(*id, &name_of(*id), state, voter, m.current_leader == Some(*id), &basic.addr, records.get(id))
        })
        .collect();
    json!({
        "cluster_id": node.cluster_id, "node": node.name, "node_id": node.node_id,
        "leader": m.current_leader.map(name_of), "term": m.current_term,
        "committed": group.as_ref().and_then(|g| g.committed),
        "nodes": nodes,
    })
}

fn node_json(
    id: NodeId,
    name: &str,
    state: &str,
    voter: bool,
    leader: bool,
    link: &str,
    r: Option<&NodeInfo>,
) -> Value {
    json!({
        "name": name, "id": id, "state": state, "voter": voter, "leader": leader,
        "cluster_addr": link,
        "native_addr": r.map(|r| r.native_addr.clone()),
        "shard_addrs": r.map(|r| r.shard_addrs.clone()),
        "shards": r.map(|r| r.shard_addrs.len()),
        "amqp_addr": r.map(|r| r.amqp_addr.clone()),
        "http_addr": r.map(|r| r.http_addr.clone()),
    })
}

/// `ctl forget-node NAME`: removes the node from the group, then its
/// record. The node, if it runs, finds itself refused by every member.
async fn forget(node: &ClusterNode, name: &str) -> Value {
    let by_record = node.view.read(|meta| meta.node_named(name).map(|(id, _)| id));
    // A node that never stored its record is named `node-ID` by status.
    let by_id = name.strip_prefix("node-").and_then(|id| id.parse::<NodeId>().ok());
    let Some(id) = by_record.or(by_id) else {
        return json!({ "error": format!("no node named '{name}' in the cluster") });
    };
    if id == node.node_id {
        return json!({ "error": "a node cannot forget itself; ask another node" });
    }
    if let Err(e) = node.member.forget(id, node::PROPOSE_WAIT).await {
        return json!({ "error": format!("forgetting '{name}': {e}") });
    }
    if let Err(e) = node.propose(MetaCommand::NodeGone { id }).await {
        // The membership no longer holds it: only the record lingers.
        tracing::warn!(error = %e, node = id, "cluster: the forgotten node's record stays for now");
    }
    json!({ "forgotten": name, "id": id })
}
