//! Replay protection (herald's own, opt-in with
//! `--receiver-replay-protection`; Flux has none): a request whose sender's
//! delivery id (GitHub's `X-GitHub-Delivery`, GitLab's
//! `X-Gitlab-Event-UUID`, …) was already handled for the same Receiver
//! within [`REPLAY_WINDOW`] is acknowledged and not acted on again — a
//! sender's redelivery of one event. It never keys on the body or a
//! credential alone: the same signed body or a reused token is a new
//! request. A sender retrying after a failure (nothing recorded) is served.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

#[derive(Default)]
pub struct Replays {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    seen: HashMap<Key, Instant>,
    order: VecDeque<(Instant, Key)>,
}

impl Replays {
    /// Whether `key` was handled within the window.
    pub fn seen(&self, key: &Key, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.expire(now);
        state.seen.contains_key(key)
    }

    /// Records a handled request.
    pub fn record(&self, key: Key, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.expire(now);
        while state.order.len() >= MAX_REMEMBERED {
            if let Some((_, oldest)) = state.order.pop_front() {
                state.seen.remove(&oldest);
            }
        }
        if state.seen.insert(key, now).is_none() {
            state.order.push_back((now, key));
        }
    }
}

impl State {
    fn expire(&mut self, now: Instant) {
        while let Some((at, key)) = self.order.front().copied() {
            if now.saturating_duration_since(at) < REPLAY_WINDOW {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&key);
        }
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
