//! Tasks: one allocation per spawned future, driven by a state word, and the
//! task types users hold (`JoinHandle`, `AbortHandle`, `JoinError`, `Id`, `yield_now`,
//! `id`, `deadline`).
//!
//! This module is the bottom of the executor: it imports nothing from the
//! scheduler, admission, the blocking pool or the runtime. What a task needs
//! from whoever runs it is the `Schedule` trait; each task carries its own
//! scheduler value (`S`), which the scheduler reads back through
//! `Task::scheduler`. The spawning API lives above, in `crate::spawn`.
//!
//! # Layout
//!
//! A task is a `core::Cell`: a header (state word, vtable, id, name, spawn
//! site, registry key), then the scheduler handle and the *stage* (the future
//! while it runs, its output once done), then the join waker slot. Everything
//! that is not generic lives in the header, so wakers, join handles and
//! queues hold a plain pointer to it and reach the generic code through the
//! vtable.
//!
//! # State
//!
//! See `state`: flag bits `RUNNING`, `COMPLETE`, `NOTIFIED`,
//! `JOIN_INTEREST`, `JOIN_WAKER`, `CANCELLED`, `LOST`, `CANCEL_IF_LOST`, a
//! count of live wakers and a reference count. A task starts with three
//! references: the registry's (the runtime's list of live tasks, so shutdown
//! can reach idle tasks), the first `Notified`'s, and the `JoinHandle`'s.
//! Each waker holds one more, and counts as a live waker; the deadline
//! timer's waker holds a reference but is not a live waker.
//!
//! # Lost tasks
//!
//! A task left idle with no live waker can never be woken: it is *lost*.
//! The state word sees it exactly once (the last waker's drop, or the end
//! of a poll that kept no waker), and the task's scheduler hears of it
//! through `Schedule::on_lost`. Under the runtime's cancel policy the same
//! transition cancels the task; it then ends as `Finish::Lost` and its
//! `JoinHandle` resolves to a `JoinError` with `is_lost()`.
//!
//! # Who touches what
//!
//! - The stage: only the thread that set `RUNNING` (to poll or to cancel);
//!   after `COMPLETE`, the `JoinHandle` (to take the output) or, if the handle
//!   is gone, whoever observes both `COMPLETE` and no `JOIN_INTEREST` first.
//! - The join waker slot: the `JoinHandle` writes it only while `JOIN_WAKER`
//!   is clear and the task is not complete; the runtime only reads it (to
//!   wake) while `JOIN_WAKER` is set. It is dropped with the cell.
//! - The registry key: only under the registry shard's lock.
//! - The scheduler value: read-only after spawn (its own fields are atomics).
//!
//! # Safety
//!
//! The raw pointers handed around (`RawTask`) are valid while their holder
//! owns a reference; the last reference frees the cell. `RawTask` is a safe
//! type whose methods rely on that rule; the code that dereferences the
//! pointer (the vtable entries in `harness`, `RawTask::header`) says in its
//! `// SAFETY:` comment which reference it relies on.

mod abort;
mod core;
mod current;
mod error;
mod harness;
mod id;
mod join;
pub(crate) mod list;
mod raw;
mod state;
mod waker;
mod yield_now;

pub use abort::AbortHandle;
pub(crate) use current::mark_blocking_thread;
pub use current::{deadline, holder_id, id, lift_deadline, try_id};
pub(crate) use current::{deadline_std, enter_scope, restore_scope};
pub use error::JoinError;
pub use id::Id;
pub use join::JoinHandle;
pub use yield_now::yield_now;

pub(crate) use self::core::{reason, TaskMeta};
pub(crate) use raw::RawTask;
pub(crate) use waker::deadline_waker;

use std::future::Future;
use std::marker::PhantomData;
use std::ptr::NonNull;

/// What a task needs from whoever runs it.
pub(crate) trait Schedule: Send + Sync + Sized + 'static {
    /// The task was woken and must be queued to run.
    ///
    /// No `&self`: the scheduler value lives in the task's cell, and once
    /// the task is queued another thread may run it to its end and free that
    /// cell while this call is still going. An implementation reads what it
    /// needs through `task.scheduler()` before it queues the task.
    fn schedule(task: Notified<Self>);

    /// The task woke itself during its own poll (as `yield_now` does): queue
    /// it behind the work already waiting. No `&self`, as for `schedule`.
    fn yield_now(task: Notified<Self>);

    /// The task finished; take it out of the registry. Returns the registry's
    /// reference if it was still there.
    fn release(&self, task: &Task<Self>) -> Option<Task<Self>>;

    /// The task ended (`how`): count it, and give back whatever the
    /// scheduler holds for it (a permit of the task ceiling). Runs before the
    /// join handle can see the output.
    /// `spawned_at` is the task's spawn time (`clock` nanoseconds), for its
    /// lifetime.
    fn on_finish(&self, how: Finish, spawned_at: u64);

    /// The clock the task's deadline is on (the driver's: virtual while a
    /// test has paused it).
    fn deadline_now(&self) -> std::time::Instant {
        std::time::Instant::now()
    }

    /// Set the task's deadline timer: `waker` (which cancels the task) is
    /// woken at `deadline`, at once if it is past.
    fn set_timer(
        &self,
        deadline: std::time::Instant,
        waker: std::task::Waker,
    ) -> bulwark_io::driver::TimerKey;

    /// Remove the task's deadline timer (it finished first, or it fired).
    fn cancel_timer(&self, key: bulwark_io::driver::TimerKey);

    /// The task was cancelled and no worker was asked to run it: if the
    /// scheduler holds its `Notified` where no worker looks (an admission
    /// wait list), queue it now so its future is dropped at once.
    fn cancelled_unqueued(&self, task: &Task<Self>);

    /// The task was found lost: idle, with no waker left to wake it. Called
    /// once per task, by whichever thread found it (a worker at the end of
    /// a poll, or any thread dropping the last waker), while it holds a
    /// reference. Count and report it; nothing else: under the cancel
    /// policy the task module has already cancelled it (it ends as
    /// [`Finish::Lost`]).
    fn on_lost(&self, task: &Task<Self>);

    /// The time to record as the moment the task goes idle (a poll is about
    /// to return `Pending`), in `clock` nanoseconds, or `None` to record
    /// nothing (the idle report is off). Called once per such poll, on the
    /// thread that polls: it must be cheap.
    fn idle_stamp(&self) -> Option<u64>;
}

/// How a task ended, for the books.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    Completed,
    Panicked,
    Cancelled,
    DeadlineExceeded,
    Rejected,
    /// Cancelled because it was lost (no waker left), under the cancel
    /// policy.
    Lost,
}

/// One counted reference to a task, as held by the registry.
pub(crate) struct Task<S: 'static> {
    raw: RawTask,
    _s: PhantomData<S>,
}

/// A reference to a task that is due to run: what the queues hold. At most
/// one exists per task at a time (the `NOTIFIED` bit).
pub(crate) struct Notified<S: 'static>(Task<S>);

// SAFETY: a task's future and output are `Send` (required at spawn), and all
// shared state in the header is atomic or guarded by the rules above, so the
// reference may move between threads.
unsafe impl<S: Schedule> Send for Task<S> {}
// SAFETY: as above; `&Task` only reads the header.
unsafe impl<S: Schedule> Sync for Task<S> {}

/// Allocates a task for `future`. Returns the registry's reference, the first
/// `Notified`, and the join handle.
pub(crate) fn new_task<F, S>(
    future: F,
    scheduler: S,
    meta: TaskMeta,
) -> (Task<S>, Notified<S>, JoinHandle<F::Output>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    let raw = RawTask::new(future, scheduler, meta);
    let task = Task::from_raw(raw);
    let notified = Notified(Task::from_raw(raw));
    let join = JoinHandle::new(raw);
    (task, notified, join)
}

impl<S: 'static> Task<S> {
    fn from_raw(raw: RawTask) -> Task<S> {
        Task {
            raw,
            _s: PhantomData,
        }
    }

    pub(crate) fn header_ptr(&self) -> NonNull<core::Header> {
        self.raw.header_ptr()
    }

    pub(crate) fn id(&self) -> Id {
        self.raw.header().id
    }

    /// The registry key, written under the registry shard's lock.
    pub(crate) fn registry_key(&self) -> &std::cell::UnsafeCell<usize> {
        &self.raw.header().registry_key
    }

    /// Runtime shutdown: cancels the task unless a worker is running it (that
    /// worker cancels it when its poll returns). Consumes this reference.
    pub(crate) fn shutdown(self) {
        let raw = self.raw;
        std::mem::forget(self);
        raw.shutdown();
    }

    pub(crate) fn header(&self) -> &self::core::Header {
        self.raw.header()
    }

    /// The task's own scheduler value.
    pub(crate) fn scheduler(&self) -> &S {
        let header = self.raw.header();
        // SAFETY: this reference keeps the cell alive. The cell is a
        // `Cell<F, S>` (the vtable was made for it, and `Task<S>` is only
        // made for cells of this `S`), whose `scheduler` field sits at
        // `scheduler_offset` from its start, which is the header pointer
        // (`repr(C)`, header first). The field is never written after
        // `Cell::new`, so a shared reference to it is sound.
        unsafe {
            &*self
                .raw
                .header_ptr()
                .cast::<u8>()
                .as_ptr()
                .add(header.vtable.scheduler_offset)
                .cast::<S>()
        }
    }

    /// Turns this reference into a `Notified`. Only valid for a reference
    /// that was created to be submitted (see `state`).
    fn into_notified(self) -> Notified<S> {
        Notified(self)
    }
}

impl<S: 'static> Drop for Task<S> {
    fn drop(&mut self) {
        if self.raw.header().state.ref_dec() {
            self.raw.dealloc();
        }
    }
}

impl<S: 'static> Notified<S> {
    /// Polls the task (or cancels it, or drops this reference if it was
    /// claimed meanwhile). Consumes the reference. Returns the task again if
    /// it woke itself during the poll (`yield_now`): the caller queues it
    /// with [`Schedule::yield_now`] once its own poll bookkeeping is done.
    #[must_use = "a task that yielded must be queued again"]
    pub(crate) fn run(self) -> Option<Notified<S>> {
        let raw = self.0.raw;
        std::mem::forget(self);
        if raw.poll() {
            Some(Task::from_raw(raw).into_notified())
        } else {
            None
        }
    }

    pub(crate) fn id(&self) -> Id {
        self.0.id()
    }

    /// One more counted reference to the task: it keeps the header readable
    /// after this `Notified` is run (a worker timing the poll adds its time
    /// to the task afterwards).
    pub(crate) fn task_ref(&self) -> Task<S> {
        self.0.raw.header().state.ref_inc();
        Task::from_raw(self.0.raw)
    }

    pub(crate) fn header(&self) -> &self::core::Header {
        self.0.header()
    }

    /// The task's own scheduler value.
    pub(crate) fn scheduler(&self) -> &S {
        self.0.scheduler()
    }

    /// Sheds the task at its first dequeue: it will be dropped unpolled, its
    /// handle rejected (unless it was cancelled for another reason first).
    /// The caller then runs it (which cancels it).
    pub(crate) fn shed_before_first_poll(&self) {
        self.cancel_before_poll(reason::REJECTED_SHEDDING);
    }

    /// The task's deadline passed while it waited in a queue: it will be
    /// dropped unpolled. The caller then runs it (which cancels it).
    pub(crate) fn expire_before_poll(&self) {
        self.cancel_before_poll(reason::DEADLINE);
    }

    fn cancel_before_poll(&self, why: u8) {
        let header = self.0.header();
        header.set_cancel_reason(why);
        // We hold the Notified, so this only sets CANCELLED (no submission).
        let submitted = header.state.transition_to_notified_and_cancel();
        debug_assert!(!submitted);
    }

    /// Cancels a queued task that will never run (its queue is shutting
    /// down). Consumes the reference.
    pub(crate) fn shutdown(self) {
        self.0.shutdown();
    }
}

impl<S: 'static> std::fmt::Debug for Notified<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Notified({})", self.id())
    }
}
