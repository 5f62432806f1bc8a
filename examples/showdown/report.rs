//! The table, `target/showdown/results.json` and `target/showdown/showdown.svg`.

use std::path::PathBuf;

use plotters::prelude::*;

use crate::{Cell, SCENARIOS, STACKS};

/// One line on stderr per cell.
pub fn progress(c: &Cell) -> String {
    format!(
        "showdown: {:<9} {:<14} goodput {:>7.1}/{:.0} rps  p99 {:>8.1} ms  errors {}  timeouts {}  rss {:.1} MB  fds {}{}",
        c.scenario,
        c.stack,
        c.goodput_rps,
        c.offered_rps,
        c.p99_ms,
        c.errors,
        c.timeouts,
        c.peak_rss_bytes as f64 / 1e6,
        c.peak_fds,
        if c.server_exited { "  (server exited)" } else { "" }
    )
}

/// The table on stdout.
pub fn table(cells: &[Cell]) {
    println!(
        "| scenario | stack | goodput (rps) | p50 ms | p99 ms | p999 ms | errors | timeouts | peak RSS MB | peak fds | p99 scheduling delay ms (endpoint) | guards (rejected / task deadlines / request deadlines / shed transitions / peak tasks / stalls / compensations / lost tasks cancelled) |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for c in cells {
        let guards = c
            .guards
            .as_ref()
            .map(|g| {
                format!(
                    "{} / {} / {} / {} / {} / {} / {} / {}",
                    g["rejected"],
                    g["deadline_exceeded"],
                    g["request_deadlines_exceeded"],
                    g["shedding_transitions"],
                    g["peak_live_tasks"],
                    g["stalls"],
                    g["compensations"],
                    g["lost_cancelled"]
                )
            })
            .unwrap_or_default();
        let delay = match (&c.endpoint, c.sched_delay_p99_ms) {
            (None, _) => String::new(),
            (Some(Err(e)), _) => format!("endpoint failed: {e}"),
            (Some(Ok(_)), None) => "none timed".to_string(),
            (Some(Ok(_)), Some(ms)) => format!("{ms:.2}"),
        };
        println!(
            "| {} | {} | {:.0} / {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {:.1} | {} | {} | {}{} |",
            c.scenario,
            c.stack,
            c.goodput_rps,
            c.offered_rps,
            c.p50_ms,
            c.p99_ms,
            c.p999_ms,
            c.errors,
            c.timeouts,
            c.peak_rss_bytes as f64 / 1e6,
            c.peak_fds,
            delay,
            guards,
            if c.server_exited {
                " server exited"
            } else {
                ""
            }
        );
    }
}

fn out_dir() -> PathBuf {
    // target/ of the workspace: the example's binary is in target/<profile>/examples/.
    let dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.ancestors().nth(3).map(|d| d.join("showdown")))
        .unwrap_or_else(|| PathBuf::from("target/showdown"));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Writes results.json and showdown.svg.
pub fn write(cells: &[Cell]) {
    let dir = out_dir();
    let json: Vec<serde_json::Value> = cells
        .iter()
        .map(|c| {
            let mut v = serde_json::json!({
                "scenario": c.scenario,
                "stack": c.stack,
                "secs": c.secs,
                "offered_rps": c.offered_rps,
                "goodput_rps": c.goodput_rps,
                "p50_ms": c.p50_ms,
                "p99_ms": c.p99_ms,
                "p999_ms": c.p999_ms,
                "errors": c.errors,
                "timeouts": c.timeouts,
                "peak_rss_bytes": c.peak_rss_bytes,
                "peak_fds": c.peak_fds,
                "hostile_sent": c.hostile_sent,
                "hostile_answered": c.hostile_answered,
                "hostile_ok": c.hostile_ok,
                "server_exited": c.server_exited,
            });
            if c.stack.starts_with("bulwark") {
                v["guards"] = c.guards.clone().unwrap_or_else(|| serde_json::json!({}));
                v["sched_delay_p99_ms"] = serde_json::json!(c.sched_delay_p99_ms);
                v["endpoint"] = match &c.endpoint {
                    Some(Ok(ms)) => serde_json::json!({ "answered_in_ms": ms }),
                    Some(Err(e)) => serde_json::json!({ "error": e }),
                    None => serde_json::json!(null),
                };
            }
            v
        })
        .collect();
    let path = dir.join("results.json");
    let text = serde_json::to_string_pretty(&json).expect("json");
    match std::fs::write(&path, text) {
        Ok(()) => eprintln!("showdown: wrote {}", path.display()),
        Err(e) => eprintln!("showdown: {}: {e}", path.display()),
    }
    let svg = dir.join("showdown.svg");
    match chart(cells, &svg) {
        Ok(()) => eprintln!("showdown: wrote {}", svg.display()),
        Err(e) => eprintln!("showdown: {}: {e}", svg.display()),
    }
}

const COLORS: [RGBColor; 4] = [
    RGBColor(214, 96, 77),
    RGBColor(244, 165, 130),
    RGBColor(67, 147, 195),
    RGBColor(146, 197, 222),
];

/// A panel's title and what it draws of a cell.
type Metric = (&'static str, fn(&Cell) -> f64);

/// Goodput and p99 per scenario and stack, as grouped bars.
fn chart(cells: &[Cell], path: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let scenarios: Vec<&str> = SCENARIOS
        .iter()
        .copied()
        .filter(|s| cells.iter().any(|c| c.scenario == *s))
        .collect();
    let root = SVGBackend::new(path, (1000, 720)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((2, 1));
    let metrics: [Metric; 2] = [
        ("good goodput (2xx/s; offered 1,000/s)", |c| c.goodput_rps),
        ("good p99 latency (ms; failures count 2,000)", |c| c.p99_ms),
    ];
    let n = scenarios.len().max(1);
    for (panel, (title, get)) in panels.iter().zip(metrics) {
        let top = cells.iter().map(get).fold(1.0f64, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..(n * 5) as f64, 0f64..top)?;
        chart.configure_mesh().disable_x_mesh().x_labels(0).draw()?;
        for (si, s) in scenarios.iter().enumerate() {
            for (ki, k) in STACKS.iter().enumerate() {
                if let Some(c) = cells.iter().find(|c| c.scenario == *s && c.stack == *k) {
                    let x0 = (si * 5 + ki) as f64 + 0.5;
                    chart.draw_series(std::iter::once(Rectangle::new(
                        [(x0, 0.0), (x0 + 0.9, get(c))],
                        COLORS[ki].filled(),
                    )))?;
                }
            }
            let x = (si * 5) as f64 + 2.5;
            chart.draw_series(std::iter::once(Text::new(
                s.to_string(),
                (x - 0.6, -top * 0.04),
                ("sans-serif", 14),
            )))?;
        }
        for (ki, k) in STACKS.iter().enumerate() {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(0.0, 0.0), (0.0, 0.0)],
                    COLORS[ki].filled(),
                )))?
                .label(*k)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], COLORS[ki].filled())
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
