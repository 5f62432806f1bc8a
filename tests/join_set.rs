//! `bulwark::task::JoinSet`, as tokio's: outputs come out in completion
//! order; `abort_all` cancels; `shutdown` waits for every task to end;
//! dropping the set aborts its tasks (their futures' destructors run);
//! `len` counts the members. And it works with the guards: at the task
//! ceiling the refused spawns come back from `join_next` as rejected
//! `JoinError`s, while under `Admission::Wait` every spawn runs.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use bulwark::runtime::Admission;
use bulwark::task::JoinSet;
use common::{
    bounded, runtime, runtime_with_admission, runtime_with_ceiling, wait_until, within,
    DropCounter, Live,
};
use tokio::sync::{oneshot, Semaphore};

#[test]
fn at_a_ceiling_of_ten_a_hundred_spawns_run_ten_and_reject_ninety() {
    within(30, "100 spawns into a JoinSet under max_tasks(10)", || {
        let rt = runtime_with_ceiling(2, 10);
        let gate = Arc::new(Semaphore::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        rt.block_on(async {
            let mut set = JoinSet::new();
            // Spawned from `block_on`, outside any task: roots, refused at
            // the ceiling (a task's children would wait instead).
            for i in 0..100usize {
                let (gate, started) = (gate.clone(), started.clone());
                set.spawn(async move {
                    started.fetch_add(1, SeqCst);
                    // Holds its permit of the ceiling until the gate opens.
                    let _open = gate.acquire().await.expect("gate closed");
                    i
                });
            }
            assert_eq!(set.len(), 100);
            // The ninety refusals first, while the ten admitted hold on.
            for n in 0..90 {
                let res = bounded(10, "a rejection from join_next", set.join_next())
                    .await
                    .expect("the set emptied early");
                let err = res.expect_err("an admitted task finished while the gate was shut");
                assert!(err.is_rejected(), "refusal {n} is not a rejection: {err}");
            }
            assert_eq!(set.len(), 10);
            assert!(
                set.try_join_next().is_none(),
                "a held task came out before the gate opened"
            );
            bounded(10, "the ten admitted tasks to start", async {
                while started.load(SeqCst) < 10 {
                    bulwark::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await;
            gate.add_permits(100);
            let mut ran = Vec::new();
            while let Some(res) = bounded(10, "an admitted task's output", set.join_next()).await {
                ran.push(res.expect("an admitted task failed"));
            }
            assert_eq!(ran.len(), 10);
            assert_eq!(started.load(SeqCst), 10, "a rejected future was polled");
        });
        let m = rt.metrics();
        assert_eq!(m.tasks_rejected, 90);
    });
}

#[test]
fn under_admission_wait_all_hundred_spawns_run_ten_at_a_time() {
    within(
        60,
        "100 spawns into a JoinSet under Admission::Wait",
        || {
            let rt = runtime_with_admission(2, 10, Admission::Wait);
            let live = Arc::new(Live::default());
            let sum = rt.block_on(async {
                let mut set = JoinSet::new();
                for i in 0..100u64 {
                    let live = live.clone();
                    set.spawn(async move {
                        live.enter();
                        bulwark::time::sleep(Duration::from_millis(2)).await;
                        live.leave();
                        i
                    });
                }
                let mut sum = 0;
                while let Some(res) = bounded(20, "a waiting task's output", set.join_next()).await
                {
                    sum += res.expect("a task failed under Admission::Wait");
                }
                sum
            });
            assert_eq!(sum, 4950);
            assert!(
                live.peak.load(SeqCst) <= 10,
                "peak {}",
                live.peak.load(SeqCst)
            );
            assert_eq!(rt.metrics().tasks_rejected, 0);
        },
    );
}

#[test]
fn join_next_gives_outputs_in_completion_order() {
    within(30, "five tasks finishing in a chosen order", || {
        let rt = runtime(2);
        rt.block_on(async {
            let mut set = JoinSet::new();
            let mut gates = Vec::new();
            let mut aborts = Vec::new();
            for i in 0..5usize {
                let (tx, rx) = oneshot::channel::<()>();
                gates.push(Some(tx));
                aborts.push(set.spawn(async move {
                    rx.await.expect("gate dropped");
                    i
                }));
            }
            // Each finishes before the next is let go; nobody joins yet, so
            // the order is the set's record of completions, not of wakes of
            // a waiting `join_next`.
            let order = [3, 1, 4, 0, 2];
            for &i in &order {
                gates[i].take().unwrap().send(()).unwrap();
                let abort = &aborts[i];
                bounded(10, "a released task to finish", async {
                    while !abort.is_finished() {
                        bulwark::time::sleep(Duration::from_millis(1)).await;
                    }
                })
                .await;
            }
            let mut got = Vec::new();
            while let Some(res) = bounded(10, "join_next", set.join_next()).await {
                got.push(res.unwrap());
            }
            assert_eq!(got, order);

            // And while `join_next` waits: each comes out as it finishes.
            let mut gates = Vec::new();
            for i in 0..3usize {
                let (tx, rx) = oneshot::channel::<()>();
                gates.push(Some(tx));
                set.spawn(async move {
                    rx.await.expect("gate dropped");
                    i
                });
            }
            for i in [2, 0, 1] {
                gates[i].take().unwrap().send(()).unwrap();
                let out = bounded(10, "the released task", set.join_next()).await;
                assert_eq!(out.unwrap().unwrap(), i);
            }
        });
    });
}

#[test]
fn abort_all_cancels_every_task_and_drops_its_future() {
    within(30, "abort_all on 20 waiting tasks", || {
        let rt = runtime(2);
        let drops = Arc::new(AtomicUsize::new(0));
        rt.block_on(async {
            let mut set = JoinSet::<()>::new();
            for _ in 0..20 {
                let guard = DropCounter::new(&drops);
                set.spawn(async move {
                    let _guard = guard;
                    std::future::pending::<()>().await
                });
            }
            set.abort_all();
            assert_eq!(set.len(), 20, "aborted tasks stay until joined");
            let mut cancelled = 0;
            while let Some(res) = bounded(10, "an aborted task", set.join_next()).await {
                let err = res.expect_err("a pending task finished");
                assert!(err.is_cancelled(), "not a cancellation: {err}");
                cancelled += 1;
            }
            assert_eq!(cancelled, 20);
            // The future is dropped before its handle resolves.
            assert_eq!(drops.load(SeqCst), 20);
        });
    });
}

#[test]
fn shutdown_waits_until_every_task_has_ended() {
    within(30, "shutdown of 20 tasks, some busy", || {
        let rt = runtime(2);
        let drops = Arc::new(AtomicUsize::new(0));
        rt.block_on(async {
            let mut set = JoinSet::<()>::new();
            for i in 0..20 {
                let guard = DropCounter::new(&drops);
                set.spawn(async move {
                    let _guard = guard;
                    if i % 4 == 0 {
                        // Running (not waiting) when the abort comes: ends
                        // when this poll returns.
                        common::spin(Duration::from_millis(20));
                    }
                    std::future::pending::<()>().await
                });
            }
            bounded(10, "JoinSet::shutdown", set.shutdown()).await;
            assert!(set.is_empty());
            assert_eq!(
                drops.load(SeqCst),
                20,
                "shutdown returned before a future was dropped"
            );
        });
    });
}

#[test]
fn dropping_the_set_aborts_its_tasks_and_their_destructors_run() {
    within(30, "a dropped JoinSet's tasks to be dropped", || {
        let rt = runtime(2);
        let drops = Arc::new(AtomicUsize::new(0));
        let polled = Arc::new(AtomicUsize::new(0));
        rt.block_on(async {
            let mut set = JoinSet::<()>::new();
            for _ in 0..50 {
                let guard = DropCounter::new(&drops);
                let polled = polled.clone();
                set.spawn(async move {
                    let _guard = guard;
                    polled.fetch_add(1, SeqCst);
                    std::future::pending::<()>().await
                });
            }
            bounded(10, "the tasks' first polls", async {
                while polled.load(SeqCst) < 50 {
                    bulwark::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await;
            drop(set);
        });
        wait_until(10, "the 50 futures' destructors", || {
            drops.load(SeqCst) == 50
        });
        wait_until(10, "no live task", || rt.metrics().tasks_live == 0);
    });
}

#[test]
fn len_counts_members_until_joined_and_detach_all_lets_them_run() {
    within(30, "len, detach_all", || {
        let rt = runtime(2);
        rt.block_on(async {
            let mut set = JoinSet::new();
            assert_eq!((set.len(), set.is_empty()), (0, true));
            let (tx, rx) = oneshot::channel::<()>();
            set.spawn(async { 1 });
            set.spawn(async move {
                rx.await.unwrap();
                2
            });
            set.spawn_blocking(|| 3);
            assert_eq!(set.len(), 3);
            // Finished but not joined still counts.
            let first = bounded(10, "a finished task", set.join_next()).await;
            assert!(matches!(first, Some(Ok(1 | 3))));
            assert_eq!(set.len(), 2);
            bounded(10, "another", set.join_next())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(set.len(), 1);

            // Detached: out of the set, and not aborted.
            let (done_tx, done_rx) = oneshot::channel::<u32>();
            set.spawn(async move {
                done_tx.send(7).unwrap();
                4
            });
            set.detach_all();
            assert_eq!(set.len(), 0);
            assert!(set.join_next().await.is_none());
            assert_eq!(bounded(10, "the detached task", done_rx).await, Ok(7));
            drop(tx);
        });
    });
}

#[test]
fn try_spawn_at_the_ceiling_gives_the_future_back_and_the_set_is_unchanged() {
    within(30, "try_spawn into a full runtime", || {
        let rt = runtime_with_ceiling(1, 3);
        rt.block_on(async {
            let mut set = JoinSet::<u8>::new();
            let (tx, rx) = tokio::sync::watch::channel(false);
            for _ in 0..3 {
                let mut rx = rx.clone();
                set.try_spawn(async move {
                    rx.wait_for(|open| *open).await.unwrap();
                    1
                })
                .expect("room for three");
            }
            let refused = set
                .try_spawn(async { 2 })
                .expect_err("a fourth live task at a ceiling of three");
            assert!(!refused.is_shedding());
            assert_eq!(
                refused.into_future().await,
                2,
                "the future comes back unpolled"
            );
            assert_eq!(set.len(), 3);
            tx.send(true).unwrap();
            let mut n = 0;
            while let Some(res) = bounded(10, "the three", set.join_next()).await {
                assert_eq!(res.unwrap(), 1);
                n += 1;
            }
            assert_eq!(n, 3);
        });
    });
}

#[test]
fn a_panic_and_spawn_on_and_ids() {
    within(30, "panics, spawn_on and ids in a JoinSet", || {
        let rt = runtime(2);
        let mut set = JoinSet::new();
        // From a plain thread, through the handle.
        let boom = set.spawn_on(async { panic!("boom") }, rt.handle()).id();
        let fine = set.spawn_on(async { 5 }, rt.handle()).id();
        rt.block_on(async {
            let mut seen = Vec::new();
            while let Some(res) = bounded(10, "join_next_with_id", set.join_next_with_id()).await {
                match res {
                    Ok((id, v)) => seen.push((id, Some(v))),
                    Err(e) => {
                        assert!(e.is_panic(), "{e}");
                        seen.push((e.id(), None));
                    }
                }
            }
            seen.sort_by_key(|(id, _)| *id);
            let mut want = vec![(boom, None), (fine, Some(5))];
            want.sort_by_key(|(id, _)| *id);
            assert_eq!(seen, want);
        });
    });
}
