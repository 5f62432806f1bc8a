use super::*;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool as StdBool, AtomicUsize as StdUsize, Ordering::SeqCst};
use std::sync::Mutex as StdMutex;
use std::task::{Context, Poll, Wake, Waker};

/// A waiter that logs admissions and closes.
struct Log {
    id: usize,
    log: Arc<StdMutex<Vec<String>>>,
    cancelled: StdBool,
}

impl Waiter for Log {
    fn admit(self: Arc<Self>) -> bool {
        if self.cancelled.load(SeqCst) {
            return false;
        }
        self.log.lock().unwrap().push(format!("admit {}", self.id));
        true
    }

    fn close(self: Arc<Self>) {
        self.log.lock().unwrap().push(format!("close {}", self.id));
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(SeqCst)
    }
}

fn waiter(id: usize, log: &Arc<StdMutex<Vec<String>>>) -> Arc<Log> {
    Arc::new(Log {
        id,
        log: log.clone(),
        cancelled: StdBool::new(false),
    })
}

fn logged(log: &Arc<StdMutex<Vec<String>>>) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// A waker counting its wakes.
#[derive(Default)]
struct Count(StdUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn counting() -> (Arc<Count>, Waker) {
    let c = Arc::new(Count::default());
    (c.clone(), Waker::from(c))
}

/// A waker whose wake panics.
struct Bomb;

impl Wake for Bomb {
    fn wake(self: Arc<Self>) {
        panic!("this waker panics when woken");
    }
}

fn poll<F: Future + Unpin>(f: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(f).poll(&mut Context::from_waker(waker))
}

#[test]
fn never_more_live_than_budget() {
    let k = Kind::new(TASK, 3);
    assert!(k.try_acquire() && k.try_acquire() && k.try_acquire());
    assert!(!k.try_acquire());
    assert_eq!((k.live(), k.refused(), k.peak()), (3, 1, 3));
    k.release();
    assert!(k.try_acquire());
}

#[test]
fn waiters_are_admitted_in_order_and_cancelled_ones_pass_their_turn() {
    let k = Kind::new(TASK, 1);
    let log = Arc::new(StdMutex::new(Vec::new()));
    assert!(k.try_acquire());
    let ws: Vec<_> = (0..4).map(|i| waiter(i, &log)).collect();
    for w in &ws {
        k.wait(w.clone());
    }
    assert!(!k.try_acquire_fair());
    ws[1].cancelled.store(true, SeqCst);
    for _ in 0..3 {
        k.release();
    }
    assert_eq!(logged(&log), ["admit 0", "admit 2", "admit 3"]);
    assert_eq!(k.live(), 1);
    assert_eq!(k.waiting(), 0);
}

#[test]
fn a_waiter_joining_with_a_free_permit_is_admitted_at_once() {
    let k = Kind::new(TASK, 1);
    let log = Arc::new(StdMutex::new(Vec::new()));
    k.wait(waiter(7, &log));
    assert_eq!(logged(&log), ["admit 7"]);
    assert_eq!(k.live(), 1);
}

#[test]
fn close_tells_waiters_closed_and_leaves_live_alone() {
    let k = Kind::new(TASK, 1);
    let log = Arc::new(StdMutex::new(Vec::new()));
    assert!(k.try_acquire());
    k.wait(waiter(1, &log));
    k.wait(waiter(2, &log));
    assert_eq!(k.close(), 2);
    assert_eq!(logged(&log), ["close 1", "close 2"]);
    assert_eq!((k.live(), k.waiting()), (1, 0));
    assert!(k.is_closed());
    // A waiter joining later is closed at once; nothing is handed out.
    k.wait(waiter(3, &log));
    assert_eq!(logged(&log).last().map(String::as_str), Some("close 3"));
    assert!(!k.try_acquire() && !k.try_acquire_fair());
    // The holder releases; live reaches zero and stays there.
    k.release();
    assert_eq!((k.live(), k.over_released()), (0, 0));
    assert_eq!(k.close(), 0, "closing twice is harmless");
}

#[test]
#[cfg_attr(
    debug_assertions,
    should_panic(expected = "ledger kind `task`: release with no live permit")
)]
fn a_release_without_a_permit_never_wraps_live() {
    let k = Kind::new(TASK, 2);
    k.release();
    // Release builds: counted, and live stays at zero instead of wrapping.
    assert_eq!((k.live(), k.over_released()), (0, 1));
    assert!(k.try_acquire());
    assert_eq!(k.live(), 1);
}

#[test]
fn raising_the_budget_admits_waiters_and_lowering_refuses_until_drained() {
    let k = Kind::new("db", 1);
    let log = Arc::new(StdMutex::new(Vec::new()));
    assert!(k.try_acquire());
    k.wait(waiter(1, &log));
    k.wait(waiter(2, &log));
    k.set_budget(2);
    assert_eq!(logged(&log), ["admit 1"]);
    assert_eq!((k.live(), k.waiting()), (2, 1));
    k.set_budget(1);
    k.release();
    assert!(logged(&log).len() == 1, "still over the lowered budget");
    assert_eq!(k.live(), 1);
    k.release();
    assert_eq!(logged(&log), ["admit 1", "admit 2"]);
    assert_eq!(k.live(), 1);
}

#[test]
fn a_long_wait_list_sweeps_out_cancelled_waiters() {
    let k = Kind::new(TASK, 1);
    let log = Arc::new(StdMutex::new(Vec::new()));
    assert!(k.try_acquire());
    let ws: Vec<_> = (0..SWEEP_MIN).map(|i| waiter(i, &log)).collect();
    for w in &ws {
        k.wait(w.clone());
        w.cancelled.store(true, SeqCst);
    }
    assert_eq!(k.waiting(), SWEEP_MIN);
    k.wait(waiter(1000, &log));
    assert_eq!(k.waiting(), 1, "the cancelled ones were swept at the join");
    k.release();
    assert_eq!(logged(&log), ["admit 1000"]);
}

#[test]
fn concurrent_acquire_release_keeps_the_ceiling() {
    let k = Arc::new(Kind::new(TASK, 8));
    let max_seen = Arc::new(StdUsize::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (k, max_seen) = (k.clone(), max_seen.clone());
            std::thread::spawn(move || {
                for _ in 0..20_000 {
                    if k.try_acquire() {
                        max_seen.fetch_max(k.live(), SeqCst);
                        k.release();
                    }
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert!(max_seen.load(SeqCst) <= 8);
    assert_eq!(k.live(), 0);
}

#[test]
fn wait_slot_grants_once_and_wakes_the_latest_waker() {
    let k = Kind::new(TASK, 1);
    assert!(k.try_acquire());
    let slot = Arc::new(WaitSlot::new());
    let (first, w1) = counting();
    let (second, w2) = counting();
    assert!(slot.register(&w1));
    k.wait(slot.clone());
    assert!(slot.register(&w2), "still waiting");
    assert!(!slot.is_granted() && !slot.is_closed());
    k.release();
    assert!(slot.is_granted());
    assert_eq!((first.0.load(SeqCst), second.0.load(SeqCst)), (0, 1));
    assert!(!slot.register(&w2), "granted: nothing to wait for");
    assert_eq!(k.live(), 1, "the slot's owner holds the permit");
    assert!(slot.cancel(), "granted: the canceller must release");
    assert!(!slot.cancel(), "a second cancel never releases twice");
    k.release();
    assert_eq!(k.live(), 0);
}

#[test]
fn a_cancelled_slot_passes_its_turn_and_a_closed_one_owes_nothing() {
    let k = Kind::new(TASK, 1);
    assert!(k.try_acquire());
    let cancelled = Arc::new(WaitSlot::new());
    let closed = Arc::new(WaitSlot::new());
    let (woken, w) = counting();
    k.wait(cancelled.clone());
    k.wait(closed.clone());
    closed.register(&w);
    assert!(!cancelled.cancel(), "no permit was granted");
    assert!(!cancelled.cancel());
    assert_eq!(k.close(), 2);
    assert!(closed.is_closed() && !closed.is_granted());
    assert_eq!(woken.0.load(SeqCst), 1);
    assert!(!closed.register(&w));
    assert!(!closed.cancel(), "closed: nothing to release");
    assert!(!cancelled.is_closed(), "cancelled before the close");
    assert_eq!(k.live(), 1);
}

#[test]
fn a_panicking_waker_poisons_nothing() {
    let k = Arc::new(Kind::new(TASK, 1));
    assert!(k.try_acquire());
    let slot = Arc::new(WaitSlot::new());
    slot.register(&Waker::from(Arc::new(Bomb)));
    k.wait(slot.clone());
    let k2 = k.clone();
    let panicked = std::thread::spawn(move || k2.release()).join();
    assert!(
        panicked.is_err(),
        "the wake panicked on the releasing thread"
    );
    // The permit went to the slot before the wake; the books are intact and
    // the slot and the kind still work.
    assert!(slot.is_granted());
    assert_eq!(k.live(), 1);
    let (_, w) = counting();
    assert!(!slot.register(&w));
    assert!(slot.cancel());
    k.release();
    assert_eq!((k.live(), k.waiting()), (0, 0));
    let again = Arc::new(WaitSlot::new());
    k.wait(again.clone());
    assert!(again.is_granted());
}

#[test]
fn acquire_resolves_at_once_when_a_permit_is_free() {
    let k = Arc::new(Kind::new("db", 1));
    let (_, w) = counting();
    let mut a = k.acquire();
    let Poll::Ready(Ok(permit)) = poll(&mut a, &w) else {
        panic!("a free permit is taken at once");
    };
    assert_eq!(permit.kind().name(), "db");
    assert_eq!(k.live(), 1);
    assert!(k.try_acquire_permit().is_none());
    drop(permit);
    assert_eq!(k.live(), 0);
    let p = k.try_acquire_permit().expect("free again");
    let raw = p.into_raw();
    assert_eq!(k.live(), 1, "into_raw does not release");
    drop(Permit::from_raw(raw));
    assert_eq!(k.live(), 0);
}

#[test]
fn acquire_waits_its_turn_and_is_woken() {
    let k = Arc::new(Kind::new("db", 1));
    let held = k.try_acquire_permit().unwrap();
    let (woken, w) = counting();
    let mut a = k.acquire();
    let mut b = k.acquire();
    assert!(poll(&mut a, &w).is_pending());
    assert!(poll(&mut b, &w).is_pending());
    assert_eq!(k.waiting(), 2);
    drop(held);
    assert_eq!(woken.0.load(SeqCst), 1, "only the first is woken");
    let Poll::Ready(Ok(pa)) = poll(&mut a, &w) else {
        panic!("the first waiter holds the permit");
    };
    assert!(poll(&mut b, &w).is_pending());
    drop(pa);
    assert!(matches!(poll(&mut b, &w), Poll::Ready(Ok(_))));
    assert_eq!(k.live(), 0, "b's permit was dropped with the Ready value");
}

#[test]
fn dropping_a_granted_acquire_passes_the_permit_on() {
    let k = Arc::new(Kind::new("db", 1));
    let held = k.try_acquire_permit().unwrap();
    let (_, w) = counting();
    let mut a = k.acquire();
    let mut b = k.acquire();
    assert!(poll(&mut a, &w).is_pending());
    assert!(poll(&mut b, &w).is_pending());
    drop(held); // granted to a, which is never polled again
    drop(a); // gives it on to b
    assert_eq!(k.live(), 1);
    assert!(matches!(poll(&mut b, &w), Poll::Ready(Ok(_))));
    assert_eq!(k.live(), 0);
    // A pending acquire dropped before any grant gives its place away.
    let held = k.try_acquire_permit().unwrap();
    let mut c = k.acquire();
    assert!(poll(&mut c, &w).is_pending());
    drop(c);
    drop(held);
    assert_eq!((k.live(), k.waiting()), (0, 0));
}

#[test]
fn acquire_on_a_closing_kind_is_closed_with_a_clear_error() {
    let k = Arc::new(Kind::new("db", 1));
    let held = k.try_acquire_permit().unwrap();
    let (woken, w) = counting();
    let mut a = k.acquire();
    assert!(poll(&mut a, &w).is_pending());
    k.close();
    assert_eq!(woken.0.load(SeqCst), 1);
    let Poll::Ready(Err(closed)) = poll(&mut a, &w) else {
        panic!("closed while waiting");
    };
    assert_eq!(closed.kind(), "db");
    assert!(closed.to_string().contains("`db` is closed"));
    let mut late = k.acquire();
    assert!(matches!(poll(&mut late, &w), Poll::Ready(Err(_))));
    drop(held);
    assert_eq!(k.live(), 0, "no permit was granted to a closed waiter");
}

#[test]
fn acquire_under_threads_never_exceeds_the_budget_or_loses_a_permit() {
    // Threads race acquire, drop-while-pending and release on a budget of 2;
    // each pending acquire is driven by spinning with a bounded number of
    // polls, so the test cannot hang.
    let k = Arc::new(Kind::new("db", 2));
    let over = Arc::new(StdBool::new(false));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (k, over) = (k.clone(), over.clone());
            std::thread::spawn(move || {
                let (_, w) = counting();
                for i in 0..2_000 {
                    let mut a = k.acquire();
                    let mut polls = 0;
                    let got = loop {
                        match poll(&mut a, &w) {
                            Poll::Ready(r) => break r.ok(),
                            // Every few rounds give up while pending.
                            Poll::Pending if (i + t) % 3 == 0 || polls > 10_000 => break None,
                            Poll::Pending => {
                                polls += 1;
                                std::thread::yield_now();
                            }
                        }
                    };
                    if got.is_some() && k.live() > 2 {
                        over.store(true, SeqCst);
                    }
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert!(!over.load(SeqCst));
    assert_eq!((k.live(), k.waiting()), (0, 0));
    assert_eq!(k.over_released(), 0);
}
