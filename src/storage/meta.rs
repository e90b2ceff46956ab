//! `data_dir/ringmq.meta`: the shard count the data dir was written with.
//! Queues are placed by `shard_for(name, shards)`, so a different count
//! would put recovered queues on shards that do not own them: the start
//! is refused instead (re-homing is future work, see `docs/storage.md`).

use std::path::Path;

pub const META_FILE: &str = "ringmq.meta";

/// Writes the meta file on first start; refuses a different shard count.
pub fn check_shard_count(data_dir: &Path, shards: usize) -> Result<(), String> {
    let path = data_dir.join(META_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let found = text
                .lines()
                .find_map(|l| l.strip_prefix("shards="))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| format!("{}: no valid `shards=` line", path.display()))?;
            if found != shards {
                return Err(format!(
                    "data dir {} was written by a broker with {found} shards, and this one would run {shards}. \
                     Queues live on the shard their name hashes to, so the shard count of a data dir cannot change: \
                     start with `--cores {found}` (or `cores = {found}`), or move the data dir away to start empty \
                     (its persistent messages are then not recovered)",
                    data_dir.display()
                ));
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
            write().map_err(|e| format!("cannot write {}: {e}", path.display()))
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
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
        let e = check_shard_count(d.path(), 3).unwrap_err();
        assert!(e.contains("2 shards") && e.contains("--cores 2"), "{e}");
    }
}
