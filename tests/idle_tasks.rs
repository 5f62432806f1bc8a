//! Tasks that wait a long time without being woken are listed, with how
//! long, once `Builder::idle_report` is on: what a hung dependency or a
//! deadlock looks like from outside. Off by default, and then nothing is
//! listed.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bulwark::metrics::TaskState;
use bulwark::runtime::{Handle, LostTask, Runtime};
use bulwark::task;
use common::{builder, wait_until, within};

const THRESHOLD: Duration = Duration::from_millis(500);

/// A task named "holder" takes a `tokio::sync::Mutex` and waits with it
/// until the test lets go (through the sender returned); a task named
/// "waiter" then waits for the lock. Returns once the waiter is waiting,
/// with both handles.
///
/// The holder keeps the lock until told, not for a fixed time: the idle
/// report needs real time to pass (the threshold), and a test that checks
/// the listing before a timer lets go would need the machine to be fast.
fn holder_and_waiter(
    rt: &Runtime,
) -> (
    task::JoinHandle<()>,
    task::JoinHandle<()>,
    tokio::sync::oneshot::Sender<()>,
) {
    let lock = Arc::new(tokio::sync::Mutex::new(()));
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
    let held = lock.clone();
    let holder = task::Builder::new()
        .name("holder")
        .spawn_on(
            async move {
                let _guard = held.lock().await;
                locked_tx.send(()).unwrap();
                let _ = release_rx.await;
            },
            rt.handle(),
        )
        .unwrap();
    locked_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("waited 10 s for the holder to take the lock");
    let waiter = task::Builder::new()
        .name("waiter")
        .spawn_on(
            async move {
                drop(lock.lock().await);
            },
            rt.handle(),
        )
        .unwrap();
    (holder, waiter, release_tx)
}

fn named(handle: &Handle, name: &str) -> Option<bulwark::metrics::TaskInfo> {
    handle
        .idle_tasks()
        .into_iter()
        .find(|t| t.name.as_deref() == Some(name))
}

#[test]
fn a_task_blocked_on_a_mutex_held_by_an_idle_task_is_listed() {
    within(30, "the blocked task to be listed as idle", || {
        let rt = builder(2)
            .idle_report(THRESHOLD)
            .build()
            .expect("build the runtime");
        let (holder, waiter, release) = holder_and_waiter(&rt);
        let waiter_id = waiter.id().as_u64();

        wait_until(10, "the waiter to be listed as idle", || {
            named(rt.handle(), "waiter").is_some()
        });
        let listed = rt.handle().idle_tasks();
        let w = listed
            .iter()
            .find(|t| t.id == waiter_id)
            .expect("the waiter is listed");
        assert_eq!(w.state, TaskState::Idle, "{w:?}");
        assert!(w.location.contains("idle_tasks.rs"), "{w:?}");
        let idle_for = w.idle_for.expect("an idle task's age");
        assert!(
            idle_for > THRESHOLD && idle_for < Duration::from_secs(20),
            "{w:?}"
        );
        // The holder, waiting with the lock, is idle too (what the blocked
        // task waits for shows up next to it), and the list is longest idle
        // first.
        wait_until(10, "the holder to be listed as idle", || {
            named(rt.handle(), "holder").is_some()
        });
        assert!(
            listed.windows(2).all(|p| p[0].idle_for >= p[1].idle_for),
            "{listed:?}"
        );
        // The full listing gives the idle age too.
        let all = rt.handle().tasks();
        let w = all.iter().find(|t| t.id == waiter_id).unwrap();
        assert!(w.idle_for.is_some_and(|d| d > THRESHOLD), "{w:?}");

        // The holder is let go, and both finish: nothing is left.
        release.send(()).unwrap();
        rt.block_on(async {
            common::bounded(10, "the holder", holder).await.unwrap();
            common::bounded(10, "the waiter", waiter).await.unwrap();
        });
        // A task leaves the registry just after its handle resolves (until
        // then the list can still show it, idle since its last wait).
        wait_until(10, "the finished tasks to leave the idle list", || {
            rt.handle().idle_tasks().is_empty()
        });
        let m = rt.metrics();
        assert_eq!(m.tasks_lost, 0, "a blocked task is not lost: {m:?}");
    });
}

#[test]
fn with_the_report_off_nothing_is_listed() {
    within(30, "the blocked task to be waited on", || {
        let rt = builder(2).build().expect("build the runtime");
        let (holder, waiter, release) = holder_and_waiter(&rt);
        let waiter_id = waiter.id().as_u64();
        // Past the threshold the other test uses (a lower bound: the holder
        // keeps the lock until told, however long this takes).
        std::thread::sleep(THRESHOLD * 2);
        assert!(rt.handle().idle_tasks().is_empty());
        let all = rt.handle().tasks();
        let w = all.iter().find(|t| t.id == waiter_id).expect("live");
        assert_eq!((w.state, w.idle_for), (TaskState::Idle, None), "{w:?}");
        release.send(()).unwrap();
        rt.block_on(async {
            common::bounded(10, "the holder", holder).await.unwrap();
            common::bounded(10, "the waiter", waiter).await.unwrap();
        });
    });
}

#[test]
fn a_lost_task_kept_by_report_is_listed_once_idle_long_enough() {
    within(30, "the lost task to be listed as idle", || {
        let rt = builder(2)
            .idle_report(Duration::from_millis(100))
            .on_lost_task(LostTask::Report)
            .build()
            .expect("build the runtime");
        let lost = rt.spawn(std::future::pending::<()>());
        wait_until(10, "the lost task to be listed as idle", || {
            rt.handle()
                .idle_tasks()
                .iter()
                .any(|t| t.id == lost.id().as_u64())
        });
        let listed = rt.handle().idle_tasks();
        assert_eq!(listed[0].state, TaskState::Lost, "{listed:?}");
        assert_eq!(rt.metrics().tasks_lost, 1);
        lost.abort();
    });
}
