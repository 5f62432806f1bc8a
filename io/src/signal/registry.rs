//! The process-wide side of signals: one OS handler per signal number, a
//! self-pipe, and per signal a delivery count and its listeners' wakers.
//!
//! # From the handler to the listeners
//!
//! 1. The handler ([`on_signal`]) is installed through
//!    `signal-hook-registry` the first time anyone listens for a signal, and
//!    never removed (as tokio's): removing it would bring back the default
//!    action (for SIGINT and SIGTERM, the end of the process) while another
//!    listener may be made a moment later. It runs on whatever thread the
//!    signal lands on, in signal context, so it only stores to an atomic
//!    (the signal's `pending` flag) and writes one byte to the pipe: both
//!    async-signal-safe, neither allocates nor locks. The write is
//!    nonblocking; when the pipe is full the byte is not needed (the reader
//!    has bytes to wake it already).
//! 2. Every driver with a listener has the pipe's read end registered
//!    (a dup of it, token `SIGNAL_TOKEN` in `driver`), so whichever driver
//!    thread sees it readable calls [`dispatch`]: it drains the pipe, then
//!    takes each `pending` flag down and, for each that was up, bumps that
//!    signal's delivery count and wakes its listeners, whatever runtime they
//!    are in.
//! 3. A listener ([`Listener`]) remembers the count it has seen: a count
//!    above it is one delivery (signals that land together count once, as in
//!    tokio, and as the kernel does for a pending signal).
//!
//! # Nothing lost
//!
//! The handler raises the flag before it writes; [`dispatch`] drains before
//! it takes the flags down. A flag that dispatch does not see was raised
//! after its look, so that handler's byte was written after the drain and
//! the pipe turns readable again: the next turn delivers it. A listener
//! stores its waker under the listeners' lock and then reads the count
//! again; dispatch bumps the count before it takes that lock, so either the
//! listener sees the new count or dispatch sees its waker.

use parking_lot::Mutex;
use slab::Slab;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

/// Signal numbers this registry has a slot for: 1 to 64 (Linux's highest
/// real-time signal; other unixes stop lower).
const SLOTS: usize = 65;

/// The process's signal state, made the first time a signal is listened
/// for.
struct Globals {
    /// The handler writes here.
    sender: UnixStream,
    /// The drivers read here (each registers a dup of it).
    receiver: UnixStream,
    /// Indexed by signal number; slot 0 is unused.
    signals: Box<[Slot]>,
}

/// One signal number.
struct Slot {
    /// Raised by the handler, taken down by [`dispatch`].
    pending: AtomicBool,
    /// Deliveries so far; a listener is woken when it moves.
    delivered: AtomicU64,
    /// Whether the OS handler is installed; the lock makes two first
    /// listeners install it once.
    installed: Mutex<bool>,
    /// The listeners' wakers (`None` until one waits), by listener key.
    listeners: Mutex<Slab<Option<Waker>>>,
}

static GLOBALS: OnceLock<Globals> = OnceLock::new();

/// The signal state, made on first use (a socket pair: it can fail when the
/// process is out of fds, and is tried again next time).
fn globals() -> io::Result<&'static Globals> {
    if let Some(g) = GLOBALS.get() {
        return Ok(g);
    }
    let (sender, receiver) = UnixStream::pair()?;
    sender.set_nonblocking(true)?;
    receiver.set_nonblocking(true)?;
    let signals = (0..SLOTS)
        .map(|_| Slot {
            pending: AtomicBool::new(false),
            delivered: AtomicU64::new(0),
            installed: Mutex::new(false),
            listeners: Mutex::new(Slab::new()),
        })
        .collect();
    // Two first callers at once: one pair is kept, the other closed here.
    Ok(GLOBALS.get_or_init(|| Globals {
        sender,
        receiver,
        signals,
    }))
}

/// A new descriptor for the pipe's read end, for a driver to register.
pub(crate) fn receiver() -> io::Result<OwnedFd> {
    globals()?.receiver.as_fd().try_clone_to_owned()
}

/// The handler's action for `signal`: raise its flag, then poke the pipe.
/// Runs in signal context: an atomic store and a `write(2)` only.
fn on_signal(globals: &'static Globals, signal: usize) {
    globals.signals[signal].pending.store(true, SeqCst);
    // A full pipe fails with `WouldBlock`: it holds bytes to read already.
    // std's `write` on a socket is the bare system call; its error holds
    // the raw errno, with no allocation.
    let _ = (&globals.sender).write(&[1]);
}

/// Installs the handler for `signal` if it is not yet, and makes a listener
/// that is woken by the deliveries after this call.
///
/// Errors for a number out of range or one that cannot be caught (SIGKILL,
/// SIGSTOP) or must not be (SIGILL, SIGFPE, SIGSEGV: a handler that returns
/// would run the faulting instruction again), and when the OS refuses the
/// handler.
pub(crate) fn listen(signal: i32) -> io::Result<Listener> {
    let index = usize::try_from(signal)
        .ok()
        .filter(|&i| i > 0 && i < SLOTS)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{signal} is not a signal number bulwark can listen for"),
            )
        })?;
    if signal_hook_registry::FORBIDDEN.contains(&signal) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "refusing to listen for signal {signal}: it cannot be caught (SIGKILL, SIGSTOP) \
                 or must not be (SIGILL, SIGFPE, SIGSEGV)"
            ),
        ));
    }
    let globals = globals()?;
    let slot = &globals.signals[index];
    {
        let mut installed = slot.installed.lock();
        if !*installed {
            let action = move || on_signal(globals, index);
            // SAFETY: `register` runs `action` in signal context. It stores
            // to an atomic and calls `write(2)` on a socket (both
            // async-signal-safe), touches only `'static` data set up before
            // this call, neither allocates nor locks, and cannot panic
            // (`signals[index]` is in bounds: `index < SLOTS`). The forbidden
            // signals, on which `register` would panic, are refused above.
            unsafe { signal_hook_registry::register(signal, action) }?;
            *installed = true;
        }
    }
    let key = slot.listeners.lock().insert(None);
    Ok(Listener {
        slot,
        key,
        seen: slot.delivered.load(SeqCst),
    })
}

/// Drains the pipe and delivers what it announced: for each signal whose
/// flag was up, one more delivery, and its listeners' wakers go to `wake`.
/// Called by a driver that saw the pipe readable.
pub(crate) fn dispatch(wake: &mut Vec<Waker>) {
    let Some(globals) = GLOBALS.get() else {
        return;
    };
    let mut buf = [0u8; 128];
    // Until `WouldBlock` (empty) or an error: the pipe never closes, as
    // both ends live as long as the process.
    while matches!((&globals.receiver).read(&mut buf), Ok(n) if n > 0) {}
    for slot in globals.signals.iter() {
        if slot.pending.swap(false, SeqCst) {
            slot.delivered.fetch_add(1, SeqCst);
            let listeners = slot.listeners.lock();
            wake.extend(listeners.iter().filter_map(|(_, w)| w.clone()));
        }
    }
}

/// Every listener's waker, for a driver that shuts down: its listeners see
/// the shutdown on their next poll (others go back to waiting).
pub(crate) fn wake_all(wake: &mut Vec<Waker>) {
    let Some(globals) = GLOBALS.get() else {
        return;
    };
    for slot in globals.signals.iter() {
        let listeners = slot.listeners.lock();
        wake.extend(listeners.iter().filter_map(|(_, w)| w.clone()));
    }
}

/// One listener for one signal: its waker's place and the deliveries it has
/// seen. Removed from the signal's listeners when dropped.
#[derive(Debug)]
pub(crate) struct Listener {
    slot: &'static Slot,
    key: usize,
    seen: u64,
}

impl Listener {
    /// Ready once a delivery came since the last one this listener took;
    /// else keeps `cx`'s waker for the next.
    pub(crate) fn poll_delivery(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.take_delivery() {
            self.forget_waker();
            return Poll::Ready(());
        }
        {
            let mut listeners = self.slot.listeners.lock();
            let waker = &mut listeners[self.key];
            match waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => *waker = Some(cx.waker().clone()),
            }
        }
        // Again after the store: see "Nothing lost" above.
        if self.take_delivery() {
            self.forget_waker();
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Drops the stored waker once the wait it was for is over: a listener
    /// kept but not awaited does not wake its task at each delivery, nor
    /// keep a waker of it alive (a task waiting elsewhere with no waker is
    /// still seen as lost).
    fn forget_waker(&self) {
        self.slot.listeners.lock()[self.key] = None;
    }

    fn take_delivery(&mut self) -> bool {
        let now = self.slot.delivered.load(SeqCst);
        if now == self.seen {
            return false;
        }
        self.seen = now;
        true
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.slot.listeners.lock().remove(self.key);
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("delivered", &self.delivered.load(SeqCst))
            .finish_non_exhaustive()
    }
}
