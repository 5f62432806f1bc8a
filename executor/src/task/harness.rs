//! The typed half of a task: polling, completing, cancelling, the join
//! handshake. Each function here is reached through the vtable and knows the
//! task's real types.

use super::core::reason;
use super::core::{Cell, Header, Stage};
use super::state::{ToIdle, ToNotified, ToRunning};
use super::waker::waker_ref;
use super::{Finish, JoinError, Notified, RawTask, Schedule, Task};
use std::future::Future;
use std::mem::{self, ManuallyDrop};
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr::NonNull;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll, Waker};

/// A typed view of one task. Holds no reference by itself: each operation
/// says which reference its caller gave up.
struct Harness<F: Future, S: 'static> {
    cell: NonNull<Cell<F, S>>,
}

impl<F: Future, S: 'static> Clone for Harness<F, S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<F: Future, S: 'static> Copy for Harness<F, S> {}

impl<F, S> Harness<F, S>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    fn from_raw(ptr: NonNull<Header>) -> Self {
        Harness { cell: ptr.cast() }
    }

    fn raw(&self) -> RawTask {
        RawTask::from_raw(self.cell.cast())
    }

    fn cell(&self) -> &Cell<F, S> {
        // SAFETY: every entry point is called by a holder of a reference, so
        // the cell is alive for the duration of the call (until `dealloc`).
        unsafe { self.cell.as_ref() }
    }

    fn header(&self) -> &Header {
        &self.cell().header
    }

    /// # Safety
    ///
    /// The caller must have exclusive access to the stage (module docs of
    /// `task`: it set `RUNNING`, or it owns the completed output).
    #[allow(clippy::mut_from_ref)]
    unsafe fn stage(&self) -> &mut Stage<F> {
        // SAFETY: exclusive access is the caller's promise.
        self.cell().stage.with_mut(|stage| unsafe { &mut *stage })
    }

    /// Consumes the `Notified` reference. True if the task woke itself
    /// during its poll (a yield): the caller then holds a new `Notified`
    /// reference to it, to queue with `Schedule::yield_now`.
    fn poll(self) -> bool {
        match self.header().state.transition_to_running() {
            ToRunning::Success => return self.poll_running(),
            ToRunning::Cancelled => {
                let how = self.cancel_task();
                self.complete(how);
            }
            ToRunning::Failed => {}
            ToRunning::Dealloc => self.dealloc(),
        }
        false
    }

    fn poll_running(self) -> bool {
        let header = self.header();
        let waker = waker_ref(self.cell.cast());
        let mut cx = Context::from_waker(&waker);
        // SAFETY: we set RUNNING, so the deadline field is ours to read.
        let deadline = unsafe { *header.deadline.get() };
        let prev = super::current::set(Some(super::current::Current::task(
            header.id,
            deadline,
            self.cell.cast(),
        )));
        // SAFETY: we set RUNNING, so the stage is ours.
        let res = unsafe { poll_future(self.stage(), &mut cx) };
        super::current::set(prev);
        match res {
            Poll::Ready(output) => {
                let how = if output.is_ok() {
                    Finish::Completed
                } else {
                    Finish::Panicked
                };
                let output =
                    output.map_err(|p| JoinError::panic(header.id, header.name.as_deref(), p));
                self.drop_future();
                // SAFETY: still RUNNING: the stage is ours.
                unsafe { *self.stage() = Stage::Finished(output) };
                self.complete(how);
            }
            Poll::Pending => {
                if let Some(now) = self.cell().scheduler.idle_stamp() {
                    // Before the transition, while RUNNING is ours: no other
                    // poll of this task can store a later time first.
                    header.idle_since.store(now, Relaxed);
                }
                match self.arm_deadline_then_idle() {
                    ToIdle::Ok => {}
                    ToIdle::OkNotified => {
                        // The running reference becomes the Notified's, which
                        // the caller queues once the poll is over (a worker:
                        // after taking its seat back, with no CAS for it).
                        // Nothing here reads the cell after handing it over.
                        return true;
                    }
                    ToIdle::OkDealloc => self.dealloc(),
                    ToIdle::Cancelled => {
                        let how = self.cancel_task();
                        self.complete(how);
                    }
                    ToIdle::Lost => {
                        // Idle now; the running reference was kept so the
                        // cell outlives the report.
                        self.report_lost();
                        if self.header().state.ref_dec() {
                            self.dealloc();
                        }
                    }
                    ToIdle::LostCancelled => {
                        // Still RUNNING, with CANCELLED and LOST set.
                        self.report_lost();
                        let how = self.cancel_task();
                        self.complete(how);
                    }
                }
            }
        }
        false
    }

    /// A task with a deadline is about to go idle for the first time: set
    /// its timer now. Tasks that finish without ever waiting (most of them)
    /// never touch the timer wheel; a task that waits is cancelled by the
    /// timer at its deadline. Still RUNNING, so the timer field is ours.
    #[inline]
    fn arm_deadline_once(&self) {
        let header = self.header();
        // SAFETY: we hold RUNNING: the deadline and its timer field are ours
        // (see `Header::deadline_timer`).
        let (deadline, slot) =
            unsafe { (*header.deadline.get(), &mut *header.deadline_timer.get()) };
        let Some(deadline) = deadline else {
            if let Some(key) = slot.take() {
                // The task lifted its deadline after its timer was set.
                self.cell().scheduler.cancel_timer(key);
            }
            return;
        };
        if slot.is_some() {
            return;
        }
        // The poll that ends here may have run past the deadline (a task
        // that blocks its worker), and no timer was there to see it: the
        // clock says. One read per task that waits, not per poll.
        if self.cell().scheduler.deadline_now() >= deadline {
            header.set_cancel_reason(reason::DEADLINE);
            // Still RUNNING: this only marks the task, and the transition to
            // idle that follows drops its future.
            let submitted = header.state.transition_to_notified_and_cancel();
            debug_assert!(!submitted);
            return;
        }
        let waker = super::deadline_waker(self.cell.cast());
        *slot = Some(self.cell().scheduler.set_timer(deadline, waker));
    }

    /// The poll returned `Pending`: set the deadline timer if this is the
    /// task's first wait, then leave `RUNNING`.
    fn arm_deadline_then_idle(&self) -> ToIdle {
        self.arm_deadline_once();
        self.header().state.transition_to_idle()
    }

    /// Drops the future (or whatever the stage holds) where it lies, and
    /// leaves the stage `Consumed`. Returns the payload if a destructor
    /// panicked.
    ///
    /// In place, never moved out first: the future is pinned, and an async
    /// block's state may hold references into itself (a socket's readiness
    /// future borrowing the socket), which a destructor run at another
    /// address would follow to freed memory.
    fn drop_stage_in_place(&self) -> Result<(), Box<dyn std::any::Any + Send>> {
        let stage = self.cell().stage.with_mut(|stage| stage);
        let dropped = panic::catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: the caller holds RUNNING (or owns the completed
            // stage), so nobody else touches the stage; it holds a valid
            // value, dropped here exactly once and overwritten below without
            // another drop.
            unsafe { std::ptr::drop_in_place(stage) }
        }));
        // SAFETY: as above; the old value is gone (dropped, or unwound
        // through), so writing without dropping it is right.
        unsafe { std::ptr::write(stage, Stage::Consumed) };
        dropped
    }

    /// Drops the future. A panic in its destructor is caught and ignored:
    /// the task's result is already decided.
    fn drop_future(&self) {
        let _ = self.drop_stage_in_place();
    }

    /// Drops the future without polling it and stores the error its
    /// cancellation reason calls for (or a panic error, if the future's
    /// destructor panicked). Returns how the task ended.
    fn cancel_task(&self) -> Finish {
        let header = self.header();
        // The caller set (or was granted) RUNNING: the stage is ours.
        let dropped = self.drop_stage_in_place();
        let (id, name) = (header.id, header.name.as_deref());
        // Cancelled for being lost, if LOST is set under the cancel policy
        // (the state word knows; no reason is stored for it, so an abort
        // racing the detection cannot relabel it).
        let lost = header.state.load().is_lost_and_cancelled();
        let (err, how) = match (dropped, header.cancel_reason()) {
            (Err(p), _) => (JoinError::panic(id, name, p), Finish::Panicked),
            (Ok(()), _) if lost => (JoinError::lost(id, name), Finish::Lost),
            (Ok(()), reason::DEADLINE) => (
                JoinError::deadline_exceeded(id, name),
                Finish::DeadlineExceeded,
            ),
            (Ok(()), reason::REJECTED_SHEDDING) => {
                (JoinError::rejected(id, name, true), Finish::Rejected)
            }
            (Ok(()), _) => (JoinError::cancelled(id, name), Finish::Cancelled),
        };
        // SAFETY: as above.
        unsafe { *self.stage() = Stage::Finished(Err(err)) };
        how
    }

    /// The stage holds the output. Publishes it, tells the join handle, takes
    /// the task out of the registry and drops the running reference.
    fn complete(self, how: Finish) {
        let cell = self.cell();
        // SAFETY: we hold RUNNING (or were granted it by shutdown): the
        // deadline timer field is ours.
        if let Some(key) = unsafe { (*cell.header.deadline_timer.get()).take() } {
            cell.scheduler.cancel_timer(key);
        }
        // Counted (and the ceiling permit given back) before COMPLETE is
        // published, so whoever sees the join handle resolve also sees both.
        // Giving a permit back may admit a waiter and wake its waker, which
        // is foreign code: a panic there must not leave this task RUNNING
        // forever, nor unwind through the worker.
        let _ = panic::catch_unwind(AssertUnwindSafe(|| {
            cell.scheduler.on_finish(how, cell.header.spawned_at)
        }));
        let prev = cell.header.state.transition_to_complete();
        let _ = panic::catch_unwind(AssertUnwindSafe(|| {
            if !prev.is_join_interested() {
                // Nobody will read the output: it is ours to drop.
                // SAFETY: COMPLETE is set and the join handle is gone.
                let out = mem::replace(unsafe { self.stage() }, Stage::Consumed);
                drop(out);
            } else if prev.is_join_waker_set() {
                cell.join_waker.with(|slot| {
                    // SAFETY: JOIN_WAKER was set when COMPLETE was, so the
                    // slot holds a waker the join handle no longer writes; we
                    // only read.
                    if let Some(waker) = unsafe { &*slot } {
                        waker.wake_by_ref();
                    }
                });
            }
        }));
        let me = ManuallyDrop::new(Task::<S>::from_raw(self.raw()));
        let mut refs = 1;
        if let Some(registry_ref) = cell.scheduler.release(&me) {
            mem::forget(registry_ref);
            refs += 1;
        }
        if cell.header.state.transition_to_terminal(refs) {
            self.dealloc();
        }
    }

    /// Tells the scheduler the task was found lost. The caller holds a
    /// reference. The scheduler's report is foreign-facing code (a `tracing`
    /// subscriber): a panic in it must not unwind through whoever dropped
    /// the last waker.
    fn report_lost(&self) {
        let me = ManuallyDrop::new(Task::<S>::from_raw(self.raw()));
        let _ = panic::catch_unwind(AssertUnwindSafe(|| self.cell().scheduler.on_lost(&me)));
    }

    fn dealloc(self) {
        // SAFETY: the last reference is gone; the cell was made by Box::new
        // in `Cell::new` and nobody else can reach it.
        let cell = unsafe { Box::from_raw(self.cell.as_ptr()) };
        // The join waker (foreign code) and the output are dropped with the
        // cell: a panicking destructor must not unwind through a worker.
        let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(cell)));
    }

    /// Whether the join handle may take the output now; if not, its waker is
    /// left for the runtime to wake at completion.
    fn can_read_output(&self, waker: &Waker) -> bool {
        let cell = self.cell();
        let state = &cell.header.state;
        let snapshot = state.load();
        if snapshot.is_complete() {
            return true;
        }
        if snapshot.is_join_waker_set() {
            let same = cell.join_waker.with(|slot| {
                // SAFETY: JOIN_WAKER is set: the slot holds a waker and
                // nobody writes it; reading is allowed to both sides.
                unsafe { &*slot }
                    .as_ref()
                    .is_some_and(|w| w.will_wake(waker))
            });
            if same {
                return false;
            }
            // Take the slot back to write the new waker.
            if state.unset_join_waker().is_err() {
                return true;
            }
        }
        cell.join_waker.with_mut(|slot| {
            // SAFETY: JOIN_WAKER is clear and the task is not complete
            // (checked by the transitions above), so only the join handle
            // (us) writes.
            unsafe { *slot = Some(waker.clone()) }
        });
        state.set_join_waker().is_err()
    }
}

/// Polls the future, catching a panic. Ready(Err) carries the payload.
fn poll_future<F: Future>(
    stage: &mut Stage<F>,
    cx: &mut Context<'_>,
) -> Poll<Result<F::Output, Box<dyn std::any::Any + Send>>> {
    let Stage::Running(future) = stage else {
        unreachable!("a task was polled after it finished");
    };
    // SAFETY: the future lives in the heap cell and is never moved: it is
    // dropped in place (`drop_stage_in_place`), never taken out first.
    let future = unsafe { Pin::new_unchecked(future) };
    // Each poll gets a fresh IO budget, so a task whose sockets are always
    // ready still yields now and then.
    match panic::catch_unwind(AssertUnwindSafe(|| {
        bulwark_io::coop::with_budget(|| future.poll(cx))
    })) {
        Ok(Poll::Pending) => Poll::Pending,
        Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
        Err(payload) => Poll::Ready(Err(payload)),
    }
}

// The vtable entries. Each is `unsafe` because it trusts the pointer to be a
// live `Cell<F, S>` and the caller to give up the reference it names; each
// says which in its `# Safety` section.

/// Polls (or cancels) the task.
///
/// # Safety
///
/// `ptr` is a live `Cell<F, S>`; the caller gives up its `Notified`
/// reference. If this returns true, the caller holds a new one (the task
/// woke itself during the poll).
pub(super) unsafe fn poll<F, S>(ptr: NonNull<Header>) -> bool
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    Harness::<F, S>::from_raw(ptr).poll()
}

/// Queues the task on its scheduler.
///
/// # Safety
///
/// `ptr` is a live `Cell<F, S>`; the caller gives up a reference made for
/// this submission, and holds another one until this returns.
pub(super) unsafe fn schedule<F, S>(ptr: NonNull<Header>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    let harness = Harness::<F, S>::from_raw(ptr);
    let task = Task::<S>::from_raw(harness.raw());
    S::schedule(Notified(task));
}

/// Frees the cell.
///
/// # Safety
///
/// `ptr` is a `Cell<F, S>` whose last reference the caller just dropped;
/// nobody else can reach it.
pub(super) unsafe fn dealloc<F, S>(ptr: NonNull<Header>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    Harness::<F, S>::from_raw(ptr).dealloc();
}

/// Writes the output to `dst` if the task is complete, else leaves `waker`.
///
/// # Safety
///
/// `ptr` is a live `Cell<F, S>` whose join handle is the caller, and `dst`
/// points to a `Poll<Result<F::Output, JoinError>>`.
pub(super) unsafe fn try_read_output<F, S>(ptr: NonNull<Header>, dst: *mut (), waker: &Waker)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    let harness = Harness::<F, S>::from_raw(ptr);
    if harness.can_read_output(waker) {
        // SAFETY: COMPLETE is set and the join handle (our caller) still has
        // interest, so the output is the join handle's alone.
        let stage = mem::replace(unsafe { harness.stage() }, Stage::Consumed);
        let Stage::Finished(output) = stage else {
            panic!("JoinHandle polled after it returned its output");
        };
        let dst = dst.cast::<Poll<Result<F::Output, JoinError>>>();
        // SAFETY: the caller passes a pointer to this exact type.
        unsafe { *dst = Poll::Ready(output) };
    }
}

/// The join handle is dropped.
///
/// # Safety
///
/// `ptr` is a live `Cell<F, S>`; the caller is its join handle and gives up
/// its reference.
pub(super) unsafe fn drop_join_handle<F, S>(ptr: NonNull<Header>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    let harness = Harness::<F, S>::from_raw(ptr);
    let prev = harness.header().state.unset_join_interested();
    // If the task completed first, its output is ours to drop. It is moved out
    // before the reference goes, and dropped after, so a panicking destructor
    // cannot leak the cell.
    let output = if prev.is_complete() {
        // SAFETY: COMPLETE was set while we held JOIN_INTEREST: the output
        // belongs to the join handle.
        Some(mem::replace(unsafe { harness.stage() }, Stage::Consumed))
    } else {
        None
    };
    if harness.header().state.ref_dec() {
        harness.dealloc();
    }
    drop(output);
}

/// Cancels the task at shutdown.
///
/// # Safety
///
/// `ptr` is a live `Cell<F, S>`; the caller gives up a reference (the
/// registry's).
pub(super) unsafe fn shutdown<F, S>(ptr: NonNull<Header>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    let harness = Harness::<F, S>::from_raw(ptr);
    if harness.header().state.transition_to_shutdown() {
        // Claimed: our reference serves as the running one.
        let how = harness.cancel_task();
        harness.complete(how);
    } else if harness.header().state.ref_dec() {
        harness.dealloc();
    }
}

/// Tells the scheduler the task was cancelled with no worker asked to run
/// it.
///
/// # Safety
///
/// `ptr` is a live `Cell<F, S>` and the caller owns a reference to it.
pub(super) unsafe fn cancelled_unqueued<F, S>(ptr: NonNull<Header>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    let harness = Harness::<F, S>::from_raw(ptr);
    let task = ManuallyDrop::new(Task::<S>::from_raw(harness.raw()));
    harness.cell().scheduler.cancelled_unqueued(&task);
}

/// Reports the task lost to its scheduler.
///
/// # Safety
///
/// `ptr` is a live `Cell<F, S>` and the caller owns a reference to it.
pub(super) unsafe fn report_lost<F, S>(ptr: NonNull<Header>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    Harness::<F, S>::from_raw(ptr).report_lost();
}

/// A waker woken by value: schedule, drop the reference, or free the task.
pub(super) fn wake_by_val(raw: RawTask) {
    match raw.header().state.transition_to_notified_by_val() {
        // The waker's reference becomes the Notified's.
        ToNotified::Submit => raw.schedule(),
        ToNotified::Dealloc => raw.dealloc(),
        ToNotified::DoNothing => {}
    }
}

/// The task's deadline passed: cancel it as deadline-exceeded (unless it
/// was already cancelled for another reason).
pub(super) fn fire_deadline(raw: RawTask) {
    if raw.header().deadline_nanos.load(Relaxed) == u64::MAX {
        // The task lifted its deadline; this is the timer set before.
        return;
    }
    raw.cancel(reason::DEADLINE);
}

/// A waker woken by reference: schedule with a new reference if needed.
pub(super) fn wake_by_ref(raw: RawTask) {
    match raw.header().state.transition_to_notified_by_ref() {
        ToNotified::Submit => raw.schedule(),
        ToNotified::Dealloc => unreachable!("waking by reference never frees"),
        ToNotified::DoNothing => {}
    }
}
