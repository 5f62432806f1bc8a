//! The holdings: every live tracked resource handle (`bulwark::resource`),
//! with its kind, the task holding it, where it was taken and when, so that
//! a scan can find the orphans (a handle whose holder task has finished) and
//! the handles held too long (past their kind's `max_hold`).
//!
//! A handle is one entry in a sharded slab, inserted when it is tracked and
//! removed when it drops; inserts go round the shards, so threads that
//! track at once rarely share a lock, and an entry's number says its shard
//! and its place. Who decides what is an
//! orphan (the executor, which knows which tasks live) reads the entries
//! with [`Holdings::for_each`]; each entry remembers what was reported of
//! it, so a report is made once, and the drop of a reported handle can say
//! it came back.

use parking_lot::Mutex;
use slab::Slab;
use std::collections::HashMap;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;

/// One shard of the holdings.
type Shard = Mutex<Slab<Arc<Holding>>>;

/// Reported as an orphan.
pub const REPORTED_ORPHAN: u8 = 1;
/// Reported as held too long.
pub const REPORTED_LONG: u8 = 2;

/// One live tracked handle.
#[derive(Debug)]
pub struct Holding {
    id: u64,
    kind: &'static str,
    /// The id of the task holding it; 0 for none (taken outside a task).
    holder: AtomicU64,
    site: &'static Location<'static>,
    since: Instant,
    reported: AtomicU8,
}

impl Holding {
    /// The entry's number: unique among the live entries of its books
    /// (reused once the entry is gone).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The kind's name.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The id of the task holding the handle, if it was taken (or last
    /// rebound) inside a task.
    pub fn holder(&self) -> Option<u64> {
        match self.holder.load(Relaxed) {
            0 => None,
            id => Some(id),
        }
    }

    /// Moves the handle to task `holder` (or to none).
    pub fn set_holder(&self, holder: Option<u64>) {
        self.holder.store(holder.unwrap_or(0), Relaxed);
    }

    /// Where the handle was taken.
    pub fn site(&self) -> &'static Location<'static> {
        self.site
    }

    /// How long the handle has been held.
    pub fn age(&self) -> Duration {
        self.since.elapsed()
    }

    /// What was reported of it: [`REPORTED_ORPHAN`], [`REPORTED_LONG`].
    pub fn reported(&self) -> u8 {
        self.reported.load(Relaxed)
    }

    /// Marks `what` reported; true if it was not yet (the caller reports).
    pub fn mark_reported(&self, what: u8) -> bool {
        self.reported.fetch_or(what, Relaxed) & what == 0
    }
}

/// Every live tracked handle of one runtime.
#[derive(Debug)]
pub struct Holdings {
    shards: Box<[Shard]>,
    next: AtomicU64,
    /// `max_hold` per kind name.
    max_hold: Mutex<HashMap<String, Duration>>,
    orphans: AtomicU64,
    long_holds: AtomicU64,
}

impl Default for Holdings {
    fn default() -> Self {
        Holdings {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            next: AtomicU64::new(1),
            max_hold: Mutex::default(),
            orphans: AtomicU64::new(0),
            long_holds: AtomicU64::new(0),
        }
    }
}

impl Holdings {
    /// Records a handle of `kind` taken at `site` by task `holder`.
    pub fn insert(
        &self,
        kind: &'static str,
        holder: Option<u64>,
        site: &'static Location<'static>,
    ) -> Arc<Holding> {
        let shard = self.next.fetch_add(1, Relaxed) as usize % SHARDS;
        let mut slab = self.shards[shard].lock();
        let entry = slab.vacant_entry();
        let holding = Arc::new(Holding {
            id: (entry.key() * SHARDS + shard) as u64,
            kind,
            holder: AtomicU64::new(holder.unwrap_or(0)),
            site,
            since: Instant::now(),
            reported: AtomicU8::new(0),
        });
        entry.insert(holding.clone());
        holding
    }

    /// The handle dropped: its entry is removed. Returns how long it was
    /// held, for the caller to record in its kind's
    /// [`hold_time`](crate::ledger::Kind::hold_time) (the caller holds the
    /// kind; a lookup by name here would cost more than the rest of the
    /// drop).
    pub fn remove(&self, holding: &Holding) -> Duration {
        let held = holding.since.elapsed();
        let id = holding.id as usize;
        let mut slab = self.shards[id % SHARDS].lock();
        // Only this handle's own entry: a number is reused once free.
        if slab
            .get(id / SHARDS)
            .is_some_and(|h| std::ptr::eq(&**h, holding))
        {
            slab.remove(id / SHARDS);
        }
        held
    }

    /// Runs `f` on every live handle (one shard locked at a time).
    pub fn for_each(&self, mut f: impl FnMut(&Arc<Holding>)) {
        for shard in self.shards.iter() {
            let entries: Vec<Arc<Holding>> = shard.lock().iter().map(|(_, h)| h.clone()).collect();
            for h in &entries {
                f(h);
            }
        }
    }

    /// Live handles now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// True if no handle is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts a handle found orphaned (once per handle).
    pub fn count_orphan(&self) {
        self.orphans.fetch_add(1, Relaxed);
    }

    /// Counts a handle found held too long (once per handle).
    pub fn count_long_hold(&self) {
        self.long_holds.fetch_add(1, Relaxed);
    }

    /// Handles found orphaned so far.
    pub fn orphans(&self) -> u64 {
        self.orphans.load(Relaxed)
    }

    /// Handles found held too long so far.
    pub fn long_holds(&self) -> u64 {
        self.long_holds.load(Relaxed)
    }

    /// Sets how long a handle of `kind` may be held before it is reported.
    pub fn set_max_hold(&self, kind: &str, max: Duration) {
        self.max_hold.lock().insert(kind.to_string(), max);
    }

    /// How long a handle of `kind` may be held, if bounded.
    pub fn max_hold(&self, kind: &str) -> Option<Duration> {
        self.max_hold.lock().get(kind).copied()
    }
}

/// Why a handle is listed as a leak.
///
/// # Examples
///
/// A handle that outlives the task that took it is an orphan:
///
/// ```
/// use bulwark::resource::{self, LeakKind};
/// use std::time::Duration;
///
/// let rt = bulwark::Runtime::new().unwrap();
/// let task = rt.spawn(async { resource::track("upstream", "conn") });
/// let conn = rt.block_on(task).unwrap(); // the holder task has ended
/// // It is an orphan once the runtime sees the task gone (at once, or
/// // nearly: the task leaves the runtime's list just after it ends).
/// let leak = (0..1000)
///     .find_map(|_| {
///         let found = rt.handle().leaks().pop();
///         if found.is_none() {
///             std::thread::sleep(Duration::from_millis(10));
///         }
///         found
///     })
///     .expect("found within 10 s");
/// assert_eq!(leak.why, LeakKind::Orphan);
/// assert_eq!(leak.why.name(), "orphan");
/// conn.rebind(); // taken over on purpose (here: by no task): no longer an orphan
/// assert!(rt.handle().leaks().is_empty());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeakKind {
    /// Its holder task has finished and the handle is still alive.
    Orphan,
    /// It has been held longer than its kind's `max_hold`.
    HeldTooLong,
}

impl LeakKind {
    /// The reason in snake case (`"orphan"`, `"held_too_long"`), as the
    /// metrics endpoint writes it.
    pub fn name(self) -> &'static str {
        match self {
            LeakKind::Orphan => "orphan",
            LeakKind::HeldTooLong => "held_too_long",
        }
    }
}

/// One leaked (or suspect) handle, as listed.
///
/// # Examples
///
/// ```
/// use bulwark::resource::{self, LeakKind};
/// use std::time::Duration;
///
/// let rt = bulwark::runtime::Builder::new_multi_thread()
///     .resource_max_hold("db", Duration::from_millis(1))
///     .build()
///     .unwrap();
/// let (conn, line) = (rt.block_on(async { resource::track("db", "conn") }), line!());
/// std::thread::sleep(Duration::from_millis(5));
/// let leaks = rt.handle().leaks();
/// assert_eq!(leaks.len(), 1);
/// let leak = &leaks[0];
/// assert_eq!(leak.why, LeakKind::HeldTooLong);
/// assert_eq!((leak.kind.as_str(), leak.holder), ("db", None)); // taken outside a task
/// assert!(leak.age >= Duration::from_millis(5));
/// assert_eq!(leak.site.line(), line, "the line that took it");
/// drop(conn);
/// assert!(rt.handle().leaks().is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeakReport {
    /// Orphan or held too long.
    pub why: LeakKind,
    /// The kind's name.
    pub kind: String,
    /// The task that took it (or was last handed it), if any.
    pub holder: Option<u64>,
    /// How long it has been held.
    pub age: Duration,
    /// Where it was taken (`file:line:column` of the `track` call).
    pub site: &'static Location<'static>,
}

impl LeakReport {
    /// The report of `holding`, for `why`. Plumbing for the executor
    /// (`Holding` is not on the facade), hidden from the docs.
    #[doc(hidden)]
    pub fn of(holding: &Holding, why: LeakKind) -> LeakReport {
        LeakReport {
            why,
            kind: holding.kind().to_string(),
            holder: holding.holder(),
            age: holding.age(),
            site: holding.site(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_and_go_and_are_reported_once() {
        let h = Holdings::default();
        let a = h.insert("db", Some(7), Location::caller());
        let b = h.insert("db", None, Location::caller());
        assert_eq!(h.len(), 2);
        assert_eq!(a.holder(), Some(7));
        assert_eq!(b.holder(), None);
        assert!(a.mark_reported(REPORTED_ORPHAN));
        assert!(!a.mark_reported(REPORTED_ORPHAN));
        assert!(a.mark_reported(REPORTED_LONG));
        let mut seen = 0;
        h.for_each(|_| seen += 1);
        assert_eq!(seen, 2);
        h.remove(&a);
        h.remove(&b);
        assert!(h.is_empty());
        h.set_max_hold("db", Duration::from_secs(1));
        assert_eq!(h.max_hold("db"), Some(Duration::from_secs(1)));
        assert_eq!(h.max_hold("cache"), None);
    }
}
