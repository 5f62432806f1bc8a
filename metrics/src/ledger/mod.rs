//! The ledger: every bounded thing is a *kind* with a live count, a budget
//! and a wait list.
//!
//! Tasks are the first kind (the hard task ceiling is the budget of the kind
//! [`TASK`]); sockets ([`SOCKET`]), blocking threads and a user's own pooled
//! resources join as kinds registered in the [`Books`](crate::Books). A
//! [`Kind`] hands out permits: [`Kind::try_acquire`] takes one if the live
//! count is under budget; [`Kind::release`] gives one back and, if anyone
//! waits, passes it to the first waiter, first come first served.
//! [`Kind::acquire`] is the async form: a cancel-safe future resolving to a
//! [`Permit`] that releases on drop.
//!
//! # Examples
//!
//! ```
//! use bulwark_metrics::Books;
//!
//! let books = Books::default();
//! let db = books.register_kind("db", 2).unwrap();
//! let a = db.try_acquire_permit().unwrap();
//! let _b = db.try_acquire_permit().unwrap();
//! assert!(db.try_acquire_permit().is_none(), "the budget is 2");
//! drop(a);
//! assert_eq!(db.live(), 1);
//! assert!(books.register_kind("db", 5).is_err(), "names are unique");
//! ```
//!
//! # Design
//!
//! - `live` is the count of permits held. The fast path is one
//!   compare-and-swap on it; the ceiling holds by that CAS alone (every change
//!   of `live` is a read-modify-write in one modification order), so it is
//!   `Relaxed`: a permit is a count and publishes no data.
//! - The wait list sits behind a mutex touched only when someone waits. A
//!   waiter is handed its permit by whoever frees one (or by itself, when it
//!   joins while a permit is free), outside the lock.
//! - `has_waiters` and `live` form a Dekker pair: a releaser writes `live`
//!   and reads `has_waiters`; a joining waiter writes `has_waiters` and reads
//!   `live`. Each side puts a `fence(SeqCst)` between its write and its read,
//!   so at least one of them sees the other: either the releaser sees the
//!   waiter and hands its permit out, or the waiter sees the freed permit and
//!   takes it. Without the fences both may read the old value and the permit
//!   is stranded while a waiter sleeps (the loom model `loom_` tests show it).
//!   Fences rather than `SeqCst` accesses because loom models `SeqCst`
//!   accesses only as `AcqRel`, but models `SeqCst` fences exactly.
//! - A kind can be closed ([`Kind::close`], at runtime shutdown): waiters are
//!   told [`Waiter::close`] (neither granted nor released), later waiters are
//!   closed at once, and no new permit is handed out. Holders still release.
//! - Releasing more permits than were taken is a caller's bug; `live` never
//!   wraps below zero (see [`Kind::release`]).
//! - One permit per thread can wait in a reserved slot
//!   ([`reserve_for_spawn`], [`take_reserved`]): a listener's `accept`
//!   reserves the task permit of the connection it takes, and the spawn that
//!   follows uses it (see `reserved.rs` for who releases an unused one).

mod permit;
mod reserved;
mod wait;

pub use permit::{Acquire, Closed, Permit};
pub use reserved::{has_reserved, release_reserved, reserve_for_spawn, take_reserved};
pub use wait::WaitSlot;

use crate::sync::{fence, AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use Ordering::{Relaxed, SeqCst};

/// The name of the kind every runtime registers: live tasks, whose budget is
/// the hard task ceiling (`max_tasks`).
pub const TASK: &str = "task";

/// The name kept for open sockets (the fd guard). Not registered by default.
pub const SOCKET: &str = "socket";

/// Someone waiting for a permit of a [`Kind`].
///
/// Exactly one of `admit` (returning true) or `close` ends a waiter's wait,
/// or neither if the waiter was cancelled; each is called at most once per
/// wait, outside the kind's lock.
pub trait Waiter: Send + Sync {
    /// The waiter is handed a permit. Returns false if it no longer wants one
    /// (it was cancelled meanwhile); the permit then goes to the next waiter.
    /// When it returns true the waiter owns the permit and must release it.
    fn admit(self: Arc<Self>) -> bool;

    /// The kind was closed while this waiter waited (or it joined a closed
    /// kind): no permit was granted and none is to be released.
    fn close(self: Arc<Self>);

    /// True if the waiter was cancelled and no longer wants a permit. The
    /// ledger uses this only to drop such waiters from a long wait list
    /// early; a cancelled waiter must still answer `admit` with false.
    fn is_cancelled(&self) -> bool {
        false
    }
}

/// Why a kind could not be registered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KindError {
    /// A kind of that name is registered already.
    Duplicate {
        /// The name asked for.
        name: String,
    },
    /// A budget of zero would refuse every acquisition.
    ZeroBudget {
        /// The name asked for.
        name: String,
    },
}

impl fmt::Display for KindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KindError::Duplicate { name } => write!(
                f,
                "a ledger kind named `{name}` is already registered; \
                 look it up with Books::kind instead"
            ),
            KindError::ZeroBudget { name } => write!(
                f,
                "the ledger kind `{name}` was given a budget of 0, \
                 which would refuse every acquisition; the budget must be at least 1"
            ),
        }
    }
}

impl std::error::Error for KindError {}

/// The wait list and the closed flag, together under one lock, so that a
/// waiter is either handed out (before the close) or closed, never both.
struct WaitList {
    queue: VecDeque<Arc<dyn Waiter>>,
    closed: bool,
    /// Length at which the next join sweeps cancelled waiters out (doubles,
    /// so the sweeps cost O(1) per join amortised).
    sweep_at: usize,
}

/// Wait lists shorter than this are never swept: a cancelled waiter costs
/// one pop when its turn comes.
const SWEEP_MIN: usize = 64;

/// One budgeted kind: live count, budget, wait list, and what happened.
pub struct Kind {
    name: Cow<'static, str>,
    live: AtomicUsize,
    budget: AtomicUsize,
    peak: AtomicUsize,
    has_waiters: AtomicBool,
    /// Mirrors `WaitList::closed` for the lock-free fast paths.
    closed: AtomicBool,
    waiters: Mutex<WaitList>,
    admitted: AtomicU64,
    refused: AtomicU64,
    over_released: AtomicU64,
    /// How long tracked handles of this kind were held (recorded by whoever
    /// drops a tracked handle; see [`Holdings`](crate::Holdings)).
    hold_time: crate::Histogram,
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kind")
            .field("name", &self.name)
            .field("live", &self.live())
            .field("budget", &self.budget())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl Kind {
    /// A kind named `name` allowing `budget` live at once (`usize::MAX`: no
    /// limit). A kind meant to be found by name is made with
    /// [`Books::register_kind`](crate::Books::register_kind) instead.
    pub fn new(name: impl Into<Cow<'static, str>>, budget: usize) -> Kind {
        Kind {
            name: name.into(),
            live: AtomicUsize::new(0),
            budget: AtomicUsize::new(budget),
            peak: AtomicUsize::new(0),
            has_waiters: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            waiters: Mutex::new(WaitList {
                queue: VecDeque::new(),
                closed: false,
                sweep_at: SWEEP_MIN,
            }),
            admitted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            over_released: AtomicU64::new(0),
            hold_time: crate::Histogram::default(),
        }
    }

    /// How long tracked handles of this kind were held, from `track` to
    /// drop: recorded with `record_shared` as each handle drops.
    pub fn hold_time(&self) -> &crate::Histogram {
        &self.hold_time
    }

    /// The kind's name (`"task"`, `"socket"`, a user's `"db"`...).
    pub fn name(&self) -> &str {
        &self.name
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

    /// Changes the budget.
    ///
    /// Raising it hands the new room to waiters at once. Lowering it below
    /// the live count takes nothing back: acquisitions are refused until
    /// enough permits are released to get under the new budget.
    pub fn set_budget(&self, budget: usize) {
        self.budget.store(budget, Relaxed);
        // The releaser's side of the Dekker pair (see the module docs): more
        // room is like a freed permit, so a waiter that read the old budget
        // is seen here.
        fence(SeqCst);
        if self.has_waiters.load(Relaxed) {
            self.hand_out();
        }
    }

    /// True when no permit is free.
    pub fn is_full(&self) -> bool {
        self.live.load(Relaxed) >= self.budget.load(Relaxed)
    }

    /// True once [`close`](Kind::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    /// Permits handed out since the start.
    pub fn admitted(&self) -> u64 {
        self.admitted.load(Relaxed)
    }

    /// `try_acquire` calls refused for want of a permit.
    pub fn refused(&self) -> u64 {
        self.refused.load(Relaxed)
    }

    /// Releases that found no live permit (a caller's bug; see
    /// [`release`](Kind::release)).
    pub fn over_released(&self) -> u64 {
        self.over_released.load(Relaxed)
    }

    /// Waiters in the wait list now. Cancelled waiters not yet swept out
    /// are counted until their turn comes or the list is swept.
    pub fn waiting(&self) -> usize {
        if !self.has_waiters.load(Relaxed) {
            return 0;
        }
        self.waiters.lock().queue.len()
    }

    /// Takes a permit if one is free. Never waits. Refused once the kind is
    /// closed.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        if self.is_closed() {
            return false;
        }
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
        // Relaxed: fairness is best effort. A stale `false` lets this caller
        // take a free permit ahead of a waiter that is just joining (the
        // waiter then finds the kind full and waits for the next release); a
        // stale `true` sends this caller to the wait list, where `wait`
        // hands it any free permit.
        !self.is_closed() && !self.has_waiters.load(Relaxed) && self.take()
    }

    /// Takes a permit whatever the budget: counts a handle that exists
    /// already (`bulwark::resource::track` of a value the caller holds),
    /// which refusing would not make go away. `live` may pass the budget;
    /// later acquisitions wait or are refused until it is back under.
    pub fn acquire_over_budget(self: &Arc<Self>) -> Permit {
        let live = self.live.fetch_add(1, Relaxed) + 1;
        self.admitted.fetch_add(1, Relaxed);
        if live > self.peak.load(Relaxed) {
            self.peak.fetch_max(live, Relaxed);
        }
        Permit::from_raw(self.clone())
    }

    /// One CAS on `live` below the budget.
    fn take(&self) -> bool {
        let budget = self.budget.load(Relaxed);
        let mut live = self.live.load(Relaxed);
        loop {
            if live >= budget {
                return false;
            }
            // Relaxed: the ceiling holds by the modification order of `live`
            // alone. The waiter's side of the Dekker pair orders its read of
            // `live` with a fence in `wait`.
            match self
                .live
                .compare_exchange_weak(live, live + 1, Relaxed, Relaxed)
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
    ///
    /// A release with no live permit is a caller's bug (a permit released
    /// twice, or one never taken). It panics in debug builds; in release
    /// builds it is counted in [`over_released`](Kind::over_released) and
    /// leaves `live` at zero instead of wrapping it to `usize::MAX`, which
    /// would refuse every acquisition from then on.
    #[inline]
    pub fn release(&self) {
        let mut live = self.live.load(Relaxed);
        loop {
            if live == 0 {
                self.over_released.fetch_add(1, Relaxed);
                debug_assert!(
                    false,
                    "ledger kind `{}`: release with no live permit",
                    self.name
                );
                return;
            }
            // Relaxed: see `take`; the fence below orders this write before
            // the read of `has_waiters`.
            match self
                .live
                .compare_exchange_weak(live, live - 1, Relaxed, Relaxed)
            {
                Ok(_) => break,
                Err(actual) => live = actual,
            }
        }
        // The releaser's side of the Dekker pair: our decrement of `live`,
        // then this fence, then the read of `has_waiters`. A waiter that
        // joined without seeing the decrement is seen here.
        fence(SeqCst);
        if self.has_waiters.load(Relaxed) {
            self.hand_out();
        }
    }

    /// Joins the wait list. The waiter is admitted (perhaps at once, on this
    /// thread) when a permit is free and everyone before it is served. On a
    /// closed kind the waiter is closed at once, on this thread.
    pub fn wait(&self, waiter: Arc<dyn Waiter>) {
        {
            let mut list = self.waiters.lock();
            if list.closed {
                drop(list);
                waiter.close();
                return;
            }
            if list.queue.len() >= list.sweep_at {
                list.queue.retain(|w| !w.is_cancelled());
                list.sweep_at = (list.queue.len() * 2).max(SWEEP_MIN);
            }
            list.queue.push_back(waiter);
            // Relaxed: the lock orders this against every other change of
            // the flag; the fence below orders it before our read of `live`.
            self.has_waiters.store(true, Relaxed);
        }
        // The waiter's side of the Dekker pair: the flag written above, this
        // fence, then `hand_out` reads `live` (in `take`). A release that
        // did not see the flag freed its permit before this fence, so we
        // see that permit here.
        fence(SeqCst);
        self.hand_out();
    }

    /// Passes free permits to waiters, in order.
    fn hand_out(&self) {
        loop {
            let next = {
                let mut list = self.waiters.lock();
                if list.closed {
                    return;
                }
                if list.queue.is_empty() {
                    self.has_waiters.store(false, Relaxed);
                    return;
                }
                if !self.take() {
                    return;
                }
                let next = list.queue.pop_front();
                if list.queue.is_empty() {
                    // Relaxed: changed only under the lock; a later joiner
                    // sets it again under the lock and fences.
                    self.has_waiters.store(false, Relaxed);
                }
                next
            };
            // Outside the lock: admitting may schedule a task or wake one,
            // and a panicking waker must not poison the list.
            if let Some(w) = next {
                if !w.admit() {
                    // Declined (cancelled meanwhile): the permit goes on to
                    // the next waiter. The next loop turn takes the lock after
                    // this decrement, so any waiter that joined meanwhile is
                    // either seen by this loop or sees the decrement itself.
                    self.live.fetch_sub(1, Relaxed);
                }
            }
        }
    }

    /// Closes the kind (runtime shutdown): every waiter is told
    /// [`Waiter::close`], neither granted a permit nor owing a release; a
    /// later [`wait`](Kind::wait) closes its waiter at once; acquisitions are
    /// refused from now on. Permits already held stay live until released.
    /// Returns the number of waiters closed. Closing twice is harmless.
    pub fn close(&self) -> usize {
        let drained: Vec<_> = {
            let mut list = self.waiters.lock();
            list.closed = true;
            // Relaxed: the fast paths read it as a hint; the decision that
            // matters (hand out or close a waiter) is taken under the lock.
            self.closed.store(true, Relaxed);
            self.has_waiters.store(false, Relaxed);
            list.queue.drain(..).collect()
        };
        let n = drained.len();
        // Outside the lock: closing wakes futures.
        for w in drained {
            w.close();
        }
        n
    }

    /// A future resolving to a [`Permit`] when one is free, or to
    /// [`Closed`] if the kind is (or gets) closed. Dropping it while it
    /// waits gives its place away; a permit granted in that moment is
    /// released, never lost.
    pub fn acquire(self: &Arc<Self>) -> Acquire {
        Acquire::new(self.clone())
    }

    /// A [`Permit`] if one is free now (and the kind is open).
    pub fn try_acquire_permit(self: &Arc<Self>) -> Option<Permit> {
        if self.try_acquire() {
            Some(Permit::from_raw(self.clone()))
        } else {
            None
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

#[cfg(all(test, loom))]
mod loom_tests;
