//! The watchdog's compensation: a worker stuck in a poll has its seat (its
//! queue, LIFO slot and share of the driver) handed to a replacement thread,
//! so the work queued behind it runs while it blocks; the stuck thread exits
//! when its poll returns, and the runtime's threads come back to one per
//! worker. The number of threads never passes the bound, and the ceiling and
//! deadlines hold while replacements serve (a deadline fires with both
//! original workers stuck: the replacements turn the driver).
//!
//! The runtimes here have 2 workers and a blocker on each: with one worker
//! still free, work stealing already runs most of what waits behind a
//! blocker (all but its LIFO slot, which `threads.rs` tests), so the
//! difference compensation makes shows when every worker is stuck. Each test
//! names its runtime's threads, and counts those.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use bulwark::runtime::{Runtime, Watchdog};
use common::{builder, wait_until, within};

/// The watchdog's threshold. Its reports come within twice it, which these
/// tests check in real time: 500 ms leaves room for the watchdog's thread
/// to be descheduled for a few hundred ms on a loaded machine.
const THRESHOLD: Duration = Duration::from_millis(500);
/// How long the blockers hold their workers at least.
const BLOCK: Duration = Duration::from_secs(2);
const SHORT_TASKS: usize = 1_000;
/// Interval ticks that prove the driver is turned while both workers block.
const TICKS: usize = 19;

/// This runtime's worker threads, replacements included: `{name}-{index}`
/// and `{name}-{index}r` (not its blocking pool's, `{name}-blocking-{n}`).
fn worker_threads(name: &str) -> usize {
    common::threads_named(name)
        .iter()
        .filter(|comm| {
            comm.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|rest| {
                    let digits = rest.strip_suffix('r').unwrap_or(rest);
                    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
                })
        })
        .count()
}

fn runtime(name: &str, watchdog: Watchdog) -> Runtime {
    let mut b = builder(2);
    b.thread_name(name).watchdog(watchdog);
    b.build().expect("runtime")
}

/// What the work around two 2 s blockers had done when the first blocker
/// returned.
struct Seen {
    short_done: usize,
    ticks: usize,
}

/// Blocks both workers for `BLOCK`, and meanwhile spawns 1,000 short tasks
/// and a task ticking every 10 ms; returns what they had done by the time
/// the blockers returned. With `until_done`, the blockers hold on past
/// `BLOCK` until that work is done (bounded), so a slow machine is given the
/// time it needs; without, they return after `BLOCK` whatever was done.
fn two_blockers_and_work_around_them(rt: &Runtime, until_done: bool) -> Seen {
    let short_done = Arc::new(AtomicUsize::new(0));
    let ticks = Arc::new(AtomicUsize::new(0));
    let (started_tx, started_rx) = mpsc::channel();
    let (seen_tx, seen_rx) = mpsc::channel();
    let blockers: Vec<_> = (0..2)
        .map(|_| {
            let started_tx = started_tx.clone();
            let seen_tx = seen_tx.clone();
            let (short_done, ticks) = (short_done.clone(), ticks.clone());
            bulwark::task::Builder::new()
                .name("blocker")
                .spawn_on(
                    async move {
                        started_tx.send(bulwark::task::id()).unwrap();
                        let start = std::time::Instant::now();
                        std::thread::sleep(BLOCK);
                        let done = || {
                            short_done.load(SeqCst) == SHORT_TASKS && ticks.load(SeqCst) >= TICKS
                        };
                        let limit = BLOCK + Duration::from_secs(30);
                        while until_done && !done() && start.elapsed() < limit {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        let _ = seen_tx.send(Seen {
                            short_done: short_done.load(SeqCst),
                            ticks: ticks.load(SeqCst),
                        });
                    },
                    rt.handle(),
                )
                .expect("spawn a blocker")
        })
        .collect();
    for _ in 0..2 {
        started_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("both blockers to start, one on each worker");
    }
    let interval = {
        let ticks = ticks.clone();
        rt.spawn(async move {
            let mut interval = bulwark::time::interval(Duration::from_millis(10));
            loop {
                interval.tick().await;
                ticks.fetch_add(1, SeqCst);
            }
        })
    };
    let short: Vec<_> = (0..SHORT_TASKS)
        .map(|_| {
            let short_done = short_done.clone();
            rt.spawn(async move {
                short_done.fetch_add(1, SeqCst);
            })
        })
        .collect();
    let seen = seen_rx
        .recv_timeout(BLOCK + Duration::from_secs(40))
        .expect("a blocker to return");
    for blocker in blockers {
        rt.block_on(blocker).expect("the blockers finish");
    }
    for task in short {
        rt.block_on(task)
            .expect("every short task finishes in the end");
    }
    interval.abort();
    seen
}

#[test]
fn with_compensation_the_work_behind_blocked_workers_runs_before_they_return() {
    within(90, "compensation around two blockers", || {
        let name = "cmp-on";
        let rt = runtime(name, Watchdog::new(THRESHOLD));
        let seen = two_blockers_and_work_around_them(&rt, true);
        assert_eq!(
            seen.short_done, SHORT_TASKS,
            "every short task ran while both workers' polls blocked"
        );
        // About 150 ticks fit in the 1.5 s after the threshold; a tenth of
        // them is plenty of proof (and the blockers wait for them).
        assert!(
            seen.ticks >= TICKS,
            "the interval ticked only {} times while the workers blocked",
            seen.ticks
        );
        let stalls = rt.handle().stalls();
        assert!(stalls.len() >= 2, "both blockers reported: {stalls:?}");
        for stall in &stalls[..2] {
            assert_eq!(stall.task_name.as_deref(), Some("blocker"), "{stall:?}");
            // Real time, by nature: see `THRESHOLD`.
            assert!(
                stall.reported_after >= THRESHOLD && stall.reported_after <= 2 * THRESHOLD,
                "reported after {:?}, not within 2x the {THRESHOLD:?} threshold",
                stall.reported_after
            );
        }
        let m = rt.metrics();
        assert!(m.compensations >= 2, "compensations: {}", m.compensations);
        // The replaced threads exit once their polls have returned: back to
        // one thread per worker (and the watchdog, and the blocking pool,
        // which this runtime never used).
        wait_until(10, "the replaced threads to exit", || {
            worker_threads(name) == 2 && rt.metrics().worker_threads == 2
        });
        assert!(
            common::threads_named(&format!("{name}-blocking")).is_empty(),
            "no blocking threads were asked for"
        );
        // And the runtime serves as before.
        let n = rt.block_on(async {
            let handles: Vec<_> = (0..100).map(|i| bulwark::spawn(async move { i })).collect();
            let mut sum = 0;
            for h in handles {
                sum += h.await.unwrap();
            }
            sum
        });
        assert_eq!(n, 4950);
    });
}

#[test]
fn without_compensation_the_work_behind_blocked_workers_waits() {
    within(90, "two blockers with compensation off", || {
        let name = "cmp-off";
        let rt = runtime(name, Watchdog::new(THRESHOLD).compensate(false));
        let seen = two_blockers_and_work_around_them(&rt, false);
        assert_eq!(
            seen.short_done, 0,
            "nothing runs while both workers block and nobody takes over"
        );
        assert_eq!(seen.ticks, 0, "the interval waits too");
        assert!(
            rt.handle().stalls().len() >= 2,
            "the stalls are still reported"
        );
        assert_eq!(rt.metrics().compensations, 0);
        assert_eq!(worker_threads(name), 2);
    });
}

#[test]
fn a_hundred_polls_blocking_at_once_never_pass_the_thread_bound() {
    within(120, "100 blocking polls", || {
        let name = "cmp-bound";
        let extra = 4;
        let rt = runtime(
            name,
            Watchdog::new(Duration::from_millis(25)).max_extra_workers(extra),
        );
        let done = Arc::new(AtomicUsize::new(0));
        let blockers: Vec<_> = (0..100)
            .map(|_| {
                let done = done.clone();
                rt.spawn(async move {
                    std::thread::sleep(Duration::from_millis(100));
                    done.fetch_add(1, SeqCst);
                })
            })
            .collect();
        let mut most = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while done.load(SeqCst) < 100 {
            assert!(
                std::time::Instant::now() < deadline,
                "waited 60 s for 100 polls of 100 ms ({} done)",
                done.load(SeqCst)
            );
            most = most.max(worker_threads(name));
            std::thread::sleep(Duration::from_millis(1));
        }
        for b in blockers {
            rt.block_on(b).expect("each blocker finishes");
        }
        assert!(
            most <= 2 + extra,
            "{most} worker threads at once, over the bound of 2 workers + {extra}"
        );
        let m = rt.metrics();
        assert!(
            m.compensations > 0,
            "blocked workers were compensated: {m:?}"
        );
        wait_until(10, "the replaced threads to exit", || {
            worker_threads(name) == 2
        });
    });
}

#[test]
fn the_ceiling_and_deadlines_hold_while_replacements_serve() {
    within(90, "guards under compensation", || {
        let name = "cmp-guards";
        let mut b = builder(2);
        b.thread_name(name)
            .watchdog(Watchdog::new(THRESHOLD))
            .max_tasks(30);
        let rt = b.build().expect("runtime");
        let returned = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (started_tx, started_rx) = mpsc::channel();
        // The blockers hold their workers until the test has checked the
        // guards (bounded, so they end even if it fails).
        let (releases, blockers): (Vec<_>, Vec<_>) = (0..2)
            .map(|_| {
                let started_tx = started_tx.clone();
                let returned = returned.clone();
                let (release_tx, release_rx) = mpsc::channel::<()>();
                let blocker = rt.spawn(async move {
                    started_tx.send(()).unwrap();
                    let _ = release_rx.recv_timeout(Duration::from_secs(30));
                    returned.store(true, SeqCst);
                });
                (release_tx, blocker)
            })
            .unzip();
        for _ in 0..2 {
            started_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("both blockers to start");
        }
        wait_until(10, "both stuck workers to be replaced", || {
            rt.metrics().compensations >= 2
        });
        // A deadline fires while both original workers are stuck: the
        // replacements turn the driver.
        let (_keep, never) = tokio::sync::oneshot::channel::<()>();
        let timed = bulwark::task::Builder::new()
            .timeout(Duration::from_millis(100))
            .spawn_on(
                async move {
                    let _ = never.await;
                },
                rt.handle(),
            )
            .expect("spawn the timed task");
        let err = rt.block_on(timed).expect_err("the timed task expires");
        assert!(err.is_deadline_exceeded(), "{err}");
        assert!(
            !returned.load(SeqCst),
            "the deadline fired only after the blockers returned"
        );
        // The ceiling: 30 live tasks at most, the rest refused at once.
        let (open_tx, open_rx) = tokio::sync::watch::channel(false);
        let waiting: Vec<_> = (0..50)
            .map(|_| {
                let mut open = open_rx.clone();
                rt.spawn(async move {
                    let _ = open.wait_for(|open| *open).await;
                })
            })
            .collect();
        let m = rt.metrics();
        assert!(m.tasks_rejected >= 20, "refused at the ceiling: {m:?}");
        assert!(m.tasks_admitted_peak <= 30, "over the ceiling: {m:?}");
        open_tx.send_replace(true);
        for h in waiting {
            let _ = rt.block_on(h);
        }
        for release in releases {
            let _ = release.send(());
        }
        for b in blockers {
            rt.block_on(b).expect("the blockers finish");
        }
        let m = rt.metrics();
        assert_eq!(
            m.tasks_spawned,
            m.tasks_completed
                + m.tasks_panicked
                + m.tasks_cancelled
                + m.tasks_deadline_exceeded
                + m.tasks_rejected
                + m.tasks_lost_cancelled
                + m.tasks_live,
            "every spawn accounted for: {m:?}"
        );
    });
}

/// The seat is handed over at the hand-over time, before the report: with
/// the report at 2 s and the hand-over at 20 ms, a task queued behind a
/// blocker on a one-worker runtime runs while no stall has been reported
/// yet. Timing assumption: the watchdog and the replacement thread get the
/// CPU within the 2 s before the report (the blocker holds on for 3 s).
#[test]
fn the_seat_is_handed_over_before_the_stall_is_reported() {
    within(60, "a hand-over before the report", || {
        let rt = builder(1)
            .watchdog(
                Watchdog::new(Duration::from_secs(2)).hand_over_after(Duration::from_millis(20)),
            )
            .build()
            .expect("runtime");
        let (started_tx, started_rx) = mpsc::channel();
        let blocker = rt.spawn(async move {
            started_tx.send(()).expect("the test waits");
            std::thread::sleep(Duration::from_secs(3));
        });
        started_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("waited 10 s for the blocker to start");
        let behind = rt.spawn(async { 7 });
        let value = rt.block_on(async { common::bounded(10, "the task behind", behind).await });
        assert_eq!(value.expect("the task behind the blocker"), 7);
        assert!(
            rt.handle().stalls().is_empty(),
            "the stall was reported before the hand-over: {:?}",
            rt.handle().stalls()
        );
        assert!(rt.metrics().compensations >= 1);
        rt.block_on(blocker).expect("the blocker ends");
        assert_eq!(rt.metrics().stalls, 1, "reported once, at 2 s");
    });
}
