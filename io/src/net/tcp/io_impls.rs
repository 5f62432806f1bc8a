//! The IO traits of the TCP types, written once: every type says how it
//! reaches its [`TcpStream`] ([`ReadCore`], [`WriteCore`]) and the macros
//! below emit futures-io's and tokio's traits from that (hyper's are in
//! `net/hyper.rs`, on the same two traits). The stream's own `poll_read_priv`,
//! `poll_read_buf`, `poll_write_priv` and `poll_write_vectored_priv` do the
//! work.

use super::split::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, WriteHalf};
use super::stream::TcpStream;
use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A type that reads from a [`TcpStream`].
pub(crate) trait ReadCore {
    /// The stream read from.
    fn read_core(&self) -> &TcpStream;
}

/// A type that writes to a [`TcpStream`].
pub(crate) trait WriteCore {
    /// The stream written to.
    fn write_core(&self) -> &TcpStream;

    /// Shuts the write side down (`poll_close` / `poll_shutdown`).
    fn shutdown_core(&mut self) -> io::Result<()>;
}

impl ReadCore for TcpStream {
    fn read_core(&self) -> &TcpStream {
        self
    }
}

impl WriteCore for TcpStream {
    fn write_core(&self) -> &TcpStream {
        self
    }

    fn shutdown_core(&mut self) -> io::Result<()> {
        self.shutdown_std(Shutdown::Write)
    }
}

impl ReadCore for ReadHalf<'_> {
    fn read_core(&self) -> &TcpStream {
        self.as_ref()
    }
}

impl ReadCore for OwnedReadHalf {
    fn read_core(&self) -> &TcpStream {
        self.as_ref()
    }
}

impl WriteCore for WriteHalf<'_> {
    fn write_core(&self) -> &TcpStream {
        self.as_ref()
    }

    fn shutdown_core(&mut self) -> io::Result<()> {
        self.as_ref().shutdown_std(Shutdown::Write)
    }
}

impl WriteCore for OwnedWriteHalf {
    fn write_core(&self) -> &TcpStream {
        self.as_ref()
    }

    fn shutdown_core(&mut self) -> io::Result<()> {
        // Records the shutdown, so the drop does not do it again.
        self.shutdown_write()
    }
}

/// futures-io's and tokio's `AsyncRead` for types that are [`ReadCore`].
macro_rules! impl_async_read {
    ($($ty:ty),* $(,)?) => {$(
        impl futures_io::AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<io::Result<usize>> {
                self.get_mut().read_core().poll_read_priv(cx, buf)
            }
        }

        impl tokio::io::AsyncRead for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut tokio::io::ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                self.get_mut().read_core().poll_read_buf(cx, buf)
            }
        }
    )*};
}

/// futures-io's and tokio's `AsyncWrite` for types that are [`WriteCore`].
/// Writes are not buffered, so a flush has nothing to do.
macro_rules! impl_async_write {
    ($($ty:ty),* $(,)?) => {$(
        impl futures_io::AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.get_mut().write_core().poll_write_priv(cx, buf)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                self.get_mut().write_core().poll_write_vectored_priv(cx, bufs)
            }

            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(self.get_mut().shutdown_core())
            }
        }

        impl tokio::io::AsyncWrite for $ty {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                self.get_mut().write_core().poll_write_priv(cx, buf)
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                self.get_mut().write_core().poll_write_vectored_priv(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                true
            }

            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(self.get_mut().shutdown_core())
            }
        }
    )*};
}

impl_async_read!(TcpStream, ReadHalf<'_>, OwnedReadHalf);
impl_async_write!(TcpStream, WriteHalf<'_>, OwnedWriteHalf);
