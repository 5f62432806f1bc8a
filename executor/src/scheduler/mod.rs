//! The multi-thread work-stealing scheduler.
//!
//! # Queues
//!
//! Each worker owns a FIFO [`crossbeam_deque::Worker`] (its *local queue*)
//! and a *LIFO slot*. A task spawned or woken by the task a worker is running
//! goes into the LIFO slot and runs next, while its data is still in cache
//! (message passing: ping-pong, a chain of spawns); the task it displaces goes
//! to the back of the local queue. A worker runs at most
//! [`MAX_LIFO_POLLS`] LIFO tasks in a row, then takes from the queue, so two
//! tasks waking each other cannot starve the rest. A task that wakes itself
//! during its poll (`yield_now`) is *deferred*: it goes behind everything the
//! worker could run, its local queue and the injector included, and is moved
//! to the back of the local queue when the worker runs out of other work or
//! at the next maintenance tick (as tokio defers yields). So a few tasks that
//! loop on `yield_now` cannot hold up work spawned from outside.
//!
//! Spawns and wakes from outside the workers go to the global
//! [`crossbeam_deque::Injector`]. Every [`GLOBAL_QUEUE_INTERVAL`] ticks a
//! worker looks at the injector before its own queue, so a busy worker cannot
//! starve it.
//!
//! # Stealing and sleeping
//!
//! A worker with nothing local steals half of a random victim's queue, then
//! takes a batch from the injector; if it finds nothing it parks. Who searches
//! and who is woken is [`idle`]'s protocol: wake one sleeper only when nobody
//! searches, at most half the workers searching, the last searcher to find
//! work wakes the next, and the last to park checks every queue once more.

pub(crate) mod idle;
pub(crate) mod leaks;
pub(crate) mod lost;
pub(crate) mod seat;
pub(crate) mod worker;

use crate::admission::{Admitted, Admitter, Ticket};
use crate::blocking;
use crate::fanout::{self, Fanned, Fanout, Links};
use crate::sync::{fence, AtomicBool};
use crate::task::list::Registry;
use crate::task::{Finish, Notified, Schedule, Task};
use bulwark_io::{DriverSlot, Parker, Unparker};
use bulwark_metrics::{SharedCounters, Snapshot, Source, TaskInfo, TaskState, WorkerSlot};
use crossbeam_deque::{Injector, Stealer, Worker};
use idle::Idle;
use lost::LostTask;
use parking_lot::Mutex;
use seat::Seat;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::sync::Arc;
use worker::{Role, WorkerCx};

/// LIFO-slot polls in a row before a worker takes from its queue (tokio: 3).
pub(crate) const MAX_LIFO_POLLS: u32 = 3;
/// Ticks between looks at the injector first (tokio's default: 61 for the
/// multi-thread scheduler's fixed interval in older releases, 31 in newer).
pub(crate) const GLOBAL_QUEUE_INTERVAL: u32 = 61;

pub(crate) type Queued = Notified<Sched>;

/// What every worker and every handle share.
pub(crate) struct Shared {
    pub(crate) injector: Injector<Queued>,
    /// One per worker: its seat (the role a thread plays), and what other
    /// threads may touch of it.
    pub(crate) remotes: Box<[Remote]>,
    /// Worker threads running now: one per seat, plus those that lost their
    /// seat to a replacement and have not returned from their poll yet.
    live_threads: AtomicUsize,
    /// The join handles of the runtime's threads (workers, the watchdog),
    /// for shutdown.
    pub(crate) threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The prefix of worker thread names (`Builder::thread_name`).
    pub(crate) thread_name: String,
    /// The watchdog's thread, if it has one: woken at shutdown so it need
    /// not sleep out its tick.
    pub(crate) watchdog: std::sync::OnceLock<std::thread::Thread>,
    /// Whether the watchdog may hand a stuck worker's seat to a replacement:
    /// if not, workers never lend their seat, and a poll pays nothing for it.
    pub(crate) compensating: bool,
    pub(crate) idle: Idle,
    /// Threads inside `block_on` polling their future (not parked): while
    /// one is, a paused clock does not jump to the next timer.
    pub(crate) block_on_active: std::sync::atomic::AtomicUsize,
    pub(crate) registry: Registry<Sched>,
    pub(crate) shutdown: AtomicBool,
    pub(crate) counters: Arc<SharedCounters>,
    pub(crate) blocking: Arc<blocking::Pool>,
    /// The runtime's IO driver and timer wheel; idle workers take turns
    /// blocking in it.
    pub(crate) driver: Arc<DriverSlot>,
    /// The task ceiling and the admission policy.
    pub(crate) admit: Admitter<Sched>,
    /// Deadline given to tasks that set none (`Builder::default_deadline`).
    pub(crate) default_deadline: Option<std::time::Duration>,
    /// Fan-out budgets: the per-task default, the cap on waiting children.
    pub(crate) fanout: Fanout,
    /// What to do with a lost task (`Builder::on_lost_task`).
    pub(crate) lost_task: LostTask,
    /// The idle report's threshold (`Builder::idle_report`); `None`: off.
    pub(crate) idle_report: Option<std::time::Duration>,
    /// Whether workers time a sample of polls and wakes, and tasks'
    /// lifetimes (`Builder::histograms`).
    pub(crate) histograms: bool,
}

/// The scheduler value each task of the runtime carries: the runtime, the
/// task's admission ticket, and its family links (fan-out budgets).
pub(crate) struct Sched {
    pub(crate) shared: Arc<Shared>,
    pub(crate) ticket: Ticket,
    pub(crate) links: Links<Sched>,
}

/// One worker's seat and what other threads may touch of it.
pub(crate) struct Remote {
    pub(crate) stealer: Stealer<Queued>,
    pub(crate) unparker: Unparker,
    /// The worker's role (queues, parker), held by one thread at a time.
    pub(crate) seat: Seat<Role>,
    /// The books' index of the slot of the thread holding the seat: where
    /// the watchdog sees whether the holder is stuck.
    pub(crate) occupant: AtomicUsize,
}

/// What a worker thread needs to start: the seat it holds (and its hold on
/// it), and its slot in the books.
pub(crate) struct WorkerStart {
    pub(crate) index: usize,
    pub(crate) holder: Arc<seat::Holder>,
    pub(crate) slot: Arc<WorkerSlot>,
}

/// The parts `Shared::new` is built from.
pub(crate) struct Parts {
    pub(crate) workers: usize,
    pub(crate) thread_name: String,
    pub(crate) compensating: bool,
    pub(crate) registry_shards: usize,
    pub(crate) counters: Arc<SharedCounters>,
    pub(crate) blocking: Arc<blocking::Pool>,
    pub(crate) driver: Arc<DriverSlot>,
    pub(crate) admit: Admitter<Sched>,
    pub(crate) default_deadline: Option<std::time::Duration>,
    pub(crate) fanout: Fanout,
    pub(crate) lost_task: LostTask,
    pub(crate) idle_report: Option<std::time::Duration>,
    pub(crate) histograms: bool,
}

impl Shared {
    /// The shared state of a runtime of `parts.workers` workers, none
    /// started yet: each seat's first holder is the thread that
    /// [`start_worker`](crate::threads::start_worker) will start for it.
    pub(crate) fn new(parts: Parts) -> Shared {
        let remotes = (0..parts.workers)
            .map(|index| {
                let local = Worker::new_fifo();
                let parker = Parker::with_driver(parts.driver.clone());
                Remote {
                    stealer: local.stealer(),
                    unparker: parker.unparker(),
                    seat: Seat::new(Role::new(index, local, parker)),
                    occupant: AtomicUsize::new(index),
                }
            })
            .collect();
        Shared {
            injector: Injector::new(),
            remotes,
            live_threads: AtomicUsize::new(0),
            threads: Mutex::new(Vec::new()),
            thread_name: parts.thread_name,
            watchdog: std::sync::OnceLock::new(),
            compensating: parts.compensating,
            idle: Idle::new(parts.workers),
            block_on_active: std::sync::atomic::AtomicUsize::new(0),
            registry: Registry::new(parts.registry_shards),
            shutdown: Default::default(),
            counters: parts.counters,
            blocking: parts.blocking,
            driver: parts.driver,
            admit: parts.admit,
            default_deadline: parts.default_deadline,
            fanout: parts.fanout,
            lost_task: parts.lost_task,
            idle_report: parts.idle_report,
            histograms: parts.histograms,
        }
    }

    /// The runtime's workers: its seats.
    pub(crate) fn workers(&self) -> usize {
        self.remotes.len()
    }

    /// Worker threads running now (see the field).
    pub(crate) fn live_threads(&self) -> usize {
        self.live_threads.load(Acquire)
    }

    /// A worker thread is about to start (or has, for the count's sake).
    pub(crate) fn thread_started(&self) {
        self.live_threads.fetch_add(1, Release);
    }

    /// A worker thread ends (or never started).
    pub(crate) fn thread_ended(&self) {
        self.live_threads.fetch_sub(1, Release);
    }

    /// Keeps the join handle of a thread just started; forgets those of
    /// threads that have finished (replaced workers come and go), so the
    /// list stays as long as the threads alive.
    pub(crate) fn keep_thread(&self, thread: std::thread::JoinHandle<()>) {
        let mut threads = self.threads.lock();
        threads.retain(|t| !t.is_finished());
        threads.push(thread);
    }

    /// Queues a task from its runtime's worker if this thread is one (its
    /// LIFO slot, or for a yield its deferred list), else on the injector.
    ///
    /// The runtime is reached through the worker's own handle, or an `Arc`
    /// taken for the purpose, never through the task's: the task may run
    /// and be freed elsewhere the moment it is queued.
    fn schedule_owned(task: Queued, is_yield: bool) {
        let runtime: *const Shared = &*task.scheduler().shared;
        worker::with_current(|w| match w {
            Some(cx) if std::ptr::eq(&*cx.shared, runtime) => cx.schedule_local(task, is_yield),
            _ => {
                let shared = task.scheduler().shared.clone();
                shared.schedule_remote(task);
            }
        })
    }

    /// As [`schedule_owned`](Self::schedule_owned), at the back of the
    /// worker's queue rather than in its LIFO slot.
    fn schedule_back_owned(task: Queued) {
        let runtime: *const Shared = &*task.scheduler().shared;
        worker::with_current(|w| match w {
            Some(cx) if std::ptr::eq(&*cx.shared, runtime) => cx.schedule_back(task),
            _ => {
                let shared = task.scheduler().shared.clone();
                shared.schedule_remote(task);
            }
        })
    }

    /// Queues a task on the injector and wakes a worker if none searches.
    pub(crate) fn schedule_remote(&self, task: Queued) {
        SharedCounters::bump(&self.counters.remote_schedules);
        self.injector.push(task);
        // Pairs with the store in `begin_shutdown`: either we see the flag and
        // drain, or shutdown's drain sees our push.
        fence(SeqCst);
        if self.shutdown.load(SeqCst) {
            self.drain_injector();
            return;
        }
        self.notify_parked();
    }

    /// Wakes a sleeping worker if nobody is searching.
    pub(crate) fn notify_parked(&self) {
        if let Some(index) = self.idle.worker_to_notify() {
            self.remotes[index].unparker.unpark();
        }
    }

    /// The last searcher is going to sleep: if any queue has work, wake
    /// someone for it.
    pub(crate) fn notify_if_work_pending(&self) {
        // Pairs with the fence in `Idle::worker_to_notify`.
        fence(SeqCst);
        let pending = self.remotes[..self.workers()]
            .iter()
            .any(|r| !r.stealer.is_empty())
            || !self.injector.is_empty();
        if pending {
            self.notify_parked();
        }
    }

    pub(crate) fn drain_injector(&self) {
        loop {
            match self.injector.steal() {
                crossbeam_deque::Steal::Success(task) => drop(task),
                crossbeam_deque::Steal::Retry => continue,
                crossbeam_deque::Steal::Empty => break,
            }
        }
    }

    /// The driver's handle: sockets and timers register with it.
    pub(crate) fn io(&self) -> &bulwark_io::driver::Handle {
        self.driver.handle()
    }

    /// Sets the shutdown flag and wakes every worker to see it.
    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.store(true, SeqCst);
        fence(SeqCst);
        self.idle.unpark_all();
        for r in self.remotes.iter() {
            r.unparker.unpark();
        }
        if let Some(watchdog) = self.watchdog.get() {
            watchdog.unpark();
        }
    }

    /// True when nothing in the runtime can make progress but a timer:
    /// every worker parked, nothing queued on the injector, no `block_on`
    /// polling, the blocking pool idle. What the driver asks before a
    /// paused clock jumps to the next timer (`bulwark::time::pause`).
    pub(crate) fn only_timers_can_move(&self) -> bool {
        let blocking = self.blocking.snapshot();
        self.block_on_active.load(SeqCst) == 0
            // No thread beyond the seats: none is stuck in a poll whose
            // seat a replacement took (the watchdog's compensation) or gave
            // away (`block_in_place`), which would not count as running.
            && self.live_threads() <= self.remotes.len()
            && self.idle.all_parked()
            && self.injector.is_empty()
            && blocking.threads == blocking.idle
            && blocking.queue_depth == 0
    }

    pub(crate) fn is_shutdown(&self) -> bool {
        self.shutdown.load(SeqCst)
    }

    pub(crate) fn metrics(&self) -> Snapshot {
        let mut s = Snapshot::collect(
            self.admit.books(),
            &self.counters,
            self.blocking.snapshot(),
            self.driver.handle().stats(),
        );
        s.children_waiting = self.fanout.waiting();
        s.global_queue_depth = self.injector.len();
        for remote in self.remotes.iter() {
            let slot = remote.occupant.load(std::sync::atomic::Ordering::Relaxed);
            if let Some(w) = s.worker_states.iter_mut().find(|w| w.index == slot) {
                w.queue_depth = remote.stealer.len();
            }
        }
        s.worker_threads = self.live_threads();
        s.wasted_subtasks = self.fanout.wasted();
        s
    }
}

/// How a thread that is not a runtime thread (the metrics endpoint's) reads
/// the runtime: counters and the live tasks, from atomics and the registry's
/// shard locks, which no poll takes.
impl Source for Shared {
    fn snapshot(&self) -> Snapshot {
        self.metrics()
    }

    fn tasks(&self) -> Vec<TaskInfo> {
        let held = self.held_by_task();
        let mut out = Vec::new();
        self.registry.for_each(|task| {
            // A finished task stays in the registry for a moment after its
            // handle resolves (until its last reference goes): not live.
            if task.header().state.load().is_complete() {
                return;
            }
            let mut info = task_info(task);
            info.resources = held.get(&info.id).copied().unwrap_or(0);
            out.push(info)
        });
        out
    }

    fn leaks(&self) -> Vec<bulwark_metrics::LeakReport> {
        leaks::scan(self)
    }
}

impl Shared {
    /// How many tracked handles each task holds now, by task id.
    pub(crate) fn held_by_task(&self) -> std::collections::HashMap<u64, usize> {
        let mut held = std::collections::HashMap::new();
        self.admit.books().holdings().for_each(|h| {
            if let Some(id) = h.holder() {
                *held.entry(id).or_insert(0) += 1;
            }
        });
        held
    }
}

/// What a live task is, as `/tasks` lists it.
pub(crate) fn task_info(task: &Task<Sched>) -> TaskInfo {
    let header = task.header();
    let state = header.state.load();
    let location = header.location;
    let age = crate::clock::since(header.spawned_at);
    let mut info = TaskInfo {
        id: header.id.as_u64(),
        name: header.name.as_deref().map(String::from),
        location: format!(
            "{}:{}:{}",
            location.file(),
            location.line(),
            location.column()
        ),
        state: if state.is_running() {
            TaskState::Running
        } else if state.is_cancelled() {
            TaskState::Cancelling
        } else if task.scheduler().ticket.is_queued() || task.scheduler().ticket.is_family_queued()
        {
            TaskState::WaitingAdmission
        } else if state.is_notified() {
            TaskState::Scheduled
        } else if state.is_lost() {
            TaskState::Lost
        } else {
            TaskState::Idle
        },
        age,
        idle_for: None,
        polls: header.polls(),
        // An estimate from a sample of polls: one preempted timed poll can
        // put it past what the task has lived, which it cannot have spent.
        busy: header.busy_estimate().map(|b| b.min(age)),
        deadline: match header
            .deadline_nanos
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            u64::MAX => None,
            // On the deadlines' clock (the driver's).
            at => Some(std::time::Duration::from_nanos(at.saturating_sub(
                crate::clock::nanos_at(task.scheduler().shared.io().now()),
            ))),
        },
        resources: 0,
    };
    info.idle_for = lost::idle_for(&task.scheduler().shared, task, info.state);
    info
}

impl Schedule for Sched {
    fn schedule(task: Notified<Self>) {
        let sched = task.scheduler();
        sched.shared.admit.on_wake(&sched.ticket);
        Shared::schedule_owned(task, false);
    }

    fn yield_now(task: Notified<Self>) {
        Shared::schedule_owned(task, true);
    }

    fn release(&self, task: &Task<Self>) -> Option<Task<Self>> {
        self.shared.registry.remove(task)
    }

    fn on_finish(&self, how: Finish, spawned_at: u64) {
        let shared = &*self.shared;
        worker::with_local(shared, |local| match local {
            Some(cx) => {
                if shared.histograms {
                    // The worker's coarse time: no clock read per task, and
                    // never ahead of the clock, so a lifetime reads short by
                    // at most the polls since its last refresh.
                    let lifetime = cx.coarse_now().saturating_sub(spawned_at);
                    cx.histograms().task_lifetime.record(lifetime);
                }
                let c = cx.counters();
                match how {
                    Finish::Completed => c.completed.bump(),
                    Finish::Panicked => c.panicked.bump(),
                    Finish::Cancelled => c.cancelled.bump(),
                    Finish::DeadlineExceeded => c.deadline_exceeded.bump(),
                    Finish::Rejected => c.rejected.bump(),
                    Finish::Lost => c.lost_cancelled.bump(),
                }
            }
            None => {
                blocking::count_shared(&shared.counters, how);
                if shared.histograms {
                    let lifetime = crate::clock::now().saturating_sub(spawned_at);
                    shared.counters.task_lifetime.record_shared(lifetime);
                }
            }
        });
        let ended = shared.admit.on_finish(&self.ticket);
        fanout::on_finish(self, ended, how);
    }

    fn set_timer(
        &self,
        deadline: std::time::Instant,
        waker: std::task::Waker,
    ) -> bulwark_io::driver::TimerKey {
        self.shared.io().set_timer_owned(deadline, waker)
    }

    fn cancel_timer(&self, key: bulwark_io::driver::TimerKey) {
        self.shared.io().cancel_timer(key);
    }

    fn cancelled_unqueued(&self, task: &Task<Self>) {
        self.shared.admit.on_cancel(task);
        fanout::on_cancel(task);
    }

    fn on_lost(&self, task: &Task<Self>) {
        lost::report(&self.shared, task);
    }

    #[inline]
    fn deadline_now(&self) -> std::time::Instant {
        self.shared.io().now()
    }

    fn idle_stamp(&self) -> Option<u64> {
        // Off (the default): one load and a branch per `Pending` poll. On:
        // the worker's coarse time, no clock read.
        self.shared.idle_report?;
        Some(worker::with_local(&self.shared, |local| {
            local.map_or_else(crate::clock::now, |cx| cx.coarse_now())
        }))
    }
}

impl Fanned for Sched {
    fn links(&self) -> &Links<Self> {
        &self.links
    }

    fn fanout(&self) -> &Fanout {
        &self.shared.fanout
    }

    fn start_child(task: Notified<Self>) {
        let sched = task.scheduler();
        sched.shared.admit.on_admitted(&sched.ticket);
        Shared::schedule_back_owned(task);
    }

    fn wait_for_permit(task: Notified<Self>) {
        let shared = task.scheduler().shared.clone();
        shared.admit.enqueue(task);
    }
}

impl Admitted for Sched {
    fn ticket(&self) -> &Ticket {
        &self.ticket
    }

    fn admitter(&self) -> &Admitter<Self> {
        &self.shared.admit
    }

    fn schedule_admitted(task: Notified<Self>) {
        let sched = task.scheduler();
        sched.shared.admit.on_admitted(&sched.ticket);
        Shared::schedule_owned(task, false);
    }
}

/// Whether `cx` is a worker of the runtime `shared`.
fn is_worker_of(cx: &WorkerCx, shared: &Shared) -> bool {
    std::ptr::eq(&*cx.shared, shared)
}
