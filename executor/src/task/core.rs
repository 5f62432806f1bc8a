//! The task allocation: header, scheduler, stage, join waker slot.

use super::raw::Vtable;
use super::state::State;
use super::{Id, JoinError};
use bulwark_io::driver::TimerKey;
use std::cell::UnsafeCell;
use std::future::Future;
use std::panic::Location;
use std::sync::atomic::{
    AtomicU32, AtomicU64, AtomicU8, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed,
};
use std::task::Waker;
use std::time::Instant;

/// What a task is called and where it came from; fixed at spawn.
pub(crate) struct TaskMeta {
    pub(crate) id: Id,
    pub(crate) name: Option<Box<str>>,
    pub(crate) location: &'static Location<'static>,
    /// When the task is cancelled if it has not finished.
    pub(crate) deadline: Option<Instant>,
    /// When it was spawned (`clock::now`, or a worker's coarse time).
    pub(crate) spawned_at: u64,
    /// The runtime's policy for a lost task: cancel it (else only report).
    pub(crate) cancel_if_lost: bool,
}

impl TaskMeta {
    /// A fresh id, a name and a spawn site, spawned now; no deadline; a
    /// lost task is only reported.
    pub(crate) fn new(name: Option<&str>, location: &'static Location<'static>) -> TaskMeta {
        TaskMeta {
            id: Id::next(),
            name: name.map(Into::into),
            location,
            deadline: None,
            spawned_at: crate::clock::now(),
            cancel_if_lost: false,
        }
    }
}

/// Why a task was cancelled; kept in the header so the cancelling thread and
/// the one that drops the future agree. The first reason given wins (see
/// [`Header::set_cancel_reason`]): an abort followed by a deadline still
/// reads as an abort.
pub(crate) mod reason {
    /// No reason given yet; read as [`CANCELLED`].
    pub(crate) const UNSET: u8 = u8::MAX;
    /// Aborted through its `JoinHandle`, or dropped at shutdown.
    pub(crate) const CANCELLED: u8 = 0;
    /// Its deadline passed.
    pub(crate) const DEADLINE: u8 = 1;
    /// Admission refused it: the runtime is shedding load.
    pub(crate) const REJECTED_SHEDDING: u8 = 3;
}

/// The part of a task every holder can read without knowing its types.
/// `repr(C)` and first in [`Cell`], so a pointer to the cell is a pointer to
/// its header.
#[repr(C)]
pub(crate) struct Header {
    pub(crate) state: State,
    pub(crate) vtable: &'static Vtable,
    pub(crate) id: Id,
    /// Where this task sits in the registry. Written and read only under the
    /// registry shard's lock; `usize::MAX` until it is registered.
    pub(crate) registry_key: UnsafeCell<usize>,
    pub(crate) name: Option<Box<str>>,
    /// Where the task was spawned (`#[track_caller]`): published in the
    /// worker's slot while the task is polled, and listed with live tasks.
    pub(crate) location: &'static Location<'static>,
    /// The task's deadline, set at spawn. Lifted (to `None`) only by the
    /// task itself, while it is polled (`task::lift_deadline`): written
    /// before the task is published or while `RUNNING`, read while
    /// `RUNNING`.
    pub(crate) deadline: UnsafeCell<Option<Instant>>,
    /// The deadline in `clock` nanoseconds, `u64::MAX` if none (or lifted):
    /// what the worker compares with its coarse time before each poll, for
    /// the cost of one compare, and what the deadline timer looks at before
    /// it cancels (a lifted deadline's timer may still fire once).
    pub(crate) deadline_nanos: AtomicU64,
    /// When the task was spawned (`clock` nanoseconds), for its age.
    pub(crate) spawned_at: u64,
    /// When the task last went idle (`clock` nanoseconds, coarse), for the
    /// idle report; 0 if never recorded. Written only while the report is
    /// on (`Schedule::idle_stamp`), by the thread that holds `RUNNING`, just
    /// before its poll ends; read by listings. Relaxed: a metric, read
    /// alone.
    pub(crate) idle_since: AtomicU64,
    /// The wheel entry of the deadline, set at the task's first `Pending`
    /// (or at spawn, for a task queued for admission or already past its
    /// deadline). Written before the task is published or while `RUNNING`;
    /// taken by the thread that completes it (which holds `RUNNING`).
    pub(crate) deadline_timer: UnsafeCell<Option<TimerKey>>,
    /// One of [`reason`]'s constants; the first one set wins, and it is set
    /// before the cancel transition.
    cancel_reason: AtomicU8,
    /// Polls begun. Written only by the thread holding the task's
    /// `Notified` (one at a time, handed on through the queues), as a load
    /// and a store; read by listings. Relaxed: a metric, read alone.
    polls: AtomicU64,
    /// Of those, the polls the worker timed (one in the runtime's sample),
    /// and the time they took, in nanoseconds: `fetch_add`, since the
    /// worker adds them after its poll, when the task may already be
    /// polled again elsewhere.
    polls_timed: AtomicU32,
    busy_timed: AtomicU64,
}

impl Header {
    /// A poll begins. Only the holder of the task's `Notified` calls this.
    #[inline]
    pub(crate) fn count_poll(&self) {
        self.polls
            .store(self.polls.load(Relaxed).wrapping_add(1), Relaxed);
    }

    /// Polls begun so far.
    pub(crate) fn polls(&self) -> u64 {
        self.polls.load(Relaxed)
    }

    /// A timed poll of this task took `nanos`.
    pub(crate) fn add_timed_poll(&self, nanos: u64) {
        self.polls_timed.fetch_add(1, Relaxed);
        self.busy_timed.fetch_add(nanos, Relaxed);
    }

    /// Time spent in polls so far, estimated as the mean of the timed polls
    /// times the polls begun; `None` if no poll was timed.
    pub(crate) fn busy_estimate(&self) -> Option<std::time::Duration> {
        let timed = self.polls_timed.load(Relaxed) as u64;
        if timed == 0 {
            return None;
        }
        let mean = self.busy_timed.load(Relaxed) as f64 / timed as f64;
        let polls = self.polls().max(timed);
        Some(std::time::Duration::from_nanos(
            (mean * polls as f64) as u64,
        ))
    }

    /// Gives the reason for a cancellation about to happen, unless one was
    /// given already: the first canceller names the cause.
    pub(crate) fn set_cancel_reason(&self, why: u8) {
        // AcqRel/Acquire: the winner's reason is seen by whoever reads it after
        // seeing the CANCELLED bit, which is set after this (with AcqRel).
        let _ = self
            .cancel_reason
            .compare_exchange(reason::UNSET, why, AcqRel, Acquire);
    }

    /// The reason the task was cancelled ([`reason::CANCELLED`] if none was
    /// given).
    pub(crate) fn cancel_reason(&self) -> u8 {
        match self.cancel_reason.load(Acquire) {
            reason::UNSET => reason::CANCELLED,
            why => why,
        }
    }
}

/// What a task holds while it lives: the future, then its output.
pub(crate) enum Stage<F: Future> {
    Running(F),
    Finished(Result<F::Output, JoinError>),
    Consumed,
}

/// The whole allocation.
#[repr(C)]
pub(crate) struct Cell<F: Future, S> {
    pub(crate) header: Header,
    pub(crate) scheduler: S,
    /// See the module docs of `task` for who may touch it when.
    pub(crate) stage: crate::sync::UnsafeCell<Stage<F>>,
    /// The waker of whoever awaits the `JoinHandle`.
    pub(crate) join_waker: crate::sync::UnsafeCell<Option<Waker>>,
}

impl<F: Future, S> Cell<F, S> {
    pub(crate) fn new(
        future: F,
        scheduler: S,
        meta: TaskMeta,
        vtable: &'static Vtable,
    ) -> Box<Self> {
        Box::new(Cell {
            header: Header {
                state: State::new(meta.cancel_if_lost),
                vtable,
                id: meta.id,
                registry_key: UnsafeCell::new(usize::MAX),
                name: meta.name,
                location: meta.location,
                deadline: UnsafeCell::new(meta.deadline),
                deadline_nanos: AtomicU64::new(
                    meta.deadline.map_or(u64::MAX, crate::clock::nanos_at),
                ),
                spawned_at: meta.spawned_at,
                idle_since: AtomicU64::new(0),
                deadline_timer: UnsafeCell::new(None),
                cancel_reason: AtomicU8::new(reason::UNSET),
                polls: AtomicU64::new(0),
                polls_timed: AtomicU32::new(0),
                busy_timed: AtomicU64::new(0),
            },
            scheduler,
            stage: crate::sync::UnsafeCell::new(Stage::Running(future)),
            join_waker: crate::sync::UnsafeCell::new(None),
        })
    }
}
