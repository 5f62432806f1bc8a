//! What the endpoint answers: one function from a parsed request and the
//! books to a whole response (status, type, body), and the response's
//! bytes. No IO here; every read of the runtime goes through [`Books`].
//!
//! | path       | answer |
//! |------------|--------|
//! | `/`        | an HTML page with the live counts and links (`page`) |
//! | `/metrics` | Prometheus text, or OpenMetrics if `Accept` asks ([`crate::exposition`]) |
//! | `/tasks`   | JSON: live tasks, oldest first, `?limit=` (default [`TASKS_LIMIT_DEFAULT`], at most [`TASKS_LIMIT_MAX`]) and `?state=` |
//! | `/stalls`  | JSON: the watchdog's recent stalls |
//! | `/leaks`   | JSON: orphaned and held-too-long resource handles |
//! | `/health`  | `200 ok`, or `503` and why (shedding, at the task ceiling, runtime gone) |
//!
//! Anything else is 404; a method other than GET or HEAD on one of these is
//! 405. While the runtime is gone (dropped, or never set as the source),
//! the routes that read it answer 503.

use super::page;
use super::request::Request;
use crate::exposition::{self, Format};
use crate::views::{LeakView, StallView, TaskView, NAME_MAX};
use crate::{Books, TaskState};
use serde::Serialize;
use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Tasks `/tasks` lists without a `limit`.
pub const TASKS_LIMIT_DEFAULT: usize = 1_000;

/// The most tasks `/tasks` lists in one answer (`limit` above is 400): at
/// about 250 bytes a task, 2.5 MB.
pub const TASKS_LIMIT_MAX: usize = 10_000;

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";
const HTML: &str = "text/html; charset=utf-8";

/// A whole response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body (also sized for `HEAD`, which does not send it).
    pub body: Vec<u8>,
}

impl Response {
    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        let mut body = body.into();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        Response {
            status,
            content_type: TEXT,
            body: body.into_bytes(),
        }
    }

    fn json(value: &impl Serialize) -> Response {
        match serde_json::to_vec(value) {
            Ok(body) => Response {
                status: 200,
                content_type: JSON,
                body,
            },
            Err(e) => Response::text(500, format!("could not write JSON: {e}")),
        }
    }

    fn gone() -> Response {
        Response::text(503, "the runtime is not running")
    }

    /// The status line, headers and (unless `head_only`) body. Every
    /// response closes its connection (`Connection: close`): one request
    /// per connection keeps the endpoint's state per connection small.
    pub fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        if self.status == 405 {
            head.push_str("Allow: GET, HEAD\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// The reason phrase of the statuses the endpoint uses.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

const PATHS: [&str; 6] = ["/", "/metrics", "/tasks", "/stalls", "/leaks", "/health"];

/// The response to `req`.
///
/// Never panics: a panic while reading the runtime (in its `Source`) is
/// caught and answered with 500, so that the endpoint thread lives on.
pub fn respond(books: &Books, req: &Request) -> Response {
    if !PATHS.contains(&req.path.as_str()) {
        return Response::text(
            404,
            format!("no such page: {}; try /", printable(&req.path)),
        );
    }
    if req.method != "GET" && req.method != "HEAD" {
        return Response::text(405, format!("{} takes GET or HEAD", req.path));
    }
    catch_unwind(AssertUnwindSafe(|| route(books, req)))
        .unwrap_or_else(|_| Response::text(500, "reading the runtime panicked"))
}

/// At most 200 characters of `s`, for echoing client input in a body.
fn printable(s: &str) -> Cow<'_, str> {
    if s.len() <= 200 && s.chars().all(|c| !c.is_control()) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.chars().take(200).filter(|c| !c.is_control()).collect())
}

fn route(books: &Books, req: &Request) -> Response {
    match req.path.as_str() {
        "/" => index(books),
        "/metrics" => metrics(books, req),
        "/tasks" => tasks(books, req),
        "/stalls" => stalls(books),
        "/leaks" => leaks(books),
        _ => health(books),
    }
}

fn index(books: &Books) -> Response {
    let snapshot = books.snapshot();
    let status = if snapshot.is_some() { 200 } else { 503 };
    Response {
        status,
        content_type: HTML,
        body: page::render(snapshot.as_ref(), &books.stalls()).into_bytes(),
    }
}

fn metrics(books: &Books, req: &Request) -> Response {
    let Some(snapshot) = books.snapshot() else {
        return Response::gone();
    };
    let format = Format::negotiate(req.accept.as_deref());
    Response {
        status: 200,
        content_type: format.content_type(),
        body: exposition::render(&snapshot, format).into_bytes(),
    }
}

/// What `/tasks` was asked for.
#[derive(Debug, PartialEq, Eq)]
struct TasksQuery {
    limit: usize,
    state: Option<TaskState>,
}

fn tasks_query(req: &Request) -> Result<TasksQuery, String> {
    let mut q = TasksQuery {
        limit: TASKS_LIMIT_DEFAULT,
        state: None,
    };
    for (k, v) in req.query_pairs() {
        match &*k {
            "limit" => {
                q.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n <= TASKS_LIMIT_MAX)
                    .ok_or_else(|| {
                        format!(
                            "limit must be a whole number from 0 to {TASKS_LIMIT_MAX}, not {:?}",
                            printable(&v)
                        )
                    })?;
            }
            "state" => {
                q.state = Some(TaskState::from_name(&v).ok_or_else(|| {
                    let names: Vec<&str> = TaskState::ALL.iter().map(|s| s.name()).collect();
                    format!(
                        "state must be one of {}, not {:?}",
                        names.join(", "),
                        printable(&v)
                    )
                })?);
            }
            // Other keys are left alone (a cache-buster, say).
            _ => {}
        }
    }
    Ok(q)
}

#[derive(Serialize)]
struct TasksPage<'a> {
    /// Tasks matching the query (the state, if given), listed or not.
    total: usize,
    /// Tasks listed here.
    listed: usize,
    /// True if `total > listed`: the page was cut at `limit`.
    truncated: bool,
    limit: usize,
    state: Option<&'static str>,
    /// Oldest first.
    tasks: Vec<TaskView<'a>>,
}

fn tasks(books: &Books, req: &Request) -> Response {
    let q = match tasks_query(req) {
        Ok(q) => q,
        Err(msg) => return Response::text(400, msg),
    };
    if !books.has_source() {
        return Response::gone();
    }
    let mut tasks = books.list_tasks();
    if let Some(state) = q.state {
        tasks.retain(|t| t.state == state);
    }
    let total = tasks.len();
    // Oldest first (by age, then id); only the page is sorted.
    let order = |t: &crate::TaskInfo| (std::cmp::Reverse(t.age), t.id);
    if tasks.len() > q.limit {
        if q.limit > 0 {
            tasks.select_nth_unstable_by_key(q.limit - 1, order);
        }
        tasks.truncate(q.limit);
    }
    tasks.sort_unstable_by_key(order);
    Response::json(&TasksPage {
        total,
        listed: tasks.len(),
        truncated: total > tasks.len(),
        limit: q.limit,
        state: q.state.map(TaskState::name),
        tasks: tasks.iter().map(|t| TaskView::of(t, NAME_MAX)).collect(),
    })
}

#[derive(Serialize)]
struct StallsPage<'a> {
    /// Stalls seen since the runtime was built (kept or not).
    seen: u64,
    /// Oldest first; at most [`STALLS_KEPT`](crate::STALLS_KEPT).
    stalls: Vec<StallView<'a>>,
}

fn stalls(books: &Books) -> Response {
    let list = books.stalls();
    Response::json(&StallsPage {
        seen: books.stalls_seen(),
        stalls: list.iter().map(StallView::of).collect(),
    })
}

#[derive(Serialize)]
struct LeaksPage<'a> {
    count: usize,
    leaks: Vec<LeakView<'a>>,
}

fn leaks(books: &Books) -> Response {
    if !books.has_source() {
        return Response::gone();
    }
    let list = books.list_leaks();
    Response::json(&LeaksPage {
        count: list.len(),
        leaks: list.iter().map(LeakView::of).collect(),
    })
}

/// Readiness: 200 unless the runtime is gone, sheds, or is at its ceiling.
fn health(books: &Books) -> Response {
    if !books.has_source() {
        return Response::gone();
    }
    if books.is_shedding() {
        return Response::text(
            503,
            "shedding: adaptive admission is refusing new work (scheduling delay over its target)",
        );
    }
    let tasks = books.tasks();
    let (live, budget) = (tasks.live(), tasks.budget());
    if live >= budget {
        return Response::text(
            503,
            format!("at the task ceiling: {live} of {budget} tasks live"),
        );
    }
    Response::text(200, "ok")
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::{LeakReport, Snapshot, Source, TaskInfo};
    use std::sync::Arc;
    use std::time::Duration;

    struct Fake {
        tasks: usize,
        panic: bool,
    }

    impl Source for Fake {
        fn snapshot(&self) -> Snapshot {
            assert!(!self.panic, "a source that panics");
            Snapshot {
                tasks_live: self.tasks as u64,
                ..Snapshot::default()
            }
        }

        fn tasks(&self) -> Vec<TaskInfo> {
            (1..=self.tasks as u64)
                .map(|id| TaskInfo {
                    id,
                    name: (id == 2).then(|| "second".to_string()),
                    location: "src/main.rs:1:1".into(),
                    state: if id % 2 == 0 {
                        TaskState::Idle
                    } else {
                        TaskState::Running
                    },
                    age: Duration::from_secs(100 - id),
                    idle_for: None,
                    polls: id,
                    busy: None,
                    deadline: None,
                    resources: 0,
                })
                .collect()
        }

        fn leaks(&self) -> Vec<LeakReport> {
            Vec::new()
        }
    }

    fn get(target: &str) -> Request {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (target.to_string(), None),
        };
        Request {
            method: "GET".into(),
            path,
            query,
            accept: None,
            version: 1,
        }
    }

    fn books_with(tasks: usize) -> (Books, Arc<dyn Source>) {
        let books = Books::new(10, false);
        let source: Arc<dyn Source> = Arc::new(Fake {
            tasks,
            panic: false,
        });
        books.set_source(Arc::downgrade(&source));
        (books, source)
    }

    fn json(r: &Response) -> serde_json::Value {
        assert_eq!(r.content_type, JSON);
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn unknown_paths_are_404_and_other_methods_405() {
        let (books, _s) = books_with(1);
        assert_eq!(respond(&books, &get("/nope")).status, 404);
        let mut post = get("/metrics");
        post.method = "POST".into();
        let r = respond(&books, &post);
        assert_eq!(r.status, 405);
        assert!(String::from_utf8(r.to_bytes(false))
            .unwrap()
            .contains("\r\nAllow: GET, HEAD\r\n"));
        post.path = "/elsewhere".into();
        assert_eq!(respond(&books, &post).status, 404);
    }

    #[test]
    fn tasks_are_listed_oldest_first_cut_at_the_limit_and_filtered() {
        let (books, _s) = books_with(30);
        let page = json(&respond(&books, &get("/tasks?limit=5")));
        assert_eq!(page["total"], 30);
        assert_eq!(page["listed"], 5);
        assert_eq!(page["truncated"], true);
        let ids: Vec<u64> = page["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids, [1, 2, 3, 4, 5], "the oldest");
        assert_eq!(page["tasks"][1]["name"], "second");
        assert_eq!(page["tasks"][0]["state"], "running");

        let idle = json(&respond(&books, &get("/tasks?state=idle")));
        assert_eq!(idle["total"], 15);
        assert_eq!(idle["truncated"], false);
        assert!(idle["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] == "idle"));
        let none = json(&respond(&books, &get("/tasks?limit=0")));
        assert_eq!(
            (none["total"].as_u64(), none["listed"].as_u64()),
            (Some(30), Some(0))
        );
    }

    #[test]
    fn a_bad_limit_or_state_is_400_and_says_why() {
        let (books, _s) = books_with(3);
        for (target, says) in [
            ("/tasks?limit=x", "limit must be"),
            ("/tasks?limit=-1", "limit must be"),
            ("/tasks?limit=10001", "0 to 10000"),
            (
                "/tasks?state=sleeping",
                "waiting_admission, idle, scheduled",
            ),
        ] {
            let r = respond(&books, &get(target));
            assert_eq!(r.status, 400, "{target}");
            let body = String::from_utf8(r.body).unwrap();
            assert!(body.contains(says), "{target}: {body}");
        }
    }

    #[test]
    fn health_says_why_it_is_not_ready() {
        let (books, source) = books_with(0);
        assert_eq!(respond(&books, &get("/health")).body, b"ok\n");
        books.set_shedding(true);
        let r = respond(&books, &get("/health"));
        assert_eq!(r.status, 503);
        assert!(String::from_utf8(r.body).unwrap().starts_with("shedding"));
        books.set_shedding(false);
        for _ in 0..10 {
            assert!(books.tasks().try_acquire());
        }
        let r = respond(&books, &get("/health"));
        assert_eq!(r.status, 503);
        assert_eq!(r.body, b"at the task ceiling: 10 of 10 tasks live\n");
        drop(source);
        let r = respond(&books, &get("/health"));
        assert_eq!(
            (r.status, r.body),
            (503, b"the runtime is not running\n".to_vec())
        );
    }

    #[test]
    fn a_gone_runtime_is_503_but_stalls_still_read() {
        let books = Books::default();
        for path in ["/", "/metrics", "/tasks", "/leaks", "/health"] {
            assert_eq!(respond(&books, &get(path)).status, 503, "{path}");
        }
        let page = json(&respond(&books, &get("/stalls")));
        assert_eq!(page["seen"], 0);
    }

    #[test]
    fn a_panicking_source_is_500_not_a_dead_thread() {
        let books = Books::default();
        let source: Arc<dyn Source> = Arc::new(Fake {
            tasks: 1,
            panic: true,
        });
        books.set_source(Arc::downgrade(&source));
        assert_eq!(respond(&books, &get("/metrics")).status, 500);
        assert_eq!(respond(&books, &get("/tasks")).status, 200);
    }

    #[test]
    fn metrics_follow_accept_and_head_sends_no_body() {
        let (books, _s) = books_with(4);
        let mut req = get("/metrics");
        let r = respond(&books, &req);
        assert_eq!(r.content_type, exposition::PROMETHEUS_CONTENT_TYPE);
        req.accept = Some("application/openmetrics-text;version=1.0.0".into());
        let r = respond(&books, &req);
        assert_eq!(r.content_type, exposition::OPENMETRICS_CONTENT_TYPE);
        assert!(r.body.ends_with(b"# EOF\n"));
        let head = r.to_bytes(true);
        let text = String::from_utf8(head).unwrap();
        assert!(text.ends_with("\r\n\r\n"));
        assert!(text.contains(&format!("Content-Length: {}\r\n", r.body.len())));
    }

    #[test]
    fn the_page_has_the_live_count() {
        let (books, _s) = books_with(12);
        let r = respond(&books, &get("/"));
        assert_eq!((r.status, r.content_type), (200, HTML));
        let html = String::from_utf8(r.body).unwrap();
        assert!(html.contains("<span id=\"tasks-live\">12</span>"), "{html}");
    }
}
