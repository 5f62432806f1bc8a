//! A task's state word: flag bits and a reference count in one `AtomicUsize`.
//!
//! Every change is a `transition_to_*` function that returns what the caller
//! must do next; callers never poke bits. Orderings: transitions that hand the
//! future or the output from one thread to another (to running, to idle, to
//! complete, and the join-waker handshake) use `AcqRel`, so the stage written
//! before a transition is seen by whoever observes it. Reference increments are
//! `Relaxed` (a new reference is made from an existing one, as `Arc::clone`);
//! decrements are `AcqRel` so the thread that frees the cell sees every write.

use crate::sync::AtomicUsize;
use std::fmt;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};

/// The task is being polled (or cancelled) by one thread, which alone may
/// touch the future.
const RUNNING: usize = 1 << 0;
/// The task has finished: the stage holds its output (or nothing, once read).
/// Never cleared.
const COMPLETE: usize = 1 << 1;
/// The task has been submitted to a queue, or must be resubmitted when the
/// running poll ends. At most one `Notified` exists while this is set.
const NOTIFIED: usize = 1 << 2;
/// A `JoinHandle` exists; whoever clears this while `COMPLETE` is set drops
/// the output.
const JOIN_INTEREST: usize = 1 << 3;
/// The join waker slot holds a waker the runtime may read. While clear and the
/// task not complete, only the `JoinHandle` may write the slot.
const JOIN_WAKER: usize = 1 << 4;
/// The task must be cancelled: its future dropped without another poll.
const CANCELLED: usize = 1 << 5;

const REF_SHIFT: usize = 6;
/// One reference: held by the registry, the `JoinHandle`, each waker and the
/// one `Notified` (or the worker running the task).
const REF_ONE: usize = 1 << REF_SHIFT;

/// A fresh task: notified (it is about to be queued), with a join handle, and
/// three references: registry, `Notified`, `JoinHandle`.
const INITIAL: usize = NOTIFIED | JOIN_INTEREST | (3 * REF_ONE);

pub(crate) struct State(AtomicUsize);

/// A copy of the state word.
#[derive(Clone, Copy)]
pub(crate) struct Snapshot(usize);

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
}

#[must_use]
pub(crate) enum ToNotified {
    DoNothing,
    /// Submit a `Notified` holding the reference the transition set aside.
    Submit,
    /// The waker's reference was the last: free the task.
    Dealloc,
}

impl State {
    pub(crate) fn new() -> State {
        State(AtomicUsize::new(INITIAL))
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

    /// The poll returned `Pending`.
    pub(crate) fn transition_to_idle(&self) -> ToIdle {
        self.fetch_update(|mut s| {
            debug_assert!(s.is_running());
            if s.is_cancelled() {
                return (None, ToIdle::Cancelled);
            }
            s.0 &= !RUNNING;
            let out = if s.is_notified() {
                ToIdle::OkNotified
            } else {
                s.ref_dec();
                if s.ref_count() == 0 {
                    ToIdle::OkDealloc
                } else {
                    ToIdle::Ok
                }
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
        let prev = Snapshot(self.0.fetch_sub(count * REF_ONE, AcqRel));
        debug_assert!(prev.ref_count() >= count, "task reference count underflow");
        prev.ref_count() == count
    }

    /// A waker is woken by value: its reference is consumed.
    pub(crate) fn transition_to_notified_by_val(&self) -> ToNotified {
        self.fetch_update(|mut s| {
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

    pub(crate) fn ref_inc(&self) {
        let prev = self.0.fetch_add(REF_ONE, Relaxed);
        // As Arc: an overflow would free a live task; abort rather than risk it.
        if prev > isize::MAX as usize {
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
    pub(crate) fn ref_count(self) -> usize {
        self.0 >> REF_SHIFT
    }
    fn ref_inc(&mut self) {
        self.0 += REF_ONE;
    }
    fn ref_dec(&mut self) {
        debug_assert!(self.ref_count() > 0);
        self.0 -= REF_ONE;
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("running", &self.is_running())
            .field("complete", &self.is_complete())
            .field("notified", &self.is_notified())
            .field("cancelled", &self.is_cancelled())
            .field("join_interested", &self.is_join_interested())
            .field("join_waker", &self.is_join_waker_set())
            .field("refs", &self.ref_count())
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_counts_references() {
        let s = State::new();
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
        assert!(matches!(s.transition_to_idle(), ToIdle::Ok));
        assert_eq!(s.load().ref_count(), 2);
        // Woken while idle: a new reference for the Notified.
        assert!(matches!(
            s.transition_to_notified_by_ref(),
            ToNotified::Submit
        ));
        assert_eq!(s.load().ref_count(), 3);
        assert!(matches!(s.transition_to_running(), ToRunning::Success));
        let prev = s.transition_to_complete();
        assert!(prev.is_join_interested());
        assert!(s.load().is_complete() && !s.load().is_running());
        assert!(!s.transition_to_terminal(2));
        assert!(s.transition_to_terminal(1));
    }

    #[test]
    fn abort_of_idle_task_submits_once() {
        let s = State::new();
        assert!(matches!(s.transition_to_running(), ToRunning::Success));
        assert!(matches!(s.transition_to_idle(), ToIdle::Ok));
        assert!(s.transition_to_notified_and_cancel());
        assert!(!s.transition_to_notified_and_cancel());
        assert!(matches!(s.transition_to_running(), ToRunning::Cancelled));
    }

    #[test]
    fn shutdown_claims_only_idle_tasks() {
        let s = State::new();
        assert!(matches!(s.transition_to_running(), ToRunning::Success));
        assert!(!s.transition_to_shutdown());
        assert!(matches!(s.transition_to_idle(), ToIdle::Cancelled));

        let s = State::new();
        assert!(s.transition_to_shutdown());
        // The queued Notified then finds it taken.
        assert!(matches!(s.transition_to_running(), ToRunning::Failed));
    }

    #[test]
    fn join_waker_handshake_fails_after_complete() {
        let s = State::new();
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
            let s = Arc::new(State::new());
            assert!(matches!(s.transition_to_running(), ToRunning::Success));
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
            let s = Arc::new(State::new());
            assert!(matches!(s.transition_to_running(), ToRunning::Success));
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
            let s = Arc::new(State::new());
            assert!(matches!(s.transition_to_running(), ToRunning::Success));
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
    /// join handle's reference left.
    #[test]
    fn loom_abort_races_transition_to_idle() {
        loom::model(|| {
            let s = Arc::new(State::new());
            let stage = Arc::new(Stage::new(FUTURE));
            let drops = Arc::new(Count::new(0));
            assert!(matches!(s.transition_to_running(), ToRunning::Success));

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
            };
            let submitted = aborter.join().unwrap();

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
    /// (`unset_join_interested`, then `ref_dec`) and a waker (`ref_dec`).
    /// Exactly one of them frees the task, after every other access to the
    /// stage (loom checks the ordering), and the output is dropped exactly
    /// once, by the runner or the join handle.
    #[test]
    fn loom_last_reference_frees_once() {
        loom::model(|| {
            let s = Arc::new(State::new());
            let stage = Arc::new(Stage::new(FUTURE));
            let frees = Arc::new(Count::new(0));
            assert!(matches!(s.transition_to_running(), ToRunning::Success));
            // A waker cloned during the poll.
            s.ref_inc();
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
                loom::thread::spawn(move || {
                    if s.ref_dec() {
                        free(&stage, &frees);
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
            let s = Arc::new(State::new());
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
}
