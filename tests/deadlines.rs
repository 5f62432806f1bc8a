//! Per-task deadlines: an idle task past its deadline is dropped within a
//! timer tick (never before); a running one when its poll returns, with
//! its destructors run before its handle resolves; children inherit their
//! parent's deadline unless detached or given an earlier one; the runtime's
//! `default_deadline` applies to plain spawns; and deadline timers leave the
//! wheel when their tasks finish first.
//!
//! Where a test is about when a deadline passes, it runs on a paused clock
//! (`Builder::start_paused`): the clock moves only when nothing else in the
//! runtime can run, so a task is always polled before its deadline, however
//! slow the machine, and a check one timer tick before or after a deadline
//! is exact. Those deadlines are seconds to an hour of virtual time, which
//! costs nothing, rather than milliseconds: a few of the runtime's deadline
//! checks (a queued task's, at dequeue) still read the real clock, which must
//! not reach them. The tests left on real time say what they assume next to
//! it.

mod common;

use bulwark::time::{Duration, Instant};
use std::future::{pending, Future};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};

use bulwark::runtime::{Runtime, Watchdog};
use bulwark::task::{self, JoinError, JoinHandle};
use common::{builder, runtime, wait_until, within, DropCounter, LATE};
use tokio::sync::{oneshot, watch};

/// The timer wheel's resolution: on a paused clock, a check one tick
/// before a deadline and one after it tell the two sides apart.
const TICK: Duration = Duration::from_millis(1);

/// A runtime with `workers` workers whose clock starts paused, and no
/// watchdog: a destructor that takes a while here (`SlowDrop`) must keep its
/// worker, not be handed a replacement thread, which the paused clock would
/// count as idle and jump past.
fn paused(workers: usize) -> Runtime {
    builder(workers)
        .start_paused(true)
        .watchdog(Watchdog::off())
        .build()
        .expect("build a runtime on a paused clock")
}

/// Runs `test` as a task on `rt` and returns its output; a panic in it
/// fails the test with its own message.
///
/// On a paused clock, a task is the place to look from: the clock jumps
/// only once every worker is parked, and a task woken by a timer runs
/// before it can jump again.
fn on_a_task<F>(rt: &Runtime, test: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    output(rt.block_on(rt.spawn(test)))
}

/// The output of a test's own task; a panic in it fails the test with its
/// own message.
fn output<T>(result: Result<T, JoinError>) -> T {
    match result {
        Ok(out) => out,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("the test's own task ended without its output: {e}"),
    }
}

/// On a paused clock, from a task: awaits `join`, whose deadline is `after`
/// from now, and checks that its task is still there one tick before the
/// deadline (where `just_before` may check more) and has ended by one tick
/// after it. Returns what the handle said.
async fn ends_at_its_deadline<T>(
    join: JoinHandle<T>,
    after: Duration,
    what: &str,
    just_before: impl FnOnce(),
) -> Result<T, JoinError> {
    // Made now, first polled once `join` has resolved: then it says whether
    // the clock has reached a tick past the deadline, without being a timer
    // the clock could jump to meanwhile.
    let mut too_late = bulwark::time::sleep(after + TICK);
    bulwark::time::sleep(after - TICK).await;
    assert!(
        !join.is_finished(),
        "{what} ended before its deadline ({after:?})"
    );
    just_before();
    let result = join.await;
    assert!(
        futures::poll!(&mut too_late).is_pending(),
        "{what} ended a tick or more after its deadline ({after:?})"
    );
    result
}

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
    within(20, "an idle task's deadline", || {
        // Paused: the task is polled before its deadline however slow the
        // machine, and its end is watched a tick either side of it.
        const DEADLINE: Duration = Duration::from_secs(50);
        let rt = paused(2);
        let drops = Arc::new(AtomicUsize::new(0));
        let polls = Arc::new(AtomicUsize::new(0));
        let guard = SlowDrop(Arc::clone(&drops));
        let counted = Arc::clone(&polls);
        let (seen_drops, seen_polls) = (Arc::clone(&drops), Arc::clone(&polls));

        let result = on_a_task(&rt, async move {
            let join = task::Builder::new()
                .name("idle")
                .timeout(DEADLINE)
                .spawn(async move {
                    let _guard = guard;
                    counted.fetch_add(1, SeqCst);
                    pending::<()>().await
                })
                .expect("spawn a task with a deadline");
            let before = Arc::clone(&seen_drops);
            let result = ends_at_its_deadline(join, DEADLINE, "an idle task", move || {
                assert_eq!(seen_polls.load(SeqCst), 1, "the idle task's first poll");
                assert_eq!(before.load(SeqCst), 0, "dropped before its deadline");
            })
            .await;
            assert_eq!(
                seen_drops.load(SeqCst),
                1,
                "the handle resolved before the expired future was dropped"
            );
            result
        });
        let err = result.as_ref().expect_err("a pending task completed");
        let shown = err.to_string();
        assert!(
            shown.contains("idle"),
            "JoinError {shown:?} does not name the task"
        );
        assert_deadline_exceeded(result, "an idle task with a deadline");
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

/// What a child task saw of itself: its deadline as `task::deadline()`
/// gives it (`I`, its instant type).
#[derive(Debug)]
struct Seen<I> {
    who: &'static str,
    deadline: Option<I>,
}

#[test]
fn children_inherit_the_parent_deadline_unless_detached_or_given_an_earlier_one() {
    within(30, "a parent's deadline and its children's", || {
        // Paused: every child reports its deadline in its first poll, which
        // comes before any deadline passes however slow the machine, and
        // each end is watched a tick either side of its deadline.
        const PARENT: Duration = Duration::from_secs(300);
        const EARLY: Duration = Duration::from_secs(30);
        let rt = paused(2);
        let inherit_drops = Arc::new(AtomicUsize::new(0));
        let detached_ran_late = Arc::new(AtomicBool::new(false));
        let inherit_guard = DropCounter::new(&inherit_drops);
        let ran_late = Arc::clone(&detached_ran_late);
        let seen_drops = Arc::clone(&inherit_drops);

        on_a_task(&rt, async move {
            let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<Seen<_>>();
            let (go_tx, go_rx) = oneshot::channel::<()>();
            let (handles_tx, handles_rx) = oneshot::channel();
            let parent = task::Builder::new()
                .timeout(PARENT)
                .spawn(async move {
                    let own = task::deadline();
                    let report =
                        |who: &'static str, tx: &tokio::sync::mpsc::UnboundedSender<Seen<_>>| {
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
                            ran_late.store(true, SeqCst);
                            "detached done"
                        })
                        .unwrap();
                    let tx = seen_tx.clone();
                    let early = task::Builder::new()
                        .timeout(EARLY)
                        .spawn(async move {
                            report("early", &tx);
                            pending::<()>().await
                        })
                        .unwrap();
                    let tx = seen_tx.clone();
                    let late = task::Builder::new()
                        .timeout(Duration::from_secs(3600))
                        .spawn(async move {
                            report("late", &tx);
                            pending::<()>().await
                        })
                        .unwrap();
                    let _ = handles_tx.send((own, inherit, detached, early, late));
                    pending::<()>().await
                })
                .expect("spawn the parent");
            // Set at the parent's spawn, as its deadline and its children's
            // were (the clock cannot move before they are all polled); each
            // is first polled (and so set) where it is awaited.
            let early_before = bulwark::time::sleep(EARLY - TICK);
            let mut early_after = bulwark::time::sleep(EARLY + TICK);
            let parent_before = bulwark::time::sleep(PARENT - TICK);
            let mut parent_after = bulwark::time::sleep(PARENT + TICK);

            let (own, inherit, detached, early, late) = handles_rx
                .await
                .expect("the parent ended before sending its children");
            let parent_deadline =
                own.expect("task::deadline() inside a task with a timeout is None");
            let mut seen = std::collections::HashMap::new();
            for _ in 0..4 {
                let s = seen_rx.recv().await.expect("the children's reports");
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
            // Spawned at the parent's instant: its own timeout from there.
            assert_eq!(
                seen["early"],
                Some(parent_deadline - (PARENT - EARLY)),
                "the early child's deadline is not its own earlier one"
            );

            // The early child expires on its own deadline, well before the
            // parent.
            early_before.await;
            assert!(
                !early.is_finished(),
                "the early child expired before its deadline"
            );
            let early = early.await;
            assert!(
                futures::poll!(&mut early_after).is_pending(),
                "the early child expired a tick or more after its deadline"
            );
            assert_deadline_exceeded(early, "the child with an earlier deadline");
            assert!(
                !parent.is_finished(),
                "the parent expired with the early child"
            );

            // The parent, and with it the inheriting children, at its
            // deadline.
            parent_before.await;
            assert!(!parent.is_finished(), "the parent expired early");
            assert!(!inherit.is_finished(), "the inheriting child expired early");
            assert!(
                !late.is_finished(),
                "the child with a later own deadline expired early"
            );
            assert_deadline_exceeded(parent.await, "the parent");
            assert_deadline_exceeded(inherit.await, "the inheriting child");
            assert_deadline_exceeded(late.await, "the child with a later own deadline");
            assert!(
                futures::poll!(&mut parent_after).is_pending(),
                "the parent's family expired a tick or more after its deadline"
            );
            assert_eq!(
                seen_drops.load(SeqCst),
                1,
                "the inheriting child's future was not dropped"
            );

            // The detached child lives on past the parent's deadline.
            assert!(
                !detached.is_finished(),
                "the detached child ended with its parent"
            );
            go_tx.send(()).expect("the detached child is gone");
            let done = detached
                .await
                .expect("the detached child failed after its parent's deadline");
            assert_eq!(done, "detached done");
        });
        assert!(detached_ran_late.load(SeqCst));

        let m = rt.metrics();
        assert_eq!(
            m.tasks_deadline_exceeded, 4,
            "metrics: parent, inherit, early, late"
        );
        assert_eq!(
            m.tasks_completed, 2,
            "metrics: the detached child and the test's own task"
        );
        assert_eq!(m.tasks_live, 0, "metrics: tasks_live");
        assert_eq!(m.timers_pending, 0, "metrics: timers left");
    });
}

#[test]
fn the_runtime_default_deadline_applies_to_plain_spawns() {
    within(20, "tasks under a default deadline", || {
        // Paused: each task reports its deadline in its first poll, which
        // comes before any deadline passes however slow the machine.
        const DEFAULT: Duration = Duration::from_secs(80);
        const LONG: Duration = Duration::from_secs(3600);
        let rt = builder(2)
            .default_deadline(Some(DEFAULT))
            .start_paused(true)
            .build()
            .expect("build the runtime");

        // An explicit timeout overrides the default. Spawned first, it ends
        // without waiting and so leaves no timer: the paused clock has
        // nothing to jump to, and the plain spawn below is made at the same
        // instant.
        let (long_tx, long_rx) = oneshot::channel();
        let long = task::Builder::new()
            .timeout(LONG)
            .spawn_on(
                async move {
                    let _ = long_tx.send(task::deadline());
                    "long done"
                },
                rt.handle(),
            )
            .unwrap();
        assert_eq!(
            rt.block_on(long).expect("the long task failed"),
            "long done"
        );
        let long_deadline = rt
            .block_on(long_rx)
            .expect("the long task did not report")
            .expect("the long task has no deadline");

        // A plain spawn from outside any task.
        let drops = Arc::new(AtomicUsize::new(0));
        let guard = DropCounter::new(&drops);
        let (tx, rx) = oneshot::channel();
        let plain = rt.spawn(async move {
            let _guard = guard;
            let _ = tx.send(task::deadline());
            pending::<()>().await
        });
        let deadline = rt
            .block_on(rx)
            .expect("the plain task did not report")
            .expect("a plain spawn has no deadline under default_deadline");
        assert_eq!(
            long_deadline - deadline,
            LONG - DEFAULT,
            "the default deadline is not {DEFAULT:?} after the spawn"
        );

        // A spawn from block_on gets the default too, and ends at it: watched
        // from a task spawned at the same instant (which lifts its own
        // default deadline).
        let (inner_deadline, inner) = rt.block_on(async {
            let (tx, rx) = oneshot::channel();
            let join = bulwark::spawn(async move {
                let _ = tx.send(task::deadline());
                pending::<()>().await
            });
            let watch = bulwark::spawn(async move {
                task::lift_deadline();
                ends_at_its_deadline(join, DEFAULT, "a spawn from block_on", || {}).await
            });
            (rx.await.expect("the inner task did not report"), watch)
        });
        let inner_deadline = inner_deadline.expect("a spawn from block_on has no deadline");
        assert!(
            inner_deadline >= deadline,
            "the inner deadline is early: made after the plain spawn, with the same default"
        );
        let inner = output(rt.block_on(inner));
        assert_deadline_exceeded(inner, "a spawn from block_on");

        assert_deadline_exceeded(rt.block_on(plain), "a plain spawn under default_deadline");
        assert_eq!(drops.load(SeqCst), 1, "the expired future was not dropped");
        assert_eq!(rt.metrics().timers_pending, 0, "metrics: timers left");
    });
}

/// What became of a task that blocked its worker past its own deadline.
struct Overrun {
    rt: Runtime,
    result: Result<&'static str, JoinError>,
    /// Drops of its future counted when its handle resolved.
    drops_at_resolve: usize,
    polls: usize,
    /// It was polled again after its deadline and ran on.
    resumed: bool,
    /// When its poll got past the block, if it did before the handle
    /// resolved (real time).
    blocked_until: Option<std::time::Instant>,
    resolved_at: std::time::Instant,
}

/// Spawns a task with `timeout` whose first poll blocks its worker until
/// past the deadline, then yields; waits for its handle.
fn overrun(timeout: Duration) -> Overrun {
    let rt = runtime(2);
    let drops = Arc::new(AtomicUsize::new(0));
    let polls = Arc::new(AtomicUsize::new(0));
    let resumed = Arc::new(AtomicBool::new(false));
    let blocked_until = Arc::new(Mutex::new(None));
    let guard = SlowDrop(Arc::clone(&drops));
    let (counted, after, block_end) = (
        Arc::clone(&polls),
        Arc::clone(&resumed),
        Arc::clone(&blocked_until),
    );
    let join = task::Builder::new()
        .timeout(timeout)
        .spawn_on(
            async move {
                let _guard = guard;
                counted.fetch_add(1, SeqCst);
                // Blocks the worker through the deadline (the task was
                // spawned before this poll began), then yields.
                std::thread::sleep(timeout + Duration::from_millis(20));
                *block_end.lock().unwrap() = Some(std::time::Instant::now());
                task::yield_now().await;
                after.store(true, SeqCst);
                "ran on past its deadline"
            },
            rt.handle(),
        )
        .expect("spawn an overrunning task");
    let result = rt.block_on(join);
    let resolved_at = std::time::Instant::now();
    let drops_at_resolve = drops.load(SeqCst);
    let blocked_until = *blocked_until.lock().unwrap();
    Overrun {
        rt,
        result,
        drops_at_resolve,
        polls: polls.load(SeqCst),
        resumed: resumed.load(SeqCst),
        blocked_until,
        resolved_at,
    }
}

#[test]
fn a_task_running_past_its_deadline_is_dropped_when_its_poll_returns() {
    within(60, "a task that overruns its deadline in one poll", || {
        // Real time: the runtime reads the real clock as a poll that ran
        // past its deadline returns, which is what this tests (on a paused
        // clock that read does not see `time::advance` yet).
        //
        // A run says something only if the task's first poll begins before
        // its deadline. On a machine so slow or busy that it does not, the
        // task is dropped unpolled (`tasks_queued_past_their_deadline...`
        // covers that), and the run is made again with a deadline four
        // times longer.
        let mut timeout = Duration::from_millis(100);
        let run = loop {
            let run = overrun(timeout);
            if run.polls > 0 {
                break run;
            }
            assert_deadline_exceeded(run.result, "a task dropped unpolled");
            assert!(
                timeout < Duration::from_secs(5),
                "the task was never polled before its deadline, up to {timeout:?}"
            );
            timeout *= 4;
        };
        assert_eq!(
            run.drops_at_resolve, 1,
            "the handle resolved before the overrunning future was dropped"
        );
        assert_deadline_exceeded(run.result, "a task running past its deadline");
        let blocked_until = run
            .blocked_until
            .expect("the handle resolved while the task's poll was still blocked");
        let after = run.resolved_at.saturating_duration_since(blocked_until);
        assert!(
            after < LATE,
            "resolved {after:?} after the overrunning poll returned"
        );
        assert_eq!(run.polls, 1, "polled more than once");
        assert!(!run.resumed, "polled again after its deadline");

        // The worker it blocked is fine: more tasks run.
        let sum: usize = run.rt.block_on(async {
            let handles: Vec<_> = (0..100).map(|i| bulwark::spawn(async move { i })).collect();
            let mut sum = 0;
            for h in handles {
                sum += h.await.expect("a task after the overrun failed");
            }
            sum
        });
        assert_eq!(sum, 4_950);
        let m = run.rt.metrics();
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
        // Paused: the parent is in its first poll before its deadline, and
        // the test moves the clock past the deadline while it is there.
        const PARENT: Duration = Duration::from_secs(300);
        let rt = builder(2)
            .max_tasks(2)
            .admission(bulwark::runtime::Admission::Wait)
            .start_paused(true)
            .build()
            .unwrap();
        let (hold_tx, hold_rx) = watch::channel(false);
        // One task holds a permit until the end of the test.
        let mut hold = hold_rx.clone();
        let holder = rt.spawn(async move {
            let _ = hold.wait_for(|go| *go).await;
        });
        let (polling_tx, polling_rx) = mpsc::channel();
        let (past_tx, past_rx) = mpsc::channel::<()>();
        let parent = task::Builder::new()
            .timeout(PARENT)
            .spawn_on(
                async move {
                    polling_tx.send(()).unwrap();
                    // Holds the worker, without yielding, until the clock
                    // is past this task's deadline; then the child is
                    // spawned with a deadline already gone and at a full
                    // ceiling (holder + parent).
                    past_rx
                        .recv_timeout(Duration::from_secs(20))
                        .expect("the test to move the clock past the deadline");
                    let child = task::spawn(async { pending::<()>().await });
                    (child,)
                },
                rt.handle(),
            )
            .unwrap();
        polling_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the parent's first poll");
        rt.block_on(async { bulwark::time::advance(PARENT + Duration::from_secs(1)).await });
        past_tx.send(()).unwrap();
        let child = match rt.block_on(parent) {
            Ok((child,)) => child,
            Err(e) => panic!("the parent ended without its output: {e}"),
        };
        let started = std::time::Instant::now();
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
    //
    // Real time: the coarse clock is the real one. The worker is held until
    // every queued task is past its deadline, however long the spawns take,
    // and with the watchdog off no replacement takes its queue meanwhile.
    within(30, "the queued tasks to end at their deadlines", || {
        const TASKS: usize = 500;
        const TIMEOUT: Duration = Duration::from_millis(20);
        let rt = builder(1).watchdog(Watchdog::off()).build().unwrap();
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let blocker = rt.spawn(async move {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv_timeout(Duration::from_secs(20));
        });
        started_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the blocker to start");
        let polled = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..TASKS)
            .map(|_| {
                let polled = polled.clone();
                task::Builder::new()
                    .timeout(TIMEOUT)
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
        // Past the last one's deadline (sleeping longer only leaves them
        // further past it).
        std::thread::sleep(TIMEOUT * 2);
        release_tx.send(()).unwrap();
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
        // Paused: the task wakes from its first sleep, and polls for the
        // first time in the second part, before its deadline however slow
        // the machine.
        let rt = paused(2);
        let handle = task::Builder::new()
            .timeout(Duration::from_secs(100))
            .spawn_on(
                async {
                    // Waits first, so the deadline timer is set, then lifts.
                    bulwark::time::sleep(Duration::from_secs(20)).await;
                    let lifted = task::lift_deadline();
                    assert!(lifted.is_some(), "the task had a deadline to lift");
                    assert_eq!(task::deadline(), None);
                    bulwark::time::sleep(Duration::from_secs(300)).await;
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
        let rt = builder(2)
            .default_deadline(Some(Duration::from_secs(50)))
            .start_paused(true)
            .build()
            .expect("runtime");
        let handle = rt.spawn(async {
            task::lift_deadline();
            bulwark::time::sleep(Duration::from_secs(200)).await;
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
