//! `yield_now`: let the other tasks run.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Yields to the scheduler: the task goes to the back of its worker's queue
/// (never the LIFO slot), so every task queued before it runs first.
///
/// # Examples
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
///
/// // One worker: a spawned task runs only when the running one lets it.
/// let rt = bulwark::runtime::Builder::new_current_thread().build().unwrap();
/// let ran = rt.block_on(rt.spawn(async {
///     let flag = Arc::new(AtomicBool::new(false));
///     let flag2 = flag.clone();
///     bulwark::spawn(async move { flag2.store(true, Ordering::SeqCst) });
///     // The child is queued; this task goes behind it.
///     bulwark::task::yield_now().await;
///     flag.load(Ordering::SeqCst)
/// }));
/// assert!(ran.unwrap(), "it ran while this task yielded");
/// ```
pub async fn yield_now() {
    YieldNow { yielded: false }.await
}

struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        // A task that wakes itself during its poll is queued behind the
        // others when the poll returns (see `task::harness`).
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
