//! What a thread knows about the runtime it is in: the runtime a bare
//! `spawn` reaches, and whether the thread drives one (a worker or
//! `block_on`), so a nested `block_on` is refused.
//!
//! The worker a thread is lives with the scheduler (`scheduler::worker`), the
//! task it polls with the tasks (`task::current`); this module is above both
//! and below the spawn path and the runtime that read it.

use crate::scheduler::Shared;
use std::cell::{Cell, RefCell};
use std::sync::Arc;

struct Context {
    /// The runtime whose `spawn` a bare `bulwark_executor::spawn` reaches.
    shared: RefCell<Option<Arc<Shared>>>,
    /// Inside `block_on` or on a worker: a nested `block_on` would deadlock.
    in_runtime: Cell<bool>,
}

thread_local! {
    static CONTEXT: Context = const {
        Context {
            shared: RefCell::new(None),
            in_runtime: Cell::new(false),
        }
    };
}

/// The current runtime, if any.
#[inline]
pub(crate) fn current() -> Option<Arc<Shared>> {
    CONTEXT
        .try_with(|c| {
            // Borrowed only while a guard swaps it; "no runtime" then, not a
            // panic.
            c.shared.try_borrow().ok().and_then(|h| h.clone())
        })
        .ok()
        .flatten()
}

/// Restores the previous runtime when dropped.
pub(crate) struct SetGuard {
    prev: Option<Arc<Shared>>,
}

/// Makes `shared` current on this thread until the guard drops.
pub(crate) fn set(shared: Arc<Shared>) -> SetGuard {
    let prev = CONTEXT.with(|c| c.shared.replace(Some(shared)));
    SetGuard { prev }
}

impl Drop for SetGuard {
    fn drop(&mut self) {
        let prev = self.prev.take();
        let _ = CONTEXT.try_with(|c| *c.shared.borrow_mut() = prev);
    }
}

/// Marks the thread as running a runtime (worker or `block_on`) until dropped.
pub(crate) struct RuntimeGuard {
    _set: SetGuard,
    _io: bulwark_io::context::EnterGuard,
}

/// Enters a runtime for `block_on` or a worker loop.
///
/// # Panics
///
/// If the thread already runs a runtime: blocking it would stall every task
/// queued behind the caller.
#[track_caller]
pub(crate) fn enter_runtime(shared: &Arc<Shared>) -> RuntimeGuard {
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
        _io: bulwark_io::context::enter(shared.io().clone()),
        _set: set(shared.clone()),
    }
}

/// Makes `shared` current on a blocking-pool thread for one closure (its
/// spawns, `Handle::current`, sockets and timers reach it) without marking
/// the thread as driving it: a `block_on` inside the closure is allowed, as
/// tokio allows `Handle::current().block_on` inside `spawn_blocking`.
pub(crate) fn enter_blocking(shared: Arc<Shared>) -> BlockingGuard {
    BlockingGuard {
        _io: bulwark_io::context::enter(shared.io().clone()),
        _set: set(shared),
    }
}

/// Keeps a runtime current on a blocking-pool thread until dropped.
pub(crate) struct BlockingGuard {
    _set: SetGuard,
    _io: bulwark_io::context::EnterGuard,
}

/// Leaves the runtime this thread drives, for a blocking section
/// (`block_in_place`), until dropped: a `block_on` inside it is allowed (as
/// tokio allows `Handle::current().block_on` inside its `block_in_place`),
/// and the current runtime stays current, for `spawn` and
/// `Handle::current`. Restores what it found, so nested sections and a
/// thread outside any runtime come out as they went in.
pub(crate) struct ExitGuard {
    was_in_runtime: bool,
}

/// Leaves the runtime for a blocking section; see [`ExitGuard`].
pub(crate) fn exit_runtime() -> ExitGuard {
    let was_in_runtime = CONTEXT
        .try_with(|c| c.in_runtime.replace(false))
        .unwrap_or(false);
    ExitGuard { was_in_runtime }
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let was = self.was_in_runtime;
        let _ = CONTEXT.try_with(|c| c.in_runtime.set(was));
    }
}

impl Drop for RuntimeGuard {
    fn drop(&mut self) {
        let _ = CONTEXT.try_with(|c| c.in_runtime.set(false));
    }
}
