use super::*;
use crate::server::stats::ShardStats;

#[test]
fn a_sample_lands_in_the_first_bucket_that_holds_it() {
    let h = SchedHistogram::default();
    h.observe(Duration::from_micros(5)); // <= 10 µs
    h.observe(Duration::from_micros(10)); // the bound itself
    h.observe(Duration::from_micros(700)); // <= 1 ms
    h.observe(Duration::from_secs(2)); // +Inf
    let s = h.snapshot();
    assert_eq!(s.buckets.len(), SCHED_BUCKETS_SECONDS.len() + 1);
    assert_eq!(s.buckets[0], 2);
    assert_eq!(s.buckets[6], 1, "0.001 is the seventh bound");
    assert_eq!(*s.buckets.last().unwrap(), 1);
    assert_eq!(s.sum_nanos, 2_000_715_000);
}

#[test]
fn exposition_is_cumulative_per_shard_and_queue() {
    let h = SchedHistogram::default();
    for us in [3, 40, 40, 900, 30_000] {
        h.observe(Duration::from_micros(us));
    }
    let q = |queue| QueueSchedSnapshot {
        queue,
        delay: h.snapshot(),
        run: h.snapshot(),
        run_max_nanos: 30_000_000,
        runtime_nanos: 1_500_000_000,
        runs: 42,
    };
    let shards: Vec<ShardStats> =
        (0..2).map(|shard| ShardStats { shard, sched: vec![q("latency"), q("bulk")], ..Default::default() }).collect();
    let mut o = String::new();
    prometheus(&mut o, &shards);
    assert!(o.contains("# TYPE ringmq_sched_delay_seconds histogram"));
    assert!(o.contains("# TYPE ringmq_sched_run_seconds histogram"));
    assert!(o.contains("ringmq_sched_runs_total{shard=\"1\",queue=\"bulk\"} 42"));
    assert!(o.contains("ringmq_sched_run_max_seconds{shard=\"0\",queue=\"latency\"} 0.03"));
    let counts: Vec<u64> = o
        .lines()
        .filter(|l| l.starts_with("ringmq_sched_delay_seconds_bucket{shard=\"1\",queue=\"bulk\""))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
        .collect();
    assert_eq!(counts.len(), SCHED_BUCKETS_SECONDS.len() + 1);
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    assert_eq!((counts[0], *counts.last().unwrap()), (1, 5));
    assert!(o.contains("ringmq_sched_delay_seconds_count{shard=\"1\",queue=\"bulk\"} 5"));
    // `ctl status`: the latency queues' probes past 1 ms (30 ms, one a
    // shard) and the latest bucket reached (0.05 s).
    assert_eq!(latency_queue_lateness(&shards), (2, 0.05));
}
