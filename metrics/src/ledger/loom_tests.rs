//! loom models of the ledger: budget 1, a releaser racing a joining waiter,
//! a cancelling waiter and a plain `try_acquire`. Each model checks at the
//! end that no permit was lost or duplicated (`live` equals the permits
//! held) and that no waiter is left waiting while a permit is free.
//!
//! Run: `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p
//! bulwark-metrics --lib loom_`.

use super::*;
use loom::thread;
use std::task::Waker;

fn noop() -> Waker {
    Waker::noop().clone()
}

/// A release races a waiter joining the list: the waiter must end up with
/// the permit (the Dekker pair `has_waiters`/`live`).
#[test]
fn loom_release_and_wait_never_strand_a_permit() {
    loom::model(|| {
        let k = Arc::new(Kind::new(TASK, 1));
        assert!(k.try_acquire());
        let slot = Arc::new(WaitSlot::new());
        let releaser = {
            let k = k.clone();
            thread::spawn(move || k.release())
        };
        slot.register(&noop());
        k.wait(slot.clone());
        releaser.join().unwrap();
        assert!(slot.is_granted(), "a permit is free and the waiter waits");
        assert_eq!((k.live(), k.waiting()), (1, 0));
    });
}

/// A release races a waiter's cancellation: whoever ends up with the permit
/// gives it back exactly once.
#[test]
fn loom_cancel_and_release_never_lose_or_duplicate_a_permit() {
    loom::model(|| {
        let k = Arc::new(Kind::new(TASK, 1));
        assert!(k.try_acquire());
        let slot = Arc::new(WaitSlot::new());
        slot.register(&noop());
        k.wait(slot.clone());
        let releaser = {
            let k = k.clone();
            thread::spawn(move || k.release())
        };
        if slot.cancel() {
            k.release();
        }
        releaser.join().unwrap();
        assert_eq!((k.live(), k.waiting()), (0, 0));
        assert_eq!(k.over_released(), 0);
    });
}

/// Three parties on a budget of 1: a holder releasing, a `try_acquire`, and
/// a waiter joining. At the end `live` is the number of permits held, and if
/// a permit is free nobody waits.
#[test]
fn loom_try_acquire_release_and_wait_agree_on_live() {
    loom::model(|| {
        let k = Arc::new(Kind::new(TASK, 1));
        assert!(k.try_acquire());
        let slot = Arc::new(WaitSlot::new());
        let releaser = {
            let k = k.clone();
            thread::spawn(move || k.release())
        };
        let grabber = {
            let k = k.clone();
            thread::spawn(move || k.try_acquire())
        };
        slot.register(&noop());
        k.wait(slot.clone());
        releaser.join().unwrap();
        let grabbed = grabber.join().unwrap();
        let held = usize::from(grabbed) + usize::from(slot.is_granted());
        assert_eq!(k.live(), held, "live equals the permits held");
        assert_eq!(held, 1, "the one permit is held by someone");
        assert_eq!(k.waiting(), usize::from(!slot.is_granted()));
    });
}

/// A close races a release and a waiter: the waiter is granted or closed,
/// never both, and `live` counts only a granted one.
#[test]
fn loom_close_races_release_and_wait() {
    loom::model(|| {
        let k = Arc::new(Kind::new(TASK, 1));
        assert!(k.try_acquire());
        let slot = Arc::new(WaitSlot::new());
        slot.register(&noop());
        k.wait(slot.clone());
        let closer = {
            let k = k.clone();
            thread::spawn(move || {
                k.close();
            })
        };
        k.release();
        closer.join().unwrap();
        assert!(slot.is_granted() != slot.is_closed());
        assert_eq!(k.live(), usize::from(slot.is_granted()));
        assert_eq!(k.waiting(), 0);
    });
}

/// The async path: an `Acquire` blocked on a full kind is woken by a
/// release on another thread (no lost wake: loom reports a deadlock if the
/// waker is never called), and its permit is released on drop.
#[test]
fn loom_acquire_is_woken_by_a_release() {
    loom::model(|| {
        let k = Arc::new(Kind::new("db", 1));
        let held = k.try_acquire_permit().unwrap();
        let releaser = thread::spawn(move || drop(held));
        let permit = loom::future::block_on(k.acquire()).expect("never closed");
        assert_eq!(k.live(), 1);
        drop(permit);
        releaser.join().unwrap();
        assert_eq!((k.live(), k.waiting()), (0, 0));
    });
}

/// Raising the budget races a waiter joining: the new room reaches it.
#[test]
fn loom_raising_the_budget_admits_a_joining_waiter() {
    loom::model(|| {
        let k = Arc::new(Kind::new(TASK, 1));
        assert!(k.try_acquire());
        let slot = Arc::new(WaitSlot::new());
        let raiser = {
            let k = k.clone();
            thread::spawn(move || k.set_budget(2))
        };
        slot.register(&noop());
        k.wait(slot.clone());
        raiser.join().unwrap();
        assert!(slot.is_granted(), "room is free and the waiter waits");
        assert_eq!((k.live(), k.waiting()), (2, 0));
    });
}
