//! Task ids: unique for the life of the process, never reused.

use std::fmt;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// An opaque id that names a task for the life of the process.
///
/// Ids are unique among all tasks ever spawned by any bulwark runtime in this
/// process and are never reused; printing one gives a number.
///
/// # Examples
///
/// ```
/// use bulwark::task;
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let a = bulwark::spawn(async { task::id() });
///     let b = bulwark::spawn(async { task::id() });
///     let (a_id, b_id) = (a.id(), b.id());
///     assert_ne!(a_id, b_id);
///     assert_eq!(a.await.unwrap(), a_id, "the task sees the id its handle shows");
///     assert_eq!(b_id.to_string(), b_id.as_u64().to_string());
/// });
/// ```
#[derive(Clone, Copy, Debug, Hash, Eq, PartialEq, Ord, PartialOrd)]
pub struct Id(pub(crate) NonZeroU64);

impl Id {
    pub(crate) fn next() -> Id {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        // Relaxed: uniqueness needs only the atomicity of the add. 2^64 ids
        // do not run out.
        let n = NEXT.fetch_add(1, Relaxed);
        Id(NonZeroU64::new(n).expect("task ids start at 1 and do not wrap"))
    }

    /// The id as a number, for logs and metrics.
    pub fn as_u64(&self) -> u64 {
        self.0.get()
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
