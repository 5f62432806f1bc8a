//! The one switch between std's atomics and loom's.
//!
//! The task state machine and the parking protocol take their atomics from
//! here, so `RUSTFLAGS="--cfg loom"` swaps in loom's models without a `cfg` in
//! the code that uses them.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicUsize};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicUsize};
