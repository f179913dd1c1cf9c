//! Replay protection (herald's own, opt-in with
//! `--receiver-replay-protection`; Flux has none): a request whose sender's
//! delivery id (GitHub's `X-GitHub-Delivery`, GitLab's
//! `X-Gitlab-Event-UUID`, …) was already handled for the same Receiver
//! within [`REPLAY_WINDOW`] is acknowledged and not acted on again — a
//! sender's redelivery of one event. It never keys on the body or a
//! credential alone: the same signed body or a reused token is a new
//! request. A sender retrying after a failure (nothing recorded) is served.

use std::collections::hash_map::RandomState;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::expiring::ExpiringSet;

/// How long a handled request is remembered.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(300);
/// Most requests remembered at once; the oldest are forgotten first.
pub const MAX_REMEMBERED: usize = 100_000;

pub type Key = [u8; 32];

/// The digest a request is remembered by.
pub fn key(parts: &[&[u8]]) -> Key {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part);
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(context.finish().as_ref());
    key
}

/// The requests handled within [`REPLAY_WINDOW`].
pub struct Replays {
    seen: Mutex<ExpiringSet<Key, RandomState>>,
}

impl Default for Replays {
    fn default() -> Self {
        Self {
            seen: Mutex::new(ExpiringSet::new(REPLAY_WINDOW, MAX_REMEMBERED)),
        }
    }
}

impl Replays {
    fn seen_set(&self) -> std::sync::MutexGuard<'_, ExpiringSet<Key, RandomState>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `key` was handled within the window.
    pub fn seen(&self, key: &Key, now: Instant) -> bool {
        self.seen_set().contains(key, now)
    }

    /// Records a handled request.
    pub fn record(&self, key: Key, now: Instant) {
        self.seen_set().insert(key, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_for_the_window_only() {
        let replays = Replays::default();
        let start = Instant::now();
        let a = key(&[b"ns/name", b"sig", b"body"]);
        assert!(!replays.seen(&a, start));
        replays.record(a, start);
        assert!(replays.seen(&a, start + Duration::from_secs(10)));
        assert!(!replays.seen(&a, start + REPLAY_WINDOW));
        // Parts are length-prefixed: moving bytes between parts is another key.
        assert_ne!(key(&[b"ab", b"c"]), key(&[b"a", b"bc"]));
    }
}
