//! The bulwark driver layer: the reactor, the timer wheels, and the sockets
//! and timers built on them.
//!
//! - [`driver`]: one `mio::Poll` per runtime and its timer wheels (one shard
//!   per worker, each behind its own lock); a worker with nothing to do
//!   blocks in it ([`park`]), so one thread serves every socket and timer
//!   while the workers are idle.
//! - [`time`]: `sleep`, `timeout`, `interval` on the wheels.
//! - [`net`]: TCP and UDP sockets registered with the driver, and name
//!   resolution ([`net::lookup_host`]) on the blocking pool.
//! - [`signal`]: Unix signals as streams of wake-ups, delivered through the
//!   driver (`ctrl_c`, `unix::signal`).
//! - [`coop`]: the per-poll budget that makes a hot IO loop yield.
//!
//! The executor sits above this crate: it makes a driver per runtime, parks
//! its workers through [`park::Parker`], gives each worker its timer shard
//! ([`driver::set_thread_timer_shard`]), sets the current driver for the
//! threads in a runtime ([`context::enter`]) and gives each task poll a
//! budget ([`coop::with_budget`]), and lends its blocking pool for name
//! lookups ([`blocking::set_blocking_hook`]). Nothing here knows about
//! tasks; wakers are all it needs.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod blocking;
pub mod context;
pub mod coop;
pub mod driver;
pub mod net;
pub mod park;
pub mod signal;
mod sync;
#[doc(hidden)]
pub mod test_rt;
pub mod time;

#[cfg(not(loom))]
pub use park::DriverSlot;
pub use park::{Parker, Unparker};
