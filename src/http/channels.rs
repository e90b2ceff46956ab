//! `GET /api/channels`, `/api/vhosts/{vhost}/channels` and
//! `/api/connections/{name}/channels`: every open AMQP channel, in
//! RabbitMQ's shape, read from each AMQP connection's own state on its
//! shard (`AdminReq::Channels`). The native protocol has no channels (a
//! native connection's consumers and publishes are its own): its
//! connections list none, as `/api/connections` shows 0 for them.

use super::{json_resp, Resp};
use crate::server::shard::Shard;
use crate::server::stats::{AdminReply, AdminReq, ChannelStats};
use hyper::StatusCode;
use serde_json::{json, Value};
use std::rc::Rc;

/// Which channels a request asks for.
pub enum Only<'a> {
    All,
    Vhost(&'a str),
    /// A connection, by its name (`shard:id`, as `/api/connections`).
    Connection(&'a str),
}

/// Every shard's channels, sorted by connection and number.
async fn gather(shard: &Rc<Shard>) -> Vec<ChannelStats> {
    let all: Vec<u16> = (0..shard.count).collect();
    let mut rows: Vec<ChannelStats> = shard
        .admin(&all, |_| AdminReq::Channels)
        .await
        .into_iter()
        .flat_map(|(_, r)| match r {
            AdminReply::Channels(rows) => rows,
            _ => Vec::new(),
        })
        .collect();
    rows.sort_by(|a, b| (&a.connection, a.row.number).cmp(&(&b.connection, b.row.number)));
    rows
}

pub async fn list(shard: &Rc<Shard>, only: Only<'_>) -> Resp {
    let rows = gather(shard).await;
    let keep = |c: &&ChannelStats| match only {
        Only::All => true,
        Only::Vhost(v) => c.vhost == v,
        Only::Connection(n) => c.connection == n,
    };
    json_resp(StatusCode::OK, &Value::Array(rows.iter().filter(keep).map(channel_json).collect()))
}

/// One channel as RabbitMQ's management API shows it (the fields its UI
/// and tools read), with ringmq's connection name.
pub fn channel_json(c: &ChannelStats) -> Value {
    let r = &c.row;
    let (host, port) = c.peer.rsplit_once(':').map_or((c.peer.as_str(), 0), |(h, p)| (h, p.parse().unwrap_or(0)));
    let shard = c.connection.split_once(':').map_or("0", |(s, _)| s);
    json!({
        "name": format!("{} ({})", c.connection, r.number),
        "number": r.number,
        "connection_details": { "name": c.connection, "peer_host": host, "peer_port": port },
        "node": format!("shard-{shard}"),
        "user": c.user,
        "vhost": c.vhost,
        "state": r.state,
        "prefetch_count": r.prefetch_count,
        "global_prefetch_count": r.global_prefetch_count,
        "messages_unacknowledged": r.messages_unacknowledged,
        "messages_unconfirmed": r.messages_unconfirmed,
        "consumer_count": r.consumer_count,
        "confirm": r.confirm,
        "transactional": r.transactional,
        "flow": r.flow,
    })
}
