//! The hard task ceiling (`Builder::max_tasks`, `Admission::Reject`): live
//! tasks never exceed it under a spawn storm from eight threads; every spawn
//! past it is rejected with its future dropped unpolled; `try_spawn` gives the
//! refused future back; `spawn` at the ceiling neither blocks nor panics; a
//! rejected spawn allocates no task; and a ceiling of zero is refused at build
//! time.

mod common;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bulwark::runtime::{Admission, Runtime};
use bulwark::task::{JoinError, JoinHandle};
use common::{builder, panic_message, runtime_with_ceiling, wait_until, within, DropCounter, Live};
use tokio::sync::oneshot;

/// The system allocator, counting the bytes each thread allocates, so a
/// test can see what one thread's spawns cost in memory.
struct CountingAlloc;

thread_local! {
    static ALLOCATED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

// SAFETY: every call is passed to the system allocator unchanged; the count is
// a thread-local `Cell` with a const initialiser, which never allocates.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let _ = ALLOCATED.try_with(|n| n.set(n.get() + layout.size()));
        // SAFETY: the caller's contract for `alloc`, passed on.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: the caller's contract for `dealloc`, passed on.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Bytes this thread has allocated so far.
fn allocated_here() -> usize {
    ALLOCATED.with(|n| n.get())
}

/// Spawning threads in the storm.
const THREADS: usize = 8;
/// Tasks each spawning thread spawns.
const PER_THREAD: usize = 100_000;
/// Spawns between two waits for the handles (bounds the memory held by
/// finished tasks whose output nobody has read yet).
const CHUNK: usize = 5_000;
/// The ceiling in the storm.
const CEILING: usize = 1_000;

/// What one spawning thread saw.
#[derive(Default, Debug)]
struct Tally {
    completed: usize,
    rejected: usize,
}

#[test]
fn eight_threads_spawning_100_000_tasks_each_never_exceed_a_ceiling_of_1_000() {
    within(
        240,
        "800_000 spawns from 8 threads against max_tasks(1_000) to resolve",
        || {
            let rt = runtime_with_ceiling(2, CEILING);
            let live = Arc::new(Live::default());
            let drops = Arc::new(AtomicUsize::new(0));
            let start_line = Arc::new(Barrier::new(THREADS));

            let tallies: Vec<Tally> = std::thread::scope(|s| {
                let threads: Vec<_> = (0..THREADS)
                    .map(|t| {
                        let rt = &rt;
                        let live = Arc::clone(&live);
                        let drops = Arc::clone(&drops);
                        let start_line = Arc::clone(&start_line);
                        s.spawn(move || {
                            // Half the threads spawn with `bulwark::spawn` under
                            // `enter`, half with `Handle::spawn`.
                            let _guard = (t % 2 == 0).then(|| rt.enter());
                            let handle = rt.handle().clone();
                            // Set by task `i` when its body first runs.
                            let started: Arc<Vec<AtomicBool>> =
                                Arc::new((0..PER_THREAD).map(|_| AtomicBool::new(false)).collect());
                            let mut tally = Tally::default();
                            start_line.wait();
                            for chunk in 0..PER_THREAD / CHUNK {
                                let handles: Vec<JoinHandle<usize>> = (chunk * CHUNK
                                    ..(chunk + 1) * CHUNK)
                                    .map(|i| {
                                        let drop_guard = DropCounter::new(&drops);
                                        let live = Arc::clone(&live);
                                        let started = Arc::clone(&started);
                                        let fut = async move {
                                            let _drop_guard = drop_guard;
                                            started[i].store(true, SeqCst);
                                            live.enter();
                                            // Stay live a little, so the ceiling fills
                                            // with started tasks, not only queued ones.
                                            if i % 2 == 0 {
                                                bulwark::time::sleep(Duration::from_millis(2))
                                                    .await;
                                            } else {
                                                bulwark::task::yield_now().await;
                                                bulwark::task::yield_now().await;
                                            }
                                            live.leave();
                                            i
                                        };
                                        if t % 2 == 0 {
                                            bulwark::spawn(fut)
                                        } else {
                                            handle.spawn(fut)
                                        }
                                    })
                                    .collect();
                                futures::executor::block_on(async {
                                    for (k, join) in handles.into_iter().enumerate() {
                                        let i = chunk * CHUNK + k;
                                        match join.await {
                                            Ok(value) => {
                                                assert_eq!(value, i, "thread {t}: task {i}'s value");
                                                assert!(
                                                    started[i].load(SeqCst),
                                                    "thread {t}: task {i} completed but its body never ran"
                                                );
                                                tally.completed += 1;
                                            }
                                            Err(err) => {
                                                assert!(
                                                    err.is_rejected(),
                                                    "thread {t}: task {i} failed other than by rejection: {err}"
                                                );
                                                assert!(
                                                    !started[i].load(SeqCst),
                                                    "thread {t}: rejected task {i} was polled"
                                                );
                                                tally.rejected += 1;
                                            }
                                        }
                                    }
                                });
                            }
                            tally
                        })
                    })
                    .collect();
                threads
                    .into_iter()
                    .map(|t| t.join().expect("a spawning thread panicked"))
                    .collect()
            });

            let completed: usize = tallies.iter().map(|t| t.completed).sum();
            let rejected: usize = tallies.iter().map(|t| t.rejected).sum();
            let peak = live.peak.load(SeqCst);
            eprintln!(
                "storm: {completed} completed, {rejected} rejected, peak {peak} live; per thread {tallies:?}"
            );
            assert_eq!(
                completed + rejected,
                THREADS * PER_THREAD,
                "completed + rejected is not every spawn"
            );
            assert!(
                peak <= CEILING,
                "{peak} task bodies were running at once under max_tasks({CEILING})"
            );
            assert!(
                rejected > 0,
                "no spawn was rejected: the storm never reached the ceiling, so it shows nothing"
            );
            assert!(completed > 0, "no task completed");
            assert_eq!(
                live.now.load(SeqCst),
                0,
                "task bodies still live at the end"
            );
            assert_eq!(
                drops.load(SeqCst),
                THREADS * PER_THREAD,
                "every future (run or rejected) is dropped exactly once"
            );

            let m = rt.metrics();
            assert!(
                m.tasks_admitted_peak <= CEILING,
                "metrics: tasks_admitted_peak {} above max_tasks {CEILING}",
                m.tasks_admitted_peak
            );
            // A rejection means the ceiling was full at that moment.
            assert_eq!(
                m.tasks_admitted_peak, CEILING,
                "metrics: rejections happened, so the peak should be the ceiling"
            );
            assert_eq!(m.max_tasks, CEILING, "metrics: max_tasks");
            assert_eq!(
                m.rejected_at_ceiling, rejected as u64,
                "metrics: rejected_at_ceiling vs rejected handles"
            );
            assert_eq!(m.rejected_shedding, 0, "metrics: rejected_shedding");
            assert_eq!(m.tasks_rejected, rejected as u64, "metrics: tasks_rejected");
            assert_eq!(
                m.tasks_completed, completed as u64,
                "metrics: tasks_completed"
            );
            assert_eq!(
                m.tasks_spawned,
                (THREADS * PER_THREAD) as u64,
                "metrics: tasks_spawned"
            );
            assert_eq!(m.tasks_live, 0, "metrics: tasks_live at the end");
            assert_eq!(
                m.tasks_admitted_live, 0,
                "metrics: tasks_admitted_live at the end"
            );
            assert_eq!(m.tasks_waiting, 0, "metrics: tasks_waiting under Reject");
        },
    );
}

/// A future that carries an id and says whether it was ever polled and
/// whether it was dropped.
struct Tagged {
    id: u64,
    polled: Arc<AtomicBool>,
    _drop: DropCounter,
}

impl Future for Tagged {
    type Output = u64;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<u64> {
        self.polled.store(true, SeqCst);
        Poll::Ready(self.id)
    }
}

/// Fills a runtime's ceiling with `n` tasks that each wait for their
/// sender; waits until the metrics show all `n` admitted.
fn fill(rt: &Runtime, n: usize) -> (Vec<oneshot::Sender<()>>, Vec<JoinHandle<()>>) {
    let (senders, handles): (Vec<_>, Vec<_>) = (0..n)
        .map(|_| {
            let (tx, rx) = oneshot::channel::<()>();
            let join = rt.spawn(async move {
                let _ = rx.await;
            });
            (tx, join)
        })
        .unzip();
    wait_until(10, "the blocking tasks to fill the ceiling", || {
        rt.metrics().tasks_admitted_live == n
    });
    for join in &handles {
        assert!(!join.is_finished(), "a blocking task finished early");
    }
    (senders, handles)
}

#[test]
fn try_spawn_at_the_ceiling_gives_the_same_future_back_unpolled() {
    within(
        30,
        "try_spawn at a full ceiling and after room frees",
        || {
            let rt = runtime_with_ceiling(2, 3);
            let (mut senders, blockers) = fill(&rt, 3);

            let polled = Arc::new(AtomicBool::new(false));
            let drops = Arc::new(AtomicUsize::new(0));
            let _guard = rt.enter();
            let refused = bulwark::try_spawn(Tagged {
                id: 0xB01D,
                polled: Arc::clone(&polled),
                _drop: DropCounter::new(&drops),
            })
            .expect_err("try_spawn at a full ceiling returned a JoinHandle");
            assert!(
                !refused.is_shedding(),
                "a ceiling refusal says is_shedding()"
            );
            let shown = refused.to_string();
            assert!(
                shown.contains("ceiling"),
                "SpawnError display {shown:?} does not say the ceiling refused it"
            );
            let fut = refused.into_future();
            assert_eq!(fut.id, 0xB01D, "into_future() gave back another future");
            assert!(!polled.load(SeqCst), "the refused future was polled");
            assert_eq!(drops.load(SeqCst), 0, "the refused future was dropped");

            let m = rt.metrics();
            assert_eq!(m.rejected_at_ceiling, 1, "metrics: a try_spawn refusal");
            assert_eq!(
                m.tasks_rejected, 1,
                "metrics: a try_spawn refusal counts as rejected"
            );
            assert_eq!(
                m.tasks_spawned, 4,
                "metrics: 3 blockers + 1 refused attempt"
            );
            assert_eq!(
                m.tasks_admitted_live, 3,
                "metrics: a refusal took no permit"
            );

            // Room frees: the same future, handed back, now spawns and runs.
            senders.pop().unwrap().send(()).unwrap();
            wait_until(10, "a blocking task to finish and free a permit", || {
                rt.metrics().tasks_admitted_live == 2
            });
            let join = bulwark::try_spawn(fut).expect("try_spawn refused with room free");
            let value = rt.block_on(join).expect("the re-spawned future failed");
            assert_eq!(value, 0xB01D);
            assert!(
                polled.load(SeqCst),
                "the re-spawned future was never polled"
            );
            assert_eq!(
                drops.load(SeqCst),
                1,
                "the finished future was not dropped once"
            );

            for tx in senders {
                tx.send(()).unwrap();
            }
            rt.block_on(async {
                for join in blockers {
                    join.await.expect("a blocking task failed");
                }
            });
            let m = rt.metrics();
            assert_eq!(m.tasks_live, 0, "metrics: tasks_live at the end");
            assert_eq!(m.tasks_admitted_live, 0, "metrics: admitted at the end");
        },
    );
}

#[test]
fn spawn_at_the_ceiling_returns_a_rejected_handle_at_once_without_blocking_or_panicking() {
    within(60, "spawns at a full ceiling", || {
        const SPAWNS: usize = 10_000;
        // No room for waiting children: by default a task's spawns at a
        // full ceiling wait for room (finish what was admitted; see
        // executor/tests/fanout_budget.rs); with the cap at zero they
        // are refused at once, as roots are.
        let rt = common::builder(2)
            .max_tasks(4)
            .max_waiting_children(0)
            .build()
            .expect("build the runtime");
        let (senders, blockers) = fill(&rt, 4);
        let polled = Arc::new(AtomicUsize::new(0));
        let drops = Arc::new(AtomicUsize::new(0));

        // From an outside thread, through the handle.
        let began = Instant::now();
        let mut slowest = Duration::ZERO;
        let mut handles = Vec::with_capacity(SPAWNS);
        for _ in 0..SPAWNS {
            let polled = Arc::clone(&polled);
            let guard = DropCounter::new(&drops);
            let one = Instant::now();
            let spawned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                rt.handle().spawn(async move {
                    let _guard = guard;
                    polled.fetch_add(1, SeqCst);
                })
            }));
            slowest = slowest.max(one.elapsed());
            match spawned {
                Ok(join) => handles.push(join),
                Err(p) => panic!("spawn at the ceiling panicked: {}", panic_message(p)),
            }
        }
        let took = began.elapsed();
        eprintln!("{SPAWNS} spawns at the ceiling: {took:?}, slowest {slowest:?}");
        assert!(
            took < Duration::from_secs(10),
            "{SPAWNS} spawns at the ceiling took {took:?}: spawn blocks?"
        );
        assert!(
            slowest < Duration::from_secs(1),
            "one spawn at the ceiling took {slowest:?}: spawn blocks?"
        );
        for join in &handles {
            assert!(
                join.is_finished(),
                "a rejected handle did not resolve at once"
            );
        }
        assert_eq!(
            drops.load(SeqCst),
            SPAWNS,
            "rejected futures not all dropped"
        );

        // From inside a task (the worker's own spawn path): the spawner is a
        // task itself, so free one permit for it first; its spawns then meet
        // a full ceiling again.
        let mut senders = senders;
        senders.pop().unwrap().send(()).unwrap();
        wait_until(10, "a blocking task to free a permit", || {
            rt.metrics().tasks_admitted_live == 3
        });
        let spawner = {
            let polled = Arc::clone(&polled);
            let drops = Arc::clone(&drops);
            rt.spawn(async move {
                let began = Instant::now();
                let handles: Vec<JoinHandle<()>> = (0..1_000)
                    .map(|_| {
                        let polled = Arc::clone(&polled);
                        let guard = DropCounter::new(&drops);
                        bulwark::spawn(async move {
                            let _guard = guard;
                            polled.fetch_add(1, SeqCst);
                        })
                    })
                    .collect();
                let all_resolved = handles.iter().all(|h| h.is_finished());
                (handles, began.elapsed(), all_resolved)
            })
        };
        let (inner_handles, inner_took, all_resolved) =
            rt.block_on(spawner).expect("the spawning task failed");
        assert!(
            inner_took < Duration::from_secs(5),
            "1_000 spawns at the ceiling from a task took {inner_took:?}"
        );
        assert!(
            all_resolved,
            "a handle rejected inside a task did not resolve at once"
        );

        rt.block_on(async {
            for join in handles.into_iter().chain(inner_handles) {
                let err: JoinError = join.await.expect_err("a spawn at the ceiling ran");
                assert!(err.is_rejected(), "not is_rejected(): {err}");
                assert!(
                    !err.is_cancelled(),
                    "a rejection says is_cancelled(): {err}"
                );
                assert!(!err.is_panic(), "a rejection says is_panic(): {err}");
                assert!(
                    !err.is_deadline_exceeded(),
                    "a rejection says is_deadline_exceeded(): {err}"
                );
            }
        });
        assert_eq!(polled.load(SeqCst), 0, "a rejected future was polled");
        assert_eq!(
            drops.load(SeqCst),
            SPAWNS + 1_000,
            "rejected futures not all dropped"
        );
        let m = rt.metrics();
        assert_eq!(
            m.rejected_at_ceiling,
            (SPAWNS + 1_000) as u64,
            "metrics: rejected_at_ceiling"
        );

        for tx in senders {
            tx.send(()).unwrap();
        }
        rt.block_on(async {
            for join in blockers {
                join.await.expect("a blocking task failed");
            }
        });
        let m = rt.metrics();
        assert_eq!(m.tasks_live, 0, "metrics: tasks_live at the end");
        assert_eq!(m.tasks_admitted_peak, 4, "metrics: tasks_admitted_peak");
    });
}

#[test]
fn max_tasks_zero_is_refused_at_build_and_one_works() {
    within(20, "building runtimes with max_tasks 0 and 1", || {
        let Err(err) = builder(1).max_tasks(0).build() else {
            panic!("max_tasks(0) built a runtime");
        };
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "error: {err}");

        // Also under the other policies.
        for admission in [Admission::Wait, Admission::adaptive()] {
            let built = builder(1).max_tasks(0).admission(admission).build();
            let Err(err) = built else {
                panic!("max_tasks(0) with {admission:?} built a runtime");
            };
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "error: {err}");
        }

        // One is a ceiling: a second live task is rejected.
        let rt = runtime_with_ceiling(1, 1);
        let (tx, rx) = oneshot::channel::<()>();
        let first = rt.spawn(async move {
            let _ = rx.await;
            1
        });
        wait_until(10, "the first task to be admitted", || {
            rt.metrics().tasks_admitted_live == 1
        });
        let second = rt.spawn(async { 2 });
        let err = rt
            .block_on(second)
            .expect_err("a second task ran under max_tasks(1)");
        assert!(err.is_rejected(), "{err}");
        tx.send(()).unwrap();
        assert_eq!(rt.block_on(first).expect("the first task failed"), 1);
        let third = rt.spawn(async { 3 });
        assert_eq!(
            rt.block_on(third).expect("a task after room freed failed"),
            3
        );
    });
}

#[test]
fn a_rejected_spawn_allocates_no_task() {
    // DESIGN's invariant: a rejected spawn drops its future at once and holds
    // no task allocation. A fan-out that keeps 1,000 rejected handles must
    // not keep 1,000 tasks (with their futures) alive.
    within(20, "spawns at a full ceiling to be rejected", || {
        const SPAWNS: usize = 1_000;
        let rt = runtime_with_ceiling(1, 1);
        let (tx, rx) = oneshot::channel::<()>();
        let holder = rt.spawn(async move {
            let _ = rx.await;
        });
        wait_until(10, "the holder to take the one permit", || {
            rt.metrics().tasks_admitted_live == 1
        });
        let drops = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::with_capacity(SPAWNS);
        let before = allocated_here();
        for _ in 0..SPAWNS {
            let guard = DropCounter::new(&drops);
            let ballast = [7u8; 1024];
            handles.push(rt.spawn(async move {
                let _guard = guard;
                ballast.len()
            }));
        }
        let per_spawn = (allocated_here() - before) / SPAWNS;
        assert_eq!(
            drops.load(SeqCst),
            SPAWNS,
            "every refused future dropped at once"
        );
        assert!(
            per_spawn < 256,
            "a rejected spawn allocated {per_spawn} bytes: a task (with its 1 KiB future) \
             was made"
        );
        for h in handles {
            assert!(h.is_finished());
            let err = futures::executor::block_on(h).expect_err("rejected");
            assert!(err.is_rejected(), "{err}");
        }
        tx.send(()).unwrap();
        rt.block_on(holder).unwrap();
    });
}
