//! herald's CRDs, the seed manifests and `herald controller` against a real
//! kube-apiserver with embedded etcd (`tests/support/kubeapi.rs`): RBAC on,
//! herald under exactly `deploy/rbac.yaml`'s rules as the non-admin user
//! `herald`, every refused request a failure.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event as EventsEvent;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
};
use serde_json::{Value, json};
use support::cutter::Proxy;
use support::herald::{Herald, client};
use support::kubeapi::{self, Server};
use support::sink::{Answer, Sink};
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
    /// Every namespace the test made (herald's 403s in them fail it).
    namespaces: std::sync::Mutex<Vec<String>>,
    dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let namespaces = self.namespaces.lock().expect("namespaces").clone();
            let scope = matches!(self.api, Server::Shared(_)).then_some(namespaces.as_slice());
            self.api.assert_no_forbidden_in(scope);
        }
    }
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
            namespaces: std::sync::Mutex::new(vec![namespace.clone()]),
            namespace,
            dir: tempfile::tempdir().expect("tempdir"),
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
            namespaces: std::sync::Mutex::new(vec![namespace.to_owned()]),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Another fresh namespace on the same server.
    fn another_namespace(&self, prefix: &str) -> String {
        let namespace = self.rt.block_on(self.api.namespace(&self.client, prefix));
        self.namespaces
            .lock()
            .expect("namespaces")
            .push(namespace.clone());
        namespace
    }

    /// Creates every document of `yaml` in `namespace`.
    fn create_in(&self, namespace: &str, yaml: &str) {
        let objects = kubeapi::documents(yaml).expect("parse YAML");
        self.rt
            .block_on(kubeapi::create_objects(
                &self.client,
                &objects,
                Some(namespace),
            ))
            .unwrap_or_else(|e| panic!("create objects: {e:#}"));
    }

    /// A merge patch to an Alert or Provider (at v1beta3).
    fn patch(&self, kind: &str, name: &str, patch: Value) {
        self.rt
            .block_on(self.notification_api("v1beta3", kind).patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(patch),
            ))
            .unwrap_or_else(|e| panic!("patch {kind} {name}: {e}"));
    }

    fn delete(&self, kind: &str, name: &str) {
        self.rt
            .block_on(
                self.notification_api("v1beta3", kind)
                    .delete(name, &DeleteParams::default()),
            )
            .unwrap_or_else(|e| panic!("delete {kind} {name}: {e}"));
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Waits for a Ready condition with this status and reason.
    fn wait_reason(&self, kind: &str, name: &str, status: &str, reason: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let condition = self.wait_ready(kind, name, status);
            if condition["reason"] == reason {
                return condition;
            }
            assert!(
                Instant::now() < deadline,
                "{kind} {name}: Ready is {condition}, expected reason {reason}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The events.k8s.io/v1 Events in the test's namespace.
    fn events(&self) -> Vec<Value> {
        let api: Api<EventsEvent> = Api::namespaced(self.client.clone(), &self.namespace);
        self.rt
            .block_on(api.list(&Default::default()))
            .expect("list Events")
            .items
            .into_iter()
            .map(|e| serde_json::to_value(e).expect("json"))
            .collect()
    }

    /// Waits for a Warning Event with `reason` about the object `name`,
    /// read back through the API.
    fn wait_warning(&self, reason: &str, name: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let found = self.events().into_iter().find(|e| {
                e["reason"] == reason && e["type"] == "Warning" && e["regarding"]["name"] == name
            });
            if let Some(found) = found {
                return found;
            }
            if Instant::now() >= deadline {
                self.api.assert_no_forbidden();
            }
            assert!(
                Instant::now() < deadline,
                "no {reason} Warning Event about {name}: {:#?}",
                self.events()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A fixture event about an object in the test's namespace.
    fn event(&self, file: &str, message: &str) -> String {
        let mut event: Value =
            serde_json::from_str(&std::fs::read_to_string(event_file(file)).expect("event"))
                .expect("json");
        event["message"] = Value::from(message);
        event["involvedObject"]["namespace"] = Value::from(self.namespace.as_str());
        event.to_string()
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
        self.start_herald_with(self.api.herald_kubeconfig(), "herald-test-0", extra)
    }

    fn start_herald_with(&self, kubeconfig: &std::path::Path, pod: &str, extra: &[&str]) -> Herald {
        self.start_herald_env(kubeconfig, pod, extra, &[])
    }

    /// [`Cluster::start_herald_with`], with more environment variables.
    fn start_herald_env(
        &self,
        kubeconfig: &std::path::Path,
        pod: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Herald {
        let mut flags: Vec<&str> = extra.to_vec();
        if matches!(self.api, Server::Shared(_))
            && !flags
                .iter()
                .any(|f| f.starts_with("--watch-all-namespaces"))
        {
            flags.push("--watch-all-namespaces=false");
        }
        let mut env = env.to_vec();
        env.extend([("POD_NAME", pod), ("RUNTIME_NAMESPACE", &self.namespace)]);
        let herald = Herald::controller(kubeconfig, &flags, &env);
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

/// How long a change may take to reach routing on the real server here
/// (the product aims at 2 s; the tests share two cores with the build).
const PROPAGATION: Duration = Duration::from_secs(5);

const SEED_IN_NAMESPACE: [&str; 4] = [
    "01-kustomization.yaml",
    "02-provider.yaml",
    "03-alert.yaml",
    "04-secret.yaml",
];

/// The seed's Kustomization, Provider, error Alert and Secret (pointing at
/// `sink`) in a fresh namespace of the shared server, and herald reporting
/// the Alert ready.
fn seeded(test: &str, sink: &Sink, extra: &[&str]) -> (Cluster, Herald) {
    let cluster = Cluster::shared(test);
    cluster.create_seed(&SEED_IN_NAMESPACE, &sink.url);
    let herald = cluster.start_herald(extra);
    cluster.wait_ready("Alert", "flux-alerts", "True");
    (cluster, herald)
}

static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Posts distinct events until one reaches `sink` or the timeout passes.
fn deliver_within(
    cluster: &Cluster,
    herald: &Herald,
    sink: &Sink,
    file: &str,
    timeout: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let before = sink.received().len();
    while start.elapsed() < timeout {
        // Distinct messages: herald answers 429 to duplicates.
        let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            herald.post(cluster.event(file, &format!("probe {n}"))).0,
            202
        );
        if sink.wait_for(before + 1, Duration::from_millis(100)).len() > before {
            return Some(start.elapsed());
        }
    }
    None
}

fn secret_yaml(name: &str, url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\nstringData: {{url: \"{url}\"}}\n"
    )
}

#[test]
fn secret_rotation_and_deletion() {
    let sink = Sink::start();
    let (cluster, herald) = seeded("secret-rotation", &sink, &[]);
    assert!(deliver_within(&cluster, &herald, &sink, "kustomization-error.json", WAIT).is_some());

    // Rotated in place: the new address is used.
    let rotated = Sink::start();
    cluster
        .rt
        .block_on(cluster.secrets().patch(
            "slack-url",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"url": rotated.url}})),
        ))
        .expect("rotate the Secret");
    assert!(
        deliver_within(
            &cluster,
            &herald,
            &rotated,
            "kustomization-error.json",
            PROPAGATION
        )
        .is_some(),
        "the rotated Secret was not used within {PROPAGATION:?}"
    );

    // Deleted: the Provider and the Alert say why, nothing is delivered,
    // and a Warning Event names the cause.
    cluster
        .rt
        .block_on(
            cluster
                .secrets()
                .delete("slack-url", &DeleteParams::default()),
        )
        .expect("delete the Secret");
    let condition = cluster.wait_reason("Provider", "slack", "False", "SecretNotFound");
    let message = condition["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("{}/slack-url", cluster.namespace)),
        "{condition}"
    );
    cluster.wait_reason("Alert", "flux-alerts", "False", "ProviderNotReady");
    let before = rotated.received().len();
    assert_eq!(
        herald
            .post(cluster.event("kustomization-error.json", "while broken"))
            .0,
        202
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        rotated.received().len(),
        before,
        "delivered without a Secret"
    );
    cluster.wait_warning("SecretNotFound", "slack");

    // Re-created with another address: routed there, Ready again.
    let recreated = Sink::start();
    cluster.create(&secret_yaml("slack-url", &recreated.url));
    assert!(
        deliver_within(
            &cluster,
            &herald,
            &recreated,
            "kustomization-error.json",
            PROPAGATION
        )
        .is_some(),
        "the re-created Secret was not used within {PROPAGATION:?}"
    );
    cluster.wait_ready("Provider", "slack", "True");
    cluster.wait_ready("Alert", "flux-alerts", "True");
    herald.assert_no_secret_in_logs();
}

#[test]
fn alert_and_provider_edits_and_deletion() {
    let sink = Sink::start();
    let (cluster, herald) = seeded("edits", &sink, &[]);

    // Info is not delivered at `eventSeverity: error`, and is once the
    // threshold is lowered.
    assert_eq!(
        herald
            .post(cluster.event("kustomization-info.json", "before edit"))
            .0,
        202
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(sink.received().is_empty());
    cluster.patch(
        "Alert",
        "flux-alerts",
        json!({"spec": {"eventSeverity": "info"}}),
    );
    assert!(
        deliver_within(
            &cluster,
            &herald,
            &sink,
            "kustomization-info.json",
            PROPAGATION
        )
        .is_some(),
        "eventSeverity edit not applied in time"
    );
    cluster.wait_ready("Alert", "flux-alerts", "True");

    // A Provider edit (channel) shows in the next message.
    cluster.patch("Provider", "slack", json!({"spec": {"channel": "#edited"}}));
    let deadline = Instant::now() + PROPAGATION;
    loop {
        let before = sink.received().len();
        assert_eq!(
            herald
                .post(cluster.event(
                    "kustomization-error.json",
                    &format!(
                        "after channel edit {}",
                        PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    )
                ))
                .0,
            202
        );
        let received = sink.wait_for(before + 1, WAIT);
        if received
            .last()
            .is_some_and(|r| r.body["channel"] == "#edited")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "channel edit not applied: {received:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Deleting the Provider: the Alert is not ready and delivers nothing.
    cluster.delete("Provider", "slack");
    cluster.wait_reason("Alert", "flux-alerts", "False", "ProviderNotFound");
    let before = sink.received().len();
    assert_eq!(
        herald
            .post(cluster.event("kustomization-error.json", "no provider"))
            .0,
        202
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sink.received().len(), before);

    // Provider back, then the Alert deleted: nothing is delivered.
    cluster.create_seed(&["02-provider.yaml"], &sink.url);
    cluster.wait_ready("Alert", "flux-alerts", "True");
    cluster.delete("Alert", "flux-alerts");
    std::thread::sleep(PROPAGATION);
    let before = sink.received().len();
    assert_eq!(
        herald
            .post(cluster.event("kustomization-error.json", "after delete"))
            .0,
        202
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        sink.received().len(),
        before,
        "delivered after the Alert was deleted"
    );
}

const HELM_SETUP: &str = r#"
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: podinfo, labels: {team: web}}
spec: {interval: 5m}
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: database, labels: {team: db}}
spec: {interval: 5m}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: web-team}
spec:
  providerRef: {name: slack}
  eventSources:
    - kind: HelmRelease
      name: "*"
      matchLabels: {team: web}
"#;

/// matchLabels reads the labels of the object an event is about: metadata
/// only, discovery asked once per kind.
#[test]
fn match_labels_reads_labels_from_the_server() {
    // A server of its own: discovery requests carry no namespace, so only
    // here are all of them this herald's.
    let cluster = Cluster::dedicated("flux-system", &[]);
    let sink = Sink::start();
    cluster.create_seed(&["02-provider.yaml", "04-secret.yaml"], &sink.url);
    cluster.create(HELM_SETUP);
    let herald = cluster.start_herald(&[]);
    cluster.wait_ready("Alert", "web-team", "True");

    let helm_event = |name: &str, message: &str| {
        let mut event: Value =
            serde_json::from_str(&cluster.event("helmrelease-error.json", message)).expect("json");
        event["involvedObject"]["name"] = Value::from(name);
        event.to_string()
    };
    assert_eq!(herald.post(helm_event("podinfo", "web 1")).0, 202);
    assert_eq!(sink.wait_for(1, WAIT).len(), 1);
    assert_eq!(herald.post(helm_event("database", "db 1")).0, 202);
    assert_eq!(herald.post(helm_event("podinfo", "web 2")).0, 202);
    let received = sink.wait_for(2, WAIT);
    std::thread::sleep(Duration::from_millis(500));
    let texts: Vec<_> = sink
        .received()
        .iter()
        .map(|r| r.body["attachments"][0]["text"].clone())
        .collect();
    assert_eq!(texts, [json!("web 1"), json!("web 2")], "{received:?}");

    // Labels were read with get on each HelmRelease (allowed by RBAC).
    let gets = cluster
        .api
        .audit()
        .into_iter()
        .filter(|r| {
            r["stage"] == "ResponseComplete"
                && r["verb"] == "get"
                && r["objectRef"]["resource"] == "helmreleases"
                && r["objectRef"]["namespace"] == cluster.namespace.as_str()
        })
        .count();
    assert_eq!(gets, 3);
    // ...metadata only...
    let kinds: Vec<Value> = cluster
        .api
        .audit()
        .into_iter()
        .filter(|r| {
            r["stage"] == "ResponseComplete"
                && r["objectRef"]["resource"] == "helmreleases"
                && r["objectRef"]["namespace"] == cluster.namespace.as_str()
        })
        .map(|r| r["responseObject"]["kind"].clone())
        .collect();
    assert!(
        kinds.iter().all(|k| k == "PartialObjectMetadata"),
        "labels must be read metadata-only: {kinds:?}"
    );
    // ...after asking discovery once for the kind.
    let discovery = cluster
        .api
        .audit()
        .into_iter()
        .filter(|r| {
            r["stage"] == "ResponseComplete"
                && r["requestURI"]
                    .as_str()
                    .is_some_and(|u| u.split('?').next() == Some("/apis/helm.toolkit.fluxcd.io/v2"))
        })
        .count();
    assert_eq!(discovery, 1, "discovery must be asked once per kind");

    // An object that does not exist: no match, and a Warning Event on the
    // Alert, read back through the API.
    assert_eq!(herald.post(helm_event("ghost", "ghost 1")).0, 202);
    // Flux's reason for the same situation; the API server's message, not
    // a debug rendering of its Status.
    let fetch = cluster.wait_warning("SourceFetchFailed", "web-team");
    let note = fetch["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("not found (HTTP 404)") && !note.contains("Status {"),
        "{note}"
    );
    assert_eq!(sink.received().len(), 2);

    // `route --cluster` and `--explain` agree with the controller: the
    // labelled object matches, the other does not, through the same
    // discovery and metadata reads.
    let route = |name: &str, explain: bool| {
        let event = cluster.dir.path().join(format!("{name}.json"));
        std::fs::write(&event, helm_event(name, &format!("routed {name}"))).expect("event");
        let mut command = std::process::Command::new(support::herald::binary());
        command
            .args(["route", "--cluster", "--kubeconfig"])
            .arg(cluster.api.herald_kubeconfig())
            .args(["--namespace", &cluster.namespace]);
        if explain {
            command.args(["--explain", "--output", "json"]);
        }
        let output = command.arg(&event).output().expect("run herald route");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(0), "{stderr}");
        (String::from_utf8_lossy(&output.stdout).into_owned(), stderr)
    };
    let (podinfo, stderr) = route("podinfo", false);
    assert!(
        podinfo.contains("\"alert\":\"flux-system/web-team\""),
        "route --cluster left out the matchLabels Alert: {podinfo}\n{stderr}"
    );
    let (database, _) = route("database", false);
    assert!(!database.contains("web-team"), "{database}");
    let (explained, stderr) = route("podinfo", true);
    let line: Value = explained
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["alert"] == "flux-system/web-team")
        .unwrap_or_else(|| panic!("{explained}\n{stderr}"));
    assert_eq!(line["matched"], true, "{line}");
    let (explained, _) = route("database", true);
    let line: Value = explained
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["alert"] == "flux-system/web-team")
        .unwrap_or_else(|| panic!("{explained}"));
    assert_eq!(line["rule"], "matchLabels", "{line}");
    assert!(
        line["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("team=db")
            || line["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("\"db\""),
        "{line}"
    );
}

#[test]
fn watching_only_its_own_namespace() {
    let cluster = Cluster::shared("own-namespace");
    let sink = Sink::start();
    cluster.create_seed(&SEED_IN_NAMESPACE, &sink.url);
    // The same objects in another namespace, which herald must not see.
    let other = cluster.another_namespace("own-namespace-other");
    let other_sink = Sink::start();
    for file in ["02-provider.yaml", "03-alert.yaml", "04-secret.yaml"] {
        let text =
            std::fs::read_to_string(fixtures().join("seed").join(file)).expect("seed fixture");
        cluster.create_in(&other, &text.replace(SEED_WEBHOOK, &other_sink.url));
    }
    let herald = cluster.start_herald(&["--watch-all-namespaces=false"]);
    cluster.wait_ready("Alert", "flux-alerts", "True");

    assert_eq!(
        herald
            .post(cluster.event("kustomization-error.json", "own"))
            .0,
        202
    );
    assert_eq!(sink.wait_for(1, WAIT).len(), 1);
    let mut elsewhere: Value =
        serde_json::from_str(&cluster.event("kustomization-error.json", "other")).expect("json");
    elsewhere["involvedObject"]["namespace"] = Value::from(other.as_str());
    assert_eq!(herald.post(elsewhere.to_string()).0, 202);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        other_sink.received().is_empty(),
        "routed by an unwatched Alert"
    );
    assert_eq!(sink.received().len(), 1);

    // Nothing outside its namespace was read or written.
    let outside: Vec<String> = cluster
        .api
        .audit()
        .into_iter()
        .filter(|r| r["objectRef"]["namespace"] == other.as_str())
        .map(|r| format!("{} {}", r["verb"], r["requestURI"]))
        .collect();
    assert!(outside.is_empty(), "{outside:#?}");
}

#[test]
fn no_cross_namespace_refs_blocks_other_namespaces() {
    for (flag, delivered) in [
        (None, true),
        (Some("--no-cross-namespace-refs=true"), false),
    ] {
        let cluster = Cluster::shared("cross-namespace");
        let sink = Sink::start();
        // The Kustomization lives in another namespace than the Alert.
        let sources = cluster.another_namespace("cross-namespace-sources");
        cluster.create(&secret_yaml("hook", &sink.url));
        cluster.create(&format!(
            r#"
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {{name: slack}}
spec: {{type: slack, secretRef: {{name: hook}}}}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {{name: watches-elsewhere}}
spec:
  providerRef: {{name: slack}}
  eventSources:
    - {{kind: Kustomization, name: "*", namespace: {sources}}}
"#
        ));
        let herald = cluster.start_herald(flag.as_slice());
        if delivered {
            cluster.wait_ready("Alert", "watches-elsewhere", "True");
        } else {
            cluster.wait_reason("Alert", "watches-elsewhere", "False", "AccessDenied");
        }
        let mut event: Value =
            serde_json::from_str(&cluster.event("kustomization-error.json", "cross"))
                .expect("json");
        event["involvedObject"]["namespace"] = Value::from(sources.as_str());
        assert_eq!(herald.post(event.to_string()).0, 202);
        let received = sink.wait_for(1, Duration::from_secs(2));
        assert_eq!(received.len(), usize::from(delivered), "flag {flag:?}");
    }
}

#[test]
fn sigterm_delivers_every_queued_notification() {
    let sink = Sink::start();
    sink.default_answer(Answer::status(200).delay(Duration::from_millis(40)));
    let (cluster, mut herald) = seeded("sigterm", &sink, &[]);
    for n in 0..50 {
        assert_eq!(
            herald
                .post(cluster.event("kustomization-error.json", &format!("queued {n:02}")))
                .0,
            202
        );
    }
    assert_eq!(herald.terminate(Duration::from_secs(30)), Some(0));
    let expected: Vec<String> = (0..50).map(|n| format!("queued {n:02}")).collect();
    assert_eq!(sink.texts(), expected);
}

const TEMPLATED_ALERTS: &str = r#"
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: bad-syntax}
spec:
  providerRef: {name: slack}
  eventSources: [{kind: HelmRelease, name: "*"}]
  template:
    text: "{{ message }"
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: bad-render}
spec:
  providerRef: {name: slack}
  eventSources: [{kind: GitRepository, name: "*"}]
  eventSeverity: info
  template:
    blocks: '[{"text": {{ message }}}]'
"#;

#[test]
fn template_errors_show_in_status_and_events() {
    let cluster = Cluster::shared("templates");
    let sink = Sink::start();
    cluster.create_seed(&["02-provider.yaml", "04-secret.yaml"], &sink.url);
    cluster.create(TEMPLATED_ALERTS);
    let herald = cluster.start_herald(&[]);
    let condition = cluster.wait_reason("Alert", "bad-syntax", "False", "InvalidTemplate");
    let message = condition["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spec.template.text: syntax error at line 1, column"),
        "{message}"
    );
    cluster.wait_ready("Alert", "bad-render", "True");

    assert_eq!(
        herald
            .post(cluster.event("helmrelease-error.json", "helm"))
            .0,
        202
    );
    let received = sink.wait_for(1, WAIT);
    assert_eq!(
        received[0].body["attachments"][0]["author_name"],
        format!("helmrelease/podinfo.{}", cluster.namespace)
    );
    assert_eq!(
        herald
            .post(cluster.event("gitrepository-info.json", "git"))
            .0,
        202
    );
    assert_eq!(sink.wait_for(2, WAIT).len(), 2);
    cluster.wait_warning("TemplateRenderFailed", "bad-render");
    let invalid = cluster.wait_warning("InvalidConfig", "bad-syntax");
    assert!(
        invalid["note"]
            .as_str()
            .unwrap_or_default()
            .starts_with("InvalidTemplate: spec.template.text: syntax error"),
        "{invalid}"
    );
}

/// As Flux warns of them (RFC 0008): a metadata key an Alert's
/// notification takes from more than one source is a
/// `MetadataAppendFailed` Warning Event naming the key and its sources;
/// the notification is still sent, the higher source winning.
#[test]
fn metadata_key_conflicts_are_a_warning_event_as_in_flux() {
    let cluster = Cluster::shared("metadata-conflicts");
    let sink = Sink::start();
    cluster.create_seed(&["02-provider.yaml", "04-secret.yaml"], &sink.url);
    cluster.create(
        r#"
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: conflicting}
spec:
  providerRef: {name: slack}
  eventSeverity: info
  summary: from the summary field
  eventMetadata: {summary: from eventMetadata, env: prod}
  eventSources: [{kind: Kustomization, name: "*"}]
"#,
    );
    let herald = cluster.start_herald(&[]);
    cluster.wait_ready("Alert", "conflicting", "True");
    assert_eq!(
        herald
            .post(cluster.event("kustomization-error.json", "conflicts"))
            .0,
        202
    );
    let received = sink.wait_for(1, WAIT);
    let fields = received[0].body["attachments"][0]["fields"].to_string();
    assert!(fields.contains("from the summary field"), "{fields}");
    let warning = cluster.wait_warning("MetadataAppendFailed", "conflicting");
    let note = warning["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("metadata key conflicts detected")
            && note
                .contains("summary (Alert object .spec.eventMetadata, Alert object .spec.summary)"),
        "{note}"
    );
    assert!(!note.contains("env ("), "{note}");
}

#[test]
fn a_failed_delivery_is_a_masked_warning_event_on_the_alert() {
    let sink = Sink::start();
    sink.default_answer(Answer::status(403).body("invalid_token"));
    let (cluster, herald) = seeded("failed-delivery", &sink, &[]);
    assert_eq!(
        herald
            .post(cluster.event("kustomization-error.json", "fails"))
            .0,
        202
    );
    let event = cluster.wait_warning("NotificationDispatchFailed", "flux-alerts");
    let note = event["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("403") && note.contains("http://127.0.0.1:"),
        "{note}"
    );
    // As Flux's controller records them: tools filter on these.
    assert_eq!(
        event["reportingController"], "notification-controller",
        "{event}"
    );
    assert_eq!(
        event["deprecatedSource"]["component"], "notification-controller",
        "{event}"
    );
    // The same failure again (another event, the same note) is counted
    // in the Event, not recorded again.
    assert_eq!(
        herald
            .post(cluster.event("kustomization-error.json", "fails again"))
            .0,
        202
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let failures: Vec<Value> = cluster
            .events()
            .into_iter()
            .filter(|e| e["reason"] == "NotificationDispatchFailed")
            .collect();
        if failures.len() == 1 && failures[0]["deprecatedCount"].as_i64() >= Some(2) {
            break;
        }
        assert!(Instant::now() < deadline, "{failures:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Nothing herald wrote to the server quotes the webhook address.
    for event in cluster.events() {
        assert!(
            !event.to_string().contains("secret-webhook-path"),
            "address leaked into an Event: {event}"
        );
    }
    for kind in ["Alert", "Provider"] {
        let name = if kind == "Alert" {
            "flux-alerts"
        } else {
            "slack"
        };
        let object = cluster.get("v1beta3", kind, name).expect("object");
        assert!(!object["status"].to_string().contains("secret-webhook-path"));
    }
}

/// Every request herald makes in a scenario that reaches each kind of call
/// (watches, status, Events, matchLabels, Secrets, leader election) is
/// allowed by `deploy/rbac.yaml` as the real server enforces it.
#[test]
fn every_api_call_is_allowed_by_the_deployed_rbac() {
    let cluster = Cluster::shared("rbac");
    let sink = Sink::start();
    cluster.create_seed(&SEED_IN_NAMESPACE, &sink.url);
    cluster.create(HELM_SETUP);
    let mut herald = cluster.start_herald(&[
        "--enable-leader-election",
        "--leader-election-retry-period=200ms",
    ]);
    cluster.wait_ready("Alert", "web-team", "True");
    assert_eq!(
        herald
            .post(cluster.event("helmrelease-error.json", "helm"))
            .0,
        202
    );
    sink.wait_for(1, WAIT);
    cluster
        .rt
        .block_on(
            cluster
                .secrets()
                .delete("slack-url", &DeleteParams::default()),
        )
        .expect("delete the Secret");
    cluster.wait_reason("Provider", "slack", "False", "SecretNotFound");
    cluster.wait_warning("SecretNotFound", "slack");
    assert_eq!(herald.terminate(Duration::from_secs(30)), Some(0));

    let seen: std::collections::BTreeSet<String> = cluster
        .api
        .audit()
        .into_iter()
        .filter(|r| r["objectRef"]["namespace"] == cluster.namespace.as_str())
        .map(|r| {
            let object = &r["objectRef"];
            let mut resource = object["resource"].as_str().unwrap_or_default().to_owned();
            if let Some(sub) = object["subresource"].as_str() {
                resource = format!("{resource}/{sub}");
            }
            format!(
                "{} {}/{resource}",
                r["verb"].as_str().unwrap_or_default(),
                object["apiGroup"].as_str().unwrap_or_default()
            )
        })
        .collect();
    for expected in [
        "watch notification.toolkit.fluxcd.io/alerts",
        "patch notification.toolkit.fluxcd.io/alerts/status",
        "patch notification.toolkit.fluxcd.io/providers/status",
        "watch /secrets",
        "get /secrets",
        "create /events",
        "get helm.toolkit.fluxcd.io/helmreleases",
        "update coordination.k8s.io/leases",
    ] {
        assert!(
            seen.contains(expected),
            "the scenario made no '{expected}' call: {seen:#?}"
        );
    }
    // (Cluster's drop fails the test on any 403.)
}

#[test]
fn unrelated_secrets_are_never_read() {
    let sink = Sink::start();
    let cluster = Cluster::shared("unrelated-secrets");
    cluster.create_seed(&SEED_IN_NAMESPACE, &sink.url);
    let unrelated: String = (0..20)
        .map(|i| format!("---\napiVersion: v1\nkind: Secret\nmetadata: {{name: unrelated-{i}}}\nstringData: {{password: hunter{i}}}\n"))
        .collect();
    cluster.create(&unrelated);
    let herald = cluster.start_herald(&[]);
    cluster.wait_ready("Provider", "slack", "True");
    assert_eq!(
        herald
            .post(cluster.event("kustomization-error.json", "one"))
            .0,
        202
    );
    sink.wait_for(1, WAIT);
    let gets: Vec<String> = cluster
        .api
        .audit()
        .into_iter()
        .filter(|r| {
            r["verb"] == "get"
                && r["objectRef"]["resource"] == "secrets"
                && r["objectRef"]["namespace"] == cluster.namespace.as_str()
        })
        .map(|r| {
            r["objectRef"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert!(!gets.is_empty());
    assert!(gets.iter().all(|n| n == "slack-url"), "read {gets:?}");
    // Secrets are listed (and so watched: same request headers) metadata
    // only: the server answered with metadata, never Secret data.
    let lists: Vec<Value> = cluster
        .api
        .audit()
        .into_iter()
        .filter(|r| {
            r["stage"] == "ResponseComplete"
                && r["verb"] == "list"
                && r["objectRef"]["resource"] == "secrets"
                && r["objectRef"]["namespace"] == cluster.namespace.as_str()
        })
        .map(|r| r["responseObject"]["kind"].clone())
        .collect();
    assert!(!lists.is_empty(), "no list of Secrets");
    assert!(
        lists.iter().all(|k| k == "PartialObjectMetadataList"),
        "Secret lists must be metadata-only: {lists:?}"
    );
}

/// Two replicas with leader election: one holds the Lease and writes
/// status; SIGKILL it and the other takes over within the lease duration,
/// delivering what is posted to it meanwhile.
#[test]
fn leader_election_survives_a_killed_leader() {
    let cluster = Cluster::shared("leader");
    let sink = Sink::start();
    cluster.create_seed(&SEED_IN_NAMESPACE, &sink.url);
    let lease_duration = Duration::from_secs(3);
    let flags = [
        "--enable-leader-election",
        "--leader-election-lease-duration=3s",
        "--leader-election-renew-deadline=2s",
        "--leader-election-retry-period=200ms",
    ];
    let kubeconfig = cluster.api.herald_kubeconfig().to_path_buf();
    let first = cluster.start_herald_with(&kubeconfig, "replica-a", &flags);
    let second = cluster.start_herald_with(&kubeconfig, "replica-b", &flags);
    cluster.wait_ready("Alert", "flux-alerts", "True");
    cluster.wait_ready("Provider", "slack", "True");
    std::thread::sleep(Duration::from_secs(1));

    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let holder = || {
        cluster
            .rt
            .block_on(leases.get_opt("notification-controller-leader-election"))
            .expect("get lease")
            .and_then(|l| l.spec.and_then(|s| s.holder_identity))
            .unwrap_or_default()
    };
    let leader_identity = holder();
    let leader_name = if leads(&first).as_deref() == Some(leader_identity.as_str()) {
        "replica-a"
    } else {
        assert_eq!(leads(&second), Some(leader_identity.clone()));
        "replica-b"
    };
    let writers: std::collections::BTreeSet<String> = cluster
        .api
        .audit()
        .into_iter()
        .filter(|r| {
            r["stage"] == "ResponseComplete"
                && r["objectRef"]["subresource"] == "status"
                && r["objectRef"]["namespace"] == cluster.namespace.as_str()
        })
        .filter_map(|r| {
            let uri = r["requestURI"].as_str()?.to_owned();
            let query = uri.split_once('?')?.1.to_owned();
            url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "fieldManager")
                .map(|(_, v)| v.into_owned())
        })
        .collect();
    assert_eq!(writers.len(), 1, "status writers: {writers:?}");
    assert!(
        writers.iter().any(|w| w.contains(leader_name)),
        "the lease holder {leader_name} is not the writer {writers:?}"
    );

    // Both replicas deliver.
    assert_eq!(
        first
            .post(cluster.event("kustomization-error.json", "to a"))
            .0,
        202
    );
    assert_eq!(
        second
            .post(cluster.event("kustomization-error.json", "to b"))
            .0,
        202
    );
    assert_eq!(sink.wait_for(2, WAIT).len(), 2);

    let (mut leader, follower) = if leader_name == "replica-a" {
        (first, second)
    } else {
        (second, first)
    };
    let follower_name = follower_identity(&follower);
    leader.kill();
    let killed = Instant::now();
    // Posted to the survivor during the handover: all delivered.
    for n in 0..5 {
        assert_eq!(
            follower
                .post(cluster.event("kustomization-error.json", &format!("handover {n}")))
                .0,
            202
        );
    }
    while holder() != follower_name {
        assert!(
            // The lease runs out `lease_duration` after the last renewal
            // (at most a retry period before the kill); some slack for a
            // busy machine.
            killed.elapsed() < lease_duration + Duration::from_secs(2),
            "{follower_name} did not take the lease within {:?}",
            killed.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = killed.elapsed();
    let received = sink.wait_for(7, WAIT);
    assert_eq!(received.len(), 7, "{:?}", sink.texts());
    // The new leader writes status: a change is reported.
    cluster
        .rt
        .block_on(
            cluster
                .secrets()
                .delete("slack-url", &DeleteParams::default()),
        )
        .expect("delete the Secret");
    cluster.wait_reason("Provider", "slack", "False", "SecretNotFound");
    eprintln!("lease taken over {took:?} after SIGKILL");
}

/// The identity a replica took part in leader election with.
fn follower_identity(herald: &Herald) -> String {
    herald
        .logs()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|log| log["message"] == "leader election: taking part")
        .and_then(|log| log["identity"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no leader-election identity logged: {:#?}", herald.logs()))
}

/// The identity a replica leads with, if its last leadership change made
/// it the leader.
fn leads(herald: &Herald) -> Option<String> {
    let last = herald
        .logs()
        .iter()
        .rev()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|log| log["message"] == "leader election: leadership changed")?;
    (last["leading"] == true).then(|| last["identity"].as_str().unwrap_or_default().to_owned())
}

/// Two replicas started outside a pod (no `POD_NAME`, no `HOSTNAME`, one
/// host): they take part under distinct identities, exactly one holds the
/// Lease and says it leads, and killing it hands over within the lease
/// duration.
#[test]
fn replicas_without_a_pod_name_elect_exactly_one_leader() {
    let cluster = Cluster::shared("leader-identity");
    let sink = Sink::start();
    cluster.create_seed(&SEED_IN_NAMESPACE, &sink.url);
    let flags = [
        "--enable-leader-election",
        "--leader-election-lease-duration=3s",
        "--leader-election-renew-deadline=2s",
        "--leader-election-retry-period=200ms",
        "--watch-all-namespaces=false",
    ];
    let env = [
        ("POD_NAME", ""),
        ("HOSTNAME", ""),
        ("RUNTIME_NAMESPACE", cluster.namespace.as_str()),
    ];
    let kubeconfig = cluster.api.herald_kubeconfig().to_path_buf();
    let first = Herald::controller(&kubeconfig, &flags, &env);
    let second = Herald::controller(&kubeconfig, &flags, &env);
    cluster.wait_ready("Alert", "flux-alerts", "True");
    let (a, b) = (follower_identity(&first), follower_identity(&second));
    assert_ne!(a, b, "two replicas share an identity");
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let holder = || {
        cluster
            .rt
            .block_on(leases.get_opt("notification-controller-leader-election"))
            .expect("get lease")
            .and_then(|l| l.spec.and_then(|s| s.holder_identity))
            .unwrap_or_default()
    };
    // Several retry periods: a second leader would have shown by then.
    std::thread::sleep(Duration::from_secs(2));
    let leaders: Vec<String> = [&first, &second].into_iter().filter_map(leads).collect();
    assert_eq!(leaders.len(), 1, "leaders: {leaders:?}");
    assert_eq!(holder(), leaders[0]);
    let (mut leader, follower) = if leaders[0] == a {
        (first, second)
    } else {
        (second, first)
    };
    leader.kill();
    let killed = Instant::now();
    let successor = follower_identity(&follower);
    while holder() != successor || leads(&follower).is_none() {
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "{successor} did not take the lease within {:?}",
            killed.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("lease taken over {:?} after SIGKILL", killed.elapsed());
}

/// A server of its own with the seed, and herald reaching it through a
/// TCP proxy that can cut or refuse connections; herald delivers.
fn behind_a_proxy(server_args: &[&str]) -> (Cluster, Sink, Proxy, Herald) {
    let cluster = Cluster::dedicated("flux-system", server_args);
    let sink = Sink::start();
    cluster.create_seed(&SEED_IN_NAMESPACE, &sink.url);
    let proxy = Proxy::start(cluster.api.address());
    let kubeconfig = cluster
        .api
        .herald_kubeconfig_via(&proxy.address, cluster.dir.path());
    let herald = cluster.start_herald_with(&kubeconfig, "herald-test-0", &[]);
    cluster.wait_ready("Alert", "flux-alerts", "True");
    assert!(deliver_within(&cluster, &herald, &sink, "kustomization-error.json", WAIT).is_some());
    (cluster, sink, proxy, herald)
}

/// Connections cut mid-watch, and a watch resumed from a compacted
/// resourceVersion (410 Gone from etcd: this server has no watch cache):
/// herald re-lists and its routing converges without a restart.
#[test]
fn cut_connections_and_410_gone_recover_without_restart() {
    let (mut cluster, sink, proxy, herald) = behind_a_proxy(&["--watch-cache=false"]);

    // Connections cut mid-watch: herald reconnects and keeps up.
    proxy.cut();
    cluster.patch(
        "Alert",
        "flux-alerts",
        json!({"spec": {"eventSeverity": "info"}}),
    );
    assert!(
        deliver_within(&cluster, &herald, &sink, "kustomization-info.json", WAIT).is_some(),
        "herald missed a change after its connections were cut"
    );

    // Down while the Alert changes and etcd compacts: its watches resume
    // from a compacted resourceVersion, get 410, and re-list.
    let lists_before = alert_lists(&cluster);
    proxy.pause();
    cluster.patch(
        "Alert",
        "flux-alerts",
        json!({"spec": {"eventSeverity": "error"}}),
    );
    cluster.patch(
        "Alert",
        "flux-alerts",
        json!({"spec": {"summary": "after compaction"}}),
    );
    let revision = cluster.api.compact();
    assert!(revision > 0);
    proxy.resume();
    let deadline = Instant::now() + WAIT;
    while alert_lists(&cluster) == lists_before {
        assert!(
            Instant::now() < deadline,
            "no re-list of Alerts after 410 Gone"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The table converged: info is no longer delivered, errors are, with
    // the new summary.
    let deadline = Instant::now() + WAIT;
    loop {
        let before = sink.received().len();
        assert_eq!(
            herald
                .post(cluster.event(
                    "kustomization-error.json",
                    &format!(
                        "converged {}",
                        PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    )
                ))
                .0,
            202
        );
        let received = sink.wait_for(before + 1, WAIT);
        if received
            .last()
            .is_some_and(|r| r.body.to_string().contains("after compaction"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "routing did not converge: {:?}",
            sink.texts()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let before = sink.received().len();
    assert_eq!(
        herald
            .post(cluster.event("kustomization-info.json", "info"))
            .0,
        202
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        sink.received().len(),
        before,
        "info delivered at eventSeverity error"
    );
    assert!(herald.logs().iter().all(|l| !l.contains("panicked")));
    // The fault happened: the server answered herald's resumed watch with
    // 410 Gone (etcd had compacted its resourceVersion).
    assert!(
        herald
            .logs()
            .iter()
            .any(|l| l.contains("code: 410") && l.contains("too old")),
        "no watch was answered with 410 Gone"
    );
}

/// How many times herald listed Alerts (not watches).
fn alert_lists(cluster: &Cluster) -> usize {
    cluster
        .api
        .audit()
        .into_iter()
        .filter(|r| {
            r["stage"] == "ResponseComplete"
                && r["verb"] == "list"
                && r["objectRef"]["resource"] == "alerts"
        })
        .count()
}

fn channels(sink: &Sink) -> Vec<String> {
    let mut channels: Vec<String> = sink
        .received()
        .iter()
        .map(|r| r.body["channel"].as_str().unwrap_or("(none)").to_owned())
        .collect();
    channels.sort();
    channels
}

/// Every seed manifest through the API: the two-channel routing example
/// splits errors and info as in standalone mode.
#[test]
fn seed_two_channels_split_errors_and_info() {
    let cluster = Cluster::shared("two-channels");
    let sink = Sink::start();
    let mut files = SEED_IN_NAMESPACE.to_vec();
    files.push("05-two-channels.yaml");
    cluster.create_seed(&files, &sink.url);
    let herald = cluster.start_herald(&[]);
    for alert in ["flux-alerts", "devops-errors", "gitops-updates"] {
        cluster.wait_ready("Alert", alert, "True");
    }

    assert_eq!(
        herald
            .post(cluster.event("kustomization-info.json", "info"))
            .0,
        202
    );
    sink.wait_for(1, WAIT);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(channels(&sink), ["#gitops-updates"]);

    assert_eq!(
        herald
            .post(cluster.event("kustomization-error.json", "error"))
            .0,
        202
    );
    sink.wait_for(4, WAIT);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        channels(&sink),
        [
            "#devops-alerts",
            "#gitops-updates",
            "#gitops-updates",
            "(none)"
        ]
    );
    herald.assert_no_secret_in_logs();
}

/// `kubectl apply -k deploy/` as the real server sees it: every install
/// manifest (the flux-system Namespace, so that a fresh cluster takes them,
/// CRDs, ServiceAccount, RBAC, Deployment, Service) passes the server's
/// own validation, unknown fields refused (server-side dry run).
#[test]
fn install_manifests_pass_the_servers_validation() {
    let cluster = Cluster::shared("install");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let kustomization: Value = herald::yaml::parse_document(
        &std::fs::read_to_string(root.join("deploy/kustomization.yaml")).expect("kustomization"),
    )
    .expect("kustomization YAML");
    let mut objects = Vec::new();
    for resource in kustomization["resources"].as_array().expect("resources") {
        let path = root.join("deploy").join(resource.as_str().expect("path"));
        let files = if path.is_dir() {
            vec![path.join("crds.yaml")]
        } else {
            vec![path]
        };
        for file in files {
            let text = std::fs::read_to_string(&file).expect("manifest");
            objects.extend(kubeapi::documents(&text).expect("manifest YAML"));
        }
    }
    assert!(objects.len() >= 8, "{} objects", objects.len());
    assert!(
        objects
            .iter()
            .any(|o| o["kind"] == "Namespace" && o["metadata"]["name"] == "flux-system"),
        "a fresh cluster has no flux-system namespace"
    );
    let params = PatchParams {
        dry_run: true,
        force: true,
        field_manager: Some("herald-tests".into()),
        field_validation: Some(kube::api::ValidationDirective::Strict),
    };
    for object in &objects {
        let mut object = object.clone();
        if object["metadata"]["namespace"].is_null() {
            // kustomize's `namespace:` for namespaced kinds.
            object["metadata"]["namespace"] = json!(cluster.namespace);
        }
        let (api, name) = cluster
            .rt
            .block_on(kubeapi::api_for(
                &cluster.client,
                &object,
                Some(&cluster.namespace),
            ))
            .expect("discover");
        if object["kind"] == "CustomResourceDefinition"
            || object["kind"] == "Namespace"
            || object["kind"]
                .as_str()
                .is_some_and(|k| k.starts_with("Cluster"))
        {
            object["metadata"]
                .as_object_mut()
                .expect("metadata")
                .remove("namespace");
        }
        cluster
            .rt
            .block_on(api.patch(&name, &params, &Patch::Apply(&object)))
            .unwrap_or_else(|e| panic!("the server refused {} {name}: {e}", object["kind"]));
    }
}

/// In a cluster, the Secrets named by certSecretRef are read like the
/// address Secret (within deploy/rbac.yaml): the Provider turns ready and
/// delivers over TLS to a server only that CA vouches for; a missing
/// certSecretRef Secret is `Ready=False` (`SecretNotFound`).
#[test]
fn cert_secret_ref_secrets_are_read_and_used() {
    let pki = support::tls::Pki::new();
    let sink = Sink::start_tls(pki.server_config(false));
    let cluster = Cluster::shared("cert-secret-ref");
    let provider = |name: &str, cert_secret: &str| {
        format!(
            "---\napiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\n\
             metadata: {{name: {name}}}\n\
             spec: {{type: generic, secretRef: {{name: hook}}, certSecretRef: {{name: {cert_secret}}}}}\n"
        )
    };
    let secret = |name: &str, key: &str, value: &str| {
        format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\nstringData:\n  {key}: {}\n",
            serde_json::to_string(value).expect("quoted")
        )
    };
    let manifests = format!(
        "{}{}{}{}---\napiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
         metadata: {{name: tls}}\n\
         spec: {{providerRef: {{name: tls}}, eventSources: [{{kind: Kustomization, name: '*'}}]}}\n",
        provider("tls", "ca"),
        provider("missing", "nope"),
        secret("hook", "address", &sink.url),
        secret("ca", "ca.crt", &pki.ca),
    );
    cluster.create_in(&cluster.namespace, &manifests);
    let herald = cluster.start_herald(&[]);
    cluster.wait_reason("Provider", "tls", "True", "Succeeded");
    cluster.wait_reason("Provider", "missing", "False", "SecretNotFound");
    assert!(
        deliver_within(&cluster, &herald, &sink, "kustomization-error.json", WAIT).is_some(),
        "{:#?}",
        herald.logs()
    );
    herald.assert_no_secret_in_logs();
}

// ------------------------------------------------------ workload identity

/// The claims of a JWT, decoded without checking its signature (the API
/// server's TokenReview checks that).
fn jwt_claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url claims");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// `spec.serviceAccountName` with `--feature-gates=ObjectLevelWorkloadIdentity=true`:
/// herald asks the API server for the ServiceAccount's token (audience
/// `api://AzureADTokenExchange`), exchanges it at the Azure AD lookalike
/// (`AZURE_AUTHORITY_HOST`) for an access token, and sends the event to the
/// Event Hubs lookalike with it; the next event reuses the cached token.
/// Both lookalikes sit behind the Provider's proxy (which forwards every
/// host to one TLS sink), so herald uses the real Event Hubs host name; the
/// Provider's certSecretRef trusts the test CA. Without the gate the
/// Provider is not ready with Flux's message; a missing ServiceAccount or
/// annotation fails the delivery naming it; no token is shown anywhere.
#[test]
fn workload_identity_exchanges_a_service_account_token_with_azure_ad() {
    const ACCESS_TOKEN: &str = "aad-access-token-s3cret-0123456789";
    const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    const CLIENT: &str = "0c8b4a5e-1111-2222-3333-444455556666";
    let pki = support::tls::Pki::new();
    let sink = Sink::start_tls(pki.server_config(false));
    let proxy = support::proxy::Proxy::start(Some(sink.authority()));
    sink.script([Answer::status(200)
        .header("content-type", "application/json")
        .body(format!(
            "{{\"token_type\":\"Bearer\",\"expires_in\":3599,\"ext_expires_in\":3599,\"access_token\":\"{ACCESS_TOKEN}\"}}"
        ))]);
    sink.default_answer(Answer::status(201));
    let cluster = Cluster::shared("identity");
    let ns = cluster.namespace.clone();
    let provider = |name: &str, account: &str| {
        format!(
            "---\napiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\n\
             metadata: {{name: {name}}}\n\
             spec: {{type: azureeventhub, address: flux-hub, channel: my-ns, serviceAccountName: {account}, \
             certSecretRef: {{name: ca}}, proxySecretRef: {{name: proxy}}}}\n\
             ---\napiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
             metadata: {{name: {name}}}\n\
             spec: {{providerRef: {{name: {name}}}, eventSources: [{{kind: Kustomization, name: '*'}}]}}\n"
        )
    };
    let manifests = format!(
        "{}{}{}---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: hub-identity\n  annotations:\n    \
         azure.workload.identity/tenant-id: {TENANT}\n    azure.workload.identity/client-id: {CLIENT}\n\
         ---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: no-client-id\n  annotations:\n    \
         azure.workload.identity/tenant-id: {TENANT}\n\
         ---\napiVersion: v1\nkind: Secret\nmetadata: {{name: ca}}\nstringData:\n  ca.crt: {}\n\
         ---\napiVersion: v1\nkind: Secret\nmetadata: {{name: proxy}}\nstringData:\n  address: {}\n\
         ---\napiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\n\
         metadata: {{name: both}}\n\
         spec: {{type: azureeventhub, address: flux-hub, channel: my-ns, serviceAccountName: hub-identity, \
         secretRef: {{name: jwt}}}}\n\
         ---\napiVersion: v1\nkind: Secret\nmetadata: {{name: jwt}}\nstringData:\n  token: static-jwt\n",
        provider("hub", "hub-identity"),
        provider("missing", "nobody"),
        provider("unannotated", "no-client-id"),
        serde_json::to_string(&pki.ca).expect("quoted"),
        proxy.url,
    );
    cluster.create_in(&ns, &manifests);

    // Gate off (Flux's default): not ready, with Flux's message.
    let herald = cluster.start_herald(&[]);
    let condition = cluster.wait_reason("Provider", "hub", "False", "WorkloadIdentityNotSupported");
    let message = condition["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(
            "to use spec.serviceAccountName for provider authentication please enable the \
             ObjectLevelWorkloadIdentity feature gate in the controller"
        ),
        "{message}"
    );
    drop(herald);

    // Gate on.
    let herald = cluster.start_herald_env(
        cluster.api.herald_kubeconfig(),
        "herald-test-0",
        &["--feature-gates=ObjectLevelWorkloadIdentity=true"],
        &[("AZURE_AUTHORITY_HOST", "https://login.example-cloud.test/")],
    );
    for name in ["hub", "missing", "unannotated"] {
        cluster.wait_reason("Provider", name, "True", "Succeeded");
    }
    // As in Flux, a JWT and a ServiceAccount exclude each other.
    let both = cluster.wait_reason("Provider", "both", "False", "InvalidCredentials");
    assert!(
        both["message"]
            .as_str()
            .is_some_and(|m| m.contains("spec.serviceAccountName and a JWT")),
        "{both}"
    );
    assert_eq!(
        herald
            .post(cluster.event("kustomization-error.json", "first"))
            .0,
        202
    );
    let received = sink.wait_for(2, WAIT);
    assert_eq!(received.len(), 2, "{:#?}", herald.logs());

    // The exchange: Azure AD's client credentials grant with the
    // ServiceAccount's token as the assertion.
    let exchange = &received[0];
    assert_eq!(exchange.method, "POST");
    assert_eq!(exchange.path, format!("/{TENANT}/oauth2/v2.0/token"));
    assert_eq!(
        exchange
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/x-www-form-urlencoded")
    );
    let form: std::collections::BTreeMap<String, String> =
        url::form_urlencoded::parse(&exchange.raw)
            .into_owned()
            .collect();
    let keys: Vec<&str> = form.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "client_assertion",
            "client_assertion_type",
            "client_id",
            "grant_type",
            "scope"
        ]
    );
    assert_eq!(
        form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    assert_eq!(form["client_id"], CLIENT);
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["scope"], "https://eventhubs.azure.net//.default");
    let assertion = form["client_assertion"].clone();
    let claims = jwt_claims(&assertion);
    assert_eq!(
        claims["sub"],
        format!("system:serviceaccount:{ns}:hub-identity")
    );
    assert_eq!(claims["aud"], json!(["api://AzureADTokenExchange"]));
    // The API server itself vouches for it.
    let review: k8s_openapi::api::authentication::v1::TokenReview = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": assertion, "audiences": ["api://AzureADTokenExchange"]}
    }))
    .expect("TokenReview");
    let reviews: Api<k8s_openapi::api::authentication::v1::TokenReview> =
        Api::all(cluster.client.clone());
    let status = cluster
        .rt
        .block_on(reviews.create(&Default::default(), &review))
        .expect("TokenReview")
        .status
        .expect("review status");
    assert_eq!(status.authenticated, Some(true), "{status:?}");
    assert_eq!(
        status.user.and_then(|u| u.username),
        Some(format!("system:serviceaccount:{ns}:hub-identity"))
    );

    // The event, with the exchanged token, at the real host name.
    let send = &received[1];
    assert_eq!(send.method, "POST");
    assert_eq!(send.path, "/flux-hub/messages");
    assert_eq!(
        send.headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some(format!("Bearer {ACCESS_TOKEN}").as_str())
    );
    let body: Value = serde_json::from_slice(&send.raw).expect("the event as JSON");
    assert_eq!(body["message"], "first");
    assert_eq!(body["involvedObject"]["namespace"], ns.as_str());
    let tunnels: Vec<String> = proxy
        .wait_for(2, WAIT)
        .into_iter()
        .map(|p| p.request_line)
        .collect();
    assert!(
        tunnels.contains(&"CONNECT login.example-cloud.test:443 HTTP/1.1".to_owned()),
        "{tunnels:?}"
    );
    assert!(
        tunnels.contains(&"CONNECT my-ns.servicebus.windows.net:443 HTTP/1.1".to_owned()),
        "{tunnels:?}"
    );

    // The cached token serves the next event: no second exchange.
    assert_eq!(
        herald
            .post(cluster.event("kustomization-error.json", "second"))
            .0,
        202
    );
    let received = sink.wait_for(3, WAIT);
    assert_eq!(received.len(), 3);
    assert_eq!(received[2].path, "/flux-hub/messages");
    assert_eq!(
        received[2]
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some(format!("Bearer {ACCESS_TOKEN}").as_str())
    );

    // Event Hubs answering 401 drops the cached token: herald exchanges the
    // ServiceAccount's token again and sends once more with the new one.
    const RENEWED: &str = "aad-access-token-s3cret-renewed-42";
    sink.script([
        Answer::status(401),
        Answer::status(200).body(format!(
            "{{\"token_type\":\"Bearer\",\"expires_in\":3599,\"access_token\":\"{RENEWED}\"}}"
        )),
    ]);
    assert_eq!(
        herald
            .post(cluster.event("kustomization-error.json", "third"))
            .0,
        202
    );
    let received = sink.wait_for(6, WAIT);
    assert_eq!(received.len(), 6, "{:#?}", herald.logs());
    let bearer = |r: &support::sink::Received| {
        r.headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(received[3].path, "/flux-hub/messages");
    assert_eq!(bearer(&received[3]), Some(format!("Bearer {ACCESS_TOKEN}")));
    assert_eq!(received[4].path, format!("/{TENANT}/oauth2/v2.0/token"));
    assert_eq!(received[5].path, "/flux-hub/messages");
    assert_eq!(bearer(&received[5]), Some(format!("Bearer {RENEWED}")));
    assert!(herald.wait_for_log("\"delivered\"", WAIT).is_some());

    // A missing ServiceAccount and a missing annotation fail the delivery,
    // named in the Alert's Warning Event.
    let note = |alert: &str| {
        cluster.wait_warning("NotificationDispatchFailed", alert)["note"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let missing = note("missing");
    assert!(
        missing.contains(&format!(
            "spec.serviceAccountName: ServiceAccount {ns}/nobody not found"
        )),
        "{missing}"
    );
    let unannotated = note("unannotated");
    assert!(
        unannotated.contains(&format!(
            "spec.serviceAccountName: ServiceAccount {ns}/no-client-id has no annotation \
             azure.workload.identity/client-id"
        )),
        "{unannotated}"
    );
    // Neither would reach Azure AD: the sink saw nothing more.
    assert_eq!(sink.received().len(), 6);

    // No token anywhere herald writes.
    let (_, metrics) = client::get(&format!("{}/metrics", herald.metrics));
    let mut shown: Vec<String> = herald.logs();
    shown.push(metrics);
    shown.extend(cluster.events().iter().map(Value::to_string));
    for kind in ["Alert", "Provider"] {
        for name in ["hub", "missing", "unannotated"] {
            let object = cluster.get("v1beta3", kind, name).expect("object");
            shown.push(object["status"].to_string());
        }
    }
    let signature = assertion.rsplit('.').next().expect("signature").to_owned();
    for text in &shown {
        assert!(!text.contains(ACCESS_TOKEN), "access token shown: {text}");
        assert!(!text.contains(RENEWED), "access token shown: {text}");
        assert!(
            !text.contains(&signature),
            "ServiceAccount token shown: {text}"
        );
    }
}

/// `azuredevops` with `spec.serviceAccountName` and no token: as Flux, herald
/// exchanges the ServiceAccount's token for an Azure AD token with Azure
/// DevOps' scope and uses it where the personal access token would go
/// (Basic, empty user name), for both the status read and write. Here
/// `AZURE_AUTHORITY_HOST` points straight at the lookalike.
#[test]
fn workload_identity_sets_azure_devops_commit_statuses_with_the_exchanged_token() {
    const ACCESS_TOKEN: &str = "aad-devops-token-s3cret-9876543210";
    const TENANT: &str = "tenant-for-devops";
    const CLIENT: &str = "client-for-devops";
    const SHA: &str = "731f7eaddfb6af01cb2173e18f0f75b0ba780ef1";
    let pki = support::tls::Pki::new();
    let sink = Sink::start_tls(pki.server_config(false));
    sink.script([
        Answer::status(200).body(format!(
            "{{\"token_type\":\"Bearer\",\"expires_in\":3599,\"access_token\":\"{ACCESS_TOKEN}\"}}"
        )),
        Answer::status(200).body("{\"count\":0,\"value\":[]}"),
    ]);
    sink.default_answer(Answer::status(201).body("{}"));
    let cluster = Cluster::shared("identity-devops");
    let ns = cluster.namespace.clone();
    let manifests = format!(
        "---\napiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\n\
         metadata: {{name: devops}}\n\
         spec: {{type: azuredevops, address: 'https://{}/org/proj/_git/repo', \
         serviceAccountName: devops-identity, certSecretRef: {{name: ca}}}}\n\
         ---\napiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
         metadata: {{name: devops}}\n\
         spec: {{providerRef: {{name: devops}}, eventSources: [{{kind: Kustomization, name: '*'}}]}}\n\
         ---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: devops-identity\n  annotations:\n    \
         azure.workload.identity/tenant-id: {TENANT}\n    azure.workload.identity/client-id: {CLIENT}\n\
         ---\napiVersion: v1\nkind: Secret\nmetadata: {{name: ca}}\nstringData:\n  ca.crt: {}\n",
        sink.authority(),
        serde_json::to_string(&pki.ca).expect("quoted"),
    );
    cluster.create_in(&ns, &manifests);
    let authority = format!("https://{}", sink.authority());
    let herald = cluster.start_herald_env(
        cluster.api.herald_kubeconfig(),
        "herald-test-0",
        &["--feature-gates=CacheSecretsAndConfigMaps=false,ObjectLevelWorkloadIdentity=true"],
        &[("AZURE_AUTHORITY_HOST", &authority)],
    );
    cluster.wait_reason("Provider", "devops", "True", "Succeeded");
    let mut event: Value =
        serde_json::from_str(&cluster.event("kustomization-error.json", "devops")).expect("event");
    event["metadata"]["kustomize.toolkit.fluxcd.io/revision"] = json!(format!("main@sha1:{SHA}"));
    assert_eq!(herald.post(event.to_string()).0, 202);
    let received = sink.wait_for(3, WAIT);
    assert_eq!(received.len(), 3, "{:#?}", herald.logs());
    assert_eq!(received[0].path, format!("/{TENANT}/oauth2/v2.0/token"));
    let form: std::collections::BTreeMap<String, String> =
        url::form_urlencoded::parse(&received[0].raw)
            .into_owned()
            .collect();
    assert_eq!(form["client_id"], CLIENT);
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(
        form["scope"],
        "499b84ac-1321-427f-aa17-267ca6975798/.default"
    );
    assert_eq!(
        jwt_claims(&form["client_assertion"])["sub"],
        format!("system:serviceaccount:{ns}:devops-identity")
    );
    use base64::Engine;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(":{ACCESS_TOKEN}"))
    );
    let statuses = format!("/org/proj/_apis/git/repositories/repo/commits/{SHA}/statuses");
    for (r, method) in [(&received[1], "GET"), (&received[2], "POST")] {
        assert_eq!(r.method, method);
        assert_eq!(r.path, statuses);
        assert_eq!(
            r.headers.get("authorization").and_then(|v| v.to_str().ok()),
            Some(basic.as_str())
        );
    }
    assert_eq!(received[2].body["state"], "error");
    for line in herald.logs() {
        assert!(!line.contains(ACCESS_TOKEN), "access token logged: {line}");
    }
}

/// Azure AD refusing the exchange (no federated credential matches the
/// ServiceAccount) fails the notification with the ServiceAccount, the
/// HTTP status and AAD's error code, and nothing of either token.
#[test]
fn workload_identity_refused_by_azure_ad_fails_naming_the_service_account() {
    let pki = support::tls::Pki::new();
    let sink = Sink::start_tls(pki.server_config(false));
    sink.default_answer(
        Answer::status(401)
            .header("content-type", "application/json")
            .body(
                "{\"error\":\"invalid_client\",\"error_description\":\"AADSTS700213: No matching \
                 federated identity record found for presented assertion subject\",\
                 \"error_codes\":[700213]}",
            ),
    );
    let cluster = Cluster::shared("identity-refused");
    let ns = cluster.namespace.clone();
    let manifests = format!(
        "---\napiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\n\
         metadata: {{name: hub}}\n\
         spec: {{type: azureeventhub, address: flux-hub, channel: my-ns.servicebus.windows.net, \
         serviceAccountName: unfederated, certSecretRef: {{name: ca}}}}\n\
         ---\napiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
         metadata: {{name: hub}}\n\
         spec: {{providerRef: {{name: hub}}, eventSources: [{{kind: Kustomization, name: '*'}}]}}\n\
         ---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: unfederated\n  annotations:\n    \
         azure.workload.identity/tenant-id: tenant-x\n    azure.workload.identity/client-id: client-x\n\
         ---\napiVersion: v1\nkind: Secret\nmetadata: {{name: ca}}\nstringData:\n  ca.crt: {}\n",
        serde_json::to_string(&pki.ca).expect("quoted"),
    );
    cluster.create_in(&ns, &manifests);
    let authority = format!("https://{}/", sink.authority());
    let herald = cluster.start_herald_env(
        cluster.api.herald_kubeconfig(),
        "herald-test-0",
        &["--feature-gates=ObjectLevelWorkloadIdentity=true"],
        &[("AZURE_AUTHORITY_HOST", &authority)],
    );
    cluster.wait_reason("Provider", "hub", "True", "Succeeded");
    assert_eq!(
        herald
            .post(cluster.event("kustomization-error.json", "refused"))
            .0,
        202
    );
    let event = cluster.wait_warning("NotificationDispatchFailed", "hub");
    let note = event["note"].as_str().unwrap_or_default();
    assert!(
        note.contains(&format!(
            "spec.serviceAccountName: ServiceAccount {ns}/unfederated: Azure AD token exchange \
             refused: HTTP 401 Unauthorized (invalid_client)"
        )),
        "{note}"
    );
    // Refused at once (401 is not retried): one exchange, no send.
    let received = sink.received();
    assert_eq!(received.len(), 1, "{received:#?}");
    assert_eq!(received[0].path, "/tenant-x/oauth2/v2.0/token");
    let form: std::collections::BTreeMap<String, String> =
        url::form_urlencoded::parse(&received[0].raw)
            .into_owned()
            .collect();
    let signature = form["client_assertion"]
        .rsplit('.')
        .next()
        .expect("signature")
        .to_owned();
    for line in herald.logs() {
        assert!(
            !line.contains(&signature),
            "ServiceAccount token logged: {line}"
        );
    }
    assert!(!event.to_string().contains(&signature));
}

/// `googlepubsub` with `spec.serviceAccountName`, as Flux outside GKE: the
/// ServiceAccount's workload identity provider annotation gives the
/// audience of its Kubernetes token, GCP STS exchanges that for a federated
/// token, IAM Credentials turns it into the annotated Google service
/// account's token, and the event is published with it. All three Google
/// hosts are reached by their real names through the Provider's proxy,
/// which forwards every host to the lookalike. A ServiceAccount with only
/// the GKE annotation (Flux would ask GKE's metadata server) fails naming
/// the missing annotation.
#[test]
fn workload_identity_publishes_to_pubsub_through_gcp_sts_and_impersonation() {
    const FEDERATED: &str = "sts-federated-token-s3cret-1111";
    const IMPERSONATED: &str = "ya29.impersonated-token-s3cret-2222";
    const PROVIDER: &str = "projects/123456789/locations/global/workloadIdentityPools/herald-pool/providers/herald-test";
    const EMAIL: &str = "flux-notify@my-project.iam.gserviceaccount.com";
    let pki = support::tls::Pki::new();
    let sink = Sink::start_tls(pki.server_config(false));
    let proxy = support::proxy::Proxy::start(Some(sink.authority()));
    sink.script([
        Answer::status(200).body(format!(
            "{{\"access_token\":\"{FEDERATED}\",\"issued_token_type\":\"urn:ietf:params:oauth:token-type:access_token\",\"token_type\":\"Bearer\",\"expires_in\":3599}}"
        )),
        Answer::status(200).body(format!(
            "{{\"accessToken\":\"{IMPERSONATED}\",\"expireTime\":\"2099-01-01T00:00:00Z\"}}"
        )),
    ]);
    sink.default_answer(Answer::status(200).body("{\"messageIds\":[\"1\"]}"));
    let cluster = Cluster::shared("identity-gcp");
    let ns = cluster.namespace.clone();
    let provider = |name: &str, account: &str| {
        format!(
            "---\napiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\n\
             metadata: {{name: {name}}}\n\
             spec: {{type: googlepubsub, address: my-project, channel: flux-topic, serviceAccountName: {account}, \
             certSecretRef: {{name: ca}}, proxySecretRef: {{name: proxy}}}}\n\
             ---\napiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
             metadata: {{name: {name}}}\n\
             spec: {{providerRef: {{name: {name}}}, eventSources: [{{kind: Kustomization, name: '*'}}]}}\n"
        )
    };
    let manifests = format!(
        "{}{}---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: pubsub-identity\n  annotations:\n    \
         gcp.auth.fluxcd.io/workload-identity-provider: {PROVIDER}\n    iam.gke.io/gcp-service-account: {EMAIL}\n\
         ---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: gke-only\n  annotations:\n    \
         iam.gke.io/gcp-service-account: {EMAIL}\n\
         ---\napiVersion: v1\nkind: Secret\nmetadata: {{name: ca}}\nstringData:\n  ca.crt: {}\n\
         ---\napiVersion: v1\nkind: Secret\nmetadata: {{name: proxy}}\nstringData:\n  address: {}\n",
        provider("pubsub", "pubsub-identity"),
        provider("gke", "gke-only"),
        serde_json::to_string(&pki.ca).expect("quoted"),
        proxy.url,
    );
    cluster.create_in(&ns, &manifests);
    let herald = cluster.start_herald(&["--feature-gates=ObjectLevelWorkloadIdentity=true"]);
    cluster.wait_reason("Provider", "pubsub", "True", "Succeeded");
    cluster.wait_reason("Provider", "gke", "True", "Succeeded");
    assert_eq!(
        herald
            .post(cluster.event("kustomization-error.json", "pubsub"))
            .0,
        202
    );
    let received = sink.wait_for(3, WAIT);
    assert_eq!(received.len(), 3, "{:#?}", herald.logs());
    let audience = format!("//iam.googleapis.com/{PROVIDER}");

    // STS: RFC 8693 token exchange of the ServiceAccount's token.
    let sts = &received[0];
    assert_eq!(
        (sts.method.as_str(), sts.path.as_str()),
        ("POST", "/v1/token")
    );
    let form: std::collections::BTreeMap<String, String> =
        url::form_urlencoded::parse(&sts.raw).into_owned().collect();
    let keys: Vec<&str> = form.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "audience",
            "grant_type",
            "requested_token_type",
            "scope",
            "subject_token",
            "subject_token_type"
        ]
    );
    assert_eq!(form["audience"], audience);
    assert_eq!(
        form["grant_type"],
        "urn:ietf:params:oauth:grant-type:token-exchange"
    );
    assert_eq!(
        form["requested_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(
        form["scope"],
        "https://www.googleapis.com/auth/cloud-platform"
    );
    assert_eq!(
        form["subject_token_type"],
        "urn:ietf:params:oauth:token-type:jwt"
    );
    let subject = form["subject_token"].clone();
    let claims = jwt_claims(&subject);
    assert_eq!(
        claims["sub"],
        format!("system:serviceaccount:{ns}:pubsub-identity")
    );
    assert_eq!(claims["aud"], json!([audience]));
    let review: k8s_openapi::api::authentication::v1::TokenReview = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": subject, "audiences": [audience]}
    }))
    .expect("TokenReview");
    let reviews: Api<k8s_openapi::api::authentication::v1::TokenReview> =
        Api::all(cluster.client.clone());
    let status = cluster
        .rt
        .block_on(reviews.create(&Default::default(), &review))
        .expect("TokenReview")
        .status
        .expect("review status");
    assert_eq!(status.authenticated, Some(true), "{status:?}");

    // IAM Credentials: impersonation with the federated token.
    let iam = &received[1];
    assert_eq!(iam.method, "POST");
    assert_eq!(
        iam.path,
        format!("/v1/projects/-/serviceAccounts/{EMAIL}:generateAccessToken")
    );
    assert_eq!(
        iam.headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some(format!("Bearer {FEDERATED}").as_str())
    );
    assert_eq!(
        iam.body,
        json!({
            "lifetime": "3600s",
            "scope": [
                "https://www.googleapis.com/auth/cloud-platform",
                "https://www.googleapis.com/auth/userinfo.email"
            ]
        })
    );

    // The publish, with the impersonated token.
    let publish = &received[2];
    assert_eq!(
        publish.path,
        "/v1/projects/my-project/topics/flux-topic:publish"
    );
    assert_eq!(
        publish
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some(format!("Bearer {IMPERSONATED}").as_str())
    );
    use base64::Engine;
    let data = base64::engine::general_purpose::STANDARD
        .decode(publish.body["messages"][0]["data"].as_str().expect("data"))
        .expect("base64 data");
    let event: Value = serde_json::from_slice(&data).expect("the event");
    assert_eq!(event["message"], "pubsub");
    let tunnels: Vec<String> = proxy
        .wait_for(3, WAIT)
        .into_iter()
        .map(|p| p.request_line)
        .collect();
    for host in ["sts", "iamcredentials", "pubsub"] {
        let line = format!("CONNECT {host}.googleapis.com:443 HTTP/1.1");
        assert!(tunnels.contains(&line), "{tunnels:?}");
    }

    // Cached: the next event is only a publish.
    assert_eq!(
        herald
            .post(cluster.event("kustomization-error.json", "again"))
            .0,
        202
    );
    let received = sink.wait_for(4, WAIT);
    assert_eq!(received.len(), 4);
    assert_eq!(
        received[3].path,
        "/v1/projects/my-project/topics/flux-topic:publish"
    );

    // GKE's own pool is not read from a metadata server: named.
    let note = cluster.wait_warning("NotificationDispatchFailed", "gke")["note"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        note.contains(&format!(
            "spec.serviceAccountName: ServiceAccount {ns}/gke-only has no annotation \
             gcp.auth.fluxcd.io/workload-identity-provider"
        )),
        "{note}"
    );
    assert_eq!(sink.received().len(), 4);
    let signature = subject.rsplit('.').next().expect("signature").to_owned();
    let mut shown = herald.logs();
    shown.extend(cluster.events().iter().map(Value::to_string));
    for text in &shown {
        for secret in [FEDERATED, IMPERSONATED, signature.as_str()] {
            assert!(!text.contains(secret), "token shown: {text}");
        }
    }
}

/// `eventSeverity` is checked by the API server as strictly as Flux's
/// enum: a typo, a number, a map, an unknown list item or an empty list is
/// refused, with a message quoting the value.
#[test]
fn the_api_server_refuses_a_mistyped_event_severity() {
    let cluster = Cluster::shared("severity-schema");
    let alert = |name: &str, severity: Value| {
        json!({
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
            "kind": "Alert",
            "metadata": {"name": name},
            "spec": {
                "providerRef": {"name": "slack"},
                "eventSources": [{"kind": "Kustomization", "name": "*"}],
                "eventSeverity": severity
            }
        })
    };
    let create = |object: Value| {
        cluster.rt.block_on(kubeapi::create_objects(
            &cluster.client,
            &[object],
            Some(&cluster.namespace),
        ))
    };
    for (i, bad) in [
        json!("erorr"),
        json!(5),
        json!({"a": 1}),
        json!(["info", "erorr"]),
        json!([]),
        json!(["info", "warn", "error", "trace", "info"]),
    ]
    .into_iter()
    .enumerate()
    {
        let refused = create(alert(&format!("bad-{i}"), bad.clone()))
            .expect_err(&format!("eventSeverity {bad} was accepted"));
        let message = format!("{refused:#}");
        assert!(
            message.contains("spec.eventSeverity") && message.contains("Unsupported value"),
            "{bad}: {message}"
        );
        if bad == json!("erorr") {
            assert!(message.contains("\"erorr\""), "{message}");
            eprintln!("refused: {message}");
        }
    }
    for (i, good) in [
        json!("info"),
        json!("trace"),
        json!(["warn"]),
        json!(["info", "error"]),
    ]
    .into_iter()
    .enumerate()
    {
        create(alert(&format!("good-{i}"), good.clone()))
            .unwrap_or_else(|e| panic!("eventSeverity {good} was refused: {e:#}"));
    }
}

/// The CRDs with Alert's and Provider's `spec` left unchecked, as a
/// looser schema (an older one, Flux's, a hand-edited one) lets objects in
/// that herald's types do not accept.
fn loosened_crds() -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/crds.yaml"))
        .expect("crds/crds.yaml");
    let mut crds = kubeapi::documents(&text).expect("CRD YAML");
    for crd in &mut crds {
        for version in crd["spec"]["versions"].as_array_mut().expect("versions") {
            version["schema"]["openAPIV3Schema"]["properties"]["spec"] =
                json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        }
    }
    crds
}

const UNDECODABLE: &str = r#"
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: typo}
spec:
  providerRef: {name: slack}
  eventSources: [{kind: Kustomization, name: "*"}]
  eventSeverity: erorr
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: broken}
spec: {type: {a: 1}}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: uses-broken}
spec:
  providerRef: {name: broken}
  eventSources: [{kind: Kustomization, name: "*"}]
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: second}
spec:
  providerRef: {name: slack}
  eventSources: [{kind: HelmRelease, name: "*"}]
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata: {name: hook}
spec: {type: 5, resources: [{kind: GitRepository, name: app}]}
"#;

/// Objects the API server holds but herald's types do not accept (stored
/// under a looser schema): each is `Ready=False` naming the field and the
/// value, with a Warning Event, and every other Alert keeps delivering —
/// while running, after a restart, and in `route --cluster` and
/// `--explain`. No log line carries an object's body.
#[test]
fn an_undecodable_object_is_its_own_problem_also_after_a_restart() {
    let cluster = Cluster::dedicated("flux-system", &[]);
    let sink = Sink::start();
    let loose = loosened_crds();
    cluster
        .rt
        .block_on(kubeapi::apply_objects(&cluster.client, &loose, None))
        .expect("apply the loosened CRDs");
    std::thread::sleep(Duration::from_secs(1));
    cluster.create_seed(&SEED_IN_NAMESPACE, &sink.url);
    cluster.create(UNDECODABLE);

    let mut herald = cluster.start_herald(&[]);
    let check_everything = |herald: &Herald| {
        cluster.wait_ready("Alert", "flux-alerts", "True");
        cluster.wait_ready("Alert", "second", "True");
        let typo = cluster.wait_reason("Alert", "typo", "False", "InvalidSpec");
        let message = typo["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("spec.eventSeverity") && message.contains("\"erorr\""),
            "{typo}"
        );
        let broken = cluster.wait_reason("Provider", "broken", "False", "InvalidSpec");
        assert!(
            broken["message"]
                .as_str()
                .unwrap_or_default()
                .contains("spec.type"),
            "{broken}"
        );
        cluster.wait_reason("Alert", "uses-broken", "False", "ProviderNotReady");
        // On an Alert, Flux's reason for a wrong Alert, herald's in the note.
        let typo = cluster.wait_warning("InvalidConfig", "typo");
        assert!(
            typo["note"]
                .as_str()
                .unwrap_or_default()
                .starts_with("InvalidSpec: "),
            "{typo}"
        );
        cluster.wait_warning("InvalidSpec", "broken");
        let deadline = Instant::now() + WAIT;
        loop {
            let receiver = cluster.get("v1", "Receiver", "hook").expect("the Receiver");
            let ready = receiver["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned());
            if let Some(ready) = ready.filter(|r| r["reason"] == "InvalidSpec") {
                assert_eq!(ready["status"], "False", "{ready}");
                assert!(
                    ready["message"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("spec.type"),
                    "{ready}"
                );
                break;
            }
            assert!(Instant::now() < deadline, "Receiver status: {receiver}");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            deliver_within(&cluster, herald, &sink, "kustomization-error.json", WAIT).is_some(),
            "nothing delivered beside an undecodable Alert"
        );
    };
    check_everything(&herald);

    // While running: a valid Alert edited into an invalid one is reported
    // at its new generation; the others keep working.
    cluster.patch("Alert", "second", json!({"spec": {"eventSeverity": 5}}));
    let second = cluster.wait_reason("Alert", "second", "False", "InvalidSpec");
    let object = cluster.get("v1beta3", "Alert", "second").expect("second");
    assert_eq!(
        second["observedGeneration"], object["metadata"]["generation"],
        "{second}"
    );
    assert!(deliver_within(&cluster, &herald, &sink, "kustomization-error.json", WAIT).is_some());
    cluster.patch(
        "Alert",
        "second",
        json!({"spec": {"eventSeverity": "info"}}),
    );
    cluster.wait_ready("Alert", "second", "True");

    // After a restart, with the strict CRDs back (the objects stay as stored).
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/crds.yaml"))
        .expect("crds/crds.yaml");
    let strict = kubeapi::documents(&text).expect("CRD YAML");
    cluster
        .rt
        .block_on(kubeapi::apply_objects(&cluster.client, &strict, None))
        .expect("apply the CRDs");
    herald.kill();
    let herald = cluster.start_herald(&[]);
    check_everything(&herald);
    for line in herald.logs() {
        assert!(
            line.len() < 2_000 && !line.contains("\"apiVersion\""),
            "an object's body in the log: {line}"
        );
    }

    // route --cluster: the valid Alert routes, the invalid one is named.
    let event = cluster.dir.path().join("event.json");
    std::fs::write(&event, cluster.event("kustomization-error.json", "routed")).expect("event");
    let kubeconfig = cluster.api.herald_kubeconfig().to_path_buf();
    let route = |extra: &[&str]| {
        let output = std::process::Command::new(support::herald::binary())
            .args(["route", "--cluster", "--kubeconfig"])
            .arg(&kubeconfig)
            .args(["--namespace", &cluster.namespace])
            .args(extra)
            .arg(&event)
            .output()
            .expect("run herald route");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = route(&[]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("\"alert\":\"flux-system/flux-alerts\""),
        "{stdout}"
    );
    assert!(
        stderr.contains("Alert flux-system/typo") && stderr.contains("spec.eventSeverity"),
        "{stderr}"
    );
    let (code, stdout, stderr) = route(&["--explain"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let typo_line = stdout
        .lines()
        .find(|l| l.contains("flux-system/typo"))
        .unwrap_or_else(|| panic!("--explain leaves out the invalid Alert: {stdout}"));
    assert!(typo_line.contains("erorr"), "{typo_line}");
}

/// `--kubeconfig=PATH`, as Flux's controllers take it, is used (over a
/// `KUBECONFIG` that points nowhere).
#[test]
fn the_kubeconfig_flag_is_used() {
    let cluster = Cluster::shared("kubeconfig-flag");
    let sink = Sink::start();
    cluster.create_seed(&SEED_IN_NAMESPACE, &sink.url);
    let flag = format!("--kubeconfig={}", cluster.api.herald_kubeconfig().display());
    let herald = Herald::start(
        &[
            "controller".to_owned(),
            flag,
            "--watch-all-namespaces=false".to_owned(),
        ],
        &[
            ("KUBECONFIG", "/nonexistent/kubeconfig"),
            ("POD_NAME", "kubeconfig-flag"),
            ("RUNTIME_NAMESPACE", cluster.namespace.as_str()),
        ],
    );
    cluster.wait_ready("Alert", "flux-alerts", "True");
    assert!(
        deliver_within(&cluster, &herald, &sink, "kustomization-error.json", WAIT).is_some(),
        "{:#?}",
        herald.logs()
    );
    assert!(
        !herald
            .logs()
            .iter()
            .any(|l| l.contains("not implemented by herald")),
        "--kubeconfig was ignored"
    );
}

/// With many objects at start-up, each object's status is written once:
/// a second build before the watch shows the first write does not write
/// the same `Ready=True` again, and `lastTransitionTime` stays put.
#[test]
fn each_status_is_written_once_at_start_up_with_many_objects() {
    let cluster = Cluster::shared("status-once");
    let sink = Sink::start();
    let count = 200;
    let mut yaml = secret_yaml("hook", &sink.url);
    for i in 0..count {
        yaml.push_str(&format!(
            r#"---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {{name: p{i}}}
spec: {{type: slack, secretRef: {{name: hook}}}}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {{name: a{i}}}
spec:
  providerRef: {{name: p{i}}}
  eventSources: [{{kind: Kustomization, name: "app-{i}"}}]
"#
        ));
    }
    cluster.create(&yaml);
    let _herald = cluster.start_herald(&[]);
    for i in 0..count {
        cluster.wait_ready("Alert", &format!("a{i}"), "True");
        cluster.wait_ready("Provider", &format!("p{i}"), "True");
    }
    let first = cluster.ready_condition("Alert", "a0").expect("condition");
    // Later builds (Secrets read, status echoes) have had time to run.
    std::thread::sleep(Duration::from_secs(3));
    let mut twice = Vec::new();
    for i in 0..count {
        for (plural, name) in [("alerts", format!("a{i}")), ("providers", format!("p{i}"))] {
            let writes = cluster.api.status_writes(plural, &cluster.namespace, &name);
            if writes != 1 {
                twice.push(format!("{plural}/{name}: {writes}"));
            }
        }
    }
    assert!(twice.is_empty(), "status written more than once: {twice:?}");
    let later = cluster.ready_condition("Alert", "a0").expect("condition");
    assert_eq!(
        first["lastTransitionTime"], later["lastTransitionTime"],
        "{first} {later}"
    );
}

/// The API server away for 20 s (every connection refused), then back:
/// every watch re-lists within seconds of it answering, so an Alert edited
/// right after takes effect within 5 s; each watch logs one WARN for the
/// outage and one INFO when it works again, not a line per retry.
#[test]
fn watches_recover_within_seconds_after_an_api_server_outage() {
    let (cluster, sink, proxy, herald) = behind_a_proxy(&[]);

    proxy.pause();
    // Events are still accepted and delivered while the server is away.
    std::thread::sleep(Duration::from_secs(10));
    assert!(deliver_within(&cluster, &herald, &sink, "kustomization-error.json", WAIT).is_some());
    std::thread::sleep(Duration::from_secs(10));
    proxy.resume();
    let resumed = Instant::now();
    // The Alert, the Provider and its Secret all edited right away: each
    // watch must see its change.
    cluster.patch(
        "Alert",
        "flux-alerts",
        json!({"spec": {"eventSeverity": "info"}}),
    );
    cluster.patch("Provider", "slack", json!({"spec": {"channel": "#after"}}));
    let rotated = Sink::start();
    cluster
        .rt
        .block_on(cluster.secrets().patch(
            "slack-url",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"url": rotated.url}})),
        ))
        .expect("rotate the Secret");
    loop {
        let took = deliver_within(
            &cluster,
            &herald,
            &rotated,
            "kustomization-info.json",
            Duration::from_millis(200),
        );
        if took.is_some()
            && rotated
                .received()
                .last()
                .is_some_and(|r| r.body["channel"] == "#after")
        {
            break;
        }
        assert!(
            resumed.elapsed() < Duration::from_secs(5),
            "edits made after the outage did not all take effect within 5 s: {:#?}",
            herald.logs()
        );
    }
    eprintln!(
        "an edit took effect {:?} after the API server answered again",
        resumed.elapsed()
    );
    let logs = || -> Vec<Value> {
        herald
            .logs()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    // Every watch works again within 5 s of the server answering.
    while !["Alert", "Provider", "Secret"].iter().all(|kind| {
        logs()
            .iter()
            .any(|l| l["kind"] == *kind && l["message"] == "watch works again")
    }) {
        assert!(
            resumed.elapsed() < Duration::from_secs(5),
            "not every watch works again 5 s after the outage: {:#?}",
            herald.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let logs = logs();
    for kind in ["Alert", "Provider", "Secret"] {
        // The watch's own lines (a status write the outage failed has its
        // own warning).
        let warnings: Vec<&Value> = logs
            .iter()
            .filter(|l| {
                l["kind"] == kind
                    && l["level"] == "WARN"
                    && l["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("watch"))
            })
            .collect();
        assert_eq!(
            warnings.len(),
            1,
            "{kind}: {} WARN lines for one outage: {warnings:#?}",
            warnings.len()
        );
        assert!(
            logs.iter()
                .any(|l| l["kind"] == kind && l["message"] == "watch works again"),
            "{kind}: no line saying the watch works again"
        );
    }
}

const KSTATUS_SETUP: &str = r#"
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: paused}
spec: {type: slack, suspend: true, secretRef: {name: slack-url}}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: switched-off}
spec:
  suspend: true
  providerRef: {name: slack}
  eventSources: [{kind: Kustomization, name: "*"}]
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: via-paused}
spec:
  providerRef: {name: paused}
  eventSources: [{kind: Kustomization, name: "*"}]
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: bad-regex}
spec:
  providerRef: {name: slack}
  eventSources: [{kind: Kustomization, name: "*"}]
  inclusionList: ["(unclosed"]
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: no-provider}
spec:
  providerRef: {name: not-yet}
  eventSources: [{kind: Kustomization, name: "*"}]
"#;

/// kstatus's own rules (`sigs.k8s.io/cli-utils/pkg/kstatus`, what Flux's
/// health checks use) on herald's status: a ready object and a suspended
/// one (or one whose Provider is suspended) are Current, so suspending
/// never fails a Kustomization; an invalid configuration is Failed at
/// once (Stalled); a missing Provider, which another apply may bring, is
/// InProgress.
#[test]
fn kstatus_reads_suspended_as_current_and_invalid_as_failed() {
    let sink = Sink::start();
    let (cluster, _herald) = seeded("kstatus", &sink, &[]);
    cluster.create(KSTATUS_SETUP);
    cluster.wait_ready("Provider", "paused", "True");
    cluster.wait_ready("Alert", "switched-off", "True");
    cluster.wait_ready("Alert", "via-paused", "True");
    cluster.wait_reason("Alert", "bad-regex", "False", "InvalidRegex");
    cluster.wait_reason("Alert", "no-provider", "False", "ProviderNotFound");
    let objects = [
        ("Alert", "flux-alerts", "Current"),
        ("Provider", "slack", "Current"),
        ("Provider", "paused", "Current"),
        ("Alert", "switched-off", "Current"),
        ("Alert", "via-paused", "Current"),
        ("Alert", "bad-regex", "Failed"),
        ("Alert", "no-provider", "InProgress"),
    ];
    let read: Vec<Value> = objects
        .iter()
        .map(|(kind, name, _)| cluster.get("v1beta3", kind, name).expect("object"))
        .collect();
    let results = kubeapi::kstatus(&read);
    assert_eq!(results.len(), objects.len());
    for ((kind, name, expected), result) in objects.iter().zip(&results) {
        assert_eq!(
            result["status"], *expected,
            "kstatus reads {kind} {name} as {result}"
        );
    }
}

/// A generic Receiver `hook` (with its Secret), once herald has given it
/// its webhook path.
fn create_ready_receiver(cluster: &Cluster) {
    cluster.create(
        r#"
apiVersion: v1
kind: Secret
metadata: {name: hook-token}
stringData: {token: a-token}
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata: {name: hook}
spec:
  type: generic
  secretRef: {name: hook-token}
  resources: [{kind: GitRepository, name: app}]
"#,
    );
    let deadline = Instant::now() + WAIT;
    while cluster
        .get("v1", "Receiver", "hook")
        .is_none_or(|r| r["status"]["webhookPath"].is_null())
    {
        assert!(Instant::now() < deadline, "the Receiver never got ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `flux reconcile` sets `reconcile.fluxcd.io/requestedAt` and waits for
/// `status.lastHandledReconcileAt` to echo it: herald handles the request
/// at once (a rebuild, as Flux's ReconcileRequestedPredicate triggers one)
/// for Alerts, Providers and Receivers.
#[test]
fn reconcile_requests_are_handled_at_once_for_every_kind() {
    let sink = Sink::start();
    let (cluster, _herald) = seeded("reconcile-request", &sink, &[]);
    create_ready_receiver(&cluster);
    let handled = |version: &str, kind: &str, name: &str| {
        cluster.get(version, kind, name).and_then(|o| {
            o["status"]["lastHandledReconcileAt"]
                .as_str()
                .map(str::to_owned)
        })
    };
    for (version, kind, name) in [
        ("v1", "Receiver", "hook"),
        ("v1beta3", "Alert", "flux-alerts"),
        ("v1beta3", "Provider", "slack"),
    ] {
        let requested = format!("2026-12-05T10:00:00.{}Z", name.len());
        let api = cluster.notification_api(version, kind);
        cluster
            .rt
            .block_on(api.patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {
                    "reconcile.fluxcd.io/requestedAt": requested
                }}})),
            ))
            .unwrap_or_else(|e| panic!("annotate {kind} {name}: {e}"));
        let asked = Instant::now();
        while handled(version, kind, name).as_deref() != Some(requested.as_str()) {
            assert!(
                asked.elapsed() < Duration::from_secs(5),
                "{kind} {name}: lastHandledReconcileAt is {:?}, not {requested}",
                handled(version, kind, name)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The flux CLI (built from its Go module) against herald: `get`,
/// `suspend` and `resume` for alerts, alert-providers and receivers, and
/// `reconcile receiver`, each command's exit status and output checked.
#[test]
fn the_flux_cli_works_against_herald() {
    let sink = Sink::start();
    let (cluster, _herald) = seeded("flux-cli", &sink, &[]);
    create_ready_receiver(&cluster);
    let flux = |args: &[&str]| {
        let output = std::process::Command::new(kubeapi::flux_binary())
            .args(args)
            .arg("--kubeconfig")
            .arg(&cluster.api.endpoints.admin)
            .args(["--namespace", &cluster.namespace, "--timeout", "30s"])
            .output()
            .expect("run flux");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "flux {}: {text}", args.join(" "));
        text
    };
    for (kind, name) in [
        ("alerts", "flux-alerts"),
        ("alert-providers", "slack"),
        ("receivers", "hook"),
    ] {
        let listed = flux(&["get", kind]);
        let row = listed
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("flux get {kind}: no {name}: {listed}"));
        assert!(row.contains("True"), "flux get {kind}: {row}");
    }
    for (kind, name) in [
        ("alert", "flux-alerts"),
        ("alert-provider", "slack"),
        ("receiver", "hook"),
    ] {
        let suspended = flux(&["suspend", kind, name]);
        assert!(suspended.contains("suspended"), "{suspended}");
        let resumed = flux(&["resume", kind, name]);
        assert!(resumed.contains("resumed"), "{resumed}");
    }
    let reconciled = flux(&["reconcile", "receiver", "hook"]);
    assert!(
        reconciled.contains("Receiver reconciliation completed"),
        "{reconciled}"
    );
}

/// Objects at v1beta3 and at v1, as a moving cluster has them.
const MOVED: &str = r#"
apiVersion: notification.toolkit.fluxcd.io/VERSION
kind: Provider
metadata: {name: slack}
spec: {type: slack, secretRef: {name: slack-url}}
---
apiVersion: notification.toolkit.fluxcd.io/VERSION
kind: Alert
metadata: {name: flux-alerts}
spec:
  providerRef: {name: slack}
  eventSeverity: error
  eventSources: [{kind: Kustomization, name: "*"}]
"#;

/// A cluster moving to herald's CRDs from Flux 2.9's (v1beta3 stored) and
/// from Flux 2.10's (v1 stored) keeps every object: each reads at v1beta3
/// and at v1 and routes.
#[test]
fn clusters_moving_from_flux_2_9_and_2_10_crds_keep_every_object() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let cluster = Cluster::dedicated("flux-system", &[]);
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    let ours = kubeapi::documents(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/crds.yaml"))
            .expect("crds"),
    )
    .expect("CRD YAML");
    for (flux_dir, stored) in [("flux-crds", "v1beta3"), ("flux-crds-v1.10", "v1")] {
        // Flux's CRDs alone, as the cluster had them.
        for name in [
            "alerts.notification.toolkit.fluxcd.io",
            "providers.notification.toolkit.fluxcd.io",
        ] {
            let _ = cluster
                .rt
                .block_on(crds.delete(name, &DeleteParams::default()));
            let deadline = Instant::now() + WAIT;
            while cluster
                .rt
                .block_on(crds.get_opt(name))
                .expect("get crd")
                .is_some()
            {
                assert!(Instant::now() < deadline, "{name} not deleted");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let mut flux = Vec::new();
        for file in ["alerts.yaml", "providers.yaml"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(flux_dir)
                .join(file);
            flux.extend(
                kubeapi::documents(&std::fs::read_to_string(path).expect("flux crd"))
                    .expect("flux CRD YAML"),
            );
        }
        cluster.rt.block_on(async {
            kubeapi::apply_objects(&cluster.client, &flux, None)
                .await
                .expect("apply Flux's CRDs");
            kubeapi::wait_established(&cluster.client, &flux)
                .await
                .expect("Flux's CRDs established");
        });
        let sink = Sink::start();
        if flux_dir == "flux-crds" {
            cluster.create(&secret_yaml("slack-url", &sink.url));
        } else {
            cluster
                .rt
                .block_on(cluster.secrets().patch(
                    "slack-url",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"stringData": {"url": sink.url}})),
                ))
                .expect("point the Secret at the sink");
        }
        cluster.create(&MOVED.replace("VERSION", stored));

        // Then herald's.
        cluster.rt.block_on(async {
            kubeapi::apply_objects(&cluster.client, &ours, None)
                .await
                .expect("apply herald's CRDs");
            kubeapi::wait_established(&cluster.client, &ours)
                .await
                .expect("herald's CRDs established");
        });
        for version in ["v1beta3", "v1"] {
            let alert = cluster
                .get(version, "Alert", "flux-alerts")
                .unwrap_or_else(|| panic!("stored at {stored}: not readable at {version}"));
            assert_eq!(alert["spec"]["providerRef"]["name"], "slack", "{alert}");
        }
        let herald = cluster.start_herald(&[]);
        cluster.wait_ready("Alert", "flux-alerts", "True");
        assert!(
            deliver_within(&cluster, &herald, &sink, "kustomization-error.json", WAIT).is_some(),
            "stored at {stored}: not routed under herald's CRDs"
        );
    }
}
