// The service, written once. It is `include!`d into one module per stack
// (see `stacks.rs`), where these names come from that stack:
//
// - the runtime: `spawn`, `sleep`, `TcpListener`, `TcpStream`, `io` (a
//   stream as hyper's `Read + Write`) and `http1` (what serves a
//   connection: hyper's HTTP/1 builder with the stack's timer, or on
//   bulwark its `serve_connection` helper);
// - the hardening hooks: `accept`, `connection_permit`, `service`,
//   `fanout_permit`, `dependency`, `blocking`. On tokio-naive and bulwark
//   they are the plain code of `naive_hooks` (no guard at all); on
//   tokio-hardened they add tower's layers, semaphores, timeouts and
//   `spawn_blocking`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::sync::Semaphore;

/// The service's shared state: a pool of 16 database connections.
pub struct App {
    pool: Arc<Semaphore>,
}

/// A response of the service.
pub type Resp = Response<Full<Bytes>>;

fn reply(code: StatusCode) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from_static(b"")));
    *r.status_mut() = code;
    r
}

/// Routes a request.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    Ok(match req.uri().path() {
        "/work" => work(&app).await,
        "/fanout" => fanout().await,
        "/block" => block().await,
        "/hang" => hang(&app).await,
        "/leak" => leak(&app).await,
        "/cpu" => cpu().await,
        _ => reply(StatusCode::NOT_FOUND),
    })
}

/// `GET /work`: ~50 us of CPU, then a 1 ms database call on a pooled
/// connection.
async fn work(app: &App) -> Resp {
    spin(Duration::from_micros(50));
    let pool = app.pool.clone();
    let call = async move {
        let _conn = pool.acquire().await;
        sleep(Duration::from_millis(1)).await;
    };
    match dependency(call).await {
        Some(()) => reply(StatusCode::OK),
        None => reply(StatusCode::GATEWAY_TIMEOUT),
    }
}

/// `GET /fanout`: 1,000 subtasks (one API call each), 100-500 ms each,
/// all awaited.
async fn fanout() -> Resp {
    let Some(_permit) = fanout_permit(FANOUT) else {
        return reply(StatusCode::SERVICE_UNAVAILABLE);
    };
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut calls = Vec::with_capacity(FANOUT as usize);
    for _ in 0..FANOUT {
        let n = SEQ.fetch_add(1, Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
        let ms = 100 + n % 401;
        calls.push(spawn(async move {
            sleep(Duration::from_millis(ms)).await;
        }));
    }
    let mut failed = 0;
    for call in calls {
        if call.await.is_err() {
            failed += 1;
        }
    }
    if failed == 0 {
        reply(StatusCode::OK)
    } else {
        reply(StatusCode::SERVICE_UNAVAILABLE)
    }
}

/// `GET /block`: a synchronous call that holds its thread for 50 ms.
async fn block() -> Resp {
    blocking(|| std::thread::sleep(Duration::from_millis(50))).await;
    reply(StatusCode::OK)
}

/// `GET /hang`: a dependency that never answers, on a pooled connection.
async fn hang(app: &App) -> Resp {
    let pool = app.pool.clone();
    let call = async move {
        let _conn = pool.acquire().await;
        std::future::pending::<()>().await;
    };
    match dependency(call).await {
        Some(()) => reply(StatusCode::OK),
        None => reply(StatusCode::GATEWAY_TIMEOUT),
    }
}

/// `GET /leak`: an error path that moves a pooled connection and the
/// request's 1 MiB buffer (an upload being processed) into a detached task
/// waiting for something that never happens.
async fn leak(app: &App) -> Resp {
    let Some(Ok(conn)) = dependency(app.pool.clone().acquire_owned()).await else {
        return reply(StatusCode::GATEWAY_TIMEOUT);
    };
    let buf = vec![1u8; 1024 * 1024];
    drop(spawn(async move {
        let _held = (conn, buf);
        std::future::pending::<()>().await;
    }));
    reply(StatusCode::INTERNAL_SERVER_ERROR)
}

/// `GET /cpu`: a CPU-heavy request (a big report, a password hash): 10 ms
/// of CPU on its worker.
async fn cpu() -> Resp {
    spin(Duration::from_millis(10));
    reply(StatusCode::OK)
}

/// Subtasks per `/fanout` request.
const FANOUT: u32 = 1_000;

/// Burns `d` of CPU.
fn spin(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// The accept loop: one task per connection, served by hyper's HTTP/1.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    let app = Arc::new(App {
        pool: Arc::new(Semaphore::new(16)),
    });
    loop {
        let stream = accept(&listener).await?;
        let Some(permit) = connection_permit() else {
            continue; // dropped: closed at once
        };
        let app = app.clone();
        drop(spawn(async move {
            let _permit = permit;
            let _ = http1()
                .serve_connection(io(stream), service(app))
                .await;
        }));
    }
}
