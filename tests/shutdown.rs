//! Shutdown: dropping the runtime drops every unfinished task's future,
//! resolves their join handles as cancelled and leaves no thread behind;
//! `shutdown_timeout` returns on time even when a worker is blocked, and
//! `shutdown_background` does not wait at all.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bulwark::runtime::Runtime;
use bulwark::task::{self, JoinHandle};
use common::{builder, threads_named, wait_until, within, DropCounter};

/// Spawns `n` tasks that each own a drop counter and wait forever, and waits
/// until every one of them has been polled once.
fn spawn_pending(rt: &Runtime, n: usize, drops: &Arc<AtomicUsize>) -> Vec<JoinHandle<()>> {
    let started = Arc::new(AtomicUsize::new(0));
    let handles = (0..n)
        .map(|_| {
            let guard = DropCounter::new(drops);
            let started = Arc::clone(&started);
            rt.spawn(async move {
                let _guard = guard;
                started.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
            })
        })
        .collect();
    wait_until(30, "every pending task to be polled once", || {
        started.load(Ordering::SeqCst) == n
    });
    handles
}

#[test]
fn dropping_the_runtime_drops_10_000_pending_futures_and_cancels_their_handles() {
    const TASKS: usize = 10_000;
    within(60, "drop of a runtime with 10_000 pending tasks", || {
        let rt = builder(2).build().expect("build the runtime");
        let drops = Arc::new(AtomicUsize::new(0));
        let handles = spawn_pending(&rt, TASKS, &drops);
        assert_eq!(
            drops.load(Ordering::SeqCst),
            0,
            "futures dropped before shutdown"
        );

        let start = Instant::now();
        drop(rt);
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(10),
            "dropping the runtime took {took:?}"
        );
        assert_eq!(
            drops.load(Ordering::SeqCst),
            TASKS,
            "futures dropped by the time the runtime's drop returned"
        );

        for (i, handle) in handles.into_iter().enumerate() {
            let err = futures::executor::block_on(handle)
                .expect_err("a task that never finished returned Ok after shutdown");
            assert!(err.is_cancelled(), "handle {i} after shutdown: {err}");
        }
    });
}

#[test]
fn dropping_the_runtime_leaves_no_thread_behind() {
    const PREFIX: &str = "bwsd1";
    within(30, "runtime threads to exit after drop", || {
        let rt = builder(2)
            .thread_name(PREFIX)
            .build()
            .expect("build the runtime");
        let total = rt.block_on(async {
            let tasks: Vec<JoinHandle<u64>> = (0..100u64)
                .map(|i| bulwark::spawn(async move { i }))
                .collect();
            // Several blocking calls at once, so the pool starts several threads.
            let blocking: Vec<JoinHandle<u64>> = (0..8u64)
                .map(|i| {
                    task::spawn_blocking(move || {
                        std::thread::sleep(Duration::from_millis(20));
                        i
                    })
                })
                .collect();
            let mut total = 0;
            for handle in tasks.into_iter().chain(blocking) {
                total += handle.await.expect("a task failed");
            }
            total
        });
        assert_eq!(total, (0..100).sum::<u64>() + (0..8).sum::<u64>());

        // The name is applied, so counting by name below means something.
        let running = threads_named(PREFIX);
        assert!(
            running.len() >= 3,
            "expected 2 workers and at least one blocking thread named {PREFIX}*, found {running:?}"
        );

        drop(rt);
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let left = threads_named(PREFIX);
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "threads left after the runtime was dropped: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    });
}

#[test]
fn shutdown_timeout_returns_on_time_with_a_blocked_worker() {
    within(60, "shutdown_timeout with a blocked worker", || {
        let rt = builder(2)
            .thread_name("bwsd2")
            .build()
            .expect("build the runtime");
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        drop(rt.spawn(async move {
            started_tx.send(()).expect("signal started");
            // Blocks its worker until the test lets go, after it has timed
            // the shutdown (bounded, so the thread ends even if the test
            // fails); nothing can stop it early.
            let _ = release_rx.recv_timeout(Duration::from_secs(30));
        }));
        started_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the blocking task never started");

        let start = Instant::now();
        rt.shutdown_timeout(Duration::from_millis(500));
        let took = start.elapsed();
        // Real time, by nature. Waiting for the blocked worker would take
        // the 30 s it can block; 10 s leaves a slow machine ample time for
        // the 500 ms and the rest of the shutdown.
        assert!(
            took < Duration::from_secs(10),
            "shutdown_timeout(500 ms) took {took:?} with a worker blocked until released"
        );
        let _ = release_tx.send(());
    });
}

#[test]
fn shutdown_timeout_on_an_idle_runtime_drops_pending_tasks() {
    within(30, "shutdown_timeout with pending tasks", || {
        let rt = builder(2).build().expect("build the runtime");
        let drops = Arc::new(AtomicUsize::new(0));
        let handles = spawn_pending(&rt, 100, &drops);

        let start = Instant::now();
        rt.shutdown_timeout(Duration::from_secs(10));
        let took = start.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "shutdown_timeout on an idle runtime took {took:?}"
        );
        assert_eq!(
            drops.load(Ordering::SeqCst),
            100,
            "futures dropped by shutdown_timeout"
        );
        for handle in handles {
            let err = futures::executor::block_on(handle).expect_err("a pending task returned Ok");
            assert!(err.is_cancelled(), "after shutdown_timeout: {err}");
        }
    });
}

#[test]
fn shutdown_background_never_waits_for_a_stuck_task_and_still_drops_the_waiting_ones() {
    within(30, "shutdown_background with a stuck worker", || {
        let rt = builder(2)
            .thread_name("bwsdbg")
            .build()
            .expect("build the runtime");
        let drops = Arc::new(AtomicUsize::new(0));
        let waiting = spawn_pending(&rt, 100, &drops);
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let stuck = rt.spawn(async move {
            started_tx.send(()).expect("signal started");
            // Blocks its worker until the test lets go (bounded, so the
            // thread ends even if the test fails).
            let _ = release_rx.recv_timeout(Duration::from_secs(20));
            // Then waits: the cancellation, not an output, ends it.
            std::future::pending::<()>().await;
        });
        // And a blocking closure that will not return soon either.
        let (closure_tx, closure_rx) = mpsc::channel::<()>();
        let (closure_started_tx, closure_started_rx) = mpsc::channel::<()>();
        drop(rt.spawn_blocking(move || {
            let _ = closure_started_tx.send(());
            let _ = closure_rx.recv_timeout(Duration::from_secs(20));
        }));
        started_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the stuck task never started");
        // Running, not queued: a closure still queued is dropped at
        // shutdown, and this one must be the kind that is not.
        closure_started_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the blocking closure never started");

        let start = Instant::now();
        rt.shutdown_background();
        let took = start.elapsed();
        // Dropping 100 futures and waking threads: real time, by nature.
        // Waiting for the stuck task or the closure would take the 20 s they
        // can block; 10 s leaves a slow machine ample time for the rest.
        assert!(
            took < Duration::from_secs(10),
            "shutdown_background took {took:?} with a stuck worker and a blocking closure"
        );
        assert_eq!(drops.load(Ordering::SeqCst), 100, "waiting futures dropped");
        for handle in waiting {
            let err = futures::executor::block_on(handle).expect_err("a pending task returned Ok");
            assert!(err.is_cancelled(), "after shutdown_background: {err}");
        }
        // The stuck task is cancelled when its poll returns; its thread, and
        // the blocking one, then end on their own.
        release_tx.send(()).expect("release the stuck task");
        closure_tx.send(()).expect("release the closure");
        let err = futures::executor::block_on(stuck).expect_err("the stuck task finished Ok");
        assert!(err.is_cancelled(), "{err}");
        wait_until(10, "the detached threads to end", || {
            threads_named("bwsdbg").is_empty()
        });
    });
}
