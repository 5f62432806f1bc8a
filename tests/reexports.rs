//! What bulwark re-exports from tokio (`bulwark::io`, `bulwark::sync`,
//! `select!`, `join!`, `try_join!`, `pin!`) runs inside bulwark tasks with
//! no tokio runtime anywhere in the process: inside the tasks no tokio
//! runtime is current, and no thread named as tokio names its workers and
//! blocking threads (`tokio-runtime-worker`) exists, before or after.
//!
//! This binary never builds a tokio runtime (tokio is here as the facade's
//! dependency and a dev-dependency; only `Handle::try_current` is called on
//! it). Every path below goes through `bulwark::`.

mod common;

use std::time::Duration;

use bulwark::io::{
    self, AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, AsyncWriteExt, BufReader, BufStream,
    BufWriter, SeekFrom,
};
use bulwark::sync::{broadcast, mpsc, oneshot, watch, Mutex, Notify, RwLock, Semaphore};
use common::{bounded, runtime, threads_named, within};
use std::sync::Arc;

/// Threads named as tokio names its own (`comm` is cut at 15 bytes).
fn tokio_threads() -> Vec<String> {
    threads_named("tokio")
}

/// Fails if a tokio runtime is current on this thread.
fn assert_no_tokio_runtime(at: &str) {
    assert!(
        tokio::runtime::Handle::try_current().is_err(),
        "a tokio runtime is current {at}"
    );
}

#[test]
fn the_reexported_surface_runs_with_no_tokio_runtime_in_the_process() {
    within(60, "the re-exported tokio surface on bulwark", || {
        assert_eq!(tokio_threads(), Vec::<String>::new(), "before the test");
        let rt = runtime(2);
        let out = rt.block_on(async {
            let task = bulwark::spawn(async {
                assert_no_tokio_runtime("inside a bulwark task");
                io_surface().await;
                sync_surface().await;
                macro_surface().await;
                assert_no_tokio_runtime("inside a bulwark task, after the surface ran");
                "done"
            });
            bounded(30, "the task using the re-exports", task).await
        });
        assert_eq!(out.expect("the task failed"), "done");
        assert_eq!(tokio_threads(), Vec::<String>::new(), "after the test");
    });
}

/// `bulwark::io`: duplex pipes, split halves, buffering, copy, copy_bidirectional,
/// lines, seek, empty/sink/repeat, ReadBuf.
async fn io_surface() {
    // Buffered lines over a duplex pipe, through split halves.
    let (a, b) = io::duplex(16);
    let writer = bulwark::spawn(async move {
        let (_, w) = io::split(a);
        let mut w = BufWriter::new(w);
        for i in 0..100 {
            w.write_all(format!("line {i}\n").as_bytes()).await.unwrap();
        }
        w.flush().await.unwrap();
    });
    let (r, _) = io::split(b);
    let mut lines = BufReader::new(r).lines();
    let mut n = 0;
    while let Some(line) = lines.next_line().await.unwrap() {
        assert_eq!(line, format!("line {n}"));
        n += 1;
    }
    assert_eq!(n, 100);
    writer.await.unwrap();

    // copy from a repeat into a sink, bounded by take.
    let copied = io::copy(&mut io::repeat(7).take(100_000), &mut io::sink())
        .await
        .unwrap();
    assert_eq!(copied, 100_000);
    let mut nothing = Vec::new();
    io::empty().read_to_end(&mut nothing).await.unwrap();
    assert!(nothing.is_empty());

    // copy_bidirectional between two pipes: an echo through a proxy.
    let (mut client, proxy_front) = io::duplex(64);
    let (proxy_back, mut server) = io::duplex(64);
    let proxy = bulwark::spawn(async move {
        let (mut front, mut back) = (proxy_front, proxy_back);
        io::copy_bidirectional(&mut front, &mut back).await
    });
    let echo = bulwark::spawn(async move {
        let mut buf = [0u8; 5];
        server.read_exact(&mut buf).await.unwrap();
        server.write_all(&buf).await.unwrap();
    });
    client.write_all(b"hello").await.unwrap();
    let mut back = [0u8; 5];
    client.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"hello");
    echo.await.unwrap();
    drop(client);
    let (up, down) = proxy.await.unwrap().unwrap();
    assert_eq!((up, down), (5, 5));

    // A seekable in-memory stream behind BufStream.
    let mut stream = BufStream::new(std::io::Cursor::new(Vec::new()));
    stream.write_all(b"abcdef").await.unwrap();
    stream.flush().await.unwrap();
    stream.seek(SeekFrom::Start(2)).await.unwrap();
    let mut rest = String::new();
    stream.read_to_string(&mut rest).await.unwrap();
    assert_eq!(rest, "cdef");

    // ReadBuf, as a hand-written AsyncRead uses it.
    let mut storage = [0u8; 4];
    let mut buf = io::ReadBuf::new(&mut storage);
    buf.put_slice(b"ab");
    assert_eq!(buf.filled(), b"ab");
    let err: io::Error = io::ErrorKind::Other.into();
    assert_eq!(err.kind(), io::ErrorKind::Other);
}

/// `bulwark::sync`: each primitive across tasks.
async fn sync_surface() {
    let (tx, mut rx) = mpsc::channel(4);
    for i in 0..8u32 {
        let tx = tx.clone();
        bulwark::spawn(async move { tx.send(i).await.unwrap() });
    }
    drop(tx);
    let mut sum = 0;
    while let Some(i) = rx.recv().await {
        sum += i;
    }
    assert_eq!(sum, 28);

    let (otx, orx) = oneshot::channel();
    bulwark::spawn(async move { otx.send(1).unwrap() });
    assert_eq!(orx.await.unwrap(), 1);

    let (btx, mut brx) = broadcast::channel(4);
    btx.send("b").unwrap();
    assert_eq!(brx.recv().await.unwrap(), "b");

    let (wtx, mut wrx) = watch::channel(0);
    bulwark::spawn(async move { wtx.send(5).unwrap() });
    assert_eq!(*wrx.wait_for(|v| *v == 5).await.unwrap(), 5);

    let mutex = Arc::new(Mutex::new(0));
    let lock = RwLock::new(1);
    let sem = Arc::new(Semaphore::new(1));
    let notify = Arc::new(Notify::new());
    let waiter = {
        let notify = notify.clone();
        bulwark::spawn(async move { notify.notified().await })
    };
    // `notify_one` keeps a permit if the waiter is not there yet.
    notify.notify_one();
    waiter.await.unwrap();
    *mutex.lock().await += 1;
    assert_eq!(*lock.read().await, 1);
    let _permit = sem.acquire().await.unwrap();
    assert_eq!(sem.available_permits(), 0);
}

/// `select!`, `join!`, `try_join!`, `pin!` through `bulwark::`.
async fn macro_surface() {
    let (a, b) = bulwark::join!(async { 1 }, async { 2 });
    assert_eq!(a + b, 3);
    let ok: Result<(i32, i32), &str> = bulwark::try_join!(async { Ok(1) }, async { Ok(2) });
    assert_eq!(ok, Ok((1, 2)));
    let failed: Result<(i32, i32), &str> = bulwark::try_join!(async { Ok(1) }, async { Err("no") });
    assert_eq!(failed, Err("no"));

    let sleep = bulwark::time::sleep(Duration::from_secs(30));
    bulwark::pin!(sleep);
    let (tx, mut rx) = mpsc::channel::<u8>(1);
    bulwark::spawn(async move { tx.send(9).await.unwrap() });
    let mut got = None;
    // A loop over select! with a pinned future, as services write it.
    loop {
        bulwark::select! {
            biased;
            Some(v) = rx.recv() => got = Some(v),
            _ = &mut sleep => panic!("the 30 s sleep won over the channel"),
            else => break,
        }
        if got.is_some() {
            break;
        }
    }
    assert_eq!(got, Some(9));
    // The unbiased form, with its random start.
    let picked = bulwark::select! {
        v = async { 1 } => v,
        v = std::future::pending::<i32>() => v,
    };
    assert_eq!(picked, 1);
}
