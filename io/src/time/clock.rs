//! The driver's clock: real time, or virtual time that tests can pause,
//! advance and resume (`bulwark::time::{pause, advance, resume}`, as
//! tokio's `test-util` has them).
//!
//! Every timer a driver holds is measured on its clock: the wheel's "now",
//! the deadline of a `sleep`, a `timeout` and a task's deadline. While the
//! clock runs it is `Instant::now()`, behind one relaxed load of a flag that
//! is set only once a test pauses it. Paused, it stands still, moved only by
//! [`advance`](Clock::advance) or, when the whole runtime is idle and a
//! timer is due, by the driver itself (auto-advance: see
//! `Driver::turn`), so a test that sleeps an hour takes no time.
//!
//! Virtual time is the real time at the moment of the last resume plus the
//! real time since, shifted by what was skipped: kept as a pair of
//! instants (`virt_ref`, `real_ref`) so that it never runs backwards.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Set when any clock in the process is first paused, never cleared: until
/// then `time::Instant::now()` is real time without looking up the runtime.
static ANY_EVER_PAUSED: AtomicBool = AtomicBool::new(false);

/// Whether any clock in the process has been paused.
#[inline]
pub(crate) fn any_ever_paused() -> bool {
    ANY_EVER_PAUSED.load(Relaxed)
}

/// One driver's clock.
#[derive(Debug)]
pub(crate) struct Clock {
    /// Set the first time the clock is paused and never cleared: until
    /// then `now` is `Instant::now()` with nothing else read.
    ever_paused: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    paused: bool,
    /// Virtual time at `real_ref` (while running) or now (while paused).
    virt_ref: Instant,
    real_ref: Instant,
}

impl Clock {
    /// A running clock at real time.
    pub(crate) fn new() -> Clock {
        let now = Instant::now();
        Clock {
            ever_paused: AtomicBool::new(false),
            state: Mutex::new(State {
                paused: false,
                virt_ref: now,
                real_ref: now,
            }),
        }
    }

    /// The clock's time now.
    #[inline]
    pub(crate) fn now(&self) -> Instant {
        if !self.ever_paused.load(Relaxed) {
            return Instant::now();
        }
        self.state.lock().now()
    }

    /// True until the clock is first paused: [`now`](Self::now) is real
    /// time.
    #[inline]
    pub(crate) fn is_real(&self) -> bool {
        !self.ever_paused.load(Relaxed)
    }

    /// Whether the clock stands still.
    pub(crate) fn is_paused(&self) -> bool {
        self.ever_paused.load(Relaxed) && self.state.lock().paused
    }

    /// Stops the clock at its time now. Pausing a paused clock does
    /// nothing.
    pub(crate) fn pause(&self) {
        let mut s = self.state.lock();
        if !s.paused {
            s.virt_ref = s.now();
            s.paused = true;
        }
        self.ever_paused.store(true, Relaxed);
        ANY_EVER_PAUSED.store(true, Relaxed);
    }

    /// Lets the clock run again from where it stands. Resuming a running
    /// clock does nothing.
    pub(crate) fn resume(&self) {
        let mut s = self.state.lock();
        if s.paused {
            s.real_ref = Instant::now();
            s.paused = false;
        }
    }

    /// Moves a paused clock forward by `by`. False (and nothing moves) if
    /// the clock runs.
    pub(crate) fn advance(&self, by: Duration) -> bool {
        let mut s = self.state.lock();
        if !s.paused {
            return false;
        }
        s.virt_ref = s.virt_ref.checked_add(by).unwrap_or(s.virt_ref);
        true
    }

    /// Moves a paused clock forward to `to`, if that is later than it
    /// stands (auto-advance to the next timer). True if it moved.
    pub(crate) fn advance_to(&self, to: Instant) -> bool {
        let mut s = self.state.lock();
        if s.paused && to > s.virt_ref {
            s.virt_ref = to;
            return true;
        }
        false
    }
}

impl State {
    fn now(&self) -> Instant {
        if self.paused {
            self.virt_ref
        } else {
            self.virt_ref + self.real_ref.elapsed()
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_paused_clock_stands_still_moves_on_advance_and_resumes_from_there() {
        let c = Clock::new();
        assert!(!c.is_paused());
        c.pause();
        let t0 = c.now();
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(c.now(), t0, "paused: real time does not move it");
        assert!(c.advance(Duration::from_secs(3600)));
        assert_eq!(c.now(), t0 + Duration::from_secs(3600));
        assert!(!c.advance_to(t0), "never backwards");
        assert!(c.advance_to(t0 + Duration::from_secs(7200)));
        c.resume();
        let t1 = c.now();
        assert!(t1 >= t0 + Duration::from_secs(7200));
        std::thread::sleep(Duration::from_millis(5));
        assert!(c.now() >= t1 + Duration::from_millis(5), "running again");
        assert!(
            !c.advance(Duration::from_secs(1)),
            "a running clock is not advanced"
        );
    }
}
