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
    crate::context::current_task()
}
