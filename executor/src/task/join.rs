//! `JoinHandle`: the owned permission to await a task's output.

use super::{AbortHandle, Id, JoinError, RawTask};
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

/// An owned permission to wait for a task's output, as tokio's.
///
/// Awaiting it gives `Ok(output)`, or a [`JoinError`] if the task panicked or
/// was cancelled. Dropping it *detaches* the task: it keeps running and its
/// output is dropped when it finishes. [`abort`](Self::abort) cancels it.
///
/// # Examples
///
/// ```
/// let rt = bulwark::Runtime::new().unwrap();
/// let answer = rt.block_on(async {
///     bulwark::spawn(async { 6 * 7 }).await.unwrap()
/// });
/// assert_eq!(answer, 42);
/// ```
pub struct JoinHandle<T> {
    inner: Inner,
    _output: PhantomData<T>,
}

enum Inner {
    /// A task: the handle owns one of its references.
    Task(RawTask),
    /// Admission refused the spawn before a task was made: the future was
    /// dropped at once and nothing is allocated; awaiting the handle gives
    /// the rejection. `shedding`: refused by adaptive shedding, not the
    /// ceiling.
    Rejected { id: Id, shedding: bool },
}

// SAFETY: the handle only moves `T` out (when the task is complete), so it may
// be sent wherever `T` may.
unsafe impl<T: Send> Send for JoinHandle<T> {}
// SAFETY: `&JoinHandle` gives access to nothing but the atomic state word
// (`is_finished`, `id`, `abort`) or plain copied data, never to `T`.
unsafe impl<T: Send> Sync for JoinHandle<T> {}

impl<T> Unpin for JoinHandle<T> {}

impl<T> JoinHandle<T> {
    pub(crate) fn new(raw: RawTask) -> JoinHandle<T> {
        JoinHandle {
            inner: Inner::Task(raw),
            _output: PhantomData,
        }
    }

    /// The handle of a spawn that admission refused before making a task:
    /// it resolves at once to a rejected `JoinError` (which names no task
    /// name: none was kept).
    pub(crate) fn rejected(id: Id, shedding: bool) -> JoinHandle<T> {
        JoinHandle {
            inner: Inner::Rejected { id, shedding },
            _output: PhantomData,
        }
    }

    /// Cancels the task. If it is waiting, its future is dropped by a worker
    /// without another poll; if it is running, when that poll returns. Awaiting
    /// the handle then gives a [`JoinError`] with `is_cancelled()`, unless the
    /// task finished first, in which case its output is kept.
    pub fn abort(&self) {
        if let Inner::Task(raw) = self.inner {
            raw.remote_abort();
        }
    }

    /// True once the task has finished (with an output, a panic or by
    /// cancellation); awaiting the handle then returns at once.
    pub fn is_finished(&self) -> bool {
        match self.inner {
            Inner::Task(raw) => raw.header().state.load().is_complete(),
            Inner::Rejected { .. } => true,
        }
    }

    /// The task's id.
    pub fn id(&self) -> Id {
        match self.inner {
            Inner::Task(raw) => raw.header().id,
            Inner::Rejected { id, .. } => id,
        }
    }

    /// A handle that can cancel the task but not read its output, as
    /// tokio's: for another owner (a `JoinSet` keeps the `JoinHandle`).
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = bulwark::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// let handle = bulwark::spawn(std::future::pending::<()>());
    /// let abort = handle.abort_handle();
    /// assert_eq!(abort.id(), handle.id());
    /// abort.abort();
    /// assert!(handle.await.unwrap_err().is_cancelled());
    /// # });
    /// ```
    pub fn abort_handle(&self) -> AbortHandle {
        match self.inner {
            Inner::Task(raw) => AbortHandle::new(raw),
            Inner::Rejected { id, .. } => AbortHandle::rejected(id),
        }
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let raw = match self.inner {
            Inner::Task(raw) => raw,
            Inner::Rejected { id, shedding } => {
                return Poll::Ready(Err(JoinError::rejected(id, None, shedding)));
            }
        };
        let mut out: Poll<Result<T, JoinError>> = Poll::Pending;
        // SAFETY: `out` has the task's output type (this handle was made for
        // it at spawn) and we are its join handle.
        unsafe {
            raw.try_read_output(
                &mut out as *mut Poll<Result<T, JoinError>> as *mut (),
                cx.waker(),
            )
        };
        out
    }
}

impl<T> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        if let Inner::Task(raw) = self.inner {
            raw.drop_join_handle();
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("id", &self.id())
            .field("finished", &self.is_finished())
            .finish()
    }
}
