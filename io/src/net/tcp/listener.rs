//! `TcpListener`: a listening socket whose `accept` outlives fd exhaustion.

use super::stream::TcpStream;
use crate::driver::scheduled_io::Direction;
use crate::driver::PollEvented;
use crate::net::ToSocketAddrs;
use crate::time::Sleep;
use bulwark_metrics::ledger::{self, Permit};
use bulwark_metrics::AcceptPaused;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::Location;
use std::time::Duration;

/// The first back-off after `accept` fails for want of fds or memory.
const BACKOFF_START: Duration = Duration::from_millis(1);
/// The longest back-off: how late, at most, a listener notices that fds came
/// back.
const BACKOFF_MAX: Duration = Duration::from_millis(100);
/// First look again while accepting is paused by admission.
const PAUSE_START: Duration = Duration::from_millis(1);
/// Longest wait between looks while accepting is paused.
const PAUSE_MAX: Duration = Duration::from_millis(10);

/// A TCP socket server, listening for connections.
///
/// Made with [`bind`](TcpListener::bind) (or [`from_std`](TcpListener::from_std))
/// inside a bulwark runtime; connections come out of
/// [`accept`](TcpListener::accept), each a [`TcpStream`] on the same driver.
///
/// One task at a time should wait in `accept`: the listener keeps a single
/// waiting reader's waker.
///
/// # Examples
///
/// An echo server, and one client:
///
/// ```
/// use bulwark::io::{AsyncReadExt, AsyncWriteExt};
/// use bulwark::net::{TcpListener, TcpStream};
///
/// let rt = bulwark::Runtime::new()?;
/// rt.block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0").await?;
///     let addr = listener.local_addr()?; // the port the OS picked
///     bulwark::spawn(async move {
///         while let Ok((mut conn, _peer)) = listener.accept().await {
///             bulwark::spawn(async move {
///                 let (mut rd, mut wr) = conn.split();
///                 bulwark::io::copy(&mut rd, &mut wr).await
///             });
///         }
///     });
///
///     let mut client = TcpStream::connect(addr).await?;
///     client.write_all(b"ping").await?;
///     let mut buf = [0; 4];
///     client.read_exact(&mut buf).await?;
///     assert_eq!(&buf, b"ping");
///     Ok::<_, std::io::Error>(())
/// })?;
/// # Ok::<_, std::io::Error>(())
/// ```
pub struct TcpListener {
    io: PollEvented<mio::net::TcpListener>,
}

impl TcpListener {
    /// Binds a listener to `addr`, trying each address it resolves to in turn
    /// (the last error if none binds). Port 0 asks the OS for a free port;
    /// [`local_addr`](TcpListener::local_addr) tells which.
    ///
    /// `SO_REUSEADDR` is set (on unix), as mio and tokio do. A host name is
    /// resolved on the blocking pool (see [`ToSocketAddrs`]); an address or
    /// an IP literal needs no lookup.
    ///
    /// # Errors
    ///
    /// Outside a bulwark runtime; when no address resolves or binds.
    #[track_caller]
    pub fn bind<A: ToSocketAddrs>(addr: A) -> impl Future<Output = io::Result<TcpListener>> {
        let site = Location::caller();
        let addrs = crate::net::resolve(&addr, site);
        async move {
            crate::net::each_addr(addrs.await?, |addr| {
                TcpListener::new(mio::net::TcpListener::bind(addr)?, site)
            })
        }
    }

    fn new(
        listener: mio::net::TcpListener,
        site: &'static Location<'static>,
    ) -> io::Result<TcpListener> {
        let io = PollEvented::new(listener, mio::Interest::READABLE, site)?;
        Ok(TcpListener { io })
    }

    /// Wraps a listener made with std, setting it nonblocking.
    ///
    /// # Errors
    ///
    /// Outside a bulwark runtime, or when the driver refuses it.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        TcpListener::new(
            mio::net::TcpListener::from_std(listener),
            Location::caller(),
        )
    }

    /// Deregisters the listener and hands it back as a std listener (still in
    /// nonblocking mode).
    ///
    /// # Errors
    ///
    /// When the driver fails to deregister it.
    pub fn into_std(self) -> io::Result<std::net::TcpListener> {
        self.io.into_inner().map(std::net::TcpListener::from)
    }

    /// Accepts a new connection: the stream, registered with this listener's
    /// driver, and the peer's address.
    ///
    /// # Errors that do not end the wait
    ///
    /// A server's accept loop (`loop { listener.accept().await }`) must
    /// neither spin nor die when the process runs out of file descriptors,
    /// so two kinds of error are handled here and never returned:
    ///
    /// - **Out of fds or memory** (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`):
    ///   the failure is counted in the runtime's books (`accept_backoffs`,
    ///   also in [`Handle::stats`](crate::driver::Handle::stats)) and `accept` sleeps,
    ///   1 ms the first time and twice as long after each further failure, up
    ///   to 100 ms, then tries again. The pending connection stays in the
    ///   kernel's backlog meanwhile, and is served once fds come back; the
    ///   back-off starts from 1 ms again in the next call.
    /// - **A connection that failed before it was accepted**
    ///   (`ECONNABORTED`, `ECONNRESET`, `EINTR`, `EPROTO`, `EPERM` (a firewall
    ///   rule), and the network errors Linux's `accept(2)` says to treat like
    ///   `EAGAIN`: `ENETDOWN`, `ENETUNREACH`, `EHOSTDOWN`, `EHOSTUNREACH`,
    ///   `ENOPROTOOPT`, `EOPNOTSUPP`): it concerns that one connection, not
    ///   the listener, so the next one is accepted at once. Each try spends
    ///   coop budget, so a flood of these still yields the worker.
    ///
    /// # Errors
    ///
    /// Any other error of `accept(2)`; the runtime having shut down; the
    /// driver refusing to register the new stream.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a connection not yet returned stays in the backlog.
    ///
    /// # Accepted means served
    ///
    /// While the runtime sheds load or is at its task ceiling (and the
    /// runtime's `pause_accept_when_full` switch is on, as it is by default),
    /// `accept` takes no connection: they wait in the kernel's backlog, and
    /// `accept` looks again every millisecond or so (up to 10 ms).
    ///
    /// Under a ceiling (`max_tasks`), `accept` takes the task permit the
    /// connection's task will need *before* it takes the connection, and
    /// keeps it for the next spawn of the same task on the same thread: in
    /// the usual loop, `accept().await` then `spawn(serve(stream))`, that
    /// spawn is admitted with it and cannot be refused, so no connection is
    /// accepted only to be closed unserved. A reservation not used by a
    /// spawn is given back by the next `accept` or a spawn of another task
    /// on the thread, or when the worker next goes idle; so spawn the
    /// connection's task before awaiting anything else. Without a ceiling
    /// nothing is reserved.
    ///
    /// Past half the ceiling, `accept` yields once before it looks for a
    /// connection, so the task spawned for the last one runs first (it is
    /// in the worker's LIFO slot) and spawns what its request needs: a burst
    /// of accepts would otherwise take in more requests than the ceiling has
    /// room to finish. In the showdown's fan-out flood this cut the
    /// subtasks that ran for a request that then failed from 12% to 0.7-3.2%.
    #[track_caller]
    pub fn accept(&self) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + '_ {
        let site = Location::caller();
        async move { self.accept_at(site).await }
    }

    async fn accept_at(
        &self,
        site: &'static Location<'static>,
    ) -> io::Result<(TcpStream, SocketAddr)> {
        let ((stream, addr), reserved, socket) =
            self.accept_with(|listener| listener.accept()).await?;
        let handle = self.io.registration.handle().clone();
        let stream = TcpStream::with_socket_permit(stream, handle, socket, site)?;
        if let Some(permit) = reserved {
            // For the spawn that follows: see `accept`'s docs. (Had the
            // stream failed to register, the permit would be released.)
            let books = self.io.registration.handle().books();
            ledger::reserve_for_spawn(permit, books.current_task());
        }
        Ok((stream, addr))
    }

    /// The accept loop of [`accept`](TcpListener::accept), with the system
    /// call given (the tests put failures in front of it). With the value
    /// comes the task permit reserved for it, if the runtime has a ceiling
    /// (and pauses listeners at it), and the new socket's place in the
    /// socket budget, taken before the system call: at the budget the
    /// listener waits for a socket to close instead of meeting `EMFILE`.
    pub(super) async fn accept_with<T>(
        &self,
        mut op: impl FnMut(&mio::net::TcpListener) -> io::Result<T>,
    ) -> io::Result<(T, Option<Permit>, Permit)> {
        let mut backoff = BACKOFF_START;
        let mut paused = PAUSE_START;
        let mut socket: Option<Permit> = None;
        {
            let books = self.io.registration.handle().books();
            if books.tasks().live().saturating_mul(2) > books.tasks().budget() {
                // Past half the ceiling, the last connection's task runs
                // (and spawns what its request needs) before the next
                // connection is taken: a burst of accepts would otherwise
                // admit many requests whose work then cannot all fit.
                crate::coop::YieldOnce::new().await;
            }
        }
        loop {
            let handle = self.io.registration.handle();
            let books = handle.books();
            if socket.is_none() {
                socket = books.sockets().try_acquire_permit();
            }
            if socket.is_none() {
                // At the socket budget: connections wait in the kernel
                // backlog until one of ours closes (first come first served
                // with any `connect` waiting too).
                books.count_accept_pause();
                match books.sockets().acquire().await {
                    Ok(permit) => socket = Some(permit),
                    Err(_) => return Err(io::Error::other(crate::driver::SHUT_DOWN)),
                }
            }
            // A look before the wait for a connection, so that a listener
            // at a full ceiling does not wake for each connection only to
            // find no permit.
            let res = if books.accept_paused() {
                Ok(Err(AcceptPaused))
            } else {
                // The permit is reserved once a connection is there, right
                // before the system call takes it, so an idle listener holds
                // none; when the backlog is empty (`WouldBlock`) it is
                // dropped, released, and taken again at the next readiness.
                self.io
                    .registration
                    .async_io(Direction::Read, || {
                        let reserved = match books.reserve_for_accept() {
                            Ok(reserved) => reserved,
                            Err(paused) => return Ok(Err(paused)),
                        };
                        op(&self.io).map(|t| Ok((t, reserved)))
                    })
                    .await
            };
            match res {
                Ok(Ok((value, reserved))) => {
                    // The task polling this is an accept loop: what it
                    // spawns is new work (see `context::set_accept_hook`).
                    crate::context::accepted();
                    let socket = socket.take().expect("a socket place is held");
                    return Ok((value, reserved, socket));
                }
                Ok(Err(AcceptPaused)) => {
                    // The runtime sheds or is at its task ceiling: leave new
                    // connections in the kernel backlog rather than accept
                    // work it cannot run. Look again shortly.
                    books.count_accept_pause();
                    Sleep::new(handle.clone(), handle.now() + paused).await;
                    paused = (paused * 2).min(PAUSE_MAX);
                    continue;
                }
                Err(e) if is_out_of_resources(&e) => {
                    books.count_accept_backoff();
                    // The listener's own driver, not the thread's: the sleep
                    // works wherever the accept future is polled.
                    Sleep::new(handle.clone(), handle.now() + backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                Err(e) if is_connection_error(&e) => {}
                Err(e) => return Err(e),
            }
            paused = PAUSE_START;
        }
    }

    /// The address this listener is bound to.
    ///
    /// # Errors
    ///
    /// As `getsockname(2)`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// Sets `IP_TTL` for the sockets this listener accepts.
    ///
    /// # Errors
    ///
    /// As `setsockopt(2)`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.io.set_ttl(ttl)
    }

    /// `IP_TTL` of this socket.
    ///
    /// # Errors
    ///
    /// As `getsockopt(2)`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.io.ttl()
    }
}

/// The process or the system is out of fds or memory: back off, the
/// listener itself is fine.
fn is_out_of_resources(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The connection at the head of the queue failed; the next one may not.
fn is_connection_error(e: &io::Error) -> bool {
    use io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted)
        || matches!(
            e.raw_os_error(),
            Some(
                libc::ECONNABORTED
                    | libc::ECONNRESET
                    | libc::EINTR
                    | libc::EPROTO
                    | libc::EPERM
                    | libc::ENETDOWN
                    | libc::ENETUNREACH
                    | libc::EHOSTDOWN
                    | libc::EHOSTUNREACH
                    | libc::ENOPROTOOPT
                    | libc::EOPNOTSUPP
            )
        )
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TcpListener").field(&*self.io).finish()
    }
}

#[cfg(unix)]
impl std::os::fd::AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.io.as_raw_fd()
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for TcpListener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.io.as_fd()
    }
}
