//! Admission: what happens to a spawn when the runtime cannot take more.
//!
//! Every spawned task needs a permit of the ledger kind `task`, whose budget
//! is `max_tasks` (see `bulwark_metrics::ledger`). At a full budget the
//! runtime's [`Admission`] policy decides: `Reject` (the spawn's
//! `JoinHandle` resolves at once to a rejected `JoinError`), `Wait` (the task
//! queues, first come first served, and starts when a permit frees), or
//! `Adaptive`, which also sheds *before* the ceiling when the scheduling
//! delay says the workers are overwhelmed.
//!
//! Adaptive is CoDel (Nichols & Jacobson, "Controlling Queue Delay", 2012) on
//! the time from a task's wake to its poll: if the smallest delay seen in a
//! whole `interval` is above `target`, the queue is standing, not bursting,
//! and new spawns are shed until an interval's minimum is back under the
//! target (or a worker runs out of work, which no overloaded runtime does).
//! Defaults are 5 ms and 100 ms, as Facebook's and folly's CoDel. Tasks
//! spawned with `task::Builder::essential()` are never shed.

use crate::task::Notified;
use bulwark_metrics::ledger::Waiter;
use bulwark_metrics::Books;
use parking_lot::Mutex;
use std::sync::atomic::{
    AtomicU64, AtomicU8, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed,
};
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

/// What a spawn does when the runtime cannot take more work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Admission {
    /// At the ceiling, refuse: `spawn`'s `JoinHandle` resolves at once to a
    /// `JoinError` with `is_rejected()`, `try_spawn` gives the future back.
    /// The default.
    #[default]
    Reject,
    /// At the ceiling, queue: the task starts when a permit frees, first come
    /// first served. `spawn` still returns at once; the task counts as live
    /// (not admitted) while it waits.
    Wait,
    /// Shed early on a latency signal (CoDel on scheduling delay), and reject
    /// at the ceiling.
    Adaptive {
        /// Acceptable standing scheduling delay (default 5 ms).
        target: Duration,
        /// Window over which the minimum delay must stay above `target` to
        /// shed (default 100 ms).
        interval: Duration,
    },
}

impl Admission {
    /// `Adaptive` with the defaults: 5 ms target, 100 ms interval.
    pub fn adaptive() -> Admission {
        Admission::Adaptive {
            target: Duration::from_millis(5),
            interval: Duration::from_millis(100),
        }
    }
}

/// What admission decided for one spawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Holds a permit: run it.
    Admit,
    /// Queue it for the next free permit.
    Queue,
    /// Refuse it; `shedding` says whether adaptive shedding (not the ceiling)
    /// refused it.
    Reject { shedding: bool },
}

/// The runtime's admission: policy, ceiling books, CoDel state.
pub(crate) struct Admitter {
    policy: Admission,
    /// `None` when there is no ceiling (`max_tasks(usize::MAX)`): no
    /// accounting at all, nothing on the hot path.
    ceiling: bool,
    pub(crate) books: Arc<Books>,
    codel: Option<Codel>,
}

impl Admitter {
    pub(crate) fn new(policy: Admission, books: Arc<Books>) -> Admitter {
        let codel = match policy {
            Admission::Adaptive { target, interval } => Some(Codel::new(target, interval)),
            _ => None,
        };
        Admitter {
            policy,
            ceiling: books.tasks.budget() != usize::MAX,
            books,
            codel,
        }
    }

    /// Decides for a spawn. `may_queue`: the caller can queue the task
    /// (`spawn`), as opposed to wanting an answer now (`try_spawn`).
    #[inline]
    pub(crate) fn decide(&self, essential: bool, may_queue: bool) -> Decision {
        if self.codel.is_some() && !essential && self.books.is_shedding() {
            self.books.count_rejected_shedding();
            return Decision::Reject { shedding: true };
        }
        if !self.ceiling {
            return Decision::Admit;
        }
        let waits = self.policy == Admission::Wait && may_queue;
        let got = if waits {
            self.books.tasks.try_acquire_fair()
        } else {
            self.books.tasks.try_acquire()
        };
        match (got, waits) {
            (true, _) => Decision::Admit,
            (false, true) => Decision::Queue,
            (false, false) => {
                self.books.count_rejected_ceiling();
                Decision::Reject { shedding: false }
            }
        }
    }

    /// Whether spawns are accounted against the ceiling at all.
    pub(crate) fn has_ceiling(&self) -> bool {
        self.ceiling
    }

    /// A task that held a permit ended.
    #[inline]
    pub(crate) fn release(&self) {
        self.books.tasks.release();
    }

    /// Whether scheduling delay must be sampled (adaptive admission is on).
    #[inline]
    pub(crate) fn samples_delay(&self) -> bool {
        self.codel.is_some()
    }

    /// A task was polled `delay` after it was queued.
    pub(crate) fn observe_delay(&self, now: Instant, delay: Duration) {
        if let Some(codel) = &self.codel {
            if let Some(shed) = codel.observe(now, delay) {
                self.books.set_shedding(shed);
            }
        }
    }

    /// A worker found no work anywhere: whatever the last interval said, the
    /// runtime is not overloaded now.
    pub(crate) fn on_idle(&self) {
        if self.codel.is_some() && self.books.is_shedding() {
            self.books.set_shedding(false);
            if let Some(codel) = &self.codel {
                codel.restart(Instant::now());
            }
        }
    }
}

/// Nanoseconds since a process-wide epoch: what a task's `queued_at` holds
/// (0 means "not sampled").
pub(crate) fn now_nanos() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    (epoch.elapsed().as_nanos() as u64).max(1)
}

/// CoDel's state: the smallest delay seen in the current interval.
struct Codel {
    target: u64,
    interval: u64,
    start: Instant,
    /// Nanoseconds since `start` at which the current interval began.
    interval_start: AtomicU64,
    min_delay: AtomicU64,
}

impl Codel {
    fn new(target: Duration, interval: Duration) -> Codel {
        Codel {
            target: target.as_nanos() as u64,
            interval: interval.as_nanos().max(1) as u64,
            start: Instant::now(),
            interval_start: AtomicU64::new(0),
            min_delay: AtomicU64::new(u64::MAX),
        }
    }

    fn nanos(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_nanos() as u64
    }

    /// Records a delay; at the end of an interval returns whether to shed.
    fn observe(&self, now: Instant, delay: Duration) -> Option<bool> {
        self.min_delay.fetch_min(delay.as_nanos() as u64, Relaxed);
        let now = self.nanos(now);
        let begun = self.interval_start.load(Relaxed);
        if now.saturating_sub(begun) < self.interval {
            return None;
        }
        // One thread closes the interval.
        self.interval_start
            .compare_exchange(begun, now, Relaxed, Relaxed)
            .ok()?;
        let min = self.min_delay.swap(u64::MAX, Relaxed);
        Some(min != u64::MAX && min > self.target)
    }

    fn restart(&self, now: Instant) {
        self.interval_start.store(self.nanos(now), Relaxed);
        self.min_delay.store(u64::MAX, Relaxed);
    }
}

/// A task queued by `Admission::Wait`: scheduled when admitted.
pub(crate) struct QueuedTask {
    task: Mutex<Option<Notified<crate::runtime::Handle>>>,
    handle: crate::runtime::Handle,
}

impl QueuedTask {
    pub(crate) fn new(
        task: Notified<crate::runtime::Handle>,
        handle: crate::runtime::Handle,
    ) -> Self {
        QueuedTask {
            task: Mutex::new(Some(task)),
            handle,
        }
    }
}

impl Waiter for QueuedTask {
    fn admit(self: Arc<Self>) -> bool {
        let Some(task) = self.task.lock().take() else {
            return false;
        };
        if task.header().state.load().is_complete() {
            // Shut down while it waited: it needs no permit.
            return false;
        }
        task.header().admitted.store(true, Relaxed);
        self.handle.shared.schedule_admitted(task);
        true
    }
}

const WAITING: u8 = 0;
const GRANTED: u8 = 1;
const CANCELLED: u8 = 2;

/// A `spawn_wait` future's place in the wait list.
pub(crate) struct WaitSlot {
    state: AtomicU8,
    waker: Mutex<Option<Waker>>,
}

impl WaitSlot {
    pub(crate) fn new() -> WaitSlot {
        WaitSlot {
            state: AtomicU8::new(WAITING),
            waker: Mutex::new(None),
        }
    }

    /// True once a permit was handed to this slot.
    pub(crate) fn is_granted(&self) -> bool {
        self.state.load(Acquire) == GRANTED
    }

    /// Leaves the waker to wake when granted; false if already granted.
    pub(crate) fn register(&self, waker: &Waker) -> bool {
        let mut slot = self.waker.lock();
        match &*slot {
            Some(w) if w.will_wake(waker) => {}
            _ => *slot = Some(waker.clone()),
        }
        !self.is_granted()
    }

    /// The waiting future is dropped: give its place away. True if a permit
    /// had already been granted, which the caller must then release.
    pub(crate) fn cancel(&self) -> bool {
        self.state
            .compare_exchange(WAITING, CANCELLED, AcqRel, Acquire)
            .is_err()
    }
}

impl Waiter for WaitSlot {
    fn admit(self: Arc<Self>) -> bool {
        if self
            .state
            .compare_exchange(WAITING, GRANTED, AcqRel, Acquire)
            .is_err()
        {
            return false;
        }
        if let Some(w) = self.waker.lock().take() {
            w.wake();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codel_sheds_only_when_the_minimum_stays_above_target() {
        let c = Codel::new(Duration::from_millis(5), Duration::from_millis(100));
        let t0 = c.start;
        assert_eq!(c.observe(t0, Duration::from_millis(50)), None);
        // One fast poll in the interval: the queue drained once, no shedding.
        assert_eq!(
            c.observe(t0 + Duration::from_millis(50), Duration::from_millis(1)),
            None
        );
        assert_eq!(
            c.observe(t0 + Duration::from_millis(101), Duration::from_millis(40)),
            Some(false)
        );
        // A whole interval of slow polls: shed.
        assert_eq!(
            c.observe(t0 + Duration::from_millis(150), Duration::from_millis(30)),
            None
        );
        assert_eq!(
            c.observe(t0 + Duration::from_millis(202), Duration::from_millis(20)),
            Some(true)
        );
    }

    #[test]
    fn ceiling_rejects_and_wait_queues() {
        let books = Arc::new(Books::new(1, false));
        let reject = Admitter::new(Admission::Reject, books.clone());
        assert_eq!(reject.decide(false, true), Decision::Admit);
        assert_eq!(
            reject.decide(false, true),
            Decision::Reject { shedding: false }
        );
        let wait = Admitter::new(Admission::Wait, books.clone());
        assert_eq!(wait.decide(false, true), Decision::Queue);
        assert_eq!(
            wait.decide(false, false),
            Decision::Reject { shedding: false }
        );
        assert_eq!(books.rejected_ceiling(), 2);
    }

    #[test]
    fn shedding_spares_essential_tasks() {
        let books = Arc::new(Books::new(10, false));
        let a = Admitter::new(Admission::adaptive(), books.clone());
        books.set_shedding(true);
        assert_eq!(a.decide(false, true), Decision::Reject { shedding: true });
        assert_eq!(a.decide(true, true), Decision::Admit);
        a.on_idle();
        assert!(!books.is_shedding());
    }
}
