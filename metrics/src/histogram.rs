//! Fixed-bucket histograms of durations: a single-writer [`Histogram`] that
//! a worker records into on its hot path, and the [`HistogramSnapshot`] a
//! snapshot merges from them.
//!
//! # Buckets
//!
//! The buckets are fixed and the same for every histogram, so that merging
//! is adding counts and the Prometheus exposition has stable `le` labels:
//! powers of four from 1 us to about 17 s ([`BUCKET_BOUNDS_NANOS`]), and
//! `+Inf`. A bucket is found with one `leading_zeros`, not a search. Powers
//! of four are coarse (a quantile read from them is within a factor of four,
//! interpolated within the bucket as Prometheus' `histogram_quantile` does),
//! and keep a recorder to 14 counters: two cache lines.
//!
//! # Who writes
//!
//! [`Histogram::record`] is a relaxed load and store per field, like
//! [`Counter`](crate::Counter): one thread (the histogram's worker) writes,
//! any thread reads. [`Histogram::record_shared`] is for histograms written
//! from any thread (a resource kind's hold times): `fetch_add`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Number of finite buckets.
pub const BUCKETS: usize = 13;

/// The finite buckets' upper bounds, in nanoseconds: 4^k microseconds for
/// k = 0..13 (1 us, 4 us, 16 us, ... 16.8 s). A value above the last is
/// counted in the `+Inf` bucket only.
pub const BUCKET_BOUNDS_NANOS: [u64; BUCKETS] = {
    let mut b = [0u64; BUCKETS];
    let mut i = 0;
    while i < BUCKETS {
        b[i] = 1_000u64 << (2 * i);
        i += 1;
    }
    b
};

/// The index of the bucket that counts `nanos`: the first whose bound is at
/// least `nanos`; `BUCKETS` for `+Inf`.
#[inline]
fn bucket_of(nanos: u64) -> usize {
    // In units of the first bound (1 us), rounded up: bucket k holds
    // (4^(k-1), 4^k] units, bucket 0 holds [0, 1].
    let units = nanos.div_ceil(1_000);
    if units <= 1 {
        return 0;
    }
    let bits = 64 - (units - 1).leading_zeros() as usize; // ceil(log2(units))
    bits.div_ceil(2).min(BUCKETS)
}

/// A histogram of durations with the fixed buckets of this module.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket, not cumulative; the last is `+Inf`.
    counts: [AtomicU64; BUCKETS + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Records `nanos`. Only the owning thread may call this (single
    /// writer: a relaxed load and store, no locked instruction).
    #[inline]
    pub fn record(&self, nanos: u64) {
        let c = &self.counts[bucket_of(nanos)];
        c.store(c.load(Relaxed).wrapping_add(1), Relaxed);
        self.sum_nanos
            .store(self.sum_nanos.load(Relaxed).wrapping_add(nanos), Relaxed);
    }

    /// Records `nanos` from any thread (`fetch_add`).
    #[inline]
    pub fn record_shared(&self, nanos: u64) {
        self.counts[bucket_of(nanos)].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// Adds this histogram's counts into `into`.
    pub fn add_to(&self, into: &mut HistogramSnapshot) {
        for (i, c) in self.counts.iter().enumerate() {
            into.counts[i] += c.load(Relaxed);
        }
        into.sum_nanos += self.sum_nanos.load(Relaxed);
    }

    /// A copy of the counts now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut s = HistogramSnapshot::default();
        self.add_to(&mut s);
        s
    }
}

/// What one worker records: a worker owns one (in its
/// [`WorkerSlot`](crate::WorkerSlot)) and is its only writer.
#[derive(Debug, Default)]
pub struct WorkerHistograms {
    /// Time inside a task's poll, for the polls sampled.
    pub poll_duration: Histogram,
    /// Time from a task's wake (or spawn) to the start of its poll, for the
    /// wakes sampled.
    pub scheduling_delay: Histogram,
    /// Time from spawn to end, for tasks that ended on this worker.
    pub task_lifetime: Histogram,
}

/// A histogram's counts at one moment, merged from one or more
/// [`Histogram`]s.
///
/// # Examples
///
/// ```
/// use bulwark::metrics::HistogramSnapshot;
/// use std::time::Duration;
///
/// // The bounds: 1 us times powers of four.
/// let bounds: Vec<_> = HistogramSnapshot::bounds().take(3).collect();
/// assert_eq!(bounds, [1, 4, 16].map(Duration::from_micros));
///
/// let mut h = HistogramSnapshot::default();
/// h.counts[1] = 4; // four values in (1 us, 4 us]
/// h.sum_nanos = 10_000;
/// assert_eq!((h.count(), h.sum()), (4, Duration::from_micros(10)));
/// // Interpolated within the bucket, as Prometheus' histogram_quantile.
/// assert_eq!(h.quantile(0.5), Some(Duration::from_nanos(2_500)));
/// let mut twice = h.clone();
/// twice.merge(&h);
/// assert_eq!(twice.cumulative()[1], 8);
///
/// // A runtime's: every task that ended is in `task_lifetime`.
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(rt.spawn(async {})).unwrap();
/// assert_eq!(rt.metrics().task_lifetime.count(), 1);
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Per bucket, not cumulative: `counts[i]` for `i < BUCKETS` counts the
    /// values in `(BUCKET_BOUNDS_NANOS[i-1], BUCKET_BOUNDS_NANOS[i]]`, and
    /// `counts[BUCKETS]` the values above the last bound (`+Inf`).
    pub counts: [u64; BUCKETS + 1],
    /// The sum of every value recorded, in nanoseconds.
    pub sum_nanos: u64,
}

impl HistogramSnapshot {
    /// The finite buckets' upper bounds, as durations.
    pub fn bounds() -> impl Iterator<Item = Duration> {
        BUCKET_BOUNDS_NANOS.iter().map(|&n| Duration::from_nanos(n))
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The sum of the values recorded.
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_nanos)
    }

    /// Cumulative counts, one per finite bound, then the total (`+Inf`):
    /// what Prometheus' `_bucket{le=..}` lines carry.
    pub fn cumulative(&self) -> [u64; BUCKETS + 1] {
        let mut out = [0; BUCKETS + 1];
        let mut total = 0;
        for (i, c) in self.counts.iter().enumerate() {
            total += c;
            out[i] = total;
        }
        out
    }

    /// The `q` quantile (0.0..=1.0), interpolated linearly within its bucket
    /// as Prometheus' `histogram_quantile` does; `None` with no values. A
    /// quantile in the `+Inf` bucket reads as the last finite bound.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let count = self.count();
        if count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * count as f64;
        let mut below = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            if c > 0 && (below + c) as f64 >= rank {
                if i == BUCKETS {
                    return Some(Duration::from_nanos(BUCKET_BOUNDS_NANOS[BUCKETS - 1]));
                }
                let lo = if i == 0 {
                    0
                } else {
                    BUCKET_BOUNDS_NANOS[i - 1]
                } as f64;
                let hi = BUCKET_BOUNDS_NANOS[i] as f64;
                let within = ((rank - below as f64) / c as f64).clamp(0.0, 1.0);
                return Some(Duration::from_nanos((lo + (hi - lo) * within) as u64));
            }
            below += c;
        }
        None
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.sum_nanos += other.sum_nanos;
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_powers_of_four_microseconds() {
        assert_eq!(BUCKET_BOUNDS_NANOS[0], 1_000);
        assert_eq!(BUCKET_BOUNDS_NANOS[1], 4_000);
        assert_eq!(BUCKET_BOUNDS_NANOS[12], 16_777_216_000);
    }

    #[test]
    fn a_value_lands_in_the_first_bucket_whose_bound_holds_it() {
        for (nanos, bucket) in [
            (0, 0),
            (1_000, 0),
            (1_001, 1),
            (4_000, 1),
            (4_001, 2),
            (16_000, 2),
            (1_000_000, 5),
            (16_777_216_000, 12),
            (16_777_216_001, 13),
            (u64::MAX, 13),
        ] {
            assert_eq!(bucket_of(nanos), bucket, "{nanos} ns");
            if bucket < BUCKETS {
                assert!(nanos <= BUCKET_BOUNDS_NANOS[bucket]);
            }
            if bucket > 0 {
                assert!(nanos > BUCKET_BOUNDS_NANOS[bucket - 1]);
            }
        }
    }

    #[test]
    fn counts_sum_and_quantiles() {
        let h = Histogram::default();
        for _ in 0..99 {
            h.record(2_000); // bucket 1: (1 us, 4 us]
        }
        h.record_shared(50_000_000); // bucket 7: (16.4 ms, 65.5 ms]
        let s = h.snapshot();
        assert_eq!(s.count(), 100);
        assert_eq!(s.sum(), Duration::from_nanos(99 * 2_000 + 50_000_000));
        assert_eq!(s.cumulative()[1], 99);
        assert_eq!(s.cumulative()[BUCKETS], 100);
        let p50 = s.quantile(0.5).unwrap();
        assert!(p50 > Duration::from_micros(1) && p50 <= Duration::from_micros(4));
        let p999 = s.quantile(0.999).unwrap();
        assert!(p999 > Duration::from_nanos(16_384_000), "{p999:?}");
        assert_eq!(HistogramSnapshot::default().quantile(0.5), None);
        let mut m = s.clone();
        m.merge(&s);
        assert_eq!(m.count(), 200);
    }
}
