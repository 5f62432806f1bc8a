//! The ledger: every bounded thing is a *kind* with a live count, a budget
//! and a wait list.
//!
//! Tasks are the first kind (the hard task ceiling is the budget of the kind
//! `task`); sockets, blocking threads and a user's own pooled resources join
//! as the guards grow. A [`Kind`] hands out permits: [`Kind::try_acquire`]
//! takes one if the live count is under budget; [`Kind::release`] gives one
//! back and, if anyone waits, passes it to the first waiter, first come first
//! served.
//!
//! The fast path is one compare-and-swap on the live count. The wait list is
//! behind a mutex, touched only when someone waits; the `has_waiters` flag
//! and the live count form a Dekker pair (each side writes its own, fences,
//! reads the other's), so a permit released while a waiter enqueues is never
//! stranded.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;

/// Someone waiting for a permit of a [`Kind`].
pub trait Waiter: Send + Sync {
    /// The waiter is handed a permit. Returns false if it no longer wants one
    /// (it was cancelled meanwhile); the permit then goes to the next waiter.
    fn admit(self: Arc<Self>) -> bool;
}

/// One budgeted kind: live count, budget, wait list, and what happened.
pub struct Kind {
    name: &'static str,
    live: AtomicUsize,
    budget: AtomicUsize,
    peak: AtomicUsize,
    has_waiters: AtomicBool,
    waiters: Mutex<VecDeque<Arc<dyn Waiter>>>,
    admitted: AtomicU64,
    refused: AtomicU64,
}

impl std::fmt::Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kind")
            .field("name", &self.name)
            .field("live", &self.live())
            .field("budget", &self.budget())
            .finish_non_exhaustive()
    }
}

impl Kind {
    /// A kind named `name` allowing `budget` live at once.
    pub fn new(name: &'static str, budget: usize) -> Kind {
        Kind {
            name,
            live: AtomicUsize::new(0),
            budget: AtomicUsize::new(budget),
            peak: AtomicUsize::new(0),
            has_waiters: AtomicBool::new(false),
            waiters: Mutex::new(VecDeque::new()),
            admitted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// The kind's name (`"task"`, `"socket"`, ...).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Live permits now.
    pub fn live(&self) -> usize {
        self.live.load(Relaxed)
    }

    /// The most permits ever live at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Relaxed)
    }

    /// The budget.
    pub fn budget(&self) -> usize {
        self.budget.load(Relaxed)
    }

    /// True when no permit is free.
    pub fn is_full(&self) -> bool {
        self.live.load(Relaxed) >= self.budget.load(Relaxed)
    }

    /// Permits handed out since the start.
    pub fn admitted(&self) -> u64 {
        self.admitted.load(Relaxed)
    }

    /// `try_acquire` calls refused for want of a permit.
    pub fn refused(&self) -> u64 {
        self.refused.load(Relaxed)
    }

    /// Waiters in the wait list now.
    pub fn waiting(&self) -> usize {
        if !self.has_waiters.load(Relaxed) {
            return 0;
        }
        self.waiters.lock().len()
    }

    /// Takes a permit if one is free. Never waits.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        if self.take() {
            true
        } else {
            self.refused.fetch_add(1, Relaxed);
            false
        }
    }

    /// Takes a permit only if one is free *and* nobody waits: what a caller
    /// that would otherwise queue uses, so it does not jump the queue.
    pub fn try_acquire_fair(&self) -> bool {
        !self.has_waiters.load(SeqCst) && self.take()
    }

    fn take(&self) -> bool {
        let budget = self.budget.load(Relaxed);
        let mut live = self.live.load(Relaxed);
        loop {
            if live >= budget {
                return false;
            }
            // SeqCst: one side of the Dekker pair with `has_waiters`.
            match self
                .live
                .compare_exchange_weak(live, live + 1, SeqCst, Relaxed)
            {
                Ok(_) => break,
                Err(actual) => live = actual,
            }
        }
        self.admitted.fetch_add(1, Relaxed);
        if live + 1 > self.peak.load(Relaxed) {
            self.peak.fetch_max(live + 1, Relaxed);
        }
        true
    }

    /// Gives a permit back; the first waiter (if any) gets it.
    #[inline]
    pub fn release(&self) {
        self.live.fetch_sub(1, SeqCst);
        if self.has_waiters.load(SeqCst) {
            self.hand_out();
        }
    }

    /// Joins the wait list. The waiter is admitted (perhaps at once, on this
    /// thread) when a permit is free and everyone before it is served.
    pub fn wait(&self, waiter: Arc<dyn Waiter>) {
        {
            let mut waiters = self.waiters.lock();
            waiters.push_back(waiter);
            self.has_waiters.store(true, SeqCst);
        }
        // A permit released before the flag was seen is picked up here.
        self.hand_out();
    }

    /// Passes free permits to waiters, in order.
    fn hand_out(&self) {
        loop {
            let next = {
                let mut waiters = self.waiters.lock();
                if waiters.is_empty() {
                    self.has_waiters.store(false, SeqCst);
                    return;
                }
                if !self.take() {
                    return;
                }
                let next = waiters.pop_front();
                if waiters.is_empty() {
                    self.has_waiters.store(false, SeqCst);
                }
                next
            };
            // Outside the lock: admitting may schedule a task or wake one.
            if let Some(w) = next {
                if !w.admit() {
                    self.live.fetch_sub(1, SeqCst);
                }
            }
        }
    }

    /// Empties the wait list without admitting anyone (shutdown). Returns
    /// the waiters so the caller drops them where it sees fit.
    pub fn take_waiters(&self) -> Vec<Arc<dyn Waiter>> {
        let mut waiters = self.waiters.lock();
        self.has_waiters.store(false, SeqCst);
        waiters.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    struct Log {
        id: usize,
        log: Arc<StdMutex<Vec<usize>>>,
        cancelled: AtomicBool,
    }

    impl Waiter for Log {
        fn admit(self: Arc<Self>) -> bool {
            if self.cancelled.load(SeqCst) {
                return false;
            }
            self.log.lock().unwrap().push(self.id);
            true
        }
    }

    fn waiter(id: usize, log: &Arc<StdMutex<Vec<usize>>>) -> Arc<Log> {
        Arc::new(Log {
            id,
            log: log.clone(),
            cancelled: AtomicBool::new(false),
        })
    }

    #[test]
    fn never_more_live_than_budget() {
        let k = Kind::new("task", 3);
        assert!(k.try_acquire() && k.try_acquire() && k.try_acquire());
        assert!(!k.try_acquire());
        assert_eq!((k.live(), k.refused(), k.peak()), (3, 1, 3));
        k.release();
        assert!(k.try_acquire());
    }

    #[test]
    fn waiters_are_admitted_in_order_and_cancelled_ones_pass_their_turn() {
        let k = Kind::new("task", 1);
        let log = Arc::new(StdMutex::new(Vec::new()));
        assert!(k.try_acquire());
        let ws: Vec<_> = (0..4).map(|i| waiter(i, &log)).collect();
        for w in &ws {
            k.wait(w.clone());
        }
        assert!(!k.try_acquire_fair());
        ws[1].cancelled.store(true, SeqCst);
        for _ in 0..3 {
            k.release();
        }
        assert_eq!(*log.lock().unwrap(), vec![0, 2, 3]);
        assert_eq!(k.live(), 1);
        assert_eq!(k.waiting(), 0);
    }

    #[test]
    fn a_waiter_joining_with_a_free_permit_is_admitted_at_once() {
        let k = Kind::new("task", 1);
        let log = Arc::new(StdMutex::new(Vec::new()));
        k.wait(waiter(7, &log));
        assert_eq!(*log.lock().unwrap(), vec![7]);
        assert_eq!(k.live(), 1);
    }

    #[test]
    fn concurrent_acquire_release_keeps_the_ceiling() {
        let k = Arc::new(Kind::new("task", 8));
        let max_seen = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (k, max_seen) = (k.clone(), max_seen.clone());
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        if k.try_acquire() {
                            max_seen.fetch_max(k.live(), SeqCst);
                            k.release();
                        }
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert!(max_seen.load(SeqCst) <= 8);
        assert_eq!(k.live(), 0);
    }
}
