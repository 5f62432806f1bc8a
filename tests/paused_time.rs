//! Paused time (`time::pause`, `advance`, `resume`, `Builder::start_paused`):
//! timers and task deadlines follow a virtual clock that stands still until
//! advanced, and jumps to the next timer only when nothing else in the
//! runtime can run. Each test states its wall-clock bound, generous for a
//! loaded machine: what it checks is that an hour of virtual time costs
//! nothing like an hour.

mod common;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bulwark::runtime::Builder;
use bulwark::time::{advance, pause, resume, sleep};
use common::within;

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn a_one_hour_deadline_expires_in_no_time_under_start_paused() {
    within(30, "a paused one-hour deadline", || {
        let rt = Builder::new_current_thread()
            .start_paused(true)
            .build()
            .expect("runtime");
        let real = Instant::now();
        let task = bulwark::task::Builder::new()
            .timeout(HOUR)
            .spawn_on(std::future::pending::<()>(), rt.handle())
            .expect("spawn");
        let err = rt.block_on(task).expect_err("the deadline passes");
        assert!(err.is_deadline_exceeded(), "{err}");
        // The issue asks for under 100 ms; allow a loaded machine 10x.
        assert!(
            real.elapsed() < Duration::from_secs(1),
            "an hour of virtual time took {:?}",
            real.elapsed()
        );
    });
}

#[test]
fn sleeps_jump_when_idle_and_advance_moves_the_clock_by_hand() {
    within(30, "paused sleeps", || {
        let rt = bulwark::Runtime::new().expect("runtime");
        let real = Instant::now();
        rt.block_on(async {
            pause();
            // block_on itself sleeps: idle, so the clock jumps.
            sleep(HOUR).await;
            // A spawned task's sleep, moved by hand: not due after 5 s of
            // the 10, due after the other 5.
            let done = Arc::new(AtomicBool::new(false));
            let flag = done.clone();
            let nap = bulwark::spawn(async move {
                sleep(Duration::from_secs(10)).await;
                flag.store(true, SeqCst);
            });
            // Let the task set its timer.
            bulwark::task::yield_now().await;
            advance(Duration::from_secs(5)).await;
            assert!(!done.load(SeqCst), "woke 5 s early");
            advance(Duration::from_secs(5)).await;
            nap.await.expect("the nap ends");
            assert!(done.load(SeqCst));
            // Running again, real time moves the timers.
            resume();
            let start = Instant::now();
            sleep(Duration::from_millis(20)).await;
            assert!(start.elapsed() >= Duration::from_millis(20));
        });
        assert!(
            real.elapsed() < Duration::from_secs(5),
            "took {:?}",
            real.elapsed()
        );
    });
}

#[test]
fn the_clock_does_not_jump_while_a_task_still_runs() {
    within(30, "no jump while busy", || {
        let rt = Builder::new_multi_thread()
            .worker_threads(2)
            .start_paused(true)
            .build()
            .expect("runtime");
        let woke = Arc::new(AtomicBool::new(false));
        let flag = woke.clone();
        let sleeper = rt.spawn(async move {
            sleep(HOUR).await;
            flag.store(true, SeqCst);
        });
        // A task that keeps a worker busy for 200 ms of real time, yielding
        // as it goes: the runtime is not idle, so the hour does not pass.
        let seen = woke.clone();
        let busy = rt.spawn(async move {
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(200) {
                assert!(!seen.load(SeqCst), "the hour passed while a task ran");
                bulwark::task::yield_now().await;
            }
        });
        rt.block_on(busy).expect("the busy task");
        // Now idle: the sleeper's hour passes at once.
        rt.block_on(sleeper).expect("the sleeper");
        assert!(woke.load(SeqCst));
    });
}

/// `time::Instant::now()` follows the paused clock, on every thread of the
/// runtime: the pattern of a cache that stores `now + ttl` and sleeps
/// until it (tokio's mini-redis does) agrees with the timers, and an
/// advance moves `now` by exactly what was advanced.
#[test]
fn instant_now_follows_the_paused_clock_on_every_worker() {
    within(30, "paused Instant::now", || {
        for rt in [
            Builder::new_current_thread()
                .start_paused(true)
                .build()
                .expect("runtime"),
            Builder::new_multi_thread()
                .worker_threads(2)
                .start_paused(true)
                .build()
                .expect("runtime"),
        ] {
            let real = Instant::now();
            rt.block_on(async {
                use bulwark::time::{sleep_until, Instant};
                let t0 = Instant::now();
                advance(Duration::from_secs(7)).await;
                assert_eq!(Instant::now() - t0, Duration::from_secs(7));
                // A task on a worker reads the same clock.
                let seen = bulwark::spawn(async { Instant::now() })
                    .await
                    .expect("the task");
                assert_eq!(seen - t0, Duration::from_secs(7), "a worker's now");
                // Store an expiry, sleep until it (the clock jumps: idle),
                // and the expiry has passed by the clock's own reading.
                let expires = Instant::now() + HOUR;
                let waiter = bulwark::spawn(async move {
                    sleep_until(expires).await;
                    Instant::now()
                });
                let woke = waiter.await.expect("the waiter");
                assert!(woke >= expires, "woke at {woke:?}, before {expires:?}");
                assert!(Instant::now() >= expires);
                assert!(t0.elapsed() >= HOUR + Duration::from_secs(7));
            });
            assert!(
                real.elapsed() < Duration::from_secs(5),
                "an hour of virtual time took {:?} of real time",
                real.elapsed()
            );
        }
        // Outside a runtime, real time.
        let a = bulwark::time::Instant::now();
        let b = std::time::Instant::now();
        assert!(b.saturating_duration_since(a.into_std()) < Duration::from_secs(60));
    });
}

/// Deadlines are on the paused clock everywhere the runtime checks them:
/// real time passing while the clock stands still expires nothing (the
/// check at dequeue once compared a virtual deadline with real time and
/// dropped such a task unpolled), and a deadline passed by `advance` during
/// a task's first poll ends the task when that poll returns.
#[test]
fn deadlines_are_checked_against_the_paused_clock_not_real_time() {
    within(30, "deadlines on a paused clock", || {
        let rt = Builder::new_multi_thread()
            .worker_threads(2)
            .start_paused(true)
            .build()
            .expect("runtime");
        rt.block_on(async {
            // Real time runs 200 ms; the paused clock does not move.
            std::thread::sleep(Duration::from_millis(200));
            let polled = bulwark::task::Builder::new()
                .timeout(Duration::from_millis(50))
                .spawn(async { 7 })
                .expect("spawn");
            assert_eq!(
                polled
                    .await
                    .expect("not past a deadline of the paused clock"),
                7
            );

            // Past its deadline by the paused clock within its first poll.
            let ran_on = Arc::new(AtomicBool::new(false));
            let flag = ran_on.clone();
            let task = bulwark::task::Builder::new()
                .timeout(Duration::from_secs(1))
                .spawn(async move {
                    advance(Duration::from_secs(2)).await;
                    flag.store(true, SeqCst);
                })
                .expect("spawn");
            let err = task.await.expect_err("dropped at its deadline");
            assert!(err.is_deadline_exceeded(), "{err}");
            assert!(!ran_on.load(SeqCst), "the task ran on past its deadline");
        });
    });
}

/// A worker stuck in a poll (its seat handed to a replacement by the
/// watchdog) is work still running: the clock does not jump past it.
/// Timing assumption: the watchdog (20 ms threshold) compensates within
/// the 300 ms the blocker holds its thread; if it does not, the test
/// still passes (nothing jumps while a worker is unparked), so it can only
/// fail on a jump.
#[test]
fn the_clock_does_not_jump_while_a_compensated_worker_is_stuck() {
    within(30, "no jump past a stuck worker", || {
        let rt = Builder::new_multi_thread()
            .worker_threads(2)
            .watchdog(bulwark::runtime::Watchdog::new(Duration::from_millis(20)))
            .start_paused(true)
            .build()
            .expect("runtime");
        let slept = Arc::new(AtomicBool::new(false));
        let flag = slept.clone();
        let sleeper = rt.spawn(async move {
            sleep(HOUR).await;
            flag.store(true, SeqCst);
        });
        let seen = slept.clone();
        let blocker = rt.spawn(async move {
            std::thread::sleep(Duration::from_millis(300));
            // Still inside the poll that blocked: the hour has not passed.
            !seen.load(SeqCst)
        });
        assert!(
            rt.block_on(blocker).expect("the blocker"),
            "the clock jumped an hour while a worker was stuck in a poll"
        );
        rt.block_on(sleeper).expect("the sleeper");
    });
}
