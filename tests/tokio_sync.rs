//! `tokio::sync` inside bulwark tasks across workers: `Mutex`, `Semaphore`,
//! `Notify`, `mpsc` and `oneshot` are runtime-agnostic, so they must work
//! unchanged on bulwark, with no tokio runtime in the process.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bulwark::task::JoinHandle;
use common::{runtime, within};
use tokio::sync::{mpsc, oneshot, Mutex, Notify, Semaphore};

/// Awaits every handle in order and returns their values; a failed task
/// fails the test with `what`.
async fn join_all<T>(handles: Vec<JoinHandle<T>>, what: &str) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for (i, h) in handles.into_iter().enumerate() {
        out.push(h.await.unwrap_or_else(|e| panic!("{what} {i} failed: {e}")));
    }
    out
}

#[test]
fn no_tokio_runtime_is_current_inside_a_bulwark_task() {
    within(10, "a task to check for a tokio runtime", || {
        let rt = runtime(2);
        let found = rt
            .block_on(rt.spawn(async { tokio::runtime::Handle::try_current().is_ok() }))
            .expect("the task failed");
        assert!(!found, "a tokio runtime is current inside a bulwark task");
    });
}

#[test]
fn a_tokio_mutex_counter_contended_by_many_tasks_reaches_the_exact_total() {
    within(30, "200 tasks x 500 locked increments", || {
        const TASKS: usize = 200;
        const EACH: usize = 500;
        let rt = runtime(4);
        let counter = Arc::new(Mutex::new(0usize));
        // Held inside the lock: a second holder at once would be seen.
        let inside = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..TASKS)
            .map(|_| {
                let counter = counter.clone();
                let inside = inside.clone();
                rt.spawn(async move {
                    for k in 0..EACH {
                        let mut guard = counter.lock().await;
                        assert_eq!(
                            inside.fetch_add(1, Ordering::SeqCst),
                            0,
                            "two holders of a tokio Mutex at once"
                        );
                        let before = *guard;
                        if k % 50 == 0 {
                            // Yield while holding the lock, so others queue on it.
                            bulwark::task::yield_now().await;
                        }
                        *guard = before + 1;
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        rt.block_on(join_all(handles, "mutex task"));
        let total = *rt.block_on(counter.lock());
        assert_eq!(total, TASKS * EACH, "the counter's total");
    });
}

#[test]
fn a_semaphore_limits_concurrency_to_its_permits() {
    within(30, "300 tasks through a 5-permit semaphore", || {
        const TASKS: usize = 300;
        const PERMITS: usize = 5;
        let rt = runtime(4);
        let sem = Arc::new(Semaphore::new(PERMITS));
        let now = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..TASKS)
            .map(|i| {
                let (sem, now, max) = (sem.clone(), now.clone(), max.clone());
                rt.spawn(async move {
                    let _permit = sem.acquire().await.expect("the semaphore was closed");
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(n, Ordering::SeqCst);
                    // Hold the permit across a suspension (and, for some, a
                    // timer), so holders overlap.
                    if i % 10 == 0 {
                        bulwark::time::sleep(Duration::from_millis(1)).await;
                    } else {
                        bulwark::task::yield_now().await;
                        std::thread::yield_now();
                    }
                    now.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        rt.block_on(join_all(handles, "semaphore task"));
        let max = max.load(Ordering::SeqCst);
        assert!(
            max <= PERMITS,
            "{max} tasks held a {PERMITS}-permit semaphore at once"
        );
        assert!(
            max >= 2,
            "the semaphore's holders never overlapped (max {max}): the test did not contend"
        );
        assert_eq!(
            sem.available_permits(),
            PERMITS,
            "permits after every task finished"
        );
    });
}

#[test]
fn notify_ping_pong_between_two_tasks() {
    within(30, "10_000 Notify ping-pong rounds", || {
        const ROUNDS: usize = 10_000;
        let rt = runtime(4);
        let ping = Arc::new(Notify::new());
        let pong = Arc::new(Notify::new());
        let turns = Arc::new(AtomicUsize::new(0));
        let a = {
            let (ping, pong, turns) = (ping.clone(), pong.clone(), turns.clone());
            rt.spawn(async move {
                for round in 0..ROUNDS {
                    assert_eq!(
                        turns.load(Ordering::SeqCst),
                        2 * round,
                        "ping's turn {round}"
                    );
                    turns.fetch_add(1, Ordering::SeqCst);
                    ping.notify_one();
                    pong.notified().await;
                }
            })
        };
        let b = {
            let (ping, pong, turns) = (ping.clone(), pong.clone(), turns.clone());
            rt.spawn(async move {
                for round in 0..ROUNDS {
                    ping.notified().await;
                    assert_eq!(
                        turns.load(Ordering::SeqCst),
                        2 * round + 1,
                        "pong's turn {round}"
                    );
                    turns.fetch_add(1, Ordering::SeqCst);
                    pong.notify_one();
                }
            })
        };
        rt.block_on(async {
            a.await.expect("the ping task failed");
            b.await.expect("the pong task failed");
        });
        assert_eq!(turns.load(Ordering::SeqCst), 2 * ROUNDS);

        // notify_waiters wakes every task waiting at that moment.
        let notify = Arc::new(Notify::new());
        let waiting = Arc::new(AtomicUsize::new(0));
        let woken = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..50)
            .map(|_| {
                let (notify, waiting, woken) = (notify.clone(), waiting.clone(), woken.clone());
                rt.spawn(async move {
                    let notified = notify.notified();
                    tokio::pin!(notified);
                    // Registered before it is counted as waiting.
                    notified.as_mut().enable();
                    waiting.fetch_add(1, Ordering::SeqCst);
                    notified.await;
                    woken.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        common::wait_until(10, "50 tasks to wait on a Notify", || {
            waiting.load(Ordering::SeqCst) == 50
        });
        notify.notify_waiters();
        rt.block_on(join_all(handles, "notify_waiters task"));
        assert_eq!(
            woken.load(Ordering::SeqCst),
            50,
            "tasks woken by notify_waiters"
        );
    });
}

#[test]
fn mpsc_with_many_producers_delivers_every_message_in_per_producer_order() {
    // A bound on a hang, not a speed: under a second here.
    within(
        120,
        "100 producers x 1_000 messages through bounded mpsc",
        || {
            const PRODUCERS: usize = 100;
            const EACH: usize = 1_000;
            let rt = runtime(4);
            // A small bound, so producers wait on a full channel.
            let (tx, mut rx) = mpsc::channel::<(usize, usize)>(16);
            let producers: Vec<_> = (0..PRODUCERS)
                .map(|p| {
                    let tx = tx.clone();
                    rt.spawn(async move {
                        for k in 0..EACH {
                            tx.send((p, k)).await.expect("the receiver was dropped");
                        }
                    })
                })
                .collect();
            drop(tx);
            let consumer = rt.spawn(async move {
                let mut next = vec![0usize; PRODUCERS];
                let mut total = 0;
                while let Some((p, k)) = rx.recv().await {
                    assert_eq!(k, next[p], "producer {p}'s messages out of order");
                    next[p] += 1;
                    total += 1;
                }
                (total, next)
            });
            let (total, next) = rt.block_on(async {
                join_all(producers, "producer").await;
                consumer.await.expect("the consumer failed")
            });
            assert_eq!(total, PRODUCERS * EACH, "messages received");
            assert!(
                next.iter().all(|&n| n == EACH),
                "every producer's last message arrived"
            );

            // Unbounded, sent from plain threads outside the runtime, received in a task.
            let (tx, mut rx) = mpsc::unbounded_channel::<usize>();
            let receiver = rt.spawn(async move {
                let mut sum = 0usize;
                while let Some(v) = rx.recv().await {
                    sum += v;
                }
                sum
            });
            let threads: Vec<_> = (0..4)
                .map(|t| {
                    let tx = tx.clone();
                    std::thread::spawn(move || {
                        for v in 0..10_000 {
                            tx.send(t * 10_000 + v).expect("the receiver was dropped");
                        }
                    })
                })
                .collect();
            drop(tx);
            for t in threads {
                t.join().expect("a sending thread panicked");
            }
            let sum = rt.block_on(receiver).expect("the receiver task failed");
            assert_eq!(sum, (0..40_000).sum::<usize>(), "sum of unbounded messages");
        },
    );
}

#[test]
fn oneshot_answers_cross_tasks_and_a_dropped_sender_is_seen() {
    within(30, "1_000 oneshot request/answer pairs", || {
        const PAIRS: usize = 1_000;
        let rt = runtime(4);
        let total = rt.block_on(async {
            let mut answers = Vec::with_capacity(PAIRS);
            for i in 0..PAIRS {
                let (req_tx, req_rx) = oneshot::channel::<usize>();
                let (ans_tx, ans_rx) = oneshot::channel::<usize>();
                // A server task answers its request; a client task sends it.
                bulwark::spawn(async move {
                    let v = req_rx.await.expect("the request sender was dropped");
                    let _ = ans_tx.send(v * 2);
                });
                bulwark::spawn(async move {
                    req_tx.send(i).expect("the request receiver was dropped");
                });
                answers.push((i, ans_rx));
            }
            let mut total = 0;
            for (i, rx) in answers {
                let v = rx.await.expect("an answer's sender was dropped");
                assert_eq!(v, i * 2, "pair {i}'s answer");
                total += 1;
            }
            total
        });
        assert_eq!(total, PAIRS);

        // A sender dropped in another task: the receiver sees RecvError.
        let closed = rt.block_on(async {
            let (tx, rx) = oneshot::channel::<()>();
            bulwark::spawn(async move {
                bulwark::task::yield_now().await;
                drop(tx);
            });
            rx.await
        });
        assert!(
            closed.is_err(),
            "a oneshot whose sender was dropped returned Ok"
        );

        // A receiver dropped: the sender's closed() finishes.
        rt.block_on(async {
            let (mut tx, rx) = oneshot::channel::<()>();
            bulwark::spawn(async move {
                bulwark::time::sleep(Duration::from_millis(5)).await;
                drop(rx);
            });
            tx.closed().await;
            assert!(tx.is_closed());
        });
    });
}
