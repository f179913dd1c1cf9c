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

mod clients;
mod digest;
pub mod retry;
#[cfg(test)]
mod tests;
pub mod threads;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::duration::after;
use crate::mask;
use crate::mask::SecretString;
use crate::metrics::{Metrics, ProviderLabel};
use crate::providers::{Auth, Conversation, Reply, Request, SendError, Sender, Verdict};
use crate::report::{self, Reporter};
use crate::routing::{Delivery, DigestPolicy};
use crate::spool::Spool;
use crate::template::Rendered;

use self::clients::Clients;
use self::digest::{Digests, Offer};
use self::threads::ThreadStore;

/// How much of a response body is read (Slack's replies are small).
const MAX_RESPONSE_BODY: usize = 64 * 1024;
/// A destination's worker exits after this long without work while its
/// destination is failing: the worker holds the circuit breaker's count.
const WORKER_IDLE: Duration = Duration::from_secs(300);
/// ... and after this long when the destination is healthy: the worker then
/// holds nothing a new one would not have, and thousands of idle workers
/// (their tasks, queues and timers) were megabytes kept for nothing. A new
/// worker costs one task spawn.
const WORKER_IDLE_HEALTHY: Duration = Duration::from_secs(2);
/// Consecutive failed attempts after which a destination's circuit opens.
pub const BREAKER_THRESHOLD: u32 = 5;
/// Longest interval between two probes of a destination whose circuit is open.
pub const PROBE_MAX: Duration = Duration::from_secs(30);
/// How often a busy worker with an empty queue looks again for expired
/// notifications (with a queue, it wakes exactly when the oldest expires).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

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

/// Why a notification was given up for a bound, before any attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GivenUp {
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

/// What to do with a notification whose destination's own queue is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LaneFull {
    /// Give it up at once (logged, counted, Warning Event): a new event's.
    GiveUp,
    /// Hand it back to be tried again: one read back from the spool.
    HandBack,
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

/// One destination's queue, served by one worker.
struct Lane {
    /// Waiting notifications, oldest first (so also soonest to expire).
    jobs: Mutex<VecDeque<Job>>,
    /// This destination's share: accepted and not finished.
    permits: Arc<Semaphore>,
    /// Wakes the worker when a notification is queued.
    wake: Notify,
}

impl Lane {
    fn new(capacity: usize) -> Self {
        Self {
            jobs: Mutex::new(VecDeque::new()),
            permits: Arc::new(Semaphore::new(capacity.clamp(1, Semaphore::MAX_PERMITS))),
            wake: Notify::new(),
        }
    }

    fn jobs(&self) -> MutexGuard<'_, VecDeque<Job>> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, job: Job) {
        self.jobs().push_back(job);
        self.wake.notify_one();
    }

    fn pop(&self) -> Option<Job> {
        let mut jobs = self.jobs();
        let job = jobs.pop_front();
        // Most destinations hold one notification at a time: give an
        // emptied buffer back rather than keep it for each of thousands
        // of idle destinations.
        if jobs.is_empty() && jobs.capacity() > 0 {
            *jobs = VecDeque::new();
        }
        job
    }

    fn is_empty(&self) -> bool {
        self.jobs().is_empty()
    }

    /// When the oldest queued notification passes its max age.
    fn next_expiry(&self) -> Option<Instant> {
        self.jobs().front().map(|job| job.deadline)
    }

    /// Takes the queued notifications past their max age. They were queued
    /// in the order accepted, so they are the front of the queue.
    fn take_expired(&self, now: Instant) -> Vec<Job> {
        let mut jobs = self.jobs();
        let mut expired = Vec::new();
        while jobs.front().is_some_and(|job| job.expired(now)) {
            expired.extend(jobs.pop_front());
        }
        expired
    }
}

struct Job {
    notification: Delivery,
    accepted: Instant,
    /// `accepted` + `--max-delivery-age`.
    deadline: Instant,
    _permit: Option<OwnedSemaphorePermit>,
    _lane_permit: OwnedSemaphorePermit,
}

impl Job {
    fn expired(&self, now: Instant) -> bool {
        now >= self.deadline
    }

    fn remaining(&self, now: Instant) -> Duration {
        self.deadline.saturating_duration_since(now)
    }
}

/// A destination's health, kept by its worker: consecutive failures and
/// when the next request may go.
#[derive(Debug, Default)]
struct Breaker {
    /// Failed attempts in a row, across notifications.
    failures: u32,
    /// No request before this (backoff, `Retry-After` or probe interval).
    next_attempt: Option<Instant>,
    /// The last failure (masked), quoted when queued notifications expire.
    last_error: Option<String>,
}

impl Breaker {
    fn is_open(&self) -> bool {
        self.failures >= BREAKER_THRESHOLD
    }

    /// No failure since the last answer, and no wait pending.
    fn is_healthy(&self) -> bool {
        self.failures == 0 && self.next_attempt.is_none()
    }

    /// When the next request may go, if that is later than `now`.
    fn wait_until(&self, now: Instant) -> Option<Instant> {
        self.next_attempt.filter(|at| *at > now)
    }

    /// The destination answered; returns whether the circuit was open.
    fn answered(&mut self) -> bool {
        let was_open = self.is_open();
        *self = Self::default();
        was_open
    }

    /// A retryable failure of a notification's `attempt`-th attempt, with
    /// `remaining` before its max age: the delay before the destination's
    /// next request. `Retry-After` is obeyed up to `remaining`; with the
    /// circuit open, requests are at least a probe interval apart.
    fn failed(
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
    fn just_opened(&self) -> bool {
        self.failures == BREAKER_THRESHOLD
    }
}

/// How one delivery attempt ended.
enum Attempt {
    /// Delivered; the response body.
    Delivered(Vec<u8>),
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    Fail(String),
}

/// How a notification is named in logs and Events: Alert, Provider, event
/// and the masked address.
struct Described {
    alert: String,
    provider: String,
    event: String,
    address: String,
}

fn describe_notification(n: &Delivery) -> Described {
    let destination = &n.alert.destination;
    Described {
        alert: n.alert.key.to_string(),
        provider: destination.key.to_string(),
        event: n.event.object_ref(),
        address: destination.notifier.masked_address(),
    }
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
        self.inner.give_up(n, GivenUp::WaitedTooLong);
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

    fn enqueue(
        &self,
        notifications: Vec<Delivery>,
        accepted: Instant,
        lane_full: LaneFull,
    ) -> Result<Enqueued, Vec<Delivery>> {
        if notifications.is_empty() {
            return Ok(Enqueued::default());
        }
        let inner = &self.inner;
        // Nothing is held for a digest when the event will be refused.
        if inner.permits.available_permits() < notifications.len()
            && !self.make_room(&notifications)
        {
            return Err(notifications);
        }
        let (notifications, held) = self.hold_for_digests(notifications);
        if notifications.is_empty() {
            return Ok(Enqueued {
                held,
                ..Enqueued::default()
            });
        }
        let mut lanes = inner.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let mut created = Vec::new();
        let mut queued = Vec::with_capacity(notifications.len());
        let mut refused = Vec::new();
        for notification in notifications {
            let queue = notification.alert.destination.queue;
            let lane = lanes
                .entry(queue)
                .or_insert_with(|| {
                    created.push(queue);
                    Arc::new(Lane::new(inner.config.destination_queue_capacity))
                })
                .clone();
            match lane.permits.clone().try_acquire_owned() {
                Ok(permit) => queued.push((notification, lane, permit)),
                Err(_) => refused.push(notification),
            }
        }
        if lane_full == LaneFull::HandBack && !refused.is_empty() {
            for queue in created {
                lanes.remove(&queue);
            }
            let back = queued.into_iter().map(|(n, _, _)| n).chain(refused);
            return Err(back.collect());
        }
        let global = match u32::try_from(queued.len()) {
            Ok(0) => None,
            Ok(count) => inner.permits.clone().try_acquire_many_owned(count).ok(),
            Err(_) => None,
        };
        if global.is_none() && !queued.is_empty() {
            for queue in created {
                lanes.remove(&queue);
            }
            let back = queued.into_iter().map(|(n, _, _)| n).chain(refused);
            return Err(back.collect());
        }
        let mut global = global;
        let deadline = after(accepted, inner.config.max_delivery_age);
        let enqueued = Enqueued {
            queued: queued.len(),
            refused: refused.len(),
            held,
        };
        for (notification, lane, lane_permit) in queued {
            // `global` holds one permit per queued notification.
            let permit = global.as_mut().and_then(|p| p.split(1));
            lane.push(Job {
                notification,
                accepted,
                deadline,
                _permit: permit,
                _lane_permit: lane_permit,
            });
        }
        for queue in created {
            let Some(lane) = lanes.get(&queue).cloned() else {
                continue;
            };
            if lane.is_empty() {
                lanes.remove(&queue);
            } else {
                tokio::spawn(worker(inner.clone(), queue, lane));
            }
        }
        drop(lanes);
        for notification in refused {
            inner.refuse(&notification);
        }
        inner.update_depth();
        Ok(enqueued)
    }

    /// Shares the global bound fairly (DESIGN §3.9): when it cannot take
    /// `notifications`, the destination holding the most gives up its
    /// oldest queued notification, one at a time, as long as it holds more
    /// than the destinations asking — so a dead destination that filled
    /// the bound makes room for a healthy one instead of getting its events
    /// refused. Whether there is room now.
    fn make_room(&self, notifications: &[Delivery]) -> bool {
        let inner = &self.inner;
        let wanted = notifications.len();
        let asking: Vec<u64> = notifications
            .iter()
            .map(|n| n.alert.destination.queue)
            .collect();
        let mut evicted = Vec::new();
        {
            let lanes = inner.lanes.lock().unwrap_or_else(|e| e.into_inner());
            let held = |queue: &u64| lanes.get(queue).map_or(0, |lane| lane.jobs().len());
            // After taking its places, the longest asking queue holds this many.
            let asking_holds = asking.iter().map(held).max().unwrap_or(0) + wanted;
            let short = wanted.saturating_sub(inner.permits.available_permits());
            for _ in 0..short {
                let longest = lanes
                    .iter()
                    .filter(|(queue, _)| !asking.contains(queue))
                    .map(|(_, lane)| (lane.jobs().len(), lane))
                    .max_by_key(|(held, _)| *held);
                match longest {
                    Some((held, lane)) if held > asking_holds => {
                        evicted.extend(lane.jobs().pop_front());
                    }
                    _ => break,
                }
            }
        }
        for job in evicted {
            // Dropping the job frees its places.
            inner.give_up(&job.notification, GivenUp::Evicted);
        }
        inner.update_depth();
        inner.permits.available_permits() >= wanted
    }

    /// Passes each notification through its Alert's digest window: those
    /// to send now, and how many were held. A window opened here gets its
    /// timer.
    fn hold_for_digests(&self, notifications: Vec<Delivery>) -> (Vec<Delivery>, usize) {
        let inner = &self.inner;
        let mut send = Vec::with_capacity(notifications.len());
        let mut held = 0;
        for notification in notifications {
            let kind = notification
                .alert
                .digest
                .is_some()
                .then(|| notification.alert.destination.kind.as_str());
            match inner.digests.offer(notification) {
                Offer::Send { delivery, opened } => {
                    if let Some(policy) = opened {
                        tokio::spawn(
                            self.clone()
                                .digest_rounds(delivery.alert.key.clone(), policy),
                        );
                    }
                    send.push(delivery);
                }
                Offer::Held => {
                    held += 1;
                    inner
                        .metrics
                        .notification(kind.unwrap_or_default(), "held_for_digest");
                }
            }
        }
        (send, held)
    }

    /// An Alert's digest windows, one after another while they hold
    /// something; each digest is queued when its window ends (its max age
    /// counts from then).
    async fn digest_rounds(self, alert: crate::source::ObjectKey, policy: DigestPolicy) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(policy.window) => {}
                () = self.inner.abandon.cancelled() => return,
            }
            let Some(digest) = self.inner.digests.close(&alert) else {
                return;
            };
            self.queue_digest(digest);
        }
    }

    /// Queues a digest whose window ended. When the global bound has no
    /// room for it (and its destination holds the most, so nothing makes
    /// room), it stays held — its notifications still spooled — and is
    /// queued as soon as there is room; it is given up only past
    /// `--max-delivery-age`, naming the bound that was full.
    fn queue_digest(&self, digest: Delivery) {
        tracing::debug!(alert = %digest.alert.key, notifications = digest.digest.as_ref().map_or(0, |d| d.total),
            "digest window ended: sending its digest");
        let accepted = Instant::now();
        if let Err(back) = self.try_enqueue_accepted(vec![digest], accepted) {
            tokio::spawn(self.clone().queue_when_room(back, accepted));
        }
    }

    async fn queue_when_room(self, mut waiting: Vec<Delivery>, accepted: Instant) {
        let deadline = after(accepted, self.inner.config.max_delivery_age);
        loop {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
                () = self.inner.abandon.cancelled() => {
                    waiting.iter().for_each(|d| self.inner.abandoned(d));
                    return;
                }
            }
            match self.try_enqueue_accepted(waiting, accepted) {
                Ok(_) => return,
                Err(back) if Instant::now() >= deadline => {
                    for digest in &back {
                        self.inner.give_up(digest, GivenUp::GlobalFullTooLong);
                    }
                    return;
                }
                Err(back) => waiting = back,
            }
        }
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
    fn warn(&self, alert: &crate::source::ObjectKey, reason: &'static str, message: String) {
        if let Some(reporter) = &self.reporter {
            reporter.alert_warning(alert, reason, message);
        }
    }

    fn pending(&self) -> usize {
        let capacity = self.config.queue_capacity.min(Semaphore::MAX_PERMITS);
        capacity.saturating_sub(self.permits.available_permits())
    }

    fn update_depth(&self) {
        self.metrics
            .queue_depth
            .set(i64::try_from(self.pending()).unwrap_or(i64::MAX));
    }

    /// Forgets a finished notification's spool record.
    fn unspool(&self, n: &Delivery) {
        if let Some(spool) = &self.spool {
            n.spooled.iter().for_each(|id| spool.remove(*id));
        }
    }

    /// Gives up a notification whose destination's queue is full.
    fn refuse(&self, n: &Delivery) {
        self.give_up(n, GivenUp::DestinationFull);
    }

    /// Gives up a notification before it was delivered or tried, for a
    /// bound: unspooled, one log line naming the bound that was hit, the
    /// metric, and a Warning Event on its Alert.
    fn give_up(&self, n: &Delivery, why: GivenUp) {
        self.unspool(n);
        let Described {
            alert,
            provider,
            event,
            address,
        } = describe_notification(n);
        let bound = why.bound(&self.config);
        tracing::error!(%alert, %provider, %event, %address, reason = why.reason(), bound,
            "notification not delivered: given up");
        self.metrics
            .notification(n.alert.destination.kind.as_str(), why.result());
        self.warn(
            &n.alert.key,
            report::DISPATCH_FAILED,
            format!(
                "event {event}: not delivered to provider {provider} ({address}): {} (bound: {bound} notifications)",
                why.reason()
            ),
        );
    }

    /// Gives up a notification past its max age after `attempts` attempts.
    fn expire(&self, job: &Job, attempts: u32, error: Option<&str>) {
        let n = &job.notification;
        let Described {
            alert,
            provider,
            event,
            address,
        } = describe_notification(n);
        let error = match error {
            Some(error) => error.to_owned(),
            None if attempts == 0 => {
                "no attempt: it waited behind earlier notifications of a failing destination"
                    .to_owned()
            }
            None => "no answer in time".to_owned(),
        };
        tracing::error!(%alert, %provider, %event, %address, attempt = attempts, %error,
            "notification failed, giving up: older than --max-delivery-age");
        self.metrics
            .notification(n.alert.destination.kind.as_str(), "expired");
        self.warn(
            &n.alert.key,
            report::DISPATCH_FAILED,
            format!(
                "event {event}: delivery to provider {provider} ({address}) given up after {attempts} attempts \
                 (--max-delivery-age {:?}): {error}",
                self.config.max_delivery_age
            ),
        );
    }

    fn abandoned(&self, n: &Delivery) {
        let Described {
            alert,
            provider,
            event,
            address,
        } = describe_notification(n);
        tracing::error!(%alert, %provider, %event, %address, "shutting down: notification not delivered");
        self.metrics
            .notification(n.alert.destination.kind.as_str(), "abandoned");
    }
}

async fn worker(inner: Arc<Inner>, queue: u64, lane: Arc<Lane>) {
    let mut breaker = Breaker::default();
    loop {
        if let Some(job) = lane.pop() {
            // Boxed: the delivery's state (request, response, timers) is
            // kilobytes, and a worker idles up to WORKER_IDLE between
            // notifications; unboxed, every idle worker's task would keep
            // room for it.
            Box::pin(deliver_guarded(&inner, &lane, &mut breaker, job)).await;
            inner.update_depth();
            continue;
        }
        let idle = if breaker.is_healthy() {
            WORKER_IDLE_HEALTHY
        } else {
            WORKER_IDLE
        };
        tokio::select! {
            () = lane.wake.notified() => {}
            () = tokio::time::sleep(idle) => {
                let mut lanes = inner.lanes.lock().unwrap_or_else(|e| e.into_inner());
                if lane.is_empty() {
                    if lanes.get(&queue).is_some_and(|l| Arc::ptr_eq(l, &lane)) {
                        lanes.remove(&queue);
                    }
                    if breaker.is_open() {
                        inner.metrics.destinations_open.dec();
                    }
                    return;
                }
            }
        }
    }
}

/// How a delivery ended: finished (delivered, failed, skipped or given
/// up: its spool record goes), or abandoned at shutdown (its record stays,
/// to be delivered after the restart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    Finished,
    Abandoned,
}

/// Delivers one notification; a panic on the way is caught, logged (masked)
/// and counted as a failure, and the worker goes on with the next one.
async fn deliver_guarded(inner: &Inner, lane: &Lane, breaker: &mut Breaker, job: Job) {
    let delivery = AssertUnwindSafe(deliver(inner, lane, breaker, &job)).catch_unwind();
    let outcome = delivery.await;
    if !matches!(outcome, Ok(Ended::Abandoned)) {
        inner.unspool(&job.notification);
    }
    let Err(panic) = outcome else {
        return;
    };
    let n = &job.notification;
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    let secrets = n.alert.destination.notifier.secrets();
    let error = mask::redact(&what, &secrets);
    let Described {
        alert,
        provider,
        event,
        address,
    } = describe_notification(n);
    tracing::error!(%alert, %provider, %event, %address, %error,
        "internal error while delivering: notification not delivered");
    inner
        .metrics
        .notification(n.alert.destination.kind.as_str(), "failed");
    inner.warn(
        &n.alert.key,
        report::DISPATCH_FAILED,
        format!(
            "event {event}: delivery to provider {provider} ({address}) failed on an internal error: {error}"
        ),
    );
}

/// Runs `work` (a request or a pause) while giving up the queued
/// notifications that pass their max age meanwhile: none waits for its
/// turn behind a request that will not be answered in time.
async fn sweeping<T>(
    inner: &Inner,
    lane: &Lane,
    last_error: Option<&str>,
    work: impl Future<Output = T>,
) -> T {
    let mut work = std::pin::pin!(work);
    loop {
        let wake = lane
            .next_expiry()
            .unwrap_or_else(|| after(Instant::now(), SWEEP_EVERY));
        tokio::select! {
            biased;
            out = &mut work => return out,
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                let expired = lane.take_expired(Instant::now());
                for job in &expired {
                    inner.expire(job, 0, last_error);
                    inner.unspool(&job.notification);
                }
                drop(expired);
                inner.update_depth();
            }
        }
    }
}

/// Delivers one notification, retrying until it is delivered, fails for
/// good, grows older than `max_delivery_age`, or shutdown abandons it.
async fn deliver(inner: &Inner, lane: &Lane, breaker: &mut Breaker, job: &Job) -> Ended {
    let n = &job.notification;
    if inner.abandon.is_cancelled() {
        inner.abandoned(n);
        return Ended::Abandoned;
    }
    if job.expired(Instant::now()) {
        inner.expire(job, 0, breaker.last_error.as_deref());
        return Ended::Finished;
    }
    let destination = &n.alert.destination;
    let notifier = &destination.notifier;
    let provider_type = destination.kind.as_str();
    let rendered = render_or_default(inner, n);
    // Threads are per destination, channel and key (DESIGN §3.11).
    let thread = rendered
        .as_ref()
        .and_then(|r| r.thread_key.clone())
        .filter(|_| notifier.supports_threads())
        .map(|key| (n.route.channel().unwrap_or_default().to_owned(), key));
    let anchored = thread
        .as_ref()
        .and_then(|(channel, key)| inner.threads.get(destination.queue, channel, key));
    let secrets = secrets_of(n);
    if let Some(reason) = notifier.skips(n) {
        tracing::debug!(alert = %n.alert.key, provider = %destination.key, event = %n.event.object_ref(),
            reason, "skipped: the provider sends nothing for this event");
        inner.metrics.notification(provider_type, "skipped");
        return Ended::Finished;
    }
    let built = match notifier.conversation() {
        Some(conversation) => Ok(Plan::Conversation(conversation)),
        None => notifier
            .request(n, rendered.as_ref(), anchored.as_ref())
            .and_then(|request| {
                Ok(Plan::Requests {
                    request: Box::new(request),
                    follow_up: notifier.follow_up(n, rendered.as_ref())?.map(Box::new),
                })
            }),
    };
    let mut plan = match built {
        Ok(plan) => plan,
        Err(e) => {
            let error = mask::redact(&e, &secrets);
            tracing::error!(alert = %n.alert.key, provider = %destination.key, event = %n.event.object_ref(),
                %error, "cannot build the request: notification not delivered");
            inner.metrics.notification(provider_type, "failed");
            inner.warn(
                &n.alert.key,
                report::DISPATCH_FAILED,
                format!(
                    "event {}: cannot build the request for provider {}: {error}",
                    n.event.object_ref(),
                    destination.key
                ),
            );
            return Ended::Finished;
        }
    };
    let mut attempt = 0u32;
    loop {
        if inner.abandon.is_cancelled() {
            inner.abandoned(n);
            return Ended::Abandoned;
        }
        let now = Instant::now();
        if job.expired(now) {
            inner.expire(job, attempt, breaker.last_error.as_deref());
            return Ended::Finished;
        }
        // The destination asked for a pause, or its circuit is open: wait
        // for the next request slot, or until this notification expires.
        if let Some(at) = breaker.wait_until(now) {
            let until = tokio::time::Instant::from_std(at.min(job.deadline));
            let pause = async {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => {}
                    () = inner.abandon.cancelled() => {}
                }
            };
            sweeping(inner, lane, breaker.last_error.as_deref(), pause).await;
            continue;
        }
        attempt = attempt.saturating_add(1);
        let sending = async {
            tokio::select! {
                outcome = attempt_once(inner, n, &plan, rendered.as_ref()) => Some(outcome),
                () = inner.abandon.cancelled() => None,
            }
        };
        let Some(outcome) = sweeping(inner, lane, breaker.last_error.as_deref(), sending).await
        else {
            continue;
        };
        match outcome {
            Attempt::Delivered(response) => {
                if breaker.answered() {
                    inner.metrics.destinations_open.dec();
                    let Described {
                        provider, address, ..
                    } = describe_notification(n);
                    tracing::info!(%provider, %address, "destination answers again: circuit closed");
                }
                if let Plan::Requests { request, follow_up } = &mut plan
                    && let Some(next) = follow_up.take()
                {
                    tracing::debug!(alert = %n.alert.key, event = %n.event.object_ref(), attempt, "first request delivered, sending the second");
                    *request = next;
                    attempt = 0;
                    continue;
                }
                if let Some((channel, key)) = thread.filter(|_| anchored.is_none())
                    && let Some(anchor) = notifier.thread_anchor(&response)
                {
                    inner
                        .threads
                        .insert(destination.queue, &channel, key, anchor);
                }
                inner
                    .metrics
                    .delivery_latency
                    .get_or_create(&ProviderLabel {
                        provider_type: provider_type.clone(),
                    })
                    .observe(job.accepted.elapsed().as_secs_f64());
                inner.metrics.notification(provider_type, "delivered");
                tracing::debug!(alert = %n.alert.key, event = %n.event.object_ref(), attempt, "delivered");
                return Ended::Finished;
            }
            Attempt::Fail(reason) => {
                let Described {
                    alert,
                    provider,
                    event,
                    address,
                } = describe_notification(n);
                // The destination answered: it is up, this notification is refused.
                if breaker.answered() {
                    inner.metrics.destinations_open.dec();
                    tracing::info!(%provider, %address, "destination answers again: circuit closed");
                }
                let error = mask::redact(&reason, &secrets);
                tracing::error!(%alert, %provider, %event, %address, attempt, %error, "notification failed, not retrying");
                inner.metrics.notification(provider_type, "failed");
                inner.warn(
                    &n.alert.key,
                    report::DISPATCH_FAILED,
                    format!(
                        "event {event}: delivery to provider {provider} ({address}) failed: {error}"
                    ),
                );
                return Ended::Finished;
            }
            Attempt::Retry { reason, after } => {
                let Described {
                    alert,
                    provider,
                    event,
                    address,
                } = describe_notification(n);
                let error = mask::redact(&reason, &secrets);
                let now = Instant::now();
                let remaining = job.remaining(now);
                let delay =
                    breaker.failed(now, attempt, after, remaining, &inner.config, error.clone());
                if breaker.just_opened() {
                    inner.metrics.destinations_open.inc();
                    tracing::warn!(%provider, %address, failures = breaker.failures, %error,
                        "destination keeps failing: circuit open, probing it with one request at a time");
                }
                if delay >= remaining {
                    // The next attempt would come after the max age.
                    inner.expire(job, attempt, Some(&error));
                    return Ended::Finished;
                }
                tracing::warn!(%alert, %provider, %event, %address, attempt, %error,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    circuit_open = breaker.is_open(), "delivery failed, will retry");
                inner
                    .metrics
                    .retries
                    .get_or_create(&ProviderLabel {
                        provider_type: provider_type.clone(),
                    })
                    .inc();
            }
        }
    }
}

/// The Alert's rendered template, or `None` (the default format) when it
/// has none or rendering failed: a template bug never loses a notification.
fn render_or_default(inner: &Inner, n: &Delivery) -> Option<Rendered> {
    match n.render() {
        Ok(rendered) => rendered,
        Err(error) => {
            tracing::warn!(alert = %n.alert.key, event = %n.event.object_ref(), %error,
                "template render failed: sending the default format");
            inner.metrics.template_failures.inc();
            inner.warn(
                &n.alert.key,
                report::TEMPLATE_RENDER_FAILED,
                format!(
                    "event {}: {error}; the default format was sent",
                    n.event.object_ref()
                ),
            );
            None
        }
    }
}

/// Everything of a destination that must never be printed: the provider's
/// secrets and its transport's (proxy credentials, private key).
fn secrets_of(n: &Delivery) -> Vec<&SecretString> {
    let destination = &n.alert.destination;
    let mut secrets = destination.notifier.secrets();
    secrets.extend(destination.transport.secrets());
    secrets
}

/// How a notification is delivered: one request (and Flux's second one
/// for some providers), or the provider's own [`Conversation`].
enum Plan<'a> {
    Requests {
        request: Box<Request>,
        follow_up: Option<Box<Request>>,
    },
    Conversation(&'a dyn Conversation),
}

/// One attempt at the plan's current step.
async fn attempt_once(
    inner: &Inner,
    n: &Delivery,
    plan: &Plan<'_>,
    rendered: Option<&Rendered>,
) -> Attempt {
    let destination = &n.alert.destination;
    let client = match inner.clients.get(&destination.transport) {
        Ok(client) => client,
        Err(why) => return Attempt::Fail(format!("cannot set up the HTTP client: {why}")),
    };
    let sender = HttpSender {
        client: &client,
        timeout: destination.timeout,
        extra_headers: &destination.notifier.settings().headers,
    };
    match plan {
        Plan::Requests { request, .. } => match sender.send_now(request).await {
            Ok(reply) => {
                let verdict = destination.notifier.judge(&reply.response());
                Attempt::judged(verdict, reply.body, reply.retry_after)
            }
            Err(e) => Attempt::judged(e.into(), Vec::new(), None),
        },
        Plan::Conversation(conversation) => {
            let verdict = conversation.deliver(n, rendered, &sender).await;
            Attempt::judged(verdict, Vec::new(), None)
        }
    }
}

impl Attempt {
    /// The attempt a verdict makes; a service's own delay wins over its
    /// `Retry-After` header.
    fn judged(verdict: Verdict, body: Vec<u8>, retry_after: Option<Duration>) -> Self {
        match verdict {
            Verdict::Delivered => Attempt::Delivered(body),
            Verdict::Retry { reason, after } => Attempt::Retry {
                reason,
                after: after.or(retry_after),
            },
            Verdict::Fail(reason) => Attempt::Fail(reason),
        }
    }
}

/// Sends requests over one destination's client, for single requests and
/// conversations alike.
struct HttpSender<'a> {
    client: &'a reqwest::Client,
    timeout: Duration,
    extra_headers: &'a [(reqwest::header::HeaderName, SecretString)],
}

impl HttpSender<'_> {
    async fn send_now(&self, request: &Request) -> Result<Reply, SendError> {
        let headers = request_headers(request, self.extra_headers).map_err(SendError::Invalid)?;
        let sent = self
            .client
            .request(request.method.clone(), request.url.expose())
            .timeout(self.timeout)
            .headers(headers)
            .body(request.body.bytes.clone())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) if e.is_builder() => {
                return Err(SendError::Invalid(e.without_url().to_string()));
            }
            Err(e) => return Err(SendError::Transport(describe(e))),
        };
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry::parse_retry_after(v, SystemTime::now()));
        let body = read_limited(response).await;
        Ok(Reply {
            status,
            headers,
            body,
            retry_after,
        })
    }
}

impl Sender for HttpSender<'_> {
    fn send<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Result<Reply, SendError>> {
        Box::pin(self.send_now(request))
    }
}

/// The headers of a request: its body's Content-Type, the provider's
/// headers, its auth, then the Secret's `headers` (which win, as in Flux).
/// Credentials are marked sensitive.
fn request_headers(
    request: &Request,
    extra: &[(reqwest::header::HeaderName, SecretString)],
) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    // A read without a body (a forge's GET) has no content type.
    if !request.body.content_type.is_empty() {
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(request.body.content_type),
        );
    }
    for (name, value) in &request.headers {
        headers.append(name.clone(), value.clone());
    }
    let authorization = match &request.auth {
        Auth::None | Auth::Header(..) => None,
        Auth::Bearer(token) => Some(format!("Bearer {}", token.expose())),
        Auth::Basic { username, password } => {
            use base64::Engine;
            let pair = format!("{username}:{}", password.expose());
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ))
        }
    };
    if let Some(authorization) = authorization {
        let mut value = HeaderValue::from_str(&authorization)
            .map_err(|_| "the credentials are not a valid Authorization header".to_owned())?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    if let Auth::Header(name, credential) = &request.auth {
        let mut value = HeaderValue::from_str(credential.expose())
            .map_err(|_| format!("the credentials are not a valid {name} header"))?;
        value.set_sensitive(true);
        headers.insert(name.clone(), value);
    }
    for (name, value) in extra {
        let mut value = HeaderValue::from_str(value.expose())
            .map_err(|_| format!("the value of header {name} is not valid"))?;
        value.set_sensitive(true);
        headers.insert(name.clone(), value);
    }
    for (name, value) in &request.final_headers {
        headers.insert(name.clone(), value.clone());
    }
    Ok(headers)
}

/// A transport error with its causes, without the URL reqwest would quote.
fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads at most [`MAX_RESPONSE_BODY`] bytes of a response: a hostile or
/// broken endpoint cannot make herald buffer an endless body.
async fn read_limited(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_RESPONSE_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_RESPONSE_BODY {
            break;
        }
    }
    body
}
