//! What a thread knows about the runtime it is in: the current handle, the
//! worker it is (if any), and the task it is polling.
//!
//! One `thread_local!` with const initialisers, so reading it costs a TLS load
//! and no lazy-init check on the hot path.

use crate::runtime::Handle;
use crate::scheduler::worker::WorkerCx;
use crate::task::Id;
use std::cell::{Cell, RefCell};
use std::time::Instant;

struct Context {
    /// The runtime whose `spawn` a bare `bulwark_executor::spawn` reaches.
    handle: RefCell<Option<Handle>>,
    /// The worker this thread is; null on other threads.
    worker: Cell<*const WorkerCx>,
    /// Inside `block_on` or on a worker: a nested `block_on` would deadlock.
    in_runtime: Cell<bool>,
    /// The task being polled on this thread, and its deadline.
    current_task: Cell<Option<(Id, Option<Instant>)>>,
}

thread_local! {
    static CONTEXT: Context = const {
        Context {
            handle: RefCell::new(None),
            worker: Cell::new(std::ptr::null()),
            in_runtime: Cell::new(false),
            current_task: Cell::new(None),
        }
    };
}

/// Sets the task being polled; returns the one before (polls nest when a
/// task's poll runs `block_on` on another runtime... which panics, but the
/// restore keeps the context right while it unwinds).
pub(crate) fn set_current_task(id: Option<(Id, Option<Instant>)>) -> Option<(Id, Option<Instant>)> {
    CONTEXT
        .try_with(|c| c.current_task.replace(id))
        .unwrap_or(None)
}

/// The task being polled on this thread, and its deadline.
pub(crate) fn current_task() -> Option<(Id, Option<Instant>)> {
    CONTEXT.try_with(|c| c.current_task.get()).unwrap_or(None)
}

/// Runs `f` with the worker this thread is, if it is one.
#[inline]
pub(crate) fn with_worker<R>(f: impl FnOnce(Option<&WorkerCx>) -> R) -> R {
    let ptr = CONTEXT
        .try_with(|c| c.worker.get())
        .unwrap_or(std::ptr::null());
    // SAFETY: the pointer is set by `enter_worker` for the life of the worker
    // loop, which owns the WorkerCx on its stack, and cleared before it goes.
    f(unsafe { ptr.as_ref() })
}

/// The current runtime's handle, if any.
#[inline]
pub(crate) fn current_handle() -> Option<Handle> {
    CONTEXT
        .try_with(|c| {
            // Borrowed only while a guard swaps it; "no runtime" then, not a
            // panic.
            c.handle.try_borrow().ok().and_then(|h| h.clone())
        })
        .ok()
        .flatten()
}

/// Restores the previous handle when dropped.
pub(crate) struct HandleGuard {
    prev: Option<Handle>,
}

/// Makes `handle` current on this thread until the guard drops.
pub(crate) fn set_handle(handle: Handle) -> HandleGuard {
    let prev = CONTEXT.with(|c| c.handle.replace(Some(handle)));
    HandleGuard { prev }
}

impl Drop for HandleGuard {
    fn drop(&mut self) {
        let prev = self.prev.take();
        let _ = CONTEXT.try_with(|c| *c.handle.borrow_mut() = prev);
    }
}

/// Marks the thread as running a runtime (worker or `block_on`) until dropped.
pub(crate) struct RuntimeGuard {
    _handle: HandleGuard,
    _io: bulwark_io::context::EnterGuard,
}

/// Enters a runtime for `block_on` or a worker loop.
///
/// # Panics
///
/// If the thread already runs a runtime: blocking it would stall every task
/// queued behind the caller.
#[track_caller]
pub(crate) fn enter_runtime(handle: &Handle) -> RuntimeGuard {
    let already = CONTEXT.with(|c| c.in_runtime.replace(true));
    if already {
        panic!(
            "Cannot start a runtime from within a runtime. This happens because a function \
             (like `block_on`) attempted to block the current thread while the thread is being \
             used to drive asynchronous tasks; a worker that blocks stalls every task queued \
             behind it. Await the future instead, or run the blocking part with \
             `bulwark::task::spawn_blocking`."
        );
    }
    RuntimeGuard {
        _io: bulwark_io::context::enter(handle.shared.io().clone()),
        _handle: set_handle(handle.clone()),
    }
}

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        let _ = CONTEXT.try_with(|c| c.in_runtime.set(false));
    }
}

/// Marks this thread as worker `cx` until dropped.
pub(crate) struct WorkerGuard;

pub(crate) fn enter_worker(cx: &WorkerCx) -> WorkerGuard {
    CONTEXT.with(|c| c.worker.set(cx));
    WorkerGuard
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        let _ = CONTEXT.try_with(|c| c.worker.set(std::ptr::null()));
    }
}
