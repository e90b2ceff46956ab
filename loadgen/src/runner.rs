//! Runs a workload: one glommio executor per worker core, producers and
//! consumers spread over them, histograms merged at the end.

use crate::amqp::{ConfirmSink, Sink};
use crate::checker::{BitSet, Checker, OrderTrack};
use crate::driver::{Consumer, Producer, Target};
use crate::header::{now_ns, Header, HEADER_LEN};
use crate::schedule::Schedule;
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

mod progress;
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

struct ConsumerSink {
    stats: Rc<RefCell<WorkerStats>>,
    shared: Arc<Shared>,
    /// The queue this consumer reads.
    queue: usize,
    order: OrderTrack,
    window: Option<Window>,
    new: u64,
    /// When the current subscription last got a delivery, or began (ns).
    last_any: u64,
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
        self.last_any = now;
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
            self.shared.last_new.fetch_max(now_ns(), Relaxed);
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
        let producers_done = s.producers_done.load(Relaxed) == s.w.producers;
        if let (Some(idle), true) = (s.w.drain_idle_s, producers_done) {
            let idle = (idle * 1e9) as u64;
            if now >= win.end + idle && now.saturating_sub(s.last_new.load(Relaxed)) >= idle {
                return true;
            }
        }
        s.w.producers == 0 || (producers_done && s.received.load(Relaxed) >= s.expected.load(Relaxed))
    }

    fn stale(&mut self, now: u64) -> Option<String> {
        let idle = self.shared.w.resubscribe_idle_s?;
        let silent = now.saturating_sub(self.last_any);
        (self.shared.w.reconnect && silent >= (idle * 1e9) as u64)
            .then(|| format!("no delivery for {idle} s: subscribing again"))
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
    prod: crate::driver::Producer,
    shared: Arc<Shared>,
    stats: Rc<RefCell<WorkerStats>>,
) -> Result<()> {
    let w = &shared.w;
    let t0 = wait_for_start(&shared).await?;
    let win = Window::new(t0, w);
    let sched = w.rate.as_ref().map(|r| Schedule::with_profile(t0, w.warmup_s, r, w.producers, p));
    let total = sched.as_ref().map(|s| s.count_before(win.end));
    let batch = if w.confirm { w.batch.min(w.max_inflight) } else { w.batch }.max(1);
    let per_message = w.expected_per_message(p);
    let mut msgs: Vec<([u8; HEADER_LEN], u64)> = Vec::with_capacity(batch);
    let mut seq = 0u64;
    let header = |i: u64, t: u64| {
        let h = Header { producer: p as u32, seq: i, intended_ns: t };
        (h.to_bytes(), t)
    };
    let mut prod = Some(prod);
    let result = async {
        while !shared.abort.load(Relaxed) {
            if prod.is_none() {
                // --reconnect: the publishes due meanwhile go out once it
                // is back, late (their latency counts from the schedule).
                prod = reconnect_producer(p, &shared, &stats, win.end).await;
            }
            let Some(pr) = prod.as_mut() else { break };
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
            if let Err(e) = pr.publish(&msgs).await {
                if !w.reconnect {
                    return Err(e);
                }
                // Part of the batch may have reached the broker: it counts
                // as sent, and none of it will be confirmed.
                note_error(&stats, &format!("producer {p}"), &e);
                if let Some(old) = prod.take() {
                    // Closed, not dropped: a dropped client keeps its
                    // connection open.
                    let closing = async { old.finish(Duration::from_millis(500)).await.is_ok() };
                    let late = async {
                        glommio::timer::sleep(Duration::from_secs(3)).await;
                        false
                    };
                    if !futures_lite::future::or(closing, late).await {
                        eprintln!("[{:.3}] producer {p}: the failed connection did not close cleanly", wall());
                    }
                }
            }
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
    let fin = match prod {
        Some(pr) => pr.finish(Duration::from_secs_f64(w.drain_s.max(1.0))).await,
        None => Ok(()),
    };
    shared.producers_done.fetch_add(1, Relaxed);
    result.and(fin)
}

/// The shortest sleep of a fixed-rate producer waiting for its next
/// message to be due.
pub(crate) const MIN_SLEEP_NS: u64 = 100_000;

/// First and longest wait between two connection attempts (`--reconnect`).
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

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

/// Connects producer `p` again, with backoff, until it works or `until`
/// (ns) passes.
async fn reconnect_producer(
    p: usize,
    shared: &Arc<Shared>,
    stats: &Rc<RefCell<WorkerStats>>,
    until: u64,
) -> Option<crate::driver::Producer> {
    let w = &shared.w;
    let mut backoff = BACKOFF_MIN;
    while !shared.abort.load(Relaxed) && now_ns() < until {
        glommio::timer::sleep(backoff).await;
        let sink = confirm_sink(p, stats.clone(), shared.clone());
        match shared.target.producer(&w.route(p), &w.spec(), sink).await {
            Ok(pr) => {
                stats.borrow_mut().reconnects += 1;
                eprintln!("[{:.3}] producer {p}: connected again", wall());
                return Some(pr);
            }
            Err(e) => {
                note_error(stats, &format!("producer {p} reconnecting"), &e);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
    None
}

/// Runs a consumer until the run ends; with `--reconnect`, a failed
/// connection or subscription is made again (with backoff) and the same
/// sink (checker and order tracking) goes on.
async fn consume(mut cons: Option<Consumer>, sink: &mut ConsumerSink) -> Result<()> {
    let shared = sink.shared.clone();
    let queue = &shared.w.queues[sink.queue];
    let what = format!("consumer of {queue}");
    let mut backoff = BACKOFF_MIN;
    loop {
        let c = match cons.take() {
            Some(c) => c,
            None => {
                if sink.should_stop(now_ns()) {
                    return Ok(());
                }
                glommio::timer::sleep(backoff).await;
                match shared.target.consumer(queue, &shared.w.spec()).await {
                    Ok(c) => {
                        sink.stats.borrow_mut().reconnects += 1;
                        sink.last_any = now_ns();
                        eprintln!("[{:.3}] {what}: subscribed again", wall());
                        backoff = BACKOFF_MIN;
                        c
                    }
                    Err(e) => {
                        note_error(&sink.stats, &format!("{what} reconnecting"), &e);
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        continue;
                    }
                }
            }
        };
        match c.run(&mut *sink).await {
            Ok(()) => return Ok(()),
            Err(e) if shared.w.reconnect => {
                sink.flush();
                note_error(&sink.stats, &what, &e);
            }
            Err(e) => return Err(e),
        }
    }
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

/// Counts producer `p`'s confirms and nacks, and records the latency of
/// the confirms of messages meant to be sent inside the window.
fn confirm_sink(p: usize, st: Rc<RefCell<WorkerStats>>, sh: Arc<Shared>) -> ConfirmSink {
    let per_message = sh.w.expected_per_message(p);
    let mut win: Option<Window> = None;
    Box::new(move |intended, seq, outcome| {
        let now = now_ns();
        let mut st = st.borrow_mut();
        if let Err(why) = outcome {
            st.nacked += 1;
            st.nacked_expected += per_message;
            *st.errors.entry(error_kind("publish not confirmed", &why)).or_default() += 1;
            return;
        }
        st.confirmed += 1;
        if let Some(b) = st.confirmed_seqs.get_mut(p) {
            b.insert(seq);
        }
        sh.confirmed.fetch_add(1, Relaxed);
        let win = *win.get_or_insert_with(|| Window::new(sh.t0.load(Relaxed), &sh.w));
        let lat = now.saturating_sub(intended);
        stats::record(&mut st.confirm_interval, lat);
        if win.contains(intended) {
            stats::record(&mut st.confirm_latency, lat);
        }
    })
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
