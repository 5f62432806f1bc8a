//! A thread parker: a three-state flag in front of a condvar.
//!
//! States: `EMPTY` (no token, nobody asleep), `PARKED` (the owner is asleep on
//! the condvar, or about to be), `NOTIFIED` (a token is waiting; the next
//! `park` returns at once). `unpark` always leaves a token, so an unpark that
//! races with a park is never lost: either the parker sees the token before it
//! sleeps, or the unparker sees `PARKED` and signals the condvar while holding
//! the mutex the sleeper waits under.

use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::Duration;

const EMPTY: usize = 0;
const PARKED: usize = 1;
const NOTIFIED: usize = 2;

#[derive(Debug)]
struct Inner {
    state: AtomicUsize,
    lock: Mutex<()>,
    cvar: Condvar,
}

/// The sleeping side: one thread owns it and parks on it.
#[derive(Debug)]
pub struct Parker {
    inner: Arc<Inner>,
}

/// The waking side: any number of threads may hold a clone and unpark.
#[derive(Debug, Clone)]
pub struct Unparker {
    inner: Arc<Inner>,
}

impl Default for Parker {
    fn default() -> Self {
        Self::new()
    }
}

impl Parker {
    /// A parker with no token.
    pub fn new() -> Parker {
        Parker {
            inner: Arc::new(Inner {
                state: AtomicUsize::new(EMPTY),
                lock: Mutex::new(()),
                cvar: Condvar::new(),
            }),
        }
    }

    /// The handle that wakes this parker.
    pub fn unparker(&self) -> Unparker {
        Unparker {
            inner: self.inner.clone(),
        }
    }

    /// Sleeps until a token is available, then consumes it. Returns at once if
    /// an `unpark` came since the last `park`.
    pub fn park(&self) {
        self.inner.park(None);
    }

    /// As [`park`](Self::park), but returns after `timeout` at the latest.
    pub fn park_timeout(&self, timeout: Duration) {
        self.inner.park(Some(timeout));
    }
}

impl Unparker {
    /// Leaves a token and wakes the parker if it sleeps.
    pub fn unpark(&self) {
        self.inner.unpark();
    }

    /// A [`Waker`] whose wake unparks this parker: what `block_on` polls with.
    pub fn waker(&self) -> Waker {
        Waker::from(self.inner.clone())
    }
}

impl Inner {
    fn park(&self, timeout: Option<Duration>) {
        // Fast path: a token is already here.
        if self
            .state
            .compare_exchange(NOTIFIED, EMPTY, SeqCst, SeqCst)
            .is_ok()
        {
            return;
        }
        let mut guard = self.lock.lock();
        match self.state.compare_exchange(EMPTY, PARKED, SeqCst, SeqCst) {
            Ok(_) => {}
            Err(NOTIFIED) => {
                // The token arrived between the fast path and the lock.
                self.state.store(EMPTY, SeqCst);
                return;
            }
            Err(actual) => unreachable!("parker in state {actual}: only its owner parks"),
        }
        match timeout {
            None => loop {
                self.cvar.wait(&mut guard);
                if self
                    .state
                    .compare_exchange(NOTIFIED, EMPTY, SeqCst, SeqCst)
                    .is_ok()
                {
                    return;
                }
                // Spurious wake-up: still PARKED, sleep again.
            },
            Some(timeout) => {
                self.cvar.wait_for(&mut guard, timeout);
                // Timed out or notified: either way the state goes back to
                // EMPTY, and a token that came in the meantime is consumed.
                self.state.swap(EMPTY, SeqCst);
            }
        }
    }

    fn unpark(&self) {
        match self.state.swap(NOTIFIED, SeqCst) {
            EMPTY | NOTIFIED => {}
            PARKED => {
                // Taking the lock orders this notify after the sleeper's
                // transition to PARKED and its wait, so the signal cannot fall
                // in the gap between them.
                drop(self.lock.lock());
                self.cvar.notify_one();
            }
            actual => unreachable!("parker in unknown state {actual}"),
        }
    }
}

impl Wake for Inner {
    fn wake(self: Arc<Self>) {
        self.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn token_before_park_returns_at_once() {
        let p = Parker::new();
        p.unparker().unpark();
        p.park();
    }

    #[test]
    fn park_timeout_returns() {
        let p = Parker::new();
        let start = Instant::now();
        p.park_timeout(Duration::from_millis(10));
        assert!(start.elapsed() >= Duration::from_millis(10));
    }

    #[test]
    fn no_lost_unpark_across_threads() {
        let p = Parker::new();
        let (tx, rx) = std::sync::mpsc::channel::<Unparker>();
        let t = std::thread::spawn(move || {
            let u = rx.recv().unwrap();
            for _ in 0..10_000 {
                u.unpark();
            }
        });
        tx.send(p.unparker()).unwrap();
        // Every park returns because tokens keep coming; the last ones may
        // coalesce, so stop when the sender is done.
        while !t.is_finished() {
            p.park_timeout(Duration::from_millis(100));
        }
        t.join().unwrap();
    }
}
