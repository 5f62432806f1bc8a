//! `bulwark::resource::Pool`: leases go back on every path (an early `?`,
//! a deadline, a lost-task cancel), an orphaned lease is reported with the
//! line that acquired it, `reclaim_orphans` keeps the pool serving through a
//! bounded leak, `recycle` drops an unhealthy value, and `acquire` at the
//! limit errs after its timeout.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bulwark::resource::{LeakKind, Lease, Pool, PoolError};
use common::{builder, wait_until, within};

/// A fake connection, numbered by the factory.
#[derive(Debug)]
struct Conn(usize);

fn new_pool(kind: &'static str, max: usize, reclaim: usize) -> (Pool<Conn>, Arc<AtomicUsize>) {
    let made = Arc::new(AtomicUsize::new(0));
    let counter = made.clone();
    let pool = Pool::builder(kind)
        .max_size(max)
        .acquire_timeout(Duration::from_millis(300))
        .reclaim_orphans(reclaim)
        .build(move || {
            let n = counter.fetch_add(1, SeqCst);
            async move { Ok::<_, std::io::Error>(Conn(n)) }
        })
        .expect("a pool");
    (pool, made)
}

#[derive(Debug)]
struct Failed;

/// A handler that takes a connection and then fails.
async fn failing_handler(pool: Pool<Conn>) -> Result<(), Failed> {
    let _conn = pool.acquire().await.map_err(|_| Failed)?;
    bulwark::task::yield_now().await;
    Err(Failed)?;
    Ok(())
}

#[test]
fn ten_thousand_early_returns_never_exhaust_a_pool_of_ten() {
    within(120, "10,000 failing handlers", || {
        let rt = builder(2).build().expect("runtime");
        rt.block_on(async {
            let (pool, made) = new_pool("early", 10, 0);
            for _ in 0..100 {
                let batch: Vec<_> = (0..100)
                    .map(|_| bulwark::spawn(failing_handler(pool.clone())))
                    .collect();
                for h in batch {
                    assert!(matches!(h.await.unwrap(), Err(Failed)));
                }
            }
            let status = pool.status();
            assert_eq!(status.in_use, 0, "{status:?}");
            assert!(status.size <= 10, "{status:?}");
            assert!(
                made.load(SeqCst) <= 10,
                "only ten connections were ever made"
            );
            // And it still serves.
            let conn = pool.acquire().await.expect("a connection");
            assert!(conn.0 < 10);
        });
    });
}

static LEAKED: Mutex<Vec<Lease<Conn>>> = Mutex::new(Vec::new());

#[test]
fn a_leased_connection_moved_into_a_global_vec_is_reported_with_its_acquire_line() {
    within(60, "an orphaned lease", || {
        let rt = builder(2).build().expect("runtime");
        let (pool, _) = rt.block_on(async { new_pool("leaky", 4, 0) });
        let p = pool.clone();
        let line = rt
            .block_on(rt.spawn(async move {
                let line = line!() + 1;
                let conn = p.acquire().await.expect("a connection");
                LEAKED.lock().unwrap().push(conn);
                line
            }))
            .unwrap();
        wait_until(5, "the orphaned lease to be listed", || {
            pool.status().orphans == 1
        });
        let leak = rt
            .handle()
            .leaks()
            .into_iter()
            .find(|l| l.kind == "leaky")
            .expect("listed");
        assert_eq!(leak.why, LeakKind::Orphan);
        assert!(leak.site.file().ends_with("pool.rs"), "{leak:?}");
        assert_eq!(leak.site.line(), line, "{leak:?}");
        LEAKED.lock().unwrap().clear();
        assert_eq!(pool.status().orphans, 0);
        assert_eq!(pool.status().idle, 1, "the leaked connection came back");
    });
}

#[test]
fn a_deadline_cancel_and_a_lost_task_cancel_give_the_lease_back() {
    within(60, "cancelled leases", || {
        // Paused: the timed task takes the connection before its deadline
        // however slow the machine (the clock moves only when nothing can
        // run), so the deadline always finds a lease to give back.
        let mut b = builder(2);
        b.on_lost_task(bulwark::runtime::LostTask::Cancel)
            .start_paused(true);
        let rt = b.build().expect("runtime");
        let (pool, _) = rt.block_on(async { new_pool("cancelled", 1, 0) });
        // Past its deadline while it holds the only connection.
        let (_keep, never) = tokio::sync::oneshot::channel::<()>();
        let p = pool.clone();
        let (leased_tx, leased_rx) = std::sync::mpsc::channel();
        let timed = bulwark::task::Builder::new()
            .timeout(Duration::from_secs(60))
            .spawn_on(
                async move {
                    let _conn = p.acquire().await.unwrap();
                    leased_tx.send(()).unwrap();
                    let _ = never.await;
                },
                rt.handle(),
            )
            .unwrap();
        assert!(rt.block_on(timed).unwrap_err().is_deadline_exceeded());
        leased_rx
            .try_recv()
            .expect("the timed task held the connection before its deadline");
        assert_eq!(pool.status().in_use, 0);
        // Lost: it waits on a future that keeps no waker.
        let p = pool.clone();
        let lost = rt.spawn(async move {
            let _conn = p.acquire().await.unwrap();
            std::future::poll_fn(|_| std::task::Poll::<()>::Pending).await;
        });
        assert!(rt.block_on(lost).unwrap_err().is_lost());
        assert_eq!(pool.status().in_use, 0);
        rt.block_on(async {
            let conn = pool.acquire().await.expect("the one connection is free");
            assert_eq!(conn.0, 0, "the same connection, reused");
        });
    });
}

/// Leaks `n` leases of `pool` from tasks that end.
fn leak(rt: &bulwark::Runtime, pool: &Pool<Conn>, n: usize) {
    for _ in 0..n {
        let p = pool.clone();
        rt.block_on(rt.spawn(async move {
            let conn = p.acquire().await.expect("a connection to leak");
            std::mem::forget(conn);
        }))
        .unwrap();
    }
}

/// How many leases `pool` gives at once, each acquire bounded by the pool's
/// timeout.
fn leases_at_once(rt: &bulwark::Runtime, pool: &Pool<Conn>, want: usize) -> usize {
    rt.block_on(async {
        let mut held = Vec::new();
        for _ in 0..want {
            match pool.acquire().await {
                Ok(conn) => held.push(conn),
                Err(PoolError::Timeout { .. }) => break,
                Err(e) => panic!("unexpected pool error: {e}"),
            }
        }
        held.len()
    })
}

#[test]
fn reclaim_orphans_keeps_the_pool_serving_through_a_bounded_leak() {
    within(90, "orphan reclaim", || {
        let rt = builder(2).build().expect("runtime");
        let (pool, _) = rt.block_on(async { new_pool("reclaim-3", 10, 4) });
        leak(&rt, &pool, 3);
        wait_until(5, "3 orphans", || pool.status().orphans == 3);
        assert_eq!(
            leases_at_once(&rt, &pool, 10),
            10,
            "a leak of 3 leaves the pool serving at full size"
        );
        let (pool, _) = rt.block_on(async { new_pool("reclaim-10", 10, 4) });
        leak(&rt, &pool, 10);
        wait_until(5, "10 orphans", || pool.status().orphans == 10);
        assert_eq!(
            leases_at_once(&rt, &pool, 10),
            4,
            "a leak of 10 is bounded at 4 extra"
        );
        let leaks = rt.handle().leaks();
        assert_eq!(
            leaks
                .iter()
                .filter(|l| l.kind == "reclaim-10" && l.why == LeakKind::Orphan)
                .count(),
            10,
            "all of it is reported"
        );
        assert_eq!(pool.status().extra, 4);
    });
}

#[test]
fn recycle_drops_an_unhealthy_connection_and_acquire_times_out_at_the_limit() {
    within(60, "recycle and timeout", || {
        let rt = builder(2).build().expect("runtime");
        rt.block_on(async {
            let made = Arc::new(AtomicUsize::new(0));
            let counter = made.clone();
            let pool = Pool::builder("sick")
                .max_size(1)
                .acquire_timeout(Duration::from_millis(50))
                .recycle(|conn: &mut Conn| conn.0 % 2 == 1)
                .build(move || {
                    let n = counter.fetch_add(1, SeqCst);
                    async move { Ok::<_, std::io::Error>(Conn(n)) }
                })
                .unwrap();
            let first = pool.acquire().await.unwrap();
            assert_eq!(first.0, 0);
            let err = pool.acquire().await.expect_err("the only one is leased");
            assert!(matches!(err, PoolError::Timeout { .. }), "{err}");
            assert!(err.to_string().contains("`sick`"), "{err}");
            drop(first); // unhealthy (even): dropped, not kept
            assert_eq!(pool.status().idle, 0);
            let second = pool.acquire().await.unwrap();
            assert_eq!(second.0, 1, "a new one was made");
            drop(second); // healthy: kept
            assert_eq!(pool.status().idle, 1);
        });
        let err = match Pool::<Conn>::builder("zero")
            .max_size(0)
            .build(|| async { Ok::<_, std::io::Error>(Conn(0)) })
        {
            Err(e) => e,
            Ok(_) => panic!("a pool of size 0 was built"),
        };
        assert!(matches!(err, PoolError::Config(_)), "{err}");
    });
}
