//! Time: `sleep`, `timeout`, `interval` and `Sleep::reset` on the runtime's
//! timer wheel. Timers never fire early, fire once, leave the wheel when
//! dropped, and work from `block_on` and from tasks on every worker.

mod common;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bulwark::runtime::Handle;
use bulwark::time::{
    error::Elapsed, interval, interval_at, sleep, sleep_until, timeout, timeout_at, Duration,
    Instant, Sleep,
};
use common::{builder, panic_message, runtime, wait_until, within, LATE};
use futures::FutureExt;

#[test]
fn timeout_of_a_never_ready_future_elapses() {
    within(20, "timeouts of never-ready futures to elapse", || {
        let rt = runtime(2);

        // From block_on.
        let (result, waited) = rt.block_on(async {
            let start = Instant::now();
            let result = timeout(Duration::from_millis(50), std::future::pending::<()>()).await;
            (result, start.elapsed())
        });
        let err: Elapsed = result.expect_err("a timeout of a pending future returned Ok");
        assert_eq!(err.to_string(), "deadline has elapsed");
        assert!(
            waited >= Duration::from_millis(50),
            "timeout(50 ms) elapsed early, after {waited:?}"
        );
        assert!(waited < LATE, "timeout(50 ms) took {waited:?}");

        // From a task, with timeout_at.
        let (result, waited) = rt
            .block_on(rt.spawn(async {
                let start = Instant::now();
                let deadline = start + Duration::from_millis(30);
                let result = timeout_at(deadline, std::future::pending::<u8>()).await;
                (result, start.elapsed())
            }))
            .expect("the timeout task failed");
        assert!(
            result.is_err(),
            "timeout_at of a pending future returned Ok"
        );
        assert!(
            waited >= Duration::from_millis(30),
            "timeout_at(+30 ms) elapsed early, after {waited:?}"
        );
        assert!(waited < LATE, "timeout_at(+30 ms) took {waited:?}");

        // A future that finishes first wins, and its value comes through.
        let value = rt.block_on(async { timeout(Duration::from_secs(10), async { 7 }).await });
        assert_eq!(value, Ok(7), "a ready future under a timeout");

        // A zero timeout still lets an already-ready future finish (tokio's
        // behaviour: the future is polled before the deadline is checked).
        let value = rt.block_on(async { timeout(Duration::ZERO, async { 8 }).await });
        assert_eq!(value, Ok(8), "a ready future under a zero timeout");
    });
}

#[test]
fn sleep_50ms_wakes_after_at_least_50ms_and_soon_after() {
    within(20, "sleep(50 ms) in block_on and in a task", || {
        let rt = runtime(2);
        let in_block_on = rt.block_on(async {
            let start = Instant::now();
            sleep(Duration::from_millis(50)).await;
            start.elapsed()
        });
        let in_task = rt
            .block_on(rt.spawn(async {
                let start = Instant::now();
                sleep(Duration::from_millis(50)).await;
                start.elapsed()
            }))
            .expect("the sleeping task failed");
        for (where_, waited) in [("block_on", in_block_on), ("a task", in_task)] {
            assert!(
                waited >= Duration::from_millis(50),
                "sleep(50 ms) in {where_} woke early, after {waited:?}"
            );
            assert!(waited < LATE, "sleep(50 ms) in {where_} took {waited:?}");
        }
    });
}

#[test]
fn sleep_until_a_past_instant_is_ready_at_once_and_sleep_outside_a_runtime_panics() {
    within(20, "sleep_until(past) to finish", || {
        let rt = runtime(1);
        let ready = rt.block_on(async {
            let past = Instant::now() - Duration::from_millis(5);
            let mut s = sleep_until(past);
            // Polled in a bounded loop: a past deadline must not wait for a
            // timer tick that never comes.
            let start = Instant::now();
            (&mut s).await;
            assert!(s.is_elapsed(), "is_elapsed after a sleep finished");
            start.elapsed()
        });
        assert!(ready < LATE, "sleep_until(past) took {ready:?}");
    });

    let outside = std::panic::catch_unwind(|| {
        drop(sleep(Duration::from_millis(1)));
    });
    let payload = outside.expect_err("sleep outside a runtime did not panic");
    let message = panic_message(payload);
    assert!(
        !message.is_empty(),
        "the panic of sleep outside a runtime has no message"
    );
}

#[test]
fn ten_thousand_polled_sleeps_are_pending_in_the_wheel_until_dropped() {
    within(30, "10_000 sleeps to register and be dropped", || {
        let rt = runtime(2);
        let baseline = rt.metrics().timers_pending;
        assert_eq!(baseline, 0, "a fresh runtime has pending timers");

        let sleeps = rt.block_on(async {
            let mut sleeps: Vec<Pin<Box<Sleep>>> = Vec::with_capacity(10_000);
            for i in 0..10_000u64 {
                // Deadlines spread over several wheel levels.
                let mut s = Box::pin(sleep(
                    Duration::from_secs(60) + Duration::from_millis(i * 37),
                ));
                assert!(
                    s.as_mut().now_or_never().is_none(),
                    "sleep {i} (60 s or more) was ready at its first poll"
                );
                sleeps.push(s);
            }
            let seen = Handle::current().metrics().timers_pending;
            assert!(
                seen >= 10_000,
                "after polling 10_000 sleeps once, timers_pending (from inside) is {seen}"
            );
            sleeps
        });
        let seen = rt.metrics().timers_pending;
        assert!(
            seen >= baseline + 10_000,
            "after polling 10_000 sleeps once, timers_pending is {seen} (baseline {baseline})"
        );

        // Half dropped inside the runtime, half outside it.
        let mut sleeps = sleeps;
        let rest = sleeps.split_off(5_000);
        rt.block_on(async move { drop(sleeps) });
        let mid = rt.metrics().timers_pending;
        assert_eq!(
            mid,
            baseline + 5_000,
            "after dropping 5_000 of 10_000 sleeps, timers_pending is {mid}"
        );
        drop(rest);
        let after = rt.metrics().timers_pending;
        assert_eq!(
            after, baseline,
            "after dropping every sleep, timers_pending is {after} (baseline {baseline})"
        );

        // Timers that fired leave the wheel too.
        rt.block_on(async {
            let mut fired = Vec::new();
            for _ in 0..100 {
                let mut s = Box::pin(sleep(Duration::from_millis(5)));
                // Registers it (a descheduled test thread may find it due
                // already: either way it must leave the wheel).
                let _ = s.as_mut().now_or_never();
                fired.push(s);
            }
            for s in &mut fired {
                s.as_mut().await;
            }
        });
        wait_until(
            5,
            "timers_pending back to baseline after 100 sleeps fired",
            || rt.metrics().timers_pending == baseline,
        );
    });
}

/// Polls `sleep` until it fires, then stays pending forever (registering
/// nothing), counting every poll: after the one wake-up from the timer,
/// nothing should poll it again.
struct CountPolls {
    sleep: Pin<Box<Sleep>>,
    polls: Arc<AtomicUsize>,
    fired: Arc<AtomicUsize>,
    done: bool,
}

impl Future for CountPolls {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        if !self.done && self.sleep.as_mut().poll(cx).is_ready() {
            self.done = true;
            self.fired.fetch_add(1, Ordering::SeqCst);
        }
        Poll::Pending
    }
}

#[test]
fn a_timer_that_fired_never_wakes_its_task_twice() {
    within(30, "200 timers to fire once each", || {
        const TASKS: usize = 200;
        let rt = runtime(4);
        let mut counters = Vec::new();
        let mut handles = Vec::new();
        for i in 0..TASKS {
            let polls = Arc::new(AtomicUsize::new(0));
            let fired = Arc::new(AtomicUsize::new(0));
            counters.push((polls.clone(), fired.clone()));
            // The sleep is made inside the task (it needs the runtime).
            handles.push(rt.spawn(async move {
                CountPolls {
                    sleep: Box::pin(sleep(Duration::from_millis(1 + (i as u64 % 20)))),
                    polls,
                    fired,
                    done: false,
                }
                .await
            }));
        }
        wait_until(20, "every one of 200 sleeps (1..20 ms) to fire", || {
            counters.iter().all(|(_, f)| f.load(Ordering::SeqCst) == 1)
        });
        // Give any second wake-up time to arrive.
        std::thread::sleep(Duration::from_millis(200));
        for (i, (polls, fired)) in counters.iter().enumerate() {
            let polls = polls.load(Ordering::SeqCst);
            assert_eq!(fired.load(Ordering::SeqCst), 1, "task {i}: fired count");
            assert_eq!(
                polls, 2,
                "task {i}: a sleep should be polled twice (first poll, then its one \
                 wake-up), but was polled {polls} times"
            );
        }
        for h in &handles {
            h.abort();
        }
        assert_eq!(
            rt.metrics().timers_pending,
            0,
            "fired timers left in the wheel"
        );
    });
}

#[test]
fn interval_with_burst_catches_up_missed_ticks_at_once() {
    within(20, "an interval to catch up 3 missed ticks", || {
        let rt = runtime(2);
        let period = Duration::from_millis(100);
        rt.block_on(rt.spawn(async move {
            let mut ticks = interval(period);
            assert_eq!(
                ticks.missed_tick_behavior(),
                bulwark::time::MissedTickBehavior::Burst,
                "the default missed-tick behaviour"
            );
            let start = Instant::now();
            let t0 = ticks.tick().await;
            assert!(start.elapsed() < LATE, "the first tick was not at once");

            // Block this worker past three periods: ticks at +100, +200 and
            // +300 ms are missed.
            std::thread::sleep(Duration::from_millis(350));
            assert!(t0.elapsed() >= Duration::from_millis(350));

            let burst_start = Instant::now();
            let mut scheduled = Vec::new();
            for _ in 0..3 {
                scheduled.push(ticks.tick().await);
            }
            let burst = burst_start.elapsed();
            // Waiting for each missed tick would take a period per tick.
            assert!(
                burst < period,
                "3 missed ticks should come back at once, but took {burst:?} (period {period:?})"
            );
            for (k, at) in scheduled.iter().enumerate() {
                assert_eq!(
                    *at,
                    t0 + period * (k as u32 + 1),
                    "missed tick {} is scheduled {:?} after the first",
                    k + 1,
                    at.duration_since(t0)
                );
            }

            // Caught up: the fourth tick waits for its own time.
            let fourth = ticks.tick().await;
            assert_eq!(
                fourth,
                t0 + period * 4,
                "the fourth tick's scheduled instant"
            );
            assert!(
                Instant::now() >= t0 + period * 4,
                "the fourth tick came early: {:?} after the first",
                t0.elapsed()
            );
        }))
        .expect("the interval task failed");
    });
}

#[test]
fn interval_at_ticks_at_its_start_and_then_every_period_never_early() {
    within(20, "5 ticks of a 20 ms interval", || {
        let rt = runtime(2);
        rt.block_on(async {
            let start = Instant::now() + Duration::from_millis(30);
            let period = Duration::from_millis(20);
            let mut ticks = interval_at(start, period);
            for k in 0..5u32 {
                let at = ticks.tick().await;
                let now = Instant::now();
                assert_eq!(at, start + period * k, "tick {k}'s scheduled instant");
                assert!(now >= at, "tick {k} came {:?} early", at - now);
                assert!(now - at < LATE, "tick {k} came {:?} late", now - at);
            }
        });
    });
}

/// A tiny xorshift generator: random enough for test inputs, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

#[test]
fn a_thousand_concurrent_random_sleeps_all_complete_and_none_early() {
    within(30, "1_000 sleeps of 1..50 ms to complete", || {
        let rt = runtime(4);
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let early = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..1_000)
            .map(|_| {
                let ms = 1 + rng.next() % 50;
                let early = early.clone();
                rt.spawn(async move {
                    let wanted = Duration::from_millis(ms);
                    let start = Instant::now();
                    sleep(wanted).await;
                    let waited = start.elapsed();
                    if waited < wanted {
                        early.fetch_add(1, Ordering::SeqCst);
                    }
                    (wanted, waited)
                })
            })
            .collect();
        let results = rt.block_on(async move {
            let mut out = Vec::new();
            for h in handles {
                out.push(h.await.expect("a sleeping task failed"));
            }
            out
        });
        assert_eq!(results.len(), 1_000);
        for (i, (wanted, waited)) in results.iter().enumerate() {
            assert!(
                waited >= wanted,
                "sleep {i} of {wanted:?} woke early, after {waited:?}"
            );
            assert!(
                *waited < Duration::from_secs(10),
                "sleep {i} of {wanted:?} took {waited:?}"
            );
        }
        assert_eq!(early.load(Ordering::SeqCst), 0);
        assert_eq!(rt.metrics().timers_pending, 0, "timers left in the wheel");
    });
}

#[test]
fn sleep_reset_moves_the_deadline_earlier_later_and_after_firing() {
    within(20, "reset sleeps to finish", || {
        let rt = runtime(2);
        rt.block_on(async {
            // Earlier: a 60 s sleep, registered, then reset to 50 ms.
            let start = Instant::now();
            let mut s = Box::pin(sleep(Duration::from_secs(60)));
            assert!(
                s.as_mut().now_or_never().is_none(),
                "sleep(60 s) ready at once"
            );
            let new = start + Duration::from_millis(50);
            s.as_mut().reset(new);
            assert_eq!(s.deadline(), new, "deadline() after reset");
            s.as_mut().await;
            let waited = start.elapsed();
            assert!(
                waited >= Duration::from_millis(50),
                "reset to +50 ms woke after {waited:?}"
            );
            assert!(
                waited < LATE,
                "a 60 s sleep reset to +50 ms took {waited:?}"
            );

            // Later: a 20 ms sleep, registered, reset to 150 ms.
            let start = Instant::now();
            let mut s = Box::pin(sleep(Duration::from_millis(20)));
            // Registers it at its old deadline (on a badly descheduled thread
            // it may have fired already; the reset must still hold).
            let _ = s.as_mut().now_or_never();
            s.as_mut().reset(start + Duration::from_millis(150));
            s.as_mut().await;
            let waited = start.elapsed();
            assert!(
                waited >= Duration::from_millis(150),
                "a 20 ms sleep reset to +150 ms woke after {waited:?}: the old deadline fired"
            );
            assert!(waited < LATE, "a sleep reset to +150 ms took {waited:?}");

            // After firing: the sleep runs again to its new deadline.
            let start = Instant::now();
            s.as_mut().reset(start + Duration::from_millis(40));
            assert!(!s.is_elapsed(), "is_elapsed right after a reset");
            s.as_mut().await;
            let waited = start.elapsed();
            assert!(
                waited >= Duration::from_millis(40),
                "a fired sleep reset to +40 ms woke after {waited:?}"
            );
            assert!(
                waited < LATE,
                "a fired sleep reset to +40 ms took {waited:?}"
            );
        });
        assert_eq!(rt.metrics().timers_pending, 0, "timers left after resets");
    });
}

#[test]
fn timers_work_from_block_on_and_from_tasks_on_every_worker() {
    within(40, "timers from block_on and from every worker", || {
        for workers in [1, 2, 4] {
            let rt = builder(workers)
                .thread_name("timew")
                .build()
                .expect("build the runtime");

            // From block_on (not a worker thread).
            let waited = rt.block_on(async {
                let start = Instant::now();
                sleep(Duration::from_millis(20)).await;
                start.elapsed()
            });
            assert!(
                waited >= Duration::from_millis(20) && waited < LATE,
                "{workers} workers: sleep(20 ms) in block_on took {waited:?}"
            );

            // One task pinned to each worker: each holds its worker (a short
            // bounded spin) until all have arrived, so they run on distinct
            // workers; then each sets timers from there.
            let arrived = Arc::new(AtomicUsize::new(0));
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    let arrived = arrived.clone();
                    rt.spawn(async move {
                        arrived.fetch_add(1, Ordering::SeqCst);
                        let spin_start = Instant::now();
                        while arrived.load(Ordering::SeqCst) < workers {
                            assert!(
                                spin_start.elapsed() < Duration::from_secs(15),
                                "{workers} tasks never ran at once on {workers} workers"
                            );
                            std::thread::yield_now();
                        }
                        let name = std::thread::current().name().map(str::to_string);
                        let start = Instant::now();
                        // Both registered from this worker on their first poll.
                        let slept = sleep(Duration::from_millis(25));
                        let timed_out =
                            timeout(Duration::from_millis(15), std::future::pending::<()>());
                        let (_, t) = futures::join!(slept, timed_out);
                        assert!(t.is_err(), "timeout of pending on a worker returned Ok");
                        (name, start.elapsed())
                    })
                })
                .collect();
            let results = rt.block_on(async move {
                let mut out = Vec::new();
                for h in handles {
                    out.push(h.await.expect("a timer task failed"));
                }
                out
            });
            let names: HashSet<_> = results.iter().map(|(n, _)| n.clone()).collect();
            assert_eq!(
                names.len(),
                workers,
                "{workers} workers: tasks ran on threads {names:?}, not on every worker"
            );
            for (name, waited) in &results {
                let name = name.as_deref().unwrap_or("<unnamed>");
                assert!(
                    name.starts_with("timew"),
                    "a task ran on {name}, not a worker"
                );
                assert!(
                    *waited >= Duration::from_millis(25) && *waited < LATE,
                    "{workers} workers: sleep(25 ms) on {name} took {waited:?}"
                );
            }
        }
    });
}
