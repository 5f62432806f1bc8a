//! `Interval`: ticks at a fixed period.

use super::sleep::{sleep_until, Sleep};
use super::Instant;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// What an [`Interval`] does when ticks were missed (the task was late).
///
/// # Examples
///
/// ```
/// use bulwark::time::{advance, interval, pause, Duration, MissedTickBehavior};
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     pause();
///     let mut ticks = interval(Duration::from_secs(10));
///     ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
///     let first = ticks.tick().await; // at once
///     advance(Duration::from_secs(35)).await; // three ticks missed
///     // The late tick fires at once, stamped with its scheduled time...
///     assert_eq!(ticks.tick().await - first, Duration::from_secs(10));
///     // ...and Skip drops the other missed ones: the next is on the grid.
///     assert_eq!(ticks.tick().await - first, Duration::from_secs(40));
/// });
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissedTickBehavior {
    /// Fire the missed ticks at once, one after another, until caught up
    /// (tokio's default).
    #[default]
    Burst,
    /// Start the period again from now: ticks keep their spacing.
    Delay,
    /// Drop the missed ticks and fire at the next multiple of the period.
    Skip,
}

/// An interval whose first tick is now and which then ticks every `period`.
///
/// # Panics
///
/// If `period` is zero, or outside a bulwark runtime (as tokio's does).
///
/// # Examples
///
/// ```
/// use bulwark::time::{interval, Duration};
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let mut ticks = interval(Duration::from_millis(5));
///     let first = ticks.tick().await; // the first tick is at once
///     let second = ticks.tick().await;
///     // Ticks are scheduled on a grid: one period apart.
///     assert_eq!(second - first, Duration::from_millis(5));
/// });
/// ```
#[track_caller]
pub fn interval(period: Duration) -> Interval {
    interval_at(Instant::now(), period)
}

/// An interval whose first tick is at `start`.
///
/// # Panics
///
/// If `period` is zero, or outside a bulwark runtime.
///
/// # Examples
///
/// ```
/// use bulwark::time::{interval_at, Duration, Instant};
///
/// let rt = bulwark::Runtime::new().unwrap();
/// rt.block_on(async {
///     let start = Instant::now() + Duration::from_millis(5);
///     let mut ticks = interval_at(start, Duration::from_millis(5));
///     assert_eq!(ticks.tick().await, start);
///     assert!(Instant::now() >= start);
/// });
/// ```
#[track_caller]
pub fn interval_at(start: Instant, period: Duration) -> Interval {
    assert!(!period.is_zero(), "`interval` needs a period above zero");
    Interval {
        sleep: Box::pin(sleep_until(start)),
        period,
        missed: MissedTickBehavior::Burst,
    }
}

/// The stream of ticks made by [`interval`] and [`interval_at`].
///
/// # Examples
///
/// A periodic job that stops after three rounds:
///
/// ```
/// use bulwark::time::{interval, Duration};
///
/// let rt = bulwark::Runtime::new().unwrap();
/// let rounds = rt.block_on(async {
///     let mut ticks = interval(Duration::from_millis(2));
///     assert_eq!(ticks.period(), Duration::from_millis(2));
///     let mut rounds = 0;
///     while rounds < 3 {
///         ticks.tick().await;
///         rounds += 1; // the job's work
///     }
///     rounds
/// });
/// assert_eq!(rounds, 3);
/// ```
#[derive(Debug)]
pub struct Interval {
    sleep: Pin<Box<Sleep>>,
    period: Duration,
    missed: MissedTickBehavior,
}

impl Interval {
    /// Waits for the next tick and returns its scheduled instant.
    pub async fn tick(&mut self) -> Instant {
        poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// Polls for the next tick.
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let scheduled = self.sleep.deadline();
        let now = Instant::now();
        let next = match self.missed {
            MissedTickBehavior::Burst => scheduled + self.period,
            MissedTickBehavior::Delay if now > scheduled + self.period => now + self.period,
            MissedTickBehavior::Delay => scheduled + self.period,
            MissedTickBehavior::Skip => {
                let mut next = scheduled + self.period;
                if next <= now {
                    let behind = now.duration_since(scheduled).as_nanos();
                    let periods = behind / self.period.as_nanos() + 1;
                    next = scheduled + self.period * periods as u32;
                }
                next
            }
        };
        self.sleep.as_mut().reset(next);
        Poll::Ready(scheduled)
    }

    /// Makes the next tick one period from now.
    pub fn reset(&mut self) {
        self.sleep.as_mut().reset(Instant::now() + self.period);
    }

    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// How missed ticks are handled.
    pub fn missed_tick_behavior(&self) -> MissedTickBehavior {
        self.missed
    }

    /// Sets how missed ticks are handled.
    pub fn set_missed_tick_behavior(&mut self, behavior: MissedTickBehavior) {
        self.missed = behavior;
    }
}

use std::future::Future;
