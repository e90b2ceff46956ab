//! openraft's [`AsyncRuntime`] on glommio: every task openraft spawns runs
//! on the current glommio executor (the shard hosting the Raft group), and
//! every timer is a glommio timer. No tokio runtime exists in the broker;
//! openraft's own use of tokio is its `sync` channels and `select!`, which
//! need none.
//!
//! This is why openraft runs in its `singlethreaded` mode: glommio's tasks
//! and timers are `!Send` (they live on one executor), and so is the
//! `Raft` handle built on them.
//!
//! | openraft asks for | given by |
//! |---|---|
//! | `spawn` | `glommio::spawn_local(..).detach()`: a dropped handle leaves the task running, as openraft expects of tokio's |
//! | `sleep`, `sleep_until` | [`Sleep`] over `glommio::timer::Timer` |
//! | `timeout`, `timeout_at` | [`Timeout`]: the future, then a glommio timer |
//! | `Instant` | [`GlommioInstant`], `std::time::Instant` (the clock glommio's timers read) |
//! | thread-local RNG | `rand::rngs::ThreadRng` |
//! | oneshot | `tokio::sync::oneshot`, which needs no runtime |

use glommio::timer::Timer;
use openraft::{AsyncRuntime, OptionalSend};
use std::fmt;
use std::future::Future;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// The runtime named in a Raft type config: `type AsyncRuntime = GlommioRuntime`.
/// Every call must be made on a thread running a glommio executor (spawn and
/// the timers panic elsewhere, as glommio's own do).
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct GlommioRuntime;

/// A spawned task ended without a value: it was cancelled, which on glommio
/// means its executor stopped before the task finished.
#[derive(Debug, thiserror::Error)]
#[error("the task was cancelled (its glommio executor stopped)")]
pub struct TaskCancelled;

/// A timeout fired before the future it guarded finished.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("deadline elapsed")]
pub struct Elapsed;

/// The handle openraft awaits for a spawned task's value. glommio's
/// detached handle yields `None` when the task was cancelled.
pub struct JoinHandle<T>(glommio::task::JoinHandle<T>);

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, TaskCancelled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|v| v.ok_or(TaskCancelled))
    }
}

/// A glommio timer whose output is `()`, as openraft's `Sleep` must be.
pub struct Sleep(Timer);

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

pin_project_lite::pin_project! {
    /// A future bounded by a glommio timer. The future is polled first, so
    /// one that is ready at the deadline still counts as done.
    pub struct Timeout<F> {
        #[pin]
        future: F,
        timer: Timer,
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.future.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        Pin::new(this.timer).poll(cx).map(|_| Err(Elapsed))
    }
}

/// openraft's clock: `std::time::Instant`, the same clock glommio's timers
/// compare against, so a deadline computed here is the one a timer fires at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GlommioInstant(std::time::Instant);

impl openraft::Instant for GlommioInstant {
    fn now() -> Self {
        Self(std::time::Instant::now())
    }
}

impl Add<Duration> for GlommioInstant {
    type Output = Self;
    fn add(self, d: Duration) -> Self {
        Self(self.0 + d)
    }
}

impl AddAssign<Duration> for GlommioInstant {
    fn add_assign(&mut self, d: Duration) {
        self.0 += d;
    }
}

impl Sub<Duration> for GlommioInstant {
    type Output = Self;
    fn sub(self, d: Duration) -> Self {
        Self(self.0 - d)
    }
}

impl SubAssign<Duration> for GlommioInstant {
    fn sub_assign(&mut self, d: Duration) {
        self.0 -= d;
    }
}

impl Sub for GlommioInstant {
    type Output = Duration;
    /// Saturates at zero: openraft's trait promises a non-negative elapsed
    /// time, and an earlier minus a later instant is "no time".
    fn sub(self, earlier: Self) -> Duration {
        self.0.saturating_duration_since(earlier.0)
    }
}

/// The sending half of openraft's oneshot (a newtype: openraft's trait for
/// it is foreign, and so is tokio's sender).
pub struct OneshotSender<T>(tokio::sync::oneshot::Sender<T>);

impl<T> fmt::Debug for OneshotSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneshotSender").finish_non_exhaustive()
    }
}

impl<T: OptionalSend> openraft::async_runtime::AsyncOneshotSendExt<T> for OneshotSender<T> {
    fn send(self, t: T) -> Result<(), T> {
        self.0.send(t)
    }
}

fn until(deadline: GlommioInstant) -> Duration {
    deadline.0.saturating_duration_since(std::time::Instant::now())
}

impl AsyncRuntime for GlommioRuntime {
    type JoinError = TaskCancelled;
    type JoinHandle<T: OptionalSend + 'static> = JoinHandle<T>;
    type Sleep = Sleep;
    type Instant = GlommioInstant;
    type TimeoutError = Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = Timeout<T>;
    type ThreadLocalRng = rand::rngs::ThreadRng;
    type OneshotSender<T: OptionalSend> = OneshotSender<T>;
    type OneshotReceiverError = tokio::sync::oneshot::error::RecvError;
    type OneshotReceiver<T: OptionalSend> = tokio::sync::oneshot::Receiver<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        // Detached: openraft drops some handles (the snapshot builder's)
        // and expects the task to go on, as a dropped tokio handle does; a
        // dropped glommio `Task` would cancel it.
        JoinHandle(glommio::spawn_local(future).detach())
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        Sleep(Timer::new(duration))
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        Sleep(Timer::new(until(deadline)))
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(duration: Duration, future: F) -> Self::Timeout<R, F> {
        Timeout { future, timer: Timer::new(duration) }
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(deadline: Self::Instant, future: F) -> Self::Timeout<R, F> {
        Self::timeout(until(deadline), future)
    }

    fn is_panic(_: &Self::JoinError) -> bool {
        // A panicking glommio task unwinds its executor's thread rather
        // than ending as a join error, so a join error is never a panic.
        false
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        rand::thread_rng()
    }

    fn oneshot<T>() -> (Self::OneshotSender<T>, Self::OneshotReceiver<T>)
    where
        T: OptionalSend,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (OneshotSender(tx), rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::async_runtime::AsyncOneshotSendExt;
    use openraft::Instant as _;

    /// Every part of the runtime, inside a glommio executor on a thread
    /// where no tokio runtime exists: had any of them reached a tokio timer
    /// or `tokio::spawn`, it would panic ("there is no reactor running" /
    /// "must be called from the context of a Tokio 1.x runtime"). The
    /// control at the end shows that a tokio timer here does panic, so the
    /// passing calls above it are not tokio's.
    #[test]
    fn runs_on_glommio_without_tokio() {
        let out = std::thread::spawn(|| {
            glommio::LocalExecutor::default().run(async {
                let start = GlommioInstant::now();

                GlommioRuntime::sleep(Duration::from_millis(20)).await;
                assert!(start.elapsed() >= Duration::from_millis(20));

                let at = GlommioInstant::now() + Duration::from_millis(20);
                GlommioRuntime::sleep_until(at).await;
                assert!(GlommioInstant::now() >= at);

                // A spawned task runs on this executor and hands back its value.
                let here = std::thread::current().id();
                let h = GlommioRuntime::spawn(async move { std::thread::current().id() == here });
                assert!(h.await.expect("the task finished"));

                // A dropped handle does not cancel its task.
                let (tx, rx) = GlommioRuntime::oneshot::<u32>();
                drop(GlommioRuntime::spawn(async move {
                    GlommioRuntime::sleep(Duration::from_millis(5)).await;
                    tx.send(7).expect("the receiver waits");
                }));
                assert_eq!(rx.await.expect("the detached task sent"), 7);

                // A timeout that fires, and one that does not.
                let slow = GlommioRuntime::sleep(Duration::from_secs(5));
                let t0 = GlommioInstant::now();
                let r = GlommioRuntime::timeout(Duration::from_millis(20), slow).await;
                assert_eq!(r, Err(Elapsed));
                assert!(t0.elapsed() < Duration::from_secs(2), "the timer fired, not the sleep");
                let at = GlommioInstant::now() + Duration::from_secs(5);
                let r = GlommioRuntime::timeout_at(at, async { 3 }).await;
                assert_eq!(r, Ok(3));

                // A deadline in the past times out at once, without a panic.
                let past = GlommioInstant::now() - Duration::from_millis(1);
                let r = GlommioRuntime::timeout_at(past, GlommioRuntime::sleep(Duration::from_secs(5)));
                assert_eq!(r.await, Err(Elapsed));

                // A dropped sender is an error at the receiver, not a hang.
                let (tx, rx) = GlommioRuntime::oneshot::<u32>();
                drop(tx);
                assert!(rx.await.is_err());
            });

            // The control: the same thread, no runtime, a tokio timer.
            std::panic::catch_unwind(|| {
                drop(tokio::time::sleep(Duration::from_millis(1)));
            })
            .is_err()
        })
        .join()
        .expect("the executor thread did not panic");
        assert!(out, "a tokio timer outside a tokio runtime panics");
    }

    #[test]
    fn instants_saturate() {
        let a = GlommioInstant::now();
        let b = a + Duration::from_millis(10);
        assert_eq!(b - a, Duration::from_millis(10));
        assert_eq!(a - b, Duration::ZERO);
        let mut c = b;
        c -= Duration::from_millis(10);
        assert_eq!(c, a);
        c += Duration::from_millis(1);
        assert!(c > a);
    }
}
