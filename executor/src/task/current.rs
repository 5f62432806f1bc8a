//! The task being polled on this thread: its id and deadline, read by
//! `task::id()`, `task::deadline()` and the spawn path (a child inherits its
//! parent's deadline).
//!
//! One `thread_local!` with a const initialiser, so reading it costs a TLS
//! load and no lazy-init check.

use super::core::Header;
use super::Id;
use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

/// The task being polled on this thread.
#[derive(Clone, Copy)]
pub(crate) struct Current {
    id: Id,
    /// The task's own deadline, as it was when this poll began (or lifted
    /// during it).
    deadline: Option<Instant>,
    /// The innermost `scope_deadline` being polled, if any.
    scope: Option<Instant>,
    /// The task's header, for `lift_deadline`: valid while this poll lasts.
    header: NonNull<Header>,
}

impl Current {
    /// A task about to be polled, with its deadline and no scope.
    pub(crate) fn task(id: Id, deadline: Option<Instant>, header: NonNull<Header>) -> Current {
        Current {
            id,
            deadline,
            scope: None,
            header,
        }
    }

    /// The earlier of the task's deadline and its scope's.
    fn effective(&self) -> Option<Instant> {
        match (self.deadline, self.scope) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

thread_local! {
    static CURRENT: Cell<Option<Current>> = const { Cell::new(None) };
}

/// Sets the task being polled; returns the one before, for the caller to
/// restore when its poll returns (a poll may nest inside another runtime's
/// `block_on`, which restores on unwind too).
pub(crate) fn set(task: Option<Current>) -> Option<Current> {
    CURRENT.try_with(|c| c.replace(task)).unwrap_or(None)
}

/// The task being polled on this thread.
fn get() -> Option<Current> {
    CURRENT.try_with(Cell::get).unwrap_or(None)
}

#[cfg_attr(loom, allow(dead_code))]
/// Narrows the current task's scope deadline to `at` (the earlier of the
/// two wins) for the length of a scoped poll; returns the scope before, for
/// [`restore_scope`]. `None` outside a task: then nothing is scoped.
pub(crate) fn enter_scope(at: Instant) -> Option<Option<Instant>> {
    CURRENT
        .try_with(|c| {
            let mut cur = c.get()?;
            let before = cur.scope;
            cur.scope = Some(before.map_or(at, |b| b.min(at)));
            c.set(Some(cur));
            Some(before)
        })
        .unwrap_or(None)
}

#[cfg_attr(loom, allow(dead_code))]
/// Puts back the scope that [`enter_scope`] returned.
pub(crate) fn restore_scope(before: Option<Instant>) {
    let _ = CURRENT.try_with(|c| {
        if let Some(mut cur) = c.get() {
            cur.scope = before;
            c.set(Some(cur));
        }
    });
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
/// # let rt = bulwark::Runtime::new().unwrap();
/// # rt.block_on(async {
/// let handle = bulwark::spawn(async { bulwark::task::id() });
/// let id = handle.id();
/// assert_eq!(handle.await.unwrap(), id);
/// # });
/// ```
#[track_caller]
pub fn id() -> Id {
    try_id().expect("`bulwark::task::id` called outside a task")
}

/// The id of the task being polled, or `None` outside a task.
///
/// # Examples
///
/// ```
/// use bulwark::task;
///
/// assert_eq!(task::try_id(), None);
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     assert_eq!(task::try_id(), None, "`block_on` is not a task");
///     let handle = bulwark::spawn(async { task::try_id() });
///     let id = handle.id();
///     assert_eq!(handle.await.unwrap(), Some(id));
/// });
/// ```
pub fn try_id() -> Option<Id> {
    get().map(|cur| cur.id)
}

thread_local! {
    /// Set on the blocking pool's threads, whose tasks are not listed with
    /// the runtime's live tasks.
    static BLOCKING_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks this thread as one of a blocking pool's.
pub(crate) fn mark_blocking_thread() {
    BLOCKING_THREAD.with(|b| b.set(true));
}

/// The id of the async task being polled on this thread: as [`try_id`],
/// but `None` inside a `spawn_blocking` closure. What a tracked resource
/// (`bulwark::resource`) names as its holder, so that a handle taken by a
/// blocking closure is never mistaken for an orphan.
pub fn holder_id() -> Option<Id> {
    if BLOCKING_THREAD.try_with(|b| b.get()).unwrap_or(false) {
        return None;
    }
    try_id()
}

/// The deadline of the task being polled: when it will be dropped if it has
/// not finished, or, inside a [`scope_deadline`](crate::scope::scope_deadline),
/// the scope's deadline if that is earlier. `None` outside a task, or for a
/// task without one. A task spawned from here inherits this deadline.
///
/// Pass the time left on to a remote call (as gRPC propagates deadlines), so
/// the callee gives up when the caller would.
///
/// # Examples
///
/// ```
/// # let rt = bulwark::Runtime::new().unwrap();
/// # rt.block_on(async {
/// use std::time::Duration;
/// let handle = bulwark::task::Builder::new()
///     .timeout(Duration::from_secs(5))
///     .spawn(async { bulwark::task::deadline() })
///     .unwrap();
/// assert!(handle.await.unwrap().is_some());
/// # });
/// ```
pub fn deadline() -> Option<bulwark_io::time::Instant> {
    deadline_std().map(bulwark_io::time::Instant::from_std)
}

/// [`deadline`] as the executor keeps it: the driver's std instant.
pub(crate) fn deadline_std() -> Option<Instant> {
    get().and_then(|cur| cur.effective())
}

/// Lifts the current task's own deadline (the runtime's
/// `default_deadline`, or one set at its spawn): the task is no longer
/// dropped at it, and tasks it spawns from now on no longer inherit it.
/// Returns the deadline lifted; `None` outside a task or if it had none.
///
/// This is for a task whose life is not one unit of work but many: a
/// connection that serves one request after another should not be closed
/// when its first deadline passes. Give each unit its own deadline with
/// [`scope_deadline`](crate::scope::scope_deadline) instead, as
/// `bulwark::hyper::serve_connection` does for each request. Scope
/// deadlines in force stay in force.
///
/// # Examples
///
/// ```
/// # let rt = bulwark::Runtime::builder()
/// #     .default_deadline(Some(std::time::Duration::from_secs(5)))
/// #     .build()
/// #     .unwrap();
/// # rt.block_on(async {
/// use bulwark::task;
/// let handle = bulwark::spawn(async {
///     assert!(task::deadline().is_some()); // the runtime's default
///     task::lift_deadline();
///     task::deadline()
/// });
/// assert_eq!(handle.await.unwrap(), None);
/// # });
/// ```
pub fn lift_deadline() -> Option<bulwark_io::time::Instant> {
    CURRENT
        .try_with(|c| {
            let mut cur = c.get()?;
            // SAFETY: `header` is the task being polled on this thread (set
            // by its harness for the length of the poll, which is still
            // running since we are inside it). The harness holds RUNNING, so
            // the deadline field is ours to write.
            let lifted = unsafe {
                let header = cur.header.as_ref();
                header.deadline_nanos.store(u64::MAX, Relaxed);
                (*header.deadline.get()).take()
            };
            cur.deadline = None;
            c.set(Some(cur));
            lifted
        })
        .unwrap_or(None)
        .map(bulwark_io::time::Instant::from_std)
}
