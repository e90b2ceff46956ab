//! Workers whose executor stops running, seen and woken.
//!
//! Rarely, on a busy machine, a worker's glommio executor parks in
//! `io_uring_enter` and does not wake for a completion or a timer that
//! is due: its consumer stops reading (deliveries pile up unread in its
//! socket), and the run reports the broker's messages as lost. A
//! `kill -9`'d run kept by `benches/amqp_soak.sh` showed it: the consumer's
//! socket held 103 KB unread, both worker threads sat in
//! `io_cqring_wait` for minutes, and attaching a debugger (which
//! interrupts the wait) let the run end. Such a run measures the
//! generator, not the broker.
//!
//! Each worker beats every 200 ms (its interval hand-over); the main
//! thread checks the beats, and a worker silent for [`STALL_NS`] is
//! counted, reported, and sent `SIGURG` (a no-op handler installed
//! without `SA_RESTART`), which ends the wait with `EINTR`: glommio then
//! runs its timers and reaps its rings again. The run's summary carries
//! the count and the longest stall, so a stalled run is never mistaken
//! for a slow or lossy broker.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// A worker silent this long has stalled: its beat is every 200 ms.
pub const STALL_NS: u64 = 1_000_000_000;

/// One worker as the main thread watches it.
#[derive(Default)]
pub struct Beat {
    /// When the worker last beat (ns, the generator's clock); 0 before
    /// its first beat.
    last: AtomicU64,
    /// Its thread, for the wake-up signal (0: not started).
    thread: AtomicU64,
    /// The worker ended: silence is expected.
    done: AtomicBool,
    /// Whether the current silence was counted already.
    counted: AtomicBool,
}

impl Beat {
    /// Called on the worker's own thread when it starts.
    pub fn start(&self, now: u64) {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        self.thread.store(me as u64, Relaxed);
        self.last.store(now, Relaxed);
    }

    pub fn beat(&self, now: u64) {
        self.last.store(now, Relaxed);
    }

    pub fn finish(&self) {
        self.done.store(true, Relaxed);
    }
}

/// What the watch found over a run.
#[derive(Default)]
pub struct Stalls {
    pub count: AtomicU64,
    pub longest_ns: AtomicU64,
}

impl Stalls {
    /// Checks every worker's beat at `now`: a new stall is counted and
    /// logged; a stalled worker is sent the wake-up signal at every check
    /// until it beats again. Returns how many are stalled now.
    pub fn check(&self, beats: &[Beat], now: u64) -> usize {
        let mut stalled = 0;
        for (wi, b) in beats.iter().enumerate() {
            let last = b.last.load(Relaxed);
            if b.done.load(Relaxed) || last == 0 {
                continue;
            }
            let silent = now.saturating_sub(last);
            if silent < STALL_NS {
                b.counted.store(false, Relaxed);
                continue;
            }
            stalled += 1;
            self.longest_ns.fetch_max(silent, Relaxed);
            if !b.counted.swap(true, Relaxed) {
                self.count.fetch_add(1, Relaxed);
                eprintln!(
                    "loadgen: worker {wi} has not run for {} ms (its executor missed a wake-up); waking it",
                    silent / 1_000_000
                );
            }
            wake(b.thread.load(Relaxed));
        }
        stalled
    }
}

extern "C" fn on_wake(_: libc::c_int) {}

/// Installs the wake-up signal's handler, once per process, without
/// `SA_RESTART` (so a wait it interrupts returns `EINTR`).
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction with a handler that does nothing
        // (async-signal-safe) and an empty mask.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_wake as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            libc::sigaction(libc::SIGURG, &sa, std::ptr::null_mut());
        }
    });
}

fn wake(thread: u64) {
    if thread == 0 {
        return;
    }
    // SAFETY: the id came from pthread_self on a worker thread that is
    // still running (it has not finished: checked by the caller).
    unsafe {
        libc::pthread_kill(thread as libc::pthread_t, libc::SIGURG);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::sync::Arc;

    #[test]
    fn a_silent_worker_is_counted_once_per_silence_and_a_done_one_never() {
        let beats: Vec<Beat> = (0..3).map(|_| Beat::default()).collect();
        let s = Stalls::default();
        beats[0].last.store(1, Relaxed);
        beats[1].last.store(1, Relaxed);
        beats[1].finish();
        // Worker 2 never started: not watched.
        assert_eq!(s.check(&beats, 1 + STALL_NS / 2), 0);
        assert_eq!(s.check(&beats, 1 + STALL_NS), 1);
        assert_eq!(s.check(&beats, 1 + 2 * STALL_NS), 1, "still the same stall");
        assert_eq!(s.count.load(Relaxed), 1);
        assert_eq!(s.longest_ns.load(Relaxed), 2 * STALL_NS);
        beats[0].beat(3 * STALL_NS);
        assert_eq!(s.check(&beats, 3 * STALL_NS + 1), 0);
        assert_eq!(s.check(&beats, 5 * STALL_NS), 1, "a second silence");
        assert_eq!(s.count.load(Relaxed), 2);
    }

    #[test]
    fn the_wake_up_signal_ends_a_thread_s_blocking_wait() {
        install();
        let (r, w) = std::os::unix::net::UnixStream::pair().unwrap();
        let beat = Arc::new(Beat::default());
        let b = beat.clone();
        let waiter = std::thread::spawn(move || {
            b.start(1);
            let mut buf = [0u8; 1];
            // A read nothing will answer: only a signal ends it.
            // SAFETY: a valid fd and buffer.
            let n = unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), 1) };
            (n, std::io::Error::last_os_error().raw_os_error())
        });
        while beat.thread.load(Relaxed) == 0 {
            std::thread::yield_now();
        }
        // A signal that lands before the read starts is spent: keep
        // waking until the read has returned (bounded).
        let stalls = Stalls::default();
        for _ in 0..500 {
            if waiter.is_finished() {
                break;
            }
            assert_eq!(stalls.check(std::slice::from_ref(&*beat), 1 + STALL_NS), 1);
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(stalls.count.load(Relaxed), 1, "one silence, counted once");
        let (n, errno) = waiter.join().unwrap();
        assert_eq!((n, errno), (-1, Some(libc::EINTR)));
        drop(w);
    }
}
