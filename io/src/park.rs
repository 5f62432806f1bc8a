//! A thread parker: a state word in front of a condvar or the driver.
//!
//! States: `EMPTY` (no token, nobody asleep), `PARKED_CONDVAR` /
//! `PARKED_DRIVER` (the owner sleeps on its condvar / in the driver, or is
//! about to), `NOTIFIED` (a token is waiting; the next `park` returns at
//! once). `unpark` always leaves a token, so an unpark racing with a park is
//! never lost: either the parker sees the token before it sleeps, or the
//! unparker sees the sleeping state and wakes the condvar (under the mutex
//! the sleeper waits with) or the driver (through its `mio::Waker`). The
//! `loom_*` model at the end checks the condvar path.
//!
//! # Orderings
//!
//! Only the state word is shared, and every change to it is a read-modify-
//! write (or a store by the only thread that parks), so the state machine
//! itself needs no ordering beyond the single word's modification order;
//! nothing here needs `SeqCst`. What needs ordering is the caller's data: what
//! a thread wrote before `unpark` must be visible to the parker once `park`
//! returns on that token (as with `std::thread::park`). So `unpark` writes the
//! token with `Release`, and every read that consumes a token is `Acquire`.
//! A consume is a `swap` rather than a plain store where another `unpark`
//! may have come since the token was seen: the swap reads (and so acquires)
//! the latest token, not only the first one.
//!
//! A worker's parker shares the runtime's driver: whoever finds it free when
//! going to sleep blocks in it (and so serves every socket and timer); the
//! others sleep on their condvar. This is tokio's arrangement. A parker that
//! finds the driver taken by a *non-blocking* turn (a busy worker's
//! maintenance) sleeps at most [`BUSY_DRIVER_RETRY`] and tries again, so
//! timers and sockets are not left to a worker that went back to a long
//! poll. Under loom the driver is left out (mio cannot be modelled); the
//! condvar parker is the same code.

#[cfg(not(loom))]
use crate::driver::{Driver, Handle};
use crate::sync::{
    AtomicUsize, Condvar, Mutex, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::Duration;

const EMPTY: usize = 0;
const PARKED_CONDVAR: usize = 1;
#[cfg(not(loom))]
const PARKED_DRIVER: usize = 2;
const NOTIFIED: usize = 3;

/// How long a parker that found the driver in a non-blocking turn sleeps
/// before it tries for the driver again. Such a turn takes microseconds, but
/// the worker running it goes back to its tasks, which may poll for long; the
/// retry bounds how late a timer or socket is served then. 5 ms: a few wheel
/// ticks (1 ms each) of lateness at worst, and at most 200 extra wake-ups a
/// second per waiting worker, paid only while the driver is contended by a
/// busy worker. A driver held by a parker *blocking* in it needs no retry
/// (that thread serves everything), so idle workers still sleep untimed.
#[cfg(not(loom))]
pub const BUSY_DRIVER_RETRY: Duration = Duration::from_millis(5);

/// The runtime's driver, shared by the workers' parkers; one at a time turns
/// it.
#[cfg(not(loom))]
pub struct DriverSlot {
    driver: parking_lot::Mutex<Driver>,
    handle: Handle,
    /// True while a parker blocks in the driver (so it serves every socket
    /// and timer). A hint for a parker that finds the driver taken, read and
    /// written `Relaxed`: either reading is safe (a timed retry, or the
    /// untimed sleep of the arrangement without retries).
    blocking: std::sync::atomic::AtomicBool,
}

#[cfg(not(loom))]
impl DriverSlot {
    /// Wraps `driver` for sharing.
    pub fn new(driver: Driver) -> DriverSlot {
        let handle = driver.handle().clone();
        DriverSlot {
            driver: parking_lot::Mutex::new(driver),
            handle,
            blocking: std::sync::atomic::AtomicBool::new(false),
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

#[cfg(not(loom))]
impl std::fmt::Debug for DriverSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverSlot").finish_non_exhaustive()
    }
}

struct Inner {
    state: AtomicUsize,
    lock: Mutex<()>,
    cvar: Condvar,
    #[cfg(not(loom))]
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
    /// A parker that sleeps on its condvar only (also under loom, for the
    /// executor's models).
    pub fn new() -> Parker {
        Parker {
            inner: Arc::new(Inner {
                state: AtomicUsize::new(EMPTY),
                lock: Mutex::new(()),
                cvar: Condvar::new(),
                #[cfg(not(loom))]
                driver: None,
            }),
        }
    }

    /// A parker that blocks in `slot`'s driver when the driver is free.
    #[cfg(not(loom))]
    pub fn with_driver(slot: Arc<DriverSlot>) -> Parker {
        Parker {
            inner: Arc::new(Inner {
                state: AtomicUsize::new(EMPTY),
                lock: Mutex::new(()),
                cvar: Condvar::new(),
                driver: Some(slot),
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
    /// an `unpark` came since the last `park`. May return spuriously (after a
    /// driver turn that woke tasks, or after [`BUSY_DRIVER_RETRY`] when the
    /// driver was in another thread's non-blocking turn): callers loop.
    pub fn park(&self) {
        #[cfg(not(loom))]
        if let Some(slot) = &self.inner.driver {
            if let Some(mut driver) = slot.driver.try_lock() {
                slot.blocking.store(true, Relaxed);
                self.inner.park_driver(&mut driver);
                slot.blocking.store(false, Relaxed);
                return;
            }
            if !slot.blocking.load(Relaxed) {
                // A maintenance turn has it: come back for it soon.
                self.inner.park_condvar(Some(BUSY_DRIVER_RETRY));
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
    #[cfg(not(loom))]
    fn park_driver(&self, driver: &mut Driver) {
        // Success publishes nothing (Relaxed); a failure read a token, which
        // the swap below consumes with Acquire.
        if self
            .state
            .compare_exchange(EMPTY, PARKED_DRIVER, Relaxed, Relaxed)
            .is_err()
        {
            self.state.swap(EMPTY, Acquire);
            return;
        }
        driver.turn(None);
        // Woken by an event, a timer or an unpark: any token is consumed
        // (Acquire: see the module docs).
        self.state.swap(EMPTY, Acquire);
    }

    fn park_condvar(&self, timeout: Option<Duration>) {
        // Fast path: a token is already here (Acquire: it is consumed).
        if self
            .state
            .compare_exchange(NOTIFIED, EMPTY, Acquire, Relaxed)
            .is_ok()
        {
            return;
        }
        let mut guard = self.lock.lock();
        // Under the lock, so an unparker that sees PARKED_CONDVAR and takes
        // the lock before notifying cannot notify before the wait below.
        match self
            .state
            .compare_exchange(EMPTY, PARKED_CONDVAR, Relaxed, Relaxed)
        {
            Ok(_) => {}
            Err(NOTIFIED) => {
                // The token arrived between the fast path and the lock; a
                // swap acquires the latest unpark, not only the one seen.
                self.state.swap(EMPTY, Acquire);
                return;
            }
            // Only the owner parks, so nothing else can be here; were it
            // ever, returning is a spurious wake-up, which callers allow.
            Err(_) => return,
        }
        match timeout {
            None => loop {
                guard = self.cvar.wait(guard);
                if self
                    .state
                    .compare_exchange(NOTIFIED, EMPTY, Acquire, Relaxed)
                    .is_ok()
                {
                    return;
                }
                // Spurious wake-up: still parked, sleep again.
            },
            Some(timeout) => {
                let guard = self.cvar.wait_timeout(guard, timeout);
                // Timed out or notified: either way back to EMPTY, and a token
                // that came meanwhile is consumed.
                self.state.swap(EMPTY, Acquire);
                drop(guard);
            }
        }
    }

    fn unpark(&self) {
        // Release: what this thread wrote before unparking is seen by the
        // parker that consumes the token (with Acquire).
        match self.state.swap(NOTIFIED, Release) {
            PARKED_CONDVAR => {
                // Taking the lock orders this notify after the sleeper's
                // transition and its wait, so the signal cannot fall in the
                // gap between them.
                drop(self.lock.lock());
                self.cvar.notify_one();
            }
            #[cfg(not(loom))]
            PARKED_DRIVER => {
                if let Some(slot) = &self.driver {
                    slot.handle.unpark();
                }
            }
            // EMPTY, NOTIFIED: the token is left for the next park.
            _ => {}
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

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parker")
            .field("state", &self.state.load(Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(loom)))]
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

    #[test]
    fn a_parker_whose_driver_is_in_a_busy_turn_comes_back_for_it() {
        let (driver, _handle) = Driver::new().unwrap();
        let slot = Arc::new(DriverSlot::new(driver));
        let p = Parker::with_driver(slot.clone());
        // Another thread holds the driver as a maintenance turn would (not
        // blocking in it), for as long as the test wants.
        let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
        let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
        let holder = {
            let slot = slot.clone();
            std::thread::spawn(move || {
                let _driver = slot.driver.lock();
                held_tx.send(()).unwrap();
                let _ = hold_rx.recv_timeout(Duration::from_secs(30));
            })
        };
        held_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let parker = std::thread::spawn(move || {
            // No unpark ever comes: before the fix this slept for good.
            p.park();
            done_tx.send(()).unwrap();
            p
        });
        let returned = done_rx.recv_timeout(Duration::from_secs(5));
        hold_tx.send(()).unwrap();
        holder.join().unwrap();
        assert!(
            returned.is_ok(),
            "the parker never came back for the driver"
        );
        let p = parker.join().unwrap();
        // With the driver free again it blocks in it, and an unpark ends that.
        let u = p.unparker();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            u.unpark();
        });
        p.park();
        t.join().unwrap();
    }

    #[test]
    fn a_parker_whose_driver_has_a_blocked_parker_sleeps_until_unparked() {
        let (driver, _handle) = Driver::new().unwrap();
        let slot = Arc::new(DriverSlot::new(driver));
        let blocker = Parker::with_driver(slot.clone());
        let unblock = blocker.unparker();
        let b = std::thread::spawn(move || blocker.park());
        // Wait (bounded) until the blocker is in the driver.
        let start = Instant::now();
        while !slot.blocking.load(Relaxed) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "blocker never parked"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let p = Parker::with_driver(slot.clone());
        let u = p.unparker();
        // Timed from before the unparker starts: the unpark comes 30 ms
        // after this at the earliest, however this thread is scheduled.
        let start = Instant::now();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            u.unpark();
        });
        p.park();
        // Returned on the unpark, not on a busy-driver retry.
        assert!(
            start.elapsed() >= Duration::from_millis(20),
            "{:?}",
            start.elapsed()
        );
        t.join().unwrap();
        unblock.unpark();
        b.join().unwrap();
    }
}

#[cfg(all(test, loom))]
mod tests {
    use super::*;
    use loom::cell::UnsafeCell;

    #[test]
    fn loom_unpark_racing_park_is_never_lost() {
        loom::model(|| {
            let p = Parker::new();
            let u = p.unparker();
            let t = loom::thread::spawn(move || u.unpark());
            // A lost unpark leaves this asleep for good: loom reports the
            // deadlock.
            p.park();
            t.join().unwrap();
        });
    }

    #[test]
    fn loom_unpark_publishes_what_was_written_before_it() {
        loom::model(|| {
            let p = Parker::new();
            let u = p.unparker();
            let data = Arc::new(UnsafeCell::new(0usize));
            let d = data.clone();
            let t = loom::thread::spawn(move || {
                // SAFETY: the only access before the unpark; the parker reads
                // only after consuming the token (loom checks the order).
                d.with_mut(|v| unsafe { *v = 1 });
                u.unpark();
            });
            p.park();
            // SAFETY: the write happened before the unpark whose token this
            // park consumed (Release/Acquire); loom reports a race if not.
            let v = data.with(|v| unsafe { *v });
            assert_eq!(v, 1);
            t.join().unwrap();
        });
    }

    #[test]
    fn loom_two_unparks_leave_one_token() {
        loom::model(|| {
            let p = Parker::new();
            let u1 = p.unparker();
            let u2 = p.unparker();
            let t1 = loom::thread::spawn(move || u1.unpark());
            let t2 = loom::thread::spawn(move || u2.unpark());
            t1.join().unwrap();
            // Both unparks are in: a token waits, whatever the interleaving.
            p.park();
            t2.join().unwrap();
        });
    }
}
