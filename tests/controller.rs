//! `herald controller` against the in-process test API server: the seed
//! fixtures created through a real kube client, events POSTed over HTTP,
//! notifications received by recording sinks.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use support::apiserver::{TestApiServer, create_yaml};
use support::herald::{Herald, client};
use support::sink::{Answer, Sink};
use support::{event_file, fixtures};

/// What the issue asks changes to take effect within.
const PROPAGATION: Duration = Duration::from_secs(2);
const WAIT: Duration = Duration::from_secs(15);
const NOTIFICATION: &str = "notification.toolkit.fluxcd.io";

/// A runtime for the test's own kube client calls (tests are synchronous).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

struct Cluster {
    api: TestApiServer,
    rt: tokio::runtime::Runtime,
    client: kube::Client,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Self {
        let api = TestApiServer::start();
        let rt = runtime();
        let client = rt.block_on(async { api.client() });
        Self {
            api,
            rt,
            client,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn kubeconfig(&self) -> std::path::PathBuf {
        self.api.kubeconfig(self.dir.path())
    }

    fn create(&self, yaml: &str) {
        self.rt
            .block_on(create_yaml(&self.client, yaml))
            .expect("create objects");
    }

    /// Creates seed fixture files, with the Slack Secret pointing at `webhook`.
    fn create_seed(&self, files: &[&str], webhook: &str) {
        for file in files {
            let text =
                std::fs::read_to_string(fixtures().join("seed").join(file)).expect("seed fixture");
            self.create(&text.replace(
                "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
                webhook,
            ));
        }
    }

    fn ready_condition(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let object = self.api.object(NOTIFICATION, plural, namespace, name)?;
        object["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Ready")
            .cloned()
    }

    /// Waits until the object's Ready condition has this status (and reason).
    fn wait_ready(
        &self,
        plural: &str,
        namespace: &str,
        name: &str,
        status: &str,
        reason: Option<&str>,
        timeout: Duration,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let condition = self.ready_condition(plural, namespace, name);
            if let Some(c) = &condition
                && c["status"] == status
                && reason.is_none_or(|r| c["reason"] == r)
            {
                return c.clone();
            }
            assert!(
                Instant::now() < deadline,
                "{plural} {namespace}/{name}: Ready is {condition:?}, expected {status} {reason:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

const SEED_ONE_ALERT: [&str; 5] = [
    "00-namespace.yaml",
    "01-kustomization.yaml",
    "02-provider.yaml",
    "03-alert.yaml",
    "04-secret.yaml",
];

fn event_body(file: &str, message: &str) -> String {
    let mut event: Value =
        serde_json::from_str(&std::fs::read_to_string(event_file(file)).expect("event"))
            .expect("json");
    event["message"] = Value::from(message);
    event.to_string()
}

/// Posts distinct events until one reaches `sink` or the timeout passes;
/// returns how long it took.
fn deliver_within(herald: &Herald, sink: &Sink, file: &str, timeout: Duration) -> Option<Duration> {
    let start = Instant::now();
    let before = sink.received().len();
    let mut n = 0;
    while start.elapsed() < timeout {
        n += 1;
        assert_eq!(herald.post(event_body(file, &format!("probe {n}"))).0, 202);
        if sink.wait_for(before + 1, Duration::from_millis(100)).len() > before {
            return Some(start.elapsed());
        }
    }
    None
}

fn start_controller(cluster: &Cluster, extra: &[&str]) -> Herald {
    let herald = Herald::controller(
        &cluster.kubeconfig(),
        extra,
        &[("POD_NAME", "herald-test-0")],
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

/// The seed's Provider, Secret (pointing at `sink`) and error Alert, and a
/// controller that has reported the Alert ready.
fn seeded_controller(sink: &Sink) -> (Cluster, Herald) {
    let cluster = Cluster::start();
    cluster.create_seed(&SEED_ONE_ALERT, &sink.url);
    let herald = start_controller(&cluster, &[]);
    cluster.wait_ready("alerts", "flux-system", "flux-alerts", "True", None, WAIT);
    (cluster, herald)
}

#[test]
fn seed_fixtures_deliver_one_message_and_report_ready() {
    let cluster = Cluster::start();
    let sink = Sink::start();
    cluster.create_seed(&SEED_ONE_ALERT, &sink.url);
    // Flux's own Deployment args, including flags herald does not implement.
    let herald = start_controller(
        &cluster,
        &[
            "--watch-all-namespaces=true",
            "--log-level=debug",
            "--log-encoding=json",
            "--enable-leader-election=false",
            "--storage-path=/data",
            "--concurrent=4",
        ],
    );
    assert!(
        herald.wait_for_log("--storage-path=/data", WAIT).is_some(),
        "unknown Flux flag not warned about"
    );
    let provider = cluster.wait_ready("providers", "flux-system", "slack", "True", None, WAIT);
    assert_eq!(provider["reason"], "Succeeded");
    cluster.wait_ready("alerts", "flux-system", "flux-alerts", "True", None, WAIT);
    let object = cluster
        .api
        .object(NOTIFICATION, "alerts", "flux-system", "flux-alerts")
        .expect("alert");
    assert_eq!(
        object["status"]["observedGeneration"],
        object["metadata"]["generation"]
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
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.received().len(), 1);

    // Status is written once, not on every rebuild.
    let status_writes = |api: &TestApiServer| {
        api.requests()
            .iter()
            .filter(|r| r.method == "PATCH" && r.path.ends_with("/status"))
            .count()
    };
    let writes = status_writes(&cluster.api);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        status_writes(&cluster.api),
        writes,
        "status rewritten without a change"
    );
    herald.assert_no_secret_in_logs();
}

#[test]
fn deleting_and_recreating_the_secret() {
    let cluster = Cluster::start();
    let sink = Sink::start();
    cluster.create_seed(&SEED_ONE_ALERT, &sink.url);
    let herald = start_controller(&cluster, &[]);
    cluster.wait_ready("providers", "flux-system", "slack", "True", None, WAIT);

    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), "flux-system");
    cluster
        .rt
        .block_on(secrets.delete("slack-url", &DeleteParams::default()))
        .expect("delete secret");
    let condition = cluster.wait_ready(
        "providers",
        "flux-system",
        "slack",
        "False",
        Some("SecretNotFound"),
        PROPAGATION,
    );
    assert!(
        condition["message"]
            .as_str()
            .unwrap_or_default()
            .contains("flux-system/slack-url"),
        "{condition}"
    );
    cluster.wait_ready(
        "alerts",
        "flux-system",
        "flux-alerts",
        "False",
        Some("ProviderNotReady"),
        PROPAGATION,
    );

    // Events are not delivered while the Provider is broken.
    assert_eq!(
        herald
            .post(event_body("kustomization-error.json", "while broken"))
            .0,
        202
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(sink.received().is_empty());

    // A Warning Event names the cause.
    let deadline = Instant::now() + WAIT;
    loop {
        let warned = cluster.api.requests().iter().any(|r| {
            r.method == "POST"
                && r.path.contains("/events")
                && r.body["reason"] == "SecretNotFound"
                && r.body["type"] == "Warning"
                && r.body["regarding"]["name"] == "slack"
        });
        if warned {
            break;
        }
        assert!(Instant::now() < deadline, "no SecretNotFound Warning Event");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Re-created with another address: routed there.
    let other = Sink::start();
    cluster.create(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: slack-url, namespace: flux-system}}\nstringData: {{url: \"{}\"}}\n",
        other.url
    ));
    let took = deliver_within(&herald, &other, "kustomization-error.json", PROPAGATION);
    assert!(
        took.is_some(),
        "the re-created Secret was not used within {PROPAGATION:?}"
    );
    cluster.wait_ready("providers", "flux-system", "slack", "True", None, WAIT);
    assert!(sink.received().is_empty());
}

#[test]
fn editing_and_deleting_the_alert() {
    let sink = Sink::start();
    let (cluster, herald) = seeded_controller(&sink);

    // Info is not delivered at `eventSeverity: error`...
    assert_eq!(
        herald
            .post(event_body("kustomization-info.json", "before edit"))
            .0,
        202
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(sink.received().is_empty());
    // ...and is within 2 s of lowering the threshold.
    let alert_api: Api<herald::api::Alert> = Api::namespaced(cluster.client.clone(), "flux-system");
    cluster
        .rt
        .block_on(alert_api.patch(
            "flux-alerts",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"eventSeverity": "info"}})),
        ))
        .expect("patch alert");
    assert!(
        deliver_within(&herald, &sink, "kustomization-info.json", PROPAGATION).is_some(),
        "eventSeverity edit not applied in time"
    );

    // Deleting the Alert stops delivery within 2 s.
    cluster
        .rt
        .block_on(alert_api.delete("flux-alerts", &DeleteParams::default()))
        .expect("delete alert");
    std::thread::sleep(PROPAGATION);
    let before = sink.received().len();
    assert_eq!(
        herald
            .post(event_body("kustomization-error.json", "after delete"))
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

#[test]
fn dropped_watches_and_410_gone_recover_without_restart() {
    let sink = Sink::start();
    let (cluster, herald) = seeded_controller(&sink);

    cluster.api.clear_requests();
    cluster.api.drop_watches();
    cluster.api.compact();
    // Changed while herald's watches are down.
    let alert_api: Api<herald::api::Alert> = Api::namespaced(cluster.client.clone(), "flux-system");
    cluster
        .rt
        .block_on(alert_api.patch(
            "flux-alerts",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"eventSeverity": "info"}})),
        ))
        .expect("patch alert");
    cluster.api.compact();
    assert!(
        deliver_within(&herald, &sink, "kustomization-info.json", WAIT).is_some(),
        "herald did not pick up the change after its watches dropped"
    );
    let relisted = cluster.api.requests().iter().any(|r| {
        r.method == "GET" && r.path.ends_with("/alerts") && r.query_param("watch").is_none()
    });
    assert!(relisted, "no re-list of Alerts after 410 Gone");
    assert!(herald.logs().iter().all(|l| !l.contains("panicked")));
}

const HELM_SETUP: &str = r#"
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: podinfo, namespace: flux-system, labels: {team: web}}
spec: {interval: 5m}
---
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: database, namespace: flux-system, labels: {team: db}}
spec: {interval: 5m}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: web-team, namespace: flux-system}
spec:
  providerRef: {name: slack}
  eventSources:
    - kind: HelmRelease
      name: "*"
      matchLabels: {team: web}
"#;

#[test]
fn match_labels_reads_labels_through_discovery() {
    let cluster = Cluster::start();
    let sink = Sink::start();
    cluster.create_seed(
        &["00-namespace.yaml", "02-provider.yaml", "04-secret.yaml"],
        &sink.url,
    );
    cluster.create(HELM_SETUP);
    // Only herald's own requests count below (creating objects asks discovery too).
    cluster.api.clear_requests();
    let herald = start_controller(&cluster, &[]);
    cluster.wait_ready("alerts", "flux-system", "web-team", "True", None, WAIT);

    let helm_event = |name: &str, message: &str| {
        let mut event: Value = serde_json::from_str(
            &std::fs::read_to_string(event_file("helmrelease-error.json")).expect("event"),
        )
        .expect("json");
        event["involvedObject"]["name"] = Value::from(name);
        event["message"] = Value::from(message);
        event.to_string()
    };
    assert_eq!(herald.post(helm_event("podinfo", "web 1")).0, 202);
    assert_eq!(sink.wait_for(1, WAIT).len(), 1);
    assert_eq!(herald.post(helm_event("database", "db 1")).0, 202);
    assert_eq!(herald.post(helm_event("podinfo", "web 2")).0, 202);
    let received = sink.wait_for(2, WAIT);
    std::thread::sleep(Duration::from_millis(300));
    let texts: Vec<_> = sink
        .received()
        .iter()
        .map(|r| r.body["attachments"][0]["text"].clone())
        .collect();
    assert_eq!(texts, [json!("web 1"), json!("web 2")], "{received:?}");

    let requests = cluster.api.requests();
    let discovery = requests
        .iter()
        .filter(|r| r.path == "/apis/helm.toolkit.fluxcd.io/v2")
        .count();
    assert_eq!(discovery, 1, "discovery must be asked once per kind");
    let metadata_gets: Vec<_> = requests
        .iter()
        .filter(|r| {
            r.method == "GET"
                && r.path.starts_with(
                    "/apis/helm.toolkit.fluxcd.io/v2/namespaces/flux-system/helmreleases/",
                )
        })
        .collect();
    assert_eq!(metadata_gets.len(), 3);
    assert!(
        metadata_gets
            .iter()
            .all(|r| r.accept.contains("as=PartialObjectMetadata")),
        "labels must be read metadata-only"
    );

    // An object that does not exist: no match, and a Warning Event on the Alert.
    assert_eq!(herald.post(helm_event("ghost", "ghost 1")).0, 202);
    let deadline = Instant::now() + WAIT;
    while !cluster.api.requests().iter().any(|r| {
        r.body["reason"] == "MatchLabelsLookupFailed" && r.body["regarding"]["name"] == "web-team"
    }) {
        assert!(
            Instant::now() < deadline,
            "no MatchLabelsLookupFailed Event"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(sink.received().len(), 2);
}

const CROSS_NAMESPACE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: apps}
---
apiVersion: v1
kind: Secret
metadata: {name: hook, namespace: apps}
stringData: {address: "WEBHOOK"}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: slack, namespace: apps}
spec: {type: slack, secretRef: {name: hook}}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: watches-flux-system, namespace: apps}
spec:
  providerRef: {name: slack}
  eventSources:
    - {kind: Kustomization, name: "*", namespace: flux-system}
"#;

#[test]
fn no_cross_namespace_refs_blocks_other_namespaces() {
    for (flag, delivered) in [
        (None, true),
        (Some("--no-cross-namespace-refs=true"), false),
    ] {
        let cluster = Cluster::start();
        let sink = Sink::start();
        cluster.create(&CROSS_NAMESPACE.replace("WEBHOOK", &sink.url));
        let herald = start_controller(&cluster, flag.as_slice());
        let expected = if delivered {
            ("True", None)
        } else {
            ("False", Some("AccessDenied"))
        };
        cluster.wait_ready(
            "alerts",
            "apps",
            "watches-flux-system",
            expected.0,
            expected.1,
            WAIT,
        );
        assert_eq!(
            herald.post_file(&event_file("kustomization-error.json")),
            202
        );
        let received = sink.wait_for(1, Duration::from_secs(1));
        assert_eq!(received.len(), usize::from(delivered), "flag {flag:?}");
    }
}

#[test]
fn sigterm_delivers_every_queued_notification() {
    let sink = Sink::start();
    sink.default_answer(Answer::status(200).delay(Duration::from_millis(40)));
    let (_cluster, mut herald) = seeded_controller(&sink);
    for n in 0..50 {
        assert_eq!(
            herald
                .post(event_body(
                    "kustomization-error.json",
                    &format!("queued {n:02}")
                ))
                .0,
            202
        );
    }
    assert_eq!(herald.terminate(Duration::from_secs(30)), Some(0));
    let texts = sink.texts();
    let expected: Vec<String> = (0..50).map(|n| format!("queued {n:02}")).collect();
    assert_eq!(texts, expected);
}

#[test]
fn with_leader_election_exactly_one_replica_writes_status() {
    let cluster = Cluster::start();
    let sink = Sink::start();
    cluster.create_seed(&SEED_ONE_ALERT, &sink.url);
    let flags = [
        "--enable-leader-election",
        "--leader-election-lease-duration=3s",
        "--leader-election-renew-deadline=2s",
        "--leader-election-retry-period=200ms",
    ];
    let kubeconfig = cluster.kubeconfig();
    let first = Herald::controller(
        &kubeconfig,
        &flags,
        &[
            ("POD_NAME", "replica-a"),
            ("RUNTIME_NAMESPACE", "flux-system"),
        ],
    );
    let second = Herald::controller(
        &kubeconfig,
        &flags,
        &[
            ("POD_NAME", "replica-b"),
            ("RUNTIME_NAMESPACE", "flux-system"),
        ],
    );
    cluster.wait_ready("alerts", "flux-system", "flux-alerts", "True", None, WAIT);
    cluster.wait_ready("providers", "flux-system", "slack", "True", None, WAIT);
    std::thread::sleep(Duration::from_secs(1));

    let writers: std::collections::BTreeSet<String> = cluster
        .api
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with("/status"))
        .filter_map(|r| r.query_param("fieldManager"))
        .collect();
    assert_eq!(writers.len(), 1, "status writers: {writers:?}");
    let lease = cluster
        .api
        .object(
            "coordination.k8s.io",
            "leases",
            "flux-system",
            "notification-controller-leader-election",
        )
        .expect("lease");
    let holder = lease["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        writers.contains(&holder),
        "the lease holder {holder} is the writer {writers:?}"
    );

    // Both replicas receive and deliver events.
    assert_eq!(
        first.post(event_body("kustomization-error.json", "to a")).0,
        202
    );
    assert_eq!(
        second
            .post(event_body("kustomization-error.json", "to b"))
            .0,
        202
    );
    assert_eq!(sink.wait_for(2, WAIT).len(), 2);

    // The leader leaves: the other takes over and writes status.
    let (mut leader, follower, follower_name) = if holder == "replica-a" {
        (first, second, "replica-b")
    } else {
        (second, first, "replica-a")
    };
    assert_eq!(leader.terminate(Duration::from_secs(30)), Some(0));
    let deadline = Instant::now() + WAIT;
    loop {
        let lease = cluster
            .api
            .object(
                "coordination.k8s.io",
                "leases",
                "flux-system",
                "notification-controller-leader-election",
            )
            .expect("lease");
        if lease["spec"]["holderIdentity"] == follower_name {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{follower_name} never took the lease: {lease}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(follower);
}

const TEMPLATED_ALERTS: &str = r#"
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: bad-syntax, namespace: flux-system}
spec:
  providerRef: {name: slack}
  eventSources: [{kind: HelmRelease, name: "*"}]
  template:
    text: "{{ message }"
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: bad-render, namespace: flux-system}
spec:
  providerRef: {name: slack}
  eventSources: [{kind: GitRepository, name: "*"}]
  eventSeverity: info
  template:
    blocks: '[{"text": {{ message }}}]'
"#;

#[test]
fn template_errors_show_in_status_and_events_and_lose_nothing() {
    let cluster = Cluster::start();
    let sink = Sink::start();
    cluster.create_seed(&["02-provider.yaml", "04-secret.yaml"], &sink.url);
    cluster.create(TEMPLATED_ALERTS);
    let herald = start_controller(&cluster, &[]);
    let condition = cluster.wait_ready(
        "alerts",
        "flux-system",
        "bad-syntax",
        "False",
        Some("InvalidTemplate"),
        WAIT,
    );
    let message = condition["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spec.template.text: syntax error at line 1, column"),
        "{message}"
    );
    cluster.wait_ready("alerts", "flux-system", "bad-render", "True", None, WAIT);

    // The Alert with a syntax error still delivers, in the default format.
    assert_eq!(herald.post_file(&event_file("helmrelease-error.json")), 202);
    let received = sink.wait_for(1, WAIT);
    assert_eq!(
        received[0].body["attachments"][0]["author_name"],
        "helmrelease/podinfo.flux-system"
    );
    // A render failure delivers the default format and records an Event.
    assert_eq!(
        herald.post_file(&event_file("gitrepository-info.json")),
        202
    );
    let received = sink.wait_for(2, WAIT);
    assert_eq!(received.len(), 2);
    assert!(received[1].body["attachments"][0]["fields"].is_array());
    let deadline = Instant::now() + WAIT;
    while !cluster.api.requests().iter().any(|r| {
        r.body["reason"] == "TemplateRenderFailed"
            && r.body["regarding"]["name"] == "bad-render"
            && r.body["type"] == "Warning"
    }) {
        assert!(Instant::now() < deadline, "no TemplateRenderFailed Event");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_failed_delivery_is_a_masked_warning_event_on_the_alert() {
    let sink = Sink::start();
    sink.default_answer(Answer::status(403).body("invalid_token"));
    let (cluster, herald) = seeded_controller(&sink);
    assert_eq!(
        herald.post_file(&event_file("kustomization-error.json")),
        202
    );
    let deadline = Instant::now() + WAIT;
    let event = loop {
        let found = cluster
            .api
            .requests()
            .into_iter()
            .find(|r| r.body["reason"] == "NotificationDispatchFailed");
        if let Some(found) = found {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no NotificationDispatchFailed Event"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(event.body["regarding"]["name"], "flux-alerts");
    assert_eq!(event.body["type"], "Warning");
    let note = event.body["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("403") && note.contains("http://127.0.0.1:"),
        "{note}"
    );
    assert!(
        !note.contains("secret-webhook-path"),
        "address leaked into an Event: {note}"
    );
    for request in cluster.api.requests() {
        assert!(
            !request.body.to_string().contains("secret-webhook-path")
                || request.path.contains("/secrets"),
            "address leaked to the API server: {} {}",
            request.method,
            request.path
        );
    }
}

/// A request as RBAC sees it: verb, API group, resource (with subresource),
/// namespace. `None` for discovery (non-resource URLs every client may read).
fn rbac_attributes(
    r: &support::apiserver::RecordedRequest,
) -> Option<(String, String, String, Option<String>)> {
    let parts: Vec<&str> = r.path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => (String::new(), rest.to_vec()),
        ["apis", group, _version, rest @ ..] => (group.to_string(), rest.to_vec()),
        _ => return None,
    };
    let (namespace, rest) = match rest.as_slice() {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest.to_vec()),
        rest => (None, rest.to_vec()),
    };
    let (resource, name, sub) = match rest.as_slice() {
        [] => return None,
        [resource] => (resource.to_string(), None, None),
        [resource, name] => (resource.to_string(), Some(*name), None),
        [resource, name, sub, ..] => (resource.to_string(), Some(*name), Some(*sub)),
    };
    let verb = match (r.method.as_str(), name) {
        ("GET", Some(_)) => "get",
        ("GET", None) if r.is_watch() => "watch",
        ("GET", None) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        _ => "unknown",
    };
    let resource = match sub {
        Some(sub) => format!("{resource}/{sub}"),
        None => resource,
    };
    Some((verb.to_owned(), group, resource, namespace))
}

fn allowed(rules: &[Value], verb: &str, group: &str, resource: &str) -> bool {
    rules.iter().any(|rule| {
        let has = |key: &str, value: &str| {
            rule[key]
                .as_array()
                .is_some_and(|l| l.iter().any(|v| v == value || v == "*"))
        };
        has("apiGroups", group) && has("resources", resource) && has("verbs", verb)
    })
}

#[test]
fn every_api_call_is_allowed_by_the_deployed_rbac() {
    let rbac_text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/rbac.yaml"))
            .expect("rbac");
    let mut cluster_rules = Vec::new();
    let mut namespace_rules = Vec::new();
    for value in herald::yaml::parse_stream(&rbac_text).expect("yaml") {
        match value["kind"].as_str() {
            Some("ClusterRole") => {
                cluster_rules.extend(value["rules"].as_array().cloned().unwrap_or_default())
            }
            Some("Role") => {
                namespace_rules.extend(value["rules"].as_array().cloned().unwrap_or_default())
            }
            _ => {}
        }
    }

    // Exercise every call: watches, status, Events, matchLabels, Secrets,
    // leader election.
    let cluster = Cluster::start();
    let sink = Sink::start();
    cluster.create_seed(&SEED_ONE_ALERT, &sink.url);
    cluster.create(HELM_SETUP);
    cluster.api.clear_requests();
    let mut herald = Herald::controller(
        &cluster.kubeconfig(),
        &[
            "--enable-leader-election",
            "--leader-election-retry-period=200ms",
        ],
        &[
            ("POD_NAME", "rbac-test"),
            ("RUNTIME_NAMESPACE", "flux-system"),
        ],
    );
    cluster.wait_ready("alerts", "flux-system", "web-team", "True", None, WAIT);
    assert_eq!(herald.post_file(&event_file("helmrelease-error.json")), 202);
    sink.wait_for(1, WAIT);
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), "flux-system");
    cluster
        .rt
        .block_on(secrets.delete("slack-url", &DeleteParams::default()))
        .expect("delete secret");
    cluster.wait_ready(
        "providers",
        "flux-system",
        "slack",
        "False",
        Some("SecretNotFound"),
        WAIT,
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(herald.terminate(Duration::from_secs(30)), Some(0));

    let mut seen = std::collections::BTreeSet::new();
    for request in cluster
        .api
        .requests()
        .into_iter()
        .filter(|r| r.user_agent.starts_with("herald/"))
    {
        let Some((verb, group, resource, namespace)) = rbac_attributes(&request) else {
            assert_eq!(
                request.method, "GET",
                "non-resource request {}",
                request.path
            );
            continue;
        };
        let by_role = namespace.as_deref() == Some("flux-system")
            && allowed(&namespace_rules, &verb, &group, &resource);
        assert!(
            allowed(&cluster_rules, &verb, &group, &resource) || by_role,
            "{verb} {group}/{resource} in {namespace:?} is not allowed by deploy/rbac.yaml ({} {})",
            request.method,
            request.path
        );
        seen.insert(format!("{verb} {group}/{resource}"));
    }
    // The scenario did reach every kind of call the rules are for.
    for expected in [
        "watch notification.toolkit.fluxcd.io/alerts",
        "patch notification.toolkit.fluxcd.io/alerts/status",
        "patch notification.toolkit.fluxcd.io/providers/status",
        "watch /secrets",
        "get /secrets",
        "create events.k8s.io/events",
        "get helm.toolkit.fluxcd.io/helmreleases",
        "update coordination.k8s.io/leases",
    ] {
        assert!(
            seen.contains(expected),
            "the scenario made no '{expected}' call: {seen:#?}"
        );
    }
}

#[test]
fn unrelated_secrets_are_never_read() {
    let cluster = Cluster::start();
    let sink = Sink::start();
    cluster.create_seed(&SEED_ONE_ALERT, &sink.url);
    let unrelated: String = (0..50)
        .map(|i| format!("---\napiVersion: v1\nkind: Secret\nmetadata: {{name: unrelated-{i}, namespace: flux-system}}\nstringData: {{password: hunter{i}}}\n"))
        .collect();
    cluster.create(&unrelated);
    cluster.api.clear_requests();
    let herald = start_controller(&cluster, &[]);
    cluster.wait_ready("providers", "flux-system", "slack", "True", None, WAIT);
    assert_eq!(
        herald.post_file(&event_file("kustomization-error.json")),
        202
    );
    sink.wait_for(1, WAIT);

    let secret_requests: Vec<_> = cluster
        .api
        .requests()
        .into_iter()
        .filter(|r| r.user_agent.starts_with("herald/") && r.path.contains("/secrets"))
        .collect();
    assert!(!secret_requests.is_empty());
    for request in &secret_requests {
        let collection = request.path.ends_with("/secrets");
        if collection {
            // Lists and watches of Secrets carry metadata only.
            assert!(
                request.accept.contains("as=PartialObjectMetadata"),
                "{} {} asked for Secret data (Accept: {})",
                request.method,
                request.path,
                request.accept
            );
        } else {
            assert!(
                request
                    .path
                    .ends_with("/namespaces/flux-system/secrets/slack-url"),
                "read an unreferenced Secret: {}",
                request.path
            );
        }
    }
}
