//! A panic in any thread must end `ringmq serve`, non-zero and logged, so
//! that a supervisor restarts it instead of keeping a broker with a dead
//! shard. `serve` installs `ringmq::server::fatal::exit_on_panic`; this
//! checks that hook in a child process (this test binary run again) that
//! runs a real two-shard broker and then panics in one of its threads.
//! (No panic can be planted in the broker itself without code that exists
//! only for the test; the shard threads are threads like this one.)
#![allow(clippy::unwrap_used)] // a test may unwrap: a panic is its failure

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "RINGMQ_TEST_PANIC_CHILD";
const TEST: &str = "a_panic_in_any_thread_ends_the_process_with_status_70_and_a_log_line";

#[test]
fn a_panic_in_any_thread_ends_the_process_with_status_70_and_a_log_line() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
    }
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", TEST, "--nocapture", "--test-threads=1"]).env(CHILD_ENV, "1");
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run the child");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the child did not end within 30 s after its panic");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(i32::from(ringmq::server::fatal::EXIT_PANIC)), "exit status; stderr:\n{stderr}");
    assert!(stderr.contains("planted in a test thread"), "the panic is printed:\n{stderr}");
    assert!(stderr.contains("a thread panicked: the process exits"), "the log line:\n{stderr}");
    assert!(!stderr.contains("survived"), "{stderr}");
}

/// The child: a running broker, the hook, then a panic in another thread.
fn child() -> ! {
    let _ = tracing_subscriber::fmt().with_writer(std::io::stderr).try_init();
    ringmq::server::fatal::exit_on_panic();
    let b = common::TestBroker::start();
    let _ =
        std::thread::Builder::new().name("doomed".into()).spawn(|| panic!("planted in a test thread")).unwrap().join();
    std::thread::sleep(Duration::from_secs(10));
    eprintln!("the process survived a panic");
    drop(b);
    std::process::exit(0);
}
