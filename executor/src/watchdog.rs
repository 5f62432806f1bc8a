//! The poll-time watchdog: a thread of its own (not a worker) that sees a
//! poll holding its worker past a threshold, reports it, and hands the
//! stuck worker's seat to a replacement thread.
//!
//! It reads the worker slots of the books (`bulwark_metrics::WorkerSlot`)
//! every quarter of the threshold, and every quarter of the hand-over time
//! while a worker is inside a poll. A slot whose `polls_started` has not
//! moved since the last read while a poll is open is inside one poll; once
//! that has lasted the threshold, the stall is counted, reported once as a
//! `tracing` event (target `bulwark::watchdog`) naming the task, its spawn
//! site and the worker, and kept in the books' ring of recent stalls
//! (`Handle::stalls`). When the poll returns, a second event gives the
//! total. The workers pay nothing for this beyond the two counter stores a
//! poll makes anyway: no clock is read on the poll path (Seastar's stall
//! detector, with Go's sysmon as the separate thread).
//!
//! # Compensation
//!
//! With compensation on (the default), a worker whose poll has held it past
//! the hand-over time (5 ms by default, before the 25 ms report: see
//! `Watchdog::hand_over_after`) has its seat (its queue, LIFO slot,
//! deferred tasks and parker: `scheduler/seat.rs`) taken from it and given
//! to a new thread, which serves the tasks queued behind the
//! blocker at once and takes the worker's turns in the driver. The stuck
//! thread finds out when its poll returns and exits, so the runtime is back
//! to one thread per worker. Go's sysmon hands a P off a thread blocked in a
//! system call the same way; .NET's thread pool adds threads when its
//! workers block. The threads added are bounded (`max_extra_workers`).
//!
//! It also looks for leaked resource handles every 100 ms
//! (`scheduler/leaks.rs`): orphans and handles held too long are reported
//! from here, so nobody has to ask for them.
//!
//! Module order: after `threads` (it starts threads and hands them to the
//! runtime's list), before `spawn`.

use crate::scheduler::{leaks, Shared};
use crate::threads;
use bulwark_metrics::{Books, Source};
use std::io;
use std::sync::atomic::Ordering::Acquire;
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

/// The poll-time watchdog's settings: `runtime::Builder::watchdog`.
///
/// On by default with a threshold of 25 ms, Seastar's stall-report default
/// (Go preempts a goroutine after 10 ms). A poll that holds its worker
/// longer than the threshold is reported once, as a `tracing` warning with
/// target `bulwark::watchdog`, and again with its total when it returns;
/// the recent ones are listed by `Handle::stalls` and counted in
/// `Snapshot::stalls`.
///
/// With compensation on (the default), the stuck worker's role (its queue,
/// its LIFO slot, its share of waiting in the IO driver) is handed to a
/// replacement thread once the poll has held it for the hand-over time
/// (5 ms by default, before the report: [`hand_over_after`](Self::hand_over_after)), so the tasks queued behind the blocker run while
/// it blocks; the stuck thread exits when its poll returns. Counted in
/// `Snapshot::compensations`.
///
/// # Examples
///
/// ```
/// use bulwark::runtime::{Runtime, Watchdog};
/// use std::time::Duration;
///
/// assert_eq!(Watchdog::default().threshold(), Some(Watchdog::DEFAULT_THRESHOLD));
/// // Thresholds below the minimum are raised to it.
/// assert_eq!(Watchdog::new(Duration::ZERO).threshold(), Some(Watchdog::MIN_THRESHOLD));
/// let report_only = Watchdog::default().compensate(false);
/// assert!(!report_only.is_compensating());
/// assert_eq!(Watchdog::off().threshold(), None);
///
/// let rt = Runtime::builder()
///     .watchdog(Watchdog::new(Duration::from_millis(50)).max_extra_workers(8))
///     .build()
///     .unwrap();
/// assert!(rt.handle().stalls().is_empty());
/// ```
///
/// A stall caught and reported: see `StallReport` (`bulwark::metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watchdog {
    threshold: Option<Duration>,
    compensate: bool,
    max_extra_workers: Option<usize>,
    /// When a stuck worker's seat is handed over; `None`: the default.
    hand_over: Option<Duration>,
}

impl Watchdog {
    /// The default threshold: 25 ms.
    pub const DEFAULT_THRESHOLD: Duration = Duration::from_millis(25);
    /// The shortest threshold it watches for (the thread wakes every
    /// quarter of it).
    pub const MIN_THRESHOLD: Duration = Duration::from_millis(4);
    /// How long a poll holds its worker before its seat is handed to a
    /// replacement, by default: 5 ms, or the threshold if that is shorter.
    pub const DEFAULT_HAND_OVER: Duration = Duration::from_millis(5);

    /// A watchdog that reports polls longer than `threshold` (at least
    /// [`MIN_THRESHOLD`](Self::MIN_THRESHOLD); a shorter one is raised to
    /// it), and compensates for them.
    pub fn new(threshold: Duration) -> Watchdog {
        Watchdog {
            threshold: Some(threshold.max(Self::MIN_THRESHOLD)),
            compensate: true,
            max_extra_workers: None,
            hand_over: None,
        }
    }

    /// No watchdog: no thread, no reports, no compensation.
    pub fn off() -> Watchdog {
        Watchdog {
            threshold: None,
            compensate: false,
            max_extra_workers: None,
            hand_over: None,
        }
    }

    /// Whether a stuck worker's role is handed to a replacement thread
    /// (default: yes). Off, stalls are only reported, and the tasks queued
    /// behind a blocker wait for it (or for another worker to steal them).
    pub fn compensate(mut self, on: bool) -> Watchdog {
        self.compensate = on;
        self
    }

    /// The most threads that may run beyond the runtime's workers: threads
    /// whose seat a replacement took, still stuck in their poll. At the
    /// bound, further stalls are reported but not compensated until a stuck
    /// poll returns.
    ///
    /// The default is the number of workers, and at least 4: every worker
    /// can be replaced once at the same time, with room for a burst on a
    /// small runtime, while a runtime whose every poll blocks (a deadlock on
    /// a lock, a dependency that hangs a synchronous call) grows by that many
    /// threads, not one per poll. Each stuck thread keeps its stack (2 MiB
    /// reserved, a few pages resident) and whatever its poll holds; a stuck
    /// poll that spins on the CPU shares the cores with the workers. `0`
    /// turns compensation off.
    pub fn max_extra_workers(mut self, n: usize) -> Watchdog {
        self.max_extra_workers = Some(n);
        self
    }

    /// How long a poll may hold its worker before the seat is handed to a
    /// replacement thread (with compensation on): by default
    /// [`DEFAULT_HAND_OVER`](Self::DEFAULT_HAND_OVER), 5 ms, or the
    /// threshold if that is shorter; at least
    /// [`MIN_THRESHOLD`](Self::MIN_THRESHOLD), at most the threshold.
    ///
    /// The hand-over comes before the report on purpose. The report is for
    /// people, and 25 ms keeps it to polls that are worth a look; the
    /// hand-over is for the tasks queued behind the poll, for whom every
    /// millisecond of a stuck worker is latency (Go's sysmon takes a
    /// processor off a thread in a system call after 20 us to 10 ms). In
    /// the showdown's block scenario (a handler that blocks 50 ms, 60 a
    /// second, on 2 workers) handing over at 5 ms instead of 25 ms took the
    /// good requests' p99 from 28-83 ms to 9.3 ms, and in its CPU flood
    /// (10 ms polls) goodput from 660/s to 1000/s. The cost: a poll that
    /// runs 5-25 ms (heavy CPU work) also gets a replacement, a thread
    /// start, and for a while one thread more than workers on the cores.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulwark::runtime::Watchdog;
    /// use std::time::Duration;
    ///
    /// let w = Watchdog::default();
    /// assert_eq!(w.hand_over(), Some(Watchdog::DEFAULT_HAND_OVER));
    /// // Never later than the report, never below the minimum.
    /// let w = Watchdog::new(Duration::from_millis(50)).hand_over_after(Duration::from_secs(1));
    /// assert_eq!(w.hand_over(), Some(Duration::from_millis(50)));
    /// assert_eq!(Watchdog::off().hand_over(), None);
    /// ```
    pub fn hand_over_after(mut self, after: Duration) -> Watchdog {
        self.hand_over = Some(after);
        self
    }

    /// When a stuck worker's seat is handed over (see
    /// [`hand_over_after`](Self::hand_over_after)), or `None` if the
    /// watchdog is off.
    pub fn hand_over(&self) -> Option<Duration> {
        let threshold = self.threshold?;
        Some(
            self.hand_over
                .unwrap_or(Self::DEFAULT_HAND_OVER)
                .clamp(Self::MIN_THRESHOLD, threshold),
        )
    }

    /// The threshold, or `None` if off.
    pub fn threshold(&self) -> Option<Duration> {
        self.threshold
    }

    /// Whether it compensates: it is on, compensation is on, and the system
    /// supports it ([`compensation_supported`](Self::compensation_supported)).
    pub fn is_compensating(&self) -> bool {
        self.threshold.is_some()
            && self.compensate
            && self.max_extra_workers != Some(0)
            && Self::compensation_supported()
    }

    /// Whether this system lets the watchdog take a stuck worker's seat:
    /// Linux 4.14 or later with `membarrier(2)` allowed (a container's
    /// seccomp profile may forbid it). Elsewhere stalls are reported, and
    /// not compensated.
    pub fn compensation_supported() -> bool {
        crate::scheduler::seat::supported()
    }

    /// The bound on extra threads for a runtime of `workers` workers (see
    /// [`max_extra_workers`](Self::max_extra_workers)).
    pub fn extra_workers_for(&self, workers: usize) -> usize {
        self.max_extra_workers.unwrap_or(workers.max(4))
    }
}

impl Default for Watchdog {
    fn default() -> Watchdog {
        Watchdog::new(Watchdog::DEFAULT_THRESHOLD)
    }
}

/// Starts the watchdog's thread (`bulwark-watchdog`), unless it is off.
/// The thread holds the
/// runtime weakly and ends when the runtime shuts down; its join handle
/// goes with the workers', which shutdown joins.
pub(crate) fn start(shared: &Arc<Shared>, watchdog: Watchdog) -> io::Result<()> {
    let Some(threshold) = watchdog.threshold else {
        return Ok(());
    };
    if watchdog.compensate && !Watchdog::compensation_supported() {
        tracing::warn!(
            target: "bulwark::watchdog",
            "stalls will be reported but not compensated: membarrier(2) is not available here",
        );
    }
    let weak = Arc::downgrade(shared);
    let books = shared.admit.books().clone();
    let hand_over = watchdog.hand_over().unwrap_or(threshold);
    let compensation = watchdog.is_compensating().then(|| Compensation {
        max_threads: shared.workers() + watchdog.extra_workers_for(shared.workers()),
    });
    let thread = thread::Builder::new()
        .name("bulwark-watchdog".to_string())
        .spawn(move || run(weak, books, threshold, hand_over, compensation))?;
    let _ = shared.watchdog.set(thread.thread().clone());
    shared.keep_thread(thread);
    Ok(())
}

/// How far the watchdog may compensate.
struct Compensation {
    /// Worker threads at most: the workers and the extra ones.
    max_threads: usize,
}

/// What the watchdog remembers of one worker between reads.
#[derive(Default)]
struct SlotWatch {
    /// `polls_started` of the open poll seen at the last read, if any.
    poll: Option<u64>,
    /// When that poll was first seen open.
    first_seen: Option<Instant>,
    /// The stall reported for it: its number.
    reported: Option<u64>,
    /// Its seat was handed to a replacement (or that was refused at the
    /// bound, already said).
    compensated: bool,
    /// It has held its worker past the hand-over time: its seat is to be
    /// handed over.
    due: bool,
}

fn run(
    shared: Weak<Shared>,
    books: Arc<Books>,
    threshold: Duration,
    hand_over: Duration,
    compensation: Option<Compensation>,
) {
    // A quarter of the threshold between reads; a quarter of the hand-over
    // time while some worker is inside a poll that may become due (so an
    // idle runtime is looked at no more often than before).
    let slow_tick = threshold / 4;
    let fast_tick = if compensation.is_some() {
        hand_over / 4
    } else {
        slow_tick
    };
    let mut tick = slow_tick;
    let mut watch: Vec<SlotWatch> = Vec::new();
    let mut said_at_bound = false;
    let mut last_leak_scan = Instant::now();
    loop {
        // Shutdown unparks it; an early wake-up only makes one look sooner.
        thread::park_timeout(tick);
        tick = slow_tick;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.is_shutdown() {
            return;
        }
        let now = Instant::now();
        let slots = books.workers();
        watch.resize_with(slots.len(), SlotWatch::default);
        for (w, (slot, seen)) in slots.iter().zip(watch.iter_mut()).enumerate() {
            let view = slot.read();
            let open = (view.polls_started != view.polls_ended).then_some(view.polls_started);
            if open.is_some() && open == seen.poll {
                // The same poll as at the last read: still inside it.
                let first = seen.first_seen.unwrap_or(now);
                let so_far = now.saturating_duration_since(first);
                if so_far >= hand_over {
                    seen.due = true;
                } else {
                    tick = fast_tick;
                }
                if seen.reported.is_none() && so_far >= threshold {
                    let name = view.task_id.and_then(|id| {
                        shared
                            .tasks()
                            .into_iter()
                            .find(|t| t.id == id)
                            .and_then(|t| t.name)
                    });
                    tracing::warn!(
                        target: "bulwark::watchdog",
                        worker = w,
                        task_id = view.task_id,
                        task_name = name.as_deref(),
                        spawned_at = %view.location.map_or_else(|| "?".to_string(), |l| l.to_string()),
                        stalled_ms = so_far.as_millis() as u64,
                        "a poll is holding its worker past the watchdog's threshold",
                    );
                    seen.reported =
                        Some(books.record_stall(w, view.task_id, name, view.location, so_far));
                }
                continue;
            }
            // A new poll, or none: the poll seen before has returned.
            if let (Some(seq), Some(first)) = (seen.reported.take(), seen.first_seen) {
                let total = now.saturating_duration_since(first);
                tracing::warn!(
                    target: "bulwark::watchdog",
                    worker = w,
                    stall = seq,
                    total_ms = total.as_millis() as u64,
                    "the stalled poll returned",
                );
                books.end_stall(seq, total);
            }
            seen.poll = open;
            seen.first_seen = open.map(|_| now);
            seen.compensated = false;
            seen.due = false;
            if open.is_some() {
                tick = fast_tick;
            }
        }
        // Compensation stops if the system stops allowing the barrier a
        // hand-over needs (`seat::supported`).
        if let Some(c) = &compensation {
            if Watchdog::compensation_supported() {
                compensate(&shared, &books, c, &mut watch, &mut said_at_bound);
            }
        }
        if now.saturating_duration_since(last_leak_scan) >= leaks::SCAN_EVERY {
            last_leak_scan = now;
            // Reports what it finds; the list is for `Handle::leaks`.
            drop(leaks::scan(&shared));
        }
    }
}

/// Hands each seat whose holder is in a reported stall to a replacement
/// thread, within the bound.
fn compensate(
    shared: &Arc<Shared>,
    books: &Books,
    c: &Compensation,
    watch: &mut [SlotWatch],
    said_at_bound: &mut bool,
) {
    for (index, remote) in shared.remotes.iter().enumerate() {
        let holder = remote.occupant.load(Acquire);
        let Some(seen) = watch.get_mut(holder) else {
            continue;
        };
        if !seen.due || seen.compensated {
            continue;
        }
        // The holder is in a poll now: the stalled one, unless it returned
        // since the read above (then `take` may hand over a seat whose poll
        // is not stuck; the thread it replaces exits after that poll, and
        // nothing is lost but a thread start).
        if !remote.seat.is_lent() {
            continue;
        }
        if shared.live_threads() >= c.max_threads {
            if !*said_at_bound {
                *said_at_bound = true;
                tracing::warn!(
                    target: "bulwark::watchdog",
                    worker = holder,
                    seat = index,
                    max_threads = c.max_threads,
                    "a stuck worker is not compensated: the runtime is at its bound of extra \
                     worker threads (Watchdog::max_extra_workers)",
                );
            }
            continue;
        }
        *said_at_bound = false;
        match threads::start_replacement(shared, index) {
            Ok(true) => {
                seen.compensated = true;
                books.count_compensation();
                tracing::info!(
                    target: "bulwark::watchdog",
                    worker = holder,
                    seat = index,
                    "a replacement thread took over the stuck worker's queue",
                );
            }
            // The holder was queueing work, or its poll just returned: look
            // again next tick.
            Ok(false) => {}
            Err(e) => {
                seen.compensated = true;
                tracing::error!(
                    target: "bulwark::watchdog",
                    worker = holder,
                    seat = index,
                    error = %e,
                    "could not start a replacement for a stuck worker",
                );
            }
        }
    }
}
