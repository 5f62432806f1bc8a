//! The waker of a task: a counted reference behind a `RawWaker`.

use super::core::Header;
use super::harness::{fire_deadline, wake_by_ref, wake_by_val};
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

/// The waker the driver's wheel holds for a task's deadline: waking it
/// cancels the task as deadline-exceeded. It holds a reference, like any
/// waker, which the wheel drops when the entry is removed.
static DEADLINE_VTABLE: RawWakerVTable =
    RawWakerVTable::new(deadline_clone, deadline_wake, deadline_wake_ref, drop_waker);

/// A deadline waker for the task at `header`. The caller must own a
/// reference; the waker makes its own.
pub(crate) fn deadline_waker(header: NonNull<Header>) -> Waker {
    let raw = RawTask::from_raw(header);
    raw.header().state.ref_inc();
    let raw_waker = RawWaker::new(header.as_ptr() as *const (), &DEADLINE_VTABLE);
    // SAFETY: the vtable upholds the RawWaker contract as `VTABLE` does; the
    // reference made above is released by `drop_waker` or `deadline_wake`.
    unsafe { Waker::from_raw(raw_waker) }
}

unsafe fn deadline_clone(data: *const ()) -> RawWaker {
    raw_task(data).header().state.ref_inc();
    RawWaker::new(data, &DEADLINE_VTABLE)
}

unsafe fn deadline_wake(data: *const ()) {
    fire_deadline(raw_task(data));
    // SAFETY: waking by value consumes the waker's reference.
    unsafe { drop_waker(data) };
}

unsafe fn deadline_wake_ref(data: *const ()) {
    fire_deadline(raw_task(data));
}
