//! Which cluster this node belongs to, and who it is in it: the
//! `cluster/identity` file in the data directory, written once the node
//! has formed or joined a cluster (temporary file, fsync, rename,
//! directory sync). Its metadata log lives beside it (`cluster/raft/`).
//!
//! A node that has an identity restarts as that member; one without
//! forms a cluster or joins one. `cluster_reset` removes the directory.

use crate::cluster::NodeId;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

const DIR: &str = "cluster";
const FILE: &str = "identity";
/// An identity file is a few hundred bytes; a larger one is not ours.
const FILE_BYTES_MAX: u64 = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// 32 hex digits.
    pub cluster_id: String,
    pub node_id: NodeId,
}

impl Identity {
    /// A new member's identity in a new cluster (`cluster_id: None`) or
    /// in the one it joins.
    pub fn new(cluster_id: Option<[u8; 16]>) -> Self {
        use rand::RngCore;
        let id = cluster_id.unwrap_or_else(|| {
            let mut id = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut id);
            id
        });
        // Zero is no node id (and `NO_CLUSTER` no cluster).
        let node_id = rand::rngs::OsRng.next_u64().max(1);
        Self { cluster_id: hex(&id), node_id }
    }

    pub fn cluster_bytes(&self) -> Result<[u8; 16], String> {
        let b = self.cluster_id.as_bytes();
        if b.len() != 32 {
            return Err(format!("cluster id {:?} is not 32 hex digits", self.cluster_id));
        }
        let mut out = [0u8; 16];
        for (i, pair) in b.chunks(2).enumerate() {
            let s = std::str::from_utf8(pair).map_err(|e| e.to_string())?;
            out[i] = u8::from_str_radix(s, 16).map_err(|_| format!("cluster id {:?} is not hex", self.cluster_id))?;
        }
        Ok(out)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The cluster state's directory in `data_dir`.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join(DIR)
}

/// The stored identity, if the node has one.
pub fn load(data_dir: &Path) -> Result<Option<Identity>, String> {
    let path = dir(data_dir).join(FILE);
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if meta.len() > FILE_BYTES_MAX {
        return Err(format!("{}: {} bytes is not an identity file", path.display(), meta.len()));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let id: Identity = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    id.cluster_bytes().map_err(|e| format!("{}: {e}", path.display()))?;
    if id.node_id == 0 {
        return Err(format!("{}: node id 0", path.display()));
    }
    Ok(Some(id))
}

/// Stores the identity durably.
pub fn save(data_dir: &Path, id: &Identity) -> std::io::Result<()> {
    let d = dir(data_dir);
    std::fs::create_dir_all(&d)?;
    let tmp = d.join(format!("{FILE}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(serde_json::to_string_pretty(id).map_err(std::io::Error::other)?.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, d.join(FILE))?;
    std::fs::File::open(&d)?.sync_all()
}

/// Forgets the node's cluster state: identity and metadata log.
pub fn reset(data_dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir(data_dir)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_survives_a_reload_and_a_bad_one_is_refused() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(load(d.path()).unwrap(), None);
        let id = Identity::new(None);
        save(d.path(), &id).unwrap();
        assert_eq!(load(d.path()).unwrap(), Some(id.clone()));
        assert_eq!(id.cluster_bytes().unwrap().len(), 16);
        let joined = Identity::new(Some([7; 16]));
        assert_eq!(joined.cluster_bytes().unwrap(), [7; 16]);

        std::fs::write(dir(d.path()).join(FILE), r#"{"cluster_id":"zz","node_id":1}"#).unwrap();
        assert!(load(d.path()).is_err());
        std::fs::write(dir(d.path()).join(FILE), vec![b' '; 5000]).unwrap();
        assert!(load(d.path()).is_err());
        reset(d.path()).unwrap();
        assert_eq!(load(d.path()).unwrap(), None);
    }
}
