//! tokio's own example programs, ported to bulwark by renaming alone.
//!
//! `tests/ported/original/` holds tokio's `examples/echo-tcp.rs`,
//! `chat.rs`, `proxy.rs`, `tinydb.rs`, `tinyhttp.rs`, `echo-udp.rs` and
//! `udp-client.rs` as tokio's repository has them (MIT, see
//! `tests/ported/LICENSE-tokio`); `tests/ported/` holds the ports, built as
//! the examples `ported-<name>` (`ported-tinyhttp` by the workspace member
//! in `tests/ported/tinyhttp/`, the others by this package). The first test
//! checks that a port differs from its original by nothing but `tokio::`
//! becoming `bulwark::`; the others run the ported programs as their users
//! would (a process, an address on the command line, udp-client's payload
//! on its stdin) and drive them over loopback, TCP or UDP.
//!
//! `cargo test --test ported` does not build the examples (`cargo test
//! --workspace` and `cargo build --workspace --examples` do): it runs what
//! `target/` holds.
//!
//! tokio's mini-redis is ported the same way, as a whole crate:
//! `tests/ported/mini-redis-original/` holds its files as its repository has
//! them (its manifest renamed `Cargo.toml.orig`, so cargo does not take it
//! for a package), and `tests/ported/mini-redis/` is the workspace member
//! `mini-redis`, whose own test suite runs on bulwark
//! (`cargo test -p mini-redis`). A test here checks that every `.rs`
//! file of the port is its original with `tokio::` renamed `bulwark::`, and
//! that both sides have the same files.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PORTS: [&str; 7] = [
    "echo-tcp",
    "chat",
    "proxy",
    "tinydb",
    "tinyhttp",
    "echo-udp",
    "udp-client",
];

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
        "{} (`cargo build --workspace --examples` builds it, as `cargo test --workspace` does \
         before it runs the tests; `cargo test --test ported` alone does not)",
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

/// Connects to the chat server at `addr` as `name`: the connection, and
/// what the server sends it.
fn chat_user(addr: SocketAddr, name: &str) -> (TcpStream, Lines) {
    let s = connect(addr);
    let mut lines = Lines::new(name, s.try_clone().unwrap());
    lines.line("Please enter your username:");
    (&s).write_all(format!("{name}\n").as_bytes()).unwrap();
    (s, lines)
}

#[test]
fn the_ported_chat_server_broadcasts_between_users() {
    let addr = free_addr();
    let _server = start("chat", &[addr.to_string()], addr);
    let (alice, mut alice_in) = chat_user(addr, "alice");
    let (bob, mut bob_in) = chat_user(addr, "bob");
    // The server answers nothing to a name: a user hears the others from
    // some moment after it reads the name, and whoever joins before that
    // is not announced to them. So Bob says "ping" until Alice hears one
    // (then both are in: Bob's lines are read only once he is), and each
    // wait for it is short; 10 s in all.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        (&bob).write_all(b"ping\n").unwrap();
        if alice_in.comes_within("bob: ping", Duration::from_millis(100)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alice heard no \"bob: ping\" within 10 s; she had {:?}",
            alice_in.seen
        );
    }

    let (carol, mut carol_in) = chat_user(addr, "carol");
    alice_in.line("carol has joined the chat");
    bob_in.line("carol has joined the chat");

    (&carol).write_all(b"hello all\n").unwrap();
    alice_in.line("carol: hello all");
    bob_in.line("carol: hello all");
    (&alice).write_all(b"hi carol\n").unwrap();
    bob_in.line("alice: hi carol");
    carol_in.line("alice: hi carol");

    carol.shutdown(Shutdown::Both).unwrap();
    alice_in.line("carol has left the chat");
    bob_in.line("carol has left the chat");
}

/// Sends `line` and reads one line back (10 s), without its newline.
fn ask(s: &mut TcpStream, r: &mut BufReader<TcpStream>, line: &str) -> String {
    s.write_all(format!("{line}\n").as_bytes())
        .unwrap_or_else(|e| panic!("sending {line:?}: {e}"));
    let mut back = String::new();
    match r.read_line(&mut back) {
        Ok(0) => panic!("connection closed waiting for the answer to {line:?}"),
        Ok(_) => back.trim_end_matches(['\r', '\n']).to_string(),
        Err(e) => panic!("waiting for the answer to {line:?}: {e}"),
    }
}

#[test]
fn the_ported_tinydb_answers_get_and_set_from_one_database_shared_by_clients() {
    let addr = free_addr();
    let _server = start("tinydb", &[addr.to_string()], addr);
    let mut a = connect(addr);
    let mut a_in = BufReader::new(a.try_clone().unwrap());
    let mut b = connect(addr);
    let mut b_in = BufReader::new(b.try_clone().unwrap());

    // The session in the example's doc comment, on one connection.
    assert_eq!(ask(&mut a, &mut a_in, "GET foo"), "foo = bar");
    assert_eq!(ask(&mut a, &mut a_in, "GET FOOBAR"), "error: no key FOOBAR");
    assert_eq!(
        ask(&mut a, &mut a_in, "SET FOOBAR my awesome string"),
        "set FOOBAR = `my awesome string`, previous: None"
    );
    assert_eq!(
        ask(&mut a, &mut a_in, "SET foo tokio"),
        "set foo = `tokio`, previous: Some(\"bar\")"
    );
    assert_eq!(ask(&mut a, &mut a_in, "GET foo"), "foo = tokio");

    // The other connection sees the same database, and writes to it.
    assert_eq!(
        ask(&mut b, &mut b_in, "GET FOOBAR"),
        "FOOBAR = my awesome string"
    );
    assert_eq!(
        ask(&mut b, &mut b_in, "SET foo bulwark"),
        "set foo = `bulwark`, previous: Some(\"tokio\")"
    );
    assert_eq!(ask(&mut a, &mut a_in, "GET foo"), "foo = bulwark");

    // Requests it refuses, and the connection goes on after each.
    assert_eq!(
        ask(&mut b, &mut b_in, "DEL foo"),
        "error: unknown command: DEL"
    );
    assert_eq!(
        ask(&mut b, &mut b_in, "GET"),
        "error: GET must be followed by a key"
    );
    assert_eq!(
        ask(&mut b, &mut b_in, "GET foo bar"),
        "error: GET's key must not be followed by anything"
    );
    assert_eq!(
        ask(&mut b, &mut b_in, "SET foo"),
        "error: SET needs a value"
    );
    assert_eq!(ask(&mut b, &mut b_in, "GET foo"), "foo = bulwark");
}

/// One HTTP/1.1 response: status line, headers (names lowercased), body.
struct HttpResponse {
    status: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response, its body by its `Content-Length` (10 s per read).
fn read_response(r: &mut BufReader<TcpStream>, what: &str) -> HttpResponse {
    let mut line = |part: &str| {
        let mut l = String::new();
        match r.read_line(&mut l) {
            Ok(0) => panic!("connection closed waiting for the {part} of {what}"),
            Ok(_) => l.trim_end_matches(['\r', '\n']).to_string(),
            Err(e) => panic!("waiting for the {part} of {what}: {e}"),
        }
    };
    let status = line("status line");
    let mut headers = Vec::new();
    loop {
        let l = line("headers");
        if l.is_empty() {
            break;
        }
        let (k, v) = l
            .split_once(':')
            .unwrap_or_else(|| panic!("{what}: a header line without ':': {l:?}"));
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .unwrap_or_else(|| panic!("{what} has no Content-Length: {headers:?}"))
        .1
        .parse()
        .expect("a numeric Content-Length");
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)
        .unwrap_or_else(|e| panic!("waiting for the {len}-byte body of {what}: {e}"));
    HttpResponse {
        status,
        headers,
        body: String::from_utf8(body).expect("a UTF-8 body"),
    }
}

#[test]
fn the_ported_tinyhttp_serves_plaintext_and_json_on_a_kept_alive_connection() {
    let addr = free_addr();
    let _server = start("tinyhttp", &[addr.to_string()], addr);
    let mut s = connect(addr);
    let mut r = BufReader::new(s.try_clone().unwrap());
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");

    s.write_all(get("/plaintext").as_bytes()).unwrap();
    let plain = read_response(&mut r, "GET /plaintext");
    assert_eq!(plain.status, "HTTP/1.1 200 OK");
    assert_eq!(plain.header("content-type"), Some("text/plain"));
    assert_eq!(plain.header("server"), Some("Example"));
    assert!(plain.header("date").is_some(), "{:?}", plain.headers);
    assert_eq!(plain.body, "Hello, World!");

    s.write_all(get("/json").as_bytes()).unwrap();
    let json = read_response(&mut r, "GET /json");
    assert_eq!(json.status, "HTTP/1.1 200 OK");
    assert_eq!(json.header("content-type"), Some("application/json"));
    let value: serde_json::Value = serde_json::from_str(&json.body)
        .unwrap_or_else(|e| panic!("the /json body {:?}: {e}", json.body));
    assert_eq!(value, serde_json::json!({ "message": "Hello, World!" }));

    // Three requests in one write: three answers, in order.
    let pipelined = [get("/json"), get("/nowhere"), get("/plaintext")].concat();
    s.write_all(pipelined.as_bytes()).unwrap();
    let first = read_response(&mut r, "the first pipelined request (/json)");
    assert_eq!(first.header("content-type"), Some("application/json"));
    let missing = read_response(&mut r, "the second pipelined request (/nowhere)");
    assert_eq!(missing.status, "HTTP/1.1 404 Not Found");
    assert_eq!(missing.body, "");
    let last = read_response(&mut r, "the third pipelined request (/plaintext)");
    assert_eq!(last.body, "Hello, World!");
}

/// What a ported example prints to its stdout, or sends a client, line by
/// line, read by a thread of its own (so the program never blocks on a full
/// pipe, and a wait can end on a deadline).
struct Lines {
    who: String,
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn new(who: &str, from: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(from).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            who: who.to_string(),
            rx,
            seen: Vec::new(),
        }
    }

    /// Whether a line equal to `want` comes within `wait` (others are
    /// passed over).
    fn comes_within(&mut self, want: &str, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) if line == want => return true,
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => return false,
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "{} reached its end waiting for {want:?}; it had {:?}",
                    self.who, self.seen
                ),
            }
        }
    }

    /// Waits (10 s) for a line equal to `want`, passing over others.
    fn line(&mut self, want: &str) {
        assert!(
            self.comes_within(want, Duration::from_secs(10)),
            "{} had no line {want:?} within 10 s; it had {:?}",
            self.who,
            self.seen
        );
    }

    /// The next line that starts with `prefix`, without it (10 s).
    fn expect(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_string();
                    }
                    self.seen.push(line);
                }
                Err(e) => panic!(
                    "{} printed no line starting {prefix:?} within 10 s ({e:?}); it printed {:?}",
                    self.who, self.seen
                ),
            }
        }
    }

    /// Everything else it prints, up to its end (10 s).
    fn rest(&mut self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => out.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return out,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "{} did not close its stdout within 10 s; it printed {out:?}",
                    self.who
                ),
            }
        }
    }
}

/// Starts `ported-<name>` with `args`, its stdout read as [`Lines`].
fn start_printing(name: &str, args: &[String], stdin: Stdio) -> (Program, Lines) {
    let mut child = Command::new(exe(name))
        .args(args)
        .env("RUST_LOG", "off")
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting ported-{name}: {e}"));
    let lines = Lines::new(
        &format!("ported-{name}"),
        child.stdout.take().expect("a piped stdout"),
    );
    (Program(child), lines)
}

/// A std UDP socket on loopback whose receives give up after 10 s.
fn udp_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("a loopback UDP socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Receives one datagram (10 s) into a buffer of 64 KiB.
fn recv_from(s: &UdpSocket, what: &str) -> (Vec<u8>, SocketAddr) {
    let mut buf = vec![0u8; 65_536];
    let (n, from) = s
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
    buf.truncate(n);
    (buf, from)
}

#[test]
fn the_ported_udp_echo_server_echoes_datagrams_to_each_sender() {
    // Port 0: the program prints the address it got.
    let (_server, mut out) =
        start_printing("echo-udp", &["127.0.0.1:0".to_string()], Stdio::null());
    let addr: SocketAddr = out
        .expect("Listening on: ")
        .parse()
        .expect("the address it listens on");
    let clients: Vec<UdpSocket> = (0..3).map(|_| udp_socket()).collect();
    for round in 0..20 {
        for (i, c) in clients.iter().enumerate() {
            let msg = format!("client {i} round {round} ").repeat(round + 1);
            c.send_to(msg.as_bytes(), addr).expect("send_to");
            let (back, from) = recv_from(c, &format!("the echo of client {i} round {round}"));
            assert_eq!(from, addr, "the echo comes from the server's address");
            assert_eq!(back, msg.as_bytes());
        }
    }
    // Its buffer is 1024 bytes: a longer datagram comes back cut to it.
    let long: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    clients[0].send_to(&long, addr).expect("send_to");
    let (back, _) = recv_from(&clients[0], "the echo of a 3000-byte datagram");
    assert_eq!(back, &long[..1024]);
    // It said what it did, one line per datagram.
    let client0 = clients[0].local_addr().unwrap();
    assert_eq!(
        out.expect("Echoed "),
        format!("{0}/{0} bytes to {client0}", "client 0 round 0 ".len())
    );
}

/// Runs `ported-udp-client` against `server`, `payload` on its stdin and
/// closed; returns the process, and its stdout.
fn udp_client(server: SocketAddr, payload: &[u8]) -> (Program, Lines) {
    let (mut client, out) = start_printing("udp-client", &[server.to_string()], Stdio::piped());
    let mut stdin = client.0.stdin.take().expect("a piped stdin");
    stdin
        .write_all(payload)
        .expect("writing udp-client's stdin");
    drop(stdin); // EOF: it sends what it read.
    (client, out)
}

/// Waits (10 s) for the program to exit; asserts it succeeded.
fn exits_successfully(p: &mut Program, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = p.0.try_wait().expect("try_wait") {
            assert!(status.success(), "ported-{name} exited with {status}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ported-{name} did not exit within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_ported_udp_client_sends_its_stdin_as_one_datagram_and_prints_the_reply() {
    let server = udp_socket();
    let addr = server.local_addr().unwrap();
    // Several lines and more than one read of stdin's pipe: one datagram.
    let payload: String = (0..400)
        .map(|i| format!("line {i} of the client's stdin\n"))
        .collect();
    assert!(payload.len() > 8192);
    let (mut client, mut out) = udp_client(addr, payload.as_bytes());

    let (got, from) = recv_from(&server, "udp-client's datagram");
    assert_eq!(got.len(), payload.len(), "all of stdin, in one datagram");
    assert_eq!(got, payload.as_bytes());
    assert!(from.ip().is_loopback(), "from {from}");
    let reply = "a reply\nin two lines";
    server.send_to(reply.as_bytes(), from).expect("send_to");

    assert_eq!(out.expect("Received "), format!("{} bytes:", reply.len()));
    assert_eq!(out.rest(), ["a reply", "in two lines"]);
    exits_successfully(&mut client, "udp-client");
}

#[test]
fn the_ported_udp_client_gets_its_stdin_back_from_the_ported_udp_echo_server() {
    let (_server, mut server_out) =
        start_printing("echo-udp", &["127.0.0.1:0".to_string()], Stdio::null());
    let addr: SocketAddr = server_out
        .expect("Listening on: ")
        .parse()
        .expect("the address it listens on");
    let (mut client, mut out) = udp_client(addr, b"ping through bulwark");
    assert_eq!(out.expect("Received "), "20 bytes:");
    assert_eq!(out.rest(), ["ping through bulwark"]);
    exits_successfully(&mut client, "udp-client");
}
