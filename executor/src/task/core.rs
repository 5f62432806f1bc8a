//! The task allocation: header, scheduler, stage, join waker slot.

use super::raw::Vtable;
use super::state::State;
use super::{Id, JoinError};
use bulwark_io::driver::TimerKey;
use std::cell::UnsafeCell;
use std::future::Future;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8};
use std::task::Waker;
use std::time::Instant;

/// What a task is called and where it came from; fixed at spawn.
pub(crate) struct TaskMeta {
    pub(crate) id: Id,
    pub(crate) name: Option<Box<str>>,
    pub(crate) location: &'static Location<'static>,
    /// When the task is cancelled if it has not finished.
    pub(crate) deadline: Option<Instant>,
}

/// Why a task was cancelled; kept in the header so the cancelling thread and
/// the one that drops the future agree.
pub(crate) mod reason {
    /// Aborted through its `JoinHandle`, or dropped at shutdown.
    pub(crate) const CANCELLED: u8 = 0;
    /// Its deadline passed.
    pub(crate) const DEADLINE: u8 = 1;
    /// Admission refused it: the runtime is at its task ceiling.
    pub(crate) const REJECTED_CEILING: u8 = 2;
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
    /// Where the task was spawned (`#[track_caller]`), for reports. Read by
    /// the guards that name a task (watchdog, `/tasks`).
    #[allow(dead_code)]
    pub(crate) location: &'static Location<'static>,
    /// The task's deadline, fixed at spawn.
    pub(crate) deadline: Option<Instant>,
    /// The wheel entry of the deadline. Written before the task is
    /// published; taken by the thread that completes it (which holds
    /// `RUNNING`).
    pub(crate) deadline_timer: UnsafeCell<Option<TimerKey>>,
    /// One of [`reason`]'s constants; set before the cancel transition.
    pub(crate) cancel_reason: AtomicU8,
    /// The task holds a permit of the task ceiling, to give back when it ends.
    pub(crate) admitted: AtomicBool,
    /// When the task was last queued by a wake (`admission::now_nanos`), if
    /// adaptive admission samples scheduling delay; 0 otherwise.
    pub(crate) queued_at: AtomicU64,
    /// Not yet polled and not essential, under adaptive admission: may still
    /// be shed at its first dequeue if it waited too long.
    pub(crate) sheddable: AtomicBool,
    /// Waiting in the admission wait list (`Admission::Wait` at the ceiling).
    pub(crate) waiting_admission: AtomicBool,
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
    pub(crate) stage: UnsafeCell<Stage<F>>,
    /// The waker of whoever awaits the `JoinHandle`.
    pub(crate) join_waker: UnsafeCell<Option<Waker>>,
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
                state: State::new(),
                vtable,
                id: meta.id,
                registry_key: UnsafeCell::new(usize::MAX),
                name: meta.name,
                location: meta.location,
                deadline: meta.deadline,
                deadline_timer: UnsafeCell::new(None),
                cancel_reason: AtomicU8::new(reason::CANCELLED),
                admitted: AtomicBool::new(false),
                queued_at: AtomicU64::new(0),
                sheddable: AtomicBool::new(false),
                waiting_admission: AtomicBool::new(false),
            },
            scheduler,
            stage: UnsafeCell::new(Stage::Running(future)),
            join_waker: UnsafeCell::new(None),
        })
    }
}
