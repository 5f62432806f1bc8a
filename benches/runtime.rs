//! Scheduler benchmarks: bulwark against tokio's multi-thread runtime.
//!
//! The workloads are the ones tokio uses to benchmark its own multi-thread
//! scheduler (`benches/rt_multi_threaded.rs` in the tokio repository):
//!
//! - `spawn_many_local`: 10 000 empty tasks spawned from inside `block_on`;
//!   the last one to run signals the `block_on` thread.
//! - `spawn_many_remote_idle`: 10 000 empty tasks spawned from outside the
//!   runtime, then every `JoinHandle` awaited inside `block_on`.
//! - `spawn_many_remote_busy1`: the same, while 8 tasks keep every worker busy
//!   (each loops `yield_now` + a 10 us spin).
//! - `yield_many`: 200 tasks that each yield 1 000 times.
//! - `ping_pong`: 1 000 pairs of tasks exchanging two oneshot messages.
//! - `chained_spawn`: a chain of 1 000 tasks, each spawning the next.
//!
//! Every workload is one criterion group with three functions, `bulwark`,
//! `bulwark-guarded` and `tokio` (ids `<workload>/bulwark`,
//! `<workload>/bulwark-guarded` and `<workload>/tokio`). All variants are
//! generated from the same macro, so they run the same code and differ only in
//! the runtime type, how it is built, the free `spawn` function and
//! `yield_now`.
//!
//! `bulwark-guarded` is bulwark with every guard on: a ceiling of
//! [`GUARDED_MAX_TASKS`], `Admission::adaptive()` (CoDel shedding on the
//! scheduling delay) and a runtime default deadline of [`DEADLINE`], so every
//! task takes a permit, passes the shedding check and gets a timer. None of
//! them may fire: after every batch of iterations the bench reads the
//! runtime's metrics and fails if any spawn was rejected or shed or any task
//! was dropped at its deadline (a workload that awaits its handles fails at
//! once on a rejected one), so a guard that quietly drops work cannot look
//! fast. Such a failure ends that one function, not the run: it is reported
//! as `NOT MEASURED`, its criterion estimates are removed (so
//! `bench-ratios` shows no stale row) and the bench exits non-zero after the
//! other groups have run. On a loaded machine adaptive shedding does fire in
//! `spawn_many_remote_busy1` (its 10 000-task bursts queue behind 8 spinning
//! tasks, a standing scheduling delay above CoDel's 5 ms target).
//!
//! Every group also has `bulwark-main`: the same workload run inside a
//! function under `#[bulwark::main(worker_threads = 4)]` (see
//! `on_bulwark_main`), so `bulwark` against it shows what starting bulwark
//! through the attribute costs. And `bulwark-no-watchdog`: the default runtime with
//! `Watchdog::off()`, so no watchdog thread and no compensation (workers do
//! not lend their seat around each poll). `bulwark` against it is what the
//! watchdog costs. And `bulwark-no-histograms`: the default runtime with
//! `histograms(false)`, so no poll is timed, no wake stamped and no
//! lifetime recorded; `bulwark` against it is what the histograms cost.
//!
//! `spawn_many_local` also measures what the guards cost when they are on but
//! never fire, with four functions:
//!
//! - `bulwark`: the default runtime. The task ceiling is on (1 000 000, far
//!   above the 10 000 tasks), so every spawn takes and returns a permit:
//!   guards on, none firing.
//! - `bulwark-no-ceiling`: the same runtime built with
//!   `.max_tasks(usize::MAX)`, which turns the ceiling and its accounting
//!   off: bulwark without guards.
//! - `bulwark-deadline`: the default runtime, each task spawned with
//!   `task::Builder::new().timeout(60 s).spawn(..)`: ceiling and a per-task
//!   deadline (a timer in the driver's wheel, removed when the task ends) on,
//!   none firing.
//! - `tokio`: tokio's multi-thread runtime.
//!
//! The two extra bulwark variants are more instances of the same macro (only
//! their `spawn_many_local` is benched). Channels are
//! the same on both sides (`std::sync::mpsc` and `tokio::sync::oneshot`, which
//! does not need a tokio runtime). Each runtime has 4 worker threads and is
//! built once per group. What is measured is the time of one whole iteration
//! of the workload, as seen from the thread that drives it.
//!
//! `scripts/bench-ratios` prints the bulwark/tokio ratio per workload.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use std::panic::{self, AssertUnwindSafe};

use criterion::{criterion_group, BenchmarkGroup, Criterion};

/// Worker threads of both runtimes.
const WORKERS: usize = 4;
/// Tasks per iteration in the `spawn_many_*` workloads.
const NUM_SPAWN: usize = 10_000;
/// Tasks in `yield_many`.
const YIELD_TASKS: usize = 200;
/// Yields per task in `yield_many`.
const NUM_YIELD: usize = 1_000;
/// Task pairs in `ping_pong`.
const NUM_PINGS: usize = 1_000;
/// Length of the task chain in `chained_spawn`.
const CHAIN: usize = 1_000;
/// Tasks that keep the workers busy in `spawn_many_remote_busy1`.
const BUSY_TASKS: usize = 2 * WORKERS;
/// How long a busy task spins between two yields.
const BUSY_SPIN: Duration = Duration::from_micros(10);
/// A workload that has not signalled completion after this long is hung.
const HANG: Duration = Duration::from_secs(60);
/// Deadline given to each task in `spawn_many_local/bulwark-deadline`, and
/// the default deadline of `bulwark-guarded`: far beyond the workload, so it
/// never fires.
const DEADLINE: Duration = Duration::from_secs(60);
/// Task ceiling of `bulwark-guarded`. The most live tasks of any workload are
/// the 10 000 of `spawn_many_*` plus the 8 busy ones (a few thousand more can
/// linger for a moment between two iterations, counted until their last
/// reference goes), so 100 000 is ten times the need: the ceiling is on, and
/// checked on every spawn, but never reached. Below the default (1 000 000) so
/// the variant does not merely repeat the default runtime's setting.
const GUARDED_MAX_TASKS: usize = 100_000;

/// Completion signal shared by the tasks of one workload: a countdown of
/// tasks still to finish, and a channel the last one sends on.
struct Signal {
    rem: Arc<AtomicUsize>,
    tx: mpsc::SyncSender<()>,
    rx: mpsc::Receiver<()>,
}

impl Signal {
    fn new() -> Signal {
        let (tx, rx) = mpsc::sync_channel(1);
        Signal {
            rem: Arc::new(AtomicUsize::new(0)),
            tx,
            rx,
        }
    }

    /// Arms the countdown for `n` tasks.
    fn arm(&self, n: usize) {
        self.rem.store(n, Relaxed);
    }

    /// Blocks until the last task has signalled; panics (naming the
    /// workload) if that does not happen within [`HANG`].
    fn wait(&self, what: &str) {
        if self.rx.recv_timeout(HANG).is_err() {
            panic!("{what}: no completion signal after {HANG:?} (hung?)");
        }
    }
}

/// Counts one task down; the task that brings the countdown to zero signals.
fn count_down(rem: &AtomicUsize, tx: &mpsc::SyncSender<()>) {
    if rem.fetch_sub(1, Relaxed) == 1 {
        tx.send(()).unwrap();
    }
}

/// Spins on the clock for [`BUSY_SPIN`] (a poll that does CPU work).
fn spin() {
    let start = Instant::now();
    while start.elapsed() < BUSY_SPIN {
        std::hint::spin_loop();
    }
}

/// Spawns `future` on the current bulwark runtime with a deadline of
/// [`DEADLINE`] from now (the `spawn` of `spawn_many_local/bulwark-deadline`).
fn spawn_with_deadline<F>(future: F) -> bulwark::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    bulwark::task::Builder::new()
        .timeout(DEADLINE)
        .spawn(future)
        .expect("spawning with a deadline inside the runtime")
}

/// Panics unless `rt` has run every task it was given: no spawn rejected (at
/// the ceiling or by shedding), no task dropped at its deadline.
fn assert_no_work_dropped(rt: &bulwark::Runtime, what: &str) {
    let m = rt.metrics();
    assert!(
        m.tasks_rejected == 0 && m.rejected_shedding == 0 && m.tasks_deadline_exceeded == 0,
        "{what}: the guards dropped work: {} rejected ({} shed), {} past their deadline",
        m.tasks_rejected,
        m.rejected_shedding,
        m.tasks_deadline_exceeded,
    );
}

/// Set when a `bulwark-guarded` function was not measured.
static GUARD_FAILED: AtomicBool = AtomicBool::new(false);

/// Benches `routine` as `<group>/bulwark-guarded` on `rt` and checks after
/// each batch of iterations (outside the timed part) that the guards dropped
/// nothing. If they did (or a rejected handle failed the workload), the
/// function is reported as not measured, its estimates are removed and the
/// run goes on with the next function; `main` exits non-zero at the end.
fn bench_guarded(
    g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    group: &str,
    rt: &bulwark::Runtime,
    mut routine: impl FnMut(),
) {
    let what = format!("{group}/bulwark-guarded");
    let run = panic::catch_unwind(AssertUnwindSafe(|| {
        g.bench_function("bulwark-guarded", |b| {
            b.iter(&mut routine);
            assert_no_work_dropped(rt, &what);
        });
    }));
    if let Err(payload) = run {
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("<non-string panic>");
        eprintln!("{what}: NOT MEASURED: {msg}");
        let target = std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into());
        let dir = std::path::Path::new(&target)
            .join("criterion")
            .join(group)
            .join("bulwark-guarded");
        let _ = std::fs::remove_dir_all(dir);
        GUARD_FAILED.store(true, Relaxed);
    }
}

/// Generates one module of workloads for one runtime.
///
/// `$rt` is the runtime type (it must have `block_on` and `spawn`), `$build`
/// an expression building it, `$spawn` the free spawn function usable inside
/// the runtime and `$yield_now` its `yield_now`. Each workload function runs
/// one iteration. Attributes before the name go on the module.
macro_rules! workloads {
    ($(#[$attr:meta])* $name:ident, $label:literal, $rt:ty, $build:expr, $spawn:path, $yield_now:path) => {
        $(#[$attr])*
        mod $name {
            use super::*;

            pub type Rt = $rt;

            pub fn build() -> Rt {
                $build.expect(concat!("building the ", $label, " runtime"))
            }

            pub fn spawn_many_local(rt: &Rt, sig: &Signal) {
                sig.arm(NUM_SPAWN);
                rt.block_on(async {
                    for _ in 0..NUM_SPAWN {
                        let rem = sig.rem.clone();
                        let tx = sig.tx.clone();
                        drop($spawn(async move { count_down(&rem, &tx) }));
                    }
                    sig.wait(concat!("spawn_many_local/", $label));
                });
            }

            pub fn spawn_many_remote(rt: &Rt) {
                let mut handles = Vec::with_capacity(NUM_SPAWN);
                for _ in 0..NUM_SPAWN {
                    handles.push(rt.spawn(async {}));
                }
                rt.block_on(async {
                    for handle in handles {
                        handle.await.unwrap();
                    }
                });
            }

            /// Starts the tasks that keep the workers busy until `run` is cleared.
            pub fn start_busy(rt: &Rt, run: &Arc<AtomicBool>) {
                for _ in 0..BUSY_TASKS {
                    let run = run.clone();
                    drop(rt.spawn(async move {
                        while run.load(Relaxed) {
                            $yield_now().await;
                            spin();
                        }
                    }));
                }
            }

            pub fn yield_many(rt: &Rt, sig: &Signal) {
                sig.arm(YIELD_TASKS);
                for _ in 0..YIELD_TASKS {
                    let rem = sig.rem.clone();
                    let tx = sig.tx.clone();
                    drop(rt.spawn(async move {
                        for _ in 0..NUM_YIELD {
                            $yield_now().await;
                        }
                        count_down(&rem, &tx);
                    }));
                }
                sig.wait(concat!("yield_many/", $label));
            }

            pub fn ping_pong(rt: &Rt, sig: &Signal) {
                sig.arm(NUM_PINGS);
                let rem = sig.rem.clone();
                let done = sig.tx.clone();
                rt.block_on(async move {
                    drop($spawn(async move {
                        for _ in 0..NUM_PINGS {
                            let rem = rem.clone();
                            let done = done.clone();
                            drop($spawn(async move {
                                let (ping_tx, ping_rx) = tokio::sync::oneshot::channel();
                                let (pong_tx, pong_rx) = tokio::sync::oneshot::channel();
                                drop($spawn(async move {
                                    ping_rx.await.unwrap();
                                    pong_tx.send(()).unwrap();
                                }));
                                ping_tx.send(()).unwrap();
                                pong_rx.await.unwrap();
                                count_down(&rem, &done);
                            }));
                        }
                    }));
                    sig.wait(concat!("ping_pong/", $label));
                });
            }

            /// One link of the chain: spawns the next link, or signals at the end.
            fn link(done: mpsc::SyncSender<()>, left: usize) {
                if left == 0 {
                    done.send(()).unwrap();
                } else {
                    drop($spawn(async move { link(done, left - 1) }));
                }
            }

            pub fn chained_spawn(rt: &Rt, sig: &Signal) {
                let done = sig.tx.clone();
                rt.block_on(async move {
                    drop($spawn(async move { link(done, CHAIN) }));
                    sig.wait(concat!("chained_spawn/", $label));
                });
            }
        }
    };
}

workloads!(
    on_bulwark,
    "bulwark",
    bulwark::Runtime,
    bulwark::Runtime::builder().worker_threads(WORKERS).build(),
    bulwark::spawn,
    bulwark::task::yield_now
);

workloads!(
    /// Only `spawn_many_local` is benched on this runtime.
    #[allow(dead_code)]
    on_bulwark_no_ceiling,
    "bulwark-no-ceiling",
    bulwark::Runtime,
    bulwark::Runtime::builder()
        .worker_threads(WORKERS)
        .max_tasks(usize::MAX)
        .build(),
    bulwark::spawn,
    bulwark::task::yield_now
);

workloads!(
    /// Only `spawn_many_local` is benched with this `spawn`.
    #[allow(dead_code)]
    on_bulwark_deadline,
    "bulwark-deadline",
    bulwark::Runtime,
    bulwark::Runtime::builder().worker_threads(WORKERS).build(),
    super::spawn_with_deadline,
    bulwark::task::yield_now
);

workloads!(
    on_bulwark_no_watchdog,
    "bulwark-no-watchdog",
    bulwark::Runtime,
    bulwark::Runtime::builder()
        .worker_threads(WORKERS)
        .watchdog(bulwark::runtime::Watchdog::off())
        .build(),
    bulwark::spawn,
    bulwark::task::yield_now
);

workloads!(
    on_bulwark_no_histograms,
    "bulwark-no-histograms",
    bulwark::Runtime,
    bulwark::Runtime::builder()
        .worker_threads(WORKERS)
        .histograms(false)
        .build(),
    bulwark::spawn,
    bulwark::task::yield_now
);

workloads!(
    on_bulwark_guarded,
    "bulwark-guarded",
    bulwark::Runtime,
    bulwark::Runtime::builder()
        .worker_threads(WORKERS)
        .max_tasks(GUARDED_MAX_TASKS)
        .admission(bulwark::runtime::Admission::adaptive())
        .default_deadline(Some(DEADLINE))
        .build(),
    bulwark::spawn,
    bulwark::task::yield_now
);

workloads!(
    on_tokio,
    "tokio",
    tokio::runtime::Runtime,
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build(),
    tokio::spawn,
    tokio::task::yield_now
);

/// `<workload>/bulwark-main`: each workload run inside a function under
/// `#[bulwark::main(worker_threads = 4)]`, the way a service starts
/// bulwark, against `<workload>/bulwark` on a runtime from the builder. The
/// attribute builds a runtime when the function is called and drops it when
/// it returns, so each function runs `iters` iterations in one call and
/// returns their time alone (`iter_custom`): the runtime's start and
/// shutdown are outside it. One iteration is the same work as on the
/// builder's runtime: what runs inside `block_on` there runs in the
/// function's body here, and what is spawned from outside the runtime
/// there is spawned from the body (the `block_on` thread, not a worker) here.
mod on_bulwark_main {
    use super::*;

    // The attribute takes a literal.
    const _: () = assert!(WORKERS == 4, "keep worker_threads below equal to WORKERS");

    #[bulwark::main(worker_threads = 4)]
    pub async fn spawn_many_local(iters: u64, sig: &Signal) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            sig.arm(NUM_SPAWN);
            for _ in 0..NUM_SPAWN {
                let rem = sig.rem.clone();
                let tx = sig.tx.clone();
                drop(bulwark::spawn(async move { count_down(&rem, &tx) }));
            }
            sig.wait("spawn_many_local/bulwark-main");
        }
        start.elapsed()
    }

    #[bulwark::main(worker_threads = 4)]
    pub async fn spawn_many_remote(iters: u64, busy: bool) -> Duration {
        let run = Arc::new(AtomicBool::new(true));
        if busy {
            for _ in 0..BUSY_TASKS {
                let run = run.clone();
                drop(bulwark::spawn(async move {
                    while run.load(Relaxed) {
                        bulwark::task::yield_now().await;
                        spin();
                    }
                }));
            }
        }
        let start = Instant::now();
        for _ in 0..iters {
            let mut handles = Vec::with_capacity(NUM_SPAWN);
            for _ in 0..NUM_SPAWN {
                handles.push(bulwark::spawn(async {}));
            }
            for handle in handles {
                handle.await.unwrap();
            }
        }
        let took = start.elapsed();
        run.store(false, Relaxed);
        took
    }

    #[bulwark::main(worker_threads = 4)]
    pub async fn yield_many(iters: u64, sig: &Signal) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            sig.arm(YIELD_TASKS);
            for _ in 0..YIELD_TASKS {
                let rem = sig.rem.clone();
                let tx = sig.tx.clone();
                drop(bulwark::spawn(async move {
                    for _ in 0..NUM_YIELD {
                        bulwark::task::yield_now().await;
                    }
                    count_down(&rem, &tx);
                }));
            }
            sig.wait("yield_many/bulwark-main");
        }
        start.elapsed()
    }

    #[bulwark::main(worker_threads = 4)]
    pub async fn ping_pong(iters: u64, sig: &Signal) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            sig.arm(NUM_PINGS);
            let rem = sig.rem.clone();
            let done = sig.tx.clone();
            drop(bulwark::spawn(async move {
                for _ in 0..NUM_PINGS {
                    let rem = rem.clone();
                    let done = done.clone();
                    drop(bulwark::spawn(async move {
                        let (ping_tx, ping_rx) = tokio::sync::oneshot::channel();
                        let (pong_tx, pong_rx) = tokio::sync::oneshot::channel();
                        drop(bulwark::spawn(async move {
                            ping_rx.await.unwrap();
                            pong_tx.send(()).unwrap();
                        }));
                        ping_tx.send(()).unwrap();
                        pong_rx.await.unwrap();
                        count_down(&rem, &done);
                    }));
                }
            }));
            sig.wait("ping_pong/bulwark-main");
        }
        start.elapsed()
    }

    /// One link of the chain, as `on_bulwark`'s.
    fn link(done: mpsc::SyncSender<()>, left: usize) {
        if left == 0 {
            done.send(()).unwrap();
        } else {
            drop(bulwark::spawn(async move { link(done, left - 1) }));
        }
    }

    #[bulwark::main(worker_threads = 4)]
    pub async fn chained_spawn(iters: u64, sig: &Signal) -> Duration {
        let start = Instant::now();
        for _ in 0..iters {
            let done = sig.tx.clone();
            drop(bulwark::spawn(async move { link(done, CHAIN) }));
            sig.wait("chained_spawn/bulwark-main");
        }
        start.elapsed()
    }
}

/// The runtimes for one group, built once.
struct Runtimes {
    bulwark: on_bulwark::Rt,
    no_watchdog: on_bulwark_no_watchdog::Rt,
    no_histograms: on_bulwark_no_histograms::Rt,
    guarded: on_bulwark_guarded::Rt,
    tokio: on_tokio::Rt,
}

fn runtimes() -> Runtimes {
    Runtimes {
        bulwark: on_bulwark::build(),
        no_watchdog: on_bulwark_no_watchdog::build(),
        no_histograms: on_bulwark_no_histograms::build(),
        guarded: on_bulwark_guarded::build(),
        tokio: on_tokio::build(),
    }
}

/// A group with settings that keep the whole bench to a few minutes.
fn group<'c>(
    c: &'c mut Criterion,
    name: &str,
) -> BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g
}

/// Benches a workload that takes `(&Rt, &Signal)` on every runtime; after
/// each batch of `bulwark-guarded` iterations (outside the timed part),
/// checks that its guards dropped nothing.
macro_rules! signalled {
    ($c:expr, $workload:ident) => {{
        let rts = runtimes();
        let sig = Signal::new();
        let mut g = group($c, stringify!($workload));
        g.bench_function("bulwark", |b| {
            b.iter(|| on_bulwark::$workload(&rts.bulwark, &sig))
        });
        g.bench_function("bulwark-main", |b| {
            b.iter_custom(|iters| on_bulwark_main::$workload(iters, &sig))
        });
        g.bench_function("bulwark-no-watchdog", |b| {
            b.iter(|| on_bulwark_no_watchdog::$workload(&rts.no_watchdog, &sig))
        });
        g.bench_function("bulwark-no-histograms", |b| {
            b.iter(|| on_bulwark_no_histograms::$workload(&rts.no_histograms, &sig))
        });
        bench_guarded(&mut g, stringify!($workload), &rts.guarded, || {
            on_bulwark_guarded::$workload(&rts.guarded, &sig)
        });
        g.bench_function("tokio", |b| {
            b.iter(|| on_tokio::$workload(&rts.tokio, &sig))
        });
        g.finish();
    }};
}

/// Benches `spawn_many_local` on one runtime, built for this function only
/// (so no other runtime's threads are alive while it is measured).
macro_rules! local_variant {
    ($g:expr, $sig:expr, $module:ident, $id:literal) => {{
        let rt = $module::build();
        $g.bench_function($id, |b| b.iter(|| $module::spawn_many_local(&rt, $sig)));
    }};
}

fn spawn_many_local(c: &mut Criterion) {
    let sig = Signal::new();
    let mut g = group(c, "spawn_many_local");
    local_variant!(g, &sig, on_bulwark, "bulwark");
    g.bench_function("bulwark-main", |b| {
        b.iter_custom(|iters| on_bulwark_main::spawn_many_local(iters, &sig))
    });
    local_variant!(g, &sig, on_bulwark_no_watchdog, "bulwark-no-watchdog");
    local_variant!(g, &sig, on_bulwark_no_histograms, "bulwark-no-histograms");
    {
        let rt = on_bulwark_guarded::build();
        bench_guarded(&mut g, "spawn_many_local", &rt, || {
            on_bulwark_guarded::spawn_many_local(&rt, &sig)
        });
    }
    local_variant!(g, &sig, on_bulwark_no_ceiling, "bulwark-no-ceiling");
    local_variant!(g, &sig, on_bulwark_deadline, "bulwark-deadline");
    local_variant!(g, &sig, on_tokio, "tokio");
    g.finish();
}

fn spawn_many_remote_idle(c: &mut Criterion) {
    let rts = runtimes();
    let mut g = group(c, "spawn_many_remote_idle");
    g.bench_function("bulwark", |b| {
        b.iter(|| on_bulwark::spawn_many_remote(&rts.bulwark))
    });
    g.bench_function("bulwark-main", |b| {
        b.iter_custom(|iters| on_bulwark_main::spawn_many_remote(iters, false))
    });
    g.bench_function("bulwark-no-watchdog", |b| {
        b.iter(|| on_bulwark_no_watchdog::spawn_many_remote(&rts.no_watchdog))
    });
    g.bench_function("bulwark-no-histograms", |b| {
        b.iter(|| on_bulwark_no_histograms::spawn_many_remote(&rts.no_histograms))
    });
    bench_guarded(&mut g, "spawn_many_remote_idle", &rts.guarded, || {
        on_bulwark_guarded::spawn_many_remote(&rts.guarded)
    });
    g.bench_function("tokio", |b| {
        b.iter(|| on_tokio::spawn_many_remote(&rts.tokio))
    });
    g.finish();
}

fn spawn_many_remote_busy1(c: &mut Criterion) {
    let rts = runtimes();
    let mut g = group(c, "spawn_many_remote_busy1");
    // Each runtime is loaded only while it is measured, so the other one's
    // busy tasks do not take CPU from it; all of them stop by the group's end.
    let bulwark_busy = Arc::new(AtomicBool::new(true));
    on_bulwark::start_busy(&rts.bulwark, &bulwark_busy);
    g.bench_function("bulwark", |b| {
        b.iter(|| on_bulwark::spawn_many_remote(&rts.bulwark))
    });
    bulwark_busy.store(false, Relaxed);
    // Its own busy tasks, started in its own runtime.
    g.bench_function("bulwark-main", |b| {
        b.iter_custom(|iters| on_bulwark_main::spawn_many_remote(iters, true))
    });

    let no_watchdog_busy = Arc::new(AtomicBool::new(true));
    on_bulwark_no_watchdog::start_busy(&rts.no_watchdog, &no_watchdog_busy);
    g.bench_function("bulwark-no-watchdog", |b| {
        b.iter(|| on_bulwark_no_watchdog::spawn_many_remote(&rts.no_watchdog))
    });
    no_watchdog_busy.store(false, Relaxed);

    let no_histograms_busy = Arc::new(AtomicBool::new(true));
    on_bulwark_no_histograms::start_busy(&rts.no_histograms, &no_histograms_busy);
    g.bench_function("bulwark-no-histograms", |b| {
        b.iter(|| on_bulwark_no_histograms::spawn_many_remote(&rts.no_histograms))
    });
    no_histograms_busy.store(false, Relaxed);

    let guarded_busy = Arc::new(AtomicBool::new(true));
    on_bulwark_guarded::start_busy(&rts.guarded, &guarded_busy);
    bench_guarded(&mut g, "spawn_many_remote_busy1", &rts.guarded, || {
        on_bulwark_guarded::spawn_many_remote(&rts.guarded)
    });
    guarded_busy.store(false, Relaxed);

    let tokio_busy = Arc::new(AtomicBool::new(true));
    on_tokio::start_busy(&rts.tokio, &tokio_busy);
    g.bench_function("tokio", |b| {
        b.iter(|| on_tokio::spawn_many_remote(&rts.tokio))
    });
    tokio_busy.store(false, Relaxed);
    g.finish();
}

fn yield_many(c: &mut Criterion) {
    signalled!(c, yield_many);
}

fn ping_pong(c: &mut Criterion) {
    signalled!(c, ping_pong);
}

fn chained_spawn(c: &mut Criterion) {
    signalled!(c, chained_spawn);
}

/// Private so that the function `criterion_group!` generates needs no docs.
mod all {
    use super::*;

    criterion_group!(
        benches,
        spawn_many_local,
        spawn_many_remote_idle,
        spawn_many_remote_busy1,
        yield_many,
        ping_pong,
        chained_spawn
    );
}

/// `criterion_main!`, and a non-zero exit if a `bulwark-guarded` function
/// was not measured.
fn main() {
    all::benches();
    Criterion::default().configure_from_args().final_summary();
    if GUARD_FAILED.load(Relaxed) {
        eprintln!("some bulwark-guarded functions were not measured: their guards dropped work");
        std::process::exit(1);
    }
}
