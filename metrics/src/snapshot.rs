//! A plain copy of the books at one moment, merged from every worker slot,
//! the shared counters, the ledger's kinds, the blocking pool and the driver.

use crate::ledger::Kind;
use crate::worker::WorkerState;
use crate::{Books, HistogramSnapshot, SharedCounters};
use std::fmt;
use std::sync::atomic::Ordering::Relaxed;

/// One ledger kind in a [`Snapshot`].
///
/// # Examples
///
/// ```
/// use bulwark::resource;
///
/// let rt = bulwark::runtime::Builder::new_multi_thread()
///     .resource_budget("db", 2)
///     .build()
///     .unwrap();
/// let db = |rt: &bulwark::Runtime| rt.metrics().kinds.into_iter().find(|k| k.name == "db").unwrap();
/// rt.block_on(async {
///     let conn = resource::track("db", "conn");
///     let now = db(&rt);
///     assert_eq!((now.live, now.budget, now.admitted), (1, 2, 1));
///     drop(conn);
/// });
/// let after = db(&rt);
/// assert_eq!((after.live, after.peak), (0, 1));
/// assert_eq!(after.hold_time.count(), 1, "one handle held, and given back");
/// // The runtime's own kinds: its tasks and sockets.
/// assert!(rt.metrics().kinds.iter().any(|k| k.name == "task"));
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindSnapshot {
    /// The kind's name (`"task"`, `"socket"`, a user's kind...).
    pub name: String,
    /// Permits held now.
    pub live: usize,
    /// The budget (`usize::MAX`: no limit; `null` when serialized).
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::views::budget"))]
    pub budget: usize,
    /// The most permits ever held at once.
    pub peak: usize,
    /// Waiters in the wait list now.
    pub waiting: usize,
    /// Permits handed out since the start.
    pub admitted: u64,
    /// Acquisitions refused for want of a permit.
    pub refused: u64,
    /// How long tracked handles of this kind were held, from `track` to
    /// drop, for the handles returned so far.
    pub hold_time: HistogramSnapshot,
}

impl KindSnapshot {
    /// Reads `kind` now. Plumbing for the executor (`Kind` is not on the
    /// facade), hidden from the docs.
    #[doc(hidden)]
    pub fn of(kind: &Kind) -> KindSnapshot {
        KindSnapshot {
            name: kind.name().to_owned(),
            live: kind.live(),
            budget: kind.budget(),
            peak: kind.peak(),
            waiting: kind.waiting(),
            admitted: kind.admitted(),
            refused: kind.refused(),
            hold_time: kind.hold_time().snapshot(),
        }
    }
}

/// One worker slot in a [`Snapshot`].
///
/// # Examples
///
/// ```
/// let rt = bulwark::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
/// rt.block_on(rt.spawn(async {})).unwrap();
/// let m = rt.metrics();
/// assert_eq!(m.worker_states.len(), 2);
/// for (i, w) in m.worker_states.iter().enumerate() {
///     assert_eq!((w.index, w.role), (i, "worker"));
///     assert!(w.polls_ended <= w.polls_started);
/// }
/// let polls: u64 = m.worker_states.iter().map(|w| w.polls_started).sum();
/// assert!(polls >= 1, "the task was polled on a worker");
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSnapshot {
    /// The worker's role (`"worker"`, `"replacement"`...).
    pub role: &'static str,
    /// The worker's index in the books.
    pub index: usize,
    /// Polls begun on it.
    pub polls_started: u64,
    /// Polls ended on it.
    pub polls_ended: u64,
    /// What it was doing at the read.
    pub state: WorkerState,
    /// Tasks in the local queue of the seat this thread holds (stealable
    /// ones; the LIFO slot aside); 0 for a thread that holds no seat.
    pub queue_depth: usize,
}

/// What the blocking pool reports into a [`Snapshot`].
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
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
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
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
/// Its `Display` is a compact report of a few lines, for a log; with the
/// `serde` feature (on by default) it is `serde::Serialize`, field by field
/// as named here (histograms as their per-bucket counts and `sum_nanos`,
/// the bounds being [`BUCKET_BOUNDS_NANOS`](crate::BUCKET_BOUNDS_NANOS); a
/// ceiling or budget of `usize::MAX` as `null`). The metrics endpoint's
/// `/metrics` writes it in Prometheus' form ([`exposition`](crate::exposition)).
///
/// Counts are read one at a time without stopping the workers, so a snapshot
/// taken while tasks run may be off by the tasks in flight. At quiescence
/// nothing is lost: `tasks_spawned == tasks_completed + tasks_panicked +
/// tasks_cancelled + tasks_deadline_exceeded + tasks_lost_cancelled +
/// tasks_rejected` and `tasks_live == 0`. (`tasks_lost` counts detections,
/// not outcomes: it is not in the sum.)
///
/// # Examples
///
/// ```
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let handles: Vec<_> = (0..10).map(|i| bulwark::spawn(async move { i })).collect();
///     for h in handles {
///         h.await.unwrap();
///     }
///     assert!(bulwark::spawn(async { panic!("oops") }).await.is_err());
/// });
/// let m = rt.metrics();
/// assert_eq!((m.tasks_spawned, m.tasks_completed, m.tasks_panicked), (11, 10, 1));
/// assert_eq!(m.tasks_live, 0);
/// assert_eq!(m.max_tasks, bulwark::runtime::DEFAULT_MAX_TASKS);
/// // A few lines for a log.
/// let report = m.to_string();
/// assert!(report.contains("11 spawned, 10 completed, 1 panicked"), "{report}");
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// Worker slots in the books: worker threads, replacements included
    /// (a slot stays after its worker retires, so its counts still add up).
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
    /// Tasks found *lost*: waiting, with every waker for them dropped, so
    /// that nothing could wake them again. Counted once per task, under
    /// either policy (`LostTask::Report` or `Cancel`). A detection, not how
    /// a task ended: not in the conservation sum (a lost task under
    /// `Report` still ends some other way, at shutdown at the latest).
    pub tasks_lost: u64,
    /// Tasks cancelled because they were lost (`LostTask::Cancel`): their
    /// future was dropped and their `JoinHandle` resolved to a `JoinError`
    /// with `is_lost()`. An outcome, in the conservation sum.
    pub tasks_lost_cancelled: u64,
    /// Deadline scopes (`task::scope_deadline`, a request served by
    /// `bulwark::hyper::serve_connection`) whose deadline passed before their
    /// future finished. Not tasks: not in the conservation sum.
    pub scope_deadlines_exceeded: u64,
    /// Polls the watchdog saw hold their worker past its threshold.
    pub stalls: u64,
    /// Times the watchdog handed a stuck worker's seat (its queue, LIFO
    /// slot and share of the driver) to a replacement thread.
    pub compensations: u64,
    /// Times a task's `block_in_place` handed its worker's seat to a new
    /// thread, so that the worker's queue was served while it blocked.
    pub blocks_in_place: u64,
    /// Tracked resource handles live now (`bulwark::resource`).
    pub resources_tracked: usize,
    /// Tracked handles found alive after their holder task finished.
    pub resource_orphans: u64,
    /// Tracked handles found held longer than their kind's `max_hold`.
    pub resource_long_holds: u64,
    /// Worker threads running now: one per worker, plus those whose seat a
    /// replacement took and whose stuck poll has not returned yet. Back to
    /// the number of workers once every stuck poll has returned.
    pub worker_threads: usize,
    /// Spawns rejected by admission (at the ceiling, or shed).
    pub tasks_rejected: u64,
    /// Tasks spawned and not yet finished (waiting for admission included).
    pub tasks_live: u64,
    /// Tasks holding a permit of the task ceiling now (running or waiting to
    /// be polled; not those still waiting for admission).
    pub tasks_admitted_live: usize,
    /// The most tasks ever admitted at once.
    pub tasks_admitted_peak: usize,
    /// The task ceiling (`max_tasks`; `usize::MAX`: none, `null` when
    /// serialized).
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::views::budget"))]
    pub max_tasks: usize,
    /// Tasks waiting for admission (`Admission::Wait`, `spawn_wait`).
    pub tasks_waiting: usize,
    /// Children waiting for a place in their parent's fan-out budget
    /// (`max_children`), holding only their futures. Children waiting for a
    /// permit of the ceiling are in `tasks_waiting`.
    pub children_waiting: usize,
    /// Subtasks that completed for a parent whose work then failed: the
    /// parent was cancelled (aborted, past its deadline, shut down) or a
    /// sibling's spawn was refused. Counted for parents with a fan-out
    /// family (a budget, or a child that met the ceiling).
    pub wasted_subtasks: u64,
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
    /// Tasks queued on the global queue (from outside the workers).
    pub remote_schedules: u64,
    /// Tasks in the global queue now.
    pub global_queue_depth: usize,
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
    /// Time inside task polls. Sampled: one poll in
    /// `SAMPLE` per worker is timed (see the runtime's docs), so `count` is
    /// the polls timed, not every poll.
    pub poll_duration: HistogramSnapshot,
    /// Time from a task's wake to the start of its poll (its wait in a
    /// queue). Sampled as `poll_duration` is.
    pub scheduling_delay: HistogramSnapshot,
    /// Time from spawn to end, for every task that ended (completed,
    /// panicked, cancelled, past its deadline, lost and cancelled).
    pub task_lifetime: HistogramSnapshot,
    /// Every registered ledger kind, in registration order (`task` first).
    pub kinds: Vec<KindSnapshot>,
    /// Every worker slot, in index order.
    pub worker_states: Vec<WorkerSnapshot>,
}

impl Snapshot {
    /// Merges the worker slots' counters (every slot in the books), the
    /// shared counters, the blocking pool's and the driver's figures, and
    /// the ledger's kinds. Plumbing for the executor (its arguments are not
    /// on the facade; a program reads `Runtime::metrics`), hidden from the
    /// docs.
    #[doc(hidden)]
    pub fn collect(
        books: &Books,
        shared: &SharedCounters,
        blocking: BlockingSnapshot,
        driver: DriverSnapshot,
    ) -> Snapshot {
        let tasks = books.tasks();
        let mut s = Snapshot {
            tasks_spawned: shared.spawned.load(Relaxed),
            tasks_completed: shared.completed.load(Relaxed),
            tasks_panicked: shared.panicked.load(Relaxed),
            tasks_cancelled: shared.cancelled.load(Relaxed),
            tasks_deadline_exceeded: shared.deadline_exceeded.load(Relaxed),
            tasks_lost: shared.lost.load(Relaxed),
            tasks_lost_cancelled: shared.lost_cancelled.load(Relaxed),
            tasks_rejected: shared.rejected.load(Relaxed),
            tasks_admitted_live: tasks.live(),
            tasks_admitted_peak: tasks.peak(),
            max_tasks: tasks.budget(),
            tasks_waiting: tasks.waiting(),
            rejected_at_ceiling: books.rejected_ceiling(),
            rejected_shedding: books.rejected_shedding(),
            shedding: books.is_shedding(),
            shedding_transitions: books.shedding_transitions(),
            scope_deadlines_exceeded: books.scope_deadlines(),
            stalls: books.stalls_seen(),
            compensations: books.compensations(),
            blocks_in_place: books.blocks_in_place(),
            resources_tracked: books.holdings().len(),
            resource_orphans: books.holdings().orphans(),
            resource_long_holds: books.holdings().long_holds(),
            blocking_threads: blocking.threads,
            blocking_threads_idle: blocking.idle,
            blocking_queue_depth: blocking.queue_depth,
            io_registrations: driver.registrations,
            timers_pending: driver.timers_pending,
            accept_backoffs: driver.accept_backoffs,
            accept_pauses: driver.accept_pauses,
            kinds: books.kinds().iter().map(|k| KindSnapshot::of(k)).collect(),
            task_lifetime: shared.task_lifetime.snapshot(),
            remote_schedules: shared.remote_schedules.load(Relaxed),
            ..Snapshot::default()
        };
        for slot in books.workers() {
            let view = slot.read();
            s.worker_states.push(WorkerSnapshot {
                role: slot.role(),
                index: slot.index(),
                polls_started: view.polls_started,
                polls_ended: view.polls_ended,
                state: view.state(),
                queue_depth: 0,
            });
            let h = &slot.histograms;
            h.poll_duration.add_to(&mut s.poll_duration);
            h.scheduling_delay.add_to(&mut s.scheduling_delay);
            h.task_lifetime.add_to(&mut s.task_lifetime);
            let w = &slot.counters;
            s.workers += 1;
            s.polls += view.polls_started;
            s.tasks_spawned += w.spawned.get();
            s.tasks_completed += w.completed.get();
            s.tasks_panicked += w.panicked.get();
            s.tasks_cancelled += w.cancelled.get();
            s.tasks_deadline_exceeded += w.deadline_exceeded.get();
            s.tasks_lost_cancelled += w.lost_cancelled.get();
            s.tasks_rejected += w.rejected.get();
            s.steals += w.steals.get();
            s.parks += w.parks.get();
        }
        let finished = s.tasks_completed
            + s.tasks_panicked
            + s.tasks_cancelled
            + s.tasks_deadline_exceeded
            + s.tasks_lost_cancelled
            + s.tasks_rejected;
        s.tasks_live = s.tasks_spawned.saturating_sub(finished);
        s
    }
}

/// A bound, or "no limit" for `usize::MAX`.
struct Limit(usize);

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == usize::MAX {
            f.write_str("no limit")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// A histogram's p50 and p99 and how many values it holds.
struct Quantiles<'a>(&'a HistogramSnapshot);

impl fmt::Display for Quantiles<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0.quantile(0.5), self.0.quantile(0.99)) {
            (Some(p50), Some(p99)) => {
                write!(f, "p50 {p50:?} p99 {p99:?} ({} timed)", self.0.count())
            }
            _ => f.write_str("none timed"),
        }
    }
}

/// A few lines for a log: tasks and how they ended, admission, workers,
/// latencies (p50 and p99 from the histograms), the blocking pool and the
/// driver, and every ledger kind.
impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "tasks: {} live ({} admitted, peak {}, ceiling {}), {} waiting for admission, {} children waiting",
            self.tasks_live,
            self.tasks_admitted_live,
            self.tasks_admitted_peak,
            Limit(self.max_tasks),
            self.tasks_waiting,
            self.children_waiting,
        )?;
        writeln!(
            f,
            "ended: {} spawned, {} completed, {} panicked, {} cancelled, {} past deadline, {} lost ({} cancelled), {} rejected ({} at ceiling, {} shed)",
            self.tasks_spawned,
            self.tasks_completed,
            self.tasks_panicked,
            self.tasks_cancelled,
            self.tasks_deadline_exceeded,
            self.tasks_lost,
            self.tasks_lost_cancelled,
            self.tasks_rejected,
            self.rejected_at_ceiling,
            self.rejected_shedding,
        )?;
        writeln!(
            f,
            "workers: {} slots, {} threads; {} polls, {} steals, {} parks; {} stalls, {} compensations; shedding {} ({} times)",
            self.workers,
            self.worker_threads,
            self.polls,
            self.steals,
            self.parks,
            self.stalls,
            self.compensations,
            if self.shedding { "on" } else { "off" },
            self.shedding_transitions,
        )?;
        writeln!(
            f,
            "latency: poll {}; scheduling delay {}; task lifetime {}",
            Quantiles(&self.poll_duration),
            Quantiles(&self.scheduling_delay),
            Quantiles(&self.task_lifetime),
        )?;
        writeln!(
            f,
            "blocking: {} threads ({} idle), {} queued; io: {} registrations, {} timers, {} accept back-offs, {} accept pauses",
            self.blocking_threads,
            self.blocking_threads_idle,
            self.blocking_queue_depth,
            self.io_registrations,
            self.timers_pending,
            self.accept_backoffs,
            self.accept_pauses,
        )?;
        write!(
            f,
            "resources: {} tracked, {} orphans, {} long holds; kinds:",
            self.resources_tracked, self.resource_orphans, self.resource_long_holds,
        )?;
        for k in &self.kinds {
            write!(
                f,
                " {} {}/{} (peak {}, {} waiting, {} refused)",
                k.name,
                k.live,
                Limit(k.budget),
                k.peak,
                k.waiting,
                k.refused
            )?;
        }
        Ok(())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn collect_merges_workers_shared_and_kinds() {
        let books = Books::new(10, false);
        let w = [books.add_worker("worker"), books.add_worker("worker")];
        w[0].counters.spawned.add(5);
        w[1].counters.completed.add(3);
        for _ in 0..7 {
            w[1].begin_poll(1, std::panic::Location::caller());
            w[1].end_poll();
        }
        w[1].begin_poll(9, std::panic::Location::caller());
        w[0].set_parked(true);
        assert!(books.tasks().try_acquire());
        let db = books.register_kind("db", 2).unwrap();
        assert!(db.try_acquire() && db.try_acquire() && !db.try_acquire());
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
        let s = Snapshot::collect(&books, &shared, blocking, driver);
        assert_eq!(s.workers, 2);
        assert_eq!(s.tasks_spawned, 6);
        assert_eq!(s.tasks_completed, 3);
        assert_eq!(s.tasks_panicked, 1);
        assert_eq!(s.tasks_live, 2);
        assert_eq!(s.polls, 8, "polls begun, the one in progress included");
        assert_eq!(s.blocking_threads, 2);
        assert_eq!(s.io_registrations, 3);
        assert_eq!(s.timers_pending, 4);
        assert_eq!(s.accept_backoffs, 5);
        assert_eq!(s.accept_pauses, 6);
        assert_eq!((s.tasks_admitted_live, s.max_tasks), (1, 10));
        assert_eq!(s.kinds[1].name, "socket");
        assert_eq!(
            s.kinds[2],
            KindSnapshot {
                name: "db".into(),
                live: 2,
                budget: 2,
                peak: 2,
                waiting: 0,
                admitted: 2,
                refused: 1,
                hold_time: HistogramSnapshot::default(),
            }
        );
        assert_eq!(s.kinds[0].name, "task");
        assert_eq!(s.worker_states[0].state, WorkerState::Parked);
        assert!(matches!(
            s.worker_states[1].state,
            WorkerState::Polling {
                task_id: Some(9),
                ..
            }
        ));
        assert_eq!(
            (s.worker_states[1].polls_started, s.worker_states[1].index),
            (8, 1)
        );
    }

    #[test]
    fn display_is_a_short_report() {
        let books = Books::new(10, false);
        books.register_kind("db", 4).unwrap();
        let shared = SharedCounters::default();
        SharedCounters::bump(&shared.spawned);
        let mut s = Snapshot::collect(
            &books,
            &shared,
            BlockingSnapshot::default(),
            DriverSnapshot::default(),
        );
        s.poll_duration.counts[2] = 3;
        let text = s.to_string();
        assert!(text.lines().count() <= 8, "{text}");
        assert!(text.contains("tasks: 1 live"), "{text}");
        assert!(text.contains("ceiling 10"), "{text}");
        assert!(text.contains("poll p50"), "{text}");
        assert!(text.contains("scheduling delay none timed"), "{text}");
        assert!(text.contains("socket 0/no limit"), "{text}");
        assert!(text.contains("db 0/4"), "{text}");
    }
}
