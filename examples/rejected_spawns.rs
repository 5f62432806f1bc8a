//! What a rejected spawn costs when its `JoinHandle` is kept.
//!
//! ```text
//! cargo run --release --example rejected_spawns [N]
//! ```
//!
//! A runtime with `max_tasks(10)` whose ceiling is held full by 10 tasks
//! that wait for a signal; then `N` (default 1 000 000, underscores allowed)
//! spawns of a future that captures a 200-byte array, each refused at the
//! ceiling, every `JoinHandle` kept in a `Vec` (as a naive fan-out that
//! collects its handles does). It prints the process's RSS (VmRSS) and peak
//! RSS (VmHWM, from `/proc/self/status`) before and after, and the growth per
//! kept handle; then how many of the handles resolve to a rejection.
//!
//! A rejected spawn drops its future at once and makes no task: its handle
//! holds the rejection inline (`size_of::<JoinHandle<_>>()` bytes in the
//! `Vec`, nothing on the heap). Before that, 500 000 such handles grew RSS
//! from 2.3 to 113 MiB, about 230 B each. It asserts nothing; the figures are
//! for the README and the issue.

use std::sync::Arc;
use std::time::Instant;

use bulwark::runtime::Runtime;
use bulwark::task::JoinHandle;

/// The bytes each spawned future captures.
const CAPTURE: usize = 200;

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`); 0 if unreadable.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.replace('_', "").parse().expect("N: a number of spawns"))
        .unwrap_or(1_000_000);
    let rt = Runtime::builder()
        .worker_threads(2)
        .max_tasks(10)
        .build()
        .expect("build the runtime");
    rt.block_on(async move {
        // Hold the ceiling full: 10 tasks that wait for the signal.
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let holders: Vec<_> = (0..10)
            .map(|_| {
                let release = release.clone();
                bulwark::spawn(async move { drop(release.acquire().await) })
            })
            .collect();

        let (rss0, hwm0) = (status_kib("VmRSS"), status_kib("VmHWM"));
        let start = Instant::now();
        let mut handles: Vec<JoinHandle<usize>> = Vec::new();
        for i in 0..n {
            let captured = [i as u8; CAPTURE];
            handles.push(bulwark::spawn(async move {
                std::hint::black_box(&captured);
                captured.len()
            }));
        }
        let took = start.elapsed();
        let (rss1, hwm1) = (status_kib("VmRSS"), status_kib("VmHWM"));
        let per = (rss1.saturating_sub(rss0) * 1024) as f64 / n as f64;
        println!(
            "{n} rejected spawns (futures of {CAPTURE}+ B), handles kept: \
             spawned in {took:.2?}"
        );
        println!(
            "  RSS {:.1} -> {:.1} MiB, peak RSS {:.1} -> {:.1} MiB",
            mib(rss0),
            mib(rss1),
            mib(hwm0),
            mib(hwm1)
        );
        println!(
            "  {per:.1} B of RSS per kept handle (size_of JoinHandle = {} B, Vec capacity {}); \
             was ~230 B",
            std::mem::size_of::<JoinHandle<usize>>(),
            handles.capacity()
        );

        release.add_permits(10);
        let mut rejected = 0usize;
        for h in handles {
            if matches!(h.await, Err(e) if e.is_rejected()) {
                rejected += 1;
            }
        }
        for h in holders {
            let _ = h.await;
        }
        println!("  {rejected} of {n} handles resolved to a rejection");
    });
}
