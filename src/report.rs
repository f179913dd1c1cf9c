//! Warnings about Alerts that a person should see next to the Alert: in
//! controller mode, Kubernetes Warning Events (DESIGN §3.9, §3.10, §3.4).

use crate::api::Reason;
use crate::source::ObjectKey;

/// Records warnings about Alerts. Implementations must not block: they are
/// called from delivery workers and the event endpoint. Messages are
/// already masked.
pub trait Reporter: Send + Sync {
    fn alert_warning(&self, alert: &ObjectKey, reason: Reason, message: String);
}
