//! Issue 12, judged by real tools: `promtool check metrics` accepts the
//! endpoint's Prometheus text exposition with no complaint (and the
//! OpenMetrics form is well formed); a real `prometheus` server scrapes the
//! endpoint and answers queries on its gauge and its poll-time histogram;
//! headless `chromium` renders the HTML page with the runtime's live task
//! count in `#tasks-live`.
//!
//! Each test skips (with a message) when its tool is not on PATH, unless
//! `CI` is set: `.ci/run` installs Debian's `prometheus` and `chromium`
//! packages, so under CI a missing tool is a failure. Every child process is
//! killed when its guard drops, panic or not; every wait has a bound.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bulwark::runtime::Runtime;
use bulwark::task::{self, JoinHandle};
use common::tools::{
    chromium_dump_dom, element_text, families_missing_help_or_type, http_get, openmetrics_problems,
    promtool_check_metrics, result_values, sample_value, tool, Prometheus,
};
use common::{bounded, builder};
use tokio::sync::oneshot;

/// The Accept header Prometheus 2.x sends when it scrapes: OpenMetrics
/// first. The endpoint answers it with OpenMetrics, which is what the
/// scraping test's server parses.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,\
    application/openmetrics-text;version=0.0.1;q=0.75,\
    text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// A runtime with two workers and the metrics endpoint on a free port of
/// 127.0.0.1, and the endpoint's address.
fn runtime_with_endpoint() -> (Runtime, SocketAddr) {
    let rt = builder(2)
        .metrics_endpoint(([127, 0, 0, 1], 0).into())
        .build()
        .expect("build the runtime with the metrics endpoint");
    let addr = rt
        .metrics_endpoint_addr()
        .expect("metrics_endpoint_addr is Some when the endpoint is on");
    (rt, addr)
}

/// Tasks that each wait, idle, on their own channel (a waker is kept, so the
/// runtime does not take them for lost) until released.
struct Held {
    release: Vec<oneshot::Sender<()>>,
    joins: Vec<JoinHandle<()>>,
}

impl Held {
    fn spawn(rt: &Runtime, n: usize) -> Held {
        let (release, joins) = (0..n)
            .map(|_| {
                let (tx, rx) = oneshot::channel::<()>();
                let join = rt.spawn(async move {
                    let _ = rx.await;
                });
                (tx, join)
            })
            .unzip();
        Held { release, joins }
    }

    /// Lets them finish and waits (bounded) until they have.
    fn finish(self, rt: &Runtime) {
        drop(self.release);
        rt.block_on(bounded(10, "the held tasks to finish", async {
            for join in self.joins {
                join.await.expect("a held task finished");
            }
        }));
    }
}

/// Tasks that poll every couple of milliseconds until stopped, so the poll
/// histogram keeps moving (a rate over it is defined).
struct Tickers {
    stop: Arc<AtomicBool>,
    joins: Vec<JoinHandle<u64>>,
}

impl Tickers {
    fn spawn(rt: &Runtime, n: usize) -> Tickers {
        let stop = Arc::new(AtomicBool::new(false));
        let joins = (0..n)
            .map(|_| {
                let stop = Arc::clone(&stop);
                rt.spawn(async move {
                    let mut polls = 0;
                    while !stop.load(Ordering::Relaxed) {
                        bulwark::time::sleep(Duration::from_millis(2)).await;
                        task::yield_now().await;
                        polls += 2;
                    }
                    polls
                })
            })
            .collect();
        Tickers { stop, joins }
    }

    fn finish(self, rt: &Runtime) {
        self.stop.store(true, Ordering::Relaxed);
        rt.block_on(bounded(10, "the ticking tasks to stop", async {
            for join in self.joins {
                assert!(join.await.expect("a ticking task finished") > 0);
            }
        }));
    }
}

#[test]
fn promtool_accepts_the_metrics_exposition() {
    let Some(promtool) = tool("promtool", "promtool_accepts_the_metrics_exposition") else {
        return;
    };
    let (rt, addr) = runtime_with_endpoint();

    // Work behind every family: tasks that yielded, slept and finished, a
    // blocking call, and some tasks still live.
    let done: Vec<JoinHandle<u64>> = (0..20u64)
        .map(|i| {
            rt.spawn(async move {
                for _ in 0..3 {
                    task::yield_now().await;
                }
                bulwark::time::sleep(Duration::from_millis(i % 3)).await;
                i
            })
        })
        .collect();
    rt.block_on(bounded(10, "the finishing tasks", async {
        for join in done {
            join.await.expect("a finishing task finished");
        }
        task::spawn_blocking(|| thread::sleep(Duration::from_millis(1)))
            .await
            .expect("the blocking call returned");
    }));
    let held = Held::spawn(&rt, 5);

    let text = http_get(addr, "HTTP/1.1", "/metrics", &[], 10);
    assert_eq!(text.status, 200, "GET /metrics: {text:?}");
    let content_type = text.header("content-type").unwrap_or("");
    assert!(
        content_type.starts_with("text/plain") && content_type.contains("version=0.0.4"),
        "GET /metrics answered Content-Type {content_type:?}, not text/plain; version=0.0.4"
    );
    let body = &text.body;
    for line in [
        "# TYPE bulwark_tasks_live gauge",
        "# TYPE bulwark_poll_duration_seconds histogram",
        "bulwark_poll_duration_seconds_bucket{le=\"+Inf\"}",
        "bulwark_poll_duration_seconds_sum",
        "bulwark_poll_duration_seconds_count",
    ] {
        assert!(
            body.lines().any(|l| l.starts_with(line)),
            "no line starting {line:?} in GET /metrics:\n{body}"
        );
    }
    let missing = families_missing_help_or_type(body);
    assert!(
        missing.is_empty(),
        "GET /metrics lacks HELP or TYPE:\n  {}\n{body}",
        missing.join("\n  ")
    );
    assert_eq!(
        sample_value(body, "bulwark_tasks_live"),
        Some(rt.metrics().tasks_live as f64),
        "bulwark_tasks_live in GET /metrics against Runtime::metrics:\n{body}"
    );
    let took = promtool_check_metrics(&promtool, body, "GET /metrics");
    eprintln!("promtool check metrics: clean in {took:.1?}");

    // promtool reads only the text format (an OpenMetrics counter's
    // `_total` sample looks like an untyped family to it), so the
    // OpenMetrics form is checked for its structure here; the scraping
    // test has a real Prometheus parse it.
    let om = http_get(
        addr,
        "HTTP/1.1",
        "/metrics",
        &[("Accept", PROMETHEUS_ACCEPT)],
        10,
    );
    assert_eq!(om.status, 200, "GET /metrics (OpenMetrics): {om:?}");
    let content_type = om.header("content-type").unwrap_or("");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "GET /metrics with Prometheus's Accept answered Content-Type {content_type:?}"
    );
    let problems = openmetrics_problems(&om.body);
    assert!(
        problems.is_empty(),
        "the OpenMetrics form is malformed:\n  {}\n{}",
        problems.join("\n  "),
        om.body
    );
    assert!(
        om.body.contains("# TYPE bulwark_tasks_live gauge")
            && om
                .body
                .contains("bulwark_poll_duration_seconds_bucket{le=\"+Inf\"}"),
        "the OpenMetrics form lacks bulwark_tasks_live or the poll histogram:\n{}",
        om.body
    );

    held.finish(&rt);
}

#[test]
fn a_real_prometheus_scrapes_the_endpoint() {
    let Some(binary) = tool("prometheus", "a_real_prometheus_scrapes_the_endpoint") else {
        return;
    };
    let (rt, addr) = runtime_with_endpoint();
    let held = Held::spawn(&rt, 3);
    let tickers = Tickers::spawn(&rt, 2);

    let start = Instant::now();
    let mut prometheus = Prometheus::start(&binary, addr);
    eprintln!(
        "prometheus ready on {} in {:.1?}",
        prometheus.addr,
        start.elapsed()
    );

    // Its first scrape: Prometheus applies new targets on a 5 s tick, so
    // this takes about 5 s from its start.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            prometheus.running(),
            "prometheus exited; its log:\n{}",
            prometheus.log()
        );
        let targets = prometheus.api("/api/v1/targets");
        let target = &targets["activeTargets"][0];
        if target["health"] == "up" && target["lastError"] == "" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "waited 30 s for prometheus to scrape http://{addr}/metrics with health up; \
             its targets: {targets}\nits log:\n{}",
            prometheus.log()
        );
        thread::sleep(Duration::from_millis(200));
    }
    eprintln!("first scrape up {:.1?} after start", start.elapsed());

    let live = prometheus.query("bulwark_tasks_live");
    let values = result_values(&live);
    assert_eq!(
        values,
        [rt.metrics().tasks_live as f64],
        "prometheus's bulwark_tasks_live against Runtime::metrics: {live:?}"
    );

    // A rate needs two scrapes of the buckets, and polls between them.
    let p99 = "histogram_quantile(0.99, rate(bulwark_poll_duration_seconds_bucket[30s]))";
    let deadline = Instant::now() + Duration::from_secs(30);
    let quantiles = loop {
        let result = prometheus.query(p99);
        let values = result_values(&result);
        if values.iter().any(|v| v.is_finite()) {
            break values;
        }
        assert!(
            Instant::now() < deadline,
            "waited 30 s for `{p99}` to give a number; its last result: {result:?}\n\
             prometheus's log:\n{}",
            prometheus.log()
        );
        thread::sleep(Duration::from_millis(250));
    };
    assert!(
        quantiles.iter().all(|q| q.is_nan() || *q >= 0.0),
        "a negative poll-time quantile: {quantiles:?}"
    );
    eprintln!(
        "p99 poll time {quantiles:?} s, {:.1?} after start",
        start.elapsed()
    );

    // Every scrape so far parsed (Prometheus asks for OpenMetrics first).
    let targets = prometheus.api("/api/v1/targets");
    assert_eq!(
        targets["activeTargets"][0]["lastError"], "",
        "the last scrape failed: {targets}"
    );

    drop(prometheus);
    tickers.finish(&rt);
    held.finish(&rt);
}

#[test]
fn chromium_renders_the_live_count() {
    let Some(chromium) = tool("chromium", "chromium_renders_the_live_count") else {
        return;
    };
    let (rt, addr) = runtime_with_endpoint();
    // Only these tasks, idle throughout: the count cannot move while
    // chromium loads the page.
    const HELD: u64 = 7;
    let held = Held::spawn(&rt, HELD as usize);
    assert_eq!(rt.metrics().tasks_live, HELD, "live tasks before chromium");

    let url = format!("http://{addr}/");
    let run = chromium_dump_dom(&chromium, &url, 60);
    eprintln!("chromium --dump-dom took {:.1?}", run.took);
    assert_eq!(rt.metrics().tasks_live, HELD, "live tasks after chromium");

    let dom = &run.stdout;
    let text = element_text(dom, "tasks-live").unwrap_or_else(|| {
        panic!("no element with id=\"tasks-live\" in the DOM chromium rendered from {url}:\n{dom}")
    });
    let shown: u64 = text
        .parse()
        .unwrap_or_else(|_| panic!("#tasks-live reads {text:?}, not a number; the DOM:\n{dom}"));
    assert_eq!(
        shown, HELD,
        "#tasks-live against the runtime's live tasks; the DOM:\n{dom}"
    );

    held.finish(&rt);
}
