//! The books one runtime keeps: its ledger kinds and its admission state,
//! shared by every layer.
//!
//! The executor writes here (a task admitted, shedding turned on) and the io
//! layer reads (a listener pauses `accept` while the runtime cannot take more
//! work), which is how a lower layer learns what a higher one decided
//! without an arrow pointing up.

use crate::ledger::Kind;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// One runtime's shared books.
#[derive(Debug)]
pub struct Books {
    /// Live tasks; the budget is the hard task ceiling (`max_tasks`).
    pub tasks: Kind,
    shedding: AtomicBool,
    pause_accept: AtomicBool,
    shedding_transitions: AtomicU64,
    rejected_ceiling: AtomicU64,
    rejected_shedding: AtomicU64,
    accept_backoffs: AtomicU64,
    accept_pauses: AtomicU64,
}

impl Default for Books {
    fn default() -> Self {
        Books::new(usize::MAX, false)
    }
}

impl Books {
    /// Books for a runtime with `max_tasks` live tasks at most; listeners
    /// pause while it cannot take more work if `pause_accept`.
    pub fn new(max_tasks: usize, pause_accept: bool) -> Books {
        Books {
            tasks: Kind::new("task", max_tasks),
            shedding: AtomicBool::new(false),
            pause_accept: AtomicBool::new(pause_accept),
            shedding_transitions: AtomicU64::new(0),
            rejected_ceiling: AtomicU64::new(0),
            rejected_shedding: AtomicU64::new(0),
            accept_backoffs: AtomicU64::new(0),
            accept_pauses: AtomicU64::new(0),
        }
    }

    /// True while adaptive admission sheds new work.
    #[inline]
    pub fn is_shedding(&self) -> bool {
        self.shedding.load(Relaxed)
    }

    /// Turns shedding on or off; counts the switches to on.
    pub fn set_shedding(&self, on: bool) {
        if self.shedding.swap(on, Relaxed) != on && on {
            self.shedding_transitions.fetch_add(1, Relaxed);
        }
    }

    /// Times shedding was switched on.
    pub fn shedding_transitions(&self) -> u64 {
        self.shedding_transitions.load(Relaxed)
    }

    /// Counts a spawn rejected at the ceiling.
    pub fn count_rejected_ceiling(&self) {
        self.rejected_ceiling.fetch_add(1, Relaxed);
    }

    /// Counts a spawn rejected by shedding.
    pub fn count_rejected_shedding(&self) {
        self.rejected_shedding.fetch_add(1, Relaxed);
    }

    /// Spawns rejected at the ceiling.
    pub fn rejected_ceiling(&self) -> u64 {
        self.rejected_ceiling.load(Relaxed)
    }

    /// Spawns rejected by shedding.
    pub fn rejected_shedding(&self) -> u64 {
        self.rejected_shedding.load(Relaxed)
    }

    /// Counts an `accept` that failed for want of fds or memory and backed
    /// off instead of retrying at once (bumped by the io layer's listeners).
    pub fn count_accept_backoff(&self) {
        self.accept_backoffs.fetch_add(1, Relaxed);
    }

    /// Counts a wait of a listener while admission paused accepting.
    pub fn count_accept_pause(&self) {
        self.accept_pauses.fetch_add(1, Relaxed);
    }

    /// `accept` failures for want of fds or memory, each followed by a
    /// back-off.
    pub fn accept_backoffs(&self) -> u64 {
        self.accept_backoffs.load(Relaxed)
    }

    /// Times a listener waited because admission paused accepting.
    pub fn accept_pauses(&self) -> u64 {
        self.accept_pauses.load(Relaxed)
    }

    /// Whether listeners should leave new connections in the kernel backlog
    /// now: the switch is on and the runtime sheds or is at its ceiling.
    #[inline]
    pub fn accept_paused(&self) -> bool {
        self.pause_accept.load(Relaxed) && (self.is_shedding() || self.tasks.is_full())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_pauses_at_the_ceiling_or_while_shedding_if_switched_on() {
        let b = Books::new(1, true);
        assert!(!b.accept_paused());
        assert!(b.tasks.try_acquire());
        assert!(b.accept_paused());
        b.tasks.release();
        b.set_shedding(true);
        assert!(b.accept_paused());
        b.set_shedding(true);
        b.set_shedding(false);
        assert_eq!(b.shedding_transitions(), 1);
        let off = Books::new(1, false);
        off.set_shedding(true);
        assert!(!off.accept_paused());
    }
}
