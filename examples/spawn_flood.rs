//! A spawn flood: N tasks that each sleep 10 ms, spawned as fast as a
//! generator task can, on bulwark with a task ceiling or on tokio unbounded.
//!
//! ```text
//! cargo run --release --example spawn_flood -- <bulwark-spawnwait|bulwark-wait|tokio> [N]
//! ```
//!
//! (`bulwark` is short for `bulwark-spawnwait`; N defaults to 1 000 000 and
//! may be written with underscores.) Run each runtime in its own process, as
//! above, so that the peak RSS it prints is that runtime's alone.
//!
//! Every variant has 4 workers. One generator task spawns the N tasks and
//! drops their handles; each task sleeps 10 ms, then counts a shared countdown
//! down, and the task that brings it to zero signals the main thread on a
//! channel. No `JoinHandle`s are held, on either runtime.
//!
//! - `bulwark-spawnwait`: `max_tasks(10_000)`, `Admission::Wait`, and the
//!   generator spawns with `task::Builder::new().spawn_wait(fut).await`. At
//!   the ceiling the generator itself waits for a permit, so it runs only as
//!   fast as tasks finish: backpressure reaches the producer, and at most
//!   10 000 tasks (and 10 000 futures) exist at a time.
//! - `bulwark-wait`: the same runtime, but the generator uses plain
//!   `bulwark::spawn`. Under `Admission::Wait` that never blocks the caller:
//!   tasks past the ceiling are queued (first come, first served) and start
//!   when a permit frees. At most 10 000 run at a time, but the queued tasks
//!   are all in memory, so the memory peak is tokio's kind, not the ceiling's.
//! - `tokio`: unbounded `tokio::spawn`; all N tasks are live at once.
//!
//! It prints one line: the runtime, N, the wall time from the first spawn
//! until the last task finished, how long the generator took to spawn them
//! all, the peak RSS (VmHWM from `/proc/self/status`), and the peak of live
//! tasks. On bulwark it adds the runtime's metrics: `tasks_admitted_peak`
//! (never above 10 000), the peak of `tasks_waiting` (sampled every 2 ms) and
//! the number of rejected spawns (0 under `Admission::Wait`).
//!
//! What it shows: with the ceiling, 1 000 000 x 10 ms runs in waves of 10 000,
//! so it takes at least 100 x 10 ms = 1 s (more, since the timer wheel rounds
//! a sleep up to the next 1 ms tick), while tokio runs them all at once and
//! finishes as soon as it can spawn 1 000 000 tasks; in exchange the
//! spawn-wait producer keeps memory at the ceiling's size instead of N's.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

/// Worker threads of every runtime.
const WORKERS: usize = 4;
/// bulwark's task ceiling.
const CEILING: usize = 10_000;
/// How long each task sleeps.
const SLEEP: Duration = Duration::from_millis(10);
/// Tasks spawned when N is not given.
const DEFAULT_N: usize = 1_000_000;
/// How often the sampler thread reads the live and waiting counts.
const SAMPLE_EVERY: Duration = Duration::from_millis(2);
/// Extra time past the least possible run time after which the flood is hung.
const HANG_SLACK: Duration = Duration::from_secs(120);

/// Shared by every task: tasks still to finish, and the channel the last one
/// signals on.
struct Countdown {
    rem: AtomicUsize,
    tx: mpsc::SyncSender<()>,
}

impl Countdown {
    fn new(n: usize) -> (Arc<Countdown>, mpsc::Receiver<()>) {
        let (tx, rx) = mpsc::sync_channel(1);
        let rem = AtomicUsize::new(n);
        (Arc::new(Countdown { rem, tx }), rx)
    }

    /// Counts one task down; the task that brings the count to zero signals.
    fn count_down(&self) {
        if self.rem.fetch_sub(1, Relaxed) == 1 {
            self.tx.send(()).expect("main thread gone");
        }
    }
}

/// Which runtime and which way of spawning.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// bulwark, generator using `spawn_wait(..).await`.
    SpawnWait,
    /// bulwark, generator using plain `bulwark::spawn` (tasks queue).
    Wait,
    /// tokio, unbounded `tokio::spawn`.
    Tokio,
}

impl Variant {
    fn parse(arg: &str) -> Option<Variant> {
        match arg {
            "bulwark" | "bulwark-spawnwait" => Some(Variant::SpawnWait),
            "bulwark-wait" => Some(Variant::Wait),
            "tokio" => Some(Variant::Tokio),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Variant::SpawnWait => "bulwark-spawnwait",
            Variant::Wait => "bulwark-wait",
            Variant::Tokio => "tokio",
        }
    }
}

/// What one run measured.
struct Run {
    /// From the first spawn until the last task finished.
    wall: Duration,
    /// From the first spawn until the generator had spawned the last task.
    spawned_in: Duration,
    /// Peak of live tasks seen by the sampler: bulwark's `tasks_live` (which
    /// counts queued tasks too), tokio's `num_alive_tasks`.
    live_peak: usize,
    /// bulwark only: admitted peak, waiting peak, rejected, spawned, completed.
    bulwark: Option<BulwarkCounts>,
}

struct BulwarkCounts {
    admitted_peak: usize,
    waiting_peak: usize,
    rejected: u64,
    spawned: u64,
    completed: u64,
}

/// Starts a thread that calls `sample` every [`SAMPLE_EVERY`] until the
/// returned flag is set; joining it gives the peaks of what `sample` returned.
fn sampler<S>(sample: S) -> (Arc<AtomicBool>, thread::JoinHandle<(usize, usize)>)
where
    S: Fn() -> (usize, usize) + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = thread::spawn(move || {
        let mut peak = (0, 0);
        while !flag.load(Relaxed) {
            let (a, b) = sample();
            peak = (peak.0.max(a), peak.1.max(b));
            thread::sleep(SAMPLE_EVERY);
        }
        peak
    });
    (stop, thread)
}

/// Waits for the countdown's signal, or exits if it does not come in time.
fn wait_done(rx: &mpsc::Receiver<()>, variant: Variant, n: usize) {
    let least = SLEEP * u32::try_from(n.div_ceil(CEILING)).unwrap_or(u32::MAX);
    let limit = least + HANG_SLACK;
    if rx.recv_timeout(limit).is_err() {
        eprintln!(
            "spawn_flood {}: not finished after {limit:?} (hung?)",
            variant.label()
        );
        std::process::exit(1);
    }
}

fn run_bulwark(variant: Variant, n: usize) -> Run {
    let rt = bulwark::Runtime::builder()
        .worker_threads(WORKERS)
        .max_tasks(CEILING)
        .admission(bulwark::runtime::Admission::Wait)
        .build()
        .expect("building the bulwark runtime");
    let handle = rt.handle().clone();
    let (stop, peaks) = sampler(move || {
        let m = handle.metrics();
        (m.tasks_live as usize, m.tasks_waiting)
    });
    let (done, rx) = Countdown::new(n);

    let start = Instant::now();
    let generator = rt.spawn(async move {
        for _ in 0..n {
            let done = done.clone();
            let task = async move {
                bulwark::time::sleep(SLEEP).await;
                done.count_down();
            };
            if variant == Variant::SpawnWait {
                let admitted = bulwark::task::Builder::new().spawn_wait(task).await;
                drop(admitted.expect("spawn_wait inside the runtime"));
            } else {
                drop(bulwark::spawn(task));
            }
        }
        start.elapsed()
    });
    wait_done(&rx, variant, n);
    let wall = start.elapsed();
    let spawned_in = rt.block_on(generator).expect("the generator task failed");
    stop.store(true, Relaxed);
    let (live_peak, waiting_peak) = peaks.join().expect("sampler thread panicked");

    // The last task signals from inside its poll; its completion is counted
    // just after. Wait (briefly) for the books to settle.
    let settle = Instant::now();
    let mut m = rt.metrics();
    while m.tasks_live != 0 && settle.elapsed() < Duration::from_secs(1) {
        thread::sleep(Duration::from_millis(1));
        m = rt.metrics();
    }
    Run {
        wall,
        spawned_in,
        live_peak,
        bulwark: Some(BulwarkCounts {
            admitted_peak: m.tasks_admitted_peak,
            waiting_peak,
            rejected: m.tasks_rejected,
            spawned: m.tasks_spawned,
            completed: m.tasks_completed,
        }),
    }
}

fn run_tokio(n: usize) -> Run {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    let handle = rt.handle().clone();
    let (stop, peaks) = sampler(move || (handle.metrics().num_alive_tasks(), 0));
    let (done, rx) = Countdown::new(n);

    let start = Instant::now();
    let generator = rt.spawn(async move {
        for _ in 0..n {
            let done = done.clone();
            drop(tokio::spawn(async move {
                tokio::time::sleep(SLEEP).await;
                done.count_down();
            }));
        }
        start.elapsed()
    });
    wait_done(&rx, Variant::Tokio, n);
    let wall = start.elapsed();
    let spawned_in = rt.block_on(generator).expect("the generator task failed");
    stop.store(true, Relaxed);
    let (live_peak, _) = peaks.join().expect("sampler thread panicked");
    Run {
        wall,
        spawned_in,
        live_peak,
        bulwark: None,
    }
}

/// Peak resident set size of this process in MiB (VmHWM), if readable.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: spawn_flood <bulwark-spawnwait|bulwark-wait|tokio> [N (default {DEFAULT_N})]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(variant) = args.first().and_then(|a| Variant::parse(a)) else {
        return usage();
    };
    let n = match args.get(1) {
        None => DEFAULT_N,
        Some(a) => match a.replace('_', "").parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => return usage(),
        },
    };

    let run = match variant {
        Variant::Tokio => run_tokio(n),
        _ => run_bulwark(variant, n),
    };
    let rss = peak_rss_mib().map_or_else(|| "?".to_string(), |m| format!("{m:.1}"));
    let mut line = format!(
        "{} N={n} time={:.3}s spawned_in={:.3}s peak_rss={rss}MiB live_peak={}",
        variant.label(),
        run.wall.as_secs_f64(),
        run.spawned_in.as_secs_f64(),
        run.live_peak,
    );
    let mut odd = false;
    if let Some(b) = &run.bulwark {
        line.push_str(&format!(
            " tasks_admitted_peak={} tasks_waiting_peak={} rejected={} spawned={} completed={}",
            b.admitted_peak, b.waiting_peak, b.rejected, b.spawned, b.completed
        ));
        // The generator is one task more than N.
        odd = b.admitted_peak > CEILING || b.rejected != 0 || b.completed != n as u64 + 1;
    }
    println!("{line}");
    if odd {
        eprintln!(
            "spawn_flood: unexpected counts (ceiling {CEILING}, expected no rejections and N + 1 completions)"
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
