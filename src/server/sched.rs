//! A shard's glommio task queues and what they measure about themselves.
//!
//! Every shard runs its work on three queues besides glommio's default one
//! (where `run_shard` itself, its stop poll and the tick live):
//!
//! - `latency` (`Latency::Matters`, high shares): the listeners, and so
//!   every connection's reads, writes, deliveries and confirms (a task
//!   spawned with `spawn_local` joins the queue of the task spawning it),
//!   and the mesh receivers that carry other shards' publishes and
//!   deliveries. The socket readiness of tasks on this queue arrives on
//!   glommio's latency ring, which preempts whatever queue is running at
//!   its next task boundary.
//! - `flush`: the log's flusher (group commit; the writes and fdatasyncs
//!   themselves are on the shard's blocking threads).
//! - `bulk`: housekeeping and compaction, spill read-back, TTL sweeps,
//!   the definitions rewrite, HTTP (metric scrapes, the management API)
//!   and operator requests.
//!
//! Per queue, a probe task sleeps `PROBE_PERIOD` and records how late its
//! timer was served: the time a task of that queue waited from runnable to
//! run (the scheduling delay), sampled. At each of the latency probe's
//! wake-ups the shard also reads glommio's per-queue runtime and run count
//! (`task_queue_stats`, which resets them) and records each queue's
//! runtime per run over the interval: the length of its run when it ran
//! once, a lower bound on its longest run otherwise. Neither touches the
//! message path: no clock is read per message.

use glommio::{Latency, Shares, TaskQueueHandle};
use serde::Serialize;
use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Upper bounds (seconds) of the scheduling histograms' buckets: fine below
/// a millisecond (the 500 µs slice), coarse up to glommio's 100 ms
/// preemption timer.
pub const SCHED_BUCKETS_SECONDS: [f64; 14] =
    [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5];

/// How often each queue's probe wakes: a stall shorter than this is seen
/// with a probability of its length over the period. Three probes at
/// 10 ms wake an idle shard 300 times a second (a few µs each).
pub const PROBE_PERIOD: Duration = Duration::from_millis(10);

/// The latency queue's budget: while it has work, glommio preempts the
/// running queue at the next task boundary after this long.
pub const LATENCY_BUDGET: Duration = Duration::from_millis(1);

/// The queues, in the order their stats are reported.
pub const QUEUE_NAMES: [&str; 4] = ["default", "latency", "flush", "bulk"];

/// Which queue a task goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Latency,
    Flush,
    Bulk,
}

/// A fixed-bucket histogram on one thread, no atomics.
#[derive(Default)]
pub struct SchedHistogram {
    /// Non-cumulative counts; the last one is `+Inf`.
    buckets: [Cell<u64>; SCHED_BUCKETS_SECONDS.len() + 1],
    sum_nanos: Cell<u64>,
}

impl SchedHistogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = SCHED_BUCKETS_SECONDS.iter().position(|b| s <= *b).unwrap_or(SCHED_BUCKETS_SECONDS.len());
        self.buckets[i].set(self.buckets[i].get() + 1);
        let nanos = crate::protocol::wire::u64_of(d.as_nanos());
        self.sum_nanos.set(self.sum_nanos.get().saturating_add(nanos));
    }

    fn snapshot(&self) -> crate::server::stats::HistogramSnapshot {
        crate::server::stats::HistogramSnapshot {
            buckets: self.buckets.iter().map(Cell::get).collect(),
            sum_nanos: self.sum_nanos.get(),
        }
    }
}

/// One queue's figures.
#[derive(Default)]
struct QueueFigures {
    delay: SchedHistogram,
    run: SchedHistogram,
    /// The longest runtime-per-run seen in one probe interval.
    run_max_nanos: Cell<u64>,
    runtime_nanos: Cell<u64>,
    runs: Cell<u64>,
}

/// One queue's figures as a shard reports them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueSchedSnapshot {
    pub queue: &'static str,
    /// Timer due to probe run, sampled every `PROBE_PERIOD`.
    pub delay: crate::server::stats::HistogramSnapshot,
    /// Runtime per run over each probe interval.
    pub run: crate::server::stats::HistogramSnapshot,
    pub run_max_nanos: u64,
    pub runtime_nanos: u64,
    pub runs: u64,
}

/// A shard's task queues and their figures.
pub struct ShardSched {
    handles: [TaskQueueHandle; 4],
    figures: [QueueFigures; 4],
}

impl ShardSched {
    /// Creates the queues on the calling executor (a shard's thread).
    pub fn create() -> Rc<Self> {
        let ex = glommio::executor();
        let handles = [
            TaskQueueHandle::default(),
            ex.create_task_queue(Shares::Static(1000), Latency::Matters(LATENCY_BUDGET), "ringmq-latency"),
            // Confirms wait on the flusher: enough shares that a full-speed
            // persistent publisher does not starve it, less than the
            // sockets that feed it.
            ex.create_task_queue(Shares::Static(500), Latency::NotImportant, "ringmq-flush"),
            ex.create_task_queue(Shares::Static(100), Latency::NotImportant, "ringmq-bulk"),
        ];
        Rc::new(Self { handles, figures: Default::default() })
    }

    pub fn handle(&self, class: Class) -> TaskQueueHandle {
        self.handles[Self::index(class)]
    }

    fn index(class: Class) -> usize {
        match class {
            Class::Latency => 1,
            Class::Flush => 2,
            Class::Bulk => 3,
        }
    }

    /// Spawns `fut` on `class`'s queue. glommio refuses only a handle of
    /// another executor: the shard ends (`ShardEnd::TaskQueue`) rather
    /// than run without one of its tasks.
    pub fn spawn<T: 'static>(
        &self,
        class: Class,
        fut: impl Future<Output = T> + 'static,
    ) -> Result<glommio::Task<T>, crate::server::fatal::ShardEnd> {
        glommio::spawn_local_into(fut, self.handle(class))
            .map_err(|e| crate::server::fatal::ShardEnd::TaskQueue(format!("{class:?}: {e}")))
    }

    /// Starts the probes, one per queue; they end with the returned tasks.
    pub fn start_probes(self: &Rc<Self>) -> Vec<glommio::Task<()>> {
        (0..self.handles.len())
            .filter_map(|i| {
                let me = self.clone();
                glommio::spawn_local_into(me.clone().probe(i), self.handles[i]).ok()
            })
            .collect()
    }

    async fn probe(self: Rc<Self>, i: usize) {
        loop {
            let due = Instant::now() + PROBE_PERIOD;
            glommio::timer::sleep(PROBE_PERIOD).await;
            self.figures[i].delay.observe(Instant::now().saturating_duration_since(due));
            if i == 1 {
                self.sample_runtimes();
            }
        }
    }

    /// Reads (and so resets) glommio's per-queue runtime and run count.
    fn sample_runtimes(&self) {
        let ex = glommio::executor();
        for (h, f) in self.handles.iter().zip(&self.figures) {
            let Ok(s) = ex.task_queue_stats(*h) else { continue };
            let (runtime, runs) = (s.runtime(), s.queue_selected());
            if runs == 0 {
                continue;
            }
            let per_run = runtime / u32::try_from(runs).unwrap_or(u32::MAX);
            f.run.observe(per_run);
            let nanos = crate::protocol::wire::u64_of(per_run.as_nanos());
            f.run_max_nanos.set(f.run_max_nanos.get().max(nanos));
            f.runtime_nanos
                .set(f.runtime_nanos.get().saturating_add(crate::protocol::wire::u64_of(runtime.as_nanos())));
            f.runs.set(f.runs.get().saturating_add(runs));
        }
    }

    pub fn snapshot(&self) -> Vec<QueueSchedSnapshot> {
        QUEUE_NAMES
            .iter()
            .zip(&self.figures)
            .map(|(queue, f)| QueueSchedSnapshot {
                queue,
                delay: f.delay.snapshot(),
                run: f.run.snapshot(),
                run_max_nanos: f.run_max_nanos.get(),
                runtime_nanos: f.runtime_nanos.get(),
                runs: f.runs.get(),
            })
            .collect()
    }
}

/// The scheduling series, per shard and queue: two histograms, the longest
/// run seen, and glommio's runtime and run counts.
pub fn prometheus(o: &mut String, shards: &[crate::server::stats::ShardStats]) {
    use std::fmt::Write;
    let delay = "ringmq_sched_delay_seconds";
    let _ = write!(
        o,
        "# HELP {delay} Time a shard task queue's probe waited from its timer due to running (scheduling delay, sampled every {} ms).\n# TYPE {delay} histogram\n",
        PROBE_PERIOD.as_millis()
    );
    for s in shards {
        for q in &s.sched {
            histogram(o, delay, s.shard, q.queue, &q.delay);
        }
    }
    let run = "ringmq_sched_run_seconds";
    let _ = write!(
        o,
        "# HELP {run} A shard task queue's runtime per run over each probe interval (its run's length when it ran once; a lower bound on the longest run otherwise).\n# TYPE {run} histogram\n"
    );
    for s in shards {
        for q in &s.sched {
            histogram(o, run, s.shard, q.queue, &q.run);
        }
    }
    let series: [Series; 3] = [
        (
            "ringmq_sched_run_max_seconds",
            "gauge",
            "The longest runtime per run in one probe interval since start.",
            |q| q.run_max_nanos as f64 / 1e9,
        ),
        ("ringmq_sched_runtime_seconds_total", "counter", "Time the shard spent running the task queue.", |q| {
            q.runtime_nanos as f64 / 1e9
        }),
        ("ringmq_sched_runs_total", "counter", "Times glommio picked the task queue to run.", |q| q.runs as f64),
    ];
    for (name, kind, help, f) in series {
        let _ = write!(o, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
        for s in shards {
            for q in &s.sched {
                let _ = writeln!(o, "{name}{{shard=\"{}\",queue=\"{}\"}} {}", s.shard, q.queue, f(q));
            }
        }
    }
}

/// For `ctl status`: the latency queue's probes, over every shard, that ran
/// more than 1 ms late, and the upper bound (seconds) of the latest bucket
/// any of them reached (`+Inf` as infinity; 0 with no samples).
pub fn latency_queue_lateness(shards: &[crate::server::stats::ShardStats]) -> (u64, f64) {
    let one_ms = SCHED_BUCKETS_SECONDS.iter().position(|b| *b >= 0.001).unwrap_or(0);
    let (mut late, mut worst) = (0u64, 0f64);
    for q in shards.iter().flat_map(|s| &s.sched).filter(|q| q.queue == "latency") {
        late += q.delay.buckets.iter().skip(one_ms + 1).sum::<u64>();
        if let Some(i) = q.delay.buckets.iter().rposition(|n| *n > 0) {
            worst = worst.max(SCHED_BUCKETS_SECONDS.get(i).copied().unwrap_or(f64::INFINITY));
        }
    }
    (late, worst)
}

/// A plain series: name, type, help, and its value for one queue.
type Series = (&'static str, &'static str, &'static str, fn(&QueueSchedSnapshot) -> f64);

fn histogram(o: &mut String, name: &str, shard: u16, queue: &str, h: &crate::server::stats::HistogramSnapshot) {
    use std::fmt::Write;
    let mut acc = 0;
    for (i, n) in h.buckets.iter().enumerate() {
        acc += n;
        let le = SCHED_BUCKETS_SECONDS.get(i).map_or("+Inf".to_string(), |b| b.to_string());
        let _ = writeln!(o, "{name}_bucket{{shard=\"{shard}\",queue=\"{queue}\",le=\"{le}\"}} {acc}");
    }
    let _ = writeln!(o, "{name}_sum{{shard=\"{shard}\",queue=\"{queue}\"}} {}", h.sum_nanos as f64 / 1e9);
    let _ = writeln!(o, "{name}_count{{shard=\"{shard}\",queue=\"{queue}\"}} {acc}");
}

#[cfg(test)]
#[path = "sched_tests.rs"]
mod tests;
