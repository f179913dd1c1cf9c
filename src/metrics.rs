//! Prometheus metrics (DESIGN §4). Labels carry provider types and results,
//! never addresses or object names that could hold secrets.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    pub provider_type: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabel {
    pub provider_type: &'static str,
}

/// A webhook request: the Receiver (`namespace/name`, empty when the path
/// names none), its type and the result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub receiver: String,
    pub receiver_type: &'static str,
    pub result: &'static str,
}

/// Every metric herald exports, registered once at start-up.
pub struct Metrics {
    registry: Registry,
    /// Events received, by result (accepted, invalid, duplicate, rejected_full, ...).
    pub events: Family<ResultLabel, Counter>,
    /// Notifications, by provider type and result (delivered, failed, expired, queue_full, abandoned).
    pub notifications: Family<NotificationLabels, Counter>,
    /// Seconds from event accepted to notification delivered.
    pub delivery_latency: Family<ProviderLabel, Histogram>,
    /// Delivery attempts that will be retried.
    pub retries: Family<ProviderLabel, Counter>,
    /// Notifications accepted and not yet delivered or given up.
    pub queue_depth: Gauge,
    /// Destinations whose circuit is open (failing: probed, not hammered).
    pub destinations_open: Gauge,
    /// Alerts in the routing table.
    pub alerts: Gauge,
    /// Problems found in the last snapshot.
    pub config_problems: Gauge,
    /// Notifications sent in the default format because their template failed to render.
    pub template_failures: Counter,
    /// Webhook requests, by Receiver, type and result.
    pub webhooks: Family<WebhookLabels, Counter>,
    /// Objects annotated for reconciliation by webhook requests.
    pub webhook_annotations: Family<WebhookLabels, Counter>,
    /// 1 while the spool can make events durable, 0 while it cannot (with `--spool-dir`).
    pub spool_writable: Gauge,
    /// Damaged spool files set aside at start-up.
    pub spool_set_aside: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("herald");
        let events = Family::<ResultLabel, Counter>::default();
        registry.register(
            "events_received",
            "Events received, by result",
            events.clone(),
        );
        let notifications = Family::<NotificationLabels, Counter>::default();
        registry.register(
            "notifications",
            "Notifications, by provider type and result",
            notifications.clone(),
        );
        let delivery_latency = Family::<ProviderLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0, 300.0,
            ])
        });
        registry.register(
            "delivery_latency_seconds",
            "Seconds from event accepted to notification delivered",
            delivery_latency.clone(),
        );
        let retries = Family::<ProviderLabel, Counter>::default();
        registry.register(
            "delivery_retries",
            "Delivery attempts that will be retried",
            retries.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Notifications accepted and not yet finished",
            queue_depth.clone(),
        );
        let destinations_open = Gauge::default();
        registry.register(
            "destinations_open",
            "Destinations whose circuit breaker is open: failing, probed one request at a time",
            destinations_open.clone(),
        );
        let alerts = Gauge::default();
        registry.register("alerts", "Alerts in the routing table", alerts.clone());
        let config_problems = Gauge::default();
        registry.register(
            "config_problems",
            "Problems found in the last configuration snapshot",
            config_problems.clone(),
        );
        let template_failures = Counter::default();
        registry.register(
            "template_render_failures",
            "Notifications sent in the default format because their template failed to render",
            template_failures.clone(),
        );
        let webhooks = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "webhook_requests",
            "Webhook (Receiver) requests, by Receiver, type and result",
            webhooks.clone(),
        );
        let webhook_annotations = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "webhook_annotations",
            "Objects annotated for reconciliation by webhook requests, by Receiver, type and result",
            webhook_annotations.clone(),
        );
        let spool_writable = Gauge::default();
        spool_writable.set(1);
        registry.register(
            "spool_writable",
            "1 while the spool (--spool-dir) can make events durable; 0 while it cannot, when herald is not ready and answers events 503",
            spool_writable.clone(),
        );
        let spool_set_aside = Counter::default();
        registry.register(
            "spool_files_set_aside",
            "Damaged spool files renamed aside at start-up (a fresh spool was started)",
            spool_set_aside.clone(),
        );
        Self {
            spool_writable,
            spool_set_aside,
            webhooks,
            webhook_annotations,
            template_failures,
            registry,
            events,
            notifications,
            delivery_latency,
            retries,
            queue_depth,
            destinations_open,
            alerts,
            config_problems,
        }
    }
}

impl Metrics {
    pub fn event(&self, result: &'static str) {
        self.events.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn notification(&self, provider_type: &'static str, result: &'static str) {
        self.notifications
            .get_or_create(&NotificationLabels {
                provider_type,
                result,
            })
            .inc();
    }

    pub fn webhook(&self, receiver: &str, receiver_type: &'static str, result: &'static str) {
        self.webhooks
            .get_or_create(&WebhookLabels {
                receiver: receiver.to_owned(),
                receiver_type,
                result,
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
