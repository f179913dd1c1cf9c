//! What one notification says and whom it is for: the value routing
//! produces and templates and providers read.
//!
//! It holds plain data only (the event, the merged metadata, the names of
//! the Alert and Provider), so templates and providers can read it without
//! knowing the routing table, and the routing table can hold providers and
//! templates without a circle of imports.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::api::{FluxEvent, ProviderType, Severity};
use crate::source::ObjectKey;

/// The Alert and Provider a notification goes through, as templates and
/// providers see them. Built once per Alert when the table is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub alert: ObjectKey,
    /// The Alert's `metadata.uid` ("" when its manifest has none): `otel`
    /// derives trace IDs from it, as Flux does.
    pub alert_uid: String,
    /// The Alert's own channel (`spec.channel`), overriding the Provider's.
    pub alert_channel: Option<String>,
    pub provider: ObjectKey,
    pub provider_type: ProviderType,
    /// The Provider's `spec.channel`.
    pub provider_channel: Option<String>,
    /// The Alert as JSON, for the `alert` variable of the Provider's
    /// `spec.commitStatusExpr`; kept only when the Provider has one.
    pub alert_object: Option<Arc<serde_json::Value>>,
}

impl Route {
    /// The channel to post to: the Alert's, else the Provider's.
    pub fn channel(&self) -> Option<&str> {
        self.alert_channel
            .as_deref()
            .or(self.provider_channel.as_deref())
            .filter(|c| !c.is_empty())
    }
}

/// One notification: an event matched by an Alert.
#[derive(Clone, Debug)]
pub struct Notification {
    /// The event, metadata cleaned (DESIGN §3.5). For a digest, an event
    /// about its first object whose message lists them all.
    pub event: Arc<FluxEvent>,
    /// The merged, prefix-stripped metadata for this Alert.
    pub metadata: BTreeMap<String, String>,
    pub route: Arc<Route>,
    /// Set when this notification is a digest of several (`spec.digest`).
    pub digest: Option<Arc<Digest>>,
}

/// What a digest groups: one line per notification it lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digest {
    pub lines: Vec<DigestLine>,
    /// Notifications grouped, listed or not (at least `lines.len()`).
    pub total: usize,
    /// The Alert's `spec.digest.window`, as written.
    pub window: String,
}

/// One notification in a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DigestLine {
    /// `<kind>/<name>.<namespace>`.
    pub object: String,
    pub severity: Severity,
    pub message: String,
}

impl Digest {
    /// The heading every provider shows: how many, over how long.
    pub fn heading(&self) -> String {
        let listed = self.lines.len();
        let mut heading = format!("{} notifications in {}", self.total, self.window);
        if self.total > listed {
            heading.push_str(&format!(" ({listed} shown)"));
        }
        heading
    }

    /// The digest as plain text: the heading, then one line per listed
    /// notification, then how many more there were.
    pub fn text(&self) -> String {
        let mut text = self.heading();
        for line in &self.lines {
            text.push_str(&format!(
                "\n• {} [{}]: {}",
                line.object,
                line.severity.as_str(),
                line.message
            ));
        }
        let more = self.total.saturating_sub(self.lines.len());
        if more > 0 {
            text.push_str(&format!("\n… and {more} more"));
        }
        text
    }
}

impl Notification {
    /// `<lowercase kind>/<name>.<namespace>`: how Flux's messages name the object.
    pub fn object_name(&self) -> String {
        let object = &self.event.involved_object;
        format!(
            "{}/{}.{}",
            object.kind.to_lowercase(),
            object.name,
            object.namespace
        )
    }
}
