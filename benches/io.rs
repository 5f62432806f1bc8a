//! IO benchmarks: timers, TCP and hyper on bulwark against tokio's
//! multi-thread runtime.
//!
//! - `timers_cancel`: 100 000 sleeps with pseudo-random deadlines of 1 to
//!   100 ms, made by 1 000 tasks of 100 each: each sleep is polled once (so
//!   its timer goes into the wheel), then the task drops its 100 (so every
//!   timer is taken out again, well before it could fire). 100 per task, not
//!   100 000 in one, because of the coop budget (see [`CANCEL_PER_TASK`]).
//! - `timers_fire`: 10 000 tasks that each sleep 1 ms; the last one to wake
//!   signals.
//! - `tcp_echo`: 50 loopback connections that each make 1 000 round trips of
//!   64 bytes (write 64, read exactly 64 back) to an echo server on the same
//!   runtime: an accept loop that spawns an echo task per connection. Both
//!   ends set `TCP_NODELAY`. The server starts once per group; each iteration
//!   connects its 50 clients afresh.
//! - `hyper_hello`: a hyper HTTP/1.1 server answering "Hello, World!", and 20
//!   keep-alive client connections (hyper's `client::conn::http1`) making 500
//!   requests each, one after another (10 000 per iteration), reading every
//!   body to its end. Server and clients are on the runtime under test; the
//!   server has the runtime's timer (hyper uses it for its header-read
//!   timeout); neither needs an executor, as HTTP/1.1 spawns nothing.
//!
//! Every workload is one criterion group with two functions, `bulwark` and
//! `tokio` (ids `<workload>/bulwark` and `<workload>/tokio`). Both variants are
//! generated from the same macro, so they run the same code and differ only in
//! the names the macro is given: the runtime, `spawn`, `sleep`, the TCP types
//! and what hyper needs (tokio's stream is wrapped in
//! [`tokio_hyper::TokioIo`], a copy of hyper-util's `TokioIo`; bulwark's goes
//! to hyper as it is). Each runtime has 4 worker threads and is built once
//! per group. What is measured is the time of one whole iteration, as seen
//! from the bench thread, which spawns the workload onto the runtime and
//! waits for its completion signal.
//!
//! `scripts/bench-ratios` prints the bulwark/tokio ratio per workload.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Worker threads of both runtimes.
const WORKERS: usize = 4;
/// Tasks per iteration in `timers_cancel`.
const CANCEL_TASKS: usize = 1_000;
/// Sleeps each of them makes, polls once and drops: 100 000 in all. Kept
/// under the coop budget of one task poll (128 operations, on both runtimes):
/// tokio's sleep spends a unit of it at every poll, and once it is gone a
/// first poll returns `Pending` without setting a timer, so one task polling
/// 100 000 sleeps would set only the first 128. A task takes well under the
/// shortest deadline (1 ms), so its timers are cancelled, not fired.
const CANCEL_PER_TASK: usize = 100;
/// Longest deadline in `timers_cancel`, in ms (the shortest is 1 ms).
const CANCEL_MAX_MS: u64 = 100;
/// Tasks (each one sleep) per iteration in `timers_fire`.
const FIRE_SLEEPS: usize = 10_000;
/// How long each of them sleeps.
const FIRE_AFTER: Duration = Duration::from_millis(1);
/// Client connections per iteration in `tcp_echo`.
const ECHO_CONNS: usize = 50;
/// Round trips per connection in `tcp_echo`.
const ECHO_ROUNDS: usize = 1_000;
/// Bytes per message in `tcp_echo`.
const ECHO_LEN: usize = 64;
/// Keep-alive client connections per iteration in `hyper_hello`.
const HYPER_CONNS: usize = 20;
/// Requests per connection in `hyper_hello`, one after another.
const HYPER_REQUESTS: usize = 500;
/// The body of every `hyper_hello` response.
const HELLO: &[u8] = b"Hello, World!";
/// Where the servers listen (port chosen by the system).
const LOCALHOST: &str = "127.0.0.1:0";
/// A workload that has not signalled completion after this long is hung.
const HANG: Duration = Duration::from_secs(60);

/// Completion signal shared by the tasks of one workload: a countdown of
/// tasks still to finish, and a channel the last one sends on (or a task that
/// failed sends its error on).
struct Signal {
    rem: Arc<AtomicUsize>,
    tx: mpsc::SyncSender<Result<(), String>>,
    rx: mpsc::Receiver<Result<(), String>>,
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

    /// A countdown handle for one task.
    fn done(&self) -> Done {
        Done {
            rem: self.rem.clone(),
            tx: self.tx.clone(),
        }
    }

    /// Blocks until the last task has signalled; panics (naming the
    /// workload) if a task reported an error, or if nothing came within
    /// [`HANG`].
    fn wait(&self, what: &str) {
        match self.rx.recv_timeout(HANG) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{what}: {e}"),
            Err(_) => {
                panic!("{what}: no completion signal after {HANG:?} (hung, or a task panicked?)")
            }
        }
    }
}

/// One task's end of a [`Signal`].
#[derive(Clone)]
struct Done {
    rem: Arc<AtomicUsize>,
    tx: mpsc::SyncSender<Result<(), String>>,
}

impl Done {
    /// Counts this task down; the task that brings the countdown to zero
    /// signals.
    fn count_down(&self) {
        if self.rem.fetch_sub(1, Relaxed) == 1 {
            self.tx.send(Ok(())).unwrap();
        }
    }

    /// Reports a failure. The first one is enough: later ones are dropped
    /// rather than block a worker on the full channel.
    fn fail(&self, e: String) {
        let _ = self.tx.try_send(Err(e));
    }
}

/// Seed of the first task's deadlines in `timers_cancel`.
const SEED: u64 = 0x2545_f491_4f6c_dd1d;

/// xorshift64 (Marsaglia): the deadlines of `timers_cancel`, the same
/// sequences on both runtimes and in every iteration.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A deadline of 1 to [`CANCEL_MAX_MS`] ms.
    fn deadline(&mut self) -> Duration {
        Duration::from_millis(1 + self.next() % CANCEL_MAX_MS)
    }
}

/// Any error a client can meet.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The `hyper_hello` service.
async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(HELLO))))
}

#[path = "support/tokio_hyper.rs"]
mod tokio_hyper;

/// Generates one module of workloads for one runtime.
///
/// `$rt` is the runtime type (it must have `block_on` and `spawn`) and
/// `$build` an expression building it; the items in braces bring the
/// runtime's own names into the module: `spawn`, `sleep`, `TcpListener`,
/// `TcpStream`, `HyperTimer` (hyper's `Timer` on the runtime) and
/// `hyper_io` (a `TcpStream` as hyper's `Read + Write`). Each workload
/// function runs one iteration; `start_*` start a group's server.
macro_rules! workloads {
    ($name:ident, $label:literal, $rt:ty, $build:expr, { $($names:item)* }) => {
        mod $name {
            use super::*;
            $($names)*

            pub type Rt = $rt;

            pub fn build() -> Rt {
                $build.expect(concat!("building the ", $label, " runtime"))
            }

            pub fn timers_cancel(rt: &Rt, sig: &Signal) {
                sig.arm(CANCEL_TASKS);
                let done = sig.done();
                drop(rt.spawn(async move {
                    for t in 0..CANCEL_TASKS {
                        let done = done.clone();
                        drop(spawn(async move {
                            let mut rng = XorShift(SEED + t as u64);
                            let mut live = Vec::with_capacity(CANCEL_PER_TASK);
                            for _ in 0..CANCEL_PER_TASK {
                                let after = rng.deadline();
                                let made = std::time::Instant::now();
                                let mut s = Box::pin(sleep(after));
                                // The first poll puts the timer into the wheel.
                                // Ready is right only if the task was held up
                                // past the deadline.
                                if futures::poll!(s.as_mut()).is_ready() && made.elapsed() < after {
                                    done.fail(format!(
                                        "a sleep of {after:?} was ready at its first poll, \
                                         {:?} after it was made",
                                        made.elapsed()
                                    ));
                                    return;
                                }
                                live.push(s);
                            }
                            // Dropping a pending sleep takes its timer out.
                            drop(live);
                            done.count_down();
                        }));
                    }
                }));
                sig.wait(concat!("timers_cancel/", $label));
            }

            pub fn timers_fire(rt: &Rt, sig: &Signal) {
                sig.arm(FIRE_SLEEPS);
                let done = sig.done();
                drop(rt.spawn(async move {
                    for _ in 0..FIRE_SLEEPS {
                        let done = done.clone();
                        drop(spawn(async move {
                            sleep(FIRE_AFTER).await;
                            done.count_down();
                        }));
                    }
                }));
                sig.wait(concat!("timers_fire/", $label));
            }

            /// Starts a server on `LOCALHOST`: an accept loop that hands each
            /// connection (with `TCP_NODELAY` set) to `serve`, in a task of
            /// its own. Returns the server's address.
            fn start_server<F, Fut>(rt: &Rt, what: &'static str, serve: F) -> SocketAddr
            where
                F: Fn(TcpStream) -> Fut + Send + 'static,
                Fut: std::future::Future<Output = ()> + Send + 'static,
            {
                rt.block_on(async move {
                    let listener = TcpListener::bind(LOCALHOST)
                        .await
                        .unwrap_or_else(|e| panic!("{what}: bind: {e}"));
                    let addr = listener.local_addr().unwrap();
                    drop(spawn(async move {
                        loop {
                            match listener.accept().await {
                                Ok((stream, _)) => {
                                    if let Err(e) = stream.set_nodelay(true) {
                                        eprintln!("{what}: server set_nodelay: {e}");
                                    }
                                    drop(spawn(serve(stream)));
                                }
                                Err(e) => {
                                    eprintln!("{what}: accept: {e}");
                                    sleep(Duration::from_millis(10)).await;
                                }
                            }
                        }
                    }));
                    addr
                })
            }

            /// Connects to `addr` with `TCP_NODELAY` set.
            async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                Ok(stream)
            }

            /// Spawns `n` clients from the bench thread and waits for all of
            /// them; a client's error fails the workload.
            fn run_clients<F, Fut>(rt: &Rt, sig: &Signal, what: &str, n: usize, client: F)
            where
                F: Fn() -> Fut,
                Fut: std::future::Future<Output = Result<(), BoxError>> + Send + 'static,
            {
                sig.arm(n);
                for i in 0..n {
                    let done = sig.done();
                    let client = client();
                    drop(rt.spawn(async move {
                        match client.await {
                            Ok(()) => done.count_down(),
                            Err(e) => done.fail(format!("client {i}: {e}")),
                        }
                    }));
                }
                sig.wait(what);
            }

            pub fn start_echo(rt: &Rt) -> SocketAddr {
                start_server(rt, concat!("tcp_echo/", $label), |mut stream: TcpStream| async move {
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if stream.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                })
            }

            pub fn tcp_echo(rt: &Rt, addr: SocketAddr, sig: &Signal) {
                run_clients(rt, sig, concat!("tcp_echo/", $label), ECHO_CONNS, || async move {
                    let mut stream = connect(addr).await?;
                    let msg = [0xa5u8; ECHO_LEN];
                    let mut back = [0u8; ECHO_LEN];
                    for _ in 0..ECHO_ROUNDS {
                        stream.write_all(&msg).await?;
                        stream.read_exact(&mut back).await?;
                        if back != msg {
                            return Err("the echo differs from the message".into());
                        }
                    }
                    Ok(())
                });
            }

            pub fn start_hello(rt: &Rt) -> SocketAddr {
                start_server(rt, concat!("hyper_hello/", $label), |stream: TcpStream| async move {
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(HyperTimer)
                        .serve_connection(hyper_io(stream), hyper::service::service_fn(hello));
                    // An error here is a client that went away.
                    let _ = conn.await;
                })
            }

            pub fn hyper_hello(rt: &Rt, addr: SocketAddr, sig: &Signal) {
                run_clients(rt, sig, concat!("hyper_hello/", $label), HYPER_CONNS, || async move {
                    let stream = connect(addr).await?;
                    let (mut sender, conn) =
                        hyper::client::conn::http1::handshake(hyper_io(stream)).await?;
                    drop(spawn(async move {
                        // Ends when `sender` is dropped.
                        let _ = conn.await;
                    }));
                    for _ in 0..HYPER_REQUESTS {
                        sender.ready().await?;
                        let req = Request::get("/")
                            .header(hyper::header::HOST, "localhost")
                            .body(Empty::<Bytes>::new())?;
                        let resp = sender.send_request(req).await?;
                        if resp.status() != StatusCode::OK {
                            return Err(format!("status {}", resp.status()).into());
                        }
                        let body = resp.into_body().collect().await?.to_bytes();
                        if body != HELLO {
                            return Err(format!("body {body:?}").into());
                        }
                    }
                    Ok(())
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
    {
        use bulwark::hyper::BulwarkTimer as HyperTimer;
        use bulwark::net::{TcpListener, TcpStream};
        use bulwark::spawn;
        use bulwark::time::sleep;

        /// bulwark's stream is hyper's `Read + Write` as it is.
        fn hyper_io(stream: TcpStream) -> TcpStream {
            stream
        }
    }
);

workloads!(
    on_tokio,
    "tokio",
    tokio::runtime::Runtime,
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build(),
    {
        use super::tokio_hyper::{TokioIo, TokioTimer as HyperTimer};
        use tokio::net::{TcpListener, TcpStream};
        use tokio::spawn;
        use tokio::time::sleep;

        /// tokio's stream goes to hyper in a wrapper.
        fn hyper_io(stream: TcpStream) -> TokioIo {
            TokioIo(stream)
        }
    }
);

/// Both runtimes for one group, built once.
struct Runtimes {
    bulwark: on_bulwark::Rt,
    tokio: on_tokio::Rt,
}

fn runtimes() -> Runtimes {
    Runtimes {
        bulwark: on_bulwark::build(),
        tokio: on_tokio::build(),
    }
}

/// A group of `samples` samples in about `secs` seconds per runtime, which
/// keeps the whole file to a few minutes.
fn group<'c>(
    c: &'c mut Criterion,
    name: &str,
    samples: usize,
    secs: u64,
) -> BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(samples)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(secs));
    g
}

/// Benches a workload that takes `(&Rt, &Signal)` on both runtimes.
macro_rules! signalled {
    ($c:expr, $workload:ident, $samples:expr, $secs:expr) => {{
        let rts = runtimes();
        let sig = Signal::new();
        let mut g = group($c, stringify!($workload), $samples, $secs);
        g.bench_function("bulwark", |b| {
            b.iter(|| on_bulwark::$workload(&rts.bulwark, &sig))
        });
        g.bench_function("tokio", |b| {
            b.iter(|| on_tokio::$workload(&rts.tokio, &sig))
        });
        g.finish();
    }};
}

fn timers_cancel(c: &mut Criterion) {
    signalled!(c, timers_cancel, 20, 5);
}

fn timers_fire(c: &mut Criterion) {
    signalled!(c, timers_fire, 20, 5);
}

/// Benches a workload that takes `(&Rt, SocketAddr, &Signal)` on both
/// runtimes, with a server started by `$start` once per runtime.
macro_rules! served {
    ($c:expr, $workload:ident, $start:ident, $samples:expr, $secs:expr) => {{
        let rts = runtimes();
        let bulwark_addr = on_bulwark::$start(&rts.bulwark);
        let tokio_addr = on_tokio::$start(&rts.tokio);
        let sig = Signal::new();
        let mut g = group($c, stringify!($workload), $samples, $secs);
        g.bench_function("bulwark", |b| {
            b.iter(|| on_bulwark::$workload(&rts.bulwark, bulwark_addr, &sig))
        });
        g.bench_function("tokio", |b| {
            b.iter(|| on_tokio::$workload(&rts.tokio, tokio_addr, &sig))
        });
        g.finish();
    }};
}

fn tcp_echo(c: &mut Criterion) {
    // About 0.6 s an iteration on 2 cores.
    served!(c, tcp_echo, start_echo, 10, 8);
}

fn hyper_hello(c: &mut Criterion) {
    served!(c, hyper_hello, start_hello, 10, 7);
}

/// Private so that the function `criterion_group!` generates needs no docs.
mod all {
    use super::*;

    criterion_group!(benches, timers_cancel, timers_fire, tcp_echo, hyper_hello);
}
criterion_main!(all::benches);
