//! The bulwark executor: tasks, the work-stealing scheduler, the blocking
//! pool and `Runtime`.
//!
//! Most users reach this crate through the `bulwark` facade; see its docs.
//! Layering: this crate uses `bulwark-io` (parking, later the driver) and
//! `bulwark-metrics` (the books), never the other way.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

mod admission;
mod blocking;
mod context;
pub mod runtime;
mod scheduler;
mod sync;
pub mod task;

pub use admission::Admission;
pub use runtime::Runtime;
pub use task::{spawn, try_spawn};

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
