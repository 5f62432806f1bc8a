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
//!    `fanout`: fan-out budgets (each parent's family of live and waiting
//!    children), the cap on waiting children, wasted work.
//! 4. `blocking`: the blocking pool, with a `Schedule` of its own.
//! 5. `scheduler`: the shared runtime state, the workers, the idle protocol,
//!    `Sched`, the scheduler value each task carries, and `lost`: what the
//!    runtime does with tasks that can never finish (lost, long idle).
//! 6. `context`: which runtime a thread is in.
//! 7. [`scope`]: `scope_deadline`, a deadline for part of a task's work.
//! 8. `threads`: starting worker threads, one per seat at build, and a
//!    replacement later for a seat whose holder is stuck.
//! 9. `watchdog`: the thread that sees and reports a poll holding its
//!    worker, and hands the worker's seat to a replacement.
//! 10. [`spawn`](mod@spawn): the spawn path and the spawning API (`spawn`, `Builder`).
//! 11. [`runtime`]: `Runtime`, its `Builder` and `Handle`.
//!
//! # Under loom
//!
//! `RUSTFLAGS="--cfg loom"` builds what loom can model and nothing else:
//! `sync`, `task`, `admission`, the scheduler's idle protocol
//! (`scheduler/idle.rs`) and its seats (`scheduler/seat.rs`). Everything from the scheduler's shared state up
//! (workers, `blocking`, `context`, `threads`, `spawn`, `runtime`) needs
//! the IO driver, which wraps mio and cannot be modelled (bulwark-io leaves
//! it out under loom). This file is the one switch; the modules themselves
//! say `cfg(loom)` only to pick their tests. The models are the `loom_*`
//! tests: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test
//! -p bulwark-executor --lib loom_`.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]
// Under loom the spawn path and the runtime are left out (see above), so
// much of `task` and `admission` has no caller there.
#![cfg_attr(loom, allow(dead_code, unused_imports))]

mod admission;
#[cfg(not(loom))]
mod blocking;
mod clock;
#[cfg(not(loom))]
mod context;
#[cfg(not(loom))]
mod fanout;
#[cfg(not(loom))]
pub mod runtime;
#[cfg(not(loom))]
mod scheduler;
#[cfg(not(loom))]
pub mod scope;
/// Under loom the scheduler is its idle protocol and its seats alone: the
/// shared state and the workers need the driver.
#[cfg(loom)]
mod scheduler {
    pub(crate) mod idle;
    pub(crate) mod seat;
}
#[cfg(not(loom))]
pub mod spawn;
mod sync;
pub mod task;
#[cfg(not(loom))]
mod threads;
#[cfg(not(loom))]
mod watchdog;

pub use admission::Admission;
#[cfg(not(loom))]
pub use runtime::Runtime;
#[cfg(not(loom))]
pub use spawn::{spawn, try_spawn};

/// Compile-time checks that the public types can cross threads.
#[cfg(not(loom))]
#[allow(dead_code)]
fn assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Runtime>();
    is::<runtime::Handle>();
    is::<task::JoinHandle<()>>();
    is::<task::JoinError>();
    is::<task::Id>();
}
