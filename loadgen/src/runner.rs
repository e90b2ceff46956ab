//! Runs a workload: one glommio executor per worker core, producers and
//! consumers spread over them, histograms merged at the end.

use crate::amqp::Sink;
use crate::checker::{BitSet, Checker, OrderTrack};
use crate::driver::{Consumer, Producer, Target};
use crate::header::now_ns;
use crate::stats::{self, Percentiles, Summary};
use anyhow::{anyhow, bail, Context, Result};
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use crate::workload::Workload;

mod consume;
mod produce;
mod progress;
use consume::{consume, ConsumerSink};
pub(crate) use produce::MIN_SLEEP_NS;
use produce::{confirm_sink, run_producer};
use progress::{hand_over_intervals, progress_loop};

/// State shared by all workers (atomics only; touched a few times per batch).
struct Shared {
    w: Workload,
    target: Target,
    /// Start of the run (warmup included), ns of CLOCK_MONOTONIC; 0 = not yet.
    t0: AtomicU64,
    ready: AtomicUsize,
    abort: AtomicBool,
    sent: AtomicU64,
    confirmed: AtomicU64,
    received: AtomicU64,
    /// Deliveries the messages sent so far should make (sent × fan-out).
    expected: AtomicU64,
    producers_done: AtomicUsize,
    workers_done: AtomicUsize,
    /// When a consumer last received a new message (ns), for `--drain-idle`.
    last_new: AtomicU64,
    /// Latencies of the last progress interval, one per worker: end to
    /// end, and publish to confirm.
    interval: Vec<Mutex<Histogram<u64>>>,
    confirm_interval: Vec<Mutex<Histogram<u64>>>,
    /// Each worker's beat, and the stalls the main thread saw in them.
    beats: Vec<crate::stall::Beat>,
    stalls: crate::stall::Stalls,
}

#[derive(Clone, Copy)]
struct Window {
    t0: u64,
    start: u64,
    end: u64,
}

impl Window {
    fn new(t0: u64, w: &Workload) -> Window {
        let start = t0 + (w.warmup_s * 1e9) as u64;
        Window { t0, start, end: start + (w.duration_s * 1e9) as u64 }
    }
    fn contains(&self, t: u64) -> bool {
        t >= self.start && t < self.end
    }
}

/// One worker's statistics, owned by its thread.
/// A worker's statistics; handed back whole when the worker ends.
struct WorkerStats {
    latency: Histogram<u64>,
    confirm_latency: Histogram<u64>,
    /// The generator's own lateness per batch (`Summary::send_lag_us`).
    send_lag: Histogram<u64>,
    interval: Histogram<u64>,
    confirm_interval: Histogram<u64>,
    checker: Checker,
    /// Deliveries received inside the measurement window.
    window_received: u64,
    /// Messages whose intended send time is inside the window.
    window_sent: u64,
    sent_by_producer: Vec<(usize, u64)>,
    confirmed: u64,
    nacked: u64,
    /// Deliveries the nacked messages would have made.
    nacked_expected: u64,
    /// Sequences confirmed, per producer (only this worker's producers).
    confirmed_seqs: Vec<BitSet>,
    /// Errors by kind, and connections made again (`--reconnect`).
    errors: std::collections::BTreeMap<String, u64>,
    reconnects: u64,
}

/// Waits until the main thread has set the start time, and that time has come.
async fn wait_for_start(shared: &Shared) -> Result<u64> {
    loop {
        let t0 = shared.t0.load(Relaxed);
        if t0 != 0 {
            let now = now_ns();
            if now < t0 {
                glommio::timer::sleep(Duration::from_nanos(t0 - now)).await;
            }
            return Ok(t0);
        }
        if shared.abort.load(Relaxed) {
            bail!("aborted");
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
}

/// First and longest wait between two connection attempts (`--reconnect`).
pub(super) const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Counts one error by its kind: the text with digit runs folded to `N`
/// (node ids, ports and counts differ; the kind does not).
fn error_kind(what: &str, e: &dyn std::fmt::Display) -> String {
    let text = format!("{what}: {e}");
    let mut out = String::new();
    let mut digit = false;
    for ch in text.chars().take(240) {
        if ch.is_ascii_digit() {
            if !digit {
                out.push('N');
            }
            digit = true;
        } else {
            digit = false;
            out.push(ch);
        }
    }
    out
}

/// Wall-clock seconds, to line the generator's log up with a fault
/// script's.
fn wall() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Counts a client's failure and logs it (`--reconnect` runs go on).
fn note_error(stats: &Rc<RefCell<WorkerStats>>, what: &str, e: &anyhow::Error) {
    eprintln!("[{:.3}] {what}: {e:#}", wall());
    let kind = error_kind(what, &format_args!("{e:#}"));
    *stats.borrow_mut().errors.entry(kind).or_default() += 1;
}

/// Body of worker thread `wi`: connects its clients, waits for the start,
/// runs them, returns its statistics.
async fn worker(wi: usize, shared: Arc<Shared>) -> Result<WorkerStats> {
    shared.beats[wi].start(now_ns());
    let beating = Rc::new(std::cell::Cell::new(true));
    let _beat = glommio::spawn_local(beat(wi, shared.clone(), beating.clone()));
    let r = work(wi, &shared).await;
    beating.set(false);
    shared.beats[wi].finish();
    r
}

/// Beats for the main thread's stall watch (`stall.rs`) while the
/// worker runs.
async fn beat(wi: usize, shared: Arc<Shared>, beating: Rc<std::cell::Cell<bool>>) {
    while beating.get() {
        shared.beats[wi].beat(now_ns());
        glommio::timer::sleep(Duration::from_millis(200)).await;
    }
}

async fn work(wi: usize, shared: &Arc<Shared>) -> Result<WorkerStats> {
    let shared = shared.clone();
    let stats = Rc::new(RefCell::new(WorkerStats::new(&shared.w)));
    let (producers, consumers) = match connect_clients(wi, &shared, &stats).await {
        Ok(x) => x,
        Err(e) => {
            // The other workers stop waiting for this one.
            shared.abort.store(true, Relaxed);
            return Err(e);
        }
    };
    shared.ready.fetch_add(1, Relaxed);
    let _ = wait_for_start(&shared).await;

    let mut tasks = Vec::new();
    for (queue, cons) in consumers {
        let mut sink = ConsumerSink {
            stats: stats.clone(),
            shared: shared.clone(),
            queue,
            order: OrderTrack::default(),
            window: None,
            new: 0,
            last_any: now_ns(),
        };
        tasks.push(glommio::spawn_local(async move {
            let r = consume(Some(cons), &mut sink).await;
            sink.flush();
            r.context("consumer")
        }));
    }
    for (p, prod) in producers {
        tasks.push(glommio::spawn_local(run_producer(p, prod, shared.clone(), stats.clone())));
    }
    let done = Rc::new(std::cell::Cell::new(false));
    let progress = glommio::spawn_local(hand_over_intervals(wi, stats.clone(), shared.clone(), done.clone()));
    let mut first_err = None;
    for t in tasks {
        if let Err(e) = t.await {
            shared.abort.store(true, Relaxed);
            first_err.get_or_insert(e);
        }
    }
    done.set(true);
    progress.await;
    if let Some(e) = first_err {
        return Err(e);
    }
    let st = Rc::try_unwrap(stats).map_err(|_| anyhow!("worker statistics still shared"))?.into_inner();
    Ok(st)
}

impl WorkerStats {
    fn new(w: &Workload) -> WorkerStats {
        WorkerStats {
            latency: stats::new_histogram(),
            confirm_latency: stats::new_histogram(),
            send_lag: stats::new_histogram(),
            interval: stats::new_histogram(),
            confirm_interval: stats::new_histogram(),
            checker: Checker::new(w.queues.len(), w.producers),
            window_received: 0,
            window_sent: 0,
            sent_by_producer: Vec::new(),
            confirmed: 0,
            nacked: 0,
            nacked_expected: 0,
            confirmed_seqs: vec![BitSet::default(); w.producers],
            errors: Default::default(),
            reconnects: 0,
        }
    }
}

/// Connects the producers and consumers the workload gives worker `wi`:
/// (producer index, client) and (queue index, client).
async fn connect_clients(
    wi: usize,
    shared: &Arc<Shared>,
    stats: &Rc<RefCell<WorkerStats>>,
) -> Result<(Vec<(usize, Producer)>, Vec<(usize, Consumer)>)> {
    let w = &shared.w;
    let spec = w.spec();
    let mut producers = Vec::new();
    let mut consumers = Vec::new();
    for c in 0..w.consumers {
        if w.worker_of(w.producers + c) == wi {
            let qi = w.consumer_queue(c);
            let q = &w.queues[qi];
            let cons = shared.target.consumer(q, &spec).await.with_context(|| format!("consumer {c} on {q}"))?;
            consumers.push((qi, cons));
        }
    }
    for p in 0..w.producers {
        if w.worker_of(p) == wi {
            let route = w.route(p);
            let sink = confirm_sink(p, stats.clone(), shared.clone());
            let prod = shared
                .target
                .producer(&route, &spec, sink)
                .await
                .with_context(|| format!("producer {p} to {route}"))?;
            producers.push((p, prod));
        }
    }
    Ok((producers, consumers))
}

/// Declares (and purges) the queues, and the exchange with its bindings,
/// from a short-lived executor.
fn setup_queues(target: &Target, w: &Workload) -> Result<u64> {
    let (target, w) = (target.clone(), w.clone());
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("loadgen-setup")
        .spawn(move || async move { target.setup(&w).await })
        .map_err(|e| anyhow!("starting the setup executor: {e}"))?
        .join()
        .map_err(|e| anyhow!("setup executor: {e}"))?
}

/// Runs the workload and returns its summary.
pub fn run(w: Workload) -> Result<Summary> {
    #[allow(unused_mut)] // changed only with the native driver
    let mut target = Target::parse(&w.url, &w.tls)?;
    #[cfg(feature = "native")]
    if let Target::Native(o) = &mut target {
        o.cluster_aware = w.cluster_aware;
    }
    let purged = setup_queues(&target, &w).context("declaring queues")?;
    if purged > 0 {
        eprintln!("purged {purged} messages left in the queues by earlier runs");
    }
    let workers = w.cores.len();
    let shared = Arc::new(Shared {
        w: w.clone(),
        target,
        t0: AtomicU64::new(0),
        ready: AtomicUsize::new(0),
        abort: AtomicBool::new(false),
        sent: AtomicU64::new(0),
        confirmed: AtomicU64::new(0),
        received: AtomicU64::new(0),
        expected: AtomicU64::new(0),
        producers_done: AtomicUsize::new(0),
        workers_done: AtomicUsize::new(0),
        last_new: AtomicU64::new(0),
        interval: (0..workers).map(|_| Mutex::new(stats::new_histogram())).collect(),
        confirm_interval: (0..workers).map(|_| Mutex::new(stats::new_histogram())).collect(),
        beats: (0..workers).map(|_| crate::stall::Beat::default()).collect(),
        stalls: crate::stall::Stalls::default(),
    });
    crate::stall::install();
    let mut handles = Vec::new();
    for (wi, &cpu) in w.cores.iter().enumerate() {
        let sh = shared.clone();
        let h = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("loadgen-{wi}"))
            .spin_before_park(Duration::from_micros(0))
            // Producers at max rate must not keep consumers on the same
            // worker from running for glommio's default 100 ms quantum.
            .preempt_timer(Duration::from_micros(500))
            .spawn(move || async move {
                let r = worker(wi, sh.clone()).await;
                sh.workers_done.fetch_add(1, Relaxed);
                r
            })
            .map_err(|e| anyhow!("starting worker on cpu {cpu}: {e}"))?;
        handles.push(h);
    }

    // Wait until every worker has connected its clients, then start the clock.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while shared.ready.load(Relaxed) < workers {
        if shared.abort.load(Relaxed) || shared.workers_done.load(Relaxed) > 0 {
            break;
        }
        if std::time::Instant::now() > deadline {
            shared.abort.store(true, Relaxed);
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let t0 = now_ns() + 5_000_000;
    shared.t0.store(t0, Relaxed);
    let win = Window::new(t0, &w);
    let (over_time, per_second) = progress_loop(&shared, win, workers);

    let mut results = Vec::new();
    let mut errors = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => results.push(r),
            Ok(Err(e)) => errors.push(format!("{e:#}")),
            Err(e) => errors.push(format!("worker thread: {e}")),
        }
    }
    if !errors.is_empty() {
        bail!("run failed: {}", errors.join("; "));
    }
    let mut summary = summarize(&w, results);
    summary.stalls = shared.stalls.count.load(Relaxed);
    summary.stall_ms_max = shared.stalls.longest_ns.load(Relaxed) / 1_000_000;
    summary.latency_over_time = over_time;
    summary.per_second = per_second;
    Ok(summary)
}

fn summarize(w: &Workload, results: Vec<WorkerStats>) -> Summary {
    let latency = stats::merge(results.iter().map(|r| &r.latency));
    let confirm = stats::merge(results.iter().map(|r| &r.confirm_latency));
    let send_lag = stats::merge(results.iter().map(|r| &r.send_lag));
    let mut checker = Checker::new(w.queues.len(), w.producers);
    let mut sent = vec![0u64; w.producers];
    let (mut window_received, mut window_sent, mut confirmed, mut nacked) = (0, 0, 0, 0);
    let mut nacked_expected = 0;
    let mut confirmed_seqs = vec![BitSet::default(); w.producers];
    let mut client_errors = std::collections::BTreeMap::<String, u64>::new();
    let mut reconnects = 0;
    for r in &results {
        checker.merge(&r.checker);
        for (all, mine) in confirmed_seqs.iter_mut().zip(&r.confirmed_seqs) {
            all.union_with(mine);
        }
        for (k, n) in &r.errors {
            *client_errors.entry(k.clone()).or_default() += n;
        }
        reconnects += r.reconnects;
        for &(p, n) in &r.sent_by_producer {
            sent[p] = n;
        }
        window_received += r.window_received;
        window_sent += r.window_sent;
        confirmed += r.confirmed;
        nacked += r.nacked;
        nacked_expected += r.nacked_expected;
    }
    let rate_of = |n: u64| n as f64 / w.duration_s;
    let delivered_per_s = rate_of(window_received);
    let msgs_per_s = if w.consumers > 0 { delivered_per_s } else { rate_of(window_sent) };
    // Publishes the broker refused (nacked) were never accepted: not lost.
    let lost = if w.consumers > 0 { checker.lost(&sent, w.streams()).saturating_sub(nacked_expected) } else { 0 };
    let total_sent: u64 = sent.iter().sum();
    let loss = if w.consumers > 0 && w.confirm {
        checker.confirmed_loss(&confirmed_seqs, w.streams())
    } else {
        Default::default()
    };
    let samples = loss.samples.iter().map(|&(q, p, seq)| format!("{} producer {p} seq {seq}", w.queues[q])).collect();
    let expected = sent.iter().enumerate().map(|(p, &n)| n * w.expected_per_message(p)).sum();
    let fanout = if w.producers == 0 {
        0.0
    } else if total_sent == 0 {
        (0..w.producers).map(|p| w.fanout(p)).sum::<usize>() as f64 / w.producers as f64
    } else {
        sent.iter().enumerate().map(|(p, &n)| (n * w.fanout(p) as u64) as f64).sum::<f64>() / total_sent as f64
    };
    Summary {
        sent: total_sent,
        confirmed,
        received: checker.deliveries,
        msgs_per_s,
        bytes_per_s: msgs_per_s * w.size as f64,
        lost,
        duplicates: checker.duplicates,
        reordered: checker.reordered,
        latency_us: Percentiles::from_hist(&latency),
        confirm_latency_us: Percentiles::from_hist(&confirm),
        send_lag_us: Percentiles::from_hist(&send_lag),
        label: w.label.clone(),
        url: w.url.clone(),
        send_msgs_per_s: rate_of(window_sent),
        delivered_per_s,
        fanout,
        expected,
        nacked,
        foreign: checker.foreign,
        stalls: 0,
        stall_ms_max: 0,
        lost_confirmed: loss.lost,
        lost_confirmed_samples: samples,
        unconfirmed_received: loss.unconfirmed_received,
        client_errors,
        reconnects,
        config: serde_json::to_value(w).unwrap_or_default(),
        latency_percentiles_us: stats::percentile_points(&latency),
        latency_over_time: Vec::new(),
        per_second: Vec::new(),
        integrity_failures: Vec::new(),
        hgrm: stats::hgrm(&latency),
    }
}
