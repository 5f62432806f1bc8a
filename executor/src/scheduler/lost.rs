//! Tasks that can never finish: the lost-task policy and its report, and
//! the idle report (tasks not woken for long).
//!
//! A task is *lost* when it is pending, not scheduled, not running, and no
//! `Waker` for it exists any more. The task's state word counts its live
//! wakers and finds the loss itself, exactly once (see `task/state.rs`);
//! this module is what the runtime does then: count it, log it, list it,
//! and (the policy being [`LostTask::Cancel`]) the task module cancels it.
//!
//! A task that waits a long time without being lost (a hung dependency, a
//! deadlock: someone holds its waker and never wakes it) is not something
//! the runtime can prove; the idle report lists tasks idle past a threshold
//! with their idle age, for a person to judge. Off by default: then no
//! clock is read for it, and a listing costs nothing.
//!
//! Part of `scheduler`: it reads the registry and the runtime's counters.

use super::{task_info, Sched, Shared};
use crate::task::Task;
use bulwark_metrics::{SharedCounters, TaskInfo, TaskState};
use std::time::Duration;

/// What the runtime does with a *lost* task: one that is waiting (its last
/// poll returned `Pending`) while every `Waker` for it has been dropped, so
/// that nothing can ever wake it again. Set with
/// `runtime::Builder::on_lost_task`.
///
/// Under both policies a lost task is found at the moment its last waker is
/// dropped (or its poll ends keeping none), counted in
/// `Snapshot::tasks_lost`, and reported once as a `tracing` warning (target
/// `bulwark::lost_task`) with its id, name and spawn site. Neither a
/// deadline timer nor the runtime's own list of tasks counts as a waker.
///
/// # Examples
///
/// ```
/// use bulwark::runtime::{LostTask, Runtime};
///
/// let rt = Runtime::builder().on_lost_task(LostTask::Cancel).build().unwrap();
/// let lost = rt.spawn(std::future::pending::<()>());
/// let err = rt.block_on(lost).unwrap_err();
/// assert!(err.is_lost());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum LostTask {
    /// Report the task (count, log, list it in `Handle::lost_tasks` and as
    /// `TaskState::Lost`) and leave it be: it holds what it holds until it
    /// is aborted, passes its deadline, or the runtime shuts down. The
    /// default, since the program might yet drop the task's `JoinHandle`
    /// knowingly (a `pending()` future parked on purpose).
    #[default]
    Report,
    /// Report the task, and cancel it: its future is dropped (so what it
    /// holds is released) and its `JoinHandle` resolves to a `JoinError`
    /// with `is_lost()`. Counted in `Snapshot::tasks_lost_cancelled`.
    Cancel,
}

/// The report of a task found lost: counted, and logged unless the runtime
/// is shutting down (then it is the runtime itself that drops the futures
/// holding other tasks' wakers, and the log would blame the program).
pub(crate) fn report(shared: &Shared, task: &Task<Sched>) {
    SharedCounters::bump(&shared.counters.lost);
    if shared.is_shutdown() {
        return;
    }
    let header = task.header();
    tracing::warn!(
        target: "bulwark::lost_task",
        task_id = header.id.as_u64(),
        task_name = header.name.as_deref(),
        spawned_at = %header.location,
        cancelled = shared.lost_task == LostTask::Cancel,
        "a task can never be woken again: its last waker was dropped while it waited",
    );
}

/// The live tasks found lost and not cancelled (`LostTask::Report`).
pub(crate) fn lost_tasks(shared: &Shared) -> Vec<TaskInfo> {
    let mut out = Vec::new();
    shared.registry.for_each(|task| {
        let state = task.header().state.load();
        // What `task_info` calls `Lost`, read first from the word alone so
        // that only the few lost tasks are described.
        if state.is_lost() && !state.is_cancelled() && !state.is_complete() {
            let info = task_info(task);
            if info.state == TaskState::Lost {
                out.push(info);
            }
        }
    });
    out
}

/// The tasks idle (or lost) for longer than the idle report's threshold,
/// longest first; empty, without a look at any task, while the report is
/// off.
pub(crate) fn idle_tasks(shared: &Shared) -> Vec<TaskInfo> {
    let Some(threshold) = shared.idle_report else {
        return Vec::new();
    };
    let mut out = Vec::new();
    shared.registry.for_each(|task| {
        let header = task.header();
        let state = header.state.load();
        // A finished task stays in the registry for a moment after its
        // handle resolves (until its last reference goes): not idle.
        if state.is_running() || state.is_notified() || state.is_cancelled() || state.is_complete()
        {
            return;
        }
        let since = header.idle_since.load(std::sync::atomic::Ordering::Relaxed);
        if since == 0 || crate::clock::since(since) <= threshold {
            return;
        }
        let info = task_info(task);
        if info.idle_for.is_some_and(|d| d > threshold) {
            out.push(info);
        }
    });
    out.sort_by_key(|t| std::cmp::Reverse(t.idle_for));
    out
}

/// How long the task has been idle, if the idle report is on and the task
/// is idle or lost (`state`, as `task_info` read it).
pub(crate) fn idle_for(shared: &Shared, task: &Task<Sched>, state: TaskState) -> Option<Duration> {
    shared.idle_report?;
    if !matches!(state, TaskState::Idle | TaskState::Lost) {
        return None;
    }
    match task
        .header()
        .idle_since
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        0 => None,
        since => Some(crate::clock::since(since)),
    }
}
