//! `load_definitions`: the file is imported by shard 0 once every shard
//! is ready and before the broker reports ready (`Broker::start_with`
//! waits for the answer; a refusal stops the start with its reason).

use crate::server::shard::Shard;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// How long the start waits for the import (each of its requests has its
/// own 10 s bound; this bounds the whole).
pub const BOOT_WAIT: Duration = Duration::from_secs(300);

/// Shard 0's side: the signal that every shard is ready, and where the
/// outcome goes.
pub struct Boot {
    pub go: Arc<AtomicBool>,
    pub done: mpsc::Sender<Result<String, String>>,
}

/// Both sides of a boot import: the start keeps `go` and the receiver.
pub fn channel() -> (Boot, Arc<AtomicBool>, mpsc::Receiver<Result<String, String>>) {
    let go = Arc::new(AtomicBool::new(false));
    let (done, rx) = mpsc::channel();
    (Boot { go: go.clone(), done }, go, rx)
}

/// Shard 0's task: waits for the signal (or the broker's stop), imports
/// the file, reports.
pub async fn run(shard: Rc<Shard>, boot: Boot, stop: Arc<AtomicBool>) {
    while !boot.go.load(Ordering::SeqCst) {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    let Some(path) = shard.config.load_definitions.clone() else { return };
    let outcome = match super::read_file(&path, &shard.config) {
        Ok(d) => super::import(&shard, d).await.map_err(|e| e.to_string()).map(|done| {
            format!(
                "{}: {} vhosts, {} users, {} permissions, {} exchanges, {} queues, {} bindings",
                path.display(),
                done.vhosts,
                done.users,
                done.permissions,
                done.exchanges,
                done.queues,
                done.bindings
            )
        }),
        Err(e) => Err(e),
    };
    match &outcome {
        Ok(what) => tracing::info!("load_definitions imported {what}"),
        Err(e) => tracing::error!("load_definitions: {e}"),
    }
    let _ = boot.done.send(outcome.map_err(|e| format!("load_definitions {}: {e}", path.display())));
}
