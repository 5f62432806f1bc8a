//! Tasks: spawning from inside a task and from outside threads, join handles
//! that return each task's own value, panics caught per task, `abort`,
//! detaching, task ids and names, `yield_now`, and the `Send`/`Sync` promises
//! of the public types.

mod common;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bulwark::runtime::{Handle, Runtime};
use bulwark::task::{self, JoinError, JoinHandle};
use common::{panic_message, runtime, wait_until, within, DropCounter};

/// Tasks spawned by each source in the 100_000-task test.
const PER_SOURCE: usize = 20_000;
/// Sources: one task inside the runtime and four outside threads.
const SOURCES: usize = 5;

/// The value a task returns: who spawned it and its index there.
fn tag(source: usize, i: usize) -> usize {
    source * 1_000_000 + i
}

#[test]
fn hundred_thousand_tasks_from_a_task_and_from_four_threads_return_their_own_values() {
    within(
        60,
        "100_000 tasks (from a task and from 4 threads) to complete",
        || {
            let rt = runtime(4);

            // Source 0: a task on the runtime spawning with `bulwark::spawn`.
            let from_inside = rt.spawn(async {
                let handles: Vec<JoinHandle<usize>> = (0..PER_SOURCE)
                    .map(|i| bulwark::spawn(async move { tag(0, i) }))
                    .collect();
                let mut done = 0;
                for (i, handle) in handles.into_iter().enumerate() {
                    let value = handle.await.expect("a task spawned from a task failed");
                    assert_eq!(value, tag(0, i), "task {i} spawned from a task");
                    done += 1;
                }
                done
            });

            // Sources 1..=4: plain threads, two with `Runtime::spawn` and two
            // with `Handle::spawn`, each awaiting its own handles off the runtime.
            let from_outside: usize = std::thread::scope(|s| {
                let rt = &rt;
                let threads: Vec<_> = (1..SOURCES)
                    .map(|source| {
                        let handle = rt.handle().clone();
                        s.spawn(move || {
                            let handles: Vec<JoinHandle<usize>> = (0..PER_SOURCE)
                                .map(|i| {
                                    let fut = async move { tag(source, i) };
                                    if source % 2 == 0 {
                                        rt.spawn(fut)
                                    } else {
                                        handle.spawn(fut)
                                    }
                                })
                                .collect();
                            futures::executor::block_on(async {
                                let mut done = 0;
                                for (i, handle) in handles.into_iter().enumerate() {
                                    let value = handle
                                        .await
                                        .expect("a task spawned from an outside thread failed");
                                    assert_eq!(
                                        value,
                                        tag(source, i),
                                        "task {i} of thread {source}"
                                    );
                                    done += 1;
                                }
                                done
                            })
                        })
                    })
                    .collect();
                threads
                    .into_iter()
                    .map(|t| t.join().expect("a spawning thread panicked"))
                    .sum()
            });

            let inside = rt.block_on(from_inside).expect("the spawning task failed");
            assert_eq!(inside, PER_SOURCE);
            assert_eq!(from_outside, PER_SOURCE * (SOURCES - 1));
            assert_eq!(inside + from_outside, 100_000);
        },
    );
}

#[test]
fn a_panicking_task_reports_its_panic_and_the_runtime_keeps_running() {
    within(30, "panicking tasks and 1_000 tasks after them", || {
        let rt = runtime(2);

        // Several panics, so that every worker has most likely caught one.
        let panicking: Vec<JoinHandle<()>> = (0..8)
            .map(|_| rt.spawn(async { panic!("task boom") }))
            .collect();
        for handle in panicking {
            let id = handle.id();
            let err: JoinError = rt
                .block_on(handle)
                .expect_err("a panicking task returned Ok");
            assert!(err.is_panic(), "is_panic() for {err}");
            assert!(!err.is_cancelled(), "is_cancelled() for a panic: {err}");
            assert_eq!(err.id(), id, "JoinError::id() is the task's id");
            let shown = err.to_string();
            assert!(
                shown.contains(&id.to_string()),
                "JoinError display {shown:?} does not name task {id}"
            );
            let payload = err.into_panic();
            let message = payload
                .downcast::<&'static str>()
                .expect("the payload is the &str given to panic!");
            assert_eq!(*message, "task boom");
        }

        // The runtime is still whole: 1_000 more tasks complete.
        let handles: Vec<JoinHandle<usize>> =
            (0..1_000).map(|i| rt.spawn(async move { i })).collect();
        rt.block_on(async {
            for (i, handle) in handles.into_iter().enumerate() {
                assert_eq!(handle.await.expect("a task after the panics failed"), i);
            }
        });

        // A named task's panic is shown with its id and its name.
        let named: JoinHandle<()> = task::Builder::new()
            .name("x-boom")
            .spawn_on(async { panic!("named boom") }, rt.handle())
            .expect("spawn a named task");
        let id = named.id();
        let err = rt
            .block_on(named)
            .expect_err("a panicking named task returned Ok");
        let shown = err.to_string();
        assert!(
            shown.contains(&id.to_string()),
            "{shown:?} does not name task {id}"
        );
        assert!(
            shown.contains("x-boom"),
            "{shown:?} does not contain the task name"
        );
        assert_eq!(panic_message(err.into_panic()), "named boom");
    });
}

#[test]
fn abort_drops_a_pending_future_once_and_the_handle_reports_cancelled() {
    within(30, "aborted tasks to resolve", || {
        let rt = runtime(2);

        // A task that has been polled and is waiting forever.
        let drops = Arc::new(AtomicUsize::new(0));
        let guard = DropCounter::new(&drops);
        let (started_tx, started_rx) = mpsc::channel();
        let handle = rt.spawn(async move {
            let _guard = guard;
            started_tx.send(()).expect("signal started");
            std::future::pending::<()>().await;
        });
        let id = handle.id();
        started_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the task was never polled");
        assert_eq!(drops.load(Ordering::SeqCst), 0, "dropped before abort");
        handle.abort();
        let err = rt
            .block_on(handle)
            .expect_err("an aborted pending task returned Ok");
        assert!(err.is_cancelled(), "is_cancelled() after abort: {err}");
        assert!(!err.is_panic(), "is_panic() after abort: {err}");
        assert_eq!(err.id(), id);
        assert!(
            err.to_string().contains(&id.to_string()),
            "{err} does not name task {id}"
        );
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "the future must be dropped exactly once, before the handle resolves"
        );
        let err = err
            .try_into_panic()
            .expect_err("a cancellation is not a panic");
        assert!(err.is_cancelled());

        // Aborted straight after spawn, perhaps before its first poll.
        let drops = Arc::new(AtomicUsize::new(0));
        let guard = DropCounter::new(&drops);
        let handle = rt.spawn(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        });
        handle.abort();
        let err = rt
            .block_on(handle)
            .expect_err("an aborted task returned Ok");
        assert!(err.is_cancelled(), "is_cancelled() after abort: {err}");
        assert_eq!(
            drops.load(Ordering::SeqCst),
            1,
            "drops of an aborted fresh task"
        );

        // Abort after completion keeps the output.
        let handle = rt.spawn(async { 42u32 });
        wait_until(20, "a trivial task to finish", || handle.is_finished());
        handle.abort();
        assert_eq!(
            rt.block_on(handle)
                .expect("abort after completion lost the output"),
            42
        );
    });
}

#[test]
fn join_handle_is_finished_id_and_detach() {
    within(30, "join handle checks", || {
        let rt = runtime(2);

        // is_finished: false while waiting, true after completion.
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let mut handle = rt.spawn(async move { rx.await.expect("sender dropped") + 1 });
        assert!(!handle.is_finished(), "finished before its input arrived");
        tx.send(1).expect("the task dropped its receiver");
        wait_until(20, "is_finished() to become true", || handle.is_finished());
        assert_eq!(rt.block_on(&mut handle).expect("task failed"), 2);
        assert!(
            handle.is_finished(),
            "is_finished() after the output was taken"
        );

        // id(): the same as task::id() inside; distinct across tasks.
        assert!(task::try_id().is_none(), "try_id() outside any task");
        let handles: Vec<JoinHandle<(task::Id, Option<task::Id>)>> = (0..100)
            .map(|_| rt.spawn(async { (task::id(), task::try_id()) }))
            .collect();
        let mut seen = HashSet::new();
        for handle in handles {
            let outside = handle.id();
            let (inside, tried) = rt.block_on(handle).expect("task failed");
            assert_eq!(inside, outside, "task::id() inside vs JoinHandle::id()");
            assert_eq!(tried, Some(outside), "task::try_id() inside a task");
            assert!(seen.insert(outside), "task id {outside} given twice");
        }

        // Dropping the handle detaches: the task still runs to the end.
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<u32>();
        let (done_tx, done_rx) = mpsc::channel();
        let handle = rt.spawn(async move {
            let value = go_rx.await.expect("sender dropped");
            done_tx.send(value * 2).expect("the test stopped listening");
        });
        drop(handle);
        go_tx
            .send(21)
            .expect("the detached task was dropped with its handle");
        let value = done_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the detached task did not run to completion");
        assert_eq!(value, 42);
    });
}

#[test]
fn builder_names_tasks() {
    within(30, "named tasks", || {
        let rt = runtime(2);

        // Builder::spawn in the runtime's context (entered, and inside a task).
        let handle = {
            let _entered = rt.enter();
            task::Builder::new()
                .name("x-worker")
                .spawn(async { 5u32 })
                .expect("spawn a named task")
        };
        assert_eq!(rt.block_on(handle).expect("named task failed"), 5);
        let nested = rt.spawn(async {
            task::Builder::new()
                .name("x-inner")
                .spawn(async { 6u32 })
                .expect("spawn a named task from a task")
                .await
        });
        assert_eq!(
            rt.block_on(nested)
                .expect("outer task failed")
                .expect("inner failed"),
            6
        );

        // The name shows up when the task panics.
        let handle: JoinHandle<()> = {
            let _entered = rt.enter();
            task::Builder::new()
                .name("x")
                .spawn(async { panic!("named task boom") })
                .expect("spawn a named task")
        };
        let id = handle.id();
        let err = rt
            .block_on(handle)
            .expect_err("a panicking named task returned Ok");
        assert!(err.is_panic());
        let shown = err.to_string();
        assert!(
            shown.contains("\"x\""),
            "{shown:?} does not contain the name \"x\""
        );
        assert!(
            shown.contains(&id.to_string()),
            "{shown:?} does not name task {id}"
        );
    });
}

/// Counts how often the wrapped future is polled.
struct CountPolls<F> {
    inner: Pin<Box<F>>,
    polls: Arc<AtomicUsize>,
}

impl<F: Future> Future for CountPolls<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        self.inner.as_mut().poll(cx)
    }
}

#[test]
fn yield_now_gives_up_the_poll_each_time() {
    within(30, "a task yielding 1_000 times", || {
        let rt = runtime(2);
        let polls = Arc::new(AtomicUsize::new(0));
        let fut = CountPolls {
            inner: Box::pin(async {
                for _ in 0..1_000 {
                    task::yield_now().await;
                }
                1_000u32
            }),
            polls: Arc::clone(&polls),
        };
        assert_eq!(
            rt.block_on(rt.spawn(fut)).expect("yielding task failed"),
            1_000
        );
        let polls = polls.load(Ordering::SeqCst);
        assert!(
            polls > 1_000,
            "1_000 yields took {polls} polls; each yield must return Pending once"
        );
    });
}

#[test]
fn yield_now_lets_another_task_run_on_a_single_worker() {
    within(30, "two yielding tasks on one worker", || {
        let rt = runtime(1);
        let log = Arc::new(Mutex::new(Vec::new()));
        let counter = Arc::new(AtomicUsize::new(0));
        // Both tasks are spawned from a task on the only worker, so both are
        // queued before either runs.
        let (log2, counter2) = (Arc::clone(&log), Arc::clone(&counter));
        let outer = rt.spawn(async move {
            let handles: Vec<JoinHandle<usize>> = ['a', 'b']
                .into_iter()
                .map(|me| {
                    let (log, counter) = (Arc::clone(&log2), Arc::clone(&counter2));
                    bulwark::spawn(async move {
                        // How often the other task moved the counter between
                        // two of this task's steps.
                        let mut other_ran = 0;
                        for _ in 0..100 {
                            let before = counter.fetch_add(1, Ordering::SeqCst);
                            log.lock().unwrap().push(me);
                            task::yield_now().await;
                            if counter.load(Ordering::SeqCst) > before + 1 {
                                other_ran += 1;
                            }
                        }
                        other_ran
                    })
                })
                .collect();
            let mut seen = Vec::new();
            for handle in handles {
                seen.push(handle.await.expect("a yielding task failed"));
            }
            seen
        });
        let other_ran = rt.block_on(outer).expect("outer task failed");
        let log = log.lock().unwrap();
        assert_eq!(log.len(), 200);
        assert_eq!(counter.load(Ordering::SeqCst), 200);
        let switches = log.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(
            switches >= 50,
            "the two tasks did not interleave on one worker: {switches} switches in {:?}",
            log.iter().collect::<String>()
        );
        assert!(
            other_ran.iter().all(|&n| n >= 50),
            "each task should see the other run across its yields: {other_ran:?}"
        );
    });
}

fn assert_send_sync<T: Send + Sync>() {}
fn assert_id_traits<
    T: Copy + Eq + std::hash::Hash + std::fmt::Display + std::fmt::Debug + Send + Sync,
>() {
}
fn assert_future_unpin<T: Future + Unpin>() {}
fn assert_error<T: std::error::Error + Send + Sync + 'static>() {}

#[test]
fn public_types_are_send_and_sync() {
    assert_send_sync::<Runtime>();
    assert_send_sync::<Handle>();
    assert_send_sync::<JoinHandle<()>>();
    assert_send_sync::<JoinError>();
    assert_id_traits::<task::Id>();
    assert_future_unpin::<JoinHandle<()>>();
    assert_error::<JoinError>();
}

/// A future that records where it was first polled (pinned) and, when
/// dropped, whether it is still there: a pinned future must be dropped in
/// place, since its state may point into itself.
struct PinnedHere {
    polled_at: usize,
    moved: Arc<AtomicBool>,
    _pin: std::marker::PhantomPinned,
}

impl Future for PinnedHere {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: only a plain field is written; nothing is moved out.
        let this = unsafe { self.get_unchecked_mut() };
        this.polled_at = this as *const PinnedHere as usize;
        Poll::Pending
    }
}

impl Drop for PinnedHere {
    fn drop(&mut self) {
        if self.polled_at != 0 && self.polled_at != self as *const PinnedHere as usize {
            self.moved.store(true, SeqCst);
        }
    }
}

#[test]
fn a_pinned_future_is_dropped_where_it_was_polled() {
    // Defect: cancelling or finishing a task moved its future out of the
    // task before dropping it, so a self-referential async block's
    // destructor followed pointers into memory already overwritten.
    within(20, "the pinned futures to be dropped", || {
        let rt = runtime(2);
        let moved = Arc::new(AtomicBool::new(false));
        let (started_tx, started_rx) = mpsc::channel();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (moved, started) = (moved.clone(), started_tx.clone());
                rt.spawn(async move {
                    let here = PinnedHere {
                        polled_at: 0,
                        moved,
                        _pin: std::marker::PhantomPinned,
                    };
                    started.send(()).unwrap();
                    here.await
                })
            })
            .collect();
        for _ in 0..8 {
            started_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("a task to start");
        }
        // Polled once each by now or soon: give the polls a moment.
        std::thread::sleep(Duration::from_millis(50));
        for h in &handles {
            h.abort();
        }
        for h in handles {
            assert!(rt.block_on(h).unwrap_err().is_cancelled());
        }
        assert!(
            !moved.load(SeqCst),
            "a pinned future was moved before it was dropped"
        );
    });
}
