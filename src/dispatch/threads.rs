//! Slack thread anchors (DESIGN §3.11): for each destination and rendered
//! thread key, the `ts` and `channel` of the message that started the thread.
//!
//! Kept in memory only, for `--thread-ttl`. At most [`MAX_THREADS`] keys are
//! kept: past the cap the oldest key is forgotten, and the next notification
//! with that key starts a new thread. Nothing is lost either way.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::providers::ThreadAnchor;

/// Most thread keys remembered at once.
pub const MAX_THREADS: usize = 10_000;

pub struct ThreadStore {
    ttl: Duration,
    capacity: usize,
    anchors: Mutex<HashMap<(u64, String), (ThreadAnchor, Instant)>>,
}

impl ThreadStore {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            anchors: Mutex::new(HashMap::new()),
        }
    }

    /// The anchor for a key, unless it expired.
    pub fn get(&self, queue: u64, key: &str, now: Instant) -> Option<ThreadAnchor> {
        let mut anchors = self.anchors.lock().unwrap_or_else(|e| e.into_inner());
        let entry_key = (queue, key.to_owned());
        match anchors.get(&entry_key) {
            Some((anchor, started)) if now.duration_since(*started) < self.ttl => {
                Some(anchor.clone())
            }
            Some(_) => {
                anchors.remove(&entry_key);
                None
            }
            None => None,
        }
    }

    /// Remembers the anchor of a new thread.
    pub fn insert(&self, queue: u64, key: String, anchor: ThreadAnchor, now: Instant) {
        let mut anchors = self.anchors.lock().unwrap_or_else(|e| e.into_inner());
        if anchors.len() >= self.capacity {
            let ttl = self.ttl;
            anchors.retain(|_, (_, started)| now.duration_since(*started) < ttl);
        }
        if anchors.len() >= self.capacity {
            let oldest = anchors
                .iter()
                .min_by_key(|(_, (_, started))| *started)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                anchors.remove(&oldest);
            }
        }
        anchors.insert((queue, key), (anchor, now));
    }

    pub fn len(&self) -> usize {
        self.anchors.lock().unwrap_or_else(|e| e.into_inner()).len()
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
    fn keys_are_per_destination_and_expire() {
        let store = ThreadStore::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        store.insert(1, "k".into(), anchor("1.0"), t0);
        assert_eq!(store.get(1, "k", t0), Some(anchor("1.0")));
        assert_eq!(store.get(2, "k", t0), None);
        assert_eq!(store.get(1, "other", t0), None);
        assert_eq!(store.get(1, "k", t0 + Duration::from_secs(61)), None);
        assert!(store.is_empty());
    }

    #[test]
    fn the_cap_forgets_the_oldest_key() {
        let store = ThreadStore::new(Duration::from_secs(3600), 3);
        let t0 = Instant::now();
        for (i, key) in ["a", "b", "c", "d"].into_iter().enumerate() {
            store.insert(
                1,
                key.into(),
                anchor(key),
                t0 + Duration::from_secs(i as u64),
            );
        }
        assert_eq!(store.len(), 3);
        let now = t0 + Duration::from_secs(10);
        assert_eq!(store.get(1, "a", now), None);
        assert_eq!(store.get(1, "d", now), Some(anchor("d")));
    }
}
