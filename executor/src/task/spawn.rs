//! The free spawning functions and `task::Builder`.

use super::JoinHandle;
use crate::admission::WaitSlot;
use crate::blocking;
use crate::context;
use crate::runtime::Handle;
use crate::scheduler::spawn::{Mode, SpawnError, SpawnSpec};
use std::future::Future;
use std::io;
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

const NO_RUNTIME: &str = "there is no bulwark runtime on this thread: `spawn` must be called \
                          from a task, inside `Runtime::block_on`, or while a `Runtime::enter` \
                          guard lives";

/// Spawns a task onto the current runtime and returns its [`JoinHandle`].
///
/// The task starts at once on a worker and runs whether or not the handle is
/// awaited. Spawned from a task, it goes to the spawning worker's LIFO slot
/// and usually runs next on the same worker, while its data is warm; it
/// inherits the spawning task's deadline.
///
/// At the runtime's task ceiling (`Builder::max_tasks`), or while adaptive
/// admission sheds, this never blocks and never panics: the future is
/// dropped unpolled and the handle resolves at once to a `JoinError` with
/// `is_rejected()` (or, under `Admission::Wait`, the task waits its turn).
/// [`try_spawn`] gives the future back instead.
///
/// # Panics
///
/// Outside a runtime (as `tokio::spawn` does). Use [`Builder::spawn`] for an
/// error value instead.
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
    match with_current(|h| h.spawn_task(future, SpawnSpec::plain(Location::caller()), Mode::Spawn))
    {
        Some(Ok(join)) => join,
        Some(Err(_)) => unreachable!("Mode::Spawn never gives the future back"),
        None => panic!("{NO_RUNTIME}"),
    }
}

/// Spawns a task if the runtime admits it now, else gives the future back
/// (unpolled) in the error. Never waits, never queues.
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
/// match bulwark_executor::task::try_spawn(async { 7 }) {
///     Ok(handle) => assert_eq!(handle.await.unwrap(), 7),
///     Err(refused) => drop(refused.into_future()), // at capacity: handle it here
/// }
/// # });
/// ```
#[track_caller]
pub fn try_spawn<F>(future: F) -> Result<JoinHandle<F::Output>, SpawnError<F>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match with_current(|h| h.spawn_task(future, SpawnSpec::plain(Location::caller()), Mode::Try)) {
        Some(res) => res,
        None => panic!("{NO_RUNTIME}"),
    }
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
    let location = Location::caller();
    match context::current_handle() {
        Some(h) => blocking::spawn_blocking(&h, f, crate::task::TaskMeta::new(None, location)),
        None => panic!("{NO_RUNTIME}"),
    }
}

/// Runs `f` with this thread's runtime: its worker's handle without touching
/// the reference count if it is a worker, else the current handle.
fn with_current<R>(f: impl FnOnce(&Handle) -> R) -> Option<R> {
    context::with_worker(|worker| match worker {
        Some(w) => Some(f(&w.handle)),
        None => context::current_handle().map(|h| f(&h)),
    })
}

/// Spawns a task with options, as `tokio::task::Builder`, plus bulwark's
/// deadlines and admission.
///
/// # Examples
///
/// ```
/// # let rt = bulwark_executor::Runtime::new().unwrap();
/// # rt.block_on(async {
/// use std::time::Duration;
/// let handle = bulwark_executor::task::Builder::new()
///     .name("reporter")
///     .timeout(Duration::from_secs(30))
///     .spawn(async { "done" })
///     .unwrap();
/// assert_eq!(handle.await.unwrap(), "done");
/// # });
/// ```
#[derive(Debug, Default, Clone)]
pub struct Builder<'a> {
    name: Option<&'a str>,
    deadline: Option<Instant>,
    timeout: Option<Duration>,
    detached: bool,
    essential: bool,
}

impl<'a> Builder<'a> {
    /// A builder with no options set.
    pub fn new() -> Builder<'a> {
        Builder::default()
    }

    /// Names the task: the name shows in its `JoinError` and in reports.
    pub fn name(self, name: &'a str) -> Builder<'a> {
        Builder {
            name: Some(name),
            ..self
        }
    }

    /// Drops the task at `deadline` if it has not finished: its future is
    /// dropped (at once if it waits, when its poll returns if it runs) and
    /// its handle resolves to a `JoinError` with `is_deadline_exceeded()`.
    /// The task's effective deadline is the earliest of this, `timeout`, and
    /// the spawning task's (unless [`detached_deadline`](Self::detached_deadline)).
    pub fn deadline(self, deadline: Instant) -> Builder<'a> {
        Builder {
            deadline: Some(deadline),
            ..self
        }
    }

    /// As [`deadline`](Self::deadline), `timeout` after the spawn.
    pub fn timeout(self, timeout: Duration) -> Builder<'a> {
        Builder {
            timeout: Some(timeout),
            ..self
        }
    }

    /// Does not inherit the spawning task's deadline (a background job
    /// started by a request that should outlive it).
    pub fn detached_deadline(self) -> Builder<'a> {
        Builder {
            detached: true,
            ..self
        }
    }

    /// Exempts the task from adaptive shedding (health checks, the work that
    /// drains the overload). The task ceiling still applies.
    pub fn essential(self) -> Builder<'a> {
        Builder {
            essential: true,
            ..self
        }
    }

    fn spec(&self, location: &'static Location<'static>) -> SpawnSpec<'a> {
        SpawnSpec {
            name: self.name,
            location,
            deadline: self.deadline,
            timeout: self.timeout,
            detached: self.detached,
            essential: self.essential,
        }
    }

    /// Spawns onto the current runtime. Errors (rather than panicking) when
    /// there is none. At capacity, as [`spawn`](super::spawn).
    #[track_caller]
    pub fn spawn<F>(self, future: F) -> io::Result<JoinHandle<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let spec = self.spec(Location::caller());
        match with_current(|h| h.spawn_task(future, spec, Mode::Spawn)) {
            Some(Ok(join)) => Ok(join),
            Some(Err(_)) => unreachable!("Mode::Spawn never gives the future back"),
            None => Err(io::Error::other(NO_RUNTIME)),
        }
    }

    /// Spawns onto the runtime of `handle`.
    #[track_caller]
    pub fn spawn_on<F>(self, future: F, handle: &Handle) -> io::Result<JoinHandle<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let spec = self.spec(Location::caller());
        match handle.spawn_task(future, spec, Mode::Spawn) {
            Ok(join) => Ok(join),
            Err(_) => unreachable!("Mode::Spawn never gives the future back"),
        }
    }

    /// Spawns when the runtime has room: waits (first come, first served)
    /// while it is at its task ceiling, then spawns. Cancel-safe: dropping
    /// the returned future before it resolves gives its place in line away
    /// and spawns nothing. Errors if there is no runtime on this thread.
    ///
    /// This is how a producer feels backpressure: a loop that spawns with
    /// `spawn_wait(..).await` runs only as fast as tasks finish.
    #[track_caller]
    pub fn spawn_wait<F>(self, future: F) -> SpawnWait<'a, F>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        SpawnWait {
            spec: self.spec(Location::caller()),
            future: Some(future),
            handle: context::current_handle(),
            slot: None,
        }
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
        let meta = crate::task::TaskMeta::new(self.name, Location::caller());
        Ok(blocking::spawn_blocking(handle, f, meta))
    }
}

/// The future of [`Builder::spawn_wait`]: resolves to the task's
/// `JoinHandle` once the runtime has admitted it.
#[must_use = "nothing is spawned unless the future is awaited"]
pub struct SpawnWait<'a, F> {
    spec: SpawnSpec<'a>,
    future: Option<F>,
    handle: Option<Handle>,
    slot: Option<Arc<WaitSlot>>,
}

// The spawned future is held by value and never pinned.
impl<F> Unpin for SpawnWait<'_, F> {}

impl<F> std::fmt::Debug for SpawnWait<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpawnWait")
            .field("waiting", &self.slot.is_some())
            .finish_non_exhaustive()
    }
}

impl<F> Future for SpawnWait<'_, F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = io::Result<JoinHandle<F::Output>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Some(handle) = this.handle.clone() else {
            return Poll::Ready(Err(io::Error::other(NO_RUNTIME)));
        };
        let kind = &handle.shared.admit.books.tasks;
        let granted = match &this.slot {
            None if !handle.shared.admit.has_ceiling() => true,
            None => {
                if kind.try_acquire_fair() {
                    true
                } else {
                    let slot = Arc::new(WaitSlot::new());
                    slot.register(cx.waker());
                    kind.wait(slot.clone());
                    let granted = slot.is_granted();
                    this.slot = Some(slot);
                    granted
                }
            }
            Some(slot) => !slot.register(cx.waker()),
        };
        if !granted {
            return Poll::Pending;
        }
        let mode = if handle.shared.admit.has_ceiling() {
            Mode::Granted
        } else {
            Mode::Spawn
        };
        this.slot = None;
        let future = this
            .future
            .take()
            .expect("SpawnWait polled after it resolved");
        match handle.spawn_task(future, this.spec, mode) {
            Ok(join) => Poll::Ready(Ok(join)),
            Err(_) => unreachable!("granted spawns are never refused"),
        }
    }
}

impl<F> Drop for SpawnWait<'_, F> {
    fn drop(&mut self) {
        if let (Some(slot), Some(handle)) = (self.slot.take(), &self.handle) {
            if slot.cancel() {
                // A permit arrived but was never used.
                handle.shared.admit.release();
            }
        }
    }
}
