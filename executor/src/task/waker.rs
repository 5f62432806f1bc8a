//! The waker of a task: a counted reference behind a `RawWaker`, which also
//! counts as a live waker (see `state`'s "Lost tasks"), and the deadline
//! timer's waker, which is a reference but not a waker.

use super::core::Header;
use super::harness::{fire_deadline, wake_by_ref, wake_by_val};
use super::state::WakerDropped;
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
/// It is not a live waker either: a future that keeps nothing of it (no
/// clone) leaves the task with no way to be woken.
pub(super) fn waker_ref(header: NonNull<Header>) -> ManuallyDrop<Waker> {
    let raw = RawWaker::new(header.as_ptr() as *const (), &VTABLE);
    // SAFETY: the vtable's functions uphold the RawWaker contract: clone
    // makes a reference, wake consumes one, drop releases one.
    ManuallyDrop::new(unsafe { Waker::from_raw(raw) })
}

unsafe fn clone(data: *const ()) -> RawWaker {
    // A reference and a live waker, in one RMW.
    raw_task(data).header().state.waker_inc();
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
    match raw.header().state.transition_to_waker_dropped() {
        WakerDropped::Done => {}
        WakerDropped::Dealloc => raw.dealloc(),
        WakerDropped::Lost => {
            // The waker's reference was kept for this report.
            raw.report_lost();
            if raw.header().state.ref_dec() {
                raw.dealloc();
            }
        }
        WakerDropped::LostCancelled => {
            // Report while the reference is ours: once submitted, a worker
            // may finish and free the task.
            raw.report_lost();
            raw.schedule();
        }
    }
}

/// The waker the driver's wheel holds for a task's deadline: waking it
/// cancels the task as deadline-exceeded. It holds a reference, which the
/// wheel drops when the entry is removed, but it is not a live waker: a timer
/// that cancels the task never wakes it to make progress, so a task whose
/// only waker is its deadline is lost.
static DEADLINE_VTABLE: RawWakerVTable = RawWakerVTable::new(
    deadline_clone,
    deadline_wake,
    deadline_wake_ref,
    deadline_drop,
);

/// A deadline waker for the task at `header`. The caller must own a
/// reference; the waker makes its own.
pub(crate) fn deadline_waker(header: NonNull<Header>) -> Waker {
    let raw = RawTask::from_raw(header);
    raw.header().state.ref_inc();
    let raw_waker = RawWaker::new(header.as_ptr() as *const (), &DEADLINE_VTABLE);
    // SAFETY: the vtable upholds the RawWaker contract as `VTABLE` does; the
    // reference made above is released by `deadline_drop` or `deadline_wake`.
    unsafe { Waker::from_raw(raw_waker) }
}

unsafe fn deadline_clone(data: *const ()) -> RawWaker {
    raw_task(data).header().state.ref_inc();
    RawWaker::new(data, &DEADLINE_VTABLE)
}

unsafe fn deadline_wake(data: *const ()) {
    fire_deadline(raw_task(data));
    // SAFETY: waking by value consumes the waker's reference.
    unsafe { deadline_drop(data) };
}

unsafe fn deadline_wake_ref(data: *const ()) {
    fire_deadline(raw_task(data));
}

unsafe fn deadline_drop(data: *const ()) {
    let raw = raw_task(data);
    if raw.header().state.ref_dec() {
        raw.dealloc();
    }
}
