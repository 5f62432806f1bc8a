//! Leak-tracked resources: a handle that knows which task holds it, where it
//! was taken and since when, counted against its kind's budget.
//!
//! [`track`] wraps any value (a database connection, a file, a buffer from
//! a pool) in a [`Tracked`] handle of a *kind*, named by a `&'static str`
//! (`"db"`, `"upstream"`). The handle records the task holding it (the
//! running task, or none outside a task or inside `spawn_blocking`), the
//! line that called `track` (`#[track_caller]`), and the time. It derefs to
//! the value; dropping it (or [`Tracked::into_inner`]) gives its place in
//! the kind's budget back.
//!
//! - **Budgets.** `runtime::Builder::resource_budget(kind, n)` bounds the
//!   live handles of a kind: [`try_track`] past it returns the value in an
//!   [`OverBudget`] error, and [`track_wait`] waits for room, first come
//!   first served, and is cancel-safe. [`track`] never refuses (the value
//!   exists already): it counts the handle even past the budget.
//! - **Orphans.** A handle still alive after its holder task finished (moved
//!   into a global map, a detached task that never ends, `mem::forget`) is
//!   an orphan. The runtime's watchdog looks every 100 ms: an orphan is
//!   counted (`Snapshot::resource_orphans`), listed by
//!   `runtime::Handle::leaks` with its kind, holder, age and the line that
//!   took it, and logged once as a `tracing` warning (target
//!   `bulwark::resource`); if it later drops, that is logged too.
//!   [`Tracked::rebind`] hands a handle to the running task on purpose.
//! - **Long holds.** `runtime::Builder::resource_max_hold(kind, d)`
//!   reports a handle held longer than `d` the same way
//!   (`Snapshot::resource_long_holds`), as HikariCP's
//!   `leakDetectionThreshold` does.
//!
//! Outside a runtime a value is wrapped but not tracked.
//!
//! # Examples
//!
//! ```
//! use bulwark::resource::{self, OverBudget};
//!
//! let rt = bulwark::runtime::Builder::new_multi_thread()
//!     .resource_budget("db", 2)
//!     .build()
//!     .unwrap();
//! rt.block_on(async {
//!     let a = resource::track("db", "conn-a".to_string());
//!     let _b = resource::try_track("db", "conn-b".to_string()).unwrap();
//!     let refused: OverBudget<String> = resource::try_track("db", "conn-c".to_string()).unwrap_err();
//!     assert_eq!(refused.into_inner(), "conn-c");
//!     assert_eq!(a.len(), 6, "a Tracked derefs to its value");
//!     drop(a);
//!     let c = resource::track_wait("db", "conn-c".to_string()).await.unwrap();
//!     assert_eq!(c.into_inner(), "conn-c");
//! });
//! ```

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::sync::{Arc, Weak};

use bulwark_executor::runtime::Handle;
use bulwark_metrics::ledger::{Kind, Permit};
use bulwark_metrics::{Books, Holding};

mod pool;

pub use bulwark_metrics::{LeakKind, LeakReport};
pub use pool::{Lease, Pool, PoolBuilder, PoolError, PoolStatus};

/// A value of a tracked resource kind: derefs to it; dropping it gives its
/// place in the kind's budget back. See the [module docs](self).
///
/// # Examples
///
/// ```
/// use bulwark::resource;
///
/// let rt = bulwark::Runtime::new().unwrap();
/// let out = rt.block_on(rt.spawn(async {
///     let mut buf = resource::track("buffer", Vec::<u8>::new());
///     buf.push(7); // derefs to the value
///     assert_eq!(buf.kind(), Some("buffer"));
///     assert_eq!(buf.holder(), Some(bulwark::task::id().as_u64()));
///     assert!(buf.site().is_some(), "the line that took it");
///     buf.into_inner() // no longer tracked: its place is given back
/// }));
/// assert_eq!(out.unwrap(), [7]);
///
/// // Outside a runtime a value is wrapped, not tracked.
/// let plain = resource::track("buffer", 5);
/// assert_eq!((*plain, plain.kind()), (5, None));
/// ```
pub struct Tracked<T> {
    value: Option<T>,
    entry: Option<Entry>,
}

/// What a handle holds: its place in the kind's budget, and its entry in
/// the books (none for a pool's lease made outside a runtime).
struct Entry {
    tracking: Option<(Arc<Books>, Arc<Holding>)>,
    _permit: Permit,
}

impl Entry {
    fn new(
        books: Option<Arc<Books>>,
        kind: &'static str,
        permit: Permit,
        site: &'static Location<'static>,
    ) -> Entry {
        let tracking = books.map(|books| {
            let holder = bulwark_executor::task::holder_id().map(|id| id.as_u64());
            let holding = books.holdings().insert(kind, holder, site);
            (books, holding)
        });
        Entry {
            tracking,
            _permit: permit,
        }
    }

    fn holding(&self) -> Option<&Arc<Holding>> {
        self.tracking.as_ref().map(|(_, h)| h)
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        let Some((books, holding)) = &self.tracking else {
            return;
        };
        let held = books.holdings().remove(holding);
        self._permit
            .kind()
            .hold_time()
            .record_shared(held.as_nanos() as u64);
        if holding.reported() != 0 {
            tracing::warn!(
                target: "bulwark::resource",
                kind = holding.kind(),
                holder_task = holding.holder(),
                age_ms = holding.age().as_millis() as u64,
                acquired_at = %holding.site(),
                "a resource handle reported as leaked was returned",
            );
        }
    }
}

fn current_books() -> Option<Arc<Books>> {
    Handle::try_current().ok().map(|h| h.books().clone())
}

/// The kind named `kind` in `books`, registered (with no budget) if it was
/// not. The last one looked up on this thread is kept, so a thread that
/// tracks the same kind again and again does not take the books' lock.
fn kind_of(books: &Arc<Books>, kind: &'static str) -> Arc<Kind> {
    type Last = Option<(Weak<Books>, &'static str, Arc<Kind>)>;
    thread_local! {
        static LAST: RefCell<Last> = const { RefCell::new(None) };
    }
    let cached = LAST
        .try_with(|last| {
            let last = last.borrow();
            match &*last {
                Some((b, k, found))
                    if std::ptr::eq(b.as_ptr(), Arc::as_ptr(books)) && *k == kind =>
                {
                    Some(found.clone())
                }
                _ => None,
            }
        })
        .ok()
        .flatten();
    if let Some(found) = cached {
        return found;
    }
    let found = books.kind_or_register(kind);
    let _ = LAST.try_with(|last| {
        *last.borrow_mut() = Some((Arc::downgrade(books), kind, found.clone()));
    });
    found
}

/// Wraps `value` as a handle of the resource kind `kind`, held by the running
/// task, taken here. Never refuses: past the kind's budget the handle is
/// counted all the same (use [`try_track`] or [`track_wait`] to respect it).
///
/// # Examples
///
/// ```
/// use bulwark::resource;
///
/// let rt = bulwark::runtime::Builder::new_multi_thread()
///     .resource_budget("db", 1)
///     .build()
///     .unwrap();
/// rt.block_on(async {
///     let a = resource::track("db", "conn-a");
///     let b = resource::track("db", "conn-b"); // past the budget: counted all the same
///     let db = rt.metrics().kinds.into_iter().find(|k| k.name == "db").unwrap();
///     assert_eq!((db.live, db.budget), (2, 1));
///     assert_eq!((*a, *b), ("conn-a", "conn-b"));
/// });
/// ```
#[track_caller]
pub fn track<T>(kind: &'static str, value: T) -> Tracked<T> {
    let site = Location::caller();
    let entry = current_books().map(|books| {
        let permit = kind_of(&books, kind).acquire_over_budget();
        Entry::new(Some(books), kind, permit, site)
    });
    Tracked {
        value: Some(value),
        entry,
    }
}

/// As [`track`], unless the kind is at its budget: then the value comes
/// back in the error.
///
/// # Examples
///
/// ```
/// use bulwark::resource;
///
/// let rt = bulwark::runtime::Builder::new_multi_thread()
///     .resource_budget("upload", 1)
///     .build()
///     .unwrap();
/// rt.block_on(async {
///     let first = resource::try_track("upload", 1).unwrap();
///     let refused = resource::try_track("upload", 2).unwrap_err();
///     assert_eq!(refused.into_inner(), 2, "the value comes back");
///     drop(first);
///     assert!(resource::try_track("upload", 3).is_ok(), "room again");
/// });
/// ```
#[track_caller]
pub fn try_track<T>(kind: &'static str, value: T) -> Result<Tracked<T>, OverBudget<T>> {
    let site = Location::caller();
    let Some(books) = current_books() else {
        return Ok(Tracked {
            value: Some(value),
            entry: None,
        });
    };
    let k = kind_of(&books, kind);
    match k.try_acquire_permit() {
        Some(permit) => Ok(Tracked {
            value: Some(value),
            entry: Some(Entry::new(Some(books), kind, permit, site)),
        }),
        None => Err(OverBudget {
            kind,
            budget: k.budget(),
            value,
        }),
    }
}

/// As [`track`], waiting (first come first served) while the kind is at its
/// budget. Cancel-safe: dropped while it waits, it takes no place and the
/// value is dropped with it. Errors, giving the value back, if the runtime
/// shuts down while it waits.
///
/// # Examples
///
/// ```
/// use bulwark::resource;
/// use bulwark::time::{timeout, Duration};
///
/// let rt = bulwark::runtime::Builder::new_multi_thread()
///     .resource_budget("db", 1)
///     .build()
///     .unwrap();
/// rt.block_on(async {
///     let first = resource::track_wait("db", "conn-a").await.unwrap();
///     let mut second = std::pin::pin!(resource::track_wait("db", "conn-b"));
///     // At the budget it waits: it cannot finish while `first` lives.
///     assert!(timeout(Duration::from_millis(10), second.as_mut()).await.is_err());
///     drop(first);
///     let second = second.await.unwrap();
///     assert_eq!(*second, "conn-b");
/// });
/// ```
#[track_caller]
pub fn track_wait<T>(
    kind: &'static str,
    value: T,
) -> impl Future<Output = Result<Tracked<T>, Closed<T>>> {
    let site = Location::caller();
    let books = current_books();
    async move {
        let Some(books) = books else {
            return Ok(Tracked {
                value: Some(value),
                entry: None,
            });
        };
        let k = kind_of(&books, kind);
        match k.acquire().await {
            Ok(permit) => Ok(Tracked {
                value: Some(value),
                entry: Some(Entry::new(Some(books), kind, permit, site)),
            }),
            Err(_) => Err(Closed { kind, value }),
        }
    }
}

impl<T> Tracked<T> {
    /// A handle of a value whose place (`permit`) the caller already took:
    /// tracked in `books` if given, else only holding the permit.
    fn with_permit(
        books: Option<Arc<Books>>,
        kind: &'static str,
        permit: Permit,
        site: &'static Location<'static>,
        value: T,
    ) -> Tracked<T> {
        Tracked {
            value: Some(value),
            entry: Some(Entry::new(books, kind, permit, site)),
        }
    }

    /// Takes the value and the handle's entry apart: the caller puts the
    /// value away, then drops the entry to give the place back.
    fn split(mut self) -> (T, Option<Entry>) {
        let entry = self.entry.take();
        let value = self
            .value
            .take()
            .expect("a Tracked holds its value until consumed");
        (value, entry)
    }

    /// The value, no longer tracked: its place in the budget is given back.
    pub fn into_inner(mut self) -> T {
        self.entry = None;
        self.value
            .take()
            .expect("a Tracked holds its value until consumed")
    }

    /// Hands the handle to the running task (or to none, outside a task): a
    /// hand-over made on purpose, so that the old holder's end does not make
    /// it an orphan.
    pub fn rebind(&self) {
        if let Some(holding) = self.holding() {
            let holder = bulwark_executor::task::holder_id().map(|id| id.as_u64());
            holding.set_holder(holder);
        }
    }

    fn holding(&self) -> Option<&Arc<Holding>> {
        self.entry.as_ref().and_then(Entry::holding)
    }

    /// The kind's name, if the handle is tracked (it was made in a runtime).
    pub fn kind(&self) -> Option<&str> {
        self.holding().map(|h| h.kind())
    }

    /// The line that took the handle, if it is tracked.
    pub fn site(&self) -> Option<&'static Location<'static>> {
        self.holding().map(|h| h.site())
    }

    /// The id of the task holding it, if tracked and held by a task.
    pub fn holder(&self) -> Option<u64> {
        self.holding().and_then(|h| h.holder())
    }
}

impl<T> Deref for Tracked<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.value
            .as_ref()
            .expect("a Tracked holds its value until consumed")
    }
}

impl<T> DerefMut for Tracked<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value
            .as_mut()
            .expect("a Tracked holds its value until consumed")
    }
}

impl<T: fmt::Debug> fmt::Debug for Tracked<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracked")
            .field("value", &self.value)
            .field("kind", &self.kind())
            .field("holder", &self.holder())
            .field("site", &self.site().map(|l| l.to_string()))
            .finish()
    }
}

/// [`try_track`] met the kind's budget; the value is given back.
///
/// # Examples
///
/// ```
/// use bulwark::resource;
///
/// let rt = bulwark::runtime::Builder::new_multi_thread()
///     .resource_budget("db", 1)
///     .build()
///     .unwrap();
/// rt.block_on(async {
///     let _held = resource::track("db", "conn-a");
///     let refused = resource::try_track("db", "conn-b").unwrap_err();
///     assert_eq!((refused.kind(), refused.budget()), ("db", 1));
///     assert_eq!(
///         refused.to_string(),
///         "the resource kind `db` is at its budget of 1 live handles"
///     );
///     assert_eq!(refused.into_inner(), "conn-b");
/// });
/// ```
pub struct OverBudget<T> {
    kind: &'static str,
    budget: usize,
    value: T,
}

impl<T> OverBudget<T> {
    /// The value that was not tracked.
    pub fn into_inner(self) -> T {
        self.value
    }

    /// The kind that is full.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Its budget.
    pub fn budget(&self) -> usize {
        self.budget
    }
}

impl<T> fmt::Debug for OverBudget<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OverBudget")
            .field("kind", &self.kind)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for OverBudget<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the resource kind `{}` is at its budget of {} live handles",
            self.kind, self.budget
        )
    }
}

impl<T> std::error::Error for OverBudget<T> {}

/// [`track_wait`] was waiting when the runtime shut down; the value is given
/// back.
///
/// # Examples
///
/// ```
/// use bulwark::resource;
/// use std::time::Duration;
///
/// let rt = bulwark::runtime::Builder::new_multi_thread()
///     .resource_budget("db", 1)
///     .build()
///     .unwrap();
/// let _held = rt.block_on(async { resource::track("db", "conn-a") });
/// // Another thread waits for room in `db`.
/// let handle = rt.handle().clone();
/// let waiter = std::thread::spawn(move || {
///     handle.block_on(async { resource::track_wait("db", "conn-b").await })
/// });
/// let waiting = |rt: &bulwark::Runtime| {
///     rt.metrics().kinds.iter().any(|k| k.name == "db" && k.waiting == 1)
/// };
/// for _ in 0..1000 {
///     if waiting(&rt) {
///         break;
///     }
///     std::thread::sleep(Duration::from_millis(10));
/// }
/// assert!(waiting(&rt));
/// drop(rt); // shut down while it waits
/// let closed = waiter.join().unwrap().unwrap_err();
/// assert_eq!(closed.kind(), "db");
/// assert_eq!(closed.into_inner(), "conn-b");
/// ```
pub struct Closed<T> {
    kind: &'static str,
    value: T,
}

impl<T> Closed<T> {
    /// The value that was not tracked.
    pub fn into_inner(self) -> T {
        self.value
    }

    /// The kind that was waited for.
    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

impl<T> fmt::Debug for Closed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Closed")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for Closed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the runtime shut down while waiting for room in the resource kind `{}`",
            self.kind
        )
    }
}

impl<T> std::error::Error for Closed<T> {}
