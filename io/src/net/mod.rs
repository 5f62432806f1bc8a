//! Networking: TCP and UDP sockets on the driver, as in `tokio::net`.
//!
//! Each socket is a nonblocking mio socket inside a
//! [`PollEvented`](crate::driver::PollEvented): registered with the driver of
//! the runtime it was made in, read and written through the registration's
//! `poll_io` (the `poll_*` and trait methods) or `async_io` (the `async fn`s),
//! which run the operation when the driver has seen readiness, clear that
//! readiness on `WouldBlock` and leave the task's waker until the next event.
//! The future of an `async fn` takes its waker back out when dropped, so a
//! cancelled wait pins nothing. Every operation spends one unit of the
//! task's coop budget, so a connection that is always ready still gives its
//! worker back. The IO traits of each TCP type are written once
//! (`tcp/io_impls.rs`, and `hyper.rs` for hyper's).
//!
//! - [`TcpListener`]: `bind`, and an `accept` that survives fd exhaustion
//!   (it backs off instead of failing or spinning; see
//!   [`TcpListener::accept`]).
//! - [`TcpStream`]: `connect`, readiness (`readable`, `writable`,
//!   `try_read`, `try_write`), and both `futures_io` and `tokio::io`
//!   `AsyncRead`/`AsyncWrite`; [`tcp`] holds its borrowed and owned halves.
//! - [`UdpSocket`]: `bind`, `connect`, `send`/`recv`, `send_to`/`recv_from`.
//! - With the `hyper` feature, `hyper::rt::Read` and `hyper::rt::Write` for
//!   [`TcpStream`] and its owned halves, so hyper serves on bulwark without
//!   an adapter.
//!
//! Every socket takes a place in the runtime's socket budget (the ledger
//! kind `socket`), given back when it closes. At the budget, `accept`
//! leaves connections in the kernel backlog and `connect` waits, both first
//! come first served, until one of the runtime's sockets closes: the
//! service backs off at its budget instead of failing with `EMFILE`. The
//! default budget is [`default_socket_budget`].
//!
//! Constructors need a runtime: made outside one (no driver on the thread)
//! they return an error, never panic. Dropping a socket deregisters it,
//! closes it and drops the wakers waiting on it.
//!
//! Addresses are resolved with [`std::net::ToSocketAddrs`], and each address
//! is tried in turn. Resolving a host name blocks the calling thread, as it
//! does in std; pass a [`SocketAddr`] (or an `"ip:port"` string) on a hot
//! path.
//!
//! A socket keeps one waiting reader and one waiting writer: a task that
//! reads and another that writes (the halves of [`TcpStream::into_split`], a
//! UDP socket shared by a sender and a receiver) work, but two tasks that
//! wait to read from the same socket (or to accept from the same listener)
//! at once overwrite each other's waker, and one of them is left waiting.

pub mod tcp;
mod udp;

#[cfg(feature = "hyper")]
mod hyper;

pub use tcp::listener::TcpListener;
pub use tcp::stream::TcpStream;
pub use udp::UdpSocket;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

/// Runs `f` on each address `addr` resolves to, until one succeeds; the last
/// error otherwise.
pub(crate) fn each_addr<T>(
    addr: impl ToSocketAddrs,
    mut f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last_err = None;
    for addr in addr.to_socket_addrs()? {
        match f(addr) {
            Ok(t) => return Ok(t),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(no_addresses))
}

/// The error for an address that resolved to nothing.
pub(crate) fn no_addresses() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "could not resolve to any address",
    )
}

/// The socket budget a runtime gets unless told otherwise: the process's
/// soft `RLIMIT_NOFILE` less a sixteenth of it (at least 32), kept for what
/// is not a socket of the runtime (stdio, the driver's epoll and wake fds,
/// files, pipes, sockets made by other code). 4,096 fds give a budget of
/// 3,840. No limit (or no way to read it) gives no budget.
pub fn default_socket_budget() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass, and nothing else.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    if !ok || lim.rlim_cur == libc::RLIM_INFINITY {
        return usize::MAX;
    }
    let limit = usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX);
    let headroom = (limit / 16).max(32);
    limit.saturating_sub(headroom).max(1)
}

/// A hand-made runtime for the unit tests: a driver turned by a thread of its
/// own, and a `block_on` on a parker.
#[cfg(test)]
pub(crate) mod test_rt {
    use crate::driver::{Driver, Handle};
    use crate::park::Parker;
    use std::future::Future;
    use std::pin::pin;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    /// How long a test future may take before the test fails.
    const LIMIT: Duration = Duration::from_secs(20);

    pub(crate) struct Rt {
        pub(crate) handle: Handle,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl Rt {
        pub(crate) fn new() -> Rt {
            let (mut driver, handle) = Driver::new().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let stop2 = stop.clone();
            let thread = std::thread::spawn(move || {
                while !stop2.load(Ordering::SeqCst) {
                    driver.turn(Some(Duration::from_millis(10)));
                }
            });
            Rt {
                handle,
                stop,
                thread: Some(thread),
            }
        }

        pub(crate) fn block_on<F: Future>(&self, f: F) -> F::Output {
            block_on(&self.handle, f)
        }
    }

    impl Drop for Rt {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            self.handle.unpark();
            if let Some(t) = self.thread.take() {
                t.join().unwrap();
            }
        }
    }

    /// A waker that does nothing (`Waker::noop` is newer than the MSRV).
    pub(crate) fn noop_waker() -> std::task::Waker {
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: Arc<Self>) {}
        }
        std::task::Waker::from(Arc::new(Noop))
    }

    /// Polls `f` to completion on this thread, with `handle` as the current
    /// driver.
    pub(crate) fn block_on<F: Future>(handle: &Handle, f: F) -> F::Output {
        let _enter = crate::context::enter(handle.clone());
        let parker = Parker::new();
        let waker = parker.unparker().waker();
        let mut cx = Context::from_waker(&waker);
        let mut f = pin!(f);
        let start = Instant::now();
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            // Only a wake-up polls again: a lost waker fails the test
            // instead of being papered over by a periodic poll.
            let left = LIMIT.checked_sub(start.elapsed());
            let left = left.unwrap_or_else(|| {
                panic!("a test future was not woken or did not finish in {LIMIT:?}")
            });
            parker.park_timeout(left);
        }
    }
}
