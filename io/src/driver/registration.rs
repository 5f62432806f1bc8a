//! A source registered with the driver, and the IO operations on it.

use super::scheduled_io::{Direction, ScheduledIo};
use super::{Handle, SHUT_DOWN};
use crate::coop;
use std::future::Future;
use std::io;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bulwark_metrics::ledger::{Permit, SOCKET};
use bulwark_metrics::Holding;
use std::panic::Location;

/// The driver's side of one source: its readiness and waiters.
pub(crate) struct Registration {
    handle: Handle,
    pub(super) io: Arc<ScheduledIo>,
    pub(super) token: mio::Token,
    /// The socket as a tracked resource of kind `socket`: the task holding
    /// it (the last one to wait on it) and the line that made it, for the
    /// books' leak scan.
    holding: Arc<Holding>,
}

impl Registration {
    fn new(
        source: &mut impl mio::event::Source,
        interest: mio::Interest,
        handle: Handle,
        site: &'static Location<'static>,
    ) -> io::Result<Registration> {
        let (io, token) = handle.register(source, interest)?;
        let books = handle.books();
        let holding = books.holdings().insert(SOCKET, books.current_task(), site);
        Ok(Registration {
            handle,
            io,
            token,
            holding,
        })
    }

    /// A task other than the socket's holder waits on it: the socket was
    /// handed over (an accepted stream moved into its connection's task), so
    /// that task holds it now. One load when the holder is the same.
    #[inline]
    fn note_holder(&self) {
        let task = self.handle.books().current_task();
        if task.is_some() && task != self.holding.holder() {
            self.holding.set_holder(task);
        }
    }

    /// Waits until the source is ready for `dir`; errors once the driver is
    /// gone.
    pub(crate) fn poll_ready(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
    ) -> Poll<io::Result<super::scheduled_io::ReadyEvent>> {
        self.note_holder();
        let ev = ready!(self.io.poll_ready(cx, dir));
        if ev.is_shutdown() {
            return Poll::Ready(Err(io::Error::other(SHUT_DOWN)));
        }
        Poll::Ready(Ok(ev))
    }

    /// Runs `op` when the source is ready for `dir`, again after each
    /// `WouldBlock` (clearing the readiness it saw), spending one unit of the
    /// task's budget.
    pub(crate) fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        mut op: impl FnMut() -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        ready!(coop::poll_proceed(cx));
        loop {
            let ev = ready!(self.poll_ready(cx, dir))?;
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.io.clear_readiness(ev),
                res => return Poll::Ready(res),
            }
        }
    }

    /// As [`poll_io`](Self::poll_io) for a read or write of `len` bytes: a
    /// transfer shorter than asked means the kernel buffer is drained (or
    /// full), so the readiness is cleared at once and the next call waits for
    /// an event instead of spending a system call to learn `WouldBlock`.
    pub(crate) fn poll_io_len(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        len: usize,
        mut op: impl FnMut() -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        ready!(coop::poll_proceed(cx));
        loop {
            let ev = ready!(self.poll_ready(cx, dir))?;
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.io.clear_readiness(ev),
                Ok(n) if n > 0 && n < len => {
                    // Edge-triggered: an event that came since bumped the tick,
                    // and then this clear does nothing.
                    self.io.clear_readiness(ev);
                    return Poll::Ready(Ok(n));
                }
                res => return Poll::Ready(res),
            }
        }
    }

    /// The future of an `async fn` that waits for `dir` and runs `op`, as
    /// [`poll_io`](Self::poll_io) does. Unlike a `poll_fn` over `poll_io`,
    /// dropping it (a cancelled task, a lost `select!` branch) takes its
    /// waker out of the source's wait list at once.
    pub(crate) fn async_io<R, F>(&self, dir: Direction, op: F) -> Ready<'_, F>
    where
        F: FnMut() -> io::Result<R> + Unpin,
    {
        Ready {
            registration: self,
            dir,
            op,
            budget: true,
            waiter: 0,
        }
    }

    /// A future that finishes when the source is ready for `dir` (no
    /// operation, no budget spent); its waker is removed when dropped.
    pub(crate) fn readiness(&self, dir: Direction) -> Ready<'_, fn() -> io::Result<()>> {
        Ready {
            registration: self,
            dir,
            op: || Ok(()),
            budget: false,
            waiter: 0,
        }
    }

    /// Runs `op` once if the source looks ready; `WouldBlock` otherwise.
    pub(crate) fn try_io<R>(
        &self,
        dir: Direction,
        op: impl FnOnce() -> io::Result<R>,
    ) -> io::Result<R> {
        self.note_holder();
        // Only a look: a waker stored here would replace a waiting task's.
        let ev = match self.io.ready_now(dir) {
            Some(ev) if ev.is_shutdown() => return Err(io::Error::other(SHUT_DOWN)),
            Some(ev) => ev,
            None => return Err(io::ErrorKind::WouldBlock.into()),
        };
        let res = op();
        if matches!(&res, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            self.io.clear_readiness(ev);
        }
        res
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }
}

/// The future of [`Registration::async_io`] and
/// [`Registration::readiness`]: a named waiter of the source, removed on
/// drop.
pub(crate) struct Ready<'a, F> {
    registration: &'a Registration,
    dir: Direction,
    op: F,
    /// Spend coop budget on each poll (an IO operation; not a bare wait).
    budget: bool,
    /// This future's waiter id in the source, 0 until a waker is stored.
    waiter: u64,
}

impl<R, F> Future for Ready<'_, F>
where
    F: FnMut() -> io::Result<R> + Unpin,
{
    type Output = io::Result<R>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let this = self.get_mut();
        this.registration.note_holder();
        if this.budget {
            ready!(coop::poll_proceed(cx));
        }
        let io = &this.registration.io;
        loop {
            let ev = ready!(io.poll_ready_named(cx, this.dir, &mut this.waiter));
            if ev.is_shutdown() {
                return Poll::Ready(Err(io::Error::other(SHUT_DOWN)));
            }
            match (this.op)() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.clear_readiness(ev),
                res => return Poll::Ready(res),
            }
        }
    }
}

impl<F> Drop for Ready<'_, F> {
    fn drop(&mut self) {
        self.registration.io.remove_waiter(self.dir, self.waiter);
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.handle.release(&self.io, self.token);
        let books = self.handle.books();
        let held = books.holdings().remove(&self.holding);
        books
            .sockets()
            .hold_time()
            .record_shared(held.as_nanos() as u64);
    }
}

/// A mio source registered with the driver: what the net types are made of.
/// Dropping it deregisters the source, then closes it, then frees its slot.
pub struct PollEvented<E: mio::event::Source> {
    io: Option<E>,
    pub(crate) registration: Registration,
    /// This socket's place in the runtime's socket budget (the kind
    /// `socket`): released when it is dropped (after the source is closed).
    _socket: Option<Permit>,
}

impl<E: mio::event::Source> PollEvented<E> {
    /// Registers `io` with this thread's driver; `site` made it.
    pub(crate) fn new(
        io: E,
        interest: mio::Interest,
        site: &'static Location<'static>,
    ) -> io::Result<Self> {
        let handle = crate::context::current_or_err()?;
        Self::new_with_handle(io, interest, handle, site)
    }

    /// Registers `io` with `handle`'s driver, counted in the socket budget
    /// (over it if need be: the socket exists already).
    pub(crate) fn new_with_handle(
        io: E,
        interest: mio::Interest,
        handle: Handle,
        site: &'static Location<'static>,
    ) -> io::Result<Self> {
        let permit = handle.books().sockets().acquire_over_budget();
        Self::with_socket_permit(io, interest, handle, permit, site)
    }

    /// Registers `io`, whose place in the socket budget (`permit`) was
    /// taken before the socket was made (by `accept` or `connect`).
    pub(crate) fn with_socket_permit(
        mut io: E,
        interest: mio::Interest,
        handle: Handle,
        permit: Permit,
        site: &'static Location<'static>,
    ) -> io::Result<Self> {
        let registration = Registration::new(&mut io, interest, handle, site)?;
        Ok(PollEvented {
            io: Some(io),
            registration,
            _socket: Some(permit),
        })
    }

    /// Deregisters and gives the source back.
    pub(crate) fn into_inner(mut self) -> io::Result<E> {
        let mut io = self
            .io
            .take()
            .expect("a PollEvented holds its source until dropped");
        self.registration.handle().deregister(&mut io)?;
        Ok(io)
    }
}

impl<E: mio::event::Source> Deref for PollEvented<E> {
    type Target = E;

    fn deref(&self) -> &E {
        self.io
            .as_ref()
            .expect("a PollEvented holds its source until dropped")
    }
}

impl<E: mio::event::Source> Drop for PollEvented<E> {
    fn drop(&mut self) {
        if let Some(mut io) = self.io.take() {
            let _ = self.registration.handle().deregister(&mut io);
            // `io` closes here, before the registration frees the slot.
        }
    }
}

impl<E: mio::event::Source + std::fmt::Debug> std::fmt::Debug for PollEvented<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PollEvented").field(&self.io).finish()
    }
}
