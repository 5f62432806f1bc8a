//! Leak-tracked resources (`bulwark::resource`): budgets refuse or wait, an
//! orphan (a handle alive after its holder task ended) and a handle held too
//! long are reported with the line that took them, a deliberate hand-over
//! (`rebind`) and a blocking closure's handle are not orphans, and a
//! deadline-cancelled task gives its handle back.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use bulwark::resource::{self, LeakKind, Tracked};
use common::{builder, wait_until, within};

/// Where leaked handles go: a long-lived map, as a real leak would.
static LEAKED: Mutex<Vec<Tracked<u32>>> = Mutex::new(Vec::new());

#[test]
fn a_handle_moved_into_a_global_vec_is_an_orphan_named_by_its_line() {
    within(60, "an orphan report", || {
        let rt = builder(2).build().expect("runtime");
        let line = rt
            .block_on(rt.spawn(async {
                let line = line!() + 1;
                let lease = resource::track("orphan-test", 7u32);
                LEAKED.lock().unwrap().push(lease);
                line
            }))
            .expect("the task ends");
        wait_until(5, "the orphan to be listed", || {
            rt.handle()
                .leaks()
                .iter()
                .any(|l| l.kind == "orphan-test" && l.why == LeakKind::Orphan)
        });
        let leak = rt
            .handle()
            .leaks()
            .into_iter()
            .find(|l| l.kind == "orphan-test")
            .expect("listed");
        assert!(leak.site.file().ends_with("resources.rs"), "{leak:?}");
        assert_eq!(leak.site.line(), line, "{leak:?}");
        assert!(leak.holder.is_some());
        assert_eq!(rt.metrics().resource_orphans, 1);
        // Given back: no longer listed, and the kind's count is back to 0.
        LEAKED.lock().unwrap().clear();
        assert!(rt.handle().leaks().is_empty());
        assert_eq!(rt.metrics().resources_tracked, 0);
    });
}

/// Returns once `n` handles of `kind` wait for room (bounded: fails after
/// 10 s).
async fn waiting_for(kind: &str, n: usize) {
    let waiting = || {
        bulwark::runtime::Handle::current()
            .metrics()
            .kinds
            .iter()
            .find(|k| k.name == kind)
            .map_or(0, |k| k.waiting)
    };
    common::bounded(10, &format!("{n} `{kind}` waiters"), async {
        while waiting() < n {
            bulwark::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

#[test]
fn budgets_refuse_with_the_value_back_and_waiters_are_served_in_order() {
    within(60, "budgets", || {
        let mut b = builder(2);
        b.resource_budget("conn", 2);
        let rt = b.build().expect("runtime");
        rt.block_on(async {
            let a = resource::try_track("conn", 1).expect("room for 1");
            let b = resource::try_track("conn", 2).expect("room for 2");
            let refused = resource::try_track("conn", 3).expect_err("the budget is 2");
            assert_eq!(refused.budget(), 2);
            assert!(refused.to_string().contains("`conn`"), "{refused}");
            assert_eq!(refused.into_inner(), 3);
            // Waiters: the first in line gets the first place freed. Each
            // is in line before the next one comes.
            let first = bulwark::spawn(resource::track_wait("conn", 10));
            waiting_for("conn", 1).await;
            let second = bulwark::spawn(resource::track_wait("conn", 20));
            waiting_for("conn", 2).await;
            // A waiter that gives up takes no place.
            let quitter =
                bulwark::time::timeout(Duration::from_millis(10), resource::track_wait("conn", 30))
                    .await;
            assert!(quitter.is_err(), "nothing was free");
            drop(a);
            let first = first.await.unwrap().expect("first waiter served");
            assert_eq!(*first, 10);
            drop(b);
            let second = second.await.unwrap().expect("second waiter served");
            assert_eq!(*second, 20);
        });
        assert_eq!(rt.metrics().resources_tracked, 0);
    });
}

#[test]
fn a_handle_held_past_max_hold_is_reported_and_a_rebound_one_is_no_orphan() {
    within(60, "long holds and rebinding", || {
        let mut b = builder(2);
        b.resource_max_hold("slow", Duration::from_millis(50));
        let rt = b.build().expect("runtime");
        let lease = rt
            .block_on(rt.spawn(async { resource::track("slow", ()) }))
            .expect("the task ends");
        // Handed to a task that lives on: not an orphan once rebound (and
        // looked at only then: until the keeper's first poll its holder is
        // the task that ended).
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (rebound_tx, rebound_rx) = std::sync::mpsc::channel();
        let keeper = rt.spawn(async move {
            lease.rebind();
            rebound_tx.send(()).unwrap();
            let _ = rx.await;
            drop(lease);
        });
        rebound_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the keeper to rebind the handle");
        wait_until(5, "the long hold to be listed", || {
            rt.handle()
                .leaks()
                .iter()
                .any(|l| l.why == LeakKind::HeldTooLong)
        });
        assert!(
            rt.handle()
                .leaks()
                .iter()
                .all(|l| l.why != LeakKind::Orphan),
            "a rebound handle is not an orphan: {:?}",
            rt.handle().leaks()
        );
        assert_eq!(rt.metrics().resource_long_holds, 1);
        tx.send(()).unwrap();
        rt.block_on(keeper).unwrap();
        assert!(rt.handle().leaks().is_empty());
    });
}

#[test]
fn a_blocking_closures_handle_is_not_an_orphan() {
    within(60, "a blocking closure's handle", || {
        let rt = builder(2).build().expect("runtime");
        let lease = rt
            .block_on(rt.spawn_blocking(|| resource::track("blocking-test", 1u8)))
            .expect("the closure ends");
        assert_eq!(lease.holder(), None);
        std::thread::sleep(Duration::from_millis(250));
        assert!(rt.handle().leaks().is_empty(), "{:?}", rt.handle().leaks());
        drop(lease);
    });
}

#[test]
fn a_deadline_cancelled_task_gives_its_handle_back() {
    within(60, "a cancelled task's handle", || {
        // Paused: the holder takes its handle before its deadline however
        // slow the machine (the clock moves only when nothing can run), so
        // the deadline always finds a handle to give back.
        let mut b = builder(2);
        b.resource_budget("pool", 1).start_paused(true);
        let rt = b.build().expect("runtime");
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let holder = bulwark::task::Builder::new()
            .timeout(Duration::from_secs(60))
            .spawn_on(
                async move {
                    let _lease = resource::track_wait("pool", ()).await.unwrap();
                    held_tx.send(()).unwrap();
                    std::future::pending::<()>().await;
                },
                rt.handle(),
            )
            .expect("spawn");
        let err = rt.block_on(holder).expect_err("past its deadline");
        assert!(err.is_deadline_exceeded() || err.is_lost(), "{err}");
        held_rx
            .try_recv()
            .expect("the holder took its handle before its deadline");
        rt.block_on(async {
            let again = resource::try_track("pool", ()).expect("the place came back");
            drop(again);
        });
        assert!(rt.handle().leaks().is_empty());
    });
}

#[test]
fn a_zero_budget_is_refused_at_build() {
    let err = builder(1)
        .resource_budget("none", 0)
        .build()
        .expect_err("a budget of 0");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let err = builder(1)
        .resource_budget("task", 5)
        .build()
        .expect_err("the runtime's own kind");
    assert!(err.to_string().contains("max_tasks"), "{err}");
}

#[test]
fn hold_times_are_recorded_per_kind_as_handles_drop() {
    within(60, "hold times", || {
        let rt = builder(2).build().expect("runtime");
        rt.block_on(async {
            let held: Vec<_> = (0..3).map(|i| resource::track("held", i)).collect();
            bulwark::time::sleep(Duration::from_millis(20)).await;
            drop(held);
            drop(resource::track("other", 0));
        });
        let kinds = rt.metrics().kinds;
        let held = kinds.iter().find(|k| k.name == "held").expect("kind held");
        assert_eq!(held.hold_time.count(), 3, "{held:?}");
        assert!(
            held.hold_time.sum() >= Duration::from_millis(60),
            "{held:?}"
        );
        let p50 = held.hold_time.quantile(0.5).expect("a median");
        assert!(
            p50 >= Duration::from_millis(16),
            "20 ms lands above 16.4 ms: {p50:?}"
        );
        let other = kinds
            .iter()
            .find(|k| k.name == "other")
            .expect("kind other");
        assert_eq!(other.hold_time.count(), 1);
    });
}
