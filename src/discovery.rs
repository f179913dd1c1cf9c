//! Kind → resource through API discovery, asked once per group, version and
//! kind and cached: what `matchLabels` lookups and Receiver annotations
//! both need to reach an object they know only by apiVersion and kind.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::Client;
use kube::api::{ApiResource, GroupVersionKind};

/// Resolved resources, shared by every lookup through one client.
pub struct Resources {
    client: Client,
    resolved: Mutex<HashMap<GroupVersionKind, ApiResource>>,
}

impl Resources {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            resolved: Mutex::new(HashMap::new()),
        }
    }

    /// The resource serving `gvk`, from the cache or through discovery.
    pub async fn resolve(&self, gvk: &GroupVersionKind) -> Result<ApiResource, kube::Error> {
        if let Some(found) = self
            .resolved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(gvk)
        {
            return Ok(found.clone());
        }
        let (resource, _) = kube::discovery::pinned_kind(&self.client, gvk).await?;
        self.resolved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(gvk.clone(), resource.clone());
        Ok(resource)
    }
}
