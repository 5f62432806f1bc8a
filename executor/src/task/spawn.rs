//! The free spawning functions and `task::Builder`.

use super::{JoinHandle, TaskMeta};
use crate::blocking;
use crate::context;
use crate::runtime::Handle;
use std::future::Future;
use std::io;
use std::panic::Location;

const NO_RUNTIME: &str = "there is no bulwark runtime on this thread: `spawn` must be called \
                          from a task, inside `Runtime::block_on`, or while a `Runtime::enter` \
                          guard lives";

/// Spawns a task onto the current runtime and returns its [`JoinHandle`].
///
/// The task starts at once on a worker and runs whether or not the handle is
/// awaited. Spawned from a task, it goes to the spawning worker's LIFO slot
/// and usually runs next on the same worker, while its data is warm.
///
/// # Panics
///
/// Outside a runtime (as `tokio::spawn` does). Use
/// [`Builder::spawn`] for an error value instead.
///
/// # Examples
///
/// ```
/// # let rt = bulwark_executor::Runtime::new().unwrap();
/// # rt.block_on(async {
/// let handle = bulwark_executor::spawn(async { 1 + 2 });
/// assert_eq!(handle.await.unwrap(), 3);
/// # });
/// ```
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    spawn_inner(future, TaskMeta::new(None, Location::caller()))
        .unwrap_or_else(|_| panic!("{NO_RUNTIME}"))
}

/// Runs a blocking closure on the current runtime's blocking pool.
///
/// # Panics
///
/// Outside a runtime.
///
/// # Examples
///
/// ```
/// # let rt = bulwark_executor::Runtime::new().unwrap();
/// # rt.block_on(async {
/// let n = bulwark_executor::task::spawn_blocking(|| std::fs::read_dir(".").map(|d| d.count()));
/// assert!(n.await.unwrap().is_ok());
/// # });
/// ```
#[track_caller]
pub fn spawn_blocking<F, R>(f: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    match context::current_handle() {
        Some(h) => blocking::spawn_blocking(&h, f, TaskMeta::new(None, Location::caller())),
        None => panic!("{NO_RUNTIME}"),
    }
}

/// Spawns on this thread's worker without touching the handle's reference
/// count, else on the current runtime; gives the future back if there is none.
fn spawn_inner<F>(future: F, meta: TaskMeta) -> Result<JoinHandle<F::Output>, F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    context::with_worker(|worker| match worker {
        Some(w) => Ok(w.handle.spawn_with_meta(future, meta)),
        None => match context::current_handle() {
            Some(h) => Ok(h.spawn_with_meta(future, meta)),
            None => Err(future),
        },
    })
}

/// Spawns a task with options, as `tokio::task::Builder`.
///
/// # Examples
///
/// ```
/// # let rt = bulwark_executor::Runtime::new().unwrap();
/// # rt.block_on(async {
/// let handle = bulwark_executor::task::Builder::new()
///     .name("reporter")
///     .spawn(async { "done" })
///     .unwrap();
/// assert_eq!(handle.await.unwrap(), "done");
/// # });
/// ```
#[derive(Debug, Default, Clone)]
pub struct Builder<'a> {
    name: Option<&'a str>,
}

impl<'a> Builder<'a> {
    /// A builder with no options set.
    pub fn new() -> Builder<'a> {
        Builder { name: None }
    }

    /// Names the task: the name shows in its `JoinError` and in reports.
    pub fn name(self, name: &'a str) -> Builder<'a> {
        Builder { name: Some(name) }
    }

    /// Spawns onto the current runtime. Errors (rather than panicking) when
    /// there is none.
    #[track_caller]
    pub fn spawn<F>(self, future: F) -> io::Result<JoinHandle<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        spawn_inner(future, TaskMeta::new(self.name, Location::caller()))
            .map_err(|_| io::Error::other(NO_RUNTIME))
    }

    /// Spawns onto the runtime of `handle`.
    #[track_caller]
    pub fn spawn_on<F>(self, future: F, handle: &Handle) -> io::Result<JoinHandle<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Ok(handle.spawn_with_meta(future, TaskMeta::new(self.name, Location::caller())))
    }

    /// Runs a blocking closure on the current runtime's blocking pool.
    #[track_caller]
    pub fn spawn_blocking<F, R>(self, f: F) -> io::Result<JoinHandle<R>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let handle = context::current_handle().ok_or_else(|| io::Error::other(NO_RUNTIME))?;
        self.spawn_blocking_on(f, &handle)
    }

    /// Runs a blocking closure on the blocking pool of `handle`'s runtime.
    #[track_caller]
    pub fn spawn_blocking_on<F, R>(self, f: F, handle: &Handle) -> io::Result<JoinHandle<R>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let meta = TaskMeta::new(self.name, Location::caller());
        Ok(blocking::spawn_blocking(handle, f, meta))
    }
}
