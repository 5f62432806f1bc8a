//! The driver: one `mio::Poll` and one timer wheel for the whole runtime.
//!
//! Sources register in a slab; a source's mio token is its slab index with a
//! generation above it, so an event still queued for a slot that has since
//! been reused (deregistered, then taken by a new socket) names the old
//! generation and is dropped instead of waking the new owner.
//!
//! [`Driver::turn`] is one round: advance the timer wheel, block in
//! `mio::Poll::poll` until the next timer, an event or an unpark (a
//! `mio::Waker`), hand the events to their sources and fire the timers due.
//! Wakers are collected under the locks and woken after them. Which thread
//! turns the driver is the executor's business (see `park`): one idle worker
//! blocks in it while the others sleep on their condvars, and busy workers
//! turn it without blocking every so many ticks.

mod registration;
pub(crate) mod scheduled_io;

pub use registration::PollEvented;

pub use crate::time::wheel::TimerKey;
use crate::time::wheel::Wheel;
use bulwark_metrics::{Books, DriverSnapshot};
use parking_lot::Mutex;
use scheduled_io::{ScheduledIo, ERROR, READABLE, READ_CLOSED, SHUTDOWN, WRITABLE, WRITE_CLOSED};
use slab::Slab;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

/// The token of the driver's own `mio::Waker`.
const WAKE_TOKEN: mio::Token = mio::Token(usize::MAX);
/// Slab indices take the low bits of a token, the generation the rest.
const INDEX_BITS: u32 = 24;
const INDEX_MASK: usize = (1 << INDEX_BITS) - 1;
/// Events handled per `mio::Poll::poll`.
const EVENTS_CAPACITY: usize = 1024;

/// Owns the poll; only the thread that holds it may turn it.
pub struct Driver {
    poll: mio::Poll,
    events: mio::Events,
    handle: Handle,
    wake: Vec<Waker>,
}

/// Shared access to the driver: registering sources, setting timers,
/// unparking the thread that blocks in it.
#[derive(Clone)]
pub struct Handle {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    registry: mio::Registry,
    waker: mio::Waker,
    ios: Mutex<Ios>,
    pub(crate) timers: Mutex<Timers>,
    start: Instant,
    shutdown: AtomicBool,
    /// `accept` failures for want of fds or memory, each followed by a
    /// back-off instead of a retry.
    pub(crate) accept_backoffs: AtomicU64,
    /// Times a listener waited because admission paused accepting.
    pub(crate) accept_pauses: AtomicU64,
    /// The runtime's books: whether accepting is paused.
    pub(crate) books: Arc<Books>,
}

struct Ios {
    slab: Slab<Arc<ScheduledIo>>,
    next_generation: usize,
}

pub(crate) struct Timers {
    pub(crate) wheel: Wheel,
    /// The tick until which a thread sleeps in the driver; 0 when nobody
    /// does. A timer due earlier must wake it.
    parked_until: u64,
    shutdown: bool,
}

impl Driver {
    /// A new driver and its handle, with books of its own (no ceiling).
    pub fn new() -> io::Result<(Driver, Handle)> {
        Self::with_books(Arc::new(Books::default()))
    }

    /// A new driver for a runtime whose admission state is in `books`.
    pub fn with_books(books: Arc<Books>) -> io::Result<(Driver, Handle)> {
        let poll = mio::Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = mio::Waker::new(poll.registry(), WAKE_TOKEN)?;
        let handle = Handle {
            inner: Arc::new(Inner {
                registry,
                waker,
                ios: Mutex::new(Ios {
                    slab: Slab::new(),
                    next_generation: 0,
                }),
                timers: Mutex::new(Timers {
                    wheel: Wheel::new(),
                    parked_until: 0,
                    shutdown: false,
                }),
                start: Instant::now(),
                shutdown: AtomicBool::new(false),
                accept_backoffs: AtomicU64::new(0),
                accept_pauses: AtomicU64::new(0),
                books,
            }),
        };
        let driver = Driver {
            poll,
            events: mio::Events::with_capacity(EVENTS_CAPACITY),
            handle: handle.clone(),
            wake: Vec::new(),
        };
        Ok((driver, handle))
    }

    /// The handle of this driver.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// One round: waits at most `max_wait` (`None`: until the next timer,
    /// event or unpark) and wakes whatever became ready.
    pub fn turn(&mut self, max_wait: Option<Duration>) {
        let inner = &*self.handle.inner;
        let mut timeout = {
            let mut timers = inner.timers.lock();
            let now = inner.tick_at(Instant::now());
            timers.wheel.advance(now, &mut self.wake);
            let until_timer = timers.wheel.next_expiration().map(|tick| {
                inner
                    .instant_of(tick)
                    .saturating_duration_since(Instant::now())
            });
            let timeout = match (until_timer, max_wait) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let blocking = timeout.is_none_or(|t| !t.is_zero()) && self.wake.is_empty();
            timers.parked_until = if blocking {
                timers.wheel.next_expiration().unwrap_or(u64::MAX)
            } else {
                0
            };
            timeout
        };
        if !self.wake.is_empty() {
            // Timers fired: run their tasks first, do not sleep.
            timeout = Some(Duration::ZERO);
        }
        wake_all(&mut self.wake);

        if let Err(e) = self.poll.poll(&mut self.events, timeout) {
            // EINTR and the like: the next turn polls again.
            debug_assert_eq!(e.kind(), io::ErrorKind::Interrupted, "mio poll failed: {e}");
        }
        {
            let ios = inner.ios.lock();
            for event in self.events.iter() {
                let token = event.token();
                if token == WAKE_TOKEN {
                    continue;
                }
                let (index, generation) = decode(token);
                match ios.slab.get(index) {
                    Some(io) if io.generation == generation => {
                        io.set_readiness(ready_bits(event), &mut self.wake);
                    }
                    // A stale event for a slot deregistered (and perhaps
                    // reused) since it was queued.
                    _ => {}
                }
            }
        }
        {
            let mut timers = inner.timers.lock();
            timers.parked_until = 0;
            let now = inner.tick_at(Instant::now());
            timers.wheel.advance(now, &mut self.wake);
        }
        wake_all(&mut self.wake);
    }
}

fn wake_all(wake: &mut Vec<Waker>) {
    for waker in wake.drain(..) {
        waker.wake();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

fn ready_bits(event: &mio::event::Event) -> usize {
    let mut bits = 0;
    if event.is_readable() {
        bits |= READABLE;
    }
    if event.is_writable() {
        bits |= WRITABLE;
    }
    if event.is_read_closed() {
        bits |= READ_CLOSED;
    }
    if event.is_write_closed() {
        bits |= WRITE_CLOSED;
    }
    if event.is_error() {
        bits |= ERROR;
    }
    bits
}

fn encode(index: usize, generation: usize) -> mio::Token {
    let gen_bits = usize::BITS - INDEX_BITS - 1;
    let generation = generation & ((1 << gen_bits) - 1);
    mio::Token((generation << INDEX_BITS) | index)
}

fn decode(token: mio::Token) -> (usize, usize) {
    (token.0 & INDEX_MASK, token.0 >> INDEX_BITS)
}

impl Inner {
    /// The wheel tick of `t`, rounded down: what has fully elapsed.
    fn tick_at(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_millis() as u64
    }

    /// The wheel tick for a deadline, rounded up so a timer never fires
    /// early.
    pub(crate) fn deadline_tick(&self, deadline: Instant) -> u64 {
        let d = deadline.saturating_duration_since(self.start);
        let ms = d.as_millis() as u64;
        if d > Duration::from_millis(ms) {
            ms + 1
        } else {
            ms
        }
    }

    fn instant_of(&self, tick: u64) -> Instant {
        self.start + Duration::from_millis(tick)
    }
}

impl Handle {
    /// Wakes the thread blocked in the driver, if any (or makes its next
    /// turn return at once).
    pub fn unpark(&self) {
        let _ = self.inner.waker.wake();
    }

    /// The driver's counts now.
    pub fn stats(&self) -> DriverSnapshot {
        DriverSnapshot {
            registrations: self.inner.ios.lock().slab.len(),
            timers_pending: self.inner.timers.lock().wheel.pending(),
            accept_backoffs: self.inner.accept_backoffs.load(Ordering::Relaxed),
            accept_pauses: self.inner.accept_pauses.load(Ordering::Relaxed),
        }
    }

    /// Timer entries held by the wheel, fired-but-unread ones included: zero
    /// once every `Sleep` is gone. For tests that check nothing is left.
    pub fn timer_entries(&self) -> usize {
        self.inner.timers.lock().wheel.len()
    }

    /// Ends every wait: sockets fail with an error, timers fire. Called when
    /// the driver is dropped (the runtime shut down).
    pub fn shutdown(&self) {
        if self.inner.shutdown.swap(true, Ordering::SeqCst) {
            return;
        }
        let ios: Vec<_> = self
            .inner
            .ios
            .lock()
            .slab
            .iter()
            .map(|(_, io)| io.clone())
            .collect();
        for io in ios {
            io.wake_all(SHUTDOWN);
        }
        let mut fired = Vec::new();
        {
            let mut timers = self.inner.timers.lock();
            timers.shutdown = true;
            timers.wheel.fire_all(&mut fired);
        }
        fired.into_iter().for_each(Waker::wake);
    }

    pub(crate) fn is_shutdown(&self) -> bool {
        self.inner.shutdown.load(Ordering::Acquire)
    }

    /// Sets a timer that wakes `waker` at `deadline` (at once, if it is
    /// past). Remove it with [`cancel_timer`](Self::cancel_timer) once it is
    /// no longer needed, fired or not: the entry stays until then.
    pub fn set_timer(&self, deadline: Instant, waker: &Waker) -> TimerKey {
        let (key, fired) = self.insert_timer(deadline, waker);
        if fired {
            waker.wake_by_ref();
        }
        key
    }

    /// Removes a timer set with [`set_timer`](Self::set_timer).
    pub fn cancel_timer(&self, key: TimerKey) {
        self.inner.timers.lock().wheel.remove(key);
    }

    /// Sets a timer; wakes the driver if it sleeps past the new deadline.
    /// Returns the key and whether the deadline had already passed (the
    /// entry starts out fired and `waker` is not kept).
    pub(crate) fn insert_timer(&self, deadline: Instant, waker: &Waker) -> (TimerKey, bool) {
        let when = self.inner.deadline_tick(deadline);
        let (key, fired, wake_driver) = {
            let mut timers = self.inner.timers.lock();
            let when = if timers.shutdown { 0 } else { when };
            let (key, back) = timers.wheel.insert_fired(when, waker.clone());
            let fired = back.is_some();
            (key, fired, !fired && when < timers.parked_until)
        };
        if wake_driver {
            self.unpark();
        }
        (key, fired)
    }

    fn register(
        &self,
        source: &mut impl mio::event::Source,
        interest: mio::Interest,
    ) -> io::Result<(Arc<ScheduledIo>, mio::Token)> {
        if self.is_shutdown() {
            return Err(io::Error::other(SHUT_DOWN));
        }
        let (io, token) = {
            let mut ios = self.inner.ios.lock();
            let generation = ios.next_generation;
            ios.next_generation = ios.next_generation.wrapping_add(1);
            let entry = ios.slab.vacant_entry();
            let index = entry.key();
            if index > INDEX_MASK {
                return Err(io::Error::other(
                    "too many sources registered with the bulwark driver",
                ));
            }
            let io = Arc::new(ScheduledIo::new(
                generation & (usize::MAX >> INDEX_BITS >> 1),
            ));
            entry.insert(io.clone());
            (io, encode(index, generation))
        };
        if let Err(e) = self.inner.registry.register(source, token, interest) {
            self.release(&io, token);
            return Err(e);
        }
        Ok((io, token))
    }

    fn release(&self, io: &Arc<ScheduledIo>, token: mio::Token) {
        let (index, _) = decode(token);
        let mut ios = self.inner.ios.lock();
        if ios.slab.get(index).is_some_and(|cur| Arc::ptr_eq(cur, io)) {
            ios.slab.remove(index);
        }
    }
}

pub(crate) const SHUT_DOWN: &str = "the bulwark runtime that drives this socket has shut down";

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("driver::Handle").finish_non_exhaustive()
    }
}

impl fmt::Debug for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
