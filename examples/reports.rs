//! What the watchdog's reports look like in a service's log:
//! `cargo run --example reports`.
//!
//! A task named `report-builder` blocks its worker for 300 ms inside a poll
//! (a synchronous call on a worker). The watchdog reports the stall once the
//! poll has held the worker for its threshold (25 ms), hands the worker's
//! queue to a replacement thread (so the other task keeps running), and
//! reports the total when the poll returns. The events go through `tracing`,
//! here to `tracing-subscriber`'s plain formatter.

use std::time::Duration;

fn main() {
    tracing_subscriber::fmt()
        .with_target(true)
        .with_ansi(false)
        .without_time()
        .init();

    let rt = bulwark::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let blocker = bulwark::task::Builder::new()
            .name("report-builder")
            .spawn(async {
                // A synchronous call that holds the worker.
                std::thread::sleep(Duration::from_millis(300));
            })
            .expect("spawn");
        // Keeps ticking while the only worker is stuck: the replacement runs it.
        let mut ticks = 0;
        let mut interval = bulwark::time::interval(Duration::from_millis(10));
        while !blocker.is_finished() {
            interval.tick().await;
            ticks += 1;
        }
        blocker.await.expect("the blocker finishes");
        println!("ticks while the worker was blocked: {ticks}");
    });
    let m = rt.metrics();
    println!(
        "stalls: {}, compensations: {}, worker threads now: {}",
        m.stalls, m.compensations, m.worker_threads
    );
    for stall in rt.handle().stalls() {
        println!("{stall:?}");
    }
}
