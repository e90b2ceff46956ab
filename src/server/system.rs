//! Process-level setup: the locked-memory limit io_uring needs.

/// What became of RLIMIT_MEMLOCK at start, for error hints.
#[derive(Debug, Clone, Copy)]
pub struct Memlock {
    pub soft: u64,
    pub raised: bool,
}

impl Memlock {
    pub fn hint(&self) -> String {
        let limit = if self.soft == libc::RLIM_INFINITY {
            "unlimited".to_string()
        } else {
            format!("{} KiB", self.soft / 1024)
        };
        format!(
            "io_uring needs locked memory (glommio registers about 10 MiB of buffers per shard); RLIMIT_MEMLOCK is {limit}{}. \
             Raise it (`ulimit -l unlimited`, or LimitMEMLOCK=infinity in the systemd unit), run with CAP_IPC_LOCK, \
             or use fewer shards (--cores)",
            if self.raised { "" } else { " and could not be raised" }
        )
    }
}

/// Raises the soft limit to the hard one, and the hard one to unlimited
/// where the process may (root or CAP_SYS_RESOURCE).
pub fn raise_memlock() -> Memlock {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain libc calls with a valid pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) != 0 {
            return Memlock { soft: 0, raised: false };
        }
        let want = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
        if libc::setrlimit(libc::RLIMIT_MEMLOCK, &want) == 0 {
            return Memlock { soft: libc::RLIM_INFINITY, raised: true };
        }
        let soft = libc::rlimit { rlim_cur: r.rlim_max, rlim_max: r.rlim_max };
        if r.rlim_cur < r.rlim_max && libc::setrlimit(libc::RLIMIT_MEMLOCK, &soft) == 0 {
            return Memlock { soft: r.rlim_max, raised: true };
        }
        if has_ipc_lock() {
            tracing::debug!(soft_bytes = r.rlim_cur, "RLIMIT_MEMLOCK not raised; CAP_IPC_LOCK makes it moot");
        } else {
            tracing::warn!(soft_bytes = r.rlim_cur, "could not raise RLIMIT_MEMLOCK; io_uring may fail to start");
        }
        Memlock { soft: r.rlim_cur, raised: false }
    }
}

/// Whether the process holds CAP_IPC_LOCK (locked memory is then unbounded).
fn has_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return false };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}
