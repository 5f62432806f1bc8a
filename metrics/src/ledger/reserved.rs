//! The reserved slot: one permit per thread, taken by a listener's `accept`
//! for the `spawn` that follows it, so that a connection once accepted
//! always gets its task.
//!
//! A server's accept loop reads `accept`, then `spawn(serve(stream))`. If
//! the spawn could be refused (the runtime at its task ceiling), the
//! connection would be closed unserved. So `accept` takes a permit of the
//! kind [`TASK`](super::TASK) *before* it takes a connection (and leaves
//! the connection in the kernel's backlog when it gets none), and stashes it
//! here with [`reserve_for_spawn`], tagged with the task that accepted. The
//! executor's spawn path asks [`take_reserved`] first: the next spawn of the
//! same task on the same thread is admitted with that permit. The io layer
//! puts and the executor takes; the slot lives here, in the lowest layer, so
//! that neither needs the other.
//!
//! # Who gives an unused reservation back
//!
//! A reservation nobody spawns with (the accept loop handled the connection
//! inline, or passed it on) must not hold its permit for long. It is
//! released, whichever comes first:
//!
//! - by the next reservation on this thread (the next `accept` replaces it);
//! - by the next spawn on this thread from a *different* task (or from no
//!   task), which finds it and releases it before it decides;
//! - by [`release_reserved`], which a worker calls before it parks (an idle
//!   worker holds no reservation);
//! - when the thread exits.
//!
//! Nothing is done at the end of each poll, so polling costs nothing more.
//! The price: a thread that stays busy, with neither an `accept` nor a spawn
//! from another task, keeps a stale reservation of at most one permit, as
//! does a `block_on` thread that accepted and did not spawn. At most one
//! permit per thread is ever held this way.

use super::{Kind, Permit};
use std::cell::RefCell;

/// A permit reserved by `accept`, and the task that reserved it.
struct Reserved {
    permit: Permit,
    /// The id of the task polled when the permit was reserved; `None`
    /// outside a task (`block_on`'s own future).
    task: Option<u64>,
}

thread_local! {
    static RESERVED: RefCell<Option<Reserved>> = const { RefCell::new(None) };
}

/// Stashes `permit` on this thread for the next spawn of `task` (the id of
/// the task being polled, `None` outside a task). A reservation already
/// there is released.
///
/// # Examples
///
/// ```
/// use bulwark_metrics::ledger::{reserve_for_spawn, take_reserved, Kind};
/// use std::sync::Arc;
///
/// let tasks = Arc::new(Kind::new("task", 2));
/// reserve_for_spawn(tasks.try_acquire_permit().unwrap(), Some(7));
/// // Task 7's next spawn takes it.
/// let permit = take_reserved(&tasks, || Some(7)).expect("reserved for task 7");
/// drop(permit);
/// // Another task's spawn releases it instead.
/// reserve_for_spawn(tasks.try_acquire_permit().unwrap(), Some(7));
/// assert!(take_reserved(&tasks, || Some(8)).is_none());
/// assert_eq!(tasks.live(), 0);
/// ```
pub fn reserve_for_spawn(permit: Permit, task: Option<u64>) {
    let old = RESERVED.try_with(|r| match r.try_borrow_mut() {
        Ok(mut slot) => Ok(slot.replace(Reserved { permit, task })),
        // Only if a permit's release re-entered here (it does not): give
        // the new one back rather than lose it.
        Err(_) => Err(permit),
    });
    // Dropped outside the borrow: a release may hand the permit to a waiter,
    // which runs the waiter's code.
    drop(old);
}

/// Takes the permit reserved on this thread if it is of `kind` and was
/// reserved by the task `task()` says is running now. A reservation of
/// `kind` made by another task was left unused: it is released, and `None`
/// returned. A reservation of another kind (another runtime's) is left as
/// it is. `task` is called only if a reservation of `kind` is there.
#[inline]
pub fn take_reserved(kind: &Kind, task: impl FnOnce() -> Option<u64>) -> Option<Permit> {
    let found = RESERVED
        .try_with(|r| {
            let mut slot = r.try_borrow_mut().ok()?;
            if !std::ptr::eq(slot.as_ref()?.permit.kind(), kind) {
                return None;
            }
            slot.take()
        })
        .ok()
        .flatten()?;
    if found.task == task() {
        Some(found.permit)
    } else {
        // Released here, outside the borrow.
        None
    }
}

/// Releases this thread's reservation, if any (a worker about to park).
pub fn release_reserved() {
    let old = RESERVED
        .try_with(|r| r.try_borrow_mut().ok().and_then(|mut s| s.take()))
        .ok()
        .flatten();
    drop(old);
}

/// Whether this thread holds a reservation now.
pub fn has_reserved() -> bool {
    RESERVED
        .try_with(|r| r.try_borrow().map(|s| s.is_some()).unwrap_or(false))
        .unwrap_or(false)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_same_task_takes_it_another_task_releases_it() {
        let tasks = Arc::new(Kind::new("task", 3));
        reserve_for_spawn(tasks.try_acquire_permit().unwrap(), Some(1));
        assert!(has_reserved());
        assert_eq!(tasks.live(), 1);
        let p = take_reserved(&tasks, || Some(1)).expect("task 1 takes its reservation");
        assert!(!has_reserved());
        assert_eq!(tasks.live(), 1, "taken, not released");
        drop(p);
        assert_eq!(tasks.live(), 0);

        reserve_for_spawn(tasks.try_acquire_permit().unwrap(), Some(1));
        assert!(take_reserved(&tasks, || Some(2)).is_none());
        assert!(!has_reserved());
        assert_eq!(tasks.live(), 0, "another task's spawn released it");

        reserve_for_spawn(tasks.try_acquire_permit().unwrap(), None);
        assert!(take_reserved(&tasks, || Some(2)).is_none());
        assert_eq!(tasks.live(), 0, "outside a task, then in one: released");
        assert_eq!(tasks.over_released(), 0);
    }

    #[test]
    fn a_new_reservation_or_a_park_releases_the_old_one() {
        let tasks = Arc::new(Kind::new("task", 3));
        reserve_for_spawn(tasks.try_acquire_permit().unwrap(), Some(1));
        reserve_for_spawn(tasks.try_acquire_permit().unwrap(), Some(1));
        assert_eq!(tasks.live(), 1, "the second replaced the first");
        release_reserved();
        assert_eq!(tasks.live(), 0);
        assert!(!has_reserved());
        release_reserved();
        assert_eq!(tasks.over_released(), 0);
    }

    #[test]
    fn another_kinds_reservation_is_left_alone() {
        let ours = Arc::new(Kind::new("task", 3));
        let theirs = Arc::new(Kind::new("task", 3));
        reserve_for_spawn(theirs.try_acquire_permit().unwrap(), Some(1));
        let mut asked = false;
        assert!(take_reserved(&ours, || {
            asked = true;
            Some(1)
        })
        .is_none());
        assert!(
            !asked,
            "the task is asked only for a reservation of our kind"
        );
        assert_eq!(theirs.live(), 1, "left for its own runtime");
        release_reserved();
        assert_eq!(theirs.live(), 0);
    }

    #[test]
    fn the_thread_exit_releases_it() {
        let tasks = Arc::new(Kind::new("task", 3));
        let t = tasks.clone();
        std::thread::spawn(move || {
            reserve_for_spawn(t.try_acquire_permit().unwrap(), None);
        })
        .join()
        .unwrap();
        assert_eq!(tasks.live(), 0);
    }
}
