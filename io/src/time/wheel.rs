//! A hierarchical timing wheel: 6 levels of 64 slots, 1 ms per tick.
//!
//! Level `L` has slots `64^L` ticks wide, so the wheel spans `64^6` ms (about
//! two years; later deadlines are clamped to its end). An entry goes to the
//! level of the highest bit in which its deadline differs from the wheel's
//! `elapsed` tick, so level 0 holds what is due within the current 64 ms
//! block, level 1 what is due within the current 4096 ms block, and so on
//! (Varghese & Lauck, "Hashed and hierarchical timing wheels", 1987; the
//! same layout as tokio's and the Linux kernel's).
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
/// The last tick the wheel can hold.
pub(crate) const MAX_TICK: u64 = (1 << (SLOT_BITS as u64 * LEVELS as u64)) - 1;

/// Names one timer in the driver's wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerKey {
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
        Wheel {
            elapsed: 0,
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
    pub(crate) fn insert(&mut self, when: u64, waker: Waker) -> TimerKey {
        self.insert_fired(when, waker).0
    }

    /// As [`insert`](Self::insert), and whether the entry starts out fired.
    pub(crate) fn insert_fired(&mut self, when: u64, waker: Waker) -> (TimerKey, bool) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let index = self.entries.insert(Entry {
            when: when.min(MAX_TICK),
            generation,
            waker: Some(waker),
            position: None,
            prev: None,
            next: None,
        });
        let fired = when <= self.elapsed;
        if fired {
            self.entries[index].waker = None;
        } else {
            self.link(index);
        }
        (TimerKey { index, generation }, fired)
    }

    fn entry(&self, key: TimerKey) -> Option<&Entry> {
        self.entries
            .get(key.index)
            .filter(|e| e.generation == key.generation)
    }

    /// Whether the timer fired; if not, `waker` replaces the stored one.
    pub(crate) fn poll_entry(&mut self, key: TimerKey, waker: &Waker) -> EntryState {
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
    pub(crate) fn remove(&mut self, key: TimerKey) {
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
            let mut deadline = level_start + slot as u64 * slot_range;
            if (slot as u64) < now_slot % SLOTS as u64 {
                // The slot lies in the next rotation of this level.
                deadline += level_range;
            }
            return Some((level, slot, deadline.max(self.elapsed)));
        }
        None
    }

    fn link(&mut self, index: usize) {
        let when = self.entries[index].when;
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
    fn fire_ticks(wheel: &mut Wheel, keys: &[TimerKey], until: u64) -> Vec<Option<u64>> {
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
