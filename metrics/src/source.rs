//! [`Source`]: how a thread that is not a runtime thread (the metrics
//! endpoint's) reads a snapshot and the live tasks from the books alone.
//!
//! The executor implements [`Source`] and hands the books a `Weak` to it
//! ([`Books::set_source`](crate::Books::set_source)); the books never keep
//! the runtime alive, and a read after the runtime is gone finds nothing.

use crate::{LeakReport, Snapshot};
use std::time::Duration;

/// What a live task is doing, as its source last saw it.
///
/// # Examples
///
/// ```
/// use bulwark::metrics::TaskState;
///
/// // The names the metrics endpoint writes, and reads in `/tasks?state=`.
/// assert_eq!(TaskState::Idle.name(), "idle");
/// assert_eq!(TaskState::from_name("waiting_admission"), Some(TaskState::WaitingAdmission));
/// for state in TaskState::ALL {
///     assert_eq!(TaskState::from_name(&state.to_string()), Some(state));
/// }
///
/// // A task looking at itself is in a poll.
/// let rt = bulwark::Runtime::new().unwrap();
/// let state = rt.block_on(rt.spawn(async {
///     let me = bulwark::task::id().as_u64();
///     let tasks = bulwark::runtime::Handle::current().tasks();
///     tasks.into_iter().find(|t| t.id == me).unwrap().state
/// }));
/// assert_eq!(state.unwrap(), TaskState::Running);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskState {
    /// Waiting for a permit of the `task` kind (`Admission::Wait`); not yet
    /// polled.
    WaitingAdmission,
    /// Not scheduled: waiting for a wake (IO, a timer, a channel...). A task
    /// idle for long is what a deadlock or a hung dependency looks like.
    Idle,
    /// Woken and queued, waiting for a worker to poll it.
    Scheduled,
    /// Inside a poll on a worker now.
    Running,
    /// Cancelled (aborted, past its deadline, lost under
    /// `LostTask::Cancel`, or shut down) and not yet dropped: its future is
    /// dropped at its next turn on a worker.
    Cancelling,
    /// Lost: waiting, and every waker for it was dropped, so nothing can
    /// wake it again (`LostTask::Report` keeps it, listed as this, until it
    /// is aborted, passes its deadline, or the runtime shuts down).
    Lost,
}

impl TaskState {
    /// Every state, in the order of the lifecycle.
    pub const ALL: [TaskState; 6] = [
        TaskState::WaitingAdmission,
        TaskState::Idle,
        TaskState::Scheduled,
        TaskState::Running,
        TaskState::Cancelling,
        TaskState::Lost,
    ];

    /// The state's name in snake case (`"waiting_admission"`, `"idle"`...),
    /// as the metrics endpoint writes it and reads it in `/tasks?state=`.
    pub fn name(self) -> &'static str {
        match self {
            TaskState::WaitingAdmission => "waiting_admission",
            TaskState::Idle => "idle",
            TaskState::Scheduled => "scheduled",
            TaskState::Running => "running",
            TaskState::Cancelling => "cancelling",
            TaskState::Lost => "lost",
        }
    }

    /// The state named `name` (as [`name`](Self::name) writes it), if any.
    pub fn from_name(name: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One live task, for `/tasks` and idle reports.
///
/// # Examples
///
/// ```
/// use bulwark::runtime::Handle;
/// use bulwark::time::Duration;
///
/// let rt = bulwark::Runtime::new().unwrap();
/// let info = rt.block_on(async {
///     let handle = bulwark::task::Builder::new()
///         .name("lister")
///         .timeout(Duration::from_secs(60))
///         .spawn(async {
///             let me = bulwark::task::id().as_u64();
///             Handle::current().tasks().into_iter().find(|t| t.id == me).unwrap()
///         })
///         .unwrap();
///     handle.await.unwrap()
/// });
/// assert_eq!(info.name.as_deref(), Some("lister"));
/// assert!(info.location.contains(".rs:"), "file:line:column of the spawn");
/// assert!(info.deadline.unwrap() <= Duration::from_secs(60));
/// assert_eq!(info.resources, 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// The task's id (unique in its runtime, never 0).
    pub id: u64,
    /// The name given at spawn (`task::Builder::name`), if any.
    pub name: Option<String>,
    /// Where it was spawned, `file:line:column`.
    pub location: String,
    /// What it is doing.
    pub state: TaskState,
    /// Time since it was spawned.
    pub age: Duration,
    /// Time since it last went idle (its last poll returned `Pending`), for
    /// a task that is [`Idle`](TaskState::Idle) or [`Lost`](TaskState::Lost)
    /// while the runtime's idle report is on (`Builder::idle_report`);
    /// `None` otherwise. Coarse: it may read long by up to one worker
    /// maintenance tick's polls.
    pub idle_for: Option<Duration>,
    /// Polls run so far.
    pub polls: u64,
    /// Time spent inside its polls so far, estimated as the mean of its
    /// timed polls (the runtime times a sample: see its histograms) times
    /// its polls, and never more than its age; `None` while no poll of it
    /// was timed. One timed poll that was preempted can make it read high.
    pub busy: Option<Duration>,
    /// Time left before its deadline cancels it (zero if past), if it has
    /// one.
    pub deadline: Option<Duration>,
    /// Tracked resource handles (`bulwark::resource`, sockets) it holds.
    pub resources: usize,
}

/// A runtime seen from outside its threads: the executor implements this.
///
/// Both methods are called from a thread that is not a runtime thread
/// (while every worker may be stuck in a poll), so they must not wait for a
/// worker: read atomics and take short locks only.
pub trait Source: Send + Sync {
    /// The runtime's counts now.
    fn snapshot(&self) -> Snapshot;

    /// The live tasks now, in no particular order.
    fn tasks(&self) -> Vec<TaskInfo>;

    /// Tracked handles that are orphans (holder task finished) or held past
    /// their kind's `max_hold`, found by a scan now.
    fn leaks(&self) -> Vec<LeakReport>;
}
