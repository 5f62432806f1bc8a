//! `TcpStream`: a TCP connection, with `futures_io` and `tokio::io` traits.
//!
//! Every read and write goes through the registration's `poll_io`: it runs
//! the nonblocking system call once the driver has seen readiness, and on
//! `WouldBlock` clears that readiness and leaves the task's waker for the
//! next event. Reads wait as readers, writes as writers, so one task may
//! read while another writes (the halves in [`split`](super::split)).

use super::split::{split, split_owned, OwnedReadHalf, OwnedWriteHalf, ReadHalf, WriteHalf};
use crate::driver::scheduled_io::Direction;
use crate::driver::{Handle, PollEvented};
use crate::net::ToSocketAddrs;
use bulwark_metrics::ledger::Permit;
use std::fmt;
use std::future::Future;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::panic::Location;
use std::task::{ready, Context, Poll};

/// A TCP connection between a local and a remote socket.
///
/// Made by [`TcpStream::connect`], by [`TcpListener::accept`](super::super::TcpListener::accept)
/// or from a std stream ([`TcpStream::from_std`]). Read and write it through
/// `futures_io::{AsyncRead, AsyncWrite}` or `tokio::io::{AsyncRead,
/// AsyncWrite}` (re-exported as `bulwark::io`; so `bulwark::io::AsyncReadExt`
/// and `futures::AsyncReadExt` both work), or with [`readable`](TcpStream::readable) and
/// [`try_read`](TcpStream::try_read). Flushing does nothing (there is no
/// buffer); shutting down (`poll_shutdown`, `poll_close`) shuts the write
/// side down, so the peer reads end-of-file. Dropping it closes the
/// connection.
///
/// A peer that resets the connection makes reads fail with an error
/// (`ConnectionReset`), never a panic.
///
/// # Examples
///
/// ```
/// use bulwark::io::{AsyncReadExt, AsyncWriteExt};
/// use bulwark::net::{TcpListener, TcpStream};
///
/// let rt = bulwark::Runtime::new()?;
/// rt.block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0").await?;
///     let client = TcpStream::connect(listener.local_addr()?).await?;
///     let (mut server, peer) = listener.accept().await?;
///     assert_eq!(peer, client.local_addr()?);
///     assert_eq!(client.peer_addr()?, server.local_addr()?);
///
///     client.set_nodelay(true)?;
///     assert!(client.nodelay()?);
///
///     // Readiness and non-blocking reads, as tokio's.
///     server.write_all(b"hello").await?;
///     client.readable().await?;
///     let mut buf = [0; 16];
///     let n = loop {
///         match client.try_read(&mut buf) {
///             Ok(n) => break n,
///             Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => client.readable().await?,
///             Err(e) => return Err(e),
///         }
///     };
///     assert_eq!(&buf[..n], b"hello");
///
///     // Dropping the stream closes it: the peer reads end-of-file.
///     drop(client);
///     assert_eq!(server.read(&mut buf).await?, 0);
///     Ok::<_, std::io::Error>(())
/// })?;
/// # Ok::<_, std::io::Error>(())
/// ```
pub struct TcpStream {
    io: PollEvented<mio::net::TcpStream>,
}

impl TcpStream {
    /// Opens a TCP connection to `addr`, trying each address it resolves to
    /// in turn until one connects (the last error if none does).
    ///
    /// A host name is resolved on the blocking pool (see
    /// [`ToSocketAddrs`]); an address or an IP literal needs no lookup.
    /// The connect itself waits as long as the OS lets it; wrap it in
    /// [`timeout`](crate::time::timeout) for a shorter limit.
    ///
    /// # Errors
    ///
    /// Outside a bulwark runtime; `ConnectionRefused` when nothing listens
    /// on the port; any other error of `connect(2)`.
    #[track_caller]
    pub fn connect<A: ToSocketAddrs>(addr: A) -> impl Future<Output = io::Result<TcpStream>> {
        let site = Location::caller();
        let addrs = crate::net::resolve(&addr, site);
        async move { TcpStream::connect_at(addrs.await?, site).await }
    }

    async fn connect_at(
        addrs: impl Iterator<Item = SocketAddr>,
        site: &'static Location<'static>,
    ) -> io::Result<TcpStream> {
        let mut last_err = None;
        for addr in addrs {
            match TcpStream::connect_addr(addr, site).await {
                Ok(stream) => return Ok(stream),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(crate::net::no_addresses))
    }

    async fn connect_addr(
        addr: SocketAddr,
        site: &'static Location<'static>,
    ) -> io::Result<TcpStream> {
        // A place in the socket budget first: at the budget, the connect
        // waits (first come first served) for one of the runtime's sockets
        // to close, rather than failing with EMFILE.
        let handle = crate::context::current_or_err()?;
        let socket = handle
            .books()
            .sockets()
            .acquire()
            .await
            .map_err(|_| io::Error::other(crate::driver::SHUT_DOWN))?;
        let stream = TcpStream::with_socket_permit(
            mio::net::TcpStream::connect(addr)?,
            handle,
            socket,
            site,
        )?;
        // mio's recipe: the connect has finished when the socket turns
        // writable; then `SO_ERROR` says whether it failed, and a peer
        // address says it succeeded. Without either the writable event was
        // spurious: clear it and wait again.
        let sys = &*stream.io;
        stream
            .io
            .registration
            .async_io(Direction::Write, || {
                if let Some(e) = sys.take_error()? {
                    return Err(e);
                }
                match sys.peer_addr() {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                        Err(io::ErrorKind::WouldBlock.into())
                    }
                    Err(e) => Err(e),
                }
            })
            .await?;
        Ok(stream)
    }

    /// Registers a connected (or connecting) mio stream with this thread's
    /// driver.
    pub(crate) fn new(
        stream: mio::net::TcpStream,
        site: &'static Location<'static>,
    ) -> io::Result<TcpStream> {
        let io = PollEvented::new(
            stream,
            mio::Interest::READABLE | mio::Interest::WRITABLE,
            site,
        )?;
        Ok(TcpStream { io })
    }

    /// Registers a mio stream with `handle`'s driver (an accepted stream
    /// joins its listener's driver).
    /// Wraps an accepted stream, whose place in the socket budget was taken
    /// before the accept.
    pub(crate) fn with_socket_permit(
        stream: mio::net::TcpStream,
        handle: Handle,
        socket: Permit,
        site: &'static Location<'static>,
    ) -> io::Result<TcpStream> {
        let io = PollEvented::with_socket_permit(
            stream,
            mio::Interest::READABLE | mio::Interest::WRITABLE,
            handle,
            socket,
            site,
        )?;
        Ok(TcpStream { io })
    }

    /// Wraps a stream made with std (connected), setting it nonblocking.
    ///
    /// # Errors
    ///
    /// Outside a bulwark runtime, or when the driver refuses it.
    pub fn from_std(stream: std::net::TcpStream) -> io::Result<TcpStream> {
        stream.set_nonblocking(true)?;
        TcpStream::new(mio::net::TcpStream::from_std(stream), Location::caller())
    }

    /// Deregisters the stream and hands it back as a std stream (still in
    /// nonblocking mode).
    ///
    /// # Errors
    ///
    /// When the driver fails to deregister it.
    pub fn into_std(self) -> io::Result<std::net::TcpStream> {
        self.io.into_inner().map(std::net::TcpStream::from)
    }

    /// The local address of this connection.
    ///
    /// # Errors
    ///
    /// As `getsockname(2)`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// The remote address of this connection.
    ///
    /// # Errors
    ///
    /// `NotConnected` once the connection is gone; as `getpeername(2)`.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.peer_addr()
    }

    /// Takes the socket's pending error (`SO_ERROR`), if any.
    ///
    /// # Errors
    ///
    /// As `getsockopt(2)`.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.take_error()
    }

    /// Sets `TCP_NODELAY`: send small writes at once instead of batching
    /// them (Nagle's algorithm off).
    ///
    /// # Errors
    ///
    /// As `setsockopt(2)`.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.io.set_nodelay(nodelay)
    }

    /// Whether `TCP_NODELAY` is set.
    ///
    /// # Errors
    ///
    /// As `getsockopt(2)`.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.io.nodelay()
    }

    /// Sets `IP_TTL`.
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

    /// Waits until the stream may be readable: data, end-of-file or an error
    /// waits. A [`try_read`](TcpStream::try_read) after it may still find
    /// nothing (`WouldBlock`), which clears the readiness for the next wait.
    ///
    /// # Errors
    ///
    /// The runtime having shut down.
    pub async fn readable(&self) -> io::Result<()> {
        self.io.registration.readiness(Direction::Read).await
    }

    /// Waits until the stream may be writable.
    ///
    /// # Errors
    ///
    /// The runtime having shut down.
    pub async fn writable(&self) -> io::Result<()> {
        self.io.registration.readiness(Direction::Write).await
    }

    /// Polls for read readiness, leaving `cx`'s waker when not ready (only
    /// the last task to poll is woken).
    ///
    /// # Errors
    ///
    /// The runtime having shut down.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io
            .registration
            .poll_ready(cx, Direction::Read)
            .map_ok(|_| ())
    }

    /// Polls for write readiness, leaving `cx`'s waker when not ready (only
    /// the last task to poll is woken).
    ///
    /// # Errors
    ///
    /// The runtime having shut down.
    pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io
            .registration
            .poll_ready(cx, Direction::Write)
            .map_ok(|_| ())
    }

    /// Reads what is there now without waiting: `Ok(0)` is end-of-file,
    /// `WouldBlock` means nothing yet (wait with
    /// [`readable`](TcpStream::readable)).
    ///
    /// # Errors
    ///
    /// `WouldBlock`; as `read(2)`.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io
            .registration
            .try_io(Direction::Read, || (&*self.io).read(buf))
    }

    /// Writes what fits now without waiting; `WouldBlock` when nothing does
    /// (wait with [`writable`](TcpStream::writable)).
    ///
    /// # Errors
    ///
    /// `WouldBlock`; as `write(2)`.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.io
            .registration
            .try_io(Direction::Write, || (&*self.io).write(buf))
    }

    /// Reads without consuming: the next read sees the same bytes. Waits
    /// until data (or end-of-file, `Ok(0)`) is there.
    ///
    /// # Errors
    ///
    /// As `recv(2)` with `MSG_PEEK`.
    pub async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io
            .registration
            .async_io(Direction::Read, || self.io.peek(buf))
            .await
    }

    /// Borrows the stream as a read half and a write half, usable from two
    /// places at once (in one task; for two tasks use
    /// [`into_split`](TcpStream::into_split)).
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        split(self)
    }

    /// Splits the stream into halves that own it together (an `Arc`), for
    /// two tasks. Dropping the write half shuts the write side down;
    /// [`OwnedWriteHalf::reunite`] puts the stream back together.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        split_owned(self)
    }

    /// Reads into `buf` when the stream is readable.
    pub(crate) fn poll_read_priv(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.io
            .registration
            .poll_io_len(cx, Direction::Read, buf.len(), || (&*self.io).read(buf))
    }

    /// Reads into the unfilled part of tokio's `ReadBuf` (initializing it
    /// first, which `ReadBuf` does once per byte).
    pub(crate) fn poll_read_buf(
        &self,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = ready!(self.poll_read_priv(cx, buf.initialize_unfilled()))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }

    /// Writes from `buf` when the stream is writable.
    pub(crate) fn poll_write_priv(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.io
            .registration
            .poll_io_len(cx, Direction::Write, buf.len(), || (&*self.io).write(buf))
    }

    /// Writes from `bufs` (one `writev(2)`) when the stream is writable.
    pub(crate) fn poll_write_vectored_priv(
        &self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.io
            .registration
            .poll_io(cx, Direction::Write, || (&*self.io).write_vectored(bufs))
    }

    /// Shuts down one or both directions of the connection.
    pub(crate) fn shutdown_std(&self, how: Shutdown) -> io::Result<()> {
        self.io.shutdown(how)
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TcpStream").field(&*self.io).finish()
    }
}

#[cfg(unix)]
impl std::os::fd::AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.io.as_raw_fd()
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for TcpStream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.io.as_fd()
    }
}
