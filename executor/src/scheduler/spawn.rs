//! The one path every spawn takes: admission, deadline, registry, queue.

use crate::admission::{now_nanos, Decision, QueuedTask};
use crate::context;
use crate::runtime::Handle;
use crate::task::{self, deadline_waker, Id, JoinHandle, TaskMeta};
use bulwark_metrics::SharedCounters;
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a task is to be spawned: what `task::Builder` collects.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SpawnSpec<'a> {
    pub(crate) name: Option<&'a str>,
    pub(crate) location: &'static Location<'static>,
    /// A deadline set on this spawn (`Builder::deadline`).
    pub(crate) deadline: Option<Instant>,
    /// A timeout set on this spawn (`Builder::timeout`), from now.
    pub(crate) timeout: Option<Duration>,
    /// Do not inherit the spawning task's deadline.
    pub(crate) detached: bool,
    /// Never shed by adaptive admission.
    pub(crate) essential: bool,
}

impl SpawnSpec<'_> {
    pub(crate) fn plain(location: &'static Location<'static>) -> SpawnSpec<'static> {
        SpawnSpec {
            name: None,
            location,
            deadline: None,
            timeout: None,
            detached: false,
            essential: false,
        }
    }
}

/// What the caller of `spawn_task` will do with a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `spawn`: queue under `Admission::Wait`; a refusal is a rejected
    /// `JoinHandle`.
    Spawn,
    /// `try_spawn`: never queue; a refusal gives the future back.
    Try,
    /// `spawn_wait`: the permit is already held.
    Granted,
}

/// `try_spawn` was refused: the runtime is at its ceiling or shedding. The
/// future comes back unpolled.
pub struct SpawnError<F> {
    future: F,
    shedding: bool,
}

impl<F> SpawnError<F> {
    /// The future that was not spawned.
    pub fn into_future(self) -> F {
        self.future
    }

    /// True if adaptive shedding refused it; false if the task ceiling did.
    pub fn is_shedding(&self) -> bool {
        self.shedding
    }
}

impl<F> fmt::Display for SpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.shedding {
            f.write_str("spawn refused: the runtime is shedding load (adaptive admission)")
        } else {
            f.write_str("spawn refused: the runtime is at its task ceiling (max_tasks)")
        }
    }
}

impl<F> fmt::Debug for SpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpawnError")
            .field("shedding", &self.shedding)
            .finish_non_exhaustive()
    }
}

impl<F> std::error::Error for SpawnError<F> {}

impl Handle {
    /// Spawns onto this runtime under its admission policy.
    pub(crate) fn spawn_task<F>(
        &self,
        future: F,
        spec: SpawnSpec<'_>,
        mode: Mode,
    ) -> Result<JoinHandle<F::Output>, SpawnError<F>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let shared = &*self.shared;
        let decision = match mode {
            Mode::Granted => Decision::Admit,
            Mode::Spawn => shared.admit.decide(spec.essential, true),
            Mode::Try => shared.admit.decide(spec.essential, false),
        };
        if let (Mode::Try, Decision::Reject { shedding }) = (mode, decision) {
            // An attempt counts as a spawn and a rejection, as `spawn` does.
            SharedCounters::bump(&shared.counters.spawned);
            SharedCounters::bump(&shared.counters.rejected);
            return Err(SpawnError { future, shedding });
        }

        let deadline = self.effective_deadline(&spec);
        let meta = TaskMeta {
            id: Id::next(),
            name: spec.name.map(Into::into),
            location: spec.location,
            deadline,
        };
        let (task, notified, join) = task::new_task(future, self.clone(), meta);
        // One look at this thread's worker serves the count and the queue.
        super::worker::with_local(shared, |local| {
            match local {
                Some(cx) => cx.counters().spawned.bump(),
                None => SharedCounters::bump(&shared.counters.spawned),
            }
            match decision {
                Decision::Reject { shedding } => {
                    drop(notified);
                    task.reject(shedding);
                }
                Decision::Admit => {
                    if shared.admit.has_ceiling() {
                        task.header().admitted.store(true, Relaxed);
                    }
                    if shared.admit.samples_delay() && !spec.essential {
                        task.header().sheddable.store(true, Relaxed);
                    }
                    self.arm_deadline(&task, deadline);
                    if let Some(notified) = shared.registry.bind(task, notified) {
                        if shared.admit.samples_delay() {
                            notified.header().queued_at.store(now_nanos(), Relaxed);
                        }
                        match local {
                            Some(cx) => cx.schedule_local(notified, false),
                            None => shared.schedule_remote(notified),
                        }
                    }
                }
                Decision::Queue => {
                    self.arm_deadline(&task, deadline);
                    task.header().waiting_admission.store(true, Relaxed);
                    if let Some(notified) = shared.registry.bind(task, notified) {
                        let waiter = Arc::new(QueuedTask::new(notified, self.clone()));
                        shared.admit.enqueue(waiter);
                    }
                }
            }
        });
        Ok(join)
    }

    /// The earlier of the spawn's own deadline (or the runtime default) and
    /// the spawning task's (unless detached): Go's `context.WithDeadline`.
    fn effective_deadline(&self, spec: &SpawnSpec<'_>) -> Option<Instant> {
        let timeout = spec.timeout.or(self.shared.default_deadline);
        let own = match (spec.deadline, timeout) {
            (Some(d), Some(t)) => Some(d.min(deadline_after(t))),
            (Some(d), None) => Some(d),
            (None, Some(t)) => Some(deadline_after(t)),
            (None, None) => None,
        };
        let inherited = if spec.detached {
            None
        } else {
            context::current_task().and_then(|(_, d)| d)
        };
        match (own, inherited) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sets the deadline timer. Done before the task is published, so the
    /// key is in the header before any thread can complete the task.
    fn arm_deadline(&self, task: &task::Task<Handle>, deadline: Option<Instant>) {
        let Some(deadline) = deadline else { return };
        let waker = deadline_waker(task.header_ptr());
        let key = self.shared.io().set_timer(deadline, &waker);
        // SAFETY: the task is not published yet (not in the registry, not
        // queued): nobody else reads this field.
        unsafe { *task.header().deadline_timer.get() = Some(key) };
    }
}

fn deadline_after(d: Duration) -> Instant {
    Instant::now()
        .checked_add(d)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365 * 30))
}
