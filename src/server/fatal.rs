//! A shard that dies must not leave a process that looks healthy: one
//! dead shard means its queues, connections and log are gone while the
//! other shards keep accepting. So:
//!
//! - `ringmq serve` installs [`exit_on_panic`]: a panic in any thread is
//!   logged and ends the process with [`EXIT_PANIC`], so a supervisor
//!   restarts it (recovery replays the log as after a crash);
//! - every shard thread reports its end ([`EndGuard`]), and
//!   `Broker::wait` hands `serve` a shard that ended before it was asked
//!   to stop (`serve` then stops the others and exits non-zero);
//! - `Broker::stop` returns every shard that panicked or ended with an
//!   error ([`ShardFailures`]), so a library user (the tests) sees it.

use std::any::Any;
use std::fmt;
use std::sync::mpsc;

/// The exit status of `ringmq serve` after a panic or a shard's failure
/// (EX_SOFTWARE from sysexits.h: an internal software error).
pub const EXIT_PANIC: u8 = 70;

/// One shard thread that ended badly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardFailure {
    pub shard: usize,
    /// What happened: the panic's message, or the shard's error.
    pub why: String,
}

/// Every shard thread that ended badly, in shard order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ShardFailures(pub Vec<ShardFailure>);

impl fmt::Display for ShardFailures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "shard {}: {}", s.shard, s.why)?;
        }
        Ok(())
    }
}

/// The text of a panic's payload (what `panic!` was given).
pub fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_owned()
    }
}

/// Why a shard's life ended badly, as its thread returns it.
#[derive(Debug, thiserror::Error)]
pub enum ShardEnd {
    #[error("could not join the shard mesh")]
    MeshJoin,
    #[error("mesh peer order does not match shard order (peer {0})")]
    MeshOrder(usize),
    #[error("storage recovery failed: {0}")]
    Recovery(crate::storage::StorageError),
    #[error("the stored definitions could not be loaded: {0}")]
    Definitions(crate::storage::StorageError),
    #[error("storage did not close within {0:?} (a hung device?)")]
    CloseTimeout(std::time::Duration),
    #[error("the cluster member could not start: {0}")]
    Cluster(String),
    #[error("a task queue refused a task: {0}")]
    TaskQueue(String),
}

/// What a shard thread's join gave, as a failure (None: it ended well).
pub fn failure_of(shard: usize, joined: glommio::Result<Result<(), ShardEnd>, ()>) -> Option<ShardFailure> {
    let why = match joined {
        Ok(Ok(())) => return None,
        Ok(Err(e)) => e.to_string(),
        Err(glommio::GlommioError::BuilderError(glommio::BuilderErrorKind::ThreadPanic(p))) => {
            format!("panicked: {}", panic_message(&*p))
        }
        Err(e) => format!("executor error: {e}"),
    };
    Some(ShardFailure { shard, why })
}

/// Sends its shard's id when dropped: when the shard's future ends,
/// returned or unwound by a panic.
pub struct EndGuard {
    pub shard: usize,
    pub tx: mpsc::Sender<usize>,
}

impl Drop for EndGuard {
    fn drop(&mut self) {
        let _ = self.tx.send(self.shard);
    }
}

/// Makes a panic in any thread of this process log an error and end the
/// process with status [`EXIT_PANIC`] (after the default hook has printed
/// the panic and, with RUST_BACKTRACE, its backtrace). Unwinding one
/// thread would leave the others serving without it. For binaries: a
/// library must not decide this for its host.
pub fn exit_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let thread = std::thread::current().name().unwrap_or("unnamed").to_owned();
        tracing::error!(thread, panic = %info, "a thread panicked: the process exits so that a supervisor restarts it");
        std::process::exit(i32::from(EXIT_PANIC));
    }));
}
