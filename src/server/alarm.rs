//! Resource alarms, as in RabbitMQ: while the broker's accounted memory is
//! over `memory_high_watermark_bytes`, or the free space of the data
//! directory's filesystem is under `disk_free_limit_bytes`, every
//! connection that publishes is blocked (no longer read) until the alarm
//! clears. Consumers, acks and everything else go on, so queues drain.
//!
//! Who does what (one owner per value, no locks on the hot path):
//!
//! - each shard owns its slot in [`Alarms::shard_bytes`]: the bytes it
//!   accounts for (ready and unacked messages in memory, outboxes and read
//!   buffers of its connections), stored whenever a queue settles and by
//!   its tick (`Shard::run_alarm_tick`) every [`CHECK_PERIOD`];
//! - one monitor thread ([`Alarms::spawn_monitor`]) owns the decision:
//!   every [`DECIDE_PERIOD`] it sums the slots, every [`CHECK_PERIOD`] it
//!   also reads the process RSS from `/proc/self/statm` and the free space
//!   with `statvfs`, and it sets
//!   [`Alarms::active`]; it logs one line when an alarm is raised and one
//!   when it clears;
//! - a connection reads `active` (one relaxed load) after a read that
//!   carried a publish, and waits on its shard's tick to hear it cleared.
//!
//! The RSS is a cross-check, not a trigger: glibc keeps freed memory, so
//! an alarm on RSS could stay raised after every queue has drained (and
//! block every publisher for good). It is reported next to the accounted
//! figure, and a warning is logged when it grows past the watermark while
//! the accounted memory does not.

use super::config::Config;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the monitor reads the process RSS and the free disk space,
/// and each shard sums its connections' buffers.
pub const CHECK_PERIOD: Duration = Duration::from_millis(100);
/// How often the monitor decides, and shards look for a cleared alarm:
/// summing the shards' slots is a few loads, and a publisher at 1 GB/s
/// adds 10 MB past the watermark per period before it is stopped.
pub const DECIDE_PERIOD: Duration = Duration::from_millis(10);
/// Decisions per check of RSS and disk.
#[allow(clippy::cast_possible_truncation)] // a small constant ratio (no const try_from)
const DECISIONS_PER_CHECK: u32 = (CHECK_PERIOD.as_millis() / DECIDE_PERIOD.as_millis()) as u32;

/// `memory_high_watermark_bytes` when unset: this share of the memory the
/// process may use (physical RAM, or a lower cgroup limit), as RabbitMQ's
/// default relative watermark of 0.4.
pub const DEFAULT_WATERMARK_RATIO: f64 = 0.4;

/// Bits of [`Alarms::active`].
pub const MEMORY: u8 = 1;
pub const DISK: u8 = 2;

/// A shard's slot on its own cache line: the monitor reads them all, each
/// shard writes only its own.
#[repr(align(128))]
#[derive(Default)]
struct Slot(AtomicU64);

/// The alarm state every shard shares (`Arc`, atomics only).
pub struct Alarms {
    active: AtomicU8,
    shard_bytes: Box<[Slot]>,
    memory_limit: AtomicU64,
    disk_limit: AtomicU64,
    /// The monitor's last readings, for metrics, the API and `ctl`.
    accounted: AtomicU64,
    rss: AtomicU64,
    rss_baseline: AtomicU64,
    disk_free: AtomicU64,
    /// How the watermark was chosen, for the start-up log line.
    memory_source: String,
    data_dir: PathBuf,
}

/// What the monitor last saw, as operators are shown it.
#[derive(Debug, Clone, Serialize)]
pub struct AlarmSnapshot {
    pub memory_alarm: bool,
    pub disk_alarm: bool,
    /// The sum of the shards' accounted bytes.
    pub memory_accounted_bytes: u64,
    pub memory_high_watermark_bytes: u64,
    /// Resident set of the whole process, and what it was once the shards
    /// had started (the cross-check).
    pub rss_bytes: u64,
    pub rss_baseline_bytes: u64,
    pub disk_free_bytes: u64,
    pub disk_free_limit_bytes: u64,
    pub data_dir: String,
}

impl AlarmSnapshot {
    /// The alarms in effect, by RabbitMQ's resource names.
    pub fn in_effect(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.memory_alarm {
            v.push("memory");
        }
        if self.disk_alarm {
            v.push("disk");
        }
        v
    }
}

impl Alarms {
    /// Resolves the watermark (an unset one from the memory available).
    pub fn new(config: &Config, shards: usize) -> Arc<Alarms> {
        let (limit, source) = match config.memory_high_watermark_bytes {
            Some(v) => (v, "memory_high_watermark_bytes".to_string()),
            None => {
                let (total, from) = memory_available();
                // A float's `as` saturates; the ratio is below 1.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let v = ((total as f64) * DEFAULT_WATERMARK_RATIO) as u64;
                (v.max(MIN_WATERMARK_BYTES), format!("0.4 of {total} bytes ({from})"))
            }
        };
        Arc::new(Alarms {
            active: AtomicU8::new(0),
            shard_bytes: (0..shards).map(|_| Slot::default()).collect(),
            memory_limit: AtomicU64::new(limit),
            disk_limit: AtomicU64::new(config.disk_free_limit_bytes),
            accounted: AtomicU64::new(0),
            rss: AtomicU64::new(0),
            rss_baseline: AtomicU64::new(0),
            disk_free: AtomicU64::new(u64::MAX),
            memory_source: source,
            data_dir: config.data_dir.clone(),
        })
    }

    /// The alarms in effect (`MEMORY | DISK` bits); 0 when none is.
    #[inline]
    pub fn active(&self) -> u8 {
        self.active.load(Ordering::Relaxed)
    }

    /// Shard `shard`'s accounted bytes, stored by that shard alone.
    #[inline]
    pub fn set_shard_bytes(&self, shard: u16, bytes: u64) {
        if let Some(s) = self.shard_bytes.get(usize::from(shard)) {
            s.0.store(bytes, Ordering::Relaxed);
        }
    }

    /// `ringmq ctl set-memory-high-watermark`: takes effect at the next check.
    pub fn set_memory_limit(&self, bytes: u64) {
        self.memory_limit.store(bytes, Ordering::Relaxed);
    }

    /// `ringmq ctl set-disk-free-limit`: takes effect at the next check.
    pub fn set_disk_limit(&self, bytes: u64) {
        self.disk_limit.store(bytes, Ordering::Relaxed);
    }

    /// Why publishers are blocked, for connection.blocked and `Blocked`.
    pub fn reason(&self) -> String {
        let a = self.active();
        let mut parts = Vec::new();
        if a & MEMORY != 0 {
            parts.push(format!(
                "memory alarm: {} bytes in use, memory_high_watermark_bytes is {}",
                self.accounted.load(Ordering::Relaxed),
                self.memory_limit.load(Ordering::Relaxed)
            ));
        }
        if a & DISK != 0 {
            parts.push(format!(
                "disk alarm: {} bytes free, disk_free_limit_bytes is {}",
                self.disk_free.load(Ordering::Relaxed),
                self.disk_limit.load(Ordering::Relaxed)
            ));
        }
        if parts.is_empty() {
            return "no alarm".into();
        }
        parts.join("; ")
    }

    pub fn snapshot(&self) -> AlarmSnapshot {
        let a = self.active();
        AlarmSnapshot {
            memory_alarm: a & MEMORY != 0,
            disk_alarm: a & DISK != 0,
            memory_accounted_bytes: self.accounted.load(Ordering::Relaxed),
            memory_high_watermark_bytes: self.memory_limit.load(Ordering::Relaxed),
            rss_bytes: self.rss.load(Ordering::Relaxed),
            rss_baseline_bytes: self.rss_baseline.load(Ordering::Relaxed),
            disk_free_bytes: self.disk_free.load(Ordering::Relaxed),
            disk_free_limit_bytes: self.disk_limit.load(Ordering::Relaxed),
            data_dir: self.data_dir.display().to_string(),
        }
    }

    /// Starts the monitor thread; it ends once `stop` is set.
    pub fn spawn_monitor(self: &Arc<Self>, stop: Arc<AtomicBool>) -> std::io::Result<std::thread::JoinHandle<()>> {
        let me = self.clone();
        tracing::info!(
            memory_high_watermark_bytes = me.memory_limit.load(Ordering::Relaxed),
            disk_free_limit_bytes = me.disk_limit.load(Ordering::Relaxed),
            "resource alarms: memory watermark from {}; disk free space of {}",
            me.memory_source,
            me.data_dir.display()
        );
        let baseline = rss_bytes().unwrap_or(0);
        me.rss_baseline.store(baseline, Ordering::Relaxed);
        std::thread::Builder::new().name("ringmq-alarms".into()).spawn(move || {
            let mut m = Monitor::default();
            let mut until_sample = 0u32;
            while !stop.load(Ordering::SeqCst) {
                if until_sample == 0 {
                    me.sample(&mut m);
                    until_sample = DECISIONS_PER_CHECK;
                }
                until_sample -= 1;
                me.decide(&m);
                std::thread::sleep(DECIDE_PERIOD);
            }
        })
    }

    /// One round of the monitor: sample, decide.
    #[cfg(test)]
    fn check(&self, m: &mut Monitor) {
        self.sample(m);
        self.decide(m);
    }

    /// Reads the RSS and the free disk space (statvfs); cross-checks the
    /// RSS against the accounted memory.
    fn sample(&self, m: &mut Monitor) {
        let rss = rss_bytes().unwrap_or(0);
        self.rss.store(rss, Ordering::Relaxed);
        match disk_free_bytes(&self.data_dir) {
            Ok(f) => {
                m.disk_error_logged = false;
                m.disk_known = true;
                self.disk_free.store(f, Ordering::Relaxed);
            }
            Err(e) => {
                if !m.disk_error_logged {
                    tracing::warn!(path = %self.data_dir.display(), error = %e, "statvfs failed; the disk alarm keeps its state");
                    m.disk_error_logged = true;
                }
                m.disk_known = false;
            }
        }
        let accounted = self.accounted.load(Ordering::Relaxed);
        self.cross_check(m, rss, accounted, self.memory_limit.load(Ordering::Relaxed));
    }

    /// Sums the shards' slots, compares with the limits, and logs what
    /// changed.
    fn decide(&self, m: &Monitor) {
        let accounted: u64 = self.shard_bytes.iter().map(|s| s.0.load(Ordering::Relaxed)).sum();
        self.accounted.store(accounted, Ordering::Relaxed);
        let free = self.disk_free.load(Ordering::Relaxed);
        let mem_limit = self.memory_limit.load(Ordering::Relaxed);
        let disk_limit = self.disk_limit.load(Ordering::Relaxed);
        let was = self.active();
        let mut now = 0;
        if accounted > mem_limit {
            now |= MEMORY;
        }
        let disk_low = if m.disk_known { free < disk_limit } else { was & DISK != 0 };
        if disk_low {
            now |= DISK;
        }
        if now != was {
            self.active.store(now, Ordering::Relaxed);
            log_changes(was, now, accounted, mem_limit, free, disk_limit);
        }
    }

    /// Warns (once until it falls back) when the process grew by more than
    /// the watermark since start while the accounted memory stayed under
    /// it: memory the alarm does not see.
    fn cross_check(&self, m: &mut Monitor, rss: u64, accounted: u64, limit: u64) {
        if rss == 0 {
            return;
        }
        let grown = rss.saturating_sub(self.rss_baseline.load(Ordering::Relaxed));
        let unseen = grown > limit && accounted <= limit;
        if unseen && !m.rss_warned {
            tracing::warn!(
                rss_bytes = rss,
                accounted_bytes = accounted,
                memory_high_watermark_bytes = limit,
                "the process RSS grew by more than the memory watermark since start, but the accounted memory did not \
                 (allocator caches, or memory the accounting does not cover); the memory alarm is not raised"
            );
        }
        m.rss_warned = unseen || (m.rss_warned && grown > limit);
    }
}

/// The smallest watermark: below this the broker could not hold one
/// connection's buffers.
pub const MIN_WATERMARK_BYTES: u64 = 1 << 20;

/// The monitor thread's own state.
#[derive(Default)]
struct Monitor {
    /// The last statvfs worked (`disk_free` is current).
    disk_known: bool,
    disk_error_logged: bool,
    rss_warned: bool,
}

fn log_changes(was: u8, now: u8, accounted: u64, mem_limit: u64, free: u64, disk_limit: u64) {
    let raised = now & !was;
    let cleared = was & !now;
    if raised & MEMORY != 0 {
        tracing::warn!(
            accounted_bytes = accounted,
            memory_high_watermark_bytes = mem_limit,
            "memory alarm raised: publishing connections are blocked until memory falls under the watermark"
        );
    }
    if cleared & MEMORY != 0 {
        tracing::info!(accounted_bytes = accounted, memory_high_watermark_bytes = mem_limit, "memory alarm cleared");
    }
    if raised & DISK != 0 {
        tracing::warn!(
            disk_free_bytes = free,
            disk_free_limit_bytes = disk_limit,
            "disk alarm raised: publishing connections are blocked until free space is over the limit"
        );
    }
    if cleared & DISK != 0 {
        tracing::info!(disk_free_bytes = free, disk_free_limit_bytes = disk_limit, "disk alarm cleared");
    }
}

/// Resident bytes of this process, from `/proc/self/statm` (its second
/// field, in pages).
pub fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages.saturating_mul(page_bytes()))
}

fn page_bytes() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(p).ok().filter(|p| *p > 0).unwrap_or(4096)
}

/// Bytes an unprivileged writer may still use on `path`'s filesystem.
pub fn disk_free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path has a NUL byte"))?;
    // SAFETY: `statvfs` is plain old data; zeroed is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid out pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // 32-bit fields on some targets.
    #[allow(clippy::useless_conversion)]
    let (blocks, size) = (u64::from(st.f_bavail), u64::from(st.f_frsize));
    Ok(blocks.saturating_mul(size))
}

/// The memory this process may use: physical RAM, or the cgroup's limit
/// when that is lower (a container). Returns the bytes and where they came
/// from.
pub fn memory_available() -> (u64, &'static str) {
    // SAFETY: sysconf has no preconditions.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    let ram = u64::try_from(pages).unwrap_or(0).saturating_mul(page_bytes());
    match cgroup_limit() {
        Some(c) if c < ram || ram == 0 => (c, "the cgroup memory limit"),
        _ => (ram, "physical memory"),
    }
}

/// cgroup v2 `memory.max` of this process's cgroup, or v1's
/// `memory.limit_in_bytes`; `None` when unlimited or unknown.
fn cgroup_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("0::").map(|p| p.trim().to_string())));
    let mut paths = Vec::new();
    if let Some(p) = own {
        paths.push(format!("/sys/fs/cgroup{}/memory.max", p.trim_end_matches('/')));
    }
    paths.push("/sys/fs/cgroup/memory.max".into());
    paths.push("/sys/fs/cgroup/memory/memory.limit_in_bytes".into());
    paths.iter().find_map(|p| {
        let v = std::fs::read_to_string(p).ok()?;
        // "max" (v2) or a huge number (v1's unlimited) mean no limit.
        v.trim().parse::<u64>().ok().filter(|v| *v < 1 << 60)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_plausible() {
        let rss = rss_bytes().expect("statm");
        assert!(rss > 1 << 20, "a test process holds more than 1 MiB: {rss}");
        let free = disk_free_bytes(Path::new("/")).expect("statvfs /");
        assert!(free > 0);
        assert!(disk_free_bytes(Path::new("/no/such/dir/here")).is_err());
        let (total, _) = memory_available();
        assert!(total > 16 << 20, "{total}");
    }

    #[test]
    fn the_monitor_decides_from_the_slots_and_the_limits() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            memory_high_watermark_bytes: Some(10 << 20),
            disk_free_limit_bytes: 0,
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let a = Alarms::new(&config, 2);
        let mut m = Monitor::default();
        a.check(&mut m);
        assert_eq!(a.active(), 0);
        a.set_shard_bytes(0, 6 << 20);
        a.set_shard_bytes(1, 5 << 20);
        a.check(&mut m);
        assert_eq!(a.active(), MEMORY, "11 MiB over a 10 MiB watermark");
        assert!(a.reason().contains("memory alarm"), "{}", a.reason());
        a.set_disk_limit(u64::MAX);
        a.check(&mut m);
        assert_eq!(a.active(), MEMORY | DISK);
        a.set_shard_bytes(1, 0);
        a.set_disk_limit(0);
        a.check(&mut m);
        assert_eq!(a.active(), 0);
        let s = a.snapshot();
        assert_eq!(s.memory_accounted_bytes, 6 << 20);
        assert!(s.in_effect().is_empty());
    }
}
