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
//!
//! A variable rate (`--rate A,B,C --step-secs S`, or `--rate-ramp FROM:TO`)
//! is a [`RateProfile`]: the total rate as a piecewise-linear function of
//! time. Slot `k` of the global schedule is due when the integral of the
//! rate from the start reaches `k`; each segment inverts that integral in
//! closed form, so the intended times stay exact (no accumulated rounding)
//! whatever the profile.

use serde::Serialize;

/// The total publish rate over time, from the start of the measured window
/// (during the warmup, producers send at the first rate).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum RateProfile {
    /// `--rate R`: messages a second, all run long.
    Constant(f64),
    /// `--rate A,B,C --step-secs S`: each rate for S seconds, the last
    /// one until the run ends.
    Steps { steps: Vec<f64>, step_s: f64 },
    /// `--rate-ramp FROM:TO`: from FROM to TO linearly over the measured
    /// window (`over_s`, the run's `--duration`).
    Ramp { ramp_from: f64, ramp_to: f64, over_s: f64 },
}

impl RateProfile {
    /// `--rate R`, `--rate A,B,C --step-secs S` or `--rate-ramp FROM:TO`.
    pub fn from_flags(
        rates: &[f64],
        step_secs: Option<f64>,
        ramp: Option<&str>,
        duration_s: f64,
    ) -> anyhow::Result<Option<RateProfile>> {
        use anyhow::bail;
        let profile = match (rates, step_secs, ramp) {
            ([], None, None) => return Ok(None),
            (_, _, Some(r)) => {
                let parsed =
                    r.split_once(':').and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
                let Some((ramp_from, ramp_to)) = parsed else {
                    bail!("--rate-ramp takes FROM:TO in messages a second, e.g. 1000:20000");
                };
                if step_secs.is_some() {
                    bail!("--step-secs goes with several --rate values, not --rate-ramp");
                }
                RateProfile::Ramp { ramp_from, ramp_to, over_s: duration_s }
            }
            ([r], None, None) => RateProfile::Constant(*r),
            ([_, _, ..], None, None) => bail!("several --rate values are steps: give --step-secs too"),
            ([], Some(_), None) => bail!("--step-secs needs --rate A,B,..."),
            (steps, Some(step_s), None) => RateProfile::Steps { steps: steps.to_vec(), step_s },
        };
        profile.check().map_err(|e| anyhow::anyhow!("--rate: {e}"))?;
        Ok(Some(profile))
    }

    /// Whether every rate is positive and finite, and the times are.
    pub fn check(&self) -> Result<(), String> {
        let ok = |r: f64| r.is_finite() && r > 0.0;
        match self {
            RateProfile::Constant(r) if ok(*r) => Ok(()),
            RateProfile::Steps { steps, step_s }
                if !steps.is_empty() && steps.iter().all(|r| ok(*r)) && ok(*step_s) =>
            {
                Ok(())
            }
            RateProfile::Ramp { ramp_from, ramp_to, over_s } if ok(*ramp_from) && ok(*ramp_to) && ok(*over_s) => Ok(()),
            _ => Err("rates must be positive (and --step-secs too)".into()),
        }
    }

    /// The first rate (the warmup's).
    pub fn first(&self) -> f64 {
        match self {
            RateProfile::Constant(r) => *r,
            RateProfile::Steps { steps, .. } => steps.first().copied().unwrap_or(1.0),
            RateProfile::Ramp { ramp_from, .. } => *ramp_from,
        }
    }

    /// Short text for the run's label: `5000 msg/s`, `1000,5000 msg/s
    /// steps of 10 s`, `ramp 1000..20000 msg/s`.
    pub fn describe(&self) -> String {
        match self {
            RateProfile::Constant(r) => format!("{r} msg/s"),
            RateProfile::Steps { steps, step_s } => {
                let list: Vec<String> = steps.iter().map(|r| r.to_string()).collect();
                format!("{} msg/s steps of {step_s} s", list.join(","))
            }
            RateProfile::Ramp { ramp_from, ramp_to, .. } => format!("ramp {ramp_from}..{ramp_to} msg/s"),
        }
    }

    /// The profile as segments from `t0` (warmup included): (start ns
    /// from t0, length ns or `None` for the last, rate at start, at end).
    fn segments(&self, warmup_ns: f64) -> Vec<Segment> {
        let mut out = Vec::new();
        let mut at = 0.0;
        let mut push = |len: Option<f64>, a: f64, b: f64| {
            if len.is_some_and(|l| l <= 0.0) {
                return;
            }
            out.push(Segment { start_ns: at, len_ns: len, from: a, to: b, slots_before: 0.0 });
            at += len.unwrap_or(0.0);
        };
        match self {
            RateProfile::Constant(r) => push(None, *r, *r),
            RateProfile::Steps { steps, step_s } => {
                let first = self.first();
                push(Some(warmup_ns), first, first);
                let (last, rest) = match steps.split_last() {
                    Some((last, rest)) => (*last, rest),
                    None => (first, &[][..]),
                };
                for r in rest {
                    push(Some(step_s * 1e9), *r, *r);
                }
                push(None, last, last);
            }
            RateProfile::Ramp { ramp_from, ramp_to, over_s } => {
                push(Some(warmup_ns), *ramp_from, *ramp_from);
                push(Some(over_s * 1e9), *ramp_from, *ramp_to);
                push(None, *ramp_to, *ramp_to);
            }
        }
        let mut slots = 0.0;
        for s in &mut out {
            s.slots_before = slots;
            slots += s.len_ns.map_or(0.0, |l| s.slots_in(l));
        }
        out
    }
}

/// A stretch of the schedule whose rate goes linearly from `from` to `to`
/// (messages a second).
#[derive(Clone, Debug)]
struct Segment {
    start_ns: f64,
    len_ns: Option<f64>,
    from: f64,
    to: f64,
    /// Slots due before the segment starts.
    slots_before: f64,
}

impl Segment {
    /// The rate's slope in messages a second per ns.
    fn slope(&self) -> f64 {
        match self.len_ns {
            Some(l) if l > 0.0 => (self.to - self.from) / l,
            _ => 0.0,
        }
    }

    /// Slots due in the first `dt` ns of the segment.
    fn slots_in(&self, dt: f64) -> f64 {
        (self.from * dt + self.slope() * dt * dt / 2.0) / 1e9
    }

    /// The ns into the segment at which `k` slots (from its start) are
    /// due: the root of `slots_in(dt) = k`, in the form that is stable
    /// for a zero or negative slope.
    fn time_of(&self, k: f64) -> f64 {
        let a = self.slope() / 2.0;
        if a == 0.0 {
            // A constant rate (every `--rate R` run): no square root.
            return k * 1e9 / self.from;
        }
        let disc = (self.from * self.from + 4.0 * a * k * 1e9).max(0.0);
        2.0 * k * 1e9 / (self.from + disc.sqrt())
    }
}

#[derive(Clone, Debug)]
pub struct Schedule {
    start_ns: u64,
    segments: Vec<Segment>,
    producers: u64,
    index: u64,
}

impl Schedule {
    /// `rate` is the total rate over all `producers`; this is producer `index`.
    #[cfg(test)]
    pub fn new(start_ns: u64, rate: f64, producers: usize, index: usize) -> Schedule {
        Schedule::with_profile(start_ns, 0.0, &RateProfile::Constant(rate), producers, index)
    }

    /// A schedule that follows `profile` from `start_ns + warmup_s`, and
    /// its first rate before that.
    pub fn with_profile(
        start_ns: u64,
        warmup_s: f64,
        profile: &RateProfile,
        producers: usize,
        index: usize,
    ) -> Schedule {
        assert!(profile.check().is_ok() && producers > 0);
        let segments = profile.segments(warmup_s * 1e9);
        Schedule { start_ns, segments, producers: producers as u64, index: index as u64 }
    }

    /// The segment slot `k` falls in (the segments are few: a scan).
    fn segment_of_slot(&self, k: f64) -> &Segment {
        let i = self.segments.partition_point(|s| s.slots_before <= k);
        &self.segments[i.saturating_sub(1)]
    }

    fn segment_at(&self, dt: f64) -> &Segment {
        let i = self.segments.partition_point(|s| s.start_ns <= dt);
        &self.segments[i.saturating_sub(1)]
    }

    /// Intended send time of message `seq`, in ns of the monotonic clock.
    pub fn intended(&self, seq: u64) -> u64 {
        // Slot `seq * P + index` of the global schedule; computed from the
        // slot number each time, so rounding never accumulates.
        let slot = (seq * self.producers + self.index) as f64;
        let s = self.segment_of_slot(slot);
        self.start_ns + (s.start_ns + s.time_of(slot - s.slots_before)) as u64
    }

    /// Slots of the global schedule due `dt` ns after the start (fractional).
    fn slots_at(&self, dt: f64) -> f64 {
        let s = self.segment_at(dt);
        s.slots_before + s.slots_in(dt - s.start_ns)
    }

    /// How many messages are due at `now_ns` (all `seq < due(now)` are due).
    pub fn due(&self, now_ns: u64) -> u64 {
        if now_ns < self.start_ns {
            return 0;
        }
        let slots = self.slots_at((now_ns - self.start_ns) as f64);
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

    #[test]
    fn steps_change_the_rate_at_each_step() {
        // 1 s warmup at 1000/s, then 1000/s for 2 s, 5000/s for 2 s, then
        // 20000/s until the end.
        let p = RateProfile::Steps { steps: vec![1000.0, 5000.0, 20000.0], step_s: 2.0 };
        let s = Schedule::with_profile(0, 1.0, &p, 1, 0);
        let sec = 1_000_000_000u64;
        let in_second = |k: u64| s.count_before((k + 1) * sec) - s.count_before(k * sec);
        assert_eq!((in_second(0), in_second(1), in_second(2)), (1000, 1000, 1000));
        assert_eq!((in_second(3), in_second(4)), (5000, 5000));
        assert_eq!((in_second(5), in_second(9)), (20000, 20000));
        for seq in (0..60_000u64).step_by(997) {
            assert_eq!(s.due(s.intended(seq)), seq + 1, "slot {seq}");
        }
    }

    #[test]
    fn a_ramp_climbs_linearly_and_stays_at_its_end() {
        // No warmup; 1000/s to 3000/s over 2 s: 4000 messages in the
        // ramp, then 3000/s.
        let p = RateProfile::Ramp { ramp_from: 1000.0, ramp_to: 3000.0, over_s: 2.0 };
        let s = Schedule::with_profile(0, 0.0, &p, 2, 1);
        let both = |t: u64| {
            let a = Schedule::with_profile(0, 0.0, &p, 2, 0);
            a.count_before(t) + s.count_before(t)
        };
        let sec = 1_000_000_000u64;
        assert!((both(sec) as i64 - 1500).abs() <= 1, "{}", both(sec));
        assert!((both(2 * sec) as i64 - 4000).abs() <= 1, "{}", both(2 * sec));
        assert!((both(3 * sec) as i64 - 7000).abs() <= 1, "{}", both(3 * sec));
        for seq in 0..5000u64 {
            assert_eq!(s.due(s.intended(seq)), seq + 1, "slot {seq}");
        }
        // Down as well as up.
        let down = RateProfile::Ramp { ramp_from: 3000.0, ramp_to: 1000.0, over_s: 2.0 };
        let d = Schedule::with_profile(0, 0.0, &down, 1, 0);
        assert!((d.count_before(2 * sec) as i64 - 4000).abs() <= 1);
        assert!((d.count_before(3 * sec) as i64 - 5000).abs() <= 1);
    }

    #[test]
    fn bad_profiles_are_refused() {
        assert!(RateProfile::Constant(0.0).check().is_err());
        assert!(RateProfile::Steps { steps: vec![], step_s: 1.0 }.check().is_err());
        assert!(RateProfile::Steps { steps: vec![1.0], step_s: 0.0 }.check().is_err());
        assert!(RateProfile::Ramp { ramp_from: 1.0, ramp_to: f64::NAN, over_s: 1.0 }.check().is_err());
        assert_eq!(serde_json::to_value(RateProfile::Constant(5.0)).unwrap(), serde_json::json!(5.0));
    }
}
