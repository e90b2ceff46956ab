//! Runs a workload: one glommio executor per worker core, producers and
//! consumers spread over them, histograms merged at the end.

use crate::amqp::{ConfirmSink, Sink};
use crate::checker::{Checker, OrderTrack};
use crate::driver::{Consumer, Producer, Target};
use crate::header::{now_ns, Header, HEADER_LEN};
use crate::schedule::Schedule;
use crate::stats::{self, Percentiles, Summary};
use anyhow::{anyhow, bail, Context, Result};
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use std::cell::RefCell;
use std::io::{IsTerminal, Write};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use crate::workload::Workload;

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
    /// Latencies of the last progress interval, one per worker.
    interval: Vec<Mutex<Histogram<u64>>>,
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
    interval: Histogram<u64>,
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
}

struct ConsumerSink {
    stats: Rc<RefCell<WorkerStats>>,
    shared: Arc<Shared>,
    /// The queue this consumer reads.
    queue: usize,
    order: OrderTrack,
    window: Option<Window>,
    new: u64,
}

impl ConsumerSink {
    fn window(&mut self) -> Option<Window> {
        if self.window.is_none() {
            let t0 = self.shared.t0.load(Relaxed);
            if t0 != 0 {
                self.window = Some(Window::new(t0, &self.shared.w));
            }
        }
        self.window
    }
}

impl Sink for ConsumerSink {
    fn deliver(&mut self, prefix: &[u8], now: u64) {
        let win = self.window();
        let mut st = self.stats.borrow_mut();
        let Some(h) = Header::read(prefix) else {
            st.checker.malformed += 1;
            return;
        };
        let Some(win) = win.filter(|w| h.intended_ns >= w.t0) else {
            st.checker.foreign += 1;
            return;
        };
        let seen = st.checker.record(&mut self.order, self.queue, h.producer, h.seq);
        if seen == crate::checker::Seen::Duplicate {
            return;
        }
        self.new += 1;
        let lat = now.saturating_sub(h.intended_ns);
        stats::record(&mut st.interval, lat);
        if win.contains(h.intended_ns) {
            stats::record(&mut st.latency, lat);
        }
        if win.contains(now) {
            st.window_received += 1;
        }
    }

    fn flush(&mut self) {
        if self.new > 0 {
            self.shared.received.fetch_add(self.new, Relaxed);
            self.new = 0;
        }
    }

    fn should_stop(&mut self, now: u64) -> bool {
        if self.shared.abort.load(Relaxed) {
            return true;
        }
        let Some(win) = self.window() else {
            return false;
        };
        let s = &self.shared;
        if now < win.end {
            return false;
        }
        if now >= win.end + (s.w.drain_s * 1e9) as u64 {
            return true;
        }
        s.w.producers == 0
            || (s.producers_done.load(Relaxed) == s.w.producers && s.received.load(Relaxed) >= s.expected.load(Relaxed))
    }
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

async fn run_producer(
    p: usize,
    mut prod: crate::driver::Producer,
    shared: Arc<Shared>,
    stats: Rc<RefCell<WorkerStats>>,
) -> Result<()> {
    let w = &shared.w;
    let t0 = wait_for_start(&shared).await?;
    let win = Window::new(t0, w);
    let sched = w.rate.map(|r| Schedule::new(t0, r, w.producers, p));
    let total = sched.as_ref().map(|s| s.count_before(win.end));
    let batch = if w.confirm { w.batch.min(w.max_inflight) } else { w.batch }.max(1);
    let per_message = w.expected_per_message(p);
    let mut msgs: Vec<([u8; HEADER_LEN], u64)> = Vec::with_capacity(batch);
    let mut seq = 0u64;
    let header = |i: u64, t: u64| {
        let h = Header { producer: p as u32, seq: i, intended_ns: t };
        (h.to_bytes(), t)
    };
    let result = async {
        while !shared.abort.load(Relaxed) {
            let now = now_ns();
            msgs.clear();
            match (&sched, total) {
                (Some(s), Some(total)) => {
                    if seq >= total {
                        break;
                    }
                    let due = s.due(now).min(total);
                    if due <= seq {
                        // Not less than MIN_SLEEP: a sleep per message at
                        // 100 k/s would keep this core busy with timers.
                        // The wait counts in the latency (measured from
                        // the intended send time).
                        let wait = s.intended(seq).saturating_sub(now).max(MIN_SLEEP_NS);
                        glommio::timer::sleep(Duration::from_nanos(wait)).await;
                        continue;
                    }
                    let n = (due - seq).min(batch as u64);
                    msgs.extend((seq..seq + n).map(|i| header(i, s.intended(i))));
                }
                _ => {
                    if now >= win.end {
                        break;
                    }
                    msgs.extend((seq..seq + batch as u64).map(|i| header(i, now)));
                }
            }
            let in_window = msgs.iter().filter(|m| win.contains(m.1)).count() as u64;
            prod.publish(&msgs).await?;
            let n = msgs.len() as u64;
            seq += n;
            shared.sent.fetch_add(n, Relaxed);
            shared.expected.fetch_add(n * per_message, Relaxed);
            stats.borrow_mut().window_sent += in_window;
            // A write the kernel takes at once never returns Pending, so a
            // max-rate producer would keep consumers on this worker from
            // running at all: give way once the time slice is used up.
            glommio::yield_if_needed().await;
        }
        Ok::<(), anyhow::Error>(())
    }
    .await;
    stats.borrow_mut().sent_by_producer.push((p, seq));
    let fin = prod.finish(Duration::from_secs_f64(w.drain_s.max(1.0))).await;
    shared.producers_done.fetch_add(1, Relaxed);
    result.and(fin)
}

/// The shortest sleep of a fixed-rate producer waiting for its next
/// message to be due.
const MIN_SLEEP_NS: u64 = 100_000;

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
        };
        tasks.push(glommio::spawn_local(async move {
            let r = cons.run(&mut sink).await;
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
            interval: stats::new_histogram(),
            checker: Checker::new(w.queues.len(), w.producers),
            window_received: 0,
            window_sent: 0,
            sent_by_producer: Vec::new(),
            confirmed: 0,
            nacked: 0,
            nacked_expected: 0,
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

/// Counts producer `p`'s confirms and nacks, and records the latency of
/// the confirms of messages meant to be sent inside the window.
fn confirm_sink(p: usize, st: Rc<RefCell<WorkerStats>>, sh: Arc<Shared>) -> ConfirmSink {
    let per_message = sh.w.expected_per_message(p);
    let mut win: Option<Window> = None;
    Box::new(move |intended, ack| {
        let now = now_ns();
        let mut st = st.borrow_mut();
        if !ack {
            st.nacked += 1;
            st.nacked_expected += per_message;
            return;
        }
        st.confirmed += 1;
        sh.confirmed.fetch_add(1, Relaxed);
        let win = *win.get_or_insert_with(|| Window::new(sh.t0.load(Relaxed), &sh.w));
        if win.contains(intended) {
            stats::record(&mut st.confirm_latency, now.saturating_sub(intended));
        }
    })
}

/// Hands the worker's interval histogram to the progress printer every
/// 200 ms, until `done`.
async fn hand_over_intervals(
    wi: usize,
    stats: Rc<RefCell<WorkerStats>>,
    shared: Arc<Shared>,
    done: Rc<std::cell::Cell<bool>>,
) {
    while !done.get() {
        glommio::timer::sleep(Duration::from_millis(200)).await;
        let mut st = stats.borrow_mut();
        if let Ok(mut h) = shared.interval[wi].lock() {
            let _ = h.add(&st.interval);
        }
        st.interval.reset();
    }
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
        interval: (0..workers).map(|_| Mutex::new(stats::new_histogram())).collect(),
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
    let over_time = progress_loop(&shared, win, workers);

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
    Ok(summary)
}

/// Collects the workers' interval histograms every 200 ms (as often as
/// they hand them over) into the latency-over-time series, and prints a
/// progress line once a second.
fn progress_loop(shared: &Shared, win: Window, workers: usize) -> Vec<stats::TimePoint> {
    let tty = shared.w.progress && std::io::stderr().is_terminal();
    let mut last = (now_ns(), 0u64, 0u64);
    let mut printed = false;
    let mut points = Vec::new();
    let mut second = stats::new_histogram();
    let mut interval = stats::new_histogram();
    while shared.workers_done.load(Relaxed) < workers {
        std::thread::sleep(Duration::from_millis(200));
        let now = now_ns();
        shared.stalls.check(&shared.beats, now);
        interval.reset();
        for m in &shared.interval {
            if let Ok(mut m) = m.lock() {
                let _ = interval.add(&*m);
                m.reset();
            }
        }
        let t_s = (now as f64 - win.start as f64) / 1e9;
        points.extend(stats::TimePoint::from_hist(t_s, &interval));
        let _ = second.add(&interval);
        if now < last.0 + 1_000_000_000 {
            continue;
        }
        let h = &second;
        let (sent, recv) = (shared.sent.load(Relaxed), shared.received.load(Relaxed));
        let dt = (now - last.0) as f64 / 1e9;
        let phase = if now < win.start {
            "warmup"
        } else if now < win.end {
            "run"
        } else {
            "drain"
        };
        if tty {
            let t = (now as f64 - win.t0 as f64) / 1e9;
            let p99 =
                if h.is_empty() { "-".to_string() } else { format!("{:.0}us", h.value_at_quantile(0.99) as f64 / 1e3) };
            let mut e = std::io::stderr().lock();
            let _ = write!(
                e,
                "\r\x1b[K{phase:>6} {t:5.1}s  pub {:>9.0}/s  recv {:>9.0}/s  sent {sent}  confirmed {}  received {recv}  p99 {p99}",
                (sent - last.1) as f64 / dt,
                (recv - last.2) as f64 / dt,
                shared.confirmed.load(Relaxed),
            );
            let _ = e.flush();
            printed = true;
        }
        second.reset();
        last = (now, sent, recv);
    }
    // The intervals the workers handed over after the last collection.
    interval.reset();
    for m in &shared.interval {
        if let Ok(m) = m.lock() {
            let _ = interval.add(&*m);
        }
    }
    points.extend(stats::TimePoint::from_hist((now_ns() as f64 - win.start as f64) / 1e9, &interval));
    if printed {
        eprintln!();
    }
    points
}

fn summarize(w: &Workload, results: Vec<WorkerStats>) -> Summary {
    let latency = stats::merge(results.iter().map(|r| &r.latency));
    let confirm = stats::merge(results.iter().map(|r| &r.confirm_latency));
    let mut checker = Checker::new(w.queues.len(), w.producers);
    let mut sent = vec![0u64; w.producers];
    let (mut window_received, mut window_sent, mut confirmed, mut nacked) = (0, 0, 0, 0);
    let mut nacked_expected = 0;
    for r in &results {
        checker.merge(&r.checker);
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
        config: serde_json::to_value(w).unwrap_or_default(),
        latency_percentiles_us: stats::percentile_points(&latency),
        latency_over_time: Vec::new(),
        hgrm: stats::hgrm(&latency),
    }
}
