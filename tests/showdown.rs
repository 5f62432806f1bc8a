//! Runs `showdown --quick --scenario fanout` (the example binary that
//! `cargo test` builds) and checks `target/showdown/results.json`: every
//! field in every cell, the guard counters for bulwark, and that bulwark
//! serves more good requests than tokio-naive under the fan-out flood, with
//! a lower p99, compared within the one run.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// `target/<profile>/examples/showdown`, next to this test's `deps/`.
fn showdown_exe() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile = exe.parent()?.parent()?;
    let p = profile.join("examples").join("showdown");
    p.exists().then_some(p)
}

#[test]
fn showdown_quick_fanout() {
    // `cargo test` builds every example; if it is missing, that is a failure
    // of the build, not a reason to pass.
    let exe = showdown_exe()
        .expect("the showdown example next to this test's binary (cargo test builds examples)");
    let start = Instant::now();
    let mut child = Command::new(&exe)
        .args(["--quick", "--scenario", "fanout"])
        .spawn()
        .expect("run showdown");
    // Bounded: a hung harness fails the test instead of hanging it.
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for showdown") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("timed out after 180 s waiting for `showdown --quick --scenario fanout`");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "showdown failed: {status}");
    let target = exe.ancestors().nth(3).expect("target dir");
    let text = std::fs::read_to_string(target.join("showdown").join("results.json"))
        .expect("results.json");
    let cells: Vec<serde_json::Value> = serde_json::from_str(&text).expect("results.json parses");
    assert_eq!(
        cells.len(),
        4,
        "one cell per stack (bulwark-ceiling runs in the fanout scenario)"
    );
    for c in &cells {
        for field in [
            "scenario",
            "stack",
            "offered_rps",
            "goodput_rps",
            "p50_ms",
            "p99_ms",
            "p999_ms",
            "errors",
            "timeouts",
            "peak_rss_bytes",
            "peak_fds",
        ] {
            assert!(c.get(field).is_some(), "{field} missing in {c}");
        }
        assert_eq!(c["scenario"], "fanout");
        assert!(c["peak_rss_bytes"].as_u64().unwrap() > 0);
        assert!(c["peak_fds"].as_u64().unwrap() > 0);
    }
    let cell = |stack: &str| {
        cells
            .iter()
            .find(|c| c["stack"] == stack)
            .unwrap_or_else(|| panic!("no {stack} cell"))
    };
    let bulwark = cell("bulwark");
    let naive = cell("tokio-naive");
    cell("tokio-hardened");
    assert!(
        cell("bulwark-ceiling")["guards"].is_object(),
        "bulwark-ceiling reports its guards too"
    );
    // The bulwark server's metrics endpoint answered under the flood, and
    // its scheduling-delay histogram had samples.
    assert!(
        bulwark["endpoint"]["answered_in_ms"].as_f64().is_some(),
        "the endpoint read: {}",
        bulwark["endpoint"]
    );
    assert!(
        bulwark["sched_delay_p99_ms"]
            .as_f64()
            .is_some_and(|ms| ms > 0.0),
        "p99 scheduling delay from the endpoint: {}",
        bulwark["sched_delay_p99_ms"]
    );
    let guards = bulwark["guards"].as_object().expect("bulwark guards");
    for g in [
        "rejected",
        "deadline_exceeded",
        "shedding_transitions",
        "peak_live_tasks",
    ] {
        assert!(guards.contains_key(g), "guard {g} missing");
    }
    assert!(
        guards["rejected"].as_u64().unwrap() > 0,
        "the ceiling never bit"
    );
    // Goodput: bulwark must serve more good requests than tokio-naive, by
    // at least 10% (a margin for a noisy machine), or 95% of the offered
    // rate, whichever is less: no stack can serve more than the offered
    // rate, so when the flood costs tokio-naive little goodput in this run
    // (an optimized build on a fast machine, in a 2 s cell), bulwark must
    // serve nearly all of it, and its latency is the sharp check below.
    let g = |c: &serde_json::Value| c["goodput_rps"].as_f64().unwrap();
    let p99 = |c: &serde_json::Value| c["p99_ms"].as_f64().unwrap();
    let offered = naive["offered_rps"].as_f64().unwrap();
    let floor = (1.1 * g(naive)).min(0.95 * offered);
    assert!(
        g(bulwark) >= floor,
        "goodput: bulwark {} tokio-naive {} of {offered} offered (bulwark must reach {floor})",
        g(bulwark),
        g(naive)
    );
    assert!(
        p99(bulwark) < p99(naive),
        "p99: bulwark {} ms, tokio-naive {} ms",
        p99(bulwark),
        p99(naive)
    );
}
