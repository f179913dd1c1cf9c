//! Duplicate suppression (DESIGN §3.6): Flux's controllers repeat the same
//! event on every reconcile; within `--rate-limit-interval` only the first
//! is delivered.

use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::api::FluxEvent;
use crate::expiring::ExpiringSet;

/// Metadata keys (after the group prefix) that are part of an event's identity.
const KEY_METADATA: [&str; 3] = ["revision", "originRevision", "token"];

/// Most keys remembered at once, so a flood of distinct events cannot grow
/// memory without bound (about 9 MB at the cap: 16 bytes a key in the map
/// and 16 in the queue, both sized to powers of two). Past it the oldest key
/// is forgotten: suppression keeps working for recent events after any
/// burst.
pub const MAX_KEYS: usize = 200_000;

/// Remembers recently accepted events (see [`ExpiringSet`]).
pub struct Dedup {
    hasher: std::collections::hash_map::RandomState,
    seen: Mutex<ExpiringSet<u64, BuildHasherDefault<KeyHasher>>>,
}

/// Keys are already random (keyed SipHash of the event): the map uses
/// them as their own hash rather than hashing them again.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }
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
        Self::with_capacity(interval, MAX_KEYS)
    }

    /// A filter remembering at most `capacity` keys.
    pub fn with_capacity(interval: Duration, capacity: usize) -> Self {
        Self {
            hasher: Default::default(),
            seen: Mutex::new(ExpiringSet::new(interval, capacity)),
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
        let mut seen = self.seen();
        if seen.contains(&key, now) {
            return Admission::Duplicate;
        }
        seen.insert(key, now);
        Admission::Fresh(key)
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, ExpiringSet<u64, BuildHasherDefault<KeyHasher>>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets a key admitted for an event that was then refused (503), so
    /// the sender's retry is not taken for a duplicate.
    pub fn forget(&self, key: u64) {
        self.seen().remove(&key);
    }

    /// Keys remembered now (expired ones are dropped lazily).
    pub fn len(&self) -> usize {
        self.seen().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    /// Keys forgotten after a refusal (503) do not count toward the cap:
    /// a burst of refused events never pushes remembered ones out early.
    #[test]
    fn forgotten_keys_do_not_shrink_the_capacity() {
        let dedup = Dedup::with_capacity(Duration::from_secs(60), 3);
        let now = Instant::now();
        let admit = |message: &str| dedup.admit(&event(message, &[]), now);
        assert!(matches!(admit("a"), Admission::Fresh(_)));
        assert!(matches!(admit("b"), Admission::Fresh(_)));
        for n in 0..10 {
            if let Admission::Fresh(key) = admit(&format!("refused {n}")) {
                dedup.forget(key);
            }
        }
        assert!(matches!(admit("c"), Admission::Fresh(_)));
        assert_eq!(
            admit("a"),
            Admission::Duplicate,
            "a live key was pushed out"
        );
        assert_eq!(dedup.len(), 3);
    }

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

    /// The old filter stopped remembering keys once 200,000 were held
    /// within the interval: suppression was off until restart.
    #[test]
    fn suppression_survives_a_burst_past_the_cap() {
        let dedup = Dedup::new(Duration::from_secs(300));
        let now = Instant::now();
        let burst = MAX_KEYS + 50_000;
        let events: Vec<FluxEvent> = (0..burst)
            .step_by(10_000)
            .map(|n| event(&format!("burst {n}"), &[]))
            .collect();
        for n in 0..burst {
            let e = event(&format!("burst {n}"), &[]);
            assert!(matches!(dedup.admit(&e, now), Admission::Fresh(_)), "{n}");
        }
        assert_eq!(dedup.len(), MAX_KEYS);
        let recent = event(&format!("burst {}", burst - 1), &[]);
        assert_eq!(dedup.admit(&recent, now), Admission::Duplicate);
        // The oldest were forgotten to make room, the newest kept.
        let (old, kept): (Vec<_>, Vec<_>) = events
            .iter()
            .enumerate()
            .partition(|(i, _)| i * 10_000 < burst - MAX_KEYS);
        assert!(!old.is_empty() && !kept.is_empty());
        for (_, e) in kept {
            assert_eq!(dedup.admit(e, now), Admission::Duplicate);
        }
        for (_, e) in old {
            assert!(matches!(dedup.admit(e, now), Admission::Fresh(_)));
        }
        // And a fresh event is still remembered.
        let fresh = event("after the burst", &[]);
        assert!(matches!(dedup.admit(&fresh, now), Admission::Fresh(_)));
        assert_eq!(dedup.admit(&fresh, now), Admission::Duplicate);
    }

    #[test]
    fn expired_keys_are_pruned_and_a_forgotten_key_leaves_no_trace() {
        let dedup = Dedup::with_capacity(Duration::from_secs(10), 4);
        let t0 = Instant::now();
        for n in 0..4 {
            dedup.admit(&event(&format!("e{n}"), &[]), t0);
        }
        let Admission::Fresh(key) = dedup.admit(&event("late", &[]), t0 + Duration::from_secs(5))
        else {
            panic!("fresh")
        };
        assert_eq!(dedup.len(), 4, "the oldest made room");
        dedup.forget(key);
        // Re-admitted after being forgotten: the stale FIFO entry must not
        // evict the new admission early.
        let later = t0 + Duration::from_secs(6);
        assert!(matches!(
            dedup.admit(&event("late", &[]), later),
            Admission::Fresh(_)
        ));
        let t1 = t0 + Duration::from_secs(11);
        assert_eq!(dedup.admit(&event("late", &[]), t1), Admission::Duplicate);
        assert_eq!(dedup.len(), 1, "expired keys were pruned");
    }

    #[test]
    fn an_absurd_interval_does_not_panic() {
        let dedup = Dedup::new(Duration::MAX);
        let e = event("failed", &[]);
        let now = Instant::now();
        assert!(matches!(dedup.admit(&e, now), Admission::Fresh(_)));
        assert_eq!(dedup.admit(&e, now), Admission::Duplicate);
    }
}
