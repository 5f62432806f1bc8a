//! The books one runtime keeps, shared by every layer: the ledger's kinds,
//! the worker slots, the admission state, and the source a snapshot is read
//! from.
//!
//! The executor writes here (a task admitted, shedding turned on, a poll
//! begun) and the io layer and the endpoint thread read (a listener pauses
//! `accept` while the runtime cannot take more work), which is how a lower
//! layer learns what a higher one decided without an arrow pointing up.
//!
//! Registering a kind or a worker takes a lock; nothing on the hot path
//! does: the `task` kind is held directly ([`Books::tasks`]) and each worker
//! keeps its own `Arc<WorkerSlot>`.

use crate::ledger::{Kind, KindError, Permit, TASK};
use crate::source::{Source, TaskInfo};
use crate::stalls::{StallReport, Stalls};
use crate::sync::{AtomicBool, AtomicU64, Mutex, Ordering::Relaxed};
use crate::worker::WorkerSlot;
use crate::Snapshot;
use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock, Weak};

/// One runtime's shared books.
pub struct Books {
    /// Live tasks; the budget is the hard task ceiling (`max_tasks`). Also
    /// the first entry of `kinds`; kept here for the spawn path.
    tasks: Arc<Kind>,
    sockets: Arc<Kind>,
    /// Every kind, in registration order.
    kinds: Mutex<Vec<Arc<Kind>>>,
    /// Every worker slot ever added, in registration order (never removed,
    /// so a retired worker's counts still add up in a snapshot).
    workers: Mutex<Vec<Arc<WorkerSlot>>>,
    /// Slots whose thread has ended early (a worker whose seat a replacement
    /// took): reused by the next worker added in the same role, so threads
    /// that come and go do not grow the list.
    retired: Mutex<Vec<Arc<WorkerSlot>>>,
    holdings: crate::Holdings,
    source: Mutex<Option<Weak<dyn Source>>>,
    shedding: AtomicBool,
    pause_accept: AtomicBool,
    shedding_transitions: AtomicU64,
    scope_deadlines: AtomicU64,
    stalls_seen: AtomicU64,
    stalls: Stalls,
    compensations: AtomicU64,
    blocks_in_place: AtomicU64,
    rejected_ceiling: AtomicU64,
    rejected_shedding: AtomicU64,
    accept_backoffs: AtomicU64,
    accept_pauses: AtomicU64,
    /// Tells the id of the task polled on this thread (set by the executor):
    /// how a reservation made by `accept` in the io layer is tagged.
    current_task: OnceLock<fn() -> Option<u64>>,
    /// Where the metrics endpoint listens, once started (set once).
    endpoint_addr: OnceLock<std::net::SocketAddr>,
}

impl fmt::Debug for Books {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Books")
            .field("kinds", &self.kinds())
            .field("workers", &self.workers.lock().len())
            .field("shedding", &self.is_shedding())
            .finish_non_exhaustive()
    }
}

impl Default for Books {
    fn default() -> Self {
        Books::new(usize::MAX, false)
    }
}

impl Books {
    /// Books for a runtime with `max_tasks` live tasks at most (`usize::MAX`:
    /// no ceiling); listeners pause while it cannot take more work if
    /// `pause_accept`. The kind [`TASK`] is registered.
    pub fn new(max_tasks: usize, pause_accept: bool) -> Books {
        let tasks = Arc::new(Kind::new(TASK, max_tasks));
        // No budget until the runtime sets one (from `RLIMIT_NOFILE`).
        let sockets = Arc::new(Kind::new(crate::ledger::SOCKET, usize::MAX));
        Books {
            kinds: Mutex::new(vec![tasks.clone(), sockets.clone()]),
            tasks,
            sockets,
            workers: Mutex::new(Vec::new()),
            retired: Mutex::new(Vec::new()),
            holdings: crate::Holdings::default(),
            source: Mutex::new(None),
            shedding: AtomicBool::new(false),
            pause_accept: AtomicBool::new(pause_accept),
            shedding_transitions: AtomicU64::new(0),
            scope_deadlines: AtomicU64::new(0),
            stalls_seen: AtomicU64::new(0),
            stalls: Stalls::default(),
            compensations: AtomicU64::new(0),
            blocks_in_place: AtomicU64::new(0),
            rejected_ceiling: AtomicU64::new(0),
            rejected_shedding: AtomicU64::new(0),
            accept_backoffs: AtomicU64::new(0),
            accept_pauses: AtomicU64::new(0),
            current_task: OnceLock::new(),
            endpoint_addr: OnceLock::new(),
        }
    }

    /// The kind [`TASK`]: live tasks, whose budget is the task ceiling.
    #[inline]
    pub fn tasks(&self) -> &Arc<Kind> {
        &self.tasks
    }

    /// The kind [`SOCKET`](crate::ledger::SOCKET): the runtime's open
    /// sockets, whose budget keeps it under its fd limit.
    #[inline]
    pub fn sockets(&self) -> &Arc<Kind> {
        &self.sockets
    }

    /// Registers a kind named `name` with `budget` permits (`usize::MAX`: no
    /// limit). A name already registered, or a budget of 0, is an error.
    pub fn register_kind(
        &self,
        name: impl Into<Cow<'static, str>>,
        budget: usize,
    ) -> Result<Arc<Kind>, KindError> {
        let name = name.into();
        if budget == 0 {
            return Err(KindError::ZeroBudget {
                name: name.into_owned(),
            });
        }
        let mut kinds = self.kinds.lock();
        if kinds.iter().any(|k| k.name() == name) {
            return Err(KindError::Duplicate {
                name: name.into_owned(),
            });
        }
        let kind = Arc::new(Kind::new(name, budget));
        kinds.push(kind.clone());
        Ok(kind)
    }

    /// The live tracked resource handles (`bulwark::resource`).
    pub fn holdings(&self) -> &crate::Holdings {
        &self.holdings
    }

    /// The kind named `name`, registered now with no budget if it was not.
    pub fn kind_or_register(&self, name: &str) -> Arc<Kind> {
        if let Some(kind) = self.kind(name) {
            return kind;
        }
        match self.register_kind(name.to_string(), usize::MAX) {
            Ok(kind) => kind,
            // Registered by another thread meanwhile.
            Err(_) => self
                .kind(name)
                .unwrap_or_else(|| Arc::new(Kind::new(name.to_string(), usize::MAX))),
        }
    }

    /// The kind named `name`, if registered.
    pub fn kind(&self, name: &str) -> Option<Arc<Kind>> {
        self.kinds.lock().iter().find(|k| k.name() == name).cloned()
    }

    /// Every registered kind, in registration order ([`TASK`] first).
    pub fn kinds(&self) -> Vec<Arc<Kind>> {
        self.kinds.lock().clone()
    }

    /// Adds the slot of a new worker thread playing `role` (`"worker"`,
    /// `"replacement"`...): a retired slot of the same role if there is one
    /// (its counts go on adding up), else a new one, whose index is the
    /// number of slots added before. Workers may be added at any time, e.g.
    /// a replacement for a worker stuck in a poll.
    pub fn add_worker(&self, role: &'static str) -> Arc<WorkerSlot> {
        {
            let mut retired = self.retired.lock();
            if let Some(pos) = retired.iter().position(|s| s.role() == role) {
                return retired.swap_remove(pos);
            }
        }
        let mut workers = self.workers.lock();
        let slot = Arc::new(WorkerSlot::new(role, workers.len()));
        workers.push(slot.clone());
        slot
    }

    /// The thread of `slot` has ended for good: the slot may be handed to the
    /// next worker added in its role. It stays listed (and counted) in
    /// [`workers`](Books::workers).
    pub fn retire_worker(&self, slot: &Arc<WorkerSlot>) {
        slot.set_parked(false);
        self.retired.lock().push(slot.clone());
    }

    /// Every worker slot, in registration order.
    pub fn workers(&self) -> Vec<Arc<WorkerSlot>> {
        self.workers.lock().clone()
    }

    /// Sets where [`snapshot`](Books::snapshot) and
    /// [`list_tasks`](Books::list_tasks) read from (the executor, once
    /// built). Held weakly: the books never keep a runtime alive.
    pub fn set_source(&self, source: Weak<dyn Source>) {
        *self.source.lock() = Some(source);
    }

    /// The source, if set and still alive. The lock is let go before the
    /// source is called, so a slow source holds nobody up.
    fn source(&self) -> Option<Arc<dyn Source>> {
        self.source.lock().as_ref().and_then(Weak::upgrade)
    }

    /// True while the source is set and its runtime alive: what the
    /// metrics endpoint checks before it answers for the runtime.
    pub fn has_source(&self) -> bool {
        self.source
            .lock()
            .as_ref()
            .is_some_and(|w| w.strong_count() > 0)
    }

    /// Records where the metrics endpoint of these books listens (the first
    /// call counts; an endpoint is started once per runtime).
    pub fn set_endpoint_addr(&self, addr: std::net::SocketAddr) {
        let _ = self.endpoint_addr.set(addr);
    }

    /// Where the metrics endpoint of these books listens, if one was
    /// started (the bound address: a port asked as 0 is the real one here).
    pub fn endpoint_addr(&self) -> Option<std::net::SocketAddr> {
        self.endpoint_addr.get().copied()
    }

    /// The runtime's snapshot, from any thread; `None` if no source was set
    /// or the runtime is gone.
    pub fn snapshot(&self) -> Option<Snapshot> {
        self.source().map(|s| s.snapshot())
    }

    /// The runtime's live tasks, from any thread; empty if no source was set
    /// or the runtime is gone.
    pub fn list_tasks(&self) -> Vec<TaskInfo> {
        self.source().map(|s| s.tasks()).unwrap_or_default()
    }

    /// The runtime's orphaned and held-too-long resource handles, from any
    /// thread; empty if no source was set or the runtime is gone.
    pub fn list_leaks(&self) -> Vec<crate::LeakReport> {
        self.source().map(|s| s.leaks()).unwrap_or_default()
    }

    /// True while adaptive admission sheds new work.
    #[inline]
    pub fn is_shedding(&self) -> bool {
        self.shedding.load(Relaxed)
    }

    /// Turns shedding on or off; counts the switches to on.
    pub fn set_shedding(&self, on: bool) {
        if self.shedding.swap(on, Relaxed) != on && on {
            self.shedding_transitions.fetch_add(1, Relaxed);
        }
    }

    /// Times shedding was switched on.
    pub fn shedding_transitions(&self) -> u64 {
        self.shedding_transitions.load(Relaxed)
    }

    /// Counts a spawn rejected at the ceiling.
    pub fn count_rejected_ceiling(&self) {
        self.rejected_ceiling.fetch_add(1, Relaxed);
    }

    /// Counts a spawn rejected by shedding.
    pub fn count_rejected_shedding(&self) {
        self.rejected_shedding.fetch_add(1, Relaxed);
    }

    /// Spawns rejected at the ceiling.
    pub fn rejected_ceiling(&self) -> u64 {
        self.rejected_ceiling.load(Relaxed)
    }

    /// Spawns rejected by shedding.
    pub fn rejected_shedding(&self) -> u64 {
        self.rejected_shedding.load(Relaxed)
    }

    /// Counts an `accept` that failed for want of fds or memory and backed
    /// off instead of retrying at once (bumped by the io layer's listeners).
    pub fn count_accept_backoff(&self) {
        self.accept_backoffs.fetch_add(1, Relaxed);
    }

    /// Records a stall the watchdog saw: a poll of `task_id` (spawned at
    /// `location`) on worker `worker` that has held it for
    /// `reported_after`. Returns the stall's number, for
    /// [`end_stall`](Books::end_stall).
    pub fn record_stall(
        &self,
        worker: usize,
        task_id: Option<u64>,
        task_name: Option<String>,
        location: Option<&'static std::panic::Location<'static>>,
        reported_after: std::time::Duration,
    ) -> u64 {
        let seq = self.stalls_seen.fetch_add(1, Relaxed) + 1;
        self.stalls.push(StallReport {
            seq,
            worker,
            task_id,
            task_name,
            location,
            reported_after,
            total: None,
        });
        seq
    }

    /// Stall `seq` ended: its poll returned after `total` in all.
    pub fn end_stall(&self, seq: u64, total: std::time::Duration) {
        self.stalls.end(seq, total);
    }

    /// The most recent stalls (at most [`STALLS_KEPT`](crate::STALLS_KEPT)),
    /// oldest first.
    pub fn stalls(&self) -> Vec<StallReport> {
        self.stalls.list()
    }

    /// Counts a compensation: the watchdog handed a stuck worker's seat to a
    /// replacement thread.
    pub fn count_compensation(&self) {
        self.compensations.fetch_add(1, Relaxed);
    }

    /// Counts a `block_in_place` that handed its worker's seat to a new
    /// thread.
    pub fn count_block_in_place(&self) {
        self.blocks_in_place.fetch_add(1, Relaxed);
    }

    /// `block_in_place` hand-overs since the runtime was built.
    pub fn blocks_in_place(&self) -> u64 {
        self.blocks_in_place.load(Relaxed)
    }

    /// Compensations since the runtime was built.
    pub fn compensations(&self) -> u64 {
        self.compensations.load(Relaxed)
    }

    /// Stalls the watchdog has seen since the runtime was built.
    pub fn stalls_seen(&self) -> u64 {
        self.stalls_seen.load(Relaxed)
    }

    /// Counts a deadline scope (`task::scope_deadline`) whose deadline
    /// passed before its future finished: a request past its deadline.
    pub fn count_scope_deadline(&self) {
        self.scope_deadlines.fetch_add(1, Relaxed);
    }

    /// Deadline scopes whose deadline passed before their future finished.
    pub fn scope_deadlines(&self) -> u64 {
        self.scope_deadlines.load(Relaxed)
    }

    /// Counts a wait of a listener while admission paused accepting.
    pub fn count_accept_pause(&self) {
        self.accept_pauses.fetch_add(1, Relaxed);
    }

    /// `accept` failures for want of fds or memory, each followed by a
    /// back-off.
    pub fn accept_backoffs(&self) -> u64 {
        self.accept_backoffs.load(Relaxed)
    }

    /// Times a listener waited because admission paused accepting.
    pub fn accept_pauses(&self) -> u64 {
        self.accept_pauses.load(Relaxed)
    }

    /// Sets how to tell the id of the task being polled on the calling
    /// thread (the executor's `task::try_id`). Set once; later calls are
    /// ignored. Read only when `accept` reserves a permit, never per poll.
    pub fn set_current_task(&self, f: fn() -> Option<u64>) {
        let _ = self.current_task.set(f);
    }

    /// The id of the task being polled on this thread, if the executor said
    /// how to tell ([`set_current_task`](Books::set_current_task)) and one is.
    pub fn current_task(&self) -> Option<u64> {
        self.current_task.get().and_then(|f| f())
    }

    /// What a listener does before it takes a connection: reserves the task
    /// permit the connection's task will need, so that an accepted
    /// connection always gets its task (the spawn that follows takes it, see
    /// [`ledger::reserve_for_spawn`](crate::ledger::reserve_for_spawn)).
    ///
    /// - `Ok(Some(permit))`: a permit of [`TASK`], taken fairly (not ahead
    ///   of spawns waiting under `Admission::Wait`).
    /// - `Ok(None)`: nothing to reserve: the pause switch is off, or there
    ///   is no ceiling (and the runtime is not shedding).
    /// - `Err(AcceptPaused)`: leave connections in the backlog for now (at
    ///   the ceiling, or shedding), as [`accept_paused`](Books::accept_paused).
    pub fn reserve_for_accept(&self) -> Result<Option<Permit>, AcceptPaused> {
        if !self.pause_accept.load(Relaxed) {
            return Ok(None);
        }
        if self.is_shedding() {
            return Err(AcceptPaused);
        }
        if self.tasks.budget() == usize::MAX {
            return Ok(None);
        }
        if self.tasks.try_acquire_fair() {
            Ok(Some(Permit::from_raw(self.tasks.clone())))
        } else {
            Err(AcceptPaused)
        }
    }

    /// Whether listeners should leave new connections in the kernel backlog
    /// now: the switch is on and the runtime sheds or is at its ceiling.
    #[inline]
    pub fn accept_paused(&self) -> bool {
        self.pause_accept.load(Relaxed) && (self.is_shedding() || self.tasks.is_full())
    }
}

/// [`Books::reserve_for_accept`] found no room: listeners leave new
/// connections in the kernel backlog for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptPaused;

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::ledger::SOCKET;
    use crate::source::TaskState;
    use std::time::Duration;

    #[test]
    fn accept_pauses_at_the_ceiling_or_while_shedding_if_switched_on() {
        let b = Books::new(1, true);
        assert!(!b.accept_paused());
        assert!(b.tasks().try_acquire());
        assert!(b.accept_paused());
        b.tasks().release();
        b.set_shedding(true);
        assert!(b.accept_paused());
        b.set_shedding(true);
        b.set_shedding(false);
        assert_eq!(b.shedding_transitions(), 1);
        let off = Books::new(1, false);
        off.set_shedding(true);
        assert!(!off.accept_paused());
    }

    #[test]
    fn accept_reserves_a_task_permit_when_there_is_a_ceiling() {
        let b = Books::new(2, true);
        let p = b.reserve_for_accept().unwrap().expect("a permit");
        assert_eq!(b.tasks().live(), 1);
        let q = b.reserve_for_accept().unwrap().expect("a permit");
        assert_eq!(b.reserve_for_accept().unwrap_err(), AcceptPaused);
        drop((p, q));
        assert_eq!(b.tasks().live(), 0);
        b.set_shedding(true);
        assert_eq!(b.reserve_for_accept().unwrap_err(), AcceptPaused);
        // No ceiling, or the switch off: nothing reserved.
        assert!(Books::new(usize::MAX, true)
            .reserve_for_accept()
            .unwrap()
            .is_none());
        let off = Books::new(1, false);
        assert!(off.reserve_for_accept().unwrap().is_none());
        assert_eq!(off.tasks().live(), 0);
    }

    #[test]
    fn the_current_task_is_told_by_the_executor() {
        let b = Books::new(1, true);
        assert_eq!(b.current_task(), None);
        b.set_current_task(|| Some(42));
        b.set_current_task(|| Some(7));
        assert_eq!(b.current_task(), Some(42), "set once");
    }

    #[test]
    fn kinds_register_once_by_name_in_order() {
        let b = Books::new(10, false);
        assert_eq!(b.kinds().len(), 2);
        assert!(Arc::ptr_eq(&b.kind(TASK).unwrap(), b.tasks()));
        assert!(Arc::ptr_eq(&b.kind(SOCKET).unwrap(), b.sockets()));
        assert_eq!(b.sockets().budget(), usize::MAX, "no budget until set");
        let db = b.register_kind(String::from("db"), 4).unwrap();
        assert_eq!((db.name(), db.budget()), ("db", 4));
        assert!(b.register_kind(SOCKET, 100).is_err(), "registered already");
        assert!(Arc::ptr_eq(&b.kind("db").unwrap(), &db));
        let names: Vec<_> = b.kinds().iter().map(|k| k.name().to_owned()).collect();
        assert_eq!(names, ["task", "socket", "db"]);

        let dup = b.register_kind("db", 9).unwrap_err();
        assert_eq!(dup, KindError::Duplicate { name: "db".into() });
        assert!(dup.to_string().contains("`db` is already registered"));
        assert!(matches!(
            b.register_kind(TASK, 9),
            Err(KindError::Duplicate { .. })
        ));
        let zero = b.register_kind("cache", 0).unwrap_err();
        assert_eq!(
            zero,
            KindError::ZeroBudget {
                name: "cache".into()
            }
        );
        assert!(zero.to_string().contains("budget of 0"));
        assert_eq!(b.kinds().len(), 3, "failed registrations add nothing");
        assert_eq!(b.kind("db").unwrap().budget(), 4);
    }

    #[test]
    fn workers_are_indexed_in_registration_order_even_after_build() {
        let b = Books::default();
        let w0 = b.add_worker("worker");
        let w1 = b.add_worker("worker");
        w1.counters.steals.add(3);
        let r = b.add_worker("replacement");
        let all = b.workers();
        assert_eq!(all.len(), 3);
        assert_eq!(
            all.iter()
                .map(|w| (w.role(), w.index()))
                .collect::<Vec<_>>(),
            [("worker", 0), ("worker", 1), ("replacement", 2)]
        );
        assert!(Arc::ptr_eq(&all[0], &w0) && Arc::ptr_eq(&all[2], &r));
        assert_eq!(all[1].counters.steals.get(), 3);
    }

    struct Fake;

    impl Source for Fake {
        fn snapshot(&self) -> Snapshot {
            Snapshot {
                workers: 5,
                ..Snapshot::default()
            }
        }

        fn tasks(&self) -> Vec<TaskInfo> {
            vec![TaskInfo {
                id: 1,
                name: Some("accept loop".into()),
                location: "src/main.rs:10:5".into(),
                state: TaskState::Idle,
                age: Duration::from_secs(3),
                idle_for: None,
                polls: 2,
                busy: None,
                deadline: None,
                resources: 0,
            }]
        }

        fn leaks(&self) -> Vec<crate::LeakReport> {
            Vec::new()
        }
    }

    #[test]
    fn snapshot_and_tasks_come_from_the_source_while_it_lives() {
        let b = Books::default();
        assert_eq!(b.snapshot(), None);
        assert!(b.list_tasks().is_empty());
        let source: Arc<dyn Source> = Arc::new(Fake);
        b.set_source(Arc::downgrade(&source));
        assert_eq!(b.snapshot().map(|s| s.workers), Some(5));
        let tasks = b.list_tasks();
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0].name.as_deref(), Some("accept loop"));
        assert_eq!(tasks[0].state, TaskState::Idle);
        drop(source);
        assert_eq!(b.snapshot(), None, "the runtime is gone");
        assert!(b.list_tasks().is_empty());
    }

    #[test]
    fn the_books_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Books>();
        check::<Kind>();
        check::<WorkerSlot>();
        check::<crate::ledger::Permit>();
        check::<crate::ledger::Acquire>();
        check::<crate::ledger::WaitSlot>();
    }
}
