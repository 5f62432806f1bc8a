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
/// # let rt = bulwark_executor::Runtime::new().unwrap();
/// # rt.block_on(async {
/// for _ in 0..3 {
///     bulwark_executor::task::yield_now().await;
/// }
/// # });
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
