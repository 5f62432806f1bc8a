//! Spawn-flood bench: bulwark with a task ceiling and a producer that feels
//! backpressure, against tokio spawning without bound.
//!
//! One group, `spawn_flood`, with two functions:
//!
//! - `bulwark`: a runtime with `max_tasks(10_000)` and `Admission::Wait`; a
//!   generator task spawns each of the N tasks with
//!   `task::Builder::new().spawn_wait(fut).await`, so at the ceiling it waits
//!   for a permit and at most 10 000 tasks are alive at a time.
//! - `tokio`: `tokio::spawn` from a generator task, unbounded.
//!
//! Each iteration spawns N = 100 000 tasks that each sleep 10 ms and then
//! count a shared countdown down; the task that brings it to zero signals the
//! bench thread, and what is measured is the time from the generator's spawn
//! to that signal. No `JoinHandle`s are held on either side. Both runtimes
//! have 4 workers and are built once.
//!
//! With the ceiling the flood runs in waves: 100 000 x 10 ms at 10 000 at a
//! time is at least 10 x 10 ms = 100 ms, plus the timer wheel's rounding up to
//! its 1 ms tick. tokio has no such floor; it is bounded by how fast one task
//! can spawn 100 000. The `spawn_flood` example runs the same workload with
//! N = 1 000 000 and reports peak memory as well.
//!
//! `scripts/bench-ratios` prints the bulwark/tokio ratio.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};

/// Worker threads of both runtimes.
const WORKERS: usize = 4;
/// bulwark's task ceiling.
const CEILING: usize = 10_000;
/// Tasks per iteration.
const N: usize = 100_000;
/// How long each task sleeps.
const SLEEP: Duration = Duration::from_millis(10);
/// A flood that has not signalled completion after this long is hung.
const HANG: Duration = Duration::from_secs(60);

/// Shared by the tasks of one iteration: tasks still to finish, and the
/// channel the last one signals on.
struct Countdown {
    rem: AtomicUsize,
    tx: mpsc::SyncSender<()>,
}

impl Countdown {
    /// A countdown (not armed) and the receiver of its signal.
    fn new() -> (Arc<Countdown>, mpsc::Receiver<()>) {
        let (tx, rx) = mpsc::sync_channel(1);
        let rem = AtomicUsize::new(0);
        (Arc::new(Countdown { rem, tx }), rx)
    }

    /// Counts one task down; the task that brings the count to zero signals.
    fn count_down(&self) {
        if self.rem.fetch_sub(1, Relaxed) == 1 {
            self.tx.send(()).expect("bench thread gone");
        }
    }
}

/// Waits for the last task's signal; panics (naming the variant) if it does
/// not come within [`HANG`].
fn wait(rx: &mpsc::Receiver<()>, what: &str) {
    if rx.recv_timeout(HANG).is_err() {
        panic!("{what}: no completion signal after {HANG:?} (hung?)");
    }
}

fn bulwark_runtime() -> bulwark::Runtime {
    bulwark::Runtime::builder()
        .worker_threads(WORKERS)
        .max_tasks(CEILING)
        .admission(bulwark::runtime::Admission::Wait)
        .build()
        .expect("building the bulwark runtime")
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .expect("building the tokio runtime")
}

/// One iteration on bulwark: the generator spawns with `spawn_wait`.
fn flood_bulwark(rt: &bulwark::Runtime, done: &Arc<Countdown>, rx: &mpsc::Receiver<()>) {
    done.rem.store(N, Relaxed);
    let done = done.clone();
    drop(rt.spawn(async move {
        for _ in 0..N {
            let done = done.clone();
            let task = async move {
                bulwark::time::sleep(SLEEP).await;
                done.count_down();
            };
            let admitted = bulwark::task::Builder::new().spawn_wait(task).await;
            drop(admitted.expect("spawn_wait inside the runtime"));
        }
    }));
    wait(rx, "spawn_flood/bulwark");
}

/// One iteration on tokio: the generator spawns without bound.
fn flood_tokio(rt: &tokio::runtime::Runtime, done: &Arc<Countdown>, rx: &mpsc::Receiver<()>) {
    done.rem.store(N, Relaxed);
    let done = done.clone();
    drop(rt.spawn(async move {
        for _ in 0..N {
            let done = done.clone();
            drop(tokio::spawn(async move {
                tokio::time::sleep(SLEEP).await;
                done.count_down();
            }));
        }
    }));
    wait(rx, "spawn_flood/tokio");
}

fn spawn_flood(c: &mut Criterion) {
    let (done, rx) = Countdown::new();
    let mut g = c.benchmark_group("spawn_flood");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));

    // Each runtime exists only while it is measured.
    {
        let rt = bulwark_runtime();
        g.bench_function("bulwark", |b| b.iter(|| flood_bulwark(&rt, &done, &rx)));
        let m = rt.metrics();
        assert!(
            m.tasks_admitted_peak <= CEILING && m.tasks_rejected == 0,
            "spawn_flood/bulwark: admitted peak {} (ceiling {CEILING}), {} rejected",
            m.tasks_admitted_peak,
            m.tasks_rejected
        );
    }
    {
        let rt = tokio_runtime();
        g.bench_function("tokio", |b| b.iter(|| flood_tokio(&rt, &done, &rx)));
    }
    g.finish();
}

/// Private so that the function `criterion_group!` generates needs no docs.
mod all {
    use super::*;

    criterion_group!(benches, spawn_flood);
}
criterion_main!(all::benches);
