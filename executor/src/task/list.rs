//! The registry: every live task of a runtime, so that shutdown can reach the
//! idle ones (nothing else holds them but their wakers).
//!
//! Sharded by task id, each shard a slab behind its own mutex, as tokio's
//! `OwnedTasks` is sharded: spawn and completion take one uncontended lock on
//! a shard picked by id, so concurrent spawners rarely meet. This is the one
//! lock on the spawn path; the hot-path rule (no global lock, docs/ARCHITECTURE.md) gives way here until a
//! lock-free registry measures better.

use super::{Notified, Schedule, Task};
use parking_lot::Mutex;
use slab::Slab;
use std::sync::atomic::{AtomicBool, Ordering};

/// A shard on its own cache lines, so neighbouring shards' locks do not share
/// a line.
#[repr(align(128))]
struct Shard<S: 'static>(Mutex<ShardInner<S>>);

struct ShardInner<S: 'static> {
    tasks: Slab<Task<S>>,
    closed: bool,
}

pub(crate) struct Registry<S: 'static> {
    shards: Box<[Shard<S>]>,
    mask: usize,
    closed: AtomicBool,
}

impl<S: Schedule> Registry<S> {
    /// A registry with at least `min_shards` shards (rounded up to a power of
    /// two).
    pub(crate) fn new(min_shards: usize) -> Registry<S> {
        let n = min_shards.max(1).next_power_of_two();
        Registry {
            shards: (0..n)
                .map(|_| {
                    Shard(Mutex::new(ShardInner {
                        tasks: Slab::new(),
                        closed: false,
                    }))
                })
                .collect(),
            mask: n - 1,
            closed: AtomicBool::new(false),
        }
    }

    fn shard(&self, task: &Task<S>) -> &Mutex<ShardInner<S>> {
        &self.shards[task.id().as_u64() as usize & self.mask].0
    }

    /// Registers a new task. If the registry is closed (the runtime shuts
    /// down), the task is cancelled at once and `None` comes back: its join
    /// handle resolves as cancelled.
    pub(crate) fn bind(&self, task: Task<S>, notified: Notified<S>) -> Option<Notified<S>> {
        let mut shard = self.shard(&task).lock();
        if shard.closed {
            drop(shard);
            drop(notified);
            task.shutdown();
            return None;
        }
        let entry = shard.tasks.vacant_entry();
        // SAFETY: the key is only touched under this shard's lock, held here.
        unsafe { *task.registry_key().get() = entry.key() };
        entry.insert(task);
        Some(notified)
    }

    /// Takes a finished task out; gives back the registry's reference, or
    /// `None` if it was not here (never bound, or taken by shutdown).
    pub(crate) fn remove(&self, task: &Task<S>) -> Option<Task<S>> {
        let mut shard = self.shard(task).lock();
        // SAFETY: under the shard's lock.
        let key = unsafe { *task.registry_key().get() };
        match shard.tasks.get(key) {
            Some(t) if t.header_ptr() == task.header_ptr() => Some(shard.tasks.remove(key)),
            _ => None,
        }
    }

    /// Closes the registry to new tasks and cancels every task in it. Tasks a
    /// worker is polling right now are cancelled by that worker when the poll
    /// returns.
    pub(crate) fn close_and_shutdown_all(&self) {
        self.closed.store(true, Ordering::Release);
        for shard in self.shards.iter() {
            let tasks: Vec<Task<S>> = {
                let mut inner = shard.0.lock();
                inner.closed = true;
                inner.tasks.drain().collect()
            };
            // Outside the lock: dropping a future may spawn or wake.
            for task in tasks {
                task.shutdown();
            }
        }
    }

    /// Calls `f` on every registered task, one shard at a time, each shard
    /// locked only while it is walked. Spawns and completions hashed to
    /// that shard wait meanwhile; polls never take this lock, so a reader
    /// never holds up a worker's poll.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Task<S>)) {
        for shard in self.shards.iter() {
            let inner = shard.0.lock();
            for (_, task) in inner.tasks.iter() {
                f(task);
            }
        }
    }

    /// True once `close_and_shutdown_all` has begun.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}
