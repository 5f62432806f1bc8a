//! The task allocation: header, scheduler, stage, join waker slot.

use super::raw::Vtable;
use super::state::State;
use super::{Id, JoinError};
use std::cell::UnsafeCell;
use std::future::Future;
use std::panic::Location;
use std::task::Waker;

/// What a task is called and where it came from; fixed at spawn.
pub(crate) struct TaskMeta {
    pub(crate) id: Id,
    pub(crate) name: Option<Box<str>>,
    pub(crate) location: &'static Location<'static>,
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
            },
            scheduler,
            stage: UnsafeCell::new(Stage::Running(future)),
            join_waker: UnsafeCell::new(None),
        })
    }
}
