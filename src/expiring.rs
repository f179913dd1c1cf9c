//! A set of keys each remembered for the same time, bounded in number: what
//! the duplicate filter (`--rate-limit-interval`) and the Receivers' replay
//! protection both keep.
//!
//! Every key lives for the same interval, so insertion order is expiry
//! order: a FIFO of keys beside a map gives O(1) pruning of expired keys
//! and O(1) eviction of the oldest past the cap. (A general cache such as
//! moka was measured at ~320 bytes and ~6 µs per key, ten times this.)
//! Times are milliseconds since the set was made, not `Instant`s (16 bytes
//! each): under a flood the duplicate filter is a large part of herald's
//! memory.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::time::{Duration, Instant};

/// Keys remembered for `interval`, at most `capacity` at once (the oldest
/// are forgotten first). Not synchronised: its owner holds it in a lock.
pub struct ExpiringSet<K, S> {
    interval_ms: u64,
    /// What the millisecond times count from.
    epoch: Instant,
    capacity: usize,
    /// Key → when it expires (milliseconds since the epoch).
    until: HashMap<K, u64, S>,
    /// Keys in the order inserted, with the expiry they were inserted with
    /// (a removed or re-inserted key leaves a stale entry here, skipped).
    order: VecDeque<(K, u64)>,
}

impl<K: Hash + Eq + Copy, S: BuildHasher + Default> ExpiringSet<K, S> {
    pub fn new(interval: Duration, capacity: usize) -> Self {
        // Rounded up, so that a sub-millisecond interval still remembers.
        let interval_ms =
            u64::try_from(interval.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
        Self {
            interval_ms,
            epoch: Instant::now(),
            capacity: capacity.max(1),
            until: HashMap::default(),
            order: VecDeque::new(),
        }
    }

    /// Whether the set remembers nothing at all (a zero interval).
    pub fn is_disabled(&self) -> bool {
        self.interval_ms == 0
    }

    /// Whether `key` was inserted within the interval before `now`.
    pub fn contains(&mut self, key: &K, now: Instant) -> bool {
        let now = self.millis(now);
        self.expire(now);
        self.until.get(key).is_some_and(|until| *until > now)
    }

    /// Remembers `key` from `now` for the interval.
    pub fn insert(&mut self, key: K, now: Instant) {
        if self.is_disabled() {
            return;
        }
        let now = self.millis(now);
        self.expire(now);
        // The cap counts live keys: entries left by `remove` must not push
        // live ones out early. Those stale entries are dropped once they
        // are as many as the live ones.
        while self.until.len() >= self.capacity && self.pop_oldest() {}
        if self.order.len() >= 2 * self.capacity {
            let until = &self.until;
            self.order.retain(|(key, at)| until.get(key) == Some(at));
        }
        // An absurd interval is remembered as long as a u64 can say.
        let until = now.saturating_add(self.interval_ms);
        self.until.insert(key, until);
        self.order.push_back((key, until));
    }

    /// Forgets `key`.
    pub fn remove(&mut self, key: &K) {
        self.until.remove(key);
    }

    /// Keys remembered now (expired ones are dropped lazily).
    pub fn len(&self) -> usize {
        self.until.len()
    }

    pub fn is_empty(&self) -> bool {
        self.until.is_empty()
    }

    /// Milliseconds from the set's epoch to `now` (0 before it).
    fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Drops the keys expired at `now`.
    fn expire(&mut self, now: u64) {
        while self.order.front().is_some_and(|(_, until)| *until <= now) {
            self.pop_oldest();
        }
    }

    /// Drops the oldest entry; returns false when there is none.
    fn pop_oldest(&mut self) -> bool {
        let Some((key, until)) = self.order.pop_front() else {
            return false;
        };
        if self.until.get(&key) == Some(&until) {
            self.until.remove(&key);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::RandomState;

    use super::*;

    type Set = ExpiringSet<u32, RandomState>;

    #[test]
    fn keys_are_remembered_for_the_interval_only() {
        let mut set = Set::new(Duration::from_secs(10), 10);
        let start = Instant::now();
        set.insert(1, start);
        assert!(set.contains(&1, start + Duration::from_secs(9)));
        assert!(!set.contains(&1, start + Duration::from_secs(10)));
        assert!(set.is_empty(), "expired keys are dropped");
    }

    #[test]
    fn past_the_cap_the_oldest_go_first_and_removed_keys_do_not_count() {
        let mut set = Set::new(Duration::from_secs(60), 3);
        let now = Instant::now();
        for key in 0..3 {
            set.insert(key, now);
        }
        set.remove(&1);
        set.insert(3, now);
        // 1 was removed: 0 stays, as the cap counts live keys.
        assert!(set.contains(&0, now) && set.contains(&2, now) && set.contains(&3, now));
        set.insert(4, now);
        assert!(!set.contains(&0, now), "the oldest live key went");
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn a_zero_interval_remembers_nothing_and_an_absurd_one_does_not_panic() {
        let mut none = Set::new(Duration::ZERO, 3);
        let now = Instant::now();
        none.insert(1, now);
        assert!(none.is_disabled() && !none.contains(&1, now));
        let mut forever = Set::new(Duration::MAX, 3);
        forever.insert(1, now);
        assert!(forever.contains(&1, now + Duration::from_secs(1 << 40)));
    }
}
