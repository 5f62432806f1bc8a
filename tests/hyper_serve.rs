//! `bulwark::hyper::serve_connection`: a request past its deadline is
//! answered 503 and the keep-alive connection serves the next one; the
//! connection outlives the runtime's default deadline; a handler's children
//! inherit the request's deadline and are dropped with it; slowloris is
//! closed at the header-read timeout and an idle connection at the idle
//! timeout.
//!
//! The clients are plain blocking sockets on the test thread, with read
//! timeouts, so what the server sends (or does not) is seen byte for byte.
//!
//! Real time, by nature: a paused clock would jump to the next timer while
//! the server waits for a client outside the runtime. So the deadlines here
//! leave a request with no work half a second or more, ample for a loaded
//! machine, and each bound on when something happens is seconds wide.

mod common;

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bulwark::hyper::{serve_connection, Limits};
use bulwark::net::TcpListener;
use bulwark::runtime::Runtime;
use bytes::Bytes;
use common::{builder, wait_until, DropCounter};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};

/// How long `/slow` takes.
const SLOW: Duration = Duration::from_secs(1);
/// The request deadline of the tests that set one: it bounds requests that
/// do no work, so it leaves a loaded machine ample time for them.
const DEADLINE: Duration = Duration::from_millis(500);

/// A server on `rt` serving every connection with `limits`: `/ok` answers
/// 200, `/slow` answers 200 after `SLOW`, `/hang` never answers, `/spawn`
/// spawns and detaches a child (which counts its drop in `dropped` and
/// notes whether it had a deadline in `had_deadline`) that never finishes,
/// and never answers either.
fn serve(
    rt: &Runtime,
    limits: Limits,
    dropped: Arc<AtomicUsize>,
    had_deadline: Arc<AtomicUsize>,
) -> SocketAddr {
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind");
    let addr = listener.local_addr().expect("local addr");
    rt.spawn(async move {
        // The accept loop is no request: under a runtime default deadline it
        // would end at it, and connections made later would go unserved.
        bulwark::task::lift_deadline();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let dropped = dropped.clone();
            let had_deadline = had_deadline.clone();
            bulwark::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let dropped = dropped.clone();
                    let had_deadline = had_deadline.clone();
                    async move {
                        match req.uri().path() {
                            "/hang" => std::future::pending::<()>().await,
                            "/slow" => bulwark::time::sleep(SLOW).await,
                            "/spawn" => {
                                let count = DropCounter::new(&dropped);
                                let child = bulwark::spawn(async move {
                                    let _count = count;
                                    if bulwark::task::deadline().is_some() {
                                        had_deadline.fetch_add(1, SeqCst);
                                    }
                                    std::future::pending::<()>().await
                                });
                                // Detached: only the inherited deadline ends it.
                                drop(child);
                                std::future::pending::<()>().await
                            }
                            _ => {}
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = serve_connection(stream, service, limits).await;
            });
        }
    });
    addr
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// Sends `GET path` and reads one response (its head and a body of the
/// given `content-length`); returns the status code.
fn get(s: &mut TcpStream, path: &str) -> u16 {
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").expect("send request");
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = match s.read(&mut byte) {
            // A signal (a debugger, a profiler) cuts a read with a timeout
            // short: read again.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => r.unwrap_or_else(|e| panic!("reading the response to {path}: {e}")),
        };
        assert!(n == 1, "connection closed before the response to {path}");
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().expect("content-length"))
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("read the body");
    head[9..12].parse().expect("status code")
}

/// Reads until the server closes the connection.
fn wait_for_close(s: &mut TcpStream) {
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("waiting for the server to close the connection: {e}"),
        }
    }
}

#[test]
fn a_hung_request_gets_503_at_its_deadline_and_the_connection_serves_on() {
    let mut b = builder(2);
    // The runtime's default deadline is the request deadline here; the
    // connection itself must outlive it.
    b.default_deadline(Some(DEADLINE));
    let rt = b.build().expect("runtime");
    let addr = serve(&rt, Limits::new(), Arc::default(), Arc::default());
    let mut s = connect(addr);
    assert_eq!(get(&mut s, "/ok"), 200);
    let start = Instant::now();
    assert_eq!(get(&mut s, "/hang"), 503, "a hung request is answered 503");
    let took = start.elapsed();
    assert!(
        took >= DEADLINE && took < DEADLINE + Duration::from_secs(3),
        "the 503 came after {took:?}, not at the {DEADLINE:?} deadline"
    );
    // The same keep-alive connection, past the default deadline of the
    // connection's task.
    std::thread::sleep(DEADLINE);
    assert_eq!(
        get(&mut s, "/ok"),
        200,
        "the connection serves the next request"
    );
    assert_eq!(get(&mut s, "/hang"), 503);
    assert_eq!(get(&mut s, "/ok"), 200);
    assert_eq!(
        rt.metrics().scope_deadlines_exceeded,
        2,
        "each 503 is a request deadline counted in the books"
    );
}

#[test]
fn a_handler_s_children_inherit_the_request_deadline_and_go_with_it() {
    let rt = builder(2).build().expect("runtime");
    let dropped = Arc::new(AtomicUsize::new(0));
    let had_deadline = Arc::new(AtomicUsize::new(0));
    // Each child reports in its first poll, which must come before the
    // request's deadline ends it: `DEADLINE` leaves ample time for that.
    let limits = Limits::new().request_deadline(Some(DEADLINE));
    let addr = serve(&rt, limits, dropped.clone(), had_deadline.clone());
    let mut s = connect(addr);
    for _ in 0..3 {
        assert_eq!(get(&mut s, "/spawn"), 503);
    }
    wait_until(5, "the three requests' children to be dropped", || {
        dropped.load(SeqCst) == 3
    });
    assert_eq!(
        had_deadline.load(SeqCst),
        3,
        "every child saw the request's deadline"
    );
    assert_eq!(get(&mut s, "/ok"), 200);
}

#[test]
fn slowloris_is_closed_at_the_header_read_timeout() {
    let rt = builder(2).build().expect("runtime");
    let limits = Limits::new()
        .header_read_timeout(Some(Duration::from_millis(300)))
        .idle_timeout(Some(Duration::from_secs(30)));
    let addr = serve(&rt, limits, Arc::default(), Arc::default());
    let mut s = connect(addr);
    // A good request first: the limit runs from each head's first byte.
    assert_eq!(get(&mut s, "/ok"), 200);
    std::thread::sleep(Duration::from_millis(500));
    let head =
        b"GET /ok HTTP/1.1\r\nHost: test\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let start = Instant::now();
    let mut closed = None;
    for byte in head {
        if s.write_all(&[*byte]).is_err() {
            closed = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if start.elapsed() > Duration::from_secs(3) {
            break;
        }
        // Closed by the server: the next write (or a read) fails.
        s.set_nonblocking(true).expect("nonblocking");
        let mut b = [0u8; 64];
        let gone = matches!(s.read(&mut b), Ok(0));
        s.set_nonblocking(false).expect("blocking");
        if gone {
            closed = Some(start.elapsed());
            break;
        }
    }
    let closed = closed.expect("the slow head was never cut off (3 s)");
    assert!(
        closed >= Duration::from_millis(300) && closed < Duration::from_secs(3),
        "closed after {closed:?}, not at the 300 ms header-read timeout"
    );
}

#[test]
fn an_idle_keep_alive_connection_is_closed_at_the_idle_timeout() {
    const IDLE: Duration = Duration::from_millis(300);
    let rt = builder(2).build().expect("runtime");
    let limits = Limits::new().idle_timeout(Some(IDLE));
    let addr = serve(&rt, limits, Arc::default(), Arc::default());
    let mut s = connect(addr);
    // Timed from before the request: the idle time starts after the
    // response, so however long this thread takes to read it, the close
    // comes at least `IDLE` after this.
    let start = Instant::now();
    assert_eq!(get(&mut s, "/ok"), 200);
    wait_for_close(&mut s);
    let took = start.elapsed();
    assert!(
        took >= IDLE && took < IDLE + Duration::from_secs(3),
        "an idle connection closed {took:?} after its request, not at the {IDLE:?} idle timeout"
    );
    // Busy connections are not idle: requests every 100 ms for 1.5 s, on a
    // server whose idle timeout is shorter than that but leaves a loaded
    // machine ample time between two requests.
    const BUSY_IDLE: Duration = Duration::from_secs(1);
    let limits = Limits::new().idle_timeout(Some(BUSY_IDLE));
    let addr = serve(&rt, limits, Arc::default(), Arc::default());
    let mut s = connect(addr);
    for _ in 0..15 {
        assert_eq!(get(&mut s, "/ok"), 200);
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_listed_route_gets_its_own_deadline() {
    const ROUTES: &[(&str, Duration)] = &[("/slow", Duration::from_secs(5))];
    let rt = builder(2).build().expect("runtime");
    let limits = Limits::new()
        .request_deadline(Some(DEADLINE))
        .route_deadlines(ROUTES);
    let addr = serve(&rt, limits, Arc::default(), Arc::default());
    let mut s = connect(addr);
    assert_eq!(
        get(&mut s, "/slow"),
        200,
        "/slow has 5 s for its {SLOW:?}, past the request deadline"
    );
    assert_eq!(
        get(&mut s, "/hang"),
        503,
        "/hang has the {DEADLINE:?} request deadline"
    );
    assert_eq!(get(&mut s, "/ok"), 200);
}
