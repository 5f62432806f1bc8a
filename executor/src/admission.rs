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

use crate::clock;
use crate::sync::{AtomicU64, AtomicU8, Mutex};
use crate::task::{Id, Notified, Schedule, Task};
use bulwark_metrics::ledger::{self, Kind, Permit, Waiter};
use bulwark_metrics::{Books, Histogram};
use std::collections::HashMap;
use std::sync::atomic::{Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The id of the task polled on this thread, as the books tag a reservation
/// with (`Books::set_current_task`).
pub(crate) fn current_task() -> Option<u64> {
    crate::task::try_id().map(|id| id.as_u64())
}

/// What a spawn does when the runtime cannot take more work.
///
/// # Which policy
///
/// The ceiling (`max_tasks`) bounds how much work is *live*; adaptive
/// shedding bounds how *late* it runs. They guard against different floods:
///
/// - **Many cheap tasks** (a fan-out of sleeping subtasks, idle
///   connections): memory and queues grow with the count, not the CPU. The
///   ceiling is the guard, and it keeps the run queue short, so the
///   scheduling delay never stands above 5 ms and adaptive never sheds: in
///   the showdown's `fanout` flood (2,000 requests/s of 1,000 subtasks)
///   `Adaptive` records no shedding transition, and `Reject` alone serves as
///   well.
/// - **Fewer, CPU-heavy tasks** (10 ms requests at 300/s on 2 cores): a
///   few hundred live tasks fill the workers' time while staying far under
///   any sensible ceiling, so the ceiling never bites. The scheduling delay
///   shows it: `Adaptive` sheds (refusing new connections and dropping
///   tasks that waited past the target before their first poll). In the
///   showdown's `cpu` scenario it serves 2.2-2.7x the good requests of
///   the ceiling alone (660 against 243 a second in one run).
/// - **Bursty but bounded work** that must not be refused (an internal job
///   queue): `Wait`.
///
/// So: `Reject` with a ceiling sized to memory, plus `Adaptive` when
/// requests can cost real CPU, which is most services.
///
/// # Examples
///
/// One task at a time: a second spawn is refused under `Reject`, and waits
/// its turn under `Wait`.
///
/// ```
/// use bulwark::runtime::{Admission, Builder};
/// use bulwark::sync::oneshot;
/// use std::time::Duration;
///
/// for admission in [Admission::Reject, Admission::Wait] {
///     let rt = Builder::new_multi_thread()
///         .max_tasks(1)
///         .admission(admission)
///         .build()
///         .unwrap();
///     rt.block_on(async {
///         let (release, released) = oneshot::channel::<()>();
///         let first = bulwark::spawn(async move { released.await.unwrap() });
///         let second = bulwark::spawn(async { "second" });
///         release.send(()).unwrap();
///         first.await.unwrap();
///         match admission {
///             Admission::Reject => assert!(second.await.unwrap_err().is_rejected()),
///             _ => assert_eq!(second.await.unwrap(), "second"),
///         }
///     });
/// }
///
/// // Adaptive shedding's defaults: a 5 ms target over a 100 ms window.
/// assert_eq!(
///     Admission::adaptive(),
///     Admission::Adaptive { target: Duration::from_millis(5), interval: Duration::from_millis(100) },
/// );
/// ```
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
    /// Holds a permit (or there is no ceiling): run it.
    Admit,
    /// Queue it for the next free permit.
    Queue,
    /// Refuse it; `shedding` says whether adaptive shedding (not the ceiling)
    /// refused it.
    Reject { shedding: bool },
    /// A child over its parent's fan-out budget: it waits in the parent's
    /// family queue, holding no permit (see `fanout`). Never returned by
    /// the admitter.
    Family,
}

/// The ticket holds a permit of the task ceiling, to give back at the end.
const PERMIT: u8 = 1 << 0;
/// Not yet polled and not essential, under adaptive admission: may still be
/// shed at its first dequeue if it waited too long.
const SHEDDABLE: u8 = 1 << 1;
/// Waiting in the admission wait list; only a grant or a cancel clears it.
const QUEUED: u8 = 1 << 2;
/// The task has finished: a grant that comes now is refused, so the permit
/// goes on to the next waiter instead of leaking.
const DONE: u8 = 1 << 3;
/// Holds a live-child place in its parent's family (see `fanout`): its end
/// gives the place to the next waiting sibling.
const SLOT: u8 = 1 << 4;
/// Waits in its parent's family queue (see `fanout`), holding nothing but
/// its future; taking it out (a start, a cancel, its end) clears it.
const FAMILY_QUEUED: u8 = 1 << 5;
/// The task accepted a connection from a listener (an accept loop): what it
/// spawns is new work at the door (roots), not children of admitted work.
const ACCEPTOR: u8 = 1 << 6;

/// What a task held when it ended (see [`Admitter::on_finish`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ended {
    /// It held a live-child place in its parent's family.
    pub(crate) slot: bool,
    /// It was still in its parent's family queue (shut down there).
    pub(crate) family_queued: bool,
}

/// One task's admission state, kept in the task's scheduler value. Every
/// change is one atomic operation on `state`, so a grant racing the task's
/// end (a shutdown claim, a deadline) either hands over the permit before
/// the end gives it back, or is refused.
pub(crate) struct Ticket {
    state: AtomicU8,
    /// When the task was last queued by a wake (`clock::now`), if adaptive
    /// admission samples scheduling delay; 0 otherwise.
    queued_at: AtomicU64,
}

impl Ticket {
    fn new(bits: u8) -> Ticket {
        Ticket {
            state: AtomicU8::new(bits),
            queued_at: AtomicU64::new(0),
        }
    }

    /// True while the task waits in the admission wait list.
    pub(crate) fn is_queued(&self) -> bool {
        self.state.load(Acquire) & QUEUED != 0
    }

    /// The wait list hands the task a permit. False if the task finished
    /// first (the permit is then not the task's to give back).
    fn grant(&self) -> bool {
        // One read-modify-write, as `finish` is: so exactly one of the two
        // sees the other's write. That is atomicity, not ordering (the loom
        // model `loom_grant_racing_finish_and_cancel_moves_the_permit_once`
        // passes with Relaxed, and fails with a load then a store). AcqRel
        // pairs with `finish`'s swap so that the granting thread's work and
        // the finishing thread's are ordered too, as a lock would order them.
        self.state
            .fetch_update(AcqRel, Acquire, |s| {
                (s & DONE == 0).then_some((s & !QUEUED) | PERMIT)
            })
            .is_ok()
    }

    /// Leaves the wait list without a permit (cancelled while it waited).
    fn unqueue(&self) {
        self.state.fetch_and(!QUEUED, AcqRel);
    }

    /// The task ended: true if it held a permit, which the caller gives back.
    #[cfg(test)]
    fn finish(&self) -> bool {
        self.finish_bits() & PERMIT != 0
    }

    /// The task ended: every bit it held before (see [`finish`](Self::finish)).
    fn finish_bits(&self) -> u8 {
        self.state.swap(DONE, AcqRel)
    }

    /// Marks a child before it is published: it holds a live place in its
    /// parent's family (`slot`), or it waits in the family queue.
    pub(crate) fn set_family(&self, slot: bool, queued: bool) {
        let bits = if slot { SLOT } else { 0 } | if queued { FAMILY_QUEUED } else { 0 };
        self.state.fetch_or(bits, Relaxed);
    }

    /// Marks the task as an accept loop (see `ACCEPTOR`); set by the task's
    /// own poll.
    pub(crate) fn set_acceptor(&self) {
        if self.state.load(Relaxed) & ACCEPTOR == 0 {
            self.state.fetch_or(ACCEPTOR, Relaxed);
        }
    }

    /// Whether the task accepts connections (its spawns are roots).
    pub(crate) fn is_acceptor(&self) -> bool {
        self.state.load(Relaxed) & ACCEPTOR != 0
    }

    /// True while the task waits in its parent's family queue.
    pub(crate) fn is_family_queued(&self) -> bool {
        self.state.load(Acquire) & FAMILY_QUEUED != 0
    }

    /// The task leaves its family queue to start: it takes a live place.
    /// False if it ended first (shut down while it waited): then it holds
    /// nothing and the place goes to the next sibling. One read-modify-write,
    /// as `finish` is, so exactly one of the two sees the other (as `grant`).
    pub(crate) fn take_slot(&self) -> bool {
        self.state
            .fetch_update(AcqRel, Acquire, |s| {
                (s & DONE == 0).then_some((s & !FAMILY_QUEUED) | SLOT)
            })
            .is_ok()
    }

    /// The task leaves its family queue without starting (cancelled).
    pub(crate) fn leave_family_queue(&self) {
        self.state.fetch_and(!FAMILY_QUEUED, AcqRel);
    }

    /// A child that left its family queue meets a full ceiling: it joins the
    /// admission wait list. False if it ended first.
    pub(crate) fn requeue(&self) -> bool {
        self.state
            .fetch_update(AcqRel, Acquire, |s| (s & DONE == 0).then_some(s | QUEUED))
            .is_ok()
    }

    /// A child that left its family queue got a permit at once. False if it
    /// ended first (the caller gives the permit back).
    pub(crate) fn grant_permit(&self) -> bool {
        self.grant()
    }

    /// The task's first dequeue: true if it could still be shed then.
    fn take_sheddable(&self) -> bool {
        self.state.load(Relaxed) & SHEDDABLE != 0
            && self.state.fetch_and(!SHEDDABLE, Relaxed) & SHEDDABLE != 0
    }
}

/// What admission needs from a task's scheduler value.
pub(crate) trait Admitted: Schedule {
    /// The task's admission state.
    fn ticket(&self) -> &Ticket;
    /// The runtime's admission.
    fn admitter(&self) -> &Admitter<Self>;
    /// Queues a task that waited for admission and now may run (no `&self`,
    /// as `Schedule::schedule`).
    fn schedule_admitted(task: Notified<Self>);
}

/// The runtime's admission: policy, ceiling books, CoDel state, and the
/// index of the tasks in the wait list. Every admission decision is made
/// here: at spawn ([`decide_uncounted`](Self::decide_uncounted), [`ticket`](Self::ticket)), at
/// a wake ([`on_wake`](Self::on_wake)), at dequeue
/// ([`on_dequeue`](Self::on_dequeue)), at finish
/// ([`on_finish`](Self::on_finish)), at cancel
/// ([`on_cancel`](Self::on_cancel)) and at shutdown
/// ([`close`](Self::close)).
pub(crate) struct Admitter<S: 'static> {
    policy: Admission,
    /// False when there is no ceiling (`max_tasks(usize::MAX)`): no
    /// accounting at all, nothing on the hot path.
    ceiling: bool,
    books: Arc<Books>,
    codel: Option<Codel>,
    /// `Builder::histograms`: stamp a sample of wakes for the
    /// scheduling-delay histogram.
    histograms: bool,
    /// One wake in this many is stamped with the clock (CoDel's sample, or
    /// the histograms'); 0: no wake is.
    wake_sample: u32,
    /// Tasks in the admission wait list, by id, so an abort or a deadline
    /// can take one out without waiting for a permit.
    queued: Mutex<HashMap<Id, Arc<QueuedTask<S>>>>,
}

impl<S: Admitted> Admitter<S> {
    pub(crate) fn new(policy: Admission, books: Arc<Books>, histograms: bool) -> Admitter<S> {
        let codel = match policy {
            Admission::Adaptive { target, interval } => Some(Codel::new(target, interval)),
            _ => None,
        };
        let wake_sample = match (&codel, histograms) {
            (Some(_), _) => SAMPLE,
            (None, true) => HISTOGRAM_SAMPLE,
            (None, false) => 0,
        };
        Admitter {
            policy,
            ceiling: kind(&books).budget() != usize::MAX,
            books,
            codel,
            histograms,
            wake_sample,
            queued: Mutex::new(HashMap::new()),
        }
    }

    /// The runtime's books.
    pub(crate) fn books(&self) -> &Arc<Books> {
        &self.books
    }

    /// The ledger kind whose budget is the task ceiling.
    pub(crate) fn kind(&self) -> &Kind {
        kind(&self.books)
    }

    /// Decides for a spawn. `may_queue`: the caller can queue the task
    /// (`spawn`), as opposed to wanting an answer now (`try_spawn`).
    ///
    /// A new root (not a child of admitted work) does not jump the wait
    /// list: while children (or `spawn_wait` futures) wait for a permit, a
    /// root is refused even if a permit is free for a moment, so work
    /// already admitted finishes first.
    #[cfg(test)]
    pub(crate) fn decide(&self, essential: bool, may_queue: bool) -> Decision {
        let decision = self.decide_uncounted(essential, may_queue);
        if let Decision::Reject { shedding } = decision {
            self.count_rejection(shedding);
        }
        decision
    }

    /// As `decide` (the tests' entry point), without counting a refusal in the books:
    /// the spawn path counts it once it knows the spawn is refused (a child
    /// refused as a root is given another chance, as a child).
    #[inline]
    pub(crate) fn decide_uncounted(&self, essential: bool, may_queue: bool) -> Decision {
        if self.codel.is_some() && !essential && self.books.is_shedding() {
            return Decision::Reject { shedding: true };
        }
        if !self.ceiling {
            return Decision::Admit;
        }
        let waits = self.policy == Admission::Wait && may_queue;
        let got = if waits {
            self.kind().try_acquire_fair()
        } else {
            // Fair first (no waiters: one load more than `try_acquire`);
            // if that fails for want of a permit, `try_acquire` counts the
            // refusal in the kind's books.
            self.kind().try_acquire_fair()
                || (self.kind().waiting() == 0 && self.kind().try_acquire())
        };
        match (got, waits) {
            (true, _) => Decision::Admit,
            (false, true) => Decision::Queue,
            (false, false) => Decision::Reject { shedding: false },
        }
    }

    /// Counts a refused spawn in the books: as shed, or as refused at the
    /// ceiling.
    pub(crate) fn count_rejection(&self, shedding: bool) {
        if shedding {
            self.books.count_rejected_shedding();
        } else {
            self.books.count_rejected_ceiling();
        }
    }

    /// Decides for a child of admitted work (spawned by `spawn` while its
    /// parent is polled): never shed, and at a full ceiling it waits for a
    /// permit (first come, first served, behind the waiters already there)
    /// instead of being refused, whatever the policy. The caller has checked
    /// the runtime's cap on waiting children.
    pub(crate) fn decide_child(&self) -> Decision {
        if !self.ceiling || self.kind().try_acquire_fair() {
            Decision::Admit
        } else {
            Decision::Queue
        }
    }

    /// The ticket of a task spawned under `decision` (`Admit` for a spawn
    /// whose permit `spawn_wait` already holds).
    ///
    /// `now`: the clock read the spawn already made (for a deadline), if it
    /// made one; `coarse`: the spawning worker's coarse time, if on one.
    pub(crate) fn ticket(
        &self,
        decision: Decision,
        essential: bool,
        now: Option<u64>,
        coarse: Option<u64>,
    ) -> Ticket {
        let mut bits = 0;
        if self.ceiling && decision == Decision::Admit {
            bits |= PERMIT;
        }
        if decision == Decision::Queue {
            bits |= QUEUED;
        }
        if self.codel.is_some() && !essential {
            bits |= SHEDDABLE;
        }
        let ticket = Ticket::new(bits);
        if self.codel.is_some() && decision == Decision::Admit {
            // Every first poll is stamped: it decides whether the task is
            // shed unpolled. The stamp is the best time at hand: the spawn's
            // clock read if it made one, else the worker's coarse time (free),
            // else (off the workers) a clock read. One in `SAMPLE` is marked
            // to be measured with the clock at dequeue, and CoDel learns from
            // that delay; the rest are measured with the coarse time.
            let at = match (now, coarse) {
                (Some(now), _) => now,
                (None, Some(coarse)) => coarse,
                (None, None) => clock::now(),
            };
            let stamp = if sample_this_one(SAMPLE) {
                at | SAMPLED
            } else {
                (at & !SAMPLED).max(2)
            };
            ticket.queued_at.store(stamp, Relaxed);
        } else if self.histograms
            && decision == Decision::Admit
            && sample_this_one(HISTOGRAM_SAMPLE)
        {
            // Histograms alone: one spawn in the sample is stamped for the
            // scheduling-delay histogram, as a wake is.
            ticket
                .queued_at
                .store(now.unwrap_or_else(clock::now) | SAMPLED, Relaxed);
        }
        ticket
    }

    /// Takes the task permit a listener's `accept` reserved on this thread
    /// for the running task's next spawn (see
    /// `bulwark_metrics::ledger::reserve_for_spawn`): true if there was one,
    /// and the caller now holds it, to be given back by the task's
    /// [`on_finish`](Self::on_finish). One thread-local look, and only under
    /// a ceiling (nothing is ever reserved without one). A reservation left
    /// by another task is released here.
    #[inline]
    pub(crate) fn take_reserved(&self) -> bool {
        self.ceiling
            && ledger::take_reserved(self.kind(), current_task)
                .map(Permit::into_raw)
                .is_some()
    }

    /// Whether spawns are accounted against the ceiling at all.
    pub(crate) fn has_ceiling(&self) -> bool {
        self.ceiling
    }

    /// A task was woken and queued (not a yield): under adaptive admission,
    /// one wake in [`SAMPLE`] is stamped with the clock, so its delay to the
    /// next poll is fed to CoDel. A sample, not every wake: a clock read
    /// costs about 45 ns here, two per wake and poll cost a message-passing
    /// service (ping-pong) about a tenth of its throughput, and a standing
    /// queue shows in a sample as well.
    #[inline]
    pub(crate) fn on_wake(&self, ticket: &Ticket) {
        if self.wake_sample != 0 && sample_this_one(self.wake_sample) {
            ticket.queued_at.store(clock::now() | SAMPLED, Relaxed);
        }
    }

    /// A task that waited for admission was given a permit and queued: its
    /// first poll is always stamped (it may still be shed then).
    pub(crate) fn on_admitted(&self, ticket: &Ticket) {
        if self.codel.is_some() {
            ticket.queued_at.store(clock::now() | SAMPLED, Relaxed);
        }
    }

    /// A worker took `task` from a queue to poll it. Under adaptive
    /// admission, sheds it if it has never run and waited too long (CoDel
    /// drops at dequeue: it is then dropped unpolled and its handle says
    /// rejected), and feeds a sampled delay to CoDel.
    ///
    /// `coarse` is the worker's coarse time: an unsampled stamp is measured
    /// with it, for free; the coarse time lags the clock by a few polls at
    /// most, so the delay can only come out short, never long. A sampled
    /// stamp is measured with the clock, and that delay goes to CoDel; the
    /// clock read made for it comes back, for the worker to refresh its
    /// coarse time with.
    #[inline]
    pub(crate) fn on_dequeue(
        &self,
        task: &Notified<S>,
        coarse: u64,
        delays: Option<&Histogram>,
    ) -> Option<u64> {
        if self.wake_sample == 0 {
            return None;
        }
        let ticket = task.scheduler().ticket();
        // A load first: most polls find no stamp, and a swap is a locked
        // instruction.
        if ticket.queued_at.load(Relaxed) == 0 {
            return None;
        }
        let stamp = ticket.queued_at.swap(0, Relaxed);
        if stamp == 0 {
            return None;
        }
        let since = stamp & !SAMPLED;
        let sampled = stamp & SAMPLED != 0;
        let (mut now, mut read) = if sampled {
            let at = Instant::now();
            (clock::nanos_at(at), Some(at))
        } else {
            (coarse, None)
        };
        if let Some(codel) = &self.codel {
            if read.is_none() && now.saturating_sub(since) > codel.target {
                // The coarse time lags, so a coarse delay is short, never
                // long: past the target it may be past a drop threshold too.
                // The clock settles it (only for tasks that waited a while:
                // a loaded worker, where a clock read is cheap next to the
                // wait).
                let at = Instant::now();
                (now, read) = (clock::nanos_at(at), Some(at));
            }
            let delay = Duration::from_nanos(now.saturating_sub(since));
            if ticket.take_sheddable() && self.should_shed_at_dequeue(codel, delay) {
                task.shed_before_first_poll();
            } else if let Some(at) = read {
                // Every delay measured with the clock teaches CoDel: the
                // sampled ones, and the ones that looked long, which are
                // long (a queue that stands shows in them first).
                self.observe_delay(codel, at, delay);
            }
        }
        if sampled {
            // Only the sampled delays go to the histogram: the ones measured
            // because they looked long would skew it.
            if let Some(h) = delays {
                h.record(now.saturating_sub(since));
            }
        }
        read.map(|_| now)
    }

    /// A task ended: give back its permit, if it held one (which may admit
    /// the next waiter). Returns what else it held, for its family.
    #[inline]
    pub(crate) fn on_finish(&self, ticket: &Ticket) -> Ended {
        let bits = ticket.finish_bits();
        if bits & PERMIT != 0 {
            self.kind().release();
        }
        Ended {
            slot: bits & SLOT != 0,
            family_queued: bits & FAMILY_QUEUED != 0,
        }
    }

    /// A task was cancelled and no worker was asked to run it: if it waits
    /// in the wait list, take it out and queue it, so its future is dropped
    /// now rather than when a permit frees.
    pub(crate) fn on_cancel(&self, task: &Task<S>) {
        if !task.scheduler().ticket().is_queued() {
            return;
        }
        let Some(queued) = self.queued.lock().remove(&task.id()) else {
            return;
        };
        let taken = queued.task.lock().take();
        if let Some(notified) = taken {
            notified.scheduler().ticket().unqueue();
            // Cancelled already: it runs only to drop its future. No permit.
            S::schedule(notified);
        }
    }

    /// Puts a task in the wait list (its ticket says `QUEUED`). A task
    /// cancelled before it got here (a deadline already past fires while it
    /// is spawned) is queued to run its cancellation instead of waiting for a
    /// permit it does not need.
    pub(crate) fn enqueue(&self, task: Notified<S>) {
        let id = task.id();
        let queued = Arc::new(QueuedTask {
            id,
            task: Mutex::new(Some(task)),
        });
        self.queued.lock().insert(id, queued.clone());
        // Only now can a cancel find it: check for one that came before.
        let cancelled = queued
            .task
            .lock()
            .as_ref()
            .is_some_and(|t| t.header().state.load().is_cancelled());
        if cancelled {
            if let Some(queued) = self.queued.lock().remove(&id) {
                let taken = queued.task.lock().take();
                if let Some(notified) = taken {
                    notified.scheduler().ticket().unqueue();
                    S::schedule(notified);
                }
            }
            return;
        }
        self.kind().wait(queued);
    }

    /// Shutdown: closes the ceiling's wait list. Tasks that waited in it run
    /// only to end (their futures are dropped, no permit taken); `spawn_wait`
    /// futures are told the runtime is closing.
    pub(crate) fn close(&self) {
        self.kind().close();
        let all: Vec<_> = self.queued.lock().drain().collect();
        for (_, queued) in all {
            if let Some(notified) = queued.task.lock().take() {
                notified.scheduler().ticket().unqueue();
                drop(notified);
            }
        }
    }

    fn should_shed_at_dequeue(&self, codel: &Codel, delay: Duration) -> bool {
        let d = delay.as_nanos() as u64;
        (self.books.is_shedding() && d > codel.target) || d > codel.interval
    }

    /// A task was polled `delay` after it was queued.
    fn observe_delay(&self, codel: &Codel, now: Instant, delay: Duration) {
        if let Some(shed) = codel.observe(now, delay, self.books.is_shedding()) {
            self.books.set_shedding(shed);
            if !shed {
                codel.left_shedding(now);
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

/// One wake (and one spawn on a worker) in this many is stamped with the
/// clock for CoDel; a power of two.
pub(crate) const SAMPLE: u32 = 8;

/// The low bit of a stamp (nanoseconds; the bit is below their precision):
/// set if the delay is to be measured with the clock at dequeue and fed to
/// CoDel, clear if the worker's coarse time measures it.
const SAMPLED: u64 = 1;

/// One wake (and spawn) in this many is stamped for the scheduling-delay
/// histogram when CoDel is off (`Builder::histograms` without adaptive
/// admission): a clock read at the wake and one at the poll, about 90 ns,
/// would add more than a short poll costs if made for every wake. With
/// CoDel on, its stamps (one in [`SAMPLE`]) feed the histogram too.
pub(crate) const HISTOGRAM_SAMPLE: u32 = 64;

/// True for one call in `every` (a power of two) on this thread: a
/// thread-local counter, so sampling costs no shared write.
#[inline]
fn sample_this_one(every: u32) -> bool {
    thread_local! {
        static CALLS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    CALLS
        .try_with(|n| {
            let v = n.get().wrapping_add(1);
            n.set(v);
            v & (every - 1) == 0
        })
        .unwrap_or(false)
}

fn kind(books: &Books) -> &Kind {
    books.tasks()
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
            // Read before writing: every worker passes here on most polls,
            // and a store each time would bounce the line between them.
            if self.shed_at.load(Relaxed) != 0 {
                self.shed_at.store(0, Relaxed);
            }
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
pub(crate) struct QueuedTask<S: 'static> {
    id: Id,
    /// Taken by whoever ends the wait first: a grant, a cancel, shutdown.
    task: Mutex<Option<Notified<S>>>,
}

impl<S: Admitted> Waiter for QueuedTask<S> {
    fn admit(self: Arc<Self>) -> bool {
        let Some(task) = self.task.lock().take() else {
            // Taken out by an abort, a deadline or shutdown: the permit goes
            // on to the next waiter.
            return false;
        };
        let sched = task.scheduler();
        sched.admitter().queued.lock().remove(&self.id);
        if task.header().state.load().is_cancelled() {
            // Cancelled while it waited: it runs only to end, without a
            // permit.
            sched.ticket().unqueue();
            S::schedule(task);
            return false;
        }
        if !sched.ticket().grant() {
            // It ended first (shut down): nothing to run, no permit to take.
            drop(task);
            return false;
        }
        S::schedule_admitted(task);
        true
    }

    fn close(self: Arc<Self>) {
        // Shutdown: the registry has cancelled the task already; dropping
        // this reference is all that is left. No permit changes hands.
        if let Some(task) = self.task.lock().take() {
            task.scheduler().admitter().queued.lock().remove(&self.id);
            task.scheduler().ticket().unqueue();
            drop(task);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_grant_after_the_task_ended_is_refused_and_its_end_releases_nothing() {
        // Defect: a grant racing the shutdown claim stored "admitted" after
        // the finishing task had read it, and the permit leaked.
        let t = Ticket::new(QUEUED);
        assert!(!t.finish(), "a queued task holds no permit");
        assert!(!t.grant(), "the permit must go on to the next waiter");
        let t = Ticket::new(QUEUED);
        assert!(t.grant());
        assert!(!t.is_queued());
        assert!(t.finish(), "a granted task gives its permit back once");
        assert!(!t.finish());
    }

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

    type Admitter = super::Admitter<crate::scheduler::Sched>;

    #[test]
    fn ceiling_rejects_and_wait_queues() {
        let books = Arc::new(Books::new(1, false));
        let reject = Admitter::new(Admission::Reject, books.clone(), false);
        assert_eq!(reject.decide(false, true), Decision::Admit);
        assert_eq!(
            reject.decide(false, true),
            Decision::Reject { shedding: false }
        );
        let wait = Admitter::new(Admission::Wait, books.clone(), false);
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
        let a = Admitter::new(Admission::adaptive(), books.clone(), false);
        books.set_shedding(true);
        assert_eq!(a.decide(false, true), Decision::Reject { shedding: true });
        assert_eq!(a.decide(true, true), Decision::Admit);
        a.on_idle();
        assert!(!books.is_shedding());
    }

    #[test]
    fn first_polls_that_waited_too_long_are_shed() {
        let books = Arc::new(Books::new(10, false));
        let a = Admitter::new(Admission::adaptive(), books.clone(), false);
        let c = a.codel.as_ref().unwrap();
        assert!(!a.should_shed_at_dequeue(c, Duration::from_millis(50)));
        assert!(a.should_shed_at_dequeue(c, Duration::from_millis(150)));
        books.set_shedding(true);
        assert!(a.should_shed_at_dequeue(c, Duration::from_millis(6)));
        assert!(!a.should_shed_at_dequeue(c, Duration::from_millis(4)));
    }
}

/// Model-checked races of admission: run with
/// `RUSTFLAGS="--cfg loom" cargo test -p bulwark-executor --lib loom_`.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use crate::task::{self, Finish, TaskMeta};
    use loom::sync::atomic::AtomicUsize;
    use loom::thread;
    use std::sync::atomic::Ordering::SeqCst;

    /// A grant (`QueuedTask::admit`: the wait list offers the task a freed
    /// permit) races the task's end (`on_finish`, after the shutdown claim
    /// or a deadline) and a cancel (`unqueue`). The offered permit goes
    /// either to the task, which gives it back exactly once at its end, or
    /// (grant refused) on to the next waiter: never kept by a finished task,
    /// never released twice.
    #[test]
    fn loom_grant_racing_finish_and_cancel_moves_the_permit_once() {
        loom::model(|| {
            let ticket = Arc::new(Ticket::new(QUEUED));
            let granter = {
                let ticket = ticket.clone();
                thread::spawn(move || ticket.grant())
            };
            let canceller = {
                let ticket = ticket.clone();
                thread::spawn(move || ticket.unqueue())
            };
            let released = ticket.finish();
            let granted = granter.join().unwrap();
            canceller.join().unwrap();
            // Granted: the task held the permit, so its end gave it back.
            // Refused: the end found none, and the wait list passes it on.
            assert_eq!(granted, released, "granted {granted}, released {released}");
            assert!(!ticket.finish(), "a permit given back twice");
            assert!(!ticket.grant(), "a grant to a finished task");
            assert!(!ticket.is_queued());
        });
    }

    /// A scheduler value for a task in the wait list: the real `Admitter`
    /// and `Ticket`, and counters where the runtime's `Sched` would queue.
    struct TestSched {
        admit: Arc<Admitter<TestSched>>,
        ticket: Ticket,
        /// `schedule` calls: the task was queued to run its cancellation.
        scheduled: Arc<AtomicUsize>,
        /// `schedule_admitted` calls: the task was queued with a permit.
        admitted: Arc<AtomicUsize>,
    }

    impl Schedule for TestSched {
        fn schedule(task: Notified<Self>) {
            task.scheduler().scheduled.fetch_add(1, SeqCst);
            drop(task);
        }

        fn yield_now(task: Notified<Self>) {
            Self::schedule(task);
        }

        fn release(&self, _: &Task<Self>) -> Option<Task<Self>> {
            None
        }

        fn on_finish(&self, _: Finish, _: u64) {}

        fn set_timer(
            &self,
            _: std::time::Instant,
            _: std::task::Waker,
        ) -> bulwark_io::driver::TimerKey {
            unreachable!("the model's tasks have no deadline")
        }

        fn cancel_timer(&self, _: bulwark_io::driver::TimerKey) {}

        fn cancelled_unqueued(&self, task: &Task<Self>) {
            // As `Sched` does.
            self.admit.on_cancel(task);
        }

        fn on_lost(&self, _: &Task<Self>) {}

        fn idle_stamp(&self) -> Option<u64> {
            None
        }
    }

    impl Admitted for TestSched {
        fn ticket(&self) -> &Ticket {
            &self.ticket
        }

        fn admitter(&self) -> &Admitter<Self> {
            &self.admit
        }

        fn schedule_admitted(task: Notified<Self>) {
            task.scheduler().admitted.fetch_add(1, SeqCst);
            drop(task);
        }
    }

    /// A task waits in the wait list (`Admission::Wait`, ceiling 1, the one
    /// permit held by another task) while three things race for it: the
    /// permit is freed (`on_finish` of the holder: the ledger hands it to
    /// the waiter, `QueuedTask::admit`), the task is aborted
    /// (`JoinHandle::abort`, which reaches `on_cancel`), and the runtime
    /// shuts down (`Admitter::close`, which reaches `QueuedTask::close`).
    /// All three `take()` the same slot: the task is queued at most once
    /// (with a permit only if it was not cancelled first), it leaves the
    /// wait list and its index, and once it ends no permit is left live or
    /// released twice.
    #[test]
    fn loom_grant_cancel_and_close_take_a_waiting_task_once() {
        let mut builder = loom::model::Builder::new();
        // Bounded (unless LOOM_MAX_PREEMPTIONS says otherwise): the model
        // spans the task state word, the ledger and both locks.
        builder.preemption_bound.get_or_insert(3);
        builder.check(|| {
            let books = Arc::new(Books::new(1, false));
            let admit = Arc::new(Admitter::<TestSched>::new(Admission::Wait, books, false));
            // The holder of the only permit.
            assert_eq!(admit.decide(false, true), Decision::Admit);
            let holder = admit.ticket(Decision::Admit, false, None, None);
            // The waiter.
            let decision = admit.decide(false, true);
            assert_eq!(decision, Decision::Queue);
            let (scheduled, admitted) = (Arc::default(), Arc::default());
            let sched = TestSched {
                admit: admit.clone(),
                ticket: admit.ticket(decision, false, None, None),
                scheduled: Arc::clone(&scheduled),
                admitted: Arc::clone(&admitted),
            };
            let meta = TaskMeta::new(None, std::panic::Location::caller());
            let (task, notified, join) = task::new_task(async {}, sched, meta);
            admit.enqueue(notified);
            assert_eq!(admit.kind().waiting(), 1);

            let releaser = {
                let admit = admit.clone();
                thread::spawn(move || admit.on_finish(&holder))
            };
            let aborter = thread::spawn(move || join.abort());
            admit.close();
            releaser.join().unwrap();
            aborter.join().unwrap();

            let scheduled = scheduled.load(SeqCst);
            let admitted = admitted.load(SeqCst);
            // Queued at most once; with neither, `close` took it.
            assert!(
                scheduled + admitted <= 1,
                "queued {scheduled} + {admitted} times"
            );
            assert!(admit.queued.lock().is_empty(), "left in the index");
            let ticket = task.scheduler().ticket();
            assert!(!ticket.is_queued());
            // Granted: it holds the permit until its end; else none is live.
            assert_eq!(admit.kind().live(), admitted);
            // The task ends (it ran, or its cancellation ran).
            admit.on_finish(ticket);
            assert_eq!(admit.kind().live(), 0);
            assert_eq!(admit.kind().over_released(), 0);
            drop(task);
        });
    }
}
