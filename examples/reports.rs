//! What the watchdog's and the lost-task reports look like in a service's
//! log: `cargo run --example reports`.
//!
//! A task named `report-builder` blocks its worker for 300 ms inside a poll
//! (a synchronous call on a worker). The watchdog reports the stall once the
//! poll has held the worker for its threshold (25 ms), hands the worker's
//! queue to a replacement thread (so the other task keeps running), and
//! reports the total when the poll returns.
//!
//! Then a task named `forgotten-retry` waits on a future that drops its
//! waker (a hand-written future with a bug): nothing can ever wake it. The
//! runtime (`on_lost_task(LostTask::Cancel)`) reports it and drops its
//! future, and its `JoinHandle` says why.
//!
//! Last, a handler leases a connection from a `resource::Pool` and, on an
//! error path, stashes the lease in a global list: the lease outlives its
//! task. The watchdog's leak scan reports the orphan with the line that
//! acquired it, and its return once the list lets it go.
//!
//! The events go through `tracing`, here to `tracing-subscriber`'s plain
//! formatter.

use std::sync::Mutex;
use std::time::Duration;

/// Where the buggy handler stashes its lease.
static STASH: Mutex<Vec<bulwark::resource::Lease<u32>>> = Mutex::new(Vec::new());

fn main() {
    tracing_subscriber::fmt()
        .with_target(true)
        .with_ansi(false)
        .without_time()
        .init();

    let rt = bulwark::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .on_lost_task(bulwark::runtime::LostTask::Cancel)
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
        // The watchdog's next look (every quarter of its threshold) sees the
        // poll returned and reports its total.
        bulwark::time::sleep(Duration::from_millis(20)).await;

        let forgotten = bulwark::task::Builder::new()
            .name("forgotten-retry")
            .spawn(async {
                let _buffer = vec![0u8; 64 * 1024];
                // Pending, and the waker it was given is dropped: a bug.
                std::future::poll_fn(|_cx| std::task::Poll::<()>::Pending).await;
            })
            .expect("spawn");
        let err = forgotten.await.expect_err("cancelled as lost");
        println!("JoinError: {err} (is_lost: {})", err.is_lost());

        let pool = bulwark::resource::Pool::builder("db")
            .max_size(4)
            .build(|| async { Ok::<_, std::io::Error>(7u32) })
            .expect("a pool");
        let p = pool.clone();
        bulwark::spawn(async move {
            let conn = p.acquire().await.expect("a connection");
            STASH.lock().unwrap().push(conn); // the bug
        })
        .await
        .expect("the handler ends");
        // The watchdog's leak scan runs every 100 ms.
        bulwark::time::sleep(Duration::from_millis(250)).await;
        println!("pool: {:?}", pool.status());
        STASH.lock().unwrap().clear();
    });
    let m = rt.metrics();
    println!(
        "stalls: {}, compensations: {}, worker threads now: {}, lost tasks cancelled: {}, orphaned leases: {}",
        m.stalls, m.compensations, m.worker_threads, m.tasks_lost_cancelled, m.resource_orphans
    );
    for stall in rt.handle().stalls() {
        println!("{stall:?}");
    }
}
