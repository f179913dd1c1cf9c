//! The `Alert` custom resource: which events go to which Provider.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::severity::SeverityFilter;

/// An Alert routes events from `eventSources` to `providerRef`. One schema
/// serves v1beta1, v1beta2, v1beta3 and v1 (Flux v1.10's, stored); every field Flux accepts is here,
/// plus herald's `channel`, `template` and `digest`.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "notification.toolkit.fluxcd.io",
    version = "v1",
    kind = "Alert",
    doc = "Alert is the Schema for the alerts API: which events (sources, severity, inclusion and exclusion lists) go to which Provider.",
    namespaced,
    status = "AlertStatus",
    category = "all",
    category = "fluxcd",
    category = "fluxcd-notifications",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AlertSpec {
    /// The Provider (in the Alert's namespace) that delivers this Alert's notifications.
    pub provider_ref: LocalReference,

    /// The objects whose events this Alert routes.
    #[serde(default)]
    pub event_sources: Vec<EventSource>,

    /// Severities to deliver: a threshold string or a list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_severity: Option<SeverityFilter>,

    /// Go regular expressions (RE2 syntax, as Flux compiles them); when any
    /// are given, an event's message must match one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inclusion_list: Option<Vec<String>>,

    /// Go regular expressions (RE2 syntax, as Flux compiles them); an event
    /// whose message matches one is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclusion_list: Option<Vec<String>>,

    /// Extra metadata added to every notification of this Alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_metadata: Option<BTreeMap<String, String>>,

    /// A short description added to notifications as the `summary` field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 255))]
    pub summary: Option<String>,

    /// Stop routing events to this Alert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,

    /// herald: the Slack channel for this Alert, overriding the Provider's,
    /// so two Alerts can share one Provider and post to two channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,

    /// herald: the message this Alert sends, as minijinja (Jinja2) templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<MessageTemplate>,

    /// herald: group this Alert's notifications. The first one after a
    /// quiet spell goes out at once; those that follow within `window` go
    /// out together as one message when it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<DigestSpec>,
}

/// herald's digests (DESIGN §3.14).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DigestSpec {
    /// How long notifications are collected into one message, as a Go
    /// duration between 1s and 24h (e.g. `2m`).
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub window: String,

    /// Most notifications one message lists (1 to 100, default 20); it
    /// counts the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // `int32`: Kubernetes knows no `uint32` format (the API server warns).
    #[schemars(range(min = 1, max = 100), extend("format" = "int32"))]
    pub max_items: Option<u32>,
}

/// herald's message templates (DESIGN §3.10). Each field is optional; a
/// template with a syntax error is reported and the default format is sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessageTemplate {
    /// The message text. Variables: event, object, severity, message, reason,
    /// timestamp, controller, metadata, revision, alert, provider; filter `commit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,

    /// Slack: renders to a JSON array of Block Kit blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<String>,

    /// Slack bot API: notifications whose rendered key is equal share one thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_key: Option<String>,
}

/// A reference to an object in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalReference {
    pub name: String,
}

/// A Flux object (or all objects of a kind, with name `*`) whose events an Alert routes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventSource {
    /// API version of the referent (informational; matching uses kind, name and namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,

    /// Kind of the referent, e.g. Kustomization or HelmRelease.
    pub kind: String,

    /// Name of the referent, or `*` for every object of the kind.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Namespace of the referent; the Alert's namespace when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub namespace: Option<String>,

    /// Only objects carrying all these labels match (with name `*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
}

/// Observed state of an Alert.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The last `reconcile.fluxcd.io/requestedAt` value handled (what
    /// `flux reconcile` waits for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}
