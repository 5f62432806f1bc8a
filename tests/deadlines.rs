//! Per-task deadlines: an idle task past its deadline is dropped within a
//! timer tick or so (never before); a running one when its poll returns, with
//! its destructors run before its handle resolves; children inherit their
//! parent's deadline unless detached or given an earlier one; the runtime's
//! `default_deadline` applies to plain spawns; and deadline timers leave the
//! wheel when their tasks finish first.

mod common;

use bulwark::time::{Duration, Instant};
use std::future::pending;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};

use bulwark::task::{self, JoinError, JoinHandle};
use common::{builder, runtime, wait_until, within, DropCounter, LATE};
use tokio::sync::{oneshot, watch};

/// Counts into a shared counter when dropped, after a pause: if the runtime
/// resolved a handle before dropping the future, a check made right after
/// the handle resolves sees the count still unchanged.
struct SlowDrop(Arc<AtomicUsize>);

impl Drop for SlowDrop {
    fn drop(&mut self) {
        std::thread::sleep(Duration::from_millis(30));
        self.0.fetch_add(1, SeqCst);
    }
}

fn assert_deadline_exceeded<T: std::fmt::Debug>(result: Result<T, JoinError>, what: &str) {
    let err = result.expect_err(&format!("{what} completed instead of expiring"));
    assert!(
        err.is_deadline_exceeded(),
        "{what}: not is_deadline_exceeded(): {err}"
    );
    assert!(
        !err.is_cancelled(),
        "{what}: a deadline says is_cancelled(): {err}"
    );
    assert!(!err.is_panic(), "{what}: a deadline says is_panic(): {err}");
    assert!(
        !err.is_rejected(),
        "{what}: a deadline says is_rejected(): {err}"
    );
}

#[test]
fn an_idle_task_is_dropped_at_its_deadline_and_not_before() {
    within(20, "an idle task's 50 ms deadline", || {
        let rt = runtime(2);
        let drops = Arc::new(AtomicUsize::new(0));
        let polls = Arc::new(AtomicUsize::new(0));
        let guard = SlowDrop(Arc::clone(&drops));
        let counted = Arc::clone(&polls);

        let began = Instant::now();
        let join = task::Builder::new()
            .name("idle")
            .timeout(Duration::from_millis(50))
            .spawn_on(
                async move {
                    let _guard = guard;
                    counted.fetch_add(1, SeqCst);
                    pending::<()>().await
                },
                rt.handle(),
            )
            .expect("spawn a task with a deadline");
        let result = rt.block_on(join);
        let waited = began.elapsed();
        assert_eq!(
            drops.load(SeqCst),
            1,
            "the handle resolved before the expired future was dropped"
        );
        let err = result.as_ref().expect_err("a pending task completed");
        let shown = err.to_string();
        assert!(
            shown.contains("idle"),
            "JoinError {shown:?} does not name the task"
        );
        assert_deadline_exceeded(result, "an idle task with a 50 ms deadline");
        assert!(
            waited >= Duration::from_millis(50),
            "dropped after {waited:?}, before its 50 ms deadline"
        );
        assert!(
            waited < LATE,
            "dropped {waited:?} after spawn, for a 50 ms deadline"
        );
        assert_eq!(
            polls.load(SeqCst),
            1,
            "the idle task was polled again at expiry"
        );

        let m = rt.metrics();
        assert_eq!(
            m.tasks_deadline_exceeded, 1,
            "metrics: tasks_deadline_exceeded"
        );
        assert_eq!(m.tasks_live, 0, "metrics: tasks_live");
        assert_eq!(
            m.timers_pending, 0,
            "metrics: a fired deadline left a timer"
        );
    });
}

/// What a child task saw of itself.
#[derive(Debug)]
struct Seen {
    who: &'static str,
    deadline: Option<Instant>,
}

#[test]
fn children_inherit_the_parent_deadline_unless_detached_or_given_an_earlier_one() {
    within(30, "a parent's deadline and its children's", || {
        const PARENT: Duration = Duration::from_millis(300);
        const EARLY: Duration = Duration::from_millis(30);
        let rt = runtime(2);
        let (seen_tx, seen_rx) = mpsc::channel::<Seen>();
        let inherit_drops = Arc::new(AtomicUsize::new(0));
        let (go_tx, go_rx) = oneshot::channel::<()>();
        let detached_ran_late = Arc::new(AtomicBool::new(false));
        let (handles_tx, handles_rx) = oneshot::channel();

        let parent = {
            let inherit_guard = DropCounter::new(&inherit_drops);
            let detached_ran_late = Arc::clone(&detached_ran_late);
            task::Builder::new()
                .timeout(PARENT)
                .spawn_on(
                    async move {
                        let own = task::deadline();
                        let report = |who: &'static str, tx: &mpsc::Sender<Seen>| {
                            tx.send(Seen {
                                who,
                                deadline: task::deadline(),
                            })
                            .unwrap()
                        };
                        let tx = seen_tx.clone();
                        let inherit: JoinHandle<()> = bulwark::spawn(async move {
                            let _guard = inherit_guard;
                            report("inherit", &tx);
                            pending::<()>().await
                        });
                        let tx = seen_tx.clone();
                        let detached = task::Builder::new()
                            .detached_deadline()
                            .spawn(async move {
                                report("detached", &tx);
                                go_rx.await.expect("the go signal was dropped");
                                detached_ran_late.store(true, SeqCst);
                                "detached done"
                            })
                            .unwrap();
                        let tx = seen_tx.clone();
                        let early_spawned = Instant::now();
                        let early = task::Builder::new()
                            .timeout(EARLY)
                            .spawn(async move {
                                report("early", &tx);
                                pending::<()>().await
                            })
                            .unwrap();
                        let tx = seen_tx.clone();
                        let late = task::Builder::new()
                            .timeout(Duration::from_secs(60))
                            .spawn(async move {
                                report("late", &tx);
                                pending::<()>().await
                            })
                            .unwrap();
                        let _ =
                            handles_tx.send((own, early_spawned, inherit, detached, early, late));
                        pending::<()>().await
                    },
                    rt.handle(),
                )
                .expect("spawn the parent")
        };

        let (own, early_spawned, inherit, detached, early, late) = rt
            .block_on(handles_rx)
            .expect("the parent ended before sending its children");
        let parent_deadline = own.expect("task::deadline() inside a task with a timeout is None");
        let mut seen = std::collections::HashMap::new();
        for _ in 0..4 {
            let s = seen_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("waited 10 s for the children to report their deadlines");
            seen.insert(s.who, s.deadline);
        }
        assert_eq!(
            seen["inherit"],
            Some(parent_deadline),
            "a plain child's deadline"
        );
        assert_eq!(seen["detached"], None, "a detached child's deadline");
        assert_eq!(
            seen["late"],
            Some(parent_deadline),
            "a child with a later own deadline"
        );
        let early_deadline = seen["early"].expect("the early child has no deadline");
        assert!(
            early_deadline < parent_deadline,
            "the early child's deadline is not its own earlier one"
        );
        assert!(
            early_deadline >= early_spawned + EARLY
                && early_deadline <= early_spawned + EARLY + Duration::from_millis(200),
            "the early child's deadline is {:?} after its spawn, for a timeout of {EARLY:?}",
            early_deadline - early_spawned
        );

        // The early child expires on its own deadline, well before the parent.
        rt.block_on(async {
            let early = early.await;
            let at = Instant::now();
            assert_deadline_exceeded(early, "the child with an earlier deadline");
            assert!(
                at >= early_deadline,
                "the early child expired before its deadline"
            );
            assert!(
                at < parent_deadline,
                "the early child expired only {:?} after its deadline, at the parent's",
                at - early_deadline
            );
        });
        assert!(
            !parent.is_finished(),
            "the parent expired with the early child"
        );

        // The parent, and with it the inheriting children, at its deadline.
        rt.block_on(async {
            assert_deadline_exceeded(parent.await, "the parent");
            assert!(
                Instant::now() >= parent_deadline,
                "the parent expired early"
            );
            let inherit = inherit.await;
            assert!(
                Instant::now() >= parent_deadline,
                "the inheriting child expired early"
            );
            assert_deadline_exceeded(inherit, "the inheriting child");
            assert_deadline_exceeded(late.await, "the child with a later own deadline");
        });
        assert_eq!(
            inherit_drops.load(SeqCst),
            1,
            "the inheriting child's future was not dropped"
        );

        // The detached child lives on past the parent's deadline.
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !detached.is_finished(),
            "the detached child ended with its parent"
        );
        go_tx.send(()).expect("the detached child is gone");
        let done = rt
            .block_on(detached)
            .expect("the detached child failed after its parent's deadline");
        assert_eq!(done, "detached done");
        assert!(detached_ran_late.load(SeqCst));

        let m = rt.metrics();
        assert_eq!(
            m.tasks_deadline_exceeded, 4,
            "metrics: parent, inherit, early, late"
        );
        assert_eq!(m.tasks_completed, 1, "metrics: the detached child");
        assert_eq!(m.tasks_live, 0, "metrics: tasks_live");
        assert_eq!(m.timers_pending, 0, "metrics: timers left");
    });
}

#[test]
fn the_runtime_default_deadline_applies_to_plain_spawns() {
    within(20, "tasks under a default deadline", || {
        const DEFAULT: Duration = Duration::from_millis(80);
        let rt = builder(2)
            .default_deadline(Some(DEFAULT))
            .build()
            .expect("build the runtime");
        let drops = Arc::new(AtomicUsize::new(0));

        let began = Instant::now();
        let guard = DropCounter::new(&drops);
        let (tx, rx) = oneshot::channel();
        let plain = rt.spawn(async move {
            let _guard = guard;
            let _ = tx.send(task::deadline());
            pending::<()>().await
        });
        // An explicit timeout overrides the default.
        let (long_tx, long_rx) = oneshot::channel();
        let long = task::Builder::new()
            .timeout(Duration::from_secs(60))
            .spawn_on(
                async move {
                    let _ = long_tx.send(task::deadline());
                    "long done"
                },
                rt.handle(),
            )
            .unwrap();
        // A spawn from block_on gets the default too.
        let (inner_deadline, inner) = rt.block_on(async {
            let (tx, rx) = oneshot::channel();
            let join = bulwark::spawn(async move {
                let _ = tx.send(task::deadline());
                pending::<()>().await
            });
            (rx.await.expect("the inner task did not report"), join)
        });

        let deadline = rt
            .block_on(rx)
            .expect("the plain task did not report")
            .expect("a plain spawn has no deadline under default_deadline");
        assert!(
            deadline >= began + DEFAULT && deadline <= began + DEFAULT + LATE,
            "the default deadline is {:?} after the spawn, for {DEFAULT:?}",
            deadline - began
        );
        let inner_deadline = inner_deadline.expect("a spawn from block_on has no deadline");
        assert!(
            inner_deadline >= began + DEFAULT,
            "the inner deadline is early"
        );
        let long_deadline = rt
            .block_on(long_rx)
            .expect("the long task did not report")
            .expect("the long task has no deadline");
        assert!(
            long_deadline >= began + Duration::from_secs(60),
            "an explicit timeout did not override the default"
        );
        assert_eq!(
            rt.block_on(long).expect("the long task failed"),
            "long done"
        );

        let result = rt.block_on(plain);
        let waited = began.elapsed();
        assert_deadline_exceeded(result, "a plain spawn under default_deadline");
        assert!(
            waited >= DEFAULT,
            "expired after {waited:?}, before {DEFAULT:?}"
        );
        assert!(
            waited < DEFAULT + LATE,
            "expired after {waited:?}, for {DEFAULT:?}"
        );
        assert_eq!(drops.load(SeqCst), 1, "the expired future was not dropped");
        assert_deadline_exceeded(rt.block_on(inner), "a spawn from block_on");
        assert_eq!(rt.metrics().timers_pending, 0, "metrics: timers left");
    });
}

#[test]
fn a_task_running_past_its_deadline_is_dropped_when_its_poll_returns() {
    within(20, "a task that overruns its deadline in one poll", || {
        let rt = runtime(2);
        let drops = Arc::new(AtomicUsize::new(0));
        let polls = Arc::new(AtomicUsize::new(0));
        let resumed = Arc::new(AtomicBool::new(false));
        let guard = SlowDrop(Arc::clone(&drops));
        let (counted, after) = (Arc::clone(&polls), Arc::clone(&resumed));

        // Timing assumption: the task's first poll begins within 300 ms of
        // its spawn (on an idle 2-worker runtime it begins at once; a machine
        // so slow that it does not would drop the task unpolled, which
        // another test covers). The poll then blocks past the deadline.
        let began = Instant::now();
        let join = task::Builder::new()
            .timeout(Duration::from_millis(300))
            .spawn_on(
                async move {
                    let _guard = guard;
                    counted.fetch_add(1, SeqCst);
                    // Blocks the worker through the deadline, then yields.
                    std::thread::sleep(Duration::from_millis(500));
                    task::yield_now().await;
                    after.store(true, SeqCst);
                    "ran on past its deadline"
                },
                rt.handle(),
            )
            .expect("spawn an overrunning task");
        let result = rt.block_on(join);
        let waited = began.elapsed();
        assert_eq!(
            drops.load(SeqCst),
            1,
            "the handle resolved before the overrunning future was dropped"
        );
        assert_deadline_exceeded(result, "a task running past its deadline");
        assert!(
            waited >= Duration::from_millis(500),
            "resolved after {waited:?}, inside the 500 ms poll"
        );
        assert!(waited < LATE, "resolved {waited:?} after spawn");
        assert_eq!(polls.load(SeqCst), 1, "polled more than once");
        assert!(!resumed.load(SeqCst), "polled again after its deadline");

        // The worker it blocked is fine: more tasks run.
        let sum: usize = rt.block_on(async {
            let handles: Vec<_> = (0..100).map(|i| bulwark::spawn(async move { i })).collect();
            let mut sum = 0;
            for h in handles {
                sum += h.await.expect("a task after the overrun failed");
            }
            sum
        });
        assert_eq!(sum, 4_950);
        let m = rt.metrics();
        assert_eq!(
            m.tasks_deadline_exceeded, 1,
            "metrics: tasks_deadline_exceeded"
        );
        assert_eq!(m.timers_pending, 0, "metrics: timers left");
    });
}

#[test]
fn ten_thousand_tasks_that_finish_before_their_deadlines_leave_no_timers() {
    within(
        60,
        "10_000 tasks with 60 s deadlines to finish early",
        || {
            const TASKS: usize = 10_000;
            let rt = runtime(2);
            let (go_tx, go_rx) = watch::channel(false);
            let started = Arc::new(AtomicUsize::new(0));

            let handles: Vec<JoinHandle<usize>> = (0..TASKS)
                .map(|i| {
                    let mut go = go_rx.clone();
                    let started = Arc::clone(&started);
                    task::Builder::new()
                        .timeout(Duration::from_secs(60))
                        .spawn_on(
                            async move {
                                started.fetch_add(1, SeqCst);
                                go.wait_for(|g| *g)
                                    .await
                                    .expect("the go sender was dropped");
                                i
                            },
                            rt.handle(),
                        )
                        .expect("spawn a task with a deadline")
                })
                .collect();
            wait_until(20, "every task to start waiting", || {
                started.load(SeqCst) == TASKS
            });
            // A task's deadline timer is set when its first poll returns
            // `Pending`, just after it counted itself as started.
            wait_until(5, "every task's deadline timer to be set", || {
                rt.metrics().timers_pending >= TASKS
            });
            let pending_before = rt.metrics().timers_pending;
            assert!(
                pending_before >= TASKS,
                "metrics: {pending_before} timers pending for {TASKS} tasks with deadlines"
            );

            go_tx.send(true).unwrap();
            rt.block_on(async {
                for (i, join) in handles.into_iter().enumerate() {
                    assert_eq!(join.await.expect("a task with a far deadline failed"), i);
                }
            });
            let m = rt.metrics();
            assert_eq!(
                m.timers_pending, 0,
                "metrics: deadline timers left in the wheel after every task finished"
            );
            assert_eq!(m.tasks_completed, TASKS as u64, "metrics: tasks_completed");
            assert_eq!(
                m.tasks_deadline_exceeded, 0,
                "metrics: tasks_deadline_exceeded"
            );
            assert_eq!(m.tasks_live, 0, "metrics: tasks_live");
        },
    );
}

#[test]
fn a_child_spawned_past_its_parents_deadline_while_queued_for_admission_ends_at_once() {
    // Defect: the child's deadline fired while it was being spawned, before
    // it was in the admission wait list; it was then queued anyway, and its
    // handle resolved only when a permit freed (here: never).
    within(30, "the queued child to end at its deadline", || {
        let rt = builder(2)
            .max_tasks(2)
            .admission(bulwark::runtime::Admission::Wait)
            .build()
            .unwrap();
        let (hold_tx, hold_rx) = watch::channel(false);
        // One task holds a permit until the end of the test.
        let mut hold = hold_rx.clone();
        let holder = rt.spawn(async move {
            let _ = hold.wait_for(|go| *go).await;
        });
        // Timing assumption: the parent's first poll begins within 300 ms
        // of its spawn (it would be dropped unpolled otherwise).
        let parent = task::Builder::new()
            .timeout(Duration::from_millis(300))
            .spawn_on(
                async move {
                    // Run past the parent's own deadline without yielding, so
                    // the child is spawned with a deadline already gone and
                    // at a full ceiling (holder + parent).
                    std::thread::sleep(Duration::from_millis(400));
                    let child = task::spawn(async { pending::<()>().await });
                    (child,)
                },
                rt.handle(),
            )
            .unwrap();
        let child = match rt.block_on(parent) {
            Ok((child,)) => child,
            Err(e) => panic!("the parent ended without its output: {e}"),
        };
        let started = Instant::now();
        assert_deadline_exceeded(rt.block_on(child), "the queued child");
        assert!(started.elapsed() < LATE, "the queued child ended late");
        hold_tx.send(true).unwrap();
        rt.block_on(holder).unwrap();
        let m = rt.metrics();
        assert_eq!(m.tasks_admitted_live, 0, "{m:?}");
        assert_eq!(m.tasks_waiting, 0, "{m:?}");
    });
}

#[test]
fn tasks_queued_past_their_deadline_are_dropped_and_few_are_ever_polled() {
    // A task's deadline timer is set when it first waits, so a task that
    // never waits costs no timer. One that reaches a worker after its
    // deadline is dropped unpolled once the worker's coarse clock shows it
    // (refreshed every 61 polls and on each wake-up): a long queue of dead
    // tasks is not run.
    within(30, "the queued tasks to end at their deadlines", || {
        const TASKS: usize = 500;
        let rt = builder(1).build().unwrap();
        let (started_tx, started_rx) = mpsc::channel();
        let blocker = rt.spawn(async move {
            started_tx.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(150));
        });
        started_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the blocker to start");
        let polled = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..TASKS)
            .map(|_| {
                let polled = polled.clone();
                task::Builder::new()
                    .timeout(Duration::from_millis(20))
                    .spawn_on(
                        async move {
                            polled.fetch_add(1, SeqCst);
                            pending::<()>().await
                        },
                        rt.handle(),
                    )
                    .unwrap()
            })
            .collect();
        rt.block_on(blocker).unwrap();
        for (i, h) in handles.into_iter().enumerate() {
            assert_deadline_exceeded(rt.block_on(h), &format!("queued task {i}"));
        }
        let polled = polled.load(SeqCst);
        assert!(
            polled <= 64,
            "{polled} of {TASKS} tasks were polled after their deadline had passed"
        );
    });
}

#[test]
fn a_task_that_lifts_its_deadline_outlives_it_even_after_its_timer_was_set() {
    within(30, "tasks that lift their deadlines", || {
        let rt = runtime(2);
        let handle = task::Builder::new()
            .timeout(Duration::from_millis(100))
            .spawn_on(
                async {
                    // Waits first, so the deadline timer is set, then lifts.
                    bulwark::time::sleep(Duration::from_millis(20)).await;
                    let lifted = task::lift_deadline();
                    assert!(lifted.is_some(), "the task had a deadline to lift");
                    assert_eq!(task::deadline(), None);
                    bulwark::time::sleep(Duration::from_millis(300)).await;
                    // A child spawned now inherits nothing.
                    bulwark::spawn(async { task::deadline() }).await.unwrap()
                },
                rt.handle(),
            )
            .expect("spawn");
        assert_eq!(
            rt.block_on(handle)
                .expect("the task was dropped at its lifted deadline"),
            None
        );
        // A task that lifts in its first poll never sets the timer at all.
        let mut b = builder(2);
        b.default_deadline(Some(Duration::from_millis(50)));
        let rt = b.build().expect("runtime");
        let handle = rt.spawn(async {
            task::lift_deadline();
            bulwark::time::sleep(Duration::from_millis(200)).await;
            "served"
        });
        assert_eq!(rt.block_on(handle).expect("lifted"), "served");
    });
}

#[test]
fn a_scope_deadline_bounds_its_future_and_its_children_not_the_task() {
    within(30, "deadline scopes", || {
        let rt = runtime(2);
        let child_drops = Arc::new(AtomicUsize::new(0));
        let drops = Arc::clone(&child_drops);
        let handle = task::Builder::new()
            .timeout(Duration::from_secs(20))
            .spawn_on(
                async move {
                    let own = task::deadline().expect("the task's own deadline");
                    let outer = Instant::now() + Duration::from_millis(100);
                    let inner = Instant::now() + Duration::from_secs(10);
                    let guard = DropCounter::new(&drops);
                    let scoped = task::scope_deadline(outer, async move {
                        assert_eq!(task::deadline(), Some(outer));
                        // Nested: the earlier deadline wins.
                        let seen = task::scope_deadline(inner, async { task::deadline() })
                            .await
                            .expect("the inner scope's future is ready at once");
                        assert_eq!(seen, Some(outer), "a later inner scope cannot extend");
                        let child = bulwark::spawn(async move {
                            let _guard = guard;
                            pending::<()>().await
                        });
                        let detached = task::Builder::new()
                            .detached_deadline()
                            .spawn(async { task::deadline() })
                            .expect("spawn detached");
                        assert_eq!(detached.await.unwrap(), None, "detached inherits no scope");
                        child.await
                    })
                    .await;
                    // Back outside the scope: the task's own deadline, and the
                    // task goes on.
                    assert_eq!(task::deadline(), Some(own));
                    scoped
                },
                rt.handle(),
            )
            .expect("spawn");
        let scoped = rt.block_on(handle).expect("the task itself ends normally");
        // The child's inherited deadline and the scope's are the same instant:
        // either the scope ends first (Err(Elapsed)) or the child's deadline
        // does and the scope sees its error.
        match scoped {
            Err(_elapsed) => {}
            Ok(child) => assert_deadline_exceeded(child, "the scope's child"),
        }
        wait_until(5, "the scope's child to be dropped", || {
            child_drops.load(SeqCst) == 1
        });
    });
}
