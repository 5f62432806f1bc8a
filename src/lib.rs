//! bulwark: an async runtime for Rust services that stays up under hostile
//! load.
//!
//! It takes the place of tokio's multi-thread runtime in a service's `main`,
//! with tokio's names for the same things: [`Runtime`], [`spawn`],
//! [`task::JoinHandle`], [`task::spawn_blocking`], [`task::yield_now`],
//! [`runtime::Handle`]. Runtime-agnostic crates (`tokio::sync`, `futures`)
//! work unchanged inside its tasks.
//!
//! # What is here
//!
//! - A work-stealing executor: per-worker FIFO queues with a LIFO slot, a
//!   global injector, random-victim stealing, and a parking protocol that
//!   wakes one worker at a time and loses no wake-up.
//! - Tasks as single allocations with a state word; panics are caught per
//!   task and reach the `JoinHandle`; `abort` drops the future.
//! - An IO driver (mio) with per-worker timer shards: [`net`] and [`time`].
//! - Guards: a hard ceiling on live tasks, admission at spawn and at accept
//!   (reject, wait, or shed early on scheduling delay; a connection accepted
//!   is a connection served), per-task deadlines and deadline scopes that
//!   children inherit, fan-out budgets (children over a task's budget, or
//!   at a full ceiling, wait in their parent's queue instead of failing),
//!   and with hyper, a deadline per request ([`hyper::serve_connection`]).
//! - A blocking pool (`spawn_blocking`), capped at 512 threads by default.
//! - Reading the runtime from any thread: [`Runtime::metrics`] and
//!   [`runtime::Handle::tasks`].
//! - Shutdown on drop that drops every unfinished task's future and joins
//!   every thread.
//!
//! - A poll-time watchdog that reports a poll holding its worker past 25 ms
//!   ([`runtime::Watchdog`], [`runtime::Handle::stalls`]).
//! - Lost-task detection: a task left waiting with no waker is reported
//!   and, by policy, cancelled ([`runtime::LostTask`],
//!   [`runtime::Handle::lost_tasks`]); tasks idle past a threshold are
//!   listed ([`runtime::Builder::idle_report`],
//!   [`runtime::Handle::idle_tasks`]).
//!
//! - A metrics endpoint on its own thread
//!   ([`runtime::Builder::metrics_endpoint`]): Prometheus or OpenMetrics
//!   text at `/metrics`, the live tasks at `/tasks`, stalls, leaks, a
//!   readiness probe at `/health` and a page at `/`; it answers while every
//!   worker is stuck.
//!
//! # Example
//!
//! ```
//! use bulwark::Runtime;
//!
//! let rt = Runtime::new()?;
//! let total = rt.block_on(async {
//!     let handles: Vec<_> = (0..10u64).map(|i| bulwark::spawn(async move { i * i })).collect();
//!     let mut sum = 0;
//!     for h in handles {
//!         sum += h.await.expect("task panicked");
//!     }
//!     sum
//! });
//! assert_eq!(total, 285);
//! # Ok::<(), std::io::Error>(())
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

pub use bulwark_executor::spawn::{spawn, try_spawn};
pub use bulwark_executor::Runtime;
pub use bulwark_macros::{main, test};

/// The runtime, its builder and handle (as `tokio::runtime`).
pub mod runtime {
    pub use bulwark_executor::runtime::{
        Admission, Builder, EnterGuard, Handle, LostTask, Runtime, TryCurrentError, Watchdog,
        DEFAULT_MAX_TASKS,
    };
}

/// Tasks: spawning, joining, yielding (as `tokio::task`).
pub mod task {
    pub use bulwark_executor::scope::{scope_deadline, ScopeDeadline};
    pub use bulwark_executor::spawn::{
        spawn, spawn_blocking, try_spawn, Builder, SpawnError, SpawnWait,
    };
    pub use bulwark_executor::task::{
        deadline, id, lift_deadline, try_id, yield_now, Id, JoinError, JoinHandle,
    };
}

/// Time: `sleep`, `sleep_until`, `timeout`, `interval` (as `tokio::time`).
///
/// Timers live in the runtime's timer wheel (1 ms resolution; a deadline is
/// rounded up, so a timer never fires early). They must be made inside a
/// runtime (a task, `block_on`, or under `Runtime::enter`).
///
/// # Examples
///
/// ```
/// use bulwark::time::{interval, sleep, timeout, Duration, Instant};
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let start = Instant::now();
///     sleep(Duration::from_millis(10)).await;
///     assert!(start.elapsed() >= Duration::from_millis(10));
///
///     let never = std::future::pending::<()>();
///     assert!(timeout(Duration::from_millis(5), never).await.is_err());
///
///     let mut ticks = interval(Duration::from_millis(2));
///     ticks.tick().await; // the first tick is at once
///     ticks.tick().await;
/// });
/// ```
///
/// Paused time, for tests (`pause`, `advance`, `resume`, and
/// `runtime::Builder::start_paused`): the timers and task deadlines follow
/// a clock that stands still until advanced, and jumps to the next timer
/// when nothing else in the runtime can run. `Instant::now()` still reads
/// real time (it is the standard library's `Instant`).
///
/// ```
/// use bulwark::time::{advance, pause, sleep, Duration};
/// use std::time::Instant;
///
/// let rt = bulwark::Runtime::new().unwrap();
/// let real = Instant::now();
/// rt.block_on(async {
///     pause();
///     sleep(Duration::from_secs(3600)).await; // jumps: nothing else runs
///     let nap = bulwark::spawn(sleep(Duration::from_secs(10)));
///     advance(Duration::from_secs(10)).await;
///     nap.await.unwrap();
/// });
/// assert!(real.elapsed() < Duration::from_secs(60));
/// ```
pub mod time {
    pub use bulwark_io::time::{
        advance, error, interval, interval_at, pause, resume, sleep, sleep_until, timeout,
        timeout_at, Duration, Instant, Interval, MissedTickBehavior, Sleep, Timeout,
    };
}

/// Networking: TCP and UDP sockets on the runtime's driver, and name
/// resolution (as `tokio::net`).
///
/// Constructors take tokio's [`ToSocketAddrs`](net::ToSocketAddrs): an
/// address or an IP literal is used at once, and a host name is resolved on
/// the blocking pool ([`lookup_host`](net::lookup_host)), never on a worker.
///
/// `TcpStream` implements both `tokio::io::{AsyncRead, AsyncWrite}` and
/// `futures_io::{AsyncRead, AsyncWrite}`, so tokio-util codecs and
/// futures-based code work on it, and (with the `hyper` feature)
/// `hyper::rt::{Read, Write}`.
///
/// `TcpListener::accept` rides out fd exhaustion: on EMFILE, ENFILE, ENOBUFS
/// or ENOMEM it backs off (1 ms doubling to 100 ms) instead of failing or
/// spinning, and counts it in `Snapshot::accept_backoffs`.
///
/// # Examples
///
/// ```
/// use bulwark::net::{TcpListener, TcpStream};
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
///     let addr = listener.local_addr().unwrap();
///     bulwark::spawn(async move {
///         let (mut conn, _) = listener.accept().await.unwrap();
///         let mut buf = [0u8; 5];
///         conn.read_exact(&mut buf).await.unwrap();
///         conn.write_all(&buf).await.unwrap();
///     });
///     let mut client = TcpStream::connect(addr).await.unwrap();
///     client.write_all(b"hello").await.unwrap();
///     let mut back = [0u8; 5];
///     client.read_exact(&mut back).await.unwrap();
///     assert_eq!(&back, b"hello");
/// });
/// ```
pub mod net {
    pub use bulwark_io::net::*;
}

/// Signals (as `tokio::signal`): [`ctrl_c`](signal::ctrl_c), and any Unix
/// signal as a stream of wake-ups ([`unix::signal`](signal::unix::signal)),
/// delivered through the runtime's driver.
///
/// The first listener for a signal installs a process-wide handler that
/// stays for the life of the process (the signal's default action, such as
/// ending the process on SIGINT or SIGTERM, no longer happens); every
/// listener for a signal, in every runtime, is woken by each delivery.
///
/// # Examples
///
/// Graceful shutdown, as with tokio:
///
/// ```
/// use bulwark::signal::unix::{signal, SignalKind};
///
/// let rt = bulwark::Runtime::new()?;
/// rt.block_on(async {
///     let mut terminate = signal(SignalKind::terminate())?;
///     let server = bulwark::spawn(std::future::pending::<()>()); // the service
/// #   // SAFETY: SIGTERM has a handler (installed above).
/// #   unsafe { libc::raise(libc::SIGTERM) };
///     terminate.recv().await;
///     server.abort(); // or: stop accepting, drain, then return
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub mod signal {
    pub use bulwark_io::signal::ctrl_c;

    pub mod unix {
        //! Unix signals (as `tokio::signal::unix`): [`signal`], [`SignalKind`],
        //! [`Signal`].

        pub use bulwark_io::signal::unix::{signal, Signal, SignalKind};
    }
}

#[cfg(feature = "hyper")]
pub mod hyper;
pub mod porting;
pub mod resource;

/// What the runtime counts, as read by [`Runtime::metrics`], and the live
/// tasks, as read by [`runtime::Handle::tasks`]; [`exposition`](metrics::exposition)
/// writes a snapshot as Prometheus text, as the metrics endpoint
/// ([`runtime::Builder::metrics_endpoint`]) serves it.
pub mod metrics {
    pub use bulwark_metrics::{
        exposition, HistogramSnapshot, KindSnapshot, LeakKind, LeakReport, Snapshot, StallReport,
        TaskInfo, TaskState, WorkerSnapshot, WorkerState, BUCKET_BOUNDS_NANOS, STALLS_KEPT,
    };
}
