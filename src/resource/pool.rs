//! `Pool<T>`: a pool of connections (or any costly value) whose leases are
//! tracked handles, so a lease lost on some path is found, named by the
//! line that acquired it, and (with `reclaim_orphans`) worked around.
//!
//! The pool's places are the permits of its resource kind in the runtime's
//! books (budget `max_size`): `acquire` waits for a place first come first
//! served (cancel-safe), up to `acquire_timeout`, then takes an idle value
//! or makes one with the factory. A lease dropped on any path (return, `?`,
//! panic, deadline, abort, lost-task cancel) puts its value back (if
//! `recycle` says it is healthy) before it gives its place back, so the
//! next waiter finds it. An orphaned lease (alive after its holder task
//! finished) is reported as any tracked handle is; `reclaim_orphans(max)`
//! also widens the pool by up to `max` places while orphans exist, so the
//! service keeps serving through a leak, bounded.

use std::error::Error;
use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::panic::Location;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bulwark_executor::runtime::Handle;
use bulwark_metrics::ledger::Kind;
use bulwark_metrics::{Books, LeakKind};
use parking_lot::Mutex;

use super::Tracked;

type BoxError = Box<dyn Error + Send + Sync + 'static>;
type Factory<T> =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>> + Send + Sync>;
type Recycle<T> = Box<dyn Fn(&mut T) -> bool + Send + Sync>;

/// A pool of values of one resource kind, with tracked leases. Cheap to
/// clone (a handle to the same pool).
///
/// # Examples
///
/// ```
/// use bulwark::resource::Pool;
/// use std::time::Duration;
///
/// # struct Conn(u32);
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let pool = Pool::builder("db")
///         .max_size(10)
///         .acquire_timeout(Duration::from_secs(2))
///         .build(|| async { Ok::<_, std::io::Error>(Conn(42)) })
///         .unwrap();
///     let conn = pool.acquire().await.unwrap();
///     assert_eq!(conn.0, 42);
///     assert_eq!(pool.status().in_use, 1);
///     drop(conn); // back in the pool
///     assert_eq!(pool.status().idle, 1);
/// });
/// ```
pub struct Pool<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Pool<T> {
    fn clone(&self) -> Self {
        Pool {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<T> {
    kind: &'static str,
    places: Arc<Kind>,
    books: Option<Arc<Books>>,
    handle: Option<Handle>,
    max_size: usize,
    acquire_timeout: Option<Duration>,
    reclaim_max: usize,
    factory: Factory<T>,
    recycle: Option<Recycle<T>>,
    idle: Mutex<Vec<T>>,
    /// Values alive: idle, leased, and leased ones lost to orphans.
    open: AtomicUsize,
}

/// Builds a [`Pool`]: `Pool::builder(kind)`.
///
/// # Examples
///
/// ```
/// use bulwark::resource::Pool;
/// use std::time::Duration;
///
/// struct Conn {
///     healthy: bool,
/// }
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let pool = Pool::builder("db")
///         .max_size(4)
///         .acquire_timeout(Duration::from_secs(5))
///         .recycle(|conn: &mut Conn| conn.healthy) // checked on return
///         .reclaim_orphans(2)
///         .build(|| async { Ok::<_, std::io::Error>(Conn { healthy: true }) })
///         .unwrap();
///     let mut conn = pool.acquire().await.unwrap();
///     conn.healthy = false;
///     drop(conn);
///     assert_eq!(pool.status().size, 0, "an unhealthy value is dropped, not kept");
///     assert!(pool.acquire().await.unwrap().healthy, "a new one is made");
/// });
/// ```
pub struct PoolBuilder<T> {
    kind: &'static str,
    max_size: usize,
    acquire_timeout: Option<Duration>,
    reclaim_max: usize,
    recycle: Option<Recycle<T>>,
}

impl<T> fmt::Debug for PoolBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("kind", &self.kind)
            .field("max_size", &self.max_size)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("reclaim_orphans", &self.reclaim_max)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Pool<T> {
    /// A builder for a pool of the resource kind `kind`: at most 10 values,
    /// a 30 s acquire timeout (HikariCP's `connectionTimeout`), no recycle
    /// check, no orphan reclaim.
    pub fn builder(kind: &'static str) -> PoolBuilder<T> {
        PoolBuilder {
            kind,
            max_size: 10,
            acquire_timeout: Some(Duration::from_secs(30)),
            reclaim_max: 0,
            recycle: None,
        }
    }

    /// A lease on a value: an idle one, or one made by the factory. Waits
    /// (first come first served) while every place is leased, up to the
    /// acquire timeout; then, or if the factory fails, an error value.
    /// Cancel-safe. The lease records this line as where it was taken.
    #[track_caller]
    pub fn acquire(&self) -> impl Future<Output = Result<Lease<T>, PoolError>> + Send + '_ {
        let site = Location::caller();
        async move {
            let inner = &*self.inner;
            if inner.reclaim_max > 0 && inner.places.is_full() {
                inner.widen_for_orphans();
            }
            let place = inner.places.acquire();
            let permit = match inner.acquire_timeout {
                Some(d) => match bulwark_io::time::timeout(d, place).await {
                    Ok(r) => r,
                    Err(_) => {
                        return Err(PoolError::Timeout {
                            kind: inner.kind,
                            waited: d,
                        })
                    }
                },
                None => place.await,
            }
            .map_err(|_| PoolError::Closed { kind: inner.kind })?;
            let idle = inner.idle.lock().pop();
            let value = match idle {
                Some(v) => v,
                None => {
                    // The permit is dropped (the place freed) if this fails.
                    let v = (inner.factory)().await.map_err(|e| PoolError::Create {
                        kind: inner.kind,
                        source: e,
                    })?;
                    inner.open.fetch_add(1, Relaxed);
                    v
                }
            };
            Ok(Lease {
                tracked: Some(Tracked::with_permit(
                    inner.books.clone(),
                    inner.kind,
                    permit,
                    site,
                    value,
                )),
                pool: self.inner.clone(),
            })
        }
    }

    /// The pool now: its size, idle and leased values, waiters and orphans.
    pub fn status(&self) -> PoolStatus {
        let inner = &*self.inner;
        let idle = inner.idle.lock().len();
        let open = inner.open.load(Relaxed);
        PoolStatus {
            max_size: inner.max_size,
            size: open,
            idle,
            in_use: open.saturating_sub(idle),
            waiting: inner.places.waiting(),
            orphans: inner.orphans(),
            extra: inner.places.budget().saturating_sub(inner.max_size),
        }
    }
}

impl<T> Inner<T> {
    /// Orphaned leases of this pool's kind now.
    fn orphans(&self) -> usize {
        self.handle.as_ref().map_or(0, |h| {
            h.leaks()
                .iter()
                .filter(|l| l.kind == self.kind && l.why == LeakKind::Orphan)
                .count()
        })
    }

    /// Opens up to `reclaim_max` places beyond `max_size`, one per orphaned
    /// lease; closes them again as the orphans come back.
    fn widen_for_orphans(&self) {
        let extra = self.orphans().min(self.reclaim_max);
        self.places.set_budget(self.max_size + extra);
    }
}

impl<T: Send + 'static> PoolBuilder<T> {
    /// The most values alive at once (default 10).
    pub fn max_size(mut self, n: usize) -> Self {
        self.max_size = n;
        self
    }

    /// How long `acquire` waits for a place before it errs (default 30 s);
    /// `None` waits as long as it takes.
    pub fn acquire_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.acquire_timeout = timeout.into();
        self
    }

    /// A health check on return: a value for which `check` says false is
    /// dropped instead of going back to the pool (its place is freed, and the
    /// factory makes a new one when needed).
    pub fn recycle(mut self, check: impl Fn(&mut T) -> bool + Send + Sync + 'static) -> Self {
        self.recycle = Some(Box::new(check));
        self
    }

    /// While leases of this pool are orphaned (alive after their holder task
    /// finished: leaked), open up to `max` places beyond `max_size` to
    /// replace them, so the service keeps its pool through a bounded leak.
    /// The orphans are reported all the same. Off (0) by default.
    pub fn reclaim_orphans(mut self, max: usize) -> Self {
        self.reclaim_max = max;
        self
    }

    /// The pool, making values with `factory` (an async constructor that
    /// can fail) as they are needed. In a runtime, the pool's kind is
    /// registered in its books with a budget of `max_size` (replacing a
    /// `resource_budget` set for it) and its leases are tracked; outside one,
    /// the pool works the same without tracking. Errs for a `max_size` of 0.
    pub fn build<F, Fut, E>(self, factory: F) -> Result<Pool<T>, PoolError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        if self.max_size == 0 {
            return Err(PoolError::Config(
                "a pool's max_size must be at least 1".to_string(),
            ));
        }
        let handle = Handle::try_current().ok();
        let books = handle.as_ref().map(|h| h.books().clone());
        let places = match &books {
            Some(books) => {
                let kind = books.kind_or_register(self.kind);
                kind.set_budget(self.max_size);
                kind
            }
            None => Arc::new(Kind::new(self.kind, self.max_size)),
        };
        let factory: Factory<T> = Box::new(move || {
            let fut = factory();
            Box::pin(async move { fut.await.map_err(Into::into) })
        });
        Ok(Pool {
            inner: Arc::new(Inner {
                kind: self.kind,
                places,
                books,
                handle,
                max_size: self.max_size,
                acquire_timeout: self.acquire_timeout,
                reclaim_max: self.reclaim_max,
                factory,
                recycle: self.recycle,
                idle: Mutex::new(Vec::new()),
                open: AtomicUsize::new(0),
            }),
        })
    }
}

/// A value leased from a [`Pool`]: derefs to it; dropped on any path, it
/// goes back to the pool. A tracked handle: see [`Tracked`].
///
/// # Examples
///
/// ```
/// use bulwark::resource::Pool;
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let pool = Pool::builder("buffers")
///         .build(|| async { Ok::<_, std::io::Error>(Vec::<u8>::new()) })
///         .unwrap();
///     let mut buf = pool.acquire().await.unwrap();
///     buf.extend_from_slice(b"abc"); // derefs to the value
///     assert!(buf.site().is_some(), "the line that acquired it");
///     drop(buf); // back in the pool
///     let buf = pool.acquire().await.unwrap();
///     assert_eq!(&buf[..], b"abc", "the same value again");
///     let mine = buf.detach(); // out of the pool for good
///     assert_eq!(mine, b"abc");
///     assert_eq!(pool.status().size, 0);
/// });
/// ```
pub struct Lease<T> {
    tracked: Option<Tracked<T>>,
    pool: Arc<Inner<T>>,
}

impl<T> Lease<T> {
    fn tracked(&self) -> &Tracked<T> {
        self.tracked
            .as_ref()
            .expect("a lease holds its value until dropped")
    }

    /// Hands the lease to the running task on purpose (see
    /// [`Tracked::rebind`]).
    pub fn rebind(&self) {
        self.tracked().rebind();
    }

    /// The line that acquired the lease, if tracked.
    pub fn site(&self) -> Option<&'static Location<'static>> {
        self.tracked().site()
    }

    /// Takes the value out of the pool for good: its place is freed and the
    /// pool makes a new value when needed.
    pub fn detach(mut self) -> T {
        let tracked = self.tracked.take().expect("a lease holds its value");
        self.pool.open.fetch_sub(1, Relaxed);
        tracked.into_inner()
    }
}

impl<T> Deref for Lease<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.tracked()
    }
}

impl<T> DerefMut for Lease<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.tracked
            .as_mut()
            .expect("a lease holds its value until dropped")
    }
}

impl<T: fmt::Debug> fmt::Debug for Lease<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("value", &**self.tracked())
            .field("kind", &self.pool.kind)
            .finish()
    }
}

impl<T> Drop for Lease<T> {
    fn drop(&mut self) {
        let Some(tracked) = self.tracked.take() else {
            return;
        };
        let (mut value, entry) = tracked.split();
        let pool = &*self.pool;
        let healthy = pool.recycle.as_ref().is_none_or(|check| check(&mut value));
        // Above the pool's size (a place opened for an orphan that has since
        // come back), the value is closed rather than kept.
        let keep = healthy && pool.open.load(Relaxed) <= pool.places.budget().max(pool.max_size);
        if keep {
            // Back in the pool before the place is given back, so that the
            // waiter the place goes to finds it.
            pool.idle.lock().push(value);
        } else {
            pool.open.fetch_sub(1, Relaxed);
            drop(value);
        }
        // The extra places close again at the next `acquire` that finds
        // the pool full (a drop may run anywhere, even under the runtime's
        // own locks at shutdown: no scan here).
        drop(entry);
    }
}

/// A pool's state at one moment: [`Pool::status`].
///
/// # Examples
///
/// ```
/// use bulwark::resource::Pool;
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let pool = Pool::builder("db")
///         .max_size(3)
///         .build(|| async { Ok::<_, std::io::Error>(()) })
///         .unwrap();
///     let a = pool.acquire().await.unwrap();
///     let _b = pool.acquire().await.unwrap();
///     drop(a);
///     let status = pool.status();
///     assert_eq!((status.max_size, status.size), (3, 2));
///     assert_eq!((status.in_use, status.idle), (1, 1));
///     assert_eq!((status.waiting, status.orphans, status.extra), (0, 0, 0));
/// });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStatus {
    /// The most values it keeps (`max_size`).
    pub max_size: usize,
    /// Values alive: idle, leased, and leased to orphans.
    pub size: usize,
    /// Values waiting for a lease.
    pub idle: usize,
    /// Values leased (orphaned leases included).
    pub in_use: usize,
    /// Tasks waiting for a place.
    pub waiting: usize,
    /// Leases alive after the task holding them finished.
    pub orphans: usize,
    /// Places opened beyond `max_size` to replace orphaned leases
    /// (`reclaim_orphans`).
    pub extra: usize,
}

/// Why a pool could not lease a value, or be built.
///
/// # Examples
///
/// ```
/// use bulwark::resource::{Pool, PoolError};
/// use std::time::Duration;
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let pool = Pool::builder("db")
///         .max_size(1)
///         .acquire_timeout(Duration::from_millis(10))
///         .build(|| async { Ok::<_, std::io::Error>(()) })
///         .unwrap();
///     let _only = pool.acquire().await.unwrap();
///     match pool.acquire().await {
///         Err(PoolError::Timeout { kind, waited }) => {
///             assert_eq!((kind, waited), ("db", Duration::from_millis(10)))
///         }
///         other => panic!("expected a timeout, got {other:?}"),
///     }
///
///     let failing = Pool::<()>::builder("upstream")
///         .build(|| async { Err(std::io::Error::other("refused")) })
///         .unwrap();
///     let err = failing.acquire().await.unwrap_err();
///     assert!(matches!(err, PoolError::Create { kind: "upstream", .. }));
///     assert_eq!(err.to_string(), "the pool could not make a `upstream`: refused");
///
///     let bad = Pool::<()>::builder("db").max_size(0).build(|| async { Ok::<_, std::io::Error>(()) });
///     assert!(matches!(bad, Err(PoolError::Config(_))));
/// });
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum PoolError {
    /// Every place stayed leased for the whole acquire timeout.
    Timeout {
        /// The pool's kind.
        kind: &'static str,
        /// How long it waited.
        waited: Duration,
    },
    /// The runtime shut down while `acquire` waited.
    Closed {
        /// The pool's kind.
        kind: &'static str,
    },
    /// The factory failed to make a value.
    Create {
        /// The pool's kind.
        kind: &'static str,
        /// The factory's error.
        source: BoxError,
    },
    /// A bad setting at build.
    Config(String),
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::Timeout { kind, waited } => write!(
                f,
                "no `{kind}` became free within the pool's acquire timeout ({waited:?})"
            ),
            PoolError::Closed { kind } => write!(
                f,
                "the runtime shut down while waiting for a `{kind}` from the pool"
            ),
            PoolError::Create { kind, source } => {
                write!(f, "the pool could not make a `{kind}`: {source}")
            }
            PoolError::Config(why) => f.write_str(why),
        }
    }
}

impl Error for PoolError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            PoolError::Create { source, .. } => Some(&**source),
            _ => None,
        }
    }
}
