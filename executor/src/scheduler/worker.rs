//! A worker thread: its queues, its run loop, its way to sleep.
//!
//! A worker's role (its `Core`: local queue, LIFO slot, deferred list,
//! tick, searching flag; and its parker, its share of sleeping in the
//! driver) lives in its seat (`seat.rs`), not on the thread: the thread holds
//! the seat, and while a poll of it is stuck past the watchdog's threshold, a
//! replacement thread may take the seat over and serve the queue at once.
//! The thread whose poll was taken over finds out when the poll returns, and
//! exits.
//!
//! Between polls the holder borrows its `Core` through a `RefCell`: the run
//! loop borrows it to pick a task and releases it before polling. Inside a
//! poll the seat is lent, and the task's wakes and spawns reach the core
//! through [`Holder::with_lent`], or, once the seat is taken, go to the
//! injector.

use super::seat::Holder;
use super::{
    is_worker_of, Queued, Sched, Shared, WorkerStart, GLOBAL_QUEUE_INTERVAL, MAX_LIFO_POLLS,
};
use bulwark_io::Parker;
use bulwark_metrics::{WorkerCounters, WorkerSlot};
use crossbeam_deque::{Steal, Worker};
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

thread_local! {
    /// The worker this thread is; null on other threads. Set by `run` for
    /// the life of the worker loop, which owns the `WorkerCx` on its stack.
    static CURRENT: Cell<*const WorkerCx> = const { Cell::new(std::ptr::null()) };
}

/// A worker's role: what its seat holds, and what a replacement takes over.
pub(crate) struct Role {
    core: RefCell<Core>,
    /// Where the holder sleeps: in the driver when it is free (this worker's
    /// share of turning it), else on a condvar. Its unparker is the seat's.
    parker: Parker,
}

impl Role {
    /// The role of worker `index`, with its queue and parker.
    pub(crate) fn new(index: usize, local: Worker<Queued>, parker: Parker) -> Role {
        Role {
            core: RefCell::new(Core {
                local,
                lifo: None,
                deferred: Vec::new(),
                lifo_polls: 0,
                tick: 0,
                // Any non-zero seed; distinct per worker so victims differ.
                rng: 0x9E37_79B9u32.wrapping_mul(index as u32 + 1) | 1,
                searching: false,
            }),
            parker,
        }
    }
}

/// The per-thread context of one worker, on the worker thread's stack for the
/// life of its loop.
pub(crate) struct WorkerCx {
    pub(crate) shared: Arc<Shared>,
    /// The seat this thread holds (or held, once taken over).
    index: usize,
    /// This thread's hold on the seat.
    holder: Arc<Holder>,
    /// The seat's role. Touched only while this thread holds the seat:
    /// between polls directly, inside a poll through the seat.
    role: *const Role,
    /// Whether this worker lends its seat during polls (the watchdog
    /// compensates), so that a replacement may take it.
    lends: bool,
    /// True while this thread has lent its seat: a task's poll runs.
    lent: Cell<bool>,
    /// The seat was taken over while a poll ran (or given away by it:
    /// `block_in_place`): this thread no longer holds it, and leaves its
    /// loop.
    seat_lost: Cell<bool>,
    /// The poll running now was closed in the books early: its task gave
    /// the seat away to block (`block_in_place`), and what it does from
    /// there on holds no worker up, so the watchdog must not see a stall.
    poll_closed: Cell<bool>,
    /// This worker's slot in the books: its counters, and what it polls.
    slot: Arc<WorkerSlot>,
    /// True while this worker turns the driver: the tasks it wakes pile onto
    /// its own queue, and it wakes a helper once afterwards rather than once
    /// per task (a turn can wake dozens).
    in_driver: Cell<bool>,
    /// Tasks pushed where others can steal them during the current turn.
    pushed_in_driver: Cell<u32>,
    /// A coarse `clock::now`, refreshed at each maintenance tick and each
    /// wake-up: the spawn time of the tasks this worker spawns, without a
    /// clock read per spawn. Late by at most one tick's polls.
    now: Cell<u64>,
    /// The task this worker polls (its id and scheduler value), or polled
    /// last: how a spawn finds its parent ([`WorkerCx::parent`]). Written
    /// before each poll and never cleared; a stale value is told apart by
    /// its id.
    polling: Cell<(u64, *const Sched)>,
    /// `Builder::histograms`: time a sample of polls.
    histograms: bool,
    /// Polls until the next one timed.
    polls_to_sample: Cell<u32>,
}

/// One poll in this many is timed for the poll-duration histogram and the
/// tasks' busy time, per worker. Two clock reads and a reference to the task
/// cost about 100 ns; a poll costs about 60: timing them all would more than
/// double the cost of a short poll, and one in 128 adds under 1 ns to each
/// while still timing thousands of polls a second on a busy worker.
pub(crate) const POLL_SAMPLE: u32 = 128;

struct Core {
    local: Worker<Queued>,
    lifo: Option<Queued>,
    /// Tasks that yielded: they run again once this worker has nothing else
    /// to do, or at the next maintenance tick, whichever comes first.
    deferred: Vec<Queued>,
    /// LIFO polls in a row since the last task from the queue.
    lifo_polls: u32,
    tick: u32,
    rng: u32,
    searching: bool,
}

/// Runs `f` with the worker this thread is, if it is one (of any runtime).
#[inline]
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&WorkerCx>) -> R) -> R {
    let ptr = CURRENT.try_with(Cell::get).unwrap_or(std::ptr::null());
    // SAFETY: the pointer is set by `run` for the life of the worker loop,
    // which owns the WorkerCx on its stack, and cleared before it returns.
    f(unsafe { ptr.as_ref() })
}

/// Runs `f` with this thread's worker if it is one of `shared`'s.
#[inline]
pub(crate) fn with_local<R>(shared: &Shared, f: impl FnOnce(Option<&WorkerCx>) -> R) -> R {
    with_current(|w| f(w.filter(|w| is_worker_of(w, shared))))
}

/// Clears the worker pointer when the loop ends, even by unwinding.
struct WorkerGuard;

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|c| c.set(std::ptr::null()));
    }
}

/// A worker thread's body: serves the seat it holds until shutdown, or
/// until a replacement takes the seat over while one of its polls runs.
/// Returns true if it still held the seat at the end (and so drained it).
/// The caller has entered the runtime's context.
pub(crate) fn run(shared: Arc<Shared>, start: WorkerStart) -> bool {
    let WorkerStart {
        index,
        holder,
        slot,
    } = start;
    let role: *const Role = shared.remotes[index].seat.value();
    let lends = shared.compensating;
    let histograms = shared.histograms;
    let cx = WorkerCx {
        lends,
        shared,
        index,
        holder,
        role,
        lent: Cell::new(false),
        seat_lost: Cell::new(false),
        poll_closed: Cell::new(false),
        slot,
        in_driver: Cell::new(false),
        pushed_in_driver: Cell::new(0),
        now: Cell::new(crate::clock::now()),
        polling: Cell::new((0, std::ptr::null())),
        histograms,
        polls_to_sample: Cell::new(POLL_SAMPLE),
    };
    CURRENT.with(|c| c.set(&cx));
    let worker = WorkerGuard;
    cx.run_loop();
    // Off the worker context first, so wakes from the drops below go to the
    // injector, which shutdown drains.
    drop(worker);
    if cx.seat_lost.get() {
        // The queues are the replacement's now.
        return false;
    }
    cx.drain();
    true
}

impl WorkerCx {
    fn shared(&self) -> &Shared {
        &self.shared
    }

    /// This worker's role, held between polls (and inside them when the
    /// seat is not lent).
    #[inline]
    fn role(&self) -> &Role {
        debug_assert!(!self.lent.get() && !self.seat_lost.get());
        // SAFETY: `role` points into the seat in `shared`, which this
        // context keeps alive; this thread holds the seat unless it is lent
        // (`lent`), and loses it only while lent, after which it leaves
        // its loop without calling this again; nothing else touches a held
        // role.
        unsafe { &*self.role }
    }

    /// The core, between polls.
    #[inline]
    fn core(&self) -> &RefCell<Core> {
        &self.role().core
    }

    /// Runs `f` with the core from wherever this thread is: between polls
    /// directly, inside one through the lent seat. `None` if the seat was
    /// taken over.
    #[inline]
    fn with_core<R>(&self, f: impl FnOnce(&RefCell<Core>) -> R) -> Option<R> {
        if self.lent.get() {
            self.holder
                .with_lent(&self.shared.remotes[self.index].seat, |role| f(&role.core))
        } else if self.seat_lost.get() {
            None
        } else {
            Some(f(self.core()))
        }
    }

    pub(crate) fn counters(&self) -> &WorkerCounters {
        &self.slot.counters
    }

    /// What this worker times.
    pub(crate) fn histograms(&self) -> &bulwark_metrics::WorkerHistograms {
        &self.slot.histograms
    }

    /// True for one poll in [`POLL_SAMPLE`] while the histograms are on.
    #[inline]
    fn time_this_poll(&self) -> bool {
        if !self.histograms {
            return false;
        }
        let n = self.polls_to_sample.get();
        if n > 1 {
            self.polls_to_sample.set(n - 1);
            return false;
        }
        self.polls_to_sample.set(POLL_SAMPLE);
        true
    }

    /// The scheduler value of the task being polled on this worker, if a
    /// task's poll is running now (not its cancellation, not the drop of its
    /// output): the parent of whatever it spawns.
    pub(crate) fn parent(&self) -> Option<&Sched> {
        let (id, sched) = self.polling.get();
        if sched.is_null() || crate::task::try_id().map(|i| i.as_u64()) != Some(id) {
            return None;
        }
        // SAFETY: `try_id` is the task whose poll runs on this thread now
        // (the harness sets it around the future's poll only); ids are never
        // reused, so it is the task `run_task` recorded, which this worker
        // is running: the running reference keeps its cell, and so its
        // scheduler value (never written after spawn), alive until its poll
        // returns, and we are inside that poll.
        Some(unsafe { &*sched })
    }

    /// The seat this thread may give away now (`block_in_place`): its index
    /// and this thread's hold on it, if a task's poll runs on this worker
    /// (not a cancellation, not the loop between polls) and the seat is
    /// still this thread's.
    pub(crate) fn seat_to_give(&self) -> Option<(usize, &Arc<Holder>)> {
        if self.seat_lost.get() || self.parent().is_none() {
            return None;
        }
        Some((self.index, &self.holder))
    }

    /// The poll running now gave the seat away (`block_in_place`; the new
    /// holder's thread may be serving it already). From here this thread
    /// leaves the core alone: its wakes and spawns go to the injector
    /// (`with_core` says `None`: through the holder's verdict while it
    /// lends, through `seat_lost` otherwise), and it leaves its loop when
    /// the poll returns, as a thread whose seat the watchdog took does. The
    /// poll is closed in the books now, so the watchdog does not report
    /// the blocking that follows as a stall.
    pub(crate) fn seat_given_away(&self) {
        self.seat_lost.set(true);
        self.poll_closed.set(true);
        self.slot.end_poll();
    }

    /// This worker's coarse time (see the field).
    #[inline]
    pub(crate) fn coarse_now(&self) -> u64 {
        self.now.get()
    }

    /// The time deadlines are measured against, in `clock` nanoseconds:
    /// the coarse time while the driver's clock is real time, else (a test
    /// paused it) the driver's virtual time, which the deadlines were set
    /// on and which real time does not move.
    #[inline]
    fn deadline_clock(&self) -> u64 {
        let io = self.shared().io();
        if io.clock_is_real() {
            self.coarse_now()
        } else {
            crate::clock::nanos_at(io.now())
        }
    }

    /// Queues a task from this worker: into the LIFO slot, or (a yield) on
    /// the deferred list, behind everything else this worker could run.
    pub(crate) fn schedule_local(&self, task: Queued, is_yield: bool) {
        self.place_locally(task, |core, task| {
            if is_yield {
                // Not stealable until flushed; the flush wakes a helper.
                core.deferred.push(task);
                false
            } else if let Some(prev) = core.lifo.replace(task) {
                core.local.push(prev);
                true
            } else {
                // A task in the LIFO slot cannot be stolen: nobody to wake.
                false
            }
        });
    }

    /// Puts `task` in this worker's core with `place` (which says whether
    /// it left something other workers can steal), or on the injector if
    /// the core is out of reach: the seat was taken over, or the loop itself
    /// holds the core (a drop during `drain`).
    fn place_locally(&self, task: Queued, place: impl FnOnce(&mut Core, Queued) -> bool) {
        let mut task = Some(task);
        let stealable = self
            .with_core(|core| {
                let mut core = core.try_borrow_mut().ok()?;
                Some(place(&mut core, task.take().expect("placed once")))
            })
            .flatten();
        match stealable {
            Some(true) => self.pushed_somewhere_stealable(),
            Some(false) => {}
            None => self
                .shared()
                .schedule_remote(task.take().expect("not placed")),
        }
    }

    /// A task was pushed where other workers can steal it: wake one now, or
    /// once this driver turn ends.
    fn pushed_somewhere_stealable(&self) {
        if self.in_driver.get() {
            self.pushed_in_driver.set(self.pushed_in_driver.get() + 1);
        } else {
            self.shared().notify_parked();
        }
    }

    /// Queues a task at the back of this worker's queue, behind the work
    /// already there, where other workers may steal it: how the children of
    /// a budgeted family start, so they run in the order they were spawned
    /// (the LIFO slot would run the last one first).
    pub(crate) fn schedule_back(&self, task: Queued) {
        self.place_locally(task, |core, task| {
            core.local.push(task);
            true
        });
    }

    /// Runs `turn` (a driver turn) with per-task wake-ups held back, then
    /// wakes one helper if the turn left work others could steal.
    fn with_driver_turn(&self, turn: impl FnOnce()) {
        self.in_driver.set(true);
        turn();
        if self.end_driver_turn() {
            self.shared().notify_parked();
        }
    }

    /// Ends a driver turn; true if it queued work another worker could take.
    fn end_driver_turn(&self) -> bool {
        self.in_driver.set(false);
        self.pushed_in_driver.replace(0) > 0
    }

    fn run_loop(&self) {
        while !self.shared().is_shutdown() && !self.seat_lost.get() {
            if let Some(task) = self.next_task() {
                self.run_task(task);
            } else if let Some(task) = self.steal_work() {
                self.run_task(task);
            } else if !self.flush_deferred() {
                self.park();
            }
        }
    }

    fn run_task(&self, task: Queued) {
        let was_searching = std::mem::replace(&mut self.core().borrow_mut().searching, false);
        if was_searching && self.shared().idle.transition_worker_from_searching() {
            // The last searcher found work; there may be more, so another
            // worker takes up the search.
            self.shared().notify_parked();
        }
        let delays = self
            .histograms
            .then(|| &self.slot.histograms.scheduling_delay);
        if let Some(now) = self
            .shared()
            .admit
            .on_dequeue(&task, self.coarse_now(), delays)
        {
            self.now.set(now);
        }
        let header = task.header();
        let deadline = header.deadline_nanos.load(Relaxed);
        if deadline != u64::MAX && deadline <= self.deadline_clock() {
            // Past its deadline while it waited in a queue (its timer is set
            // only once it first waits): dropped unpolled. The coarse time is
            // never ahead of the clock, so this never drops a task early.
            task.expire_before_poll();
        }
        self.slot.begin_poll(header.id.as_u64(), header.location);
        header.count_poll();
        self.polling.set((header.id.as_u64(), task.scheduler()));
        // A timed poll keeps a reference, to add its time to the task after
        // the poll (which may end the task).
        let timed = self
            .time_this_poll()
            .then(|| (task.task_ref(), std::time::Instant::now()));
        if self.lends {
            self.lent.set(true);
            self.holder.lend();
        }
        // The task catches its own panics (poll, destructors, wakes at its
        // end); this is the last line, so that nothing foreign can unwind out
        // of the loop and take this worker's queue with it.
        let yielded = panic::catch_unwind(AssertUnwindSafe(|| task.run()))
            .ok()
            .flatten();
        if self.lends {
            self.lent.set(false);
        }
        if self.lends && !self.holder.reclaim() {
            // Stuck long enough for the watchdog to hand the seat to a
            // replacement, which serves it already: this thread is done.
            self.seat_lost.set(true);
        }
        // A poll that gave its seat away was closed in the books then, and
        // is not timed: the rest of it held no worker.
        let closed = self.poll_closed.replace(false);
        if !closed {
            self.slot.end_poll();
        }
        if let Some((task, start)) = timed.filter(|_| !closed) {
            let end = std::time::Instant::now();
            let nanos = end.saturating_duration_since(start).as_nanos() as u64;
            self.slot.histograms.poll_duration.record(nanos);
            task.header().add_timed_poll(nanos);
            // The clock read refreshes the coarse time for free.
            self.now.set(crate::clock::nanos_at(end));
        }
        if let Some(task) = yielded {
            // Queued here, with the seat back (or on the injector if it is
            // gone), rather than from inside the poll: no trip through the
            // lent seat for the commonest wake of all.
            self.schedule_local(task, true);
        }
    }

    /// The next task from this worker's own queues (and now and then the
    /// injector, for fairness).
    fn next_task(&self) -> Option<Queued> {
        let shared = self.shared();
        let mut core = self.core().borrow_mut();
        core.tick = core.tick.wrapping_add(1);
        if core.tick % GLOBAL_QUEUE_INTERVAL == 0 {
            // Maintenance: sockets and timers are served even while every
            // worker is busy, tasks that yielded get their turn even if new
            // work keeps coming, and the injector goes before the local queue.
            drop(core);
            self.now.set(crate::clock::now());
            self.with_driver_turn(|| shared.driver.poll_nonblocking());
            self.flush_deferred();
            core = self.core().borrow_mut();
            if let Some(task) = steal_one(|| shared.injector.steal()) {
                return Some(task);
            }
        }
        if let Some(task) = core.lifo.take() {
            if core.lifo_polls < MAX_LIFO_POLLS {
                core.lifo_polls += 1;
                return Some(task);
            }
            // Enough LIFO in a row: behind the queue it goes.
            core.local.push(task);
            drop(core);
            shared.notify_parked();
            core = self.core().borrow_mut();
        }
        core.lifo_polls = 0;
        if let Some(task) = core.local.pop() {
            return Some(task);
        }
        let task = steal_one(|| shared.injector.steal_batch_and_pop(&core.local));
        let batch = !core.local.is_empty();
        drop(core);
        if batch {
            // The rest of the batch sits where siblings can steal it: one of
            // them may be asleep while this worker runs the first.
            shared.notify_parked();
        }
        task
    }

    /// Looks for work elsewhere: half a random victim's queue, then a batch
    /// from the injector. Only while allowed to search (see `idle`).
    fn steal_work(&self) -> Option<Queued> {
        let shared = self.shared();
        let mut core = self.core().borrow_mut();
        if !core.searching {
            if !shared.idle.transition_worker_to_searching() {
                return None;
            }
            core.searching = true;
        }
        let n = shared.workers();
        let start = next_rand(&mut core.rng) as usize % n;
        for i in 0..n {
            let victim = (start + i) % n;
            if victim == self.index {
                continue;
            }
            let stealer = &shared.remotes[victim].stealer;
            if let Some(task) = steal_one(|| stealer.steal_batch_and_pop(&core.local)) {
                self.counters().steals.add(1 + core.local.len() as u64);
                return Some(task);
            }
        }
        steal_one(|| shared.injector.steal_batch_and_pop(&core.local))
    }

    /// Moves the tasks that yielded to the back of the local queue, where
    /// other workers can steal them. False if there were none.
    fn flush_deferred(&self) -> bool {
        let moved = {
            let mut core = self.core().borrow_mut();
            let core = &mut *core;
            let n = core.deferred.len();
            for task in core.deferred.drain(..) {
                core.local.push(task);
            }
            n
        };
        if moved > 1 {
            self.shared().notify_parked();
        }
        moved > 0
    }

    /// Sleeps until woken for work (or shutdown).
    fn park(&self) {
        let shared = self.shared();
        // A worker about to idle holds no permit that an `accept` reserved
        // for a spawn that never came. First, so that a task this release
        // admits from the wait list is seen below and run, not slept on.
        bulwark_metrics::ledger::release_reserved();
        let was_searching = {
            let mut core = self.core().borrow_mut();
            if core.lifo.is_some() || !core.local.is_empty() {
                return;
            }
            std::mem::replace(&mut core.searching, false)
        };
        // Nothing to do anywhere: not overloaded, whatever CoDel last said.
        shared.admit.on_idle();
        if shared
            .idle
            .transition_worker_to_parked(self.index, was_searching)
        {
            // The last searcher: work pushed while we searched may have
            // counted on us to find it.
            shared.notify_if_work_pending();
        }
        self.counters().parks.bump();
        self.slot.set_parked(true);
        let _unpark = Unparked(&self.slot);
        loop {
            self.in_driver.set(true);
            self.role().parker.park();
            self.now.set(crate::clock::now());
            let pushed = self.end_driver_turn();
            if shared.is_shutdown() {
                return;
            }
            if self.has_local_work() {
                // The driver this worker blocked in woke tasks onto its own
                // queue. Awake, but not searching, unless someone had already
                // woken it to search; then one helper for what it can steal.
                let listed = shared.idle.unpark_worker_by_id(self.index);
                self.core().borrow_mut().searching = !listed;
                if pushed {
                    shared.notify_parked();
                }
                return;
            }
            if shared.idle.was_unparked(self.index) {
                // Woken by `worker_to_notify`, which counted us as searching.
                self.core().borrow_mut().searching = true;
                return;
            }
        }
    }

    fn has_local_work(&self) -> bool {
        let core = self.core().borrow();
        core.lifo.is_some() || !core.local.is_empty() || !core.deferred.is_empty()
    }

    /// Drops what is left in this worker's queues at shutdown. The tasks
    /// themselves are cancelled through the registry.
    fn drain(&self) {
        let mut left = Vec::new();
        {
            let mut core = self.core().borrow_mut();
            left.extend(core.lifo.take());
            left.append(&mut core.deferred);
            while let Some(task) = core.local.pop() {
                left.push(task);
            }
        }
        drop(left);
    }
}

/// Marks the slot awake again however `park` returns.
struct Unparked<'a>(&'a WorkerSlot);

impl Drop for Unparked<'_> {
    fn drop(&mut self) {
        self.0.set_parked(false);
    }
}

/// Retries a steal until it gives a task or says the queue is empty.
fn steal_one(mut steal: impl FnMut() -> Steal<Queued>) -> Option<Queued> {
    loop {
        match steal() {
            Steal::Success(task) => return Some(task),
            Steal::Empty => return None,
            Steal::Retry => std::hint::spin_loop(),
        }
    }
}

/// xorshift32: cheap, good enough to pick a victim.
fn next_rand(state: &mut u32) -> u32 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    x
}
