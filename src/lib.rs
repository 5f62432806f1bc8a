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

/// tokio's `join!`, re-exported: it needs no tokio runtime (it polls its
/// futures in the task that awaits it), and works in a crate with no tokio
/// dependency of its own (its expansion names tokio as `$crate`).
///
/// # Examples
///
/// ```
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let (a, b) = bulwark::join!(async { 1 }, async { "two" });
///     assert_eq!((a, b), (1, "two"));
/// });
/// ```
pub use tokio::join;

/// tokio's `try_join!`, re-exported (runtime-free, as [`join!`]).
///
/// # Examples
///
/// ```
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let ok = bulwark::try_join!(async { Ok::<_, &str>(1) }, async { Ok(2) });
///     assert_eq!(ok, Ok((1, 2)));
///     let failed: Result<(u8, u8), &str> =
///         bulwark::try_join!(async { Ok(1) }, async { Err("no") });
///     assert_eq!(failed, Err("no"));
/// });
/// ```
pub use tokio::try_join;

/// tokio's `select!`, re-exported: it needs no tokio runtime (tokio's
/// cooperative budget, which it consults, is unconstrained outside one),
/// and works in a crate with no tokio dependency (its expansion and the
/// proc-macro helpers it calls name tokio only as `$crate`).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let (tx, rx) = bulwark::sync::oneshot::channel();
///     bulwark::spawn(async move { tx.send("done").unwrap() });
///     bulwark::select! {
///         msg = rx => assert_eq!(msg.unwrap(), "done"),
///         _ = bulwark::time::sleep(Duration::from_secs(10)) => panic!("timed out"),
///     }
/// });
/// ```
pub use tokio::select;

/// tokio's `pin!`, re-exported: pins a value on the stack.
///
/// # Examples
///
/// ```
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let fut = async { 3 };
///     bulwark::pin!(fut);
///     assert_eq!((&mut fut).await, 3);
/// });
/// ```
pub use tokio::pin;

/// The runtime, its builder and handle (as `tokio::runtime`).
pub mod runtime {
    pub use bulwark_executor::runtime::{
        Admission, Builder, EnterGuard, Handle, LostTask, Runtime, TryCurrentError, Watchdog,
        DEFAULT_MAX_TASKS,
    };
}

/// Asynchronous IO traits and utilities: tokio's runtime-free ones,
/// re-exported (as `tokio::io`).
///
/// What is here needs no tokio runtime: the traits (`AsyncRead`,
/// `AsyncWrite`, `AsyncBufRead`, `AsyncSeek` and their `Ext` traits),
/// buffering (`BufReader`, `BufWriter`, `BufStream`), `copy`,
/// `copy_bidirectional`, `split`, in-memory pipes (`duplex`, `simplex`),
/// `empty`, `sink`, `repeat`, `ReadBuf`, and std's `Error`, `ErrorKind`,
/// `Result` and `SeekFrom`. They are tokio's own items, so code written
/// against `tokio::io` and crates built on it (tokio-util's codecs) work on
/// bulwark's sockets ([`net::TcpStream`] implements tokio's `AsyncRead` and
/// `AsyncWrite`).
///
/// Left out, because they need tokio's runtime:
/// - `stdin`, `stdout`, `stderr` (tokio runs their reads and writes on its
///   blocking pool; outside a tokio runtime they panic). Read and write
///   standard streams with [`task::spawn_blocking`] and `std::io`.
/// - `Interest`, `Ready` and `unix::AsyncFd` (tokio's reactor). bulwark's
///   sockets have `readable`/`writable` and `try_read`/`try_write`.
///
/// # Examples
///
/// ```
/// use bulwark::io::{self, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let (client, server) = io::duplex(64);
///     let echo = bulwark::spawn(async move {
///         let (read, mut write) = io::split(server);
///         let mut lines = BufReader::new(read).lines();
///         while let Some(line) = lines.next_line().await? {
///             write.write_all(line.to_uppercase().as_bytes()).await?;
///             write.write_all(b"\n").await?;
///         }
///         io::Result::Ok(())
///     });
///     let (mut read, mut write) = io::split(client);
///     write.write_all(b"hello\nbulwark\n").await.unwrap();
///     write.shutdown().await.unwrap(); // end of input: the echo task's loop ends
///     let mut out = String::new();
///     read.read_to_string(&mut out).await.unwrap();
///     assert_eq!(out, "HELLO\nBULWARK\n");
///     echo.await.unwrap().unwrap();
/// });
/// ```
pub mod io {
    pub use tokio::io::{
        copy, copy_bidirectional, copy_bidirectional_with_sizes, copy_buf, duplex, empty, join,
        repeat, simplex, sink, split, AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt,
        AsyncSeek, AsyncSeekExt, AsyncWrite, AsyncWriteExt, BufReader, BufStream, BufWriter, Chain,
        DuplexStream, Empty, Error, ErrorKind, Join, Lines, ReadBuf, ReadHalf, Repeat, Result,
        SeekFrom, SimplexStream, Sink, Split, Take, WriteHalf,
    };
}

/// Synchronization for tasks: `tokio::sync`, re-exported (channels
/// `mpsc`, `oneshot`, `broadcast`, `watch`; `Mutex`, `RwLock`,
/// `Semaphore`, `Notify`, `Barrier`, `OnceCell`...).
///
/// Everything in it is runtime-agnostic: it works inside bulwark tasks with
/// no tokio runtime in the process. Two notes:
/// - `mpsc::Sender::send_timeout` exists only when some crate in the build
///   turns on tokio's `time` feature, and then needs tokio's timer: use
///   `bulwark::time::timeout(d, tx.send(v))` instead.
/// - The `blocking_*` methods (`Mutex::blocking_lock`,
///   `mpsc::Receiver::blocking_recv`...) block the calling thread. tokio
///   panics when they are called inside one of its runtimes; bulwark cannot
///   tell, so called from a task they block its worker (the watchdog reports
///   it). Call them from [`task::spawn_blocking`] or plain threads.
///
/// # Examples
///
/// ```
/// use bulwark::sync::{mpsc, Mutex};
/// use std::sync::Arc;
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let total = Arc::new(Mutex::new(0));
///     let (tx, mut rx) = mpsc::channel(8);
///     for i in 0..4 {
///         let (tx, total) = (tx.clone(), total.clone());
///         bulwark::spawn(async move {
///             *total.lock().await += i;
///             tx.send(i).await.unwrap();
///         });
///     }
///     drop(tx);
///     let mut seen = 0;
///     while rx.recv().await.is_some() {
///         seen += 1;
///     }
///     assert_eq!((seen, *total.lock().await), (4, 6));
/// });
/// ```
pub mod sync {
    pub use tokio::sync::*;
}

/// Tasks: spawning, joining, yielding (as `tokio::task`).
pub mod task {
    pub use bulwark_executor::block_in_place;
    pub use bulwark_executor::join_set::JoinSet;
    pub use bulwark_executor::scope::{scope_deadline, ScopeDeadline};
    pub use bulwark_executor::spawn::{
        spawn, spawn_blocking, try_spawn, Builder, SpawnError, SpawnWait,
    };
    pub use bulwark_executor::task::{
        deadline, id, lift_deadline, try_id, yield_now, AbortHandle, Id, JoinError, JoinHandle,
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
/// when nothing else in the runtime can run. [`time::Instant`] is tokio's
/// kind, not std's: its `now()` reads the runtime's clock, paused or not.
///
/// ```
/// use bulwark::time::{advance, pause, sleep, Duration, Instant};
///
/// let rt = bulwark::Runtime::new().unwrap();
/// let real = std::time::Instant::now();
/// rt.block_on(async {
///     pause();
///     let start = Instant::now();
///     sleep(Duration::from_secs(3600)).await; // jumps: nothing else runs
///     let nap = bulwark::spawn(sleep(Duration::from_secs(10)));
///     advance(Duration::from_secs(10)).await;
///     nap.await.unwrap();
///     assert!(start.elapsed() >= Duration::from_secs(3610));
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
/// use bulwark::io::{AsyncReadExt, AsyncWriteExt};
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
