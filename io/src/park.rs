//! A thread parker: a state word in front of a condvar or the driver.
//!
//! States: `EMPTY` (no token, nobody asleep), `PARKED_CONDVAR` /
//! `PARKED_DRIVER` (the owner sleeps on its condvar / in the driver, or is
//! about to), `NOTIFIED` (a token is waiting; the next `park` returns at
//! once). `unpark` always leaves a token, so an unpark racing with a park is
//! never lost: either the parker sees the token before it sleeps, or the
//! unparker sees the sleeping state and wakes the condvar (under the mutex
//! the sleeper waits with) or the driver (through its `mio::Waker`).
//!
//! A worker's parker shares the runtime's driver: whoever finds it free when
//! going to sleep blocks in it (and so serves every socket and timer); the
//! others sleep on their condvar. This is tokio's arrangement.

use crate::driver::{Driver, Handle};
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::Duration;

const EMPTY: usize = 0;
const PARKED_CONDVAR: usize = 1;
const PARKED_DRIVER: usize = 2;
const NOTIFIED: usize = 3;

/// The runtime's driver, shared by the workers' parkers; one at a time turns
/// it.
pub struct DriverSlot {
    driver: Mutex<Driver>,
    handle: Handle,
}

impl DriverSlot {
    /// Wraps `driver` for sharing.
    pub fn new(driver: Driver) -> DriverSlot {
        let handle = driver.handle().clone();
        DriverSlot {
            driver: Mutex::new(driver),
            handle,
        }
    }

    /// The driver's handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Turns the driver without blocking, if no other thread has it: what a
    /// busy worker does now and then so sockets and timers are served.
    pub fn poll_nonblocking(&self) {
        if let Some(mut driver) = self.driver.try_lock() {
            driver.turn(Some(Duration::ZERO));
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: AtomicUsize,
    lock: Mutex<()>,
    cvar: Condvar,
    driver: Option<Arc<DriverSlot>>,
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
    /// A parker that sleeps on its condvar only.
    pub fn new() -> Parker {
        Self::make(None)
    }

    /// A parker that blocks in `slot`'s driver when the driver is free.
    pub fn with_driver(slot: Arc<DriverSlot>) -> Parker {
        Self::make(Some(slot))
    }

    fn make(driver: Option<Arc<DriverSlot>>) -> Parker {
        Parker {
            inner: Arc::new(Inner {
                state: AtomicUsize::new(EMPTY),
                lock: Mutex::new(()),
                cvar: Condvar::new(),
                driver,
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
    /// an `unpark` came since the last `park`. May return spuriously (for
    /// instance after a driver turn that woke tasks).
    pub fn park(&self) {
        if let Some(slot) = &self.inner.driver {
            if let Some(mut driver) = slot.driver.try_lock() {
                self.inner.park_driver(&mut driver);
                return;
            }
        }
        self.inner.park_condvar(None);
    }

    /// As [`park`](Self::park) on the condvar, returning after `timeout` at
    /// the latest.
    pub fn park_timeout(&self, timeout: Duration) {
        self.inner.park_condvar(Some(timeout));
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
    fn park_driver(&self, driver: &mut Driver) {
        if self
            .state
            .compare_exchange(EMPTY, PARKED_DRIVER, SeqCst, SeqCst)
            .is_err()
        {
            // A token is here: consume it.
            self.state.store(EMPTY, SeqCst);
            return;
        }
        driver.turn(None);
        // Woken by an event, a timer or an unpark: any token is consumed.
        self.state.swap(EMPTY, SeqCst);
    }

    fn park_condvar(&self, timeout: Option<Duration>) {
        // Fast path: a token is already here.
        if self
            .state
            .compare_exchange(NOTIFIED, EMPTY, SeqCst, SeqCst)
            .is_ok()
        {
            return;
        }
        let mut guard = self.lock.lock();
        match self
            .state
            .compare_exchange(EMPTY, PARKED_CONDVAR, SeqCst, SeqCst)
        {
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
                // Spurious wake-up: still parked, sleep again.
            },
            Some(timeout) => {
                self.cvar.wait_for(&mut guard, timeout);
                // Timed out or notified: either way back to EMPTY, and a token
                // that came meanwhile is consumed.
                self.state.swap(EMPTY, SeqCst);
            }
        }
    }

    fn unpark(&self) {
        match self.state.swap(NOTIFIED, SeqCst) {
            EMPTY | NOTIFIED => {}
            PARKED_CONDVAR => {
                // Taking the lock orders this notify after the sleeper's
                // transition and its wait, so the signal cannot fall in the
                // gap between them.
                drop(self.lock.lock());
                self.cvar.notify_one();
            }
            PARKED_DRIVER => {
                if let Some(slot) = &self.driver {
                    slot.handle.unpark();
                }
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

impl std::fmt::Debug for DriverSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverSlot").finish_non_exhaustive()
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
    fn unpark_wakes_a_parker_blocked_in_the_driver() {
        let (driver, _handle) = Driver::new().unwrap();
        let p = Parker::with_driver(Arc::new(DriverSlot::new(driver)));
        let u = p.unparker();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            u.unpark();
        });
        let start = Instant::now();
        p.park();
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "unpark did not reach the driver"
        );
        t.join().unwrap();
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
        while !t.is_finished() {
            p.park_timeout(Duration::from_millis(100));
        }
        t.join().unwrap();
    }
}
