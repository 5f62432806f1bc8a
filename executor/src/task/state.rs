//! A task's state word: flag bits, a count of live wakers and a reference
//! count in one `AtomicU64`.
//!
//! Every change is a `transition_to_*` function that returns what the caller
//! must do next; callers never poke bits. Orderings: transitions that hand the
//! future or the output from one thread to another (to running, to idle, to
//! complete, and the join-waker handshake) use `AcqRel`, so the stage written
//! before a transition is seen by whoever observes it. Reference increments are
//! `Relaxed` (a new reference is made from an existing one, as `Arc::clone`);
//! decrements are `AcqRel` so the thread that frees the cell sees every write.
//!
//! # Layout
//!
//! ```text
//! bits 0..8    flags: RUNNING COMPLETE NOTIFIED JOIN_INTEREST JOIN_WAKER
//!              CANCELLED LOST CANCEL_IF_LOST
//! bits 8..32   live wakers (24 bits)
//! bits 32..64  references (32 bits)
//! ```
//!
//! A `u64` on every target (the crate already needs 64-bit atomics for its
//! clocks), so 32-bit targets get the same room as 64-bit ones.
//!
//! # Lost tasks
//!
//! A task is *lost* when it is pending, not scheduled, not running, and no
//! `Waker` for it exists any more: nothing can wake it again. Every waker is
//! a reference *and* a count in the waker field; the borrowed waker a poll
//! hands the future (`waker_ref`) is neither, and the deadline timer's waker
//! is a reference but not a waker (a timer that cancels the task does not
//! wake it). The loss is seen exactly once, by whichever of two transitions
//! observes "no waker, idle" on the word itself:
//!
//! - the last waker's drop, if the task is idle then
//!   ([`State::transition_to_waker_dropped`]);
//! - the end of a poll that leaves no waker behind
//!   ([`State::transition_to_idle`]).
//!
//! Both set `LOST` in the same CAS that makes the decision, and neither
//! fires once `LOST`, `CANCELLED`, `NOTIFIED` or `COMPLETE` is set. The
//! policy (report only, or cancel too) is the `CANCEL_IF_LOST` bit, fixed at
//! spawn, so the transition needs no lookup.

use crate::sync::AtomicU64;
use std::fmt;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};

/// The task is being polled (or cancelled) by one thread, which alone may
/// touch the future.
const RUNNING: u64 = 1 << 0;
/// The task has finished: the stage holds its output (or nothing, once read).
/// Never cleared.
const COMPLETE: u64 = 1 << 1;
/// The task has been submitted to a queue, or must be resubmitted when the
/// running poll ends. At most one `Notified` exists while this is set.
const NOTIFIED: u64 = 1 << 2;
/// A `JoinHandle` exists; whoever clears this while `COMPLETE` is set drops
/// the output.
const JOIN_INTEREST: u64 = 1 << 3;
/// The join waker slot holds a waker the runtime may read. While clear and the
/// task not complete, only the `JoinHandle` may write the slot.
const JOIN_WAKER: u64 = 1 << 4;
/// The task must be cancelled: its future dropped without another poll.
const CANCELLED: u64 = 1 << 5;
/// The task was found lost (idle with no waker left). Set once, by the
/// transition that found it, never cleared: the loss is reported once.
const LOST: u64 = 1 << 6;
/// The runtime's policy for this task when it is lost: cancel it (set with
/// `LOST` in the same transition: `CANCELLED`), not only report it. Fixed at
/// spawn. With it, `LOST` means the task was cancelled *because* it was
/// lost: the loss is found only while `CANCELLED` is clear.
const CANCEL_IF_LOST: u64 = 1 << 7;

const WAKER_SHIFT: u32 = 8;
/// One live waker (a clone of the task's waker, not the borrowed one a poll
/// hands the future, not the deadline timer's).
const WAKER_ONE: u64 = 1 << WAKER_SHIFT;
const WAKER_MASK: u64 = ((1 << 24) - 1) << WAKER_SHIFT;

const REF_SHIFT: u32 = 32;
/// One reference: held by the registry, the `JoinHandle`, each waker (the
/// deadline timer's too) and the one `Notified` (or the worker running the
/// task).
const REF_ONE: u64 = 1 << REF_SHIFT;

/// The top bit of each count: an increment that finds it set aborts, as
/// `Arc` does past `isize::MAX`, leaving the other half of the field as
/// headroom for increments racing the one that aborts.
const OVERFLOW: u64 = (1 << 63) | (1 << (REF_SHIFT - 1));

/// A fresh task: notified (it is about to be queued), with a join handle, and
/// three references: registry, `Notified`, `JoinHandle`. No waker yet.
const INITIAL: u64 = NOTIFIED | JOIN_INTEREST | (3 * REF_ONE);

pub(crate) struct State(AtomicU64);

/// A copy of the state word.
#[derive(Clone, Copy)]
pub(crate) struct Snapshot(u64);

#[must_use]
pub(crate) enum ToRunning {
    /// Poll the future.
    Success,
    /// Cancelled while queued: drop the future, do not poll it.
    Cancelled,
    /// Someone else runs or finished it; the `Notified` reference was dropped.
    Failed,
    /// As `Failed`, and that was the last reference: free the task.
    Dealloc,
}

#[must_use]
pub(crate) enum ToIdle {
    /// Idle; the running reference was dropped.
    Ok,
    /// Woken during the poll: resubmit; the running reference becomes the
    /// `Notified` reference.
    OkNotified,
    /// Idle and the running reference was the last: free the task.
    OkDealloc,
    /// Cancelled during the poll: still running; drop the future now.
    Cancelled,
    /// The poll left no waker behind and nothing woke the task: it is lost
    /// (`LOST` is set, once). Idle, and the running reference is *kept*:
    /// report the loss, then drop that reference.
    Lost,
    /// As `Lost`, under the cancel policy: still running, `CANCELLED` set;
    /// report the loss, then drop the future now (as for `Cancelled`).
    LostCancelled,
}

#[must_use]
pub(crate) enum ToNotified {
    DoNothing,
    /// Submit a `Notified` holding the reference the transition set aside.
    Submit,
    /// The waker's reference was the last: free the task.
    Dealloc,
}

/// What the caller of [`State::transition_to_waker_dropped`] does next.
#[must_use]
pub(crate) enum WakerDropped {
    /// The waker's reference was dropped; nothing else to do.
    Done,
    /// The waker's reference was the last: free the task.
    Dealloc,
    /// It was the last waker of an idle task: the task is lost (`LOST` set,
    /// once). The waker's reference is *kept*, so the cell outlives the
    /// report: report, then drop that reference.
    Lost,
    /// As `Lost`, under the cancel policy: `CANCELLED | NOTIFIED` were set
    /// with `LOST`, and the waker's reference became a `Notified`'s: report,
    /// then submit it (a worker drops the future).
    LostCancelled,
}

impl State {
    /// A fresh task (see `INITIAL`); `cancel_if_lost` is the runtime's
    /// policy for a lost task, fixed for the task's life.
    pub(crate) fn new(cancel_if_lost: bool) -> State {
        let policy = if cancel_if_lost { CANCEL_IF_LOST } else { 0 };
        State(AtomicU64::new(INITIAL | policy))
    }

    pub(crate) fn load(&self) -> Snapshot {
        Snapshot(self.0.load(Acquire))
    }

    fn fetch_update<T>(&self, mut f: impl FnMut(Snapshot) -> (Option<Snapshot>, T)) -> T {
        let mut curr = self.0.load(Acquire);
        loop {
            let (next, out) = f(Snapshot(curr));
            let Some(next) = next else { return out };
            match self.0.compare_exchange_weak(curr, next.0, AcqRel, Acquire) {
                Ok(_) => return out,
                Err(actual) => curr = actual,
            }
        }
    }

    /// A worker took the `Notified` from a queue and wants to poll.
    pub(crate) fn transition_to_running(&self) -> ToRunning {
        self.fetch_update(|mut s| {
            debug_assert!(s.is_notified(), "running a task that was not notified");
            if s.is_running() || s.is_complete() {
                // Shut down (claimed) while it sat in a queue.
                s.ref_dec();
                let out = if s.ref_count() == 0 {
                    ToRunning::Dealloc
                } else {
                    ToRunning::Failed
                };
                return (Some(s), out);
            }
            s.0 = (s.0 & !NOTIFIED) | RUNNING;
            let out = if s.is_cancelled() {
                ToRunning::Cancelled
            } else {
                ToRunning::Success
            };
            (Some(s), out)
        })
    }

    /// The poll returned `Pending`. Also where a poll that leaves no waker
    /// behind is found lost: a waker dropped during the poll saw `RUNNING`
    /// and left the question to this CAS.
    pub(crate) fn transition_to_idle(&self) -> ToIdle {
        self.fetch_update(|mut s| {
            debug_assert!(s.is_running());
            if s.is_cancelled() {
                return (None, ToIdle::Cancelled);
            }
            if s.is_notified() {
                s.0 &= !RUNNING;
                return (Some(s), ToIdle::OkNotified);
            }
            if s.waker_count() == 0 && !s.is_lost() {
                // Nothing can wake it: lost. (A task found lost before was
                // never polled again, only cancelled; `!is_lost` keeps the
                // report to one all the same.)
                s.0 |= LOST;
                if s.cancels_if_lost() {
                    // Stays RUNNING: the caller drops the future in place.
                    s.0 |= CANCELLED;
                    return (Some(s), ToIdle::LostCancelled);
                }
                // Idle, keeping the running reference for the report.
                s.0 &= !RUNNING;
                return (Some(s), ToIdle::Lost);
            }
            s.0 &= !RUNNING;
            s.ref_dec();
            let out = if s.ref_count() == 0 {
                ToIdle::OkDealloc
            } else {
                ToIdle::Ok
            };
            (Some(s), out)
        })
    }

    /// The output (or the cancellation error) is stored. Returns the state
    /// just before, for the caller's join handling.
    pub(crate) fn transition_to_complete(&self) -> Snapshot {
        let prev = Snapshot(self.0.fetch_xor(RUNNING | COMPLETE, AcqRel));
        debug_assert!(prev.is_running() && !prev.is_complete());
        prev
    }

    /// Drops `count` references; true if they were the last.
    pub(crate) fn transition_to_terminal(&self, count: usize) -> bool {
        let prev = Snapshot(self.0.fetch_sub(count as u64 * REF_ONE, AcqRel));
        debug_assert!(prev.ref_count() >= count, "task reference count underflow");
        prev.ref_count() == count
    }

    /// A waker is woken by value: its reference and its waker count are
    /// consumed. (Never a loss: it leaves the task notified, running or
    /// complete.)
    pub(crate) fn transition_to_notified_by_val(&self) -> ToNotified {
        self.fetch_update(|mut s| {
            s.waker_dec();
            if s.is_running() {
                // The running worker resubmits; this reference goes.
                s.0 |= NOTIFIED;
                s.ref_dec();
                debug_assert!(s.ref_count() > 0);
                (Some(s), ToNotified::DoNothing)
            } else if s.is_complete() || s.is_notified() {
                s.ref_dec();
                let out = if s.ref_count() == 0 {
                    ToNotified::Dealloc
                } else {
                    ToNotified::DoNothing
                };
                (Some(s), out)
            } else {
                // The waker's reference becomes the Notified's.
                s.0 |= NOTIFIED;
                (Some(s), ToNotified::Submit)
            }
        })
    }

    /// A waker is woken by reference: a new reference is made if it must be
    /// submitted.
    pub(crate) fn transition_to_notified_by_ref(&self) -> ToNotified {
        self.fetch_update(|mut s| {
            if s.is_complete() || s.is_notified() {
                (None, ToNotified::DoNothing)
            } else if s.is_running() {
                s.0 |= NOTIFIED;
                (Some(s), ToNotified::DoNothing)
            } else {
                s.0 |= NOTIFIED;
                s.ref_inc();
                (Some(s), ToNotified::Submit)
            }
        })
    }

    /// A waker is dropped (not woken): its reference and its waker count
    /// go, unless it was the last waker of an idle task, which is then lost
    /// (see the module docs). One CAS, as the plain decrement it replaces
    /// is one RMW.
    pub(crate) fn transition_to_waker_dropped(&self) -> WakerDropped {
        self.fetch_update(|mut s| {
            s.waker_dec();
            let idle = s.0 & (RUNNING | NOTIFIED | COMPLETE | CANCELLED | LOST) == 0;
            if s.waker_count() == 0 && idle {
                // Keep the reference: the reporter reads the cell.
                s.0 |= LOST;
                if s.cancels_if_lost() {
                    // The reference becomes the Notified's, as an abort's
                    // new reference does in `transition_to_notified_and_cancel`.
                    s.0 |= CANCELLED | NOTIFIED;
                    return (Some(s), WakerDropped::LostCancelled);
                }
                return (Some(s), WakerDropped::Lost);
            }
            s.ref_dec();
            let out = if s.ref_count() == 0 {
                WakerDropped::Dealloc
            } else {
                WakerDropped::Done
            };
            (Some(s), out)
        })
    }

    /// `JoinHandle::abort`: mark cancelled and make sure a worker sees it.
    /// True if the caller must submit a `Notified` (a reference was made).
    pub(crate) fn transition_to_notified_and_cancel(&self) -> bool {
        self.fetch_update(|mut s| {
            if s.is_cancelled() || s.is_complete() {
                (None, false)
            } else if s.is_running() || s.is_notified() {
                // The runner, or the worker that dequeues it, sees CANCELLED.
                s.0 |= CANCELLED | NOTIFIED;
                (Some(s), false)
            } else {
                s.0 |= CANCELLED | NOTIFIED;
                s.ref_inc();
                (Some(s), true)
            }
        })
    }

    /// Runtime shutdown: mark cancelled, and if nobody runs the task, claim it
    /// (set `RUNNING`) so the caller may drop its future. True if claimed.
    pub(crate) fn transition_to_shutdown(&self) -> bool {
        self.fetch_update(|mut s| {
            if s.is_complete() {
                return (None, false);
            }
            let claimed = !s.is_running();
            s.0 |= CANCELLED | RUNNING;
            (Some(s), claimed)
        })
    }

    /// The join handle is dropped. Returns the snapshot before: if it was
    /// complete, the output is the caller's to drop.
    pub(crate) fn unset_join_interested(&self) -> Snapshot {
        Snapshot(self.0.fetch_and(!JOIN_INTEREST, AcqRel))
    }

    /// The join handle has written the waker slot; hand it to the runtime.
    /// Fails (with the current snapshot) if the task completed meanwhile.
    pub(crate) fn set_join_waker(&self) -> Result<Snapshot, Snapshot> {
        self.fetch_update(|mut s| {
            debug_assert!(s.is_join_interested() && !s.is_join_waker_set());
            if s.is_complete() {
                return (None, Err(s));
            }
            s.0 |= JOIN_WAKER;
            (Some(s), Ok(s))
        })
    }

    /// The join handle takes the waker slot back to replace the waker. Fails
    /// if the task completed meanwhile.
    pub(crate) fn unset_join_waker(&self) -> Result<Snapshot, Snapshot> {
        self.fetch_update(|mut s| {
            debug_assert!(s.is_join_interested() && s.is_join_waker_set());
            if s.is_complete() {
                return (None, Err(s));
            }
            s.0 &= !JOIN_WAKER;
            (Some(s), Ok(s))
        })
    }

    /// A new reference that is not a waker (the deadline timer's).
    pub(crate) fn ref_inc(&self) {
        self.inc(REF_ONE);
    }

    /// A new waker: a reference and a waker count, in one RMW.
    pub(crate) fn waker_inc(&self) {
        self.inc(REF_ONE | WAKER_ONE);
    }

    fn inc(&self, by: u64) {
        let prev = self.0.fetch_add(by, Relaxed);
        // As Arc: an overflow would free a live task (or, for the waker
        // count, carry into the references); abort rather than risk it.
        if prev & OVERFLOW != 0 {
            std::process::abort();
        }
    }

    /// True if this was the last reference.
    pub(crate) fn ref_dec(&self) -> bool {
        self.transition_to_terminal(1)
    }
}

impl Snapshot {
    pub(crate) fn is_running(self) -> bool {
        self.0 & RUNNING != 0
    }
    pub(crate) fn is_complete(self) -> bool {
        self.0 & COMPLETE != 0
    }
    pub(crate) fn is_notified(self) -> bool {
        self.0 & NOTIFIED != 0
    }
    pub(crate) fn is_join_interested(self) -> bool {
        self.0 & JOIN_INTEREST != 0
    }
    pub(crate) fn is_join_waker_set(self) -> bool {
        self.0 & JOIN_WAKER != 0
    }
    pub(crate) fn is_cancelled(self) -> bool {
        self.0 & CANCELLED != 0
    }
    /// The task was found lost (once; never cleared).
    pub(crate) fn is_lost(self) -> bool {
        self.0 & LOST != 0
    }
    /// The runtime cancels this task if it is lost.
    pub(crate) fn cancels_if_lost(self) -> bool {
        self.0 & CANCEL_IF_LOST != 0
    }
    /// The task was cancelled because it was lost: under the cancel policy,
    /// `LOST` is only ever set together with `CANCELLED`, while `CANCELLED`
    /// was clear, so no other cancellation came first.
    pub(crate) fn is_lost_and_cancelled(self) -> bool {
        self.0 & (LOST | CANCEL_IF_LOST) == LOST | CANCEL_IF_LOST
    }
    pub(crate) fn waker_count(self) -> usize {
        ((self.0 & WAKER_MASK) >> WAKER_SHIFT) as usize
    }
    pub(crate) fn ref_count(self) -> usize {
        (self.0 >> REF_SHIFT) as usize
    }
    fn ref_inc(&mut self) {
        self.0 += REF_ONE;
    }
    fn ref_dec(&mut self) {
        debug_assert!(self.ref_count() > 0);
        self.0 -= REF_ONE;
    }
    fn waker_dec(&mut self) {
        debug_assert!(self.waker_count() > 0, "task waker count underflow");
        debug_assert!(self.ref_count() > 0);
        self.0 -= WAKER_ONE;
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("running", &self.is_running())
            .field("complete", &self.is_complete())
            .field("notified", &self.is_notified())
            .field("cancelled", &self.is_cancelled())
            .field("lost", &self.is_lost())
            .field("cancel_if_lost", &self.cancels_if_lost())
            .field("join_interested", &self.is_join_interested())
            .field("join_waker", &self.is_join_waker_set())
            .field("wakers", &self.waker_count())
            .field("refs", &self.ref_count())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_counts_references() {
        let s = State::new(false);
        assert_eq!(s.load().ref_count(), 3);
        assert!(matches!(s.transition_to_running(), ToRunning::Success));
        // Woken by reference while running: no new reference, resubmit later.
        assert!(matches!(
            s.transition_to_notified_by_ref(),
            ToNotified::DoNothing
        ));
        assert!(matches!(s.transition_to_idle(), ToIdle::OkNotified));
        assert_eq!(s.load().ref_count(), 3);
        assert!(matches!(s.transition_to_running(), ToRunning::Success));
        // The poll keeps a waker (a clone): a reference and a live waker.
        s.waker_inc();
        assert_eq!((s.load().ref_count(), s.load().waker_count()), (4, 1));
        assert!(matches!(s.transition_to_idle(), ToIdle::Ok));
        assert_eq!(s.load().ref_count(), 3);
        // Woken while idle: a new reference for the Notified.
        assert!(matches!(
            s.transition_to_notified_by_ref(),
            ToNotified::Submit
        ));
        assert_eq!(s.load().ref_count(), 4);
        assert!(matches!(s.transition_to_running(), ToRunning::Success));
        // The waker goes while the task runs: not lost, the poll decides.
        assert!(matches!(
            s.transition_to_waker_dropped(),
            WakerDropped::Done
        ));
        let prev = s.transition_to_complete();
        assert!(prev.is_join_interested());
        assert!(s.load().is_complete() && !s.load().is_running());
        assert!(!s.load().is_lost());
        assert!(!s.transition_to_terminal(2));
        assert!(s.transition_to_terminal(1));
    }

    #[test]
    fn waker_counts_follow_clones_wakes_and_drops() {
        let s = State::new(false);
        assert!(matches!(s.transition_to_running(), ToRunning::Success));
        s.waker_inc();
        s.waker_inc();
        // The deadline timer's reference is not a waker.
        s.ref_inc();
        assert_eq!((s.load().ref_count(), s.load().waker_count()), (6, 2));
        assert!(matches!(s.transition_to_idle(), ToIdle::Ok));
        // Woken by value: the reference becomes the Notified's, the waker
        // count drops.
        assert!(matches!(
            s.transition_to_notified_by_val(),
            ToNotified::Submit
        ));
        assert_eq!((s.load().ref_count(), s.load().waker_count()), (5, 1));
        assert!(matches!(s.transition_to_running(), ToRunning::Success));
        assert!(matches!(s.transition_to_idle(), ToIdle::Ok));
        assert_eq!((s.load().ref_count(), s.load().waker_count()), (4, 1));
        // The last waker of an idle task: lost, the reference kept.
        assert!(matches!(
            s.transition_to_waker_dropped(),
            WakerDropped::Lost
        ));
        let lost = s.load();
        assert!(lost.is_lost() && !lost.is_cancelled() && !lost.is_notified());
        assert_eq!((lost.ref_count(), lost.waker_count()), (4, 0));
        assert!(!lost.is_lost_and_cancelled());
        assert!(!s.ref_dec());
    }

    #[test]
    fn a_poll_that_keeps_no_waker_is_lost() {
        // Report: idle, LOST, the running reference kept for the report.
        let s = State::new(false);
        assert!(matches!(s.transition_to_running(), ToRunning::Success));
        assert!(matches!(s.transition_to_idle(), ToIdle::Lost));
        let lost = s.load();
        assert!(lost.is_lost() && !lost.is_running() && lost.ref_count() == 3);
        assert!(!s.ref_dec());
        // An abort later cancels it as an abort, not as lost.
        assert!(s.transition_to_notified_and_cancel());
        assert!(matches!(s.transition_to_running(), ToRunning::Cancelled));
        assert!(!s.load().is_lost_and_cancelled());

        // Cancel: still running, cancelled because lost.
        let s = State::new(true);
        assert!(matches!(s.transition_to_running(), ToRunning::Success));
        assert!(matches!(s.transition_to_idle(), ToIdle::LostCancelled));
        let lost = s.load();
        assert!(lost.is_running() && lost.is_cancelled() && lost.is_lost_and_cancelled());
        assert_eq!(lost.ref_count(), 3);

        // Woken during the poll: resubmitted, not lost.
        let s = State::new(true);
        assert!(matches!(s.transition_to_running(), ToRunning::Success));
        assert!(matches!(
            s.transition_to_notified_by_ref(),
            ToNotified::DoNothing
        ));
        assert!(matches!(s.transition_to_idle(), ToIdle::OkNotified));
        assert!(!s.load().is_lost());
    }

    #[test]
    fn the_last_waker_of_an_idle_task_cancels_it_under_the_cancel_policy() {
        let s = State::new(true);
        assert!(matches!(s.transition_to_running(), ToRunning::Success));
        s.waker_inc();
        assert!(matches!(s.transition_to_idle(), ToIdle::Ok));
        assert!(matches!(
            s.transition_to_waker_dropped(),
            WakerDropped::LostCancelled
        ));
        let lost = s.load();
        assert!(lost.is_notified() && lost.is_cancelled() && lost.is_lost_and_cancelled());
        // The waker's reference became the Notified's: registry, join
        // handle, Notified.
        assert_eq!(lost.ref_count(), 3);
        // A later abort finds it cancelled already.
        assert!(!s.transition_to_notified_and_cancel());
        assert!(matches!(s.transition_to_running(), ToRunning::Cancelled));
    }

    #[test]
    fn abort_of_idle_task_submits_once() {
        let s = State::new(false);
        assert!(matches!(s.transition_to_running(), ToRunning::Success));
        s.waker_inc();
        assert!(matches!(s.transition_to_idle(), ToIdle::Ok));
        assert!(s.transition_to_notified_and_cancel());
        assert!(!s.transition_to_notified_and_cancel());
        assert!(matches!(s.transition_to_running(), ToRunning::Cancelled));
    }

    #[test]
    fn shutdown_claims_only_idle_tasks() {
        let s = State::new(false);
        assert!(matches!(s.transition_to_running(), ToRunning::Success));
        assert!(!s.transition_to_shutdown());
        assert!(matches!(s.transition_to_idle(), ToIdle::Cancelled));

        let s = State::new(false);
        assert!(s.transition_to_shutdown());
        // The queued Notified then finds it taken.
        assert!(matches!(s.transition_to_running(), ToRunning::Failed));
    }

    #[test]
    fn join_waker_handshake_fails_after_complete() {
        let s = State::new(false);
        assert!(s.set_join_waker().is_ok());
        assert!(s.unset_join_waker().is_ok());
        assert!(matches!(s.transition_to_running(), ToRunning::Success));
        let _ = s.transition_to_complete();
        assert!(s.set_join_waker().is_err());
    }
}

/// Model-checked races of the state machine: run with
/// `RUSTFLAGS="--cfg loom" cargo test -p bulwark-executor --lib loom_`.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicUsize as Count;
    use loom::sync::Arc;
    use std::sync::atomic::Ordering::SeqCst;

    /// Two wakers woken at once on an idle task: exactly one submits.
    #[test]
    fn loom_concurrent_wakes_submit_once() {
        loom::model(|| {
            let s = Arc::new(State::new(false));
            assert!(matches!(s.transition_to_running(), ToRunning::Success));
            // The two wakers, cloned during the poll.
            s.waker_inc();
            s.waker_inc();
            assert!(matches!(s.transition_to_idle(), ToIdle::Ok));
            let submits = Arc::new(Count::new(0));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let (s, submits) = (s.clone(), submits.clone());
                    loom::thread::spawn(move || {
                        if let ToNotified::Submit = s.transition_to_notified_by_ref() {
                            submits.fetch_add(1, SeqCst);
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(submits.load(SeqCst), 1);
        });
    }

    /// A wake racing with the end of a poll: the task is resubmitted exactly
    /// once, either by the waker or by the worker, never lost.
    #[test]
    fn loom_wake_during_poll_is_not_lost() {
        loom::model(|| {
            let s = Arc::new(State::new(false));
            assert!(matches!(s.transition_to_running(), ToRunning::Success));
            // The waker, cloned during the poll, kept by the other thread.
            s.waker_inc();
            let s2 = s.clone();
            let waker = loom::thread::spawn(move || {
                matches!(s2.transition_to_notified_by_ref(), ToNotified::Submit)
            });
            let by_worker = matches!(s.transition_to_idle(), ToIdle::OkNotified);
            let by_waker = waker.join().unwrap();
            assert!(
                by_worker ^ by_waker,
                "resubmitted {} times",
                by_worker as u8 + by_waker as u8
            );
        });
    }

    /// An abort racing with a shutdown: the future is dropped by exactly one
    /// of them (the shutdown claims it, or the worker that dequeues the abort
    /// sees CANCELLED).
    #[test]
    fn loom_abort_and_shutdown_cancel_once() {
        loom::model(|| {
            let s = Arc::new(State::new(false));
            assert!(matches!(s.transition_to_running(), ToRunning::Success));
            // A waker kept somewhere: the task waits, not lost.
            s.waker_inc();
            assert!(matches!(s.transition_to_idle(), ToIdle::Ok));
            let s2 = s.clone();
            let aborter = loom::thread::spawn(move || s2.transition_to_notified_and_cancel());
            let claimed = s.transition_to_shutdown();
            let submitted = aborter.join().unwrap();
            let mut drops = usize::from(claimed);
            if submitted {
                // The worker dequeues the abort's Notified.
                if let ToRunning::Cancelled = s.transition_to_running() {
                    drops += 1;
                }
            }
            assert_eq!(drops, 1);
        });
    }

    /// The stage of a modelled task: what the future, the output or the
    /// freed cell would be. Loom reports any access to it that the state
    /// transitions do not order (a data race).
    type Stage = loom::cell::UnsafeCell<u8>;
    const FUTURE: u8 = 1;
    const OUTPUT: u8 = 2;
    const CONSUMED: u8 = 3;
    const FREED: u8 = 4;

    /// `Harness::complete` as far as the state goes: publish COMPLETE, drop
    /// the output if nobody will read it, then release the running and the
    /// registry references. True if those were the last.
    fn complete(s: &State, stage: &Stage) -> bool {
        stage.with_mut(|p| {
            // SAFETY: the caller holds RUNNING, so the stage is its alone.
            unsafe { *p = OUTPUT }
        });
        let prev = s.transition_to_complete();
        if !prev.is_join_interested() {
            stage.with_mut(|p| {
                // SAFETY: COMPLETE is set and the join handle is gone.
                unsafe { *p = CONSUMED }
            });
        }
        s.transition_to_terminal(2)
    }

    /// An abort racing the end of a poll that returned `Pending`: the future
    /// is dropped exactly once, and exactly one party acts on the abort
    /// (the runner sees `Cancelled`, or the aborter submits a `Notified`
    /// whose worker sees `Cancelled`). The task ends complete with only the
    /// join handle's reference left once the waker it kept is dropped.
    #[test]
    fn loom_abort_races_transition_to_idle() {
        loom::model(|| {
            let s = Arc::new(State::new(false));
            let stage = Arc::new(Stage::new(FUTURE));
            let drops = Arc::new(Count::new(0));
            assert!(matches!(s.transition_to_running(), ToRunning::Success));
            // The poll keeps a waker (a timer holds it, say).
            s.waker_inc();

            let aborter = {
                let (s, stage, drops) = (s.clone(), stage.clone(), drops.clone());
                loom::thread::spawn(move || {
                    let submitted = s.transition_to_notified_and_cancel();
                    if submitted {
                        // The worker that dequeues the abort's Notified.
                        assert!(matches!(s.transition_to_running(), ToRunning::Cancelled));
                        stage.with_mut(|p| {
                            // SAFETY: RUNNING is ours.
                            unsafe { assert_eq!(*p, FUTURE) }
                        });
                        drops.fetch_add(1, SeqCst);
                        assert!(!complete(&s, &stage));
                    }
                    submitted
                })
            };

            // The runner: the poll touched the future, then returned Pending.
            stage.with_mut(|p| {
                // SAFETY: RUNNING is ours.
                unsafe { assert_eq!(*p, FUTURE) }
            });
            let cancelled_by_runner = match s.transition_to_idle() {
                ToIdle::Ok => false,
                ToIdle::Cancelled => {
                    drops.fetch_add(1, SeqCst);
                    assert!(!complete(&s, &stage));
                    true
                }
                ToIdle::OkNotified => panic!("an abort resubmitted by the runner"),
                ToIdle::OkDealloc => panic!("freed with the join handle alive"),
                ToIdle::Lost | ToIdle::LostCancelled => panic!("lost with a waker alive"),
            };
            let submitted = aborter.join().unwrap();
            // The timer lets its waker go: the task is complete, not lost.
            assert!(matches!(
                s.transition_to_waker_dropped(),
                WakerDropped::Done
            ));

            assert!(
                cancelled_by_runner ^ submitted,
                "runner cancelled: {cancelled_by_runner}, aborter submitted: {submitted}"
            );
            assert_eq!(
                drops.load(SeqCst),
                1,
                "future dropped more or less than once"
            );
            let end = s.load();
            assert!(end.is_complete() && !end.is_running() && end.is_cancelled());
            assert_eq!(end.ref_count(), 1, "{end:?}");
        });
    }

    /// The last holders let go at once: the runner (running and registry
    /// references, via `transition_to_terminal(2)`), the join handle
    /// (`unset_join_interested`, then `ref_dec`) and a waker
    /// (`transition_to_waker_dropped`). Exactly one of them frees the task, after every other access to the
    /// stage (loom checks the ordering), and the output is dropped exactly
    /// once, by the runner or the join handle.
    #[test]
    fn loom_last_reference_frees_once() {
        loom::model(|| {
            let s = Arc::new(State::new(false));
            let stage = Arc::new(Stage::new(FUTURE));
            let frees = Arc::new(Count::new(0));
            assert!(matches!(s.transition_to_running(), ToRunning::Success));
            // A waker cloned during the poll.
            s.waker_inc();
            assert_eq!(s.load().ref_count(), 4);

            let free = |stage: &Stage, frees: &Count| {
                frees.fetch_add(1, SeqCst);
                stage.with_mut(|p| {
                    // SAFETY: the last reference is gone: nobody else reaches
                    // the cell.
                    unsafe {
                        assert_ne!(*p, OUTPUT, "freed with the output not dropped");
                        *p = FREED;
                    }
                });
            };

            let join = {
                let (s, stage, frees) = (s.clone(), stage.clone(), frees.clone());
                loom::thread::spawn(move || {
                    let prev = s.unset_join_interested();
                    if prev.is_complete() {
                        stage.with_mut(|p| {
                            // SAFETY: COMPLETE was set while we held
                            // JOIN_INTEREST: the output is ours.
                            unsafe {
                                assert_eq!(*p, OUTPUT);
                                *p = CONSUMED;
                            }
                        });
                    }
                    if s.ref_dec() {
                        free(&stage, &frees);
                    }
                })
            };
            let waker = {
                let (s, stage, frees) = (s.clone(), stage.clone(), frees.clone());
                loom::thread::spawn(move || match s.transition_to_waker_dropped() {
                    WakerDropped::Dealloc => free(&stage, &frees),
                    WakerDropped::Done => {}
                    // Running or complete throughout: never lost.
                    WakerDropped::Lost | WakerDropped::LostCancelled => {
                        panic!("a running task found lost")
                    }
                })
            };
            if complete(&s, &stage) {
                free(&stage, &frees);
            }
            join.join().unwrap();
            waker.join().unwrap();

            assert_eq!(frees.load(SeqCst), 1, "freed more or less than once");
            assert_eq!(s.load().ref_count(), 0);
            stage.with(|p| {
                // SAFETY: every thread is joined.
                unsafe { assert_eq!(*p, FREED) }
            });
        });
    }

    /// The join-waker handshake: the join handle registers a waker, then
    /// replaces it with another (`unset_join_waker`, write, `set_join_waker`),
    /// while the runner completes the task. The join side sees COMPLETE, or
    /// the runner sees JOIN_WAKER and wakes the waker registered last; never
    /// both miss. Loom checks that the slot is never written while the runner
    /// may read it, and that the output is published before it is read.
    #[test]
    fn loom_join_waker_handshake_never_misses() {
        loom::model(|| {
            let s = Arc::new(State::new(false));
            let stage = Arc::new(Stage::new(FUTURE));
            // The join waker slot: 0 empty, else which waker.
            let slot = Arc::new(loom::cell::UnsafeCell::new(0u8));
            assert!(matches!(s.transition_to_running(), ToRunning::Success));

            let join = {
                let (s, stage, slot) = (s.clone(), stage.clone(), slot.clone());
                loom::thread::spawn(move || {
                    // `Harness::can_read_output` for waker `w`: Ok(true) if
                    // the output may be read, Ok(false) if `w` is registered.
                    let poll = |w: u8| -> bool {
                        let snapshot = s.load();
                        if snapshot.is_complete() {
                            return true;
                        }
                        if snapshot.is_join_waker_set() && s.unset_join_waker().is_err() {
                            return true;
                        }
                        slot.with_mut(|p| {
                            // SAFETY: JOIN_WAKER is clear and the task was
                            // not complete: only the join handle writes.
                            unsafe { *p = w }
                        });
                        s.set_join_waker().is_err()
                    };
                    let ready = poll(1) || poll(2);
                    if ready {
                        stage.with(|p| {
                            // SAFETY: COMPLETE is set: the output is the
                            // join handle's to read.
                            unsafe { assert_eq!(*p, OUTPUT) }
                        });
                    }
                    ready
                })
            };

            // The runner.
            stage.with_mut(|p| {
                // SAFETY: RUNNING is ours.
                unsafe { *p = OUTPUT }
            });
            let prev = s.transition_to_complete();
            assert!(prev.is_join_interested());
            let woken = if prev.is_join_waker_set() {
                slot.with(|p| {
                    // SAFETY: JOIN_WAKER was set when COMPLETE was: the join
                    // handle no longer writes the slot.
                    unsafe { *p }
                })
            } else {
                0
            };
            let ready = join.join().unwrap();

            assert!(ready || woken != 0, "the join handle would wait forever");
            if !ready {
                assert_eq!(woken, 2, "the runner woke a replaced waker");
            }
        });
    }

    /// What the harness does with each outcome of a lost-task model, as far
    /// as the state and the stage go; counts detections and future drops.
    struct Lost {
        s: Arc<State>,
        stage: Arc<Stage>,
        detections: Arc<Count>,
        drops: Arc<Count>,
    }

    impl Lost {
        fn new(cancel_if_lost: bool) -> Lost {
            Lost {
                s: Arc::new(State::new(cancel_if_lost)),
                stage: Arc::new(Stage::new(FUTURE)),
                detections: Arc::new(Count::new(0)),
                drops: Arc::new(Count::new(0)),
            }
        }

        fn clone(&self) -> Lost {
            Lost {
                s: self.s.clone(),
                stage: self.stage.clone(),
                detections: self.detections.clone(),
                drops: self.drops.clone(),
            }
        }

        /// `Schedule::on_lost`: reads the cell, so the caller must hold a
        /// reference (loom sees a read after a free as a race on the stage).
        fn report(&self) {
            self.detections.fetch_add(1, SeqCst);
            self.stage.with(|p| {
                // SAFETY: only checks the cell is not freed; the stage is
                // never freed in these models while a reference is held.
                unsafe { assert_ne!(*p, FREED, "reported a freed task") }
            });
        }

        /// `Harness::cancel_task` then `complete`, by the thread holding
        /// RUNNING.
        fn cancel_in_place(&self) {
            self.stage.with_mut(|p| {
                // SAFETY: RUNNING is ours.
                unsafe {
                    assert_eq!(*p, FUTURE, "the future was dropped twice");
                    *p = CONSUMED;
                }
            });
            self.drops.fetch_add(1, SeqCst);
            assert!(self.s.load().is_lost_and_cancelled());
            assert!(
                !complete(&self.s, &self.stage),
                "freed with the join handle alive"
            );
        }

        /// `drop_waker` in `waker.rs`.
        fn drop_waker(&self) {
            match self.s.transition_to_waker_dropped() {
                WakerDropped::Done => {}
                WakerDropped::Dealloc => panic!("freed with the join handle alive"),
                WakerDropped::Lost => {
                    self.report();
                    assert!(!self.s.ref_dec());
                }
                WakerDropped::LostCancelled => {
                    self.report();
                    // The worker that dequeues the Notified (here, at once).
                    assert!(matches!(
                        self.s.transition_to_running(),
                        ToRunning::Cancelled
                    ));
                    self.cancel_in_place();
                }
            }
        }

        /// The end of a poll that returned `Pending` (`poll_running`).
        fn poll_end(&self) {
            self.stage.with_mut(|p| {
                // SAFETY: RUNNING is ours.
                unsafe { assert_eq!(*p, FUTURE) }
            });
            match self.s.transition_to_idle() {
                ToIdle::Ok | ToIdle::OkNotified => {}
                ToIdle::Lost => {
                    self.report();
                    assert!(!self.s.ref_dec());
                }
                ToIdle::LostCancelled => {
                    self.report();
                    self.cancel_in_place();
                }
                ToIdle::Cancelled => panic!("nobody cancelled it"),
                ToIdle::OkDealloc => panic!("freed with the join handle alive"),
            }
        }
    }

    /// The last waker is dropped on one thread while the poll that made it
    /// ends on another: whichever sees "no waker, idle" on the word finds
    /// the task lost, exactly once, under both policies. Under `Report` the
    /// task ends idle and lost with the registry's and the join handle's
    /// references; under `Cancel` its future is dropped exactly once and it
    /// ends complete with the join handle's reference alone.
    fn last_waker_drop_races_poll_end(cancel_if_lost: bool) {
        loom::model(move || {
            let m = Lost::new(cancel_if_lost);
            assert!(matches!(m.s.transition_to_running(), ToRunning::Success));
            // The poll clones its waker and hands it to another thread,
            // which drops it without waking.
            m.s.waker_inc();
            let dropper = {
                let m = m.clone();
                loom::thread::spawn(move || m.drop_waker())
            };
            m.poll_end();
            dropper.join().unwrap();

            assert_eq!(m.detections.load(SeqCst), 1, "found lost other than once");
            let end = m.s.load();
            assert!(end.is_lost() && end.waker_count() == 0, "{end:?}");
            if cancel_if_lost {
                assert_eq!(m.drops.load(SeqCst), 1);
                assert!(end.is_complete() && !end.is_running(), "{end:?}");
                assert_eq!(end.ref_count(), 1, "{end:?}");
            } else {
                assert_eq!(m.drops.load(SeqCst), 0);
                assert!(!end.is_running() && !end.is_cancelled(), "{end:?}");
                assert_eq!(end.ref_count(), 2, "{end:?}");
            }
        });
    }

    #[test]
    fn loom_last_waker_drop_races_poll_end_report() {
        last_waker_drop_races_poll_end(false);
    }

    #[test]
    fn loom_last_waker_drop_races_poll_end_cancel() {
        last_waker_drop_races_poll_end(true);
    }

    /// An idle task with two wakers: one thread wakes it (by reference,
    /// then drops that waker; or by value) while another drops the other
    /// waker. The task was woken, so it is never found lost, and it is
    /// submitted exactly once, whatever the order.
    fn last_waker_drop_races_wake(by_val: bool) {
        loom::model(move || {
            let m = Lost::new(true);
            assert!(matches!(m.s.transition_to_running(), ToRunning::Success));
            m.s.waker_inc();
            m.s.waker_inc();
            m.poll_end();
            assert_eq!(m.detections.load(SeqCst), 0);

            let waker = {
                let m = m.clone();
                loom::thread::spawn(move || {
                    let out = if by_val {
                        m.s.transition_to_notified_by_val()
                    } else {
                        m.s.transition_to_notified_by_ref()
                    };
                    if !by_val {
                        m.drop_waker();
                    }
                    matches!(out, ToNotified::Submit)
                })
            };
            m.drop_waker();
            let submitted = waker.join().unwrap();

            assert_eq!(m.detections.load(SeqCst), 0, "a woken task found lost");
            assert!(submitted, "the wake of an idle task submits it");
            let end = m.s.load();
            assert!(end.is_notified() && !end.is_lost() && !end.is_cancelled());
            // Registry, join handle, the Notified.
            assert_eq!((end.ref_count(), end.waker_count()), (3, 0), "{end:?}");
        });
    }

    #[test]
    fn loom_last_waker_drop_races_wake_by_ref() {
        last_waker_drop_races_wake(false);
    }

    #[test]
    fn loom_last_waker_drop_races_wake_by_val() {
        last_waker_drop_races_wake(true);
    }

    /// The two last wakers of an idle task are dropped at once: the one
    /// that drops last finds it lost, and only it.
    #[test]
    fn loom_two_last_wakers_dropped_at_once() {
        loom::model(|| {
            let m = Lost::new(false);
            assert!(matches!(m.s.transition_to_running(), ToRunning::Success));
            m.s.waker_inc();
            m.s.waker_inc();
            m.poll_end();
            let other = {
                let m = m.clone();
                loom::thread::spawn(move || m.drop_waker())
            };
            m.drop_waker();
            other.join().unwrap();
            assert_eq!(m.detections.load(SeqCst), 1, "found lost other than once");
            let end = m.s.load();
            assert!(end.is_lost() && !end.is_notified());
            assert_eq!((end.ref_count(), end.waker_count()), (2, 0), "{end:?}");
        });
    }
}
