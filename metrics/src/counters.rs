//! Counters: single-writer per-worker slots and shared atomics.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A counter written by exactly one thread and read by any.
///
/// `bump` is a relaxed load and store rather than `fetch_add`: the owner is the
/// only writer, so no increment is lost, and the store costs no locked
/// instruction. Readers may see a slightly old value, which is all a metric
/// promises.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one. Only the owning thread may call this (see the type's docs).
    #[inline]
    pub fn bump(&self) {
        self.add(1);
    }

    /// Adds `n`. Only the owning thread may call this.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// The current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// What one worker thread counts. Each worker owns one, padded to its own
/// cache lines so that workers never share a line through their counters.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct WorkerCounters {
    /// Tasks spawned from this worker.
    pub spawned: Counter,
    /// Tasks that finished on this worker with an output.
    pub completed: Counter,
    /// Tasks whose poll panicked on this worker.
    pub panicked: Counter,
    /// Tasks cancelled (aborted or shut down) on this worker.
    pub cancelled: Counter,
    /// Tasks dropped at their deadline on this worker.
    pub deadline_exceeded: Counter,
    /// Spawns from this worker rejected by admission.
    pub rejected: Counter,
    /// Tasks cancelled on this worker because they were lost (no waker
    /// left), under the cancel policy.
    pub lost_cancelled: Counter,
    /// Tasks taken from another worker's queue.
    pub steals: Counter,
    /// Times this worker went to sleep for want of work.
    pub parks: Counter,
}

/// Counts written from threads that are not workers (spawns from outside,
/// tasks finished on the blocking pool or during shutdown).
#[derive(Debug, Default)]
pub struct SharedCounters {
    /// Tasks spawned from outside any worker.
    pub spawned: AtomicU64,
    /// Tasks that finished with an output off the workers.
    pub completed: AtomicU64,
    /// Tasks that panicked off the workers.
    pub panicked: AtomicU64,
    /// Tasks cancelled off the workers.
    pub cancelled: AtomicU64,
    /// Tasks dropped at their deadline off the workers.
    pub deadline_exceeded: AtomicU64,
    /// Spawns from outside the workers rejected by admission.
    pub rejected: AtomicU64,
    /// Tasks cancelled off the workers because they were lost.
    pub lost_cancelled: AtomicU64,
    /// Tasks found lost (idle with no waker left), under either policy:
    /// found by whichever thread drops a task's last waker, so counted here
    /// rather than per worker (it is rare).
    pub lost: AtomicU64,
    /// Tasks queued on the runtime's global queue (the injector): woken or
    /// spawned from outside the workers, or from a worker whose seat was
    /// lent.
    pub remote_schedules: AtomicU64,
    /// Lifetimes of tasks that ended off the workers (blocking tasks, tasks
    /// ended at shutdown), recorded with `record_shared`.
    pub task_lifetime: crate::Histogram,
}

impl SharedCounters {
    /// Adds one to `counter`, one of this struct's fields.
    #[inline]
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn counter_adds() {
        let c = Counter::default();
        c.bump();
        c.add(41);
        assert_eq!(c.get(), 42);
    }

    #[test]
    fn worker_counters_sit_on_their_own_lines() {
        assert!(std::mem::align_of::<WorkerCounters>() >= 128);
    }
}
