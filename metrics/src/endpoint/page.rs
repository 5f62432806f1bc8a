//! The endpoint's front page (`GET /`): the live counts and links to the
//! other routes, rendered on the server (no script), refreshed by the
//! browser every 5 s. The live task count sits in `<span
//! id="tasks-live">`, which tools read.

use crate::{Snapshot, StallReport};
use std::fmt::Write as _;

/// `&`, `<`, `>`, `"` and `'` as entities: kind names and task names are
/// the program's own text, but a page is no place to trust them.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn limit(n: usize) -> String {
    if n == usize::MAX {
        "none".to_string()
    } else {
        n.to_string()
    }
}

const HEAD: &str = r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="5">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bulwark runtime</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;max-width:60em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.bad{color:#a00;font-weight:bold}
</style></head><body>
<h1>bulwark runtime</h1>
<p><a href="/metrics">/metrics</a> (Prometheus) &middot; <a href="/tasks">/tasks</a> &middot;
<a href="/stalls">/stalls</a> &middot; <a href="/leaks">/leaks</a> &middot; <a href="/health">/health</a></p>
"#;

/// The page for `snapshot` (`None`: the runtime is gone) and the recent
/// `stalls`.
pub fn render(snapshot: Option<&Snapshot>, stalls: &[StallReport]) -> String {
    let mut p = String::with_capacity(8 * 1024);
    p.push_str(HEAD);
    let Some(s) = snapshot else {
        p.push_str("<p class=\"bad\">The runtime is not running.</p></body></html>\n");
        return p;
    };
    let _ = write!(
        p,
        "<h2>Tasks</h2>\n<table>\n\
         <tr><th>live</th><td><span id=\"tasks-live\">{}</span></td></tr>\n\
         <tr><th>admitted now / peak / ceiling</th><td><span id=\"tasks-admitted\">{}</span> / {} / {}</td></tr>\n\
         <tr><th>waiting for admission</th><td><span id=\"tasks-waiting\">{}</span></td></tr>\n\
         <tr><th>children waiting</th><td>{}</td></tr>\n\
         <tr><th>spawned / completed / panicked</th><td>{} / {} / {}</td></tr>\n\
         <tr><th>cancelled / past deadline / lost (cancelled)</th><td>{} / {} / {} ({})</td></tr>\n\
         <tr><th>rejected (at ceiling / shed)</th><td>{} ({} / {})</td></tr>\n\
         <tr><th>shedding</th><td{}><span id=\"shedding\">{}</span></td></tr>\n\
         </table>\n",
        s.tasks_live,
        s.tasks_admitted_live,
        s.tasks_admitted_peak,
        limit(s.max_tasks),
        s.tasks_waiting,
        s.children_waiting,
        s.tasks_spawned,
        s.tasks_completed,
        s.tasks_panicked,
        s.tasks_cancelled,
        s.tasks_deadline_exceeded,
        s.tasks_lost,
        s.tasks_lost_cancelled,
        s.tasks_rejected,
        s.rejected_at_ceiling,
        s.rejected_shedding,
        if s.shedding { " class=\"bad\"" } else { "" },
        if s.shedding { "yes" } else { "no" },
    );
    let _ = write!(
        p,
        "<h2>Workers</h2>\n<table>\n\
         <tr><th>worker threads (slots)</th><td>{} ({})</td></tr>\n\
         <tr><th>polls / steals / parks</th><td>{} / {} / {}</td></tr>\n\
         <tr><th>stalls / compensations</th><td><span id=\"stalls\">{}</span> / {}</td></tr>\n\
         <tr><th>blocking threads (idle) / queued</th><td>{} ({}) / {}</td></tr>\n\
         <tr><th>io registrations / timers</th><td>{} / {}</td></tr>\n\
         </table>\n",
        s.worker_threads,
        s.workers,
        s.polls,
        s.steals,
        s.parks,
        s.stalls,
        s.compensations,
        s.blocking_threads,
        s.blocking_threads_idle,
        s.blocking_queue_depth,
        s.io_registrations,
        s.timers_pending,
    );
    p.push_str(
        "<h2>Ledger</h2>\n<table>\n<tr><th>kind</th><th>live</th><th>budget</th><th>peak</th>\
         <th>waiting</th><th>admitted</th><th>refused</th></tr>\n",
    );
    for k in &s.kinds {
        let _ = writeln!(
            p,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&k.name),
            k.live,
            limit(k.budget),
            k.peak,
            k.waiting,
            k.admitted,
            k.refused
        );
    }
    let _ = writeln!(
        p,
        "</table>\n<p>Resources tracked: {}; orphans found: {}; held too long: {}.</p>",
        s.resources_tracked, s.resource_orphans, s.resource_long_holds
    );
    if !stalls.is_empty() {
        p.push_str(
            "<h2>Recent stalls</h2>\n<table>\n<tr><th>#</th><th>worker</th><th>task</th>\
             <th>spawned at</th><th>held for</th></tr>\n",
        );
        // The last ten, most recent first.
        for r in stalls.iter().rev().take(10) {
            let task = match (&r.task_name, r.task_id) {
                (Some(name), _) => escape(name),
                (None, Some(id)) => id.to_string(),
                (None, None) => "?".to_string(),
            };
            let at = r
                .location
                .map(|l| escape(&l.to_string()))
                .unwrap_or_default();
            let held = match r.total {
                Some(t) => format!("{t:?}"),
                None => format!("over {:?}, still running", r.reported_after),
            };
            let _ = writeln!(
                p,
                "<tr><td>{}</td><td>{}</td><td>{task}</td><td>{at}</td><td>{held}</td></tr>",
                r.seq, r.worker
            );
        }
        p.push_str("</table>\n");
    }
    p.push_str("</body></html>\n");
    p
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::KindSnapshot;
    use std::time::Duration;

    #[test]
    fn names_are_escaped_and_the_counts_are_there() {
        let s = Snapshot {
            tasks_live: 7,
            kinds: vec![KindSnapshot {
                name: "<script>alert('x')</script>".into(),
                budget: usize::MAX,
                ..KindSnapshot::default()
            }],
            ..Snapshot::default()
        };
        let stall = StallReport {
            seq: 1,
            worker: 0,
            task_id: Some(3),
            task_name: Some("a & b".into()),
            location: None,
            reported_after: Duration::from_millis(30),
            total: None,
        };
        let html = render(Some(&s), &[stall]);
        assert!(html.contains("<span id=\"tasks-live\">7</span>"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(html.contains("a &amp; b"));
        assert!(html.contains("still running"));
        assert!(html.contains("http-equiv=\"refresh\""));
        assert!(render(None, &[]).contains("not running"));
    }
}
