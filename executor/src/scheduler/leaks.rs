//! Leaked resource handles: the scan that finds, among the live tracked
//! handles in the books (`bulwark::resource`), the orphans (their holder
//! task has finished) and the ones held past their kind's `max_hold`, and
//! reports each once.
//!
//! Part of `scheduler`: whether a holder still lives is read from the task
//! registry. The watchdog runs the scan every [`SCAN_EVERY`], and
//! `Handle::leaks` runs it on demand; a runtime with no tracked handle pays
//! for neither more than a look at an empty map.

use super::Shared;
use bulwark_metrics::{LeakKind, LeakReport, REPORTED_LONG, REPORTED_ORPHAN};
use std::collections::HashSet;
use std::time::Duration;

/// How often the watchdog looks for leaked handles.
pub(crate) const SCAN_EVERY: Duration = Duration::from_millis(100);

/// Lists the orphaned and held-too-long handles, and reports (once each,
/// as a `tracing` warning with target `bulwark::resource`) those not
/// reported before.
pub(crate) fn scan(shared: &Shared) -> Vec<LeakReport> {
    let books = shared.admit.books();
    let holdings = books.holdings();
    if holdings.is_empty() {
        return Vec::new();
    }
    let mut live = HashSet::new();
    shared.registry.for_each(|task| {
        live.insert(task.header().id.as_u64());
    });
    let mut out = Vec::new();
    holdings.for_each(|h| {
        let report = |why: LeakKind| LeakReport::of(h, why);
        if let Some(holder) = h.holder() {
            if !live.contains(&holder) {
                if h.mark_reported(REPORTED_ORPHAN) {
                    holdings.count_orphan();
                    tracing::warn!(
                        target: "bulwark::resource",
                        kind = h.kind(),
                        holder_task = holder,
                        age_ms = h.age().as_millis() as u64,
                        acquired_at = %h.site(),
                        "a resource handle outlived the task that held it (an orphan)",
                    );
                }
                out.push(report(LeakKind::Orphan));
            }
        }
        if let Some(max) = holdings.max_hold(h.kind()) {
            if h.age() > max {
                if h.mark_reported(REPORTED_LONG) {
                    holdings.count_long_hold();
                    tracing::warn!(
                        target: "bulwark::resource",
                        kind = h.kind(),
                        holder_task = h.holder(),
                        age_ms = h.age().as_millis() as u64,
                        max_hold_ms = max.as_millis() as u64,
                        acquired_at = %h.site(),
                        "a resource handle has been held longer than its kind's max_hold",
                    );
                }
                out.push(report(LeakKind::HeldTooLong));
            }
        }
    });
    out
}
