//! `#[bulwark::main]` and `#[bulwark::test]` build the runtime their
//! arguments ask for: the flavor (one worker for `current_thread`, the
//! default of `#[bulwark::test]`), `worker_threads`, `max_tasks` (a spawn
//! past it is rejected), `default_deadline` (a task sleeping past it ends
//! with `is_deadline_exceeded()`) and `start_paused` (an hour passes at
//! once); `main`-style functions keep their parameters and `Result`
//! return, tests their `#[should_panic]`.

use std::time::{Duration, Instant};

use bulwark::runtime::Handle;
use bulwark::task::JoinError;
use bulwark::time::{sleep, timeout};

/// A bound on every wait here, so a broken guard fails instead of hanging.
const LATE: Duration = Duration::from_secs(10);

#[bulwark::test]
async fn test_defaults_to_one_worker() {
    assert_eq!(Handle::current().metrics().workers, 1);
    assert_eq!(Handle::current().default_deadline(), None);
    assert_eq!(bulwark::spawn(async { 6 * 7 }).await.unwrap(), 42);
}

#[bulwark::test(flavor = "multi_thread", worker_threads = 3)]
async fn multi_thread_takes_worker_threads() {
    assert_eq!(Handle::current().metrics().workers, 3);
}

#[bulwark::test(max_tasks = 1)]
async fn a_spawn_past_max_tasks_is_rejected() {
    let held = bulwark::spawn(std::future::pending::<()>());
    let refused = bulwark::spawn(async { "never runs" });
    let err = timeout(LATE, refused)
        .await
        .expect("resolves at once")
        .unwrap_err();
    assert!(err.is_rejected(), "{err}");
    // Room again once the first task is gone.
    held.abort();
    assert!(timeout(LATE, held)
        .await
        .unwrap()
        .unwrap_err()
        .is_cancelled());
    let mut later = bulwark::spawn(async { 1 });
    for _ in 0..100 {
        // The aborted task's permit comes back as its cancel completes.
        match (&mut later).await {
            Ok(n) => return assert_eq!(n, 1),
            Err(e) if e.is_rejected() => {
                sleep(Duration::from_millis(10)).await;
                later = bulwark::spawn(async { 1 });
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("max_tasks = 1 never made room again");
}

#[bulwark::test(flavor = "multi_thread", worker_threads = 2, default_deadline = "100s")]
async fn a_task_past_the_default_deadline_is_dropped() {
    assert_eq!(
        Handle::current().default_deadline(),
        Some(Duration::from_secs(100))
    );
    // Paused (`start_paused` is for `current_thread`, as tokio's): the quick
    // task runs before its deadline however slow the machine, since the
    // clock moves only when nothing can run, and the slow one's deadline
    // passes at once. Seconds, not milliseconds: the runtime's check of a
    // queued task's deadline still reads the real clock, which must not
    // reach it.
    bulwark::time::pause();
    let quick = bulwark::spawn(async { "in time" });
    assert_eq!(quick.await.unwrap(), "in time");
    let slow = bulwark::spawn(sleep(Duration::from_secs(3600)));
    // On the paused clock: an hour passes only if the deadline never fires.
    let err = timeout(Duration::from_secs(3600), slow)
        .await
        .expect("dropped at its deadline")
        .unwrap_err();
    assert!(err.is_deadline_exceeded(), "{err}");
}

#[bulwark::test(start_paused = true, default_deadline = "1h")]
async fn start_paused_lets_an_hour_pass_at_once() {
    let real = Instant::now();
    // The clock jumps to the next timer while nothing can run.
    sleep(Duration::from_secs(2 * 3600 / 3)).await;
    let stuck = bulwark::spawn(std::future::pending::<()>());
    let err = stuck.await.unwrap_err();
    assert!(err.is_deadline_exceeded(), "{err}");
    assert!(
        real.elapsed() < LATE,
        "an hour and more of paused time took {:?}",
        real.elapsed()
    );
}

#[bulwark::test(default_deadline = "2m")]
async fn deadline_units() {
    assert_eq!(
        Handle::current().default_deadline(),
        Some(Duration::from_secs(120))
    );
}

#[bulwark::test]
async fn a_test_may_return_a_result() -> Result<(), JoinError> {
    let n = bulwark::spawn(async { 5 }).await?;
    assert_eq!(n, 5);
    Ok(())
}

#[bulwark::test]
#[should_panic(expected = "boom")]
async fn should_panic_is_kept() {
    panic!("boom");
}

/// A service's `main`, as a program would write it (named otherwise here,
/// so a test can call it): the attribute builds the runtime, and the
/// function keeps its parameter and its `Result`.
#[bulwark::main(worker_threads = 2, max_tasks = 4, default_deadline = "1h")]
async fn service(requests: usize) -> Result<Vec<Result<usize, JoinError>>, JoinError> {
    assert_eq!(Handle::current().metrics().workers, 2);
    assert_eq!(
        Handle::current().default_deadline(),
        Some(Duration::from_secs(3600))
    );
    let (tx, rx) = tokio::sync::watch::channel(false);
    let handles: Vec<_> = (0..requests)
        .map(|i| {
            let mut rx = rx.clone();
            bulwark::spawn(async move {
                // Held until all are spawned, so the ceiling is reached.
                let _ = rx.wait_for(|go| *go).await;
                i
            })
        })
        .collect();
    tx.send(true).unwrap();
    let mut out = Vec::new();
    for h in handles {
        out.push(timeout(LATE, h).await.expect("every request ends"));
    }
    Ok(out)
}

#[test]
fn main_style_entry_point_applies_max_tasks() {
    let out = service(6).expect("service ran");
    let served: Vec<usize> = out
        .iter()
        .filter_map(|r| r.as_ref().ok().copied())
        .collect();
    assert_eq!(
        served,
        vec![0, 1, 2, 3],
        "the first four fit under max_tasks"
    );
    assert!(out[4..]
        .iter()
        .all(|r| r.as_ref().unwrap_err().is_rejected()));
}

mod renamed {
    //! `crate = "..."` for a `bulwark` dependency under another name.
    extern crate bulwark as rt;

    #[rt::test(crate = "rt")]
    async fn through_a_renamed_crate() {
        assert_eq!(rt::spawn(async { 3 }).await.unwrap(), 3);
    }
}
