//! The open-loop schedule: when each message of a producer is meant to be sent.
//!
//! With `--rate R` and `P` producers, each producer sends `R / P` messages a
//! second; message `i` of producer `p` is due at
//! `start + (i + p / P) * period` with `period = P / R` seconds, so producers
//! are staggered evenly instead of all firing at the same instant. Latency is
//! measured from this intended time, never from the moment the generator got
//! round to sending, so a stall (in the broker, the network or the generator
//! itself) shows up in the histogram instead of being hidden by a closed loop
//! (coordinated omission).

#[derive(Clone, Debug)]
pub struct Schedule {
    start_ns: u64,
    /// Total rate over all producers, messages per second.
    rate: f64,
    producers: u64,
    index: u64,
}

impl Schedule {
    /// `rate` is the total rate over all `producers`; this is producer `index`.
    pub fn new(start_ns: u64, rate: f64, producers: usize, index: usize) -> Schedule {
        assert!(rate > 0.0 && producers > 0);
        Schedule { start_ns, rate, producers: producers as u64, index: index as u64 }
    }

    /// Intended send time of message `seq`, in ns of the monotonic clock.
    pub fn intended(&self, seq: u64) -> u64 {
        // Slot `seq * P + index` of the global schedule; computed from the
        // slot number each time, so rounding never accumulates.
        let slot = (seq * self.producers + self.index) as f64;
        self.start_ns + (slot * 1e9 / self.rate) as u64
    }

    /// How many messages are due at `now_ns` (all `seq < due(now)` are due).
    pub fn due(&self, now_ns: u64) -> u64 {
        if now_ns < self.start_ns {
            return 0;
        }
        let slots = (now_ns - self.start_ns) as f64 * self.rate / 1e9;
        let mine = (slots - self.index as f64) / self.producers as f64;
        let mut n = if mine < 0.0 { 0 } else { mine as u64 + 1 };
        // Float rounding: make `due` exactly consistent with `intended`.
        while n > 0 && self.intended(n - 1) > now_ns {
            n -= 1;
        }
        while self.intended(n) <= now_ns {
            n += 1;
        }
        n
    }

    /// Number of messages whose intended time lies before `end_ns`.
    pub fn count_before(&self, end_ns: u64) -> u64 {
        if end_ns == 0 {
            return 0;
        }
        self.due(end_ns - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intended_times_are_evenly_spaced() {
        // 1000 msg/s over 1 producer: one every ms.
        let s = Schedule::new(1_000, 1000.0, 1, 0);
        assert_eq!(s.intended(0), 1_000);
        assert_eq!(s.intended(1), 1_001_000);
        assert_eq!(s.intended(1000), 1_000_001_000);
    }

    #[test]
    fn producers_are_staggered() {
        // 4000 msg/s over 4 producers: each sends every ms, 250 us apart.
        let s: Vec<Schedule> = (0..4).map(|p| Schedule::new(0, 4000.0, 4, p)).collect();
        assert_eq!(s[0].intended(0), 0);
        assert_eq!(s[1].intended(0), 250_000);
        assert_eq!(s[3].intended(2), 2_750_000);
        // Together: exactly 4000 messages in the first second.
        let total: u64 = s.iter().map(|s| s.count_before(1_000_000_000)).sum();
        assert_eq!(total, 4000);
    }

    #[test]
    fn due_matches_intended() {
        let s = Schedule::new(5_000, 3.0e5 / 7.0, 3, 1);
        for seq in 0..10_000u64 {
            let t = s.intended(seq);
            assert_eq!(s.due(t), seq + 1, "at the intended time of {seq}");
            assert_eq!(s.due(t - 1), seq, "just before {seq}");
        }
        assert_eq!(s.due(0), 0);
    }

    #[test]
    fn no_drift_over_long_runs() {
        // 1/3 ns periods accumulate no error: 3e6 messages in exactly 1 s... at 3 msg/us.
        let s = Schedule::new(0, 3.0e6, 1, 0);
        assert_eq!(s.count_before(1_000_000_000), 3_000_000);
    }
}
