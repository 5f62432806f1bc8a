//! A task that can never be woken again is found: one that is waiting while
//! every waker for it is gone. It is counted, reported once (a `tracing`
//! warning naming it and its spawn site) and listed; under
//! `LostTask::Cancel` its future is dropped and its `JoinHandle` says
//! `is_lost()`. A task whose waker is kept somewhere (a map, a channel, a
//! timer) is never reported, however long it waits.

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Duration;

use bulwark::metrics::TaskState;
use bulwark::runtime::{LostTask, Runtime};
use bulwark::task;
use common::{builder, wait_until, within, DropCounter};

/// A runtime with 2 workers and `policy` for lost tasks.
fn runtime(policy: LostTask) -> Runtime {
    builder(2)
        .on_lost_task(policy)
        .build()
        .expect("build the runtime")
}

/// Returns `Pending` on its first poll without keeping its waker (the bug:
/// a hand-written future that forgot to register), `Ready` if ever polled
/// again. Holds a drop counter, so the test sees when its future is dropped.
struct ForgetsItsWaker {
    polled: bool,
    _guard: DropCounter,
}

impl Future for ForgetsItsWaker {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.polled {
            return Poll::Ready(());
        }
        self.polled = true;
        // A clone made and dropped within the poll: still no waker left.
        drop(cx.waker().clone());
        Poll::Pending
    }
}

/// Hands a clone of its waker to `out` on its first poll and waits;
/// `Ready` once polled again.
struct HandsOutItsWaker {
    out: Option<std::sync::mpsc::Sender<Waker>>,
    _guard: DropCounter,
}

impl Future for HandsOutItsWaker {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.out.take() {
            Some(out) => {
                out.send(cx.waker().clone()).expect("send the waker");
                Poll::Pending
            }
            None => Poll::Ready(()),
        }
    }
}

/// One `bulwark::lost_task` event as the capturing subscriber saw it.
#[derive(Debug, Clone, Default)]
struct LostEvent {
    task_id: Option<u64>,
    task_name: Option<String>,
    spawned_at: Option<String>,
    message: Option<String>,
}

/// Every `bulwark::lost_task` event of this test process. The subscriber
/// is global (a lost task is reported on whichever thread found it), so
/// each test picks its own events by task id.
fn lost_events() -> &'static Mutex<Vec<LostEvent>> {
    static EVENTS: OnceLock<Mutex<Vec<LostEvent>>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        tracing::subscriber::set_global_default(Capture)
            .expect("no other subscriber in this test process");
        Mutex::new(Vec::new())
    })
}

fn events_for(id: u64) -> Vec<LostEvent> {
    lost_events()
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.task_id == Some(id))
        .cloned()
        .collect()
}

/// A subscriber that keeps the `bulwark::lost_task` events and ignores the
/// rest.
struct Capture;

impl tracing::Subscriber for Capture {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.target() == "bulwark::lost_task"
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut seen = LostEvent::default();
        event.record(&mut seen);
        lost_events().lock().unwrap().push(seen);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

impl tracing::field::Visit for LostEvent {
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        if field.name() == "task_id" {
            self.task_id = Some(value);
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "task_name" {
            self.task_name = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "spawned_at" => self.spawned_at = Some(format!("{value:?}")),
            "message" => self.message = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

#[test]
fn a_future_that_keeps_no_waker_is_reported_listed_and_left_alone() {
    within(30, "a lost task to be reported", || {
        lost_events();
        let rt = runtime(LostTask::Report);
        let drops = Arc::new(AtomicUsize::new(0));
        let lost = task::Builder::new()
            .name("forgetful")
            .spawn_on(
                ForgetsItsWaker {
                    polled: false,
                    _guard: DropCounter::new(&drops),
                },
                rt.handle(),
            )
            .unwrap();
        let id = lost.id().as_u64();
        wait_until(10, "tasks_lost to count the forgetful task", || {
            rt.metrics().tasks_lost == 1
        });

        // Listed as lost, with its name and spawn site.
        let listed = rt.handle().lost_tasks();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].id, id);
        assert_eq!(listed[0].name.as_deref(), Some("forgetful"));
        assert_eq!(listed[0].state, TaskState::Lost);
        assert!(listed[0].location.contains("lost_tasks.rs"), "{listed:?}");
        let all = rt.handle().tasks();
        let me = all.iter().find(|t| t.id == id).expect("still live");
        assert_eq!(me.state, TaskState::Lost, "{me:?}");

        // Reported once, naming it.
        let events = events_for(id);
        assert_eq!(events.len(), 1, "{events:?}");
        let e = &events[0];
        assert_eq!(e.task_name.as_deref(), Some("forgetful"));
        assert!(
            e.spawned_at
                .as_deref()
                .is_some_and(|s| s.contains("lost_tasks.rs:")),
            "{e:?}"
        );
        assert!(
            e.message
                .as_deref()
                .is_some_and(|m| m.contains("can never be woken")),
            "{e:?}"
        );

        // Report only: the future is kept, the handle waits.
        let m = rt.metrics();
        assert_eq!((m.tasks_lost_cancelled, m.tasks_cancelled), (0, 0), "{m:?}");
        assert_eq!(drops.load(SeqCst), 0, "the future was dropped under Report");
        assert!(!lost.is_finished());

        // An abort then ends it as an abort.
        lost.abort();
        let err = rt.block_on(lost).unwrap_err();
        assert!(err.is_cancelled() && !err.is_lost(), "{err}");
        assert_eq!(drops.load(SeqCst), 1);
        assert_eq!(events_for(id).len(), 1, "reported more than once");
        assert!(rt.handle().lost_tasks().is_empty());
    });
}

#[test]
fn under_cancel_a_lost_task_is_dropped_and_its_handle_says_lost() {
    within(30, "a lost task to be cancelled", || {
        lost_events();
        let rt = runtime(LostTask::Cancel);
        let drops = Arc::new(AtomicUsize::new(0));
        let lost = task::Builder::new()
            .name("forgetful")
            .spawn_on(
                ForgetsItsWaker {
                    polled: false,
                    _guard: DropCounter::new(&drops),
                },
                rt.handle(),
            )
            .unwrap();
        let id = lost.id().as_u64();
        let err = rt
            .block_on(async { common::bounded(10, "the lost task's handle", lost).await })
            .unwrap_err();
        assert!(err.is_lost(), "{err}");
        assert!(!err.is_cancelled() && !err.is_deadline_exceeded(), "{err}");
        assert_eq!(err.id().as_u64(), id);
        let text = err.to_string();
        assert!(
            text.contains("forgetful") && text.contains("no waker"),
            "{text}"
        );
        assert_eq!(drops.load(SeqCst), 1, "the future held by the lost task");

        let m = rt.metrics();
        assert_eq!((m.tasks_lost, m.tasks_lost_cancelled), (1, 1), "{m:?}");
        assert_eq!(m.tasks_cancelled, 0, "{m:?}");
        assert_eq!(events_for(id).len(), 1);
        assert!(rt.handle().lost_tasks().is_empty());
    });
}

#[test]
fn a_waker_dropped_on_another_thread_without_a_wake_is_found_at_its_drop() {
    within(
        30,
        "a lost task to be found at its last waker's drop",
        || {
            lost_events();
            let rt = runtime(LostTask::Cancel);
            let drops = Arc::new(AtomicUsize::new(0));
            let (tx, rx) = std::sync::mpsc::channel();
            let task = rt.spawn(HandsOutItsWaker {
                out: Some(tx),
                _guard: DropCounter::new(&drops),
            });
            let waker = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("waited 10 s for the task's waker");
            // Held here: the task waits, and is not lost.
            thread::sleep(Duration::from_millis(100));
            assert_eq!(rt.metrics().tasks_lost, 0);
            assert!(!task.is_finished());
            // Dropped here, on a thread that is no worker: found now.
            drop(waker);
            let err = rt
                .block_on(async { common::bounded(10, "the lost task's handle", task).await })
                .unwrap_err();
            assert!(err.is_lost(), "{err}");
            assert_eq!(drops.load(SeqCst), 1);
            assert_eq!(rt.metrics().tasks_lost, 1);
        },
    );
}

/// Wakers parked by key, as a hand-written registry keeps them.
fn parked() -> &'static Mutex<HashMap<u64, Waker>> {
    static PARKED: OnceLock<Mutex<HashMap<u64, Waker>>> = OnceLock::new();
    PARKED.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Parks its waker under `key` on its first poll; `Ready` once woken.
struct ParksItsWaker {
    key: u64,
    parked: bool,
}

impl Future for ParksItsWaker {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.parked {
            return Poll::Ready(());
        }
        self.parked = true;
        parked()
            .lock()
            .unwrap()
            .insert(self.key, cx.waker().clone());
        Poll::Pending
    }
}

#[test]
fn a_waker_kept_in_a_map_and_woken_a_second_later_is_never_lost() {
    within(30, "a task woken from a map to complete", || {
        let rt = runtime(LostTask::Cancel);
        let key = 7;
        let task = rt.spawn(ParksItsWaker { key, parked: false });
        let waker_thread = thread::spawn(move || {
            thread::sleep(Duration::from_secs(1));
            let mut waker = None;
            wait_until(10, "the task to park its waker", || {
                waker = parked().lock().unwrap().remove(&key);
                waker.is_some()
            });
            waker.expect("checked above").wake();
        });
        rt.block_on(async { common::bounded(10, "the parked task", task).await })
            .expect("the parked task completes");
        waker_thread.join().unwrap();
        let m = rt.metrics();
        assert_eq!((m.tasks_lost, m.tasks_lost_cancelled), (0, 0), "{m:?}");
        assert_eq!(m.tasks_completed, 1, "{m:?}");
    });
}

#[test]
fn a_task_whose_oneshot_sender_is_dropped_completes() {
    within(30, "a oneshot receiver to see its sender dropped", || {
        let rt = runtime(LostTask::Cancel);
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let task = rt.spawn(async move { rx.await.is_err() });
        let dropper = rt.spawn(async move {
            bulwark::time::sleep(Duration::from_millis(200)).await;
            drop(tx);
        });
        let closed = rt
            .block_on(async { common::bounded(10, "the oneshot receiver", task).await })
            .expect("the receiver completes, not lost");
        assert!(closed, "the receiver saw the sender dropped");
        rt.block_on(dropper).unwrap();
        let m = rt.metrics();
        assert_eq!((m.tasks_lost, m.tasks_lost_cancelled), (0, 0), "{m:?}");
    });
}

#[test]
fn a_task_that_parks_its_waker_in_a_timer_is_never_lost() {
    within(30, "sleeping tasks to complete", || {
        let rt = runtime(LostTask::Cancel);
        let sleepers: Vec<_> = (0..20)
            .map(|i| {
                rt.spawn(async move {
                    bulwark::time::sleep(Duration::from_millis(50 + 10 * i)).await;
                    i
                })
            })
            .collect();
        rt.block_on(async {
            for (i, s) in sleepers.into_iter().enumerate() {
                let got = common::bounded(10, "a sleeping task", s).await;
                assert_eq!(got.expect("a sleeper completes, not lost"), i as u64);
            }
        });
        let m = rt.metrics();
        assert_eq!((m.tasks_lost, m.tasks_lost_cancelled), (0, 0), "{m:?}");
    });
}

#[test]
fn a_deadline_timer_is_not_a_waker() {
    within(30, "a task with only a deadline to be found lost", || {
        let rt = runtime(LostTask::Cancel);
        let task = task::Builder::new()
            .timeout(Duration::from_secs(60))
            .spawn_on(std::future::pending::<()>(), rt.handle())
            .unwrap();
        let err = rt
            .block_on(async { common::bounded(10, "the lost task's handle", task).await })
            .unwrap_err();
        assert!(err.is_lost() && !err.is_deadline_exceeded(), "{err}");
        let m = rt.metrics();
        assert_eq!(m.tasks_deadline_exceeded, 0, "{m:?}");
        assert_eq!(
            m.timers_pending, 0,
            "the deadline timer is cancelled: {m:?}"
        );
    });
}
