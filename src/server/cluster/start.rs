//! Starting the member: what `Broker::start` checks on the main thread
//! (`prepare`: the secret, the identity, the link's port), and what shard
//! 0 then runs (`run`).

use super::identity;
use super::node::{self, ClusterStart};
use crate::cluster::meta::NodeInfo;
use crate::server::config::Config;
use crate::server::shard::Shard;
use crate::server::StartError;
use std::rc::Rc;

/// The largest secret file read (a secret is a line of text).
const SECRET_FILE_BYTES_MAX: u64 = 4096;

/// Everything a clustered node needs before its shards start, or `None`
/// when clustering is off. A bad secret, a damaged identity or a taken
/// port stops the start here, with the reason.
pub fn prepare(
    c: &Config,
    info: NodeInfo,
    tls: &crate::server::tls::TlsSet,
    shards: usize,
) -> Result<Option<(ClusterStart, NodeInfo)>, StartError> {
    let Some(listen) = c.cluster_listen else { return Ok(None) };
    let bad = |why: String| StartError::Cluster(why);
    let secret = read_secret(c)?;
    if c.cluster_reset {
        identity::reset(&c.data_dir).map_err(|e| bad(format!("cluster_reset: {e}")))?;
        tracing::warn!("cluster_reset: this node's cluster state was discarded; it joins afresh");
    }
    let identity = identity::load(&c.data_dir).map_err(bad)?;
    let listener = bind_retrying(listen).map_err(|source| StartError::Bind { addr: listen, source })?;
    let bound = listener.local_addr().map_err(|source| StartError::Bind { addr: listen, source })?;
    // With port 0 (tests), the address peers dial is the bound one.
    let advertise = match &c.cluster_advertise {
        Some(a) => a.clone(),
        None => bound.to_string(),
    };
    let data_listeners = bind_data(listen, shards)?;
    let host = advertise.rsplit_once(':').map_or(advertise.as_str(), |(h, _)| h);
    let mut data_addrs = Vec::with_capacity(shards);
    for l in &data_listeners {
        let a = l.local_addr().map_err(|source| StartError::Bind { addr: listen, source })?;
        data_addrs.push(format!("{host}:{}", a.port()));
    }
    let info = NodeInfo { cluster_addr: advertise.clone(), data_addrs, ..info };
    let cs = ClusterStart {
        data_listeners,
        listener: Some(listener),
        secret,
        tls: link_tls(c, tls)?,
        identity,
        name: c.node_name(),
        advertise,
        join: c.join.clone(),
    };
    Ok(Some((cs, info)))
}

/// Each shard's listener for forwarded queue traffic (`server::remote`):
/// `cluster_listen`'s port + 1 + the shard's index, as the native
/// per-shard ports are laid out (any free port each when it is 0).
fn bind_data(listen: std::net::SocketAddr, shards: usize) -> Result<Vec<std::net::TcpListener>, StartError> {
    (0..shards)
        .map(|i| {
            let mut addr = listen;
            if listen.port() != 0 {
                // Validated: the ports fit (`Config::validate`).
                let port = usize::from(listen.port()) + 1 + i;
                addr.set_port(u16::try_from(port).unwrap_or(0));
            }
            bind_retrying(addr).map_err(|source| StartError::Bind { addr, source })
        })
        .collect()
}

/// Binds `addr`, waiting up to 2 s while it is in use: a node restarted
/// at once after a kill finds its ports still held for a moment (the
/// dead process's io_uring instance, with an accept in flight on each
/// listener, is torn down after the process is gone).
fn bind_retrying(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let mut tries = 0;
    loop {
        match std::net::TcpListener::bind(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && addr.port() != 0 && tries < 40 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            r => return r,
        }
    }
}

/// TLS on the link, when the config names its files: the listener's side
/// is `tls`'s (reloaded on SIGHUP with the others); the dialler's reads
/// this node's certificate and the CA at each dial (dials are rare), so a
/// reload serves it too.
fn link_tls(
    c: &Config,
    tls: &crate::server::tls::TlsSet,
) -> Result<Option<std::sync::Arc<crate::cluster::link::LinkTls>>, StartError> {
    let (Some(listener), Some(cert), Some(key), Some(ca)) =
        (tls.cluster.clone(), &c.cluster_tls_cert_file, &c.cluster_tls_key_file, &c.cluster_tls_ca_file)
    else {
        return Ok(None);
    };
    let client =
        crate::client::tls::TlsFiles { ca: Some(ca.clone()), cert: Some(cert.clone()), key: Some(key.clone()) };
    // Bad files stop the start here, not at the first dial.
    crate::client::tls::client_config(&client).map_err(|e| StartError::Cluster(format!("the link's TLS: {e}")))?;
    Ok(Some(std::sync::Arc::new(crate::cluster::link::LinkTls {
        acceptor: Box::new(move || listener.acceptor()),
        connector: Box::new(move || crate::client::tls::client_config(&client).map_err(|e| e.to_string())),
    })))
}

fn read_secret(c: &Config) -> Result<Vec<u8>, StartError> {
    let bad = |why: String| StartError::Cluster(why);
    let path = c.cluster_secret_file.as_ref().ok_or_else(|| bad("no cluster_secret_file".into()))?;
    let len = std::fs::metadata(path).map_err(|e| bad(format!("{}: {e}", path.display())))?.len();
    if len > SECRET_FILE_BYTES_MAX {
        return Err(bad(format!(
            "{}: {len} bytes; a secret file holds at most {SECRET_FILE_BYTES_MAX}",
            path.display()
        )));
    }
    let text = std::fs::read(path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    let secret = text.trim_ascii().to_vec();
    let min = crate::cluster::link::SECRET_BYTES_MIN;
    if secret.len() < min {
        return Err(bad(format!(
            "{}: the secret is {} bytes; at least {min} are needed",
            path.display(),
            secret.len()
        )));
    }
    Ok(secret)
}

/// Shard 0: starts the member and hands it to the shard.
pub async fn run(shard: &Rc<Shard>, (cs, info): (ClusterStart, NodeInfo)) -> Result<(), String> {
    let data_dir = shard.config.data_dir.clone();
    let node = node::start(&data_dir, cs, shard.cluster_observer(), shard.cluster_progress(), info).await?;
    shard.set_cluster_node(node);
    Ok(())
}
