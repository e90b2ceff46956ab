//! `data_dir/ringmq.meta`: the shard count the data dir was written with.
//! Queues are placed by `shard_for(name, shards)`, so a different count
//! would put recovered queues on shards that do not own them: the start
//! is refused instead (re-homing is future work, see `docs/storage.md`).

use super::StorageError;
use std::path::Path;

pub const META_FILE: &str = "ringmq.meta";

/// Writes the meta file on first start; refuses a different shard count.
pub fn check_shard_count(data_dir: &Path, shards: usize) -> Result<(), StorageError> {
    let path = data_dir.join(META_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let found = text
                .lines()
                .find_map(|l| l.strip_prefix("shards="))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| StorageError::BadMeta(path.clone()))?;
            if found != shards {
                return Err(StorageError::ShardCount { dir: data_dir.into(), found, wanted: shards });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = data_dir.join(format!("{META_FILE}.tmp"));
            let write = || -> std::io::Result<()> {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp)?;
                writeln!(f, "format=1\nshards={shards}")?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                std::fs::File::open(data_dir)?.sync_all()
            };
            write().map_err(|e| StorageError::io(&path, e))
        }
        Err(e) => Err(StorageError::io(&path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_writes_then_a_different_count_is_refused() {
        let d = tempfile::tempdir().unwrap();
        check_shard_count(d.path(), 2).unwrap();
        check_shard_count(d.path(), 2).unwrap();
        let e = check_shard_count(d.path(), 3).unwrap_err().to_string();
        assert!(e.contains("2 shards") && e.contains("--cores 2"), "{e}");
    }
}
