//! Crash test: `kill -9` a real `ringmq serve` repeatedly while a producer
//! publishes persistent messages with confirms and a consumer acks. After
//! every restart: no confirmed message is lost, and no message whose ack
//! was known durable comes back. Cycles: RINGMQ_CRASH_CYCLES (default 20);
//! `scripts/crash_cycles.sh N` runs more. The same again with 64 KiB
//! segments, compaction at 50 % live and a 1 MiB memory budget, so kills
//! land during compactions and with spilled messages.

mod common;

use common::{body_seq, queue_on, seq_body};
use ringmq::client::blocking::Client;
use ringmq::client::ClientOptions;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn serve(dir: &std::path::Path, config: Option<&std::path::Path>) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringmq"));
    cmd.args(["serve", "--cores", "2", "--no-pin", "--listen", "127.0.0.1:0", "--amqp-listen", "127.0.0.1:0"]);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let mut child = cmd
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("ringmq serve starts");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).expect("ready line");
    let native = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("native="))
        .unwrap_or_else(|| panic!("no ready line, got {line:?}"))
        .to_string();
    (child, native)
}

#[derive(Default)]
struct Books {
    confirmed: HashSet<u64>,
    /// Ids whose ack is known durable (a later confirm on the same shard
    /// covered it), and ids acked since the last such barrier.
    durably_acked: HashSet<u64>,
    acked_since_barrier: Vec<u64>,
    deliveries: HashMap<u64, u32>,
}

#[test]
fn kill_9_under_load_loses_no_confirmed_message() {
    let cycles: usize = std::env::var("RINGMQ_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    crash_cycles(cycles, None);
}

#[test]
fn kill_9_during_compaction_and_spill_loses_no_confirmed_message() {
    let cycles: usize = std::env::var("RINGMQ_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let conf = tempfile::tempdir().unwrap();
    let path = conf.path().join("ringmq.toml");
    std::fs::write(
        &path,
        "segment_bytes = 65536\ncompact_live_ratio_pct = 50\nmemory_budget_bytes = 1048576\nmetrics_listen = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    crash_cycles(cycles, Some(&path));
}

fn crash_cycles(cycles: usize, config: Option<&std::path::Path>) {
    let dir = tempfile::tempdir().unwrap();
    let q = queue_on(0, 2, "crash");
    let barrier = queue_on(0, 2, "barrier");
    let books = Arc::new(Mutex::new(Books::default()));
    let next_id = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    for cycle in 0..=cycles {
        let (mut child, native) = serve(dir.path(), config);
        let url = format!("ringmq://{native}");
        let opts = ClientOptions { url, ..Default::default() };
        let last = cycle == cycles;
        let stop = Arc::new(AtomicBool::new(false));
        let producer = (!last).then(|| {
            let (opts, q, books, next_id, stop) =
                (opts.clone(), q.clone(), books.clone(), next_id.clone(), stop.clone());
            std::thread::spawn(move || {
                let Ok(mut c) = Client::connect(opts) else { return };
                if c.declare(&q, true).is_err() {
                    return;
                }
                while !stop.load(Ordering::Relaxed) {
                    let first = next_id.fetch_add(20, Ordering::SeqCst);
                    let bodies: Vec<Vec<u8>> = (first..first + 20).map(|i| seq_body(i, 256)).collect();
                    let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
                    if c.publish(&q, &refs, true).is_err() {
                        return;
                    }
                    books.lock().unwrap().confirmed.extend(first..first + 20);
                }
            })
        });
        // The consumer: acks everything; every 50 acks it publishes a
        // persistent message on the same shard and connection, whose
        // confirm proves the acks before it are on disk.
        let consumer = {
            let (opts, q, barrier, books, stop) =
                (opts.clone(), q.clone(), barrier.clone(), books.clone(), stop.clone());
            std::thread::spawn(move || -> Result<(), String> {
                let mut c = Client::connect(opts).map_err(|e| e.to_string())?;
                c.declare(&q, true).map_err(|e| e.to_string())?;
                c.declare(&barrier, true).map_err(|e| e.to_string())?;
                let sub = c.subscribe(&q, 200).map_err(|e| e.to_string())?;
                let mut since = 0;
                loop {
                    let d = match c.recv(&sub, Duration::from_millis(if last { 1500 } else { 200 })) {
                        Ok(Some(d)) => d,
                        Ok(None) if last || stop.load(Ordering::Relaxed) => return Ok(()),
                        Ok(None) => continue,
                        Err(_) => return Ok(()),
                    };
                    let id = body_seq(&d.body);
                    {
                        let mut b = books.lock().unwrap();
                        if b.durably_acked.contains(&id) {
                            return Err(format!("message {id} came back after its ack was durable"));
                        }
                        *b.deliveries.entry(id).or_default() += 1;
                    }
                    if c.ack(&sub, d.tag).is_err() {
                        return Ok(());
                    }
                    books.lock().unwrap().acked_since_barrier.push(id);
                    since += 1;
                    if since >= 50 {
                        since = 0;
                        let pending = std::mem::take(&mut books.lock().unwrap().acked_since_barrier);
                        if c.publish(&barrier, &[b"b"], true).is_err() {
                            return Ok(());
                        }
                        books.lock().unwrap().durably_acked.extend(pending);
                        // Barrier messages would otherwise pin every segment.
                        if c.purge(&barrier).is_err() {
                            return Ok(());
                        }
                    }
                }
            })
        };
        if last {
            consumer.join().unwrap().expect("consumer");
        } else {
            std::thread::sleep(Duration::from_millis(250 + (cycle as u64 * 37) % 400));
            child.kill().expect("kill -9");
            stop.store(true, Ordering::Relaxed);
            consumer.join().unwrap().expect("consumer");
            if let Some(p) = producer {
                p.join().unwrap();
            }
            // Acks not covered by a barrier may or may not have made it.
            books.lock().unwrap().acked_since_barrier.clear();
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let b = books.lock().unwrap();
    let lost: Vec<u64> = b.confirmed.iter().filter(|id| !b.deliveries.contains_key(id)).copied().collect();
    assert!(
        lost.is_empty(),
        "confirmed but never delivered: {} messages, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    let dups = b.deliveries.values().filter(|n| **n > 1).count();
    eprintln!(
        "{cycles} kill -9 cycles in {:.1} s: {} confirmed, {} delivered, {} delivered more than once (acks not yet durable)",
        t0.elapsed().as_secs_f64(),
        b.confirmed.len(),
        b.deliveries.len(),
        dups
    );
    assert!(b.confirmed.len() > 100, "the workload ran");
}
