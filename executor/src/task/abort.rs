//! `AbortHandle`: the right to cancel a task, without its output.

use super::{Id, RawTask};
use std::fmt;

/// Cancels a task without owning its output, as tokio's `AbortHandle`:
/// what `JoinSet::spawn` returns, and
/// what [`JoinHandle::abort_handle`](super::JoinHandle::abort_handle) makes.
///
/// Dropping it does nothing to the task. It keeps the task's allocation
/// (not its future, which is dropped when the task ends) until it is
/// dropped.
///
/// # Examples
///
/// ```
/// # let rt = bulwark::Runtime::new().unwrap();
/// # rt.block_on(async {
/// let handle = bulwark::spawn(std::future::pending::<()>());
/// let abort = handle.abort_handle();
/// abort.abort();
/// assert!(handle.await.unwrap_err().is_cancelled());
/// assert!(abort.is_finished());
/// # });
/// ```
pub struct AbortHandle {
    inner: Inner,
}

enum Inner {
    /// A task: the handle owns one of its references.
    Task(RawTask),
    /// A spawn that admission refused: there is nothing to cancel.
    Rejected(Id),
}

// SAFETY: the handle only reads the task's header and its atomic state word,
// and cancels through the task's scheduler, which is `Send + Sync`; it never
// touches the future or its output.
unsafe impl Send for AbortHandle {}
// SAFETY: as above; every method takes `&self` and is atomic.
unsafe impl Sync for AbortHandle {}

impl AbortHandle {
    /// A handle on the task of `raw`, taking a reference of its own.
    pub(crate) fn new(raw: RawTask) -> AbortHandle {
        raw.header().state.ref_inc();
        AbortHandle {
            inner: Inner::Task(raw),
        }
    }

    /// The handle of a spawn refused before a task was made.
    pub(crate) fn rejected(id: Id) -> AbortHandle {
        AbortHandle {
            inner: Inner::Rejected(id),
        }
    }

    /// Cancels the task, as [`JoinHandle::abort`](super::JoinHandle::abort):
    /// its future is dropped without another poll (when its poll returns,
    /// if it runs now), unless it has finished already.
    pub fn abort(&self) {
        if let Inner::Task(raw) = self.inner {
            raw.remote_abort();
        }
    }

    /// True once the task has finished (with an output, a panic or by
    /// cancellation), and for a spawn that was refused.
    pub fn is_finished(&self) -> bool {
        match self.inner {
            Inner::Task(raw) => raw.header().state.load().is_complete(),
            Inner::Rejected(_) => true,
        }
    }

    /// The task's id.
    pub fn id(&self) -> Id {
        match self.inner {
            Inner::Task(raw) => raw.header().id,
            Inner::Rejected(id) => id,
        }
    }
}

impl Clone for AbortHandle {
    fn clone(&self) -> AbortHandle {
        match self.inner {
            Inner::Task(raw) => AbortHandle::new(raw),
            Inner::Rejected(id) => AbortHandle::rejected(id),
        }
    }
}

impl Drop for AbortHandle {
    fn drop(&mut self) {
        if let Inner::Task(raw) = self.inner {
            // As any counted reference (`Task`'s drop): the last one frees.
            if raw.header().state.ref_dec() {
                raw.dealloc();
            }
        }
    }
}

impl fmt::Debug for AbortHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbortHandle")
            .field("id", &self.id())
            .field("finished", &self.is_finished())
            .finish()
    }
}
