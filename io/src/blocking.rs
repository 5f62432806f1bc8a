//! Blocking work the io layer hands off: today, resolving host names
//! ([`crate::net::lookup_host`]), whose `getaddrinfo(3)` blocks its thread
//! for as long as DNS takes.
//!
//! The blocking pool lives in the executor, a layer above this crate, so the
//! executor lends it through a hook ([`set_blocking_hook`]), as it does for
//! accepted connections (`context::set_accept_hook`): at runtime build it
//! registers a function that runs a job on the current runtime's blocking
//! pool. A job's result comes back through a oneshot channel, so the task
//! that waits for it parks like any other, and a worker never blocks.
//!
//! With no hook set (this crate used without the bulwark executor), or no
//! runtime on the calling thread (the hook hands the job back), the job runs
//! on a plain thread of its own, started for it and ended after it: slower
//! than a pooled thread, but the caller still never blocks.

use std::io;
use std::panic::Location;
use std::sync::OnceLock;
use std::thread;

/// A job for the blocking pool: a closure run once on a thread that may
/// block.
pub type BlockingJob = Box<dyn FnOnce() + Send + 'static>;

/// The executor's way to run a [`BlockingJob`] on its blocking pool: it
/// takes the job and the line that asked for it (the job's spawn site), and
/// gives the job back if it cannot run it (no runtime on this thread).
pub type BlockingHook = fn(BlockingJob, &'static Location<'static>) -> Result<(), BlockingJob>;

static HOOK: OnceLock<BlockingHook> = OnceLock::new();

/// Gives the function that runs blocking jobs on the current runtime's
/// blocking pool (the first call wins; later ones are ignored). The executor
/// calls it when a runtime is built.
///
/// # Examples
///
/// ```
/// use bulwark_io::blocking::{set_blocking_hook, BlockingJob};
/// use std::panic::Location;
///
/// // A hook that never has a pool: every job goes to a thread of its own.
/// fn no_pool(job: BlockingJob, _site: &'static Location<'static>) -> Result<(), BlockingJob> {
///     Err(job)
/// }
/// set_blocking_hook(no_pool);
/// ```
pub fn set_blocking_hook(hook: BlockingHook) {
    let _ = HOOK.set(hook);
}

/// Runs `f` off the async threads and resolves to its result: on the current
/// runtime's blocking pool when the executor's hook takes it, else on a new
/// thread. Nothing starts until the future is first polled; dropping the
/// future does not stop `f`, whose result is then thrown away.
///
/// Errors when no thread can be started for `f`, or when `f` never ran or
/// did not finish (its runtime shut down first, or it panicked).
pub(crate) async fn run<R, F>(site: &'static Location<'static>, f: F) -> io::Result<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: BlockingJob = Box::new(move || {
        // The receiver is gone if the caller stopped waiting: nothing to do.
        let _ = tx.send(f());
    });
    let unrun = match HOOK.get() {
        Some(hook) => hook(job, site).err(),
        None => Some(job),
    };
    if let Some(job) = unrun {
        thread::Builder::new()
            .name("bulwark-io-blocking".into())
            .spawn(job)?;
    }
    rx.await.map_err(|_| {
        io::Error::other(
            "blocking work was dropped before it finished (its runtime shut down, or it panicked)",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rt::Rt;

    #[test]
    fn a_job_without_a_pool_runs_on_a_thread_of_its_own() {
        let rt = Rt::new();
        let caller = thread::current().id();
        let (ran_on, value) = rt
            .block_on(run(Location::caller(), || (thread::current().id(), 7)))
            .expect("the job ran");
        assert_eq!(value, 7);
        assert_ne!(ran_on, caller, "the job ran on the thread that awaited it");
    }

    #[test]
    fn a_job_that_panics_is_an_error_for_its_waiter() {
        let rt = Rt::new();
        let res = rt.block_on(run(Location::caller(), || -> u8 {
            panic!("the job fails")
        }));
        assert!(res.is_err());
    }
}
