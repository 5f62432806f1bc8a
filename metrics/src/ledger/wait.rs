//! [`WaitSlot`]: an async waiter's place in a kind's wait list.
//!
//! # States
//!
//! The slot's `state` moves once, from `WAITING` to one of the three others,
//! and (only by its owner's `cancel`) from `GRANTED` to `CANCELLED`:
//!
//! - `WAITING`: in the wait list. Only here may the ledger admit or close it.
//! - `GRANTED`: the ledger handed it a permit (`admit`). The owner now holds
//!   a permit and must release it (or wrap it in a `Permit`).
//! - `CANCELLED`: the owner gave up (`cancel`). A later `admit` declines, so
//!   the permit goes to the next waiter.
//! - `CLOSED`: the kind was closed while it waited. No permit, no release.
//!
//! The waker sits behind a mutex; the state is read under that mutex in
//! `register` and changed before the mutex is taken in `admit`/`close`, so a
//! wake is never lost (see `register`). Wakers are cloned, dropped and woken
//! outside the mutex: a waker that panics leaves nothing locked or poisoned.

use super::Waiter;
use crate::sync::{AtomicU8, Mutex, Ordering};
use std::fmt;
use std::sync::Arc;
use std::task::Waker;

use Ordering::{AcqRel, Acquire};

/// In the wait list; the ledger may admit or close it.
const WAITING: u8 = 0;
/// Granted a permit, which its owner holds and must release.
const GRANTED: u8 = 1;
/// Given up by its owner; admits decline from now on.
const CANCELLED: u8 = 2;
/// The kind closed while it waited: no permit, nothing to release.
const CLOSED: u8 = 3;

/// An async waiter's place in a [`Kind`](super::Kind)'s wait list: what a
/// future waiting for a permit registers its waker in.
///
/// [`Kind::acquire`](super::Kind::acquire) is built on it; the executor's
/// `spawn_wait` uses it directly.
pub struct WaitSlot {
    state: AtomicU8,
    waker: Mutex<Option<Waker>>,
}

impl fmt::Debug for WaitSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state.load(Acquire) {
            WAITING => "waiting",
            GRANTED => "granted",
            CANCELLED => "cancelled",
            _ => "closed",
        };
        f.debug_struct("WaitSlot").field("state", &state).finish()
    }
}

impl Default for WaitSlot {
    fn default() -> Self {
        WaitSlot::new()
    }
}

impl WaitSlot {
    /// A slot waiting, with no waker yet.
    pub fn new() -> WaitSlot {
        WaitSlot {
            state: AtomicU8::new(WAITING),
            waker: Mutex::new(None),
        }
    }

    /// True once a permit was handed to this slot (and not cancelled since).
    pub fn is_granted(&self) -> bool {
        // Acquire: pairs with the AcqRel CAS in `admit`, so what the granter
        // did before handing the permit over (a pool putting a resource
        // back, say) is visible to the one woken.
        self.state.load(Acquire) == GRANTED
    }

    /// True once the kind was closed while this slot waited.
    pub fn is_closed(&self) -> bool {
        self.state.load(Acquire) == CLOSED
    }

    /// Leaves `waker` to be woken when the wait ends. Returns true while the
    /// slot still waits (the caller returns `Pending`), false once it was
    /// granted, closed or cancelled (the caller looks at which).
    ///
    /// No wake is lost: the state is read under the waker's lock, and
    /// `admit`/`close` change the state before they take that lock. Either
    /// this sees the change, or the change's lock comes after ours and finds
    /// the waker.
    pub fn register(&self, waker: &Waker) -> bool {
        // Cloned before locking: a clone runs foreign code.
        let mut fresh = Some(waker.clone());
        let old = {
            let mut slot = self.waker.lock();
            if self.state.load(Acquire) != WAITING {
                None
            } else {
                match &*slot {
                    Some(w) if w.will_wake(waker) => None,
                    _ => std::mem::replace(&mut *slot, fresh.take()),
                }
            }
        };
        // Dropped outside the lock (a waker's drop is foreign code too).
        drop(old);
        drop(fresh);
        self.state.load(Acquire) == WAITING
    }

    /// The waiting future is dropped: give its place away. Returns true only
    /// if a permit had been granted to this slot, which the caller must then
    /// release; false if it was still waiting (its turn passes on), closed,
    /// or cancelled before. Calling it again returns false.
    pub fn cancel(&self) -> bool {
        // AcqRel swap: exactly one of `admit`'s CAS and this swap comes
        // first. If the CAS did, this sees GRANTED and owns the permit; if
        // this did, the CAS fails and `admit` declines. A second cancel sees
        // CANCELLED, so a permit is never released twice.
        let was = self.state.swap(CANCELLED, AcqRel);
        let granted = was == GRANTED;
        // The waker is of no use now; drop it outside the lock.
        let old = self.waker.lock().take();
        drop(old);
        granted
    }

    /// Moves WAITING to `to` and wakes the registered waker, outside the
    /// lock. False if the slot was no longer waiting.
    fn finish(&self, to: u8) -> bool {
        // AcqRel: Release publishes what the granter did before (see
        // `is_granted`); Acquire orders this after an owner's `cancel`.
        if self
            .state
            .compare_exchange(WAITING, to, AcqRel, Acquire)
            .is_err()
        {
            return false;
        }
        let waker = self.waker.lock().take();
        if let Some(w) = waker {
            w.wake();
        }
        true
    }
}

impl Waiter for WaitSlot {
    fn admit(self: Arc<Self>) -> bool {
        self.finish(GRANTED)
    }

    fn close(self: Arc<Self>) {
        self.finish(CLOSED);
    }

    fn is_cancelled(&self) -> bool {
        self.state.load(Acquire) == CANCELLED
    }
}
