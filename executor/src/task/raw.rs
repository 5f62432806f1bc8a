//! `RawTask`: an untyped pointer to a task, and the vtable that reaches its
//! typed code.

use super::core::{Cell, Header, TaskMeta};
use super::harness;
use super::Schedule;
use std::future::Future;
use std::ptr::NonNull;
use std::task::Waker;

/// The typed operations of one `Cell<F, S>`, monomorphized per task type.
pub(crate) struct Vtable {
    /// Consumes a `Notified` reference: poll, cancel, or drop it. True if
    /// the task woke itself while polled: the caller holds a new `Notified`
    /// reference.
    pub(crate) poll: unsafe fn(NonNull<Header>) -> bool,
    /// Consumes a reference made for submission and queues the task.
    pub(crate) schedule: unsafe fn(NonNull<Header>),
    /// Frees the cell; called by the holder of the last reference.
    pub(crate) dealloc: unsafe fn(NonNull<Header>),
    /// Writes `Poll<Result<F::Output, JoinError>>` to the pointer if the
    /// output is ready, else registers the waker.
    pub(crate) try_read_output: unsafe fn(NonNull<Header>, *mut (), &Waker),
    /// Consumes the join handle's reference.
    pub(crate) drop_join_handle: unsafe fn(NonNull<Header>),
    /// Consumes a reference (the registry's): cancel the task at shutdown.
    pub(crate) shutdown: unsafe fn(NonNull<Header>),
    /// The task was cancelled and no worker was asked to run it (it runs,
    /// or sits in a queue, or waits somewhere only its scheduler knows):
    /// tells the scheduler. The caller owns a reference.
    pub(crate) cancelled_unqueued: unsafe fn(NonNull<Header>),
    /// The task was found lost: tells the scheduler (count, log). The
    /// caller owns a reference.
    pub(crate) report_lost: unsafe fn(NonNull<Header>),
    /// Where the scheduler sits in the cell, from its start (the header).
    pub(crate) scheduler_offset: usize,
}

fn vtable<F, S>() -> &'static Vtable
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
    S: Schedule,
{
    &Vtable {
        poll: harness::poll::<F, S>,
        schedule: harness::schedule::<F, S>,
        dealloc: harness::dealloc::<F, S>,
        try_read_output: harness::try_read_output::<F, S>,
        drop_join_handle: harness::drop_join_handle::<F, S>,
        shutdown: harness::shutdown::<F, S>,
        cancelled_unqueued: harness::cancelled_unqueued::<F, S>,
        report_lost: harness::report_lost::<F, S>,
        scheduler_offset: std::mem::offset_of!(Cell<F, S>, scheduler),
    }
}

/// An untyped pointer to a task. Copying it makes no reference: whoever uses
/// it must own one (see `task` module docs).
#[derive(Clone, Copy)]
pub(crate) struct RawTask {
    ptr: NonNull<Header>,
}

impl RawTask {
    pub(crate) fn new<F, S>(future: F, scheduler: S, meta: TaskMeta) -> RawTask
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
        S: Schedule,
    {
        let cell = Cell::new(future, scheduler, meta, vtable::<F, S>());
        let ptr = NonNull::from(Box::leak(cell)).cast::<Header>();
        RawTask { ptr }
    }

    pub(crate) fn from_raw(ptr: NonNull<Header>) -> RawTask {
        RawTask { ptr }
    }

    pub(crate) fn header_ptr(&self) -> NonNull<Header> {
        self.ptr
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY: the holder of this RawTask owns a reference, so the cell is
        // alive; the header is only read through shared references (its
        // mutable parts are atomics or behind the registry lock).
        unsafe { self.ptr.as_ref() }
    }

    /// True if the task woke itself: the caller then holds a `Notified`
    /// reference to it.
    pub(crate) fn poll(self) -> bool {
        // SAFETY: the caller gives up its Notified reference to the vtable.
        unsafe { (self.header().vtable.poll)(self.ptr) }
    }

    pub(crate) fn schedule(self) {
        // SAFETY: the caller owns a reference made for submission.
        unsafe { (self.header().vtable.schedule)(self.ptr) }
    }

    pub(crate) fn dealloc(self) {
        // SAFETY: the caller dropped the last reference; nobody else holds
        // the pointer.
        unsafe { (self.header().vtable.dealloc)(self.ptr) }
    }

    /// # Safety
    ///
    /// `dst` must point to a `Poll<Result<T, JoinError>>` where `T` is the
    /// task's output type, and the caller must own the join handle.
    pub(crate) unsafe fn try_read_output(self, dst: *mut (), waker: &Waker) {
        // SAFETY: forwarded from the caller.
        unsafe { (self.header().vtable.try_read_output)(self.ptr, dst, waker) }
    }

    pub(crate) fn drop_join_handle(self) {
        // SAFETY: called once, by the join handle, which gives up its
        // reference.
        unsafe { (self.header().vtable.drop_join_handle)(self.ptr) }
    }

    pub(crate) fn shutdown(self) {
        // SAFETY: the caller gives up its (registry) reference.
        unsafe { (self.header().vtable.shutdown)(self.ptr) }
    }

    /// Cancels the task for `why` (one of `core::reason`'s, unless a reason
    /// was given first), and makes sure someone drops its future: a worker, if
    /// it sleeps (queued here) or runs or is queued already; else its
    /// scheduler, which may hold it where no worker looks (an admission wait
    /// list). The caller owns a reference (join handle, waker, registry).
    pub(crate) fn cancel(self, why: u8) {
        let header = self.header();
        header.set_cancel_reason(why);
        if header.state.transition_to_notified_and_cancel() {
            // The transition made a reference for this submission.
            self.schedule();
        } else {
            // SAFETY: the caller owns a reference.
            unsafe { (header.vtable.cancelled_unqueued)(self.ptr) }
        }
    }

    /// The task was found lost (by the transition that set `LOST`): tells
    /// its scheduler. The caller owns a reference.
    pub(crate) fn report_lost(self) {
        // SAFETY: the caller owns a reference.
        unsafe { (self.header().vtable.report_lost)(self.ptr) }
    }

    /// `JoinHandle::abort`.
    pub(crate) fn remote_abort(self) {
        self.cancel(super::core::reason::CANCELLED);
    }
}
