//! `UdpSocket`: datagrams on the driver, as `tokio::net::UdpSocket`.
//!
//! Sends wait as writers, receives as readers, so one task may send while
//! another receives on the same socket (shared by `Arc`); two tasks
//! receiving at once would overwrite each other's waker.

use crate::driver::scheduled_io::Direction;
use crate::driver::PollEvented;
use crate::net::ToSocketAddrs;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::Location;
use std::task::{ready, Context, Poll};
use tokio::io::ReadBuf;

/// A UDP socket.
///
/// Bind it with [`UdpSocket::bind`]; then either
/// [`send_to`](UdpSocket::send_to) and [`recv_from`](UdpSocket::recv_from)
/// any peer, or [`connect`](UdpSocket::connect) it to one peer and use
/// [`send`](UdpSocket::send) and [`recv`](UdpSocket::recv). A datagram
/// longer than the buffer given to a receive is cut to the buffer's length.
///
/// # Examples
///
/// ```
/// use bulwark::net::UdpSocket;
///
/// let rt = bulwark::Runtime::new()?;
/// rt.block_on(async {
///     let server = UdpSocket::bind("127.0.0.1:0").await?;
///     let client = UdpSocket::bind("127.0.0.1:0").await?;
///
///     // Any peer: send_to and recv_from.
///     client.send_to(b"ping", server.local_addr()?).await?;
///     let mut buf = [0; 16];
///     let (n, from) = server.recv_from(&mut buf).await?;
///     assert_eq!((&buf[..n], from), (&b"ping"[..], client.local_addr()?));
///
///     // One peer: connect, then send and recv.
///     client.connect(server.local_addr()?).await?;
///     server.send_to(b"pong", from).await?;
///     let n = client.recv(&mut buf).await?;
///     assert_eq!(&buf[..n], b"pong");
///     Ok::<_, std::io::Error>(())
/// })?;
/// # Ok::<_, std::io::Error>(())
/// ```
pub struct UdpSocket {
    io: PollEvented<mio::net::UdpSocket>,
}

impl UdpSocket {
    /// Binds a socket to `addr`, trying each address it resolves to in turn
    /// (the last error if none binds). Port 0 asks the OS for a free port.
    /// A host name is resolved on the blocking pool (see [`ToSocketAddrs`]).
    ///
    /// # Errors
    ///
    /// Outside a bulwark runtime; when no address resolves or binds.
    #[track_caller]
    pub fn bind<A: ToSocketAddrs>(addr: A) -> impl Future<Output = io::Result<UdpSocket>> {
        let site = Location::caller();
        let addrs = super::resolve(&addr, site);
        async move {
            super::each_addr(addrs.await?, |addr| {
                UdpSocket::new(mio::net::UdpSocket::bind(addr)?, site)
            })
        }
    }

    fn new(socket: mio::net::UdpSocket, site: &'static Location<'static>) -> io::Result<UdpSocket> {
        let io = PollEvented::new(
            socket,
            mio::Interest::READABLE | mio::Interest::WRITABLE,
            site,
        )?;
        Ok(UdpSocket { io })
    }

    /// Wraps a socket made with std, setting it nonblocking.
    ///
    /// # Errors
    ///
    /// Outside a bulwark runtime, or when the driver refuses it.
    pub fn from_std(socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
        socket.set_nonblocking(true)?;
        UdpSocket::new(mio::net::UdpSocket::from_std(socket), Location::caller())
    }

    /// Deregisters the socket and hands it back as a std socket (still in
    /// nonblocking mode).
    ///
    /// # Errors
    ///
    /// When the driver fails to deregister it.
    pub fn into_std(self) -> io::Result<std::net::UdpSocket> {
        self.io.into_inner().map(std::net::UdpSocket::from)
    }

    /// Connects the socket to `addr`, trying each address it resolves to in
    /// turn: `send` and `recv` then talk to it alone, and datagrams from
    /// other peers are dropped.
    ///
    /// # Errors
    ///
    /// When no address resolves or connects.
    pub async fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        let addrs = super::resolve(&addr, Location::caller()).await?;
        super::each_addr(addrs, |addr| self.io.connect(addr))
    }

    /// The address this socket is bound to.
    ///
    /// # Errors
    ///
    /// As `getsockname(2)`.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// The address this socket is connected to.
    ///
    /// # Errors
    ///
    /// `NotConnected` if it is not; as `getpeername(2)`.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.peer_addr()
    }

    /// Sends `buf` to the connected peer; the bytes sent.
    ///
    /// # Errors
    ///
    /// As `send(2)` (an earlier datagram refused by the peer can show up
    /// here as `ConnectionRefused`).
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.io
            .registration
            .async_io(Direction::Write, || self.io.send(buf))
            .await
    }

    /// Polls to send `buf` to the connected peer.
    ///
    /// # Errors
    ///
    /// As [`send`](UdpSocket::send).
    pub fn poll_send(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.io
            .registration
            .poll_io(cx, Direction::Write, || self.io.send(buf))
    }

    /// Sends `buf` to the connected peer if the socket can take it now.
    ///
    /// # Errors
    ///
    /// `WouldBlock`; as `send(2)`.
    pub fn try_send(&self, buf: &[u8]) -> io::Result<usize> {
        self.io
            .registration
            .try_io(Direction::Write, || self.io.send(buf))
    }

    /// Receives a datagram from the connected peer into `buf`; its length
    /// (cut to `buf`'s).
    ///
    /// # Errors
    ///
    /// As `recv(2)`.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io
            .registration
            .async_io(Direction::Read, || self.io.recv(buf))
            .await
    }

    /// Polls to receive a datagram from the connected peer into the
    /// unfilled part of `buf`.
    ///
    /// # Errors
    ///
    /// As [`recv`](UdpSocket::recv).
    pub fn poll_recv(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let dst = buf.initialize_unfilled();
        let n = ready!(self
            .io
            .registration
            .poll_io(cx, Direction::Read, || self.io.recv(dst)))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }

    /// Receives a datagram from the connected peer if one is there now.
    ///
    /// # Errors
    ///
    /// `WouldBlock`; as `recv(2)`.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io
            .registration
            .try_io(Direction::Read, || self.io.recv(buf))
    }

    /// Sends `buf` to `target` (the first address it resolves to); the
    /// bytes sent. A host name is looked up on each call, on the blocking
    /// pool: resolve it once with [`lookup_host`](super::lookup_host) to send
    /// many datagrams.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when `target` resolves to nothing; as `sendto(2)`.
    pub async fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], target: A) -> io::Result<usize> {
        let target = super::resolve(&target, Location::caller())
            .await?
            .next()
            .ok_or_else(super::no_addresses)?;
        self.io
            .registration
            .async_io(Direction::Write, || self.io.send_to(buf, target))
            .await
    }

    /// Polls to send `buf` to `target`.
    ///
    /// # Errors
    ///
    /// As `sendto(2)`.
    pub fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.io
            .registration
            .poll_io(cx, Direction::Write, || self.io.send_to(buf, target))
    }

    /// Sends `buf` to `target` if the socket can take it now.
    ///
    /// # Errors
    ///
    /// `WouldBlock`; as `sendto(2)`.
    pub fn try_send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        self.io
            .registration
            .try_io(Direction::Write, || self.io.send_to(buf, target))
    }

    /// Receives a datagram into `buf`: its length (cut to `buf`'s) and
    /// sender.
    ///
    /// # Errors
    ///
    /// As `recvfrom(2)`.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.io
            .registration
            .async_io(Direction::Read, || self.io.recv_from(buf))
            .await
    }

    /// Polls to receive a datagram into the unfilled part of `buf`; its
    /// sender.
    ///
    /// # Errors
    ///
    /// As `recvfrom(2)`.
    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<SocketAddr>> {
        let dst = buf.initialize_unfilled();
        let (n, from) = ready!(self
            .io
            .registration
            .poll_io(cx, Direction::Read, || self.io.recv_from(dst)))?;
        buf.advance(n);
        Poll::Ready(Ok(from))
    }

    /// Receives a datagram if one is there now: its length and sender.
    ///
    /// # Errors
    ///
    /// `WouldBlock`; as `recvfrom(2)`.
    pub fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.io
            .registration
            .try_io(Direction::Read, || self.io.recv_from(buf))
    }

    /// Receives a datagram without taking it off the queue: the next
    /// receive sees it again.
    ///
    /// # Errors
    ///
    /// As `recvfrom(2)` with `MSG_PEEK`.
    pub async fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.io
            .registration
            .async_io(Direction::Read, || self.io.peek_from(buf))
            .await
    }

    /// Waits until a datagram may be there to receive.
    ///
    /// # Errors
    ///
    /// The runtime having shut down.
    pub async fn readable(&self) -> io::Result<()> {
        self.io.registration.readiness(Direction::Read).await
    }

    /// Waits until the socket may take a datagram to send.
    ///
    /// # Errors
    ///
    /// The runtime having shut down.
    pub async fn writable(&self) -> io::Result<()> {
        self.io.registration.readiness(Direction::Write).await
    }

    /// Sets `SO_BROADCAST`.
    ///
    /// # Errors
    ///
    /// As `setsockopt(2)`.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.io.set_broadcast(on)
    }

    /// Whether `SO_BROADCAST` is set.
    ///
    /// # Errors
    ///
    /// As `getsockopt(2)`.
    pub fn broadcast(&self) -> io::Result<bool> {
        self.io.broadcast()
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

    /// Takes the socket's pending error (`SO_ERROR`), if any.
    ///
    /// # Errors
    ///
    /// As `getsockopt(2)`.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.take_error()
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("UdpSocket").field(&*self.io).finish()
    }
}

#[cfg(unix)]
impl std::os::fd::AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.io.as_raw_fd()
    }
}

#[cfg(unix)]
impl std::os::fd::AsFd for UdpSocket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.io.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::test_rt::Rt;
    use std::future::poll_fn;

    #[test]
    fn datagrams_go_both_ways_connected_and_not() {
        let rt = Rt::new();
        rt.block_on(async {
            let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());

            assert_eq!(a.send_to(b"ping", b_addr).await.unwrap(), 4);
            let mut buf = [0u8; 16];
            let (n, from) = b.recv_from(&mut buf).await.unwrap();
            assert_eq!((&buf[..n], from), (&b"ping"[..], a_addr));

            b.connect(a_addr).await.unwrap();
            assert_eq!(b.peer_addr().unwrap(), a_addr);
            assert_eq!(b.send(b"pong").await.unwrap(), 4);
            let (n, from) = a.recv_from(&mut buf).await.unwrap();
            assert_eq!((&buf[..n], from), (&b"pong"[..], b_addr));

            // Nothing queued: the try form does not wait.
            let err = b.try_recv(&mut buf).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
            a.send_to(b"again", b_addr).await.unwrap();
            let n = b.recv(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"again");

            let mut storage = [0u8; 16];
            let mut rb = ReadBuf::new(&mut storage);
            a.send_to(b"buf", b_addr).await.unwrap();
            poll_fn(|cx| b.poll_recv(cx, &mut rb)).await.unwrap();
            assert_eq!(rb.filled(), b"buf");
        });
        assert_eq!(
            rt.handle.stats().registrations,
            0,
            "dropped sockets deregister"
        );
    }

    #[test]
    fn bind_outside_a_runtime_is_an_error_not_a_panic() {
        let waker = crate::net::test_rt::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let fut = std::pin::pin!(UdpSocket::bind("127.0.0.1:0"));
        match std::future::Future::poll(fut, &mut cx) {
            Poll::Ready(Err(e)) => assert!(e.to_string().contains("no bulwark runtime"), "{e}"),
            other => panic!("expected an error, got {other:?}"),
        }
    }
}
