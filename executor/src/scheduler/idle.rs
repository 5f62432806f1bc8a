//! Who is searching, who sleeps: the protocol that wakes one worker at a time.
//!
//! One word counts the workers that are awake (*unparked*) and, of those, the
//! ones looking for work (*searching*). The rules, after tokio's scheduler:
//!
//! - New work wakes a sleeper only if nobody is searching: a searcher will
//!   find it. This avoids a thundering herd of wake-ups on every push.
//! - At most about half the workers search at once; the rest park.
//! - A searcher that finds work stops searching, and if it was the last one it
//!   wakes another to keep looking (there may be more where that came from).
//! - The last searcher to park looks at every queue once more after it has
//!   counted itself asleep, and wakes someone if work is there. Together with
//!   the pusher's check (push, fence, read the count), this is the Dekker-style
//!   handshake that loses no wake-up: either the pusher sees the searcher, or
//!   the searcher sees the pushed work.
//!
//! The sleepers list is behind a mutex, taken only on the way to sleep and
//! when a sleeper must be woken (which costs a syscall anyway).

use crate::sync::{fence, AtomicUsize, Mutex};
use std::sync::atomic::Ordering::SeqCst;

const UNPARKED_SHIFT: usize = 16;
const SEARCHING_MASK: usize = (1 << UNPARKED_SHIFT) - 1;

pub(crate) struct Idle {
    /// `unparked << 16 | searching`.
    state: AtomicUsize,
    /// Indices of parked workers.
    sleepers: Mutex<Vec<usize>>,
    /// The runtime's workers (seats).
    num_workers: AtomicUsize,
}

fn searching(state: usize) -> usize {
    state & SEARCHING_MASK
}

fn unparked(state: usize) -> usize {
    state >> UNPARKED_SHIFT
}

impl Idle {
    pub(crate) fn new(num_workers: usize) -> Idle {
        assert!(num_workers < SEARCHING_MASK, "too many workers");
        Idle {
            state: AtomicUsize::new(num_workers << UNPARKED_SHIFT),
            sleepers: Mutex::new(Vec::with_capacity(num_workers)),
            num_workers: AtomicUsize::new(num_workers),
        }
    }

    /// Work was pushed where any worker could take it. Returns the worker to
    /// unpark, if one must be woken. Already counted as unparked and
    /// searching when this returns.
    pub(crate) fn worker_to_notify(&self) -> Option<usize> {
        // Pairs with the fence in `transition_worker_to_parked`'s caller: the
        // push before this fence and the count read after it are ordered.
        fence(SeqCst);
        if !self.should_notify(self.state.load(SeqCst)) {
            return None;
        }
        let mut sleepers = self.sleepers.lock();
        // Changes to `unparked` happen under this lock, so re-check here.
        if !self.should_notify(self.state.load(SeqCst)) {
            return None;
        }
        let index = sleepers.pop()?;
        self.state.fetch_add((1 << UNPARKED_SHIFT) | 1, SeqCst);
        Some(index)
    }

    fn should_notify(&self, state: usize) -> bool {
        searching(state) == 0 && unparked(state) < self.num_workers.load(SeqCst)
    }

    /// A worker out of local work asks to search. Refused when half the
    /// workers already search.
    pub(crate) fn transition_worker_to_searching(&self) -> bool {
        let state = self.state.load(SeqCst);
        if 2 * searching(state) >= self.num_workers.load(SeqCst) {
            return false;
        }
        self.state.fetch_add(1, SeqCst);
        true
    }

    /// A searcher found work. True if it was the last searcher, in which case
    /// the caller wakes another.
    pub(crate) fn transition_worker_from_searching(&self) -> bool {
        let prev = self.state.fetch_sub(1, SeqCst);
        debug_assert!(searching(prev) > 0);
        searching(prev) == 1
    }

    /// Worker `index` goes to sleep. True if it was the last searcher: then
    /// the caller must check every queue once more.
    pub(crate) fn transition_worker_to_parked(&self, index: usize, is_searching: bool) -> bool {
        let mut sleepers = self.sleepers.lock();
        let dec = (1 << UNPARKED_SHIFT) | usize::from(is_searching);
        let prev = self.state.fetch_sub(dec, SeqCst);
        sleepers.push(index);
        is_searching && searching(prev) == 1
    }

    /// After a wake-up: true if worker `index` was really woken (taken off
    /// the sleepers list by `worker_to_notify`), false if it is still listed
    /// (a spurious wake-up, or a shutdown).
    pub(crate) fn was_unparked(&self, index: usize) -> bool {
        !self.sleepers.lock().contains(&index)
    }

    /// Worker `index` woke with work of its own (the driver it blocked in
    /// woke tasks onto its queue): take it off the sleepers list. True if it
    /// was still listed; false if `worker_to_notify` took it off already (and
    /// so counted it as searching).
    pub(crate) fn unpark_worker_by_id(&self, index: usize) -> bool {
        let mut sleepers = self.sleepers.lock();
        match sleepers.iter().position(|&i| i == index) {
            Some(pos) => {
                sleepers.swap_remove(pos);
                self.state.fetch_add(1 << UNPARKED_SHIFT, SeqCst);
                true
            }
            None => false,
        }
    }

    /// Shutdown: counts every sleeper as awake again.
    pub(crate) fn unpark_all(&self) -> Vec<usize> {
        let mut sleepers = self.sleepers.lock();
        let n = sleepers.len();
        self.state.fetch_add(n << UNPARKED_SHIFT, SeqCst);
        std::mem::take(&mut *sleepers)
    }

    /// True when every worker is parked (none awake, none searching).
    pub(crate) fn all_parked(&self) -> bool {
        unparked(self.state.load(SeqCst)) == 0
    }

    /// (unparked, searching), for tests.
    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        let s = self.state.load(SeqCst);
        (unparked(s), searching(s))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn at_most_half_search() {
        let idle = Idle::new(4);
        assert!(idle.transition_worker_to_searching());
        assert!(idle.transition_worker_to_searching());
        assert!(!idle.transition_worker_to_searching());
        assert_eq!(idle.counts(), (4, 2));
    }

    #[test]
    fn no_wake_while_someone_searches() {
        let idle = Idle::new(4);
        assert!(!idle.transition_worker_to_parked(3, false));
        assert!(idle.transition_worker_to_searching());
        assert_eq!(idle.worker_to_notify(), None);
        // The last searcher parks and is told so.
        assert!(idle.transition_worker_to_parked(2, true));
        assert_eq!(idle.counts(), (2, 0));
        // Now new work wakes exactly one sleeper, counted as searching.
        assert_eq!(idle.worker_to_notify(), Some(2));
        assert_eq!(idle.counts(), (3, 1));
        assert!(idle.was_unparked(2));
        assert!(!idle.was_unparked(3));
        assert_eq!(idle.worker_to_notify(), None);
    }

    #[test]
    fn a_worker_woken_by_its_own_driver_leaves_the_list_unsearching() {
        let idle = Idle::new(2);
        assert!(!idle.transition_worker_to_parked(1, false));
        assert!(idle.unpark_worker_by_id(1));
        assert_eq!(idle.counts(), (2, 0));
        assert!(!idle.unpark_worker_by_id(1));
    }

    #[test]
    fn last_searcher_finding_work_is_told() {
        let idle = Idle::new(2);
        assert!(idle.transition_worker_to_searching());
        assert!(idle.transition_worker_from_searching());
    }
}

/// Model-checked: no wake-up is lost while every worker goes to sleep. Run
/// with `RUSTFLAGS="--cfg loom" cargo test -p bulwark-executor --lib loom_`.
///
/// The workers and the pusher below take the steps the scheduler takes
/// (`scheduler/worker.rs`: `run_loop`, `run_task`, `park`;
/// `scheduler/mod.rs`: `notify_parked`, `notify_if_work_pending`,
/// `begin_shutdown`), on the real [`Idle`] and the real condvar parker
/// (`bulwark_io::Parker::new`). Only the queue is a stand-in: one slot
/// published with a `Release` store (as crossbeam's `Worker::push` publishes
/// its back index) and read with `Acquire`, with no fence of its own, so it
/// orders nothing the protocol's own fences do not. The steps outside
/// `Idle` are copies: a change to the real ones (a fence moved or dropped in
/// `scheduler/mod.rs`) must be made here too for the model to judge it.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::sync::AtomicBool;
    use bulwark_io::{Parker, Unparker};
    use loom::sync::Arc;
    use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

    const WORKERS: usize = 2;
    /// The default preemption bound of the models here.
    const PREEMPTIONS: usize = 3;

    /// The queue stand-in: at most one task, taken once.
    struct Queue(AtomicBool);

    impl Queue {
        fn push(&self) {
            self.0.store(true, Release);
        }

        fn pop(&self) -> bool {
            self.0
                .compare_exchange(true, false, Acquire, Relaxed)
                .is_ok()
        }

        fn is_empty(&self) -> bool {
            !self.0.load(Acquire)
        }
    }

    /// What the workers and the pusher share (`scheduler::Shared`'s part
    /// that the protocol touches).
    struct Shared {
        idle: Idle,
        queue: Queue,
        unparkers: Vec<Unparker>,
        shutdown: AtomicBool,
        /// How many times the task ran.
        ran: loom::sync::atomic::AtomicUsize,
    }

    impl Shared {
        /// `Shared::notify_parked`.
        fn notify_parked(&self) {
            if let Some(index) = self.idle.worker_to_notify() {
                self.unparkers[index].unpark();
            }
        }

        /// `Shared::notify_if_work_pending`: the last searcher's re-check.
        fn notify_if_work_pending(&self) {
            fence(SeqCst);
            if !self.queue.is_empty() {
                self.notify_parked();
            }
        }

        /// `Shared::begin_shutdown`.
        fn begin_shutdown(&self) {
            self.shutdown.store(true, SeqCst);
            fence(SeqCst);
            self.idle.unpark_all();
            for u in &self.unparkers {
                u.unpark();
            }
        }
    }

    /// `WorkerCx::run_loop` with the queue stand-in. The task, when it runs,
    /// shuts the pool down: so if no worker ever runs it, both sleep for
    /// good, and loom reports the deadlock.
    fn worker(shared: &Shared, index: usize, parker: &Parker) {
        let mut searching = false;
        while !shared.shutdown.load(SeqCst) {
            // `next_task` (the injector, not searching), else `steal_work`,
            // else `park`.
            if shared.queue.pop() || steal_work(shared, &mut searching) {
                // `run_task`.
                if std::mem::replace(&mut searching, false)
                    && shared.idle.transition_worker_from_searching()
                {
                    shared.notify_parked();
                }
                shared.ran.fetch_add(1, SeqCst);
                shared.begin_shutdown();
            } else {
                park(shared, index, parker, &mut searching);
            }
        }
    }

    /// `WorkerCx::steal_work`: only as a searcher, if one more may search.
    fn steal_work(shared: &Shared, searching: &mut bool) -> bool {
        if !*searching {
            if !shared.idle.transition_worker_to_searching() {
                return false;
            }
            *searching = true;
        }
        shared.queue.pop()
    }

    /// `WorkerCx::park`, step by step (no local queues in the model).
    fn park(shared: &Shared, index: usize, parker: &Parker, searching: &mut bool) {
        let was_searching = std::mem::replace(searching, false);
        if shared
            .idle
            .transition_worker_to_parked(index, was_searching)
        {
            shared.notify_if_work_pending();
        }
        loop {
            parker.park();
            if shared.shutdown.load(SeqCst) {
                return;
            }
            if shared.idle.was_unparked(index) {
                *searching = true;
                return;
            }
        }
    }

    /// A task is pushed from outside (`notify_parked`'s callers: push, then
    /// `worker_to_notify` and unpark) while both workers look for work and
    /// go to sleep: some worker always runs it, exactly once.
    #[test]
    fn loom_work_pushed_while_workers_park_is_run() {
        let mut builder = loom::model::Builder::new();
        // Bounded (unless LOOM_MAX_PREEMPTIONS says otherwise) so the model
        // runs in seconds: 3 preemptions find the lost wake-up when either
        // fence (`worker_to_notify`'s, or the re-check's below) is removed.
        builder.preemption_bound.get_or_insert(PREEMPTIONS);
        builder.check(|| {
            let parkers: Vec<Parker> = (0..WORKERS).map(|_| Parker::new()).collect();
            let shared = Arc::new(Shared {
                idle: Idle::new(WORKERS),
                queue: Queue(AtomicBool::new(false)),
                unparkers: parkers.iter().map(Parker::unparker).collect(),
                shutdown: AtomicBool::new(false),
                ran: loom::sync::atomic::AtomicUsize::new(0),
            });
            let workers: Vec<_> = parkers
                .into_iter()
                .enumerate()
                .map(|(index, parker)| {
                    let shared = shared.clone();
                    loom::thread::spawn(move || worker(&shared, index, &parker))
                })
                .collect();
            // The pusher: `Shared::schedule_remote` without its shutdown
            // check (whose fence would stand in for `worker_to_notify`'s).
            shared.queue.push();
            shared.notify_parked();
            for w in workers {
                w.join().unwrap();
            }
            assert_eq!(shared.ran.load(SeqCst), 1);
        });
    }
}
