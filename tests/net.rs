//! Networking: TCP and UDP on the runtime's driver. An echo server keeps 200
//! concurrent clients' bytes in order; errors (refused, reset) come back as
//! the right `io::ErrorKind`; split halves work from two tasks at once;
//! dropped sockets leave the driver.

mod common;

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bulwark::net::{TcpListener, TcpStream, UdpSocket};
use common::{bounded, runtime, wait_until, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A tiny xorshift generator: random enough for test inputs, no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // Never zero (xorshift's fixed point), and seeds 1, 2, 3 spread out.
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
}

/// Random bytes: client `c` sends `pattern[offset(c)..][..len]`, so every
/// client's stream differs and bytes crossed between connections show.
fn pattern(len: usize) -> Arc<Vec<u8>> {
    let mut rng = Rng::new(42);
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        bytes.extend_from_slice(&rng.next().to_le_bytes());
    }
    bytes.truncate(len);
    Arc::new(bytes)
}

/// Echoes everything read until EOF, then shuts the write side down.
async fn echo(mut stream: TcpStream) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            stream.shutdown().await?;
            return Ok(total);
        }
        stream.write_all(&buf[..n]).await?;
        total += n as u64;
    }
}

/// Reads until EOF, checking each chunk against `expected` in order; the
/// number of bytes read.
async fn read_and_check<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    expected: &[u8],
    rng: &mut Rng,
    who: &str,
) -> usize {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = 0;
    loop {
        let want = rng.range(1, buf.len());
        let n = reader
            .read(&mut buf[..want])
            .await
            .unwrap_or_else(|e| panic!("{who}: read failed at byte {pos}: {e}"));
        if n == 0 {
            return pos;
        }
        assert!(
            pos + n <= expected.len(),
            "{who}: got {} bytes, more than the {} sent",
            pos + n,
            expected.len()
        );
        if buf[..n] != expected[pos..pos + n] {
            let first = (0..n).find(|&i| buf[i] != expected[pos + i]).unwrap();
            panic!("{who}: byte {} differs from the byte sent", pos + first);
        }
        pos += n;
    }
}

/// Writes `data` in random-sized writes of 1..=64 KiB, then shuts down.
async fn write_randomly<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut W,
    data: &[u8],
    rng: &mut Rng,
    who: &str,
) {
    let mut pos = 0;
    while pos < data.len() {
        let n = rng.range(1, 64 * 1024).min(data.len() - pos);
        writer
            .write_all(&data[pos..pos + n])
            .await
            .unwrap_or_else(|e| panic!("{who}: write failed at byte {pos}: {e}"));
        pos += n;
    }
    writer
        .shutdown()
        .await
        .unwrap_or_else(|e| panic!("{who}: shutdown failed: {e}"));
}

#[test]
fn echo_server_with_200_concurrent_clients_sending_1_mib_each_returns_every_byte_in_order() {
    const CLIENTS: usize = 200;
    const BYTES: usize = 1024 * 1024;
    const SPREAD: usize = 1301;
    within(120, "200 clients to echo 1 MiB each", || {
        let rt = runtime(4);
        let baseline = rt.metrics().io_registrations;
        let data = pattern(BYTES + CLIENTS * SPREAD);
        let echoed = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("local_addr");

            let server = {
                let echoed = echoed.clone();
                bulwark::spawn(async move {
                    let mut conns = Vec::new();
                    for _ in 0..CLIENTS {
                        let (stream, _) = listener.accept().await.expect("accept");
                        let echoed = echoed.clone();
                        conns.push(bulwark::spawn(async move {
                            let n = echo(stream).await.expect("the echo connection failed");
                            echoed.fetch_add(1, Ordering::SeqCst);
                            n
                        }));
                    }
                    let mut total = 0;
                    for c in conns {
                        total += c.await.expect("an echo task failed");
                    }
                    total
                })
            };

            let clients: Vec<_> = (0..CLIENTS)
                .map(|c| {
                    let data = data.clone();
                    bulwark::spawn(async move {
                        let mine = &data[c * SPREAD..c * SPREAD + BYTES];
                        let who = format!("client {c}");
                        let stream = TcpStream::connect(addr)
                            .await
                            .unwrap_or_else(|e| panic!("{who}: connect failed: {e}"));
                        let mut wrng = Rng::new(c as u64 * 2 + 1);
                        let mut rrng = Rng::new(c as u64 * 2 + 2);
                        let read = if c % 2 == 0 {
                            // Owned halves, the writer in a task of its own.
                            let (mut rd, mut wr) = stream.into_split();
                            let data = data.clone();
                            let who2 = who.clone();
                            let writer = bulwark::spawn(async move {
                                let mine = &data[c * SPREAD..c * SPREAD + BYTES];
                                write_randomly(&mut wr, mine, &mut wrng, &who2).await;
                                wr
                            });
                            let read = read_and_check(&mut rd, mine, &mut rrng, &who).await;
                            let wr = writer.await.expect("a client's writer task failed");
                            rd.reunite(wr).expect("reunite a client's own halves");
                            read
                        } else {
                            // Borrowed halves, both in this task.
                            let mut stream = stream;
                            let (mut rd, mut wr) = stream.split();
                            let (_, read) = futures::join!(
                                write_randomly(&mut wr, mine, &mut wrng, &who),
                                read_and_check(&mut rd, mine, &mut rrng, &who)
                            );
                            read
                        };
                        assert_eq!(read, BYTES, "{who}: bytes echoed back");
                    })
                })
                .collect();

            for (c, h) in clients.into_iter().enumerate() {
                bounded(110, &format!("client {c} to finish"), h)
                    .await
                    .unwrap_or_else(|e| panic!("client {c} failed: {e}"));
            }
            let total = bounded(10, "the server to finish", server)
                .await
                .expect("the server task failed");
            assert_eq!(
                total,
                (CLIENTS * BYTES) as u64,
                "bytes echoed by the server"
            );
        });
        println!("200 x 1 MiB echoed in {:?}", start.elapsed());
        assert_eq!(echoed.load(Ordering::SeqCst), CLIENTS);
        wait_until(
            10,
            "io_registrations back to baseline after the echo test",
            || rt.metrics().io_registrations == baseline,
        );
    });
}

/// A loopback port on which nothing listens (bound, then closed).
fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a std listener");
    let addr = listener.local_addr().expect("local_addr");
    drop(listener);
    addr
}

#[test]
fn connecting_to_a_closed_port_is_refused() {
    within(20, "connect to a closed port to fail", || {
        let rt = runtime(2);
        let baseline = rt.metrics().io_registrations;
        let addr = closed_port();
        let err = rt
            .block_on(async {
                bounded(10, "connect to a closed port", TcpStream::connect(addr)).await
            })
            .expect_err("connecting to a closed port succeeded");
        assert_eq!(
            err.kind(),
            io::ErrorKind::ConnectionRefused,
            "connecting to a closed port: {err}"
        );
        // From a task too, and the failed connect leaves no registration.
        let err = rt
            .block_on(rt.spawn(async move { TcpStream::connect(addr).await }))
            .expect("the connect task failed")
            .expect_err("connecting to a closed port from a task succeeded");
        assert_eq!(
            err.kind(),
            io::ErrorKind::ConnectionRefused,
            "from a task: {err}"
        );
        wait_until(5, "no io registrations after failed connects", || {
            rt.metrics().io_registrations == baseline
        });
    });
}

/// Makes `close` of this socket send RST instead of FIN.
fn set_linger_zero(stream: &std::net::TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the fd is a live socket owned by `stream`; the option value is
    // a valid `linger` of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt(SO_LINGER): {}",
        io::Error::last_os_error()
    );
}

#[test]
fn a_peer_reset_surfaces_as_connection_reset_on_read_and_an_error_on_write() {
    within(20, "a reset to reach the bulwark side", || {
        let rt = runtime(2);
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("local_addr");
            // The peer: a std socket on a plain thread, closed with RST when told.
            let (close_tx, close_rx) = mpsc::channel::<()>();
            let peer = std::thread::spawn(move || {
                let stream = std::net::TcpStream::connect(addr).expect("std connect");
                set_linger_zero(&stream);
                close_rx.recv().expect("the test stopped before the reset");
                drop(stream);
            });
            let (mut stream, _) = bounded(10, "accept of the peer", listener.accept())
                .await
                .expect("accept");
            // Unread data at the peer: its close sends RST on that count too.
            stream
                .write_all(b"unread by the peer")
                .await
                .expect("write");
            close_tx.send(()).unwrap();
            peer.join().expect("the peer thread panicked");

            let mut buf = [0u8; 64];
            // The peer sent nothing, so the first read must see the reset.
            let err = match bounded(10, "the reset to show on read", stream.read(&mut buf)).await {
                Ok(0) => panic!("read returned EOF after the peer reset the connection"),
                Ok(n) => panic!("read returned {n} bytes from a peer that sent none"),
                Err(e) => e,
            };
            assert_eq!(
                err.kind(),
                io::ErrorKind::ConnectionReset,
                "read after a peer reset: {err}"
            );

            // Writing to a reset connection fails too (EPIPE or ECONNRESET),
            // within a few writes.
            let mut write_err = None;
            for _ in 0..100 {
                match stream.write_all(&[0u8; 1024]).await {
                    Ok(()) => bulwark::time::sleep(Duration::from_millis(1)).await,
                    Err(e) => {
                        write_err = Some(e);
                        break;
                    }
                }
            }
            let write_err = write_err.expect("100 writes to a reset connection all succeeded");
            assert!(
                matches!(
                    write_err.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ),
                "write after a peer reset: {write_err}"
            );
        });
    });
}

#[test]
fn udp_send_to_recv_from_and_connect_send_recv_round_trip() {
    within(20, "UDP round trips", || {
        let rt = runtime(2);
        rt.block_on(async {
            let a = UdpSocket::bind("127.0.0.1:0").await.expect("bind a");
            let b = UdpSocket::bind("127.0.0.1:0").await.expect("bind b");
            let a_addr = a.local_addr().unwrap();
            let b_addr = b.local_addr().unwrap();

            // send_to / recv_from.
            let sent = a.send_to(b"ping", b_addr).await.expect("send_to");
            assert_eq!(sent, 4);
            let mut buf = [0u8; 64];
            let (n, from) = bounded(10, "b to receive ping", b.recv_from(&mut buf))
                .await
                .expect("recv_from");
            assert_eq!(&buf[..n], b"ping");
            assert_eq!(from, a_addr, "the sender's address");
            b.send_to(b"pong", from).await.expect("send_to back");
            let (n, from) = bounded(10, "a to receive pong", a.recv_from(&mut buf))
                .await
                .expect("recv_from");
            assert_eq!(&buf[..n], b"pong");
            assert_eq!(from, b_addr);

            // connect / send / recv.
            a.connect(b_addr).await.expect("connect a");
            b.connect(a_addr).await.expect("connect b");
            assert_eq!(a.peer_addr().unwrap(), b_addr);
            a.send(b"hello").await.expect("send");
            let n = bounded(10, "b to receive hello", b.recv(&mut buf))
                .await
                .expect("recv");
            assert_eq!(&buf[..n], b"hello");

            // A receiver task waits before anything is sent (the wake-up path),
            // while a sender task sends; 200 datagrams, one in flight at a time.
            let a = Arc::new(a);
            let b = Arc::new(b);
            let echo_b = {
                let b = b.clone();
                bulwark::spawn(async move {
                    let mut buf = [0u8; 64];
                    for i in 0..200u32 {
                        let n = b.recv(&mut buf).await.expect("b recv");
                        assert_eq!(&buf[..n], &i.to_le_bytes(), "datagram {i} at b");
                        b.send(&buf[..n]).await.expect("b send");
                    }
                })
            };
            for i in 0..200u32 {
                a.send(&i.to_le_bytes()).await.expect("a send");
                let n = bounded(10, "an echoed datagram", a.recv(&mut buf))
                    .await
                    .expect("a recv");
                assert_eq!(&buf[..n], &i.to_le_bytes(), "echo of datagram {i}");
            }
            bounded(10, "b's echo task", echo_b)
                .await
                .expect("b's echo task failed");
        });
    });
}

#[test]
fn split_and_into_split_halves_work_concurrently_from_two_tasks() {
    const BYTES: usize = 16 * 1024 * 1024;
    within(60, "16 MiB each way through split halves", || {
        let rt = runtime(4);
        let data = pattern(BYTES + 4096);
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().unwrap();

            // Server: into_split, the read half in one task, the write half in
            // another; both directions at full size at once, more than the
            // socket buffers hold, so each side must read while it writes.
            let server = {
                let data = data.clone();
                bulwark::spawn(async move {
                    let (stream, peer) = listener.accept().await.expect("accept");
                    let (mut rd, mut wr) = stream.into_split();
                    assert_eq!(rd.peer_addr().unwrap(), peer);
                    assert_eq!(wr.peer_addr().unwrap(), peer);
                    let d = data.clone();
                    let writer = bulwark::spawn(async move {
                        write_randomly(&mut wr, &d[..BYTES], &mut Rng::new(7), "server writer")
                            .await;
                        wr
                    });
                    let d = data.clone();
                    let reader = bulwark::spawn(async move {
                        let n = read_and_check(
                            &mut rd,
                            &d[4096..4096 + BYTES],
                            &mut Rng::new(8),
                            "server reader",
                        )
                        .await;
                        (n, rd)
                    });
                    let wr = writer.await.expect("the server's writer task failed");
                    let (n, rd) = reader.await.expect("the server's reader task failed");
                    assert_eq!(n, BYTES, "bytes the server read");
                    let stream = wr.reunite(rd).expect("reunite the server's halves");
                    drop(stream);
                })
            };

            // Client: borrowed halves of one stream, driven together.
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream.set_nodelay(true).expect("set_nodelay");
            assert!(stream.nodelay().unwrap());
            assert_eq!(stream.peer_addr().unwrap(), addr);
            let (mut rd, mut wr) = stream.split();
            let (_, n) = bounded(50, "the client to send and receive 16 MiB at once", async {
                let (mut wrng, mut rrng) = (Rng::new(9), Rng::new(10));
                futures::join!(
                    write_randomly(
                        &mut wr,
                        &data[4096..4096 + BYTES],
                        &mut wrng,
                        "client writer"
                    ),
                    read_and_check(&mut rd, &data[..BYTES], &mut rrng, "client reader")
                )
            })
            .await;
            assert_eq!(n, BYTES, "bytes the client read");
            bounded(10, "the server task", server)
                .await
                .expect("the server task failed");

            // Halves of two different streams do not reunite.
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().unwrap();
            let s1 = TcpStream::connect(addr).await.expect("connect 1");
            let s2 = TcpStream::connect(addr).await.expect("connect 2");
            let (r1, _w1) = s1.into_split();
            let (_r2, w2) = s2.into_split();
            assert!(
                r1.reunite(w2).is_err(),
                "halves of different streams reunited"
            );
        });
    });
}

#[test]
fn readiness_and_try_read_try_write_on_a_stream() {
    within(20, "readiness on a stream", || {
        let rt = runtime(2);
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().unwrap();
            let client = TcpStream::connect(addr).await.expect("connect");
            let (server, from) = listener.accept().await.expect("accept");
            assert_eq!(from, client.local_addr().unwrap(), "accept's peer address");

            let mut buf = [0u8; 16];
            let err = server
                .try_read(&mut buf)
                .expect_err("try_read with nothing sent");
            assert_eq!(
                err.kind(),
                io::ErrorKind::WouldBlock,
                "try_read on an empty socket"
            );

            bounded(10, "client writable", client.writable())
                .await
                .expect("writable");
            assert_eq!(client.try_write(b"abc").expect("try_write"), 3);

            // readable() waits for the data; the try_read after it gets it
            // (a spurious readiness would be a WouldBlock: retry then).
            let n = bounded(10, "the server to read 3 bytes", async {
                loop {
                    server.readable().await.expect("readable");
                    match server.try_read(&mut buf) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        Err(e) => panic!("try_read after readable: {e}"),
                    }
                }
            })
            .await;
            assert_eq!(&buf[..n], b"abc");

            // A reader task parked in read() is woken by a write from another task.
            let mut server = server;
            let reader = bulwark::spawn(async move {
                let mut buf = [0u8; 5];
                server.read_exact(&mut buf).await.expect("read_exact");
                buf
            });
            bulwark::time::sleep(Duration::from_millis(20)).await;
            let mut client = client;
            client.write_all(b"hello").await.expect("write_all");
            let got = bounded(10, "the parked reader to wake", reader)
                .await
                .expect("the reader task failed");
            assert_eq!(&got, b"hello");
        });
    });
}

#[test]
fn futures_io_traits_read_and_write_a_stream() {
    within(20, "a round trip through futures-io traits", || {
        let rt = runtime(2);
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().unwrap();
            let server = bulwark::spawn(async move {
                let (mut s, _) = listener.accept().await.expect("accept");
                let mut buf = Vec::new();
                futures::io::AsyncReadExt::read_to_end(&mut s, &mut buf)
                    .await
                    .expect("read_to_end");
                futures::io::AsyncWriteExt::write_all(&mut s, &buf)
                    .await
                    .expect("write_all back");
                futures::io::AsyncWriteExt::close(&mut s)
                    .await
                    .expect("close");
            });
            let mut c = TcpStream::connect(addr).await.expect("connect");
            let msg: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
            futures::io::AsyncWriteExt::write_all(&mut c, &msg)
                .await
                .expect("write_all");
            futures::io::AsyncWriteExt::close(&mut c)
                .await
                .expect("close");
            let mut back = Vec::new();
            bounded(
                10,
                "the echo back",
                futures::io::AsyncReadExt::read_to_end(&mut c, &mut back),
            )
            .await
            .expect("read_to_end");
            assert!(back == msg, "futures-io round trip changed the bytes");
            server.await.expect("the server task failed");
        });
    });
}

#[test]
fn dropping_sockets_brings_io_registrations_back_to_baseline() {
    within(30, "sockets to deregister", || {
        let rt = runtime(2);
        let baseline = rt.metrics().io_registrations;
        let sockets = rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().unwrap();
            let mut streams = Vec::new();
            for _ in 0..10 {
                let c = TcpStream::connect(addr).await.expect("connect");
                let (s, _) = listener.accept().await.expect("accept");
                streams.push(c);
                streams.push(s);
            }
            let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
            (listener, streams, udp)
        });
        let held = rt.metrics().io_registrations;
        assert!(
            held >= baseline + 22,
            "a listener, 20 streams and a UDP socket: io_registrations {held}, baseline {baseline}"
        );

        // Half the streams dropped inside a task, split first.
        let (listener, mut streams, udp) = sockets;
        let rest = streams.split_off(10);
        rt.block_on(rt.spawn(async move {
            for s in streams {
                let (r, w) = s.into_split();
                drop(w);
                drop(r);
            }
        }))
        .expect("the dropping task failed");
        wait_until(
            5,
            "io_registrations to drop by 10 after 10 streams dropped",
            || rt.metrics().io_registrations == held - 10,
        );

        // The rest outside the runtime.
        drop(rest);
        drop(udp);
        drop(listener);
        wait_until(
            5,
            "io_registrations back to baseline after every socket dropped",
            || rt.metrics().io_registrations == baseline,
        );

        // A task parked in read, aborted: its socket is dropped with it.
        let (tx, rx) = mpsc::channel();
        let parked = rt.spawn(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().unwrap();
            let mut c = TcpStream::connect(addr).await.expect("connect");
            let (s, _) = listener.accept().await.expect("accept");
            tx.send(()).unwrap();
            let mut buf = [0u8; 8];
            let _ = c.read(&mut buf).await;
            drop(s);
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the parked task never connected");
        assert!(rt.metrics().io_registrations >= baseline + 3);
        parked.abort();
        wait_until(
            5,
            "io_registrations back to baseline after aborting a parked reader",
            || rt.metrics().io_registrations == baseline,
        );
    });
}

#[test]
fn sockets_made_outside_a_runtime_are_an_error_not_a_panic() {
    let bound = futures::executor::block_on(TcpListener::bind("127.0.0.1:0"));
    assert!(
        bound.is_err(),
        "TcpListener::bind outside a runtime succeeded"
    );
    let bound = futures::executor::block_on(UdpSocket::bind("127.0.0.1:0"));
    assert!(
        bound.is_err(),
        "UdpSocket::bind outside a runtime succeeded"
    );
}
