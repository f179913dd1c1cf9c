//! The dispatcher: per-destination FIFO queues, retries, a circuit breaker
//! per destination, and delivery metrics (DESIGN §3.9).
//!
//! The receiver hands notifications over with [`Dispatcher::try_enqueue`] and
//! never waits for a provider. Each destination (provider endpoint) has one
//! queue and one worker task delivering its notifications one at a time, in
//! the order accepted, so retries never reorder them.
//!
//! Destinations are isolated from each other:
//! * Two bounds: a global one on everything accepted and not finished, and
//!   one per destination. The global one is shared fairly: when it is
//!   exhausted, the destination holding the most gives up its oldest queued
//!   notification for a destination that holds less
//!   ([`Dispatcher::make_room`]); only when the asking destination holds
//!   the most does the receiver answer 503. A
//!   notification whose own destination is full is given up at once (logged,
//!   counted `queue_full`, Warning Event) while the event's other
//!   notifications are queued and the event is accepted: see
//!   [`Dispatcher::try_enqueue`].
//! * A notification past `--max-delivery-age` is given up without another
//!   attempt, also while it waits behind a request in flight.
//! * After [`BREAKER_THRESHOLD`] consecutive failures a destination's circuit
//!   opens: one request (the oldest notification) probes it at a growing
//!   interval, up to [`PROBE_MAX`], until one succeeds. Its backlog then ages
//!   out at max age, not at request timeout × backlog.
//!
//! Every accepted notification ends delivered, failed or given up (logged,
//! counted, Warning Event), or is still queued; a panic while delivering one
//! is caught, logged and counted like a failure.
//!
//! The parts, in the order a notification meets them: [`queue`] (queues
//! and bounds), [`digest`] (held for an Alert's digest), [`delivery`] (the
//! worker and its retries), [`breaker`] (the destination's health),
//! [`sending`] (one HTTP request) and [`outcome`] (the one place a
//! notification ends: log line, metric, Event, spool record).

mod breaker;
mod clients;
mod delivery;
mod digest;
mod outcome;
mod queue;
pub mod retry;
mod sending;
#[cfg(test)]
mod tests;
pub mod threads;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::duration::after;
use crate::metrics::Metrics;
use crate::report::Reporter;
use crate::routing::Delivery;
use crate::spool::Spool;

pub use self::breaker::{BREAKER_THRESHOLD, PROBE_MAX};
use self::clients::Clients;
use self::digest::Digests;
use self::outcome::{GivenUp, Outcome};
use self::queue::{Lane, LaneFull};
use self::threads::ThreadStore;

/// Delivery settings.
#[derive(Clone, Debug)]
pub struct DispatchConfig {
    /// Notifications accepted and not finished, across all destinations.
    pub queue_capacity: usize,
    /// Notifications accepted and not finished, per destination.
    pub destination_queue_capacity: usize,
    /// Give up on a notification this long after it was accepted.
    pub max_delivery_age: Duration,
    /// First retry delay; doubles on each attempt.
    pub initial_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// How long a Slack thread key is remembered.
    pub thread_ttl: Duration,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 10_000,
            destination_queue_capacity: 1_000,
            max_delivery_age: Duration::from_secs(15 * 60),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            thread_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// The dispatcher could not take the notifications: the global queue is full.
#[derive(Debug, thiserror::Error)]
#[error("the delivery queue is full")]
pub struct QueueFull;

/// What [`Dispatcher::try_enqueue`] did with an event's notifications.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Enqueued {
    /// Queued for delivery.
    pub queued: usize,
    /// Given up at once (logged, counted, Warning Event): their
    /// destination's own queue was full.
    pub refused: usize,
    /// Held for their Alert's digest.
    pub held: usize,
}

/// A cheap handle; clones share the queues.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    clients: Clients,
    config: DispatchConfig,
    permits: Arc<Semaphore>,
    /// Each destination's queue, by [`crate::routing::Destination::queue`].
    lanes: Mutex<HashMap<u64, Arc<Lane>>>,
    metrics: Arc<Metrics>,
    /// Cancelled when the shutdown deadline passes: workers log what is left.
    abandon: CancellationToken,
    threads: ThreadStore,
    reporter: Option<Arc<dyn Reporter>>,
    /// Where accepted notifications are kept until they finish (`--spool-dir`).
    spool: Option<Arc<Spool>>,
    /// Open digest windows (`spec.digest`).
    digests: Digests,
}

impl Dispatcher {
    pub fn new(
        config: DispatchConfig,
        metrics: Arc<Metrics>,
        reporter: Option<Arc<dyn Reporter>>,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(
            config.queue_capacity.min(Semaphore::MAX_PERMITS),
        ));
        Self {
            inner: Arc::new(Inner {
                clients: Clients::new(),
                threads: ThreadStore::new(config.thread_ttl, threads::MAX_THREADS),
                config,
                permits,
                lanes: Mutex::new(HashMap::new()),
                metrics,
                reporter,
                abandon: CancellationToken::new(),
                spool: None,
                digests: Digests::default(),
            }),
        }
    }

    /// A dispatcher that forgets each notification's spool record when it
    /// finishes (see [`crate::spool`]).
    pub fn with_spool(
        config: DispatchConfig,
        metrics: Arc<Metrics>,
        reporter: Option<Arc<dyn Reporter>>,
        spool: Arc<Spool>,
    ) -> Self {
        let mut dispatcher = Self::new(config, metrics, reporter);
        if let Some(inner) = Arc::get_mut(&mut dispatcher.inner) {
            inner.spool = Some(spool);
        }
        dispatcher
    }

    /// `--max-delivery-age`.
    pub fn max_delivery_age(&self) -> Duration {
        self.inner.config.max_delivery_age
    }

    /// Gives up a spooled notification that waited for room past
    /// `--max-delivery-age` without being queued (logged, counted, Event).
    pub fn give_up_unqueued(&self, n: &Delivery) {
        self.inner
            .finish(n, Outcome::GivenUp(GivenUp::WaitedTooLong));
    }

    /// Queues the notifications of one event.
    ///
    /// A notification whose destination already holds
    /// `destination_queue_capacity` notifications is given up at once
    /// (logged, counted `queue_full`, Warning Event on its Alert); the
    /// others are queued and the event is accepted. Answering 503 instead
    /// would make Flux post the whole event again and, with the other
    /// destinations already served, deliver it twice there — and a
    /// destination that full is failing or far behind, so a retry within
    /// Flux's few attempts would not fit either.
    ///
    /// When the global bound cannot take the rest, nothing is queued or
    /// given up and `QueueFull` is returned: the receiver answers 503 and
    /// Flux retries the event.
    pub fn try_enqueue(&self, notifications: Vec<Delivery>) -> Result<Enqueued, QueueFull> {
        self.try_enqueue_accepted(notifications, Instant::now())
            .map_err(|_| QueueFull)
    }

    /// [`Dispatcher::try_enqueue`] for notifications accepted at
    /// `accepted` (a spool's, read back after a restart): their max age
    /// counts from then. When the global bound is full they are handed
    /// back, untouched.
    pub fn try_enqueue_accepted(
        &self,
        notifications: Vec<Delivery>,
        accepted: Instant,
    ) -> Result<Enqueued, Vec<Delivery>> {
        self.enqueue(notifications, accepted, LaneFull::GiveUp)
    }

    /// Queues notifications read back from the spool, accepted at
    /// `accepted`. They were accepted before a restart and are given up
    /// only at max age: when the global bound or their destination's own
    /// is full they are handed back, untouched, to be tried again.
    pub fn try_requeue(
        &self,
        notifications: Vec<Delivery>,
        accepted: Instant,
    ) -> Result<Enqueued, Vec<Delivery>> {
        self.enqueue(notifications, accepted, LaneFull::HandBack)
    }

    /// Notifications accepted and not finished.
    pub fn pending(&self) -> usize {
        self.inner.pending()
    }

    /// Waits until every queued notification is finished or `timeout`
    /// passes; then abandons the rest, logging each one (masked). Returns
    /// how many were abandoned.
    pub async fn drain(&self, timeout: Duration) -> usize {
        // Open digest windows are sent now, so the drain delivers them.
        for digest in self.inner.digests.close_all() {
            self.queue_digest(digest);
        }
        let deadline = tokio::time::Instant::from_std(after(Instant::now(), timeout));
        while self.pending() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.pending();
        if left > 0 {
            self.inner.abandon.cancel();
            // Give workers a moment to log what they drop.
            let grace = tokio::time::Instant::now() + Duration::from_secs(2);
            while self.pending() > 0 && tokio::time::Instant::now() < grace {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        self.inner.update_depth();
        left
    }
}

impl Inner {
    /// Starts the worker of a destination's new queue.
    fn start_worker(self: &Arc<Self>, queue: u64, lane: Arc<Lane>) {
        tokio::spawn(delivery::worker(self.clone(), queue, lane));
    }

    fn warn(&self, alert: &crate::source::ObjectKey, reason: crate::api::Reason, message: String) {
        if let Some(reporter) = &self.reporter {
            reporter.alert_warning(alert, reason, message);
        }
    }
}
