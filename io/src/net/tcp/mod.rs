//! TCP: the halves of a [`TcpStream`](super::TcpStream), as in `tokio::net::tcp`.
//!
//! [`TcpListener`](super::TcpListener) and [`TcpStream`](super::TcpStream)
//! themselves are re-exported from [`net`](super); this module holds the
//! types [`TcpStream::split`](super::TcpStream::split) and
//! [`TcpStream::into_split`](super::TcpStream::into_split) return.

pub(crate) mod io_impls;
pub(super) mod listener;
mod split;
pub(super) mod stream;

pub use split::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, ReuniteError, WriteHalf};

#[cfg(test)]
mod tests {
    //! Listener, stream and halves together, on a hand-made driver.

    use crate::driver::Driver;
    use crate::net::test_rt::{block_on, Rt};
    use crate::net::{TcpListener, TcpStream};
    use std::future::{poll_fn, Future};
    use std::io::{self, Read, Write};
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::{Duration, Instant};

    async fn write_all_tokio(w: &mut (impl tokio::io::AsyncWrite + Unpin), mut buf: &[u8]) {
        while !buf.is_empty() {
            let n = poll_fn(|cx| Pin::new(&mut *w).poll_write(cx, buf))
                .await
                .unwrap();
            assert!(n > 0);
            buf = &buf[n..];
        }
    }

    async fn read_to_end_tokio(r: &mut (impl tokio::io::AsyncRead + Unpin)) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut storage = [0u8; 1024];
        loop {
            let mut buf = tokio::io::ReadBuf::new(&mut storage);
            poll_fn(|cx| Pin::new(&mut *r).poll_read(cx, &mut buf)).await?;
            if buf.filled().is_empty() {
                return Ok(out);
            }
            out.extend_from_slice(buf.filled());
        }
    }

    async fn write_all_futures(w: &mut (impl futures_io::AsyncWrite + Unpin), mut buf: &[u8]) {
        while !buf.is_empty() {
            let n = poll_fn(|cx| Pin::new(&mut *w).poll_write(cx, buf))
                .await
                .unwrap();
            assert!(n > 0);
            buf = &buf[n..];
        }
    }

    async fn read_to_end_futures(
        r: &mut (impl futures_io::AsyncRead + Unpin),
    ) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = poll_fn(|cx| Pin::new(&mut *r).poll_read(cx, &mut buf)).await?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn accept_round_trip_and_connection_refused() {
        let rt = Rt::new();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        // More than a socket buffer holds, so both sides must wait for
        // writability and readability.
        let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();

        let handle = rt.handle.clone();
        let sent = payload.clone();
        let client = std::thread::spawn(move || {
            block_on(&handle, async move {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                assert_eq!(stream.peer_addr().unwrap(), addr);
                stream.set_nodelay(true).unwrap();
                assert!(stream.nodelay().unwrap());
                let (mut rd, mut wr) = stream.split();
                // Write and read at once, as two futures in one task: the
                // echo would fill both buffers otherwise.
                let write = async {
                    write_all_tokio(&mut wr, &sent).await;
                    poll_fn(|cx| tokio::io::AsyncWrite::poll_shutdown(Pin::new(&mut wr), cx))
                        .await
                        .unwrap();
                };
                let read = read_to_end_futures(&mut rd);
                let ((), echoed) = join(write, read).await;
                echoed.unwrap()
            })
        });

        rt.block_on(async {
            let (mut stream, peer) = listener.accept().await.unwrap();
            assert_eq!(stream.local_addr().unwrap(), addr);
            assert_eq!(stream.peer_addr().unwrap(), peer);
            // Echo until the client's end-of-file, then close.
            let mut buf = [0u8; 4096];
            loop {
                let n = poll_fn(|cx| {
                    futures_io::AsyncRead::poll_read(Pin::new(&mut stream), cx, &mut buf)
                })
                .await
                .unwrap();
                if n == 0 {
                    break;
                }
                write_all_futures(&mut stream, &buf[..n]).await;
            }
        });
        assert_eq!(client.join().unwrap(), payload);

        // Nothing listens on a port just freed.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = rt.block_on(TcpStream::connect(closed)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");

        drop(listener);
        assert_eq!(
            rt.handle.stats().registrations,
            0,
            "dropped sockets deregister"
        );
    }

    #[test]
    fn a_peer_reset_is_a_read_error() {
        let rt = Rt::new();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_listener.local_addr().unwrap();
        rt.block_on(async {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let (peer, _) = std_listener.accept().unwrap();
            write_all_tokio(&mut stream, b"unread").await;
            // Closing a socket with unread data sends RST, not FIN.
            peer.peek(&mut [0u8; 1]).unwrap();
            drop(peer);
            let err = read_to_end_tokio(&mut stream).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err}");
        });
    }

    #[test]
    fn readiness_and_try_forms() {
        let rt = Rt::new();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_listener.local_addr().unwrap();
        rt.block_on(async {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut peer, _) = std_listener.accept().unwrap();
            let mut buf = [0u8; 16];
            let err = stream.try_read(&mut buf).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::WouldBlock);

            stream.writable().await.unwrap();
            assert_eq!(stream.try_write(b"hi").unwrap(), 2);
            let mut got = [0u8; 2];
            peer.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"hi");

            peer.write_all(b"there").unwrap();
            assert_eq!(stream.peek(&mut buf).await.unwrap(), 5);
            let n = loop {
                stream.readable().await.unwrap();
                match stream.try_read(&mut buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => panic!("{e}"),
                }
            };
            assert_eq!(&buf[..n], b"there");
        });
    }

    #[test]
    fn owned_halves_shut_down_on_drop_and_reunite() {
        let rt = Rt::new();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_listener.local_addr().unwrap();
        rt.block_on(async {
            let a = TcpStream::connect(addr).await.unwrap();
            let b = TcpStream::connect(addr).await.unwrap();
            let (mut peer_a, _) = std_listener.accept().unwrap();
            let (ra, wa) = a.into_split();
            let (rb, wb) = b.into_split();
            let err = ra.reunite(wb).unwrap_err();
            let (ra, wb) = (err.0, err.1);
            let b = rb.reunite(wb).unwrap();
            drop(b);

            let mut wa = wa;
            write_all_futures(&mut wa, b"bye").await;
            drop(wa);
            // The write side is shut down: the peer reads to end-of-file
            // while the read half still lives.
            let mut got = Vec::new();
            peer_a.read_to_end(&mut got).unwrap();
            assert_eq!(got, b"bye");

            peer_a.write_all(b"still reading").unwrap();
            drop(peer_a);
            let mut ra = ra;
            assert_eq!(read_to_end_tokio(&mut ra).await.unwrap(), b"still reading");
        });
    }

    #[test]
    fn accept_backs_off_when_out_of_fds_and_retries_aborted_connections() {
        let rt = Rt::new();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();

        // Three EMFILEs (back-offs of 1, 2 and 4 ms), two aborted
        // connections (retried at once), then the real accept.
        let mut calls = 0;
        let start = Instant::now();
        let before = rt.handle.stats().accept_backoffs;
        let ((stream, _), reserved, _socket) = rt
            .block_on(listener.accept_with(|l| {
                calls += 1;
                match calls {
                    1..=3 => Err(io::Error::from_raw_os_error(libc::EMFILE)),
                    4..=5 => Err(io::Error::from_raw_os_error(libc::ECONNABORTED)),
                    _ => l.accept(),
                }
            }))
            .unwrap();
        assert_eq!(calls, 6);
        assert!(reserved.is_none(), "no ceiling, nothing reserved");
        assert!(
            start.elapsed() >= Duration::from_millis(7),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(rt.handle.stats().accept_backoffs - before, 3);
        assert_eq!(rt.handle.stats().accept_backoffs, 3);
        drop(stream);

        // Any other error is returned.
        let err = rt
            .block_on(listener.accept_with(|_| -> io::Result<()> {
                Err(io::Error::from_raw_os_error(libc::EBADF))
            }))
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    }

    #[test]
    fn a_driver_shutdown_ends_a_pending_accept() {
        let (driver, handle) = Driver::new().unwrap();
        let _enter = crate::context::enter(handle.clone());
        let waker = crate::net::test_rt::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let listener = std::pin::pin!(TcpListener::bind("127.0.0.1:0"));
        let listener = match listener.poll(&mut cx) {
            Poll::Ready(l) => l.unwrap(),
            Poll::Pending => unreachable!("bind does not wait"),
        };
        let mut accept = std::pin::pin!(listener.accept());
        assert!(accept.as_mut().poll(&mut cx).is_pending());
        drop(driver);
        match accept.as_mut().poll(&mut cx) {
            Poll::Ready(Err(e)) => assert!(e.to_string().contains("shut down"), "{e}"),
            other => panic!("expected the shutdown error, got {other:?}"),
        }
    }

    #[test]
    fn made_outside_a_runtime_is_an_error_not_a_panic() {
        let waker = crate::net::test_rt::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let bind = std::pin::pin!(TcpListener::bind("127.0.0.1:0"));
        assert!(matches!(bind.poll(&mut cx), Poll::Ready(Err(_))));
        let std_stream = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap()
        };
        let err = TcpStream::from_std(std_stream).unwrap_err();
        assert!(err.to_string().contains("no bulwark runtime"), "{err}");
    }

    #[test]
    fn the_public_types_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<TcpListener>();
        check::<TcpStream>();
        check::<crate::net::UdpSocket>();
        check::<super::ReadHalf<'_>>();
        check::<super::WriteHalf<'_>>();
        check::<super::OwnedReadHalf>();
        check::<super::OwnedWriteHalf>();
        check::<super::ReuniteError>();
        fn send_future<F: Future + Send>(_: F) {}
        let (_driver, handle) = Driver::new().unwrap();
        let _enter = crate::context::enter(handle);
        send_future(TcpStream::connect("127.0.0.1:1"));
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let l = TcpListener::from_std(l).unwrap();
        send_future(l.accept());
    }

    /// Polls two futures until both finish.
    async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
        let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
        let (mut ra, mut rb) = (None, None);
        poll_fn(|cx| {
            if ra.is_none() {
                if let Poll::Ready(v) = a.as_mut().poll(cx) {
                    ra = Some(v);
                }
            }
            if rb.is_none() {
                if let Poll::Ready(v) = b.as_mut().poll(cx) {
                    rb = Some(v);
                }
            }
            if ra.is_some() && rb.is_some() {
                Poll::Ready((ra.take().unwrap(), rb.take().unwrap()))
            } else {
                Poll::Pending
            }
        })
        .await
    }
}
