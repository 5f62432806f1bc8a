//! The blocking pool: threads for closures that block (`spawn_blocking`).
//!
//! A queue behind a mutex and a condvar, as tokio's: a closure goes to an idle
//! thread if there is one, else to a new thread while fewer than
//! `max_blocking_threads` exist, else it waits in the queue for the next
//! thread to come free. Idle threads exit after the keep-alive (10 s by
//! default). Blocking work is slow by nature; this pool's lock is never on the
//! async hot path.

use crate::task::{self, Finish, JoinHandle, Notified, Schedule, Task, TaskMeta};
use bulwark_metrics::{BlockingSnapshot, SharedCounters};
use parking_lot::{Condvar, Mutex};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

/// Default cap on blocking threads, as tokio's.
pub(crate) const DEFAULT_MAX_THREADS: usize = 512;
/// Default time an idle blocking thread waits for work before it exits.
pub(crate) const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(10);

pub(crate) struct Pool {
    state: Mutex<State>,
    cvar: Condvar,
    max_threads: usize,
    keep_alive: Duration,
    thread_name: String,
    /// The runtime's counters for work done off the workers.
    counters: Arc<SharedCounters>,
    /// Makes the pool's runtime current on a pool thread for one closure
    /// (given by the runtime once it exists: see [`Pool::set_enter`]).
    enter: OnceLock<EnterFn>,
}

/// Enters the pool's runtime on this thread until the returned guard drops;
/// `None` once the runtime is gone.
pub(crate) type EnterFn = Box<dyn Fn() -> Option<Box<dyn std::any::Any>> + Send + Sync>;

struct State {
    queue: VecDeque<Notified<BlockingSchedule>>,
    num_threads: usize,
    num_idle: usize,
    /// Wake-ups handed to idle threads and not yet taken.
    num_notify: usize,
    shutdown: bool,
    threads: HashMap<usize, thread::JoinHandle<()>>,
    next_thread_id: usize,
    /// The thread that exited last on keep-alive; joined at shutdown so no
    /// thread outlives the runtime.
    last_exiting: Option<thread::JoinHandle<()>>,
}

/// The scheduler of a blocking task: it never waits, so it is only queued
/// once, on the pool.
pub(crate) struct BlockingSchedule {
    pool: Arc<Pool>,
}

impl Pool {
    pub(crate) fn new(
        max_threads: usize,
        keep_alive: Duration,
        thread_name: String,
        counters: Arc<SharedCounters>,
    ) -> Pool {
        Pool {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                num_threads: 0,
                num_idle: 0,
                num_notify: 0,
                shutdown: false,
                threads: HashMap::new(),
                next_thread_id: 0,
                last_exiting: None,
            }),
            cvar: Condvar::new(),
            max_threads,
            keep_alive,
            thread_name,
            counters,
            enter: OnceLock::new(),
        }
    }

    /// Gives the pool the way into its runtime: each closure then runs with
    /// the runtime current, as tokio's blocking threads do, so inside it
    /// `Handle::current()` and a bare `spawn` reach the runtime and
    /// `Handle::current().block_on(..)` works. The pool is built before the
    /// runtime that owns it, hence the late setting (the first wins).
    pub(crate) fn set_enter(&self, enter: EnterFn) {
        let _ = self.enter.set(enter);
    }

    /// The cap on the pool's threads (`Builder::max_blocking_threads`), which
    /// `block_in_place` also keeps to for the threads it starts.
    pub(crate) fn max_threads(&self) -> usize {
        self.max_threads
    }

    pub(crate) fn snapshot(&self) -> BlockingSnapshot {
        let st = self.state.lock();
        BlockingSnapshot {
            threads: st.num_threads,
            idle: st.num_idle,
            queue_depth: st.queue.len(),
        }
    }

    fn push(self: &Arc<Self>, task: Notified<BlockingSchedule>) {
        let mut st = self.state.lock();
        if st.shutdown {
            drop(st);
            // The join handle resolves as cancelled.
            task.shutdown();
            return;
        }
        st.queue.push_back(task);
        if st.num_idle > 0 {
            st.num_idle -= 1;
            st.num_notify += 1;
            self.cvar.notify_one();
        } else if st.num_threads < self.max_threads {
            let id = st.next_thread_id;
            let pool = self.clone();
            let spawned = thread::Builder::new()
                .name(self.thread_name.clone())
                .spawn(move || run_thread(pool, id));
            match spawned {
                Ok(join) => {
                    st.next_thread_id += 1;
                    st.num_threads += 1;
                    st.threads.insert(id, join);
                }
                Err(_) if st.num_threads == 0 => {
                    // No thread will ever take it: fail it rather than lose it.
                    let task = st.queue.pop_back();
                    drop(st);
                    if let Some(task) = task {
                        task.shutdown();
                    }
                }
                // A busy thread will take it when it comes free.
                Err(_) => {}
            }
        }
    }

    /// Cancels the queued closures, tells idle threads to exit and joins every
    /// thread, waiting until `deadline` at most (forever if none: a running
    /// closure cannot be interrupted).
    pub(crate) fn shutdown(&self, deadline: Option<Instant>) {
        let (queued, threads) = {
            let mut st = self.state.lock();
            st.shutdown = true;
            self.cvar.notify_all();
            let queued: Vec<_> = st.queue.drain(..).collect();
            let mut threads: Vec<_> = st.threads.drain().map(|(_, t)| t).collect();
            threads.extend(st.last_exiting.take());
            (queued, threads)
        };
        for task in queued {
            task.shutdown();
        }
        for t in threads {
            join_until(t, deadline);
        }
    }
}

/// Joins `thread`, or gives up (detaches it) at `deadline`. Never joins the
/// calling thread itself.
pub(crate) fn join_until(thread: thread::JoinHandle<()>, deadline: Option<Instant>) {
    if thread.thread().id() == thread::current().id() {
        return;
    }
    match deadline {
        None => {
            let _ = thread.join();
        }
        Some(deadline) => {
            while !thread.is_finished() {
                if Instant::now() >= deadline {
                    return;
                }
                thread::sleep(Duration::from_millis(1));
            }
            let _ = thread.join();
        }
    }
}

fn run_thread(pool: Arc<Pool>, id: usize) {
    crate::task::mark_blocking_thread();
    let mut st = pool.state.lock();
    'work: loop {
        while let Some(task) = st.queue.pop_front() {
            drop(st);
            let _entered = pool.enter.get().and_then(|enter| enter());
            if let Some(task) = task.run() {
                // Blocking tasks never wait: only if one did.
                BlockingSchedule::yield_now(task);
            }
            st = pool.state.lock();
        }
        if st.shutdown {
            break;
        }
        st.num_idle += 1;
        loop {
            let timed_out = pool.cvar.wait_for(&mut st, pool.keep_alive).timed_out();
            if st.num_notify > 0 {
                // `push` already took us off the idle count.
                st.num_notify -= 1;
                continue 'work;
            }
            if st.shutdown {
                st.num_idle -= 1;
                break 'work;
            }
            if timed_out {
                st.num_idle -= 1;
                st.num_threads -= 1;
                let me = st.threads.remove(&id);
                // The previous leaver has finished its last instructions by
                // now or will shortly; only the newest is kept for shutdown.
                let _detached = std::mem::replace(&mut st.last_exiting, me);
                return;
            }
        }
    }
    st.num_threads -= 1;
}

impl Schedule for BlockingSchedule {
    fn schedule(task: Notified<Self>) {
        // A blocking task never waits, so this only happens for an abort that
        // raced with its start: queue it so a thread completes the cancel.
        // The pool is held through an `Arc` of our own (see `Schedule`).
        let pool = task.scheduler().pool.clone();
        pool.push(task);
    }

    fn yield_now(task: Notified<Self>) {
        Self::schedule(task);
    }

    fn release(&self, _task: &Task<Self>) -> Option<Task<Self>> {
        // Blocking tasks are not in the registry: the pool's queue reaches
        // them at shutdown.
        None
    }

    fn on_finish(&self, how: Finish, spawned_at: u64) {
        // Blocking closures are bounded by their own pool, not the task
        // ceiling: they hold no permit.
        count_shared(&self.pool.counters, how);
        // Always timed, whatever `Builder::histograms` says: one clock read
        // is nothing next to a hand-off to a pool thread.
        let lifetime = crate::clock::now().saturating_sub(spawned_at);
        self.pool.counters.task_lifetime.record_shared(lifetime);
    }

    fn set_timer(
        &self,
        _deadline: std::time::Instant,
        _waker: std::task::Waker,
    ) -> bulwark_io::driver::TimerKey {
        unreachable!("blocking tasks are spawned with no deadline")
    }

    fn cancel_timer(&self, _key: bulwark_io::driver::TimerKey) {
        // Blocking tasks are spawned with no deadline, so they never have a
        // timer to cancel.
    }

    fn cancelled_unqueued(&self, _task: &Task<Self>) {
        // A blocking task waits only in the pool's queue, where a thread
        // finds it (or shutdown does).
    }

    fn on_lost(&self, _task: &Task<Self>) {
        // A blocking task finishes in its first poll, so it never waits and
        // is never lost; counted all the same, should that ever change.
        SharedCounters::bump(&self.pool.counters.lost);
    }

    fn idle_stamp(&self) -> Option<u64> {
        // Never idle (see `on_lost`).
        None
    }
}

/// A closure as a future that completes on its first poll.
struct BlockingTask<F>(Option<F>);

// The closure is never pinned: it is moved out and called.
impl<F> Unpin for BlockingTask<F> {}

impl<F: FnOnce() -> R, R> Future for BlockingTask<F> {
    type Output = R;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<R> {
        let f = self
            .0
            .take()
            .expect("a blocking task is polled once: it never returns Pending");
        Poll::Ready(f())
    }
}

/// Runs `f` on the blocking pool `pool`.
pub(crate) fn spawn_blocking<F, R>(pool: &Arc<Pool>, f: F, meta: TaskMeta) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let scheduler = BlockingSchedule { pool: pool.clone() };
    let (task, notified, join) = task::new_task(BlockingTask(Some(f)), scheduler, meta);
    // No registry: the pool's queue is how shutdown reaches a waiting closure.
    drop(task);
    SharedCounters::bump(&pool.counters.spawned);
    pool.push(notified);
    join
}

/// bulwark-io's hook for its blocking work (name lookups; see
/// `bulwark_io::blocking`): runs `job` on the blocking pool of this thread's
/// runtime, detached (its result goes back through the job's own channel).
/// Gives the job back on a thread with no runtime, and bulwark-io runs it on
/// a thread of its own.
pub(crate) fn run_for_io(
    job: bulwark_io::blocking::BlockingJob,
    site: &'static std::panic::Location<'static>,
) -> Result<(), bulwark_io::blocking::BlockingJob> {
    match crate::context::current() {
        Some(shared) => {
            drop(spawn_blocking(
                &shared.blocking,
                job,
                TaskMeta::new(Some("bulwark-io blocking"), site),
            ));
            Ok(())
        }
        None => Err(job),
    }
}

/// Counts a finish made off the workers.
pub(crate) fn count_shared(counters: &SharedCounters, how: Finish) {
    SharedCounters::bump(match how {
        Finish::Completed => &counters.completed,
        Finish::Panicked => &counters.panicked,
        Finish::Cancelled => &counters.cancelled,
        Finish::DeadlineExceeded => &counters.deadline_exceeded,
        Finish::Rejected => &counters.rejected,
        Finish::Lost => &counters.lost_cancelled,
    });
}
