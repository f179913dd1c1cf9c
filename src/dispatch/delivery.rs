//! The delivery loop: one worker per destination takes its queue's
//! notifications one at a time, in the order accepted, and delivers each
//! until it is delivered, fails for good, passes `--max-delivery-age` or
//! shutdown abandons it. Requests wait for the destination's breaker;
//! queued notifications that pass their max age meanwhile are given up
//! without waiting for their turn.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;

use crate::api::Reason;
use crate::duration::after;
use crate::mask;
use crate::mask::SecretString;
use crate::metrics::ProviderLabel;
use crate::providers::{Conversation, Request, Verdict};
use crate::routing::Delivery;
use crate::template::Rendered;

use super::Inner;
use super::breaker::Breaker;
use super::outcome::{Described, Outcome};
use super::queue::{Job, Lane};
use super::sending::HttpSender;

/// A destination's worker exits after this long without work while its
/// destination is failing: the worker holds the circuit breaker's count.
const WORKER_IDLE: Duration = Duration::from_secs(300);
/// ... and after this long when the destination is healthy: the worker then
/// holds nothing a new one would not have, and thousands of idle workers
/// (their tasks, queues and timers) were megabytes kept for nothing. A new
/// worker costs one task spawn.
pub(super) const WORKER_IDLE_HEALTHY: Duration = Duration::from_secs(2);
/// How often a busy worker with an empty queue looks again for expired
/// notifications (with a queue, it wakes exactly when the oldest expires).
const SWEEP_EVERY: Duration = Duration::from_secs(1);

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

pub(super) async fn worker(inner: Arc<Inner>, queue: u64, lane: Arc<Lane>) {
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

/// Delivers one notification and ends it; a panic on the way is caught,
/// logged (masked) and counted as a failure, and the worker goes on with
/// the next one.
async fn deliver_guarded(inner: &Inner, lane: &Lane, breaker: &mut Breaker, job: Job) {
    let delivery = AssertUnwindSafe(deliver(inner, lane, breaker, &job)).catch_unwind();
    let outcome = match delivery.await {
        Ok(outcome) => outcome,
        Err(panic) => Outcome::Panicked {
            error: panic_message(panic.as_ref(), &job.notification),
        },
    };
    inner.finish(&job.notification, outcome);
}

/// What a caught panic says, masked.
fn panic_message(panic: &(dyn std::any::Any + Send), n: &Delivery) -> String {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    let secrets = n.alert.destination.notifier.secrets();
    mask::redact(&what, &secrets)
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
                    let error = last_error.map(str::to_owned);
                    inner.finish(&job.notification, Outcome::Expired { attempts: 0, error });
                }
                drop(expired);
                inner.update_depth();
            }
        }
    }
}

/// Delivers one notification, retrying until it is delivered, fails for
/// good, grows older than `max_delivery_age`, or shutdown abandons it.
async fn deliver(inner: &Inner, lane: &Lane, breaker: &mut Breaker, job: &Job) -> Outcome {
    let n = &job.notification;
    if inner.abandon.is_cancelled() {
        return Outcome::Abandoned;
    }
    if job.expired(Instant::now()) {
        return expired(0, breaker);
    }
    let destination = &n.alert.destination;
    let notifier = &destination.notifier;
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
    if let Some(reason) = notifier.skips(n) {
        return Outcome::Skipped { reason };
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
            let error = mask::redact(&e, &secrets_of(n));
            return Outcome::Unbuildable { error };
        }
    };
    let mut attempt = 0u32;
    loop {
        if inner.abandon.is_cancelled() {
            return Outcome::Abandoned;
        }
        let now = Instant::now();
        if job.expired(now) {
            return expired(attempt, breaker);
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
                closed(inner, breaker, n);
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
                return Outcome::Delivered {
                    attempt,
                    accepted: job.accepted,
                };
            }
            Attempt::Fail(reason) => {
                // The destination answered: it is up, this notification is refused.
                closed(inner, breaker, n);
                let error = mask::redact(&reason, &secrets_of(n));
                return Outcome::Failed { attempt, error };
            }
            Attempt::Retry { reason, after } => {
                let Described {
                    alert,
                    provider,
                    event,
                    address,
                } = Described::of(n);
                let error = mask::redact(&reason, &secrets_of(n));
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
                    return Outcome::Expired {
                        attempts: attempt,
                        error: Some(error),
                    };
                }
                tracing::warn!(%alert, %provider, %event, %address, attempt, %error,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    circuit_open = breaker.is_open(), "delivery failed, will retry");
                inner
                    .metrics
                    .retries
                    .get_or_create(&ProviderLabel {
                        provider_type: destination.kind.as_str(),
                    })
                    .inc();
            }
        }
    }
}

/// A notification past its max age after `attempts` attempts, quoting
/// the destination's last failure.
fn expired(attempts: u32, breaker: &Breaker) -> Outcome {
    Outcome::Expired {
        attempts,
        error: breaker.last_error.clone(),
    }
}

/// The destination answered: its circuit closes if it was open.
fn closed(inner: &Inner, breaker: &mut Breaker, n: &Delivery) {
    if breaker.answered() {
        inner.metrics.destinations_open.dec();
        let Described {
            provider, address, ..
        } = Described::of(n);
        tracing::info!(%provider, %address, "destination answers again: circuit closed");
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
                Reason::TemplateRenderFailed,
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
        destination,
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
