//! The three stacks, side by side. Each is a module that brings in its
//! runtime's names and its hardening hooks, then `include!`s the one
//! service (`service.rs`). tokio-naive and bulwark expand the very same
//! hooks (`naive_hooks!`, no guard at all); bulwark's guards are in its
//! runtime builder (`main.rs`, `build_bulwark`), and its server loop serves
//! a connection with `bulwark::hyper::serve_connection` (a deadline per
//! request) where tokio-naive calls hyper's `serve_connection`. tokio-hardened spells out
//! the mitigations people add to a tokio service.

/// The service as most people write it: no limit, no timeout, the accept
/// loop's `?`, the blocking call inline.
macro_rules! naive_hooks {
    () => {
        async fn accept(listener: &TcpListener) -> std::io::Result<TcpStream> {
            listener.accept().await.map(|(stream, _)| stream)
        }
        /// No limit: a permit that holds nothing.
        struct Unlimited;
        fn connection_permit() -> Option<Unlimited> {
            Some(Unlimited)
        }
        fn service(
            app: Arc<App>,
        ) -> impl hyper::service::Service<
            Request<Incoming>,
            Response = Resp,
            Error = Infallible,
            Future = impl std::future::Future<Output = Result<Resp, Infallible>> + Send,
        > {
            hyper::service::service_fn(move |req| handle(app.clone(), req))
        }
        fn fanout_permit(_subtasks: u32) -> Option<Unlimited> {
            Some(Unlimited)
        }
        async fn dependency<F: std::future::Future>(call: F) -> Option<F::Output> {
            Some(call.await)
        }
        async fn blocking(f: impl FnOnce() + Send + 'static) {
            f()
        }
    };
}

/// tokio's multi-thread runtime, the naive service.
pub mod tokio_naive {
    use super::tokio_hyper::{TokioIo, TokioTimer as Timer};

    /// A tokio stream as hyper wants it.
    fn io(stream: tokio::net::TcpStream) -> TokioIo {
        TokioIo(stream)
    }
    use tokio::net::{TcpListener, TcpStream};
    use tokio::{spawn, time::sleep};
    /// hyper's HTTP/1 server, with tokio's timer.
    fn http1() -> hyper::server::conn::http1::Builder {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(Timer);
        b
    }
    naive_hooks!();
    include!("service.rs");
}

/// bulwark, the naive service unchanged (guards: the runtime builder).
pub mod bulwark_naive {
    use bulwark::net::{TcpListener, TcpStream};
    use bulwark::{spawn, time::sleep};
    fn io(stream: TcpStream) -> TcpStream {
        stream // bulwark's stream is hyper's Read + Write itself
    }
    /// The one line that differs from tokio-naive's server loop: the
    /// connection is served by `bulwark::hyper::serve_connection`, which
    /// gives each request its own deadline instead of the runtime's default
    /// deadline on the whole connection, and bounds the connection by a
    /// header-read and an idle timeout.
    pub const LIMITS: bulwark::hyper::Limits = bulwark::hyper::Limits::new()
        .request_deadline(Some(REQUEST_DEADLINE))
        .route_deadlines(&[("/fanout", FANOUT_DEADLINE)])
        .header_read_timeout(Some(Duration::from_secs(2)))
        .idle_timeout(Some(Duration::from_secs(10)));
    /// Each request's deadline. `/work` answers in about 1 ms; a request
    /// that holds one of the 16 pool connections must let it go soon enough
    /// that hostile holders (50/s) cannot keep the pool full: 16 / 50 s =
    /// 320 ms at most, so 200 ms.
    pub const REQUEST_DEADLINE: Duration = Duration::from_millis(200);
    /// `/fanout`'s deadline: its subtasks take up to 500 ms each, so it
    /// gets the runtime's default, 2 s.
    pub const FANOUT_DEADLINE: Duration = Duration::from_secs(2);
    struct Http1;
    impl Http1 {
        async fn serve_connection<S, B>(&self, io: TcpStream, service: S) -> hyper::Result<()>
        where
            S: hyper::service::Service<Request<Incoming>, Response = Response<B>>,
            S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
            S::Future: Send + 'static,
            B: hyper::body::Body + Send + 'static,
            B::Data: From<&'static [u8]> + Send,
            B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        {
            bulwark::hyper::serve_connection(io, service, LIMITS).await
        }
    }
    fn http1() -> Http1 {
        Http1
    }
    naive_hooks!();
    include!("service.rs");
}

/// tokio's multi-thread runtime, the service hardened with the usual
/// libraries: tower's load-shed, concurrency-limit and timeout layers, a
/// semaphore around the fan-out, a timeout on the dependency,
/// `spawn_blocking` for the blocking call, a connection cap and hyper's
/// header-read timeout.
pub mod tokio_hardened {
    use super::tokio_hyper::{TokioIo, TokioTimer as Timer};

    /// A tokio stream as hyper wants it.
    fn io(stream: tokio::net::TcpStream) -> TokioIo {
        TokioIo(stream)
    }
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::LazyLock;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::OwnedSemaphorePermit;
    use tokio::{spawn, time::sleep};
    use tower::{BoxError, ServiceBuilder, ServiceExt};

    /// Open connections at most (the server has 4,096 fds).
    pub const MAX_CONNECTIONS: usize = 2_000;
    /// Requests in the service at once; past it, shed with 503.
    pub const MAX_IN_FLIGHT: usize = 256;
    /// A request that takes longer is answered 504.
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
    /// Fan-out subtasks in flight at once, all requests together.
    pub const MAX_FANOUT_SUBTASKS: usize = 10_000;
    /// The dependency's (database) timeout; a call takes 1 ms.
    pub const DEPENDENCY_TIMEOUT: Duration = Duration::from_millis(100);
    /// Time for a client to send its request head.
    pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);

    static CONNECTIONS: LazyLock<Arc<Semaphore>> =
        LazyLock::new(|| Arc::new(Semaphore::new(MAX_CONNECTIONS)));
    static FANOUT_SUBTASKS: LazyLock<Arc<Semaphore>> =
        LazyLock::new(|| Arc::new(Semaphore::new(MAX_FANOUT_SUBTASKS)));
    static IN_FLIGHT: LazyLock<tower::limit::GlobalConcurrencyLimitLayer> =
        LazyLock::new(|| tower::limit::GlobalConcurrencyLimitLayer::new(MAX_IN_FLIGHT));

    async fn accept(listener: &TcpListener) -> std::io::Result<TcpStream> {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => return Ok(stream),
                // EMFILE and friends: back off instead of dying or spinning.
                Err(_) => sleep(Duration::from_millis(10)).await,
            }
        }
    }
    fn connection_permit() -> Option<OwnedSemaphorePermit> {
        CONNECTIONS.clone().try_acquire_owned().ok()
    }
    fn http1() -> hyper::server::conn::http1::Builder {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(Timer).header_read_timeout(HEADER_READ_TIMEOUT);
        b
    }
    fn service(app: Arc<App>) -> Tower<impl TowerService> {
        let svc = ServiceBuilder::new()
            .load_shed()
            .layer(IN_FLIGHT.clone())
            .timeout(REQUEST_TIMEOUT)
            .service_fn(move |req| handle(app.clone(), req));
        Tower(svc)
    }
    fn fanout_permit(subtasks: u32) -> Option<OwnedSemaphorePermit> {
        FANOUT_SUBTASKS
            .clone()
            .try_acquire_many_owned(subtasks)
            .ok()
    }
    async fn dependency<F: Future>(call: F) -> Option<F::Output> {
        tokio::time::timeout(DEPENDENCY_TIMEOUT, call).await.ok()
    }
    async fn blocking(f: impl FnOnce() + Send + 'static) {
        let _ = tokio::task::spawn_blocking(f).await;
    }

    /// The tower stack's bounds.
    pub trait TowerService:
        tower::Service<Request<Incoming>, Response = Resp, Error = BoxError, Future: Send>
        + Clone
        + Send
        + 'static
    {
    }
    impl<S> TowerService for S where
        S: tower::Service<Request<Incoming>, Response = Resp, Error = BoxError, Future: Send>
            + Clone
            + Send
            + 'static
    {
    }

    /// A tower service as a hyper service (as hyper-util's
    /// `TowerToHyperService`); tower's errors become 503 or 504.
    pub struct Tower<S>(S);

    impl<S: TowerService> hyper::service::Service<Request<Incoming>> for Tower<S> {
        type Response = Resp;
        type Error = Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Resp, Infallible>> + Send>>;

        fn call(&self, req: Request<Incoming>) -> Self::Future {
            let svc = self.0.clone();
            Box::pin(async move {
                Ok(match svc.oneshot(req).await {
                    Ok(resp) => resp,
                    Err(e) if e.is::<tower::load_shed::error::Overloaded>() => {
                        reply(StatusCode::SERVICE_UNAVAILABLE)
                    }
                    Err(_) => reply(StatusCode::GATEWAY_TIMEOUT),
                })
            })
        }
    }

    include!("service.rs");
}

/// hyper's runtime traits for tokio (`TokioIo`, `TokioTimer`), shared with
/// `benches/io.rs`.
#[path = "../../benches/support/tokio_hyper.rs"]
pub mod tokio_hyper;
