//! What bulwark's guards cost, measured as pairwise ratios between runtimes
//! that take turns in one process.
//!
//! ```text
//! cargo run --release --example guard_cost -- [rounds] [workload...]
//! ```
//!
//! `rounds` defaults to 21; the workloads default to all six of
//! `benches/runtime.rs` (tokio's scheduler benchmarks): `spawn_many_local`,
//! `spawn_many_remote_idle`, `spawn_many_remote_busy1`, `yield_many`,
//! `ping_pong` and `chained_spawn`, with the same sizes. A full run with 21
//! rounds takes well under a minute.
//!
//! # Why
//!
//! Criterion measures one variant after the other. On a shared, noisy
//! machine the load changes between the two, and the ratio of two variants
//! drifts by 10-30% from one run to the next. Here every variant runs one
//! iteration per round, the rounds interleave the variants, and each ratio is
//! taken within a round (`ratio_i = time_variant_i / time_base_i`), so slow
//! phases of the machine hit numerator and denominator alike. What is
//! reported is the median of those per-round ratios and its 25th-75th
//! percentile range.
//!
//! # What runs
//!
//! Nine runtimes, each with 4 worker threads, built once and alive for the
//! whole run (an idle runtime's workers are parked):
//!
//! - `bulwark`: `bulwark::Runtime::builder()` with its defaults (a task
//!   ceiling of 1 000 000, `Admission::Reject`, no default deadline, the
//!   watchdog on with compensation, lost-task detection).
//! - `bulwark-deadline`: `.default_deadline(Some(60 s))`: every task gets a
//!   deadline timer.
//! - `bulwark-adaptive`: `.admission(Admission::adaptive())`: CoDel shedding
//!   on the scheduling delay.
//! - `bulwark-guarded`: all three: `.max_tasks(100_000)`, adaptive, default
//!   deadline 60 s.
//! - `bulwark-no-ceiling`: `.max_tasks(usize::MAX)`: no ceiling and no permit
//!   accounting.
//! - `bulwark-no-watchdog`: `.watchdog(Watchdog::off())`: no watchdog thread,
//!   and workers do not lend their seat around each poll (no compensation).
//! - `bulwark-no-histograms`: `.histograms(false)`: no poll timed, no wake
//!   stamped, no lifetime recorded.
//! - `bulwark-main`: the default runtime as `#[bulwark::main(worker_threads
//!   = 4)]` builds it, held open on a thread of its own (`MainRt`); the
//!   workloads run through its `Handle`. Against `bulwark`, what starting
//!   bulwark through the attribute costs.
//! - `tokio`: tokio's multi-thread runtime.
//!
//! The workload code is written once in a macro instantiated for the
//! bulwark and tokio APIs, as in `benches/runtime.rs`; the five bulwark
//! variants share one instance and differ only in how their runtime is built.
//! Two changes from the bench, the same on both sides, so that a guard that
//! drops work cannot hang the run: each task signals completion through a
//! token counted when it is dropped (when its task finishes, or when the
//! runtime drops the future unpolled), and the oneshot sends and join results
//! are not unwrapped.
//!
//! # How it measures
//!
//! Per workload: 3 warm-up rounds, then `rounds` rounds. In round `r` every
//! runtime runs one iteration, starting with runtime `r mod 9`, in forward
//! order on even rounds and backward on odd ones (so none always goes first,
//! and none always follows the same neighbour). The time of an iteration is
//! its wall time as seen from the driving thread, as in the bench. Between
//! two iterations the driver sleeps 2 ms (untimed), so one runtime's
//! leftovers do not land in the next one's time. In
//! `spawn_many_remote_busy1` the 8 busy tasks are started on the measured
//! runtime before its iteration (and the clock starts once all of them have
//! run) and stopped after it, so only that runtime is loaded.
//!
//! After every iteration (untimed) the runtime's metrics are read: if a
//! bulwark runtime rejected, shed or deadline-cancelled a task (or one
//! panicked, or a join failed), the workload says so loudly with the counts,
//! the ratios it is in are marked `!`, and the process exits non-zero at the
//! end. Every wait is bounded: an iteration that has not finished after 60 s
//! panics naming the workload and runtime, and a watchdog ends the process if
//! anything else (a runtime's shutdown) hangs.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Worker threads of every runtime.
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
/// A workload that has not finished after this long is hung.
const HANG: Duration = Duration::from_secs(60);
/// How much longer than [`HANG`] the watchdog lets any step run.
const WATCHDOG_SLACK: Duration = Duration::from_secs(30);
/// Default deadline of `bulwark-deadline` and `bulwark-guarded`: far beyond
/// any iteration, so it never fires.
const DEADLINE: Duration = Duration::from_secs(60);
/// Task ceiling of `bulwark-guarded`: ten times the most live tasks of any
/// workload, so it is checked on every spawn but never reached.
const GUARDED_MAX_TASKS: usize = 100_000;
/// Measured rounds when none are given.
const DEFAULT_ROUNDS: usize = 21;
/// Unmeasured rounds before the measured ones, per workload.
const WARMUP_ROUNDS: usize = 3;
/// Untimed pause after each iteration.
const SETTLE: Duration = Duration::from_millis(2);

/// Completion signal of one workload: a countdown of tasks still to finish,
/// and a channel the last one sends on.
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

    /// Arms the countdown for `n` tokens.
    fn arm(&self, n: usize) {
        self.rem.store(n, Relaxed);
    }

    /// One token: `n` of the countdown, counted down when it is dropped.
    fn tokens(&self, n: usize) -> Token {
        Token {
            n,
            rem: self.rem.clone(),
            tx: self.tx.clone(),
        }
    }

    fn token(&self) -> Token {
        self.tokens(1)
    }

    /// Tokens not yet dropped.
    fn pending(&self) -> usize {
        self.rem.load(Relaxed)
    }

    /// Blocks until the last token is dropped; panics, naming `what`, if that
    /// does not happen within [`HANG`].
    fn wait(&self, what: &str) {
        if self.rx.recv_timeout(HANG).is_err() {
            panic!(
                "{what}: not finished after {HANG:?} ({} of its tasks never ended): hung?",
                self.pending()
            );
        }
    }
}

/// A share of a [`Signal`]'s countdown, counted down when dropped: when the
/// task holding it ends, or when the runtime drops its future unpolled
/// (rejected, shed, past its deadline). So a dropped task cannot hang a
/// workload; the metrics check reports it instead.
struct Token {
    n: usize,
    rem: Arc<AtomicUsize>,
    tx: mpsc::SyncSender<()>,
}

impl Token {
    /// Splits one off this token.
    fn take_one(&mut self) -> Token {
        assert!(self.n > 0, "token exhausted");
        self.n -= 1;
        Token {
            n: 1,
            rem: self.rem.clone(),
            tx: self.tx.clone(),
        }
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        if self.n > 0 && self.rem.fetch_sub(self.n, Relaxed) == self.n {
            // Never blocks a worker; the channel is empty whenever armed.
            let _ = self.tx.try_send(());
        }
    }
}

/// The busy tasks of `spawn_many_remote_busy1`.
struct Busy {
    run: Arc<AtomicBool>,
    started: Arc<AtomicUsize>,
    ended: Signal,
}

impl Busy {
    fn new() -> Busy {
        Busy {
            run: Arc::new(AtomicBool::new(false)),
            started: Arc::new(AtomicUsize::new(0)),
            ended: Signal::new(),
        }
    }

    /// Waits (at most [`HANG`]) until every busy task has been polled, or
    /// one has ended early (dropped by a guard: the metrics say so).
    fn wait_started(&self, what: &str) {
        let since = Instant::now();
        while self.started.load(Relaxed) < BUSY_TASKS && self.ended.pending() == BUSY_TASKS {
            if since.elapsed() > HANG {
                panic!("{what}: the busy tasks had not started after {HANG:?}");
            }
            thread::sleep(Duration::from_micros(50));
        }
    }

    /// Stops the busy tasks and waits (at most [`HANG`]) until all have ended.
    fn stop(&self, what: &str) {
        self.run.store(false, Relaxed);
        self.ended
            .wait(&format!("{what} (stopping the busy tasks)"));
    }
}

/// Spins on the clock for [`BUSY_SPIN`] (a poll that does CPU work).
fn spin() {
    let start = Instant::now();
    while start.elapsed() < BUSY_SPIN {
        std::hint::spin_loop();
    }
}

/// Generates one module of workloads for one runtime API.
///
/// `$rt` is the runtime type (with `block_on` and `spawn`), `$spawn` the
/// free spawn function usable inside the runtime, `$yield_now` its
/// `yield_now` and `$timeout` its `time::timeout`. Each workload function
/// runs one iteration; `what` names it in a hang's panic.
macro_rules! workloads {
    ($name:ident, $rt:ty, $spawn:path, $yield_now:path, $timeout:path) => {
        mod $name {
            use super::*;

            pub fn spawn_many_local(rt: &$rt, sig: &Signal, what: &str) {
                sig.arm(NUM_SPAWN);
                rt.block_on(async {
                    for _ in 0..NUM_SPAWN {
                        let done = sig.token();
                        drop($spawn(async move { drop(done) }));
                    }
                    sig.wait(what);
                });
            }

            /// Returns how many joins failed.
            pub fn spawn_many_remote(rt: &$rt, what: &str) -> usize {
                let mut handles = Vec::with_capacity(NUM_SPAWN);
                for _ in 0..NUM_SPAWN {
                    handles.push(rt.spawn(async {}));
                }
                rt.block_on(async {
                    let joins = async {
                        let mut failed = 0;
                        for handle in handles {
                            if handle.await.is_err() {
                                failed += 1;
                            }
                        }
                        failed
                    };
                    match $timeout(HANG, joins).await {
                        Ok(failed) => failed,
                        Err(_) => panic!("{what}: not finished after {HANG:?}: hung?"),
                    }
                })
            }

            /// Starts the tasks that keep the workers busy until `busy.run`
            /// is cleared.
            pub fn start_busy(rt: &$rt, busy: &Busy) {
                busy.run.store(true, Relaxed);
                busy.started.store(0, Relaxed);
                busy.ended.arm(BUSY_TASKS);
                for _ in 0..BUSY_TASKS {
                    let run = busy.run.clone();
                    let started = busy.started.clone();
                    let ended = busy.ended.token();
                    drop(rt.spawn(async move {
                        let _ended = ended;
                        started.fetch_add(1, Relaxed);
                        while run.load(Relaxed) {
                            $yield_now().await;
                            spin();
                        }
                    }));
                }
            }

            pub fn yield_many(rt: &$rt, sig: &Signal, what: &str) {
                sig.arm(YIELD_TASKS);
                for _ in 0..YIELD_TASKS {
                    let done = sig.token();
                    drop(rt.spawn(async move {
                        for _ in 0..NUM_YIELD {
                            $yield_now().await;
                        }
                        drop(done);
                    }));
                }
                sig.wait(what);
            }

            pub fn ping_pong(rt: &$rt, sig: &Signal, what: &str) {
                sig.arm(NUM_PINGS);
                let mut left = sig.tokens(NUM_PINGS);
                rt.block_on(async move {
                    drop($spawn(async move {
                        for _ in 0..NUM_PINGS {
                            let done = left.take_one();
                            drop($spawn(async move {
                                let (ping_tx, ping_rx) = tokio::sync::oneshot::channel();
                                let (pong_tx, pong_rx) = tokio::sync::oneshot::channel();
                                drop($spawn(async move {
                                    if ping_rx.await.is_ok() {
                                        let _ = pong_tx.send(());
                                    }
                                }));
                                let _ = ping_tx.send(());
                                let _ = pong_rx.await;
                                drop(done);
                            }));
                        }
                    }));
                    sig.wait(what);
                });
            }

            /// One link of the chain: spawns the next link, or signals at the
            /// end.
            fn link(done: Token, left: usize) {
                if left == 0 {
                    drop(done);
                } else {
                    drop($spawn(async move { link(done, left - 1) }));
                }
            }

            pub fn chained_spawn(rt: &$rt, sig: &Signal, what: &str) {
                sig.arm(1);
                let done = sig.token();
                rt.block_on(async move {
                    drop($spawn(async move { link(done, CHAIN) }));
                    sig.wait(what);
                });
            }
        }
    };
}

workloads!(
    on_bulwark,
    bulwark::Runtime,
    bulwark::spawn,
    bulwark::task::yield_now,
    bulwark::time::timeout
);

workloads!(
    on_bulwark_handle,
    bulwark::runtime::Handle,
    bulwark::spawn,
    bulwark::task::yield_now,
    bulwark::time::timeout
);

workloads!(
    on_tokio,
    tokio::runtime::Runtime,
    tokio::spawn,
    tokio::task::yield_now,
    tokio::time::timeout
);

/// The workloads, in the bench's order.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    SpawnManyLocal,
    SpawnManyRemoteIdle,
    SpawnManyRemoteBusy1,
    YieldMany,
    PingPong,
    ChainedSpawn,
}

const WORKLOADS: [Workload; 6] = [
    Workload::SpawnManyLocal,
    Workload::SpawnManyRemoteIdle,
    Workload::SpawnManyRemoteBusy1,
    Workload::YieldMany,
    Workload::PingPong,
    Workload::ChainedSpawn,
];

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::SpawnManyLocal => "spawn_many_local",
            Workload::SpawnManyRemoteIdle => "spawn_many_remote_idle",
            Workload::SpawnManyRemoteBusy1 => "spawn_many_remote_busy1",
            Workload::YieldMany => "yield_many",
            Workload::PingPong => "ping_pong",
            Workload::ChainedSpawn => "chained_spawn",
        }
    }
}

/// Runs one iteration of `$w` with the workload module `$m` on `$rt`;
/// evaluates to its time and the number of failed joins.
macro_rules! iteration {
    ($m:ident, $rt:expr, $w:expr, $sig:expr, $busy:expr, $what:expr) => {{
        let (rt, sig, busy, what) = ($rt, $sig, $busy, $what);
        match $w {
            Workload::SpawnManyLocal => timed(|| {
                $m::spawn_many_local(rt, sig, what);
                0
            }),
            Workload::SpawnManyRemoteIdle => timed(|| $m::spawn_many_remote(rt, what)),
            Workload::SpawnManyRemoteBusy1 => {
                $m::start_busy(rt, busy);
                busy.wait_started(what);
                let res = timed(|| $m::spawn_many_remote(rt, what));
                busy.stop(what);
                res
            }
            Workload::YieldMany => timed(|| {
                $m::yield_many(rt, sig, what);
                0
            }),
            Workload::PingPong => timed(|| {
                $m::ping_pong(rt, sig, what);
                0
            }),
            Workload::ChainedSpawn => timed(|| {
                $m::chained_spawn(rt, sig, what);
                0
            }),
        }
    }};
}

/// Times `f`, which returns a count of failed joins.
fn timed(f: impl FnOnce() -> usize) -> (Duration, usize) {
    let start = Instant::now();
    let failed = f();
    (start.elapsed(), failed)
}

enum Rt {
    Bulwark(bulwark::Runtime),
    /// `bulwark-main`: a runtime started by `#[bulwark::main]`.
    Main(MainRt),
    Tokio(tokio::runtime::Runtime),
}

/// A runtime built by `#[bulwark::main(worker_threads = 4)]` and held open:
/// the attributed function runs on a thread of its own, hands out its
/// runtime's handle, and awaits the word to stop (its `block_on` thread
/// parks, as a service's `main` does while its server runs). The workloads run through the handle, whose `block_on` and
/// `spawn` are what `Runtime`'s call.
struct MainRt {
    handle: bulwark::runtime::Handle,
    stop: bulwark::sync::oneshot::Sender<()>,
    thread: thread::JoinHandle<()>,
}

// The attribute takes a literal.
const _: () = assert!(
    WORKERS == 4,
    "keep hold_main_runtime's worker_threads equal to WORKERS"
);

#[bulwark::main(worker_threads = 4)]
async fn hold_main_runtime(
    give: mpsc::Sender<bulwark::runtime::Handle>,
    stop: bulwark::sync::oneshot::Receiver<()>,
) {
    give.send(bulwark::runtime::Handle::current())
        .expect("the handle's receiver");
    // Sender dropped or a stop: either ends the runtime.
    let _ = stop.await;
}

impl MainRt {
    fn start() -> MainRt {
        let (give, handle) = mpsc::channel();
        let (stop, stopped) = bulwark::sync::oneshot::channel();
        let thread = thread::Builder::new()
            .name("bulwark-main".into())
            .spawn(move || hold_main_runtime(give, stopped))
            .expect("spawning the bulwark-main thread");
        let handle = handle
            .recv_timeout(HANG)
            .expect("the #[bulwark::main] runtime's handle");
        MainRt {
            handle,
            stop,
            thread,
        }
    }

    fn shutdown(self) {
        let _ = self.stop.send(());
        self.thread.join().expect("the bulwark-main thread");
    }
}

/// One runtime under test.
struct Variant {
    name: &'static str,
    rt: Rt,
}

/// Work a bulwark runtime dropped (or lost to a panic), from its metrics.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Drops {
    rejected: u64,
    shed: u64,
    deadline: u64,
    panicked: u64,
}

impl Drops {
    fn since(self, before: Drops) -> Drops {
        Drops {
            rejected: self.rejected - before.rejected,
            shed: self.shed - before.shed,
            deadline: self.deadline - before.deadline,
            panicked: self.panicked - before.panicked,
        }
    }

    fn any(self) -> bool {
        self != Drops::default()
    }
}

impl Variant {
    /// The runtime's drop counts so far (none for tokio, which has no
    /// guards).
    fn drops(&self) -> Drops {
        match &self.rt {
            Rt::Bulwark(rt) => {
                let m = rt.metrics();
                Drops {
                    rejected: m.tasks_rejected,
                    shed: m.rejected_shedding,
                    deadline: m.tasks_deadline_exceeded,
                    panicked: m.tasks_panicked,
                }
            }
            Rt::Main(rt) => {
                let m = rt.handle.metrics();
                Drops {
                    rejected: m.tasks_rejected,
                    shed: m.rejected_shedding,
                    deadline: m.tasks_deadline_exceeded,
                    panicked: m.tasks_panicked,
                }
            }
            Rt::Tokio(_) => Drops::default(),
        }
    }

    fn run(&self, w: Workload, sig: &Signal, busy: &Busy, what: &str) -> (Duration, usize) {
        match &self.rt {
            Rt::Bulwark(rt) => iteration!(on_bulwark, rt, w, sig, busy, what),
            Rt::Main(rt) => iteration!(on_bulwark_handle, &rt.handle, w, sig, busy, what),
            Rt::Tokio(rt) => iteration!(on_tokio, rt, w, sig, busy, what),
        }
    }

    fn shutdown(self) {
        match self.rt {
            Rt::Bulwark(rt) => rt.shutdown_timeout(HANG),
            Rt::Main(rt) => rt.shutdown(),
            Rt::Tokio(rt) => rt.shutdown_timeout(HANG),
        }
    }
}

/// Names of the two baselines every variant is compared with.
const BASES: [&str; 2] = ["bulwark", "tokio"];

fn build_variants() -> Vec<Variant> {
    use bulwark::runtime::Admission;
    fn bulwark(
        name: &'static str,
        configure: impl FnOnce(&mut bulwark::runtime::Builder),
    ) -> Variant {
        let mut b = bulwark::Runtime::builder();
        b.worker_threads(WORKERS);
        configure(&mut b);
        let rt = b
            .build()
            .unwrap_or_else(|e| panic!("building the {name} runtime: {e}"));
        Variant {
            name,
            rt: Rt::Bulwark(rt),
        }
    }
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    vec![
        bulwark("bulwark", |_| {}),
        bulwark("bulwark-deadline", |b| {
            b.default_deadline(Some(DEADLINE));
        }),
        bulwark("bulwark-adaptive", |b| {
            b.admission(Admission::adaptive());
        }),
        bulwark("bulwark-guarded", |b| {
            b.max_tasks(GUARDED_MAX_TASKS)
                .admission(Admission::adaptive())
                .default_deadline(Some(DEADLINE));
        }),
        bulwark("bulwark-no-ceiling", |b| {
            b.max_tasks(usize::MAX);
        }),
        bulwark("bulwark-no-watchdog", |b| {
            b.watchdog(bulwark::runtime::Watchdog::off());
        }),
        bulwark("bulwark-no-histograms", |b| {
            b.histograms(false);
        }),
        Variant {
            name: "bulwark-main",
            rt: Rt::Main(MainRt::start()),
        },
        Variant {
            name: "tokio",
            rt: Rt::Tokio(tokio),
        },
    ]
}

/// What the run is doing now, and since when: read by the watchdog.
static STEP: Mutex<Option<(String, Instant)>> = Mutex::new(None);

fn step(what: String) {
    *STEP.lock().unwrap_or_else(|e| e.into_inner()) = Some((what, Instant::now()));
}

/// Ends the process if one step takes longer than [`HANG`] plus
/// [`WATCHDOG_SLACK`] (the steps' own waits panic at [`HANG`]).
fn start_watchdog() {
    thread::spawn(|| loop {
        thread::sleep(Duration::from_secs(1));
        let guard = STEP.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((what, since)) = &*guard {
            if since.elapsed() > HANG + WATCHDOG_SLACK {
                eprintln!(
                    "!!! guard_cost: stuck for {:?} in {what}: giving up",
                    since.elapsed()
                );
                std::process::exit(2);
            }
        }
    });
}

/// Median and 25th-75th percentile of some ratios.
#[derive(Clone, Copy)]
struct Spread {
    median: f64,
    lo: f64,
    hi: f64,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let i = pos.floor() as usize;
    let frac = pos - i as f64;
    match sorted.get(i + 1) {
        Some(next) => sorted[i] * (1.0 - frac) + next * frac,
        None => sorted[i],
    }
}

fn spread(mut xs: Vec<f64>) -> Spread {
    xs.sort_by(f64::total_cmp);
    Spread {
        median: quantile(&xs, 0.5),
        lo: quantile(&xs, 0.25),
        hi: quantile(&xs, 0.75),
    }
}

/// `1.03 (0.99-1.06)`, with a `!` if the variant dropped work.
fn cell(s: Option<Spread>, marked: bool) -> String {
    match s {
        None => "-".to_string(),
        Some(s) => format!(
            "{:.2} ({:.2}-{:.2}){}",
            s.median,
            s.lo,
            s.hi,
            if marked { "!" } else { "" }
        ),
    }
}

/// One workload's results.
struct Outcome {
    workload: Workload,
    /// Per variant: its ratio against each of [`BASES`] (`None` against
    /// itself).
    ratios: Vec<[Option<Spread>; 2]>,
    /// Per variant: whether it dropped work in this workload.
    marked: Vec<bool>,
}

/// Runs `rounds` rounds of `w` on every variant and prints its block.
fn measure(w: Workload, variants: &[Variant], rounds: usize) -> Outcome {
    let n = variants.len();
    let sig = Signal::new();
    let busy = Busy::new();
    let started = Instant::now();
    let before: Vec<Drops> = variants.iter().map(Variant::drops).collect();
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); n];
    let mut failed_joins = vec![0usize; n];
    let mut bad_rounds = vec![0usize; n];
    for round in 0..WARMUP_ROUNDS + rounds {
        let warm_up = round < WARMUP_ROUNDS;
        for k in 0..n {
            // Starts at `round mod n`, forward on even rounds, backward on
            // odd ones.
            let i = if round % 2 == 0 {
                (round + k) % n
            } else {
                (round + n - k) % n
            };
            let v = &variants[i];
            let what = format!("{}/{}", w.name(), v.name);
            step(format!("{what}, round {round}"));
            let drops_before = v.drops();
            let (time, failed) = v.run(w, &sig, &busy, &what);
            thread::sleep(SETTLE);
            let dropped = failed > 0 || v.drops().since(drops_before).any();
            failed_joins[i] += failed;
            if !warm_up {
                times[i].push(time.as_secs_f64());
                bad_rounds[i] += usize::from(dropped);
            }
        }
    }
    let elapsed = started.elapsed();

    let base_index: Vec<usize> = BASES
        .iter()
        .map(|b| variants.iter().position(|v| v.name == *b).expect("a base"))
        .collect();
    let ratios: Vec<[Option<Spread>; 2]> = (0..n)
        .map(|i| {
            let against = |b: usize| {
                (b != i).then(|| {
                    spread(
                        times[i]
                            .iter()
                            .zip(&times[b])
                            .map(|(t, base)| t / base)
                            .collect(),
                    )
                })
            };
            [against(base_index[0]), against(base_index[1])]
        })
        .collect();

    let mut marked = vec![false; n];
    let mut alarms = String::new();
    for (i, v) in variants.iter().enumerate() {
        let d = v.drops().since(before[i]);
        if d.any() || failed_joins[i] > 0 {
            marked[i] = true;
            let _ = writeln!(
                alarms,
                "  !!! {}/{}: DROPPED WORK: {} rejected ({} of them shed at spawn), \
                 {} past their deadline, {} panicked, {} failed joins; in {} of {} \
                 measured rounds (+ warm-up): its ratios are marked '!'",
                w.name(),
                v.name,
                d.rejected,
                d.shed,
                d.deadline,
                d.panicked,
                failed_joins[i],
                bad_rounds[i],
                rounds,
            );
        }
    }

    println!(
        "{} ({} rounds + {} warm-up, {:.1} s)",
        w.name(),
        rounds,
        WARMUP_ROUNDS,
        elapsed.as_secs_f64()
    );
    println!(
        "  {:<20} {:>10}  {:<19} x/tokio",
        "variant", "median", "x/bulwark"
    );
    for (i, v) in variants.iter().enumerate() {
        let median = spread(times[i].clone()).median;
        println!(
            "  {:<20} {:>7.3} ms  {:<19} {}",
            v.name,
            median * 1e3,
            cell(ratios[i][0], marked[i]),
            cell(ratios[i][1], marked[i]),
        );
    }
    print!("{alarms}");
    Outcome {
        workload: w,
        ratios,
        marked,
    }
}

/// The final table: every ratio, one matrix per base.
fn print_table(variants: &[Variant], outcomes: &[Outcome]) {
    for (b, base) in BASES.iter().enumerate() {
        println!();
        println!("x/{base}: median (25th-75th percentile) of the per-round ratios");
        let mut head = format!("{:<24}", "workload");
        for v in variants.iter().filter(|v| v.name != *base) {
            let _ = write!(head, " {:<19}", v.name);
        }
        println!("{}", head.trim_end());
        for o in outcomes {
            let mut line = format!("{:<24}", o.workload.name());
            for (i, v) in variants.iter().enumerate() {
                if v.name != *base {
                    let _ = write!(line, " {:<19}", cell(o.ratios[i][b], o.marked[i]));
                }
            }
            println!("{}", line.trim_end());
        }
    }
}

fn usage() -> String {
    let names: Vec<&str> = WORKLOADS.iter().map(|w| w.name()).collect();
    format!(
        "usage: guard_cost [rounds] [workload...]\n  rounds: default {DEFAULT_ROUNDS}\n  \
         workloads: {} (default: all)",
        names.join(" ")
    )
}

fn main() -> ExitCode {
    let mut rounds = DEFAULT_ROUNDS;
    let mut chosen = Vec::new();
    for (k, arg) in std::env::args().skip(1).enumerate() {
        if arg == "-h" || arg == "--help" {
            println!("{}", usage());
            return ExitCode::SUCCESS;
        }
        if k == 0 {
            if let Ok(r) = arg.replace('_', "").parse::<usize>() {
                if r == 0 {
                    eprintln!("rounds must be at least 1\n{}", usage());
                    return ExitCode::FAILURE;
                }
                rounds = r;
                continue;
            }
        }
        match WORKLOADS.iter().find(|w| w.name() == arg) {
            Some(w) if !chosen.contains(w) => chosen.push(*w),
            Some(_) => {}
            None => {
                eprintln!("unknown workload {arg:?}\n{}", usage());
                return ExitCode::FAILURE;
            }
        }
    }
    if chosen.is_empty() {
        chosen = WORKLOADS.to_vec();
    }

    start_watchdog();
    let started = Instant::now();
    step("building the runtimes".to_string());
    let variants = build_variants();
    println!(
        "guard_cost: {} runtimes x {} workers, {} rounds, {} CPUs; \
         ratio = time(x) / time(base) within a round: median (25th-75th pct)",
        variants.len(),
        WORKERS,
        rounds,
        thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let mut outcomes = Vec::new();
    for w in chosen {
        outcomes.push(measure(w, &variants, rounds));
    }
    print_table(&variants, &outcomes);
    let dropped = outcomes.iter().any(|o| o.marked.iter().any(|m| *m));
    for v in variants {
        step(format!("shutting down {}", v.name));
        v.shutdown();
    }
    println!("total {:.1} s", started.elapsed().as_secs_f64());
    if dropped {
        eprintln!("!!! some bulwark runtimes dropped work: their ratios are marked '!'");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
