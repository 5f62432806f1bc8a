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
pub(crate) mod spawn;
pub(crate) mod worker;

use crate::admission::{now_nanos, Admitter};
use crate::blocking;
use crate::runtime::Handle;
use crate::sync::{fence, AtomicBool};
use crate::task::list::Registry;
use crate::task::{Finish, Notified, Schedule, Task};
use bulwark_io::{DriverSlot, Unparker};
use bulwark_metrics::{SharedCounters, Snapshot, WorkerCounters};
use crossbeam_deque::{Injector, Stealer};
use idle::Idle;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use worker::WorkerCx;

/// LIFO-slot polls in a row before a worker takes from its queue (tokio: 3).
pub(crate) const MAX_LIFO_POLLS: u32 = 3;
/// Ticks between looks at the injector first (tokio's default: 61 for the
/// multi-thread scheduler's fixed interval in older releases, 31 in newer).
pub(crate) const GLOBAL_QUEUE_INTERVAL: u32 = 61;

pub(crate) type Queued = Notified<Handle>;

/// What every worker and every handle share.
pub(crate) struct Shared {
    pub(crate) injector: Injector<Queued>,
    pub(crate) remotes: Box<[Remote]>,
    pub(crate) idle: Idle,
    pub(crate) registry: Registry<Handle>,
    pub(crate) shutdown: AtomicBool,
    pub(crate) counters: SharedCounters,
    pub(crate) blocking: blocking::Pool,
    /// The runtime's IO driver and timer wheel; idle workers take turns
    /// blocking in it.
    pub(crate) driver: Arc<DriverSlot>,
    /// The task ceiling and the admission policy.
    pub(crate) admit: Admitter,
    /// Deadline given to tasks that set none (`Builder::default_deadline`).
    pub(crate) default_deadline: Option<std::time::Duration>,
}

/// What other threads may touch of one worker.
pub(crate) struct Remote {
    pub(crate) stealer: Stealer<Queued>,
    pub(crate) unparker: Unparker,
    pub(crate) counters: WorkerCounters,
}

impl Shared {
    /// Queues a task woken by a waker (`is_yield`: by itself, during its
    /// own poll).
    fn schedule_task(&self, task: Queued, is_yield: bool) {
        if !is_yield && self.admit.samples_delay() {
            task.header().queued_at.store(now_nanos(), Relaxed);
        }
        worker::with_local(self, |local| match local {
            Some(cx) => cx.schedule_local(task, is_yield),
            None => self.schedule_remote(task),
        })
    }

    /// Queues a task just spawned (admitted): the spawning worker's LIFO slot
    /// if on one, else the injector.
    pub(crate) fn schedule_spawned(&self, task: Queued) {
        worker::with_local(self, |local| match local {
            Some(cx) => cx.schedule_local(task, false),
            None => self.schedule_remote(task),
        })
    }

    /// Queues a task that waited for admission and was just given a permit.
    pub(crate) fn schedule_admitted(&self, task: Queued) {
        if self.admit.samples_delay() {
            task.header().queued_at.store(now_nanos(), Relaxed);
        }
        self.schedule_spawned(task);
    }

    /// Queues a task on the injector and wakes a worker if none searches.
    pub(crate) fn schedule_remote(&self, task: Queued) {
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
        let pending =
            self.remotes.iter().any(|r| !r.stealer.is_empty()) || !self.injector.is_empty();
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
    }

    pub(crate) fn is_shutdown(&self) -> bool {
        self.shutdown.load(SeqCst)
    }

    pub(crate) fn metrics(&self) -> Snapshot {
        Snapshot::collect(
            self.remotes.iter().map(|r| &r.counters),
            &self.counters,
            self.blocking.snapshot(),
            self.driver.handle().stats(),
            &self.admit.books,
        )
    }
}

impl Schedule for Handle {
    fn schedule(&self, task: Notified<Self>) {
        self.shared.schedule_task(task, false);
    }

    fn yield_now(&self, task: Notified<Self>) {
        self.shared.schedule_task(task, true);
    }

    fn release(&self, task: &Task<Self>) -> Option<Task<Self>> {
        self.shared.registry.remove(task)
    }

    fn on_finish(&self, how: Finish, permit: bool) {
        let shared = &*self.shared;
        worker::with_local(shared, |local| match local {
            Some(cx) => {
                let c = cx.counters();
                match how {
                    Finish::Completed => c.completed.bump(),
                    Finish::Panicked => c.panicked.bump(),
                    Finish::Cancelled => c.cancelled.bump(),
                    Finish::DeadlineExceeded => c.deadline_exceeded.bump(),
                    Finish::Rejected => c.rejected.bump(),
                }
            }
            None => count_shared(&shared.counters, how),
        });
        if permit {
            shared.admit.release();
        }
    }

    fn cancel_timer(&self, key: bulwark_io::driver::TimerKey) {
        self.shared.io().cancel_timer(key);
    }

    fn unqueue(&self, id: crate::task::Id) {
        if let Some(task) = self.shared.admit.take_queued(id) {
            // Cancelled already: it runs only to drop its future. No permit.
            self.shared.schedule_task(task, false);
        }
    }
}

/// Counts a finish made off the workers.
pub(crate) fn count_shared(counters: &SharedCounters, how: Finish) {
    SharedCounters::bump(match how {
        Finish::Completed => &counters.completed,
        Finish::Panicked => &counters.panicked,
        Finish::Cancelled => &counters.cancelled,
        Finish::DeadlineExceeded => &counters.deadline_exceeded,
        Finish::Rejected => &counters.rejected,
    });
}

/// Whether `cx` is a worker of the runtime `shared`.
fn is_worker_of(cx: &WorkerCx, shared: &Shared) -> bool {
    std::ptr::eq(&*cx.handle.shared, shared)
}
