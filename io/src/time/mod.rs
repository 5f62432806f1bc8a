//! Time: `sleep`, `sleep_until`, `timeout`, `interval`, as in `tokio::time`.
//!
//! Every timer is an entry in one of the driver's timer wheels (see
//! [`driver`](crate::driver)): 1 ms resolution, set and cancelled in O(1),
//! fired by whichever worker turns the driver. A deadline is rounded up to
//! the next millisecond, so a timer never fires early.

pub(crate) mod clock;
mod instant;
mod interval;
mod sleep;
mod timeout;

pub use instant::Instant;
pub use interval::{interval, interval_at, Interval, MissedTickBehavior};
pub use sleep::{sleep, sleep_until, Sleep};
pub use std::time::Duration;
pub use timeout::{timeout, timeout_at, Timeout};

/// The current runtime's time: `std::time::Instant::now()`, or its virtual
/// time while a test has paused its clock ([`pause`]). Outside a runtime,
/// real time. Until some clock in the process is paused, one relaxed load
/// and the real time, without looking up the runtime.
#[inline]
pub(crate) fn now() -> std::time::Instant {
    if !clock::any_ever_paused() {
        return std::time::Instant::now();
    }
    crate::context::with_current(|h| h.now()).unwrap_or_else(std::time::Instant::now)
}

/// Stops the current runtime's clock, for tests, as tokio's `time::pause`:
/// from here its timers and task deadlines are due only when [`advance`]
/// moves the clock, or when nothing in the runtime can make progress but a
/// timer (every worker parked, no `block_on` polling, the blocking pool
/// idle), at which point the clock jumps to the next timer. A test that
/// sleeps an hour then takes no time.
///
/// Unlike tokio's, it works on the multi-thread runtime too. The timers,
/// `sleep`, `timeout`, `interval`, task deadlines and [`Instant::now`]
/// follow the paused clock.
///
/// # Panics
///
/// Outside a bulwark runtime, as tokio's does.
///
/// # Examples
///
/// ```
/// use bulwark::time::{pause, sleep, Duration, Instant};
///
/// let rt = bulwark::Runtime::new().unwrap();
/// let real = std::time::Instant::now();
/// rt.block_on(async {
///     pause();
///     let start = Instant::now();
///     // Nothing else can run: the clock jumps to the sleep's deadline.
///     sleep(Duration::from_secs(24 * 3600)).await;
///     assert!(start.elapsed() >= Duration::from_secs(24 * 3600));
/// });
/// assert!(real.elapsed() < Duration::from_secs(60), "a day took no time");
/// ```
#[track_caller]
pub fn pause() {
    match crate::context::current() {
        Some(h) => h.pause(),
        None => panic!("{}", crate::context::NO_RUNTIME),
    }
}

/// Lets the current runtime's clock run again from where it stands.
///
/// # Panics
///
/// Outside a bulwark runtime.
///
/// # Examples
///
/// ```
/// use bulwark::time::{advance, pause, resume, sleep, Duration, Instant};
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     pause();
///     let t = Instant::now();
///     advance(Duration::from_secs(60)).await;
///     resume();
///     // Running again, from a minute ahead: real time moves it on.
///     sleep(Duration::from_millis(2)).await;
///     assert!(t.elapsed() >= Duration::from_secs(60) + Duration::from_millis(2));
/// });
/// ```
#[track_caller]
pub fn resume() {
    match crate::context::current() {
        Some(h) => h.resume(),
        None => panic!("{}", crate::context::NO_RUNTIME),
    }
}

/// Moves the current runtime's paused clock forward by `duration`, then
/// yields once so that the timers now due fire, as tokio's
/// `time::advance`.
///
/// # Panics
///
/// Outside a bulwark runtime, or if the clock is not paused (as tokio's).
///
/// # Examples
///
/// ```
/// use bulwark::time::{advance, pause, sleep, Duration};
/// use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
/// use std::sync::Arc;
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     pause();
///     let woke = Arc::new(AtomicBool::new(false));
///     let flag = woke.clone();
///     let nap = bulwark::spawn(async move {
///         sleep(Duration::from_secs(10)).await;
///         flag.store(true, SeqCst);
///     });
///     bulwark::task::yield_now().await; // let it set its timer
///     advance(Duration::from_secs(9)).await;
///     assert!(!woke.load(SeqCst), "a second early");
///     advance(Duration::from_secs(1)).await;
///     nap.await.unwrap();
///     assert!(woke.load(SeqCst));
/// });
/// ```
#[track_caller]
pub fn advance(duration: Duration) -> impl std::future::Future<Output = ()> {
    let moved = match crate::context::current() {
        Some(h) => h.advance(duration),
        None => panic!("{}", crate::context::NO_RUNTIME),
    };
    assert!(
        moved,
        "time::advance needs a paused clock: call time::pause first"
    );
    crate::coop::YieldOnce::new()
}

/// Errors of the time functions.
pub mod error {
    use std::fmt;

    /// A [`timeout`](super::timeout) ran out before its future finished.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulwark::time::{error::Elapsed, timeout, Duration};
    ///
    /// let rt = bulwark::Runtime::new().unwrap();
    /// rt.block_on(async {
    ///     let err: Elapsed = timeout(Duration::from_millis(1), std::future::pending::<()>())
    ///         .await
    ///         .unwrap_err();
    ///     assert_eq!(err.to_string(), "deadline has elapsed");
    ///     let io: std::io::Error = err.into();
    ///     assert_eq!(io.kind(), std::io::ErrorKind::TimedOut);
    /// });
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Elapsed(pub(super) ());

    impl fmt::Display for Elapsed {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("deadline has elapsed")
        }
    }

    impl std::error::Error for Elapsed {}

    impl From<Elapsed> for std::io::Error {
        fn from(_: Elapsed) -> std::io::Error {
            std::io::ErrorKind::TimedOut.into()
        }
    }
}
