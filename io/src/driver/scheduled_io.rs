//! The readiness of one registered source, and the tasks waiting on it.
//!
//! `readiness` packs the ready bits with a tick that the driver bumps on
//! every event: a task that saw readiness, tried the operation and got
//! `WouldBlock` clears only the bits it saw, and only if no event came since
//! (same tick), so an event that raced with the attempt is never lost.
//!
//! A waiter is either anonymous (the `poll_*` methods of the net types: one
//! waker per task and direction, kept until the next event or until the
//! source goes away, as tokio's) or named by an id (an `async fn`'s
//! readiness future, `registration::Ready`): a named waiter is removed when
//! its future is dropped, so a cancelled task's waker (and with it the task)
//! is not pinned by a source that stays quiet.

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
    readers: Vec<Waiter>,
    writers: Vec<Waiter>,
    /// The last id handed out; ids start at 1 (0 is [`ANONYMOUS`]).
    last_id: u64,
}

/// The id of waiters that no future owns (polls from `poll_*` methods).
const ANONYMOUS: u64 = 0;

struct Waiter {
    id: u64,
    waker: Waker,
}

impl Waiters {
    fn list(&mut self, dir: Direction) -> &mut Vec<Waiter> {
        match dir {
            Direction::Read => &mut self.readers,
            Direction::Write => &mut self.writers,
        }
    }
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
            wake.extend(waiters.readers.drain(..).map(|w| w.waker));
        }
        if bits & Direction::Write.mask() != 0 {
            wake.extend(waiters.writers.drain(..).map(|w| w.waker));
        }
    }

    /// Ready for `dir`, or the task's waker is left for the driver (an
    /// anonymous waiter: it stays until the next event).
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>, dir: Direction) -> Poll<ReadyEvent> {
        let mut id = ANONYMOUS;
        self.poll_ready_as(cx, dir, &mut id)
    }

    /// As [`poll_ready`](Self::poll_ready) for a named waiter: `*id` is 0 on
    /// the first call and is given an id when a waker is stored; the owner
    /// calls [`remove_waiter`](Self::remove_waiter) with it when dropped.
    pub(crate) fn poll_ready_named(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        id: &mut u64,
    ) -> Poll<ReadyEvent> {
        if *id == ANONYMOUS {
            // Taken lazily (under the lock below) only if a waker is stored.
            let mut fresh = u64::MAX;
            let res = self.poll_ready_as(cx, dir, &mut fresh);
            if fresh != u64::MAX {
                *id = fresh;
            }
            return res;
        }
        self.poll_ready_as(cx, dir, id)
    }

    /// `*id`: `ANONYMOUS`, a named waiter's id, or `u64::MAX` for a named
    /// waiter with no id yet (replaced by the id given).
    fn poll_ready_as(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        id: &mut u64,
    ) -> Poll<ReadyEvent> {
        if let Some(ev) = self.ready_now(dir) {
            return Poll::Ready(ev);
        }
        let mut waiters = self.waiters.lock();
        if *id == u64::MAX {
            waiters.last_id += 1;
            *id = waiters.last_id;
        }
        let id = *id;
        let list = waiters.list(dir);
        let found = if id == ANONYMOUS {
            list.iter_mut()
                .find(|w| w.id == ANONYMOUS && w.waker.will_wake(cx.waker()))
        } else {
            list.iter_mut().find(|w| w.id == id)
        };
        match found {
            Some(w) => {
                if !w.waker.will_wake(cx.waker()) {
                    w.waker.clone_from(cx.waker());
                }
            }
            None => list.push(Waiter {
                id,
                waker: cx.waker().clone(),
            }),
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

    /// Forgets a named waiter (its future is dropped): its waker is dropped
    /// now rather than at the next event. An id already woken does nothing.
    pub(crate) fn remove_waiter(&self, dir: Direction, id: u64) {
        if id == ANONYMOUS {
            return;
        }
        let removed = {
            let mut waiters = self.waiters.lock();
            let list = waiters.list(dir);
            list.iter()
                .position(|w| w.id == id)
                .map(|i| list.swap_remove(i))
        };
        // Dropped outside the lock: a waker's drop is user code.
        drop(removed);
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
