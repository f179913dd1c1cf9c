//! The circuit breaker: one per destination, kept by its worker. After
//! [`BREAKER_THRESHOLD`] consecutive failures a destination's circuit
//! opens: one request (the oldest notification) probes it at a growing
//! interval, up to [`PROBE_MAX`], until one succeeds.

use std::time::{Duration, Instant};

use crate::duration::after;

use super::DispatchConfig;
use super::retry;

/// Consecutive failed attempts after which a destination's circuit opens.
pub const BREAKER_THRESHOLD: u32 = 5;
/// Longest interval between two probes of a destination whose circuit is open.
pub const PROBE_MAX: Duration = Duration::from_secs(30);

/// A destination's health: consecutive failures and when the next request
/// may go.
#[derive(Debug, Default)]
pub(super) struct Breaker {
    /// Failed attempts in a row, across notifications.
    pub(super) failures: u32,
    /// No request before this (backoff, `Retry-After` or probe interval).
    next_attempt: Option<Instant>,
    /// The last failure (masked), quoted when queued notifications expire.
    pub(super) last_error: Option<String>,
}

impl Breaker {
    pub(super) fn is_open(&self) -> bool {
        self.failures >= BREAKER_THRESHOLD
    }

    /// No failure since the last answer, and no wait pending.
    pub(super) fn is_healthy(&self) -> bool {
        self.failures == 0 && self.next_attempt.is_none()
    }

    /// When the next request may go, if that is later than `now`.
    pub(super) fn wait_until(&self, now: Instant) -> Option<Instant> {
        self.next_attempt.filter(|at| *at > now)
    }

    /// The destination answered; returns whether the circuit was open.
    pub(super) fn answered(&mut self) -> bool {
        let was_open = self.is_open();
        *self = Self::default();
        was_open
    }

    /// A retryable failure of a notification's `attempt`-th attempt, with
    /// `remaining` before its max age: the delay before the destination's
    /// next request. `Retry-After` is obeyed up to `remaining`; with the
    /// circuit open, requests are at least a probe interval apart.
    pub(super) fn failed(
        &mut self,
        now: Instant,
        attempt: u32,
        retry_after: Option<Duration>,
        remaining: Duration,
        config: &DispatchConfig,
        error: String,
    ) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.last_error = Some(error);
        let mut delay = match retry_after {
            Some(after) => after.min(remaining),
            None => retry::backoff(attempt, config.initial_backoff, config.max_backoff),
        };
        if self.is_open() {
            let probes = self.failures - BREAKER_THRESHOLD + 1;
            let probe = retry::backoff(
                probes,
                config.initial_backoff,
                PROBE_MAX.max(config.initial_backoff),
            );
            delay = delay.max(probe);
        }
        self.next_attempt = Some(after(now, delay));
        delay
    }

    /// Whether the last failure is the one that opened the circuit.
    pub(super) fn just_opened(&self) -> bool {
        self.failures == BREAKER_THRESHOLD
    }
}
