//! A hierarchical timing wheel: 6 levels of 64 slots, 1 ms per tick.
//!
//! Level `L` has slots `64^L` ticks wide, so the wheel spans `64^6` ms (about
//! two years) ahead of its `elapsed` tick. An entry goes to the level of the
//! highest bit in which its deadline differs from `elapsed`, so level 0 holds
//! what is due within the current 64 ms block, level 1 what is due within the
//! current 4096 ms block, and so on (Varghese & Lauck, "Hashed and
//! hierarchical timing wheels", 1987; the same layout as tokio's and the
//! Linux kernel's).
//!
//! Ticks are absolute (ms since the driver started) and never wrap in
//! practice (`u64`). An entry keeps its true deadline `when`; only its *slot*
//! is limited to the span ahead of `elapsed`: a deadline further out than
//! [`MAX_AHEAD`] is placed at `elapsed + MAX_AHEAD`, in the top level. When
//! that slot comes up the entry is not due, so it is linked again from the
//! new `elapsed` (nearer its deadline, perhaps again in the top level): an
//! entry is fired only once `elapsed` has reached its `when`, never early,
//! and the wheel works the same after any uptime.
//!
//! Entries live in a slab; each slot is a doubly linked list threaded through
//! the slab by index, so insert and cancel are O(1). Advancing takes the
//! earliest occupied slot (found with a bitmask per level): entries due fire;
//! the others (from a higher level's slot) drop to a lower level. A key carries
//! a generation, so a stale key for a reused slab entry is refused.

use slab::Slab;
use std::task::Waker;

const LEVELS: usize = 6;
const SLOTS: usize = 64;
const SLOT_BITS: u32 = 6;
/// How far ahead of `elapsed` an entry's slot may lie: the top level's span
/// less one slot. One slot less than the whole span, because a placement a
/// full span ahead would land in the top level's *current* slot, which
/// `next_slot` reads as due now: the entry would be taken out and linked back
/// into the same slot forever. With this bound the placement is 1 to 63 top
/// slots ahead, always a later slot, so each re-link makes progress.
const MAX_AHEAD: u64 = (SLOTS as u64 - 1) << (SLOT_BITS as u64 * (LEVELS as u64 - 1));

/// Names one timer in one wheel (the driver's `TimerKey` adds the shard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    index: usize,
    generation: u64,
}

/// What `poll_entry` found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum EntryState {
    Pending,
    Fired,
}

struct Entry {
    when: u64,
    generation: u64,
    waker: Option<Waker>,
    /// `Some((level, slot))` while linked in a slot; `None` once fired.
    position: Option<(usize, usize)>,
    prev: Option<usize>,
    next: Option<usize>,
}

#[derive(Clone, Copy, Default)]
struct List {
    head: Option<usize>,
    tail: Option<usize>,
}

struct Level {
    occupied: u64,
    slots: [List; SLOTS],
}

pub(crate) struct Wheel {
    elapsed: u64,
    levels: [Level; LEVELS],
    entries: Slab<Entry>,
    next_generation: u64,
    /// Entries linked in slots (not yet fired).
    pending: usize,
}

impl Default for Wheel {
    fn default() -> Self {
        Self::new()
    }
}

fn slot_range(level: usize) -> u64 {
    1 << (SLOT_BITS as u64 * level as u64)
}

fn level_range(level: usize) -> u64 {
    slot_range(level) * SLOTS as u64
}

fn level_for(elapsed: u64, when: u64) -> usize {
    // Bits below 6 are ignored so that a deadline in the current 64-tick block
    // lands on level 0.
    let masked = (elapsed ^ when) | (SLOTS as u64 - 1);
    let significant = 63 - masked.leading_zeros() as usize;
    (significant / SLOT_BITS as usize).min(LEVELS - 1)
}

impl Wheel {
    pub(crate) fn new() -> Wheel {
        Self::starting_at(0)
    }

    /// A wheel whose clock already reads `elapsed`: for tests of long uptimes.
    pub(crate) fn starting_at(elapsed: u64) -> Wheel {
        Wheel {
            elapsed,
            levels: std::array::from_fn(|_| Level {
                occupied: 0,
                slots: [List::default(); SLOTS],
            }),
            entries: Slab::new(),
            next_generation: 0,
            pending: 0,
        }
    }

    /// The tick the wheel has advanced to.
    #[cfg(test)]
    pub(crate) fn elapsed(&self) -> u64 {
        self.elapsed
    }

    /// Timers set and neither fired nor cancelled.
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }

    /// Entries held, fired or not (a fired entry stays until its owner reads
    /// it or drops it).
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Sets a timer for tick `when`. A deadline already past fires at once:
    /// the entry starts out fired (see [`insert_fired`](Self::insert_fired)).
    #[cfg(test)]
    pub(crate) fn insert(&mut self, when: u64, waker: Waker) -> Key {
        self.insert_fired(when, waker).0
    }

    /// As [`insert`](Self::insert). If the deadline is already past, the
    /// entry starts out fired and `waker` is handed back for the caller to
    /// wake (outside the lock); otherwise the wheel keeps it.
    pub(crate) fn insert_fired(&mut self, when: u64, waker: Waker) -> (Key, Option<Waker>) {
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let fired = when <= self.elapsed;
        let (stored, back) = if fired {
            (None, Some(waker))
        } else {
            (Some(waker), None)
        };
        let index = self.entries.insert(Entry {
            // The true deadline: `link` limits only where it is placed.
            when,
            generation,
            waker: stored,
            position: None,
            prev: None,
            next: None,
        });
        if !fired {
            self.link(index);
        }
        (Key { index, generation }, back)
    }

    fn entry(&self, key: Key) -> Option<&Entry> {
        self.entries
            .get(key.index)
            .filter(|e| e.generation == key.generation)
    }

    /// Whether the timer fired; if not, `waker` replaces the stored one.
    pub(crate) fn poll_entry(&mut self, key: Key, waker: &Waker) -> EntryState {
        let Some(entry) = self.entries.get_mut(key.index) else {
            return EntryState::Fired;
        };
        if entry.generation != key.generation || entry.position.is_none() {
            return EntryState::Fired;
        }
        match &entry.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => entry.waker = Some(waker.clone()),
        }
        EntryState::Pending
    }

    /// Removes a timer, fired or not. A stale key does nothing.
    pub(crate) fn remove(&mut self, key: Key) {
        if self.entry(key).is_none() {
            return;
        }
        if self.entries[key.index].position.is_some() {
            self.unlink(key.index);
        }
        self.entries.remove(key.index);
    }

    /// The tick of the earliest slot that holds timers: the wheel must be
    /// advanced by then. `None` if no timer is set.
    pub(crate) fn next_expiration(&self) -> Option<u64> {
        self.next_slot().map(|(_, _, deadline)| deadline)
    }

    /// Advances to tick `now`, firing every timer due; their wakers are pushed
    /// onto `fired` for the caller to wake outside any lock.
    pub(crate) fn advance(&mut self, now: u64, fired: &mut Vec<Waker>) {
        while let Some((level, slot, deadline)) = self.next_slot() {
            if deadline > now {
                break;
            }
            self.elapsed = deadline;
            let list = std::mem::take(&mut self.levels[level].slots[slot]);
            self.levels[level].occupied &= !(1 << slot);
            let mut cursor = list.head;
            while let Some(index) = cursor {
                let entry = &mut self.entries[index];
                cursor = entry.next;
                entry.prev = None;
                entry.next = None;
                entry.position = None;
                if entry.when <= self.elapsed {
                    self.pending -= 1;
                    fired.extend(entry.waker.take());
                } else {
                    // Due later within this slot's span: a lower level now.
                    self.pending -= 1;
                    self.link(index);
                }
            }
        }
        self.elapsed = self.elapsed.max(now);
    }

    /// Fires every timer still pending, due or not: the driver is shutting
    /// down and every wait must end. Their wakers go onto `fired`.
    pub(crate) fn fire_all(&mut self, fired: &mut Vec<Waker>) {
        for level in 0..LEVELS {
            for slot in 0..SLOTS {
                let list = std::mem::take(&mut self.levels[level].slots[slot]);
                let mut cursor = list.head;
                while let Some(index) = cursor {
                    let entry = &mut self.entries[index];
                    cursor = entry.next;
                    entry.prev = None;
                    entry.next = None;
                    entry.position = None;
                    self.pending -= 1;
                    fired.extend(entry.waker.take());
                }
            }
            self.levels[level].occupied = 0;
        }
    }

    /// The earliest occupied slot as `(level, slot, start tick)`.
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        for (level, lvl) in self.levels.iter().enumerate() {
            if lvl.occupied == 0 {
                continue;
            }
            let slot_range = slot_range(level);
            let level_range = level_range(level);
            let now_slot = self.elapsed / slot_range;
            let rotated = lvl.occupied.rotate_right((now_slot % SLOTS as u64) as u32);
            let zeros = rotated.trailing_zeros() as u64;
            let slot = ((now_slot + zeros) % SLOTS as u64) as usize;
            let level_start = self.elapsed & !(level_range - 1);
            let mut deadline = level_start.saturating_add(slot as u64 * slot_range);
            if (slot as u64) < now_slot % SLOTS as u64 {
                // The slot lies in the next rotation of this level.
                deadline = deadline.saturating_add(level_range);
            }
            return Some((level, slot, deadline.max(self.elapsed)));
        }
        None
    }

    fn link(&mut self, index: usize) {
        // Where the entry goes, not when it fires: a deadline beyond the
        // wheel's span sits at the span's end and is linked again from there
        // (see the module docs and `MAX_AHEAD`).
        let when = self.entries[index]
            .when
            .min(self.elapsed.saturating_add(MAX_AHEAD));
        let level = level_for(self.elapsed, when);
        let slot = ((when >> (SLOT_BITS as u64 * level as u64)) % SLOTS as u64) as usize;
        let list = &mut self.levels[level].slots[slot];
        let old_tail = list.tail;
        list.tail = Some(index);
        if list.head.is_none() {
            list.head = Some(index);
        }
        self.levels[level].occupied |= 1 << slot;
        if let Some(t) = old_tail {
            self.entries[t].next = Some(index);
        }
        let entry = &mut self.entries[index];
        entry.prev = old_tail;
        entry.next = None;
        entry.position = Some((level, slot));
        self.pending += 1;
    }

    fn unlink(&mut self, index: usize) {
        let (level, slot) = self.entries[index]
            .position
            .take()
            .expect("unlinking an entry that is not in a slot");
        let (prev, next) = {
            let e = &self.entries[index];
            (e.prev, e.next)
        };
        match prev {
            Some(p) => self.entries[p].next = next,
            None => self.levels[level].slots[slot].head = next,
        }
        match next {
            Some(n) => self.entries[n].prev = prev,
            None => self.levels[level].slots[slot].tail = prev,
        }
        if self.levels[level].slots[slot].head.is_none() {
            self.levels[level].occupied &= !(1 << slot);
        }
        let e = &mut self.entries[index];
        e.prev = None;
        e.next = None;
        self.pending -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    /// Advances tick by tick and records when each key fires.
    fn fire_ticks(wheel: &mut Wheel, keys: &[Key], until: u64) -> Vec<Option<u64>> {
        let (_, w) = waker();
        let mut fired_at = vec![None; keys.len()];
        let mut out = Vec::new();
        for now in wheel.elapsed()..=until {
            wheel.advance(now, &mut out);
            for (i, k) in keys.iter().enumerate() {
                if fired_at[i].is_none() && wheel.poll_entry(*k, &w) == EntryState::Fired {
                    fired_at[i] = Some(now);
                }
            }
        }
        fired_at
    }

    #[test]
    fn fires_each_timer_at_its_tick_across_levels() {
        let mut wheel = Wheel::new();
        let whens = [1, 2, 63, 64, 65, 100, 4095, 4096, 5000, 70_000];
        let keys: Vec<_> = whens.iter().map(|&t| wheel.insert(t, waker().1)).collect();
        assert_eq!(wheel.pending(), whens.len());
        let fired = fire_ticks(&mut wheel, &keys, 70_001);
        for (i, &t) in whens.iter().enumerate() {
            assert_eq!(fired[i], Some(t), "timer for tick {t}");
        }
        assert_eq!(wheel.pending(), 0);
    }

    #[test]
    fn advancing_in_jumps_fires_everything_due() {
        let mut wheel = Wheel::new();
        let (count, w) = waker();
        for t in [5, 70, 300, 9000, 300_000] {
            wheel.insert(t, w.clone());
        }
        let mut out = Vec::new();
        wheel.advance(299, &mut out);
        assert_eq!(out.len(), 2);
        wheel.advance(1_000_000, &mut out);
        assert_eq!(out.len(), 5);
        out.into_iter().for_each(Waker::wake);
        assert_eq!(count.0.load(Ordering::SeqCst), 5);
        assert_eq!(wheel.next_expiration(), None);
    }

    #[test]
    fn next_expiration_is_never_after_the_earliest_deadline() {
        let mut wheel = Wheel::new();
        wheel.advance(10, &mut Vec::new());
        wheel.insert(5000, waker().1);
        wheel.insert(200, waker().1);
        let next = wheel.next_expiration().unwrap();
        assert!((10..=200).contains(&next), "next {next}");
    }

    #[test]
    fn cancel_leaves_nothing_and_stale_keys_are_refused() {
        let mut wheel = Wheel::new();
        let keys: Vec<_> = (0..10_000u64)
            .map(|i| wheel.insert(1 + i % 5000, waker().1))
            .collect();
        for k in &keys {
            wheel.remove(*k);
        }
        assert_eq!(wheel.pending(), 0);
        assert_eq!(wheel.len(), 0);
        assert_eq!(wheel.next_expiration(), None);
        // The slab reuses index 0 for a new timer; the old key must not
        // remove or read it.
        let fresh = wheel.insert(10, waker().1);
        wheel.remove(keys[0]);
        assert_eq!(wheel.pending(), 1);
        assert_eq!(wheel.poll_entry(fresh, &waker().1), EntryState::Pending);
    }

    /// Far deadlines: well past the span, and "forever" (30 years).
    const FOREVER: u64 = 30 * 365 * 86_400_000;

    /// Advances in steps of `step` up to `until`; the tick at which `key`
    /// fired, checking on the way that the driver is never told to sleep past
    /// the deadline.
    fn fired_at_in_steps(
        wheel: &mut Wheel,
        key: Key,
        when: u64,
        until: u64,
        step: u64,
    ) -> Option<u64> {
        let (_, w) = waker();
        let mut out = Vec::new();
        let mut now = wheel.elapsed();
        loop {
            if let Some(next) = wheel.next_expiration() {
                assert!(
                    next <= when,
                    "next expiration {next} after the deadline {when}"
                );
            }
            wheel.advance(now, &mut out);
            if wheel.poll_entry(key, &w) == EntryState::Fired {
                return Some(now);
            }
            if now >= until {
                return None;
            }
            // Big steps up to just before the deadline, then tick by tick.
            now = if now < when - 1 {
                (now + step).min(when - 1)
            } else {
                now + 1
            };
        }
    }

    #[test]
    fn after_long_uptime_timers_fire_on_time() {
        for start in [MAX_AHEAD - 10, (1 << 36) - 11, 1 << 40, (1 << 40) + 12_345] {
            let mut wheel = Wheel::starting_at(start);
            let offsets = [1, 2, 63, 64, 65, 100, 4095, 4096, 70_000];
            let keys: Vec<_> = offsets
                .iter()
                .map(|&d| wheel.insert(start + d, waker().1))
                .collect();
            let fired = fire_ticks(&mut wheel, &keys, start + 70_001);
            for (i, &d) in offsets.iter().enumerate() {
                assert_eq!(fired[i], Some(start + d), "start {start}, offset {d}");
            }
            assert_eq!(wheel.pending(), 0);
        }
    }

    #[test]
    fn a_forever_deadline_never_fires_early() {
        for start in [0, (1 << 36) - 11, 1 << 40] {
            let mut wheel = Wheel::starting_at(start);
            let when = start + FOREVER;
            let key = wheel.insert(when, waker().1);
            // A near timer set alongside still fires on time.
            let near = wheel.insert(start + 5, waker().1);
            let mut out = Vec::new();
            wheel.advance(start + 5, &mut out);
            assert_eq!(out.len(), 1, "start {start}");
            assert_eq!(wheel.poll_entry(near, &waker().1), EntryState::Fired);
            // Jumps of about a week, then tick by tick at the end.
            let at = fired_at_in_steps(&mut wheel, key, when, when + 3, 7 * 86_400_000);
            assert_eq!(at, Some(when), "start {start}");
            assert_eq!(wheel.pending(), 0);
        }
    }

    #[test]
    fn a_deadline_just_past_the_span_fires_at_its_tick() {
        for start in [0, 1 << 40] {
            for extra in [0, 1, 64, 1 << 30, (1 << 36) + 17] {
                let mut wheel = Wheel::starting_at(start);
                let when = start + MAX_AHEAD + extra;
                let key = wheel.insert(when, waker().1);
                let at = fired_at_in_steps(&mut wheel, key, when, when + 2, 1 << 29);
                assert_eq!(at, Some(when), "start {start}, extra {extra}");
            }
        }
    }

    #[test]
    fn fire_all_ends_every_wait() {
        let mut wheel = Wheel::starting_at(1 << 40);
        let (count, w) = waker();
        for d in [1, 100, 1 << 20, FOREVER] {
            wheel.insert((1 << 40) + d, w.clone());
        }
        let mut out = Vec::new();
        wheel.fire_all(&mut out);
        assert_eq!(out.len(), 4);
        out.into_iter().for_each(Waker::wake);
        assert_eq!(count.0.load(Ordering::SeqCst), 4);
        assert_eq!(wheel.pending(), 0);
        assert_eq!(wheel.next_expiration(), None);
    }

    #[test]
    fn past_deadline_fires_at_once_and_never_twice() {
        let mut wheel = Wheel::new();
        wheel.advance(50, &mut Vec::new());
        let (count, w) = waker();
        let k = wheel.insert(40, w.clone());
        assert_eq!(wheel.poll_entry(k, &w), EntryState::Fired);
        let k2 = wheel.insert(60, w);
        let mut out = Vec::new();
        wheel.advance(60, &mut out);
        wheel.advance(100, &mut out);
        assert_eq!(out.len(), 1);
        out.into_iter().for_each(Waker::wake);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(wheel.poll_entry(k2, &waker().1), EntryState::Fired);
    }
}
