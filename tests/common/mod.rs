//! Helpers shared by the integration tests: runtimes built the usual ways, a
//! bound on every wait (on a thread or inside the runtime), a CPU spin, panic
//! payload text, a drop counter, a live-task count and a count of this
//! process's threads by name; in [`tools`], real tools (promtool,
//! prometheus, chromium) driven against the metrics endpoint.
//!
//! Not every test file uses every helper.
#![allow(dead_code)]

pub mod tools;

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use bulwark::runtime::{Admission, Builder, Runtime};

/// A runtime builder with `workers` worker threads and every other setting at
/// its default, for a test that sets more before `build`.
pub fn builder(workers: usize) -> Builder {
    let mut builder = Runtime::builder();
    builder.worker_threads(workers);
    builder
}

/// A runtime with `workers` worker threads and every other setting default.
pub fn runtime(workers: usize) -> Runtime {
    builder(workers).build().expect("build the runtime")
}

/// A runtime with `workers` worker threads and a ceiling of `max_tasks` live
/// tasks (the default admission policy).
pub fn runtime_with_ceiling(workers: usize, max_tasks: usize) -> Runtime {
    builder(workers)
        .max_tasks(max_tasks)
        .build()
        .expect("build the runtime")
}

/// A runtime with `workers` worker threads, a ceiling of `max_tasks` live
/// tasks and `admission` deciding what happens at it.
pub fn runtime_with_admission(workers: usize, max_tasks: usize, admission: Admission) -> Runtime {
    builder(workers)
        .max_tasks(max_tasks)
        .admission(admission)
        .build()
        .expect("build the runtime")
}

/// A bound for "soon" on a noisy shared 2-core machine.
pub const LATE: Duration = Duration::from_secs(2);

/// Runs `body` on its own thread and returns its result, or fails the test
/// with "timed out after {secs} s waiting for {what}" if it has not finished
/// by then. A panic in `body` is passed on unchanged.
///
/// A body that hangs is left behind on its thread; the test process exits
/// when the harness is done, which ends it.
pub fn within<T, F>(secs: u64, what: &str, body: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    let thread = thread::Builder::new()
        .name("bounded-test".into())
        .spawn(move || {
            let result = panic::catch_unwind(AssertUnwindSafe(body));
            let _ = tx.send(result);
        })
        .expect("spawn the test body's thread");
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(Ok(value)) => {
            thread.join().expect("join the test body's thread");
            value
        }
        Ok(Err(payload)) => panic::resume_unwind(payload),
        Err(_) => panic!("timed out after {secs} s waiting for {what}"),
    }
}

/// Bounds a future inside a bulwark runtime: its output, or fails the test
/// with "timed out after {secs} s waiting for {what}".
pub async fn bounded<F: std::future::Future>(secs: u64, what: &str, f: F) -> F::Output {
    match bulwark::time::timeout(Duration::from_secs(secs), f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {secs} s waiting for {what}"),
    }
}

/// Keeps the CPU busy for `d` without sleeping (a poll that does CPU work).
pub fn spin(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Polls `cond` every millisecond until it holds; fails the test with
/// "waited {secs} s for {what}" if it does not within `secs` seconds.
pub fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "waited {secs} s for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// The text of a panic payload (`panic!` gives a `&'static str` or a `String`).
pub fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<&'static str>() {
        Ok(s) => (*s).to_string(),
        Err(payload) => match payload.downcast::<String>() {
            Ok(s) => *s,
            Err(_) => "<panic payload is not a string>".to_string(),
        },
    }
}

/// Adds one to a shared counter when dropped. A future that owns one shows,
/// through the counter, whether and how often it was dropped.
pub struct DropCounter(Arc<AtomicUsize>);

impl DropCounter {
    /// A guard that counts into `drops`.
    pub fn new(drops: &Arc<AtomicUsize>) -> Self {
        DropCounter(Arc::clone(drops))
    }
}

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Names (`comm`, truncated by Linux to 15 bytes) of this process's threads
/// whose name starts with `prefix`.
pub fn threads_named(prefix: &str) -> Vec<String> {
    let mut names = Vec::new();
    let dir = std::fs::read_dir("/proc/self/task").expect("read /proc/self/task");
    for entry in dir.flatten() {
        // A thread can exit between read_dir and read: skip it.
        if let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) {
            let comm = comm.trim_end_matches('\n');
            if comm.starts_with(prefix) {
                names.push(comm.to_string());
            }
        }
    }
    names
}

/// Tasks live now (between the first line of their body and the last) and
/// the most ever seen at once.
#[derive(Default)]
pub struct Live {
    /// Live now.
    pub now: AtomicUsize,
    /// The most live at once.
    pub peak: AtomicUsize,
}

impl Live {
    /// A task body starts.
    pub fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
    }

    /// A task body ends.
    pub fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}
