//! `timeout`: a future with a deadline.

use super::error::Elapsed;
use super::sleep::{sleep_until, Sleep};
use super::Instant;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Runs `future` for at most `duration`: its output, or `Err(Elapsed)` (and
/// the future dropped with the `Timeout`) if time runs out first.
///
/// # Panics
///
/// Outside a bulwark runtime.
///
/// # Examples
///
/// ```
/// use bulwark::time::{timeout, Duration};
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     assert_eq!(timeout(Duration::from_secs(10), async { 5 }).await, Ok(5));
///     let never = std::future::pending::<()>();
///     assert!(timeout(Duration::from_millis(5), never).await.is_err());
/// });
/// ```
#[track_caller]
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout {
        future,
        sleep: super::sleep(duration),
    }
}

/// As [`timeout`], with a deadline instead of a duration.
///
/// # Panics
///
/// Outside a bulwark runtime.
///
/// # Examples
///
/// ```
/// use bulwark::time::{timeout_at, Duration, Instant};
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     // One deadline for several steps.
///     let deadline = Instant::now() + Duration::from_millis(20);
///     assert_eq!(timeout_at(deadline, async { 1 }).await, Ok(1));
///     let stuck = timeout_at(deadline, std::future::pending::<()>()).await;
///     assert!(stuck.is_err());
///     assert!(Instant::now() >= deadline);
/// });
/// ```
#[track_caller]
pub fn timeout_at<F: Future>(deadline: Instant, future: F) -> Timeout<F> {
    Timeout {
        future,
        sleep: sleep_until(deadline),
    }
}

/// The future of [`timeout`] and [`timeout_at`].
///
/// # Examples
///
/// ```
/// use bulwark::time::{timeout, Duration};
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let t = timeout(Duration::from_secs(1), async { "inner" });
///     // The wrapped future can be looked at, or taken back unpolled.
///     let inner = t.into_inner();
///     assert_eq!(inner.await, "inner");
/// });
/// ```
#[derive(Debug)]
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Timeout<F> {
    future: F,
    sleep: Sleep,
}

impl<F> Timeout<F> {
    /// The wrapped future.
    pub fn get_ref(&self) -> &F {
        &self.future
    }

    /// Gives the wrapped future back.
    pub fn into_inner(self) -> F {
        self.future
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `future` is structurally pinned: it is never moved out of a
        // pinned `Timeout` (`into_inner` takes `self` by value, which needs
        // `Unpin` or an unpinned value). `sleep` is `Unpin`.
        let (future, sleep) = unsafe {
            let this = self.get_unchecked_mut();
            (
                Pin::new_unchecked(&mut this.future),
                Pin::new(&mut this.sleep),
            )
        };
        if let Poll::Ready(out) = future.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        match sleep.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed(()))),
            Poll::Pending => Poll::Pending,
        }
    }
}
