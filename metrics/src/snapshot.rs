//! A plain copy of the books at one moment, merged from every worker.

use crate::{Books, SharedCounters, WorkerCounters};
use std::sync::atomic::Ordering::Relaxed;

/// What the blocking pool reports into a [`Snapshot`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockingSnapshot {
    /// Threads the blocking pool has now, busy or idle.
    pub threads: usize,
    /// Of those, threads waiting for work.
    pub idle: usize,
    /// Closures queued and not yet started.
    pub queue_depth: usize,
}

/// What the IO driver reports into a [`Snapshot`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverSnapshot {
    /// Sockets registered with the driver now.
    pub registrations: usize,
    /// Timers set and neither fired nor cancelled.
    pub timers_pending: usize,
    /// `accept` failures for want of fds or memory, each followed by a
    /// back-off.
    pub accept_backoffs: u64,
    /// Times a listener waited because admission paused accepting.
    pub accept_pauses: u64,
}

/// A runtime's counts at one moment.
///
/// Counts are read one at a time without stopping the workers, so a snapshot
/// taken while tasks run may be off by the tasks in flight. At quiescence
/// nothing is lost: `tasks_spawned == tasks_completed + tasks_panicked +
/// tasks_cancelled + tasks_deadline_exceeded + tasks_rejected` and
/// `tasks_live == 0`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// Worker threads.
    pub workers: usize,
    /// Tasks spawned, including blocking tasks.
    pub tasks_spawned: u64,
    /// Tasks that finished with an output.
    pub tasks_completed: u64,
    /// Tasks whose poll (or blocking closure) panicked.
    pub tasks_panicked: u64,
    /// Tasks cancelled: aborted, or dropped at shutdown.
    pub tasks_cancelled: u64,
    /// Tasks dropped at their deadline.
    pub tasks_deadline_exceeded: u64,
    /// Spawns rejected by admission (at the ceiling, or shed).
    pub tasks_rejected: u64,
    /// Tasks spawned and not yet finished (waiting for admission included).
    pub tasks_live: u64,
    /// Tasks holding a permit of the task ceiling now (running or waiting to
    /// be polled; not those still waiting for admission).
    pub tasks_admitted_live: usize,
    /// The most tasks ever admitted at once.
    pub tasks_admitted_peak: usize,
    /// The task ceiling (`max_tasks`).
    pub max_tasks: usize,
    /// Tasks waiting for admission (`Admission::Wait`, `spawn_wait`).
    pub tasks_waiting: usize,
    /// Spawns rejected at the ceiling.
    pub rejected_at_ceiling: u64,
    /// Spawns rejected by adaptive shedding.
    pub rejected_shedding: u64,
    /// Whether adaptive admission is shedding now.
    pub shedding: bool,
    /// Times shedding switched on.
    pub shedding_transitions: u64,
    /// Task polls run by the workers.
    pub polls: u64,
    /// Tasks a worker took from another worker's queue.
    pub steals: u64,
    /// Times a worker went to sleep for want of work.
    pub parks: u64,
    /// Threads the blocking pool has now.
    pub blocking_threads: usize,
    /// Blocking threads waiting for work.
    pub blocking_threads_idle: usize,
    /// Blocking closures queued and not yet started.
    pub blocking_queue_depth: usize,
    /// Sockets registered with the driver now.
    pub io_registrations: usize,
    /// Timers set and neither fired nor cancelled.
    pub timers_pending: usize,
    /// `accept` failures for want of fds or memory (EMFILE, ENFILE, ENOBUFS,
    /// ENOMEM), each followed by a back-off instead of a retry.
    pub accept_backoffs: u64,
    /// Times a listener waited because the runtime was shedding or at its
    /// task ceiling.
    pub accept_pauses: u64,
}

impl Snapshot {
    /// Merges the per-worker counters, the shared counters, and the blocking
    /// pool's and the driver's figures, and the admission books.
    pub fn collect<'a>(
        workers: impl IntoIterator<Item = &'a WorkerCounters>,
        shared: &SharedCounters,
        blocking: BlockingSnapshot,
        driver: DriverSnapshot,
        books: &Books,
    ) -> Snapshot {
        let mut s = Snapshot {
            tasks_spawned: shared.spawned.load(Relaxed),
            tasks_completed: shared.completed.load(Relaxed),
            tasks_panicked: shared.panicked.load(Relaxed),
            tasks_cancelled: shared.cancelled.load(Relaxed),
            tasks_deadline_exceeded: shared.deadline_exceeded.load(Relaxed),
            tasks_rejected: shared.rejected.load(Relaxed),
            tasks_admitted_live: books.tasks.live(),
            tasks_admitted_peak: books.tasks.peak(),
            max_tasks: books.tasks.budget(),
            tasks_waiting: books.tasks.waiting(),
            rejected_at_ceiling: books.rejected_ceiling(),
            rejected_shedding: books.rejected_shedding(),
            shedding: books.is_shedding(),
            shedding_transitions: books.shedding_transitions(),
            blocking_threads: blocking.threads,
            blocking_threads_idle: blocking.idle,
            blocking_queue_depth: blocking.queue_depth,
            io_registrations: driver.registrations,
            timers_pending: driver.timers_pending,
            accept_backoffs: driver.accept_backoffs,
            accept_pauses: driver.accept_pauses,
            ..Snapshot::default()
        };
        for w in workers {
            s.workers += 1;
            s.polls += w.polls.get();
            s.tasks_spawned += w.spawned.get();
            s.tasks_completed += w.completed.get();
            s.tasks_panicked += w.panicked.get();
            s.tasks_cancelled += w.cancelled.get();
            s.tasks_deadline_exceeded += w.deadline_exceeded.get();
            s.tasks_rejected += w.rejected.get();
            s.steals += w.steals.get();
            s.parks += w.parks.get();
        }
        let finished = s.tasks_completed
            + s.tasks_panicked
            + s.tasks_cancelled
            + s.tasks_deadline_exceeded
            + s.tasks_rejected;
        s.tasks_live = s.tasks_spawned.saturating_sub(finished);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collect_merges_workers_and_shared() {
        let w = [WorkerCounters::default(), WorkerCounters::default()];
        w[0].spawned.add(5);
        w[1].completed.add(3);
        w[1].polls.add(7);
        let shared = SharedCounters::default();
        SharedCounters::bump(&shared.spawned);
        SharedCounters::bump(&shared.panicked);
        let blocking = BlockingSnapshot {
            threads: 2,
            idle: 1,
            queue_depth: 0,
        };
        let driver = DriverSnapshot {
            registrations: 3,
            timers_pending: 4,
            accept_backoffs: 5,
            accept_pauses: 6,
        };
        let s = Snapshot::collect(&w, &shared, blocking, driver, &Books::default());
        assert_eq!(s.workers, 2);
        assert_eq!(s.tasks_spawned, 6);
        assert_eq!(s.tasks_completed, 3);
        assert_eq!(s.tasks_panicked, 1);
        assert_eq!(s.tasks_live, 2);
        assert_eq!(s.polls, 7);
        assert_eq!(s.blocking_threads, 2);
        assert_eq!(s.io_registrations, 3);
        assert_eq!(s.timers_pending, 4);
        assert_eq!(s.accept_backoffs, 5);
    }
}
