//! File-descriptor exhaustion: an accept loop that runs out of fds backs off
//! (no spinning, no dying) and serves again once fds come back.
//!
//! The scenario lowers `RLIMIT_NOFILE`, which would starve every other test
//! in the process, so it runs in a child process: this test binary run again
//! with `--exact` on the same test and an environment variable that selects
//! the child's side. The parent opens the client connections (so clients use
//! none of the child's fds) and talks to the child over its stdin/stdout.
//!
//! Protocol (the child's lines on stdout carry the tag `FDCHILD `):
//! 1. child: lowers the limit, starts the runtime and an accept loop that
//!    holds every connection, prints `PORT <port>`;
//! 2. parent: opens `CLIENTS` connections, writes `CONNECTED` to stdin;
//! 3. child: waits until accept has failed for want of fds
//!    (`accept_backoffs > 0`), measures its CPU time over one second of
//!    being unable to accept, checks it, drops the held connections, prints
//!    `RELEASED`;
//! 4. parent: opens a new connection and makes an echo round trip;
//! 5. child: sees the round trip, prints `DONE` and exits.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use bulwark::net::{TcpListener, TcpStream};
use common::{builder, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Selects the child's side of the test.
const CHILD_ENV: &str = "BULWARK_FD_EXHAUSTION_CHILD";
/// The child's fd limit.
const FD_LIMIT: u64 = 64;
/// Connections the parent opens while the child holds what it accepts: more
/// than the child can have open, fewer than the listen backlog.
const CLIENTS: usize = 80;
/// The most CPU the child may spend in the second it cannot accept.
const CPU_BOUND: Duration = Duration::from_millis(500);
/// The test's name, for `--exact`.
const TEST_NAME: &str = "an_accept_loop_out_of_fds_backs_off_without_spinning_and_recovers";

#[test]
fn an_accept_loop_out_of_fds_backs_off_without_spinning_and_recovers() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
    } else {
        parent();
    }
}

// ----------------------------------------------------------------------------
// The parent: starts the child, opens the clients, makes the round trip.

/// Kills the child if the parent fails before it exits.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn parent() {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the child process");
    let mut stdin = child.stdin.take().expect("child stdin");
    let stdout = child.stdout.take().expect("child stdout");
    let mut stderr = child.stderr.take().expect("child stderr");
    let mut guard = KillOnDrop(Some(child));

    // The child's lines, read on threads so every wait can be bounded.
    // `None` once the child's stdout closes (it exited or died).
    let (line_tx, lines) = mpsc::channel::<Option<String>>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            println!("child: {line}");
            if line_tx.send(Some(line)).is_err() {
                return;
            }
        }
        let _ = line_tx.send(None);
    });
    let err_text = Arc::new(Mutex::new(String::new()));
    {
        let err_text = err_text.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            *err_text.lock().unwrap() = s;
        });
    }
    let stderr_now = || err_text.lock().unwrap().clone();

    // Waits for the child's line `FDCHILD <word> ...`, returning the rest.
    let expect = |word: &str, secs: u64| -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(Some(line)) => {
                    // The harness's "test <name> ... " may precede the
                    // child's first line.
                    let tag = format!("FDCHILD {word}");
                    if let Some(at) = line.find(&tag) {
                        return line[at + tag.len()..].trim().to_string();
                    }
                }
                Ok(None) => {
                    // Give the stderr reader a moment to collect the rest.
                    std::thread::sleep(Duration::from_millis(200));
                    panic!(
                        "the child exited before its `{word}` line; child stderr:\n{}",
                        stderr_now()
                    );
                }
                Err(_) => {
                    // Give the stderr reader a moment if the child died.
                    std::thread::sleep(Duration::from_millis(200));
                    panic!(
                        "waited {secs} s for the child's `{word}` line; child stderr:\n{}",
                        stderr_now()
                    );
                }
            }
        }
    };

    let port: u16 = expect("PORT", 30).parse().expect("the child's port");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    println!("parent: child listens on {addr}; opening {CLIENTS} connections");

    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let c = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("parent: connection {i} to the child failed: {e}"));
        clients.push(c);
    }
    writeln!(stdin, "CONNECTED").expect("tell the child the clients are connected");
    stdin.flush().unwrap();

    let exhausted = expect("EXHAUSTED", 60);
    println!("parent: child out of fds: {exhausted}");
    let released = expect("RELEASED", 30);
    println!("parent: child released its connections: {released}");

    // Accept works again: a new client is served.
    let mut c = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .expect("parent: connect after the child released its fds");
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(b"ping").expect("parent: write ping");
    let mut back = [0u8; 4];
    c.read_exact(&mut back).unwrap_or_else(|e| {
        panic!(
            "parent: no echo from the child after it released its fds ({e}); child stderr:\n{}",
            stderr_now()
        )
    });
    assert_eq!(&back, b"ping", "the echo after recovery");
    println!("parent: round trip after recovery ok");

    expect("DONE", 30);
    drop(clients);
    drop(c);
    drop(stdin);

    let mut child = guard.0.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("waited 30 s for the child to exit after DONE");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        status.success(),
        "the child failed ({status}); its stderr:\n{}",
        stderr_now()
    );
}

// ----------------------------------------------------------------------------
// The child: the runtime under a low fd limit.

/// This process's user + system CPU time.
fn cpu_time() -> Duration {
    // SAFETY: `getrusage` writes a `rusage` into the zeroed value we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        let rc = libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        assert_eq!(rc, 0, "getrusage: {}", std::io::Error::last_os_error());
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn set_fd_limit(n: u64) {
    let limit = libc::rlimit {
        rlim_cur: n as libc::rlim_t,
        rlim_max: n as libc::rlim_t,
    };
    // SAFETY: `setrlimit` reads the `rlimit` we pass.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    assert_eq!(
        rc,
        0,
        "setrlimit(RLIMIT_NOFILE, {n}): {}",
        std::io::Error::last_os_error()
    );
}

macro_rules! say {
    ($($arg:tt)*) => {{
        println!("FDCHILD {}", format!($($arg)*));
        std::io::stdout().flush().unwrap();
    }};
}

fn child() {
    set_fd_limit(FD_LIMIT);
    // No socket budget: at the default one (the fd limit less headroom) the
    // listener would pause before it ever met EMFILE (that pause is
    // `socket_budget.rs`); this is the back-off for fds taken by anything.
    let rt = builder(2)
        .resource_budget("socket", usize::MAX)
        .build()
        .expect("child: build the runtime under a low fd limit");

    let accepted = Arc::new(AtomicUsize::new(0));
    let echoed = Arc::new(AtomicUsize::new(0));
    let released = Arc::new(AtomicBool::new(false));
    let held: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));

    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("child: bind");
    let port = listener.local_addr().unwrap().port();

    // The accept loop: holds connections until released, then echoes them.
    {
        let (accepted, echoed, released, held) = (
            accepted.clone(),
            echoed.clone(),
            released.clone(),
            held.clone(),
        );
        rt.spawn(async move {
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(conn) => conn,
                    Err(e) => panic!("child: accept returned an error: {e}"),
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                if !released.load(Ordering::SeqCst) {
                    held.lock().unwrap().push(stream);
                    continue;
                }
                let echoed = echoed.clone();
                bulwark::spawn(async move {
                    let mut stream = stream;
                    let mut buf = [0u8; 64];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if stream.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                                echoed.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                });
            }
        });
    }
    say!("PORT {port}");

    let mut line = String::new();
    let n = std::io::stdin()
        .read_line(&mut line)
        .expect("child: read from the parent");
    assert!(
        n > 0 && line.trim() == "CONNECTED",
        "child: the parent said {line:?}"
    );

    // Accept runs until the fds run out, then backs off.
    wait_until(
        30,
        "child: accept to fail for want of fds (accept_backoffs > 0)",
        || rt.metrics().accept_backoffs > 0,
    );
    // Let the count settle: nothing more can be accepted.
    let mut last = accepted.load(Ordering::SeqCst);
    let settle_deadline = Instant::now() + Duration::from_secs(20);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = accepted.load(Ordering::SeqCst);
        if now == last {
            break;
        }
        assert!(
            Instant::now() < settle_deadline,
            "child: accepted count still moving after 20 s ({now})"
        );
        last = now;
    }
    assert!(
        last > 0 && last < CLIENTS,
        "child: accepted {last} of {CLIENTS} connections under a limit of {FD_LIMIT} fds"
    );

    // One second of being unable to accept.
    let backoffs_before = rt.metrics().accept_backoffs;
    let cpu_before = cpu_time();
    let wall = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let cpu = cpu_time() - cpu_before;
    let wall = wall.elapsed();
    let backoffs_after = rt.metrics().accept_backoffs;
    let accepted_after = accepted.load(Ordering::SeqCst);
    say!(
        "EXHAUSTED accepted={last} cpu={cpu:?} over {wall:?} accept_backoffs {backoffs_before}->{backoffs_after}"
    );
    assert_eq!(
        accepted_after, last,
        "child: accepted more connections while out of fds"
    );
    assert!(
        cpu < CPU_BOUND.mul_f64(wall.as_secs_f64()),
        "child: the runtime spent {cpu:?} of CPU in {wall:?} while unable to accept: \
         the accept loop spins"
    );
    assert!(
        backoffs_after > backoffs_before,
        "child: accept_backoffs stayed at {backoffs_before} for a second: accept stopped \
         retrying while fds were short"
    );

    // Give the fds back: the backlog and new clients are served.
    released.store(true, Ordering::SeqCst);
    let dropped = std::mem::take(&mut *held.lock().unwrap());
    let n_dropped = dropped.len();
    drop(dropped);
    say!("RELEASED dropped={n_dropped}");

    wait_until(30, "child: an echo round trip after fds came back", || {
        echoed.load(Ordering::SeqCst) >= 1
    });
    let accepted_end = accepted.load(Ordering::SeqCst);
    assert!(
        accepted_end > last,
        "child: accepted nothing more after fds came back"
    );
    say!("DONE accepted={accepted_end}");
}
