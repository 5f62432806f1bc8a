//! `Instant`: a point in the runtime's time, as `tokio::time::Instant`.
//!
//! It wraps `std::time::Instant` and differs from it in one way: [`now`]
//! reads the current runtime's clock, so while a test has paused that clock
//! (`time::pause`), `Instant::now()` stands still and moves with
//! `time::advance` and with the clock's jumps to the next timer, as the
//! timers and task deadlines do. Code that stores `Instant::now() + ttl`
//! and later sleeps until it (a cache's expiry, a rate limiter) then agrees
//! with the timers under paused time.
//!
//! Until some runtime in the process is first paused, `now` is
//! `std::time::Instant::now()` behind one relaxed load.
//!
//! [`now`]: Instant::now

use std::fmt;
use std::ops::{Add, AddAssign, Sub, SubAssign};
use std::time::Duration;

/// A measurement of a monotonically nondecreasing clock: the current
/// runtime's, which is real time unless a test has paused it.
///
/// It converts to and from `std::time::Instant` ([`from_std`],
/// [`into_std`], and `From` both ways); arithmetic with [`Duration`] and
/// the difference of two instants work as on std's.
///
/// [`from_std`]: Instant::from_std
/// [`into_std`]: Instant::into_std
///
/// # Examples
///
/// ```
/// use bulwark::time::{advance, pause, Duration, Instant};
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let start = Instant::now();
///     pause();
///     let paused_at = Instant::now();
///     advance(Duration::from_secs(90)).await;
///     // The paused clock moved by exactly what was advanced.
///     assert_eq!(Instant::now() - paused_at, Duration::from_secs(90));
///     assert!(start.elapsed() >= Duration::from_secs(90));
/// });
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant {
    std: std::time::Instant,
}

impl Instant {
    /// The current runtime's time now: real time, or the paused clock's
    /// time in a test that paused it. Outside a runtime, real time.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulwark::time::{sleep, Duration, Instant};
    ///
    /// let rt = bulwark::Runtime::new().unwrap();
    /// rt.block_on(async {
    ///     let before = Instant::now();
    ///     sleep(Duration::from_millis(5)).await;
    ///     assert!(Instant::now() >= before + Duration::from_millis(5));
    /// });
    /// ```
    #[inline]
    pub fn now() -> Instant {
        Instant { std: super::now() }
    }

    /// An `Instant` at the same point as `std`.
    ///
    /// # Examples
    ///
    /// ```
    /// let std = std::time::Instant::now();
    /// assert_eq!(bulwark::time::Instant::from_std(std).into_std(), std);
    /// ```
    pub fn from_std(std: std::time::Instant) -> Instant {
        Instant { std }
    }

    /// The same point as a `std::time::Instant`.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulwark::time::{Duration, Instant};
    ///
    /// let t = Instant::now();
    /// let std: std::time::Instant = (t + Duration::from_secs(1)).into_std();
    /// assert_eq!(std - t.into_std(), Duration::from_secs(1));
    /// ```
    pub fn into_std(self) -> std::time::Instant {
        self.std
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulwark::time::{Duration, Instant};
    ///
    /// let a = Instant::now();
    /// let b = a + Duration::from_millis(250);
    /// assert_eq!(b.duration_since(a), Duration::from_millis(250));
    /// assert_eq!(a.duration_since(b), Duration::ZERO);
    /// ```
    pub fn duration_since(&self, earlier: Instant) -> Duration {
        self.std.saturating_duration_since(earlier.std)
    }

    /// The time from `earlier` to `self`, or `None` if `earlier` is later.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulwark::time::{Duration, Instant};
    ///
    /// let a = Instant::now();
    /// let b = a + Duration::from_secs(2);
    /// assert_eq!(b.checked_duration_since(a), Some(Duration::from_secs(2)));
    /// assert_eq!(a.checked_duration_since(b), None);
    /// ```
    pub fn checked_duration_since(&self, earlier: Instant) -> Option<Duration> {
        self.std.checked_duration_since(earlier.std)
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulwark::time::{Duration, Instant};
    ///
    /// let a = Instant::now();
    /// let b = a + Duration::from_secs(2);
    /// assert_eq!(a.saturating_duration_since(b), Duration::ZERO);
    /// ```
    pub fn saturating_duration_since(&self, earlier: Instant) -> Duration {
        self.std.saturating_duration_since(earlier.std)
    }

    /// The time since `self` on the current runtime's clock (as
    /// [`now`](Self::now) reads it), or zero if `self` is later.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulwark::time::{advance, pause, Duration, Instant};
    ///
    /// let rt = bulwark::Runtime::new().unwrap();
    /// rt.block_on(async {
    ///     pause();
    ///     let t = Instant::now();
    ///     advance(Duration::from_secs(3600)).await;
    ///     assert_eq!(t.elapsed(), Duration::from_secs(3600));
    /// });
    /// ```
    pub fn elapsed(&self) -> Duration {
        Instant::now().duration_since(*self)
    }

    /// `self + duration`, or `None` if that cannot be represented.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulwark::time::{Duration, Instant};
    ///
    /// let t = Instant::now();
    /// assert!(t.checked_add(Duration::from_secs(1)).is_some());
    /// assert!(t.checked_add(Duration::MAX).is_none());
    /// ```
    pub fn checked_add(&self, duration: Duration) -> Option<Instant> {
        self.std.checked_add(duration).map(Instant::from_std)
    }

    /// `self - duration`, or `None` if that cannot be represented.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulwark::time::{Duration, Instant};
    ///
    /// let t = Instant::now();
    /// assert!(t.checked_sub(Duration::MAX).is_none());
    /// ```
    pub fn checked_sub(&self, duration: Duration) -> Option<Instant> {
        self.std.checked_sub(duration).map(Instant::from_std)
    }
}

impl From<std::time::Instant> for Instant {
    fn from(std: std::time::Instant) -> Instant {
        Instant::from_std(std)
    }
}

impl From<Instant> for std::time::Instant {
    fn from(t: Instant) -> std::time::Instant {
        t.into_std()
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// # Panics
    ///
    /// If the result overflows, as std's.
    fn add(self, rhs: Duration) -> Instant {
        Instant::from_std(self.std + rhs)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        self.std += rhs;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;

    fn sub(self, rhs: Duration) -> Instant {
        Instant::from_std(self.std - rhs)
    }
}

impl SubAssign<Duration> for Instant {
    fn sub_assign(&mut self, rhs: Duration) {
        self.std -= rhs;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;

    /// Zero if `rhs` is later (as std's and tokio's).
    fn sub(self, rhs: Instant) -> Duration {
        self.duration_since(rhs)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.std.fmt(f)
    }
}
