//! The id of the task running on this thread.

use super::Id;

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
    crate::context::current_task().map(|(id, _)| id)
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
/// let handle = bulwark_executor::task::Builder::new()
///     .timeout(Duration::from_secs(5))
///     .spawn(async { bulwark_executor::task::deadline() })
///     .unwrap();
/// assert!(handle.await.unwrap().is_some());
/// # });
/// ```
pub fn deadline() -> Option<std::time::Instant> {
    crate::context::current_task().and_then(|(_, deadline)| deadline)
}
