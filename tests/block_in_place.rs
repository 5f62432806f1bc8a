//! `task::block_in_place`, as tokio's: on a worker, the worker's role (its
//! queue, LIFO slot, share of the driver) goes to a new thread before the
//! closure blocks, so the other tasks keep running, even on a one-worker
//! runtime, with the watchdog on or off; the thread that blocked ends once
//! its task's poll returns. Off a worker it just runs the closure. Inside
//! it `Handle::current().block_on` works, as on tokio.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use bulwark::runtime::{Handle, Watchdog};
use bulwark::task::block_in_place;
use common::{bounded, builder, panic_message, runtime, wait_until, within};

/// Ticks that show the ticker ran during a block: hundreds come in the
/// 500 ms when it is served, none if the worker were blocked.
const TICKS: usize = 20;

/// A ticker task ticks every millisecond on a one-worker runtime while
/// another task blocks its thread in `block_in_place` for 500 ms and until
/// `TICKS` ticks (up to 10 s): it keeps ticking through the block. Returns
/// the ticks seen during the block.
fn ticks_during_a_block(watchdog: Watchdog) -> usize {
    let rt = builder(1)
        .watchdog(watchdog)
        .build()
        .expect("build the runtime");
    let ticks = Arc::new(AtomicUsize::new(0));
    let during = rt.block_on(async {
        let ticker = {
            let ticks = ticks.clone();
            bulwark::spawn(async move {
                loop {
                    bulwark::time::sleep(Duration::from_millis(1)).await;
                    ticks.fetch_add(1, SeqCst);
                }
            })
        };
        bounded(10, "the ticker's first ticks", async {
            while ticks.load(SeqCst) < 3 {
                bulwark::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        let blocker = {
            let ticks = ticks.clone();
            bulwark::spawn(async move {
                let during = block_in_place(|| {
                    let before = ticks.load(SeqCst);
                    // At least 500 ms (well over the watchdog's threshold, when
                    // on), and until the ticker has ticked `TICKS` times or
                    // 10 s have passed: a slow machine gets the time it
                    // needs, and a blocked worker still shows.
                    let start = std::time::Instant::now();
                    thread::sleep(Duration::from_millis(500));
                    while ticks.load(SeqCst) - before < TICKS
                        && start.elapsed() < Duration::from_secs(10)
                    {
                        thread::sleep(Duration::from_millis(1));
                    }
                    ticks.load(SeqCst) - before
                });
                // The task goes on after the block, and can still wait.
                bulwark::time::sleep(Duration::from_millis(1)).await;
                during
            })
        };
        let blocker_id = blocker.id().as_u64();
        let during = bounded(30, "the blocking task", blocker)
            .await
            .expect("the blocking task failed");
        ticker.abort();
        (during, blocker_id)
    });
    let (during, blocker_id) = during;
    // The poll was closed in the books at the hand-over: the 500 ms that
    // followed held no worker, and the watchdog (if on) did not report it.
    let stalls = rt.handle().stalls();
    assert!(
        stalls.iter().all(|s| s.task_id != Some(blocker_id)),
        "the block was reported as a stall: {stalls:?}"
    );
    assert_eq!(rt.metrics().blocks_in_place, 1);
    // The thread that blocked has left: one worker thread again.
    wait_until(10, "the thread that blocked to end", || {
        rt.metrics().worker_threads == 1
    });
    during
}

#[test]
fn a_one_worker_runtime_keeps_running_tasks_while_one_blocks_in_place() {
    // A threshold well under the block and well over a scheduling hiccup
    // (real time: the blocker's poll is open for microseconds before its
    // hand-over closes it in the books, and a thread descheduled there for
    // 150 ms would be a stall).
    let during = within(60, "a ticker through a 500 ms block_in_place", || {
        ticks_during_a_block(Watchdog::new(Duration::from_millis(150)))
    });
    assert!(
        during >= TICKS,
        "the ticker ticked {during} times during the block"
    );
}

#[test]
fn the_hand_over_needs_no_watchdog() {
    let during = within(
        60,
        "a ticker through a block_in_place, watchdog off",
        || ticks_during_a_block(Watchdog::off()),
    );
    assert!(
        during >= TICKS,
        "the ticker ticked {during} times during the block"
    );
}

#[test]
fn the_hand_over_needs_no_compensation() {
    let during = within(
        60,
        "a ticker through a block_in_place, no compensation",
        || ticks_during_a_block(Watchdog::default().compensate(false)),
    );
    assert!(
        during >= TICKS,
        "the ticker ticked {during} times during the block"
    );
}

#[test]
fn off_a_worker_it_just_runs_the_closure() {
    within(30, "block_in_place off the workers", || {
        // A thread outside any runtime.
        assert_eq!(block_in_place(|| 1), 1);
        let rt = runtime(1);
        // `block_on`'s thread, the blocking pool.
        assert_eq!(rt.block_on(async { block_in_place(|| 2) }), 2);
        let from_pool = rt.block_on(rt.spawn_blocking(|| block_in_place(|| 3)));
        assert_eq!(from_pool.unwrap(), 3);
        // Nested: the inner one runs in place on the thread that gave its seat.
        let nested = rt.block_on(rt.spawn(async { block_in_place(|| block_in_place(|| 4)) }));
        assert_eq!(nested.unwrap(), 4);
        assert_eq!(
            rt.metrics().blocks_in_place,
            1,
            "only the outer one hands over"
        );
    });
}

#[test]
fn handle_current_block_on_works_inside_it() {
    within(
        30,
        "Handle::current().block_on inside block_in_place",
        || {
            let rt = runtime(2);
            let out = rt.block_on(rt.spawn(async {
                block_in_place(|| {
                    Handle::current().block_on(async {
                        let inner = bulwark::spawn(async { 20 });
                        bulwark::time::sleep(Duration::from_millis(1)).await;
                        inner.await.unwrap() + 1
                    })
                })
            }));
            assert_eq!(out.unwrap(), 21);
        },
    );
}

#[test]
fn many_blocks_in_a_row_leave_no_thread_behind() {
    within(60, "50 block_in_place calls", || {
        let rt = runtime(2);
        let total = rt.block_on(rt.spawn(async {
            let mut total = 0;
            for i in 0..50 {
                total += block_in_place(|| i);
                // A new poll, on whichever thread holds a seat now.
                bulwark::task::yield_now().await;
            }
            total
        }));
        assert_eq!(total.unwrap(), 1225);
        assert_eq!(rt.metrics().blocks_in_place, 50);
        wait_until(10, "the threads that blocked to end", || {
            rt.metrics().worker_threads == 2
        });
        // And the runtime serves on.
        assert_eq!(rt.block_on(rt.spawn(async { 5 })).unwrap(), 5);
    });
}

#[test]
fn a_panic_in_the_closure_reaches_the_join_handle_and_the_runtime_serves_on() {
    within(30, "a panicking block_in_place", || {
        let rt = runtime(1);
        let err = rt
            .block_on(rt.spawn(async { block_in_place(|| panic!("blocked and failed")) }))
            .expect_err("the panic was lost");
        assert!(err.is_panic());
        assert_eq!(panic_message(err.into_panic()), "blocked and failed");
        wait_until(10, "one worker thread again", || {
            rt.metrics().worker_threads == 1
        });
        assert_eq!(rt.block_on(rt.spawn(async { 6 })).unwrap(), 6);
    });
}
