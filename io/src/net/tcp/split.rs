//! The halves of a `TcpStream`: borrowed ([`ReadHalf`], [`WriteHalf`]) and
//! owned ([`OwnedReadHalf`], [`OwnedWriteHalf`]).
//!
//! A stream keeps one waiting reader and one waiting writer, so a read half
//! and a write half never step on each other's wakers. The owned halves
//! share the stream through an `Arc`; the write half shuts the write side
//! down when dropped (as tokio's does), so the peer sees end-of-file even if
//! the read half lives on.

use super::stream::TcpStream;
use std::error::Error;
use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;

/// The reading half of a borrowed [`TcpStream`], from
/// [`TcpStream::split`].
///
/// # Examples
///
/// The halves of one stream, read and written at once in one task (here,
/// an echo):
///
/// ```
/// use bulwark::io::{self, AsyncReadExt, AsyncWriteExt};
/// use bulwark::net::{TcpListener, TcpStream};
///
/// let rt = bulwark::Runtime::new()?;
/// rt.block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0").await?;
///     let mut client = TcpStream::connect(listener.local_addr()?).await?;
///     let (mut server, _) = listener.accept().await?;
///     let echo = bulwark::spawn(async move {
///         let (mut rd, mut wr) = server.split();
///         io::copy(&mut rd, &mut wr).await // until the client shuts down
///     });
///     client.write_all(b"abc").await?;
///     client.shutdown().await?;
///     let mut back = String::new();
///     client.read_to_string(&mut back).await?;
///     assert_eq!(back, "abc");
///     assert_eq!(echo.await.unwrap()?, 3, "bytes copied");
///     Ok::<_, std::io::Error>(())
/// })?;
/// # Ok::<_, std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct ReadHalf<'a>(&'a TcpStream);

/// The writing half of a borrowed [`TcpStream`], from
/// [`TcpStream::split`]. Shutting it down shuts the stream's write side
/// down; dropping it does nothing.
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
///     let mut client = TcpStream::connect(listener.local_addr()?).await?;
///     let (mut server, _) = listener.accept().await?;
///     let (_rd, mut wr) = client.split();
///     wr.write_all(b"bye").await?;
///     wr.shutdown().await?; // the peer reads end-of-file
///     let mut got = Vec::new();
///     server.read_to_end(&mut got).await?;
///     assert_eq!(got, b"bye");
///     Ok::<_, std::io::Error>(())
/// })?;
/// # Ok::<_, std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct WriteHalf<'a>(&'a TcpStream);

/// The reading half of a [`TcpStream`], from [`TcpStream::into_split`].
///
/// # Examples
///
/// The halves in two tasks, then put back together:
///
/// ```
/// use bulwark::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
/// use bulwark::net::{TcpListener, TcpStream};
///
/// let rt = bulwark::Runtime::new()?;
/// rt.block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0").await?;
///     let client = TcpStream::connect(listener.local_addr()?).await?;
///     let (mut server, _) = listener.accept().await?;
///
///     let (rd, mut wr) = client.into_split();
///     let reader = bulwark::spawn(async move {
///         let mut lines = BufReader::new(rd).lines();
///         let line = lines.next_line().await?;
///         Ok::<_, std::io::Error>((line, lines.into_inner().into_inner()))
///     });
///     let writer = bulwark::spawn(async move {
///         wr.write_all(b"from the writer task\n").await?;
///         Ok::<_, std::io::Error>(wr)
///     });
///     server.write_all(b"from the server\n").await?;
///
///     let (line, rd) = reader.await.unwrap()?;
///     assert_eq!(line.as_deref(), Some("from the server"));
///     let wr = writer.await.unwrap()?;
///     let client = rd.reunite(wr).expect("halves of one stream");
///     assert_eq!(client.peer_addr()?, server.local_addr()?);
///     Ok::<_, std::io::Error>(())
/// })?;
/// # Ok::<_, std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct OwnedReadHalf {
    inner: Arc<TcpStream>,
}

/// The writing half of a [`TcpStream`], from [`TcpStream::into_split`].
///
/// Dropping it shuts the write side of the stream down (unless
/// [`forget`](OwnedWriteHalf::forget) was called), so the peer reads
/// end-of-file.
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
///     let (mut server, _) = listener.accept().await?;
///     let (_rd, mut wr) = client.into_split();
///     bulwark::spawn(async move {
///         wr.write_all(b"done").await
///         // `wr` dropped here: the write side is shut down.
///     });
///     let mut got = String::new();
///     server.read_to_string(&mut got).await?; // ends at end-of-file
///     assert_eq!(got, "done");
///     Ok::<_, std::io::Error>(())
/// })?;
/// # Ok::<_, std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct OwnedWriteHalf {
    inner: Arc<TcpStream>,
    shutdown_on_drop: bool,
}

/// [`OwnedWriteHalf::reunite`] was given halves of two different streams;
/// here they are back.
///
/// # Examples
///
/// ```
/// use bulwark::net::{tcp::ReuniteError, TcpListener, TcpStream};
///
/// let rt = bulwark::Runtime::new()?;
/// rt.block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0").await?;
///     let addr = listener.local_addr()?;
///     let (a_rd, a_wr) = TcpStream::connect(addr).await?.into_split();
///     let (b_rd, b_wr) = TcpStream::connect(addr).await?.into_split();
///     let ReuniteError(a_rd, b_wr) = a_rd.reunite(b_wr).unwrap_err();
///     // Each half back with its own.
///     let a = a_rd.reunite(a_wr).unwrap();
///     let b = b_rd.reunite(b_wr).unwrap();
///     assert_ne!(a.local_addr()?, b.local_addr()?);
///     Ok::<_, std::io::Error>(())
/// })?;
/// # Ok::<_, std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct ReuniteError(pub OwnedReadHalf, pub OwnedWriteHalf);

pub(super) fn split(stream: &mut TcpStream) -> (ReadHalf<'_>, WriteHalf<'_>) {
    (ReadHalf(stream), WriteHalf(stream))
}

pub(super) fn split_owned(stream: TcpStream) -> (OwnedReadHalf, OwnedWriteHalf) {
    let inner = Arc::new(stream);
    let read = OwnedReadHalf {
        inner: inner.clone(),
    };
    let write = OwnedWriteHalf {
        inner,
        shutdown_on_drop: true,
    };
    (read, write)
}

impl ReadHalf<'_> {
    /// The remote address of the stream.
    ///
    /// # Errors
    ///
    /// As [`TcpStream::peer_addr`].
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.peer_addr()
    }

    /// The local address of the stream.
    ///
    /// # Errors
    ///
    /// As [`TcpStream::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    /// Waits until the stream may be readable, as [`TcpStream::readable`].
    ///
    /// # Errors
    ///
    /// The runtime having shut down.
    pub async fn readable(&self) -> io::Result<()> {
        self.0.readable().await
    }

    /// Reads without waiting, as [`TcpStream::try_read`].
    ///
    /// # Errors
    ///
    /// `WouldBlock`; as `read(2)`.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }

    /// Reads without consuming, as [`TcpStream::peek`].
    ///
    /// # Errors
    ///
    /// As `recv(2)` with `MSG_PEEK`.
    pub async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.peek(buf).await
    }
}

impl WriteHalf<'_> {
    /// The remote address of the stream.
    ///
    /// # Errors
    ///
    /// As [`TcpStream::peer_addr`].
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.peer_addr()
    }

    /// The local address of the stream.
    ///
    /// # Errors
    ///
    /// As [`TcpStream::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    /// Waits until the stream may be writable, as [`TcpStream::writable`].
    ///
    /// # Errors
    ///
    /// The runtime having shut down.
    pub async fn writable(&self) -> io::Result<()> {
        self.0.writable().await
    }

    /// Writes without waiting, as [`TcpStream::try_write`].
    ///
    /// # Errors
    ///
    /// `WouldBlock`; as `write(2)`.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }
}

impl OwnedReadHalf {
    /// Puts the stream back together with its write half, as
    /// [`OwnedWriteHalf::reunite`].
    ///
    /// # Errors
    ///
    /// The halves come from different streams.
    pub fn reunite(self, other: OwnedWriteHalf) -> Result<TcpStream, ReuniteError> {
        reunite(self, other)
    }

    /// The remote address of the stream.
    ///
    /// # Errors
    ///
    /// As [`TcpStream::peer_addr`].
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// The local address of the stream.
    ///
    /// # Errors
    ///
    /// As [`TcpStream::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Waits until the stream may be readable, as [`TcpStream::readable`].
    ///
    /// # Errors
    ///
    /// The runtime having shut down.
    pub async fn readable(&self) -> io::Result<()> {
        self.inner.readable().await
    }

    /// Reads without waiting, as [`TcpStream::try_read`].
    ///
    /// # Errors
    ///
    /// `WouldBlock`; as `read(2)`.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.try_read(buf)
    }

    /// Reads without consuming, as [`TcpStream::peek`].
    ///
    /// # Errors
    ///
    /// As `recv(2)` with `MSG_PEEK`.
    pub async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.peek(buf).await
    }
}

impl OwnedWriteHalf {
    /// Puts the stream back together with its read half.
    ///
    /// # Errors
    ///
    /// The halves come from different streams; both are handed back in the
    /// error.
    pub fn reunite(self, other: OwnedReadHalf) -> Result<TcpStream, ReuniteError> {
        reunite(other, self)
    }

    /// Drops the half without shutting the write side down.
    pub fn forget(mut self) {
        self.shutdown_on_drop = false;
    }

    /// The remote address of the stream.
    ///
    /// # Errors
    ///
    /// As [`TcpStream::peer_addr`].
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }

    /// The local address of the stream.
    ///
    /// # Errors
    ///
    /// As [`TcpStream::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    /// Waits until the stream may be writable, as [`TcpStream::writable`].
    ///
    /// # Errors
    ///
    /// The runtime having shut down.
    pub async fn writable(&self) -> io::Result<()> {
        self.inner.writable().await
    }

    /// Writes without waiting, as [`TcpStream::try_write`].
    ///
    /// # Errors
    ///
    /// `WouldBlock`; as `write(2)`.
    pub fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.inner.try_write(buf)
    }

    /// Shuts the write side down now; the drop will not do it again.
    pub(crate) fn shutdown_write(&mut self) -> io::Result<()> {
        let res = self.inner.shutdown_std(Shutdown::Write);
        if res.is_ok() {
            self.shutdown_on_drop = false;
        }
        res
    }
}

fn reunite(read: OwnedReadHalf, mut write: OwnedWriteHalf) -> Result<TcpStream, ReuniteError> {
    if !Arc::ptr_eq(&read.inner, &write.inner) {
        return Err(ReuniteError(read, write));
    }
    write.shutdown_on_drop = false;
    drop(write);
    Ok(Arc::try_unwrap(read.inner)
        .expect("the two halves hold the only references to their stream"))
}

impl Drop for OwnedWriteHalf {
    fn drop(&mut self) {
        if self.shutdown_on_drop {
            let _ = self.inner.shutdown_std(Shutdown::Write);
        }
    }
}

impl AsRef<TcpStream> for ReadHalf<'_> {
    fn as_ref(&self) -> &TcpStream {
        self.0
    }
}

impl AsRef<TcpStream> for WriteHalf<'_> {
    fn as_ref(&self) -> &TcpStream {
        self.0
    }
}

impl AsRef<TcpStream> for OwnedReadHalf {
    fn as_ref(&self) -> &TcpStream {
        &self.inner
    }
}

impl AsRef<TcpStream> for OwnedWriteHalf {
    fn as_ref(&self) -> &TcpStream {
        &self.inner
    }
}

impl fmt::Display for ReuniteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tried to reunite halves that are not from the same socket")
    }
}

impl Error for ReuniteError {}
