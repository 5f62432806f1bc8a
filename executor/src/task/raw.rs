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
    /// Consumes a `Notified` reference: poll, cancel, or drop it.
    pub(crate) poll: unsafe fn(NonNull<Header>),
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
    /// The task waits for admission and was cancelled: take it out of the
    /// wait list so a worker drops it now. The caller owns a reference.
    pub(crate) unqueue: unsafe fn(NonNull<Header>),
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
        unqueue: harness::unqueue::<F, S>,
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

    pub(crate) fn poll(self) {
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

    /// `JoinHandle::abort`: cancel, and queue the task if it sleeps so a
    /// worker drops its future.
    pub(crate) fn remote_abort(self) {
        if self.header().state.transition_to_notified_and_cancel() {
            // The transition made a reference for this submission.
            self.schedule();
        } else if self
            .header()
            .waiting_admission
            .load(std::sync::atomic::Ordering::Acquire)
        {
            // Its Notified sits in the admission wait list, where no worker
            // looks: fetch it so the task ends now, not when a permit frees.
            // SAFETY: the caller owns a reference (join handle or waker).
            unsafe { (self.header().vtable.unqueue)(self.ptr) }
        }
    }
}
