//! The scheduler: no wake-up is lost between threads, idle workers steal
//! queued work, `block_on` refuses to nest, spawning outside a runtime fails
//! clearly, `Handle::current()` sees the runtime where it should, and
//! `tokio::sync` channels work between bulwark tasks.

mod common;

use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use bulwark::runtime::Handle;
use bulwark::task::JoinHandle;
use common::{builder, panic_message, runtime, spin, within};
use tokio::sync::{oneshot, Notify};

/// How long one side of a ping-pong waits for the other before calling the
/// wake-up lost.
const ROUND_BOUND: Duration = Duration::from_secs(30);

#[test]
fn no_lost_wake_up_in_100_000_cross_thread_rounds() {
    const ROUNDS: u64 = 100_000;
    // A bound on a hang, not a speed: about 2 s here, and 100,000 thread
    // wake-ups can take minutes on a slow machine (valgrind). A lost
    // wake-up fails the round's own bound.
    within(
        300,
        "100_000 wake/park rounds between a thread and a task",
        || {
            let rt = runtime(2);
            let (to_task, mut from_thread) = tokio::sync::mpsc::unbounded_channel::<u64>();
            let (to_thread, from_task) = mpsc::channel::<u64>();
            // The task parks on the channel each round; a plain thread (this one)
            // wakes it, then waits for its answer on a std channel.
            let task = rt.spawn(async move {
                for round in 0..ROUNDS {
                    let value = from_thread
                        .recv()
                        .await
                        .expect("the driving thread hung up");
                    assert_eq!(value, round, "messages out of order");
                    to_thread
                        .send(value)
                        .expect("the driving thread stopped listening");
                }
                ROUNDS
            });
            for round in 0..ROUNDS {
                to_task.send(round).expect("the task dropped its receiver");
                let answer = from_task.recv_timeout(ROUND_BOUND).unwrap_or_else(|_| {
                    panic!("round {round}: the task did not answer (lost wake-up, or it died)")
                });
                assert_eq!(answer, round);
            }
            let done = futures::executor::block_on(task).expect("the ping-pong task failed");
            assert_eq!(done, ROUNDS);
        },
    );
}

#[test]
fn no_lost_wake_up_with_many_tasks_woken_from_many_threads() {
    const TASKS: usize = 64;
    const DRIVERS: usize = 4;
    const ROUNDS: usize = 1_000;
    within(60, "64 tasks x 1_000 rounds woken from 4 threads", || {
        let rt = runtime(2);
        let notifies: Arc<Vec<Notify>> = Arc::new((0..TASKS).map(|_| Notify::new()).collect());
        let (ack_txs, ack_rxs): (Vec<_>, Vec<_>) = (0..DRIVERS)
            .map(|_| mpsc::channel::<(usize, usize)>())
            .unzip();
        let tasks: Vec<JoinHandle<()>> = (0..TASKS)
            .map(|t| {
                let notifies = Arc::clone(&notifies);
                let ack = ack_txs[t % DRIVERS].clone();
                rt.spawn(async move {
                    for round in 0..ROUNDS {
                        notifies[t].notified().await;
                        ack.send((t, round)).expect("driver stopped listening");
                    }
                })
            })
            .collect();
        drop(ack_txs);
        thread::scope(|s| {
            for (driver, acks) in ack_rxs.into_iter().enumerate() {
                let notifies = Arc::clone(&notifies);
                s.spawn(move || {
                    let mine: Vec<usize> = (driver..TASKS).step_by(DRIVERS).collect();
                    for round in 0..ROUNDS {
                        for &t in &mine {
                            notifies[t].notify_one();
                        }
                        for _ in &mine {
                            let (t, got) = acks.recv_timeout(ROUND_BOUND).unwrap_or_else(|_| {
                                panic!("driver {driver}, round {round}: a woken task never ran (lost wake-up)")
                            });
                            assert_eq!(got, round, "task {t} is out of step");
                        }
                    }
                });
            }
        });
        for task in tasks {
            futures::executor::block_on(task).expect("a woken task failed");
        }
    });
}

#[test]
fn work_spawned_on_one_worker_is_stolen_by_others() {
    within(60, "64 CPU-bound tasks spawned from one task", || {
        let rt = runtime(4);
        let threads = rt.block_on(rt.spawn(async {
            // All 64 land in this worker's queue; the others must steal them.
            let handles: Vec<JoinHandle<thread::ThreadId>> = (0..64)
                .map(|_| {
                    bulwark::spawn(async {
                        spin(Duration::from_millis(5));
                        thread::current().id()
                    })
                })
                .collect();
            let mut threads = HashSet::new();
            for handle in handles {
                threads.insert(handle.await.expect("a CPU-bound task failed"));
            }
            threads
        }));
        let threads = threads.expect("the spawning task failed");
        assert!(
            threads.len() > 1,
            "all 64 CPU-bound tasks ran on one worker: nothing was stolen"
        );
    });
}

const NESTED: &str = "Cannot start a runtime from within a runtime";

#[test]
fn block_on_inside_a_worker_or_block_on_panics() {
    within(30, "nested block_on checks", || {
        let rt = runtime(2);

        // On a worker thread, inside a task.
        let handle = rt.spawn(async { Handle::current().block_on(async {}) });
        let err = rt
            .block_on(handle)
            .expect_err("block_on inside a task returned");
        assert!(err.is_panic(), "expected a panic, got {err}");
        let message = panic_message(err.into_panic());
        assert!(message.contains(NESTED), "panic message {message:?}");

        // Inside another block_on.
        let caught = panic::catch_unwind(AssertUnwindSafe(|| {
            rt.block_on(async { Handle::current().block_on(async {}) })
        }));
        let message = panic_message(caught.expect_err("block_on inside block_on returned"));
        assert!(message.contains(NESTED), "panic message {message:?}");

        // Both refusals left the runtime usable from this thread.
        assert_eq!(rt.block_on(async { 1 }), 1);
        assert_eq!(rt.block_on(rt.spawn(async { 2 })).expect("task failed"), 2);
    });
}

#[test]
fn spawn_outside_a_runtime_panics_clearly() {
    let caught = panic::catch_unwind(|| {
        drop(bulwark::spawn(async {}));
    });
    let message = panic_message(caught.expect_err("bulwark::spawn outside a runtime returned"));
    assert!(
        message.to_lowercase().contains("runtime"),
        "the panic message should say a runtime is missing: {message:?}"
    );

    let caught = panic::catch_unwind(|| {
        drop(Handle::current());
    });
    assert!(
        caught.is_err(),
        "Handle::current() outside a runtime returned"
    );
}

#[test]
fn handle_current_inside_block_on_and_tasks() {
    within(30, "Handle::current checks", || {
        assert!(
            Handle::try_current().is_err(),
            "try_current() on a plain thread"
        );
        let rt = builder(2)
            .thread_name("bwhc")
            .build()
            .expect("build the runtime");

        // Inside block_on: the handle spawns onto this runtime's workers.
        let name = rt.block_on(async {
            assert!(
                Handle::try_current().is_ok(),
                "try_current() inside block_on"
            );
            Handle::current()
                .spawn(async { thread::current().name().map(String::from) })
                .await
                .expect("task spawned through Handle::current() failed")
        });
        let name = name.unwrap_or_default();
        assert!(
            name.starts_with("bwhc-"),
            "ran on thread {name:?}, not a bwhc worker"
        );

        // Inside a task.
        let value = rt.block_on(rt.spawn(async {
            assert!(Handle::try_current().is_ok(), "try_current() inside a task");
            Handle::current()
                .spawn(async { 7 })
                .await
                .expect("inner task failed")
        }));
        assert_eq!(value.expect("outer task failed"), 7);

        // Under enter(), and not after.
        {
            let _entered = rt.enter();
            assert!(Handle::try_current().is_ok(), "try_current() under enter()");
        }
        assert!(
            Handle::try_current().is_err(),
            "try_current() after block_on and enter ended"
        );
    });
}

#[test]
fn tokio_sync_channels_work_between_tasks() {
    within(30, "mpsc and oneshot traffic between tasks", || {
        let rt = runtime(2);

        // 8 producers, one consumer, a small bounded channel (both sides wait).
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(16);
        let producers: Vec<JoinHandle<()>> = (0..8u64)
            .map(|p| {
                let tx = tx.clone();
                rt.spawn(async move {
                    for i in 0..1_000u64 {
                        tx.send(p * 1_000 + i).await.expect("consumer gone");
                    }
                })
            })
            .collect();
        drop(tx);
        let consumer = rt.spawn(async move {
            let (mut count, mut sum) = (0u64, 0u64);
            while let Some(v) = rx.recv().await {
                count += 1;
                sum += v;
            }
            (count, sum)
        });
        for p in producers {
            rt.block_on(p).expect("a producer failed");
        }
        let (count, sum) = rt.block_on(consumer).expect("the consumer failed");
        assert_eq!(count, 8_000);
        assert_eq!(sum, (0..8_000u64).sum::<u64>());

        // Request/response: 1_000 oneshot exchanges between two tasks.
        let (req_tx, mut req_rx) =
            tokio::sync::mpsc::unbounded_channel::<(u64, oneshot::Sender<u64>)>();
        let server = rt.spawn(async move {
            let mut served = 0u64;
            while let Some((v, reply)) = req_rx.recv().await {
                reply.send(v * 2).expect("client gone");
                served += 1;
            }
            served
        });
        let client = rt.spawn(async move {
            for v in 0..1_000u64 {
                let (reply_tx, reply_rx) = oneshot::channel();
                req_tx.send((v, reply_tx)).expect("server gone");
                assert_eq!(reply_rx.await.expect("server dropped the reply"), v * 2);
            }
        });
        rt.block_on(client).expect("the client failed");
        assert_eq!(rt.block_on(server).expect("the server failed"), 1_000);

        // A chain of 100 tasks, each forwarding value + 1 through a oneshot.
        let (first_tx, mut prev_rx) = oneshot::channel::<u64>();
        for _ in 0..100 {
            let (next_tx, next_rx) = oneshot::channel::<u64>();
            let rx = prev_rx;
            drop(rt.spawn(async move {
                let v = rx.await.expect("chain broken");
                next_tx.send(v + 1).expect("chain broken");
            }));
            prev_rx = next_rx;
        }
        first_tx.send(0).expect("first link gone");
        assert_eq!(rt.block_on(prev_rx).expect("chain broken"), 100);
    });
}

#[test]
fn a_current_thread_runtime_runs_its_tasks_on_one_worker() {
    within(30, "a current-thread runtime", || {
        let rt = bulwark::runtime::Builder::new_current_thread()
            .enable_all()
            .max_tasks(4)
            .build()
            .expect("runtime");
        let names: Vec<String> = rt.block_on(async {
            let hs: Vec<_> = (0..3)
                .map(|_| {
                    bulwark::spawn(async {
                        bulwark::task::yield_now().await;
                        std::thread::current().name().unwrap_or("").to_string()
                    })
                })
                .collect();
            let mut names = Vec::new();
            for h in hs {
                names.push(h.await.expect("a task"));
            }
            names
        });
        assert!(names.iter().all(|n| n == "bulwark-worker-0"), "{names:?}");
        let s = rt.metrics();
        assert_eq!(s.workers, 1);
        // The guards hold: the ceiling of 4 refuses a fifth live task.
        let (senders, held): (Vec<_>, Vec<_>) = (0..4)
            .map(|_| {
                let (tx, rx) = oneshot::channel::<()>();
                (tx, rt.spawn(async move { rx.await.is_ok() }))
            })
            .unzip();
        let fifth = rt
            .block_on(rt.spawn(async {}))
            .expect_err("past the ceiling");
        assert!(fifth.is_rejected(), "{fifth}");
        for tx in senders {
            tx.send(()).unwrap();
        }
        for h in held {
            assert!(rt.block_on(h).unwrap());
        }
        let mut b = bulwark::runtime::Builder::new_current_thread();
        b.worker_threads(2);
        let err = b
            .build()
            .expect_err("two workers on a current-thread runtime");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("exactly one worker"), "{err}");
    });
}
