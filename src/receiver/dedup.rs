//! Duplicate suppression (DESIGN §3.6): Flux's controllers repeat the same
//! event on every reconcile; within `--rate-limit-interval` only the first
//! is delivered.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::api::FluxEvent;

/// Metadata keys (after the group prefix) that are part of an event's identity.
const KEY_METADATA: [&str; 3] = ["revision", "originRevision", "token"];

/// Remembered keys are capped so a flood of distinct events cannot grow
/// memory without bound; past the cap, events are not suppressed (every
/// event is still delivered: duplicates cost a message, never a loss).
const MAX_KEYS: usize = 200_000;

/// Remembers recently accepted events.
pub struct Dedup {
    interval: Duration,
    hasher: std::collections::hash_map::RandomState,
    seen: Mutex<Seen>,
}

struct Seen {
    until: HashMap<u64, Instant>,
    next_prune: usize,
}

/// The outcome of [`Dedup::admit`].
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// First time seen: the key is now remembered; call [`Dedup::forget`] if
    /// the event is not accepted after all.
    Fresh(u64),
    Duplicate,
}

impl Dedup {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            hasher: Default::default(),
            seen: Mutex::new(Seen {
                until: HashMap::new(),
                next_prune: 1024,
            }),
        }
    }

    /// The identity of an event: involved object, message, and the
    /// revision, originRevision and token metadata values.
    pub fn key(&self, event: &FluxEvent) -> u64 {
        let mut h = self.hasher.build_hasher();
        let o = &event.involved_object;
        (&o.kind, &o.namespace, &o.name, &event.message).hash(&mut h);
        for (key, value) in &event.metadata {
            let name = key.rsplit_once('/').map_or(key.as_str(), |(_, name)| name);
            if KEY_METADATA.contains(&name) {
                (key, value).hash(&mut h);
            }
        }
        h.finish()
    }

    /// Admits an event unless an identical one was admitted within the interval.
    pub fn admit(&self, event: &FluxEvent, now: Instant) -> Admission {
        let key = self.key(event);
        if self.interval.is_zero() {
            return Admission::Fresh(key);
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.until.get(&key).is_some_and(|until| *until > now) {
            return Admission::Duplicate;
        }
        if seen.until.len() >= seen.next_prune {
            seen.until.retain(|_, until| *until > now);
            seen.next_prune = (seen.until.len() * 2).max(1024);
        }
        if seen.until.len() < MAX_KEYS {
            seen.until.insert(key, now + self.interval);
        }
        Admission::Fresh(key)
    }

    /// Forgets a key admitted for an event that was then refused (503), so
    /// the sender's retry is not taken for a duplicate.
    pub fn forget(&self, key: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.until.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Severity;

    fn event(message: &str, metadata: &[(&str, &str)]) -> FluxEvent {
        crate::api::event::sample("Kustomization", "app", Severity::Error, message, metadata)
    }

    #[test]
    fn duplicate_key_uses_object_message_and_revision_token() {
        let dedup = Dedup::new(Duration::from_secs(300));
        let a = event("failed", &[("kustomize.toolkit.fluxcd.io/revision", "r1")]);
        let mut same = a.clone();
        same.timestamp = "t2".into();
        same.reason = "other".into();
        same.metadata.insert(
            "kustomize.toolkit.fluxcd.io/checksum".into(),
            "ignored".into(),
        );
        assert_eq!(dedup.key(&a), dedup.key(&same));
        let other_revision = event("failed", &[("kustomize.toolkit.fluxcd.io/revision", "r2")]);
        let other_token = event(
            "failed",
            &[
                ("kustomize.toolkit.fluxcd.io/revision", "r1"),
                ("kustomize.toolkit.fluxcd.io/token", "t"),
            ],
        );
        let other_message = event(
            "failed again",
            &[("kustomize.toolkit.fluxcd.io/revision", "r1")],
        );
        for different in [other_revision, other_token, other_message] {
            assert_ne!(dedup.key(&a), dedup.key(&different));
        }
    }

    #[test]
    fn duplicates_within_the_interval_only() {
        let dedup = Dedup::new(Duration::from_secs(300));
        let e = event("failed", &[]);
        let t0 = Instant::now();
        assert!(matches!(dedup.admit(&e, t0), Admission::Fresh(_)));
        assert_eq!(
            dedup.admit(&e, t0 + Duration::from_secs(299)),
            Admission::Duplicate
        );
        assert!(matches!(
            dedup.admit(&e, t0 + Duration::from_secs(301)),
            Admission::Fresh(_)
        ));
    }

    #[test]
    fn forgotten_keys_are_admitted_again() {
        let dedup = Dedup::new(Duration::from_secs(300));
        let e = event("failed", &[]);
        let now = Instant::now();
        let Admission::Fresh(key) = dedup.admit(&e, now) else {
            panic!("first admission is fresh")
        };
        dedup.forget(key);
        assert!(matches!(dedup.admit(&e, now), Admission::Fresh(_)));
    }
}
