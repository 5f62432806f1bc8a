//! Time: `sleep`, `sleep_until`, `timeout`, `interval`, as in `tokio::time`.
//!
//! Every timer is an entry in one of the driver's timer wheels (see
//! [`driver`](crate::driver)): 1 ms resolution, set and cancelled in O(1),
//! fired by whichever worker turns the driver. A deadline is rounded up to
//! the next millisecond, so a timer never fires early.

mod interval;
mod sleep;
mod timeout;

pub use interval::{interval, interval_at, Interval, MissedTickBehavior};
pub use sleep::{sleep, sleep_until, Sleep};
pub use std::time::{Duration, Instant};
pub use timeout::{timeout, timeout_at, Timeout};

/// Errors of the time functions.
pub mod error {
    use std::fmt;

    /// A [`timeout`](super::timeout) ran out before its future finished.
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
