//! `Runtime`, its `Builder` and `Handle`: tokio's names for the same things.

pub use crate::admission::Admission;

use crate::admission::Admitter;
use crate::blocking::{self, join_until};
use crate::context;
use crate::fanout::Fanout;
pub use crate::scheduler::lost::LostTask;
use crate::scheduler::{Parts, Shared};
use crate::spawn::{spawn_task, Mode, SpawnSpec};
use crate::task::{JoinHandle, TaskMeta};
use crate::threads;
use crate::watchdog;
pub use crate::watchdog::Watchdog;
use bulwark_io::driver::Driver;
use bulwark_io::{DriverSlot, Parker, Unparker};
use bulwark_metrics::{Books, Endpoint, SharedCounters, Snapshot, Source, StallReport, TaskInfo};
use std::fmt;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::panic::Location;
use std::pin::pin;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::{Duration, Instant};

/// Configures and builds a [`Runtime`].
///
/// # Examples
///
/// ```
/// let rt = bulwark::Runtime::builder()
///     .worker_threads(2)
///     .thread_name("svc")
///     .build()
///     .unwrap();
/// assert_eq!(rt.block_on(async { 1 + 1 }), 2);
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    worker_threads: Option<usize>,
    thread_name: String,
    max_blocking_threads: usize,
    keep_alive: Duration,
    max_tasks: usize,
    admission: Admission,
    default_deadline: Option<Duration>,
    pause_accept: bool,
    max_children_per_task: Option<usize>,
    max_waiting_children: Option<usize>,
    watchdog: Watchdog,
    lost_task: LostTask,
    idle_report: Option<Duration>,
    histograms: bool,
    resource_budgets: Vec<(&'static str, usize)>,
    resource_max_holds: Vec<(&'static str, Duration)>,
    metrics_endpoint: Option<SocketAddr>,
    /// Made by `new_current_thread`: exactly one worker.
    current_thread: bool,
    /// The clock starts paused (`start_paused`).
    start_paused: bool,
}

/// The default task ceiling: a million live tasks.
///
/// A task costs at least its header and scheduler fields (about 150 bytes)
/// plus its future, so at the ceiling even empty tasks hold about 150 MB:
/// far more than a healthy service keeps live (tens of thousands of
/// connections with a few tasks each), and low enough that a spawn loop run
/// away stops with rejected `JoinHandle`s instead of the OOM killer.
pub const DEFAULT_MAX_TASKS: usize = 1_000_000;

impl Default for Builder {
    fn default() -> Self {
        Self::new_multi_thread()
    }
}

impl Builder {
    /// A builder for the runtime tokio calls current-thread: all tasks run
    /// on one thread, so nothing a task touches needs to be shared with a
    /// second worker.
    ///
    /// # How it differs from tokio's
    ///
    /// It is bulwark's runtime with exactly one worker thread (named
    /// `bulwark-worker-0`), not the thread that calls
    /// [`Runtime::block_on`]: the future given to `block_on` runs on the
    /// calling thread, as everywhere in bulwark, and spawned tasks run on
    /// the worker, also while no `block_on` is running (tokio's
    /// current-thread runtime runs its tasks only inside `block_on`). So
    /// spawned futures must be `Send`, as with [`new_multi_thread`]
    /// (there is no `LocalSet`). What it keeps: one thread runs the tasks,
    /// in order, and every guard works as on the multi-thread runtime (the
    /// ceiling, admission, deadlines, the watchdog, which hands a stuck
    /// worker's queue to a replacement thread, the histograms and the
    /// metrics endpoint). [`worker_threads`](Self::worker_threads) with
    /// anything but 1 is refused by [`build`](Self::build).
    ///
    /// [`new_multi_thread`]: Self::new_multi_thread
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = bulwark::runtime::Builder::new_current_thread()
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(rt.block_on(rt.spawn(async { 6 * 7 })).unwrap(), 42);
    /// assert_eq!(rt.metrics().workers, 1);
    /// ```
    pub fn new_current_thread() -> Builder {
        let mut b = Builder::new_multi_thread();
        b.worker_threads = Some(1);
        b.current_thread = true;
        b
    }

    /// Whether the runtime's clock starts paused, as tokio's test-util
    /// builder option: see `bulwark::time::pause`. Timers and task
    /// deadlines then follow a virtual clock that jumps to the next timer
    /// when nothing else in the runtime can make progress, so a test of an
    /// hour-long deadline takes no time.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    ///
    /// let rt = bulwark::runtime::Builder::new_current_thread()
    ///     .start_paused(true)
    ///     .build()
    ///     .unwrap();
    /// let real = Instant::now();
    /// let task = bulwark::task::Builder::new()
    ///     .timeout(Duration::from_secs(3600))
    ///     .spawn_on(std::future::pending::<()>(), rt.handle())
    ///     .unwrap();
    /// assert!(rt.block_on(task).unwrap_err().is_deadline_exceeded());
    /// assert!(real.elapsed() < Duration::from_secs(60));
    /// ```
    pub fn start_paused(&mut self, paused: bool) -> &mut Self {
        self.start_paused = paused;
        self
    }

    /// Does nothing: bulwark's IO and time drivers are always on. Here so
    /// that a tokio builder chain (`.enable_all()`) ports by renaming.
    pub fn enable_all(&mut self) -> &mut Self {
        self
    }

    /// Does nothing: the IO driver is always on (see
    /// [`enable_all`](Self::enable_all)).
    pub fn enable_io(&mut self) -> &mut Self {
        self
    }

    /// Does nothing: timers are always on (see
    /// [`enable_all`](Self::enable_all)).
    pub fn enable_time(&mut self) -> &mut Self {
        self
    }

    /// A builder for the multi-thread work-stealing runtime, with
    /// defaults: one worker per core, threads named `bulwark-worker-N`, up
    /// to 512 blocking threads kept 10 s when idle.
    pub fn new_multi_thread() -> Builder {
        Builder {
            worker_threads: None,
            thread_name: "bulwark-worker".to_string(),
            max_blocking_threads: blocking::DEFAULT_MAX_THREADS,
            keep_alive: blocking::DEFAULT_KEEP_ALIVE,
            max_tasks: DEFAULT_MAX_TASKS,
            admission: Admission::Reject,
            default_deadline: None,
            watchdog: Watchdog::default(),
            pause_accept: true,
            max_children_per_task: None,
            max_waiting_children: None,
            lost_task: LostTask::Report,
            idle_report: None,
            histograms: true,
            resource_budgets: Vec::new(),
            resource_max_holds: Vec::new(),
            metrics_endpoint: None,
            current_thread: false,
            start_paused: false,
        }
    }

    /// The most handles of the resource kind `kind` (`bulwark::resource`)
    /// live at once: `try_track` past it is an error value, and
    /// `track_wait` waits for room, first come first served. A kind with no
    /// budget is unbounded (its handles are still tracked). A budget of
    /// zero, or one of the runtime's own kinds (`"task"`), is refused by
    /// [`build`](Self::build). Set twice, the last one counts.
    ///
    /// The runtime's sockets are the kind `"socket"`, whose default budget
    /// is the fd limit less some headroom
    /// (`bulwark::net::default_socket_budget`); at it, listeners pause and
    /// `connect` waits.
    pub fn resource_budget(&mut self, kind: &'static str, n: usize) -> &mut Self {
        self.resource_budgets.retain(|(k, _)| *k != kind);
        self.resource_budgets.push((kind, n));
        self
    }

    /// How long a handle of the resource kind `kind` may be held before it
    /// is reported as held too long: counted
    /// (`Snapshot::resource_long_holds`), listed by [`Handle::leaks`] and
    /// logged once (target `bulwark::resource`), and logged again when it
    /// is returned. HikariCP's `leakDetectionThreshold`. Off by default.
    pub fn resource_max_hold(&mut self, kind: &'static str, max: Duration) -> &mut Self {
        self.resource_max_holds.retain(|(k, _)| *k != kind);
        self.resource_max_holds.push((kind, max));
        self
    }

    /// The hard ceiling on live tasks (default [`DEFAULT_MAX_TASKS`]): tasks
    /// spawned and not yet finished never exceed it, whoever spawns them and
    /// from which thread. What happens to a spawn at the ceiling is the
    /// [`admission`](Self::admission) policy's call. `usize::MAX` turns the
    /// ceiling (and its accounting) off; zero is refused by
    /// [`build`](Self::build).
    pub fn max_tasks(&mut self, n: usize) -> &mut Self {
        self.max_tasks = n;
        self
    }

    /// What a spawn does when the runtime cannot take more work: reject
    /// (default), wait for room, or shed early on scheduling delay. See
    /// [`Admission`].
    pub fn admission(&mut self, admission: Admission) -> &mut Self {
        self.admission = admission;
        self
    }

    /// A deadline for every task that sets none, counted from its spawn
    /// (default `None`: tasks run as long as they like, as on tokio). A task
    /// past its deadline has its future dropped and its `JoinHandle` resolves
    /// to a `JoinError` with `is_deadline_exceeded()`.
    pub fn default_deadline(&mut self, deadline: Option<Duration>) -> &mut Self {
        self.default_deadline = deadline;
        self
    }

    /// Bounds how many live children every task may have at once (default
    /// `None`: no bound, as on tokio). A task's own
    /// [`task::Builder::max_children`](crate::spawn::Builder::max_children)
    /// overrides it; see there for what happens to the children over the
    /// budget (they wait in their parent's queue, first come first served,
    /// and start as earlier children end).
    ///
    /// The default is no bound because a budget changes what a program
    /// means: children that wait on each other (a barrier, a pair talking
    /// over a channel) deadlock when the budget is smaller than the group,
    /// so a tokio program must keep working unchanged when ported. The task
    /// ceiling ([`max_tasks`](Self::max_tasks)) already bounds the total,
    /// and at the ceiling children of running tasks wait rather than being
    /// refused (new roots are refused first). Set a budget when one request
    /// fans out wide (hundreds of subtasks per request): then no request can
    /// take the whole ceiling, and a fan-out finishes at bounded concurrency.
    /// Zero counts as one.
    pub fn max_children_per_task(&mut self, n: Option<usize>) -> &mut Self {
        self.max_children_per_task = n.map(|n| n.max(1));
        self
    }

    /// The most children that may wait at once, runtime-wide (default: the
    /// task ceiling, [`max_tasks`](Self::max_tasks)): children over their
    /// parent's budget, and children of running tasks waiting for room
    /// under the task ceiling. A waiting child holds its future and its task
    /// allocation (no timer, no CPU), so this bounds their memory as
    /// `max_tasks` bounds the live tasks'. Past it, `spawn` of a child is
    /// refused as at the ceiling: its `JoinHandle` resolves to a rejected
    /// `JoinError`.
    pub fn max_waiting_children(&mut self, n: usize) -> &mut Self {
        self.max_waiting_children = Some(n);
        self
    }

    /// The poll-time watchdog (default: on, 25 ms): a thread that reports a
    /// poll holding its worker past the threshold, as a `tracing` warning
    /// (target `bulwark::watchdog`) and in [`Handle::stalls`]. See
    /// [`Watchdog`].
    pub fn watchdog(&mut self, watchdog: Watchdog) -> &mut Self {
        self.watchdog = watchdog;
        self
    }

    /// What to do with a *lost* task: one waiting with no `Waker` left, so
    /// that nothing can wake it again (default [`LostTask::Report`]). Either
    /// way it is counted (`Snapshot::tasks_lost`), reported once as a
    /// `tracing` warning (target `bulwark::lost_task`) with its name and
    /// spawn site, and listed ([`Handle::lost_tasks`]);
    /// [`LostTask::Cancel`] also drops its future and resolves its
    /// `JoinHandle` to a `JoinError` with `is_lost()`.
    pub fn on_lost_task(&mut self, policy: LostTask) -> &mut Self {
        self.lost_task = policy;
        self
    }

    /// Turns on the idle report (default: off): [`Handle::idle_tasks`] lists
    /// the tasks that have waited without being woken for longer than
    /// `threshold`, with how long, as a hung dependency or a deadlock looks.
    /// While it is on, each poll that returns `Pending` records the worker's
    /// coarse time in its task (one relaxed store); while it is off nothing
    /// is recorded and the list is empty. A zero threshold lists every
    /// waiting task.
    pub fn idle_report(&mut self, threshold: Duration) -> &mut Self {
        self.idle_report = Some(threshold);
        self
    }

    /// Whether the runtime keeps its duration histograms (on by default):
    /// poll duration, scheduling delay (wake to poll) and task lifetime, in
    /// [`Snapshot`]'s `poll_duration`, `scheduling_delay` and
    /// `task_lifetime`, and each task's busy-time estimate (`TaskInfo::busy`).
    ///
    /// They are sampled to stay cheap: each worker times one poll in 128
    /// (two clock reads), one wake in 64 is stamped with the clock (one in
    /// 8 under [`Admission::adaptive`], whose stamps they share), and a
    /// lifetime is measured with the worker's coarse time (no clock read).
    /// Off, none of that runs; blocking tasks' lifetimes are still recorded
    /// (one clock read next to a thread hand-off). Resource hold times are
    /// recorded either way (see `bulwark::resource`).
    pub fn histograms(&mut self, enabled: bool) -> &mut Self {
        self.histograms = enabled;
        self
    }

    /// Whether listeners stop accepting while the runtime sheds load or is
    /// at its task ceiling (default `true`): connections then wait in the
    /// kernel's backlog instead of being accepted as work that cannot run.
    pub fn pause_accept_when_full(&mut self, pause: bool) -> &mut Self {
        self.pause_accept = pause;
        self
    }

    /// Number of worker threads (default: the number of cores). Zero is
    /// refused by [`build`](Self::build).
    pub fn worker_threads(&mut self, n: usize) -> &mut Self {
        self.worker_threads = Some(n);
        self
    }

    /// Name prefix of the runtime's threads: workers are `{name}-{index}`,
    /// blocking threads `{name}-blocking`.
    pub fn thread_name(&mut self, name: impl Into<String>) -> &mut Self {
        self.thread_name = name.into();
        self
    }

    /// Cap on the blocking pool's threads (default 512). Zero is refused by
    /// [`build`](Self::build).
    pub fn max_blocking_threads(&mut self, n: usize) -> &mut Self {
        self.max_blocking_threads = n;
        self
    }

    /// How long an idle blocking thread waits for work before it exits
    /// (default 10 s).
    pub fn thread_keep_alive(&mut self, duration: Duration) -> &mut Self {
        self.keep_alive = duration;
        self
    }

    /// Serves the runtime's metrics over HTTP at `addr` (default: off),
    /// from one dedicated thread that is never a worker and reads only the
    /// runtime's books, so it answers while every worker is stuck in a poll.
    ///
    /// Routes: `/metrics` (Prometheus text, or OpenMetrics if the `Accept`
    /// header asks), `/tasks` (JSON: the live tasks, oldest first;
    /// `?limit=` up to 10000, default 1000; `?state=idle` and the other
    /// `TaskState` names), `/stalls`, `/leaks`, `/health` (readiness: 503
    /// while shedding or at the task ceiling) and `/` (an HTML page of the
    /// live counts). Port 0 picks a free port: read it back with
    /// [`Runtime::metrics_endpoint_addr`]. [`build`](Self::build) fails if
    /// the address cannot be bound. The thread stops when the runtime is
    /// dropped or shut down. It bounds what a client can cost: a request
    /// head of at most 8 KiB that must arrive within 2 s, at most 64
    /// connections open (past that the one that has waited longest without
    /// being answered is closed), one response per connection.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = bulwark::Runtime::builder()
    ///     .worker_threads(1)
    ///     .metrics_endpoint("127.0.0.1:0".parse().unwrap())
    ///     .build()
    ///     .unwrap();
    /// let addr = rt.metrics_endpoint_addr().expect("started");
    /// assert_ne!(addr.port(), 0);
    ///
    /// use std::io::{Read, Write};
    /// let mut conn = std::net::TcpStream::connect(addr).unwrap();
    /// conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    /// let mut answer = String::new();
    /// conn.read_to_string(&mut answer).unwrap();
    /// assert!(answer.starts_with("HTTP/1.1 200"));
    /// assert!(answer.contains("\nbulwark_tasks_spawned_total 0\n"));
    /// ```
    pub fn metrics_endpoint(&mut self, addr: SocketAddr) -> &mut Self {
        self.metrics_endpoint = Some(addr);
        self
    }

    /// Starts the worker threads and returns the runtime.
    ///
    /// Errors with `InvalidInput` for zero workers or zero blocking threads,
    /// with the OS error if a thread cannot be started, and with the bind's
    /// error if the metrics endpoint's address cannot be bound.
    pub fn build(&mut self) -> io::Result<Runtime> {
        let workers = match self.worker_threads {
            Some(0) => {
                return Err(invalid("worker_threads must be at least 1"));
            }
            Some(n) => n,
            None => thread::available_parallelism().map_or(1, |n| n.get()),
        };
        if self.current_thread && workers != 1 {
            return Err(invalid(
                "a current-thread runtime has exactly one worker: worker_threads must be 1",
            ));
        }
        if self.max_tasks == 0 {
            return Err(invalid("max_tasks must be at least 1"));
        }
        if let Admission::Adaptive { target, interval } = self.admission {
            if target.is_zero() || interval.is_zero() {
                return Err(invalid(
                    "adaptive admission needs a target and an interval above zero",
                ));
            }
        }
        if self.max_blocking_threads == 0 {
            return Err(invalid("max_blocking_threads must be at least 1"));
        }
        if workers > 4096 {
            return Err(invalid("worker_threads must be at most 4096"));
        }

        for &(kind, n) in &self.resource_budgets {
            if n == 0 {
                return Err(invalid("a resource budget must be at least 1"));
            }
            if kind == bulwark_metrics::ledger::TASK {
                return Err(invalid(
                    "\"task\" is the runtime's own kind: set its budget with max_tasks",
                ));
            }
        }

        // Accept loops' spawns are roots, not children (see `fanout`).
        bulwark_io::context::set_accept_hook(crate::spawn::on_accept);
        // Name lookups (`lookup_host`, `connect("host:port")`) block their
        // thread: bulwark-io sends them to the blocking pool through this.
        bulwark_io::blocking::set_blocking_hook(crate::blocking::run_for_io);
        let books = Arc::new(Books::new(self.max_tasks, self.pause_accept));
        // Sockets stay under the fd limit (`resource_budget("socket", n)`
        // below replaces the default).
        books
            .sockets()
            .set_budget(bulwark_io::net::default_socket_budget());
        for &(kind, n) in &self.resource_budgets {
            books.kind_or_register(kind).set_budget(n);
        }
        for &(kind, max) in &self.resource_max_holds {
            books.holdings().set_max_hold(kind, max);
        }
        // How `accept` tags the task permit it reserves for the next spawn.
        books.set_current_task(crate::admission::current_task);
        // One timer shard per worker: a worker sets and cancels its tasks'
        // timers (deadlines, sleeps) under a lock nobody else usually wants.
        let (driver, _) = Driver::with_books_and_shards(books.clone(), workers)?;
        let driver = Arc::new(DriverSlot::new(driver));
        let counters = Arc::new(SharedCounters::default());
        let shared = Arc::new(Shared::new(Parts {
            workers,
            thread_name: self.thread_name.clone(),
            compensating: self.watchdog.is_compensating(),
            registry_shards: workers * 4,
            counters: counters.clone(),
            blocking: Arc::new(blocking::Pool::new(
                self.max_blocking_threads,
                self.keep_alive,
                format!("{}-blocking", self.thread_name),
                counters,
            )),
            driver,
            admit: Admitter::new(self.admission, books, self.histograms),
            default_deadline: self.default_deadline,
            fanout: Fanout::new(
                self.max_children_per_task,
                self.max_waiting_children.unwrap_or(self.max_tasks),
            ),
            lost_task: self.lost_task,
            idle_report: self.idle_report,
            histograms: self.histograms,
        }));
        // The blocking pool enters the runtime around each closure; weakly,
        // so a pool thread never keeps the runtime alive between closures.
        let weak = Arc::downgrade(&shared);
        shared.blocking.set_enter(Box::new(move || {
            weak.upgrade()
                .map(|s| Box::new(context::enter_blocking(s)) as Box<dyn std::any::Any>)
        }));
        // The books reach the runtime through a `Weak`: a reader on another
        // thread (the metrics endpoint) never keeps it alive.
        let source: Arc<dyn Source> = shared.clone();
        shared.admit.books().set_source(Arc::downgrade(&source));
        drop(source);
        let weak = Arc::downgrade(&shared);
        shared.io().set_idle_check(Box::new(move || {
            weak.upgrade()
                .is_some_and(|shared| shared.only_timers_can_move())
        }));
        if self.start_paused {
            shared.io().pause();
        }
        // Bound before any worker starts: a taken address fails the build
        // with nothing left running.
        let endpoint = match self.metrics_endpoint {
            Some(addr) => Some(Endpoint::start(shared.admit.books().clone(), addr)?),
            None => None,
        };
        let runtime = Runtime {
            handle: Handle { shared },
            endpoint,
        };
        for index in 0..workers {
            // On error, `runtime` drops here and stops the workers started.
            threads::start_worker(&runtime.handle.shared, index)?;
        }
        watchdog::start(&runtime.handle.shared, self.watchdog)?;
        Ok(runtime)
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// The bulwark runtime: worker threads running tasks, and a blocking pool.
///
/// Dropping it shuts it down: the workers stop, every task that has not
/// finished has its future dropped (its destructors run) and its
/// `JoinHandle` resolves as cancelled, and the threads are joined. Drop waits
/// for running blocking closures to return; [`shutdown_timeout`] bounds the
/// wait. Blocking closures still queued (not started: every pool thread was
/// busy) are dropped without running, and their `JoinHandle`s resolve as
/// cancelled, as tokio's are.
///
/// [`shutdown_timeout`]: Runtime::shutdown_timeout
///
/// # Examples
///
/// ```
/// let rt = bulwark::Runtime::new().unwrap();
/// let handle = rt.spawn(async { "hello" });
/// assert_eq!(rt.block_on(handle).unwrap(), "hello");
/// ```
pub struct Runtime {
    handle: Handle,
    /// The metrics endpoint's thread, if one was asked for; stopped first
    /// at shutdown.
    endpoint: Option<Endpoint>,
}

impl Runtime {
    /// A runtime with the default configuration: one worker per core.
    pub fn new() -> io::Result<Runtime> {
        Builder::new_multi_thread().build()
    }

    /// A [`Builder`] to configure one.
    pub fn builder() -> Builder {
        Builder::new_multi_thread()
    }

    /// Runs `future` to completion on the current thread, with this runtime
    /// current (so `bulwark::spawn` inside reaches it). Tasks run on the
    /// workers meanwhile.
    ///
    /// # Panics
    ///
    /// If called on a runtime worker or inside another `block_on`: blocking
    /// that thread would stall the tasks queued behind it.
    #[track_caller]
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.handle.block_on(future)
    }

    /// Spawns a task onto this runtime. See [`Handle::spawn`].
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(future)
    }

    /// Runs a blocking closure on the blocking pool. See
    /// [`Handle::spawn_blocking`].
    #[track_caller]
    pub fn spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.handle.spawn_blocking(f)
    }

    /// This runtime's handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Makes this runtime current on this thread until the guard drops, so
    /// that `bulwark::spawn` works outside `block_on`. See [`EnterGuard`].
    pub fn enter(&self) -> EnterGuard<'_> {
        self.handle.enter()
    }

    /// The runtime's counts now.
    pub fn metrics(&self) -> Snapshot {
        self.handle.metrics()
    }

    /// The address the metrics endpoint listens on
    /// ([`Builder::metrics_endpoint`]; with port 0, the port picked), or
    /// `None` if it was not asked for.
    pub fn metrics_endpoint_addr(&self) -> Option<SocketAddr> {
        self.endpoint.as_ref().map(Endpoint::local_addr)
    }

    /// Shuts down as drop does, but waits at most `timeout` for threads to
    /// finish (a worker stuck in a poll, a blocking closure still running);
    /// threads still busy then are left to finish on their own.
    pub fn shutdown_timeout(mut self, timeout: Duration) {
        self.shutdown(Some(Instant::now() + timeout));
    }

    /// Shuts down without waiting for anything, as tokio's: the workers are
    /// told to stop, every task not being polled has its future dropped
    /// here, a task being polled is cancelled when its poll returns, and
    /// threads still busy (a worker stuck in a poll, a blocking closure)
    /// are left to finish on their own, detached. It never blocks on a
    /// stuck task; it is [`shutdown_timeout`](Self::shutdown_timeout) with
    /// a zero timeout.
    ///
    /// Use it where dropping the runtime must not wait: in a signal path,
    /// at the end of `main` with a blocking closure that may never return,
    /// or from inside a task (where joining the runtime's threads would wait
    /// on itself).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::{mpsc, Arc};
    /// use std::time::Duration;
    ///
    /// let rt = bulwark::Runtime::new().unwrap();
    /// // A blocking closure that will not return until told to (or 30 s).
    /// let (started, running) = mpsc::channel::<()>();
    /// let (release, told) = mpsc::channel::<()>();
    /// let done = Arc::new(AtomicBool::new(false));
    /// let done2 = done.clone();
    /// rt.spawn_blocking(move || {
    ///     started.send(()).unwrap();
    ///     let _ = told.recv_timeout(Duration::from_secs(30));
    ///     done2.store(true, Ordering::SeqCst);
    /// });
    /// running.recv_timeout(Duration::from_secs(30)).unwrap();
    /// rt.shutdown_background();
    /// // It returned while the closure still runs.
    /// assert!(!done.load(Ordering::SeqCst), "did not wait for the closure");
    /// release.send(()).unwrap();
    /// ```
    pub fn shutdown_background(self) {
        self.shutdown_timeout(Duration::ZERO);
    }

    fn shutdown(&mut self, deadline: Option<Instant>) {
        // The endpoint first: its thread is woken and joined (it never waits
        // on a worker, so this is prompt even with every worker stuck), and
        // nobody reads a runtime that is being taken apart.
        drop(self.endpoint.take());
        let shared = &self.handle.shared;
        shared.begin_shutdown();
        // Tasks and `spawn_wait` futures waiting for admission are told the
        // runtime is closing before any task is cancelled, so the permits
        // that cancelling frees go to nobody; no permit changes hands.
        shared.admit.close();
        // So are the waiters for every other kind (the socket budget, resource
        // budgets, pools): a `track_wait`, `Pool::acquire` or `connect` that
        // waits in a `block_on` on another thread, which no cancel reaches,
        // gets its error (`resource::Closed`, `PoolError::Closed`) instead of
        // waiting for a place that nobody will give back.
        for kind in shared.admit.books().kinds() {
            kind.close();
        }
        // Waiting children stay in their parents' queues; the registry's
        // shutdown below cancels them, and each one's end takes it out.
        shared.fanout.close();
        // A worker started while this runs (no new one starts once the flag
        // is set) is joined by the next round.
        loop {
            let threads: Vec<_> = shared.threads.lock().drain(..).collect();
            if threads.is_empty() {
                break;
            }
            for thread in threads {
                join_until(thread, deadline);
            }
        }
        // Workers are stopped (or stuck in a poll, whose task they cancel
        // when it returns): cancel everything still alive.
        shared.registry.close_and_shutdown_all();
        shared.drain_injector();
        shared.blocking.shutdown(deadline);
        // Sockets still held outside the runtime fail from now on; timers
        // fire. This also drops the wakers the driver held.
        shared.io().shutdown();
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if !self.handle.shared.registry.is_closed() {
            self.shutdown(None);
        }
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("workers", &self.handle.shared.workers())
            .finish_non_exhaustive()
    }
}

/// A cloneable reference to a runtime, for spawning onto it from anywhere.
///
/// # Examples
///
/// ```
/// let rt = bulwark::Runtime::new().unwrap();
/// let handle = rt.handle().clone();
/// let out = std::thread::spawn(move || handle.block_on(async { 7 }))
///     .join()
///     .unwrap();
/// assert_eq!(out, 7);
/// ```
#[derive(Clone)]
pub struct Handle {
    pub(crate) shared: Arc<Shared>,
}

impl Handle {
    /// The handle of the runtime this thread is in (a worker, inside
    /// `block_on`, or under [`Runtime::enter`]).
    ///
    /// # Panics
    ///
    /// Outside a runtime; [`try_current`](Self::try_current) returns an error
    /// instead.
    #[track_caller]
    pub fn current() -> Handle {
        match Handle::try_current() {
            Ok(h) => h,
            Err(e) => panic!("{e}"),
        }
    }

    /// The handle of the runtime this thread is in, or an error outside one.
    pub fn try_current() -> Result<Handle, TryCurrentError> {
        context::current()
            .map(|shared| Handle { shared })
            .ok_or(TryCurrentError(()))
    }

    /// Spawns a task onto this runtime and returns its [`JoinHandle`]. The
    /// task starts running on a worker at once; it need not be awaited.
    ///
    /// At the task ceiling this follows the runtime's admission policy: the
    /// handle resolves at once to a rejected `JoinError` (`Reject`), or the
    /// task waits its turn (`Wait`). It never blocks and never panics.
    #[track_caller]
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        spawn_task(
            &self.shared,
            future,
            SpawnSpec::plain(Location::caller()),
            Mode::Spawn,
        )
        .unwrap_or_else(|_| unreachable!("Mode::Spawn never gives the future back"))
    }

    /// Runs `f` on the blocking pool: for work that blocks (file IO, a
    /// synchronous client, heavy CPU) and must not hold up a worker.
    #[track_caller]
    pub fn spawn_blocking<F, R>(&self, f: F) -> JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        blocking::spawn_blocking(
            &self.shared.blocking,
            f,
            TaskMeta::new(None, Location::caller()),
        )
    }

    /// Runs `future` to completion on this thread, with this runtime current.
    ///
    /// # Panics
    ///
    /// On a runtime worker or inside another `block_on`.
    #[track_caller]
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        let _enter = context::enter_runtime(&self.shared);
        let mut future = pin!(future);
        BLOCK_ON_PARKER.with(|parker| {
            // Counted as active while it polls, and from the moment it is
            // woken, so that a paused clock does not jump past a timer while
            // this thread still has work to do.
            let active = Arc::new(Active::new(&self.shared, parker.unparker()));
            let _done = ActiveDone(&active);
            let waker = Waker::from(active.clone());
            let mut cx = Context::from_waker(&waker);
            loop {
                if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
                    return out;
                }
                active.pause();
                parker.park();
                active.resume();
            }
        })
    }

    /// Makes this runtime current on this thread until the guard drops.
    pub fn enter(&self) -> EnterGuard<'_> {
        EnterGuard {
            _io: bulwark_io::context::enter(self.shared.io().clone()),
            _guard: context::set(self.shared.clone()),
            _handle: PhantomData,
        }
    }

    /// The runtime's counts now.
    pub fn metrics(&self) -> Snapshot {
        self.shared.metrics()
    }

    /// The address the runtime's metrics endpoint was bound to, if it has
    /// one (see [`Runtime::metrics_endpoint_addr`]); it stops listening
    /// when the runtime shuts down.
    pub fn metrics_endpoint_addr(&self) -> Option<SocketAddr> {
        self.shared.admit.books().endpoint_addr()
    }

    /// The polls the watchdog saw hold their worker past its threshold,
    /// most recent last (at most [`STALLS_KEPT`](bulwark_metrics::STALLS_KEPT)):
    /// worker, task id, name and spawn site, how long when reported, and the
    /// total once the poll returned. Empty with `Watchdog::off()`.
    pub fn stalls(&self) -> Vec<StallReport> {
        self.shared.admit.books().stalls()
    }

    /// The tracked resource handles (`bulwark::resource`) that look leaked
    /// now: orphans (alive after the task that held them finished) and
    /// handles held past their kind's `max_hold`, each with its kind,
    /// holder, age and the line that took it. Each is also logged once, as
    /// the watchdog finds it (every 100 ms) or as this finds it. Works from
    /// any thread.
    pub fn leaks(&self) -> Vec<bulwark_metrics::LeakReport> {
        crate::scheduler::leaks::scan(&self.shared)
    }

    /// The live tasks now: id, name, spawn site, state and age, as the
    /// metrics endpoint lists them. Works from any thread, even while every
    /// worker is stuck in a poll: it reads the tasks' state words under the
    /// task registry's shard locks, which no poll takes.
    pub fn tasks(&self) -> Vec<TaskInfo> {
        self.shared.tasks()
    }

    /// The live tasks found lost (waiting, with no waker left to wake
    /// them) and kept by [`LostTask::Report`]: state `TaskState::Lost`.
    /// Under [`LostTask::Cancel`] lost tasks end at once, so this is
    /// empty but for a moment. Reads as [`tasks`](Self::tasks) does.
    pub fn lost_tasks(&self) -> Vec<TaskInfo> {
        crate::scheduler::lost::lost_tasks(&self.shared)
    }

    /// The tasks waiting without a wake for longer than the idle report's
    /// threshold ([`Builder::idle_report`]), longest first, each with its
    /// `idle_for`: what a deadlock or a hung dependency looks like. Lost
    /// tasks kept by [`LostTask::Report`] are among them once idle that
    /// long. Empty (and free: no task is looked at) while the report is
    /// off. Reads as [`tasks`](Self::tasks) does.
    pub fn idle_tasks(&self) -> Vec<TaskInfo> {
        crate::scheduler::lost::idle_tasks(&self.shared)
    }

    /// The deadline given to tasks spawned without one
    /// ([`Builder::default_deadline`]); `None` if the runtime sets none.
    pub fn default_deadline(&self) -> Option<Duration> {
        self.shared.default_deadline
    }

    /// The runtime's books: its ledger of kinds, worker slots and admission
    /// state, and (through them) its snapshot source, for a reader that
    /// outlives no runtime (the metrics endpoint).
    ///
    /// Plumbing between bulwark's crates (its types are not on the facade),
    /// hence hidden from the docs.
    #[doc(hidden)]
    pub fn books(&self) -> &Arc<Books> {
        self.shared.admit.books()
    }
}

thread_local! {
    /// One parker per thread for `block_on`, made once: a runtime's
    /// `block_on` is often called in a loop.
    static BLOCK_ON_PARKER: Parker = Parker::new();
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("workers", &self.shared.workers())
            .finish_non_exhaustive()
    }
}

impl crate::spawn::Builder<'_> {
    /// Spawns onto the runtime of `handle`. At capacity, as
    /// [`spawn`](crate::spawn()).
    #[track_caller]
    pub fn spawn_on<F>(self, future: F, handle: &Handle) -> io::Result<JoinHandle<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let spec = self.spec(Location::caller());
        match spawn_task(&handle.shared, future, spec, Mode::Spawn) {
            Ok(join) => Ok(join),
            Err(_) => unreachable!("Mode::Spawn never gives the future back"),
        }
    }

    /// Runs a blocking closure on the blocking pool of `handle`'s runtime.
    #[track_caller]
    pub fn spawn_blocking_on<F, R>(self, f: F, handle: &Handle) -> io::Result<JoinHandle<R>>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let meta = TaskMeta::new(self.task_name(), Location::caller());
        Ok(blocking::spawn_blocking(&handle.shared.blocking, f, meta))
    }
}

/// Keeps a runtime current on this thread; see [`Runtime::enter`].
///
/// While it lives, what needs a current runtime works outside `block_on`:
/// `spawn`, timers and sockets made on this thread. Dropping it makes the
/// thread's previous runtime (or none) current again.
///
/// # Examples
///
/// ```
/// use bulwark::runtime::Handle;
///
/// let rt = bulwark::Runtime::new().unwrap();
/// assert!(Handle::try_current().is_err());
/// let task = {
///     let _guard = rt.enter();
///     // No `block_on` here: the guard makes `rt` current.
///     bulwark::spawn(async { 6 * 7 })
/// };
/// assert!(Handle::try_current().is_err(), "the guard is gone");
/// assert_eq!(rt.block_on(task).unwrap(), 42);
/// ```
#[must_use = "the runtime is current only while the guard lives"]
pub struct EnterGuard<'a> {
    _guard: context::SetGuard,
    _io: bulwark_io::context::EnterGuard,
    _handle: PhantomData<&'a Handle>,
}

impl fmt::Debug for EnterGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnterGuard")
    }
}

/// Returned by [`Handle::try_current`] outside a runtime.
///
/// # Examples
///
/// ```
/// use bulwark::runtime::Handle;
///
/// // A library function that works with or without a runtime.
/// fn where_am_i() -> String {
///     match Handle::try_current() {
///         Ok(handle) => format!("in a runtime of {} workers", handle.metrics().workers),
///         Err(e) => e.to_string(),
///     }
/// }
///
/// assert!(where_am_i().starts_with("there is no bulwark runtime"));
/// let rt = bulwark::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
/// assert_eq!(rt.block_on(async { where_am_i() }), "in a runtime of 2 workers");
/// ```
#[derive(Debug)]
pub struct TryCurrentError(());

impl fmt::Display for TryCurrentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "there is no bulwark runtime on this thread: this must be called from a task, \
             inside `Runtime::block_on`, or while a `Runtime::enter` guard lives",
        )
    }
}

impl std::error::Error for TryCurrentError {}

/// A `block_on` call, counted in `Shared::block_on_active` while its thread
/// polls, and also its waker: a wake counts it again before unparking the
/// thread. Counted from the wake, not from when the thread runs again: in
/// between (the OS has yet to schedule it) the runtime would look idle, and
/// a paused clock would jump to the next timer ahead of what the thread is
/// about to do with what woke it (a reply read from a socket). Likewise a
/// wake during the poll (a yield) keeps it counted through the `park` that
/// returns at once.
struct Active {
    shared: std::sync::Weak<Shared>,
    unparker: Unparker,
    /// `POLLING`, `NOTIFIED` (polling, and woken since the poll began) and
    /// `PARKED`; `DONE` once `block_on` returned (a late wake of a waker
    /// clone counts nothing). Counted in `POLLING` and `NOTIFIED`; the side
    /// whose exchange moves it into or out of them adds or takes the one.
    state: std::sync::atomic::AtomicU8,
}

const POLLING: u8 = 0;
const NOTIFIED: u8 = 1;
const PARKED: u8 = 2;
const DONE: u8 = 3;

impl Active {
    fn new(shared: &Arc<Shared>, unparker: Unparker) -> Active {
        shared.block_on_active.fetch_add(1, SeqCst);
        Active {
            shared: Arc::downgrade(shared),
            unparker,
            state: std::sync::atomic::AtomicU8::new(POLLING),
        }
    }

    fn count(&self, up: bool) {
        if let Some(shared) = self.shared.upgrade() {
            if up {
                shared.block_on_active.fetch_add(1, SeqCst);
            } else {
                shared.block_on_active.fetch_sub(1, SeqCst);
            }
        }
    }

    fn exchange(&self, from: u8, to: u8) -> bool {
        self.state
            .compare_exchange(from, to, SeqCst, SeqCst)
            .is_ok()
    }

    /// About to park: not counted, unless a wake came during the poll (the
    /// park then returns at once).
    fn pause(&self) {
        if !self.exchange(NOTIFIED, POLLING) && self.exchange(POLLING, PARKED) {
            self.count(false);
        }
    }

    /// Back from `park` (perhaps spuriously, with no wake): counted again.
    fn resume(&self) {
        if self.exchange(PARKED, POLLING) {
            self.count(true);
        }
    }
}

impl std::task::Wake for Active {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Counted before the thread can run: the waking thread (a worker
        // that delivered a socket event) may check idleness next.
        if self.exchange(PARKED, POLLING) {
            self.count(true);
        } else {
            let _ = self.exchange(POLLING, NOTIFIED);
        }
        self.unparker.unpark();
    }
}

/// Ends a `block_on`'s count however it leaves (a return or a panic).
struct ActiveDone<'a>(&'a Active);

impl Drop for ActiveDone<'_> {
    fn drop(&mut self) {
        if matches!(self.0.state.swap(DONE, SeqCst), POLLING | NOTIFIED) {
            self.0.count(false);
        }
    }
}
