//! `block_in_place`: a task blocks its thread, and the worker it was hands
//! its seat (queue, LIFO slot, deferred tasks, share of the driver) to a new
//! thread first, so the tasks queued behind it run meanwhile.
//!
//! This is the watchdog's compensation (`threads::start_replacement`)
//! started by the worker itself, at once, instead of by the watchdog after
//! its threshold: `threads::start_handover` starts a thread, the seat is
//! given to it (`Seat::hand_over`), and the calling thread runs the closure,
//! finishes its task's poll, and then leaves the worker role and ends, as a
//! thread whose stuck poll was compensated does. tokio's `block_in_place`
//! does the same with its worker's core.
//!
//! The hand-over needs no `membarrier(2)` and no watchdog: the barrier is
//! how a *taker* learns that the holder, another thread, is not touching the
//! seat; here the holder is the caller, which knows it, so it works where
//! compensation is unsupported or off. With compensation on, the watchdog
//! may try to take the same seat at the same moment; the seat's lock orders
//! the two, and the loser gives nothing (see `Seat::hand_over` and its loom
//! model).
//!
//! Module order: after `threads` (it starts a thread) and `context`.

use crate::context;
use crate::scheduler::worker;
use crate::threads;

/// Runs the blocking closure `f` on this thread, as tokio's
/// `task::block_in_place`: called from a task on a worker, the worker's role
/// (its queue, LIFO slot and share of waiting in the IO driver) is first
/// handed to a new thread, so the other tasks keep running while `f`
/// blocks; this thread finishes the task's current poll after `f` returns
/// and then ends (the task itself goes on, on whichever worker runs it
/// next). Anywhere else (a blocking-pool thread, `block_on`'s thread, a
/// thread outside any runtime, or inside another `block_in_place`) it just
/// runs `f`.
///
/// Inside `f` the runtime stays current but is no longer being driven by
/// this thread: `Handle::current().block_on(..)` works there, as on tokio.
///
/// Prefer [`spawn_blocking`](crate::spawn::spawn_blocking), which needs no
/// hand-over: `block_in_place` is for code that must block where it stands
/// (it holds borrows that cannot move to another thread).
///
/// What it costs and how it differs from tokio's:
/// - Each call on a worker starts a thread (tokio reuses blocking-pool
///   threads, and takes its core back if the new thread has not started);
///   the thread that blocked ends with the poll. It is counted in the
///   books (`Snapshot::blocks_in_place`); its slot shows the poll closed
///   as the hand-over is made, so the watchdog does not report the
///   blocking as a stall.
/// - The threads it starts are bounded: while the runtime runs
///   `max_blocking_threads` threads beyond its workers (hand-overs still
///   blocking, stuck workers the watchdog replaced), `f` runs in place
///   without a hand-over, and the worker blocks (the watchdog compensates
///   if it has room). Those threads count against the watchdog's
///   `max_extra_workers` too.
/// - It never panics: tokio panics when called on its current-thread
///   runtime; bulwark has no runtime where handing over is impossible.
/// - A task whose poll called it runs on after `f` on this thread, but its
///   wakes and spawns go to the global queue (this thread is no longer a
///   worker).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let rt = bulwark::Runtime::builder().worker_threads(1).build().unwrap();
/// rt.block_on(async {
///     let ticker = bulwark::spawn(async {
///         for _ in 0..3 {
///             bulwark::time::sleep(Duration::from_millis(1)).await;
///         }
///     });
///     let blocker = bulwark::spawn(async {
///         // The one worker's queue goes to a new thread; the ticker runs
///         // there while this sleeps.
///         bulwark::task::block_in_place(|| std::thread::sleep(Duration::from_millis(50)));
///         "done"
///     });
///     ticker.await.unwrap();
///     assert_eq!(blocker.await.unwrap(), "done");
/// });
/// ```
pub fn block_in_place<F, R>(f: F) -> R
where
    F: FnOnce() -> R,
{
    worker::with_current(|w| {
        let Some(cx) = w else { return };
        let Some((index, holder)) = cx.seat_to_give() else {
            return;
        };
        let shared = &cx.shared;
        let beyond_workers = shared.live_threads().saturating_sub(shared.workers());
        if beyond_workers >= shared.blocking.max_threads() {
            // At the bound: block in place (module docs, and the doc above).
            return;
        }
        match threads::start_handover(shared, index, holder) {
            Ok(true) => {
                cx.seat_given_away();
                shared.admit.books().count_block_in_place();
            }
            // The watchdog took the seat first (a replacement serves it and
            // this thread leaves when the poll returns), or the runtime is
            // shutting down: nothing to hand over.
            Ok(false) => {}
            Err(e) => {
                // No thread could be started: the seat stays, and the worker
                // blocks in `f` as it would without a hand-over.
                tracing::warn!(
                    target: "bulwark::block_in_place",
                    seat = index,
                    error = %e,
                    "block_in_place could not start a thread to take the worker's queue; \
                     blocking the worker",
                );
            }
        }
    });
    // As tokio: inside `f` this thread drives no runtime, so a `block_on`
    // there is allowed; restored when `f` returns or unwinds.
    let _exit = context::exit_runtime();
    f()
}
