//! A [`Snapshot`] in Prometheus' text exposition format (version 0.0.4) and
//! in OpenMetrics 1.0: pure functions from a snapshot to text, which the
//! metrics endpoint's `/metrics` serves.
//!
//! # Families
//!
//! Every family is named `bulwark_*` and has a `# HELP` and a `# TYPE`
//! line. They come from four tables, so that a new figure in the snapshot
//! is one line here:
//! - [`SCALARS`]: one sample read off the snapshot (a counter or a gauge);
//! - `KIND_FAMILIES`: one sample per ledger kind, labelled `kind`
//!   (`task`, `socket`, a user's kinds);
//! - `WORKER_FAMILIES`: one sample per worker slot, labelled `worker` (its
//!   index) and `role`;
//! - `HISTOGRAMS`: duration histograms, as Prometheus histograms;
//!
//! and one labelled by hand: `bulwark_spawns_rejected_total{reason}`.
//!
//! # Counters
//!
//! A counter's samples are `bulwark_<name>_total` in both formats; its
//! family is `bulwark_<name>_total` in Prometheus' format and
//! `bulwark_<name>` in OpenMetrics, as each format wants.
//!
//! # Histograms
//!
//! Durations are in seconds. The buckets are fixed
//! ([`BUCKET_BOUNDS_NANOS`]: 1 us times powers of four, up to 16.777216 s),
//! so `le` labels are the same in every scrape and every runtime:
//! `0.000001`, `0.000004`, `0.000016`, ... `16.777216`, `+Inf`. Bucket
//! counts are cumulative and the `+Inf` bucket equals `_count`. Poll
//! duration and scheduling delay are sampled (one poll in a few is timed):
//! `_count` is the polls timed, not every poll.
//!
//! # Limits
//!
//! A budget or ceiling of `usize::MAX` (no limit) is written `+Inf`.

use crate::{HistogramSnapshot, KindSnapshot, Snapshot, WorkerSnapshot, BUCKET_BOUNDS_NANOS};
use std::fmt::Write as _;

/// The `Content-Type` of [`Format::Prometheus`].
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `Content-Type` of [`Format::OpenMetrics`].
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Which text format to write.
///
/// # Examples
///
/// Serving a scrape: the format the client asks for, and its content type.
///
/// ```
/// use bulwark::metrics::exposition::{render, Format};
///
/// let rt = bulwark::Runtime::new().unwrap();
/// let accept = Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5");
/// let format = Format::negotiate(accept);
/// assert_eq!(format, Format::OpenMetrics);
/// assert!(format.content_type().starts_with("application/openmetrics-text"));
/// let body = render(&rt.metrics(), format);
/// assert!(body.ends_with("# EOF\n"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus' text format, version 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0 text: counters' families without `_total`, `# EOF`
    /// last.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` to serve this format with.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => PROMETHEUS_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }

    /// The format a request's `Accept` header asks for: OpenMetrics if it
    /// names `application/openmetrics-text` with a quality above zero (as
    /// Prometheus' scraper does), else Prometheus' text format.
    ///
    /// ```
    /// use bulwark::metrics::exposition::Format;
    /// let prometheus = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    /// assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
    /// assert_eq!(Format::negotiate(Some("text/plain")), Format::Prometheus);
    /// assert_eq!(Format::negotiate(None), Format::Prometheus);
    /// ```
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Prometheus;
        };
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            if !media.eq_ignore_ascii_case("application/openmetrics-text") {
                continue;
            }
            let refused = parts.any(|p| {
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("q")
                        && v.trim().parse::<f64>().is_ok_and(|q| q <= 0.0)
                })
            });
            if !refused {
                return Format::OpenMetrics;
            }
        }
        Format::Prometheus
    }
}

/// What a family's samples are.
///
/// # Examples
///
/// ```
/// use bulwark::metrics::exposition::{MetricType, SCALARS};
///
/// let ty = |name: &str| SCALARS.iter().find(|s| s.name == name).unwrap().ty;
/// assert_eq!(ty("tasks_spawned"), MetricType::Counter);
/// assert_eq!(ty("tasks_live"), MetricType::Gauge);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// Only goes up (from the runtime's start).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Cumulative buckets, a sum and a count.
    Histogram,
}

impl MetricType {
    fn name(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// A family with one sample read off the snapshot.
///
/// # Examples
///
/// ```
/// use bulwark::metrics::exposition::SCALARS;
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(rt.spawn(async {})).unwrap();
/// let snapshot = rt.metrics();
/// let spawned = SCALARS.iter().find(|s| s.name == "tasks_spawned").unwrap();
/// assert_eq!((spawned.get)(&snapshot), 1);
/// // Every family has its help text; a limit of `usize::MAX` is written +Inf.
/// assert!(SCALARS.iter().all(|s| !s.help.is_empty()));
/// let ceiling = SCALARS.iter().find(|s| s.name == "max_tasks").unwrap();
/// assert!(ceiling.limit);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Scalar {
    /// The name after `bulwark_` (a counter's without `_total`).
    pub name: &'static str,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Counter or gauge.
    pub ty: MetricType,
    /// Reads the value.
    pub get: fn(&Snapshot) -> u64,
    /// `usize::MAX` means no limit: written `+Inf`.
    pub limit: bool,
}

const fn counter(name: &'static str, help: &'static str, get: fn(&Snapshot) -> u64) -> Scalar {
    Scalar {
        name,
        help,
        ty: MetricType::Counter,
        get,
        limit: false,
    }
}

const fn gauge(name: &'static str, help: &'static str, get: fn(&Snapshot) -> u64) -> Scalar {
    Scalar {
        name,
        help,
        ty: MetricType::Gauge,
        get,
        limit: false,
    }
}

const fn limit(name: &'static str, help: &'static str, get: fn(&Snapshot) -> u64) -> Scalar {
    Scalar {
        name,
        help,
        ty: MetricType::Gauge,
        get,
        limit: true,
    }
}

/// Every family read straight off the snapshot, one line each.
#[rustfmt::skip]
pub const SCALARS: &[Scalar] = &[
    // Tasks: how they began and ended (the conservation law's terms).
    counter("tasks_spawned", "Tasks spawned, blocking tasks and rejected spawns included.", |s| s.tasks_spawned),
    counter("tasks_completed", "Tasks that finished with an output.", |s| s.tasks_completed),
    counter("tasks_panicked", "Tasks whose poll or blocking closure panicked.", |s| s.tasks_panicked),
    counter("tasks_cancelled", "Tasks cancelled: aborted, or dropped at shutdown.", |s| s.tasks_cancelled),
    counter("tasks_deadline_exceeded", "Tasks dropped at their deadline.", |s| s.tasks_deadline_exceeded),
    counter("tasks_lost_cancelled", "Tasks cancelled because they were lost (no waker left).", |s| s.tasks_lost_cancelled),
    counter("tasks_rejected", "Spawns rejected by admission (at the ceiling, or shed).", |s| s.tasks_rejected),
    counter("tasks_lost", "Tasks found lost: waiting with every waker dropped (detections, not outcomes).", |s| s.tasks_lost),
    counter("scope_deadlines_exceeded", "Deadline scopes (requests) whose deadline passed before their future finished.", |s| s.scope_deadlines_exceeded),
    counter("wasted_subtasks", "Subtasks that completed for a parent whose work then failed.", |s| s.wasted_subtasks),
    // Tasks now.
    gauge("tasks_live", "Tasks spawned and not yet finished (waiting for admission included).", |s| s.tasks_live),
    gauge("tasks_admitted_live", "Tasks holding a permit of the task ceiling now.", |s| s.tasks_admitted_live as u64),
    gauge("tasks_admitted_peak", "The most tasks ever admitted at once.", |s| s.tasks_admitted_peak as u64),
    limit("max_tasks", "The task ceiling (max_tasks); +Inf for none.", |s| s.max_tasks as u64),
    gauge("tasks_waiting", "Tasks waiting for admission.", |s| s.tasks_waiting as u64),
    gauge("children_waiting", "Children waiting for a place in their parent's fan-out budget.", |s| s.children_waiting as u64),
    // Admission.
    gauge("shedding", "1 while adaptive admission sheds new work, else 0.", |s| u64::from(s.shedding)),
    counter("shedding_transitions", "Times shedding switched on.", |s| s.shedding_transitions),
    counter("accept_backoffs", "Accept failures for want of fds or memory, each followed by a back-off.", |s| s.accept_backoffs),
    counter("accept_pauses", "Times a listener waited because the runtime was shedding or at its ceiling.", |s| s.accept_pauses),
    // Workers.
    gauge("worker_slots", "Worker slots in the books (replacements included; a slot outlives its thread).", |s| s.workers as u64),
    gauge("worker_threads", "Worker threads running now, stuck ones whose seat was taken included.", |s| s.worker_threads as u64),
    counter("polls", "Task polls run by the workers.", |s| s.polls),
    counter("steals", "Tasks a worker took from another worker's queue.", |s| s.steals),
    counter("remote_schedules", "Tasks queued on the global queue (woken or spawned from outside the workers).", |s| s.remote_schedules),
    gauge("global_queue_depth", "Tasks in the global queue now.", |s| s.global_queue_depth as u64),
    counter("parks", "Times a worker went to sleep for want of work.", |s| s.parks),
    counter("stalls", "Polls the watchdog saw hold their worker past its threshold.", |s| s.stalls),
    counter("compensations", "Times the watchdog handed a stuck worker's seat to a replacement thread.", |s| s.compensations),
    counter("blocks_in_place", "Times block_in_place handed its worker's seat to a new thread.", |s| s.blocks_in_place),
    // The blocking pool and the driver.
    gauge("blocking_threads", "Threads of the blocking pool, busy or idle.", |s| s.blocking_threads as u64),
    gauge("blocking_threads_idle", "Blocking threads waiting for work.", |s| s.blocking_threads_idle as u64),
    gauge("blocking_queue_depth", "Blocking closures queued and not yet started.", |s| s.blocking_queue_depth as u64),
    gauge("io_registrations", "Sockets registered with the IO driver.", |s| s.io_registrations as u64),
    gauge("timers_pending", "Timers set and neither fired nor cancelled.", |s| s.timers_pending as u64),
    // Tracked resources.
    gauge("resources_tracked", "Tracked resource handles live now.", |s| s.resources_tracked as u64),
    counter("resource_orphans", "Tracked handles found alive after their holder task finished.", |s| s.resource_orphans),
    counter("resource_long_holds", "Tracked handles found held longer than their kind's max_hold.", |s| s.resource_long_holds),
];

/// A family with one sample per ledger kind, labelled `kind`.
struct KindFamily {
    name: &'static str,
    help: &'static str,
    ty: MetricType,
    get: fn(&KindSnapshot) -> u64,
    limit: bool,
}

#[rustfmt::skip]
const KIND_FAMILIES: &[KindFamily] = &[
    KindFamily { name: "kind_live", help: "Permits of the ledger kind held now.", ty: MetricType::Gauge, get: |k| k.live as u64, limit: false },
    KindFamily { name: "kind_budget", help: "The ledger kind's budget; +Inf for none.", ty: MetricType::Gauge, get: |k| k.budget as u64, limit: true },
    KindFamily { name: "kind_peak", help: "The most permits of the ledger kind ever held at once.", ty: MetricType::Gauge, get: |k| k.peak as u64, limit: false },
    KindFamily { name: "kind_waiting", help: "Waiters for a permit of the ledger kind now.", ty: MetricType::Gauge, get: |k| k.waiting as u64, limit: false },
    KindFamily { name: "kind_admitted", help: "Permits of the ledger kind handed out.", ty: MetricType::Counter, get: |k| k.admitted, limit: false },
    KindFamily { name: "kind_refused", help: "Acquisitions of the ledger kind refused for want of a permit.", ty: MetricType::Counter, get: |k| k.refused, limit: false },
];

/// A family with one sample per worker slot, labelled `worker` and `role`.
struct WorkerFamily {
    name: &'static str,
    help: &'static str,
    ty: MetricType,
    get: fn(&WorkerSnapshot) -> u64,
}

#[rustfmt::skip]
const WORKER_FAMILIES: &[WorkerFamily] = &[
    WorkerFamily { name: "worker_polls", help: "Task polls begun on the worker.", ty: MetricType::Counter, get: |w| w.polls_started },
    WorkerFamily { name: "worker_queue_depth", help: "Tasks in the local queue of the seat the worker's thread holds (the LIFO slot aside).", ty: MetricType::Gauge, get: |w| w.queue_depth as u64 },
    WorkerFamily { name: "worker_polling", help: "1 while the worker is inside a task's poll, else 0.", ty: MetricType::Gauge, get: |w| u64::from(w.polls_started != w.polls_ended) },
];

/// A duration histogram read off the snapshot.
struct HistogramFamily {
    name: &'static str,
    help: &'static str,
    get: fn(&Snapshot) -> &HistogramSnapshot,
}

#[rustfmt::skip]
const HISTOGRAMS: &[HistogramFamily] = &[
    HistogramFamily { name: "poll_duration_seconds", help: "Time inside task polls, for the polls sampled.", get: |s| &s.poll_duration },
    HistogramFamily { name: "scheduling_delay_seconds", help: "Time from a task's wake to the start of its poll, for the wakes sampled.", get: |s| &s.scheduling_delay },
    HistogramFamily { name: "task_lifetime_seconds", help: "Time from spawn to end, for every task that ended.", get: |s| &s.task_lifetime },
];

/// The resource hold-time histogram, one per kind.
const HOLD: (&str, &str) = (
    "resource_hold_seconds",
    "How long tracked handles of the kind were held, from track to drop.",
);

/// The snapshot in Prometheus' text format (0.0.4).
///
/// # Examples
///
/// ```
/// use bulwark::metrics::exposition::prometheus;
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(rt.spawn(async {})).unwrap();
/// let text = prometheus(&rt.metrics());
/// assert!(text.contains("# TYPE bulwark_tasks_spawned_total counter\n"));
/// assert!(text.contains("\nbulwark_tasks_spawned_total 1\n"));
/// ```
pub fn prometheus(s: &Snapshot) -> String {
    render(s, Format::Prometheus)
}

/// The snapshot in OpenMetrics 1.0 text, `# EOF` last.
///
/// # Examples
///
/// ```
/// use bulwark::metrics::exposition::openmetrics;
///
/// let rt = bulwark::Runtime::new().unwrap();
/// let text = openmetrics(&rt.metrics());
/// // A counter's family drops `_total`; its sample keeps it.
/// assert!(text.contains("# TYPE bulwark_tasks_spawned counter\n"));
/// assert!(text.contains("\nbulwark_tasks_spawned_total 0\n"));
/// assert!(text.ends_with("# EOF\n"));
/// ```
pub fn openmetrics(s: &Snapshot) -> String {
    render(s, Format::OpenMetrics)
}

/// The snapshot in `format`.
///
/// # Examples
///
/// ```
/// use bulwark::metrics::exposition::{openmetrics, prometheus, render, Format};
///
/// let rt = bulwark::Runtime::new().unwrap();
/// let snapshot = rt.metrics();
/// assert_eq!(render(&snapshot, Format::Prometheus), prometheus(&snapshot));
/// assert_eq!(render(&snapshot, Format::OpenMetrics), openmetrics(&snapshot));
/// ```
pub fn render(s: &Snapshot, format: Format) -> String {
    let mut out = Out {
        buf: String::with_capacity(16 * 1024),
        format,
    };
    for f in SCALARS {
        out.family(f.name, f.help, f.ty);
        out.sample(f.name, f.ty, &[], Value::of((f.get)(s), f.limit));
    }
    out.family(
        "spawns_rejected",
        "Spawns rejected by admission, by reason: at the task ceiling, or shed.",
        MetricType::Counter,
    );
    for (reason, n) in [
        ("ceiling", s.rejected_at_ceiling),
        ("shedding", s.rejected_shedding),
    ] {
        out.sample(
            "spawns_rejected",
            MetricType::Counter,
            &[("reason", reason)],
            Value::Int(n),
        );
    }
    for f in KIND_FAMILIES {
        out.family(f.name, f.help, f.ty);
        for k in &s.kinds {
            let v = Value::of((f.get)(k), f.limit);
            out.sample(f.name, f.ty, &[("kind", &k.name)], v);
        }
    }
    for f in WORKER_FAMILIES {
        out.family(f.name, f.help, f.ty);
        for w in &s.worker_states {
            let index = w.index.to_string();
            let labels = [("worker", index.as_str()), ("role", w.role)];
            out.sample(f.name, f.ty, &labels, Value::Int((f.get)(w)));
        }
    }
    for h in HISTOGRAMS {
        out.family(h.name, h.help, MetricType::Histogram);
        out.histogram(h.name, &[], (h.get)(s));
    }
    out.family(HOLD.0, HOLD.1, MetricType::Histogram);
    for k in &s.kinds {
        out.histogram(HOLD.0, &[("kind", &k.name)], &k.hold_time);
    }
    if format == Format::OpenMetrics {
        out.buf.push_str("# EOF\n");
    }
    out.buf
}

/// A sample's value.
enum Value {
    Int(u64),
    Inf,
}

impl Value {
    fn of(v: u64, limit: bool) -> Value {
        if limit && v >= usize::MAX as u64 {
            Value::Inf
        } else {
            Value::Int(v)
        }
    }
}

/// The text being written, and how.
struct Out {
    buf: String,
    format: Format,
}

impl Out {
    /// `# HELP` and `# TYPE` of the family `bulwark_<name>` (plus `_total`
    /// for a counter in Prometheus' format).
    fn family(&mut self, name: &str, help: &str, ty: MetricType) {
        let total = if ty == MetricType::Counter && self.format == Format::Prometheus {
            "_total"
        } else {
            ""
        };
        let _ = write!(self.buf, "# HELP bulwark_{name}{total} ");
        escape_help(&mut self.buf, help, self.format);
        let _ = writeln!(self.buf, "\n# TYPE bulwark_{name}{total} {}", ty.name());
    }

    /// One sample of `bulwark_<name>` (plus `_total` for a counter).
    fn sample(&mut self, name: &str, ty: MetricType, labels: &[(&str, &str)], v: Value) {
        let suffix = if ty == MetricType::Counter {
            "_total"
        } else {
            ""
        };
        let _ = write!(self.buf, "bulwark_{name}{suffix}");
        self.labels(labels, None);
        match v {
            Value::Int(n) => {
                let _ = writeln!(self.buf, " {n}");
            }
            Value::Inf => self.buf.push_str(" +Inf\n"),
        }
    }

    /// `_bucket` lines (cumulative, `+Inf` last), `_sum` (seconds) and
    /// `_count`.
    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &HistogramSnapshot) {
        let cumulative = h.cumulative();
        let mut le = String::with_capacity(16);
        for (i, n) in cumulative.iter().enumerate() {
            le.clear();
            match BUCKET_BOUNDS_NANOS.get(i) {
                Some(&bound) => write_seconds(&mut le, bound),
                None => le.push_str("+Inf"),
            }
            let _ = write!(self.buf, "bulwark_{name}_bucket");
            self.labels(labels, Some(&le));
            let _ = writeln!(self.buf, " {n}");
        }
        let _ = write!(self.buf, "bulwark_{name}_sum");
        self.labels(labels, None);
        self.buf.push(' ');
        write_seconds(&mut self.buf, h.sum_nanos);
        self.buf.push('\n');
        let _ = write!(self.buf, "bulwark_{name}_count");
        self.labels(labels, None);
        let _ = writeln!(self.buf, " {}", cumulative[cumulative.len() - 1]);
    }

    /// `{k="v",...}` with values escaped, `le` last; nothing if no label.
    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.buf.push('{');
        let mut first = true;
        for (k, v) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
            if !first {
                self.buf.push(',');
            }
            first = false;
            self.buf.push_str(k);
            self.buf.push_str("=\"");
            escape_label(&mut self.buf, v);
            self.buf.push('"');
        }
        self.buf.push('}');
    }
}

/// A label value: `\`, `"` and newline escaped (both formats).
fn escape_label(buf: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => buf.push_str("\\\\"),
            '"' => buf.push_str("\\\""),
            '\n' => buf.push_str("\\n"),
            c => buf.push(c),
        }
    }
}

/// A `# HELP` text: `\` and newline escaped, and `"` too in OpenMetrics.
fn escape_help(buf: &mut String, v: &str, format: Format) {
    for c in v.chars() {
        match c {
            '\\' => buf.push_str("\\\\"),
            '\n' => buf.push_str("\\n"),
            '"' if format == Format::OpenMetrics => buf.push_str("\\\""),
            c => buf.push(c),
        }
    }
}

/// `nanos` as seconds, in exact decimal (no float rounding: `le` labels
/// must read the same in every scrape): `0.000001`, `16.777216`, `3`.
fn write_seconds(buf: &mut String, nanos: u64) {
    let whole = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    let _ = write!(buf, "{whole}");
    if frac != 0 {
        let digits = format!("{frac:09}");
        buf.push('.');
        buf.push_str(digits.trim_end_matches('0'));
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::{WorkerState, BUCKETS};
    use std::collections::{BTreeMap, BTreeSet};

    fn snapshot() -> Snapshot {
        let mut s = Snapshot {
            tasks_spawned: 18,
            tasks_completed: 10,
            tasks_rejected: 5,
            rejected_at_ceiling: 4,
            rejected_shedding: 1,
            tasks_deadline_exceeded: 3,
            tasks_live: 12,
            max_tasks: usize::MAX,
            shedding: true,
            kinds: vec![
                KindSnapshot {
                    name: "task".into(),
                    live: 12,
                    budget: usize::MAX,
                    ..KindSnapshot::default()
                },
                KindSnapshot {
                    name: "we\"ird\\kind\nname".into(),
                    live: 1,
                    budget: 4,
                    ..KindSnapshot::default()
                },
            ],
            worker_states: vec![
                WorkerSnapshot {
                    role: "worker",
                    index: 0,
                    polls_started: 7,
                    polls_ended: 6,
                    state: WorkerState::Idle,
                    queue_depth: 3,
                },
                WorkerSnapshot {
                    role: "replacement",
                    index: 1,
                    polls_started: 2,
                    polls_ended: 2,
                    state: WorkerState::Parked,
                    queue_depth: 0,
                },
            ],
            ..Snapshot::default()
        };
        s.poll_duration.counts[0] = 5;
        s.poll_duration.counts[3] = 2;
        s.poll_duration.counts[BUCKETS] = 1;
        s.poll_duration.sum_nanos = 20_000_001_500;
        s.kinds[1].hold_time.counts[6] = 4;
        s
    }

    /// Family name -> (type, whether it has a HELP line).
    type Families = BTreeMap<String, (String, bool)>;

    /// The families, and every sample line's series and value.
    fn parse(text: &str) -> (Families, Vec<(String, String)>) {
        let mut families = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap().to_string();
                families.entry(name).or_insert((String::new(), false)).1 = true;
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split(' ');
                let name = it.next().unwrap().to_string();
                let ty = it.next().unwrap().to_string();
                families.entry(name).or_insert((String::new(), false)).0 = ty;
            } else if line.starts_with('#') {
                assert_eq!(line, "# EOF");
            } else {
                let (name, value) = line.rsplit_once(' ').unwrap();
                samples.push((name.to_string(), value.to_string()));
            }
        }
        (families, samples)
    }

    /// The family a sample belongs to, in `format`.
    fn family_of<'a>(sample: &str, families: &'a Families) -> Option<&'a str> {
        let name = sample.split('{').next().unwrap();
        let mut candidates = vec![name.to_string()];
        for suffix in ["_total", "_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                candidates.push(base.to_string());
            }
        }
        candidates
            .into_iter()
            .find_map(|c| families.get_key_value(&c).map(|(k, _)| k.as_str()))
    }

    #[test]
    fn every_family_has_help_and_type_and_every_sample_a_family() {
        for format in [Format::Prometheus, Format::OpenMetrics] {
            let text = render(&snapshot(), format);
            let (families, samples) = parse(&text);
            let expected = SCALARS.len()
                + 1
                + KIND_FAMILIES.len()
                + WORKER_FAMILIES.len()
                + HISTOGRAMS.len()
                + 1;
            assert_eq!(families.len(), expected, "{format:?}");
            for (name, (ty, help)) in &families {
                assert!(name.starts_with("bulwark_"), "{name}");
                assert!(*help, "{name} has no HELP in {format:?}");
                assert!(
                    ["counter", "gauge", "histogram"].contains(&ty.as_str()),
                    "{name} has no TYPE in {format:?}"
                );
            }
            let mut used = BTreeSet::new();
            for (sample, _) in &samples {
                let family = family_of(sample, &families)
                    .unwrap_or_else(|| panic!("{sample} has no family in {format:?}"));
                used.insert(family.to_string());
                if families[family].0 == "counter" {
                    assert!(sample.split('{').next().unwrap().ends_with("_total"));
                }
            }
            assert_eq!(used.len(), families.len(), "every family has samples");
        }
    }

    #[test]
    fn counters_are_named_as_each_format_wants() {
        let prom = prometheus(&snapshot());
        assert!(prom.contains("# TYPE bulwark_tasks_spawned_total counter\n"));
        assert!(prom.contains("\nbulwark_tasks_spawned_total 18\n"));
        assert!(!prom.contains("# EOF"));
        let om = openmetrics(&snapshot());
        assert!(om.contains("# TYPE bulwark_tasks_spawned counter\n"));
        assert!(om.contains("\nbulwark_tasks_spawned_total 18\n"));
        assert!(om.ends_with("# EOF\n"));
        assert_eq!(om.matches("# EOF").count(), 1);
    }

    #[test]
    fn the_contract_names_and_values() {
        let text = prometheus(&snapshot());
        assert!(text.contains("\nbulwark_tasks_live 12\n"));
        assert!(text.contains("# TYPE bulwark_poll_duration_seconds histogram\n"));
        assert!(text.contains("\nbulwark_tasks_rejected_total 5\n"));
        assert!(text.contains("\nbulwark_spawns_rejected_total{reason=\"ceiling\"} 4\n"));
        assert!(text.contains("\nbulwark_spawns_rejected_total{reason=\"shedding\"} 1\n"));
        assert!(text.contains("\nbulwark_tasks_deadline_exceeded_total 3\n"));
        assert!(text.contains("\nbulwark_shedding 1\n"));
        assert!(text.contains("\nbulwark_max_tasks +Inf\n"));
        assert!(text.contains("\nbulwark_kind_budget{kind=\"task\"} +Inf\n"));
        assert!(text.contains("\nbulwark_worker_polls_total{worker=\"0\",role=\"worker\"} 7\n"));
        assert!(text.contains("\nbulwark_worker_polling{worker=\"0\",role=\"worker\"} 1\n"));
        assert!(
            text.contains("\nbulwark_worker_polls_total{worker=\"1\",role=\"replacement\"} 2\n")
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let text = prometheus(&snapshot());
        assert!(
            text.contains("bulwark_kind_live{kind=\"we\\\"ird\\\\kind\\nname\"} 1\n"),
            "{text}"
        );
        // One line per sample: the newline in the name did not split it.
        assert!(text.lines().all(|l| !l.starts_with("name")));
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_inf_equal_to_count() {
        let text = prometheus(&snapshot());
        let buckets: Vec<(String, u64)> = text
            .lines()
            .filter(|l| l.starts_with("bulwark_poll_duration_seconds_bucket{"))
            .map(|l| {
                let le = l.split("le=\"").nth(1).unwrap().split('"').next().unwrap();
                let n = l.rsplit(' ').next().unwrap().parse().unwrap();
                (le.to_string(), n)
            })
            .collect();
        assert_eq!(buckets.len(), BUCKETS + 1);
        assert_eq!(buckets[0], ("0.000001".to_string(), 5));
        assert_eq!(buckets[1].0, "0.000004");
        assert_eq!(buckets[BUCKETS - 1].0, "16.777216");
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative");
        let les: Vec<f64> = buckets[..BUCKETS]
            .iter()
            .map(|(le, _)| le.parse().unwrap())
            .collect();
        assert!(les.windows(2).all(|w| w[0] < w[1]), "bounds ascend");
        assert_eq!(buckets[BUCKETS], ("+Inf".to_string(), 8));
        assert!(text.contains("\nbulwark_poll_duration_seconds_count 8\n"));
        assert!(text.contains("\nbulwark_poll_duration_seconds_sum 20.0000015\n"));
        // Per kind, labelled, `le` last.
        assert!(
            text.contains("bulwark_resource_hold_seconds_bucket{kind=\"task\",le=\"+Inf\"} 0\n")
        );
        assert!(text.contains("\nbulwark_resource_hold_seconds_count{kind=\"task\"} 0\n"));
        // Every histogram ends its buckets at +Inf with the count.
        let mut inf = BTreeMap::new();
        let mut count = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
            let labels = labels.trim_end_matches('}');
            if let Some(base) = name.strip_suffix("_bucket") {
                if let Some(rest) = labels.strip_suffix("le=\"+Inf\"") {
                    inf.insert(format!("{base}{{{}}}", rest.trim_end_matches(',')), value);
                }
            } else if let Some(base) = name.strip_suffix("_count") {
                count.insert(format!("{base}{{{labels}}}"), value);
            }
        }
        assert_eq!(inf.len(), HISTOGRAMS.len() + 2, "{inf:?}");
        assert_eq!(inf, count);
    }

    #[test]
    fn seconds_are_exact_decimals() {
        let mut s = String::new();
        for (nanos, text) in [
            (0, "0"),
            (1_000, "0.000001"),
            (4_096_000, "0.004096"),
            (16_777_216_000, "16.777216"),
            (3_000_000_000, "3"),
            (u64::MAX, "18446744073.709551615"),
        ] {
            s.clear();
            write_seconds(&mut s, nanos);
            assert_eq!(s, text);
        }
    }

    #[test]
    fn negotiation_honours_a_zero_quality() {
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; q=0, text/plain")),
            Format::Prometheus
        );
        assert_eq!(
            Format::negotiate(Some("Application/OpenMetrics-Text")),
            Format::OpenMetrics
        );
        assert_eq!(Format::negotiate(Some("*/*")), Format::Prometheus);
        assert_eq!(
            Format::OpenMetrics.content_type(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
    }
}
