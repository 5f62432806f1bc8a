//! A worker's seat: the role one worker thread plays (its queue, LIFO slot,
//! deferred list and parker), held by one thread at a time, and taken over by
//! a replacement thread while its holder is stuck inside a poll.
//!
//! # The protocol
//!
//! One word says who may touch the seat's value: `generation << 2 | tag`.
//! The generation names the holder: it grows by one at each takeover, so a
//! holder that lost the seat can never mistake its successor's word for its
//! own.
//!
//! - `HELD`: the holder is between polls. Only it touches the value.
//! - `LENT`: the holder is inside a poll ([`lend`](Seat::lend), a plain
//!   store). The value may be taken ([`take`](Seat::take), a CAS from
//!   `LENT`), and the holder itself touches it only through
//!   [`with_lent`](Seat::with_lent), which flips the word to `BUSY` and back.
//! - `BUSY`: the holder, inside a poll, is queueing a task on its own queue.
//!   Nobody may take the value.
//!
//! When the poll returns, the holder takes the value back with a CAS from its
//! own `LENT` word ([`reclaim`](Seat::reclaim)). If that fails, the value
//! was taken while the poll ran: the thread has lost its seat and must never
//! touch the value again. Every hand-over is one successful CAS on the word,
//! so exactly one thread holds the value at any time, and the Acquire of the
//! CAS sees every write the previous holder made before its Release.
//!
//! The cost on the poll path is one plain store and one uncontended CAS per
//! poll, and a CAS and a store per task queued locally from inside a poll:
//! the price of letting another thread take a worker's queue while the
//! worker cannot hand it over itself. (Go's sysmon takes a P from a thread
//! in a system call the same way: a CAS on the P's status, which the thread
//! tries to CAS back when the call returns.)

use crate::sync::AtomicU64;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

const HELD: u64 = 0;
const LENT: u64 = 1;
const BUSY: u64 = 2;
const TAG: u64 = 0b11;
const GEN_SHIFT: u32 = 2;

/// One worker role and the word that says who holds it. Aligned apart so
/// the holder's per-poll stores never share a line with another seat.
#[repr(align(128))]
pub(crate) struct Seat<T> {
    word: AtomicU64,
    value: std::cell::UnsafeCell<T>,
}

// SAFETY: the value is only touched by the thread that holds the seat, as the
// word says (module docs); every hand-over from one thread to another is a
// successful CAS with Acquire after the previous holder's Release, so the
// value moves between threads as if sent: `T: Send` is what that needs.
unsafe impl<T: Send> Sync for Seat<T> {}

fn word(gen: u64, tag: u64) -> u64 {
    (gen << GEN_SHIFT) | tag
}

impl<T> Seat<T> {
    /// A seat held by generation 0, between polls.
    pub(crate) fn new(value: T) -> Seat<T> {
        Seat {
            word: AtomicU64::new(word(0, HELD)),
            value: std::cell::UnsafeCell::new(value),
        }
    }

    /// The value. Only the holder may use the pointer, and inside a poll only
    /// through [`with_lent`](Self::with_lent).
    pub(crate) fn value(&self) -> *mut T {
        self.value.get()
    }

    /// The holder of generation `gen` begins a poll: the value may be taken
    /// until [`reclaim`](Self::reclaim).
    #[inline]
    pub(crate) fn lend(&self, gen: u64) {
        // Release: a taker's Acquire sees every change the holder made.
        self.word.store(word(gen, LENT), Release);
    }

    /// The holder's poll returned: takes the value back. False if it was
    /// taken meanwhile; the caller has lost the seat.
    #[inline]
    pub(crate) fn reclaim(&self, gen: u64) -> bool {
        self.word
            .compare_exchange(word(gen, LENT), word(gen, HELD), Relaxed, Relaxed)
            .is_ok()
    }

    /// Inside a poll, the holder runs `f` on its value, unless the value was
    /// taken (then `None`, and `f` is not called).
    #[inline]
    pub(crate) fn with_lent<R>(&self, gen: u64, f: impl FnOnce(&T) -> R) -> Option<R> {
        self.word
            .compare_exchange(word(gen, LENT), word(gen, BUSY), Acquire, Relaxed)
            .ok()?;
        // Lends the value again however `f` ends, so a panic in it cannot
        // leave the seat unreclaimable.
        struct Relend<'a>(&'a AtomicU64, u64);
        impl Drop for Relend<'_> {
            fn drop(&mut self) {
                self.0.store(word(self.1, LENT), Release);
            }
        }
        let _relend = Relend(&self.word, gen);
        // SAFETY: the word is BUSY with our generation: nobody else may
        // touch the value until `_relend` stores LENT again.
        Some(f(unsafe { &*self.value.get() }))
    }

    /// The generation of the holder if it is inside a poll now.
    pub(crate) fn lent_generation(&self) -> Option<u64> {
        let w = self.word.load(Relaxed);
        (w & TAG == LENT).then_some(w >> GEN_SHIFT)
    }

    /// Takes the value from holder `gen` while it is inside a poll (for a
    /// replacement). Returns the new generation, which the caller now holds
    /// (between polls); `None` if the holder is not inside a poll, or is
    /// using the value this instant.
    pub(crate) fn take(&self, gen: u64) -> Option<u64> {
        self.word
            .compare_exchange(word(gen, LENT), word(gen + 1, HELD), Acquire, Relaxed)
            .ok()
            .map(|_| gen + 1)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_taken_seat_cannot_be_reclaimed_or_used_by_its_old_holder() {
        let seat = Seat::new(0u32);
        assert_eq!(seat.lent_generation(), None, "held between polls");
        assert_eq!(seat.take(0), None, "cannot take between polls");
        seat.lend(0);
        assert_eq!(seat.with_lent(0, |_| 1), Some(1));
        assert_eq!(seat.lent_generation(), Some(0));
        assert_eq!(seat.take(0), Some(1));
        assert_eq!(seat.with_lent(0, |_| 1), None);
        assert!(!seat.reclaim(0));
        // The new holder works as the old one did.
        seat.lend(1);
        assert!(seat.reclaim(1));
    }

    #[test]
    fn a_panic_inside_with_lent_lends_the_value_again() {
        let seat = Seat::new(());
        seat.lend(0);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            seat.with_lent(0, |_| panic!("boom"));
        }));
        assert!(r.is_err());
        assert!(seat.reclaim(0));
    }
}

/// Model-checked: a seat's value is never touched by two threads at once,
/// whatever the order of the holder's polls and a takeover. Run with
/// `RUSTFLAGS="--cfg loom" cargo test -p bulwark-executor --lib loom_`.
///
/// The value is a loom cell, which fails the model on any access from two
/// threads not ordered by the protocol. Replace `reclaim`'s CAS with a plain
/// store, or `take`'s CAS with a load and a store, and the model fails.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;

    /// The holder's queue, as far as the model cares: a count of pushes.
    struct Queue(UnsafeCell<u32>);

    impl Queue {
        fn push(&self) {
            self.0.with_mut(|n| unsafe { *n += 1 });
        }
    }

    #[test]
    fn loom_a_seat_has_one_holder_at_a_time() {
        loom::model(|| {
            let seat = Arc::new(Seat::new(Queue(UnsafeCell::new(0))));
            let holder = {
                let seat = seat.clone();
                loom::thread::spawn(move || {
                    let gen = 0;
                    // Between polls, the holder's own.
                    unsafe { (*seat.value()).push() };
                    seat.lend(gen);
                    // Inside the poll: a wake queues locally.
                    let _ = seat.with_lent(gen, Queue::push);
                    if seat.reclaim(gen) {
                        unsafe { (*seat.value()).push() };
                        true
                    } else {
                        false
                    }
                })
            };
            // The watchdog's replacement takes the seat if the holder is in
            // its poll, and then uses the queue as its own.
            let took = match seat.lent_generation() {
                Some(gen) => seat.take(gen).is_some(),
                None => false,
            };
            if took {
                unsafe { (*seat.value()).push() };
            }
            let kept = holder.join().unwrap();
            assert!(took != kept, "exactly one of them ends holding the seat");
        });
    }
}
