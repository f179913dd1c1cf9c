//! Warnings about Alerts that a person should see next to the Alert: in
//! controller mode, Kubernetes Warning Events (DESIGN §3.9, §3.10, §3.4).

use crate::source::ObjectKey;

/// Why a warning is recorded (the Event's reason).
pub const DISPATCH_FAILED: &str = "NotificationDispatchFailed";
pub const TEMPLATE_RENDER_FAILED: &str = "TemplateRenderFailed";
pub const MATCH_LABELS_FAILED: &str = "MatchLabelsLookupFailed";

/// Records warnings about Alerts. Implementations must not block: they are
/// called from delivery workers and the event endpoint. Messages are
/// already masked.
pub trait Reporter: Send + Sync {
    fn alert_warning(&self, alert: &ObjectKey, reason: &'static str, message: String);
}
