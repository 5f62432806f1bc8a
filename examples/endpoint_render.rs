//! Times the metrics endpoint's answers for a runtime with 100,000 live
//! tasks (all idle, each waiting on one `watch` channel): `GET /metrics`
//! and `GET /tasks?limit=1000` (and the largest page, `limit=10000`, and
//! the `/` page) over HTTP, each timed from connect to the last byte, and
//! the same work without HTTP (a snapshot rendered, the task list read).
//! Prints the figures; asserts nothing.
//!
//! Run it optimized: `cargo run --release --example endpoint_render`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const TASKS: usize = 100_000;

/// One GET from connect to close: the time and the bytes received.
fn fetch(addr: SocketAddr, target: &str) -> io::Result<(Duration, usize)> {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {target} HTTP/1.1\r\nHost: bench\r\n\r\n")?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    if !out.starts_with(b"HTTP/1.1 200") {
        return Err(io::Error::other(format!(
            "{target}: {}",
            String::from_utf8_lossy(&out[..out.len().min(200)])
        )));
    }
    Ok((started.elapsed(), out.len()))
}

/// Median, fastest and slowest of `times`.
fn summary(times: &mut [Duration]) -> String {
    times.sort();
    format!(
        "median {:>9.2?}  min {:>9.2?}  max {:>9.2?}",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    )
}

fn main() -> io::Result<()> {
    let rt = bulwark::Runtime::builder()
        .worker_threads(2)
        .max_tasks(2 * TASKS)
        .metrics_endpoint("127.0.0.1:0".parse().unwrap())
        .build()?;
    let addr = rt
        .metrics_endpoint_addr()
        .expect("the endpoint was asked for");

    let (tx, rx) = tokio::sync::watch::channel(false);
    let spawning = Instant::now();
    let handles: Vec<_> = (0..TASKS)
        .map(|_| {
            let mut rx = rx.clone();
            rt.spawn(async move {
                let _ = rx.wait_for(|go| *go).await;
            })
        })
        .collect();
    // Every task polled once and waiting.
    let deadline = Instant::now() + Duration::from_secs(60);
    while rt.metrics().polls < TASKS as u64 {
        if Instant::now() > deadline {
            return Err(io::Error::other("the tasks were not all polled in 60 s"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!(
        "{TASKS} idle tasks spawned and polled in {:.2?}",
        spawning.elapsed()
    );

    println!("over HTTP (connect to last byte), 2 workers idle:");
    for (target, rounds) in [
        ("/metrics", 20),
        ("/tasks?limit=1000", 20),
        ("/tasks?limit=10000", 5),
        ("/", 20),
        ("/health", 20),
    ] {
        let mut times = Vec::with_capacity(rounds);
        let mut bytes = 0;
        for _ in 0..rounds {
            let (t, n) = fetch(addr, target)?;
            times.push(t);
            bytes = n;
        }
        println!(
            "  GET {target:<20} {bytes:>9} bytes  {}  ({rounds} rounds)",
            summary(&mut times)
        );
    }

    println!("without HTTP:");
    let mut snap = Vec::new();
    let mut render = Vec::new();
    let mut list = Vec::new();
    let mut size = 0;
    for _ in 0..20 {
        let t = Instant::now();
        let s = rt.metrics();
        snap.push(t.elapsed());
        let t = Instant::now();
        size = bulwark::metrics::exposition::prometheus(&s).len();
        render.push(t.elapsed());
    }
    for _ in 0..5 {
        let t = Instant::now();
        let tasks = rt.handle().tasks();
        list.push(t.elapsed());
        assert_eq!(tasks.len(), TASKS);
    }
    println!("  Runtime::metrics()            {}", summary(&mut snap));
    println!(
        "  exposition::prometheus        {}  ({size} bytes)",
        summary(&mut render)
    );
    println!(
        "  Handle::tasks() ({TASKS})  {}  (what /tasks reads before it cuts the page)",
        summary(&mut list)
    );

    tx.send(true).map_err(io::Error::other)?;
    for h in handles {
        rt.block_on(h).map_err(io::Error::other)?;
    }
    Ok(())
}
