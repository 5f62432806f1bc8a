//! The books of the bulwark runtime.
//!
//! Every layer above writes what it did here, and every reader (the runtime's
//! `metrics()`, the watchdog, the endpoint thread) reads from here, so the
//! books sit at the bottom of the crate graph: `metrics <- io <- executor <-
//! bulwark`.
//!
//! - [`ledger`]: every bounded thing is a budgeted [`Kind`](ledger::Kind)
//!   (tasks, sockets, a user's pooled resources): live count, budget, wait
//!   list, permits and the cancel-safe [`Acquire`](ledger::Acquire) future.
//! - [`Books`]: one runtime's books: the registry of kinds, the worker slots,
//!   the admission state, and the [`Source`] a snapshot is read from.
//! - [`WorkerSlot`]: what one worker publishes (polls begun and ended, the
//!   task in its poll, parked) for a watchdog to spot a stalled poll without
//!   a clock on the hot path; it holds the worker's [`WorkerCounters`].
//! - [`Holdings`]: every live tracked resource handle (kind, holder task,
//!   where and when it was taken), for finding orphans and long holds.
//! - [`Histogram`]: fixed-bucket duration histograms (poll time, scheduling
//!   delay, task lifetime per worker; hold time per resource kind).
//! - [`Snapshot`]: a plain copy of all of it at one moment (`Display` for
//!   a log; `serde::Serialize` with the default `serde` feature).
//! - [`exposition`]: a snapshot as Prometheus or OpenMetrics text.
//! - [`endpoint`]: the metrics endpoint, an HTTP server on its own thread
//!   that reads everything through the books (`/metrics`, `/tasks`,
//!   `/stalls`, `/leaks`, `/health`, `/`), so it answers while every worker
//!   is stuck.
//!
//! Writes on the hot path go to a [`WorkerSlot`] owned by one worker thread:
//! only that thread writes it, so a bump is a plain load and store, not a
//! locked read-modify-write. Writes from anywhere else go to the shared
//! [`SharedCounters`] with `fetch_add`. A [`Snapshot`] merges both.
//!
//! The ledger's atomics go through one switch (`sync`), so that
//! `RUSTFLAGS="--cfg loom"` checks them with loom.

#![deny(missing_docs)]

mod books;
mod counters;
pub mod endpoint;
pub mod exposition;
mod histogram;
mod holdings;
pub mod ledger;
mod snapshot;
mod source;
mod stalls;
mod sync;
mod views;
mod worker;

pub use books::{AcceptPaused, Books};
pub use counters::{Counter, SharedCounters, WorkerCounters};
pub use endpoint::Endpoint;
pub use histogram::{Histogram, HistogramSnapshot, WorkerHistograms, BUCKETS, BUCKET_BOUNDS_NANOS};
pub use holdings::{Holding, Holdings, LeakKind, LeakReport, REPORTED_LONG, REPORTED_ORPHAN};
pub use snapshot::{BlockingSnapshot, DriverSnapshot, KindSnapshot, Snapshot, WorkerSnapshot};
pub use source::{Source, TaskInfo, TaskState};
pub use stalls::{StallReport, STALLS_KEPT};
pub use worker::{WorkerSlot, WorkerState, WorkerView};
