//! The metrics endpoint (`Builder::metrics_endpoint`): it answers while
//! every worker is blocked, a flood of idle and trickling connections
//! neither starves a well-behaved client nor grows its fds, bad input gets
//! a status or a clean close, its counters add up to a known workload, and
//! its routes say what they should. Plain `std::net` clients, every read
//! bounded.

mod common;

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bulwark::metrics::TaskState;
use bulwark::runtime::Runtime;
use common::{builder, wait_until, within};

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A runtime with `workers` workers and the endpoint on a free port.
fn runtime_with_endpoint(workers: usize, max_tasks: usize) -> (Runtime, SocketAddr) {
    let rt = builder(workers)
        .max_tasks(max_tasks)
        .metrics_endpoint(any_port())
        .build()
        .expect("build the runtime with an endpoint");
    let addr = rt.metrics_endpoint_addr().expect("the endpoint's address");
    (rt, addr)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connect to the endpoint at {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Sends `request` and reads until the endpoint closes (at most 5 s
/// without a byte). What came, or the error that ended it.
fn exchange(addr: SocketAddr, request: &[u8]) -> io::Result<Vec<u8>> {
    let mut s = connect(addr);
    s.write_all(request)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

fn parse(bytes: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {text:?}"));
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

fn get_with(addr: SocketAddr, target: &str, extra: &str) -> Answer {
    let request = format!("GET {target} HTTP/1.1\r\nHost: test\r\n{extra}\r\n");
    let bytes = exchange(addr, request.as_bytes())
        .unwrap_or_else(|e| panic!("GET {target} from the endpoint: {e}"));
    parse(&bytes)
}

fn get(addr: SocketAddr, target: &str) -> Answer {
    get_with(addr, target, "")
}

/// `GET target`, which must be answered within `bound`.
fn get_within(addr: SocketAddr, target: &str, bound: Duration) -> Answer {
    let started = Instant::now();
    let answer = get(addr, target);
    let took = started.elapsed();
    assert!(
        took < bound,
        "GET {target} took {took:?}, more than {bound:?}"
    );
    answer
}

fn json(a: &Answer) -> serde_json::Value {
    assert!(
        a.head.contains("Content-Type: application/json"),
        "{}",
        a.head
    );
    serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{e}: {}", a.body))
}

/// The value of the sample line `series` (name and labels as written).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(|v| v.parse().unwrap())
    })
}

#[test]
fn answers_within_a_second_while_every_worker_is_blocked() {
    within(30, "the endpoint with every worker blocked", || {
        let (rt, addr) = runtime_with_endpoint(2, 1_000);
        // Two per worker: with the watchdog's replacement threads (its
        // default) taking a stuck worker's seat, they block too. They block
        // until the test has looked (bounded, so they end if it fails).
        let released = Arc::new(AtomicBool::new(false));
        let blockers: Vec<_> = (0..4)
            .map(|i| {
                let released = released.clone();
                bulwark::task::Builder::new()
                    .name(&format!("blocker-{i}"))
                    .spawn_on(
                        async move {
                            let until = Instant::now() + Duration::from_secs(30);
                            while !released.load(Ordering::SeqCst) && Instant::now() < until {
                                thread::sleep(Duration::from_millis(10));
                            }
                        },
                        rt.handle(),
                    )
                    .expect("spawn a blocker")
            })
            .collect();
        // The claim of this test, in real time by nature: each answer within
        // a second while every worker is stuck (a normal answer takes about
        // a millisecond; a second is for a loaded machine).
        let bound = Duration::from_secs(1);
        // The watchdog (25 ms by default) reports each stuck worker.
        let deadline = Instant::now() + Duration::from_secs(10);
        let stalls = loop {
            let page = json(&get_within(addr, "/stalls", bound));
            let stalls = page["stalls"].as_array().unwrap().clone();
            if stalls.len() >= 2 {
                break stalls;
            }
            assert!(
                Instant::now() < deadline,
                "waited 10 s for /stalls to list both stuck workers: {page}"
            );
            thread::sleep(Duration::from_millis(20));
        };
        for s in &stalls {
            let named = s["task_name"]
                .as_str()
                .is_some_and(|n| n.starts_with("blocker-"))
                || s["location"]
                    .as_str()
                    .is_some_and(|l| l.contains("tests/endpoint.rs"));
            assert!(named, "a stall that names no blocker: {s}");
            assert_eq!(s["ongoing"], true, "{s}");
        }
        let metrics = get_within(addr, "/metrics", bound);
        assert_eq!(metrics.status, 200);
        assert!(sample(&metrics.body, "bulwark_stalls_total").unwrap() >= 2.0);
        assert!(sample(&metrics.body, "bulwark_tasks_live").unwrap() >= 4.0);
        let tasks = json(&get_within(addr, "/tasks", bound));
        let names: HashSet<&str> = tasks["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert!(
            names.contains("blocker-0") && names.contains("blocker-3"),
            "{tasks}"
        );
        let running = json(&get_within(addr, "/tasks?state=running", bound));
        assert!(running["total"].as_u64().unwrap() >= 2, "{running}");
        assert_eq!(get_within(addr, "/", bound).status, 200);
        released.store(true, Ordering::SeqCst);
        rt.shutdown_timeout(Duration::from_secs(5));
        drop(blockers);
    });
}

/// Raises this process's soft fd limit to its hard limit; the limit now.
fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit and setrlimit only read and write the struct
    // passed, which lives on this stack frame for both calls.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
        lim.rlim_cur
    }
}

fn fds_open() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

/// This process's fds that are sockets whose local port is `port`: the
/// endpoint's listener and the connections it accepted (the test's own
/// client sockets have other local ports).
fn endpoint_fds(port: u16) -> usize {
    let mut inodes = HashSet::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|local| local.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) && fields.get(9).is_some_and(|i| *i != "0") {
                inodes.insert(format!("socket:[{}]", fields[9]));
            }
        }
    }
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path())
                .is_ok_and(|target| inodes.contains(target.to_string_lossy().as_ref()))
        })
        .count()
}

#[test]
fn idle_and_trickling_connections_neither_starve_a_client_nor_grow_its_fds() {
    within(90, "the endpoint under a connection flood", || {
        let limit = raise_fd_limit();
        // 1,000 idle and 100 slow, as the issue asks, unless the hard fd
        // limit is too low for them and the runtime (then fewer, said so).
        let idle_n = 1_000.min(limit.saturating_sub(400) as usize);
        if idle_n < 1_000 {
            eprintln!("fd limit {limit}: {idle_n} idle connections, not 1,000");
        }
        let (rt, addr) = runtime_with_endpoint(1, 1_000);
        let base = fds_open();

        let opening = Instant::now();
        let idle: Vec<TcpStream> = (0..idle_n).map(|_| connect(addr)).collect();
        let opened_in = opening.elapsed();
        // 100 clients sending one byte a second, reconnecting when closed.
        let stop = Arc::new(AtomicBool::new(false));
        let slow = {
            let stop = stop.clone();
            thread::spawn(move || {
                let request = b"GET /health HTTP/1.1\r\nHost: slow\r\n\r\n";
                let mut socks: Vec<(TcpStream, usize)> =
                    (0..100).map(|_| (connect(addr), 0)).collect();
                let mut reconnects = 0;
                while !stop.load(Ordering::Relaxed) {
                    for (sock, sent) in socks.iter_mut() {
                        let byte = [request[*sent % request.len()]];
                        if sock.write(&byte).is_err() {
                            *sock = connect(addr);
                            *sent = 0;
                            reconnects += 1;
                        } else {
                            *sent += 1;
                        }
                    }
                    for _ in 0..20 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        thread::sleep(Duration::from_millis(50));
                    }
                }
                reconnects
            })
        };

        // Three seconds of the flood, and at least ten answers: a slow
        // machine takes longer for them (up to 30 s), rather than failing.
        let started = Instant::now();
        let mut answered = 0;
        let mut worst = Duration::ZERO;
        let mut most_fds = 0;
        while started.elapsed() < Duration::from_secs(3)
            || (answered < 10 && started.elapsed() < Duration::from_secs(30))
        {
            let t = Instant::now();
            let a = get(addr, "/health");
            let took = t.elapsed();
            assert_eq!(a.status, 200, "{}", a.body);
            // Real time, by nature: an answer takes about a millisecond
            // here; the second is for a loaded machine.
            assert!(
                took < Duration::from_secs(1),
                "a well-behaved client waited {took:?} for /health under the flood"
            );
            worst = worst.max(took);
            answered += 1;
            most_fds = most_fds.max(endpoint_fds(addr.port()));
            thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
        let reconnects = slow.join().expect("the slow clients' thread");
        // The listener and at most 64 connections.
        assert!(
            most_fds <= 65,
            "the endpoint held {most_fds} sockets at once"
        );
        let total = fds_open();
        assert!(
            total <= base + idle_n + 100 + 65 + 16,
            "{total} fds open (from {base}, with {idle_n} idle and 100 slow clients)"
        );
        assert!(
            answered >= 10,
            "only {answered} answers in {:?}",
            started.elapsed()
        );
        eprintln!(
            "flood: {idle_n} idle connections opened in {opened_in:?}; {answered} answers, the slowest in {worst:?}; the endpoint held at most {most_fds} sockets; {reconnects} slow reconnects"
        );
        drop(idle);
        drop(rt);
    });
}

#[test]
fn bad_input_gets_a_status_or_a_clean_close() {
    within(30, "answers to bad input", || {
        let (rt, addr) = runtime_with_endpoint(1, 1_000);
        let status = |request: &[u8]| exchange(addr, request).map(|b| parse(&b).status);

        assert_eq!(
            status(b"\x16\x03\x01\x02\x00\x01garbage\r\n\r\n").unwrap(),
            400
        );
        assert_eq!(status(b"GET /\r\n").unwrap(), 400, "HTTP/0.9");
        assert_eq!(status(b"BREW /metrics HTTP/1.1\r\n\r\n").unwrap(), 405);
        assert_eq!(
            status(b"POST /tasks HTTP/1.1\r\nContent-Length: 0\r\n\r\n").unwrap(),
            405
        );
        assert_eq!(status(b"GET /nowhere HTTP/1.1\r\n\r\n").unwrap(), 404);
        assert_eq!(status(b"GET / HTTP/2.0\r\n\r\n").unwrap(), 400);
        assert_eq!(
            status(b"GET /tasks?limit=lots HTTP/1.1\r\n\r\n").unwrap(),
            400
        );
        assert_eq!(
            status(b"GET /tasks?state=asleep HTTP/1.1\r\n\r\n").unwrap(),
            400
        );

        // A 1 MiB header: 431, or a clean close (a reset while the rest is
        // still being sent counts as one).
        let mut big = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 1 << 20));
        big.extend(b"\r\n\r\n");
        match exchange(addr, &big) {
            Ok(bytes) if !bytes.is_empty() => assert_eq!(parse(&bytes).status, 431),
            Ok(_) => {}
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                ),
                "{e}"
            ),
        }

        // A request in one-byte writes.
        let mut s = connect(addr);
        s.set_nodelay(true).unwrap();
        for b in b"GET /health HTTP/1.1\r\nHost: slow\r\n\r\n" {
            s.write_all(&[*b]).unwrap();
            thread::sleep(Duration::from_millis(1));
        }
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let a = parse(&out);
        assert_eq!((a.status, a.body.as_str()), (200, "ok\n"));

        // HEAD: the head only, sized as GET's body.
        let head = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").unwrap();
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"));

        // Still serving after all that.
        assert_eq!(get(addr, "/health").status, 200);
        drop(rt);
    });
}

#[test]
fn counters_in_metrics_match_a_known_workload() {
    within(30, "a known workload's counters", || {
        const CEILING: usize = 10;
        const REJECTED: usize = 5;
        const PAST_DEADLINE: usize = 3;
        let (rt, addr) = runtime_with_endpoint(2, CEILING);
        // Fill the ceiling with tasks that wait for a word.
        let (holders, releases): (Vec<_>, Vec<_>) = (0..CEILING)
            .map(|_| {
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                (rt.spawn(async move { rx.await.is_ok() }), tx)
            })
            .unzip();
        let rejected: Vec<_> = (0..REJECTED).map(|_| rt.spawn(async {})).collect();
        for r in rejected {
            let err = rt.block_on(r).expect_err("a spawn past the ceiling");
            assert!(err.is_rejected(), "{err}");
        }
        let health = get(addr, "/health");
        assert_eq!(health.status, 503, "at the ceiling: {}", health.body);
        assert!(health.body.contains("task ceiling"), "{}", health.body);
        for tx in releases {
            tx.send(()).unwrap();
        }
        for h in holders {
            assert!(rt.block_on(h).unwrap());
        }
        wait_until(5, "the holders to end", || rt.metrics().tasks_live == 0);
        let late: Vec<_> = (0..PAST_DEADLINE)
            .map(|_| {
                bulwark::task::Builder::new()
                    .timeout(Duration::from_millis(20))
                    .spawn_on(
                        async { bulwark::time::sleep(Duration::from_secs(30)).await },
                        rt.handle(),
                    )
                    .unwrap()
            })
            .collect();
        for h in late {
            assert!(rt.block_on(h).unwrap_err().is_deadline_exceeded());
        }
        wait_until(5, "every task to end", || rt.metrics().tasks_live == 0);

        let text = get(addr, "/metrics").body;
        let n = |series: &str| {
            sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}")) as usize
        };
        let spawned = CEILING + REJECTED + PAST_DEADLINE;
        assert_eq!(n("bulwark_tasks_spawned_total"), spawned);
        assert_eq!(n("bulwark_tasks_completed_total"), CEILING);
        assert_eq!(n("bulwark_tasks_rejected_total"), REJECTED);
        assert_eq!(
            n("bulwark_spawns_rejected_total{reason=\"ceiling\"}"),
            REJECTED
        );
        assert_eq!(n("bulwark_spawns_rejected_total{reason=\"shedding\"}"), 0);
        assert_eq!(n("bulwark_tasks_deadline_exceeded_total"), PAST_DEADLINE);
        assert_eq!(n("bulwark_tasks_live"), 0);
        assert_eq!(n("bulwark_max_tasks"), CEILING);
        assert_eq!(n("bulwark_tasks_admitted_peak"), CEILING);
        assert_eq!(n("bulwark_kind_budget{kind=\"task\"}"), CEILING);
        // Every task that ran and ended has a lifetime; a spawn refused at
        // the ceiling never became a task.
        assert_eq!(
            n("bulwark_task_lifetime_seconds_count"),
            CEILING + PAST_DEADLINE
        );
        assert_eq!(get(addr, "/health").status, 200);
        drop(rt);
    });
}

#[test]
fn the_routes_list_tasks_pages_and_openmetrics() {
    within(30, "the endpoint's routes", || {
        let (rt, addr) = runtime_with_endpoint(1, 1_000);
        let (tx, rx) = tokio::sync::watch::channel(false);
        let waiters: Vec<_> = (0..5)
            .map(|i| {
                let mut rx = rx.clone();
                bulwark::task::Builder::new()
                    .name(&format!("waiter \"{i}\""))
                    .spawn_on(
                        async move {
                            let _ = rx.wait_for(|go| *go).await;
                        },
                        rt.handle(),
                    )
                    .unwrap()
            })
            .collect();
        wait_until(5, "the waiters to go idle", || {
            rt.handle()
                .tasks()
                .iter()
                .filter(|t| t.state == TaskState::Idle)
                .count()
                == 5
        });

        let all = json(&get(addr, "/tasks?state=idle"));
        assert_eq!(all["total"], 5, "{all}");
        let task = &all["tasks"][0];
        assert_eq!(task["name"], "waiter \"0\"", "oldest first: {all}");
        assert_eq!(task["state"], "idle");
        assert!(task["location"]
            .as_str()
            .unwrap()
            .contains("tests/endpoint.rs"));
        for field in [
            "id",
            "age_seconds",
            "polls",
            "busy_seconds",
            "idle_seconds",
            "deadline_seconds",
            "resources",
        ] {
            assert!(task.get(field).is_some(), "no {field} in {task}");
        }
        let cut = json(&get(addr, "/tasks?limit=2&state=idle"));
        assert_eq!(
            (cut["listed"].as_u64(), cut["truncated"].as_bool()),
            (Some(2), Some(true))
        );

        let page = get(addr, "/");
        assert!(page.head.contains("Content-Type: text/html"));
        assert!(
            page.body.contains("<span id=\"tasks-live\">5</span>"),
            "{}",
            page.body
        );

        let om = get_with(
            addr,
            "/metrics",
            "Accept: application/openmetrics-text; version=1.0.0\r\n",
        );
        assert!(om
            .head
            .contains("Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8"));
        assert!(om.body.ends_with("# EOF\n"));
        assert!(om.body.contains("# TYPE bulwark_tasks_spawned counter\n"));
        let prom = get(addr, "/metrics");
        assert!(prom
            .head
            .contains("Content-Type: text/plain; version=0.0.4"));
        assert!(prom
            .body
            .contains("# TYPE bulwark_poll_duration_seconds histogram\n"));
        assert_eq!(sample(&prom.body, "bulwark_tasks_live"), Some(5.0));

        let leaks = json(&get(addr, "/leaks"));
        assert_eq!(leaks["count"], 0);

        tx.send(true).unwrap();
        for w in waiters {
            rt.block_on(w).unwrap();
        }
        drop(rt);
    });
}

#[test]
fn the_endpoint_lives_and_dies_with_its_runtime() {
    within(30, "the endpoint's start and stop", || {
        let plain = builder(1).build().unwrap();
        assert_eq!(plain.metrics_endpoint_addr(), None);
        assert_eq!(plain.handle().metrics_endpoint_addr(), None);
        drop(plain);

        let (rt, addr) = runtime_with_endpoint(1, 1_000);
        assert_ne!(addr.port(), 0);
        assert_eq!(rt.handle().metrics_endpoint_addr(), Some(addr));
        let held = connect(addr);
        // Another runtime cannot take the same address: build fails.
        let err = builder(1)
            .metrics_endpoint(addr)
            .build()
            .expect_err("a second endpoint on a taken address");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);

        let threads = || common::threads_named("bulwark-metrics").len();
        assert!(threads() >= 1);
        let started = Instant::now();
        drop(rt);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "dropping the runtime took {:?}",
            started.elapsed()
        );
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
            "the endpoint still listens after its runtime was dropped"
        );
        drop(held);
    });
}
