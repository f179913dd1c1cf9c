//! The event endpoint (DESIGN §3.7): where Flux's controllers POST events.
//!
//! Every request is treated as hostile: the body is capped at 3 MiB and must
//! arrive within a deadline, JSON nesting is bounded by the parser, and
//! nothing a client sends can panic the process. The handler routes the
//! event and hands notifications to the dispatcher; it never waits for a
//! provider.

pub mod budget;
pub mod dedup;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use self::budget::{BodyBudget, Reservation};
use self::dedup::{Admission, Dedup};
use std::collections::BTreeMap;

use futures::future::BoxFuture;

use crate::api::{FluxEvent, InvolvedObject};
use crate::dispatch::Dispatcher;
use crate::metrics::Metrics;
use crate::report::Reporter;
use crate::routing::RoutingTable;
use crate::routing::{Delivery, Labels, notifications_for};
use crate::spool::{Record, Spool, SpoolError};

/// Largest accepted event body.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// What the event endpoint needs.
pub struct Receiver {
    pub table: Arc<ArcSwap<RoutingTable>>,
    pub dispatcher: Dispatcher,
    pub dedup: Dedup,
    pub metrics: Arc<Metrics>,
    /// Deadline for reading a whole request body.
    pub body_timeout: Duration,
    /// Bytes of request bodies that may be held at once.
    pub body_budget: BodyBudget,
    /// Cleared at shutdown: later events are answered 503 so senders retry
    /// against another replica.
    pub accepting: AtomicBool,
    /// Reads involved objects' labels for `matchLabels` (controller mode);
    /// without it, labels come from the snapshot.
    pub labels: Option<Arc<dyn LabelResolver>>,
    /// Where `matchLabels` lookup failures are recorded.
    pub reporter: Option<Arc<dyn Reporter>>,
    /// Where accepted notifications are written before the 202 (`--spool-dir`).
    pub spool: Option<Arc<Spool>>,
}

/// Reads the labels of the object an event is about.
pub trait LabelResolver: Send + Sync {
    fn labels<'a>(
        &'a self,
        object: &'a InvolvedObject,
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, String>>;
}

/// How long an event waits for its object's labels before Alerts with
/// `matchLabels` are skipped for it.
const LABEL_TIMEOUT: Duration = Duration::from_secs(5);

/// The router: every path, every method (non-POST answered 405).
pub fn router(receiver: Arc<Receiver>) -> Router {
    Router::new().fallback(handle).with_state(receiver)
}

async fn handle(
    State(receiver): State<Arc<Receiver>>,
    method: Method,
    request: axum::extract::Request,
) -> Response {
    if method != Method::POST {
        receiver.metrics.event("method_not_allowed");
        let mut response =
            (StatusCode::METHOD_NOT_ALLOWED, "only POST is accepted\n").into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let mut reservation = receiver.body_budget.reservation();
    let read = read_body(request.into_body(), &mut reservation, receiver.body_timeout);
    let body = match read.await {
        Ok(body) => body,
        Err(Refusal::OverBudget) => {
            receiver.metrics.event("over_budget");
            return unavailable("too many event bodies are being read at once\n");
        }
        Err(refusal) => {
            let (label, status, message) = refusal.describe();
            receiver.metrics.event(label);
            return (status, message).into_response();
        }
    };
    let parsed = FluxEvent::from_json(&body);
    // The parsed event is small; the body's bytes are released now.
    drop(body);
    drop(reservation);
    let event = match parsed {
        Ok(event) => event,
        Err(e) => {
            receiver.metrics.event("invalid");
            tracing::debug!(error = %e, "event refused");
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };
    receiver.accept(event).await
}

/// Why a body was not read.
#[derive(Debug)]
pub(crate) enum Refusal {
    TooLarge,
    Unreadable,
    Timeout,
    OverBudget,
}

impl Refusal {
    /// The metrics label, status and message of a refusal answered directly.
    fn describe(&self) -> (&'static str, StatusCode, &'static str) {
        match self {
            Refusal::TooLarge => (
                "too_large",
                StatusCode::PAYLOAD_TOO_LARGE,
                "event body is larger than 3 MiB\n",
            ),
            Refusal::Unreadable => (
                "unreadable",
                StatusCode::BAD_REQUEST,
                "cannot read the request body\n",
            ),
            Refusal::Timeout => (
                "timeout",
                StatusCode::REQUEST_TIMEOUT,
                "request body not received in time\n",
            ),
            Refusal::OverBudget => (
                "over_budget",
                StatusCode::SERVICE_UNAVAILABLE,
                "too many event bodies are being read at once\n",
            ),
        }
    }
}

/// Reads a body of at most [`MAX_BODY_BYTES`] within `timeout`, reserving
/// its bytes from the budget before buffering them.
pub(crate) async fn read_body(
    body: Body,
    reservation: &mut Reservation,
    timeout: Duration,
) -> Result<bytes::Bytes, Refusal> {
    tokio::time::timeout(timeout, collect_within_budget(body, reservation))
        .await
        .unwrap_or(Err(Refusal::Timeout))
}

async fn collect_within_budget(
    mut body: Body,
    reservation: &mut Reservation,
) -> Result<bytes::Bytes, Refusal> {
    // A body declared too large is still read up to the limit before the
    // 413 (the budget bounds what that costs): a sender refused before it
    // finished writing often sees a broken pipe instead of the answer.
    let mut collected = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            // Hyper reports an over-long declared length this way too.
            if e.to_string().contains("length limit") {
                Refusal::TooLarge
            } else {
                Refusal::Unreadable
            }
        })?;
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        let total = collected.len().saturating_add(chunk.len());
        if total > MAX_BODY_BYTES {
            return Err(Refusal::TooLarge);
        }
        // Reserve what the buffer may grow to (BytesMut at most doubles).
        let capacity = total
            .max(collected.capacity())
            .saturating_mul(2)
            .min(MAX_BODY_BYTES);
        reservation
            .grow_to(capacity.max(total))
            .map_err(|_| Refusal::OverBudget)?;
        collected.extend_from_slice(&chunk);
    }
    Ok(collected.freeze())
}

impl Receiver {
    /// Dedup, route, enqueue.
    pub async fn accept(&self, event: FluxEvent) -> Response {
        if !self.accepting.load(Ordering::Acquire) {
            self.metrics.event("shutting_down");
            return unavailable("herald is shutting down\n");
        }
        let Admission::Fresh(key) = self.dedup.admit(&event, Instant::now()) else {
            self.metrics.event("duplicate");
            tracing::debug!(event = %event.object_ref(), reason = %event.reason,
                "duplicate event: answered 429, not delivered again (the same object, message and revision within --rate-limit-interval)");
            return (StatusCode::TOO_MANY_REQUESTS, "duplicate event\n").into_response();
        };
        // Named only in log lines, so only built for them.
        let debug_object = tracing::enabled!(tracing::Level::DEBUG).then(|| event.object_ref());
        let mut notifications = self.route(event).await;
        if let Some(object) = &debug_object {
            if notifications.is_empty() {
                tracing::debug!(event = %object, "event matched no Alert: nothing to send");
            }
            for n in &notifications {
                tracing::debug!(event = %object, alert = %n.alert.key,
                    provider = %n.alert.destination.key, "event matched: notification queued");
            }
        }
        self.report_metadata_conflicts(&notifications);
        let routed = notifications.first().map(|n| n.event.clone());
        let spooled = match self.spool_all(&mut notifications).await {
            Ok(spooled) => spooled,
            Err(error) => {
                self.dedup.forget(key);
                self.metrics.event("spool_failed");
                tracing::error!(%error, "event refused with 503: it could not be made durable");
                return unavailable("cannot write the spool\n");
            }
        };
        // Only the global bound refuses the event; a notification whose
        // own destination is full is given up by the dispatcher (§3.9).
        let Ok(enqueued) = self.dispatcher.try_enqueue(notifications) else {
            if let Some(spool) = &self.spool {
                spooled.into_iter().for_each(|id| spool.remove(id));
            }
            self.dedup.forget(key);
            self.metrics.event("queue_full");
            let object = routed.map(|e| e.object_ref()).unwrap_or_default();
            tracing::warn!(event = %object, "delivery queue full: event refused with 503");
            return unavailable("the delivery queue is full\n");
        };
        self.metrics.event("accepted");
        tracing::debug!(
            event = debug_object.unwrap_or_default(),
            notifications = enqueued.queued,
            refused = enqueued.refused,
            "event accepted"
        );
        StatusCode::ACCEPTED.into_response()
    }
}

impl Receiver {
    /// Writes the notifications to the spool, when there is one, and marks
    /// each with its record; their ids.
    async fn spool_all(&self, notifications: &mut [Delivery]) -> Result<Vec<u64>, SpoolError> {
        let Some(spool) = self.spool.as_ref().filter(|_| !notifications.is_empty()) else {
            return Ok(Vec::new());
        };
        let now = std::time::SystemTime::now();
        let records: Vec<Record> = notifications.iter().map(|n| n.record(now)).collect();
        let ids = spool.append(&records).await?;
        for (notification, id) in notifications.iter_mut().zip(&ids) {
            notification.spooled.push(*id);
        }
        Ok(ids)
    }

    /// Warns, as Flux does, of metadata keys an Alert's notification takes
    /// from more than one source (Flux RFC 0008): one log line and a
    /// `MetadataAppendFailed` Warning Event on the Alert naming the keys
    /// and their sources.
    fn report_metadata_conflicts(&self, notifications: &[Delivery]) {
        for n in notifications {
            let alert = &n.alert;
            let conflicts = crate::routing::metadata::conflicts(
                &n.event,
                &alert.event_metadata,
                alert.summary.as_deref(),
            );
            if conflicts.is_empty() {
                continue;
            }
            let keys: Vec<String> = conflicts
                .iter()
                .map(|(key, sources)| format!("{key} ({})", sources.join(", ")))
                .collect();
            let message = format!(
                "metadata key conflicts detected (please refer to the Alert API docs and Flux RFC 0008 for more information): {}",
                keys.join("; ")
            );
            tracing::info!(alert = %alert.key, event = %n.event.object_ref(), %message, "metadata key conflicts");
            if let Some(reporter) = &self.reporter {
                reporter.alert_warning(
                    &alert.key,
                    crate::api::Reason::MetadataAppendFailed,
                    message,
                );
            }
        }
    }

    /// Routes an event, fetching its object's labels first when an Alert
    /// needs them. The table is re-read after the fetch (never held across it).
    async fn route(&self, event: FluxEvent) -> Vec<Delivery> {
        let needs_labels = self.labels.is_some() && self.table.load().needs_labels(&event);
        let Some(resolver) = self.labels.as_ref().filter(|_| needs_labels) else {
            return self.table.load().notifications(event);
        };
        let fetched = tokio::time::timeout(LABEL_TIMEOUT, resolver.labels(&event.involved_object))
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
        let labels = match &fetched {
            Ok(labels) => Labels::Fetched(labels),
            Err(_) => Labels::Unavailable,
        };
        let table = self.table.load();
        let routed = table.route_with(&event, labels);
        if let Err(error) = &fetched {
            for alert in &routed.unresolved {
                let message = format!(
                    "matchLabels: cannot read the labels of {}: {error}; the event was not routed to this Alert",
                    event.object_ref()
                );
                tracing::warn!(%alert, %message, "matchLabels lookup failed");
                if let Some(reporter) = &self.reporter {
                    reporter.alert_warning(alert, crate::api::Reason::SourceFetchFailed, message);
                }
            }
        }
        notifications_for(event, routed.alerts)
    }
}

fn unavailable(message: &'static str) -> Response {
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, message).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}
