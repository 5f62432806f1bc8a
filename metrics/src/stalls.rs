//! The stalls the watchdog saw: a poll that held its worker past the
//! watchdog's threshold. A bounded ring of the most recent ones, kept in the
//! books so that code (`Handle::stalls`) and the coming metrics endpoint can
//! read them from any thread.

use crate::sync::Mutex;
use std::collections::VecDeque;
use std::panic::Location;
use std::time::Duration;

/// How many stalls the ring keeps (the oldest go first).
pub const STALLS_KEPT: usize = 64;

/// One poll that blocked its worker past the watchdog's threshold.
///
/// # Examples
///
/// ```
/// use bulwark::runtime::{Builder, Watchdog};
/// use std::time::Duration;
///
/// let rt = Builder::new_multi_thread()
///     .watchdog(Watchdog::new(Duration::from_millis(20)))
///     .build()
///     .unwrap();
/// let handle = rt.handle().clone();
/// let blocker = bulwark::task::Builder::new()
///     .name("blocker")
///     .spawn_on(
///         async move {
///             // Blocks its worker, on purpose, until the watchdog has seen it
///             // (or 10 s).
///             for _ in 0..1000 {
///                 std::thread::sleep(Duration::from_millis(10));
///                 if !handle.stalls().is_empty() {
///                     break;
///                 }
///             }
///         },
///         rt.handle(),
///     )
///     .unwrap();
/// let id = blocker.id().as_u64();
/// rt.block_on(blocker).unwrap();
///
/// let stall = rt.handle().stalls().remove(0);
/// assert_eq!(stall.seq, 1);
/// assert_eq!(stall.task_id, Some(id));
/// assert_eq!(stall.task_name.as_deref(), Some("blocker"));
/// assert!(stall.reported_after >= Duration::from_millis(20));
/// assert!(rt.metrics().stalls >= 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StallReport {
    /// A number for this stall, counting from 1 in the order they were seen.
    pub seq: u64,
    /// The worker's index in the books (registration order).
    pub worker: usize,
    /// The id of the task whose poll blocked, if the watchdog caught it.
    pub task_id: Option<u64>,
    /// The task's name, if it has one and was still listed.
    pub task_name: Option<String>,
    /// Where the task was spawned, if the watchdog caught it.
    pub location: Option<&'static Location<'static>>,
    /// How long the poll had held its worker when the watchdog reported it
    /// (at least the threshold).
    pub reported_after: Duration,
    /// How long the poll held its worker in all, once it returned; `None`
    /// while it still runs.
    pub total: Option<Duration>,
}

/// The ring of recent stalls.
pub(crate) struct Stalls {
    ring: Mutex<VecDeque<StallReport>>,
}

impl Default for Stalls {
    fn default() -> Stalls {
        Stalls {
            ring: Mutex::new(VecDeque::with_capacity(STALLS_KEPT)),
        }
    }
}

impl Stalls {
    /// Keeps a new stall (numbered by the caller); drops the oldest past
    /// [`STALLS_KEPT`].
    pub(crate) fn push(&self, report: StallReport) {
        let mut ring = self.ring.lock();
        if ring.len() == STALLS_KEPT {
            ring.pop_front();
        }
        ring.push_back(report);
    }

    /// Stall `seq` ended after `total`, if the ring still holds it.
    pub(crate) fn end(&self, seq: u64, total: Duration) {
        let mut ring = self.ring.lock();
        if let Some(r) = ring.iter_mut().rev().find(|r| r.seq == seq) {
            r.total = Some(total);
        }
    }

    /// The stalls kept, oldest first.
    pub(crate) fn list(&self) -> Vec<StallReport> {
        self.ring.lock().iter().cloned().collect()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn report(seq: u64) -> StallReport {
        StallReport {
            seq,
            worker: 0,
            task_id: Some(seq),
            task_name: None,
            location: None,
            reported_after: Duration::from_millis(30),
            total: None,
        }
    }

    #[test]
    fn keeps_the_most_recent_and_records_their_end() {
        let s = Stalls::default();
        for seq in 1..=(STALLS_KEPT as u64 + 3) {
            s.push(report(seq));
        }
        let list = s.list();
        assert_eq!(list.len(), STALLS_KEPT);
        assert_eq!(list[0].seq, 4, "the three oldest went first");
        s.end(STALLS_KEPT as u64 + 3, Duration::from_secs(1));
        s.end(1, Duration::from_secs(1)); // gone: nothing to do
        assert_eq!(s.list().last().unwrap().total, Some(Duration::from_secs(1)));
    }
}
