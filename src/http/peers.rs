//! The cluster-wide alarm check: a clustered node asks every other member
//! that is up for its local alarms, over that member's HTTP listener
//! (`GET /api/health/checks/local-alarms`, with the caller's own basic
//! credentials: users are the cluster's), all at once, each bounded in
//! time and in bytes. What a peer answers is attacker-written as any
//! other input: read to at most [`ANSWER_BYTES_MAX`], and only alarm rows
//! with a string node and resource are taken, at most [`ALARMS_MAX`].

use crate::server::shard::Shard;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

/// The largest answer read from a peer.
const ANSWER_BYTES_MAX: usize = 64 << 10;
/// Alarm rows taken from one peer.
const ALARMS_MAX: usize = 16;
/// How long one peer may take to answer.
const PEER_WAIT: Duration = Duration::from_secs(5);

/// The other members' alarms: `Err` names a member that is up and could
/// not be asked (the check then fails rather than pass unchecked).
pub async fn other_members_alarms(shard: &Rc<Shard>, authorization: &str) -> Result<Vec<Value>, String> {
    let status = crate::server::admin::cluster(shard, crate::server::stats::ClusterAsk::Status).await;
    let me = status["node"].as_str().unwrap_or_default().to_string();
    let mut asks = Vec::new();
    for n in status["nodes"].as_array().into_iter().flatten() {
        let name = n["name"].as_str().unwrap_or_default().to_string();
        // A member that is down has no alarms to report, as in RabbitMQ.
        if name == me || n["state"] != "up" {
            continue;
        }
        let Some(addr) = http_addr(n) else {
            return Err(format!("node {name} has no reachable HTTP address ({})", n["http_addr"]));
        };
        let auth = authorization.to_string();
        asks.push((name, glommio::spawn_local(async move { ask(addr, &auth).await })));
    }
    let mut alarms = Vec::new();
    for (name, task) in asks {
        alarms.extend(task.await.map_err(|e| format!("could not ask node {name} for its alarms: {e}"))?);
    }
    Ok(alarms)
}

/// A member's HTTP address; a wildcard bind is reached at its cluster
/// link's host (the address its peers already dial).
fn http_addr(node: &Value) -> Option<SocketAddr> {
    let mut addr: SocketAddr = node["http_addr"].as_str()?.parse().ok()?;
    if addr.ip().is_unspecified() {
        let link: SocketAddr = node["cluster_addr"].as_str()?.parse().ok()?;
        addr.set_ip(link.ip());
    }
    Some(addr)
}

/// One `local-alarms` request: its alarm rows (none on a 200).
async fn ask(addr: SocketAddr, authorization: &str) -> Result<Vec<Value>, String> {
    let late = async {
        glommio::timer::sleep(PEER_WAIT).await;
        Err(format!("no answer within {PEER_WAIT:?}"))
    };
    let raw = futures_lite::future::or(fetch(addr, authorization), late).await?;
    parse(&raw)
}

async fn fetch(addr: SocketAddr, authorization: &str) -> Result<Vec<u8>, String> {
    let mut s = glommio::net::TcpStream::connect_timeout(addr, PEER_WAIT).await.map_err(|e| format!("{addr}: {e}"))?;
    let req = format!(
        "GET /api/health/checks/local-alarms HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {authorization}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.map_err(|e| format!("{addr}: {e}"))?;
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await.map_err(|e| format!("{addr}: {e}"))?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > ANSWER_BYTES_MAX {
            return Err(format!("{addr}: an answer larger than {ANSWER_BYTES_MAX} bytes"));
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// A 200 has no alarms; a 503 lists them; anything else is a failure.
fn parse(raw: &[u8]) -> Result<Vec<Value>, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("not an HTTP answer")?;
    let code = head.split_whitespace().nth(1).unwrap_or_default();
    match code {
        "200" => Ok(Vec::new()),
        "503" => {
            let v: Value = serde_json::from_str(body).map_err(|e| format!("bad JSON: {e}"))?;
            let rows = v["alarms"].as_array().ok_or("a 503 without alarms")?;
            let row = |r: &Value| Some(json!({ "node": r["node"].as_str()?, "resource": r["resource"].as_str()? }));
            Ok(rows.iter().filter_map(row).take(ALARMS_MAX).collect())
        }
        other => {
            let why: String = body.chars().take(200).collect();
            Err(format!("HTTP {other}: {why}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_from_peers_are_checked() {
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\ncontent-length: 15\r\n\r\n{\"status\":\"ok\"}"), Ok(vec![]));
        let failed = b"HTTP/1.1 503 Service Unavailable\r\n\r\n{\"status\":\"failed\",\"alarms\":[{\"node\":\"n2\",\"resource\":\"disk\"},{\"node\":7},\"x\"]}";
        assert_eq!(parse(failed), Ok(vec![json!({ "node": "n2", "resource": "disk" })]));
        for bad in [&b"garbage"[..], b"HTTP/1.1 401 Unauthorized\r\n\r\n{}", b"HTTP/1.1 503 x\r\n\r\nnot json", b""] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let node = json!({ "http_addr": "0.0.0.0:15692", "cluster_addr": "10.0.0.7:25672" });
        assert_eq!(http_addr(&node), Some("10.0.0.7:15692".parse().unwrap_or_else(|_| unreachable!())));
        assert_eq!(http_addr(&json!({ "http_addr": "0.0.0.0:1", "cluster_addr": "host:2" })), None);
    }
}
