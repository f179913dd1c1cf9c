//! The dispatcher: per-destination FIFO queues, retries and delivery metrics.
//!
//! The receiver hands notifications over with [`Dispatcher::try_enqueue`] and
//! never waits for a provider. Each destination (provider endpoint) has one
//! worker task delivering its notifications one at a time, in the order
//! accepted, so retries never reorder them. A semaphore bounds everything
//! accepted and not finished; when it is exhausted the receiver answers 503.

mod clients;
pub mod retry;
pub mod threads;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::mask;
use crate::mask::SecretString;
use crate::metrics::{Metrics, ProviderLabel};
use crate::providers::{Auth, Request, Response, Verdict};
use crate::report::{self, Reporter};
use crate::routing::Delivery;
use crate::template::Rendered;

use self::clients::Clients;
use self::threads::ThreadStore;

/// How much of a response body is read (Slack's replies are small).
const MAX_RESPONSE_BODY: usize = 64 * 1024;
/// A destination's worker exits after this long without work.
const WORKER_IDLE: Duration = Duration::from_secs(300);

/// Delivery settings.
#[derive(Clone, Debug)]
pub struct DispatchConfig {
    /// Notifications accepted and not finished, across all destinations.
    pub queue_capacity: usize,
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
            max_delivery_age: Duration::from_secs(15 * 60),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            thread_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// The dispatcher could not take the notifications: the queue is full.
#[derive(Debug, thiserror::Error)]
#[error("the delivery queue is full")]
pub struct QueueFull;

/// A cheap handle; clones share the queues.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    clients: Clients,
    config: DispatchConfig,
    permits: Arc<Semaphore>,
    queues: Mutex<HashMap<u64, mpsc::UnboundedSender<Job>>>,
    metrics: Arc<Metrics>,
    /// Cancelled when the shutdown deadline passes: workers log what is left.
    abandon: CancellationToken,
    threads: ThreadStore,
    reporter: Option<Arc<dyn Reporter>>,
}

struct Job {
    notification: Delivery,
    accepted: Instant,
    _permit: Option<OwnedSemaphorePermit>,
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
                queues: Mutex::new(HashMap::new()),
                metrics,
                reporter,
                abandon: CancellationToken::new(),
            }),
        }
    }

    /// Queues every notification of one event, or none of them.
    pub fn try_enqueue(&self, notifications: Vec<Delivery>) -> Result<(), QueueFull> {
        if notifications.is_empty() {
            return Ok(());
        }
        let count = u32::try_from(notifications.len()).map_err(|_| QueueFull)?;
        let mut permits = self
            .inner
            .permits
            .clone()
            .try_acquire_many_owned(count)
            .map_err(|_| QueueFull)?;
        let accepted = Instant::now();
        let mut queues = self.inner.queues.lock().unwrap_or_else(|e| e.into_inner());
        for notification in notifications {
            // `permits` holds one permit per notification, so each split succeeds.
            let permit = permits.split(1);
            let queue = notification.alert.destination.queue;
            let job = Job {
                notification,
                accepted,
                _permit: permit,
            };
            let job = match queues.get(&queue) {
                Some(tx) => match tx.send(job) {
                    Ok(()) => continue,
                    // The worker just exited idle: start a new one.
                    Err(mpsc::error::SendError(job)) => job,
                },
                None => job,
            };
            let (tx, rx) = mpsc::unbounded_channel();
            // A fresh channel with a live receiver accepts the job.
            let _ = tx.send(job);
            queues.insert(queue, tx);
            tokio::spawn(worker(self.inner.clone(), queue, rx));
        }
        self.inner.update_depth();
        Ok(())
    }

    /// Notifications accepted and not finished.
    pub fn pending(&self) -> usize {
        self.inner.pending()
    }

    /// Waits until every queued notification is finished or `timeout`
    /// passes; then abandons the rest, logging each one (masked). Returns
    /// how many were abandoned.
    pub async fn drain(&self, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
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
}

async fn worker(inner: Arc<Inner>, queue: u64, mut rx: mpsc::UnboundedReceiver<Job>) {
    loop {
        let job = tokio::select! {
            job = rx.recv() => job,
            () = tokio::time::sleep(WORKER_IDLE) => {
                let mut queues = inner.queues.lock().unwrap_or_else(|e| e.into_inner());
                if rx.is_empty() {
                    queues.remove(&queue);
                    return;
                }
                continue;
            }
        };
        let Some(job) = job else { return };
        deliver(&inner, job).await;
        inner.update_depth();
    }
}

/// Delivers one notification, retrying until it is delivered, fails for
/// good, grows older than `max_delivery_age`, or shutdown abandons it.
async fn deliver(inner: &Inner, job: Job) {
    let n = &job.notification;
    let destination = &n.alert.destination;
    let notifier = &destination.notifier;
    let provider_type = destination.kind.as_str();
    let rendered = render_or_default(inner, n);
    let thread_key = rendered
        .as_ref()
        .and_then(|r| r.thread_key.clone())
        .filter(|_| notifier.supports_threads());
    let anchored = thread_key
        .as_ref()
        .and_then(|key| inner.threads.get(destination.queue, key, Instant::now()));
    let secrets = secrets_of(n);
    let request = match notifier.request(n, rendered.as_ref(), anchored.as_ref()) {
        Ok(request) => request,
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
            return;
        }
    };
    let log_context = || {
        (
            n.alert.key.to_string(),
            destination.key.to_string(),
            n.event.object_ref(),
            notifier.masked_address(),
        )
    };
    let mut attempt = 0u32;
    loop {
        if inner.abandon.is_cancelled() {
            let (alert, provider, event, address) = log_context();
            tracing::error!(%alert, %provider, %event, %address, "shutting down: notification not delivered");
            inner.metrics.notification(provider_type, "abandoned");
            return;
        }
        attempt += 1;
        let outcome = tokio::select! {
            outcome = attempt_once(inner, n, &request) => outcome,
            () = inner.abandon.cancelled() => continue,
        };
        match outcome {
            Attempt::Delivered(response) => {
                if let Some(key) = thread_key.filter(|_| anchored.is_none())
                    && let Some(anchor) = notifier.thread_anchor(&response)
                {
                    inner
                        .threads
                        .insert(destination.queue, key, anchor, Instant::now());
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
                return;
            }
            Attempt::Fail(reason) => {
                let (alert, provider, event, address) = log_context();
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
                return;
            }
            Attempt::Retry { reason, after } => {
                let delay = after.unwrap_or_else(|| {
                    retry::backoff(
                        attempt,
                        inner.config.initial_backoff,
                        inner.config.max_backoff,
                    )
                });
                let (alert, provider, event, address) = log_context();
                let error = mask::redact(&reason, &secrets);
                if job.accepted.elapsed() + delay > inner.config.max_delivery_age {
                    tracing::error!(%alert, %provider, %event, %address, attempt, %error,
                        "notification failed, giving up: older than --max-delivery-age");
                    inner.metrics.notification(provider_type, "expired");
                    inner.warn(&n.alert.key, report::DISPATCH_FAILED, format!(
                        "event {event}: delivery to provider {provider} ({address}) failed after {attempt} attempts: {error}"
                    ));
                    return;
                }
                tracing::warn!(%alert, %provider, %event, %address, attempt, %error,
                    retry_in_ms = delay.as_millis() as u64, "delivery failed, will retry");
                inner
                    .metrics
                    .retries
                    .get_or_create(&ProviderLabel {
                        provider_type: provider_type.clone(),
                    })
                    .inc();
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = inner.abandon.cancelled() => {}
                }
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

async fn attempt_once(inner: &Inner, n: &Delivery, request: &Request) -> Attempt {
    let destination = &n.alert.destination;
    let client = match inner.clients.get(&destination.transport) {
        Ok(client) => client,
        Err(why) => return Attempt::Fail(format!("cannot set up the HTTP client: {why}")),
    };
    let headers = match request_headers(request, &destination.notifier.settings().headers) {
        Ok(headers) => headers,
        Err(why) => return Attempt::Fail(why),
    };
    let sent = client
        .request(request.method.clone(), request.url.expose())
        .timeout(destination.timeout)
        .headers(headers)
        .body(request.body.bytes.clone())
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(e) if e.is_builder() => return Attempt::Fail(e.without_url().to_string()),
        Err(e) => {
            return Attempt::Retry {
                reason: describe(e),
                after: None,
            };
        }
    };
    let status = response.status();
    let headers = response.headers().clone();
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry::parse_retry_after(v, SystemTime::now()));
    let body = read_limited(response).await;
    let verdict = destination.notifier.judge(&Response {
        status,
        headers: &headers,
        body: &body,
    });
    match verdict {
        Verdict::Delivered => Attempt::Delivered(body),
        Verdict::Retry { reason, after } => Attempt::Retry {
            reason,
            after: after.or(retry_after),
        },
        Verdict::Fail(reason) => Attempt::Fail(reason),
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
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(request.body.content_type),
    );
    for (name, value) in &request.headers {
        headers.append(name.clone(), value.clone());
    }
    let authorization = match &request.auth {
        Auth::None => None,
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
    for (name, value) in extra {
        let mut value = HeaderValue::from_str(value.expose())
            .map_err(|_| format!("the value of header {name} is not valid"))?;
        value.set_sensitive(true);
        headers.insert(name.clone(), value);
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
