//! Reading a runtime from outside it: a thread that is not a runtime thread
//! takes a snapshot and lists the live tasks (id, name, spawn site, state,
//! age) while every worker is stuck in a poll, and sees in the worker slots
//! which task each worker is polling.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use bulwark::metrics::{TaskState, WorkerState};
use bulwark::task;
use common::{builder, wait_until, within};

#[test]
fn tasks_and_counts_are_readable_while_every_worker_is_stuck() {
    within(
        30,
        "the runtime to be read while its workers are stuck",
        || {
            let rt = builder(2).build().unwrap();
            let handle = rt.handle().clone();
            // Waits on a channel whose sender this test keeps: idle, not lost
            // (a bare `pending()` keeps no waker, and would be listed lost).
            let (_keep, wait) = tokio::sync::oneshot::channel::<()>();
            let idle = task::Builder::new()
                .name("idler")
                .spawn_on(
                    async move {
                        let _ = wait.await;
                    },
                    &handle,
                )
                .unwrap();
            wait_until(10, "the idle task to be polled once", || {
                rt.metrics().polls >= 1
            });
            // Both workers block in a poll until released.
            let (release_tx, release_rx) = mpsc::channel::<()>();
            let release_rx = std::sync::Arc::new(std::sync::Mutex::new(release_rx));
            let (started_tx, started_rx) = mpsc::channel::<()>();
            let stuck: Vec<_> = (0..2)
                .map(|_| {
                    let (rx, started) = (release_rx.clone(), started_tx.clone());
                    task::Builder::new()
                        .name("stuck")
                        .spawn_on(
                            async move {
                                started.send(()).unwrap();
                                let _ = rx.lock().unwrap().recv_timeout(Duration::from_secs(20));
                            },
                            &handle,
                        )
                        .unwrap()
                })
                .collect();
            started_rx.recv_timeout(Duration::from_secs(10)).unwrap();
            // The second blocker may wait for the first to release the receiver
            // lock: both are "running" only once both workers are in a poll.
            wait_until(10, "both workers to be inside a poll", || {
                rt.handle()
                    .tasks()
                    .iter()
                    .filter(|t| t.state == TaskState::Running)
                    .count()
                    >= 1
            });

            // Read from this thread: nothing here needs a worker.
            let tasks = handle.tasks();
            let idler = tasks
                .iter()
                .find(|t| t.name.as_deref() == Some("idler"))
                .expect("the idle task is listed");
            assert_eq!(idler.id, idle.id().as_u64());
            assert_eq!(idler.state, TaskState::Idle, "{idler:?}");
            assert!(idler.location.contains("inspection.rs"), "{idler:?}");
            assert!(idler.age > Duration::ZERO, "{idler:?}");
            let running: Vec<_> = tasks
                .iter()
                .filter(|t| t.name.as_deref() == Some("stuck"))
                .collect();
            assert_eq!(running.len(), 2, "{tasks:?}");
            assert!(running.iter().any(|t| t.state == TaskState::Running));

            let snap = handle.books().snapshot().expect("the runtime lives");
            assert_eq!(snap.workers, 2);
            let polling: Vec<_> = snap
                .worker_states
                .iter()
                .filter_map(|w| match w.state {
                    WorkerState::Polling { task_id, .. } => task_id,
                    _ => None,
                })
                .collect();
            assert!(
                polling.iter().any(|id| running.iter().any(|t| t.id == *id)),
                "a worker slot names a stuck task: {:?} vs {running:?}",
                snap.worker_states
            );

            drop(release_tx);
            for h in stuck {
                rt.block_on(h).unwrap();
            }
            idle.abort();
            assert!(rt.block_on(idle).unwrap_err().is_cancelled());
            let books = handle.books().clone();
            drop(rt);
            drop(handle);
            assert!(
                books.snapshot().is_none(),
                "the books do not keep a dropped runtime alive"
            );
        },
    );
}

#[test]
fn queue_depths_and_remote_schedules_are_read_while_the_worker_is_stuck() {
    within(30, "queue depths while the only worker is stuck", || {
        let mut b = builder(1);
        // No replacement: the stuck worker's queue stays where it is.
        b.watchdog(bulwark::runtime::Watchdog::off());
        let rt = b.build().unwrap();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (stuck_tx, stuck_rx) = mpsc::channel::<()>();
        let before = rt.metrics().remote_schedules;
        let blocker = rt.spawn(async move {
            stuck_tx.send(()).unwrap();
            // Holds the only worker until the test lets go.
            let _ = release_rx.recv_timeout(Duration::from_secs(20));
        });
        stuck_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the blocker to start");
        let queued: Vec<_> = (0..10).map(|_| rt.spawn(async {})).collect();
        let s = rt.metrics();
        assert!(
            s.remote_schedules >= before + 11,
            "11 spawns from outside the workers: {} -> {}",
            before,
            s.remote_schedules
        );
        assert_eq!(s.global_queue_depth, 10, "{s:?}");
        assert_eq!(s.worker_states[0].queue_depth, 0);
        release_tx.send(()).unwrap();
        rt.block_on(blocker).unwrap();
        for h in queued {
            rt.block_on(h).unwrap();
        }
        assert_eq!(rt.metrics().global_queue_depth, 0);
    });
}

/// A task whose handle has resolved is not listed: it stays in the registry
/// until its last reference goes, a moment later, and was listed as idle
/// in that moment.
#[test]
fn a_finished_task_is_not_listed_once_its_handle_resolves() {
    within(60, "finished tasks left out of the task list", || {
        let rt = builder(2).build().expect("runtime");
        for i in 0..500u32 {
            let h = rt.spawn(async move { i });
            let id = h.id();
            assert_eq!(rt.block_on(h).expect("the task"), i);
            let listed = rt.handle().tasks();
            assert!(
                listed.iter().all(|t| t.id != id.as_u64()),
                "round {i}: task {id} listed after its handle resolved: {listed:?}"
            );
        }
    });
}
