//! Accepted means served: a connection a bulwark listener accepts gets its
//! task, even while the runtime sits at its task ceiling. `accept` reserves a
//! task permit before it takes a connection, and the `spawn` that follows on
//! the same task uses it, so a naive accept loop (`accept`, then `spawn`)
//! never closes a connection unserved. A reservation nobody uses is given
//! back.

mod common;

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use bulwark::net::{TcpListener, TcpStream};
use common::{bounded, builder, wait_until, within};
use tokio::io::AsyncWriteExt;

/// The ceiling of the runtime under test.
const MAX_TASKS: usize = 1_000;
/// Client connections, each expecting an answer.
const CLIENTS: usize = 300;
/// Client threads; each makes its share of the connections one after another.
const CLIENT_THREADS: usize = 10;

/// What a client saw on its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The server's task answered.
    Served,
    /// The server refused with a 503 before closing.
    Refused,
    /// Closed (EOF or reset) without a byte of answer.
    ClosedUnserved,
    /// No answer within the client's timeout.
    TimedOut,
}

/// One client: connects, reads the answer, closes.
fn client(addr: SocketAddr) -> Outcome {
    let mut stream = match std::net::TcpStream::connect(addr) {
        Ok(s) => s,
        // The listen queue never overflows at this size; a refused connect
        // would mean the listener is gone.
        Err(e) => panic!("client: connect to {addr}: {e}"),
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("client: set a read timeout");
    let mut answer = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Outcome::TimedOut
            }
            // A reset: what an unserved close looks like when the server
            // closes with the client's bytes unread.
            Err(_) => break,
        }
    }
    if answer.starts_with(b"served") {
        Outcome::Served
    } else if answer.starts_with(b"HTTP/1.1 503") {
        Outcome::Refused
    } else {
        Outcome::ClosedUnserved
    }
}

/// A connection's task: answers and closes.
async fn serve(mut stream: TcpStream, served: Arc<AtomicUsize>) {
    if stream.write_all(b"served\n").await.is_ok() {
        served.fetch_add(1, SeqCst);
    }
    let _ = stream.shutdown().await;
}

/// Keeps the ceiling full: spawns sleepers of 20 to 50 ms (so that permits
/// free all the time, not in bursts) until the runtime refuses, then yields
/// and tries again, so each permit that frees is soon taken again.
async fn keep_full(stop: Arc<AtomicBool>) {
    let mut n = 0u64;
    while !stop.load(SeqCst) {
        loop {
            n += 1;
            let nap = Duration::from_micros(20_000 + (n * 7_919) % 30_000);
            match bulwark::try_spawn(bulwark::time::sleep(nap)) {
                Ok(h) => drop(h),
                Err(_) => break,
            }
        }
        bulwark::task::yield_now().await;
    }
}

#[test]
fn every_connection_accepted_at_a_full_ceiling_is_served() {
    within(120, "300 clients against a full ceiling", || {
        let rt = builder(2)
            .max_tasks(MAX_TASKS)
            .build()
            .expect("build the runtime");
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind the listener");
        let addr = listener.local_addr().expect("listener address");
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));

        // The naive accept loop of the issue: accept, spawn, repeat.
        let accepted = Arc::new(AtomicUsize::new(0));
        {
            let (served, accepted) = (served.clone(), accepted.clone());
            let dbg_books = rt.handle().books().clone();
            rt.spawn(async move {
                loop {
                    let (stream, _) = listener.accept().await.expect("accept");
                    accepted.fetch_add(1, SeqCst);
                    eprint!("{} ", dbg_books.tasks().live());
                    bulwark::spawn(serve(stream, served.clone()));
                }
            });
        }

        // Then the filler (spawned first, it would leave no room for the
        // accept loop's own task).
        rt.spawn(keep_full(stop.clone()));
        let filled = rt.handle().clone();
        wait_until(10, "the filler to fill the ceiling", || {
            filled.metrics().tasks_admitted_live >= MAX_TASKS - 1
        });

        let (tx, rx) = mpsc::channel();
        let threads: Vec<_> = (0..CLIENT_THREADS)
            .map(|_| {
                let tx = tx.clone();
                thread::spawn(move || {
                    for _ in 0..CLIENTS / CLIENT_THREADS {
                        tx.send(client(addr)).expect("report an outcome");
                    }
                })
            })
            .collect();
        drop(tx);
        let outcomes: Vec<Outcome> = rx.iter().collect();
        for t in threads {
            t.join().expect("a client thread");
        }
        stop.store(true, SeqCst);

        let count = |o: Outcome| outcomes.iter().filter(|&&x| x == o).count();
        let (ok, refused) = (count(Outcome::Served), count(Outcome::Refused));
        let (unserved, timed_out) = (count(Outcome::ClosedUnserved), count(Outcome::TimedOut));
        let m = rt.metrics();
        eprintln!(
            "served {ok}, refused {refused}, unserved {unserved}, timed out {timed_out}; \
             rejected spawns {}, accept pauses {}, peak {}",
            m.tasks_rejected, m.accept_pauses, m.tasks_admitted_peak
        );
        assert_eq!(outcomes.len(), CLIENTS, "every client reports");
        assert_eq!(
            unserved,
            0,
            "{unserved} of {CLIENTS} connections were closed unserved \
             (served {ok}, refused {refused}, timed out {timed_out}; \
             accepted {}, rejected spawns {})",
            accepted.load(SeqCst),
            m.tasks_rejected,
        );
        assert_eq!(
            timed_out, 0,
            "{timed_out} clients got no answer within 30 s"
        );
        assert_eq!(ok + refused, CLIENTS);
        assert!(
            m.tasks_admitted_peak <= MAX_TASKS,
            "the ceiling held: peak {} > {MAX_TASKS}",
            m.tasks_admitted_peak
        );
        // The filler kept the ceiling full: the runtime refused spawns all
        // along, so the accept loop really did compete for permits.
        assert!(m.tasks_rejected > 0, "the ceiling was never full");
    });
}

/// A reservation made by `accept` and not used by a spawn (the connection is
/// dropped instead) is given back: the live count returns to where it was.
#[test]
fn an_unused_reservation_is_released() {
    within(30, "an unused reservation to be released", || {
        let rt = builder(1).max_tasks(10).build().expect("build the runtime");
        let listener = rt
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind the listener");
        let addr = listener.local_addr().expect("listener address");
        let handle = rt.handle().clone();
        let live = move || handle.metrics().tasks_admitted_live;

        // In a task, which then ends without spawning: released when the
        // worker next parks (or another task spawns).
        let before = live();
        let client = std::net::TcpStream::connect(addr).expect("connect");
        let (tx, rx) = mpsc::channel();
        rt.spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            drop(stream);
            tx.send(listener).expect("hand the listener back");
        });
        let listener = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the task accepted");
        drop(client);
        wait_until(
            10,
            "the live count to return after an unused reservation",
            || live() == before,
        );

        // In `block_on` (no task): released by the next accept's
        // reservation, which is then used by a spawn.
        let c1 = std::net::TcpStream::connect(addr).expect("connect");
        let c2 = std::net::TcpStream::connect(addr).expect("connect");
        rt.block_on(async {
            let (s1, _) = bounded(10, "accept 1", listener.accept())
                .await
                .expect("accept");
            drop(s1);
            let (s2, _) = bounded(10, "accept 2", listener.accept())
                .await
                .expect("accept");
            let h = bulwark::spawn(async move { drop(s2) });
            h.await.expect("the connection's task ran");
        });
        drop((c1, c2));
        wait_until(
            10,
            "the live count to return after a used reservation",
            || live() == before,
        );

        // Nothing held at quiescence, nothing released twice.
        let m = rt.metrics();
        assert_eq!(m.tasks_admitted_live, before, "live tasks back to {before}");
    });
}
