//! [`Permit`] and [`Acquire`]: a kind's permits as values, and the
//! cancel-safe future that waits for one.

use super::{Kind, WaitSlot};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// One held permit of a [`Kind`]; released when dropped.
///
/// # Escape hatch
///
/// [`Permit::into_raw`] gives up the guard without releasing: the caller
/// then owns one live permit of the returned kind and must call
/// [`Kind::release`] exactly once (or adopt it again with
/// [`Permit::from_raw`]). This is how a permit crosses an API that cannot
/// carry a value, such as a task's header.
#[must_use = "a permit is released as soon as it is dropped"]
pub struct Permit {
    /// Always `Some` but inside `into_raw`, which takes it out so that
    /// `Drop` does not release.
    kind: Option<Arc<Kind>>,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("kind", &self.kind().name())
            .finish()
    }
}

impl Permit {
    /// Adopts one live permit of `kind` the caller holds (from
    /// [`Kind::try_acquire`], a granted [`WaitSlot`], or
    /// [`Permit::into_raw`]); it is released when the permit drops. Adopting
    /// a permit that is not held is a caller's bug that
    /// [`Kind::release`] reports.
    pub fn from_raw(kind: Arc<Kind>) -> Permit {
        Permit { kind: Some(kind) }
    }

    /// Gives the permit up without releasing it: the caller owns one live
    /// permit of the returned kind and must release it exactly once.
    pub fn into_raw(mut self) -> Arc<Kind> {
        match self.kind.take() {
            Some(kind) => kind,
            // `kind` is `None` only inside `into_raw` itself.
            None => unreachable!("a permit always holds its kind until into_raw"),
        }
    }

    /// The kind the permit belongs to.
    pub fn kind(&self) -> &Kind {
        // `kind` is `None` only inside `into_raw`, which consumes the permit.
        self.kind.as_deref().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(kind) = self.kind.take() {
            kind.release();
        }
    }
}

/// The kind was closed (runtime shutdown) before a permit could be granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    kind: String,
}

impl Closed {
    /// The name of the closed kind.
    pub fn kind(&self) -> &str {
        &self.kind
    }
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the ledger kind `{}` is closed (the runtime is shutting down); \
             no permit was granted",
            self.kind
        )
    }
}

impl std::error::Error for Closed {}

/// The future of [`Kind::acquire`]: resolves to a [`Permit`], or to
/// [`Closed`] once the kind is closed.
///
/// Cancel-safe: dropping it while it waits gives its place in the wait list
/// away, and if a permit was granted to it in the meantime, releases that
/// permit (to the next waiter). A permit is never lost or granted twice.
#[must_use = "futures do nothing unless polled"]
pub struct Acquire {
    kind: Arc<Kind>,
    /// The place in the wait list, once it had to wait; `None` before the
    /// first poll and after it resolved.
    slot: Option<Arc<WaitSlot>>,
}

impl fmt::Debug for Acquire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire")
            .field("kind", &self.kind.name())
            .field("slot", &self.slot)
            .finish()
    }
}

impl Acquire {
    pub(super) fn new(kind: Arc<Kind>) -> Acquire {
        Acquire { kind, slot: None }
    }

    fn closed(&self) -> Closed {
        Closed {
            kind: self.kind.name().to_owned(),
        }
    }
}

impl Future for Acquire {
    type Output = Result<Permit, Closed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let slot = match &this.slot {
            Some(slot) => {
                if slot.register(cx.waker()) {
                    return Poll::Pending;
                }
                slot.clone()
            }
            None => {
                if this.kind.is_closed() {
                    return Poll::Ready(Err(this.closed()));
                }
                if this.kind.try_acquire_fair() {
                    return Poll::Ready(Ok(Permit::from_raw(this.kind.clone())));
                }
                let slot = Arc::new(WaitSlot::new());
                slot.register(cx.waker());
                this.kind.wait(slot.clone());
                // Kept before looking: if it is still waiting, a drop from
                // now on must cancel it.
                this.slot = Some(slot.clone());
                if slot.register(cx.waker()) {
                    return Poll::Pending;
                }
                slot
            }
        };
        // The wait ended: granted or closed (never cancelled: only our drop
        // cancels). The slot is done with; dropping `this.slot` now keeps
        // `Drop` from cancelling a permit we hand out.
        this.slot = None;
        if slot.is_granted() {
            Poll::Ready(Ok(Permit::from_raw(this.kind.clone())))
        } else {
            Poll::Ready(Err(this.closed()))
        }
    }
}

impl Drop for Acquire {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            if slot.cancel() {
                // Granted as we gave up: pass it on.
                self.kind.release();
            }
        }
    }
}
