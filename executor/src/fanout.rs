//! Fan-out budgets: how many live children a task may have at once, where
//! the others wait, and which spawns a full runtime refuses first.
//!
//! # Families
//!
//! A *child* is a task spawned (by `spawn`, `task::Builder::spawn`, ...) from
//! a worker of the same runtime while another task, its *parent*, is being
//! polled. A parent that has a budget (`task::Builder::max_children`, or the
//! runtime's `max_children_per_task`) has a [`Family`]: its live-child count,
//! its limit, and the queue of children waiting for a place.
//!
//! - A child spawned while the family has a free place takes it (`SLOT` in
//!   its admission ticket) and goes on to admission as usual.
//! - Otherwise it is made (allocated and registered, so abort and shutdown
//!   reach it) and waits in the family queue holding only its future: no
//!   permit of the task ceiling, no deadline timer, never polled.
//!   (`FAMILY_QUEUED` in its ticket.) Its deadline still holds: a child whose
//!   deadline passed while it waited is dropped unpolled when it starts.
//! - When a child that holds a place ends (completes, panics, is cancelled),
//!   the first waiting child takes the place and starts: it takes a permit
//!   of the ceiling, or waits for one in the admission wait list.
//!
//! The family lives behind an `Arc` held by the parent and by each of its
//! children, so it outlives the parent: when the parent ends (or is
//! cancelled) while children wait, they still start in order as their
//! siblings end, and run to their own end, as spawned tasks do on tokio
//! (children are not cancelled with their parent; a parent's deadline is
//! inherited by its children, so children of a parent that ran out of time
//! are dropped at their start without running). At runtime shutdown every
//! waiting child is cancelled with the rest (it is in the registry), and
//! its end takes it out of the queue.
//!
//! # Finish what was admitted
//!
//! At a full task ceiling, a child of a running task (of admitted work) is
//! not refused: it waits for a permit in the ceiling's wait list, first
//! come, first served, and new roots (tasks spawned with no current task:
//! from outside, from `block_on`, connection tasks of an accept loop) are
//! refused first, even when a permit frees for a moment (they do not jump
//! the wait list). Children are never shed by adaptive admission at spawn.
//! `try_spawn` and `spawn_wait` keep their own rules (no waiting; waiting
//! for a permit).
//!
//! # The waiting cap
//!
//! Children waiting (in family queues, plus everything in the ceiling's wait
//! list) are bounded by `runtime::Builder::max_waiting_children`; past it a
//! child's `spawn` is refused as a root's is (its `JoinHandle` resolves to a
//! rejected `JoinError`).
//!
//! # Wasted work
//!
//! `wasted_subtasks` counts children that completed for a parent whose
//! request failed: the parent was cancelled (abort, deadline, shutdown) or a
//! sibling's spawn was refused. The children that completed before the
//! failure are added when it happens; those that complete after, as they do.
//! Only children linked to a family are counted: those of a parent with a
//! budget, and those spawned after one of their siblings met the ceiling
//! (which gives an unbudgeted parent its family); earlier children of such a
//! parent are not seen.
//!
//! # Locking
//!
//! Each family has its own mutex, taken once per spawn and once per end of
//! a child of that family; tasks outside families never touch one. The
//! runtime-wide state is two atomics (the waiting count and a flag that says
//! whether any family exists), so a runtime without budgets pays one load
//! and a branch per spawn, and one branch per task end.

use crate::admission::{Admitted, Ended};
use crate::sync::Mutex;
use crate::task::{Finish, Notified, Task};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

/// What fan-out needs from a task's scheduler value.
pub(crate) trait Fanned: Admitted {
    /// The task's family links.
    fn links(&self) -> &Links<Self>;
    /// The runtime's fan-out state.
    fn fanout(&self) -> &Fanout;
    /// Queues a child that left its family queue with a permit, behind the
    /// work already queued, so a family's children start in spawn order.
    fn start_child(task: Notified<Self>);
    /// Puts a child that left its family queue (its ticket says `QUEUED`)
    /// in the admission wait list. No `&self`: the task may run and be
    /// freed elsewhere the moment it is listed, so the implementation holds
    /// the runtime by a reference of its own.
    fn wait_for_permit(task: Notified<Self>);
}

/// The runtime-wide part: the budget every parent gets, the cap on waiting
/// children and their count, and the wasted-work counter.
pub(crate) struct Fanout {
    /// `max_children_per_task`: the limit of a family made for a parent
    /// that sets none.
    per_task: Option<usize>,
    /// `max_waiting_children`.
    max_waiting: usize,
    /// Children in family queues now.
    waiting: AtomicUsize,
    /// True once any family may exist (`per_task` is set, or some task was
    /// spawned with `max_children`): until then the spawn path does not look
    /// for the parent, except at a refusal.
    active: AtomicBool,
    /// Set at shutdown: no waiting child starts any more.
    closed: AtomicBool,
    /// See the module docs.
    wasted: AtomicU64,
}

impl Fanout {
    pub(crate) fn new(per_task: Option<usize>, max_waiting: usize) -> Fanout {
        Fanout {
            per_task,
            max_waiting,
            waiting: AtomicUsize::new(0),
            active: AtomicBool::new(per_task.is_some()),
            closed: AtomicBool::new(false),
            wasted: AtomicU64::new(0),
        }
    }

    /// Whether any family may exist. Relaxed: a stale `false` only means a
    /// spawn racing the very first `max_children` spawn is not budgeted,
    /// which it could not tell from having come first.
    #[inline]
    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Relaxed)
    }

    /// A task with its own budget exists from now on.
    pub(crate) fn activate(&self) {
        if !self.is_active() {
            self.active.store(true, Relaxed);
        }
    }

    /// The limit for a family made for a parent that set none.
    pub(crate) fn per_task(&self) -> Option<usize> {
        self.per_task
    }

    /// Reserves a place for one more waiting child, given how many wait in
    /// the ceiling's wait list: false past the cap.
    pub(crate) fn reserve_wait(&self, in_wait_list: usize) -> bool {
        let before = self.waiting.fetch_add(1, Relaxed);
        if before.saturating_add(in_wait_list) >= self.max_waiting {
            self.waiting.fetch_sub(1, Relaxed);
            return false;
        }
        true
    }

    /// Whether a child may wait in the ceiling's wait list (which holds
    /// `in_wait_list` now), given the children in family queues.
    pub(crate) fn may_wait_for_permit(&self, in_wait_list: usize) -> bool {
        self.waiting.load(Relaxed).saturating_add(in_wait_list) < self.max_waiting
    }

    /// Gives back a reservation that was not used (the child was never
    /// queued: the runtime shut down as it was spawned).
    pub(crate) fn unreserve(&self) {
        self.waiting.fetch_sub(1, Relaxed);
    }

    /// Children waiting in family queues now.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Relaxed)
    }

    /// See the module docs.
    pub(crate) fn wasted(&self) -> u64 {
        self.wasted.load(Relaxed)
    }

    /// Shutdown: waiting children stay where they are, for the registry's
    /// shutdown to cancel.
    pub(crate) fn close(&self) {
        self.closed.store(true, Relaxed);
    }
}

/// A task's place in families: the family it is a child in, and its own.
pub(crate) struct Links<S: 'static> {
    /// Its parent's family, if it joined one at spawn.
    parent: Option<Arc<Family<S>>>,
    /// Its own family, as a parent: set at spawn for `max_children`, or made
    /// at the first child that needs it.
    children: OnceLock<Arc<Family<S>>>,
}

impl<S: Fanned> Links<S> {
    pub(crate) fn new(parent: Option<Arc<Family<S>>>, own: Option<Arc<Family<S>>>) -> Links<S> {
        let children = OnceLock::new();
        if let Some(own) = own {
            let _ = children.set(own);
        }
        Links { parent, children }
    }

    /// The family this task is a child in, if it joined one at spawn.
    pub(crate) fn parent(&self) -> Option<&Arc<Family<S>>> {
        self.parent.as_ref()
    }

    /// The family this task's children join, making it if the runtime gives
    /// every task a budget, or if `fallback` (a child met the ceiling) says
    /// so: then unbudgeted.
    pub(crate) fn family(&self, fanout: &Fanout, fallback: bool) -> Option<Arc<Family<S>>> {
        if let Some(f) = self.children.get() {
            return Some(f.clone());
        }
        let limit = match fanout.per_task() {
            Some(n) => n,
            None if fallback => usize::MAX,
            None => return None,
        };
        Some(self.children.get_or_init(|| Family::new(limit)).clone())
    }
}

/// One parent's children: how many are live, and who waits for a place.
pub(crate) struct Family<S: 'static> {
    limit: usize,
    inner: Mutex<Inner<S>>,
}

struct Inner<S: 'static> {
    /// Children holding a place (`SLOT`).
    live: usize,
    /// Waiting children in spawn order, by key and sequence number; an
    /// entry whose child was taken out (cancelled, shut down) is skipped.
    order: VecDeque<(usize, u64)>,
    /// The waiting children themselves, by key (the address of the task's
    /// admission ticket, unique among live tasks), with their sequence.
    waiting: HashMap<usize, (u64, Notified<S>)>,
    next_seq: u64,
    /// Children of this family that completed.
    completed: u64,
    /// The parent's work failed (see the module docs).
    failed: bool,
}

/// A waiting child's key: the address of its admission ticket, stable while
/// the task lives and unique among live tasks.
fn key_of<S: Admitted>(sched: &S) -> usize {
    std::ptr::from_ref(sched.ticket()) as usize
}

impl<S: Fanned> Family<S> {
    /// A family whose parent may have `limit` live children.
    pub(crate) fn new(limit: usize) -> Arc<Family<S>> {
        Arc::new(Family {
            limit,
            inner: Mutex::new(Inner {
                live: 0,
                order: VecDeque::new(),
                waiting: HashMap::new(),
                next_seq: 0,
                completed: 0,
                failed: false,
            }),
        })
    }

    /// Whether the family has a budget (not one made for a child that met
    /// the ceiling, which counts without bounding): its children start in
    /// spawn order, at the back of the queue.
    pub(crate) fn is_budgeted(&self) -> bool {
        self.limit != usize::MAX
    }

    /// A child is being spawned: takes a place for it if one is free and
    /// nobody waits for one (true). False: the child is to wait.
    pub(crate) fn try_take_place(&self) -> bool {
        let mut g = self.inner.lock();
        if g.live < self.limit && g.waiting.is_empty() {
            g.live += 1;
            true
        } else {
            false
        }
    }

    /// Queues a child spawned while no place was free (its ticket says
    /// `FAMILY_QUEUED`; the caller reserved its place in the waiting cap).
    /// If a place freed meanwhile, the first in line starts now.
    pub(crate) fn enqueue(&self, task: Notified<S>, fanout: &Fanout) {
        let (start, drops) = {
            let mut g = self.inner.lock();
            let key = key_of(task.scheduler());
            let seq = g.next_seq;
            g.next_seq += 1;
            g.order.push_back((key, seq));
            g.waiting.insert(key, (seq, task));
            self.fill(&mut g, fanout)
        };
        drop(drops);
        for t in start {
            start_child(t);
        }
    }

    /// Takes waiting children out while places are free; returns those to
    /// start and those to drop (they ended while they waited), for the
    /// caller to handle outside the lock.
    fn fill(&self, g: &mut Inner<S>, fanout: &Fanout) -> (Vec<Notified<S>>, Vec<Notified<S>>) {
        let (mut start, mut drops) = (Vec::new(), Vec::new());
        if fanout.closed.load(Relaxed) {
            return (start, drops);
        }
        while g.live < self.limit {
            let Some((key, seq)) = g.order.pop_front() else {
                break;
            };
            let Some((s, task)) = g.waiting.remove(&key) else {
                continue;
            };
            if s != seq {
                // Another child at the same address since: not its turn.
                g.waiting.insert(key, (s, task));
                continue;
            }
            fanout.waiting.fetch_sub(1, Relaxed);
            if task.scheduler().ticket().take_slot() {
                g.live += 1;
                start.push(task);
            } else {
                drops.push(task);
            }
        }
        if g.waiting.is_empty() {
            g.order.clear();
        }
        (start, drops)
    }

    /// A place is free again: a child that held one ended, or a spawn that
    /// took one was refused after all. The next waiting child takes it.
    pub(crate) fn release_place(&self, fanout: &Fanout) {
        let (start, drops) = {
            let mut g = self.inner.lock();
            g.live -= 1;
            self.fill(&mut g, fanout)
        };
        drop(drops);
        for t in start {
            start_child(t);
        }
    }

    /// A child of this family ended (`how`), holding what `ended` says.
    pub(crate) fn child_ended(&self, sched: &S, ended: Ended, how: Finish) {
        let fanout = sched.fanout();
        let (start, drops, own) = {
            let mut g = self.inner.lock();
            if how == Finish::Completed {
                g.completed += 1;
                if g.failed {
                    fanout.wasted.fetch_add(1, Relaxed);
                }
            }
            // Shut down (or cancelled) while it waited: its own reference
            // leaves the queue, or the two would keep each other alive.
            let own = if ended.family_queued {
                g.waiting.remove(&key_of(sched)).map(|(_, t)| {
                    fanout.waiting.fetch_sub(1, Relaxed);
                    t
                })
            } else {
                None
            };
            let (start, drops) = if ended.slot {
                g.live -= 1;
                self.fill(&mut g, fanout)
            } else {
                (Vec::new(), Vec::new())
            };
            (start, drops, own)
        };
        drop(own);
        drop(drops);
        for t in start {
            start_child(t);
        }
    }

    /// A waiting child was cancelled (aborted): it leaves the queue and is
    /// queued to run its cancellation at once, holding no place.
    pub(crate) fn cancel_waiting(&self, task: &Task<S>) {
        let fanout = task.scheduler().fanout();
        let taken = {
            let mut g = self.inner.lock();
            g.waiting.remove(&key_of(task.scheduler()))
        };
        if let Some((_, notified)) = taken {
            fanout.waiting.fetch_sub(1, Relaxed);
            notified.scheduler().ticket().leave_family_queue();
            S::schedule(notified);
        }
    }

    /// The parent's work failed: its children's completions count as wasted
    /// work, those so far and those to come.
    pub(crate) fn fail(&self, fanout: &Fanout) {
        let mut g = self.inner.lock();
        if !g.failed {
            g.failed = true;
            fanout.wasted.fetch_add(g.completed, Relaxed);
        }
    }
}

/// A waiting child took a place: it takes a permit of the ceiling and is
/// queued to run, or it waits for a permit in the admission wait list.
fn start_child<S: Fanned>(task: Notified<S>) {
    let sched = task.scheduler();
    let admit = sched.admitter();
    if admit.has_ceiling() {
        if admit.kind().try_acquire_fair() {
            if !sched.ticket().grant_permit() {
                // It ended first (shut down): nothing to run.
                admit.kind().release();
                drop(task);
                return;
            }
        } else {
            if sched.ticket().requeue() {
                S::wait_for_permit(task);
            }
            return;
        }
    }
    S::start_child(task);
}

/// The end of a task, as fan-out sees it: a child frees its place (the next
/// waiting sibling starts); a parent that was cancelled fails its family.
#[inline]
pub(crate) fn on_finish<S: Fanned>(sched: &S, ended: Ended, how: Finish) {
    let links = sched.links();
    if let Some(family) = &links.parent {
        family.child_ended(sched, ended, how);
    }
    if matches!(
        how,
        Finish::Cancelled | Finish::DeadlineExceeded | Finish::Lost
    ) {
        if let Some(own) = links.children.get() {
            own.fail(sched.fanout());
        }
    }
}

/// A task was cancelled and no worker was asked to run it: if it waits in
/// its family queue, it leaves it and runs its cancellation now.
pub(crate) fn on_cancel<S: Fanned>(task: &Task<S>) {
    let sched = task.scheduler();
    if !sched.ticket().is_family_queued() {
        return;
    }
    if let Some(family) = &sched.links().parent {
        family.cancel_waiting(task);
    }
}
