//! A worker's seat: the role one worker thread plays (its queue, LIFO slot,
//! deferred list and parker), held by one thread at a time, and taken over by
//! a replacement thread while its holder is stuck inside a poll.
//!
//! # The protocol
//!
//! Each thread that holds a seat has a [`Holder`] word of its own, which only
//! it writes: `HELD` between polls, `LENT` inside a poll, `BUSY` inside a
//! poll while it queues a task on its own core. The seat names its current
//! holder. A taker (the watchdog, for a replacement thread) *claims* the
//! holder, issues a process-wide memory barrier, and reads the holder's
//! word: `LENT` means the holder is inside its poll and has not touched the
//! core since lending it, so the seat is taken; anything else, the claim is
//! released. A holder that finishes a poll (or starts to queue a task inside
//! one) writes its word first and reads the claim after; if it finds one, it
//! waits for the taker's verdict, and leaves the core alone if the seat was
//! taken. A thread that lost its seat only ever writes its own word, so its
//! late writes cannot disturb the new holder's.
//!
//! # Why a process-wide barrier
//!
//! The holder's store-then-load and the taker's store-then-load form
//! Dekker's handshake, which needs a full fence on both sides. The holder's
//! side runs around every poll, the taker's only when a poll has been stuck
//! for the watchdog's threshold. So the holder's fence is only a compiler
//! fence, and the taker's is `membarrier(2)` (Linux 4.14+, private
//! expedited): it makes every running thread of the process execute a full
//! fence before it returns, so for each holder either its store came before
//! that fence (and the taker sees it), or its load comes after it (and sees
//! the claim). This is the asymmetric fence of .NET's
//! `FlushProcessWriteBuffers` and folly's `asymmetricHeavyBarrier`. A poll
//! pays two plain stores and a load for the right to be taken over; an
//! atomic read-modify-write per poll measured about 8% on a yield-heavy
//! workload. Where `membarrier` is not available (another OS, a kernel or
//! sandbox without it), [`supported`] is false and the runtime does not
//! compensate.
//!
//! Under loom both fences are `fence(SeqCst)`, which is what the protocol
//! assumes of them.

use crate::sync::{fence, AtomicU64, Mutex};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::Arc;

const HELD: u64 = 0;
const LENT: u64 = 1;
const BUSY: u64 = 2;

const TAKEN: u64 = 1;
const RELEASED: u64 = 2;
const VERDICT_SHIFT: u32 = 2;

/// One thread's hold on a seat. Written by that thread (`state`) and by the
/// taker (`claim`, `verdict`). Aligned apart: the holder stores to it on
/// every poll.
#[repr(align(128))]
pub(crate) struct Holder {
    state: AtomicU64,
    /// 0, or the number of the taker's claim in flight.
    claim: AtomicU64,
    /// `number << 2 | TAKEN or RELEASED`: the taker's answer to its claim.
    verdict: AtomicU64,
}

impl Holder {
    fn new() -> Holder {
        Holder {
            state: AtomicU64::new(HELD),
            claim: AtomicU64::new(0),
            verdict: AtomicU64::new(0),
        }
    }

    /// The holder begins a poll: the seat may be taken until
    /// [`reclaim`](Self::reclaim).
    #[inline]
    pub(crate) fn lend(&self) {
        // Release: a taker that reads LENT (Acquire) sees every change the
        // holder made to the core before lending it.
        self.state.store(LENT, Release);
    }

    /// The poll returned: keeps the seat, or false if it was taken; the
    /// caller then must never touch the seat's value again.
    #[inline]
    pub(crate) fn reclaim(&self) -> bool {
        self.state.store(HELD, Relaxed);
        light_fence();
        self.claim.load(Relaxed) == 0 || self.await_verdict()
    }

    /// Inside a poll, runs `f` on the seat's value unless the seat was
    /// taken (then `None`, and `f` is not called).
    #[inline]
    pub(crate) fn with_lent<T, R>(&self, seat: &Seat<T>, f: impl FnOnce(&T) -> R) -> Option<R> {
        self.state.store(BUSY, Relaxed);
        light_fence();
        if self.claim.load(Relaxed) != 0 && !self.await_verdict() {
            return None;
        }
        // Lends the value again however `f` ends, so a panic in it cannot
        // leave the seat looking busy to the watchdog for good.
        struct Relend<'a>(&'a AtomicU64);
        impl Drop for Relend<'_> {
            fn drop(&mut self) {
                self.0.store(LENT, Release);
            }
        }
        let _relend = Relend(&self.state);
        // SAFETY: this thread holds the seat (no verdict took it), and its
        // word says BUSY, which no taker takes.
        Some(f(unsafe { &*seat.value.get() }))
    }

    /// A claim is in flight: waits for the taker's verdict (it is a few
    /// loads and a store away). True if the seat is still ours.
    #[cold]
    fn await_verdict(&self) -> bool {
        let claim = self.claim.load(Relaxed);
        if claim == 0 {
            return true;
        }
        let mut spins = 0u32;
        loop {
            let v = self.verdict.load(Acquire);
            let answered = v >> VERDICT_SHIFT;
            if answered == claim {
                return v & ((1 << VERDICT_SHIFT) - 1) == RELEASED;
            }
            if answered > claim {
                // A later claim was answered: ours was released (a taken
                // holder is never claimed again), and the claim read above
                // was a stale one whose reset had not reached us.
                return true;
            }
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                crate::sync::yield_now();
            }
        }
    }
}

/// One worker role and who holds it.
pub(crate) struct Seat<T> {
    /// The current holder. Locked only by takers and to start a holder: the
    /// holder itself keeps its own `Arc` and never looks here.
    holder: Mutex<Arc<Holder>>,
    /// Numbers the taker's claims (under the `holder` lock).
    claims: AtomicU64,
    value: std::cell::UnsafeCell<T>,
}

// SAFETY: the value is only touched by the thread that holds the seat (module
// docs); a hand-over from one thread to the next goes through the holder's
// Release store of LENT and the taker's Acquire load of it, then a channel to
// the new thread, so the value moves as if sent: `T: Send` is what that
// needs.
unsafe impl<T: Send> Sync for Seat<T> {}

impl<T> Seat<T> {
    /// A seat, with the holder that its first thread runs as.
    pub(crate) fn new(value: T) -> Seat<T> {
        Seat {
            holder: Mutex::new(Arc::new(Holder::new())),
            claims: AtomicU64::new(0),
            value: std::cell::UnsafeCell::new(value),
        }
    }

    /// The current holder, for the thread about to run as it.
    pub(crate) fn holder(&self) -> Arc<Holder> {
        self.holder.lock().clone()
    }

    /// The value. Only the holder may use the pointer, and inside a poll
    /// only through [`Holder::with_lent`].
    pub(crate) fn value(&self) -> *mut T {
        self.value.get()
    }

    /// Whether the holder is inside a poll now (a hint: no claim is made).
    pub(crate) fn is_lent(&self) -> bool {
        self.holder.lock().state.load(Relaxed) == LENT
    }

    /// Takes the seat from a holder that is inside a poll, for a
    /// replacement: returns the new holder, which the caller hands to the
    /// thread that will run as it. `None` if the holder is between polls or
    /// queueing a task this instant.
    pub(crate) fn take(&self) -> Option<Arc<Holder>> {
        let mut holder = self.holder.lock();
        let claim = self.claims.fetch_add(1, Relaxed) + 1;
        holder.claim.store(claim, Relaxed);
        // Without the barrier the holder's word cannot be trusted: release
        // the claim (compensation is off from now on, see `supported`).
        let fenced = heavy_fence();
        // Acquire: pairs with the holder's Release store of LENT.
        if fenced && holder.state.load(Acquire) == LENT {
            holder
                .verdict
                .store(claim << VERDICT_SHIFT | TAKEN, Release);
            let next = Arc::new(Holder::new());
            *holder = next.clone();
            Some(next)
        } else {
            holder.claim.store(0, Relaxed);
            holder
                .verdict
                .store(claim << VERDICT_SHIFT | RELEASED, Release);
            None
        }
    }
}

impl<T> Seat<T> {
    /// The holder gives the seat away itself, from inside a poll
    /// (`block_in_place`): returns the new holder, which the caller hands to
    /// the thread that will run as it, or `None` if a taker took the seat
    /// first (a replacement serves it already).
    ///
    /// No barrier is needed, unlike [`take`](Self::take): the barrier there
    /// lets a taker learn that *another* thread is not touching the value,
    /// and here the thread that would touch it is the one giving it away,
    /// inside a poll, which from now on leaves it alone. What remains to
    /// order is its own earlier writes to the value before the new
    /// holder's first access, which the hand-off to the new thread (a
    /// channel) does. Against a `take` at the same time: both run under
    /// the `holder` lock, so one comes first. If the `take` did, the holder
    /// is not `me` any more and nothing is given. If this did, the `take`
    /// finds the new holder, not yet started (`HELD`), and releases its
    /// claim. `me` gets a claim and a `TAKEN` verdict of its own, so that
    /// from here on its `with_lent` and `reclaim` say the seat is gone,
    /// exactly as after a `take`; with no lending at all (compensation
    /// off) its thread is told by the caller.
    pub(crate) fn hand_over(&self, me: &Arc<Holder>) -> Option<Arc<Holder>> {
        let mut holder = self.holder.lock();
        if !Arc::ptr_eq(&holder, me) {
            return None;
        }
        let claim = self.claims.fetch_add(1, Relaxed) + 1;
        // Read back only by this thread (`with_lent`, `reclaim`), in
        // program order; a taker never claims a holder that is not the
        // seat's, so nobody else reads them again.
        me.claim.store(claim, Relaxed);
        me.verdict.store(claim << VERDICT_SHIFT | TAKEN, Release);
        let next = Arc::new(Holder::new());
        *holder = next.clone();
        Some(next)
    }
}

/// The holder's side of the handshake: keeps the compiler from moving its
/// load above its store; the CPU's reordering is the heavy fence's job.
#[inline]
fn light_fence() {
    #[cfg(not(loom))]
    std::sync::atomic::compiler_fence(SeqCst);
    #[cfg(loom)]
    fence(SeqCst);
}

/// The taker's side: a full fence on every running thread of the process.
/// False if the system refused it (a seccomp filter installed after the
/// runtime was built, the kernel out of memory): then no seat may be taken,
/// and [`supported`] says false from now on.
fn heavy_fence() -> bool {
    #[cfg(not(loom))]
    {
        let done = membarrier::expedited();
        // Orders this thread's own accesses too.
        fence(SeqCst);
        done
    }
    #[cfg(loom)]
    {
        fence(SeqCst);
        true
    }
}

/// Whether seats can be taken over on this system: `membarrier(2)`'s
/// private expedited command works here (checked, and registered, once).
pub(crate) fn supported() -> bool {
    #[cfg(not(loom))]
    {
        membarrier::registered()
    }
    #[cfg(loom)]
    true
}

#[cfg(all(not(loom), target_os = "linux"))]
mod membarrier {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    use std::sync::OnceLock;

    /// Set when a barrier was refused after registration worked.
    static REFUSED: AtomicBool = AtomicBool::new(false);

    const CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
    const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

    fn call(cmd: libc::c_int) -> bool {
        // SAFETY: membarrier takes two integers and touches no memory of
        // ours; an unknown or refused command is an error return.
        unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0, 0) == 0 }
    }

    /// Registers the process for private expedited barriers, once; false
    /// too once a barrier has been refused.
    pub(super) fn registered() -> bool {
        static REGISTERED: OnceLock<bool> = OnceLock::new();
        *REGISTERED
            .get_or_init(|| call(CMD_REGISTER_PRIVATE_EXPEDITED) && call(CMD_PRIVATE_EXPEDITED))
            && !REFUSED.load(Relaxed)
    }

    /// A full fence on every running thread of the process.
    pub(super) fn expedited() -> bool {
        let done = registered() && call(CMD_PRIVATE_EXPEDITED);
        if !done {
            REFUSED.store(true, Relaxed);
        }
        done
    }
}

#[cfg(all(not(loom), not(target_os = "linux")))]
mod membarrier {
    pub(super) fn registered() -> bool {
        false
    }

    pub(super) fn expedited() -> bool {
        false
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn seat() -> Option<(Seat<u32>, Arc<Holder>)> {
        if !supported() {
            eprintln!("membarrier is not available here: seats cannot be taken");
            return None;
        }
        let seat = Seat::new(0u32);
        let holder = seat.holder();
        Some((seat, holder))
    }

    #[test]
    fn a_taken_seat_cannot_be_reclaimed_or_used_by_its_old_holder() {
        let Some((seat, old)) = seat() else { return };
        assert!(!seat.is_lent(), "held between polls");
        assert!(seat.take().is_none(), "cannot take between polls");
        old.lend();
        assert_eq!(old.with_lent(&seat, |_| 1), Some(1));
        assert!(seat.is_lent());
        let new = seat.take().expect("taken inside a poll");
        assert_eq!(old.with_lent(&seat, |_| 1), None);
        assert!(!old.reclaim());
        // The new holder works as the old one did; the old one's late
        // writes go to its own word.
        old.lend();
        new.lend();
        assert!(new.reclaim());
        assert!(!seat.is_lent());
    }

    #[test]
    fn a_released_claim_leaves_the_holder_its_seat() {
        let Some((seat, holder)) = seat() else { return };
        holder.lend();
        assert!(holder.reclaim());
        assert!(seat.take().is_none());
        holder.lend();
        assert!(holder.reclaim(), "the released claim does not count");
    }

    #[test]
    fn a_seat_handed_over_is_gone_for_its_old_holder_and_cannot_be_handed_twice() {
        // No barrier involved: works whether or not membarrier does.
        let seat = Seat::new(0u32);
        let old = seat.holder();
        old.lend();
        let new = seat.hand_over(&old).expect("the holder gives its own seat");
        assert_eq!(old.with_lent(&seat, |_| 1), None);
        assert!(!old.reclaim());
        assert!(seat.hand_over(&old).is_none(), "not the holder any more");
        assert!(Arc::ptr_eq(&seat.holder(), &new));
        // The new holder is between polls: a taker finds nothing to take.
        if supported() {
            assert!(seat.take().is_none());
        }
        new.lend();
        assert_eq!(new.with_lent(&seat, |_| 2), Some(2));
        assert!(new.reclaim());
    }

    #[test]
    fn a_seat_taken_first_is_not_handed_over() {
        let Some((seat, old)) = seat() else { return };
        old.lend();
        let _replacement = seat.take().expect("taken inside a poll");
        assert!(seat.hand_over(&old).is_none());
        assert!(!old.reclaim());
    }

    #[test]
    fn a_panic_inside_with_lent_lends_the_value_again() {
        let Some((seat, holder)) = seat() else { return };
        holder.lend();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            holder.with_lent(&seat, |_| panic!("boom"));
        }));
        assert!(r.is_err());
        assert!(seat.is_lent());
        assert!(holder.reclaim());
    }
}

/// Model-checked: a seat's value is never touched by two threads at once,
/// whatever the order of the holder's polls and a takeover. Run with
/// `RUSTFLAGS="--cfg loom" cargo test -p bulwark-executor --lib loom_`.
///
/// The value is a loom cell, which fails the model on any access from two
/// threads not ordered by the protocol. Drop either fence, or read the
/// claim before storing the holder's word, and the model fails.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::cell::UnsafeCell;

    /// The holder's queue, as far as the model cares: a count of pushes.
    struct Queue(UnsafeCell<u32>);

    impl Queue {
        fn push(&self) {
            self.0.with_mut(|n| unsafe { *n += 1 });
        }
    }

    #[test]
    fn loom_a_seat_has_one_holder_at_a_time() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound.get_or_insert(3);
        builder.check(|| {
            let seat = loom::sync::Arc::new(Seat::new(Queue(UnsafeCell::new(0))));
            let first = seat.holder();
            let holder = {
                let seat = seat.clone();
                loom::thread::spawn(move || {
                    // Between polls, the holder's own.
                    unsafe { (*seat.value()).push() };
                    first.lend();
                    // Inside the poll: a wake queues locally.
                    let _ = first.with_lent(&seat, Queue::push);
                    if first.reclaim() {
                        unsafe { (*seat.value()).push() };
                        true
                    } else {
                        false
                    }
                })
            };
            // The watchdog's replacement takes the seat if the holder is in
            // its poll, and then uses the queue as its own.
            let took = seat.take().is_some();
            if took {
                unsafe { (*seat.value()).push() };
            }
            let kept = holder.join().unwrap();
            assert!(took != kept, "exactly one of them ends holding the seat");
        });
    }

    /// The holder hands its seat over (`block_in_place`) while the
    /// watchdog may try to take it: exactly one of them gives the seat
    /// away, and the old holder, its successor and the taker's replacement
    /// never touch the queue at once. The successor is a thread started
    /// with the new holder, as `threads` starts it (here between polls).
    #[test]
    fn loom_a_hand_over_and_a_take_give_the_seat_away_once() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound.get_or_insert(2);
        builder.check(|| {
            let seat = loom::sync::Arc::new(Seat::new(Queue(UnsafeCell::new(0))));
            let first = seat.holder();
            let holder = {
                let seat = seat.clone();
                loom::thread::spawn(move || {
                    first.lend();
                    let _ = first.with_lent(&seat, Queue::push);
                    let successor = seat.hand_over(&first).map(|next| {
                        let seat = seat.clone();
                        loom::thread::spawn(move || {
                            // Between polls: the successor's own.
                            let _keep = next;
                            unsafe { (*seat.value()).push() };
                        })
                    });
                    let handed = successor.is_some();
                    // Gone either way: handed over, or taken before.
                    assert!(first.with_lent(&seat, Queue::push).is_none());
                    let kept = first.reclaim();
                    if let Some(s) = successor {
                        s.join().unwrap();
                    }
                    (handed, kept)
                })
            };
            let took = seat.take().is_some();
            if took {
                unsafe { (*seat.value()).push() };
            }
            let (handed, kept) = holder.join().unwrap();
            assert!(!kept, "the old holder kept a seat it gave away");
            assert!(
                took != handed,
                "the seat was given away {}",
                if took { "twice" } else { "never" }
            );
        });
    }

    /// Two polls against two claims: a released claim never strands the
    /// holder (it may read a stale claim number), and still one holder at
    /// a time. One preemption: with two, the model takes minutes unoptimized
    /// (as CI runs it).
    #[test]
    fn loom_two_polls_against_two_claims() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound.get_or_insert(1);
        builder.check(|| {
            let seat = loom::sync::Arc::new(Seat::new(Queue(UnsafeCell::new(0))));
            let first = seat.holder();
            let holder = {
                let seat = seat.clone();
                loom::thread::spawn(move || {
                    for _ in 0..2 {
                        first.lend();
                        let _ = first.with_lent(&seat, Queue::push);
                        if !first.reclaim() {
                            return false;
                        }
                        unsafe { (*seat.value()).push() };
                    }
                    true
                })
            };
            let mut took = false;
            for _ in 0..2 {
                if seat.take().is_some() {
                    took = true;
                    unsafe { (*seat.value()).push() };
                    break;
                }
            }
            let kept = holder.join().unwrap();
            assert!(took != kept, "exactly one of them ends holding the seat");
        });
    }
}
