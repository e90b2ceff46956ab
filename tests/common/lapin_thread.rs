//! lapin's futures run to completion on a thread of their own, bounded
//! in time (lapin brings its own executor: no glommio here).

use std::sync::mpsc;
use std::time::Duration;

/// Runs `f` on a new thread; its value, or a panic naming what failed:
/// lapin's error, or the deadline (a client that hangs, or panicked).
pub fn on_thread<F, T>(deadline: Duration, f: F) -> T
where
    F: std::future::Future<Output = lapin::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(futures_lite::future::block_on(f));
    });
    match rx.recv_timeout(deadline) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("lapin: {e}"),
        Err(_) => panic!("the lapin client did not finish within {deadline:?} (or panicked)"),
    }
}
