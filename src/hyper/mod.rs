//! hyper on bulwark: an executor and a timer for hyper's runtime traits.
//!
//! `bulwark::net::TcpStream` implements `hyper::rt::Read` and
//! `hyper::rt::Write` itself, so a connection is handed to hyper as it is:
//!
//! ```
//! use bulwark::hyper::{BulwarkExecutor, BulwarkTimer};
//! use hyper::server::conn::http1;
//!
//! # fn serve(stream: bulwark::net::TcpStream) {
//! let _builder = http1::Builder::new().timer(BulwarkTimer);
//! // builder.serve_connection(stream, service).await
//! # let _ = stream;
//! # let _ = BulwarkExecutor;
//! # }
//! ```
//!
//! With these, hyper's server and client run with no tokio runtime anywhere
//! in the process. Enabled by the `hyper` feature (on by default).
//!
//! [`serve_connection`] serves a connection as hyper's
//! `http1::Builder::serve_connection` does, with a deadline per request
//! (children of the handler inherit it) instead of the runtime's default
//! deadline on the whole connection, and a header-read and an idle timeout
//! on the connection ([`Limits`]).

mod serve;

pub use serve::{serve_connection, Limits, ServedBody};

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Spawns hyper's background futures (HTTP/2 connection tasks, client
/// connection drivers) as bulwark tasks.
///
/// # Examples
///
/// ```
/// use bulwark::hyper::BulwarkExecutor;
/// use hyper::rt::Executor;
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let (tx, rx) = bulwark::sync::oneshot::channel();
///     // What hyper does with a connection's background future.
///     BulwarkExecutor.execute(async move {
///         tx.send(bulwark::task::try_id().is_some()).unwrap();
///     });
///     assert!(rx.await.unwrap(), "it ran as a bulwark task");
/// });
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct BulwarkExecutor;

impl<F> hyper::rt::Executor<F> for BulwarkExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        // Detached: hyper owns the future's lifetime through its own channels.
        drop(crate::spawn(future));
    }
}

/// hyper's timer (header-read timeouts, keep-alive timers) on bulwark's
/// timer wheel.
///
/// # Examples
///
/// Its sleeps and its `now` follow the runtime's clock, paused in a test
/// too:
///
/// ```
/// use bulwark::hyper::BulwarkTimer;
/// use hyper::rt::Timer;
/// use std::time::Duration;
///
/// let rt = bulwark::runtime::Builder::new_current_thread()
///     .start_paused(true)
///     .build()
///     .unwrap();
/// rt.block_on(async {
///     let start = BulwarkTimer.now();
///     BulwarkTimer.sleep(Duration::from_secs(3600)).await; // the clock jumps
///     assert!(BulwarkTimer.now() - start >= Duration::from_secs(3600));
/// });
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct BulwarkTimer;

impl hyper::rt::Timer for BulwarkTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(crate::time::sleep(duration)))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(HyperSleep(crate::time::sleep_until(deadline.into())))
    }

    /// The runtime's clock, so hyper's deadlines agree with the timers
    /// while a test has paused it.
    fn now(&self) -> Instant {
        crate::time::Instant::now().into_std()
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<HyperSleep>() {
            Some(ours) => {
                // `Sleep` is `Unpin`: the pin projects to a plain `&mut`.
                let inner = Pin::new(&mut ours.get_mut().0);
                inner.reset(new_deadline.into());
            }
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// A bulwark `Sleep` as a `hyper::rt::Sleep`.
struct HyperSleep(crate::time::Sleep);

impl Future for HyperSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl hyper::rt::Sleep for HyperSleep {}
