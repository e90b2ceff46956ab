//! A full disk, for real: a size-limited tmpfs (this needs root; without
//! it each test prints why and skips) holds the data dir of a real
//! one-shard broker.
//!
//! - A write that fails with ENOSPC poisons the shard's log as "disk
//!   full": persistent publishes are refused with `StorageFull` (42) and a
//!   message that says so, the shard keeps delivering, taking acks and
//!   serving transient queues, and it does not spin (its thread's CPU time
//!   over a second stays near zero; before the fix a poisoned log with a
//!   pending interval fdatasync or unlogged acks spun its flusher).
//! - A broker started on a full disk recovers, delivers and takes acks of
//!   what it holds and refuses new persistent publishes, saying why; once
//!   space is freed, a restart takes persistent publishes again. Over
//!   AMQP (pika) the refusal is a nack under confirms, else connection
//!   error 506 RESOURCE_ERROR saying the disk is full.
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use common::TestBroker;
use ringmq::client::blocking::Client;
use ringmq::client::{ClientError, ClientOptions};
use ringmq::protocol::ErrorCode;
use ringmq::server::config::Config;
use ringmq::storage::FsyncPolicy;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// The tests read the CPU time of threads named `ringmq-shard-0`: one
/// broker at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const WAIT: Duration = Duration::from_secs(5);
const BODY: usize = 4096;

/// A tmpfs of a few MiB, unmounted (lazily, if still busy) on drop.
struct SmallFs {
    dir: tempfile::TempDir,
}

impl SmallFs {
    fn mount(bytes: u64) -> Option<SmallFs> {
        let dir = tempfile::tempdir().expect("mount point");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(SmallFs { dir }),
            Ok(o) => {
                eprintln!("SKIPPED: cannot mount a small tmpfs: {}", String::from_utf8_lossy(&o.stderr).trim());
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Fills what is left with a file, one block at a time until ENOSPC.
    fn fill(&self) -> PathBuf {
        let path = self.dir.path().join("filler");
        let mut f = std::fs::File::create(&path).expect("filler");
        loop {
            match f.write_all(&[0xAB; 4096]) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc_enospc()) => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        let _ = f.sync_all();
        path
    }
}

fn libc_enospc() -> i32 {
    28 // ENOSPC on Linux
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let ok = std::process::Command::new("umount").arg(self.dir.path()).output().is_ok_and(|o| o.status.success());
        if !ok {
            let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
        }
    }
}

fn tweak(data_dir: &Path) -> impl FnOnce(&mut Config) + '_ {
    move |c: &mut Config| {
        c.data_dir = data_dir.to_path_buf();
        c.segment_bytes = 65_536;
        // Under `interval` a write that fails leaves the log dirty with
        // an fdatasync due: the case that spun.
        c.fsync = FsyncPolicy::Interval;
        c.fsync_interval_ms = 20;
        // The disk alarm would block publishers long before a 2 MiB
        // filesystem fills (its default limit is 50 MB); these tests are
        // about the write that fails anyway, so it is off.
        c.disk_free_limit_bytes = 0;
    }
}

fn client(b: &TestBroker) -> Client {
    Client::connect(ClientOptions { url: b.url(), ..Default::default() }).expect("connect")
}

fn body(i: u64) -> Vec<u8> {
    common::seq_body(i, BODY)
}

/// The refusal of a persistent publish on a full disk.
fn assert_full(r: Result<(), ClientError>) {
    match r {
        Err(ClientError::Server { code, message }) => {
            assert_eq!(ErrorCode::from_u16(code), Some(ErrorCode::StorageFull), "code {code}: {message}");
            assert!(message.contains("disk full"), "the refusal says why: {message}");
        }
        other => panic!("expected StorageFull, got {other:?}"),
    }
}

/// CPU time (clock ticks) of this process's threads named `name`.
fn thread_ticks(name: &str) -> u64 {
    let mut total = 0;
    for t in std::fs::read_dir("/proc/self/task").expect("/proc/self/task").flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        if &stat[open + 1..close] != name {
            continue;
        }
        // After the name: state (field 3) ... utime (14), stime (15).
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        total += f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    }
    total
}

/// The shard's thread CPU time over one idle second, in ticks (1/100 s).
fn idle_shard_ticks() -> u64 {
    let before = thread_ticks("ringmq-shard-0");
    std::thread::sleep(Duration::from_secs(1));
    thread_ticks("ringmq-shard-0") - before
}

/// A spinning flusher burns most of a second; an idle shard wakes every
/// 20 ms for its stop poll and little else.
const IDLE_TICKS_MAX: u64 = 20;

#[test]
fn enospc_refuses_persistent_publishes_and_the_shard_keeps_serving_without_spinning() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(fs) = SmallFs::mount(2 << 20) else { return };
    let data = fs.data_dir();
    let b = TestBroker::start_with(1, tweak(&data));
    // Bounded: a shard stuck in its flusher answers nothing.
    let url = b.url();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(|| fill_then_serve(&url));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(common::TEST_DEADLINE) {
        Ok(Ok(())) => {}
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!("the broker stopped answering within {:?} (a spinning shard?)", common::TEST_DEADLINE),
    }
    drop(b);
}

fn fill_then_serve(url: &str) {
    let connect = || Client::connect(ClientOptions { url: url.to_owned(), ..Default::default() }).expect("connect");
    let mut p = connect();
    let mut c = connect();
    assert_eq!(p.declare("dq", true).unwrap(), 0);
    assert_eq!(p.declare("tq", false).unwrap(), 0);
    let sub = c.subscribe("dq", 65_535).unwrap();
    // Publish until the disk is full; a consumer acks as it goes, so acks
    // are pending around the failing write.
    let (mut confirmed, mut received, mut refused) = (0u64, 0u64, None);
    let mut unacked = Vec::new();
    for batch in 0..1000u64 {
        let bodies: Vec<Vec<u8>> = (0..8).map(|i| body(batch * 8 + i)).collect();
        let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        match p.publish("dq", &refs, true) {
            Ok(()) => confirmed += 8,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
        // Half of them acked: the log keeps growing.
        while let Some(d) = c.recv(&sub, Duration::from_millis(1)).unwrap() {
            assert_eq!(common::body_seq(&d.body), received, "in order");
            if received % 2 == 0 {
                c.ack(&sub, d.tag).unwrap();
            } else {
                unacked.push(d.tag);
            }
            received += 1;
        }
    }
    assert_full(Err(refused.expect("a 2 MiB disk fills up")));
    assert!(confirmed > 0, "some publishes were confirmed before the disk filled");
    // Every later persistent publish is refused at once, and so is a new
    // durable queue.
    assert_full(p.publish("dq", &[b"late"], true));
    match p.declare("dq2", true) {
        Err(ClientError::Server { code, .. }) => assert_eq!(ErrorCode::from_u16(code), Some(ErrorCode::StorageFull)),
        other => panic!("a durable declare on a full disk: {other:?}"),
    }
    // The shard is idle, not spinning on work it can never do.
    let ticks = idle_shard_ticks();
    assert!(ticks <= IDLE_TICKS_MAX, "the poisoned shard used {ticks} ticks of CPU in an idle second");
    // Deliveries and acks go on: every confirmed message is delivered
    // (some refused ones too, if their write partly landed; none twice).
    for tag in unacked {
        c.ack(&sub, tag).unwrap();
    }
    while received < confirmed {
        let d = c.recv(&sub, WAIT).unwrap().expect("the confirmed messages are delivered");
        assert_eq!(common::body_seq(&d.body), received, "in order");
        c.ack(&sub, d.tag).unwrap();
        received += 1;
    }
    // Transient messages go on, into a transient queue and a durable one.
    p.publish("tq", &[b"t1", b"t2"], false).unwrap();
    p.publish("dq", &[b"transient"], false).unwrap();
    let tsub = p.subscribe("tq", 10).unwrap();
    for want in [&b"t1"[..], b"t2"] {
        let d = p.recv(&tsub, WAIT).unwrap().expect("transient delivery");
        assert_eq!(d.body, want);
        p.ack(&tsub, d.tag).unwrap();
    }
    loop {
        let d = c.recv(&sub, WAIT).unwrap().expect("the transient message in the durable queue");
        c.ack(&sub, d.tag).unwrap();
        if d.body[..] == b"transient"[..] {
            break;
        }
    }
    // Still idle after all that.
    let ticks = idle_shard_ticks();
    assert!(ticks <= IDLE_TICKS_MAX, "the poisoned shard used {ticks} ticks of CPU in an idle second");
}

#[test]
fn a_broker_started_on_a_full_disk_serves_what_it_holds_and_refuses_new_persistent_messages() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(fs) = SmallFs::mount(2 << 20) else { return };
    let data = fs.data_dir();
    {
        let b = TestBroker::start_with(1, tweak(&data));
        let mut p = client(&b);
        assert_eq!(p.declare("dq", true).unwrap(), 0);
        for i in 0..20 {
            p.publish("dq", &[&body(i)], true).unwrap();
        }
    }
    let filler = fs.fill();
    {
        let b = TestBroker::start_with(1, tweak(&data));
        let mut c = client(&b);
        assert_eq!(c.declare("dq", true).unwrap(), 20, "all 20 recovered");
        assert_full(c.publish("dq", &[b"new"], true));
        let sub = c.subscribe("dq", 100).unwrap();
        for i in 0..20 {
            let d = c.recv(&sub, WAIT).unwrap().expect("a recovered message");
            assert_eq!(common::body_seq(&d.body), i);
            assert!(d.redelivered, "recovered messages are marked redelivered");
            c.ack(&sub, d.tag).unwrap();
        }
        assert_eq!(c.declare("dq", true).unwrap(), 0, "all acked");
        c.declare("tq", false).unwrap();
        c.publish("tq", &[b"transient"], false).unwrap();
        assert_eq!(c.declare("tq", false).unwrap(), 1, "transient traffic goes on");
        let ticks = idle_shard_ticks();
        assert!(ticks <= IDLE_TICKS_MAX, "the shard started full used {ticks} ticks of CPU in an idle second");
        // AMQP: nack under confirms, else 506 RESOURCE_ERROR (pika).
        let run = common::pika::finish(common::pika::spawn("disk_full.py", b.amqp, &[]), Duration::from_secs(30));
        run.assert_ok("disk_full.py");
        let d = c.recv(&sub, WAIT).unwrap().expect("the transient message pika published");
        assert_eq!(&d.body[..], b"t", "only the transient message went in");
        c.ack(&sub, d.tag).unwrap();
    }
    // Space comes back: a restart takes persistent messages again. The
    // acks taken on the full disk could not be logged: those messages are
    // delivered again (at least once).
    std::fs::remove_file(filler).unwrap();
    let b = TestBroker::start_with(1, tweak(&data));
    let mut c = client(&b);
    assert_eq!(c.declare("dq", true).unwrap(), 20, "acks on a full disk are not stored (the transient one is gone)");
    c.publish("dq", &[&body(20)], true).expect("persistent publishes are taken once space is back");
    assert_eq!(c.declare("dq", true).unwrap(), 21);
}
