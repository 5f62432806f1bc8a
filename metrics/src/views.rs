//! JSON views of the books' public types: what the metrics endpoint's
//! `/tasks`, `/stalls` and `/leaks` write, and (with the `serde` feature)
//! what `serde::Serialize` writes for [`TaskInfo`], [`StallReport`] and
//! [`LeakReport`], so that both say the same thing the same way.
//!
//! The conventions, one place for all of them:
//! - durations are seconds as a float, in fields named `*_seconds`;
//! - states and reasons are snake-case names ([`TaskState::name`],
//!   [`LeakKind::name`](crate::LeakKind::name));
//! - source locations are `file:line:column` strings;
//! - an absent value is `null`, never a made-up zero;
//! - a budget of `usize::MAX` (no limit) is `null`.

use crate::{LeakReport, StallReport, TaskInfo, TaskState};
use serde::Serialize;
use std::time::Duration;

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// One task, as `/tasks` lists it.
#[derive(Serialize)]
pub(crate) struct TaskView<'a> {
    id: u64,
    name: Option<&'a str>,
    location: &'a str,
    state: &'static str,
    age_seconds: f64,
    polls: u64,
    busy_seconds: Option<f64>,
    idle_seconds: Option<f64>,
    deadline_seconds: Option<f64>,
    resources: usize,
}

/// The longest task name `/tasks` writes, in bytes (cut at a character
/// boundary): a name is the program's own text, but a page's size should
/// not depend on it.
pub(crate) const NAME_MAX: usize = 256;

fn cut(name: &str, max: usize) -> &str {
    if name.len() <= max {
        return name;
    }
    let mut end = max;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

impl<'a> TaskView<'a> {
    /// The view of `t`; its name cut to `name_max` bytes.
    pub(crate) fn of(t: &'a TaskInfo, name_max: usize) -> TaskView<'a> {
        TaskView {
            id: t.id,
            name: t.name.as_deref().map(|n| cut(n, name_max)),
            location: &t.location,
            state: t.state.name(),
            age_seconds: secs(t.age),
            polls: t.polls,
            busy_seconds: t.busy.map(secs),
            idle_seconds: t.idle_for.map(secs),
            deadline_seconds: t.deadline.map(secs),
            resources: t.resources,
        }
    }
}

/// One stall, as `/stalls` lists it.
#[derive(Serialize)]
pub(crate) struct StallView<'a> {
    seq: u64,
    worker: usize,
    task_id: Option<u64>,
    task_name: Option<&'a str>,
    location: Option<String>,
    reported_after_seconds: f64,
    /// `None` while the poll still holds its worker.
    total_seconds: Option<f64>,
    ongoing: bool,
}

impl<'a> StallView<'a> {
    pub(crate) fn of(s: &'a StallReport) -> StallView<'a> {
        StallView {
            seq: s.seq,
            worker: s.worker,
            task_id: s.task_id,
            task_name: s.task_name.as_deref().map(|n| cut(n, NAME_MAX)),
            location: s.location.map(|l| l.to_string()),
            reported_after_seconds: secs(s.reported_after),
            total_seconds: s.total.map(secs),
            ongoing: s.total.is_none(),
        }
    }
}

/// One leaked handle, as `/leaks` lists it.
#[derive(Serialize)]
pub(crate) struct LeakView<'a> {
    why: &'static str,
    kind: &'a str,
    holder: Option<u64>,
    age_seconds: f64,
    site: String,
}

impl<'a> LeakView<'a> {
    pub(crate) fn of(l: &'a LeakReport) -> LeakView<'a> {
        LeakView {
            why: l.why.name(),
            kind: &l.kind,
            holder: l.holder,
            age_seconds: secs(l.age),
            site: l.site.to_string(),
        }
    }
}

/// `usize::MAX` (no limit) as `null`, any other budget as itself.
#[cfg(feature = "serde")]
pub(crate) fn budget<S: serde::Serializer>(b: &usize, s: S) -> Result<S::Ok, S::Error> {
    if *b == usize::MAX {
        s.serialize_none()
    } else {
        s.serialize_u64(*b as u64)
    }
}

/// The public types' `Serialize`, through the views above.
#[cfg(feature = "serde")]
mod impls {
    use super::*;
    use crate::{LeakKind, WorkerState};
    use serde::Serializer;

    impl Serialize for TaskState {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(self.name())
        }
    }

    impl Serialize for LeakKind {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(self.name())
        }
    }

    /// As `/tasks` writes it, the name uncut.
    impl Serialize for TaskInfo {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            TaskView::of(self, usize::MAX).serialize(s)
        }
    }

    /// As `/stalls` writes it.
    impl Serialize for StallReport {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            StallView::of(self).serialize(s)
        }
    }

    /// As `/leaks` writes it.
    impl Serialize for LeakReport {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            LeakView::of(self).serialize(s)
        }
    }

    #[derive(Serialize)]
    #[serde(tag = "state", rename_all = "snake_case")]
    enum WorkerStateView {
        Parked,
        Idle,
        Polling {
            task_id: Option<u64>,
            location: Option<String>,
        },
    }

    /// `{"state": "parked"}`, `{"state": "idle"}`, or `{"state":
    /// "polling", "task_id": .., "location": ".."}`.
    impl Serialize for WorkerState {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match *self {
                WorkerState::Parked => WorkerStateView::Parked,
                WorkerState::Idle => WorkerStateView::Idle,
                WorkerState::Polling { task_id, location } => WorkerStateView::Polling {
                    task_id,
                    location: location.map(|l| l.to_string()),
                },
            }
            .serialize(s)
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_at_a_character_boundary() {
        assert_eq!(cut("abc", 5), "abc");
        assert_eq!(cut("abcdef", 3), "abc");
        // 'é' is two bytes: cutting inside it keeps the character out.
        assert_eq!(cut("aé", 2), "a");
    }

    #[test]
    fn a_task_view_writes_seconds_names_and_nulls() {
        let t = TaskInfo {
            id: 3,
            name: Some("accept loop".into()),
            location: "src/main.rs:1:2".into(),
            state: TaskState::WaitingAdmission,
            age: Duration::from_millis(1500),
            idle_for: None,
            polls: 4,
            busy: Some(Duration::from_micros(250)),
            deadline: None,
            resources: 2,
        };
        let v: serde_json::Value = serde_json::to_value(TaskView::of(&t, NAME_MAX)).unwrap();
        assert_eq!(v["state"], "waiting_admission");
        assert_eq!(v["age_seconds"], 1.5);
        assert_eq!(v["busy_seconds"], 0.00025);
        assert!(v["deadline_seconds"].is_null());
        assert_eq!(v["name"], "accept loop");
        #[cfg(feature = "serde")]
        assert_eq!(serde_json::to_value(&t).unwrap(), v);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn a_snapshot_serializes_field_by_field_with_no_limit_as_null() {
        use crate::{KindSnapshot, Snapshot, WorkerSnapshot, WorkerState};
        let s = Snapshot {
            tasks_live: 4,
            max_tasks: usize::MAX,
            kinds: vec![KindSnapshot {
                name: "db".into(),
                budget: 8,
                ..KindSnapshot::default()
            }],
            worker_states: vec![WorkerSnapshot {
                role: "worker",
                index: 0,
                polls_started: 2,
                polls_ended: 1,
                state: WorkerState::Polling {
                    task_id: Some(9),
                    location: None,
                },
            }],
            ..Snapshot::default()
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["tasks_live"], 4);
        assert!(v["max_tasks"].is_null());
        assert_eq!(v["kinds"][0]["budget"], 8);
        assert_eq!(v["poll_duration"]["counts"].as_array().unwrap().len(), 14);
        assert_eq!(v["worker_states"][0]["state"]["state"], "polling");
        assert_eq!(v["worker_states"][0]["state"]["task_id"], 9);
    }
}
