//! Unix signals as a stream of wake-ups: [`signal`], [`SignalKind`],
//! [`Signal`], as `tokio::signal::unix`.
//!
//! A [`Signal`] is a listener in the process-wide registry
//! (`registry.rs`), and its runtime's driver has the registry's pipe
//! registered, so a delivery wakes it like a socket event would.

use super::registry::{self, Listener};
use crate::driver::Handle;
use std::future::poll_fn;
use std::io;
use std::os::raw::c_int;
use std::task::{Context, Poll};

/// Which signal to listen for: a name for the usual ones, or any number
/// with [`from_raw`](SignalKind::from_raw). As tokio's `SignalKind`.
///
/// # Examples
///
/// ```
/// use bulwark::signal::unix::SignalKind;
///
/// assert_eq!(SignalKind::terminate().as_raw_value(), libc::SIGTERM);
/// assert_eq!(SignalKind::from_raw(libc::SIGUSR1), SignalKind::user_defined1());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignalKind(c_int);

impl SignalKind {
    /// The signal with number `signum` (no check here: [`signal`] refuses a
    /// number it cannot listen for).
    pub const fn from_raw(signum: c_int) -> SignalKind {
        SignalKind(signum)
    }

    /// The signal's number.
    pub const fn as_raw_value(&self) -> c_int {
        self.0
    }

    /// `SIGALRM`: a timer set with `alarm(2)` ran out.
    pub const fn alarm() -> SignalKind {
        SignalKind(libc::SIGALRM)
    }

    /// `SIGCHLD`: a child process stopped or ended.
    pub const fn child() -> SignalKind {
        SignalKind(libc::SIGCHLD)
    }

    /// `SIGHUP`: the terminal hung up; by convention, "reload your
    /// configuration" for a daemon.
    pub const fn hangup() -> SignalKind {
        SignalKind(libc::SIGHUP)
    }

    /// `SIGINT`: Ctrl-C at the terminal.
    pub const fn interrupt() -> SignalKind {
        SignalKind(libc::SIGINT)
    }

    /// `SIGIO`: IO is possible on a descriptor set up for it.
    pub const fn io() -> SignalKind {
        SignalKind(libc::SIGIO)
    }

    /// `SIGPIPE`: a write to a pipe or socket with no reader.
    pub const fn pipe() -> SignalKind {
        SignalKind(libc::SIGPIPE)
    }

    /// `SIGQUIT`: Ctrl-\ at the terminal.
    pub const fn quit() -> SignalKind {
        SignalKind(libc::SIGQUIT)
    }

    /// `SIGTERM`: asked to end (what `kill`, systemd and Kubernetes send
    /// first).
    pub const fn terminate() -> SignalKind {
        SignalKind(libc::SIGTERM)
    }

    /// `SIGUSR1`: the first signal for the program's own use.
    pub const fn user_defined1() -> SignalKind {
        SignalKind(libc::SIGUSR1)
    }

    /// `SIGUSR2`: the second signal for the program's own use.
    pub const fn user_defined2() -> SignalKind {
        SignalKind(libc::SIGUSR2)
    }

    /// `SIGWINCH`: the terminal's size changed.
    pub const fn window_change() -> SignalKind {
        SignalKind(libc::SIGWINCH)
    }
}

impl From<c_int> for SignalKind {
    fn from(signum: c_int) -> SignalKind {
        SignalKind(signum)
    }
}

impl From<SignalKind> for c_int {
    fn from(kind: SignalKind) -> c_int {
        kind.0
    }
}

/// A listener for one signal, made by [`signal`]: each
/// [`recv`](Signal::recv) waits for the next delivery.
///
/// Deliveries that land before `recv` is called again are kept as one (the
/// OS merges a pending signal too): a listener learns "it came", not how
/// many times. Every listener for a signal gets each delivery, in every
/// runtime of the process. Dropping the last listener does not give the
/// signal its default action back (see [`signal`]).
///
/// # Examples
///
/// ```
/// use bulwark::signal::unix::{signal, SignalKind};
///
/// let rt = bulwark::Runtime::new()?;
/// let mut reloads = rt.block_on(async {
///     let mut reloads = signal(SignalKind::user_defined1())?;
///     // SAFETY: raising a signal that has a handler (installed above).
///     unsafe { libc::raise(libc::SIGUSR1) };
///     assert_eq!(reloads.recv().await, Some(()));
///     Ok::<_, std::io::Error>(reloads)
/// })?;
///
/// // Its runtime gone, the listener ends.
/// drop(rt);
/// let other = bulwark::Runtime::new()?;
/// assert_eq!(other.block_on(reloads.recv()), None);
/// # Ok::<_, std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Signal {
    listener: Listener,
    /// The driver that delivers to this listener: `recv` ends with `None`
    /// once it has shut down.
    driver: Handle,
}

/// Listens for `kind`: the returned [`Signal`] is woken by each delivery
/// from now on. As `tokio::signal::unix::signal`.
///
/// The first listener for a signal installs a process-wide handler for it,
/// which stays for the life of the process: from then on the signal's
/// default action (for SIGINT, SIGTERM, SIGHUP: ending the process) no
/// longer happens, also once every listener is gone. A handler already
/// installed by other code is chained: it still runs.
///
/// # Errors
///
/// Outside a bulwark runtime; for a signal that cannot or must not be
/// caught (`SIGKILL`, `SIGSTOP`, `SIGILL`, `SIGFPE`, `SIGSEGV`) or a number
/// that is no signal (`InvalidInput`); when the OS refuses the handler or
/// the process is out of file descriptors (the registry's pipe is made on
/// first use).
///
/// # Examples
///
/// ```
/// use bulwark::signal::unix::{signal, SignalKind};
///
/// # let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let mut hangups = signal(SignalKind::hangup())?;
///     // SAFETY: raising a signal that has a handler (installed above).
///     unsafe { libc::raise(libc::SIGHUP) };
///     hangups.recv().await.expect("the runtime is up");
///
///     assert!(signal(SignalKind::from_raw(libc::SIGKILL)).is_err());
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn signal(kind: SignalKind) -> io::Result<Signal> {
    let driver = crate::context::current_or_err()?;
    // Refused signals fail before the driver is touched.
    let listener = registry::listen(kind.0)?;
    driver.enable_signals()?;
    Ok(Signal { listener, driver })
}

impl Signal {
    /// Waits for the next delivery of the signal: `Some(())` when it came,
    /// `None` once the runtime whose driver delivers it has shut down.
    ///
    /// Cancel safe: dropping the future loses no delivery; the next `recv`
    /// sees it.
    ///
    /// # Examples
    ///
    /// ```
    /// use bulwark::signal::unix::{signal, SignalKind};
    ///
    /// # let rt = bulwark::Runtime::new().unwrap();
    /// rt.block_on(async {
    ///     let mut first = signal(SignalKind::user_defined2())?;
    ///     let mut second = signal(SignalKind::user_defined2())?;
    ///     // SAFETY: raising a signal that has a handler (installed above).
    ///     unsafe { libc::raise(libc::SIGUSR2) };
    ///     // Each listener gets the delivery.
    ///     assert_eq!(first.recv().await, Some(()));
    ///     assert_eq!(second.recv().await, Some(()));
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn recv(&mut self) -> Option<()> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next delivery: as [`recv`](Signal::recv), for code that
    /// writes its own futures or streams.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<()>> {
        if self.listener.poll_delivery(cx).is_ready() {
            return Poll::Ready(Some(()));
        }
        if self.driver.is_shut_down() {
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}
