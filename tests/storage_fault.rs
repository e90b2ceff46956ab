//! Storage-fault test: a seeded write or fdatasync failure, injected
//! through the storage I/O trait, must poison the log (every later
//! persistent append refused, pending waiters failed) and nothing
//! confirmed may be missing after recovery. The seed is printed; rerun one
//! with RINGMQ_FAULT_SEED=<seed>.

mod common;

use common::run_local;
use ringmq::storage::io::{DmaIo, FaultOp, FaultPlan, FaultyIo, LogIo};
use ringmq::storage::{Storage, StorageError, StorageOptions};
use std::rc::Rc;
use std::time::Duration;

fn opts(dir: &std::path::Path) -> StorageOptions {
    common::log_options(dir, 65_536)
}

/// splitmix64: the seed decides which operation fails and when.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn one_seed(seed: u64) {
    let r = mix(seed);
    let op = if r & 1 == 0 { FaultOp::Write } else { FaultOp::Fsync };
    let nth = (r >> 1) % 40;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let confirmed: Vec<u64> = run_local(Duration::from_secs(30), move || async move {
        let plan = FaultPlan::new(op, nth);
        let io: Rc<dyn LogIo> = Rc::new(FaultyIo::new(DmaIo, plan.clone()));
        let mut confirmed = Vec::new();
        let Ok((log, _)) = Storage::<u64>::open(io, opts(&path)).await else {
            assert!(plan.fired.get(), "seed {seed}: open failed without a fault");
            return confirmed;
        };
        let q = match log.declare("q", &[]) {
            Ok(q) => q,
            Err(_) => return confirmed,
        };
        let mut seq = 0u64;
        for batch in 0..60u64 {
            let mut refused = false;
            for _ in 0..10 {
                match log.publish(q, seq, &[b'x'; 700]) {
                    Ok(_) => seq += 1,
                    Err(StorageError::Poisoned(_)) => refused = true,
                    Err(e) => panic!("seed {seed}: unexpected {e}"),
                }
            }
            if refused {
                assert!(plan.fired.get(), "seed {seed}: refused without a fault");
                break;
            }
            log.defer(batch);
            if batch % 7 == 3 {
                // Some acks too, so ack records are in the failing writes.
                log.ack(q, seq - 10, 700);
            }
            let f = log.flush().await;
            match f.result {
                Ok(()) => confirmed.extend(f.waiters),
                Err(_) => {
                    assert!(plan.fired.get(), "seed {seed}: flush failed without a fault");
                    assert!(log.poisoned().is_some(), "seed {seed}: a failed flush poisons");
                }
            }
        }
        if plan.fired.get() {
            assert!(log.poisoned().is_some(), "seed {seed}: fault fired but not poisoned");
            assert!(matches!(log.publish(q, seq, b"late"), Err(StorageError::Poisoned(_))));
        }
        confirmed
    });
    // Recovery with a healthy disk: every confirmed batch is there.
    let path = dir.path().to_path_buf();
    let present: Vec<u64> = run_local(Duration::from_secs(30), move || async move {
        let io: Rc<dyn LogIo> = Rc::new(DmaIo);
        let (_, rec) = Storage::<u64>::open(io, opts(&path)).await.expect("recovery after a fault");
        rec.queues.into_iter().flat_map(|q| q.messages.into_iter().map(|m| m.seq)).collect()
    });
    for b in confirmed {
        for s in b * 10..b * 10 + 10 {
            // Acked messages (first of some batches) are rightly absent.
            let acked = (b % 7 == 3) && s == b * 10;
            assert!(acked || present.contains(&s), "seed {seed}: confirmed message {s} (batch {b}) lost");
        }
    }
}

#[test]
fn injected_write_and_fsync_failures_never_lose_confirmed_messages() {
    let seeds: Vec<u64> = match std::env::var("RINGMQ_FAULT_SEED") {
        Ok(s) => vec![s.parse().expect("RINGMQ_FAULT_SEED is a u64")],
        Err(_) => {
            let base = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
            (0..12).map(|i| base.wrapping_add(i)).collect()
        }
    };
    for seed in seeds {
        eprintln!("storage fault seed {seed} (rerun: RINGMQ_FAULT_SEED={seed})");
        let r = std::panic::catch_unwind(|| one_seed(seed));
        if let Err(p) = r {
            eprintln!("FAILED with seed {seed}");
            std::panic::resume_unwind(p);
        }
    }
}

/// Acks taken while a flush's write is in flight, and that flush's
/// fdatasync fails: the log is poisoned with acks it will never write.
/// Before the fix `has_work()` stayed true and the shard's flusher ran
/// `flush()` in a loop that never yielded, so the whole shard stopped.
#[test]
fn a_poisoned_log_with_acks_pending_has_no_work_left() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_local(Duration::from_secs(30), move || async move {
        // fdatasync 0 is the open's, 1 the first flush's: 2 fails.
        let plan = FaultPlan::new(FaultOp::Fsync, 2);
        let io: Rc<dyn LogIo> = Rc::new(FaultyIo::new(DmaIo, plan.clone()));
        let (log, _) = Storage::<u64>::open(io, opts(&path)).await.expect("open");
        let log = Rc::new(log);
        let q = log.declare("q", &[]).unwrap();
        for seq in 0..4 {
            log.publish(q, seq, b"m").unwrap();
        }
        log.defer(1);
        assert!(log.flush().await.result.is_ok(), "the first flush is stored");
        log.publish(q, 4, b"m").unwrap();
        log.defer(2);
        let flushing = glommio::spawn_local({
            let log = log.clone();
            async move { log.flush().await }
        });
        // Let the flush take what is pending and start its write (on a
        // blocking thread), then ack while it is in flight.
        for _ in 0..3 {
            futures_lite::future::yield_now().await;
        }
        log.ack(q, 0, 1);
        log.ack(q, 1, 1);
        let f = flushing.await;
        assert!(plan.fired.get(), "the fdatasync failed");
        assert!(f.result.is_err() && f.waiters == vec![2], "the waiter hears of it");
        assert!(log.poisoned().is_some());
        assert!(!log.disk_full(), "an I/O error is not a full disk");
        assert!(!log.has_work(), "a poisoned log has nothing left to flush");
        let woke = common::maybe_within(Duration::from_millis(300), log.wait_work()).await;
        assert!(woke.is_none(), "the flusher sleeps");
        // A waiter is still answered (with the error) at once.
        log.defer(3);
        assert!(log.has_work());
        let f = log.flush().await;
        assert!(f.result.is_err() && f.waiters == vec![3]);
        assert!(!log.has_work());
    });
}
