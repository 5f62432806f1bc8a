//! Porting from tokio: which bulwark name stands for which tokio name, what
//! behaves differently, and what bulwark adds.
//!
//! bulwark keeps tokio's names where it has the same thing, so most of a
//! port is renaming `tokio::` to `bulwark::` for the runtime, tasks, time,
//! net, IO traits, sync and the macros. Runtime-agnostic crates
//! (`tokio::sync` used directly, `futures`, `tokio-util` codecs, `tower`,
//! `hyper` through `bulwark::hyper`) keep working inside bulwark tasks with
//! no tokio runtime in the process. This page has the same table as the
//! README's "Porting from tokio" section.
//!
//! # Names
//!
//! | tokio | bulwark | notes |
//! |---|---|---|
//! | `runtime::Runtime::new()`, `runtime::Builder::new_multi_thread()` | `bulwark::Runtime::new()`, `bulwark::runtime::Builder::new_multi_thread()` (also `Runtime::builder()`) | one worker per core by default |
//! | `Builder::new_current_thread()` | `Builder::new_current_thread()` | one worker thread: see below |
//! | `Builder::{worker_threads, thread_name, max_blocking_threads, thread_keep_alive}` | the same | defaults: one worker per core, `bulwark-worker`, 512, 10 s |
//! | `Builder::{enable_all, enable_io, enable_time}` | the same | no-ops: IO and timers are always on |
//! | `Builder::start_paused`, `time::{pause, resume, advance}` | the same | timers and task deadlines follow the paused clock, which jumps to the next timer when nothing else can run, on either runtime; so does `time::Instant::now()` |
//! | `Builder::{on_thread_start, on_thread_stop, thread_stack_size, global_queue_interval, event_interval}` | none | |
//! | `Runtime::{block_on, spawn, spawn_blocking, handle, enter, shutdown_timeout, shutdown_background}` | the same | |
//! | `Runtime::metrics()` | `Runtime::metrics()` | a plain copy of the counts, `bulwark::metrics::Snapshot`, not tokio's `RuntimeMetrics` |
//! | `runtime::Handle::{current, try_current, spawn, spawn_blocking, block_on, enter}` | `bulwark::runtime::Handle::{...}`, the same | |
//! | `tokio::spawn` | `bulwark::spawn` | a rejected spawn resolves its `JoinHandle` with an error: see below |
//! | | `bulwark::try_spawn` | gives the future back when the runtime will not take it |
//! | `task::{spawn, spawn_blocking, yield_now, id, try_id, Id}` | `bulwark::task::{...}`, the same | |
//! | `task::JoinHandle` (`abort`, `is_finished`, `id`) | `bulwark::task::JoinHandle` | |
//! | `task::JoinError` (`is_cancelled`, `is_panic`, `into_panic`, `try_into_panic`, `id`) | `bulwark::task::JoinError` | also `is_rejected`, `is_deadline_exceeded`, `is_lost` |
//! | `task::JoinSet` | `bulwark::task::JoinSet` | |
//! | `task::block_in_place` | `bulwark::task::block_in_place` | |
//! | `task::Builder` (`name`, `spawn`, `spawn_on`, `spawn_blocking`, `spawn_blocking_on`; `tokio_unstable` in tokio) | `bulwark::task::Builder` | also `deadline`, `timeout`, `detached_deadline`, `essential`, `max_children`, `spawn_wait` |
//! | `task::{spawn_local, LocalSet, task_local!, unconstrained, consume_budget}` | none | every task is `Send` |
//! | `time::{sleep, sleep_until, timeout, timeout_at, interval, interval_at, Sleep, Timeout, Interval, MissedTickBehavior, Duration, error::Elapsed}` | `bulwark::time::{...}`, the same | |
//! | `time::Instant` (`now`, `from_std`, `into_std`, `elapsed`, `duration_since`...) | `bulwark::time::Instant` | the same: std's `Instant` behind a `now()` that reads the runtime's clock |
//! | `net::{TcpListener, TcpStream, UdpSocket, tcp::{ReadHalf, WriteHalf, OwnedReadHalf, OwnedWriteHalf}}` | `bulwark::net::{...}`, the same | `TcpStream` also implements `futures_io`'s traits and hyper's |
//! | `net::{ToSocketAddrs, lookup_host}` | `bulwark::net::{ToSocketAddrs, lookup_host}` | |
//! | `net::{TcpSocket, UnixListener, UnixStream, UnixDatagram}` | none | |
//! | `tokio::io` (`AsyncRead`, `AsyncWrite`, the `Ext` traits, `BufReader`, `copy`, `split`, `duplex`...) | `bulwark::io` | tokio's runtime-free IO traits and utilities, re-exported |
//! | `tokio::fs`, `tokio::process`, `io::{stdin, stdout, stderr}` | none | std's, inside `spawn_blocking` |
//! | `hyper_util::rt::{TokioExecutor, TokioTimer, TokioIo}` | `bulwark::hyper::{BulwarkExecutor, BulwarkTimer}` | `TcpStream` implements hyper's `Read` and `Write` itself: no `TokioIo` wrapper |
//! | `tokio::sync` | `bulwark::sync` | `tokio::sync` re-exported; it also works used directly |
//! | `signal::{ctrl_c, unix::signal}` | `bulwark::signal::{ctrl_c, unix::signal}` | |
//! | `select!`, `join!`, `try_join!`, `pin!` | `bulwark::{select, join, try_join, pin}` | |
//! | `tokio_util::sync::CancellationToken`, `tokio_util::codec`, `tokio_stream` | the same crates | runtime-free: they work in bulwark tasks |
//! | `tokio_util::task::{TaskTracker::spawn, JoinMap, LocalPoolHandle}`, `tokio_util::time::DelayQueue` | none | they spawn on tokio's runtime or set tokio's timers, and panic without one: use `bulwark::task::JoinSet`, or `tracker.track_future(fut)` handed to `bulwark::spawn` |
//! | `#[tokio::main]`, `#[tokio::test]` | `#[bulwark::main]`, `#[bulwark::test]` | arguments `flavor`, `worker_threads`, `start_paused`, and also `max_tasks`, `default_deadline` |
//!
//! # What behaves differently
//!
//! - **`current_thread` is one worker thread.** `new_current_thread()`
//!   builds bulwark's runtime with exactly one worker, the thread
//!   `bulwark-worker-0`. The future given to `block_on` runs on the calling
//!   thread, as on every bulwark runtime; spawned tasks run on the worker,
//!   also while no `block_on` runs (tokio's current-thread runtime runs its
//!   tasks only inside `block_on`, on the calling thread). So spawned
//!   futures must be `Send`, and there is no `LocalSet`. `worker_threads`
//!   other than 1 is refused by `build()`. `#[bulwark::test]` uses this
//!   runtime by default, as `#[tokio::test]` uses tokio's.
//! - **A spawn can be refused.** Live tasks are bounded by `max_tasks`,
//!   1,000,000 by default (`runtime::DEFAULT_MAX_TASKS`).
//!   At the ceiling `spawn` neither blocks nor panics: the future is
//!   dropped unpolled and the `JoinHandle` resolves at once to a
//!   `JoinError` with `is_rejected()`. A program that never holds a
//!   million live tasks never sees this. `max_tasks(usize::MAX)` turns the
//!   ceiling off.
//! - **A `JoinError` has more reasons.** Besides a panic and a cancel
//!   (`abort`, or the runtime shutting down), a task can be rejected at
//!   spawn (`is_rejected`), dropped at its deadline
//!   (`is_deadline_exceeded`), or cancelled as lost (`is_lost`, only under
//!   `LostTask::Cancel`). `is_cancelled()` is false for those three, so
//!   code that reads "not a panic" as "cancelled" must look again.
//! - **The watchdog is on.** A poll that holds its worker past 25 ms is
//!   logged as a `tracing` warning (target `bulwark::watchdog`) with the
//!   task's name and spawn site, and from 5 ms the worker's queue is handed
//!   to a replacement thread, so the runtime can briefly run more threads than
//!   workers (at most `max(workers, 4)` more by default). Compensation
//!   needs Linux's `membarrier(2)`; without it stalls are only reported.
//!   `Watchdog::off()` turns it all off.
//! - **Lost tasks are reported.** A spawned task that waits while no waker
//!   for it is left (nothing can ever wake it: `spawn(std::future::pending())`
//!   is one) is logged as a `tracing` warning (target `bulwark::lost_task`)
//!   and listed by `Handle::lost_tasks()`. Under `LostTask::Cancel` its
//!   future is also dropped. The future given to `block_on` is not a task
//!   and is never reported.
//! - **`accept` pauses and backs off.** While the runtime is at its task
//!   ceiling or shedding load, `TcpListener::accept` takes no connection:
//!   connections wait in the kernel's backlog
//!   (`Builder::pause_accept_when_full(false)` turns this off). When the
//!   process is out of file descriptors (`EMFILE`, `ENFILE`, `ENOBUFS`,
//!   `ENOMEM`), `accept` waits (1 ms, doubling to 100 ms) and tries again
//!   instead of returning the error, so an accept loop that logs its errors
//!   sees none of these.
//! - **Sockets have a budget.** The runtime's sockets are counted against
//!   the process's fd limit less a sixteenth
//!   (`net::default_socket_budget()`: 3,840 of 4,096). At the budget,
//!   `accept` leaves connections in the backlog and `connect` waits for a
//!   socket to close, where tokio would fail with `EMFILE`.
//! - **One waiting reader and one waiting writer per socket.** Two tasks
//!   that wait on the same socket in the same direction at once (two
//!   `recv`s on one `Arc<UdpSocket>`, two `accept`s on one listener)
//!   overwrite each other's waker, and one of them is left waiting. tokio
//!   keeps a list of waiters. The halves of `into_split` (one reader, one
//!   writer) work.
//! - **Sockets made outside a runtime are an error, not a panic.**
//!   `bind`, `connect` and `from_std` return `Err` where tokio panics.
//!   `sleep` and the other timers still panic outside a runtime, as
//!   tokio's do.
//! - **Timers.** The wheel ticks every millisecond and a deadline is
//!   rounded up to the next tick, so a timer never fires early; tokio's
//!   wheel has the same 1 ms resolution. `Sleep` is `Unpin` (tokio's is
//!   not); pinning it still works.
//! - **`blocking_*` methods of `tokio::sync`** (`Mutex::blocking_lock`,
//!   `mpsc::Receiver::blocking_recv`) panic inside a tokio runtime; bulwark
//!   cannot tell, so called from a task they block its worker (which the
//!   watchdog reports). Call them from `spawn_blocking`.
//!
//! # What bulwark adds
//!
//! The ceiling (at 1,000,000), the watchdog and lost-task reports are on by
//! default, as above, and so are the duration histograms; everything else
//! here is off until a program asks for it.
//!
//! - **Task ceiling** (`Builder::max_tasks`): live tasks never pass it,
//!   whoever spawns and from which thread.
//! - **Admission** (`Builder::admission`): at the ceiling, `Reject` (the
//!   default), `Wait` (first come, first served), or `Adaptive`, which also
//!   sheds new spawns early when the scheduling delay stands above 5 ms for
//!   100 ms (CoDel). `try_spawn` gives the future back;
//!   `task::Builder::spawn_wait(fut).await` waits for room;
//!   `task::Builder::essential()` is never shed. A connection `accept`
//!   takes always gets its task.
//! - **Deadlines**: `Builder::default_deadline`,
//!   `task::Builder::{deadline, timeout}`, inherited by children (the
//!   earlier wins), `task::scope_deadline` for part of a task's work, and
//!   `hyper::serve_connection` for a deadline per HTTP request. Past its
//!   deadline a task's future is dropped.
//! - **Fan-out budgets** (`task::Builder::max_children`,
//!   `Builder::max_children_per_task`): children over a parent's budget
//!   wait in the parent's queue instead of failing; at a full ceiling the
//!   children of running tasks wait and new work is refused first.
//! - **Watchdog and compensation** (`Builder::watchdog`): stalls reported
//!   with the task's name and spawn site (`Handle::stalls()`), and the
//!   stuck worker's queue handed to a replacement thread.
//! - **Lost tasks** (`Builder::on_lost_task`) and the **idle report**
//!   (`Builder::idle_report`, `Handle::idle_tasks()`).
//! - **Resources** (`bulwark::resource`): `track` any value as a handle
//!   that knows its holder task and the line that took it; budgets per
//!   kind (`Builder::resource_budget`); orphans and long holds reported;
//!   a `Pool` whose leases come back on every path; the runtime's own
//!   sockets as the kind `socket`, with a budget.
//! - **Metrics endpoint** (`Builder::metrics_endpoint`): Prometheus or
//!   OpenMetrics at `/metrics`, live tasks at `/tasks`, `/stalls`,
//!   `/leaks`, `/health`, from a thread of its own that answers while every
//!   worker is stuck; `Runtime::metrics()` and `Handle::tasks()` read the
//!   same books from code.
//!
//! # Examples
//!
//! A tokio builder chain ports by renaming:
//!
//! ```rust
//! use bulwark::runtime::Builder;
//!
//! let rt = Builder::new_multi_thread()
//!     .worker_threads(2)
//!     .thread_name("svc")
//!     .enable_all()
//!     .build()?;
//! assert_eq!(rt.block_on(async { bulwark::spawn(async { 6 * 7 }).await.unwrap() }), 42);
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! A refused spawn is a `JoinError`, not a panic:
//!
//! ```rust
//! let rt = bulwark::runtime::Builder::new_multi_thread()
//!     .worker_threads(1)
//!     .max_tasks(1)
//!     .build()?;
//! rt.block_on(async {
//!     let (tx, rx) = tokio::sync::oneshot::channel::<()>();
//!     let first = bulwark::spawn(async move { rx.await.ok() });
//!     let second = bulwark::spawn(async { 1 });
//!     let err = second.await.unwrap_err();
//!     assert!(err.is_rejected() && !err.is_cancelled());
//!     tx.send(()).unwrap();
//!     first.await.unwrap();
//! });
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! On the current-thread runtime, tasks run on its worker even while no
//! `block_on` runs:
//!
//! ```rust
//! let rt = bulwark::runtime::Builder::new_current_thread().build()?;
//! let (tx, rx) = std::sync::mpsc::channel();
//! rt.spawn(async move {
//!     tx.send(std::thread::current().name().map(String::from)).unwrap();
//! });
//! assert_eq!(rx.recv().unwrap().as_deref(), Some("bulwark-worker-0"));
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! An entry point (a `main` that serves until its listener fails):
//!
//! ```no_run
//! # async fn serve(_stream: bulwark::net::TcpStream) {}
//! #[bulwark::main(worker_threads = 4, max_tasks = 100_000)]
//! async fn main() -> std::io::Result<()> {
//!     let listener = bulwark::net::TcpListener::bind("0.0.0.0:8080").await?;
//!     loop {
//!         let (stream, _) = listener.accept().await?;
//!         bulwark::spawn(serve(stream));
//!     }
//! }
//! ```
