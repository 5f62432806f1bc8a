//! The readiness of one registered source, and the tasks waiting on it.
//!
//! `readiness` packs the ready bits with a tick that the driver bumps on
//! every event: a task that saw readiness, tried the operation and got
//! `WouldBlock` clears only the bits it saw, and only if no event came since
//! (same tick), so an event that raced with the attempt is never lost.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::AcqRel, Ordering::Acquire};
use std::task::{Context, Poll, Waker};

pub(crate) const READABLE: usize = 1 << 0;
pub(crate) const WRITABLE: usize = 1 << 1;
pub(crate) const READ_CLOSED: usize = 1 << 2;
pub(crate) const WRITE_CLOSED: usize = 1 << 3;
pub(crate) const ERROR: usize = 1 << 4;
/// The driver is gone: every wait ends, every operation fails.
pub(crate) const SHUTDOWN: usize = 1 << 5;
const READY_BITS: usize = (1 << 6) - 1;
const TICK_SHIFT: u32 = 16;

/// Which half of a source a task waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

impl Direction {
    fn mask(self) -> usize {
        match self {
            Direction::Read => READABLE | READ_CLOSED | ERROR | SHUTDOWN,
            Direction::Write => WRITABLE | WRITE_CLOSED | ERROR | SHUTDOWN,
        }
    }
}

/// What a task saw when it found the source ready.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadyEvent {
    pub(crate) ready: usize,
    tick: usize,
}

impl ReadyEvent {
    pub(crate) fn is_shutdown(&self) -> bool {
        self.ready & SHUTDOWN != 0
    }
}

/// The tasks waiting on each direction. Usually one each (a reader, a
/// writer), but several tasks may wait on one source (two tasks accepting on
/// one listener): all are woken, the losers find `WouldBlock` and wait again.
#[derive(Default)]
struct Waiters {
    readers: Vec<Waker>,
    writers: Vec<Waker>,
}

pub(crate) struct ScheduledIo {
    /// Matches the generation in the source's token; fixed at registration.
    pub(crate) generation: usize,
    readiness: AtomicUsize,
    waiters: Mutex<Waiters>,
}

impl ScheduledIo {
    pub(crate) fn new(generation: usize) -> ScheduledIo {
        ScheduledIo {
            generation,
            readiness: AtomicUsize::new(0),
            waiters: Mutex::new(Waiters::default()),
        }
    }

    /// The driver saw `bits`; wakers to wake go onto `wake`.
    pub(crate) fn set_readiness(&self, bits: usize, wake: &mut Vec<Waker>) {
        let _ = self.readiness.fetch_update(AcqRel, Acquire, |cur| {
            let tick = (cur >> TICK_SHIFT).wrapping_add(1);
            Some((tick << TICK_SHIFT) | (cur & READY_BITS) | bits)
        });
        let mut waiters = self.waiters.lock();
        if bits & Direction::Read.mask() != 0 {
            wake.append(&mut waiters.readers);
        }
        if bits & Direction::Write.mask() != 0 {
            wake.append(&mut waiters.writers);
        }
    }

    /// Ready for `dir`, or the task's waker is left for the driver.
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>, dir: Direction) -> Poll<ReadyEvent> {
        if let Some(ev) = self.ready_now(dir) {
            return Poll::Ready(ev);
        }
        let mut waiters = self.waiters.lock();
        let list = match dir {
            Direction::Read => &mut waiters.readers,
            Direction::Write => &mut waiters.writers,
        };
        if !list.iter().any(|w| w.will_wake(cx.waker())) {
            list.push(cx.waker().clone());
        }
        // An event between the first look and storing the waker took no
        // waker: look again under the lock the driver takes to wake.
        match self.ready_now(dir) {
            Some(ev) => Poll::Ready(ev),
            None => Poll::Pending,
        }
    }

    /// Ready for `dir` now? Stores no waker.
    pub(crate) fn ready_now(&self, dir: Direction) -> Option<ReadyEvent> {
        let cur = self.readiness.load(Acquire);
        let ready = cur & dir.mask();
        (ready != 0).then_some(ReadyEvent {
            ready,
            tick: cur >> TICK_SHIFT,
        })
    }

    /// The operation returned `WouldBlock`: forget the readiness `ev` saw,
    /// unless an event came since. Closed, error and shutdown bits stay.
    pub(crate) fn clear_readiness(&self, ev: ReadyEvent) {
        let clear = ev.ready & (READABLE | WRITABLE);
        let _ = self.readiness.fetch_update(AcqRel, Acquire, |cur| {
            (cur >> TICK_SHIFT == ev.tick).then_some(cur & !clear)
        });
    }

    /// Drops the stored wakers, waking them: the source is going away.
    pub(crate) fn wake_all(&self, bits: usize) {
        let mut wake = Vec::new();
        self.set_readiness(bits, &mut wake);
        super::wake_all(&mut wake);
    }

    /// The ready bits now (for tests).
    #[cfg(test)]
    pub(crate) fn readiness(&self) -> usize {
        self.readiness.load(Acquire) & READY_BITS
    }
}
