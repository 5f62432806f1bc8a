//! The socket budget: the runtime's sockets are the ledger kind `socket`;
//! at its budget a listener leaves connections in the kernel backlog until
//! one of its sockets closes, so it never holds more than the budget, and
//! every client is served in the end.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use common::{builder, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BUDGET: usize = 50;
const CLIENTS: usize = 200;

#[test]
fn a_budget_of_50_holds_with_200_clients_and_all_are_served() {
    within(120, "200 clients through a socket budget of 50", || {
        let mut b = builder(2);
        b.resource_budget("socket", BUDGET);
        let rt = b.build().expect("runtime");
        let open = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        {
            let (open, most) = (open.clone(), most.clone());
            rt.spawn(async move {
                let listener = bulwark::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                loop {
                    let (mut stream, _) = listener.accept().await.expect("accept");
                    let now = open.fetch_add(1, SeqCst) + 1;
                    most.fetch_max(now, SeqCst);
                    let open = open.clone();
                    bulwark::spawn(async move {
                        // Hold the connection a little, so they pile up.
                        bulwark::time::sleep(Duration::from_millis(20)).await;
                        let _ = stream.write_all(b"ok").await;
                        drop(stream);
                        open.fetch_sub(1, SeqCst);
                    });
                }
            });
        }
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the listener's address");
        // The clients run on tokio, outside bulwark's budget.
        let clients = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let served = clients.block_on(async move {
            let tasks: Vec<_> = (0..CLIENTS)
                .map(|_| {
                    tokio::spawn(async move {
                        let mut s = tokio::net::TcpStream::connect(addr).await?;
                        let mut buf = Vec::new();
                        tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut buf))
                            .await
                            .map_err(std::io::Error::other)??;
                        Ok::<_, std::io::Error>(buf == b"ok")
                    })
                })
                .collect();
            let mut served = 0;
            for t in tasks {
                if t.await.unwrap().expect("a client's exchange") {
                    served += 1;
                }
            }
            served
        });
        assert_eq!(served, CLIENTS, "every client is served in the end");
        let most = most.load(SeqCst);
        // The listener itself is one of the budget's sockets.
        assert!(
            most < BUDGET,
            "{most} accepted sockets open at once, over a budget of {BUDGET} (listener included)"
        );
        let m = rt.metrics();
        let sockets = m.kinds.iter().find(|k| k.name == "socket").unwrap();
        assert!(sockets.peak <= BUDGET, "{sockets:?}");
        assert!(m.accept_pauses > 0, "the listener paused at the budget");
        assert_eq!(m.accept_backoffs, 0, "no EMFILE was met");
    });
}

static STASHED: std::sync::Mutex<Vec<bulwark::net::TcpStream>> = std::sync::Mutex::new(Vec::new());

#[test]
fn a_socket_stashed_by_a_task_that_ended_is_an_orphan_named_by_its_accept_line() {
    within(60, "an orphaned socket", || {
        let rt = builder(2).build().expect("runtime");
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (line_tx, line_rx) = std::sync::mpsc::channel();
        rt.spawn(async move {
            let listener = bulwark::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let line = line!() + 1;
                let (stream, _) = listener.accept().await.expect("accept");
                let _ = line_tx.send(line);
                // The connection's task uses it, then stashes it and ends.
                bulwark::spawn(async move {
                    let _ = stream.readable().await;
                    STASHED.lock().unwrap().push(stream);
                });
            }
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let mut client = std::net::TcpStream::connect(addr).expect("connect");
        std::io::Write::write_all(&mut client, b"x").unwrap();
        let line = line_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        common::wait_until(5, "the stashed socket to be listed as an orphan", || {
            rt.handle().leaks().iter().any(|l| l.kind == "socket")
        });
        let leaks = rt.handle().leaks();
        assert_eq!(leaks.len(), 1, "only the stashed socket: {leaks:?}");
        let leak = &leaks[0];
        assert_eq!(leak.why, bulwark::resource::LeakKind::Orphan);
        assert!(leak.site.file().ends_with("socket_budget.rs"), "{leak:?}");
        assert_eq!(leak.site.line(), line, "the accept line: {leak:?}");
        STASHED.lock().unwrap().clear();
        assert!(rt.handle().leaks().is_empty());
    });
}
