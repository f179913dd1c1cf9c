//! herald's CRDs, the seed manifests and `herald controller` against a real
//! kube-apiserver with embedded etcd (`tests/support/kubeapi.rs`): RBAC on,
//! herald under exactly `deploy/rbac.yaml`'s rules as the non-admin user
//! `herald`, every refused request a failure.

mod support;

use std::time::{Duration, Instant};

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};
use support::herald::{Herald, client};
use support::kubeapi::{self, Server};
use support::sink::Sink;
use support::{event_file, fixtures};

const WAIT: Duration = Duration::from_secs(20);
const NOTIFICATION: &str = "notification.toolkit.fluxcd.io";
const VERSIONS: [&str; 3] = ["v1beta1", "v1beta2", "v1beta3"];
const SEED_WEBHOOK: &str =
    "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX";

/// A test's view of a real API server: an admin client and the namespace
/// the test works in.
struct Cluster {
    api: Server,
    rt: tokio::runtime::Runtime,
    client: kube::Client,
    namespace: String,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

impl Cluster {
    /// The test binary's shared server, in a fresh namespace.
    fn shared(test: &str) -> Self {
        let api = Server::Shared(kubeapi::shared());
        let rt = runtime();
        let client = rt.block_on(api.admin_client());
        let namespace = rt.block_on(api.namespace(&client, test));
        Self {
            api,
            rt,
            client,
            namespace,
        }
    }

    /// A server of the test's own, working in `namespace` (created).
    fn dedicated(namespace: &str, extra_args: &[&str]) -> Self {
        let api = Server::Dedicated(Box::new(kubeapi::dedicated(extra_args)));
        let rt = runtime();
        let client = rt.block_on(api.admin_client());
        rt.block_on(api.create_namespace(&client, namespace));
        Self {
            api,
            rt,
            client,
            namespace: namespace.to_owned(),
        }
    }

    /// Creates every document of `yaml`, namespaced ones in the test's
    /// namespace.
    fn create(&self, yaml: &str) {
        let objects = kubeapi::documents(yaml).expect("parse YAML");
        self.rt
            .block_on(kubeapi::create_objects(
                &self.client,
                &objects,
                Some(&self.namespace),
            ))
            .unwrap_or_else(|e| panic!("create objects: {e:#}"));
    }

    /// Creates seed manifests (Slack Secret pointing at `webhook`).
    fn create_seed(&self, files: &[&str], webhook: &str) {
        for file in files {
            let text =
                std::fs::read_to_string(fixtures().join("seed").join(file)).expect("seed fixture");
            self.create(&text.replace(SEED_WEBHOOK, webhook));
        }
    }

    fn notification_api(&self, version: &str, kind: &str) -> Api<DynamicObject> {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(NOTIFICATION, version, kind));
        Api::namespaced_with(self.client.clone(), &self.namespace, &resource)
    }

    /// An Alert or Provider read at `version`, as JSON.
    fn get(&self, version: &str, kind: &str, name: &str) -> Option<Value> {
        let api = self.notification_api(version, kind);
        self.rt
            .block_on(api.get_opt(name))
            .expect("get")
            .map(|o| serde_json::to_value(o).expect("json"))
    }

    fn ready_condition(&self, kind: &str, name: &str) -> Option<Value> {
        let object = self.get("v1beta3", kind, name)?;
        object["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Ready")
            .cloned()
    }

    /// Waits until the object's Ready condition has this status.
    fn wait_ready(&self, kind: &str, name: &str, status: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let condition = self.ready_condition(kind, name);
            if let Some(c) = &condition
                && c["status"] == status
            {
                return c.clone();
            }
            if Instant::now() >= deadline {
                // A refused request is the likeliest cause: name it.
                self.api.assert_no_forbidden();
            }
            assert!(
                Instant::now() < deadline,
                "{kind} {}/{name}: Ready is {condition:?}, expected {status}",
                self.namespace
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `herald controller` as the user `herald`, in the test's namespace;
    /// on the shared server it watches only that namespace.
    fn start_herald(&self, extra: &[&str]) -> Herald {
        let mut flags: Vec<&str> = extra.to_vec();
        if matches!(self.api, Server::Shared(_))
            && !flags
                .iter()
                .any(|f| f.starts_with("--watch-all-namespaces"))
        {
            flags.push("--watch-all-namespaces=false");
        }
        let herald = Herald::controller(
            self.api.herald_kubeconfig(),
            &flags,
            &[
                ("POD_NAME", "herald-test-0"),
                ("RUNTIME_NAMESPACE", &self.namespace),
            ],
        );
        let deadline = Instant::now() + WAIT;
        while client::get(&format!("{}/readyz", herald.health)).0 != 200 {
            assert!(
                Instant::now() < deadline,
                "controller never became ready: {:#?}",
                herald.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        herald
    }

    /// A raw GET through the admin client; returns the body as JSON.
    fn get_raw(&self, path: &str, accept: &str) -> Value {
        let request = axum::http::Request::get(path)
            .header("accept", accept)
            .body(Vec::new())
            .expect("request");
        let text = self
            .rt
            .block_on(self.client.request_text(request))
            .expect("GET");
        serde_json::from_str(&text).expect("JSON answer")
    }
}

/// The notification objects of the seed manifests (Provider and Alerts).
fn seed_notification_objects() -> Vec<Value> {
    let mut objects = Vec::new();
    for file in ["02-provider.yaml", "03-alert.yaml", "05-two-channels.yaml"] {
        let text =
            std::fs::read_to_string(fixtures().join("seed").join(file)).expect("seed fixture");
        objects.extend(kubeapi::documents(&text).expect("seed YAML"));
    }
    objects
}

#[test]
fn crds_pass_the_servers_structural_schema_validation() {
    let cluster = Cluster::shared("crds");
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(cluster.client.clone());
    for name in ["alerts", "providers"] {
        let crd = cluster
            .rt
            .block_on(crds.get(&format!("{name}.{NOTIFICATION}")))
            .expect("CRD applied by the test support");
        let conditions = crd
            .status
            .and_then(|s| s.conditions)
            .expect("CRD conditions");
        let status = |kind: &str| {
            conditions
                .iter()
                .find(|c| c.type_ == kind)
                .map(|c| (c.status.clone(), c.message.clone()))
        };
        assert_eq!(status("Established").map(|s| s.0).as_deref(), Some("True"));
        assert_eq!(
            status("NamesAccepted").map(|s| s.0).as_deref(),
            Some("True")
        );
        // The server reports a schema it cannot use as NonStructuralSchema.
        assert_eq!(
            status("NonStructuralSchema"),
            None,
            "{name}: {conditions:?}"
        );
    }
    // Every version is served and discoverable.
    for version in VERSIONS {
        let list = cluster.get_raw(
            &format!("/apis/{NOTIFICATION}/{version}"),
            "application/json",
        );
        let names: Vec<&str> = list["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        for resource in ["alerts", "alerts/status", "providers", "providers/status"] {
            assert!(names.contains(&resource), "{version}: {names:?}");
        }
    }
}

#[test]
fn seed_manifests_at_every_version_read_back_at_v1beta3_unchanged() {
    let cluster = Cluster::shared("seed-versions");
    for version in VERSIONS {
        // One namespace per version: the seed's names, unchanged.
        let namespace = cluster
            .rt
            .block_on(cluster.api.namespace(&cluster.client, version));
        let objects: Vec<Value> = seed_notification_objects()
            .into_iter()
            .map(|mut o| {
                o["apiVersion"] = json!(format!("{NOTIFICATION}/{version}"));
                o
            })
            .collect();
        cluster
            .rt
            .block_on(kubeapi::create_objects(
                &cluster.client,
                &objects,
                Some(&namespace),
            ))
            .unwrap_or_else(|e| panic!("{version}: the server refused the seed: {e:#}"));
        for sent in &objects {
            let kind = sent["kind"].as_str().expect("kind");
            let name = sent["metadata"]["name"].as_str().expect("name");
            let resource =
                ApiResource::from_gvk(&GroupVersionKind::gvk(NOTIFICATION, "v1beta3", kind));
            let api: Api<DynamicObject> =
                Api::namespaced_with(cluster.client.clone(), &namespace, &resource);
            let read = cluster.rt.block_on(api.get(name)).expect("read back");
            let read = serde_json::to_value(read).expect("json");
            assert_eq!(read["apiVersion"], json!(format!("{NOTIFICATION}/v1beta3")));
            assert_eq!(
                read["spec"], sent["spec"],
                "{kind} {name} created at {version}, read at v1beta3"
            );
        }
    }
}

/// Flux's own v1beta3 fields, as Flux's documentation writes them.
const FLUX_V1BETA3: &str = r#"
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata:
  name: slack-bot
  labels: {team: platform}
  annotations: {example.com/owner: platform}
spec:
  type: slack
  channel: general
  username: flux
  address: https://slack.com/api/chat.postMessage
  timeout: 15s
  proxy: http://proxy.example.com:8080
  secretRef: {name: slack-token}
  certSecretRef: {name: slack-ca}
  suspend: false
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata:
  name: on-call
spec:
  summary: "Cluster addons impacted in us-east-2"
  providerRef: {name: slack-bot}
  eventSeverity: error
  eventSources:
    - kind: GitRepository
      name: "*"
    - kind: Kustomization
      name: apps
      namespace: flux-system
    - kind: HelmRelease
      name: "*"
      matchLabels: {app.kubernetes.io/part-of: addons}
  eventMetadata:
    env: production
    cluster: my-cluster
    region: us-east-2
  inclusionList: [".*succeeded.*"]
  exclusionList: ["^Dependencies.*", ".*no changes.*"]
  suspend: false
"#;

#[test]
fn flux_style_v1beta3_manifests_keep_every_field() {
    let cluster = Cluster::shared("flux-v1beta3");
    cluster.create(FLUX_V1BETA3);
    for sent in kubeapi::documents(FLUX_V1BETA3).expect("yaml") {
        let kind = sent["kind"].as_str().expect("kind");
        let name = sent["metadata"]["name"].as_str().expect("name");
        let read = cluster.get("v1beta3", kind, name).expect("read back");
        assert_eq!(read["spec"], sent["spec"], "{kind} {name}");
        if let Some(labels) = sent["metadata"].get("labels") {
            assert_eq!(&read["metadata"]["labels"], labels);
        }
        if let Some(annotations) = sent["metadata"].get("annotations") {
            assert_eq!(&read["metadata"]["annotations"], annotations);
        }
    }
}

/// The seed, as Flux users run it: Flux's Deployment flags (every
/// namespace watched), the seed's own `flux-system` namespace, on a server
/// of its own. One event, one Slack message; Ready written once each.
#[test]
fn seed_scenario_end_to_end() {
    let cluster = Cluster::dedicated("flux-system", &[]);
    let sink = Sink::start();
    cluster.create_seed(
        &[
            "00-namespace.yaml",
            "01-kustomization.yaml",
            "02-provider.yaml",
            "03-alert.yaml",
            "04-secret.yaml",
        ],
        &sink.url,
    );
    let herald = cluster.start_herald(&[
        "--watch-all-namespaces=true",
        "--log-level=debug",
        "--log-encoding=json",
        "--enable-leader-election=false",
        "--storage-path=/data",
        "--concurrent=4",
    ]);
    let provider = cluster.wait_ready("Provider", "slack", "True");
    assert_eq!(provider["reason"], "Succeeded");
    cluster.wait_ready("Alert", "flux-alerts", "True");
    let alert = cluster
        .get("v1beta3", "Alert", "flux-alerts")
        .expect("alert");
    assert_eq!(
        alert["status"]["observedGeneration"],
        alert["metadata"]["generation"]
    );

    assert_eq!(
        herald.post_file(&event_file("kustomization-error.json")),
        202
    );
    let received = sink.wait_for(1, WAIT);
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].body["attachments"][0]["author_name"],
        "kustomization/my-app-kustomization.flux-system"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sink.received().len(), 1, "one event, one message");

    // Ready is written once through the status subresource, and nothing
    // rewrites it afterwards.
    let versions = || {
        [("Alert", "flux-alerts"), ("Provider", "slack")].map(|(kind, name)| {
            cluster.get("v1beta3", kind, name).expect("object")["metadata"]["resourceVersion"]
                .clone()
        })
    };
    let before = versions();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(versions(), before, "status rewritten without a change");
    assert_eq!(
        cluster
            .api
            .status_writes("alerts", "flux-system", "flux-alerts"),
        1
    );
    assert_eq!(
        cluster
            .api
            .status_writes("providers", "flux-system", "slack"),
        1
    );

    // kubectl's columns, computed by the server from the CRD.
    let table = cluster.get_raw(
        &format!("/apis/{NOTIFICATION}/v1beta3/namespaces/flux-system/alerts"),
        "application/json;as=Table;v=v1;g=meta.k8s.io",
    );
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(columns, ["Name", "Ready", "Status", "Age"]);
    let cells = &table["rows"][0]["cells"];
    assert_eq!(cells[0], "flux-alerts");
    assert_eq!(cells[1], "True");

    cluster.api.assert_no_forbidden();
    herald.assert_no_secret_in_logs();
}
