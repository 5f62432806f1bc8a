//! The hostile-load showdown: one HTTP service (`service.rs`), written once,
//! on three stacks (`stacks.rs`): tokio-naive, tokio-hardened and bulwark.
//!
//! ```text
//! cargo run --release --example showdown [-- --quick] [--scenario NAME] [--stack NAME]
//! ```
//!
//! Each cell (scenario x stack) starts the server as a child process of this
//! one (`--serve STACK --port 0`, `RLIMIT_NOFILE` 4,096), runs good clients
//! and the scenario's hostile clients against it from this process, reads
//! the child's peak RSS (`VmHWM`) and fd count from `/proc`, and for bulwark
//! the guard counters the child prints when its stdin closes. Results: a
//! table on stdout, `target/showdown/results.json` and
//! `target/showdown/showdown.svg`. Everything stays on 127.0.0.1 and every
//! loop is bounded in count and time.

mod endpoint;
mod load;
mod report;
mod stacks;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The stacks, in table order. `bulwark-ceiling` is bulwark with the
/// ceiling alone (`Admission::Reject`, no adaptive shedding): it runs by
/// default only where the two policies part ways ([`POLICY_SCENARIOS`]).
pub const STACKS: [&str; 4] = [
    "tokio-naive",
    "tokio-hardened",
    "bulwark",
    "bulwark-ceiling",
];
/// Scenarios where `bulwark-ceiling` runs by default: a fan-out flood (where
/// the ceiling is the guard) and a CPU flood (where it is not).
pub const POLICY_SCENARIOS: [&str; 2] = ["fanout", "cpu"];
/// The scenarios, in table order.
pub const SCENARIOS: [&str; 11] = [
    "benign",
    "fanout",
    "fanout-holdon",
    "cpu",
    "block",
    "hang",
    "hang-holdon",
    "leak",
    "slowloris",
    "slowloris-fds",
    "all",
];
/// Worker threads of every stack (the machine has 2 cores).
const WORKERS: usize = 2;
/// The server's fd limit, every stack.
const NOFILE: u64 = 4_096;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    if let Some(stack) = opt("--serve") {
        let port: u16 = opt("--port").and_then(|p| p.parse().ok()).unwrap_or(0);
        serve(&stack, port);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let scenarios: Vec<&str> = match opt("--scenario") {
        Some(s) => SCENARIOS.iter().copied().filter(|x| *x == s).collect(),
        None => SCENARIOS.to_vec(),
    };
    let stacks: Vec<&str> = match opt("--stack") {
        Some(s) => STACKS.iter().copied().filter(|x| *x == s).collect(),
        None => STACKS.to_vec(),
    };
    if scenarios.is_empty() || stacks.is_empty() {
        eprintln!("showdown: unknown --scenario or --stack (scenarios: {SCENARIOS:?}, stacks: {STACKS:?})");
        std::process::exit(2);
    }
    let secs = if quick { 2.0 } else { 5.0 };
    raise_nofile();
    let mut cells = Vec::new();
    let all_stacks = opt("--stack").is_none();
    for scenario in &scenarios {
        for stack in &stacks {
            if all_stacks && *stack == "bulwark-ceiling" && !POLICY_SCENARIOS.contains(scenario) {
                continue;
            }
            let cell = run_cell(scenario, stack, Duration::from_secs_f64(secs));
            eprintln!("{}", report::progress(&cell));
            cells.push(cell);
        }
    }
    report::table(&cells);
    report::write(&cells);
}

/// The results of one cell.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    pub(crate) scenario: String,
    pub(crate) stack: String,
    pub(crate) secs: f64,
    pub(crate) offered_rps: f64,
    pub(crate) goodput_rps: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) p999_ms: f64,
    pub(crate) errors: u64,
    pub(crate) timeouts: u64,
    pub(crate) peak_rss_bytes: u64,
    pub(crate) peak_fds: u64,
    pub(crate) hostile_sent: u64,
    pub(crate) hostile_answered: u64,
    pub(crate) hostile_ok: u64,
    pub(crate) server_exited: bool,
    pub(crate) guards: Option<serde_json::Value>,
    /// bulwark only: the p99 scheduling delay read from the server's
    /// metrics endpoint at the end of the cell, in ms.
    pub(crate) sched_delay_p99_ms: Option<f64>,
    /// bulwark only: how long that read took, in ms (or why it failed).
    pub(crate) endpoint: Option<Result<f64, String>>,
}

/// Runs one scenario against one stack in a fresh server process.
fn run_cell(scenario: &str, stack: &str, dur: Duration) -> Cell {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args(["--serve", stack, "--port", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the server");
    let pid = child.id();
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("server port");
    // `PORT n`, and `METRICS m` after it where the server has an endpoint.
    let mut words = line.split_whitespace();
    let port: u16 = (words.next() == Some("PORT"))
        .then(|| words.next().and_then(|p| p.parse().ok()))
        .flatten()
        .unwrap_or_else(|| panic!("server said {line:?}"));
    let metrics_port: Option<u16> = (words.next() == Some("METRICS"))
        .then(|| words.next().and_then(|p| p.parse().ok()))
        .flatten();

    // Peak fds: sampled every 20 ms while the load runs.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0u64;
            let end = Instant::now() + Duration::from_secs(600);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < end {
                if let Ok(d) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
                    peak = peak.max(d.count() as u64);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let outcome = load::run(addr, scenario, dur);
    // Read as the attack's last connections drain: the endpoint must answer
    // whatever state the workers are in.
    let scrape =
        metrics_port.map(|p| endpoint::scrape(std::net::SocketAddr::from(([127, 0, 0, 1], p))));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak_fds = sampler.join().unwrap_or(0);
    let peak_rss_bytes = vm_hwm(pid);
    let server_exited = matches!(child.try_wait(), Ok(Some(_)));

    // Stop the server: close its stdin; it prints its guard counters.
    drop(child.stdin.take());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = out.read_to_string(&mut rest);
        let _ = tx.send(rest);
    });
    let rest = rx.recv_timeout(Duration::from_secs(3)).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    let guards = rest
        .lines()
        .find_map(|l| l.strip_prefix("GUARDS "))
        .and_then(|j| serde_json::from_str(j).ok());

    Cell {
        scenario: scenario.to_string(),
        stack: stack.to_string(),
        secs: dur.as_secs_f64(),
        offered_rps: outcome.offered_rps,
        goodput_rps: outcome.ok as f64 / dur.as_secs_f64(),
        p50_ms: outcome.quantile_ms(0.5),
        p99_ms: outcome.quantile_ms(0.99),
        p999_ms: outcome.quantile_ms(0.999),
        errors: outcome.errors,
        timeouts: outcome.timeouts,
        peak_rss_bytes,
        peak_fds,
        hostile_sent: outcome.hostile_sent,
        hostile_answered: outcome.hostile_answered,
        hostile_ok: outcome.hostile_ok,
        server_exited,
        guards: if stack.starts_with("bulwark") {
            guards
        } else {
            None
        },
        sched_delay_p99_ms: scrape
            .as_ref()
            .and_then(|s| s.as_ref().ok())
            .and_then(|s| s.sched_delay_p99_ms),
        endpoint: scrape.map(|s| s.map(|s| s.answered_in.as_secs_f64() * 1e3)),
    }
}

/// The peak resident set of `pid`, from `/proc/<pid>/status`.
fn vm_hwm(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The load generator's own fd limit: raised to its hard limit (slowloris
/// alone holds 3,000 connections).
fn raise_nofile() {
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// The server side: sets `RLIMIT_NOFILE`, builds the stack's runtime,
/// prints `PORT n`, serves until stdin closes, then prints `GUARDS {json}`
/// (bulwark) and exits.
fn serve(stack: &str, port: u16) {
    let lim = libc::rlimit {
        rlim_cur: NOFILE,
        rlim_max: NOFILE,
    };
    // SAFETY: a plain libc call on a local struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        eprintln!("showdown: setrlimit: {}", std::io::Error::last_os_error());
    }
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let (tx, rx) = std::sync::mpsc::channel::<u16>();
    let mut guards: Option<Box<dyn Fn() -> String>> = None;
    // Keep the runtime alive until exit.
    let _keep: Box<dyn std::any::Any> = match stack {
        "tokio-naive" | "tokio-hardened" => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(WORKERS)
                .enable_all()
                .build()
                .expect("tokio runtime");
            let hardened = stack == "tokio-hardened";
            rt.spawn(async move {
                let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
                let _ = tx.send(listener.local_addr().expect("addr").port());
                let res = if hardened {
                    stacks::tokio_hardened::serve(listener).await
                } else {
                    stacks::tokio_naive::serve(listener).await
                };
                if let Err(e) = res {
                    eprintln!(
                        "showdown: {} server stopped: {e}",
                        if hardened {
                            "tokio-hardened"
                        } else {
                            "tokio-naive"
                        }
                    );
                }
            });
            Box::new(rt)
        }
        "bulwark" | "bulwark-ceiling" => {
            let admission = if stack == "bulwark" {
                bulwark::runtime::Admission::adaptive()
            } else {
                bulwark::runtime::Admission::Reject
            };
            let rt = build_bulwark(admission);
            let rt = std::sync::Arc::new(rt);
            let h = rt.handle().clone();
            rt.block_on(async move {
                // The accept loop itself outlives the default deadline.
                drop(
                    bulwark::task::Builder::new()
                        .name("accept")
                        .essential()
                        .timeout(Duration::from_secs(24 * 3600))
                        .spawn(async move {
                            let listener =
                                bulwark::net::TcpListener::bind(addr).await.expect("bind");
                            let _ = tx.send(listener.local_addr().expect("addr").port());
                            if let Err(e) = stacks::bulwark_naive::serve(listener).await {
                                eprintln!("showdown: bulwark server stopped: {e}");
                            }
                        })
                        .expect("spawn the accept loop"),
                )
            });
            guards = Some(Box::new(move || {
                let s = h.metrics();
                serde_json::json!({
                    "rejected": s.tasks_rejected,
                    "rejected_at_ceiling": s.rejected_at_ceiling,
                    "rejected_shedding": s.rejected_shedding,
                    "deadline_exceeded": s.tasks_deadline_exceeded,
                    "request_deadlines_exceeded": s.scope_deadlines_exceeded,
                    "shedding_transitions": s.shedding_transitions,
                    "peak_live_tasks": s.tasks_admitted_peak,
                    "max_tasks": s.max_tasks,
                    "tasks_spawned": s.tasks_spawned,
                    "tasks_completed": s.tasks_completed,
                    "wasted_subtasks": s.wasted_subtasks,
                    "children_waiting": s.children_waiting,
                    "accept_pauses": s.accept_pauses,
                    "accept_backoffs": s.accept_backoffs,
                    "stalls": s.stalls,
                    "compensations": s.compensations,
                    "lost": s.tasks_lost,
                    "lost_cancelled": s.tasks_lost_cancelled,
                })
                .to_string()
            }));
            Box::new(rt)
        }
        other => {
            eprintln!("showdown: unknown stack {other}");
            std::process::exit(2);
        }
    };
    let port = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("server bound");
    println!("PORT {port}");
    let _ = std::io::stdout().flush();
    // Serve until the parent closes stdin (bounded: 10 minutes).
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        let _ = done_tx.send(());
    });
    let _ = done_rx.recv_timeout(Duration::from_secs(600));
    if let Some(g) = guards {
        println!("GUARDS {}", g());
    }
    let _ = std::io::stdout().flush();
    // Exit without waiting for tasks stuck in blocking or hung calls.
    std::process::exit(0);
}

/// bulwark's task ceiling: room for the fan-outs the service serves when
/// not under attack (20/s of 1,000 subtasks living 300 ms on average is
/// 6,000 live tasks) and its connections.
pub const MAX_TASKS: usize = 10_000;

/// bulwark's runtime with its guards: with the server loop's
/// `serve_connection`, the only place the bulwark stack differs from
/// tokio-naive. The watchdog is on with its defaults (25 ms, compensation
/// on); a task found lost (its last waker dropped: `/leak`'s detached task
/// awaits `pending()`) is cancelled, so what it holds goes back at once.
fn build_bulwark(admission: bulwark::runtime::Admission) -> bulwark::runtime::Runtime {
    bulwark::runtime::Runtime::builder()
        .worker_threads(WORKERS)
        .max_tasks(MAX_TASKS)
        .admission(admission)
        .default_deadline(Some(Duration::from_secs(2)))
        .on_lost_task(bulwark::runtime::LostTask::Cancel)
        .build()
        .expect("bulwark runtime")
}
