//! The books of the bulwark runtime.
//!
//! Every layer above writes what it did here, and every reader (the runtime's
//! `metrics()`, later the endpoint thread) reads from here, so the books sit at
//! the bottom of the crate graph: `metrics <- io <- executor <- bulwark`.
//!
//! Writes on the hot path go to a [`WorkerCounters`] owned by one worker
//! thread: only that thread writes it, so a bump is a plain load and store, not
//! a locked read-modify-write. Writes from anywhere else go to the shared
//! [`SharedCounters`] with `fetch_add`. A [`Snapshot`] merges both.

#![warn(missing_docs)]

mod books;
mod counters;
pub mod ledger;
mod snapshot;

pub use books::Books;
pub use counters::{Counter, SharedCounters, WorkerCounters};
pub use snapshot::{BlockingSnapshot, DriverSnapshot, Snapshot};
