//! Signals, as `tokio::signal`: [`ctrl_c`], and any Unix signal as a
//! stream of wake-ups ([`unix::signal`]), for a service's graceful shutdown
//! and reloads.
//!
//! A signal lands on some thread at any moment, in a context where almost
//! nothing is allowed; the work is split so that context does as little as
//! possible. A process-wide handler per signal (installed through
//! `signal-hook-registry` on first use) raises a flag and writes a byte to
//! a pipe; each runtime's driver has the pipe's read end registered like a
//! socket, and the driver thread that sees it readable bumps the signal's
//! delivery count and wakes every listener for it, in every runtime. The
//! design and why nothing is lost are in `registry.rs`.
//!
//! # Example: graceful shutdown
//!
//! ```
//! use bulwark::signal::unix::{signal, SignalKind};
//!
//! # let rt = bulwark::Runtime::new().unwrap();
//! rt.block_on(async {
//!     let mut terminate = signal(SignalKind::terminate())?;
//!     // ... serve until told to stop ...
//! #   // SAFETY: SIGTERM has a handler (installed above).
//! #   unsafe { libc::raise(libc::SIGTERM) };
//!     terminate.recv().await;
//!     // ... stop accepting, drain the connections, return ...
//!     Ok::<(), std::io::Error>(())
//! })?;
//! # Ok::<(), std::io::Error>(())
//! ```

mod registry;
pub mod unix;

pub(crate) use registry::{dispatch, receiver, wake_all};

use std::io;

/// Waits for Ctrl-C (`SIGINT`), as `tokio::signal::ctrl_c`.
///
/// The listener is made when the future is first polled: a Ctrl-C before
/// that is not seen. The first listener installs a process-wide handler for
/// `SIGINT` that stays for the life of the process, so from then on Ctrl-C
/// no longer ends the process by itself (see [`unix::signal`]); a service
/// that wants a second Ctrl-C to end it at once exits on its own.
///
/// # Errors
///
/// Outside a bulwark runtime; when the handler cannot be installed (see
/// [`unix::signal`]).
///
/// # Examples
///
/// ```
/// use std::future::Future;
/// use std::pin::pin;
/// use std::task::{Context, Poll};
///
/// # let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let mut ctrl_c = pin!(bulwark::signal::ctrl_c());
///     // The first poll installs the handler; then a Ctrl-C is seen.
///     let first = std::future::poll_fn(|cx: &mut Context<'_>| {
///         Poll::Ready(ctrl_c.as_mut().poll(cx))
///     })
///     .await;
///     assert!(first.is_pending());
///     // SAFETY: SIGINT has a handler now.
///     unsafe { libc::raise(libc::SIGINT) };
///     ctrl_c.await
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub async fn ctrl_c() -> io::Result<()> {
    let mut interrupts = unix::signal(unix::SignalKind::interrupt())?;
    // `None` means the runtime shut down under the wait; tokio waits on in
    // that case, but there is nothing left to deliver the signal.
    match interrupts.recv().await {
        Some(()) => Ok(()),
        None => Err(io::Error::other(crate::driver::SHUT_DOWN_SIGNALS)),
    }
}
