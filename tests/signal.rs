//! Signals (`bulwark::signal`): `ctrl_c` and `unix::signal` resolve when
//! the signal is raised in this process, every listener (in every runtime)
//! gets each delivery, deliveries that land together count once, and what
//! cannot work is an `io::Error` (a forbidden signal, no runtime) or `None`
//! (the runtime shut down), never a panic.
//!
//! Signals are process-wide and the tests of this file run on threads of one
//! process, so each test raises a signal of its own, and only after its
//! handler is installed (a listener exists): a raised SIGINT or SIGTERM
//! without a handler would end the whole test process.

mod common;

use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::mpsc;
use std::time::Duration;

use bulwark::signal::unix::{signal, Signal, SignalKind};
use common::{bounded, runtime, within};

/// Raises `signum` in this process, on this thread.
fn raise(signum: libc::c_int) {
    // SAFETY: `raise` has no memory-safety preconditions; every caller has
    // a listener for `signum` (so its handler is installed and the signal
    // does not take its default action).
    let rc = unsafe { libc::raise(signum) };
    assert_eq!(rc, 0, "raise({signum}) failed");
}

#[test]
fn ctrl_c_resolves_when_sigint_is_raised_on_a_task_and_in_block_on() {
    within(30, "ctrl_c to see SIGINT", || {
        let rt = runtime(2);

        // In block_on: the first poll installs the handler, then the raise.
        rt.block_on(async {
            let mut ctrl_c = pin!(bulwark::signal::ctrl_c());
            assert!(
                futures::poll!(ctrl_c.as_mut()).is_pending(),
                "no SIGINT yet"
            );
            raise(libc::SIGINT);
            bounded(10, "ctrl_c after SIGINT (block_on)", ctrl_c)
                .await
                .expect("ctrl_c is Ok");
        });

        // On a worker: the task says when it waits; the test thread raises.
        let (waiting_tx, waiting_rx) = mpsc::channel();
        let task = rt.spawn(async move {
            let mut ctrl_c = pin!(bulwark::signal::ctrl_c());
            assert!(futures::poll!(ctrl_c.as_mut()).is_pending());
            waiting_tx.send(()).unwrap();
            bounded(10, "ctrl_c after SIGINT (task)", ctrl_c).await
        });
        waiting_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the task to start waiting for ctrl_c");
        raise(libc::SIGINT);
        rt.block_on(task)
            .expect("the task ends")
            .expect("ctrl_c is Ok");
    });
}

#[test]
fn sigterm_reaches_every_listener_in_every_runtime() {
    within(30, "every SIGTERM listener", || {
        let runtimes = [runtime(2), runtime(1)];
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut tasks = Vec::new();
        for rt in &runtimes {
            for _ in 0..3 {
                let ready_tx = ready_tx.clone();
                tasks.push(rt.spawn(async move {
                    let mut terminate = signal(SignalKind::terminate()).expect("listen");
                    ready_tx.send(()).unwrap();
                    bounded(10, "SIGTERM", terminate.recv()).await
                }));
            }
        }
        for i in 0..tasks.len() {
            ready_rx
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("listener {i} of {} to be made", tasks.len()));
        }
        raise(libc::SIGTERM);
        for (i, task) in tasks.into_iter().enumerate() {
            let got = runtimes[0].block_on(task).expect("the listener task ends");
            assert_eq!(got, Some(()), "listener {i} got SIGTERM");
        }
    });
}

#[test]
fn deliveries_before_a_recv_count_once_and_a_new_listener_misses_old_ones() {
    within(30, "SIGUSR1 deliveries", || {
        let rt = runtime(2);
        rt.block_on(async {
            let mut early = signal(SignalKind::user_defined1()).expect("listen");
            // A raise is delivered when a driver turns, not inside `raise`:
            // `probe` waits for each delivery, so that both have landed
            // before `early` looks.
            let mut probe = signal(SignalKind::user_defined1()).expect("listen");
            raise(libc::SIGUSR1);
            bounded(10, "the first SIGUSR1 (probe)", probe.recv()).await;
            raise(libc::SIGUSR1);
            bounded(10, "the second SIGUSR1 (probe)", probe.recv()).await;

            bounded(10, "the SIGUSR1s (early)", early.recv()).await;
            // Both deliveries were taken by that one recv; no more were
            // raised, so nothing comes.
            let again = bulwark::time::timeout(Duration::from_millis(200), early.recv()).await;
            assert!(again.is_err(), "one recv takes every delivery so far");

            // A listener made now does not see the deliveries before it.
            let mut late = signal(SignalKind::user_defined1()).expect("listen");
            let old = bulwark::time::timeout(Duration::from_millis(200), late.recv()).await;
            assert!(old.is_err(), "a new listener saw an old delivery");

            // The next delivery reaches all three, after cancelled recvs too.
            raise(libc::SIGUSR1);
            bounded(10, "SIGUSR1 for the early listener", early.recv()).await;
            bounded(10, "SIGUSR1 for the late listener", late.recv()).await;
            bounded(10, "SIGUSR1 for the probe", probe.recv()).await;
        });
    });
}

#[test]
fn forbidden_and_bogus_signals_and_no_runtime_are_errors_not_panics() {
    within(30, "refusals", || {
        // No runtime: an error, as for sockets.
        let err = signal(SignalKind::hangup()).expect_err("no runtime");
        assert!(err.to_string().contains("runtime"), "{err}");

        let rt = runtime(1);
        rt.block_on(async {
            for signum in [libc::SIGKILL, libc::SIGSTOP, libc::SIGSEGV, libc::SIGILL] {
                let err = signal(SignalKind::from_raw(signum)).expect_err("forbidden");
                assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{signum}: {err}");
            }
            for signum in [0, -1, 1000] {
                let err = signal(SignalKind::from_raw(signum)).expect_err("not a signal");
                assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{signum}: {err}");
            }
        });
    });
}

#[test]
fn recv_ends_with_none_once_the_runtime_is_gone() {
    within(30, "recv after shutdown", || {
        let rt = runtime(1);
        // A listener waiting when the runtime drops, and one made before.
        let (waiting_tx, waiting_rx) = mpsc::channel();
        let waiting = rt.spawn(async move {
            let mut quit = signal(SignalKind::quit()).expect("listen");
            waiting_tx.send(()).unwrap();
            quit.recv().await
        });
        let mut kept: Signal = rt
            .block_on(async { signal(SignalKind::quit()) })
            .expect("listen");
        waiting_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the task to wait");
        drop(rt);
        // The waiting task's future was dropped with the runtime.
        assert!(futures::executor::block_on(waiting).is_err());
        assert_eq!(futures::executor::block_on(kept.recv()), None);
    });
}

#[test]
fn signal_kinds_are_the_os_numbers() {
    let kinds = [
        (SignalKind::interrupt(), libc::SIGINT),
        (SignalKind::terminate(), libc::SIGTERM),
        (SignalKind::hangup(), libc::SIGHUP),
        (SignalKind::quit(), libc::SIGQUIT),
        (SignalKind::user_defined1(), libc::SIGUSR1),
        (SignalKind::user_defined2(), libc::SIGUSR2),
        (SignalKind::child(), libc::SIGCHLD),
        (SignalKind::alarm(), libc::SIGALRM),
        (SignalKind::pipe(), libc::SIGPIPE),
        (SignalKind::window_change(), libc::SIGWINCH),
        (SignalKind::io(), libc::SIGIO),
    ];
    for (kind, signum) in kinds {
        assert_eq!(kind.as_raw_value(), signum);
        assert_eq!(SignalKind::from_raw(signum), kind);
        assert_eq!(libc::c_int::from(kind), signum);
    }
}

/// The public types cross threads, as tokio's do.
#[test]
fn signal_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Signal>();
    send_sync::<SignalKind>();
    fn send_future<F: Future + Send>(_: F) {}
    send_future(bulwark::signal::ctrl_c());
}
