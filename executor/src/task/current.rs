//! The task being polled on this thread: its id and deadline, read by
//! `task::id()`, `task::deadline()` and the spawn path (a child inherits its
//! parent's deadline).
//!
//! One `thread_local!` with a const initialiser, so reading it costs a TLS
//! load and no lazy-init check.

use super::Id;
use std::cell::Cell;
use std::time::Instant;

thread_local! {
    static CURRENT: Cell<Option<(Id, Option<Instant>)>> = const { Cell::new(None) };
}

/// Sets the task being polled; returns the one before, for the caller to
/// restore when its poll returns (a poll may nest inside another runtime's
/// `block_on`, which restores on unwind too).
pub(crate) fn set(task: Option<(Id, Option<Instant>)>) -> Option<(Id, Option<Instant>)> {
    CURRENT.try_with(|c| c.replace(task)).unwrap_or(None)
}

/// The task being polled on this thread, and its deadline.
pub(crate) fn get() -> Option<(Id, Option<Instant>)> {
    CURRENT.try_with(Cell::get).unwrap_or(None)
}

/// The id of the task being polled.
///
/// # Panics
///
/// Outside a task (as tokio's `task::id`); [`try_id`] returns `None` instead.
///
/// # Examples
///
/// ```
/// # let rt = bulwark_executor::Runtime::new().unwrap();
/// # rt.block_on(async {
/// let handle = bulwark_executor::spawn(async { bulwark_executor::task::id() });
/// let id = handle.id();
/// assert_eq!(handle.await.unwrap(), id);
/// # });
/// ```
#[track_caller]
pub fn id() -> Id {
    try_id().expect("`bulwark::task::id` called outside a task")
}

/// The id of the task being polled, or `None` outside a task.
pub fn try_id() -> Option<Id> {
    get().map(|(id, _)| id)
}

/// The deadline of the task being polled: when it will be dropped if it has
/// not finished. `None` outside a task, or for a task without one.
///
/// Pass the time left on to a remote call (as gRPC propagates deadlines), so
/// the callee gives up when the caller would.
///
/// # Examples
///
/// ```
/// # let rt = bulwark_executor::Runtime::new().unwrap();
/// # rt.block_on(async {
/// use std::time::Duration;
/// let handle = bulwark_executor::spawn::Builder::new()
///     .timeout(Duration::from_secs(5))
///     .spawn(async { bulwark_executor::task::deadline() })
///     .unwrap();
/// assert!(handle.await.unwrap().is_some());
/// # });
/// ```
pub fn deadline() -> Option<Instant> {
    get().and_then(|(_, deadline)| deadline)
}
