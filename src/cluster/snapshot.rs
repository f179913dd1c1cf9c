//! A one-time, read-only snapshot of a cluster's Alerts, Providers and the
//! Secrets they reference, for `herald route` against a cluster. It makes
//! only calls the controller's RBAC allows (list Alerts and Providers, get
//! referenced Secrets, get an involved object's metadata for matchLabels).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::{Api, Client};

use crate::api::{Alert, Decoded, Provider};
use crate::source::{
    Kind, Loaded, ObjectKey, Origin, Problem, Snapshot, secret_data, undecodable_problem,
};

/// A client from `kubeconfig`, else `KUBECONFIG` or the in-cluster service account.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<Client> {
    let config = config(kubeconfig).await?;
    kube::Client::try_from(config).context("cannot build the Kubernetes client")
}

/// The client configuration from `kubeconfig` (the `--kubeconfig` flag,
/// as Flux's controllers take it), else `KUBECONFIG` or the in-cluster
/// service account. A kubeconfig that cannot be read or used is one error
/// naming the path once.
pub async fn config(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Config> {
    match kubeconfig {
        Some(path) => {
            let shown = path.display();
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("--kubeconfig {shown}: cannot read it: {e}"))?;
            let file = kube::config::Kubeconfig::from_yaml(&text)
                .map_err(|e| anyhow::anyhow!("--kubeconfig {shown}: not a kubeconfig: {e}"))?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .map_err(|e| anyhow::anyhow!("--kubeconfig {shown}: cannot use it: {e}"))
        }
        None => kube::Config::infer().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot configure a Kubernetes client: not in a cluster, and no usable \
                 kubeconfig (--kubeconfig, KUBECONFIG or ~/.kube/config): {e}"
            )
        }),
    }
}

/// Reads Alerts and Providers (in `namespace`, or all), and the Secrets
/// the Providers reference.
pub async fn read(client: &Client, namespace: Option<&str>) -> anyhow::Result<Snapshot> {
    // Each object decoded on its own: one that does not decode is reported
    // as that object's problem, as the controller does, and the rest route.
    let mut undecodable = Vec::new();
    let alerts: Vec<Alert> = valid(
        list::<Decoded<Alert>>(client, namespace)
            .await
            .context("cannot list Alerts")?,
        Kind::Alert,
        &mut undecodable,
    );
    let providers: Vec<Provider> = valid(
        list::<Decoded<Provider>>(client, namespace)
            .await
            .context("cannot list Providers")?,
        Kind::Provider,
        &mut undecodable,
    );
    let mut secrets = HashMap::new();
    for provider in &providers {
        let Some(reference) = &provider.spec.secret_ref else {
            continue;
        };
        let namespace = provider.metadata.namespace.as_deref().unwrap_or("default");
        let key = ObjectKey::new(namespace, reference.name.as_str());
        if secrets.contains_key(&key) {
            continue;
        }
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        // A missing Secret is reported by the table build, as in the controller.
        if let Some(secret) = api
            .get_opt(&reference.name)
            .await
            .with_context(|| format!("cannot read Secret {key}"))?
        {
            secrets.insert(key, secret_data(secret));
        }
    }
    let loaded = |object| Loaded {
        origin: Origin::Cluster,
        object: Arc::new(object),
    };
    Ok(Snapshot {
        alerts: alerts.into_iter().map(loaded).collect(),
        providers: providers
            .into_iter()
            .map(|object| Loaded {
                origin: Origin::Cluster,
                object: Arc::new(object),
            })
            .collect(),
        secrets,
        labels: Default::default(),
        receivers: Vec::new(),
        undecodable,
        // The API server refuses a Secret whose data is not base64.
        unreadable_secrets: Default::default(),
    })
}

/// The objects that decoded; a problem for each that did not.
fn valid<K: Clone>(objects: Vec<Decoded<K>>, kind: Kind, undecodable: &mut Vec<Problem>) -> Vec<K> {
    objects
        .into_iter()
        .filter_map(|object| match object {
            Decoded::Valid(object) => Some(Arc::unwrap_or_clone(object)),
            Decoded::Invalid(bad) => {
                let meta = &bad.metadata;
                let key = ObjectKey::new(
                    meta.namespace.as_deref().unwrap_or("default"),
                    meta.name.as_deref().unwrap_or_default(),
                );
                undecodable.push(undecodable_problem(kind, Origin::Cluster, key, &bad.error));
                None
            }
        })
        .collect()
}

async fn list<K>(client: &Client, namespace: Option<&str>) -> Result<Vec<K>, kube::Error>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    Ok(api.list(&ListParams::default()).await?.items)
}
