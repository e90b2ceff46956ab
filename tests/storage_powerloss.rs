//! Power loss under the real log: the log code runs over the simulated disk
//! of `ringmq::storage::sim`, which keeps unsynced writes and directory
//! changes apart from durable ones. Each seed picks a workload (declares,
//! publishes, acks, deletes, segment rolls, reuse and compaction), a crash
//! point (the operation at which the power fails) and what the power loss
//! does with every unsynced write (dropped, kept, or torn at a sector);
//! sometimes the power fails again during recovery. Recovery then runs on
//! what is left, and the check is exact: every confirmed message is there
//! with its bytes, every durable declare is there, a durably deleted queue
//! and a durably acked message are gone, and nothing is there that was
//! never published.
//!
//! `RINGMQ_POWERLOSS_SEEDS=N` (default 200) seeds from
//! `RINGMQ_POWERLOSS_BASE` (default 0); `RINGMQ_POWERLOSS_SEED=s` runs one.
//! `scripts/powerloss.sh N` runs many in release mode.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::run_local;
use ringmq::storage::sim::{mix, LossStats, SimDisk, SimIo};
use ringmq::storage::{Recovered, Storage, StorageOptions};
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

const BATCHES: u64 = 60;
const PER_BATCH: u64 = 10;

fn opts() -> StorageOptions {
    // A virtual path: nothing touches the real filesystem.
    common::log_options(Path::new("/sim/shard-0"), 65_536)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    /// Issued; no flush has returned Ok since.
    Pending,
    /// A flush returned Ok after it: the log promised it.
    Durable,
}

#[derive(Debug)]
struct Msg {
    published: Stage,
    acked: Option<Stage>,
}

#[derive(Debug)]
struct Q {
    id: u32,
    declared: Stage,
    deleted: Option<Stage>,
    msgs: BTreeMap<u64, Msg>,
    next_seq: u64,
}

/// What the workload did and what the log promised.
#[derive(Default, Debug)]
struct Model {
    queues: BTreeMap<String, Q>,
    confirmed_batches: u64,
}

impl Model {
    fn flushed(&mut self) {
        for q in self.queues.values_mut() {
            q.declared = Stage::Durable;
            if q.deleted.is_some() {
                q.deleted = Some(Stage::Durable);
            }
            for m in q.msgs.values_mut() {
                m.published = Stage::Durable;
                if m.acked.is_some() {
                    m.acked = Some(Stage::Durable);
                }
            }
        }
        self.confirmed_batches += 1;
    }
}

/// The entry of message `seq` of queue `q`: its length and every byte
/// follow from both, so a recovered entry is checked whole.
fn entry(q: u32, seq: u64) -> Vec<u8> {
    let r = mix((u64::from(q) << 48) ^ seq);
    let len = 100 + (r % 1200) as usize;
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&q.to_le_bytes());
    let mut x = r;
    while v.len() < len {
        x = mix(x);
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// The queue schedule: which queue is declared or deleted before `batch`.
fn schedule(batch: u64) -> Option<(&'static str, bool)> {
    match batch {
        0 => Some(("q0", true)),
        8 => Some(("q1", true)),
        20 => Some(("q2", true)),
        30 => Some(("q1", false)),
        35 => Some(("q3", true)),
        _ => None,
    }
}

/// Runs the workload of seed `w` until it ends or the power fails.
async fn workload(disk: Rc<SimDisk>, w: u64) -> Model {
    let mut model = Model::default();
    let Ok((log, _)) = Storage::<u64>::open(Rc::new(SimIo::new(disk.clone())), opts()).await else {
        return model;
    };
    let mut r = mix(w);
    for batch in 0..BATCHES {
        if step(&log, &mut model, batch, &mut r).is_err() {
            return model;
        }
        log.defer(batch);
        if log.flush().await.result.is_err() {
            return model;
        }
        model.flushed();
        if disk.crashed() {
            return model;
        }
        // The shard's background work, made deterministic: the next
        // segment prepared (or a dead one reused), dead ones deleted, a
        // compaction step when one is due.
        poll_once(log.housekeep_once()).await;
        if log.compaction_due() && !disk.crashed() {
            log.compact_step().await;
        }
        if disk.crashed() {
            return model;
        }
    }
    model
}

/// Polls `f` once. Over the simulated disk every I/O completes at once,
/// so one poll runs housekeeping to its end or to one of its back-off
/// sleeps (after a failure, or when nothing could be deleted), which a
/// test must not wait out.
async fn poll_once<F: std::future::Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match f.as_mut().poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

/// One batch's appends: the scheduled declare or delete, some acks of
/// confirmed messages, then publishes.
fn step(log: &Storage<u64>, model: &mut Model, batch: u64, r: &mut u64) -> Result<(), ()> {
    let mut next = || {
        *r = mix(*r);
        *r
    };
    match schedule(batch) {
        Some((name, true)) => {
            let id = log.declare(name, &[]).map_err(drop)?;
            let q = Q { id, declared: Stage::Pending, deleted: None, msgs: BTreeMap::new(), next_seq: 0 };
            model.queues.insert(name.to_string(), q);
        }
        Some((name, false)) => {
            let q = model.queues.get_mut(name).expect("scheduled after its declare");
            log.delete(q.id).map_err(drop)?;
            q.deleted = Some(Stage::Pending);
        }
        None => {}
    }
    // Most confirmed messages get acked, some stay: segments die, and
    // some are kept alive by a few messages (compaction).
    for q in model.queues.values_mut().filter(|q| q.deleted.is_none()) {
        for (seq, m) in q.msgs.iter_mut() {
            if m.published == Stage::Durable && m.acked.is_none() && next() % 100 < 60 {
                log.ack(q.id, *seq, entry(q.id, *seq).len());
                m.acked = Some(Stage::Pending);
            }
        }
    }
    let live: Vec<String> = model.queues.iter().filter(|(_, q)| q.deleted.is_none()).map(|(n, _)| n.clone()).collect();
    for _ in 0..PER_BATCH {
        let name = &live[(next() % live.len() as u64) as usize];
        let q = model.queues.get_mut(name).expect("listed");
        let seq = q.next_seq;
        log.publish(q.id, seq, &entry(q.id, seq)).map_err(drop)?;
        q.next_seq += 1;
        q.msgs.insert(seq, Msg { published: Stage::Pending, acked: None });
    }
    Ok(())
}

/// Opens the log on what the power loss left; `crash_at` fails the power
/// again during recovery.
async fn recover(disk: Rc<SimDisk>, crash_at: Option<u64>) -> Result<Recovered, String> {
    if let Some(n) = crash_at {
        disk.crash_at(disk.ops() + n);
    }
    let r = Storage::<u64>::open(Rc::new(SimIo::new(disk.clone())), opts()).await;
    r.map(|(_, rec)| rec).map_err(|e| e.to_string())
}

/// The exact check of one recovered state against the model: first that
/// nothing promised is lost, then that nothing is there that should not be.
fn check(model: &Model, rec: &Recovered) -> Result<(), String> {
    check_nothing_lost(model, rec)?;
    check_nothing_extra(model, rec)
}

fn check_nothing_lost(model: &Model, rec: &Recovered) -> Result<(), String> {
    for (name, q) in &model.queues {
        let rq = rec.queues.iter().find(|rq| rq.name == *name);
        let Some(rq) = rq else {
            if q.declared == Stage::Durable && q.deleted.is_none() {
                return Err(format!("queue {name}: durable declare lost"));
            }
            continue;
        };
        let present: std::collections::BTreeSet<u64> = rq.messages.iter().map(|m| m.seq).collect();
        for (seq, m) in &q.msgs {
            if m.published == Stage::Durable && m.acked.is_none() && !present.contains(seq) {
                return Err(format!("{name}: confirmed message {seq} lost"));
            }
        }
    }
    Ok(())
}

fn check_nothing_extra(model: &Model, rec: &Recovered) -> Result<(), String> {
    for rq in &rec.queues {
        let q = model.queues.get(&rq.name).ok_or_else(|| format!("queue {} recovered, never declared", rq.name))?;
        if q.deleted == Some(Stage::Durable) {
            return Err(format!("queue {} recovered after a durable delete", rq.name));
        }
        for m in &rq.messages {
            let want = q.msgs.get(&m.seq).ok_or_else(|| format!("{}: message {} never published", rq.name, m.seq))?;
            if want.acked == Some(Stage::Durable) {
                return Err(format!("{}: message {} back after a durable ack", rq.name, m.seq));
            }
            let got =
                rq.entries.get(&m.seq).ok_or_else(|| format!("{}: message {} without its entry", rq.name, m.seq))?;
            if got[..] != entry(q.id, m.seq)[..] {
                return Err(format!("{}: message {} recovered with other bytes", rq.name, m.seq));
            }
        }
    }
    Ok(())
}

/// What one seed did, for the totals.
#[derive(Default)]
struct Outcome {
    loss: LossStats,
    crashed_in_recovery: bool,
    confirmed_batches: u64,
}

/// One seed: calibrate the workload's operation count, crash it at a
/// point the seed picks, maybe crash recovery too, then check.
async fn one_seed(seed: u64) -> Result<Outcome, String> {
    let w = mix(seed ^ 0x5EED);
    let clean = SimDisk::new();
    workload(clean.clone(), w).await;
    let total = clean.ops();
    let disk = SimDisk::new();
    let point = mix(seed) % (total + 1);
    disk.crash_at(point);
    let model = workload(disk.clone(), w).await;
    let mut out = Outcome { confirmed_batches: model.confirmed_batches, ..Outcome::default() };
    out.loss = disk.power_loss(mix(seed ^ 1));
    if std::env::var("RINGMQ_POWERLOSS_SEED").is_ok() {
        eprintln!("after the power loss: {:?}", disk.names());
        let io = SimIo::new(disk.clone());
        for p in disk.names() {
            use ringmq::storage::io::LogIo;
            let f = io.open(&p).await.unwrap();
            let all = f.read_all().await.unwrap();
            let nz: Vec<usize> =
                all.chunks(512).enumerate().filter(|(_, c)| c.iter().any(|&b| b != 0)).map(|(i, _)| i).collect();
            eprintln!("{} len {} nonzero sectors {:?}", p.display(), all.len(), nz);
        }
    }
    let again = mix(seed ^ 2);
    let during = again.is_multiple_of(4).then_some((again >> 8) % 24);
    let at = |what: &str| {
        format!(
            "seed {seed}: crash at operation {point} of {total} ({:?}), crash in recovery at {during:?}: {what}",
            out.loss
        )
    };
    let rec = match recover(disk.clone(), during).await {
        Ok(rec) => rec,
        Err(_) if disk.crashed() => {
            out.crashed_in_recovery = true;
            disk.power_loss(mix(seed ^ 3));
            recover(disk.clone(), None).await.map_err(|e| at(&format!("recovery after a second crash failed: {e}")))?
        }
        Err(e) => return Err(at(&format!("recovery failed: {e}"))),
    };
    check(&model, &rec).map_err(|e| at(&e))?;
    Ok(out)
}

fn seeds() -> Vec<u64> {
    if let Ok(s) = std::env::var("RINGMQ_POWERLOSS_SEED") {
        return vec![s.parse().expect("RINGMQ_POWERLOSS_SEED is a u64")];
    }
    let n: u64 = std::env::var("RINGMQ_POWERLOSS_SEEDS").map_or(200, |s| s.parse().expect("a count"));
    let base: u64 = std::env::var("RINGMQ_POWERLOSS_BASE").map_or(0, |s| s.parse().expect("a u64"));
    (base..base + n).collect()
}

#[test]
fn power_loss_at_any_point_loses_nothing_confirmed() {
    let seeds = seeds();
    let n = seeds.len();
    let (failures, totals) = run_local(Duration::from_secs(3000), move || async move {
        let mut failures = Vec::new();
        let mut t = (LossStats::default(), 0u64, 0u64);
        for seed in seeds {
            match one_seed(seed).await {
                Ok(o) => {
                    t.0.writes_dropped += o.loss.writes_dropped;
                    t.0.writes_kept += o.loss.writes_kept;
                    t.0.writes_torn += o.loss.writes_torn;
                    t.0.dir_changes_undone += o.loss.dir_changes_undone;
                    t.1 += u64::from(o.crashed_in_recovery);
                    t.2 += o.confirmed_batches;
                }
                Err(e) => failures.push(e),
            }
        }
        (failures, t)
    });
    let (loss, in_recovery, batches) = totals;
    eprintln!(
        "power loss: {n} crash points, {} failed; unsynced writes dropped {}, kept {}, torn {}; \
         directory changes undone {}; second crash during recovery {in_recovery}; confirmed batches {batches}",
        failures.len(),
        loss.writes_dropped,
        loss.writes_kept,
        loss.writes_torn,
        loss.dir_changes_undone
    );
    assert!(failures.is_empty(), "{} of {n} crash points lost data:\n{}", failures.len(), failures.join("\n"));
    if n >= 100 {
        // The seeds exercised every kind of loss (else the check is weak).
        assert!(loss.writes_dropped > 0 && loss.writes_kept > 0 && loss.writes_torn > 0, "{loss:?}");
        assert!(loss.dir_changes_undone > 0 && in_recovery > 0 && batches > 0, "{loss:?}");
    }
}
