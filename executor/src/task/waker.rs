//! The waker of a task: a counted reference behind a `RawWaker`.

use super::core::Header;
use super::harness::{wake_by_ref, wake_by_val};
use super::RawTask;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::task::{RawWaker, RawWakerVTable, Waker};

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_ref, drop_waker);

fn raw_task(data: *const ()) -> RawTask {
    // SAFETY: every RawWaker with this vtable is made from a non-null header
    // pointer (`waker_ref` and `clone` below).
    RawTask::from_raw(unsafe { NonNull::new_unchecked(data as *mut Header) })
}

/// A waker for the task being polled, borrowing the poller's reference
/// instead of making one. `ManuallyDrop` so it never gives a reference back.
pub(super) fn waker_ref(header: NonNull<Header>) -> ManuallyDrop<Waker> {
    let raw = RawWaker::new(header.as_ptr() as *const (), &VTABLE);
    // SAFETY: the vtable's functions uphold the RawWaker contract: clone
    // makes a reference, wake consumes one, drop releases one.
    ManuallyDrop::new(unsafe { Waker::from_raw(raw) })
}

unsafe fn clone(data: *const ()) -> RawWaker {
    raw_task(data).header().state.ref_inc();
    RawWaker::new(data, &VTABLE)
}

unsafe fn wake(data: *const ()) {
    wake_by_val(raw_task(data));
}

unsafe fn wake_ref(data: *const ()) {
    wake_by_ref(raw_task(data));
}

unsafe fn drop_waker(data: *const ()) {
    let raw = raw_task(data);
    if raw.header().state.ref_dec() {
        raw.dealloc();
    }
}
