//! Fan-out budgets (`task::Builder::max_children`,
//! `runtime::Builder::max_children_per_task`), the cap on waiting children,
//! and "finish what was admitted" at a full ceiling (issue #9).
//!
//! Every wait is bounded: a hang fails the test with what it waited for.

use bulwark_executor::runtime::{Builder as RtBuilder, Handle};
use bulwark_executor::spawn::{spawn, Builder};
use bulwark_executor::task::{yield_now, JoinHandle};
use bulwark_executor::Runtime;
use bulwark_io::time::{sleep, timeout};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// How long any one wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(30);

fn runtime(workers: usize, configure: impl FnOnce(&mut RtBuilder)) -> Runtime {
    let mut b = Runtime::builder();
    b.worker_threads(workers);
    configure(&mut b);
    b.build().expect("the runtime builds")
}

/// Awaits `fut`, failing the test with `what` if it takes longer than [`WAIT`].
async fn bounded<F: Future>(what: &str, fut: F) -> F::Output {
    match timeout(WAIT, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

/// What the children of one fan-out saw.
#[derive(Default)]
struct Probe {
    live: AtomicUsize,
    max_live: AtomicUsize,
    started: Mutex<Vec<usize>>,
}

impl Probe {
    /// A child's body: records its start and how many run with it, stays
    /// live across a yield, then leaves.
    async fn child(self: Arc<Self>, index: usize) -> usize {
        self.started.lock().unwrap().push(index);
        let now = self.live.fetch_add(1, SeqCst) + 1;
        self.max_live.fetch_max(now, SeqCst);
        yield_now().await;
        yield_now().await;
        self.live.fetch_sub(1, SeqCst);
        index
    }

    fn started(&self) -> Vec<usize> {
        self.started.lock().unwrap().clone()
    }
}

/// A parent spawns `n` children and awaits them in order; returns the sum of
/// their outputs.
async fn fan_out(probe: Arc<Probe>, n: usize) -> usize {
    let handles: Vec<JoinHandle<usize>> = (0..n).map(|i| spawn(probe.clone().child(i))).collect();
    let mut sum = 0;
    for h in handles {
        sum += h.await.expect("a budgeted child runs to its end");
    }
    sum
}

fn sum_to(n: usize) -> usize {
    n * (n - 1) / 2
}

#[test]
fn max_children_bounds_live_children_and_starts_them_in_spawn_order() {
    // One worker: the start order is exactly the spawn order.
    let rt = runtime(1, |_| {});
    let probe = Arc::new(Probe::default());
    let p = probe.clone();
    let sum = rt.block_on(async move {
        let parent = Builder::new()
            .max_children(10)
            .spawn(fan_out(p, 1_000))
            .unwrap();
        bounded("a parent of 1,000 children, 10 at a time", parent)
            .await
            .expect("the parent completes")
    });
    assert_eq!(sum, sum_to(1_000), "every child completed");
    let max = probe.max_live.load(SeqCst);
    assert!(max <= 10, "{max} children were live at once, budget 10");
    assert_eq!(max, 10, "the budget is used");
    assert_eq!(
        probe.started(),
        (0..1_000).collect::<Vec<_>>(),
        "children start first come, first served"
    );
    let m = rt.metrics();
    assert_eq!(m.children_waiting, 0);
    assert_eq!(m.tasks_rejected, 0);
}

#[test]
fn max_children_holds_on_two_workers_and_order_stays_within_the_budget() {
    let rt = runtime(2, |_| {});
    let probe = Arc::new(Probe::default());
    let p = probe.clone();
    let sum = rt.block_on(async move {
        let parent = Builder::new()
            .max_children(10)
            .spawn(fan_out(p, 1_000))
            .unwrap();
        bounded("a parent of 1,000 children on 2 workers", parent)
            .await
            .expect("the parent completes")
    });
    assert_eq!(sum, sum_to(1_000));
    let max = probe.max_live.load(SeqCst);
    assert!(max <= 10, "{max} children were live at once, budget 10");
    // Children leave the queue strictly in order, so none is polled before
    // all but 9 of those ahead of it have been: a child runs at most 9
    // places early. It may run late by more: a worker the OS preempts with
    // stolen children in its queue holds their places while the other
    // worker cycles through the rest.
    let started = probe.started();
    assert_eq!(started.len(), 1_000);
    for (pos, &index) in started.iter().enumerate() {
        assert!(
            index < pos + 10,
            "child {index} started at position {pos}, ahead of its budget"
        );
    }
}

#[test]
fn runtime_max_children_per_task_applies_without_the_task_builder() {
    let rt = runtime(2, |b| {
        b.max_children_per_task(Some(4));
    });
    let probe = Arc::new(Probe::default());
    let p = probe.clone();
    let (sum, waiting) = rt.block_on(async move {
        let parent = spawn(async move {
            let handles: Vec<_> = (0..200).map(|i| spawn(p.clone().child(i))).collect();
            // Seen from inside: children wait in this task's queue (the other
            // worker runs the live ones meanwhile).
            let waiting = Handle::current().metrics().children_waiting;
            let mut sum = 0;
            for h in handles {
                sum += h.await.unwrap();
            }
            (sum, waiting)
        });
        bounded("a parent under the runtime-wide budget", parent)
            .await
            .unwrap()
    });
    assert_eq!(sum, sum_to(200));
    assert!(waiting > 0, "no child waited");
    let max = probe.max_live.load(SeqCst);
    assert!(max <= 4, "{max} children were live at once, budget 4");
    // A task's own budget overrides the runtime's.
    let probe = Arc::new(Probe::default());
    let p = probe.clone();
    rt.block_on(async move {
        let parent = Builder::new()
            .max_children(2)
            .spawn(fan_out(p, 50))
            .unwrap();
        bounded("a parent with its own budget", parent)
            .await
            .unwrap()
    });
    let max = probe.max_live.load(SeqCst);
    assert!(max <= 2, "{max} children were live at once, budget 2");
}

#[test]
fn past_the_waiting_cap_a_child_spawn_is_rejected_not_a_panic() {
    let rt = runtime(2, |b| {
        b.max_children_per_task(Some(1)).max_waiting_children(5);
    });
    let outcomes = rt.block_on(async {
        let parent = spawn(async {
            // The one live child holds the place a while.
            let mut handles = vec![spawn(async { sleep(Duration::from_millis(200)).await })];
            // Five wait (the cap); the sixth is refused.
            for _ in 0..6 {
                handles.push(spawn(async {}));
            }
            let mut outcomes = Vec::new();
            for h in handles {
                outcomes.push(h.await.map_err(|e| e.is_rejected()));
            }
            outcomes
        });
        bounded("a parent past the waiting cap", parent)
            .await
            .expect("the parent completes: no panic")
    });
    assert_eq!(
        outcomes,
        vec![Ok(()), Ok(()), Ok(()), Ok(()), Ok(()), Ok(()), Err(true)],
        "the child past the cap is rejected, the others run"
    );
    let m = rt.metrics();
    assert_eq!(m.tasks_rejected, 1);
    assert_eq!(m.rejected_at_ceiling, 1);
    assert_eq!(m.children_waiting, 0);
    // The refusal failed the parent's fan-out: the six children that
    // completed (all after it) ran for nothing.
    assert_eq!(m.wasted_subtasks, 6);
}

#[test]
fn at_a_full_ceiling_a_child_waits_and_a_root_is_rejected() {
    let rt = runtime(2, |b| {
        b.max_tasks(2);
    });
    let (spawned_tx, spawned_rx) = mpsc::channel::<()>();
    let polled = Arc::new(AtomicUsize::new(0));
    let seen = polled.clone();
    rt.block_on(async move {
        // The parent (a root) and its first child fill the ceiling.
        let parent = spawn(async move {
            let first = spawn(async { sleep(Duration::from_millis(300)).await });
            let second = spawn(async move {
                seen.fetch_add(1, SeqCst);
            });
            spawned_tx.send(()).unwrap();
            first.await.expect("the first child runs");
            second
                .await
                .expect("the child that met the ceiling waits and runs");
        });
        spawned_rx
            .recv_timeout(WAIT)
            .expect("the parent spawned its children");
        // The ceiling is full (parent + first child) and a child waits: a
        // new root is refused at the door.
        let root = spawn(async {});
        let refused = bounded("the root's rejection", root)
            .await
            .expect_err("a root spawned at a full ceiling is rejected");
        assert!(refused.is_rejected(), "{refused}");
        bounded("the parent and both children", parent)
            .await
            .expect("the parent completes");
    });
    assert_eq!(polled.load(SeqCst), 1, "the waiting child ran");
    let m = rt.metrics();
    assert_eq!(m.tasks_rejected, 1, "only the root was refused");
    assert_eq!(m.rejected_at_ceiling, 1);
    assert!(m.tasks_admitted_peak <= 2, "the ceiling held");
}

/// Counts its drops: a future's destructor ran.
struct Drops(Arc<AtomicUsize>);

impl Drop for Drops {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

#[test]
fn parent_aborted_while_children_wait_every_handle_resolves() {
    let rt = runtime(2, |_| {});
    let (tx, rx) = mpsc::channel::<Vec<JoinHandle<()>>>();
    rt.block_on(async move {
        let parent = Builder::new()
            .max_children(2)
            .spawn(async move {
                let handles = (0..22)
                    .map(|_| spawn(async { sleep(Duration::from_millis(100)).await }))
                    .collect();
                tx.send(handles).unwrap();
                std::future::pending::<()>().await;
            })
            .unwrap();
        let handles = rx.recv_timeout(WAIT).expect("the parent spawned");
        parent.abort();
        let err = bounded("the aborted parent", parent)
            .await
            .expect_err("aborted");
        assert!(err.is_cancelled(), "{err}");
        // Children are not cancelled with their parent: the waiting ones
        // start in order as their siblings end, and every handle resolves.
        for (i, h) in handles.into_iter().enumerate() {
            bounded(&format!("child {i} of an aborted parent"), h)
                .await
                .expect("children outlive their parent");
        }
    });
    let m = rt.metrics();
    assert_eq!(m.children_waiting, 0);
    assert_eq!(
        m.wasted_subtasks, 22,
        "every child completed after its parent was cancelled"
    );
}

#[test]
fn parent_past_its_deadline_its_waiting_children_are_dropped_at_their_turn() {
    let rt = runtime(2, |_| {});
    let (tx, rx) = mpsc::channel::<Vec<JoinHandle<()>>>();
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    rt.block_on(async move {
        let parent = Builder::new()
            .max_children(2)
            .timeout(Duration::from_millis(100))
            .spawn(async move {
                let handles = (0..20)
                    .map(|_| {
                        let guard = Drops(d.clone());
                        spawn(async move {
                            let _guard = guard;
                            sleep(Duration::from_secs(60)).await;
                        })
                    })
                    .collect();
                tx.send(handles).unwrap();
                std::future::pending::<()>().await;
            })
            .unwrap();
        let handles = rx.recv_timeout(WAIT).expect("the parent spawned");
        let err = bounded("the parent's deadline", parent)
            .await
            .expect_err("past its deadline");
        assert!(err.is_deadline_exceeded(), "{err}");
        for (i, h) in handles.into_iter().enumerate() {
            let err = bounded(&format!("child {i} past the inherited deadline"), h)
                .await
                .expect_err("the children inherited the deadline");
            assert!(err.is_deadline_exceeded(), "child {i}: {err}");
        }
    });
    assert_eq!(drops.load(SeqCst), 20, "every child's future was dropped");
    assert_eq!(rt.metrics().children_waiting, 0);
}

#[test]
fn aborting_a_waiting_child_resolves_its_handle_at_once() {
    let rt = runtime(2, |_| {});
    rt.block_on(async {
        let parent = Builder::new()
            .max_children(1)
            .spawn(async {
                let first = spawn(async { sleep(Duration::from_secs(60)).await });
                let waiting = spawn(async {});
                waiting.abort();
                let err = bounded("an aborted waiting child", waiting)
                    .await
                    .expect_err("aborted");
                assert!(err.is_cancelled(), "{err}");
                first.abort();
            })
            .unwrap();
        bounded("the parent", parent).await.unwrap();
    });
    assert_eq!(rt.metrics().children_waiting, 0);
}

#[test]
fn shutdown_drops_waiting_children_and_resolves_their_handles() {
    let rt = runtime(2, |_| {});
    let drops = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel::<Vec<JoinHandle<()>>>();
    let d = drops.clone();
    let handles = rt.block_on(async move {
        let _parent = Builder::new()
            .max_children(1)
            .spawn(async move {
                let handles = (0..11)
                    .map(|_| {
                        let guard = Drops(d.clone());
                        spawn(async move {
                            let _guard = guard;
                            std::future::pending::<()>().await;
                        })
                    })
                    .collect();
                tx.send(handles).unwrap();
            })
            .unwrap();
        rx.recv_timeout(WAIT).expect("the parent spawned")
    });
    assert_eq!(rt.metrics().children_waiting, 10);
    drop(rt);
    assert_eq!(drops.load(SeqCst), 11, "every child's future was dropped");
    let other = runtime(1, |_| {});
    other.block_on(async move {
        for (i, h) in handles.into_iter().enumerate() {
            let err = bounded(&format!("child {i} at shutdown"), h)
                .await
                .expect_err("shut down");
            assert!(err.is_cancelled(), "child {i}: {err}");
        }
    });
}

#[test]
fn an_accept_loops_connection_tasks_are_roots_refused_at_a_full_ceiling() {
    let rt = runtime(2, |b| {
        b.max_tasks(2).pause_accept_when_full(false);
    });
    let (addr_tx, addr_rx) = mpsc::channel();
    let outcome = rt.block_on(async move {
        // The accept loop (a root) and a filler fill the ceiling.
        let filler = spawn(async { sleep(Duration::from_secs(60)).await });
        let acceptor = spawn(async move {
            let listener = bulwark_io::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            let (stream, _) = listener.accept().await.expect("accept");
            // A connection task: new work at the door, not a child of the
            // accept loop, so it is refused rather than left waiting.
            let conn = spawn(async move { drop(stream) });
            conn.await.map_err(|e| e.is_rejected())
        });
        let addr = addr_rx.recv_timeout(WAIT).expect("the listener is bound");
        let _client = std::net::TcpStream::connect(addr).expect("connect");
        let outcome = bounded("the accept loop", acceptor)
            .await
            .expect("the accept loop completes");
        filler.abort();
        outcome
    });
    assert_eq!(outcome, Err(true), "the connection task was rejected");
    assert_eq!(rt.metrics().children_waiting, 0);
}
