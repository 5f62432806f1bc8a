//! Starting worker threads: the runtime's own at build, and more later for a
//! role (the watchdog's replacement for a worker stuck in a poll).
//!
//! Above the scheduler (which makes a worker's queue, parker and slot) and
//! the context (which a worker thread enters), below the runtime and the
//! guards that start workers. Every thread's join handle goes into
//! `Shared::threads`, where shutdown finds it.

use crate::context;
use crate::scheduler::{worker, Shared};
use std::io;
use std::sync::Arc;
use std::thread;

/// The role of the workers a runtime starts at build.
pub(crate) const ROLE_WORKER: &str = "worker";

/// Starts one more worker thread for `role`, named `{name}-{index}`.
///
/// Errors if every worker slot the runtime has room for is in use, if the
/// runtime is shutting down, or with the OS error if the thread cannot be
/// started (its slot is then lost; the runtime keeps the workers it has).
pub(crate) fn start_worker(shared: &Arc<Shared>, role: &'static str, name: &str) -> io::Result<()> {
    let Some(start) = shared.claim_worker(role) else {
        return Err(io::Error::other(
            "cannot start a worker: the runtime is shutting down, or every worker slot it has \
             room for is in use",
        ));
    };
    let index = start.index;
    let mut threads = shared.threads.lock();
    let thread_shared = shared.clone();
    let thread = thread::Builder::new()
        .name(format!("{name}-{index}"))
        .spawn(move || {
            let _runtime = context::enter_runtime(&thread_shared);
            bulwark_io::driver::set_thread_timer_shard(Some(index));
            worker::run(thread_shared, start)
        })?;
    threads.push(thread);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Runtime;
    use std::sync::mpsc;
    use std::time::Duration;

    /// A worker started after build takes work while every original worker
    /// is stuck in a poll: the watchdog's replacement, in miniature.
    #[test]
    fn a_worker_started_after_build_runs_tasks_while_the_others_are_stuck() {
        let rt = Runtime::builder().worker_threads(1).build().unwrap();
        let shared = rt.handle().shared.clone();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let stuck = rt.spawn(async move {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv_timeout(Duration::from_secs(20));
        });
        started_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the stuck task to start");
        start_worker(&shared, "replacement", "test-extra").expect("room for one more");
        assert_eq!(shared.workers(), 2);
        let roles: Vec<_> = shared
            .admit
            .books()
            .workers()
            .iter()
            .map(|w| w.role())
            .collect();
        assert_eq!(roles, ["worker", "replacement"]);
        let (done_tx, done_rx) = mpsc::channel();
        let _other = rt.spawn(async move { done_tx.send(()).unwrap() });
        done_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the new worker to run a task while the first is stuck");
        release_tx.send(()).unwrap();
        rt.block_on(stuck).unwrap();
    }

    #[test]
    fn starting_more_workers_than_there_is_room_for_is_an_error() {
        let rt = Runtime::builder().worker_threads(1).build().unwrap();
        let shared = rt.handle().shared.clone();
        let mut started = 0;
        while start_worker(&shared, "replacement", "test-extra").is_ok() {
            started += 1;
            assert!(started <= 64, "no bound on workers started after build");
        }
        assert_eq!(started, 4, "one worker leaves room for four more");
        drop(rt);
        assert!(start_worker(&shared, "replacement", "test-extra").is_err());
    }
}
