//! Paused time next to sockets and `block_on`, as tokio's mini-redis tests
//! it (`tests/ported/mini-redis/tests/server.rs`, `key_value_timeout`): a
//! test pauses the clock, talks to its own server over loopback, and moves
//! time with `advance`. The clock may jump to the next timer only when
//! nothing but a timer can make progress; a reply in flight on a socket, or
//! a `block_on` thread woken and not yet running, is progress. And after
//! `advance(d)` a sleep of `d` set just before is due, with no jump past it.

mod common;

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use bulwark::io::{AsyncReadExt, AsyncWriteExt};
use bulwark::net::{TcpListener, TcpStream};
use bulwark::runtime::Builder;
use bulwark::time::{advance, pause, sleep};
use common::within;

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn the_clock_does_not_jump_while_a_reply_is_on_its_way() {
    within(60, "200 round trips under a paused clock", || {
        // What `#[bulwark::test]` builds: one worker, `block_on` on this
        // thread.
        let rt = Builder::new_current_thread().build().expect("runtime");
        rt.block_on(async {
            pause();
            // The only timer: due in an hour. Nothing in the exchange below
            // waits for time, so the hour must not pass during it.
            let passed = Arc::new(AtomicBool::new(false));
            let flag = passed.clone();
            bulwark::spawn(async move {
                sleep(HOUR).await;
                flag.store(true, SeqCst);
            });
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("local_addr");
            // An echo server on the worker: each reply is written by a task
            // that then returns, so the worker goes idle with the reply in
            // the kernel, unseen by any driver turn yet, and this thread
            // parked waiting for it (or just woken by it).
            bulwark::spawn(async move {
                let (mut conn, _) = listener.accept().await.expect("accept");
                let mut buf = [0u8; 8];
                while conn.read_exact(&mut buf).await.is_ok() {
                    if conn.write_all(&buf).await.is_err() {
                        break;
                    }
                }
            });
            let mut client = TcpStream::connect(addr).await.expect("connect");
            for round in 0..200u64 {
                client.write_all(&round.to_le_bytes()).await.expect("write");
                let mut back = [0u8; 8];
                client.read_exact(&mut back).await.expect("read");
                assert_eq!(u64::from_le_bytes(back), round);
                assert!(
                    !passed.load(SeqCst),
                    "the paused clock jumped an hour during round trip {round}"
                );
            }
        });
    });
}

#[test]
fn advance_by_d_finishes_a_sleep_of_d_without_jumping_past_it() {
    within(30, "a one-second sleep under advance", || {
        let rt = Builder::new_current_thread().build().expect("runtime");
        rt.block_on(async {
            // Real time has run since the runtime started: the clock stops
            // wherever it is, which is almost never on a millisecond tick.
            pause();
            // The driver's time, read as a deadline (the runtime's
            // `Instant::now()` is still real time).
            let now = || sleep(Duration::ZERO).deadline();
            let t0 = now();
            let nap = bulwark::spawn(sleep(Duration::from_secs(1)));
            advance(Duration::from_secs(1)).await;
            // Due now: if it were not, the runtime would go idle here and
            // the clock would jump to it, past t0 + 1 s.
            nap.await.expect("the nap ends");
            assert_eq!(
                now() - t0,
                Duration::from_secs(1),
                "the clock moved past t0 + 1 s to finish a 1 s sleep set at t0"
            );
        });
    });
}
