//! `Sleep`: a future that finishes at a deadline.

use super::Instant;
use crate::driver::{Handle, TimerKey};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Waits until `duration` has passed. The deadline is fixed when this is
/// called, not when it is first polled.
///
/// # Panics
///
/// Outside a bulwark runtime (there is no timer to set), as tokio's does.
///
/// # Examples
///
/// ```
/// use bulwark::time::{sleep, Duration, Instant};
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let start = Instant::now();
///     sleep(Duration::from_millis(10)).await;
///     // Never early: the deadline is rounded up to the wheel's next tick.
///     assert!(start.elapsed() >= Duration::from_millis(10));
/// });
/// ```
#[track_caller]
pub fn sleep(duration: Duration) -> Sleep {
    match crate::context::current() {
        Some(handle) => {
            // The driver's clock: virtual while a test has paused it.
            let deadline = handle
                .now()
                .checked_add(duration)
                .unwrap_or_else(far_future);
            Sleep::new(handle, deadline)
        }
        None => panic!("{}", crate::context::NO_RUNTIME),
    }
}

/// Waits until `deadline`.
///
/// # Panics
///
/// Outside a bulwark runtime.
///
/// # Examples
///
/// ```
/// use bulwark::time::{sleep_until, Duration, Instant};
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let at = Instant::now() + Duration::from_millis(5);
///     sleep_until(at).await;
///     assert!(Instant::now() >= at);
///     // A deadline already past is ready at once.
///     sleep_until(at - Duration::from_secs(1)).await;
/// });
/// ```
#[track_caller]
pub fn sleep_until(deadline: Instant) -> Sleep {
    match crate::context::current() {
        Some(handle) => Sleep::new(handle, deadline.into_std()),
        None => panic!("{}", crate::context::NO_RUNTIME),
    }
}

/// About 30 years from now: "never" for a deadline that would overflow.
pub(crate) fn far_future() -> std::time::Instant {
    std::time::Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

/// The future of [`sleep`] and [`sleep_until`]. It sets its timer when first
/// polled and takes it out of the wheel when dropped.
///
/// # Examples
///
/// Moving the deadline of a sleep already under way, as a keep-alive timer
/// does on each request:
///
/// ```
/// use bulwark::time::{sleep, Duration, Instant};
/// use std::pin::pin;
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let mut idle = pin!(sleep(Duration::from_secs(3600)));
///     let sooner = Instant::now() + Duration::from_millis(5);
///     idle.as_mut().reset(sooner);
///     assert_eq!(idle.deadline(), sooner);
///     idle.as_mut().await;
///     assert!(idle.is_elapsed());
/// });
/// ```
#[derive(Debug)]
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Sleep {
    handle: Handle,
    deadline: std::time::Instant,
    key: Option<TimerKey>,
    fired: bool,
}

impl Sleep {
    pub(crate) fn new(handle: Handle, deadline: std::time::Instant) -> Sleep {
        Sleep {
            handle,
            deadline,
            key: None,
            fired: false,
        }
    }

    /// The instant this sleep finishes.
    pub fn deadline(&self) -> Instant {
        Instant::from_std(self.deadline)
    }

    /// True once the deadline has been reached (as seen by a poll).
    pub fn is_elapsed(&self) -> bool {
        self.fired
    }

    /// Moves the deadline; the sleep runs again if it had finished.
    pub fn reset(self: Pin<&mut Self>, deadline: Instant) {
        let this = self.get_mut();
        this.cancel();
        this.deadline = deadline.into_std();
        this.fired = false;
    }

    fn cancel(&mut self) {
        if let Some(key) = self.key.take() {
            self.handle.cancel_timer(key);
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.fired {
            return Poll::Ready(());
        }
        let fired = match this.key {
            None => {
                // One lock: insert, and learn whether it was already due.
                let (key, fired) = this.handle.insert_timer(this.deadline, cx.waker());
                this.key = Some(key);
                fired
            }
            Some(key) => this.handle.poll_timer(key, cx.waker()),
        };
        if fired {
            this.fired = true;
            this.cancel();
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.cancel();
    }
}
