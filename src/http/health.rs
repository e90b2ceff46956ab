//! RabbitMQ's health checks (`GET /api/health/checks/...`) and
//! `/api/aliveness-test/VHOST`, in its answer shapes: 200 with
//! `{"status": "ok"}` when the check passes, 503 with `{"status":
//! "failed", "reason": ...}` and the check's details when it does not, so
//! that monitoring built for RabbitMQ reads them unchanged.

use super::{error, json_resp, nodes::NODE, Resp};
use crate::client::{Client, ClientError, ClientOptions, ProducerOptions};
use crate::protocol::ErrorCode;
use crate::server::shard::Shard;
use hyper::StatusCode;
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

/// The queue aliveness-test declares, as RabbitMQ's.
pub const ALIVENESS_QUEUE: &str = "aliveness-test";
/// The body it publishes and gets back.
const ALIVENESS_BODY: &[u8] = b"test_message";

fn ok(extra: Value) -> Resp {
    let mut v = json!({ "status": "ok" });
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    json_resp(StatusCode::OK, &v)
}

fn failed(reason: &str, extra: Value) -> Resp {
    let mut v = json!({ "status": "failed", "reason": reason });
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    json_resp(StatusCode::SERVICE_UNAVAILABLE, &v)
}

/// The resource alarms in effect on this node, as RabbitMQ lists them:
/// a clustered node by its name in the cluster, a lone one as `/api/nodes`
/// names it.
fn alarms_in_effect(shard: &Shard) -> Vec<Value> {
    let node = match shard.config.cluster_listen {
        Some(_) => shard.config.node_name(),
        None => NODE.to_string(),
    };
    let a = shard.alarms().snapshot();
    a.in_effect().iter().map(|r| json!({ "node": node, "resource": r })).collect()
}

/// `GET /api/health/checks/alarms`: the cluster's alarms. A clustered
/// node asks every other member that is up for its own ([`super::peers`],
/// with the caller's `authorization`); one that cannot be asked fails the
/// check with the reason.
pub async fn alarms(shard: &Rc<Shard>, authorization: &str) -> Resp {
    let mut alarms = alarms_in_effect(shard);
    if shard.cluster_node().is_some() {
        match super::peers::other_members_alarms(shard, authorization).await {
            Ok(others) => alarms.extend(others),
            Err(why) => return failed(&why, json!({ "alarms": alarms })),
        }
    }
    if alarms.is_empty() {
        return ok(json!({}));
    }
    failed("There are alarms in effect in the cluster", json!({ "alarms": alarms }))
}

/// `GET /api/health/checks/local-alarms`: this node's alarms.
pub fn local_alarms(shard: &Shard) -> Resp {
    let alarms = alarms_in_effect(shard);
    if alarms.is_empty() {
        return ok(json!({}));
    }
    failed("There are alarms in effect on the node", json!({ "alarms": alarms }))
}

/// A port as a path segment: 1 to 5 ASCII digits, 1 ..= 65535. Anything
/// else (signs, spaces, overflow) is refused before any arithmetic.
pub fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|p| *p != 0)
}

/// `GET /api/health/checks/port-listener/PORT`: whether a listener of this
/// node is bound to PORT. 400 for a segment that is not a port.
pub fn port_listener(shard: &Shard, segment: &str) -> Resp {
    let Some(port) = parse_port(segment) else {
        return error(StatusCode::BAD_REQUEST, "Invalid port");
    };
    let status = shard.node_status();
    if status.listens_on(port) {
        return ok(json!({ "port": port }));
    }
    failed("No active listener", json!({ "missing": port, "ports": status.ports() }))
}

/// Why an aliveness round failed: an HTTP status (the caller's fault:
/// 403, 404) or the check's own failure (503).
enum Alive {
    Refused(StatusCode, String),
    Failed(String),
}

impl From<ClientError> for Alive {
    fn from(e: ClientError) -> Self {
        match e.code() {
            Some(ErrorCode::AuthFailed | ErrorCode::AccessRefused) => {
                Alive::Refused(StatusCode::FORBIDDEN, e.to_string())
            }
            Some(ErrorCode::VhostNotFound) => Alive::Refused(StatusCode::NOT_FOUND, e.to_string()),
            _ => Alive::Failed(e.to_string()),
        }
    }
}

/// The address the node's own native listener is reached at: a wildcard
/// bind is reached over the loopback of its family.
pub(super) fn native_addr(shard: &Shard) -> Option<SocketAddr> {
    let l = shard.node_status().listeners().iter().find(|l| l.protocol == "native")?;
    let mut addr = l.addr;
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        _ => {}
    }
    Some(addr)
}

/// `GET /api/aliveness-test/VHOST`, as RabbitMQ's (before 3.13 made it a
/// no-op): as the requesting user, in VHOST, declares the queue
/// `aliveness-test` (transient; kept, so that a probe every few seconds
/// does not create and delete a queue each time), publishes a message to
/// it with a confirm, and gets one back. It goes through the node's own
/// native listener as a client would, so it exercises login, the user's
/// permissions (configure, write and read on the queue), routing, the
/// queue's owner and a delivery. Bounded by `http_request_timeout_ms`: a
/// publish blocked by a resource alarm fails the check.
pub async fn aliveness(shard: &Rc<Shard>, vhost: &str, (user, password): (&str, &str)) -> Resp {
    if !shard.has_vhost(vhost) {
        return error(StatusCode::NOT_FOUND, "no such vhost");
    }
    let Some(addr) = native_addr(shard) else {
        return failed("the node has no native listener", json!({}));
    };
    let opts = self_client(addr, vhost, (user, password));
    let limit = Duration::from_millis(shard.config.http_request_timeout_ms);
    let late = async {
        glommio::timer::sleep(limit).await;
        Err(Alive::Failed(format!("no answer within http_request_timeout_ms ({} ms)", limit.as_millis())))
    };
    match futures_lite::future::or(round(opts), late).await {
        Ok(()) => ok(json!({})),
        Err(Alive::Refused(status, why)) => error(status, &why),
        Err(Alive::Failed(why)) => failed(&why, json!({})),
    }
}

/// A client of this node's native listener at `addr`, logged in as the
/// requester: one connection, the broker forwards to each queue's owner.
pub(super) fn self_client(addr: SocketAddr, vhost: &str, (user, password): (&str, &str)) -> ClientOptions {
    ClientOptions {
        url: format!("ringmq://{addr}"),
        user: user.to_string(),
        password: password.to_string(),
        vhost: vhost.to_string(),
        shard_aware: false,
        cluster_aware: false,
        heartbeat_ms: 0,
        ..Default::default()
    }
}

/// One declare, publish (confirmed) and get, on a connection of its own.
async fn round(opts: ClientOptions) -> Result<(), Alive> {
    let client = Client::connect(opts).await?;
    let r = async {
        client.declare(ALIVENESS_QUEUE, false).await?;
        let producer = client.producer(ALIVENESS_QUEUE, ProducerOptions::default()).await?;
        producer.send(ALIVENESS_BODY).await?;
        client.get(ALIVENESS_QUEUE, true).await
    }
    .await;
    client.close().await;
    match r? {
        Some(_) => Ok(()),
        None => Err(Alive::Failed("aliveness-test queue is empty".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_port;

    #[test]
    fn ports_from_hostile_segments() {
        assert_eq!(parse_port("5672"), Some(5672));
        assert_eq!(parse_port("65535"), Some(65535));
        for bad in ["", "0", "65536", "99999", "123456", "-1", "+80", " 80", "80 ", "0x50", "8O", "٣"] {
            assert_eq!(parse_port(bad), None, "{bad:?}");
        }
        assert_eq!(parse_port(&"9".repeat(10_000)), None);
    }
}
