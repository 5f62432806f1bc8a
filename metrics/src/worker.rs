//! [`WorkerSlot`]: what one worker thread publishes about itself, for the
//! watchdog and the metrics endpoint to read from other threads.
//!
//! # Who writes what
//!
//! Every field is written only by the slot's worker thread (single writer),
//! as a relaxed load and store like [`Counter`](crate::Counter): no locked
//! instruction and no clock read on the hot path. Any thread reads.
//!
//! # Seeing a stalled poll without a clock
//!
//! The worker bumps `polls_started` as a poll begins and `polls_ended` as it
//! ends; nothing else. A watchdog thread reads the slot every tick: if
//! `polls_started` is the same as at its previous read and `started !=
//! ended`, the worker has been inside one poll for at least a tick, and
//! [`WorkerView::state`] names the task and where it was spawned. This is
//! Seastar's stall detector: the cost of watching falls on the watcher, and
//! a poll pays two counter stores and two field stores.

use crate::WorkerCounters;
use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use Ordering::{Acquire, Relaxed, Release};

/// One worker thread's published state and its counters. Padded to its own
/// cache lines so workers never share a line through their slots.
#[repr(align(128))]
pub struct WorkerSlot {
    role: &'static str,
    index: usize,
    polls_started: AtomicU64,
    polls_ended: AtomicU64,
    /// The id of the task being polled; 0: none.
    task_id: AtomicU64,
    /// Where that task was spawned; null: none. Only ever a
    /// `&'static Location<'static>` cast to a pointer.
    location: AtomicPtr<Location<'static>>,
    parked: AtomicBool,
    /// What this worker counts (polls, spawns, steals...).
    pub counters: WorkerCounters,
    /// What this worker times (poll duration, scheduling delay, task
    /// lifetime).
    pub histograms: crate::WorkerHistograms,
}

impl fmt::Debug for WorkerSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerSlot")
            .field("role", &self.role)
            .field("index", &self.index)
            .field("view", &self.read())
            .finish_non_exhaustive()
    }
}

/// What a worker is doing, as far as one read can tell.
///
/// # Examples
///
/// ```
/// use bulwark::metrics::WorkerState;
/// use bulwark::runtime::Handle;
///
/// let rt = bulwark::Runtime::new().unwrap();
/// let states = rt.block_on(rt.spawn(async {
///     let m = Handle::current().metrics();
///     m.worker_states.into_iter().map(|w| w.state).collect::<Vec<_>>()
/// }));
/// // The worker running the task above was inside its poll.
/// assert!(states
///     .unwrap()
///     .iter()
///     .any(|s| matches!(s, WorkerState::Polling { .. })));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// Asleep for want of work.
    Parked,
    /// Awake, between polls (looking for work, running the driver...).
    Idle,
    /// Inside a task's poll.
    Polling {
        /// The task's id, if the read caught it.
        task_id: Option<u64>,
        /// Where the task was spawned, if the read caught it.
        location: Option<&'static Location<'static>>,
    },
}

/// One read of a [`WorkerSlot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerView {
    /// Polls begun on this worker.
    pub polls_started: u64,
    /// Polls ended on this worker. One less than `polls_started` while a
    /// poll runs.
    pub polls_ended: u64,
    /// The task being polled, if any.
    pub task_id: Option<u64>,
    /// Where the task being polled was spawned, if any.
    pub location: Option<&'static Location<'static>>,
    /// The worker is asleep for want of work.
    pub parked: bool,
}

impl WorkerView {
    /// What the worker was doing at the read.
    pub fn state(&self) -> WorkerState {
        if self.polls_started != self.polls_ended {
            WorkerState::Polling {
                task_id: self.task_id,
                location: self.location,
            }
        } else if self.parked {
            WorkerState::Parked
        } else {
            WorkerState::Idle
        }
    }
}

impl WorkerSlot {
    /// A slot for the worker number `index` (registration order) playing
    /// `role` (`"worker"`, `"replacement"`...). Made by
    /// [`Books::add_worker`](crate::Books::add_worker).
    pub(crate) fn new(role: &'static str, index: usize) -> WorkerSlot {
        WorkerSlot {
            role,
            index,
            polls_started: AtomicU64::new(0),
            polls_ended: AtomicU64::new(0),
            task_id: AtomicU64::new(0),
            location: AtomicPtr::new(std::ptr::null_mut()),
            parked: AtomicBool::new(false),
            counters: WorkerCounters::default(),
            histograms: crate::WorkerHistograms::default(),
        }
    }

    /// The worker's role (`"worker"`, `"replacement"`...).
    pub fn role(&self) -> &'static str {
        self.role
    }

    /// The worker's index in the books (registration order).
    pub fn index(&self) -> usize {
        self.index
    }

    /// A poll of task `task_id` (spawned at `location`) begins. Only the
    /// slot's worker may call this.
    #[inline]
    pub fn begin_poll(&self, task_id: u64, location: &'static Location<'static>) {
        self.task_id.store(task_id, Relaxed);
        self.location
            .store(location as *const Location<'static> as *mut _, Relaxed);
        // Release: a reader that sees this count (Acquire) sees this poll's
        // task id and location (or a later poll's).
        let n = self.polls_started.load(Relaxed);
        self.polls_started.store(n.wrapping_add(1), Release);
    }

    /// The poll begun last ends. Only the slot's worker may call this.
    ///
    /// The task fields are left as they are (two stores fewer per poll): a
    /// reader that sees as many polls ended as begun ignores them.
    #[inline]
    pub fn end_poll(&self) {
        // Release: pairs with the reader's Acquire, so a reader that sees
        // this count knows the poll is over.
        let n = self.polls_ended.load(Relaxed);
        self.polls_ended.store(n.wrapping_add(1), Release);
    }

    /// The worker goes to sleep (`true`) or wakes (`false`). Only the slot's
    /// worker may call this.
    #[inline]
    pub fn set_parked(&self, parked: bool) {
        self.parked.store(parked, Relaxed);
    }

    /// Reads the slot from any thread without stopping the worker.
    ///
    /// The fields are read one at a time, so a read racing a poll's start or
    /// end may pair the counts with the task of the poll just before or just
    /// after. The read retries (a few times, no more) while `polls_started`
    /// moves under it; a watchdog confirms a stall across two reads anyway.
    pub fn read(&self) -> WorkerView {
        let mut view = self.read_once();
        for _ in 0..3 {
            // Acquire: pairs with the Release bump in `begin_poll`.
            if self.polls_started.load(Acquire) == view.polls_started {
                break;
            }
            view = self.read_once();
        }
        view
    }

    fn read_once(&self) -> WorkerView {
        // Acquire: pairs with the Release bumps, so the task fields read
        // below are at least as new as the counts.
        let polls_started = self.polls_started.load(Acquire);
        let polls_ended = self.polls_ended.load(Acquire);
        // Between polls the task fields still name the last one: not
        // polling, no task.
        let polling = polls_started != polls_ended;
        let task_id = match self.task_id.load(Relaxed) {
            id if polling && id != 0 => Some(id),
            _ => None,
        };
        let ptr = if polling {
            self.location.load(Relaxed)
        } else {
            std::ptr::null_mut()
        };
        // SAFETY: `location` only ever holds null or a pointer made from a
        // `&'static Location<'static>` in `begin_poll`. Such a location lives
        // for the whole program and is never written through, so turning the
        // pointer back into a shared `'static` reference is sound whenever it
        // is not null, on any thread, at any time.
        let location = unsafe { ptr.cast_const().as_ref() };
        WorkerView {
            polls_started,
            polls_ended,
            task_id,
            location,
            parked: self.parked.load(Relaxed),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[track_caller]
    fn here() -> &'static Location<'static> {
        Location::caller()
    }

    #[test]
    fn a_poll_shows_its_task_and_location_until_it_ends() {
        let slot = WorkerSlot::new("worker", 0);
        assert_eq!(slot.read().state(), WorkerState::Idle);
        let loc = here();
        slot.begin_poll(42, loc);
        let v = slot.read();
        assert_eq!((v.polls_started, v.polls_ended), (1, 0));
        assert_eq!(
            v.state(),
            WorkerState::Polling {
                task_id: Some(42),
                location: Some(loc)
            }
        );
        assert_eq!(v.location.map(|l| l.file()), Some(file!()));
        slot.end_poll();
        let v = slot.read();
        assert_eq!((v.polls_started, v.polls_ended, v.task_id), (1, 1, None));
        assert_eq!(v.state(), WorkerState::Idle);
        slot.set_parked(true);
        assert_eq!(slot.read().state(), WorkerState::Parked);
        slot.set_parked(false);
        assert_eq!(slot.read().state(), WorkerState::Idle);
    }

    #[test]
    fn a_watcher_sees_a_stall_as_an_unchanged_started_count() {
        let slot = std::sync::Arc::new(WorkerSlot::new("worker", 3));
        let (stall_tx, stall_rx) = std::sync::mpsc::channel::<()>();
        let (began_tx, began_rx) = std::sync::mpsc::channel::<()>();
        let worker = {
            let slot = slot.clone();
            std::thread::spawn(move || {
                slot.begin_poll(7, Location::caller());
                began_tx.send(()).unwrap();
                // The "blocking poll": until the watcher lets go (bounded).
                let _ = stall_rx.recv_timeout(std::time::Duration::from_secs(10));
                slot.end_poll();
            })
        };
        began_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        let first = slot.read();
        let second = slot.read();
        assert_eq!(first.polls_started, second.polls_started);
        assert_ne!(second.polls_started, second.polls_ended);
        assert!(matches!(
            second.state(),
            WorkerState::Polling {
                task_id: Some(7),
                ..
            }
        ));
        stall_tx.send(()).unwrap();
        worker.join().unwrap();
        assert_eq!(slot.read().state(), WorkerState::Idle);
        assert_eq!((slot.role(), slot.index()), ("worker", 3));
    }

    #[test]
    fn slots_sit_on_their_own_lines() {
        assert!(std::mem::align_of::<WorkerSlot>() >= 128);
    }
}
