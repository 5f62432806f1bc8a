//! Real tools driven against the metrics endpoint (`promtool`, `prometheus`,
//! `chromium`): finding one on PATH (a test skips without it, unless `CI` is
//! set), child processes killed with their process group when dropped, a
//! bounded run that captures what a tool printed, temporary directories,
//! HTTP GETs over a plain `std` `TcpStream`, and the checks each tool's
//! verdict needs.
//!
//! Every wait here has a bound and says what it waited for when it runs out.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use std::{env, fs};

use serde_json::Value;

/// Whether this is a CI run (the `CI` environment variable is set). CI
/// installs every tool (`.ci/run`), so there a missing tool fails the test
/// instead of skipping it.
pub fn under_ci() -> bool {
    env::var_os("CI").is_some()
}

/// The Debian package that gives `tool`, for the messages.
fn package_of(tool: &str) -> &str {
    match tool {
        "promtool" | "prometheus" => "prometheus",
        other => other,
    }
}

/// `name` found on PATH. When it is missing: `None` after printing that
/// `test` is skipped, or, under CI, a test failure.
pub fn tool(name: &str, test: &str) -> Option<PathBuf> {
    let found = env::var_os("PATH").and_then(|paths| {
        env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| is_executable(path))
    });
    let package = package_of(name);
    match found {
        Some(path) => Some(path),
        None if under_ci() => panic!(
            "{name} is not on PATH and CI is set: .ci/run installs it \
             (Debian package {package}), so {test} cannot skip"
        ),
        None => {
            // Straight to stderr, past the test harness's capture, so the
            // skip shows in a plain `cargo test`.
            let _ = writeln!(
                io::stderr(),
                "SKIPPED {test}: {name} is not on PATH (Debian package {package}; \
                 with CI set a missing tool is a failure)"
            );
            None
        }
    }
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A directory under the system temp dir, removed with what is in it when
/// dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new empty directory whose name has `label`, this process's id and
    /// a counter.
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = env::temp_dir().join(format!("bulwark-{label}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("create the temp dir {}: {e}", path.display()));
        TempDir(path)
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A child process started in its own process group. Dropping it kills the
/// whole group (SIGKILL) and reaps the child, so nothing a tool started
/// (chromium's renderers, say) outlives the test, panic or not. It also gets
/// SIGKILL if the thread that started it dies first (`PR_SET_PDEATHSIG`), so
/// a test process killed from outside leaves no server behind.
pub struct KillOnDrop {
    child: Child,
    what: String,
}

impl KillOnDrop {
    /// Starts `cmd` as `what` (named in messages).
    pub fn spawn(cmd: &mut Command, what: &str) -> KillOnDrop {
        cmd.process_group(0);
        // SAFETY: the closure runs in the forked child before exec and only
        // calls prctl, which is async-signal-safe; it touches no memory of
        // the parent's that another thread could hold locked.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {what} ({cmd:?}): {e}"));
        KillOnDrop {
            child,
            what: what.to_string(),
        }
    }

    /// Its exit status if it has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|e| panic!("wait for {}: {e}", self.what))
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let group = self.child.id() as libc::pid_t;
        // SAFETY: kill has no memory-safety preconditions. The group id is
        // the child's pid (process_group(0)); the child is not reaped yet
        // or its group still has members, so the id names no one else.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a finished tool run printed.
pub struct Run {
    /// How it exited.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// How long it ran.
    pub took: Duration,
}

impl Run {
    /// Its exit status and everything it printed, for a failure message.
    pub fn describe(&self) -> String {
        format!(
            "{} after {:.1?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.took, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` as `what` with `stdin` as its input and its output captured
/// (in files, so a tool that leaves a helper holding its pipes cannot stall
/// the read), and waits at most `secs` seconds for it to exit. Past that the
/// test fails saying what it waited for, with what the tool printed so far.
/// Whatever the tool left running in its process group is killed either way.
pub fn run_bounded(cmd: &mut Command, stdin: Stdio, secs: u64, what: &str) -> Run {
    let dir = TempDir::new("run");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let out = fs::File::create(&out_path).expect("create the stdout capture file");
    let err = fs::File::create(&err_path).expect("create the stderr capture file");
    cmd.stdin(stdin).stdout(out).stderr(err);
    let start = Instant::now();
    let mut child = KillOnDrop::spawn(cmd, what);
    let deadline = start + Duration::from_secs(secs);
    let status = loop {
        if let Some(status) = child.try_wait() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let took = start.elapsed();
    drop(child);
    let stdout = String::from_utf8_lossy(&fs::read(&out_path).unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&fs::read(&err_path).unwrap_or_default()).into_owned();
    match status {
        Some(status) => Run {
            status,
            stdout,
            stderr,
            took,
        },
        None => panic!(
            "timed out after {secs} s waiting for {what} to exit (killed it)\n\
             --- stdout so far ---\n{stdout}\n--- stderr so far ---\n{stderr}"
        ),
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0 and
/// released). Another process can take it in between; callers that start a
/// server on it retry with another when it is taken.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0 to find a free port")
        .port()
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The header fields, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (chunked transfer coding undone), as text.
    pub body: String,
}

impl Response {
    /// The first header field called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// GETs `target` (path and query) from `addr` on one connection, with the
/// request line in `version` (`"HTTP/1.0"` or `"HTTP/1.1"`),
/// `Connection: close` and the `extra` header fields, and reads the whole
/// answer (by Content-Length, chunked, or up to the close) within `secs`
/// seconds.
pub fn try_http_get(
    addr: SocketAddr,
    version: &str,
    target: &str,
    extra: &[(&str, &str)],
    secs: u64,
) -> io::Result<Response> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(secs))?;
    stream.set_write_timeout(Some(Duration::from_secs(secs)))?;
    let mut request = format!("GET {target} {version}\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in extra {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;

    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(response) = parse_response(&buf, false)? {
            return Ok(response);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no whole answer within {secs} s ({} bytes so far: {:?})",
                    buf.len(),
                    String::from_utf8_lossy(&buf)
                ),
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut chunk) {
            Ok(0) => {
                return parse_response(&buf, true)?.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::UnexpectedEof, "closed before the answer")
                })
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                // Loop: the deadline check above reports it.
            }
            Err(e) => return Err(e),
        }
    }
}

/// [`try_http_get`], failing the test on an error.
pub fn http_get(
    addr: SocketAddr,
    version: &str,
    target: &str,
    extra: &[(&str, &str)],
    secs: u64,
) -> Response {
    try_http_get(addr, version, target, extra, secs)
        .unwrap_or_else(|e| panic!("GET http://{addr}{target}: {e}"))
}

/// The answer in `buf` if it is whole: `Ok(None)` while more is to come;
/// `eof` says the peer closed, which ends a body without a length.
fn parse_response(buf: &[u8], eof: bool) -> io::Result<Option<Response>> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if eof {
            Err(bad(format!(
                "closed inside the header: {:?}",
                String::from_utf8_lossy(buf)
            )))
        } else {
            Ok(None)
        };
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let field = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let raw = &buf[head_end + 4..];
    let body = if field("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        match dechunk(raw).map_err(bad)? {
            Some(body) => body,
            None if eof => return Err(bad("closed inside a chunked body".into())),
            None => return Ok(None),
        }
    } else if let Some(len) = field("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| bad(format!("bad Content-Length {len:?}")))?;
        if raw.len() < len {
            return if eof {
                Err(bad(format!(
                    "closed after {} of {len} body bytes",
                    raw.len()
                )))
            } else {
                Ok(None)
            };
        }
        raw[..len].to_vec()
    } else if eof {
        raw.to_vec()
    } else {
        return Ok(None);
    };
    Ok(Some(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }))
}

/// A chunked body decoded, or `None` if its last chunk has not come yet.
fn dechunk(mut raw: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_line = String::from_utf8_lossy(&raw[..line_end]);
        let size_hex = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size line {size_line:?}"))?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(Some(body));
        }
        if raw.len() < size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

/// `s` percent-encoded for a URL query value (everything but unreserved
/// characters).
pub fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Runs `promtool check metrics` on the exposition in `text` (written to a
/// file in a temp dir, given on stdin) and fails the test on any complaint:
/// a non-zero exit (1 for a parse error, 3 for lint problems) or any line it
/// prints (it prints a line per lint problem on stderr, and nothing for a
/// clean exposition). Returns how long it ran.
pub fn promtool_check_metrics(promtool: &Path, text: &str, what: &str) -> Duration {
    let dir = TempDir::new("promtool");
    let file = dir.path().join("metrics.prom");
    fs::write(&file, text).expect("write the exposition to a temp file");
    let input = fs::File::open(&file).expect("open the exposition file");
    let run = run_bounded(
        Command::new(promtool).args(["check", "metrics"]),
        Stdio::from(input),
        30,
        "promtool check metrics",
    );
    let complaints: Vec<&str> = run
        .stdout
        .lines()
        .chain(run.stderr.lines())
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(
        run.status.success() && complaints.is_empty(),
        "promtool check metrics complained about {what}:\n  {}\n(exit: {})\n--- the exposition ---\n{text}",
        complaints.join("\n  "),
        run.status,
    );
    run.took
}

/// The families an exposition declares with `# TYPE`, and their types.
fn declared_types(text: &str) -> HashMap<String, String> {
    let mut types = HashMap::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name)) = (words.next(), words.next(), words.next()) {
            types.insert(name.to_string(), words.next().unwrap_or("").to_string());
        }
    }
    types
}

/// The metric family a sample named `name` belongs to, given the declared
/// families (a histogram's `_bucket`, `_sum` and `_count`, a counter's
/// `_total` and `_created`, an info's `_info`), or `name` if none.
fn family_of<'a>(name: &'a str, declared: &HashMap<String, String>) -> &'a str {
    if declared.contains_key(name) {
        return name;
    }
    for suffix in ["_bucket", "_sum", "_count", "_total", "_created", "_info"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if declared.contains_key(base) {
                return base;
            }
        }
    }
    name
}

/// The name in a sample line (`name{labels} value` or `name value`).
fn sample_name(line: &str) -> &str {
    line.split(['{', ' ']).next().unwrap_or("")
}

/// What an exposition (text format or OpenMetrics) lacks: families with a
/// `# TYPE` and no `# HELP`, and samples whose family has no `# TYPE`.
pub fn families_missing_help_or_type(text: &str) -> Vec<String> {
    let types = declared_types(text);
    let helps: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP "))
        .filter_map(|rest| rest.split(' ').next())
        .collect();
    let mut missing = BTreeSet::new();
    for name in types.keys() {
        if !helps.contains(name.as_str()) {
            missing.insert(format!("family {name}: no HELP"));
        }
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let name = sample_name(line);
        if !types.contains_key(family_of(name, &types)) {
            missing.insert(format!("sample {name}: its family has no TYPE"));
        }
    }
    missing.into_iter().collect()
}

/// The value of the sample line `name` (exactly, no labels) in an
/// exposition.
pub fn sample_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some(name))
            .then(|| words.next()?.parse().ok())
            .flatten()
    })
}

/// What is wrong with `text` as an OpenMetrics 1.0 exposition, judged by its
/// structure: it ends with the line `# EOF` (and has it once), has no empty
/// line, every comment line is `# HELP`, `# TYPE` or `# UNIT`, every family
/// has HELP and TYPE, and a counter's samples are `_total` or `_created`.
/// Empty if nothing.
pub fn openmetrics_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if text.strip_suffix('\n').unwrap_or(text).lines().last() != Some("# EOF") {
        problems.push("the last line is not `# EOF`".to_string());
    }
    let eofs = text.lines().filter(|l| *l == "# EOF").count();
    if eofs != 1 {
        problems.push(format!("`# EOF` appears {eofs} times"));
    }
    let types = declared_types(text);
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.is_empty() {
            problems.push(format!("line {n}: empty"));
        } else if line.starts_with('#') {
            let keyword = line.split(' ').nth(1).unwrap_or("");
            if !line.starts_with("# ") || !matches!(keyword, "HELP" | "TYPE" | "UNIT" | "EOF") {
                problems.push(format!(
                    "line {n}: a comment that is not HELP, TYPE or UNIT: {line:?}"
                ));
            }
        } else {
            let name = sample_name(line);
            let family = family_of(name, &types);
            if types.get(family).is_some_and(|t| t == "counter")
                && name != format!("{family}_total")
                && name != format!("{family}_created")
            {
                problems.push(format!(
                    "line {n}: counter sample {name} is not {family}_total"
                ));
            }
        }
    }
    problems.extend(families_missing_help_or_type(text));
    problems
}

/// A Prometheus server started for one test, on its own port, config file
/// and TSDB directory. Dropping it kills it (and its process group), then
/// removes its directory.
pub struct Prometheus {
    child: KillOnDrop,
    /// Where its HTTP API listens.
    pub addr: SocketAddr,
    log: PathBuf,
    _dir: TempDir,
}

impl Prometheus {
    /// Starts `binary` scraping `http://{target}/metrics` every second, and
    /// waits (at most 20 s) until its API says it is ready. A port taken
    /// between [`free_port`] and the server's bind is retried with another.
    pub fn start(binary: &Path, target: SocketAddr) -> Prometheus {
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let dir = TempDir::new("prometheus");
            let config = dir.path().join("prometheus.yml");
            fs::write(
                &config,
                format!(
                    "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                     scrape_configs:\n  - job_name: bulwark\n    metrics_path: /metrics\n    \
                     static_configs:\n      - targets: ['{target}']\n"
                ),
            )
            .expect("write the Prometheus config");
            let log = dir.path().join("prometheus.log");
            let log_file = fs::File::create(&log).expect("create the Prometheus log");
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
            let mut child = KillOnDrop::spawn(
                Command::new(binary)
                    .arg(format!("--config.file={}", config.display()))
                    .arg(format!(
                        "--storage.tsdb.path={}",
                        dir.path().join("data").display()
                    ))
                    .arg(format!("--web.listen-address={addr}"))
                    .stdin(Stdio::null())
                    .stdout(log_file.try_clone().expect("clone the log file handle"))
                    .stderr(log_file),
                "prometheus",
            );
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(status) = child.try_wait() {
                    last_log = fs::read_to_string(&log).unwrap_or_default();
                    if last_log.contains("address already in use") {
                        break; // another attempt on another port
                    }
                    panic!(
                        "prometheus exited ({status}) before it was ready; its log:\n{last_log}"
                    );
                }
                if let Ok(r) = try_http_get(addr, "HTTP/1.0", "/-/ready", &[], 2) {
                    if r.status == 200 {
                        return Prometheus {
                            child,
                            addr,
                            log,
                            _dir: dir,
                        };
                    }
                }
                if Instant::now() >= deadline {
                    panic!(
                        "waited 20 s for prometheus on {addr} to answer 200 on /-/ready; its log:\n{}",
                        fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("prometheus found its port taken three times; its last log:\n{last_log}");
    }

    /// Its log so far (what it printed), for a failure message.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().is_none()
    }

    /// GETs the API path `target` and returns its `data`, failing the test
    /// unless the answer is 200 with `"status": "success"`.
    pub fn api(&self, target: &str) -> Value {
        let r = http_get(self.addr, "HTTP/1.0", target, &[], 10);
        let json: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| {
            panic!(
                "prometheus {target} answered {} with no JSON ({e}): {}",
                r.status, r.body
            )
        });
        assert!(
            r.status == 200 && json["status"] == "success",
            "prometheus {target} answered {}: {json}",
            r.status
        );
        json["data"].clone()
    }

    /// The result vector of the instant query `expr` (evaluated now).
    pub fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api(&format!("/api/v1/query?query={}", query_escape(expr)));
        assert_eq!(data["resultType"], "vector", "query {expr}: {data}");
        data["result"].as_array().cloned().unwrap_or_default()
    }
}

/// The values of a query's result vector, as numbers (Prometheus sends each
/// as `[time, "value"]`; NaN and ±Inf come as `"NaN"`, `"+Inf"`, `"-Inf"`).
pub fn result_values(result: &[Value]) -> Vec<f64> {
    result
        .iter()
        .filter_map(|series| series["value"][1].as_str())
        .map(|v| match v {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or(f64::NAN),
        })
        .collect()
}

/// What `chromium` renders from `url`: the DOM (`--dump-dom`) after the page
/// loaded and its scripts had 3 s of virtual time (`--virtual-time-budget`:
/// a page that fills its numbers in with a `fetch` or a timer shows them;
/// chromium runs the clock fast while nothing is loading, so a static page
/// costs no wait). Headless chromium as root: no sandbox, no GPU, a fresh
/// profile in a temp dir; killed after `secs` seconds.
pub fn chromium_dump_dom(chromium: &Path, url: &str, secs: u64) -> Run {
    let profile = TempDir::new("chromium");
    let run = run_bounded(
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-extensions",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--virtual-time-budget=3000")
            .arg("--dump-dom")
            .arg(url)
            // Its crash reporter and caches stay inside the temp dir too.
            .env("HOME", profile.path()),
        Stdio::null(),
        secs,
        "chromium --headless --dump-dom",
    );
    assert!(
        run.status.success() && !run.stdout.trim().is_empty(),
        "chromium did not dump the DOM of {url}: {}",
        run.describe()
    );
    run
}

/// The text inside the element with `id="{id}"` in a serialized DOM (tags
/// inside it left out, whitespace trimmed), or `None` if there is no such
/// element. Chromium serializes attributes with double quotes.
pub fn element_text(dom: &str, id: &str) -> Option<String> {
    let attr = format!("id=\"{id}\"");
    let at = dom.find(&attr)?;
    let open = dom[..at].rfind('<')?;
    let tag: String = dom[open + 1..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let content_start = at + dom[at..].find('>')? + 1;
    let close = format!("</{tag}>");
    let content_end = content_start + dom[content_start..].find(&close)?;
    let mut text = String::new();
    let mut in_tag = false;
    for c in dom[content_start..content_end].chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    Some(text.trim().to_string())
}
