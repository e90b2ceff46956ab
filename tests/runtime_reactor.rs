//! The patched glommio reactor (vendor/glommio/RINGMQ-PATCHES.md) that
//! every shard runs on: preemption timers kept across reactor iterations
//! instead of re-armed per iteration, the ring link kept across sleeps,
//! and an executor that does not park with runnable task queues. Each test
//! runs real executors on their own threads and fails, rather than hangs,
//! when an executor sleeps through what should wake it.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

use glommio::{Latency, LocalExecutorBuilder, Placement, Shares};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Generous for a shared, busy machine: a missed wake-up is forever.
const WATCHDOG: Duration = Duration::from_secs(60);

/// Runs `f` on a new executor thread and returns its value, or fails the
/// test if the executor does not finish within the watchdog.
fn run_on_executor<T: Send + 'static, F>(builder: LocalExecutorBuilder, f: impl FnOnce() -> F + Send + 'static) -> T
where
    F: std::future::Future<Output = T> + 'static,
{
    let (tx, rx) = mpsc::channel();
    let handle = builder
        .spawn(move || async move {
            let v = f().await;
            tx.send(v).unwrap();
        })
        .unwrap();
    let v = rx.recv_timeout(WATCHDOG).expect("the executor stalled (parked with work to do?)");
    handle.join().unwrap();
    v
}

fn spin_for(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Tasks that are always runnable and never wait on I/O or a timer, with a
/// preemption period so short that the timer often fires between the
/// reactor's poll and the first task queue's run. Upstream glommio 0.9
/// took that for "nothing to run" and parked, for good: nothing else was
/// armed to wake it (this test stalled 3 times out of 3 on it).
#[test]
fn runnable_tasks_are_run_not_parked() {
    let builder = LocalExecutorBuilder::new(Placement::Unbound).preempt_timer(Duration::from_micros(20));
    let runs = run_on_executor(builder, || async {
        let deadline = Instant::now() + Duration::from_millis(500);
        let tasks: Vec<_> = (0..3)
            .map(|i| {
                glommio::spawn_local(async move {
                    let mut runs = 0u64;
                    while Instant::now() < deadline {
                        spin_for(Duration::from_micros(5 * i));
                        runs += 1;
                        futures_lite::future::yield_now().await;
                    }
                    runs
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await;
        }
        total
    });
    assert!(runs > 100, "only {runs} runs in 500 ms");
}

/// A parked executor wakes for its next timer, also when a preemption
/// timer from its last busy stretch is still armed (kept, not cancelled,
/// by the patch) and fires first.
#[test]
fn parked_executor_wakes_on_its_timers() {
    let builder = LocalExecutorBuilder::new(Placement::Unbound).preempt_timer(Duration::from_millis(1));
    let lates = run_on_executor(builder, || async {
        let mut lates = Vec::new();
        for i in 0..20u64 {
            // A busy stretch arms the preemption timer...
            let busy = Instant::now();
            while busy.elapsed() < Duration::from_micros(300) {
                spin_for(Duration::from_micros(20));
                futures_lite::future::yield_now().await;
            }
            // ...then a sleep parks the executor with it still pending.
            let want = Duration::from_millis(2 + i % 5);
            let t = Instant::now();
            glommio::timer::sleep(want).await;
            let took = t.elapsed();
            assert!(took >= want, "woke after {took:?}, before its timer {want:?}");
            lates.push(took - want);
        }
        lates
    });
    lates.iter().for_each(|late| assert!(*late < Duration::from_secs(1), "a timer {late:?} late"));
}

/// A parked executor wakes when another executor sends it a message over
/// a shared channel (the eventfd the reactor's latency ring reads).
#[test]
fn parked_executor_wakes_on_a_foreign_wake() {
    let (sender, receiver) = glommio::channels::shared_channel::new_bounded::<Instant>(16);
    let consumer = LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(move || async move {
            let rx = receiver.connect().await;
            let mut worst = Duration::ZERO;
            while let Some(sent) = rx.recv().await {
                worst = worst.max(sent.elapsed());
            }
            worst
        })
        .unwrap();
    let producer = LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(move || async move {
            let tx = sender.connect().await;
            for _ in 0..30 {
                // Long enough for the consumer to park between messages.
                glommio::timer::sleep(Duration::from_millis(3)).await;
                tx.send(Instant::now()).await.unwrap();
            }
        })
        .unwrap();
    producer.join().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(consumer.join().unwrap()));
    let worst = rx.recv_timeout(WATCHDOG).expect("the consumer stalled");
    assert!(worst < Duration::from_secs(1), "a message waited {worst:?}");
}

/// A task queue with `Latency::Matters(1 ms)` is preempted on time: a task
/// that spins until `need_preempt` sees it within about the period (the
/// patch may fire it early, never late). Upstream glommio shows the same
/// figures here (a debug build: median about 1 ms, every fourth run or so
/// 4–9 ms).
#[test]
fn latency_queue_is_preempted_on_time() {
    let builder = LocalExecutorBuilder::new(Placement::Unbound);
    let mut waits = run_on_executor(builder, || async {
        let tq =
            glommio::executor().create_task_queue(Shares::default(), Latency::Matters(Duration::from_millis(1)), "lat");
        glommio::spawn_local_into(
            async {
                let mut waits = Vec::new();
                for _ in 0..200 {
                    let t = Instant::now();
                    while !glommio::executor().need_preempt() {
                        assert!(t.elapsed() < WATCHDOG, "never preempted");
                        std::hint::spin_loop();
                    }
                    waits.push(t.elapsed());
                    glommio::yield_if_needed().await;
                }
                waits
            },
            tq,
        )
        .unwrap()
        .await
    });
    // The first run shares the reactor iteration that spawned it, whose
    // timer was armed for the spawning (default) queue's 100 ms: upstream
    // does the same.
    waits.remove(0);
    waits.sort();
    let median = waits[waits.len() / 2];
    assert!(median <= Duration::from_millis(2), "median wait for preemption {median:?}");
    assert!(waits[waits.len() - 1] < Duration::from_millis(50), "worst {:?}", waits[waits.len() - 1]);
}

/// A small xorshift for the gaps below: varied, and the same every run.
fn gaps(seed: u64) -> impl FnMut() -> Duration {
    let mut x = seed;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        Duration::from_micros(x % 40)
    }
}

/// The sleep's barrier is a SeqCst fence paired with one in every waker's
/// notify (upstream: a `membarrier` IPI per sleep). A wake lost to a wrong
/// barrier is an executor asleep with a message waiting, for good. Two
/// executors pass thousands of messages through a channel of one slot, so
/// each side sleeps and is woken by the other (room, then a message) many
/// times, with gaps from none to tens of microseconds to land wakes in
/// every part of the sleep's entry.
#[test]
fn foreign_wakes_are_never_lost_under_churn() {
    const N: u64 = 3000;
    let (sender, receiver) = glommio::channels::shared_channel::new_bounded::<u64>(1);
    let consumer = LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(move || async move {
            let rx = receiver.connect().await;
            let mut gap = gaps(0x2545_f491_4f6c_dd1d);
            let (mut next, mut sum) = (0u64, 0u64);
            while let Some(v) = rx.recv().await {
                assert_eq!(v, next, "out of order");
                next += 1;
                sum += v;
                spin_for(gap());
            }
            (next, sum)
        })
        .unwrap();
    let producer = LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(move || async move {
            let tx = sender.connect().await;
            let mut gap = gaps(0x9e37_79b9_7f4a_7c15);
            for i in 0..N {
                tx.send(i).await.unwrap();
                spin_for(gap());
            }
        })
        .unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        producer.join().unwrap();
        tx.send(consumer.join().unwrap()).unwrap();
    });
    let (count, sum) = rx.recv_timeout(WATCHDOG).expect("an executor slept through a wake");
    assert_eq!((count, sum), (N, N * (N - 1) / 2));
}

/// A plain thread wakes a task of a parked executor (glommio's foreign
/// waker queue, then the notify) thousands of times, with varied gaps:
/// every wake is seen.
#[test]
fn a_plain_thread_wakes_a_parked_executor() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    use std::task::{Poll, Waker};
    const N: u64 = 3000;
    let shared = Arc::new((AtomicU64::new(0), Mutex::new(None::<Waker>)));
    let seen = shared.clone();
    let (done_tx, done_rx) = mpsc::channel();
    let exec = LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(move || async move {
            let mut have = 0;
            while have < N {
                // Waits for the count to pass `have`: the waker is stored
                // before the count is read again, so a bump in between is
                // not missed here (only the executor could miss it).
                have = std::future::poll_fn(|cx| {
                    *seen.1.lock().unwrap() = Some(cx.waker().clone());
                    let c = seen.0.load(Ordering::SeqCst);
                    if c > have {
                        Poll::Ready(c)
                    } else {
                        Poll::Pending
                    }
                })
                .await;
            }
            done_tx.send(have).unwrap();
        })
        .unwrap();
    let mut gap = gaps(0x1234_5678_9abc_def1);
    for _ in 0..N {
        shared.0.fetch_add(1, Ordering::SeqCst);
        if let Some(w) = shared.1.lock().unwrap().take() {
            w.wake();
        }
        spin_for(gap());
    }
    let have = done_rx.recv_timeout(WATCHDOG).expect("the executor slept through a wake");
    assert_eq!(have, N);
    exec.join().unwrap();
}
