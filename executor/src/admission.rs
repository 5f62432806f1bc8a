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
//! the time from a task's wake to its poll (its *sojourn*):
//!
//! - Shedding starts when the sojourn has stayed above `target` for a whole
//!   `interval`: the queue is standing, not bursting.
//! - While shedding, new spawns are refused, and a task that has never run
//!   and waited past `target` is dropped at dequeue (CoDel drops at the head,
//!   not the tail): the work queued before the overload was seen does not
//!   run late. A first poll that waited more than a whole `interval` is
//!   dropped even before shedding starts.
//! - Shedding stops when the sojourn has stayed under `target` for an
//!   interval, or at once when a worker runs out of work. Within a few
//!   intervals of that, one sojourn above `target` starts it again (CoDel
//!   re-enters its dropping state quickly when it left it recently).
//!
//! Defaults are 5 ms and 100 ms, as Facebook's and folly's CoDel. Tasks
//! spawned with `task::Builder::essential()` are never shed.

use crate::task::{Id, Notified};
use bulwark_metrics::ledger::Waiter;
use bulwark_metrics::Books;
use parking_lot::Mutex;
use std::collections::HashMap;
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
    /// Tasks in the admission wait list, by id, so an abort or a deadline
    /// can take one out without waiting for a permit.
    queued: Mutex<HashMap<Id, Arc<QueuedTask>>>,
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
            queued: Mutex::new(HashMap::new()),
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

    /// Puts a task in the admission wait list.
    pub(crate) fn enqueue(&self, task: Arc<QueuedTask>) {
        self.queued.lock().insert(task.id, task.clone());
        self.books.tasks.wait(task);
    }

    /// Takes a cancelled task out of the wait list (its place goes to the
    /// next waiter, which `admit` skips to).
    pub(crate) fn take_queued(&self, id: Id) -> Option<Notified<crate::runtime::Handle>> {
        let queued = self.queued.lock().remove(&id)?;
        let task = queued.task.lock().take();
        task
    }

    /// Drops the wait list's index (shutdown).
    pub(crate) fn clear_queued(&self) {
        let all: Vec<_> = self.queued.lock().drain().collect();
        drop(all);
    }

    /// Adaptive admission: whether a task that has never run, dequeued after
    /// `delay`, is dropped instead of polled.
    pub(crate) fn should_shed_at_dequeue(&self, delay: Duration) -> bool {
        match &self.codel {
            Some(c) => {
                let d = delay.as_nanos() as u64;
                (self.books.is_shedding() && d > c.target) || d > c.interval
            }
            None => false,
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
            if let Some(shed) = codel.observe(now, delay, self.books.is_shedding()) {
                self.books.set_shedding(shed);
                if !shed {
                    codel.left_shedding(now);
                }
            }
        }
    }

    /// A worker found no work anywhere: whatever the sojourns said, no queue
    /// stands now.
    pub(crate) fn on_idle(&self) {
        if let Some(codel) = &self.codel {
            if self.books.is_shedding() {
                self.books.set_shedding(false);
                codel.left_shedding(Instant::now());
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

/// CoDel's state, in nanoseconds since `start` (0: unset).
struct Codel {
    target: u64,
    interval: u64,
    start: Instant,
    /// When the sojourn first went above target in the current stretch, plus
    /// an interval: shed if it is still above then.
    shed_at: AtomicU64,
    /// The last time a sojourn was above target.
    last_above: AtomicU64,
    /// Until when one sojourn above target restarts shedding at once.
    recent_until: AtomicU64,
}

impl Codel {
    fn new(target: Duration, interval: Duration) -> Codel {
        Codel {
            target: target.as_nanos() as u64,
            interval: interval.as_nanos().max(1) as u64,
            start: Instant::now(),
            shed_at: AtomicU64::new(0),
            last_above: AtomicU64::new(0),
            recent_until: AtomicU64::new(0),
        }
    }

    fn nanos(&self, t: Instant) -> u64 {
        (t.saturating_duration_since(self.start).as_nanos() as u64).max(1)
    }

    /// Records a sojourn; returns `Some(shed)` when shedding should change.
    fn observe(&self, now: Instant, delay: Duration, shedding: bool) -> Option<bool> {
        let now = self.nanos(now);
        if delay.as_nanos() as u64 <= self.target {
            self.shed_at.store(0, Relaxed);
            let quiet_for = now.saturating_sub(self.last_above.load(Relaxed));
            return (shedding && quiet_for >= self.interval).then_some(false);
        }
        self.last_above.store(now, Relaxed);
        if shedding {
            return None;
        }
        if now < self.recent_until.load(Relaxed) {
            return Some(true);
        }
        match self.shed_at.load(Relaxed) {
            0 => {
                let _ = self
                    .shed_at
                    .compare_exchange(0, now + self.interval, Relaxed, Relaxed);
                None
            }
            at if now >= at => Some(true),
            _ => None,
        }
    }

    fn left_shedding(&self, now: Instant) {
        let now = self.nanos(now);
        self.shed_at.store(0, Relaxed);
        self.recent_until.store(now + 4 * self.interval, Relaxed);
    }
}

/// A task queued by `Admission::Wait`: scheduled when admitted.
pub(crate) struct QueuedTask {
    id: Id,
    task: Mutex<Option<Notified<crate::runtime::Handle>>>,
    handle: crate::runtime::Handle,
}

impl QueuedTask {
    pub(crate) fn new(
        task: Notified<crate::runtime::Handle>,
        handle: crate::runtime::Handle,
    ) -> Self {
        QueuedTask {
            id: task.id(),
            task: Mutex::new(Some(task)),
            handle,
        }
    }
}

impl Waiter for QueuedTask {
    fn admit(self: Arc<Self>) -> bool {
        let Some(task) = self.task.lock().take() else {
            // Taken out by an abort or a deadline: the permit goes on.
            return false;
        };
        self.handle.shared.admit.queued.lock().remove(&self.id);
        task.header().waiting_admission.store(false, Relaxed);
        let state = task.header().state.load();
        if state.is_complete() || state.is_cancelled() {
            // Shut down or cancelled while it waited: it runs only to end,
            // without a permit.
            self.handle.shared.schedule_admitted(task);
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
    fn codel_sheds_after_an_interval_above_target_and_reenters_quickly() {
        let c = Codel::new(Duration::from_millis(5), Duration::from_millis(100));
        let t0 = c.start;
        let ms = Duration::from_millis;
        assert_eq!(c.observe(t0 + ms(1), ms(50), false), None);
        // One sojourn under target: the stretch starts again.
        assert_eq!(c.observe(t0 + ms(50), ms(1), false), None);
        assert_eq!(c.observe(t0 + ms(60), ms(40), false), None);
        assert_eq!(c.observe(t0 + ms(120), ms(40), false), None);
        // Above target for a whole interval since 60 ms: shed.
        assert_eq!(c.observe(t0 + ms(161), ms(20), false), Some(true));
        // While shedding: stop once under target for an interval.
        assert_eq!(c.observe(t0 + ms(200), ms(1), true), None);
        assert_eq!(c.observe(t0 + ms(262), ms(1), true), Some(false));
        c.left_shedding(t0 + ms(262));
        // Recently shed: one sojourn above target restarts it.
        assert_eq!(c.observe(t0 + ms(300), ms(9), false), Some(true));
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

    #[test]
    fn first_polls_that_waited_too_long_are_shed() {
        let books = Arc::new(Books::new(10, false));
        let a = Admitter::new(Admission::adaptive(), books.clone());
        assert!(!a.should_shed_at_dequeue(Duration::from_millis(50)));
        assert!(a.should_shed_at_dequeue(Duration::from_millis(150)));
        books.set_shedding(true);
        assert!(a.should_shed_at_dequeue(Duration::from_millis(6)));
        assert!(!a.should_shed_at_dequeue(Duration::from_millis(4)));
    }
}
