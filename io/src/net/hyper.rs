//! `hyper::rt::Read` and `hyper::rt::Write` for [`TcpStream`] and its owned
//! halves (the `hyper` feature), so a connection goes to hyper as it is,
//! with no adapter such as `hyper_util::rt::TokioIo`.
//!
//! Reads go straight into hyper's uninitialized buffer (`recv(2)` only
//! writes it), as tokio's `TcpStream` does with its `ReadBuf`.

use super::tcp::io_impls::{ReadCore, WriteCore};
use super::tcp::{OwnedReadHalf, OwnedWriteHalf};
use super::TcpStream;
use hyper::rt::{Read, ReadBufCursor, Write};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

/// Reads from `stream` into the unfilled part of hyper's buffer, without
/// zeroing it first: hyper hands over its whole spare capacity (8 KiB and
/// up) on every read, and zeroing that each time cost more than the read.
fn poll_read_cursor(
    stream: &TcpStream,
    cx: &mut Context<'_>,
    mut buf: ReadBufCursor<'_>,
) -> Poll<io::Result<()>> {
    // SAFETY: we only write into these bytes (through the read below) and
    // mark as filled exactly the ones written.
    let unfilled = unsafe { buf.as_mut() };
    let len = unfilled.len();
    // SAFETY: the bytes may be uninitialized, and `[u8]` may not be; but the
    // slice goes only to `recv(2)` (mio's `Read for &TcpStream`), which
    // writes into it and never reads it, so no uninitialized byte is ever
    // read. tokio reads sockets into its `ReadBuf` the same way.
    let dst = unsafe { &mut *(unfilled as *mut [MaybeUninit<u8>] as *mut [u8]) };
    let n = ready!(stream.poll_read_priv(cx, dst))?;
    // What `Read::read` promises; checked because `advance` does not.
    assert!(n <= len, "read reported more bytes than the buffer holds");
    // SAFETY: the read initialized the first `n` unfilled bytes.
    unsafe { buf.advance(n) };
    Poll::Ready(Ok(()))
}

/// hyper's `Read` and `Write` for types that are [`ReadCore`] and
/// [`WriteCore`] (the TCP types' one definition of how they reach their
/// stream; futures-io's and tokio's traits come from the same two).
macro_rules! impl_hyper_io {
    ($($ty:ty),* $(,)?) => {$(
        impl Read for $ty {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: ReadBufCursor<'_>,
            ) -> Poll<io::Result<()>> {
                poll_read_cursor(self.get_mut().read_core(), cx, buf)
            }
        }
    )*};
    (write: $($ty:ty),* $(,)?) => {$(
        impl Write for $ty {
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

impl_hyper_io!(TcpStream, OwnedReadHalf);
impl_hyper_io!(write: TcpStream, OwnedWriteHalf);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::test_rt::Rt;
    use crate::net::TcpListener;
    use std::future::poll_fn;
    use std::io::Write as _;
    use std::mem::MaybeUninit;

    #[test]
    fn hyper_reads_into_an_uninitialized_buffer_and_writes() {
        let rt = Rt::new();
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let mut peer = std::net::TcpStream::connect(addr).unwrap();
            let (mut stream, _) = listener.accept().await.unwrap();

            peer.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
            let mut storage = [MaybeUninit::<u8>::uninit(); 64];
            let mut buf = hyper::rt::ReadBuf::uninit(&mut storage);
            while buf.filled().len() < 18 {
                poll_fn(|cx| Pin::new(&mut stream).poll_read(cx, buf.unfilled()))
                    .await
                    .unwrap();
            }
            assert_eq!(buf.filled(), b"GET / HTTP/1.1\r\n\r\n");

            let n = poll_fn(|cx| Pin::new(&mut stream).poll_write(cx, b"HTTP/1.1 200 OK\r\n\r\n"))
                .await
                .unwrap();
            assert_eq!(n, 19);
            poll_fn(|cx| Pin::new(&mut stream).poll_shutdown(cx))
                .await
                .unwrap();
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut peer, &mut got).unwrap();
            assert_eq!(got, b"HTTP/1.1 200 OK\r\n\r\n");
        });
    }
}
