//! Process-level setup: the locked-memory limit io_uring needs, and a
//! check that io_uring may be used at all.

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

/// Checks that this process may create an io_uring, before any shard
/// tries to: a ring refused for a reason glommio does not expect (a
/// seccomp profile, `kernel.io_uring_disabled`) otherwise ends in a panic
/// inside glommio that blames an old kernel. One ring of one entry is
/// set up and closed at once. A refusal for lack of memory passes here:
/// the shard's own start reports it with the locked-memory hint.
pub fn probe_io_uring() -> Result<(), String> {
    // struct io_uring_params: 120 bytes, which the kernel fills in.
    let mut params = [0u32; 30];
    // SAFETY: io_uring_setup(entries, params) reads and writes the 120
    // bytes of `params`, which live here; the fd it returns is ours and
    // closed at once.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd >= 0 {
        // A descriptor is a c_int; one that does not fit cannot come back.
        if let Ok(fd) = libc::c_int::try_from(fd) {
            // SAFETY: `fd` was just returned to us and nothing else holds it.
            unsafe { libc::close(fd) };
        }
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    match io_uring_refusal(err.raw_os_error().unwrap_or(0)) {
        Some(why) => Err(format!("io_uring_setup failed ({err}): {why}")),
        None => Ok(()),
    }
}

/// Why io_uring_setup's errno means the broker cannot run; `None` for the
/// errors the shard's start explains better (memory) or that a second
/// try may not see.
fn io_uring_refusal(errno: i32) -> Option<&'static str> {
    match errno {
        libc::EPERM | libc::EACCES => Some(
            "io_uring is refused to this process: by a seccomp profile (Docker 25 and later and containerd \
             deny io_uring_setup, io_uring_enter and io_uring_register by default: run the container with \
             --security-opt seccomp=unconfined or a profile that allows them), or by the kernel \
             (sysctl kernel.io_uring_disabled = 2, or 1 for a process outside kernel.io_uring_group)",
        ),
        libc::ENOSYS => Some("this kernel has no io_uring (ringmq needs Linux 5.8 or later, built with io_uring)"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_uring_is_available_here_and_refusals_are_explained() {
        // The test machine runs the broker's own tests on io_uring.
        assert_eq!(probe_io_uring(), Ok(()));
        assert!(io_uring_refusal(libc::EPERM).is_some_and(|w| w.contains("seccomp=unconfined")));
        assert!(io_uring_refusal(libc::ENOSYS).is_some_and(|w| w.contains("5.8")));
        assert_eq!(io_uring_refusal(libc::ENOMEM), None);
    }
}
