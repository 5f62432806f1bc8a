//! `JoinSet`: a set of tasks whose outputs are taken in the order the tasks
//! finish, as tokio's.
//!
//! # Design
//!
//! The members live in a slab, each as its `JoinHandle` and a small shared
//! `Member` that is the waker the handle registers with its task. When a
//! task finishes, the runtime wakes its join waker: the member pushes its
//! slab key onto the set's *ready list* and wakes whoever last waited in
//! `join_next`. `join_next` takes keys off the front of that list and polls
//! only those handles, so joining one task costs one handle polled, not one
//! per member (tokio's `IdleNotifiedSet` and futures' `FuturesUnordered`
//! keep such a list too; this one is a `VecDeque` behind the set's own
//! mutex, touched once per finished task and once per `join_next`). The
//! list is first in, first out, so outputs come in completion order.
//!
//! A handle is polled once as it joins the set, to register its member as
//! the task's join waker from the start: a task that finishes before the
//! first `join_next` is then listed when it finishes, not when it was
//! spawned. A spawn refused by admission resolves at that first poll, and
//! its rejection is listed at once.
//!
//! # Who touches what
//!
//! - `entries`: the set's owner only (`&mut self`).
//! - The ready list and the waiting waker: under the list's mutex, by the
//!   owner and by the members' wakers (any thread).
//! - `Member::queued`: set by the member's wake (only the wake that sets it
//!   pushes the key, so a key is listed at most once), cleared by the owner
//!   just before it polls the handle (so a wake after that poll lists it
//!   again). Both are read-modify-writes (`AcqRel`): the owner's clear
//!   reads the wake's write, so the task's end, which came before its wake,
//!   is seen by the poll that follows the clear.
//!
//! Module order: after `runtime` (it spawns through `spawn` and onto a
//! `runtime::Handle`).

use crate::runtime::Handle;
use crate::spawn::{self, SpawnError};
use crate::task::{AbortHandle, Id, JoinError, JoinHandle};
use parking_lot::Mutex;
use slab::Slab;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::AcqRel;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// A set of tasks, joined in the order they finish, as tokio's `JoinSet`.
///
/// Spawn into it with [`spawn`](Self::spawn) (or [`spawn_on`](Self::spawn_on),
/// [`spawn_blocking`](Self::spawn_blocking), [`try_spawn`](Self::try_spawn)),
/// and take the outputs with [`join_next`](Self::join_next) as the tasks
/// finish. Dropping the set aborts every task still in it.
///
/// It obeys the runtime's guards: a spawn refused at the task ceiling (or
/// while adaptive admission sheds) is a member like any other, whose
/// `join_next` result is a [`JoinError`] with `is_rejected()`; under
/// `Admission::Wait` the spawn waits its turn and runs.
///
/// # Examples
///
/// ```
/// use bulwark::task::JoinSet;
///
/// # let rt = bulwark::Runtime::new().unwrap();
/// # rt.block_on(async {
/// let mut set = JoinSet::new();
/// for i in 0..10u64 {
///     set.spawn(async move { i * i });
/// }
/// let mut sum = 0;
/// while let Some(res) = set.join_next().await {
///     sum += res.unwrap();
/// }
/// assert_eq!(sum, 285);
/// # });
/// ```
pub struct JoinSet<T> {
    entries: Slab<Entry<T>>,
    ready: Arc<Ready>,
}

// SAFETY: a `&JoinSet` reaches nothing but the slab's length (`len`,
// `is_empty`, `Debug`): the handles and any output kept in an entry are only
// touched through `&mut self`. So sharing a set between threads shares no
// `T`, and `T: Send` (for the set to be sent at all) is enough, as for
// tokio's `JoinSet`.
unsafe impl<T: Send> Sync for JoinSet<T> {}

struct Entry<T> {
    handle: JoinHandle<T>,
    member: Arc<Member>,
    /// The output, if the handle resolved at its first poll (as it joined
    /// the set); its key is on the ready list.
    done: Option<Result<T, JoinError>>,
}

/// The keys of members whose task has finished (or may have), first
/// finished first, and the waker of the last `join_next` that found none.
struct Ready {
    inner: Mutex<ReadyInner>,
}

struct ReadyInner {
    keys: VecDeque<usize>,
    waiting: Option<Waker>,
}

/// One member's join waker: lists its key when its task finishes.
struct Member {
    key: usize,
    /// True while the key is on the ready list (module docs).
    queued: AtomicBool,
    ready: Arc<Ready>,
}

impl Wake for Member {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.queued.swap(true, AcqRel) {
            return;
        }
        let waiting = {
            let mut ready = self.ready.inner.lock();
            ready.keys.push_back(self.key);
            ready.waiting.take()
        };
        // Woken outside the lock: the waker may be anyone's code.
        if let Some(waker) = waiting {
            waker.wake();
        }
    }
}

impl<T> JoinSet<T> {
    /// An empty set.
    ///
    /// # Examples
    ///
    /// ```
    /// let set = bulwark::task::JoinSet::<()>::new();
    /// assert!(set.is_empty());
    /// ```
    pub fn new() -> JoinSet<T> {
        JoinSet {
            entries: Slab::new(),
            ready: Arc::new(Ready {
                inner: Mutex::new(ReadyInner {
                    keys: VecDeque::new(),
                    waiting: None,
                }),
            }),
        }
    }

    /// The tasks in the set: those running and those finished whose output
    /// has not been taken.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = bulwark::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// let mut set = bulwark::task::JoinSet::new();
    /// set.spawn(async { 1 });
    /// set.spawn(async { 2 });
    /// assert_eq!(set.len(), 2);
    /// set.join_next().await;
    /// assert_eq!(set.len(), 1);
    /// # });
    /// ```
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if the set holds no task.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = bulwark::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// let mut set = bulwark::task::JoinSet::new();
    /// assert!(set.is_empty());
    /// set.spawn(async {});
    /// assert!(!set.is_empty());
    /// # });
    /// ```
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a task's handle to the set and registers its member as the
    /// task's join waker (see the module docs).
    fn insert(&mut self, handle: JoinHandle<T>) -> AbortHandle {
        let abort = handle.abort_handle();
        let slot = self.entries.vacant_entry();
        let member = Arc::new(Member {
            key: slot.key(),
            queued: AtomicBool::new(false),
            ready: self.ready.clone(),
        });
        let mut entry = Entry {
            handle,
            member,
            done: None,
        };
        let waker = Waker::from(entry.member.clone());
        if let Poll::Ready(out) = Pin::new(&mut entry.handle).poll(&mut Context::from_waker(&waker))
        {
            // Finished already (a refused spawn, or a task that raced to
            // its end): listed now, its output kept for `join_next`.
            entry.done = Some(out);
            entry.member.wake_by_ref();
        }
        slot.insert(entry);
        abort
    }

    /// Spawns `task` onto the current runtime into the set, and returns a
    /// handle that can abort it. At the task ceiling, as
    /// [`spawn`](crate::spawn::spawn()): never blocks; a refused task shows
    /// up in [`join_next`](Self::join_next) as a `JoinError` with
    /// `is_rejected()` (under `Admission::Wait` it waits its turn).
    ///
    /// # Panics
    ///
    /// Outside a runtime (as tokio's).
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = bulwark::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// let mut set = bulwark::task::JoinSet::new();
    /// let abort = set.spawn(std::future::pending::<()>());
    /// abort.abort();
    /// assert!(set.join_next().await.unwrap().unwrap_err().is_cancelled());
    /// # });
    /// ```
    #[track_caller]
    pub fn spawn<F>(&mut self, task: F) -> AbortHandle
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.insert(spawn::spawn(task))
    }

    /// Spawns `task` into the set if the runtime admits it now, else gives
    /// the future back, unpolled, in the error (as
    /// [`try_spawn`](crate::spawn::try_spawn)); the set is then unchanged.
    ///
    /// # Panics
    ///
    /// Outside a runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = bulwark::Runtime::builder().max_tasks(1).build().unwrap();
    /// # rt.block_on(async {
    /// let mut set = bulwark::task::JoinSet::new();
    /// // The ceiling is one live task: the second is refused and comes back.
    /// set.try_spawn(std::future::pending::<()>()).unwrap();
    /// let refused = set.try_spawn(std::future::pending::<()>()).unwrap_err();
    /// drop(refused.into_future());
    /// assert_eq!(set.len(), 1);
    /// # });
    /// ```
    #[track_caller]
    pub fn try_spawn<F>(&mut self, task: F) -> Result<AbortHandle, SpawnError<F>>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        spawn::try_spawn(task).map(|handle| self.insert(handle))
    }

    /// Spawns `task` onto the runtime of `handle` into the set.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = bulwark::Runtime::new().unwrap();
    /// let mut set = bulwark::task::JoinSet::new();
    /// // From outside any runtime: the handle says where.
    /// set.spawn_on(async { 5 }, rt.handle());
    /// assert_eq!(rt.block_on(set.join_next()).unwrap().unwrap(), 5);
    /// ```
    #[track_caller]
    pub fn spawn_on<F>(&mut self, task: F, handle: &Handle) -> AbortHandle
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.insert(handle.spawn(task))
    }

    /// Runs the blocking closure `f` on the current runtime's blocking pool,
    /// as a member of the set. Aborting it has no effect once it runs (as
    /// tokio's).
    ///
    /// # Panics
    ///
    /// Outside a runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = bulwark::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// let mut set = bulwark::task::JoinSet::new();
    /// set.spawn_blocking(|| std::thread::sleep(std::time::Duration::from_millis(1)));
    /// assert!(set.join_next().await.unwrap().is_ok());
    /// # });
    /// ```
    #[track_caller]
    pub fn spawn_blocking<F>(&mut self, f: F) -> AbortHandle
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.insert(spawn::spawn_blocking(f))
    }

    /// Runs the blocking closure `f` on the blocking pool of `handle`'s
    /// runtime, as a member of the set.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = bulwark::Runtime::new().unwrap();
    /// let mut set = bulwark::task::JoinSet::new();
    /// set.spawn_blocking_on(|| 6 * 7, rt.handle());
    /// assert_eq!(rt.block_on(set.join_next()).unwrap().unwrap(), 42);
    /// ```
    #[track_caller]
    pub fn spawn_blocking_on<F>(&mut self, f: F, handle: &Handle) -> AbortHandle
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.insert(handle.spawn_blocking(f))
    }

    /// Waits for one of the tasks to finish and returns its output (or why
    /// it has none); `None` once the set is empty. Tasks come out in the
    /// order they finished. Cancel-safe: dropped before it resolves, no
    /// output is lost (it stays in the set).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// # let rt = bulwark::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// let mut set = bulwark::task::JoinSet::new();
    /// set.spawn(async {
    ///     bulwark::time::sleep(Duration::from_millis(50)).await;
    ///     "slow"
    /// });
    /// set.spawn(async { "fast" });
    /// assert_eq!(set.join_next().await.unwrap().unwrap(), "fast");
    /// assert_eq!(set.join_next().await.unwrap().unwrap(), "slow");
    /// assert!(set.join_next().await.is_none());
    /// # });
    /// ```
    pub async fn join_next(&mut self) -> Option<Result<T, JoinError>> {
        std::future::poll_fn(|cx| self.poll_join_next(cx)).await
    }

    /// As [`join_next`](Self::join_next), with the task's id next to its
    /// output (a failed task's id is in its `JoinError`).
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = bulwark::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// let mut set = bulwark::task::JoinSet::new();
    /// let id = set.spawn(async { 1 }).id();
    /// assert_eq!(set.join_next_with_id().await.unwrap().unwrap(), (id, 1));
    /// # });
    /// ```
    pub async fn join_next_with_id(&mut self) -> Option<Result<(Id, T), JoinError>> {
        std::future::poll_fn(|cx| self.poll_join_next_with_id(cx)).await
    }

    /// The output of a task that has finished, if one has, without waiting;
    /// `None` if none has (or the set is empty).
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = bulwark::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// let mut set = bulwark::task::JoinSet::<()>::new();
    /// assert!(set.try_join_next().is_none());
    /// set.spawn(std::future::pending());
    /// assert!(set.try_join_next().is_none(), "it never finishes");
    /// # });
    /// ```
    pub fn try_join_next(&mut self) -> Option<Result<T, JoinError>> {
        self.try_join_next_with_id()
            .map(|res| res.map(|(_, out)| out))
    }

    /// As [`try_join_next`](Self::try_join_next), with the task's id.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = bulwark::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// let mut set = bulwark::task::JoinSet::<u8>::new();
    /// assert!(set.try_join_next_with_id().is_none());
    /// # });
    /// ```
    pub fn try_join_next_with_id(&mut self) -> Option<Result<(Id, T), JoinError>> {
        loop {
            let key = self.ready.inner.lock().keys.pop_front()?;
            if let Some(out) = self.poll_member(key) {
                return Some(out);
            }
        }
    }

    /// The poll behind [`join_next`](Self::join_next), for a hand-written
    /// future: `Ready(Some(..))` with a finished task's output, `Ready(None)`
    /// if the set is empty, else `Pending`, and `cx`'s waker is woken when
    /// a task finishes.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = bulwark::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// let mut set = bulwark::task::JoinSet::new();
    /// set.spawn(async { 9 });
    /// let out = std::future::poll_fn(|cx| set.poll_join_next(cx)).await;
    /// assert_eq!(out.unwrap().unwrap(), 9);
    /// # });
    /// ```
    pub fn poll_join_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, JoinError>>> {
        self.poll_join_next_with_id(cx)
            .map(|res| res.map(|res| res.map(|(_, out)| out)))
    }

    /// As [`poll_join_next`](Self::poll_join_next), with the task's id.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = bulwark::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// let mut set = bulwark::task::JoinSet::new();
    /// let id = set.spawn(async { 'x' }).id();
    /// let out = std::future::poll_fn(|cx| set.poll_join_next_with_id(cx)).await;
    /// assert_eq!(out.unwrap().unwrap(), (id, 'x'));
    /// # });
    /// ```
    pub fn poll_join_next_with_id(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<(Id, T), JoinError>>> {
        loop {
            let key = {
                let mut ready = self.ready.inner.lock();
                match ready.keys.pop_front() {
                    Some(key) => key,
                    None if self.entries.is_empty() => return Poll::Ready(None),
                    None => {
                        // Under the lock that a member's wake takes to list
                        // its key: a task that finishes from now on wakes us.
                        match &ready.waiting {
                            Some(w) if w.will_wake(cx.waker()) => {}
                            _ => ready.waiting = Some(cx.waker().clone()),
                        }
                        return Poll::Pending;
                    }
                }
            };
            if let Some(out) = self.poll_member(key) {
                return Poll::Ready(Some(out));
            }
        }
    }

    /// Polls the member at `key`, which was on the ready list: its output if
    /// its task has finished (the member leaves the set), else `None` (its
    /// waker stays registered). A key no member has (left since) is `None`.
    fn poll_member(&mut self, key: usize) -> Option<Result<(Id, T), JoinError>> {
        let entry = self.entries.get_mut(key)?;
        // Before the poll: a wake from now on lists the key again.
        entry.member.queued.swap(false, AcqRel);
        let id = entry.handle.id();
        let out = match entry.done.take() {
            Some(out) => out,
            None => {
                let waker = Waker::from(entry.member.clone());
                match Pin::new(&mut entry.handle).poll(&mut Context::from_waker(&waker)) {
                    Poll::Ready(out) => out,
                    Poll::Pending => return None,
                }
            }
        };
        self.entries.remove(key);
        Some(out.map(|out| (id, out)))
    }

    /// Waits for every task and returns their outputs, in the order they
    /// finished, as tokio's.
    ///
    /// # Panics
    ///
    /// If a task failed (panicked, was cancelled, rejected, dropped at its
    /// deadline): the rest are aborted (when the set drops) and the panic
    /// is passed on, or for other failures a panic names the `JoinError`.
    /// Loop on [`join_next`](Self::join_next) to handle failures instead.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = bulwark::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// let set: bulwark::task::JoinSet<u32> =
    ///     (1..=3).map(|i| async move { i * 10 }).collect();
    /// let mut out = set.join_all().await;
    /// out.sort();
    /// assert_eq!(out, [10, 20, 30]);
    /// # });
    /// ```
    pub async fn join_all(mut self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.len());
        while let Some(res) = self.join_next().await {
            match res {
                Ok(value) => out.push(value),
                Err(e) => match e.try_into_panic() {
                    Ok(payload) => std::panic::resume_unwind(payload),
                    Err(e) => panic!("a task of the JoinSet failed: {e}"),
                },
            }
        }
        out
    }

    /// Aborts every task in the set. They stay in it: [`join_next`](Self::join_next)
    /// then gives each a `JoinError` with `is_cancelled()`, or its output if
    /// it finished first.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = bulwark::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// let mut set = bulwark::task::JoinSet::<()>::new();
    /// set.spawn(std::future::pending());
    /// set.abort_all();
    /// assert!(set.join_next().await.unwrap().unwrap_err().is_cancelled());
    /// # });
    /// ```
    pub fn abort_all(&mut self) {
        for (_, entry) in self.entries.iter() {
            entry.handle.abort();
        }
    }

    /// Removes every task from the set without aborting it: they run on,
    /// detached, as if their `JoinHandle`s were dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = bulwark::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let mut set = bulwark::task::JoinSet::new();
    /// set.spawn(async move { tx.send("still ran").unwrap() });
    /// set.detach_all();
    /// assert!(set.is_empty());
    /// drop(set); // does not abort what was detached
    /// assert_eq!(rx.recv().unwrap(), "still ran");
    /// # });
    /// ```
    pub fn detach_all(&mut self) {
        self.entries.clear();
        self.forget_waiting();
    }

    /// Empties the ready list and lets go of the waiting waker. A detached
    /// task keeps its member (its join waker) until it ends; without this,
    /// the member would keep the waker of the task that owned the set alive
    /// too, and a lost owner (waiting with no other waker) would not be
    /// seen as lost.
    fn forget_waiting(&self) {
        let waiting = {
            let mut ready = self.ready.inner.lock();
            ready.keys.clear();
            ready.waiting.take()
        };
        // Dropped outside the lock: it is anyone's code.
        drop(waiting);
    }

    /// Aborts every task and waits until each has ended (its future
    /// dropped, or its output dropped if it finished first); the set is
    /// then empty. Blocking closures already running are waited for.
    ///
    /// # Examples
    ///
    /// ```
    /// # let rt = bulwark::Runtime::new().unwrap();
    /// # rt.block_on(async {
    /// let mut set = bulwark::task::JoinSet::<()>::new();
    /// for _ in 0..3 {
    ///     set.spawn(std::future::pending());
    /// }
    /// set.shutdown().await;
    /// assert!(set.is_empty());
    /// # });
    /// ```
    pub async fn shutdown(&mut self) {
        self.abort_all();
        while self.join_next().await.is_some() {}
    }
}

impl<T> Drop for JoinSet<T> {
    /// Aborts every task still in the set, as tokio's.
    fn drop(&mut self) {
        self.abort_all();
        // The aborted tasks end later, on the workers.
        self.forget_waiting();
    }
}

impl<T> Default for JoinSet<T> {
    fn default() -> JoinSet<T> {
        JoinSet::new()
    }
}

impl<T> fmt::Debug for JoinSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinSet").field("len", &self.len()).finish()
    }
}

/// Spawns each future onto the current runtime (as
/// [`JoinSet::spawn`]); panics outside a runtime.
impl<T, F> FromIterator<F> for JoinSet<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    fn from_iter<I: IntoIterator<Item = F>>(iter: I) -> JoinSet<T> {
        let mut set = JoinSet::new();
        set.extend(iter);
        set
    }
}

/// Spawns each future onto the current runtime (as
/// [`JoinSet::spawn`]); panics outside a runtime.
impl<T, F> Extend<F> for JoinSet<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    fn extend<I: IntoIterator<Item = F>>(&mut self, iter: I) {
        for task in iter {
            self.spawn(task);
        }
    }
}
