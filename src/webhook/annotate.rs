//! Asking Flux to reconcile: the `reconcile.fluxcd.io/requestedAt`
//! annotation, set with a JSON merge patch on each target of a verified
//! request, as Flux's receiver server does. Kinds resolve to resources
//! through API discovery (cached); `name: "*"` lists by `matchLabels`
//! (metadata only).

use std::time::Instant;

use futures::future::BoxFuture;
use kube::Client;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::core::PartialObjectMeta;
use serde_json::{Value, json};

use crate::api::ReceiverResource;
use crate::discovery::Resources;

/// The annotation Flux's controllers watch for.
pub const REQUESTED_AT: &str = "reconcile.fluxcd.io/requestedAt";

/// Flux's default API versions for kinds a reference may leave without one
/// (`defaultFluxAPIVersions`).
pub fn default_api_version(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Bucket" | "HelmChart" | "HelmRepository" | "GitRepository" | "OCIRepository" => {
            "source.toolkit.fluxcd.io/v1"
        }
        "ImageRepository" => "image.toolkit.fluxcd.io/v1",
        "ArtifactGenerator" => "source.extensions.fluxcd.io/v1beta1",
        _ => return None,
    })
}

/// The annotation's value as Flux writes it: Go's `time.Time.String()` of
/// the current time (`2006-01-02 15:04:05.999999999 +0000 UTC m=+1.5`),
/// with the monotonic reading counted from herald's start.
pub fn requested_at() -> String {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    let now = k8s_openapi::jiff::Timestamp::now();
    let monotonic = start.elapsed();
    format_go_time(
        now.as_second(),
        now.subsec_nanosecond(),
        monotonic.as_secs(),
        monotonic.subsec_nanos(),
    )
}

fn format_go_time(seconds: i64, nanos: i32, mono_seconds: u64, mono_nanos: u32) -> String {
    let timestamp = k8s_openapi::jiff::Timestamp::new(seconds, 0).unwrap_or_default();
    let base = timestamp.strftime("%Y-%m-%d %H:%M:%S").to_string();
    let fraction = if nanos > 0 {
        let digits = format!("{nanos:09}");
        format!(".{}", digits.trim_end_matches('0'))
    } else {
        String::new()
    };
    format!("{base}{fraction} +0000 UTC m=+{mono_seconds}.{mono_nanos:09}")
}

/// One object a request resolved to.
#[derive(Clone, Debug)]
pub struct Target {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// What a CEL filter reads as `res`: apiVersion, kind, metadata.
    pub object: Value,
}

/// The API operations a webhook needs; a trait so the server can be tested
/// without an API server.
pub trait Targets: Send + Sync {
    /// The objects `reference` names (one, or those matching its labels).
    fn resolve<'a>(
        &'a self,
        reference: &'a ReceiverResource,
        namespace: &'a str,
        api_version: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Target>, String>>;

    /// Sets the annotation on `target`.
    fn annotate<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<(), String>>;
}

/// [`Targets`] through the Kubernetes API.
pub struct ClusterTargets {
    client: Client,
    resources: Resources,
    field_manager: String,
}

impl ClusterTargets {
    pub fn new(client: Client, field_manager: String) -> Self {
        Self {
            resources: Resources::new(client.clone()),
            client,
            field_manager,
        }
    }

    async fn resource(&self, gvk: GroupVersionKind) -> Result<ApiResource, String> {
        self.resources.resolve(&gvk).await.map_err(|e| {
            format!(
                "unable to resolve {} {}/{} through API discovery: {}",
                gvk.kind,
                gvk.group,
                gvk.version,
                crate::api_error::describe(&e)
            )
        })
    }

    fn target(api_version: &str, kind: &str, meta: PartialObjectMeta<DynamicObject>) -> Target {
        let metadata = meta.metadata;
        Target {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            namespace: metadata.namespace.clone().unwrap_or_default(),
            name: metadata.name.clone().unwrap_or_default(),
            object: json!({
                "apiVersion": api_version,
                "kind": kind,
                "metadata": metadata,
            }),
        }
    }

    async fn resolve_inner(
        &self,
        reference: &ReceiverResource,
        namespace: &str,
        api_version: &str,
    ) -> Result<Vec<Target>, String> {
        let (group, version) = match api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, &reference.kind);
        let resource = self.resource(gvk).await?;
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &resource);
        if reference.name == "*" {
            let Some(labels) = reference.match_labels.as_ref() else {
                return Err("matchLabels field not set when using wildcard '*' as name".into());
            };
            let selector = labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let list = api
                .list_metadata(&ListParams::default().labels(&selector))
                .await
                .map_err(|e| {
                    format!(
                        "failed listing resources in namespace {namespace:?} by matching labels {labels:?}: {}",
                        crate::api_error::describe(&e)
                    )
                })?;
            Ok(list
                .items
                .into_iter()
                .map(|m| Self::target(api_version, &reference.kind, m))
                .collect())
        } else {
            let meta = api.get_metadata(&reference.name).await.map_err(|e| {
                format!(
                    "unable to read {} \"{namespace}/{}\" error: {}",
                    reference.kind,
                    reference.name,
                    crate::api_error::describe(&e)
                )
            })?;
            Ok(vec![Self::target(api_version, &reference.kind, meta)])
        }
    }

    async fn annotate_inner(&self, target: &Target) -> Result<(), String> {
        let (group, version) = match target.api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", target.api_version.as_str()),
        };
        let gvk = GroupVersionKind::gvk(group, version, &target.kind);
        let resource = self.resource(gvk).await?;
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &target.namespace, &resource);
        let patch = json!({"metadata": {"annotations": {REQUESTED_AT: requested_at()}}});
        let params = PatchParams {
            field_manager: Some(self.field_manager.clone()),
            ..Default::default()
        };
        api.patch_metadata(&target.name, &params, &Patch::Merge(&patch))
            .await
            .map_err(|e| {
                format!(
                    "failed to annotate resource: '{}/{}.{}': {}",
                    target.kind,
                    target.name,
                    target.namespace,
                    crate::api_error::describe(&e)
                )
            })?;
        Ok(())
    }
}

impl Targets for ClusterTargets {
    fn resolve<'a>(
        &'a self,
        reference: &'a ReceiverResource,
        namespace: &'a str,
        api_version: &'a str,
    ) -> BoxFuture<'a, Result<Vec<Target>, String>> {
        Box::pin(self.resolve_inner(reference, namespace, api_version))
    }

    fn annotate<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.annotate_inner(target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requested_at_is_gos_time_string() {
        // 2024-05-06T07:08:09.120Z, 1.5 s after start.
        assert_eq!(
            format_go_time(1_714_979_289, 120_000_000, 1, 500_000_000),
            "2024-05-06 07:08:09.12 +0000 UTC m=+1.500000000"
        );
        assert_eq!(
            format_go_time(1_714_979_289, 0, 0, 0),
            "2024-05-06 07:08:09 +0000 UTC m=+0.000000000"
        );
        let now = requested_at();
        assert!(now.contains(" +0000 UTC m=+"), "{now}");
    }

    #[test]
    fn fluxs_default_api_versions() {
        assert_eq!(
            default_api_version("GitRepository"),
            Some("source.toolkit.fluxcd.io/v1")
        );
        assert_eq!(
            default_api_version("ImageRepository"),
            Some("image.toolkit.fluxcd.io/v1")
        );
        assert_eq!(default_api_version("Kustomization"), None);
        assert_eq!(default_api_version("HelmRelease"), None);
    }
}
