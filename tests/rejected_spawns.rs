//! Rejected spawns cost nothing: 100 000 spawns refused at a full ceiling,
//! each of a future capturing 1 KiB, with every `JoinHandle` kept. Every
//! future is dropped at the spawn (before any handle is awaited), every
//! handle resolves to a rejected `JoinError`, and the process's RSS grows by
//! about the handles themselves, not by a task allocation each
//! (`examples/rejected_spawns.rs` measures 1 000 000).
//!
//! The only test in its binary: it reads the process's RSS.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use bulwark::task::JoinHandle;
use common::{bounded, runtime_with_ceiling, within, DropCounter};

/// Rejected spawns with kept handles.
const N: usize = 100_000;
/// The bytes each future captures: a task allocation each would be over
/// 100 MiB.
const CAPTURE: usize = 1024;
/// The RSS growth allowed: 64 B per kept handle (a handle is 16 B; the
/// `Vec` doubles) and 16 MiB of slack for the allocator and the runtime.
const BOUND: u64 = 64 * N as u64 + 16 * 1024 * 1024;

/// `VmRSS` of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

#[test]
fn rejected_spawns_with_kept_handles_drop_their_futures_and_hold_no_task() {
    within(60, "100 000 rejected spawns", || {
        let rt = runtime_with_ceiling(2, 10);
        rt.block_on(async {
            // Hold the ceiling full until the end.
            let release = Arc::new(tokio::sync::Semaphore::new(0));
            let holders: Vec<_> = (0..10)
                .map(|_| {
                    let release = release.clone();
                    bulwark::spawn(async move { drop(release.acquire().await) })
                })
                .collect();

            let drops = Arc::new(AtomicUsize::new(0));
            let polls = Arc::new(AtomicUsize::new(0));
            let before = rss();
            let mut handles: Vec<JoinHandle<usize>> = Vec::new();
            for i in 0..N {
                let captured = [i as u8; CAPTURE];
                let guard = DropCounter::new(&drops);
                let polls = polls.clone();
                handles.push(bulwark::spawn(async move {
                    polls.fetch_add(1, SeqCst);
                    let _guard = guard;
                    std::hint::black_box(&captured).len()
                }));
            }
            let grown = rss().saturating_sub(before);
            eprintln!("RSS grew by {grown} B for {N} kept rejected handles");

            // Dropped at the spawn, unpolled: before any handle is awaited.
            assert_eq!(drops.load(SeqCst), N, "futures dropped at their spawn");
            assert_eq!(polls.load(SeqCst), 0, "no rejected future was polled");
            assert!(
                grown < BOUND,
                "RSS grew by {grown} B for {N} kept rejected handles \
                 ({} B each; allowed {BOUND} B in all)",
                grown / N as u64
            );

            let m = bulwark::runtime::Handle::current().metrics();
            assert_eq!(m.tasks_admitted_live, 10, "only the holders were admitted");
            for (i, h) in handles.into_iter().enumerate() {
                match h.await {
                    Err(e) if e.is_rejected() => {}
                    other => panic!("handle {i}: expected a rejection, got {other:?}"),
                }
            }
            release.add_permits(10);
            for h in holders {
                bounded(10, "a holder to finish", h)
                    .await
                    .expect("a holder finished");
            }
            assert_eq!(drops.load(SeqCst), N, "no future dropped twice");
        });
    });
}
