//! The bulwark executor: tasks, admission, the work-stealing scheduler, the
//! blocking pool and `Runtime`.
//!
//! Most users reach this crate through the `bulwark` facade; see its docs.
//! Layering: this crate uses `bulwark-io` (the driver, parking, timers) and
//! `bulwark-metrics` (the books), never the other way.
//!
//! # Module order
//!
//! Inside the crate the modules point one way too; each imports only from
//! the ones listed before it:
//!
//! 1. `sync`: the switch between std's atomics and loom's; `clock`, the
//!    process-wide nanosecond clock.
//! 2. [`task`]: the raw task (state word, harness, waker, join handle,
//!    registry) and the task types users hold. It knows its scheduler only
//!    through the `Schedule` trait.
//! 3. `admission`: the policy, each task's admission ticket, and every
//!    admission decision (spawn, wake, dequeue, finish, cancel, shutdown).
//! 4. `blocking`: the blocking pool, with a `Schedule` of its own.
//! 5. `scheduler`: the shared runtime state, the workers, the idle protocol,
//!    and `Sched`, the scheduler value each task carries.
//! 6. `context`: which runtime a thread is in.
//! 7. `threads`: starting worker threads, at build and later for a role.
//! 8. [`spawn`]: the spawn path and the spawning API (`spawn`, `Builder`).
//! 9. [`runtime`]: `Runtime`, its `Builder` and `Handle`.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

mod admission;
mod blocking;
mod clock;
mod context;
pub mod runtime;
mod scheduler;
pub mod spawn;
mod sync;
pub mod task;
mod threads;

pub use admission::Admission;
pub use runtime::Runtime;
pub use spawn::{spawn, try_spawn};

/// Compile-time checks that the public types can cross threads.
#[allow(dead_code)]
fn assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Runtime>();
    is::<runtime::Handle>();
    is::<task::JoinHandle<()>>();
    is::<task::JoinError>();
    is::<task::Id>();
}
