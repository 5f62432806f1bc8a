//! `serve_connection`: one HTTP/1 connection served by hyper with the
//! limits that fit a connection (a header-read timeout, an idle timeout)
//! and a deadline per request instead of one for the whole connection.
//!
//! hyper runs a connection's handlers inside the connection's task, so a
//! task deadline (the runtime's `default_deadline`) would bound the whole
//! keep-alive connection: every good client would be disconnected when it
//! passes. Here the connection lifts its task's deadline
//! (`task::lift_deadline`) and runs each request's service future under
//! `task::scope_deadline`, so the request, and every task it spawns, is
//! bounded instead.
//!
//! The connection's own limits are enforced by a small state machine fed by
//! the IO (`Watched`, which sees the bytes read) and the service wrapper
//! (`Deadlined`, which sees a request begin and its response end):
//! `Idle` (no request, no byte of the next one) is bounded by the idle
//! timeout, `Head` (bytes of a request head, no request yet) by the
//! header-read timeout, `Busy` (a request in the service) by the request
//! deadline. hyper's own header-read timer is left off: from hyper 1.4 it
//! also runs while a keep-alive connection idles, which would fold the two
//! limits into one.

use crate::time::Instant;
use http_body_util::{Either, Full};
use hyper::body::{Body, Incoming};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::service::Service;
use hyper::{Request, Response, StatusCode};
use std::error::Error as StdError;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use super::BulwarkTimer;
use crate::task;
use crate::time::{sleep_until, Sleep};

/// The limits of a connection served by [`serve_connection`].
///
/// # Examples
///
/// ```
/// use bulwark::hyper::Limits;
/// use std::time::Duration;
///
/// let limits = Limits::new()
///     .request_deadline(Some(Duration::from_millis(250)))
///     .header_read_timeout(Some(Duration::from_secs(5)))
///     .idle_timeout(Some(Duration::from_secs(30)));
/// assert_eq!(limits.get_request_deadline(), Some(Duration::from_millis(250)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    request_deadline: Option<Option<Duration>>,
    route_deadlines: &'static [(&'static str, Duration)],
    header_read_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::new()
    }
}

impl Limits {
    /// The defaults: each request gets the runtime's `default_deadline`
    /// (none if the runtime sets none), a request head must arrive within
    /// 10 s of its first byte (and the first request's within 10 s of the
    /// connection), and a connection idle for 60 s between requests is
    /// closed.
    pub const fn new() -> Limits {
        Limits {
            request_deadline: None,
            route_deadlines: &[],
            header_read_timeout: Some(Duration::from_secs(10)),
            idle_timeout: Some(Duration::from_secs(60)),
        }
    }

    /// Each request's deadline, from when its head has been read: `Some(d)`
    /// for `d`, `None` for no deadline. By default, the runtime's
    /// `default_deadline`. A request past its deadline has its service
    /// future (and every task spawned under it) dropped, and is answered
    /// `503 Service Unavailable`; the connection goes on to the next
    /// request.
    pub const fn request_deadline(mut self, deadline: Option<Duration>) -> Limits {
        self.request_deadline = Some(deadline);
        self
    }

    /// Deadlines for some routes, in place of the request deadline: a
    /// request whose path starts with a listed prefix gets that entry's
    /// deadline (the first match wins). For the few routes whose work is
    /// legitimately long (a report, a fan-out to a slow API) next to many
    /// that are quick, so the quick ones keep a deadline that fits them.
    ///
    /// ```
    /// use bulwark::hyper::Limits;
    /// use std::time::Duration;
    ///
    /// const LIMITS: Limits = Limits::new()
    ///     .request_deadline(Some(Duration::from_millis(200)))
    ///     .route_deadlines(&[("/reports/", Duration::from_secs(30))]);
    /// assert_eq!(LIMITS.deadline_for("/reports/q3"), Some(Duration::from_secs(30)));
    /// assert_eq!(LIMITS.deadline_for("/users/7"), Some(Duration::from_millis(200)));
    /// ```
    pub const fn route_deadlines(mut self, routes: &'static [(&'static str, Duration)]) -> Limits {
        self.route_deadlines = routes;
        self
    }

    /// The deadline a request for `path` gets: its route's, else the
    /// request deadline (the runtime's default, if none was set here and
    /// this is called inside a runtime).
    pub fn deadline_for(&self, path: &str) -> Option<Duration> {
        self.route_deadline(path)
            .or_else(|| self.effective_request_deadline())
    }

    /// The deadline of the first listed route `path` starts with, if any.
    fn route_deadline(&self, path: &str) -> Option<Duration> {
        self.route_deadlines
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix))
            .map(|(_, d)| *d)
    }

    /// How long a request head may take to arrive, from its first byte (the
    /// first request's: from when the connection is served). A client that
    /// sends its head slower (slowloris) is disconnected. `None`: no limit.
    pub const fn header_read_timeout(mut self, timeout: Option<Duration>) -> Limits {
        self.header_read_timeout = timeout;
        self
    }

    /// How long a keep-alive connection may wait between a response and the
    /// first byte of the next request before it is closed. `None`: no
    /// limit.
    pub const fn idle_timeout(mut self, timeout: Option<Duration>) -> Limits {
        self.idle_timeout = timeout;
        self
    }

    /// The request deadline set with [`request_deadline`](Self::request_deadline),
    /// or `None` if it is left to the runtime's default.
    pub const fn get_request_deadline(&self) -> Option<Duration> {
        match self.request_deadline {
            Some(d) => d,
            None => None,
        }
    }

    /// The request deadline in force: the one set here, else the runtime's
    /// default (if called inside a runtime).
    fn effective_request_deadline(&self) -> Option<Duration> {
        match self.request_deadline {
            Some(d) => d,
            None => crate::runtime::Handle::try_current()
                .ok()
                .and_then(|h| h.default_deadline()),
        }
    }
}

/// The response body of a connection served by [`serve_connection`]: the
/// service's own, or the helper's `503` for a request past its deadline.
///
/// # Examples
///
/// ```
/// use bulwark::hyper::ServedBody;
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Either, Full};
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     // The service's body is the left side.
///     let ours: ServedBody<Full<Bytes>> = Either::Left(Full::new(Bytes::from("hello")));
///     assert_eq!(ours.collect().await.unwrap().to_bytes(), "hello");
/// });
/// ```
pub type ServedBody<B> = Either<B, Full<<B as Body>::Data>>;

/// Serves one HTTP/1 connection with hyper, with a deadline per request
/// and the limits of `limits` on the connection; resolves when the
/// connection closes.
///
/// Call it in the connection's task, where a tokio service would call
/// `http1::Builder::serve_connection`:
///
/// - The task's own deadline (the runtime's `default_deadline`) is lifted:
///   a connection serves many requests and is bounded by its idle and
///   header-read timeouts, never by a total deadline.
/// - Each request's service future runs under
///   [`task::scope_deadline`](crate::task::scope_deadline): past the
///   request deadline it is dropped, with every task it spawned that has
///   not finished, and the client gets `503 Service Unavailable`. The
///   connection stays open for the next request.
///
/// hyper's timer is bulwark's ([`BulwarkTimer`]); keep-alive is on.
///
/// # Examples
///
/// A server whose `/slow` route overruns its deadline, and a client that
/// sends two requests on one connection:
///
/// ```
/// use bulwark::hyper::{serve_connection, Limits};
/// use bulwark::io::{AsyncReadExt, AsyncWriteExt};
/// use bulwark::net::{TcpListener, TcpStream};
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper::service::service_fn;
/// use hyper::{Request, Response};
/// use std::convert::Infallible;
/// use std::time::Duration;
///
/// async fn hello(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
///     if req.uri().path() == "/slow" {
///         bulwark::time::sleep(Duration::from_secs(3600)).await;
///     }
///     Ok(Response::new(Full::new(Bytes::from_static(b"hello"))))
/// }
///
/// const LIMITS: Limits = Limits::new().route_deadlines(&[("/slow", Duration::from_millis(20))]);
///
/// let rt = bulwark::Runtime::new()?;
/// rt.block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0").await?;
///     let addr = listener.local_addr()?;
///     bulwark::spawn(async move {
///         while let Ok((stream, _)) = listener.accept().await {
///             bulwark::spawn(async move {
///                 let _ = serve_connection(stream, service_fn(hello), LIMITS).await;
///             });
///         }
///     });
///
///     let mut client = TcpStream::connect(addr).await?;
///     client
///         .write_all(b"GET /slow HTTP/1.1\r\nhost: a\r\n\r\nGET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
///         .await?;
///     let mut responses = String::new();
///     client.read_to_string(&mut responses).await?;
///     // The slow request is answered 503 at its deadline; the connection
///     // goes on to the next one.
///     assert!(responses.starts_with("HTTP/1.1 503 Service Unavailable"), "{responses}");
///     assert!(responses.contains("HTTP/1.1 200 OK") && responses.ends_with("hello"));
///     Ok::<_, std::io::Error>(())
/// })?;
/// # Ok::<_, std::io::Error>(())
/// ```
pub async fn serve_connection<I, S, B>(io: I, service: S, limits: Limits) -> hyper::Result<()>
where
    I: Read + Write + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>>,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: From<&'static [u8]> + Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    task::lift_deadline();
    let state = Arc::new(ConnState::new());
    let service = Deadlined {
        inner: service,
        limits,
        default: limits.effective_request_deadline(),
        state: state.clone(),
    };
    let io = Watched {
        inner: io,
        state: state.clone(),
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(BulwarkTimer)
        .header_read_timeout(None)
        .keep_alive(true)
        .serve_connection(io, service);
    Guarded {
        conn,
        state,
        limits,
        sleep: None,
        armed: None,
    }
    .await
}

/// Where the connection is, for its limits.
mod phase {
    /// No request in the service and no byte of the next one read.
    pub(super) const IDLE: u8 = 0;
    /// Bytes of a request head read; the request is not in the service yet.
    pub(super) const HEAD: u8 = 1;
    /// A request is in the service (its deadline bounds it).
    pub(super) const BUSY: u8 = 2;
}

/// The connection's phase and when it began, shared by the IO, the service
/// wrapper and the guard (all in the connection's task; atomics only
/// because hyper asks for `Send`).
struct ConnState {
    phase: AtomicU8,
    /// When the phase began, in ms since `epoch`.
    since_ms: AtomicU64,
    epoch: Instant,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            phase: AtomicU8::new(phase::IDLE),
            since_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn enter(&self, phase: u8) {
        self.phase.store(phase, Relaxed);
        self.since_ms
            .store(self.epoch.elapsed().as_millis() as u64, Relaxed);
    }

    fn since(&self) -> Instant {
        self.epoch + Duration::from_millis(self.since_ms.load(Relaxed))
    }
}

/// The IO, noting the first byte of a request head.
struct Watched<I> {
    inner: I,
    state: Arc<ConnState>,
}

impl<I: Read + Unpin> Read for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        // SAFETY: `inner` reads into the unfilled part of the outer buffer
        // through a `ReadBuf` over the same memory; it initializes the first
        // `n` bytes it reports as filled, and the outer cursor is advanced by
        // exactly `n` once that `ReadBuf` is gone.
        let (res, n) = unsafe {
            let mut inner_buf = hyper::rt::ReadBuf::uninit(buf.as_mut());
            let res = Pin::new(&mut self.inner).poll_read(cx, inner_buf.unfilled());
            (res, inner_buf.filled().len())
        };
        // SAFETY: see above: `n` bytes were initialized and filled.
        unsafe { buf.advance(n) };
        if n > 0 && self.state.phase.load(Relaxed) == phase::IDLE {
            self.state.enter(phase::HEAD);
        }
        res
    }
}

impl<I: Write + Unpin> Write for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
}

/// The service, with each request under its own deadline scope.
struct Deadlined<S> {
    inner: S,
    limits: Limits,
    /// The deadline of a request on no listed route, looked up once.
    default: Option<Duration>,
    state: Arc<ConnState>,
}

impl<S, B> Service<Request<Incoming>> for Deadlined<S>
where
    S: Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    B: Body,
    B::Data: From<&'static [u8]>,
{
    type Response = Response<ServedBody<B>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.state.enter(phase::BUSY);
        let deadline = self
            .limits
            .route_deadline(req.uri().path())
            .or(self.default);
        let fut = self.inner.call(req);
        let done = Finished(self.state.clone());
        match deadline {
            None => Box::pin(async move {
                let _done = done;
                fut.await.map(|r| r.map(Either::Left))
            }),
            Some(d) => {
                let at = Instant::now()
                    .checked_add(d)
                    .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
                Box::pin(async move {
                    let _done = done;
                    match task::scope_deadline(at, fut).await {
                        Ok(res) => res.map(|r| r.map(Either::Left)),
                        Err(_) => Ok(past_deadline()),
                    }
                })
            }
        }
    }
}

/// Ends a request's `BUSY` phase when its response future is done or
/// dropped.
struct Finished(Arc<ConnState>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.enter(phase::IDLE);
    }
}

/// The answer to a request past its deadline.
fn past_deadline<B>() -> Response<ServedBody<B>>
where
    B: Body,
    B::Data: From<&'static [u8]>,
{
    let body: &'static [u8] = b"request deadline exceeded\n";
    let mut resp = Response::new(Either::Right(Full::new(body.into())));
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    resp
}

/// The connection, closed when its idle or header-read limit passes.
struct Guarded<C> {
    conn: C,
    state: Arc<ConnState>,
    limits: Limits,
    /// The limit's timer, kept across requests and re-armed only when the
    /// limit in force moves (a new phase).
    sleep: Option<Sleep>,
    /// When `sleep` is set to fire.
    armed: Option<Instant>,
}

impl<C: Future<Output = hyper::Result<()>> + Unpin> Future for Guarded<C> {
    type Output = hyper::Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Poll::Ready(res) = Pin::new(&mut this.conn).poll(cx) {
            return Poll::Ready(res);
        }
        let limit = match this.state.phase.load(Relaxed) {
            phase::IDLE => this.limits.idle_timeout,
            phase::HEAD => this.limits.header_read_timeout,
            // Busy: the request's deadline bounds it. A timer left armed
            // from the phase before may wake this once, for nothing.
            _ => return Poll::Pending,
        };
        let Some(limit) = limit else {
            return Poll::Pending;
        };
        let at = this.state.since() + limit;
        if this.armed != Some(at) {
            if Instant::now() >= at {
                // Past the limit: the connection closes (dropping it drops
                // the socket).
                return Poll::Ready(Ok(()));
            }
            match this.sleep.as_mut() {
                Some(s) => Pin::new(s).reset(at),
                None => this.sleep = Some(sleep_until(at)),
            }
            this.armed = Some(at);
        }
        let sleep = this.sleep.as_mut().expect("armed above");
        match Pin::new(sleep).poll(cx) {
            // The limit of the phase still in force has passed.
            Poll::Ready(()) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }
}
