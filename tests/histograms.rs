//! The runtime's duration histograms (`Builder::histograms`, on by default):
//! poll duration and scheduling delay are sampled, task lifetime counts
//! every task that ended, and a task's poll count and busy-time estimate are
//! listed. Off, nothing is timed.

mod common;

use std::time::{Duration, Instant};

use bulwark::runtime::Admission;
use common::{builder, within};

/// Spawns `tasks` tasks that each yield `yields` times, spinning `spin`
/// per poll, and waits for them all.
fn yielding_work(rt: &bulwark::Runtime, tasks: usize, yields: usize, spin: Duration) {
    rt.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                bulwark::spawn(async move {
                    for _ in 0..yields {
                        let start = Instant::now();
                        while start.elapsed() < spin {
                            std::hint::spin_loop();
                        }
                        bulwark::task::yield_now().await;
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.expect("the task completes");
        }
    });
}

/// Tasks woken by a timer `rounds` times each: wakes that go through the
/// scheduler (yields do not count as wakes).
fn woken_work(rt: &bulwark::Runtime, tasks: usize, rounds: usize) {
    rt.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                bulwark::spawn(async move {
                    for _ in 0..rounds {
                        bulwark::time::sleep(Duration::from_micros(100)).await;
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.expect("the task completes");
        }
    });
}

#[test]
fn polls_wakes_and_lifetimes_are_recorded_by_default() {
    within(60, "histograms on", || {
        let rt = builder(2).build().expect("runtime");
        yielding_work(&rt, 20, 200, Duration::from_micros(20));
        woken_work(&rt, 50, 20);
        let s = rt.metrics();
        // 4,000 yields plus 1,000 wakes and the first polls: at one poll in
        // 128 timed per worker, at least a few dozen.
        assert!(
            s.poll_duration.count() >= 20,
            "timed polls: {}",
            s.poll_duration.count()
        );
        assert!(s.poll_duration.count() <= s.polls, "{s:?}");
        // The yielding polls spin 20 us: the mean timed poll is well above
        // a microsecond.
        let mean = s.poll_duration.sum() / s.poll_duration.count() as u32;
        assert!(mean >= Duration::from_micros(5), "mean timed poll {mean:?}");
        // 1,000 timer wakes and 70 spawns, one in 64 stamped.
        assert!(
            s.scheduling_delay.count() >= 5,
            "stamped wakes: {}",
            s.scheduling_delay.count()
        );
        // Every task ended, the block_on futures aside (they are not tasks).
        assert_eq!(s.task_lifetime.count(), 70, "{:?}", s.task_lifetime);
        // The yielding tasks lived at least 200 x 20 us = 4 ms each.
        let p50 = s.task_lifetime.quantile(0.5).expect("a median");
        assert!(p50 >= Duration::from_millis(1), "median lifetime {p50:?}");
    });
}

#[test]
fn adaptive_admission_shares_its_stamps_with_the_histogram() {
    within(60, "histograms under adaptive admission", || {
        let mut b = builder(2);
        b.admission(Admission::adaptive());
        let rt = b.build().expect("runtime");
        woken_work(&rt, 50, 20);
        let s = rt.metrics();
        // One wake in 8 is stamped for CoDel, and those feed the histogram.
        assert!(
            s.scheduling_delay.count() >= 50,
            "stamped wakes: {}",
            s.scheduling_delay.count()
        );
    });
}

#[test]
fn a_task_lists_its_polls_and_busy_time() {
    within(60, "a task's polls and busy time", || {
        let rt = builder(1).build().expect("runtime");
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let spinner = rt.spawn(async move {
            // 1,000 polls of about 50 us each, then it waits.
            for _ in 0..1_000 {
                let start = Instant::now();
                while start.elapsed() < Duration::from_micros(50) {
                    std::hint::spin_loop();
                }
                bulwark::task::yield_now().await;
            }
            tx.send(bulwark::task::id()).unwrap();
            let _ = done_rx.await;
        });
        let id = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the spinner's 1,000 polls");
        let info = rt
            .handle()
            .tasks()
            .into_iter()
            .find(|t| t.id == id.as_u64())
            .expect("the spinner is listed");
        assert!(
            (1_001..=1_003).contains(&info.polls),
            "polls: {}",
            info.polls
        );
        // 1,000 polls on one worker: 7 or 8 of them timed. Each spun 50 us,
        // so the estimate is about 50 ms; generous bounds for a loaded
        // machine (a preempted spin only reads longer).
        let busy = info.busy.expect("a timed poll");
        assert!(busy >= Duration::from_millis(20), "busy {busy:?}");
        assert!(busy <= info.age, "busy {busy:?}, age {:?}", info.age);
        done_tx.send(()).unwrap();
        rt.block_on(spinner).expect("the spinner ends");
    });
}

#[test]
fn with_histograms_off_nothing_is_timed() {
    within(60, "histograms off", || {
        let mut b = builder(2);
        b.histograms(false);
        let rt = b.build().expect("runtime");
        yielding_work(&rt, 20, 200, Duration::from_micros(1));
        woken_work(&rt, 20, 10);
        let s = rt.metrics();
        assert!(s.polls > 4_000, "{}", s.polls);
        assert_eq!(s.poll_duration.count(), 0);
        assert_eq!(s.scheduling_delay.count(), 0);
        assert_eq!(s.task_lifetime.count(), 0);
        let busy: Vec<_> = rt.handle().tasks().iter().map(|t| t.busy).collect();
        assert!(busy.iter().all(Option::is_none), "{busy:?}");
    });
}
