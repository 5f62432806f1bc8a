//! The spawn path and the spawning API: `spawn`, `try_spawn`,
//! `spawn_blocking`, `task::Builder` and `spawn_wait`.
//!
//! Every spawn goes through `spawn_task`, which reads top-down: admission
//! decides (`Admitter::decide`), the task is made with its admission ticket
//! and its deadline, and then it is registered and queued, refused, or put in
//! the admission wait list. The public functions and [`Builder`] only pick the
//! runtime and the mode.

use crate::admission::Decision;
use crate::blocking;
use crate::clock;
use crate::context;
use crate::fanout::{Family, Links};
use crate::scheduler::lost::LostTask;
use crate::scheduler::{worker, Sched, Shared};
use crate::task::{self, deadline_waker, Id, JoinHandle, Task, TaskMeta};
use bulwark_metrics::ledger::WaitSlot;
use bulwark_metrics::SharedCounters;
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::Location;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// How a task is to be spawned: what `task::Builder` collects.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpawnSpec<'a> {
    pub(crate) name: Option<&'a str>,
    pub(crate) location: &'static Location<'static>,
    /// A deadline set on this spawn (`Builder::deadline`).
    pub(crate) deadline: Option<Instant>,
    /// A timeout set on this spawn (`Builder::timeout`), from now.
    pub(crate) timeout: Option<Duration>,
    /// Do not inherit the spawning task's deadline.
    pub(crate) detached: bool,
    /// Never shed by adaptive admission.
    pub(crate) essential: bool,
    /// The most live children the task may have (`Builder::max_children`).
    pub(crate) max_children: Option<usize>,
}

impl SpawnSpec<'_> {
    pub(crate) fn plain(location: &'static Location<'static>) -> SpawnSpec<'static> {
        SpawnSpec {
            name: None,
            location,
            deadline: None,
            timeout: None,
            detached: false,
            essential: false,
            max_children: None,
        }
    }
}

/// What the caller of `spawn_task` will do with a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `spawn`: queue under `Admission::Wait`; a refusal is a rejected
    /// `JoinHandle`.
    Spawn,
    /// `try_spawn`: never queue; a refusal gives the future back.
    Try,
    /// `spawn_wait`: the permit is already held.
    Granted,
}

/// `try_spawn` was refused: the runtime is at its ceiling or shedding. The
/// future comes back unpolled.
///
/// # Examples
///
/// ```
/// let rt = bulwark::runtime::Builder::new_multi_thread().max_tasks(1).build().unwrap();
/// rt.block_on(async {
///     let _busy = bulwark::spawn(std::future::pending::<()>()); // the one place
///     let refused = bulwark::try_spawn(async { 7 }).unwrap_err();
///     assert!(!refused.is_shedding(), "refused at the ceiling");
///     // Run it here instead, or answer "busy".
///     assert_eq!(refused.into_future().await, 7);
/// });
/// ```
pub struct SpawnError<F> {
    future: F,
    shedding: bool,
}

impl<F> SpawnError<F> {
    /// The future that was not spawned.
    pub fn into_future(self) -> F {
        self.future
    }

    /// True if adaptive shedding refused it; false if the task ceiling did.
    pub fn is_shedding(&self) -> bool {
        self.shedding
    }
}

impl<F> fmt::Display for SpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.shedding {
            f.write_str("spawn refused: the runtime is shedding load (adaptive admission)")
        } else {
            f.write_str("spawn refused: the runtime is at its task ceiling (max_tasks)")
        }
    }
}

impl<F> fmt::Debug for SpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpawnError")
            .field("shedding", &self.shedding)
            .finish_non_exhaustive()
    }
}

impl<F> std::error::Error for SpawnError<F> {}

/// The spawn path, top to bottom: admission decides, the task is made with
/// its ticket and deadline, then it is registered and queued (or refused, or
/// put in the admission wait list).
pub(crate) fn spawn_task<F>(
    shared: &Arc<Shared>,
    future: F,
    spec: SpawnSpec<'_>,
    mode: Mode,
) -> Result<JoinHandle<F::Output>, SpawnError<F>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (decision, place) = admit_spawn(shared, &spec, mode);
    // A budgeted family's children start in spawn order (see `fanout`).
    let in_order = place.parent.as_ref().is_some_and(|f| f.is_budgeted());
    if let (Mode::Try, Decision::Reject { shedding }) = (mode, decision) {
        // An attempt counts as a spawn and a rejection, as `spawn` does.
        SharedCounters::bump(&shared.counters.spawned);
        SharedCounters::bump(&shared.counters.rejected);
        return Err(SpawnError { future, shedding });
    }

    if let Decision::Reject { shedding } = decision {
        // Refused: no task is made. The future is dropped here and now (a
        // panic in its destructor is caught: the handle says rejected either
        // way), and the handle resolves to the rejection.
        worker::with_local(shared, |local| match local {
            Some(cx) => {
                cx.counters().spawned.bump();
                cx.counters().rejected.bump();
            }
            None => {
                SharedCounters::bump(&shared.counters.spawned);
                SharedCounters::bump(&shared.counters.rejected);
            }
        });
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(future)));
        return Ok(JoinHandle::rejected(Id::next(), shedding));
    }
    // One look at this thread's worker serves the clock, the count and the
    // queue.
    let join = worker::with_local(shared, |local| {
        let (deadline, now, expired) =
            effective_deadline(shared, &spec, local.map(|cx| cx.coarse_now()));
        let meta = TaskMeta {
            id: Id::next(),
            name: spec.name.map(Into::into),
            location: spec.location,
            deadline,
            spawned_at: match local {
                Some(cx) => cx.coarse_now(),
                None => clock::now(),
            },
            cancel_if_lost: shared.lost_task == LostTask::Cancel,
        };
        let sched = Sched {
            shared: shared.clone(),
            ticket: shared.admit.ticket(
                decision,
                spec.essential || place.child,
                now.map(clock::nanos_at),
                local.map(|cx| cx.coarse_now()),
            ),
            links: Links::new(place.parent, place.own),
        };
        if place.child {
            sched
                .ticket
                .set_family(place.slot, decision == Decision::Family);
        }
        let (task, notified, join) = task::new_task(future, sched, meta);
        match local {
            Some(cx) => cx.counters().spawned.bump(),
            None => SharedCounters::bump(&shared.counters.spawned),
        }
        match decision {
            Decision::Reject { .. } => unreachable!("refused spawns return above"),
            Decision::Admit => {
                // The timer is set at the task's first `Pending` (most tasks
                // finish first), unless the deadline has passed already: then
                // now, so the task is dropped unpolled.
                if expired {
                    arm_deadline(shared, &task, deadline);
                }
                if let Some(notified) = shared.registry.bind(task, notified) {
                    match local {
                        Some(cx) if in_order => cx.schedule_back(notified),
                        Some(cx) => cx.schedule_local(notified, false),
                        None => shared.schedule_remote(notified),
                    }
                }
            }
            Decision::Queue => {
                // The deadline may fire at once (a parent past its own);
                // `enqueue` looks for that after it has listed the task.
                arm_deadline(shared, &task, deadline);
                if let Some(notified) = shared.registry.bind(task, notified) {
                    shared.admit.enqueue(notified);
                }
            }
            Decision::Family => {
                // Over its parent's budget: it waits in the parent's queue
                // with its future alone (no permit, no timer; its deadline is
                // checked when it starts).
                let family = task.scheduler().links.parent().cloned();
                match (shared.registry.bind(task, notified), family) {
                    (Some(notified), Some(family)) => family.enqueue(notified, &shared.fanout),
                    // Shut down as it was spawned: it never waited.
                    _ => shared.fanout.unreserve(),
                }
            }
        }
        join
    });
    Ok(join)
}

/// Where a spawn stands in fan-out (see `fanout`): the family it joins as a
/// child, and its own (`Builder::max_children`).
#[derive(Default)]
struct Placement {
    /// Its parent's family, if it joins one.
    parent: Option<Arc<Family<Sched>>>,
    /// Its own family, for its children.
    own: Option<Arc<Family<Sched>>>,
    /// It holds a live place in `parent`.
    slot: bool,
    /// It is a child of admitted work (spawned during its parent's poll)
    /// that joins `parent`: never shed, and it waits at a full ceiling.
    child: bool,
}

/// Admission and fan-out for one spawn: the permit decision, and the spawn's
/// place among its parent's children.
///
/// Without budgets anywhere (no `max_children`, no `max_children_per_task`)
/// this is `Admitter::decide` plus one load and a branch, until admission
/// refuses: then a spawn made during a task's poll is a child of admitted
/// work, and gets another chance (it waits for a permit). With budgets, the
/// parent is looked up and its family's place taken first: a child over its
/// parent's budget waits in the family (`Decision::Family`) and takes no
/// permit. A refused spawn holds no place; its family is failed (the
/// parent's work will not be whole: see `fanout`'s wasted work).
fn admit_spawn(shared: &Arc<Shared>, spec: &SpawnSpec<'_>, mode: Mode) -> (Decision, Placement) {
    let mut place = Placement::default();
    if let Some(n) = spec.max_children {
        shared.fanout.activate();
        place.own = Some(Family::new(n.max(1)));
    }
    if mode == Mode::Granted {
        return (Decision::Admit, place);
    }
    if shared.admit.take_reserved() {
        // A permit a listener's `accept` reserved for this task's next spawn:
        // the connection it accepted gets its task (a root: new work).
        return (Decision::Admit, place);
    }
    if shared.fanout.is_active() {
        if let Some(family) = parent_family(shared, false) {
            place.child = true;
            if family.try_take_place() {
                place.slot = true;
            } else if mode == Mode::Spawn
                && shared.fanout.reserve_wait(shared.admit.kind().waiting())
            {
                place.parent = Some(family);
                return (Decision::Family, place);
            } else {
                // Over budget and either `try_spawn` (never waits) or past
                // the cap on waiting children.
                if mode == Mode::Spawn {
                    family.fail(&shared.fanout);
                }
                shared.admit.count_rejection(false);
                return (Decision::Reject { shedding: false }, Placement::default());
            }
            place.parent = Some(family);
        }
    }
    let decision = if place.child && mode == Mode::Spawn {
        child_decision(shared)
    } else {
        shared
            .admit
            .decide_uncounted(spec.essential, mode == Mode::Spawn)
    };
    let decision = match decision {
        Decision::Reject { .. } if mode == Mode::Spawn && !place.child => {
            // Refused as a root: if a task's poll spawned it, it is a child
            // of admitted work, which waits rather than being refused.
            match parent_family(shared, true) {
                Some(family) if family.try_take_place() => {
                    place.child = true;
                    place.slot = true;
                    place.parent = Some(family);
                    child_decision(shared)
                }
                Some(family) => {
                    family.fail(&shared.fanout);
                    decision
                }
                None => decision,
            }
        }
        d => d,
    };
    if let Decision::Reject { shedding } = decision {
        shared.admit.count_rejection(shedding);
        if let Some(family) = place.parent.take() {
            if place.slot {
                family.release_place(&shared.fanout);
            }
            if mode == Mode::Spawn {
                family.fail(&shared.fanout);
            }
        }
        place = Placement::default();
    }
    (decision, place)
}

/// A child of admitted work: a permit now, or a wait for one (first come,
/// first served) if the cap on waiting children allows, else refused.
fn child_decision(shared: &Shared) -> Decision {
    match shared.admit.decide_child() {
        Decision::Queue
            if !shared
                .fanout
                .may_wait_for_permit(shared.admit.kind().waiting()) =>
        {
            Decision::Reject { shedding: false }
        }
        d => d,
    }
}

/// The family of the task whose poll runs on this worker (the parent of a
/// spawn made now), if it has one or gets one: always with a runtime-wide
/// budget, and with `fallback` (a child met the ceiling) an unbudgeted one.
///
/// An accept loop (a task that accepted a connection) has no family: the
/// tasks it spawns, one per connection, are new work at the door.
fn parent_family(shared: &Shared, fallback: bool) -> Option<Arc<Family<Sched>>> {
    worker::with_local(shared, |local| {
        let parent = local?.parent()?;
        if parent.ticket.is_acceptor() {
            return None;
        }
        parent.links.family(&shared.fanout, fallback)
    })
}

/// Called by bulwark-io on the thread that accepted a connection: the task
/// being polled there is an accept loop (see [`parent_family`]).
pub(crate) fn on_accept() {
    worker::with_current(|w| {
        if let Some(parent) = w.and_then(|cx| cx.parent()) {
            parent.ticket.set_acceptor();
        }
    });
}

/// The earlier of the spawn's own deadline (or the runtime default) and
/// the spawning task's (unless detached): Go's `context.WithDeadline`. And
/// whether it has passed already, and the clock read made to tell (at most
/// one, only if there is a deadline).
///
/// `coarse`: the spawning worker's coarse time, if on a worker. A child of
/// a task with a deadline whose own deadline is a timeout (the runtime
/// default, most often) needs no clock read when the parent's deadline comes
/// first even measured from the coarse time (which is never ahead of the
/// clock): a deadline inherited from a task spawned earlier with the same
/// timeout always does.
fn effective_deadline(
    shared: &Shared,
    spec: &SpawnSpec<'_>,
    coarse: Option<u64>,
) -> (Option<Instant>, Option<Instant>, bool) {
    let timeout = spec.timeout.or(shared.default_deadline);
    let inherited = if spec.detached {
        None
    } else {
        task::deadline_std()
    };
    if spec.deadline.is_none() && timeout.is_none() && inherited.is_none() {
        return (None, None, false);
    }
    // The coarse time is real time: no use against a paused clock.
    let coarse = coarse.filter(|_| shared.io().clock_is_real());
    if let (None, Some(t), Some(inherited), Some(coarse)) =
        (spec.deadline, timeout, inherited, coarse)
    {
        let at = clock::nanos_at(inherited);
        if at <= coarse.saturating_add(t.as_nanos() as u64) {
            // Expired for sure if the coarse time shows it; if not sure, the
            // worker's check at dequeue, or the timer, drops it.
            return (Some(inherited), None, at <= coarse);
        }
    }
    // Deadlines are on the driver's clock (virtual while a test has paused
    // it); the clock read handed back (to stamp the task for admission) is
    // real time, which is the same read unless the clock was ever paused.
    let io = shared.io();
    let now = io.now();
    let real = if io.clock_is_real() {
        now
    } else {
        Instant::now()
    };
    let own = match (spec.deadline, timeout) {
        (Some(d), Some(t)) => Some(d.min(deadline_after(now, t))),
        (Some(d), None) => Some(d),
        (None, Some(t)) => Some(deadline_after(now, t)),
        (None, None) => None,
    };
    let deadline = match (own, inherited) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).expect("one of them is set"),
    };
    (Some(deadline), Some(real), deadline <= now)
}

/// Sets the deadline timer. Done before the task is published, so the
/// key is in the header before any thread can complete the task.
fn arm_deadline(shared: &Shared, task: &Task<Sched>, deadline: Option<Instant>) {
    let Some(deadline) = deadline else { return };
    // The waker goes into the wheel by value: no clone, no extra reference.
    let key = shared
        .io()
        .set_timer_owned(deadline, deadline_waker(task.header_ptr()));
    // SAFETY: the task is not published yet (not in the registry, not
    // queued): nobody else reads this field.
    unsafe { *task.header().deadline_timer.get() = Some(key) };
}

fn deadline_after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30))
}

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
/// # let rt = bulwark::Runtime::new().unwrap();
/// # rt.block_on(async {
/// let handle = bulwark::spawn(async { 1 + 2 });
/// assert_eq!(handle.await.unwrap(), 3);
/// # });
/// ```
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match with_current(|s| spawn_task(s, future, SpawnSpec::plain(Location::caller()), Mode::Spawn))
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
/// # let rt = bulwark::Runtime::new().unwrap();
/// # rt.block_on(async {
/// match bulwark::task::try_spawn(async { 7 }) {
///     Ok(handle) => assert_eq!(handle.await.unwrap(), 7),
///     Err(refused) => drop(refused.into_future()), // at capacity: see `SpawnError`
/// }
/// # });
/// ```
#[track_caller]
pub fn try_spawn<F>(future: F) -> Result<JoinHandle<F::Output>, SpawnError<F>>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match with_current(|s| spawn_task(s, future, SpawnSpec::plain(Location::caller()), Mode::Try)) {
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
/// # let rt = bulwark::Runtime::new().unwrap();
/// # rt.block_on(async {
/// let n = bulwark::task::spawn_blocking(|| std::fs::read_dir(".").map(|d| d.count()));
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
    match context::current() {
        Some(s) => blocking::spawn_blocking(&s.blocking, f, TaskMeta::new(None, location)),
        None => panic!("{NO_RUNTIME}"),
    }
}

/// Runs `f` with this thread's runtime: its worker's without touching the
/// reference count if it is a worker, else the current one.
fn with_current<R>(f: impl FnOnce(&Arc<Shared>) -> R) -> Option<R> {
    worker::with_current(|w| match w {
        Some(w) => Some(f(&w.shared)),
        None => context::current().map(|s| f(&s)),
    })
}

/// Spawns a task with options, as `tokio::task::Builder`, plus bulwark's
/// deadlines and admission.
///
/// # Examples
///
/// ```
/// # let rt = bulwark::Runtime::new().unwrap();
/// # rt.block_on(async {
/// use std::time::Duration;
/// let handle = bulwark::task::Builder::new()
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
    max_children: Option<usize>,
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
    pub fn deadline(self, deadline: bulwark_io::time::Instant) -> Builder<'a> {
        Builder {
            deadline: Some(deadline.into_std()),
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

    /// Bounds how many *live* children the task may have at once: tasks it
    /// spawns (with `spawn`, `Builder::spawn`, ...) while it is polled.
    /// Children over the budget are not refused and not run: they wait, first
    /// come first served, in the task's own queue, holding only their
    /// futures (no permit of the task ceiling, no timer, no CPU), and each
    /// starts when an earlier child ends (completes, panics or is cancelled).
    /// So a fan-out of 1,000 with `max_children(10)` runs 10 at a time and
    /// finishes instead of failing halfway. `spawn` still returns at once;
    /// the child's `JoinHandle` resolves when it has run.
    ///
    /// Overrides the runtime's
    /// [`max_children_per_task`](crate::runtime::Builder::max_children_per_task)
    /// for this task (zero counts as one). Waiting children count against the
    /// runtime's [`max_waiting_children`](crate::runtime::Builder::max_waiting_children);
    /// past it, `spawn` is refused as at the ceiling. `try_spawn` over the
    /// budget is refused (it never waits); `spawn_wait` is not budgeted.
    ///
    /// If the task ends (or is cancelled) while children wait, they still
    /// start in order as their siblings end, as tasks spawned on tokio
    /// outlive their parent; a child that inherited a deadline that has
    /// passed is dropped unpolled when its turn comes.
    ///
    /// Children that wait on each other (a barrier, a channel between two of
    /// them) can deadlock under a budget smaller than the group: budget only
    /// fan-outs whose children each finish on their own.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = bulwark::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// use bulwark::task::{spawn, Builder};
    /// let parent = Builder::new()
    ///     .max_children(10)
    ///     .spawn(async {
    ///         // 1,000 children, at most 10 live at once.
    ///         let handles: Vec<_> = (0..1_000u64).map(|i| spawn(async move { i })).collect();
    ///         let mut sum = 0;
    ///         for h in handles {
    ///             sum += h.await.unwrap();
    ///         }
    ///         sum
    ///     })
    ///     .unwrap();
    /// assert_eq!(parent.await.unwrap(), 499_500);
    /// # });
    /// ```
    pub fn max_children(self, n: usize) -> Builder<'a> {
        Builder {
            max_children: Some(n),
            ..self
        }
    }

    /// The name set with [`name`](Self::name).
    pub(crate) fn task_name(&self) -> Option<&'a str> {
        self.name
    }

    pub(crate) fn spec(&self, location: &'static Location<'static>) -> SpawnSpec<'a> {
        SpawnSpec {
            name: self.name,
            location,
            deadline: self.deadline,
            timeout: self.timeout,
            detached: self.detached,
            essential: self.essential,
            max_children: self.max_children,
        }
    }

    /// Spawns onto the current runtime. Errors (rather than panicking) when
    /// there is none. At capacity, as [`spawn`](fn@spawn).
    #[track_caller]
    pub fn spawn<F>(self, future: F) -> io::Result<JoinHandle<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let spec = self.spec(Location::caller());
        match with_current(|s| spawn_task(s, future, spec, Mode::Spawn)) {
            Some(Ok(join)) => Ok(join),
            Some(Err(_)) => unreachable!("Mode::Spawn never gives the future back"),
            None => Err(io::Error::other(NO_RUNTIME)),
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
            shared: context::current(),
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
        let shared = context::current().ok_or_else(|| io::Error::other(NO_RUNTIME))?;
        let meta = TaskMeta::new(self.name, Location::caller());
        Ok(blocking::spawn_blocking(&shared.blocking, f, meta))
    }
}

/// The future of [`Builder::spawn_wait`]: resolves to the task's
/// `JoinHandle` once the runtime has admitted it.
///
/// # Examples
///
/// ```
/// use bulwark::sync::oneshot;
/// use bulwark::task::Builder;
/// use bulwark::time::{timeout, Duration};
///
/// let rt = bulwark::runtime::Builder::new_multi_thread().max_tasks(1).build().unwrap();
/// rt.block_on(async {
///     let (release, released) = oneshot::channel::<()>();
///     let first = bulwark::spawn(async move { released.await.unwrap() }); // the one place
///     let mut second = Builder::new().spawn_wait(async { "second" });
///     // At the ceiling it waits (it cannot finish while `first` runs)...
///     assert!(timeout(Duration::from_millis(10), &mut second).await.is_err());
///     release.send(()).unwrap();
///     first.await.unwrap();
///     // ...and spawns once `first` has ended.
///     let handle = second.await.unwrap();
///     assert_eq!(handle.await.unwrap(), "second");
/// });
/// ```
#[must_use = "nothing is spawned unless the future is awaited"]
pub struct SpawnWait<'a, F> {
    spec: SpawnSpec<'a>,
    future: Option<F>,
    shared: Option<Arc<Shared>>,
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
        let Some(shared) = this.shared.clone() else {
            return Poll::Ready(Err(io::Error::other(NO_RUNTIME)));
        };
        if this.future.is_none() {
            // Polled again after it resolved: an error, and no permit taken
            // (taking one first would leak it).
            return Poll::Ready(Err(io::Error::other(
                "`SpawnWait` polled after it resolved",
            )));
        }
        let kind = shared.admit.kind();
        let granted = match &this.slot {
            None if !shared.admit.has_ceiling() => true,
            None => {
                if shared.admit.take_reserved() || kind.try_acquire_fair() {
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
            // `register` is false once granted or closed; closed is told
            // apart below.
            Some(slot) => !slot.register(cx.waker()) && slot.is_granted(),
        };
        if !granted {
            if this.slot.as_ref().is_some_and(|s| s.is_closed()) {
                this.slot = None;
                return Poll::Ready(Err(io::Error::other(
                    "the bulwark runtime shut down while `spawn_wait` waited for room",
                )));
            }
            return Poll::Pending;
        }
        let mode = if shared.admit.has_ceiling() {
            Mode::Granted
        } else {
            Mode::Spawn
        };
        this.slot = None;
        let Some(future) = this.future.take() else {
            unreachable!("checked above");
        };
        match spawn_task(&shared, future, this.spec, mode) {
            Ok(join) => Poll::Ready(Ok(join)),
            Err(_) => unreachable!("granted spawns are never refused"),
        }
    }
}

impl<F> Drop for SpawnWait<'_, F> {
    fn drop(&mut self) {
        if let (Some(slot), Some(shared)) = (self.slot.take(), &self.shared) {
            if slot.cancel() {
                // A permit arrived but was never used.
                shared.admit.kind().release();
            }
        }
    }
}
