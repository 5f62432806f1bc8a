//! Name resolution (`bulwark::net::{lookup_host, ToSocketAddrs}`): a host
//! name is looked up on the blocking pool while every worker stays busy
//! with its own tasks; an address or IP literal starts no blocking thread;
//! a bad name is an `io::Error`; the socket constructors take host names
//! and still record the caller's line as the socket's acquisition site.

mod common;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bulwark::net::{lookup_host, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use common::{bounded, runtime, spin, wait_until, within};

/// The largest gap between two iterations of a spin loop that the lookup
/// may cause: far above a loaded 2-core machine's scheduling noise, far
/// below what a lookup that blocked a worker on the network would take.
const GAP_BOUND: Duration = Duration::from_millis(500);

#[test]
fn lookup_host_runs_on_the_blocking_pool_while_both_workers_spin() {
    within(60, "a lookup next to two spinning workers", || {
        let rt = runtime(2);
        assert_eq!(rt.metrics().blocking_threads, 0, "a fresh runtime");
        let stop = Arc::new(AtomicBool::new(false));
        // Each spinner: the thread it last ran on, and its largest gap
        // between two iterations, in microseconds.
        let threads: Arc<Mutex<[String; 2]>> = Arc::default();
        let gaps: Arc<[AtomicU64; 2]> = Arc::default();
        let spinners: Vec<_> = (0..2)
            .map(|i| {
                let (stop, threads, gaps) = (stop.clone(), threads.clone(), gaps.clone());
                rt.spawn(async move {
                    let mut last = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        let now = Instant::now();
                        let gap = now.duration_since(last).as_micros() as u64;
                        gaps[i].fetch_max(gap, Ordering::Relaxed);
                        last = now;
                        threads.lock().unwrap()[i] = thread_name();
                        // Busy most of the time, giving the worker back
                        // often enough for the lookup's task to get a poll.
                        spin(Duration::from_micros(200));
                        bulwark::task::yield_now().await;
                    }
                })
            })
            .collect();
        wait_until(10, "the two spinners on two different workers", || {
            let t = threads.lock().unwrap();
            !t[0].is_empty() && !t[1].is_empty() && t[0] != t[1]
        });
        // Only the lookup counts: gaps from the spinners' start are reset.
        for g in gaps.iter() {
            g.store(0, Ordering::Relaxed);
        }

        let lookup = rt.spawn(async {
            let on = thread_name();
            let addrs: Vec<_> = lookup_host("localhost:80").await?.collect();
            Ok::<_, io::Error>((on, addrs))
        });
        let (on, addrs) = rt
            .block_on(async { bounded(20, "lookup_host(\"localhost:80\")", lookup).await })
            .expect("the lookup task ends")
            .expect("localhost resolves");
        stop.store(true, Ordering::Relaxed);
        for s in spinners {
            rt.block_on(s).expect("a spinner ends");
        }

        assert!(on.starts_with("bulwark-worker"), "the lookup ran on {on}");
        assert!(!addrs.is_empty());
        assert!(
            addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 80),
            "{addrs:?}"
        );
        // The name went to the pool (an IP literal would not: see below).
        assert!(
            rt.metrics().blocking_threads >= 1,
            "no blocking thread was started for the lookup"
        );
        for (i, g) in gaps.iter().enumerate() {
            let gap = Duration::from_micros(g.load(Ordering::Relaxed));
            assert!(
                gap < GAP_BOUND,
                "spinner {i} waited {gap:?} between iterations during the lookup"
            );
        }
    });
}

#[test]
fn addresses_and_ip_literals_start_no_blocking_thread() {
    within(60, "IP literals", || {
        let rt = runtime(2);
        let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, 80));
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, 443));
        rt.block_on(rt.spawn(async move {
            assert_eq!(resolved("127.0.0.1:80").await, [v4]);
            assert_eq!(resolved("[::1]:443").await, [v6]);
            assert_eq!(resolved(("127.0.0.1", 80)).await, [v4]);
            assert_eq!(resolved(("::1".to_string(), 443)).await, [v6]);
            assert_eq!(
                resolved((IpAddr::from(Ipv4Addr::LOCALHOST), 80)).await,
                [v4]
            );
            assert_eq!(resolved(v6).await, [v6]);
            assert_eq!(resolved(&[v4, v6][..]).await, [v4, v6]);

            // The socket constructors, with literals of each shape.
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let port = listener.local_addr().unwrap().port();
            let _a = TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            let _b = TcpStream::connect(format!("127.0.0.1:{port}"))
                .await
                .expect("connect");
            let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .expect("udp bind");
            let peer = UdpSocket::bind("127.0.0.1:0").await.expect("udp bind");
            let peer_addr = peer.local_addr().unwrap();
            udp.send_to(b"x", peer_addr).await.expect("send_to");
            udp.send_to(b"y", &peer_addr.to_string())
                .await
                .expect("send_to");
            udp.connect(peer_addr).await.expect("udp connect");
        }))
        .expect("the task ends");
        assert_eq!(
            rt.metrics().blocking_threads,
            0,
            "an address or IP literal started a blocking thread"
        );
    });
}

/// A host name that does not resolve, and that the system's resolver
/// refuses by its syntax before asking DNS (glibc checks a name's
/// characters first): the test sends nothing to the network.
const BAD_HOST: &str = "no such host!";
const BAD_HOST_PORT: &str = "no such host!:80";

#[test]
fn bad_names_are_errors_not_panics() {
    within(60, "bad names", || {
        let rt = runtime(2);
        rt.block_on(async {
            for bad in [BAD_HOST_PORT, "localhost", "localhost:notaport", ""] {
                let res = bounded(20, "a bad name's error", lookup_host(bad)).await;
                assert!(res.is_err(), "{bad:?} resolved");
            }
            let no_port = lookup_host("localhost").await.map(|_| ()).unwrap_err();
            assert_eq!(no_port.kind(), io::ErrorKind::InvalidInput, "{no_port}");
            let res = bounded(
                20,
                "connect to a bad name",
                TcpStream::connect(BAD_HOST_PORT),
            )
            .await;
            assert!(res.is_err());
            let res = bounded(20, "bind to a bad name", TcpListener::bind((BAD_HOST, 0))).await;
            assert!(res.is_err());
            let udp = UdpSocket::bind("127.0.0.1:0").await.expect("udp bind");
            let res = bounded(20, "send_to a bad name", udp.send_to(b"x", BAD_HOST_PORT)).await;
            assert!(res.is_err());
        });
    });
}

/// Where a stashed stream goes: a long-lived vec, as a real leak would.
static STASHED: Mutex<Vec<TcpStream>> = Mutex::new(Vec::new());

#[test]
fn sockets_take_host_names_and_keep_the_callers_line() {
    within(60, "sockets by host name", || {
        let rt = runtime(2);
        let line = rt
            .block_on(rt.spawn(async {
                let listener = TcpListener::bind("localhost:0")
                    .await
                    .expect("bind by name");
                let addr = listener.local_addr().unwrap();
                let accept = bulwark::spawn(async move { listener.accept().await.map(|_| ()) });
                let line = line!() + 1;
                let stream = TcpStream::connect(("localhost", addr.port())).await;
                let stream = stream.expect("connect by name");
                accept.await.expect("accept task").expect("accepted");
                // Orphaned: the task that made it ends while it lives on.
                STASHED.lock().unwrap().push(stream);
                line
            }))
            .expect("the task ends");
        assert!(
            rt.metrics().blocking_threads >= 1,
            "the names went to the pool"
        );
        wait_until(5, "the stashed stream to be listed as an orphan", || {
            rt.handle().leaks().iter().any(|l| l.kind == "socket")
        });
        let leaks = rt.handle().leaks();
        let leak = leaks.iter().find(|l| l.kind == "socket").expect("listed");
        assert!(leak.site.file().ends_with("names.rs"), "{leak:?}");
        assert_eq!(leak.site.line(), line, "the connect line: {leak:?}");
        STASHED.lock().unwrap().clear();
    });
}

#[test]
fn lookup_host_outside_a_runtime_runs_on_a_thread_of_its_own() {
    within(30, "a lookup with no runtime", || {
        let addrs: Vec<_> = futures::executor::block_on(lookup_host("localhost:443"))
            .expect("localhost resolves")
            .collect();
        assert!(addrs
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 443));
    });
}

/// What `host` resolves to; it must resolve.
async fn resolved<T: ToSocketAddrs>(host: T) -> Vec<SocketAddr> {
    lookup_host(host).await.expect("resolves").collect()
}

fn thread_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed>")
        .to_string()
}
