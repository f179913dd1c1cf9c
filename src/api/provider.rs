//! The `Provider` custom resource: where and how notifications are delivered.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::alert::LocalReference;

/// A Provider names a notification service and the Secret holding its address
/// and credentials. One schema serves v1beta1, v1beta2, v1beta3 and v1 (Flux v1.10's, stored).
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "notification.toolkit.fluxcd.io",
    version = "v1",
    kind = "Provider",
    doc = "Provider is the Schema for the providers API: where notifications go and how (type, address, Secrets).",
    namespaced,
    status = "ProviderStatus",
    category = "all",
    category = "fluxcd",
    category = "fluxcd-notifications",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSpec {
    /// The notification service.
    #[serde(rename = "type")]
    pub type_: ProviderType,

    /// The webhook address, used when the Secret has neither `address` nor `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub address: Option<String>,

    /// Default channel (Slack: `#name` or a channel ID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub channel: Option<String>,

    /// Bot name shown in the message; the event's reporting controller when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub username: Option<String>,

    /// Secret with `address` or `url` (the webhook), and optionally `token` (a Slack bot token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalReference>,

    /// Secret with TLS material (`ca.crt`, `tls.crt`, `tls.key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_secret_ref: Option<LocalReference>,

    /// HTTP(S) proxy address (deprecated by Flux in favour of `proxySecretRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub proxy: Option<String>,

    /// Secret with the proxy `address`, and optional `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_secret_ref: Option<LocalReference>,

    /// Timeout of one delivery request, as a Go duration (e.g. `15s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m))+$"))]
    pub timeout: Option<String>,

    /// Reconcile interval (accepted for compatibility with Flux v1beta2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub interval: Option<String>,

    /// CEL expression naming the commit status of the commit-status types
    /// (variables `event`, `alert`, `provider`); compiled when the Provider is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_status_expr: Option<String>,

    /// ServiceAccount for cloud workload identity (accepted for compatibility).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,

    /// Stop delivering through this Provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

/// Every provider type Flux defines; herald delivers to each (the provider
/// registry matches on this enum, so a type cannot be added without one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderType {
    Slack,
    Discord,
    Msteams,
    Rocket,
    Generic,
    #[serde(rename = "generic-hmac")]
    GenericHmac,
    Github,
    Gitlab,
    Gitea,
    Giteapullrequestcomment,
    Bitbucketserver,
    Bitbucket,
    Azuredevops,
    Googlechat,
    Googlepubsub,
    Webex,
    Sentry,
    Azureeventhub,
    Telegram,
    Lark,
    Matrix,
    Opsgenie,
    Alertmanager,
    Grafana,
    Githubdispatch,
    Githubpullrequestcomment,
    Gitlabmergerequestcomment,
    Pagerduty,
    Datadog,
    Nats,
    Zulip,
    Otel,
    Zoom,
    #[serde(rename = "incident.io")]
    IncidentIo,
    /// Flux v1.10's type.
    Mastodon,
}

impl ProviderType {
    /// The name used in manifests, metrics labels and `herald route`
    /// output (serde's name of the variant; a test holds them equal).
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderType::Slack => "slack",
            ProviderType::Discord => "discord",
            ProviderType::Msteams => "msteams",
            ProviderType::Rocket => "rocket",
            ProviderType::Generic => "generic",
            ProviderType::GenericHmac => "generic-hmac",
            ProviderType::Github => "github",
            ProviderType::Gitlab => "gitlab",
            ProviderType::Gitea => "gitea",
            ProviderType::Giteapullrequestcomment => "giteapullrequestcomment",
            ProviderType::Bitbucketserver => "bitbucketserver",
            ProviderType::Bitbucket => "bitbucket",
            ProviderType::Azuredevops => "azuredevops",
            ProviderType::Googlechat => "googlechat",
            ProviderType::Googlepubsub => "googlepubsub",
            ProviderType::Webex => "webex",
            ProviderType::Sentry => "sentry",
            ProviderType::Azureeventhub => "azureeventhub",
            ProviderType::Telegram => "telegram",
            ProviderType::Lark => "lark",
            ProviderType::Matrix => "matrix",
            ProviderType::Opsgenie => "opsgenie",
            ProviderType::Alertmanager => "alertmanager",
            ProviderType::Grafana => "grafana",
            ProviderType::Githubdispatch => "githubdispatch",
            ProviderType::Githubpullrequestcomment => "githubpullrequestcomment",
            ProviderType::Gitlabmergerequestcomment => "gitlabmergerequestcomment",
            ProviderType::Pagerduty => "pagerduty",
            ProviderType::Datadog => "datadog",
            ProviderType::Nats => "nats",
            ProviderType::Zulip => "zulip",
            ProviderType::Otel => "otel",
            ProviderType::Zoom => "zoom",
            ProviderType::IncidentIo => "incident.io",
            ProviderType::Mastodon => "mastodon",
        }
    }
}

/// Observed state of a Provider.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The last `reconcile.fluxcd.io/requestedAt` value handled (what
    /// `flux reconcile` waits for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}
