//! Not part of the API: a hand-made runtime for this crate's unit tests
//! and doc examples (the executor, which makes real runtimes, sits above
//! this crate). A driver turned by a thread of its own, and a `block_on` on
//! a parker with that driver current.

use crate::driver::{Driver, Handle};
use crate::park::Parker;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a test future may take before the test fails.
const LIMIT: Duration = Duration::from_secs(20);

/// A driver turned by its own thread, stopped and joined on drop.
pub struct Rt {
    /// The driver's handle.
    pub handle: Handle,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Rt {
    /// Starts a driver and the thread that turns it.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Rt {
        let (mut driver, handle) = Driver::new().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                driver.turn(Some(Duration::from_millis(10)));
            }
        });
        Rt {
            handle,
            stop,
            thread: Some(thread),
        }
    }

    /// Polls `f` to completion on this thread, with this driver current.
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        block_on(&self.handle, f)
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.unpark();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// A waker that does nothing (`Waker::noop` is newer than the MSRV).
pub fn noop_waker() -> std::task::Waker {
    struct Noop;
    impl std::task::Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    std::task::Waker::from(Arc::new(Noop))
}

/// Polls `f` to completion on this thread, with `handle` as the current
/// driver.
pub fn block_on<F: Future>(handle: &Handle, f: F) -> F::Output {
    let _enter = crate::context::enter(handle.clone());
    let parker = Parker::new();
    let waker = parker.unparker().waker();
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    let start = Instant::now();
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        // Only a wake-up polls again: a lost waker fails the test
        // instead of being papered over by a periodic poll.
        let left = LIMIT.checked_sub(start.elapsed());
        let left = left.unwrap_or_else(|| {
            panic!("a test future was not woken or did not finish in {LIMIT:?}")
        });
        parker.park_timeout(left);
    }
}
