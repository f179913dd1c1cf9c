//! Slack thread anchors (DESIGN §3.11): for each destination, channel and
//! rendered thread key, the `ts` and `channel` of the message that started
//! the thread.
//!
//! Kept in memory only, for `--thread-ttl`, in a bounded TTL cache: at most
//! [`MAX_THREADS`] keys, and past the cap the least recently used key is
//! forgotten, so the next notification with that key starts a new thread.
//! Nothing is lost either way.

use std::time::Duration;

use moka::policy::EvictionPolicy;
use moka::sync::Cache;

use crate::providers::ThreadAnchor;

/// Most thread keys remembered at once.
pub const MAX_THREADS: u64 = 10_000;

/// Which thread: destination (queue), channel ("" for the Provider's
/// default) and rendered key. Two Alerts sharing a Provider but posting to
/// different channels keep different threads.
type Key = (u64, String, String);

pub struct ThreadStore {
    anchors: Cache<Key, ThreadAnchor>,
}

impl ThreadStore {
    pub fn new(ttl: Duration, capacity: u64) -> Self {
        // moka refuses a time-to-live over 1000 years; flags stop at Go's
        // range (292 years), this only guards programmatic configs.
        let ttl = ttl.min(crate::duration::MAX).max(Duration::from_millis(1));
        Self {
            anchors: Cache::builder()
                .max_capacity(capacity.max(1))
                .time_to_live(ttl)
                // Least recently used goes first: a new thread is always
                // remembered (TinyLFU could refuse it when the cache is full).
                .eviction_policy(EvictionPolicy::lru())
                .build(),
        }
    }

    /// The anchor of a thread, unless it expired or was evicted.
    pub fn get(&self, queue: u64, channel: &str, key: &str) -> Option<ThreadAnchor> {
        self.anchors
            .get(&(queue, channel.to_owned(), key.to_owned()))
    }

    /// Remembers the anchor of a new thread.
    pub fn insert(&self, queue: u64, channel: &str, key: String, anchor: ThreadAnchor) {
        self.anchors
            .insert((queue, channel.to_owned(), key), anchor);
    }

    /// Threads remembered now (after pending evictions are applied).
    pub fn len(&self) -> u64 {
        self.anchors.run_pending_tasks();
        self.anchors.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor(ts: &str) -> ThreadAnchor {
        ThreadAnchor {
            ts: ts.into(),
            channel: "C1".into(),
        }
    }

    #[test]
    fn keys_are_per_destination_and_channel() {
        let store = ThreadStore::new(Duration::from_secs(60), 10);
        store.insert(1, "#a", "k".into(), anchor("1.0"));
        assert_eq!(store.get(1, "#a", "k"), Some(anchor("1.0")));
        assert_eq!(store.get(2, "#a", "k"), None);
        assert_eq!(store.get(1, "#b", "k"), None, "another channel");
        assert_eq!(store.get(1, "", "k"), None);
        assert_eq!(store.get(1, "#a", "other"), None);
    }

    #[test]
    fn keys_expire() {
        let store = ThreadStore::new(Duration::from_millis(50), 10);
        store.insert(1, "", "k".into(), anchor("1.0"));
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(store.get(1, "", "k"), None);
        assert!(store.is_empty());
    }

    #[test]
    fn the_cap_forgets_the_least_recently_used_key() {
        let store = ThreadStore::new(Duration::from_secs(3600), 3);
        for key in ["a", "b", "c"] {
            store.insert(1, "", key.into(), anchor(key));
        }
        store.len();
        store.insert(1, "", "d".into(), anchor("d"));
        assert_eq!(store.len(), 3);
        assert_eq!(store.get(1, "", "a"), None);
        assert_eq!(store.get(1, "", "d"), Some(anchor("d")));
    }

    #[test]
    fn an_absurd_ttl_does_not_panic() {
        let store = ThreadStore::new(Duration::MAX, 1);
        store.insert(1, "", "k".into(), anchor("1.0"));
        assert_eq!(store.get(1, "", "k"), Some(anchor("1.0")));
    }
}
