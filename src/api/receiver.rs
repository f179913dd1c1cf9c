//! The `Receiver` custom resource (notification.toolkit.fluxcd.io/v1): an
//! incoming webhook that asks Flux to reconcile objects now (DESIGN §3.13).
//! Every field of Flux's v1 schema is here, with Flux's validations.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::alert::LocalReference;

/// Where every webhook path starts.
pub const WEBHOOK_PATH_PREFIX: &str = "/hook/";

/// The audience a `generic-oidc` token must carry when a provider names none.
pub const DEFAULT_OIDC_AUDIENCE: &str = "notification-controller";

/// The interval Flux reconciles a Receiver at when `spec.interval` is absent.
pub const DEFAULT_INTERVAL: &str = "10m";

/// A webhook endpoint: requests to `status.webhookPath` that pass the type's
/// verification annotate every object in `resources` with
/// `reconcile.fluxcd.io/requestedAt`.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "notification.toolkit.fluxcd.io",
    version = "v1",
    kind = "Receiver",
    doc = "Receiver is the Schema for the receivers API: an incoming webhook that requests reconciliations of Flux objects.",
    namespaced,
    status = "ReceiverStatus",
    category = "all",
    category = "fluxcd",
    category = "fluxcd-notifications",
    annotation("kustomize.toolkit.fluxcd.io/substitute", "disabled"),
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "message": "generic-oidc receivers must define at least one oidcProvider",
        "rule": "self.type != 'generic-oidc' || (has(self.oidcProviders) && size(self.oidcProviders) > 0)"
    },
    {
        "message": "oidcProviders can only be set when type is generic-oidc",
        "rule": "self.type == 'generic-oidc' || !has(self.oidcProviders) || size(self.oidcProviders) == 0"
    },
    {
        "message": "secretRef cannot be set when type is generic-oidc",
        "rule": "self.type != 'generic-oidc' || !has(self.secretRef)"
    },
    {
        "message": "secretRef is required when type is not generic-oidc",
        "rule": "self.type == 'generic-oidc' || has(self.secretRef)"
    }
]))]
pub struct ReceiverSpec {
    /// The webhook sender: decides how a request is verified.
    #[serde(rename = "type")]
    pub type_: ReceiverType,

    /// How often the Receiver is reconciled with its Secret (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    #[schemars(extend("default" = "10m"))]
    pub interval: Option<String>,

    /// Event types to act on (e.g. `push` for GitHub, `Push Hook` for
    /// GitLab); all when empty. Compared case-insensitively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,

    /// The objects to reconcile.
    pub resources: Vec<ReceiverResource>,

    /// A CEL expression evaluated per object (`res`: its metadata, `req`:
    /// the JSON request body, `claims` for generic-oidc); false skips it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_filter: Option<String>,

    /// Secret with the `token` key (and for gcr `email` and `audience`).
    /// Required for every type but generic-oidc.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalReference>,

    /// OIDC issuers trusted by a generic-oidc Receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["issuerURL"]))]
    pub oidc_providers: Option<Vec<OidcProvider>>,

    /// Stop handling requests for this Receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

/// Every Receiver type Flux defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverType {
    Generic,
    #[serde(rename = "generic-hmac")]
    GenericHmac,
    #[serde(rename = "generic-oidc")]
    GenericOidc,
    Github,
    Gitlab,
    Bitbucket,
    Harbor,
    Dockerhub,
    Quay,
    Gcr,
    Nexus,
    Acr,
    Cdevents,
}

impl ReceiverType {
    /// The name used in manifests and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiverType::Generic => "generic",
            ReceiverType::GenericHmac => "generic-hmac",
            ReceiverType::GenericOidc => "generic-oidc",
            ReceiverType::Github => "github",
            ReceiverType::Gitlab => "gitlab",
            ReceiverType::Bitbucket => "bitbucket",
            ReceiverType::Harbor => "harbor",
            ReceiverType::Dockerhub => "dockerhub",
            ReceiverType::Quay => "quay",
            ReceiverType::Gcr => "gcr",
            ReceiverType::Nexus => "nexus",
            ReceiverType::Acr => "acr",
            ReceiverType::Cdevents => "cdevents",
        }
    }
}

/// An object (or, with name `*` and `matchLabels`, the objects of a kind)
/// to reconcile.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverResource {
    /// API version of the referent; Flux's default for its source kinds
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,

    /// Kind of the referent.
    #[schemars(extend("enum" = [
        "Bucket", "GitRepository", "Kustomization", "HelmRelease", "HelmChart",
        "HelmRepository", "ImageRepository", "ImagePolicy", "ImageUpdateAutomation",
        "OCIRepository", "ArtifactGenerator", "ExternalArtifact"
    ]))]
    pub kind: String,

    /// Name of the referent, or `*` with `matchLabels`.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Namespace of the referent; the Receiver's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub namespace: Option<String>,

    /// With name `*`: every object of the kind carrying all these labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,

    /// A CEL expression for this reference, ANDed with `resourceFilter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

/// An OIDC issuer a generic-oidc Receiver trusts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OidcProvider {
    /// The issuer URL; must equal the token's `iss` claim.
    #[serde(rename = "issuerURL")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub issuer_url: String,

    /// The audience (`aud`) tokens must carry; `notification-controller`
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,

    /// Named CEL expressions over `claims` (and earlier `vars`), exposed as `vars.<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variables: Option<Vec<OidcVariable>>,

    /// CEL expressions that must all be true for a request to be accepted.
    #[schemars(length(min = 1))]
    pub validations: Vec<OidcValidation>,
}

impl OidcProvider {
    pub fn audience(&self) -> &str {
        self.audience
            .as_deref()
            .filter(|a| !a.is_empty())
            .unwrap_or(DEFAULT_OIDC_AUDIENCE)
    }
}

/// A named CEL expression.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OidcVariable {
    pub name: String,
    pub expression: String,
}

/// A CEL condition on a token's claims, and the message when it fails.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OidcValidation {
    pub expression: String,
    pub message: String,
}

/// Observed state of a Receiver.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("default" = {"observedGeneration": -1}))]
pub struct ReceiverStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,

    /// The last `reconcile.fluxcd.io/requestedAt` value handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,

    /// `/hook/` + sha256 of token, name and namespace: where to send requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_path: Option<String>,

    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
