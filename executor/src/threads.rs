//! Starting worker threads: the runtime's own at build, one per seat, a
//! replacement later for a seat whose holder is stuck in a poll (the
//! watchdog's compensation), and a successor for a seat whose holder gives
//! it away to block (`block_in_place`).
//!
//! Above the scheduler (which makes a worker's queue, parker and slot) and
//! the context (which a worker thread enters), below the runtime and the
//! guards that start workers. Every thread's join handle goes into
//! `Shared::threads`, where shutdown finds it.

use crate::context;
use crate::scheduler::seat::Holder;
use crate::scheduler::{worker, Shared, WorkerStart};
use std::io;
use std::sync::atomic::Ordering::Release;
use std::sync::{mpsc, Arc};
use std::thread;

/// The role of the workers a runtime starts at build.
pub(crate) const ROLE_WORKER: &str = "worker";
/// The role of a thread started to take over a stuck worker's seat.
pub(crate) const ROLE_REPLACEMENT: &str = "replacement";
/// The role of a thread a worker gave its seat to (`block_in_place`).
pub(crate) const ROLE_HANDOVER: &str = "handover";

/// Starts the thread of worker `index` at build, named `{name}-{index}`,
/// holding its seat in generation 0.
pub(crate) fn start_worker(shared: &Arc<Shared>, index: usize) -> io::Result<()> {
    let slot = shared.admit.books().add_worker(ROLE_WORKER);
    let start = WorkerStart {
        index,
        holder: shared.remotes[index].seat.holder(),
        slot,
    };
    let name = format!("{}-{index}", shared.thread_name);
    shared.thread_started();
    let thread_shared = shared.clone();
    match thread::Builder::new()
        .name(name)
        .spawn(move || serve(thread_shared, start))
    {
        Ok(thread) => {
            shared.keep_thread(thread);
            Ok(())
        }
        Err(e) => {
            shared.thread_ended();
            Err(e)
        }
    }
}

/// Starts a thread that takes over seat `index` from its holder, which is
/// stuck inside a poll. Returns false if the seat could not be taken (the
/// poll ended meanwhile, or its task was queueing work that instant): the
/// thread then ends at once, and the watchdog tries again at its next look
/// if the worker is still stuck.
///
/// The thread is started first and told to go only once the seat is taken,
/// so a thread that cannot start leaves the seat with its holder.
pub(crate) fn start_replacement(shared: &Arc<Shared>, index: usize) -> io::Result<bool> {
    start_successor(shared, index, ROLE_REPLACEMENT, "r", |seat| seat.take())
}

/// Starts a thread that takes seat `index` over from `holder`, the calling
/// thread, which gives it away from inside a poll (`block_in_place`).
/// Returns false if the seat was not given (the watchdog took it first, or
/// the runtime shuts down). As for a replacement, the thread is started
/// before the seat is given, so a thread that cannot start (an error)
/// leaves the seat with its holder.
pub(crate) fn start_handover(
    shared: &Arc<Shared>,
    index: usize,
    holder: &Arc<Holder>,
) -> io::Result<bool> {
    start_successor(shared, index, ROLE_HANDOVER, "h", |seat| {
        seat.hand_over(holder)
    })
}

/// Starts a thread named `{name}-{index}{suffix}`, playing `role`, that
/// serves seat `index` as the holder `give` returns; if `give` returns none,
/// the thread ends at once.
fn start_successor(
    shared: &Arc<Shared>,
    index: usize,
    role: &'static str,
    suffix: &str,
    give: impl FnOnce(
        &crate::scheduler::seat::Seat<crate::scheduler::worker::Role>,
    ) -> Option<Arc<Holder>>,
) -> io::Result<bool> {
    if shared.is_shutdown() {
        return Ok(false);
    }
    let books = shared.admit.books();
    let slot = books.add_worker(role);
    let (go_tx, go_rx) = mpsc::sync_channel::<Option<Arc<Holder>>>(1);
    let name = format!("{}-{index}{suffix}", shared.thread_name);
    shared.thread_started();
    let thread_shared = shared.clone();
    let thread_slot = slot.clone();
    let spawned = thread::Builder::new()
        .name(name)
        .spawn(move || match go_rx.recv() {
            Ok(Some(holder)) => serve(
                thread_shared,
                WorkerStart {
                    index,
                    holder,
                    slot: thread_slot,
                },
            ),
            _ => {
                thread_shared.admit.books().retire_worker(&thread_slot);
                thread_shared.thread_ended();
            }
        });
    let thread = match spawned {
        Ok(thread) => thread,
        Err(e) => {
            books.retire_worker(&slot);
            shared.thread_ended();
            return Err(e);
        }
    };
    let given = give(&shared.remotes[index].seat);
    let took = given.is_some();
    if took {
        // The watchdog now watches the new thread for this seat.
        shared.remotes[index].occupant.store(slot.index(), Release);
    }
    // The thread waits on this; it cannot be gone. The channel orders
    // everything the seat's last holder did to it before the new thread's
    // first look.
    let _ = go_tx.send(given);
    shared.keep_thread(thread);
    Ok(took)
}

/// A worker thread's life: enters the runtime, serves its seat, and when it
/// ends, gives its slot in the books back for the next replacement if it
/// lost the seat (the replacement has its own).
fn serve(shared: Arc<Shared>, start: WorkerStart) {
    let index = start.index;
    let slot = start.slot.clone();
    shared.remotes[index].occupant.store(slot.index(), Release);
    let held = {
        let _runtime = context::enter_runtime(&shared);
        bulwark_io::driver::set_thread_timer_shard(Some(index));
        worker::run(shared.clone(), start)
    };
    if !held {
        shared.admit.books().retire_worker(&slot);
    }
    shared.thread_ended();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{Runtime, Watchdog};
    use std::time::{Duration, Instant};

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// A replacement takes over the seat of a worker stuck in a poll, LIFO
    /// slot included: the task its stuck task spawned last (which no other
    /// worker could steal) runs before the stuck poll returns, and the stuck
    /// thread exits once it does.
    #[test]
    fn a_replacement_serves_a_stuck_workers_lifo_slot_and_the_stuck_thread_exits() {
        // Compensating, but too slow to step in itself: this test does.
        let rt = Runtime::builder()
            .worker_threads(1)
            .thread_name("thr-test")
            .watchdog(Watchdog::new(Duration::from_secs(600)))
            .build()
            .unwrap();
        let shared = rt.handle().shared.clone();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (child_tx, child_rx) = mpsc::channel::<()>();
        let stuck = rt.spawn(async move {
            // Into this worker's LIFO slot: only its seat's holder runs it.
            drop(crate::spawn(async move { child_tx.send(()).unwrap() }));
            let _ = release_rx.recv_timeout(Duration::from_secs(20));
        });
        if !crate::scheduler::seat::supported() {
            eprintln!("membarrier is not available here: no replacement can take a seat");
            release_tx.send(()).unwrap();
            rt.block_on(stuck).unwrap();
            return;
        }
        wait_for("the stuck task's poll", || shared.remotes[0].seat.is_lent());
        assert!(
            child_rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "the child ran while its worker was stuck, with no replacement"
        );
        assert!(start_replacement(&shared, 0).unwrap());
        assert_eq!(shared.live_threads(), 2);
        child_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the replacement to run the child from the LIFO slot");
        release_tx.send(()).unwrap();
        rt.block_on(stuck).unwrap();
        wait_for("the replaced thread to exit", || shared.live_threads() == 1);
        let roles: Vec<_> = shared
            .admit
            .books()
            .workers()
            .iter()
            .map(|w| w.role())
            .collect();
        assert_eq!(roles, ["worker", "replacement"]);
        // The runtime goes on serving on its one seat.
        assert_eq!(rt.block_on(rt.spawn(async { 5 })).unwrap(), 5);
    }

    /// A seat whose holder is between polls (here: asleep) is not taken.
    #[test]
    fn an_idle_worker_is_not_replaced() {
        let rt = Runtime::builder()
            .worker_threads(1)
            .watchdog(Watchdog::new(Duration::from_secs(600)))
            .build()
            .unwrap();
        let shared = rt.handle().shared.clone();
        assert!(!shared.remotes[0].seat.is_lent());
        if crate::scheduler::seat::supported() {
            assert!(!start_replacement(&shared, 0).unwrap());
            wait_for("the unneeded thread to end", || shared.live_threads() == 1);
        }
        drop(rt);
        assert!(!start_replacement(&shared, 0).unwrap());
    }
}
