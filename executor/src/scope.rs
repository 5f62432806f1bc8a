//! `scope_deadline`: a deadline for one piece of a task's work (one request
//! of a connection, one step of a job), that the tasks spawned inside it
//! inherit.
//!
//! The scope is a field of the current-task record (`task/current.rs`),
//! narrowed for the length of each poll of the scoped future and put back
//! after, so `task::deadline()` and the spawn path (a child inherits the
//! deadline in force where it is spawned) see it. The deadline itself is a
//! `time::timeout_at` around the scoped future; a scope that runs out is
//! counted in the runtime's books (`Snapshot::scope_deadlines_exceeded`).
//! Module order: after `context` (it finds the runtime's books there).

use crate::context;
use crate::task as current;
use bulwark_io::time::error::Elapsed;
use bulwark_io::time::{timeout_at, Instant, Timeout};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Runs `future` with a deadline at `deadline`, inherited by every task it
/// spawns: its output, or `Err(Elapsed)` once the deadline passes (the
/// future is then dropped with the returned future, as a timeout's is).
///
/// It differs from [`time::timeout_at`](bulwark_io::time::timeout_at) in
/// one way: inheritance. Inside the scope, [`deadline`](crate::task::deadline)
/// returns the scope's deadline (or the task's own, if earlier), and a task
/// spawned there gets it as its deadline, as if spawned by a task with that
/// deadline: it is dropped at the scope's deadline too, unless spawned with
/// `task::Builder::detached_deadline`. A plain timeout bounds only the
/// future it wraps; the children it spawned run on. Scopes nest (the
/// earliest deadline wins) and do not touch the task's own deadline: a
/// scope cannot extend it (see [`lift_deadline`](crate::task::lift_deadline)).
///
/// Outside a task (in `block_on`) it is a plain timeout: there is no task
/// to carry the scope.
///
/// # Panics
///
/// Outside a bulwark runtime, as timers do.
///
/// # Examples
///
/// ```
/// use bulwark::task::{self, scope_deadline};
/// use bulwark::time::{Duration, Instant};
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let handle = bulwark::spawn(async {
///         // A child spawned in the scope inherits its deadline.
///         let at = Instant::now() + Duration::from_secs(60);
///         let inherited = scope_deadline(at, async move {
///             bulwark::spawn(async { task::deadline() }).await.unwrap()
///         })
///         .await;
///         assert_eq!(inherited, Ok(Some(at)));
///
///         // Past the deadline, the scoped future is dropped.
///         let soon = Instant::now() + Duration::from_millis(5);
///         scope_deadline(soon, std::future::pending::<()>()).await
///     });
///     assert!(handle.await.unwrap().is_err(), "the second scope's deadline passed");
/// });
/// ```
#[track_caller]
pub fn scope_deadline<F: Future>(deadline: Instant, future: F) -> ScopeDeadline<F> {
    ScopeDeadline {
        inner: timeout_at(
            deadline,
            Scoped {
                future,
                at: deadline.into_std(),
            },
        ),
    }
}

/// The future of [`scope_deadline`]: the scoped future's output, or
/// `Err(Elapsed)` once the deadline passes.
///
/// # Examples
///
/// ```
/// use bulwark::task::scope_deadline;
/// use bulwark::time::{Duration, Instant};
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let at = Instant::now() + Duration::from_secs(60);
///     let scoped = scope_deadline(at, async { "in time" });
///     assert_eq!(scoped.deadline(), at);
///     assert_eq!(scoped.await, Ok("in time"));
/// });
/// ```
#[derive(Debug)]
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct ScopeDeadline<F> {
    inner: Timeout<Scoped<F>>,
}

impl<F> ScopeDeadline<F> {
    /// The scope's deadline.
    pub fn deadline(&self) -> Instant {
        Instant::from_std(self.inner.get_ref().at)
    }
}

impl<F: Future> Future for ScopeDeadline<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `inner` is structurally pinned: nothing moves it out of a
        // pinned `ScopeDeadline` (there is no accessor that gives it by
        // value).
        let out = unsafe { self.map_unchecked_mut(|s| &mut s.inner) }.poll(cx);
        if matches!(out, Poll::Ready(Err(_))) {
            // Counted in the books of the runtime it ran out on (looked up
            // only now: a scope that finishes in time costs nothing here).
            if let Some(shared) = context::current() {
                shared.admit.books().count_scope_deadline();
            }
        }
        out
    }
}

/// The scoped future: polled with the scope narrowed to `at`.
#[derive(Debug)]
struct Scoped<F> {
    future: F,
    /// The deadline as the executor keeps it (the driver's std instant).
    at: std::time::Instant,
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `future` is structurally pinned: it is never moved out of a
        // pinned `Scoped`; `at` is `Copy` and not pinned.
        let (future, at) = unsafe {
            let this = self.get_unchecked_mut();
            (Pin::new_unchecked(&mut this.future), this.at)
        };
        let _scope = current::enter_scope(at).map(Restore);
        future.poll(cx)
    }
}

/// Puts the outer scope back when a scoped poll returns or unwinds.
struct Restore(Option<std::time::Instant>);

impl Drop for Restore {
    fn drop(&mut self) {
        current::restore_scope(self.0);
    }
}
