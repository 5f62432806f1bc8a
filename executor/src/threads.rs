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
