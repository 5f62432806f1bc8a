//! The driver: one `mio::Poll` and the timer wheels for the whole runtime.
//!
//! Sources register in a slab; a source's mio token is its slab index with a
//! generation above it, so an event still queued for a slot that has since
//! been reused (deregistered, then taken by a new socket) names the old
//! generation and is dropped instead of waking the new owner. The slab and
//! the shutdown flag share one lock, so a source registers either before
//! shutdown (and is woken with `SHUTDOWN`) or not at all.
//!
//! Timers live in `N` wheel shards, each behind its own mutex (tokio's
//! design): a thread sets its timers in its own shard
//! ([`set_thread_timer_shard`]; the executor gives each worker its index),
//! so workers setting a deadline per task do not contend on one lock. A
//! [`TimerKey`] names its shard, so polls and cancels go to the right lock.
//!
//! [`Driver::turn`] is one round: advance every shard, block in
//! `mio::Poll::poll` until the earliest next expiration over the shards, an
//! event or an unpark (a `mio::Waker`), hand the events to their sources and
//! fire the timers due. Wakers are collected under the locks and woken after
//! them, each under `catch_unwind`: a waker is user code, and one that panics
//! must neither kill the thread turning the driver nor drop the rest of the
//! batch. Which thread turns the driver is the executor's business (see
//! `park`): one idle worker blocks in it while the others sleep on their
//! condvars, and busy workers turn it without blocking every so many ticks.
//!
//! # No lost timer wake-up
//!
//! A thread about to block announces, in each shard, the tick it may sleep
//! until (`parked_until`), in the same critical section in which it read that
//! shard's next expiration. An insert into that shard either came before
//! (the turner saw it in the next expiration) or after (the inserter sees
//! `parked_until` and unparks the driver if its deadline is earlier). The
//! value announced in a shard is never below the tick the turner really
//! sleeps until, so no earlier timer goes unnoticed; it is lowered to that
//! tick once all shards are read, which only saves spurious unparks.
//!
//! # Signals
//!
//! The first signal listener made on a runtime registers the signal
//! registry's pipe with its driver (`Handle::enable_signals`, token
//! `SIGNAL_TOKEN`); a turn that sees it readable hands the delivery to
//! `signal::dispatch`, which wakes the listeners (see `signal/registry.rs`).

mod registration;
pub(crate) mod scheduled_io;
mod wheel;

pub use registration::PollEvented;

use bulwark_metrics::{Books, DriverSnapshot};
use parking_lot::Mutex;
use scheduled_io::{ScheduledIo, ERROR, READABLE, READ_CLOSED, SHUTDOWN, WRITABLE, WRITE_CLOSED};
use slab::Slab;
use std::cell::Cell;
use std::fmt;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{
    AtomicBool, AtomicUsize, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};
use wheel::{EntryState, Wheel};

/// The token of the driver's own `mio::Waker`.
const WAKE_TOKEN: mio::Token = mio::Token(usize::MAX);
/// The token of the signal registry's pipe. Like `WAKE_TOKEN` it has the top
/// bit set, which no source's token has (see `encode`).
const SIGNAL_TOKEN: mio::Token = mio::Token(usize::MAX - 1);
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
    inner: Arc<Inner>,
}

/// Names one timer set with [`Handle::set_timer`]: its shard and its entry
/// there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerKey {
    shard: usize,
    key: wheel::Key,
}

struct Inner {
    registry: mio::Registry,
    waker: mio::Waker,
    ios: Mutex<Ios>,
    shards: Box<[Shard]>,
    start: Instant,
    /// The runtime's books: whether accepting is paused, the accept counts.
    books: Arc<Books>,
    /// The signal registry's pipe, once a signal listener was made on this
    /// runtime (registered with `SIGNAL_TOKEN`); the lock makes two first
    /// listeners register it once.
    signals: Mutex<Option<mio::net::UnixStream>>,
    /// Set once `signals` is: the fast path of `enable_signals`, and whether
    /// shutdown must wake signal listeners.
    signals_on: AtomicBool,
    /// Real time, or virtual time while a test has paused it.
    clock: crate::time::clock::Clock,
    /// Set by the executor: true when nothing in the runtime can make
    /// progress but a timer (every worker parked, no `block_on` running,
    /// the blocking pool idle), so that a paused clock may jump to the next
    /// timer.
    idle_check: std::sync::OnceLock<Box<dyn Fn() -> bool + Send + Sync>>,
}

struct Ios {
    slab: Slab<Arc<ScheduledIo>>,
    next_generation: usize,
    /// Set by `shutdown` under this lock: a `register` that takes the lock
    /// after it fails, one that took it before is in the slab shutdown wakes.
    shutdown: bool,
}

/// One timer shard. Aligned apart so two workers' locks do not share a cache
/// line.
#[repr(align(128))]
struct Shard(Mutex<Timers>);

struct Timers {
    wheel: Wheel,
    /// The tick until which a thread may sleep in the driver, as announced
    /// to this shard; 0 when nobody does. A timer due earlier must wake it.
    parked_until: u64,
    shutdown: bool,
}

thread_local! {
    /// The timer shard this thread was given (a worker's index).
    static TIMER_SHARD: Cell<Option<usize>> = const { Cell::new(None) };
    /// The shard of a thread that was given none: taken once per thread from
    /// a global counter, so the counter is touched once in a thread's life,
    /// never on an insert, and such threads spread over the shards.
    static FALLBACK_SHARD: usize = NEXT_FALLBACK_SHARD.fetch_add(1, Relaxed);
}

static NEXT_FALLBACK_SHARD: AtomicUsize = AtomicUsize::new(0);

/// Sets the timer shard this thread uses from now on: `Some(i)` puts its
/// timers in shard `i` (modulo the driver's shard count), `None` goes back
/// to a shard picked per thread. The executor calls it on each worker thread
/// with the worker's index, so a worker's timers stay on its own lock.
pub fn set_thread_timer_shard(shard: Option<usize>) {
    let _ = TIMER_SHARD.try_with(|s| s.set(shard));
}

/// This thread's shard among `n`.
fn thread_shard(n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let given = TIMER_SHARD.try_with(Cell::get).ok().flatten();
    // A thread being torn down (its locals gone) still sets timers: shard 0.
    let i = given.unwrap_or_else(|| FALLBACK_SHARD.try_with(|s| *s).unwrap_or(0));
    i % n
}

impl Driver {
    /// A new driver and its handle, with books of its own (no ceiling) and
    /// one timer shard.
    pub fn new() -> io::Result<(Driver, Handle)> {
        Self::with_books(Arc::new(Books::default()))
    }

    /// A new driver for a runtime whose admission state is in `books`, with
    /// one timer shard.
    pub fn with_books(books: Arc<Books>) -> io::Result<(Driver, Handle)> {
        Self::with_books_and_shards(books, 1)
    }

    /// A new driver for a runtime whose admission state is in `books`, with
    /// `shards` timer shards (one per worker, typically; 0 counts as 1).
    pub fn with_books_and_shards(books: Arc<Books>, shards: usize) -> io::Result<(Driver, Handle)> {
        let poll = mio::Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = mio::Waker::new(poll.registry(), WAKE_TOKEN)?;
        let shards = (0..shards.max(1))
            .map(|_| {
                Shard(Mutex::new(Timers {
                    wheel: Wheel::new(),
                    parked_until: 0,
                    shutdown: false,
                }))
            })
            .collect();
        let handle = Handle {
            inner: Arc::new(Inner {
                registry,
                waker,
                ios: Mutex::new(Ios {
                    slab: Slab::new(),
                    next_generation: 0,
                    shutdown: false,
                }),
                shards,
                start: Instant::now(),
                books,
                signals: Mutex::new(None),
                signals_on: AtomicBool::new(false),
                clock: crate::time::clock::Clock::new(),
                idle_check: std::sync::OnceLock::new(),
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
    /// event or unpark) and wakes whatever became ready. A waker that panics
    /// is caught; the others are still woken and the turn returns normally.
    pub fn turn(&mut self, max_wait: Option<Duration>) {
        let inner = &*self.handle.inner;
        // A zero wait never blocks, so there is nobody to unpark for an
        // earlier timer: no `parked_until` to announce or clear.
        let may_block = max_wait.is_none_or(|d| !d.is_zero());
        let mut next = advance_wheels(inner, &mut self.wake, may_block);
        let paused = inner.clock.is_paused();
        if paused && may_block && self.wake.is_empty() {
            if let Some(tick) = next {
                let idle = || inner.idle_check.get().is_some_and(|idle| idle());
                // Idle as the executor sees it, but a socket may be ready in
                // the kernel that no turn has seen yet (a reply a task wrote
                // on loopback just before the runtime went idle): that is
                // work, and the timer must not fire ahead of it. So look
                // first, without blocking, and jump only if nothing came.
                if idle()
                    && !poll_and_dispatch(
                        &mut self.poll,
                        &mut self.events,
                        inner,
                        &mut self.wake,
                        Some(Duration::ZERO),
                    )
                    && idle()
                {
                    // Paused and nothing else can happen: time jumps to the
                    // next timer, which fires now.
                    inner.clock.advance_to(inner.instant_of(tick));
                    next = advance_wheels(inner, &mut self.wake, may_block);
                }
            }
        }
        let until_timer = next.map(|tick| {
            if paused {
                // Paused time does not pass by waiting: look again soon
                // (something else may be running, and go idle).
                PAUSED_RECHECK
            } else {
                inner
                    .instant_of(tick)
                    .saturating_duration_since(inner.clock.now())
            }
        });
        let mut timeout = match (until_timer, max_wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if !self.wake.is_empty() {
            // Timers fired: run their tasks first, do not sleep.
            timeout = Some(Duration::ZERO);
        }
        let blocking = timeout.is_none_or(|t| !t.is_zero());
        if may_block && (!blocking || inner.shards.len() > 1) {
            // Not sleeping after all: clear the announcements (no spurious
            // unparks). Sleeping: lower each to the real wake-up tick.
            let until = if blocking {
                next.unwrap_or(u64::MAX)
            } else {
                0
            };
            for shard in inner.shards.iter() {
                let mut timers = shard.0.lock();
                timers.parked_until = timers.parked_until.min(until);
            }
        }
        wake_all(&mut self.wake);

        poll_and_dispatch(
            &mut self.poll,
            &mut self.events,
            inner,
            &mut self.wake,
            timeout,
        );
        if may_block {
            let now = inner.tick_at(inner.clock.now());
            for shard in inner.shards.iter() {
                let mut timers = shard.0.lock();
                timers.parked_until = 0;
                timers.wheel.advance(now, &mut self.wake);
            }
        }
        wake_all(&mut self.wake);
    }
}

/// Polls the sockets (waiting at most `timeout`) and puts the wakers of
/// what became ready, sockets' and signals', into `wake`. True if it put
/// any there.
fn poll_and_dispatch(
    poll: &mut mio::Poll,
    events: &mut mio::Events,
    inner: &Inner,
    wake: &mut Vec<Waker>,
    timeout: Option<Duration>,
) -> bool {
    let before = wake.len();
    if let Err(e) = poll.poll(events, timeout) {
        // EINTR and the like: the next turn polls again.
        debug_assert_eq!(e.kind(), io::ErrorKind::Interrupted, "mio poll failed: {e}");
    }
    let mut signalled = false;
    {
        let ios = inner.ios.lock();
        for event in events.iter() {
            let token = event.token();
            if token == WAKE_TOKEN {
                continue;
            }
            if token == SIGNAL_TOKEN {
                signalled = true;
                continue;
            }
            let (index, generation) = decode(token);
            match ios.slab.get(index) {
                Some(io) if io.generation == generation => {
                    io.set_readiness(ready_bits(event), wake);
                }
                // A stale event for a slot deregistered (and perhaps
                // reused) since it was queued.
                _ => {}
            }
        }
    }
    if signalled {
        crate::signal::dispatch(wake);
    }
    wake.len() > before
}

/// How often a driver turn looks again while the clock is paused and a
/// timer is pending but the runtime is not idle (a task runs, `block_on`
/// polls): paused time only moves by `advance` or when all is idle.
const PAUSED_RECHECK: Duration = Duration::from_millis(1);

/// Fires the timers due on every shard (into `wake`) and returns the
/// earliest tick still set; announces it as `parked_until` if the turn may
/// block.
fn advance_wheels(inner: &Inner, wake: &mut Vec<Waker>, may_block: bool) -> Option<u64> {
    {
        let now = inner.tick_at(inner.clock.now());
        let mut next: Option<u64> = None;
        for shard in inner.shards.iter() {
            let mut timers = shard.0.lock();
            timers.wheel.advance(now, wake);
            let shard_next = timers.wheel.next_expiration();
            if may_block {
                // Announced in the critical section that read `shard_next`:
                // see "No lost timer wake-up" above.
                timers.parked_until = shard_next.unwrap_or(u64::MAX);
            }
            next = match (next, shard_next) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        next
    }
}

/// Wakes and drains every waker in `wake`. Each wake runs under
/// `catch_unwind`: a waker is user code (any `Wake` impl), and one that
/// panics must not unwind through the driver's thread (a worker) nor keep
/// the wakers after it from being woken.
pub(crate) fn wake_all(wake: &mut Vec<Waker>) {
    for waker in wake.drain(..) {
        let _ = catch_unwind(AssertUnwindSafe(|| waker.wake()));
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
    fn deadline_tick(&self, deadline: Instant) -> u64 {
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
    /// The driver's time now: `Instant::now()`, or the virtual time of a
    /// paused clock (see [`pause`](Self::pause)). Every timer of this
    /// driver is measured on it.
    #[inline]
    pub fn now(&self) -> Instant {
        self.inner.clock.now()
    }

    /// Stops the driver's clock (`bulwark::time::pause`): timers are then
    /// due only when [`advance`](Self::advance) moves the clock, or when
    /// the runtime is idle and the clock jumps to the next timer.
    ///
    /// A running clock stops on the next tick boundary (less than 1 ms
    /// ahead), so that a timer set for "now + d" is due once
    /// [`advance`](Self::advance) has moved the clock by `d`: a deadline is
    /// rounded up to a tick and the clock's time down, and off the grid
    /// the two would stay a tick apart.
    pub fn pause(&self) {
        let clock = &self.inner.clock;
        let was_paused = clock.is_paused();
        clock.pause();
        if !was_paused {
            let now = clock.now();
            clock.advance_to(self.inner.instant_of(self.inner.deadline_tick(now)));
        }
        self.unpark();
    }

    /// Lets the clock run again from where it stands.
    pub fn resume(&self) {
        self.inner.clock.resume();
        self.unpark();
    }

    /// True while the clock has never been paused: [`now`](Self::now) is
    /// then `Instant::now()`, so a caller that needs real time can use the
    /// same read.
    #[inline]
    pub fn clock_is_real(&self) -> bool {
        self.inner.clock.is_real()
    }

    /// Whether the clock is paused.
    pub fn is_paused(&self) -> bool {
        self.inner.clock.is_paused()
    }

    /// Moves a paused clock forward by `by` and has the timers that are now
    /// due fire. False, and nothing moves, if the clock runs.
    pub fn advance(&self, by: Duration) -> bool {
        let moved = self.inner.clock.advance(by);
        self.unpark();
        moved
    }

    /// Gives the test the driver asks before a paused clock jumps to the
    /// next timer: true when nothing in the runtime can make progress but a
    /// timer. Set once, by the executor; without it a paused clock moves
    /// only by [`advance`](Self::advance).
    pub fn set_idle_check(&self, idle: Box<dyn Fn() -> bool + Send + Sync>) {
        let _ = self.inner.idle_check.set(idle);
    }

    /// Wakes the thread blocked in the driver, if any (or makes its next
    /// turn return at once).
    pub fn unpark(&self) {
        let _ = self.inner.waker.wake();
    }

    /// The driver's counts now (timers summed over the shards, accept counts
    /// from the books).
    pub fn stats(&self) -> DriverSnapshot {
        DriverSnapshot {
            registrations: self.inner.ios.lock().slab.len(),
            timers_pending: self.sum_shards(|t| t.wheel.pending()),
            accept_backoffs: self.inner.books.accept_backoffs(),
            accept_pauses: self.inner.books.accept_pauses(),
        }
    }

    /// Timer entries held by the wheels, fired-but-unread ones included:
    /// zero once every `Sleep` is gone. For tests that check nothing is left.
    pub fn timer_entries(&self) -> usize {
        self.sum_shards(|t| t.wheel.len())
    }

    fn sum_shards(&self, f: impl Fn(&Timers) -> usize) -> usize {
        self.inner.shards.iter().map(|s| f(&s.0.lock())).sum()
    }

    /// The runtime's books this driver was made with.
    pub(crate) fn books(&self) -> &Books {
        &self.inner.books
    }

    /// Ends every wait: sockets fail with an error, timers fire. Called when
    /// the driver is dropped (the runtime shut down). A waker that panics is
    /// caught; the others are still woken.
    pub fn shutdown(&self) {
        let Some(ios) = Self::begin_shutdown(&mut self.inner.ios.lock()) else {
            return;
        };
        self.finish_shutdown(ios);
    }

    /// The part of [`shutdown`](Self::shutdown) under the slab lock: sets
    /// the flag `register` checks under the same lock (so no source slips in
    /// after the collection) and collects the sources to wake. `None` if
    /// shutdown had begun already.
    fn begin_shutdown(ios: &mut Ios) -> Option<Vec<Arc<ScheduledIo>>> {
        if ios.shutdown {
            return None;
        }
        ios.shutdown = true;
        Some(ios.slab.iter().map(|(_, io)| io.clone()).collect())
    }

    fn finish_shutdown(&self, ios: Vec<Arc<ScheduledIo>>) {
        for io in ios {
            io.wake_all(SHUTDOWN);
        }
        let mut fired = Vec::new();
        if self.inner.signals_on.load(Acquire) {
            // Signal listeners of this runtime see the shutdown when polled
            // (those of other runtimes go back to waiting).
            crate::signal::wake_all(&mut fired);
        }
        for shard in self.inner.shards.iter() {
            let mut timers = shard.0.lock();
            timers.shutdown = true;
            timers.wheel.fire_all(&mut fired);
        }
        wake_all(&mut fired);
    }

    /// Sets a timer that wakes `waker` at `deadline` (at once, if it is
    /// past). Remove it with [`cancel_timer`](Self::cancel_timer) once it is
    /// no longer needed, fired or not: the entry stays until then.
    pub fn set_timer(&self, deadline: Instant, waker: &Waker) -> TimerKey {
        self.set_timer_owned(deadline, waker.clone())
    }

    /// As [`set_timer`](Self::set_timer), taking the waker by value: the
    /// wheel keeps it without a clone, or it is woken at once (consumed) if
    /// `deadline` has passed.
    pub fn set_timer_owned(&self, deadline: Instant, waker: Waker) -> TimerKey {
        let (key, back) = self.insert_owned(deadline, waker);
        if let Some(waker) = back {
            waker.wake();
        }
        key
    }

    /// Removes a timer set with [`set_timer`](Self::set_timer). A key of a
    /// timer already removed does nothing.
    pub fn cancel_timer(&self, key: TimerKey) {
        if let Some(shard) = self.inner.shards.get(key.shard) {
            shard.0.lock().wheel.remove(key.key);
        }
    }

    /// Whether the timer has fired; if not, `waker` replaces the stored one.
    /// A key unknown here (removed) reads as fired.
    pub(crate) fn poll_timer(&self, key: TimerKey, waker: &Waker) -> bool {
        match self.inner.shards.get(key.shard) {
            Some(shard) => shard.0.lock().wheel.poll_entry(key.key, waker) == EntryState::Fired,
            None => true,
        }
    }

    /// Sets a timer; wakes the driver if it sleeps past the new deadline.
    /// Returns the key and whether the deadline had already passed (the
    /// entry starts out fired and `waker` is not kept, nor woken).
    pub(crate) fn insert_timer(&self, deadline: Instant, waker: &Waker) -> (TimerKey, bool) {
        let (key, back) = self.insert_owned(deadline, waker.clone());
        (key, back.is_some())
    }

    /// Sets a timer in this thread's shard; the waker comes back if the
    /// deadline has passed.
    fn insert_owned(&self, deadline: Instant, waker: Waker) -> (TimerKey, Option<Waker>) {
        let when = self.inner.deadline_tick(deadline);
        let shard = thread_shard(self.inner.shards.len());
        let (key, back, wake_driver) = {
            let mut timers = self.inner.shards[shard].0.lock();
            let when = if timers.shutdown { 0 } else { when };
            let (key, back) = timers.wheel.insert_fired(when, waker);
            let wake_driver = back.is_none() && when < timers.parked_until;
            (key, back, wake_driver)
        };
        if wake_driver {
            self.unpark();
        }
        (TimerKey { shard, key }, back)
    }

    /// Registers the signal registry's pipe with this driver, once: from
    /// then on a turn that sees it readable delivers signals. Called by each
    /// new signal listener.
    ///
    /// # Errors
    ///
    /// After shutdown; when the pipe cannot be duplicated (out of fds) or
    /// registered.
    pub(crate) fn enable_signals(&self) -> io::Result<()> {
        if self.inner.signals_on.load(Acquire) {
            return Ok(());
        }
        let mut signals = self.inner.signals.lock();
        if signals.is_some() {
            return Ok(());
        }
        if self.is_shut_down() {
            return Err(io::Error::other(SHUT_DOWN_SIGNALS));
        }
        // A descriptor of its own for the shared pipe (as tokio does), so
        // each driver owns the source it registered. Its registration ends
        // with this driver's epoll instance, which `Inner` holds beside it
        // (epoll would keep it past a close of this descriptor alone, as
        // the pipe stays open).
        let fd = crate::signal::receiver()?;
        let mut pipe = mio::net::UnixStream::from_std(std::os::unix::net::UnixStream::from(fd));
        self.inner
            .registry
            .register(&mut pipe, SIGNAL_TOKEN, mio::Interest::READABLE)?;
        *signals = Some(pipe);
        self.inner.signals_on.store(true, Release);
        Ok(())
    }

    /// Whether the driver has shut down (its runtime is gone).
    pub(crate) fn is_shut_down(&self) -> bool {
        self.inner.ios.lock().shutdown
    }

    fn register(
        &self,
        source: &mut impl mio::event::Source,
        interest: mio::Interest,
    ) -> io::Result<(Arc<ScheduledIo>, mio::Token)> {
        let (io, token) = {
            let mut ios = self.inner.ios.lock();
            if ios.shutdown {
                return Err(io::Error::other(SHUT_DOWN));
            }
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

    fn deregister(&self, source: &mut impl mio::event::Source) -> io::Result<()> {
        self.inner.registry.deregister(source)
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
pub(crate) const SHUT_DOWN_SIGNALS: &str =
    "the bulwark runtime that delivers this signal has shut down";

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
