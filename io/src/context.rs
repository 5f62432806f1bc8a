//! The driver this thread uses: set by the executor when a thread enters a
//! runtime (worker, `block_on`, `enter`), read by sockets and timers when
//! they are made.

use crate::driver::Handle;
use std::cell::RefCell;

thread_local! {
    static CURRENT: RefCell<Option<Handle>> = const { RefCell::new(None) };
}

/// Makes `handle` this thread's driver until the guard drops.
pub fn enter(handle: Handle) -> EnterGuard {
    let prev = CURRENT.with(|c| c.replace(Some(handle)));
    EnterGuard { prev }
}

/// Restores the previous driver when dropped.
#[derive(Debug)]
pub struct EnterGuard {
    prev: Option<Handle>,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        let prev = self.prev.take();
        let _ = CURRENT.try_with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                *c = prev;
            }
        });
    }
}

/// This thread's driver, if it is in a runtime.
pub(crate) fn current() -> Option<Handle> {
    CURRENT
        .try_with(|c| c.try_borrow().ok().and_then(|h| h.clone()))
        .ok()
        .flatten()
}

pub(crate) const NO_RUNTIME: &str = "there is no bulwark runtime on this thread: sockets and \
                                     timers must be made from a task, inside `Runtime::block_on`, \
                                     or while a `Runtime::enter` guard lives";

/// This thread's driver, or the error an IO constructor returns without one.
pub(crate) fn current_or_err() -> std::io::Result<Handle> {
    current().ok_or_else(|| std::io::Error::other(NO_RUNTIME))
}
