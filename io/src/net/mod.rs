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
//! Addresses are anything that implements [`ToSocketAddrs`] (tokio's trait
//! and the same types), and each address is tried in turn. An address or an
//! IP literal resolves at once; a host name is resolved on the runtime's
//! blocking pool ([`lookup_host`]), so DNS never blocks a worker.
//!
//! A socket keeps one waiting reader and one waiting writer: a task that
//! reads and another that writes (the halves of [`TcpStream::into_split`], a
//! UDP socket shared by a sender and a receiver) work, but two tasks that
//! wait to read from the same socket (or to accept from the same listener)
//! at once overwrite each other's waker, and one of them is left waiting.

mod addr;
pub mod tcp;
mod udp;

#[cfg(feature = "hyper")]
mod hyper;

pub(crate) use addr::resolve;
pub use addr::{lookup_host, ToSocketAddrs};
pub use tcp::listener::TcpListener;
pub use tcp::stream::TcpStream;
pub use udp::UdpSocket;

use std::io;
use std::net::SocketAddr;

/// Runs `f` on each of `addrs` in turn, until one succeeds; the last error
/// otherwise.
pub(crate) fn each_addr<T>(
    addrs: impl IntoIterator<Item = SocketAddr>,
    mut f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last_err = None;
    for addr in addrs {
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
///
/// # Examples
///
/// ```
/// use bulwark::net::default_socket_budget;
///
/// let budget = default_socket_budget();
/// assert!(budget >= 1);
/// // A runtime's sockets are the resource kind "socket", with this budget
/// // unless `runtime::Builder::resource_budget("socket", n)` says otherwise.
/// let rt = bulwark::Runtime::new().unwrap();
/// let sockets = rt.metrics().kinds.into_iter().find(|k| k.name == "socket").unwrap();
/// assert_eq!(sockets.budget, budget);
/// ```
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

#[cfg(test)]
pub(crate) use crate::test_rt;
