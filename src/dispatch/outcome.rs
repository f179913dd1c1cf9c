//! How a notification ends. Every accepted notification ends in exactly one
//! [`Outcome`], and [`Inner::finish`] is the one place that ends it: one log
//! line, the `herald_notifications_total` metric, a Warning Event on its
//! Alert when an operator has something to act on, and its spool record
//! forgotten (kept only when shutdown abandons it, to be delivered after the
//! restart). "Every notification ends with all three" holds because nothing
//! else logs, counts or reports an ending.

use std::time::Instant;

use crate::api::Reason;
use crate::metrics::ProviderLabel;
use crate::routing::Delivery;

use super::{DispatchConfig, Inner};

/// Why a notification was given up for a bound, before any attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum GivenUp {
    /// Its destination's own queue was full when it was accepted.
    DestinationFull,
    /// The global bound was full, and its destination held the most: its
    /// oldest notification made room for another destination's.
    Evicted,
    /// A digest waited for room in the full global bound past max age.
    GlobalFullTooLong,
    /// Read back from the spool, it waited for room past max age.
    WaitedTooLong,
}

impl GivenUp {
    /// What happened, naming the flag of the bound that was hit.
    fn reason(self) -> &'static str {
        match self {
            Self::DestinationFull => {
                "the destination's queue is full (--destination-queue-capacity); the destination is failing or slower than its events"
            }
            Self::Evicted => {
                "the global queue is full (--queue-capacity) and this destination holds the most; its oldest notification made room for another destination's"
            }
            Self::GlobalFullTooLong => {
                "the global queue (--queue-capacity) stayed full for --max-delivery-age"
            }
            Self::WaitedTooLong => {
                "it waited for room in the queues past --max-delivery-age (--queue-capacity, --destination-queue-capacity)"
            }
        }
    }

    /// The size of the bound that was hit.
    fn bound(self, config: &DispatchConfig) -> usize {
        match self {
            Self::DestinationFull | Self::WaitedTooLong => config.destination_queue_capacity,
            Self::Evicted | Self::GlobalFullTooLong => config.queue_capacity,
        }
    }

    /// The `result` label of `herald_notifications_total`.
    fn result(self) -> &'static str {
        match self {
            Self::DestinationFull | Self::GlobalFullTooLong => "queue_full",
            Self::Evicted => "evicted",
            Self::WaitedTooLong => "expired",
        }
    }
}

/// How one notification ended. Errors are already masked.
pub(super) enum Outcome {
    /// The provider took it, at the `attempt`-th attempt of the last step.
    Delivered { attempt: u32, accepted: Instant },
    /// The provider sends nothing for this event (Flux's rules).
    Skipped { reason: &'static str },
    /// Its request could not be built (a template or provider setting).
    Unbuildable { error: String },
    /// The destination refused it for good.
    Failed { attempt: u32, error: String },
    /// Past `--max-delivery-age` after `attempts` attempts; `error` is the
    /// destination's last failure, if any.
    Expired {
        attempts: u32,
        error: Option<String>,
    },
    /// Given up for a bound before any attempt.
    GivenUp(GivenUp),
    /// A panic while delivering it, caught.
    Panicked { error: String },
    /// Shutdown's deadline passed first; its spool record stays.
    Abandoned,
}

impl Outcome {
    /// The `result` label of `herald_notifications_total`.
    fn result(&self) -> &'static str {
        match self {
            Self::Delivered { .. } => "delivered",
            Self::Skipped { .. } => "skipped",
            Self::Unbuildable { .. } | Self::Failed { .. } | Self::Panicked { .. } => "failed",
            Self::Expired { .. } => "expired",
            Self::GivenUp(why) => why.result(),
            Self::Abandoned => "abandoned",
        }
    }
}

/// How a notification is named in logs and Events: Alert, Provider, event
/// and the masked address.
pub(super) struct Described {
    pub(super) alert: String,
    pub(super) provider: String,
    pub(super) event: String,
    pub(super) address: String,
}

impl Described {
    pub(super) fn of(n: &Delivery) -> Self {
        let destination = &n.alert.destination;
        Self {
            alert: n.alert.key.to_string(),
            provider: destination.key.to_string(),
            event: n.event.object_ref(),
            address: destination.masked_address().to_owned(),
        }
    }
}

impl Inner {
    /// Ends a notification: its spool record, log line, metric and, where
    /// an operator must act, Warning Event.
    pub(super) fn finish(&self, n: &Delivery, outcome: Outcome) {
        if !matches!(outcome, Outcome::Abandoned) {
            self.unspool(n);
        }
        let provider_type = n.alert.destination.kind.as_str();
        if let Outcome::Delivered { accepted, .. } = &outcome {
            self.metrics
                .delivery_latency
                .get_or_create(&ProviderLabel { provider_type })
                .observe(accepted.elapsed().as_secs_f64());
        }
        self.metrics.notification(provider_type, outcome.result());
        if let Some(warning) = self.log(n, &outcome) {
            self.warn(&n.alert.key, Reason::NotificationDispatchFailed, warning);
        }
    }

    /// Writes the outcome's log line; returns the Warning Event's message
    /// when it gets one.
    fn log(&self, n: &Delivery, outcome: &Outcome) -> Option<String> {
        // Most notifications end delivered, logged only at debug: naming
        // them is not worth its allocations unless the line is written.
        if matches!(outcome, Outcome::Delivered { .. } | Outcome::Skipped { .. })
            && !tracing::enabled!(tracing::Level::DEBUG)
        {
            return None;
        }
        let Described {
            alert,
            provider,
            event,
            address,
        } = Described::of(n);
        match outcome {
            Outcome::Delivered { attempt, .. } => {
                tracing::debug!(%alert, %provider, %event, attempt, "delivered");
                None
            }
            Outcome::Skipped { reason } => {
                tracing::debug!(%alert, %provider, %event, reason,
                    "skipped: the provider sends nothing for this event");
                None
            }
            Outcome::Unbuildable { error } => {
                tracing::error!(%alert, %provider, %event, %error,
                    "cannot build the request: notification not delivered");
                Some(format!(
                    "event {event}: cannot build the request for provider {provider}: {error}"
                ))
            }
            Outcome::Failed { attempt, error } => {
                tracing::error!(%alert, %provider, %event, %address, attempt, %error,
                    "notification failed, not retrying");
                Some(format!(
                    "event {event}: delivery to provider {provider} ({address}) failed: {error}"
                ))
            }
            Outcome::Expired { attempts, error } => {
                let error = match error {
                    Some(error) => error.clone(),
                    None if *attempts == 0 => "no attempt: it waited behind earlier notifications of a failing destination".to_owned(),
                    None => "no answer in time".to_owned(),
                };
                tracing::error!(%alert, %provider, %event, %address, attempt = attempts, %error,
                    "notification failed, giving up: older than --max-delivery-age");
                Some(format!(
                    "event {event}: delivery to provider {provider} ({address}) given up after {attempts} attempts \
                     (--max-delivery-age {:?}): {error}",
                    self.config.max_delivery_age
                ))
            }
            Outcome::GivenUp(why) => {
                let bound = why.bound(&self.config);
                tracing::error!(%alert, %provider, %event, %address, reason = why.reason(), bound,
                    "notification not delivered: given up");
                Some(format!(
                    "event {event}: not delivered to provider {provider} ({address}): {} (bound: {bound} notifications)",
                    why.reason()
                ))
            }
            Outcome::Panicked { error } => {
                tracing::error!(%alert, %provider, %event, %address, %error,
                    "internal error while delivering: notification not delivered");
                Some(format!(
                    "event {event}: delivery to provider {provider} ({address}) failed on an internal error: {error}"
                ))
            }
            Outcome::Abandoned => {
                tracing::error!(%alert, %provider, %event, %address,
                    "shutting down: notification not delivered");
                None
            }
        }
    }
}
