//! A process-wide clock in nanoseconds, for the times a task carries (when
//! it was spawned): a `u64` in the header rather than a 16-byte `Instant`.
//!
//! Reading it costs an `Instant::now()`; the spawn path on a worker avoids
//! even that by using the worker's coarse time, refreshed at its
//! maintenance ticks and when it wakes (see `scheduler::worker`).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since the process-wide epoch (never 0).
pub(crate) fn now() -> u64 {
    nanos_at(Instant::now())
}

/// `t` in nanoseconds since the process-wide epoch (never 0): for a caller
/// that needs both the `Instant` and the nanoseconds of one clock read.
pub(crate) fn nanos_at(t: Instant) -> u64 {
    (t.saturating_duration_since(epoch()).as_nanos() as u64).max(1)
}

/// Time from `then` (a value of [`now`]) to now; zero if `then` is later.
pub(crate) fn since(then: u64) -> Duration {
    Duration::from_nanos(now().saturating_sub(then))
}
