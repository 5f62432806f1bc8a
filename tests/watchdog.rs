//! The poll-time watchdog: a poll that blocks its worker is reported within
//! twice the threshold, naming the task and where it was spawned, and again
//! with its total when it returns; nothing is reported with the watchdog off
//! or for polls under the threshold. (That its thread ends with the
//! runtime is `watchdog_thread.rs`, a process of its own, since it counts
//! threads.)

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use bulwark::runtime::Watchdog;
use common::{builder, wait_until, within};

/// The threshold. A report comes within twice it, which is real time by
/// nature: the watchdog's thread samples every quarter of the threshold,
/// and 500 ms leaves room for that thread to be descheduled for a few
/// hundred ms on a loaded machine without a late report.
const THRESHOLD: Duration = Duration::from_millis(500);

#[test]
fn a_blocked_worker_is_reported_naming_the_task_and_then_its_total() {
    within(60, "a stall report", || {
        let mut b = builder(2);
        b.watchdog(Watchdog::new(THRESHOLD));
        let rt = b.build().expect("runtime");
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let blocker = bulwark::task::Builder::new()
            .name("blocker")
            .spawn_on(
                async move {
                    started_tx.send(bulwark::task::id()).unwrap();
                    // Blocks its worker until the test has read the first
                    // report (bounded, so it ends even if the test fails).
                    let start = Instant::now();
                    let _ = release_rx.recv_timeout(Duration::from_secs(30));
                    start.elapsed()
                },
                rt.handle(),
            )
            .expect("spawn the blocker");
        let id = started_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the blocker to start");
        // Short polls around it are never reported.
        let quick: Vec<_> = (0..100)
            .map(|_| rt.spawn(async { bulwark::task::yield_now().await }))
            .collect();
        wait_until(5, "the watchdog to report the blocker", || {
            !rt.handle().stalls().is_empty()
        });
        let report = rt.handle().stalls()[0].clone();
        assert_eq!(report.task_id, Some(id.as_u64()), "{report:?}");
        assert_eq!(report.task_name.as_deref(), Some("blocker"));
        assert!(
            report
                .location
                .is_some_and(|l| l.file().ends_with("watchdog.rs")),
            "the spawn site: {report:?}"
        );
        assert!(
            report.reported_after >= THRESHOLD && report.reported_after <= 2 * THRESHOLD,
            "reported after {:?}, not within 2x the {THRESHOLD:?} threshold",
            report.reported_after
        );
        assert_eq!(report.total, None, "still blocked at the first report");
        release_tx.send(()).unwrap();
        let blocked = rt.block_on(blocker).expect("the blocker finishes");
        for q in quick {
            rt.block_on(q).expect("quick task");
        }
        wait_until(5, "the stall's total", || {
            rt.handle().stalls()[0].total.is_some()
        });
        let stalls = rt.handle().stalls();
        assert_eq!(stalls.len(), 1, "one stall, the blocker's: {stalls:?}");
        // The watchdog first sees the poll up to a sample (a quarter of the
        // threshold) after it began, and its end up to a sample after: give
        // or take the threshold, on a loaded machine.
        let total = stalls[0].total.unwrap();
        assert!(
            total + THRESHOLD >= blocked && total <= blocked + THRESHOLD,
            "the blocker held its worker {blocked:?}, reported {total:?}"
        );
        assert_eq!(rt.metrics().stalls, 1);
    });
}

#[test]
fn with_the_watchdog_off_nothing_is_watched() {
    within(60, "a runtime without a watchdog", || {
        let mut b = builder(1);
        b.watchdog(Watchdog::off());
        let rt = b.build().expect("runtime");
        rt.block_on(rt.spawn(async { std::thread::sleep(Duration::from_millis(300)) }))
            .expect("blocker");
        assert!(rt.handle().stalls().is_empty());
        assert_eq!(rt.metrics().stalls, 0);
    });
}
