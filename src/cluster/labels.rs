//! `matchLabels` in controller mode (DESIGN §3.4): the involved object's
//! labels, read with a metadata-only GET. Kind → resource comes from API
//! discovery, asked once per group/version/kind and cached.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};

use crate::discovery::Resources;

use crate::api::InvolvedObject;
use crate::receiver::LabelResolver;

/// Label lookups in flight at once: a flood of events cannot become a
/// flood of GETs on the API server (the receiver gives up on a lookup after
/// a few seconds, and the Alerts concerned do not match).
const MAX_LOOKUPS: usize = 16;

pub struct ClusterLabels {
    client: Client,
    resources: Resources,
    lookups: tokio::sync::Semaphore,
}

impl ClusterLabels {
    pub fn new(client: Client) -> Self {
        Self {
            resources: Resources::new(client.clone()),
            client,
            lookups: tokio::sync::Semaphore::new(MAX_LOOKUPS),
        }
    }

    async fn resource(&self, gvk: GroupVersionKind) -> Result<ApiResource, String> {
        self.resources.resolve(&gvk).await.map_err(|e| {
            format!(
                "API discovery of {}/{} {}: {}",
                gvk.group,
                gvk.version,
                gvk.kind,
                crate::api_error::describe(&e)
            )
        })
    }

    async fn fetch(&self, object: &InvolvedObject) -> Result<BTreeMap<String, String>, String> {
        if object.api_version.is_empty() {
            return Err("the event has no involvedObject.apiVersion".into());
        }
        let (group, version) = match object.api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", object.api_version.as_str()),
        };
        let _slot = self
            .lookups
            .acquire()
            .await
            .map_err(|_| "label lookups are shutting down".to_owned())?;
        let gvk = GroupVersionKind::gvk(group, version, &object.kind);
        let resource = self.resource(gvk).await?;
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &object.namespace, &resource);
        let meta = api.get_metadata(&object.name).await.map_err(|e| {
            format!(
                "GET {} {}/{}: {}",
                resource.plural,
                object.namespace,
                object.name,
                crate::api_error::describe(&e)
            )
        })?;
        Ok(meta.metadata.labels.unwrap_or_default())
    }
}

impl LabelResolver for ClusterLabels {
    fn labels<'a>(
        &'a self,
        object: &'a InvolvedObject,
    ) -> BoxFuture<'a, Result<BTreeMap<String, String>, String>> {
        Box::pin(self.fetch(object))
    }
}
