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

/// `f` of this thread's driver, without cloning its handle; `None` outside
/// a runtime.
pub(crate) fn with_current<R>(f: impl FnOnce(&Handle) -> R) -> Option<R> {
    CURRENT
        .try_with(|c| c.try_borrow().ok().and_then(|h| h.as_ref().map(f)))
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

/// The executor's hook for accepted connections (see [`set_accept_hook`]).
static ON_ACCEPT: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Gives the function to call on the thread that accepted a connection,
/// right after a listener's `accept` returns it (the first call wins). The
/// executor marks the task being polled as an acceptor: the tasks it spawns
/// (one per connection) are new work at the door, refused first when the
/// runtime is full, not children of work already admitted.
pub fn set_accept_hook(hook: fn()) {
    let _ = ON_ACCEPT.set(hook);
}

/// A listener accepted a connection on this thread.
pub(crate) fn accepted() {
    if let Some(hook) = ON_ACCEPT.get() {
        hook();
    }
}
