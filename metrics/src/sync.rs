//! The one switch between the real primitives and loom's models.
//!
//! The ledger's and the books' atomics, fences and locks come from here, so
//! that `RUSTFLAGS="--cfg loom"` swaps every one of them for loom's model
//! (which checks them under every interleaving and every memory ordering loom
//! can explore), and the code above never says `cfg(loom)` itself.
//!
//! `Arc` is not switched: the ledger's waiters are `Arc<dyn Waiter>` with
//! `self: Arc<Self>` receivers, which only std's `Arc` supports, and reference
//! counts are not part of any protocol loom needs to check here.
//!
//! The per-worker counters and worker slots use std's atomics directly: each
//! has a single writer and no cross-field protocol for loom to check.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

/// A mutex whose `lock` reads the same under std and loom.
///
/// Outside loom this is `parking_lot::Mutex` (no poisoning). loom's mutex
/// returns a `LockResult`; a poisoned lock is taken anyway, because nothing
/// in this crate runs foreign code (wakers, waiters) while holding a lock, so
/// a panic can never leave the guarded data half-changed.
pub(crate) struct Mutex<T>(
    #[cfg(not(loom))] parking_lot::Mutex<T>,
    #[cfg(loom)] loom::sync::Mutex<T>,
);

#[cfg(not(loom))]
impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Mutex<T> {
        Mutex(parking_lot::Mutex::new(value))
    }

    pub(crate) fn lock(&self) -> parking_lot::MutexGuard<'_, T> {
        self.0.lock()
    }
}

#[cfg(loom)]
impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Mutex<T> {
        Mutex(loom::sync::Mutex::new(value))
    }

    pub(crate) fn lock(&self) -> loom::sync::MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
