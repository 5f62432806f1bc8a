//! The per-poll budget: a task that finds every operation ready (a hot accept
//! or read loop) must still give the worker back now and then.
//!
//! The executor gives each task poll a budget of [`BUDGET`] operations
//! ([`with_budget`]); every IO operation spends one ([`poll_proceed`]). At
//! zero the operation returns `Pending` after waking its task, which the
//! scheduler treats as a yield. Outside a task poll there is no budget and
//! nothing is limited. This is tokio's coop scheme (tokio#4782 is the
//! starvation it prevents).

use std::cell::Cell;
use std::task::{Context, Poll};

/// Operations a task may do in one poll before it must yield (tokio: 128).
pub const BUDGET: u8 = 128;

thread_local! {
    static LEFT: Cell<Option<u8>> = const { Cell::new(None) };
}

/// Runs `f` (one task poll) with a fresh budget.
#[inline]
pub fn with_budget<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(Option<u8>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = LEFT.try_with(|l| l.set(self.0));
        }
    }
    let _restore = Restore(LEFT.with(|l| l.replace(Some(BUDGET))));
    f()
}

/// Spends one unit of the budget; `Pending` (with the task woken to run
/// again later) when it is gone.
#[inline]
pub fn poll_proceed(cx: &mut Context<'_>) -> Poll<()> {
    let left = LEFT.try_with(|l| l.get()).unwrap_or(None);
    match left {
        None => Poll::Ready(()),
        Some(0) => {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
        Some(n) => {
            let _ = LEFT.try_with(|l| l.set(Some(n - 1)));
            Poll::Ready(())
        }
    }
}

/// Gives the worker back once: `Pending` with the task woken, then ready
/// (a listener pausing between accepts, `time::advance` letting the timers
/// it made due fire).
pub(crate) struct YieldOnce(bool);

impl YieldOnce {
    pub(crate) fn new() -> YieldOnce {
        YieldOnce(false)
    }
}

impl std::future::Future for YieldOnce {
    type Output = ();

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn budget_runs_out_inside_a_poll_only() {
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(poll_proceed(&mut cx).is_ready());
        with_budget(|| {
            for _ in 0..BUDGET {
                assert!(poll_proceed(&mut cx).is_ready());
            }
            assert!(poll_proceed(&mut cx).is_pending());
        });
        assert!(poll_proceed(&mut cx).is_ready());
    }
}
