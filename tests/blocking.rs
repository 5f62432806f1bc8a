//! The blocking pool: `spawn_blocking` from every entry point returns each
//! closure's value, `max_blocking_threads` caps how many run at once, a panic
//! reaches the join handle, blocking work never runs on a worker, and idle
//! pool threads exit after the keep-alive.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bulwark::task::{self, JoinHandle};
use common::{builder, panic_message, threads_named, wait_until, within};

#[test]
fn a_thousand_blocking_calls_never_exceed_max_blocking_threads() {
    const CALLS: usize = 1_000;
    const MAX: usize = 4;
    within(60, "1_000 spawn_blocking calls on a pool of 4", || {
        let rt = builder(2)
            .max_blocking_threads(MAX)
            .build()
            .expect("build the runtime");
        let current = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let threads = Arc::new(Mutex::new(HashSet::new()));

        let handles: Vec<JoinHandle<usize>> = (0..CALLS)
            .map(|i| {
                let (current, peak, threads) = (
                    Arc::clone(&current),
                    Arc::clone(&peak),
                    Arc::clone(&threads),
                );
                rt.spawn_blocking(move || {
                    let now = current.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    threads.lock().unwrap().insert(thread::current().id());
                    thread::sleep(Duration::from_millis(1));
                    current.fetch_sub(1, Ordering::SeqCst);
                    i
                })
            })
            .collect();

        // Watch the pool's size while the calls run.
        let mut most_threads = 0;
        while !handles.iter().all(|h| h.is_finished()) {
            most_threads = most_threads.max(rt.metrics().blocking_threads);
            thread::sleep(Duration::from_millis(1));
        }
        most_threads = most_threads.max(rt.metrics().blocking_threads);

        futures::executor::block_on(async {
            for (i, handle) in handles.into_iter().enumerate() {
                assert_eq!(handle.await.expect("a blocking call failed"), i);
            }
        });
        let peak = peak.load(Ordering::SeqCst);
        assert!(
            peak <= MAX,
            "{peak} closures ran at once with max_blocking_threads({MAX})"
        );
        assert!(
            peak >= 2,
            "1_000 queued closures never ran two at a time on a pool of {MAX}"
        );
        let distinct = threads.lock().unwrap().len();
        assert!(
            distinct <= MAX,
            "closures ran on {distinct} threads with max_blocking_threads({MAX})"
        );
        assert!(
            most_threads <= MAX,
            "metrics().blocking_threads reached {most_threads} with max_blocking_threads({MAX})"
        );
    });
}

#[test]
fn a_panic_in_a_blocking_closure_reaches_its_handle() {
    within(30, "panicking blocking closures", || {
        // One pool thread: a panic must not cost the pool its only thread.
        let rt = builder(1)
            .max_blocking_threads(1)
            .build()
            .expect("build the runtime");
        for _ in 0..3 {
            let handle: JoinHandle<u32> = rt.spawn_blocking(|| panic!("blocking boom"));
            let err =
                futures::executor::block_on(handle).expect_err("a panicking closure returned Ok");
            assert!(err.is_panic(), "is_panic() for {err}");
            assert!(!err.is_cancelled());
            assert_eq!(panic_message(err.into_panic()), "blocking boom");
        }
        for i in 0..10u32 {
            let value = futures::executor::block_on(rt.spawn_blocking(move || i * 3));
            assert_eq!(value.expect("a call after the panics failed"), i * 3);
        }
    });
}

#[test]
fn spawn_blocking_from_a_task_a_handle_and_task_spawn_blocking() {
    const PREFIX: &str = "bwbl";
    within(60, "spawn_blocking from every entry point", || {
        let rt = builder(1)
            .thread_name(PREFIX)
            .build()
            .expect("build the runtime");
        let pool_thread = format!("{PREFIX}-blocking");
        let name = || {
            thread::current()
                .name()
                .map(String::from)
                .unwrap_or_default()
        };

        // From inside a task, with task::spawn_blocking; the closure waits
        // for a message that only another task on the only worker can send,
        // so it must not run on (or hold) that worker.
        let (tx, rx) = mpsc::channel::<u32>();
        let from_task = rt.spawn(async move {
            let waiter = task::spawn_blocking(move || {
                let v = rx
                    .recv_timeout(Duration::from_secs(20))
                    .expect("the blocking closure held the only worker");
                (v, name())
            });
            bulwark::spawn(async move { tx.send(41).expect("closure gone") })
                .await
                .expect("the sending task failed");
            waiter.await.expect("the blocking call failed")
        });
        let (value, thread_name) = rt.block_on(from_task).expect("the task failed");
        assert_eq!(value, 41);
        assert_eq!(
            thread_name, pool_thread,
            "the closure ran off the blocking pool"
        );

        // task::spawn_blocking inside block_on.
        let (value, thread_name) = rt.block_on(async {
            task::spawn_blocking(move || (1u32, name()))
                .await
                .expect("the blocking call failed")
        });
        assert_eq!(value, 1);
        assert_eq!(thread_name, pool_thread);

        // Through the Runtime and a Handle, the Handle used from another thread.
        let (value, thread_name) =
            futures::executor::block_on(rt.spawn_blocking(move || (2u32, name())))
                .expect("call failed");
        assert_eq!(value, 2);
        assert_eq!(thread_name, pool_thread);
        let handle = rt.handle().clone();
        let (value, thread_name) = thread::spawn(move || {
            futures::executor::block_on(handle.spawn_blocking(move || (3u32, name())))
        })
        .join()
        .expect("the calling thread panicked")
        .expect("call failed");
        assert_eq!(value, 3);
        assert_eq!(thread_name, pool_thread);

        // Through Handle::current() inside a task.
        let value = rt.block_on(rt.spawn(async {
            bulwark::runtime::Handle::current()
                .spawn_blocking(|| 4u32)
                .await
                .expect("call failed")
        }));
        assert_eq!(value.expect("the task failed"), 4);
    });
}

#[test]
fn idle_blocking_threads_exit_after_the_keep_alive() {
    const PREFIX: &str = "bwka";
    const BUSY: usize = 4;
    within(30, "idle blocking threads to exit", || {
        let rt = builder(1)
            .thread_name(PREFIX)
            .thread_keep_alive(Duration::from_millis(200))
            .build()
            .expect("build the runtime");
        let pool_thread = format!("{PREFIX}-blocking");

        // Four closures that can only finish once all four run at once.
        let barrier = Arc::new(Barrier::new(BUSY + 1));
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Arc::new(Mutex::new(release_rx));
        let handles: Vec<JoinHandle<()>> = (0..BUSY)
            .map(|_| {
                let (barrier, release_rx) = (Arc::clone(&barrier), Arc::clone(&release_rx));
                rt.spawn_blocking(move || {
                    barrier.wait();
                    release_rx
                        .lock()
                        .unwrap()
                        .recv_timeout(Duration::from_secs(20))
                        .expect("never released");
                })
            })
            .collect();
        barrier.wait();
        let metrics = rt.metrics();
        assert!(
            metrics.blocking_threads >= BUSY,
            "{BUSY} closures are running but metrics().blocking_threads is {}",
            metrics.blocking_threads
        );
        let running = threads_named(&pool_thread);
        assert!(
            running.len() >= BUSY,
            "{BUSY} closures running, pool threads: {running:?}"
        );
        for _ in 0..BUSY {
            release_tx.send(()).expect("a closure is gone");
        }
        for handle in handles {
            futures::executor::block_on(handle).expect("a blocking closure failed");
        }

        wait_until(
            5,
            "metrics().blocking_threads to fall to 0 after a 200 ms keep-alive",
            || rt.metrics().blocking_threads == 0,
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = threads_named(&pool_thread);
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "pool threads still there 5 s after a 200 ms keep-alive: {left:?} (all: {:?})",
                threads_named(PREFIX)
            );
            thread::sleep(Duration::from_millis(10));
        }

        // The pool starts threads again after they have all gone.
        let value = futures::executor::block_on(rt.spawn_blocking(|| 9u32));
        assert_eq!(value.expect("a call after the pool emptied failed"), 9);
    });
}

/// As on tokio's blocking threads, the runtime is current inside a
/// `spawn_blocking` closure: `Handle::current()`, a bare `spawn` and
/// timers reach it, and `Handle::current().block_on(..)` may wait for async
/// work there (the pool thread does not drive the runtime).
#[test]
fn a_blocking_closure_runs_inside_its_runtime() {
    within(30, "a blocking closure that uses its runtime", || {
        let rt = builder(2).build().expect("build the runtime");
        let out = rt.block_on(async {
            task::spawn_blocking(|| {
                let handle = bulwark::runtime::Handle::current();
                let spawned = bulwark::spawn(async { 20 });
                handle.block_on(async move {
                    bulwark::time::sleep(Duration::from_millis(1)).await;
                    spawned.await.expect("the task spawned from the closure") + 1
                })
            })
            .await
            .expect("the blocking closure")
        });
        assert_eq!(out, 21);
        // Outside a runtime the same closure's thread has none once done:
        // a plain thread still has none.
        thread::spawn(|| assert!(bulwark::runtime::Handle::try_current().is_err()))
            .join()
            .expect("a plain thread");
    });
}

/// At shutdown a closure still queued (every pool thread busy) is dropped
/// without running and its handle resolves as cancelled; the running one
/// finishes and its handle has its value.
#[test]
fn a_queued_blocking_closure_is_cancelled_at_shutdown() {
    within(30, "a queued blocking closure at shutdown", || {
        let rt = builder(1)
            .max_blocking_threads(1)
            .build()
            .expect("build the runtime");
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let running = rt.spawn_blocking(move || {
            started_tx.send(()).expect("the test waits");
            release_rx
                .recv_timeout(Duration::from_secs(20))
                .expect("released within 20 s");
            1
        });
        started_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("waited 10 s for the first closure to start");
        let ran = Arc::new(AtomicUsize::new(0));
        let ran2 = ran.clone();
        let queued = rt.spawn_blocking(move || {
            ran2.fetch_add(1, Ordering::SeqCst);
            2
        });
        // The shutdown waits for the running closure: release it once the
        // shutdown has cancelled the queued one (it does that first).
        let queued_state = queued.abort_handle();
        let releaser = thread::spawn(move || {
            wait_until(20, "the queued closure to be cancelled at shutdown", || {
                queued_state.is_finished()
            });
            release_tx.send(()).expect("the closure waits");
        });
        drop(rt);
        releaser.join().expect("the releaser");
        let queued = futures::executor::block_on(queued).expect_err("cancelled, not run");
        assert!(queued.is_cancelled(), "{queued}");
        assert_eq!(ran.load(Ordering::SeqCst), 0, "the queued closure ran");
        assert_eq!(
            futures::executor::block_on(running).expect("the running one"),
            1
        );
    });
}
