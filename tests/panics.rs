//! No panic escapes a worker thread: not from a task's poll, not from a
//! foreign waker that the runtime wakes when a task ends (a `spawn_wait`
//! waiter's), not from a destructor. A panic in any of them leaves the
//! finishing task's handle resolving and the worker serving its queue.

mod common;

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use bulwark::task;
use common::{builder, within};
use futures::FutureExt;
use tokio::sync::oneshot;

/// A waker that panics when woken, and counts the attempts.
struct PanickingWaker(AtomicUsize);

impl Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
        panic!("a waker that panics when woken");
    }
}

#[test]
fn a_waker_that_panics_when_a_task_ends_does_not_kill_the_worker() {
    within(30, "the worker to survive a panicking waker", || {
        // One worker, one permit: the blocker holds it; a `spawn_wait`
        // polled with a panicking waker waits for it. When the blocker ends,
        // the worker hands the permit over and wakes that waker.
        let rt = builder(1).max_tasks(1).build().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let blocker = rt.spawn(async move {
            let _ = rx.await;
            1
        });
        let bomb = Arc::new(PanickingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(bomb.clone());
        let mut waiting = {
            let _enter = rt.enter();
            task::Builder::new().spawn_wait(async { 2 }).boxed()
        };
        assert!(waiting
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        tx.send(()).unwrap();
        // The blocker's handle resolves although its end woke a panicking
        // waker on the worker.
        assert_eq!(rt.block_on(blocker).unwrap(), 1);
        assert_eq!(bomb.0.load(SeqCst), 1, "the waiter's waker was woken once");
        // The permit went to the waiter: its spawn goes through.
        let Poll::Ready(Ok(join)) = waiting.as_mut().poll(&mut Context::from_waker(&waker)) else {
            panic!("the waiter was granted the permit, so its spawn resolves");
        };
        assert_eq!(rt.block_on(join).unwrap(), 2);
        // The one worker still runs tasks.
        for i in 0..100u32 {
            assert_eq!(rt.block_on(rt.spawn(async move { i })).unwrap(), i);
        }
        let m = rt.metrics();
        assert_eq!(m.tasks_admitted_live, 0, "{m:?}");
    });
}

#[test]
fn a_task_whose_join_waker_panics_still_ends_and_frees_its_worker() {
    within(30, "the worker to survive a panicking join waker", || {
        let rt = builder(1).build().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let mut join = rt.spawn(async move {
            let _ = rx.await;
            7
        });
        let bomb = Arc::new(PanickingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(bomb.clone());
        assert!(std::pin::Pin::new(&mut join)
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        tx.send(()).unwrap();
        common::wait_until(10, "the join waker to be woken", || {
            bomb.0.load(SeqCst) == 1
        });
        assert_eq!(rt.block_on(join).unwrap(), 7);
        for i in 0..100u32 {
            assert_eq!(rt.block_on(rt.spawn(async move { i })).unwrap(), i);
        }
        // The last task may leave the books just after its handle resolves.
        common::wait_until(10, "every task to leave the books", || {
            rt.metrics().tasks_live == 0
        });
    });
}
