//! tokio's own example programs, ported to bulwark by renaming alone.
//!
//! `tests/ported/original/` holds tokio's `examples/echo-tcp.rs`,
//! `chat.rs` and `proxy.rs` as tokio's repository has them (MIT, see
//! `tests/ported/LICENSE-tokio`); `tests/ported/` holds the ports, built as
//! the examples `ported-echo-tcp`, `ported-chat` and `ported-proxy`. The
//! first test checks that a port differs from its original by nothing but
//! `tokio::` becoming `bulwark::`; the others run the ported programs as
//! their users would (a process, an address on the command line) and drive
//! them over loopback.
//!
//! tokio's mini-redis is ported the same way, as a whole crate:
//! `tests/ported/mini-redis-original/` holds its files as its repository has
//! them (its manifest renamed `Cargo.toml.orig`, so cargo does not take it
//! for a package), and `tests/ported/mini-redis/` is the workspace member
//! `mini-redis`, whose own test suite runs on bulwark
//! (`cargo test -p mini-redis`). The last test here checks that every `.rs`
//! file of the port is its original with `tokio::` renamed `bulwark::`, and
//! that both sides have the same files.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PORTS: [&str; 3] = ["echo-tcp", "chat", "proxy"];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/ported")
}

#[test]
fn each_port_differs_from_tokios_original_by_renames_only() {
    for name in PORTS {
        let original = std::fs::read_to_string(dir().join(format!("original/{name}.rs")))
            .unwrap_or_else(|e| panic!("original {name}.rs: {e}"));
        let ported = std::fs::read_to_string(dir().join(format!("{name}.rs")))
            .unwrap_or_else(|e| panic!("ported {name}.rs: {e}"));
        assert!(
            original.contains("tokio::"),
            "{name}: the original uses tokio"
        );
        assert!(
            !ported.contains("tokio::"),
            "{name}: the port still names tokio::"
        );
        assert_eq!(
            original.replace("tokio::", "bulwark::"),
            ported,
            "{name}: the port differs from the original by more than `tokio::` -> `bulwark::`"
        );
    }
}

/// The `.rs` files under `root`, as paths relative to it, sorted.
fn rust_files(root: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path.strip_prefix(root).expect("under root").to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[test]
fn the_mini_redis_port_differs_from_tokios_original_by_renames_only() {
    let original_root = dir().join("mini-redis-original");
    let port_root = dir().join("mini-redis");
    let originals = rust_files(&original_root);
    assert_eq!(
        originals,
        rust_files(&port_root),
        "the port and the original have different sets of .rs files"
    );
    // src/ (with bin/, clients/, cmd/), tests/ and examples/: the walk saw
    // all of them (an empty walk on both sides would pass the check above).
    assert_eq!(
        originals.len(),
        28,
        "mini-redis has 28 .rs files: {originals:?}"
    );
    let mut naming_tokio = 0;
    for file in &originals {
        let original = std::fs::read_to_string(original_root.join(file))
            .unwrap_or_else(|e| panic!("original {}: {e}", file.display()));
        let ported = std::fs::read_to_string(port_root.join(file))
            .unwrap_or_else(|e| panic!("ported {}: {e}", file.display()));
        if original.contains("tokio::") {
            naming_tokio += 1;
        }
        assert!(
            !ported.contains("tokio::"),
            "{}: the port still names tokio::",
            file.display()
        );
        assert_eq!(
            original.replace("tokio::", "bulwark::"),
            ported,
            "{}: the port differs from the original by more than `tokio::` -> `bulwark::`",
            file.display()
        );
    }
    assert_eq!(naming_tokio, 18, "18 of mini-redis's files name tokio::");
}

/// A ported example's process, killed when dropped.
struct Program(Child);

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `target/<profile>/examples/ported-<name>`, next to this test's `deps/`.
fn exe(name: &str) -> PathBuf {
    let me = std::env::current_exe().expect("current_exe");
    let profile = me
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let p = profile.join("examples").join(format!("ported-{name}"));
    assert!(
        p.exists(),
        "{} (cargo test builds the examples; its absence is a build failure)",
        p.display()
    );
    p
}

/// A loopback address with a port free a moment ago.
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// Starts `ported-<name>` with `args` and waits until it accepts
/// connections on `addr` (10 s at most).
fn start(name: &str, args: &[String], addr: SocketAddr) -> Program {
    let child = Command::new(exe(name))
        .args(args)
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting ported-{name}: {e}"));
    let program = Program(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return program;
        }
        assert!(
            Instant::now() < deadline,
            "ported-{name} did not accept connections on {addr} within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Writes `msg` and reads the same number of bytes back.
fn round_trip(s: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).expect("write");
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back)
        .unwrap_or_else(|e| panic!("waiting for {} bytes back: {e}", msg.len()));
    back
}

#[test]
fn the_ported_echo_server_echoes_to_concurrent_clients() {
    let addr = free_addr();
    let _server = start("echo-tcp", &[addr.to_string()], addr);
    let clients: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = connect(addr);
                for round in 0..20 {
                    let msg = format!("client {i} round {round}\n").repeat(50);
                    assert_eq!(round_trip(&mut s, msg.as_bytes()), msg.as_bytes());
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("an echo client");
    }
}

#[test]
fn the_ported_proxy_carries_bytes_to_the_ported_echo_server_and_back() {
    let echo = free_addr();
    let _server = start("echo-tcp", &[echo.to_string()], echo);
    let proxy = free_addr();
    let _proxy = start("proxy", &[proxy.to_string(), echo.to_string()], proxy);
    let mut s = connect(proxy);
    for round in 0..10 {
        let msg = format!("through the proxy, round {round}\n").repeat(100);
        assert_eq!(round_trip(&mut s, msg.as_bytes()), msg.as_bytes());
    }
}

/// Reads lines from a chat connection until one equals `want` (10 s).
fn expect_line(r: &mut BufReader<TcpStream>, want: &str) {
    let mut seen = Vec::new();
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) => panic!("connection closed waiting for {want:?}; saw {seen:?}"),
            Ok(_) => {
                let line = line.trim_end().to_string();
                if line == want {
                    return;
                }
                seen.push(line);
            }
            Err(e) => panic!("waiting for {want:?} (saw {seen:?}): {e}"),
        }
    }
}

#[test]
fn the_ported_chat_server_broadcasts_between_users() {
    let addr = free_addr();
    let _server = start("chat", &[addr.to_string()], addr);
    let alice = connect(addr);
    let mut alice_in = BufReader::new(alice.try_clone().unwrap());
    let mut alice_out = alice;
    expect_line(&mut alice_in, "Please enter your username:");
    alice_out.write_all(b"alice\n").unwrap();

    let bob = connect(addr);
    let mut bob_in = BufReader::new(bob.try_clone().unwrap());
    let mut bob_out = bob;
    expect_line(&mut bob_in, "Please enter your username:");
    bob_out.write_all(b"bob\n").unwrap();
    expect_line(&mut alice_in, "bob has joined the chat");

    bob_out.write_all(b"hello alice\n").unwrap();
    expect_line(&mut alice_in, "bob: hello alice");
    alice_out.write_all(b"hi bob\n").unwrap();
    expect_line(&mut bob_in, "alice: hi bob");

    drop(bob_out);
    drop(bob_in);
    expect_line(&mut alice_in, "bob has left the chat");
}
