//! The showdown's service under a `/fanout` flood, as a criterion group:
//! `fanout_flood/<stack>` is the time to serve 2,000 good `GET /work`
//! requests (20 keep-alive connections, 100 each, one after another) while
//! hostile clients send `/fanout` (1,000 subtasks each) at 500/s, each on a
//! new connection given up after 1 s.
//!
//! The service and the stacks are the example's (`examples/showdown/`);
//! each server runs in this process on a runtime of its own (2 workers),
//! the clients on another tokio runtime. The stacks' runtimes are built as
//! the example's `main.rs` builds them.

#![allow(missing_docs)]

#[path = "../examples/showdown/stacks.rs"]
#[allow(dead_code)]
mod stacks;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::{BodyExt, Empty};
use stacks::tokio_hyper::TokioIo;

const GOOD_CONNS: usize = 20;
const GOOD_PER_CONN: usize = 100;
const FLOOD_RPS: u64 = 500;

fn start_server(stack: &str) -> (SocketAddr, Box<dyn std::any::Any>) {
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let (tx, rx) = std::sync::mpsc::channel();
    let keep: Box<dyn std::any::Any> = if stack == "bulwark" {
        let rt = bulwark::runtime::Runtime::builder()
            .worker_threads(2)
            .max_tasks(10_000) // as the showdown's bulwark stack (MAX_TASKS)
            .admission(bulwark::runtime::Admission::adaptive())
            .default_deadline(Some(Duration::from_secs(2)))
            .build()
            .expect("bulwark");
        rt.block_on(async move {
            drop(
                bulwark::task::Builder::new()
                    .essential()
                    .timeout(Duration::from_secs(24 * 3600))
                    .spawn(async move {
                        let l = bulwark::net::TcpListener::bind(addr).await.expect("bind");
                        let _ = tx.send(l.local_addr().expect("addr"));
                        let _ = stacks::bulwark_naive::serve(l).await;
                    })
                    .expect("spawn"),
            )
        });
        Box::new(rt)
    } else {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio");
        let hardened = stack == "tokio-hardened";
        rt.spawn(async move {
            let l = tokio::net::TcpListener::bind(addr).await.expect("bind");
            let _ = tx.send(l.local_addr().expect("addr"));
            let _ = if hardened {
                stacks::tokio_hardened::serve(l).await
            } else {
                stacks::tokio_naive::serve(l).await
            };
        });
        Box::new(rt)
    };
    let addr = rx.recv_timeout(Duration::from_secs(10)).expect("bound");
    (addr, keep)
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: SocketAddr) -> Option<Sender> {
    let s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let _ = s.set_nodelay(true);
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo(s))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(tx)
}

fn get(path: &str) -> hyper::Request<Empty<Bytes>> {
    hyper::Request::get(path)
        .header("host", "127.0.0.1")
        .body(Empty::new())
        .expect("request")
}

/// `n` good requests on one connection (reconnecting when the server
/// closes it); a request that fails is counted done (bounded: 3 tries).
async fn good(addr: SocketAddr, n: usize) {
    let mut tx: Option<Sender> = None;
    for _ in 0..n {
        for _ in 0..3 {
            if tx.as_ref().is_none_or(|t| t.is_closed()) {
                tx = connect(addr).await;
            }
            let Some(t) = tx.as_mut() else { continue };
            let res = tokio::time::timeout(Duration::from_secs(2), async {
                t.ready().await.ok()?;
                let r = t.send_request(get("/work")).await.ok()?;
                let _ = r.into_body().collect().await;
                Some(())
            })
            .await;
            if matches!(res, Ok(Some(()))) {
                break;
            }
            tx = None;
        }
    }
}

/// The `/fanout` flood until `stop` (bounded: 10 minutes).
fn flood(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("flood rt");
        rt.block_on(async move {
            let end = Instant::now() + Duration::from_secs(600);
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / FLOOD_RPS));
            while !stop.load(Relaxed) && Instant::now() < end {
                tick.tick().await;
                tokio::spawn(tokio::time::timeout(Duration::from_secs(1), async move {
                    let mut t = connect(addr).await?;
                    t.ready().await.ok()?;
                    t.send_request(get("/fanout")).await.ok()
                }));
            }
        });
    })
}

fn hostile(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout_flood");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("clients");
    for stack in ["tokio-naive", "tokio-hardened", "bulwark"] {
        let (addr, server) = start_server(stack);
        let stop = Arc::new(AtomicBool::new(false));
        let flooder = flood(addr, stop.clone());
        std::thread::sleep(Duration::from_millis(500));
        group.bench_function(stack, |b| {
            b.iter(|| {
                clients.block_on(async {
                    let tasks: Vec<_> = (0..GOOD_CONNS)
                        .map(|_| tokio::spawn(good(addr, GOOD_PER_CONN)))
                        .collect();
                    for t in tasks {
                        let _ = t.await;
                    }
                })
            })
        });
        stop.store(true, Relaxed);
        let _ = flooder.join();
        // Servers stuck in a flood's leftovers are not waited for.
        std::mem::forget(server);
    }
    group.finish();
}

criterion_group!(benches, hostile);
criterion_main!(benches);
