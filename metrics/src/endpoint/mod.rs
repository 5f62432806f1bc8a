//! The metrics endpoint: a small HTTP/1.1 server on one dedicated OS
//! thread, which reads the runtime only through its [`Books`], so that it
//! answers while every worker is stuck in a poll.
//!
//! # Design
//!
//! - **One thread, never a worker.** [`Endpoint::start`] binds, then
//!   starts the thread `bulwark-metrics`; it runs a `mio` poll over the
//!   listener, up to [`MAX_CONNECTIONS`] connections and a waker. Nothing
//!   here waits for a worker: the books' reads are atomics and short locks
//!   that no poll holds (see [`Source`](crate::Source)).
//! - **Routes** (`routes`): `/`, `/metrics`, `/tasks`, `/stalls`, `/leaks`,
//!   `/health`; requests are parsed with `httparse` (`request`).
//! - **Bounded.** A request head is at most 8 KiB (431 past that) and must
//!   arrive within 2 s of the accept (408 and close); a response must be
//!   taken within 5 s; `/tasks` lists at most
//!   [`TASKS_LIMIT_MAX`](routes::TASKS_LIMIT_MAX) tasks. At most
//!   [`MAX_CONNECTIONS`] connections are open at once: past that, requests
//!   already in are served first, then the connection that has waited
//!   longest without being answered (an idle or trickling client) is
//!   closed to make room, so a flood of idle or slow connections costs at
//!   most 64 fds and never locks out a client that sends its request at
//!   once. Every response closes its connection
//!   (`Connection: close`).
//! - **Stops with its owner.** Dropping the [`Endpoint`] wakes the thread
//!   through the waker and joins it; the runtime owns it, so it stops when
//!   the runtime is dropped or shut down. While the runtime is gone the
//!   routes that read it answer 503.
//!
//! # Examples
//!
//! ```
//! use bulwark_metrics::{endpoint::Endpoint, Books};
//! use std::io::{Read, Write};
//! use std::sync::Arc;
//!
//! let books = Arc::new(Books::default());
//! let endpoint = Endpoint::start(books, "127.0.0.1:0".parse().unwrap())?;
//! let mut conn = std::net::TcpStream::connect(endpoint.local_addr())?;
//! conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")?;
//! let mut answer = String::new();
//! conn.read_to_string(&mut answer)?;
//! // No runtime behind these books: not ready.
//! assert!(answer.starts_with("HTTP/1.1 503"));
//! # Ok::<(), std::io::Error>(())
//! ```

pub mod conn;
mod page;
pub mod request;
pub mod routes;

use crate::Books;
use conn::{Conn, State, Step};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The most connections open at once.
pub const MAX_CONNECTIONS: usize = 64;

/// Connections accepted in one go before the loop serves the open ones,
/// so that a burst of connects cannot starve (or push out) a connection
/// whose request is already here.
const ACCEPT_BATCH: usize = 32;

/// Wait after `accept` fails for want of fds or memory before trying
/// again (the listener stays readable meanwhile; retrying at once would
/// spin).
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// The longest the loop sleeps with nothing to do: a bound on how late it
/// notices the stop flag should a wake ever be lost.
const TICK: Duration = Duration::from_millis(500);

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);

/// The listen backlog: connections the kernel completes before the
/// endpoint accepts them. A burst larger than this loses SYNs, and each
/// costs its client a 1 s retransmit (the kernel caps it at `somaxconn`).
const BACKLOG: i32 = 1024;

/// A non-blocking listener on `addr` with [`BACKLOG`], address reuse on
/// (as mio's and std's `bind` do, so a restarted service rebinds at once).
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// A running metrics endpoint. Dropping it stops its thread and joins it.
#[derive(Debug)]
pub struct Endpoint {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl Endpoint {
    /// Binds `addr` (port 0: any free port) and starts the endpoint's
    /// thread serving `books`. The bound address is also recorded in the
    /// books ([`Books::endpoint_addr`]).
    ///
    /// Errors if the address cannot be bound (in use, not local, no
    /// permission) or the thread cannot be started.
    pub fn start(books: Arc<Books>, addr: SocketAddr) -> io::Result<Endpoint> {
        let poll = Poll::new()?;
        let mut listener = bind(addr)?;
        let local = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let stop = Arc::new(AtomicBool::new(false));
        let server = Server {
            poll,
            listener,
            conns: Slab::with_capacity(MAX_CONNECTIONS),
            books: books.clone(),
            stop: stop.clone(),
            accept_ready: true,
            accept_retry: None,
            scratch: Vec::with_capacity(MAX_CONNECTIONS),
        };
        let thread = thread::Builder::new()
            .name("bulwark-metrics".into())
            .spawn(move || server.run())?;
        books.set_endpoint_addr(local);
        Ok(Endpoint {
            addr: local,
            stop,
            waker,
            thread: Some(thread),
        })
    }

    /// The address the endpoint listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // Release: the thread's Acquire load sees the flag set before the
        // wake it is woken by.
        self.stop.store(true, Ordering::Release);
        // A failed wake only delays the stop by up to one `TICK`.
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            // Its panic (a bug) has nothing left to tell here.
            let _ = thread.join();
        }
    }
}

/// The endpoint thread's state.
struct Server {
    poll: Poll,
    listener: TcpListener,
    conns: Slab<Conn>,
    books: Arc<Books>,
    stop: Arc<AtomicBool>,
    /// The listener may have connections waiting (it is edge-triggered:
    /// once told, accept until it would block).
    accept_ready: bool,
    /// When to try `accept` again after it failed for want of resources.
    accept_retry: Option<Instant>,
    /// Scratch list of connections (past their deadline, or to serve
    /// before one is pushed out).
    scratch: Vec<usize>,
}

impl Server {
    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        loop {
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            let timeout = self.timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    // Not expected from epoll; do not spin on it.
                    thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    LISTENER => self.accept_ready = true,
                    Token(key) => self.drive(key, now),
                }
            }
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            if self.accept_retry.is_some_and(|at| at <= now) {
                self.accept_retry = None;
                self.accept_ready = true;
            }
            if self.accept_ready {
                self.accept(now);
            }
            self.expire(Instant::now());
        }
    }

    /// How long the poll may sleep: until the next deadline, at once if
    /// connections wait to be accepted.
    fn timeout(&self, now: Instant) -> Duration {
        if self.accept_ready {
            return Duration::ZERO;
        }
        let mut next = now + TICK;
        if let Some(at) = self.accept_retry {
            next = next.min(at);
        }
        for (_, c) in &self.conns {
            next = next.min(c.deadline);
        }
        next.saturating_duration_since(now)
    }

    /// Accepts up to [`ACCEPT_BATCH`] connections.
    fn accept(&mut self, now: Instant) {
        if self.conns.len() >= MAX_CONNECTIONS {
            self.serve_waiting(now);
        }
        for _ in 0..ACCEPT_BATCH {
            match self.listener.accept() {
                Ok((stream, _)) => self.admit(stream, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_ready = false;
                    return;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) => {}
                Err(_) => {
                    // EMFILE, ENFILE, ENOBUFS, ENOMEM: the connection stays
                    // in the backlog; try again shortly.
                    self.accept_ready = false;
                    self.accept_retry = Some(now + ACCEPT_RETRY);
                    return;
                }
            }
        }
        // The batch is spent and more may wait: `accept_ready` stays set,
        // so the next poll does not sleep.
    }

    /// Takes a new connection, closing the one that has waited longest
    /// without an answer if every place is taken, and serves at once what
    /// it may already have sent.
    fn admit(&mut self, stream: mio::net::TcpStream, now: Instant) {
        if self.conns.len() >= MAX_CONNECTIONS {
            let victim = self
                .conns
                .iter()
                .min_by_key(|(_, c)| (c.eviction_rank(), c.accepted))
                .map(|(key, _)| key);
            match victim {
                Some(key) => self.close(key),
                None => return, // MAX_CONNECTIONS is not 0; drop closes it.
            }
        }
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let conn = entry.insert(Conn::new(stream, now));
        if self
            .poll
            .registry()
            .register(
                &mut conn.stream,
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            self.conns.remove(key);
            return;
        }
        self.drive(key, now);
    }

    /// Serves every request that has come in on a connection whose event
    /// is still to come (behind the accepts): done before connections are
    /// pushed out for new ones, so that a client that sent its request is
    /// answered, not pushed out with it unread. Once per batch of accepts.
    fn serve_waiting(&mut self, now: Instant) {
        self.scratch.clear();
        self.scratch.extend(
            self.conns
                .iter()
                .filter(|(_, c)| matches!(c.state, State::Reading(_)))
                .map(|(key, _)| key),
        );
        for i in 0..self.scratch.len() {
            self.drive(self.scratch[i], now);
        }
    }

    /// Moves connection `key` on as far as its socket allows.
    fn drive(&mut self, key: usize, now: Instant) {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            let step = match conn.state {
                State::Reading(_) => conn.read_request(),
                State::Writing(..) => conn.write(),
                State::Lingering(_) => conn.linger(),
            };
            match step {
                Step::Wait => return,
                Step::Close => break,
                Step::Request(req) => {
                    let response = routes::respond(&self.books, &req);
                    conn.start_write(response.to_bytes(req.is_head()), now);
                }
                Step::Respond(response) => conn.start_write(response.to_bytes(false), now),
                Step::Written => conn.finish(now),
            }
        }
        self.close(key);
    }

    /// Closes connection `key` (closing the fd also takes it out of the
    /// poll: no deregister call needed, one syscall less per connection
    /// under a flood).
    fn close(&mut self, key: usize) {
        self.conns.try_remove(key);
    }

    /// Closes every connection past its deadline (telling a client that
    /// never finished its request why).
    fn expire(&mut self, now: Instant) {
        self.scratch.clear();
        self.scratch.extend(
            self.conns
                .iter()
                .filter(|(_, c)| c.deadline <= now)
                .map(|(key, _)| key),
        );
        for i in 0..self.scratch.len() {
            let key = self.scratch[i];
            if let Some(conn) = self.conns.get_mut(key) {
                conn.tell_timeout();
            }
            self.close(key);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::{LeakReport, Snapshot, Source, TaskInfo};
    use std::io::{Read, Write};
    use std::net::TcpStream;

    struct Fake;

    impl Source for Fake {
        fn snapshot(&self) -> Snapshot {
            Snapshot {
                tasks_live: 3,
                ..Snapshot::default()
            }
        }
        fn tasks(&self) -> Vec<TaskInfo> {
            Vec::new()
        }
        fn leaks(&self) -> Vec<LeakReport> {
            Vec::new()
        }
    }

    fn endpoint() -> (Endpoint, Arc<Books>, Arc<dyn Source>) {
        let books = Arc::new(Books::default());
        let source: Arc<dyn Source> = Arc::new(Fake);
        books.set_source(Arc::downgrade(&source));
        let ep = Endpoint::start(books.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
        (ep, books, source)
    }

    fn connect(addr: SocketAddr) -> TcpStream {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = connect(addr);
        s.write_all(request).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn serves_and_records_its_address() {
        let (ep, books, _source) = endpoint();
        assert_eq!(books.endpoint_addr(), Some(ep.local_addr()));
        assert_ne!(ep.local_addr().port(), 0);
        let r = exchange(ep.local_addr(), b"GET /metrics HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("\nbulwark_tasks_live 3\n"));
        let r = exchange(ep.local_addr(), b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\n"),
            "{r}"
        );
    }

    #[test]
    fn drop_stops_and_joins_the_thread() {
        let (ep, _books, _source) = endpoint();
        let addr = ep.local_addr();
        let idle = connect(addr);
        let started = Instant::now();
        drop(ep);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(TcpStream::connect(addr).is_err(), "the listener is closed");
        drop(idle);
    }

    #[test]
    fn binding_a_taken_address_is_an_error() {
        let (ep, books, _source) = endpoint();
        let err = Endpoint::start(books, ep.local_addr()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn a_silent_client_gets_408_after_the_read_timeout() {
        let (ep, _books, _source) = endpoint();
        let mut s = connect(ep.local_addr());
        s.write_all(b"GET /metr").unwrap();
        let started = Instant::now();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let waited = started.elapsed();
        assert!(out.starts_with("HTTP/1.1 408"), "{out}");
        assert!(waited >= Duration::from_millis(1500) && waited < Duration::from_secs(4));
    }

    #[test]
    fn past_the_limit_the_oldest_unanswered_connection_makes_room() {
        let (ep, _books, _source) = endpoint();
        let addr = ep.local_addr();
        let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS + 20).map(|_| connect(addr)).collect();
        // The newest connection gets in, and is answered.
        let r = exchange(addr, b"GET /health HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        // The oldest idle ones were closed (EOF, nothing written).
        let mut first = &idle[0];
        let mut buf = [0u8; 16];
        assert_eq!(first.read(&mut buf).unwrap_or(0), 0);
    }
}
