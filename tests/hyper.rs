//! hyper on bulwark, with no tokio runtime in the process: a hyper server
//! (`http1::Builder` with `BulwarkTimer`) and a hyper client (`http1`
//! handshake, its connection driven by a bulwark task) on bulwark
//! `TcpStream`s, both on one bulwark runtime.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bulwark::hyper::{BulwarkExecutor, BulwarkTimer};
use bulwark::net::{TcpListener, TcpStream};
use bytes::Bytes;
use common::{bounded, runtime, within};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::io::AsyncWriteExt;

/// What the server's handler saw, for the test to check afterwards.
#[derive(Default)]
struct Seen {
    requests: AtomicUsize,
    /// Requests during which a tokio runtime was current (must stay 0).
    tokio_present: AtomicUsize,
}

/// Answers `POST /echo/<conn>/<i>` with "<path>|<body>|tokio=<none|present>".
async fn handle(
    req: Request<Incoming>,
    seen: Arc<Seen>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    seen.requests.fetch_add(1, Ordering::SeqCst);
    let tokio = if tokio::runtime::Handle::try_current().is_ok() {
        seen.tokio_present.fetch_add(1, Ordering::SeqCst);
        "present"
    } else {
        "none"
    };
    let path = req.uri().path().to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(Response::builder()
                .status(500)
                .body(Full::new(Bytes::from(format!("body error: {e}"))))
                .unwrap())
        }
    };
    let body = String::from_utf8_lossy(&body);
    Ok(Response::new(Full::new(Bytes::from(format!(
        "{path}|{body}|tokio={tokio}"
    )))))
}

#[test]
fn a_thousand_requests_over_ten_keep_alive_connections_between_hyper_client_and_server() {
    const CONNS: usize = 10;
    const PER_CONN: usize = 100;
    within(60, "1_000 hyper requests over 10 connections", || {
        let rt = runtime(4);
        let seen = Arc::new(Seen::default());
        let accepted = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().unwrap();

            // The server: each accepted connection served by hyper in a task.
            let server = {
                let (seen, accepted) = (seen.clone(), accepted.clone());
                bulwark::spawn(async move {
                    let mut conns = Vec::new();
                    for _ in 0..CONNS {
                        let (stream, _) = listener.accept().await.expect("accept");
                        accepted.fetch_add(1, Ordering::SeqCst);
                        let seen = seen.clone();
                        conns.push(bulwark::spawn(async move {
                            let service = service_fn(move |req| handle(req, seen.clone()));
                            hyper::server::conn::http1::Builder::new()
                                .timer(BulwarkTimer)
                                .serve_connection(stream, service)
                                .await
                        }));
                    }
                    for (i, c) in conns.into_iter().enumerate() {
                        c.await
                            .expect("a server connection task failed")
                            .unwrap_or_else(|e| panic!("server connection {i} failed: {e}"));
                    }
                })
            };

            // The clients: one task per connection, 100 requests each in turn.
            let clients: Vec<_> = (0..CONNS)
                .map(|c| {
                    bulwark::spawn(async move {
                        let stream = TcpStream::connect(addr).await.expect("connect");
                        let (mut sender, conn) =
                            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(stream)
                                .await
                                .expect("client handshake");
                        let driver = bulwark::spawn(conn);
                        for i in 0..PER_CONN {
                            sender.ready().await.unwrap_or_else(|e| {
                                panic!("conn {c}: not ready for request {i}: {e}")
                            });
                            let req = Request::post(format!("/echo/{c}/{i}"))
                                .header("host", "bulwark.test")
                                .body(Full::new(Bytes::from(format!("body-{c}-{i}"))))
                                .unwrap();
                            let resp = sender
                                .send_request(req)
                                .await
                                .unwrap_or_else(|e| panic!("conn {c}: request {i} failed: {e}"));
                            assert_eq!(resp.status(), 200, "conn {c} request {i}: status");
                            let body = resp
                                .into_body()
                                .collect()
                                .await
                                .unwrap_or_else(|e| panic!("conn {c}: response {i}'s body: {e}"))
                                .to_bytes();
                            assert_eq!(
                                body,
                                format!("/echo/{c}/{i}|body-{c}-{i}|tokio=none"),
                                "conn {c} request {i}: response body"
                            );
                        }
                        // Closing the sender ends the connection cleanly.
                        drop(sender);
                        driver
                            .await
                            .expect("a client connection driver task failed")
                            .unwrap_or_else(|e| panic!("conn {c}: connection driver failed: {e}"));
                    })
                })
                .collect();
            for (c, h) in clients.into_iter().enumerate() {
                bounded(50, &format!("client connection {c}'s 100 requests"), h)
                    .await
                    .unwrap_or_else(|e| panic!("client {c} failed: {e}"));
            }
            bounded(10, "the server's connections to close", server)
                .await
                .expect("the server task failed");
        });
        println!("1_000 hyper requests in {:?}", start.elapsed());
        assert_eq!(
            seen.requests.load(Ordering::SeqCst),
            CONNS * PER_CONN,
            "requests the handler saw"
        );
        assert_eq!(
            seen.tokio_present.load(Ordering::SeqCst),
            0,
            "requests during which tokio::runtime::Handle::try_current() was Ok"
        );
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            CONNS,
            "connections accepted: keep-alive should carry 100 requests on each"
        );
    });
}

#[test]
fn bulwark_timer_drives_hypers_header_read_timeout() {
    within(
        30,
        "hyper's header read timeout to close a stalled connection",
        || {
            let rt = runtime(2);
            rt.block_on(async {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let addr = listener.local_addr().unwrap();
                let server = bulwark::spawn(async move {
                    let (stream, _) = listener.accept().await.expect("accept");
                    let service = service_fn(|_req: Request<Incoming>| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                            b"unexpected",
                        ))))
                    });
                    let start = Instant::now();
                    let result = hyper::server::conn::http1::Builder::new()
                        .timer(BulwarkTimer)
                        .header_read_timeout(Duration::from_millis(200))
                        .serve_connection(stream, service)
                        .await;
                    (result, start.elapsed())
                });
                // Half a request head, then nothing.
                let mut client = TcpStream::connect(addr).await.expect("connect");
                client
                    .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
                    .await
                    .expect("write half a head");
                let (result, took) =
                    bounded(10, "the header read timeout to end the connection", server)
                        .await
                        .expect("the server task failed");
                let err = result.expect_err("a connection with a stalled head was served");
                assert!(
                    err.is_timeout(),
                    "the connection ended with {err:?}, not a timeout"
                );
                assert!(
                    took >= Duration::from_millis(200),
                    "the 200 ms header read timeout fired after {took:?}"
                );
                assert!(
                    took < Duration::from_secs(5),
                    "the 200 ms header read timeout took {took:?}"
                );
                drop(client);
            });
        },
    );
}

#[test]
fn bulwark_executor_runs_hypers_background_futures_as_tasks() {
    within(20, "a future given to BulwarkExecutor to run", || {
        let rt = runtime(2);
        let (tx, rx) = tokio::sync::oneshot::channel();
        rt.block_on(async {
            hyper::rt::Executor::execute(&BulwarkExecutor, async move {
                let on_task = bulwark::task::try_id().is_some();
                let _ = tx.send(on_task);
            });
            let on_task = bounded(10, "the executed future to run", rx)
                .await
                .expect("the executed future was dropped without running");
            assert!(
                on_task,
                "BulwarkExecutor ran the future outside a bulwark task"
            );
        });
        // hyper's Timer: sleep and reset.
        rt.block_on(async {
            use hyper::rt::Timer;
            let start = Instant::now();
            BulwarkTimer.sleep(Duration::from_millis(30)).await;
            let slept = start.elapsed();
            assert!(
                slept >= Duration::from_millis(30) && slept < Duration::from_secs(2),
                "BulwarkTimer.sleep(30 ms) took {slept:?}"
            );
            let start = Instant::now();
            let mut s = BulwarkTimer.sleep(Duration::from_secs(60));
            BulwarkTimer.reset(&mut s, start + Duration::from_millis(30));
            bounded(5, "a 60 s hyper sleep reset to 30 ms", s).await;
            let slept = start.elapsed();
            assert!(
                slept >= Duration::from_millis(30),
                "reset sleep woke after {slept:?}"
            );
        });
    });
}
