//! The usual Prometheus process series (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, `process_max_fds`,
//! `process_start_time_seconds`), read from `/proc/self` at scrape time:
//! no dependency, nothing kept between scrapes. A figure that cannot be
//! read (no procfs) is left out of the exposition rather than shown as 0.

use std::fmt::Write;

/// One reading of this process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time.
    pub cpu_seconds: Option<f64>,
    /// Since the Unix epoch.
    pub start_time_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    /// Open file descriptors: sockets, log segments, the rest.
    pub open_fds: Option<u64>,
    /// The soft limit on them (`RLIMIT_NOFILE`).
    pub max_fds: Option<u64>,
}

/// `/proc/self/stat` is one line of a few hundred bytes; a procfs file
/// larger than this is not what we expect.
const PROC_FILE_BYTES_MAX: usize = 4096;

fn read_small(path: &str) -> Option<String> {
    use std::io::Read;
    let mut s = String::new();
    let f = std::fs::File::open(path).ok()?;
    f.take(PROC_FILE_BYTES_MAX as u64).read_to_string(&mut s).ok()?;
    Some(s)
}

impl ProcessStats {
    /// Reads them now. Counting the open descriptors lists
    /// `/proc/self/fd`: as many entries as the process has descriptors
    /// (bounded by `max_fds`), a directory listing and no other I/O.
    pub fn read() -> Self {
        let ticks = clock_ticks_per_second();
        let stat = read_small("/proc/self/stat").and_then(|s| parse_stat(&s));
        let btime = read_boot_time();
        let page = page_bytes();
        ProcessStats {
            cpu_seconds: stat.zip(ticks).map(|((u, s, _), t)| (u + s) as f64 / t as f64),
            start_time_seconds: stat
                .zip(ticks)
                .zip(btime)
                .map(|(((_, _, start), t), boot)| boot as f64 + start as f64 / t as f64),
            resident_bytes: read_small("/proc/self/statm")
                .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
                .zip(page)
                .map(|(pages, p)| pages.saturating_mul(p)),
            open_fds: std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64),
            max_fds: max_fds(),
        }
    }

    /// The exposition of the figures that could be read.
    pub fn prometheus(&self) -> String {
        let mut o = String::with_capacity(1024);
        let series: [(&str, &str, &str, Option<f64>); 5] = [
            (
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                self.cpu_seconds,
            ),
            (
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                self.start_time_seconds,
            ),
            (
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                self.resident_bytes.map(|v| v as f64),
            ),
            ("process_open_fds", "gauge", "Number of open file descriptors.", self.open_fds.map(|v| v as f64)),
            ("process_max_fds", "gauge", "Maximum number of open file descriptors.", self.max_fds.map(|v| v as f64)),
        ];
        for (name, kind, help, v) in series {
            if let Some(v) = v {
                let _ = write!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n");
            }
        }
        o
    }
}

/// utime, stime and starttime (clock ticks) from `/proc/self/stat`. The
/// command name (field 2) is in parentheses and may hold spaces or
/// parentheses itself: the fields are counted from the last `)`.
fn parse_stat(s: &str) -> Option<(u64, u64, u64)> {
    let rest = &s[s.rfind(')')? + 1..];
    // `rest` starts at field 3 (state): utime is field 14, stime 15,
    // starttime 22.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some((field(14)?, field(15)?, field(22)?))
}

/// `btime` of `/proc/stat`: boot time, seconds since the epoch. The file
/// lists every CPU first, so it is read line by line up to that one.
fn read_boot_time() -> Option<u64> {
    use std::io::BufRead;
    let f = std::fs::File::open("/proc/stat").ok()?;
    // A few lines per CPU; bounded so that a strange procfs cannot make
    // the scrape read without end.
    for line in std::io::BufReader::new(f).lines().take(4096) {
        let line = line.ok()?;
        if let Some(v) = line.strip_prefix("btime ") {
            return v.trim().parse().ok();
        }
    }
    None
}

fn clock_ticks_per_second() -> Option<u64> {
    // SAFETY: sysconf reads a constant of the C library.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|t| *t > 0)
}

fn page_bytes() -> Option<u64> {
    // SAFETY: as above.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(p).ok().filter(|p| *p > 0)
}

fn max_fds() -> Option<u64> {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes the struct it is given, which lives here.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return None;
    }
    Some(r.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with a space and a `)` in it.
        let line = "1234 (ring mq) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 9876 1000 100";
        assert_eq!(parse_stat(line), Some((250, 75, 9876)));
        assert_eq!(parse_stat("no parenthesis"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn this_process_reads() {
        let p = ProcessStats::read();
        assert!(p.cpu_seconds.is_some_and(|c| c >= 0.0));
        assert!(p.resident_bytes.is_some_and(|r| r > 0));
        assert!(p.open_fds.is_some_and(|n| n >= 1));
        assert!(p.max_fds.is_some_and(|m| m >= p.open_fds.unwrap_or(0)));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64());
        let start = p.start_time_seconds.unwrap_or(0.0);
        assert!(now.is_ok_and(|n| start > n - 86400.0 * 365.0 && start <= n + 1.0), "start {start}");
        let text = p.prometheus();
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"));
        assert!(text.contains("\nprocess_open_fds "));
    }
}
