//! Nothing is lost: once every handle has resolved, each spawn is counted
//! in exactly one way it ended (completed, panicked, cancelled, deadline
//! exceeded, cancelled as lost, rejected) and no task is live, whatever mix
//! of endings a run had. A task queued by `Admission::Wait` that is aborted or passes its
//! deadline ends at once, without waiting for a permit it will never use.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use bulwark::metrics::Snapshot;
use bulwark::runtime::{Admission, Runtime};
use bulwark::task::{self, JoinError, JoinHandle};
use common::{builder, wait_until, within, DropCounter};
use tokio::sync::oneshot;

/// Asserts spawned == completed + panicked + cancelled + deadline_exceeded +
/// lost_cancelled + rejected, and that nothing is live, admitted or waiting.
fn assert_conserved(m: &Snapshot) {
    assert_eq!(
        m.tasks_spawned,
        m.tasks_completed
            + m.tasks_panicked
            + m.tasks_cancelled
            + m.tasks_deadline_exceeded
            + m.tasks_lost_cancelled
            + m.tasks_rejected,
        "spawned != completed + panicked + cancelled + deadline_exceeded + lost_cancelled + \
         rejected: {m:?}"
    );
    assert_eq!(m.tasks_live, 0, "tasks_live at quiescence: {m:?}");
    assert_eq!(
        m.tasks_admitted_live, 0,
        "tasks_admitted_live at quiescence: {m:?}"
    );
    assert_eq!(m.tasks_waiting, 0, "tasks_waiting at quiescence: {m:?}");
}

/// How each handle of the run ended, as the handles say.
#[derive(Debug, Default, PartialEq, Eq)]
struct Endings {
    completed: u64,
    panicked: u64,
    cancelled: u64,
    deadline_exceeded: u64,
    lost: u64,
    rejected: u64,
}

impl Endings {
    fn count<T>(&mut self, result: &Result<T, JoinError>) {
        match result {
            Ok(_) => self.completed += 1,
            Err(e) if e.is_panic() => self.panicked += 1,
            Err(e) if e.is_cancelled() => self.cancelled += 1,
            Err(e) if e.is_deadline_exceeded() => self.deadline_exceeded += 1,
            Err(e) if e.is_lost() => self.lost += 1,
            Err(e) if e.is_rejected() => self.rejected += 1,
            Err(e) => panic!("a JoinError of no known kind: {e}"),
        }
    }

    fn from_metrics(m: &Snapshot) -> Endings {
        Endings {
            completed: m.tasks_completed,
            panicked: m.tasks_panicked,
            cancelled: m.tasks_cancelled,
            deadline_exceeded: m.tasks_deadline_exceeded,
            lost: m.tasks_lost_cancelled,
            rejected: m.tasks_rejected,
        }
    }
}

/// The ceiling of the mixed run.
const CEILING: usize = 40;
const COMPLETING: u64 = 25;
const PANICKING: u64 = 6;
const EXPIRING: u64 = 8;
const ABORTED: u64 = 5;
/// Blockers fill the ceiling next to the aborted tasks, then complete.
const BLOCKERS: u64 = CEILING as u64 - ABORTED;
const REJECTED: u64 = 17;
const REFUSED: u64 = 4;

#[test]
fn every_spawn_is_counted_once_across_completion_panic_abort_deadline_and_rejection() {
    within(60, "a run with every kind of ending to settle", || {
        let rt = builder(2)
            .max_tasks(CEILING)
            .build()
            .expect("build the runtime");
        let drops = Arc::new(AtomicUsize::new(0));
        let polled = Arc::new(AtomicUsize::new(0));
        let mut seen = Endings::default();

        // Completions, panics and deadline expiries, all at once (39 live at
        // most: under the ceiling).
        rt.block_on(async {
            let mut completing = Vec::new();
            let mut panicking = Vec::new();
            let mut expiring = Vec::new();
            for i in 0..COMPLETING.max(PANICKING).max(EXPIRING) {
                if i < COMPLETING {
                    let guard = DropCounter::new(&drops);
                    completing.push(bulwark::spawn(async move {
                        let _guard = guard;
                        task::yield_now().await;
                        i
                    }));
                }
                if i < PANICKING {
                    let guard = DropCounter::new(&drops);
                    panicking.push(bulwark::spawn(async move {
                        let _guard = guard;
                        task::yield_now().await;
                        if i < 1_000 {
                            panic!("conservation boom {i}");
                        }
                    }));
                }
                if i < EXPIRING {
                    let guard = DropCounter::new(&drops);
                    expiring.push(
                        task::Builder::new()
                            .timeout(Duration::from_millis(30))
                            .spawn(async move {
                                let _guard = guard;
                                std::future::pending::<()>().await
                            })
                            .expect("spawn an expiring task"),
                    );
                }
            }
            for (i, join) in completing.into_iter().enumerate() {
                let r = join.await;
                assert_eq!(*r.as_ref().expect("a completing task failed"), i as u64);
                seen.count(&r);
            }
            for join in panicking {
                let r = join.await;
                assert!(r.as_ref().is_err_and(|e| e.is_panic()), "not a panic");
                seen.count(&r);
            }
            for join in expiring {
                let r = join.await;
                assert!(
                    r.as_ref().is_err_and(|e| e.is_deadline_exceeded()),
                    "an expiring task did not end at its deadline"
                );
                seen.count(&r);
            }
        });

        // Aborts and a full ceiling: rejections and try_spawn refusals.
        let aborted: Vec<JoinHandle<()>> = (0..ABORTED)
            .map(|_| {
                let guard = DropCounter::new(&drops);
                rt.spawn(async move {
                    let _guard = guard;
                    std::future::pending::<()>().await
                })
            })
            .collect();
        let (releases, blockers): (Vec<oneshot::Sender<()>>, Vec<JoinHandle<u64>>) = (0..BLOCKERS)
            .map(|i| {
                let (tx, rx) = oneshot::channel::<()>();
                let guard = DropCounter::new(&drops);
                let join = rt.spawn(async move {
                    let _guard = guard;
                    rx.await.expect("a blocker's sender was dropped");
                    i
                });
                (tx, join)
            })
            .unzip();
        wait_until(
            10,
            "the aborted tasks and blockers to fill the ceiling",
            || rt.metrics().tasks_admitted_live == CEILING,
        );

        let rejected: Vec<JoinHandle<()>> = {
            let _guard = rt.enter();
            (0..REJECTED)
                .map(|i| {
                    let guard = DropCounter::new(&drops);
                    let polled = Arc::clone(&polled);
                    let fut = async move {
                        let _guard = guard;
                        polled.fetch_add(1, SeqCst);
                    };
                    if i % 2 == 0 {
                        rt.spawn(fut)
                    } else {
                        bulwark::spawn(fut)
                    }
                })
                .collect()
        };
        {
            let _guard = rt.enter();
            for _ in 0..REFUSED {
                let guard = DropCounter::new(&drops);
                let polled = Arc::clone(&polled);
                let refused = bulwark::try_spawn(async move {
                    let _guard = guard;
                    polled.fetch_add(1, SeqCst);
                })
                .expect_err("try_spawn at a full ceiling spawned");
                assert!(!refused.is_shedding());
                drop(refused.into_future());
            }
        }

        for join in &aborted {
            join.abort();
        }
        for tx in releases {
            tx.send(()).expect("a blocker ended early");
        }
        rt.block_on(async {
            for join in aborted {
                let r = join.await;
                assert!(
                    r.as_ref().is_err_and(|e| e.is_cancelled()),
                    "an aborted task did not end cancelled"
                );
                seen.count(&r);
            }
            for (i, join) in blockers.into_iter().enumerate() {
                let r = join.await;
                assert_eq!(*r.as_ref().expect("a blocker failed"), i as u64);
                seen.count(&r);
            }
            for join in rejected {
                let r = join.await;
                assert!(
                    r.as_ref().is_err_and(|e| e.is_rejected()),
                    "a spawn at the full ceiling was not rejected"
                );
                seen.count(&r);
            }
        });
        seen.rejected += REFUSED;

        let expected = Endings {
            completed: COMPLETING + BLOCKERS,
            panicked: PANICKING,
            cancelled: ABORTED,
            deadline_exceeded: EXPIRING,
            lost: 0,
            rejected: REJECTED + REFUSED,
        };
        assert_eq!(seen, expected, "what the handles said");
        let m = rt.metrics();
        eprintln!("metrics after the mixed run: {m:?}");
        assert_eq!(Endings::from_metrics(&m), expected, "what the metrics say");
        assert_eq!(
            m.tasks_spawned,
            COMPLETING + PANICKING + EXPIRING + ABORTED + BLOCKERS + REJECTED + REFUSED,
            "metrics: tasks_spawned"
        );
        assert_eq!(
            m.rejected_at_ceiling,
            REJECTED + REFUSED,
            "metrics: rejected_at_ceiling"
        );
        assert_eq!(m.rejected_shedding, 0, "metrics: rejected_shedding");
        assert_conserved(&m);
        assert_eq!(
            polled.load(SeqCst),
            0,
            "a rejected or refused future was polled"
        );
        assert_eq!(
            drops.load(SeqCst) as u64,
            m.tasks_spawned,
            "every future is dropped exactly once"
        );
        assert_eq!(m.timers_pending, 0, "deadline timers left in the wheel");
    });
}

/// How a queued task is ended while it waits for a permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndQueued {
    Abort,
    Deadline,
}

/// Under `Admission::Wait` at a full ceiling, queues a task in front of
/// another, ends the first while it waits (by `how`), and checks that it ends
/// at once (a task needs no permit to be dropped), unpolled, and is counted
/// once; the one behind it runs when room frees.
fn end_a_queued_task(how: EndQueued) {
    let rt = builder(2)
        .max_tasks(3)
        .admission(Admission::Wait)
        .build()
        .expect("build the runtime");
    let drops = Arc::new(AtomicUsize::new(0));
    let polled = Arc::new(AtomicUsize::new(0));

    let (releases, blockers): (Vec<oneshot::Sender<()>>, Vec<JoinHandle<()>>) = (0..3)
        .map(|_| {
            let (tx, rx) = oneshot::channel::<()>();
            (
                tx,
                rt.spawn(async move {
                    let _ = rx.await;
                }),
            )
        })
        .unzip();
    wait_until(10, "3 blockers to fill the ceiling", || {
        rt.metrics().tasks_admitted_live == 3
    });

    let probe = |drops: &Arc<AtomicUsize>, polled: &Arc<AtomicUsize>| {
        let guard = DropCounter::new(drops);
        let polled = Arc::clone(polled);
        async move {
            let _guard = guard;
            polled.fetch_add(1, SeqCst);
            7u8
        }
    };
    let first = match how {
        EndQueued::Abort => rt.spawn(probe(&drops, &polled)),
        EndQueued::Deadline => task::Builder::new()
            .timeout(Duration::from_millis(50))
            .spawn_on(probe(&drops, &polled), rt.handle())
            .expect("spawn a queued task with a deadline"),
    };
    let behind = rt.spawn(probe(&drops, &polled));
    // Both queue; a deadline may already have ended the first by the time
    // this looks (50 ms of real time), which is a run the rest still checks.
    wait_until(10, "2 tasks queued for admission", || {
        let waiting = rt.metrics().tasks_waiting;
        waiting == 2 || (how == EndQueued::Deadline && waiting == 1 && first.is_finished())
    });

    if how == EndQueued::Abort {
        first.abort();
    }
    let ended = resolve_soon(
        &rt,
        first,
        &format!("the queued task ended by {how:?} to resolve while the ceiling is full"),
    );
    match how {
        EndQueued::Abort => assert!(
            ended.as_ref().is_err_and(|e| e.is_cancelled()),
            "an aborted queued task did not end cancelled"
        ),
        EndQueued::Deadline => assert!(
            ended.as_ref().is_err_and(|e| e.is_deadline_exceeded()),
            "a queued task past its deadline did not end deadline-exceeded"
        ),
    }
    assert_eq!(
        drops.load(SeqCst),
        1,
        "the ended queued future was not dropped"
    );
    assert_eq!(polled.load(SeqCst), 0, "the ended queued future was polled");
    assert_eq!(
        rt.metrics().tasks_admitted_live,
        3,
        "the ceiling is still full of blockers"
    );

    for tx in releases {
        tx.send(()).expect("a blocker ended early");
    }
    assert_eq!(
        rt.block_on(behind).expect("the task queued behind failed"),
        7
    );
    rt.block_on(async {
        for join in blockers {
            join.await.expect("a blocker failed");
        }
    });
    assert_eq!(polled.load(SeqCst), 1, "only the task queued behind runs");
    let m = rt.metrics();
    let expected = Endings {
        completed: 4,
        cancelled: u64::from(how == EndQueued::Abort),
        deadline_exceeded: u64::from(how == EndQueued::Deadline),
        ..Endings::default()
    };
    assert_eq!(Endings::from_metrics(&m), expected, "what the metrics say");
    assert_eq!(m.tasks_spawned, 5, "metrics: tasks_spawned");
    assert_conserved(&m);
}

#[test]
fn an_aborted_queued_task_ends_at_once_while_the_ceiling_stays_full() {
    within(30, "an aborted queued task to end", || {
        end_a_queued_task(EndQueued::Abort)
    });
}

#[test]
fn a_queued_task_past_its_deadline_ends_while_the_ceiling_stays_full() {
    within(30, "a queued task past its deadline to end", || {
        end_a_queued_task(EndQueued::Deadline)
    });
}

/// Awaits `join` on the runtime, failing with `what` if it takes over 10 s.
/// What it rules out is a handle that resolves only when room frees (never,
/// in these tests) or not at all; 10 s is ample on a slow machine.
fn resolve_soon<T: Send + 'static>(
    rt: &Runtime,
    join: JoinHandle<T>,
    what: &str,
) -> Result<T, JoinError> {
    rt.block_on(async {
        match bulwark::time::timeout(Duration::from_secs(10), join).await {
            Ok(r) => r,
            Err(_) => panic!("waited 10 s for {what}"),
        }
    })
}

/// Under `LostTask::Cancel`, tasks cancelled as lost are one more way to
/// end, counted once next to the others: completed, panicked, aborted, past
/// a deadline while a waker was kept, and lost.
#[test]
fn lost_tasks_cancelled_are_counted_once_among_the_other_endings() {
    within(30, "a run with lost tasks to settle", || {
        let rt = builder(2)
            .on_lost_task(bulwark::runtime::LostTask::Cancel)
            .build()
            .expect("build the runtime");
        let drops = Arc::new(AtomicUsize::new(0));
        let mut seen = Endings::default();
        // Kept alive to the end: the senders the waiting tasks' wakers sit
        // behind, so those tasks wait without being lost.
        let mut senders = Vec::new();
        let mut joins: Vec<JoinHandle<()>> = Vec::new();
        for i in 0..20u64 {
            let guard = DropCounter::new(&drops);
            let join = match i % 5 {
                0 => rt.spawn(async move {
                    let _guard = guard;
                    task::yield_now().await;
                }),
                1 => rt.spawn(async move {
                    let _guard = guard;
                    task::yield_now().await;
                    if i < 1_000 {
                        panic!("conservation boom {i}");
                    }
                }),
                2 => {
                    let (tx, rx) = oneshot::channel::<()>();
                    senders.push(tx);
                    let join = rt.spawn(async move {
                        let _guard = guard;
                        let _ = rx.await;
                    });
                    join.abort();
                    join
                }
                3 => {
                    let (tx, rx) = oneshot::channel::<()>();
                    senders.push(tx);
                    task::Builder::new()
                        .timeout(Duration::from_millis(30))
                        .spawn_on(
                            async move {
                                let _guard = guard;
                                let _ = rx.await;
                            },
                            rt.handle(),
                        )
                        .expect("spawn an expiring task")
                }
                _ => rt.spawn(async move {
                    let _guard = guard;
                    std::future::pending::<()>().await
                }),
            };
            joins.push(join);
        }
        for join in joins {
            seen.count(&resolve_soon(&rt, join, "a task of the lost run"));
        }
        let expected = Endings {
            completed: 4,
            panicked: 4,
            cancelled: 4,
            deadline_exceeded: 4,
            lost: 4,
            rejected: 0,
        };
        assert_eq!(seen, expected, "what the handles said");
        let m = rt.metrics();
        assert_eq!(Endings::from_metrics(&m), expected, "what the metrics say");
        assert_eq!(m.tasks_lost, 4, "lost tasks found: {m:?}");
        assert_conserved(&m);
        assert_eq!(drops.load(SeqCst), 20, "every future dropped once");
        drop(senders);
    });
}
