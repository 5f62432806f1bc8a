//! The poll-time watchdog: a thread of its own (not a worker) that sees a
//! poll holding its worker past a threshold, and reports it.
//!
//! It reads the worker slots of the books (`bulwark_metrics::WorkerSlot`)
//! every quarter of the threshold. A slot whose `polls_started` has not
//! moved since the last read while a poll is open is inside one poll; once
//! that has lasted the threshold, the stall is counted, reported once as a
//! `tracing` event (target `bulwark::watchdog`) naming the task, its spawn
//! site and the worker, and kept in the books' ring of recent stalls
//! (`Handle::stalls`). When the poll returns, a second event gives the
//! total. The workers pay nothing for this beyond the two counter stores a
//! poll makes anyway: no clock is read on the poll path (Seastar's stall
//! detector, with Go's sysmon as the separate thread).
//!
//! Module order: after `threads` (it starts a thread and hands it to the
//! runtime's list), before `spawn`.

use crate::scheduler::Shared;
use bulwark_metrics::{Books, Source};
use std::io;
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
/// # Examples
///
/// ```
/// use bulwark_executor::runtime::{Runtime, Watchdog};
/// use std::time::Duration;
///
/// let rt = Runtime::builder()
///     .watchdog(Watchdog::new(Duration::from_millis(50)))
///     .build()
///     .unwrap();
/// # drop(rt);
/// let quiet = Runtime::builder().watchdog(Watchdog::off()).build().unwrap();
/// # drop(quiet);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watchdog {
    threshold: Option<Duration>,
}

impl Watchdog {
    /// The default threshold: 25 ms.
    pub const DEFAULT_THRESHOLD: Duration = Duration::from_millis(25);
    /// The shortest threshold it watches for (the thread wakes every
    /// quarter of it).
    pub const MIN_THRESHOLD: Duration = Duration::from_millis(4);

    /// A watchdog that reports polls longer than `threshold` (at least
    /// [`MIN_THRESHOLD`](Self::MIN_THRESHOLD); a shorter one is raised to
    /// it).
    pub fn new(threshold: Duration) -> Watchdog {
        Watchdog {
            threshold: Some(threshold.max(Self::MIN_THRESHOLD)),
        }
    }

    /// No watchdog: no thread, no reports.
    pub fn off() -> Watchdog {
        Watchdog { threshold: None }
    }

    /// The threshold, or `None` if off.
    pub fn threshold(&self) -> Option<Duration> {
        self.threshold
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
    let weak = Arc::downgrade(shared);
    let books = shared.admit.books().clone();
    let thread = thread::Builder::new()
        .name("bulwark-watchdog".to_string())
        .spawn(move || run(weak, books, threshold))?;
    shared.threads.lock().push(thread);
    Ok(())
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
}

fn run(shared: Weak<Shared>, books: Arc<Books>, threshold: Duration) {
    let tick = threshold / 4;
    let mut watch: Vec<SlotWatch> = Vec::new();
    loop {
        thread::sleep(tick);
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
        }
    }
}
