//! Receivers (Flux's incoming webhooks) against a real kube-apiserver
//! (`tests/support/kubeapi.rs`): herald runs as the non-admin user `herald`
//! under exactly `deploy/rbac.yaml`'s rules, writes each Receiver's
//! `status.webhookPath` and `Ready`, verifies requests the way Flux does for
//! every type, and annotates the targets with
//! `reconcile.fluxcd.io/requestedAt` through the API. Requests that fail
//! verification, replays and oversized bodies annotate nothing.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use herald::webhook::oidc::testing::SigningKey;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use ring::hmac;
use serde_json::{Value, json};
use support::herald::{Herald, client};
use support::kubeapi::{self, Server};

const WAIT: Duration = Duration::from_secs(20);
const NOTIFICATION: &str = "notification.toolkit.fluxcd.io";
const REQUESTED_AT: &str = "reconcile.fluxcd.io/requestedAt";

struct Cluster {
    api: Server,
    rt: tokio::runtime::Runtime,
    client: kube::Client,
    namespace: String,
}

impl Cluster {
    fn shared(test: &str) -> Self {
        let api = Server::Shared(kubeapi::shared());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let client = rt.block_on(api.admin_client());
        let namespace = rt.block_on(api.namespace(&client, test));
        Self {
            api,
            rt,
            client,
            namespace,
        }
    }

    /// Creates every document of `yaml` in the test's namespace.
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

    /// Applies (server-side) every document of `yaml` in the namespace.
    fn apply(&self, yaml: &str) {
        let objects = kubeapi::documents(yaml).expect("parse YAML");
        self.rt
            .block_on(kubeapi::apply_objects(
                &self.client,
                &objects,
                Some(&self.namespace),
            ))
            .unwrap_or_else(|e| panic!("apply objects: {e:#}"));
    }

    /// A token Secret and a Receiver of `kind` targeting `resources`.
    fn receiver(&self, name: &str, kind: &str, token: &str, spec: Value) {
        self.receiver_with(name, kind, json!({"token": token}), spec);
    }

    /// A Secret with `data` and a Receiver of `kind` using it.
    fn receiver_with(&self, name: &str, kind: &str, data: Value, spec: Value) {
        let mut spec = spec;
        spec["type"] = json!(kind);
        if kind != "generic-oidc" {
            spec["secretRef"] = json!({"name": format!("{name}-token")});
            let secret = json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": format!("{name}-token"), "namespace": self.namespace},
                "stringData": data,
            });
            self.create(&secret.to_string());
        }
        let receiver = json!({
            "apiVersion": format!("{NOTIFICATION}/v1"), "kind": "Receiver",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": spec,
        });
        self.create(&receiver.to_string());
    }

    /// GitRepositories (the test kind), with labels.
    fn repositories(&self, names: &[(&str, Value)]) {
        for (name, labels) in names {
            let repo = json!({
                "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                "metadata": {"name": name, "namespace": self.namespace, "labels": labels},
                "spec": {"url": "https://example.com/repo.git", "interval": "1m"},
            });
            self.create(&repo.to_string());
        }
    }

    fn dynamic(&self, group: &str, version: &str, kind: &str) -> Api<DynamicObject> {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        Api::namespaced_with(self.client.clone(), &self.namespace, &resource)
    }

    fn get(&self, group: &str, version: &str, kind: &str, name: &str) -> Value {
        let api = self.dynamic(group, version, kind);
        let object = self
            .rt
            .block_on(api.get(name))
            .unwrap_or_else(|e| panic!("get {kind} {name}: {e}"));
        serde_json::to_value(object).expect("json")
    }

    fn requested_at(&self, repository: &str) -> Option<String> {
        let object = self.get(
            "source.toolkit.fluxcd.io",
            "v1",
            "GitRepository",
            repository,
        );
        object["metadata"]["annotations"][REQUESTED_AT]
            .as_str()
            .map(str::to_owned)
    }

    /// Waits until the Receiver's Ready condition has `status`; returns the Receiver.
    fn wait_receiver(&self, name: &str, status: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let receiver = self.get(NOTIFICATION, "v1", "Receiver", name);
            let ready = receiver["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .cloned();
            if ready.as_ref().is_some_and(|c| c["status"] == status) {
                return receiver;
            }
            if Instant::now() >= deadline {
                self.api.assert_no_forbidden();
            }
            assert!(
                Instant::now() < deadline,
                "Receiver {}/{name}: Ready is {ready:?}, expected {status}",
                self.namespace
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The Receiver's webhook URL once it is ready.
    fn hook_url(&self, herald: &Herald, name: &str) -> String {
        let receiver = self.wait_receiver(name, "True");
        let path = receiver["status"]["webhookPath"]
            .as_str()
            .expect("webhookPath");
        format!("{}{path}", herald.webhooks)
    }

    fn start_herald(&self, extra: &[&str]) -> Herald {
        let mut flags = extra.to_vec();
        flags.push("--watch-all-namespaces=false");
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
        assert!(!herald.webhooks.is_empty(), "no webhook server");
        herald
    }
}

/// POSTs (or another method) with headers; returns status and body.
fn send(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let mut request = client.request(method.parse().expect("method"), url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        match request.body(body.to_vec()).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            }
            // herald may answer (413) and close before a large body is sent.
            Err(e) => (0, format!("{e:?}")),
        }
    })
}

fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    send("POST", url, headers, body).0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac_hex(algorithm: hmac::Algorithm, key: &str, body: &[u8]) -> String {
    hex(hmac::sign(&hmac::Key::new(algorithm, key.as_bytes()), body).as_ref())
}

/// Waits until `check` holds (annotations land after the 200, through the API).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A local OIDC issuer (discovery and keys) and Google-style key endpoint.
struct Issuer {
    url: String,
    key: SigningKey,
    _runtime: tokio::runtime::Runtime,
}

impl Issuer {
    fn start() -> Self {
        let key = SigningKey::generate("test-key");
        let jwks = json!({"keys": [key.jwk()]});
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let address: SocketAddr = listener.local_addr().expect("address");
        let url = format!("http://{address}");
        let discovery = json!({
            "issuer": url,
            "jwks_uri": format!("{url}/jwks"),
            "id_token_signing_alg_values_supported": ["ES256"],
        });
        let json_response = |value: Value| {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                value.to_string(),
            )
        };
        let (discovery, jwks) = (json_response(discovery), json_response(jwks));
        let router = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || async move { discovery }),
            )
            .route("/jwks", axum::routing::get(move || async move { jwks }));
        runtime.spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            url,
            key,
            _runtime: runtime,
        }
    }

    fn token(&self, claims: Value) -> String {
        self.key.sign(&claims)
    }
}

fn now() -> i64 {
    herald::webhook::oidc::testing::now()
}

const TOKEN: &str = "hunter2-receiver-token";

/// Flux's webhook path, computed here independently of herald.
fn flux_path(token: &str, name: &str, namespace: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{token}{name}{namespace}").as_bytes(),
    );
    format!("/hook/{}", hex(digest.as_ref()))
}

#[test]
fn status_has_fluxs_webhook_path_and_ready_with_reasons() {
    let cluster = Cluster::shared("receiver-status");
    let herald = cluster.start_herald(&[]);
    let resources = json!([{"kind": "GitRepository", "name": "app"}]);
    cluster.receiver("github", "github", TOKEN, json!({"resources": resources}));
    let receiver = cluster.wait_receiver("github", "True");
    let path = flux_path(TOKEN, "github", &cluster.namespace);
    assert_eq!(receiver["status"]["webhookPath"], path);
    let ready = receiver["status"]["conditions"][0].clone();
    assert_eq!(ready["reason"], "Succeeded");
    assert_eq!(
        ready["message"],
        format!("Receiver initialized for path: {path}")
    );
    assert_eq!(
        receiver["status"]["observedGeneration"],
        receiver["metadata"]["generation"]
    );

    // A Receiver whose Secret is missing, then created.
    let missing = json!({
        "apiVersion": format!("{NOTIFICATION}/v1"), "kind": "Receiver",
        "metadata": {"name": "late", "namespace": cluster.namespace},
        "spec": {"type": "generic", "secretRef": {"name": "late-token"}, "resources": resources},
    });
    cluster.create(&missing.to_string());
    let receiver = cluster.wait_receiver("late", "False");
    let ready = &receiver["status"]["conditions"][0];
    assert_eq!(ready["reason"], "TokenNotFound");
    // Waiting for a Secret that may come: Reconciling (kstatus: InProgress).
    assert!(
        has_condition(&receiver, "Reconciling"),
        "{}",
        receiver["status"]
    );
    let waiting = receiver.clone();
    assert_eq!(
        ready["message"],
        format!(
            "unable to read token from secret '{}/late-token' error: secrets \"late-token\" not found",
            cluster.namespace
        )
    );
    assert!(receiver["status"].get("webhookPath").is_none());
    cluster.create(
        &json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "late-token", "namespace": cluster.namespace},
            "stringData": {"token": "late"},
        })
        .to_string(),
    );
    let receiver = cluster.wait_receiver("late", "True");
    assert_eq!(
        receiver["status"]["webhookPath"],
        flux_path("late", "late", &cluster.namespace)
    );

    // A token rotation moves the path; the old one answers 404.
    let old_url = cluster.hook_url(&herald, "late");
    cluster.apply(
        &json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "late-token", "namespace": cluster.namespace},
            "stringData": {"token": "rotated"},
        })
        .to_string(),
    );
    let rotated = flux_path("rotated", "late", &cluster.namespace);
    eventually("the rotated path", || {
        cluster.get(NOTIFICATION, "v1", "Receiver", "late")["status"]["webhookPath"] == rotated
    });
    eventually("the old path to go", || post(&old_url, &[], b"{}") == 404);

    // `flux reconcile receiver` annotates the Receiver and waits for the
    // status to echo the value.
    let api = cluster.dynamic(NOTIFICATION, "v1", "Receiver");
    let patch = json!({"metadata": {"annotations": {REQUESTED_AT: "2024-01-01T00:00:00Z"}}});
    cluster
        .rt
        .block_on(api.patch(
            "late",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        ))
        .expect("annotate the Receiver");
    eventually("lastHandledReconcileAt", || {
        cluster.get(NOTIFICATION, "v1", "Receiver", "late")["status"]["lastHandledReconcileAt"]
            == "2024-01-01T00:00:00Z"
    });

    // A resourceFilter that is not boolean is a terminal configuration error.
    cluster.receiver(
        "badcel",
        "generic",
        TOKEN,
        json!({"resources": resources, "resourceFilter": "res.metadata.name"}),
    );
    let receiver = cluster.wait_receiver("badcel", "False");
    let ready = &receiver["status"]["conditions"][0];
    assert_eq!(ready["reason"], "InvalidCELExpression");
    // An error that will not fix itself: Stalled (kstatus: Failed, at once).
    assert!(
        has_condition(&receiver, "Stalled"),
        "{}",
        receiver["status"]
    );
    let github = cluster.get(NOTIFICATION, "v1", "Receiver", "github");
    let read = kubeapi::kstatus(&[github, waiting, receiver.clone()]);
    let statuses: Vec<&str> = read
        .iter()
        .map(|r| r["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(statuses, ["Current", "InProgress", "Failed"], "{read:?}");
    // A ready Receiver gets a Normal Event, as Flux records one.
    eventually("a Normal Event on the ready Receiver", || {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(cluster.client.clone(), &cluster.namespace);
        cluster
            .rt
            .block_on(events.list(&Default::default()))
            .map(|list| {
                list.items.iter().any(|e| {
                    e.type_.as_deref() == Some("Normal")
                        && e.reason.as_deref() == Some("Succeeded")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("github")
                })
            })
            .unwrap_or(false)
    });
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("expected bool, got dyn"),
        "{ready}"
    );

    // kubectl's columns, from the CRD.
    let table = cluster
        .rt
        .block_on(
            cluster.client.request_text(
                axum::http::Request::get(format!(
                    "/apis/{NOTIFICATION}/v1/namespaces/{}/receivers/github",
                    cluster.namespace
                ))
                .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
                .body(Vec::new())
                .unwrap(),
            ),
        )
        .expect("table");
    let table: Value = serde_json::from_str(&table).expect("json");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(columns, ["Name", "Age", "Ready", "Status"]);

    // Status is written once per change, not rewritten.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        cluster
            .api
            .status_writes("receivers", &cluster.namespace, "github"),
        1
    );
    cluster.api.assert_no_forbidden();
    assert_no_token_in_logs(&herald, &[TOKEN, "rotated"]);
}

/// Whether the object has a condition of this type with status True.
fn has_condition(object: &Value, kind: &str) -> bool {
    object["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == kind && c["status"] == "True"))
}

fn assert_no_token_in_logs(herald: &Herald, tokens: &[&str]) {
    for line in herald.logs() {
        for token in tokens {
            assert!(!line.contains(token), "token in the logs: {line}");
        }
    }
    herald.assert_no_secret_in_logs();
}

/// One Receiver of each type, each targeting its own GitRepository: a
/// valid request for each annotates exactly its target.
#[test]
fn every_type_annotates_its_targets() {
    let cluster = Cluster::shared("receiver-types");
    let issuer = Issuer::start();
    let gcr_keys = format!("{}/jwks", issuer.url);
    let herald = cluster.start_herald(&[&format!("--gcr-jwks-url={gcr_keys}")]);
    let types = [
        "generic",
        "generic-hmac",
        "generic-oidc",
        "github",
        "gitlab",
        "bitbucket",
        "harbor",
        "dockerhub",
        "quay",
        "gcr",
        "nexus",
        "acr",
        "cdevents",
    ];
    let repositories: Vec<(&str, Value)> = types.iter().map(|t| (*t, json!({}))).collect();
    cluster.repositories(&repositories);
    for kind in types {
        let mut spec = json!({
            "resources": [{"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "name": kind}],
        });
        match kind {
            "github" => spec["events"] = json!(["ping", "push"]),
            "gitlab" => spec["events"] = json!(["Push Hook"]),
            "bitbucket" => spec["events"] = json!(["repo:refs_changed"]),
            "cdevents" => spec["events"] = json!(["cd.change.merged.v1"]),
            "generic-oidc" => {
                spec["oidcProviders"] = json!([{
                    "issuerURL": issuer.url,
                    "variables": [{"name": "owner", "expression": "claims.repository_owner"}],
                    "validations": [{"expression": "vars.owner == 'my-org'", "message": "wrong org"}],
                }]);
            }
            _ => {}
        }
        // gcr also needs the push subscription's identity.
        let data = match kind {
            "gcr" => json!({
                "token": TOKEN,
                "email": "push@project.iam.gserviceaccount.com",
                "audience": "https://hooks.example.com",
            }),
            _ => json!({"token": TOKEN}),
        };
        cluster.receiver_with(kind, kind, data, spec);
    }

    let json_type = ("Content-Type", "application/json");
    for kind in types {
        let url = cluster.hook_url(&herald, kind);
        let body: Vec<u8>;
        let mut headers: Vec<(&str, String)> = vec![(json_type.0, json_type.1.to_owned())];
        match kind {
            "generic" => body = b"{}".to_vec(),
            "generic-hmac" => {
                body = br#"{"deploy":"now"}"#.to_vec();
                headers.push((
                    "X-Signature",
                    format!("sha256={}", hmac_hex(hmac::HMAC_SHA256, TOKEN, &body)),
                ));
            }
            "generic-oidc" => {
                body = b"{}".to_vec();
                let token = issuer.token(json!({
                    "iss": issuer.url, "aud": "notification-controller",
                    "sub": "repo:my-org/app", "repository_owner": "my-org",
                    "exp": now() + 300, "iat": now(),
                }));
                headers.push(("Authorization", format!("Bearer {token}")));
            }
            "github" => {
                body = br#"{"ref":"refs/heads/main"}"#.to_vec();
                headers.push((
                    "X-Hub-Signature-256",
                    format!("sha256={}", hmac_hex(hmac::HMAC_SHA256, TOKEN, &body)),
                ));
                headers.push(("X-GitHub-Event", "push".into()));
            }
            "gitlab" => {
                body = br#"{"object_kind":"push"}"#.to_vec();
                headers.push(("X-Gitlab-Token", TOKEN.into()));
                headers.push(("X-Gitlab-Event", "Push Hook".into()));
            }
            "bitbucket" => {
                body = br#"{"eventKey":"repo:refs_changed"}"#.to_vec();
                headers.push((
                    "X-Hub-Signature",
                    format!("sha256={}", hmac_hex(hmac::HMAC_SHA256, TOKEN, &body)),
                ));
                headers.push(("X-Event-Key", "repo:refs_changed".into()));
            }
            "harbor" => {
                body = br#"{"type":"PUSH_ARTIFACT"}"#.to_vec();
                headers.push(("Authorization", TOKEN.into()));
            }
            "dockerhub" => {
                body = br#"{"push_data":{"tag":"v1"},"repository":{"repo_url":"https://hub.docker.com/r/a/b"}}"#.to_vec();
            }
            "quay" => {
                body = br#"{"docker_url":"quay.io/a/b","updated_tags":["v1"]}"#.to_vec();
            }
            "gcr" => {
                let event = base64::engine::general_purpose::STANDARD.encode(
                    br#"{"action":"INSERT","digest":"gcr.io/p/i@sha256:aa","tag":"gcr.io/p/i:v1"}"#,
                );
                body = serde_json::to_vec(&json!({
                    "message": {"data": event, "messageId": "1", "publishTime": "2024-01-01T00:00:00Z"},
                    "subscription": "projects/p/subscriptions/s",
                }))
                .unwrap();
                let token = issuer.token(json!({
                    "iss": "https://accounts.google.com", "aud": "https://hooks.example.com",
                    "email": "push@project.iam.gserviceaccount.com", "email_verified": true,
                    "exp": now() + 300, "iat": now(),
                }));
                headers.push(("Authorization", format!("Bearer {token}")));
            }
            "nexus" => {
                body = br#"{"action":"CREATED","repositoryName":"docker-hosted"}"#.to_vec();
                headers.push((
                    "X-Nexus-Webhook-Signature",
                    hmac_hex(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, TOKEN, &body),
                ));
            }
            "acr" => {
                body = br#"{"action":"push","target":{"repository":"app","tag":"v1"}}"#.to_vec();
            }
            "cdevents" => {
                body = br#"{"context":{"version":"0.4.1","id":"1","source":"ci","type":"dev.cdevents.change.merged.0.2.0","timestamp":"2024-01-01T00:00:00Z"},"subject":{"id":"1","content":{}}}"#.to_vec();
                headers.push(("Ce-Type", "cd.change.merged.v1".into()));
            }
            other => panic!("no request for {other}"),
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, text) = send("POST", &url, &headers, &body);
        assert_eq!(status, 200, "{kind}: {text}\n{:#?}", herald.logs());
        eventually(&format!("{kind}'s target annotated"), || {
            cluster.requested_at(kind).is_some()
        });
    }
    // Each request annotated its own target only once; the value is Go's
    // time.Time string, as Flux writes it.
    let value = cluster.requested_at("generic").unwrap();
    assert!(value.contains(" +0000 UTC m=+"), "{value}");

    let metrics = client::get(&format!("{}/metrics", herald.metrics)).1;
    let line = format!(
        "herald_webhook_requests_total{{receiver=\"{}/github\",receiver_type=\"github\",result=\"accepted\"}} 1",
        cluster.namespace
    );
    assert!(metrics.contains(&line), "{metrics}");
    cluster.api.assert_no_forbidden();
    assert_no_token_in_logs(&herald, &[TOKEN]);
}

/// Requests that fail verification, oversized bodies, unknown paths and
/// suspended Receivers annotate nothing; a verified request repeated acts
/// each time, as in Flux.
#[test]
fn refused_requests_annotate_nothing() {
    let cluster = Cluster::shared("receiver-refused");
    let issuer = Issuer::start();
    let herald = cluster.start_herald(&[]);
    cluster.repositories(&[("target", json!({}))]);
    let target = json!([{"kind": "GitRepository", "name": "target"}]);
    cluster.receiver(
        "github",
        "github",
        TOKEN,
        json!({"resources": target, "events": ["push"]}),
    );
    cluster.receiver("hmac", "generic-hmac", TOKEN, json!({"resources": target}));
    cluster.receiver("gitlab", "gitlab", TOKEN, json!({"resources": target}));
    cluster.receiver("nexus", "nexus", TOKEN, json!({"resources": target}));
    cluster.receiver(
        "oidc",
        "generic-oidc",
        "",
        json!({"resources": target, "oidcProviders": [{
            "issuerURL": issuer.url,
            "validations": [{"expression": "claims.repository_owner == 'my-org'", "message": "wrong org"}],
        }]}),
    );
    cluster.receiver(
        "paused",
        "generic",
        TOKEN,
        json!({"resources": target, "suspend": true}),
    );
    let github = cluster.hook_url(&herald, "github");
    let hmac_url = cluster.hook_url(&herald, "hmac");
    let gitlab = cluster.hook_url(&herald, "gitlab");
    let nexus = cluster.hook_url(&herald, "nexus");
    let oidc = cluster.hook_url(&herald, "oidc");

    let body = br#"{"ref":"refs/heads/main"}"#;
    let signed = format!("sha256={}", hmac_hex(hmac::HMAC_SHA256, TOKEN, body));
    let json_type = ("Content-Type", "application/json");
    // (what, url, headers, body, expected status)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, String)>, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        (
            "github: signed with another key",
            &github,
            vec![
                ("X-Hub-Signature-256", format!("sha256={}", hmac_hex(hmac::HMAC_SHA256, "wrong", body))),
                ("X-GitHub-Event", "push".into()),
            ],
            body.to_vec(),
            400,
        ),
        (
            "github: forged body under a real signature",
            &github,
            vec![("X-Hub-Signature-256", signed.clone()), ("X-GitHub-Event", "push".into())],
            br#"{"ref":"refs/heads/evil"}"#.to_vec(),
            400,
        ),
        (
            "github: no signature",
            &github,
            vec![("X-GitHub-Event", "push".into())],
            body.to_vec(),
            400,
        ),
        (
            "github: an event type the Receiver does not take",
            &github,
            vec![("X-Hub-Signature-256", signed.clone()), ("X-GitHub-Event", "issues".into())],
            body.to_vec(),
            400,
        ),
        (
            "generic-hmac: bad signature",
            &hmac_url,
            vec![("X-Signature", "sha256=00".into())],
            body.to_vec(),
            400,
        ),
        (
            "gitlab: wrong token",
            &gitlab,
            vec![("X-Gitlab-Token", "not-the-token".into())],
            body.to_vec(),
            400,
        ),
        (
            "nexus: uppercase signature",
            &nexus,
            vec![(
                "X-Nexus-Webhook-Signature",
                hmac_hex(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, TOKEN, br#"{"action":"x"}"#).to_uppercase(),
            )],
            br#"{"action":"x"}"#.to_vec(),
            400,
        ),
        (
            "generic-oidc: a claim the validations refuse",
            &oidc,
            vec![(
                "Authorization",
                format!(
                    "Bearer {}",
                    issuer.token(json!({"iss": issuer.url, "aud": "notification-controller", "repository_owner": "evil", "exp": now() + 300}))
                ),
            )],
            b"{}".to_vec(),
            400,
        ),
        (
            "generic-oidc: expired",
            &oidc,
            vec![(
                "Authorization",
                format!(
                    "Bearer {}",
                    issuer.token(json!({"iss": issuer.url, "aud": "notification-controller", "repository_owner": "my-org", "exp": now() - 10}))
                ),
            )],
            b"{}".to_vec(),
            400,
        ),
        (
            "generic-oidc: another audience",
            &oidc,
            vec![(
                "Authorization",
                format!(
                    "Bearer {}",
                    issuer.token(json!({"iss": issuer.url, "aud": "someone-else", "repository_owner": "my-org", "exp": now() + 300}))
                ),
            )],
            b"{}".to_vec(),
            400,
        ),
        (
            "generic-oidc: signed by a key the issuer does not publish",
            &oidc,
            vec![(
                "Authorization",
                format!(
                    "Bearer {}",
                    SigningKey::generate("test-key").sign(&json!({"iss": issuer.url, "aud": "notification-controller", "repository_owner": "my-org", "exp": now() + 300}))
                ),
            )],
            b"{}".to_vec(),
            400,
        ),
        (
            "a body over 3 MiB",
            &hmac_url,
            vec![],
            vec![b' '; 3 * 1024 * 1024 + 1],
            413,
        ),
    ];
    for (what, url, headers, body, expected) in &cases {
        let mut headers: Vec<(&str, &str)> =
            headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        headers.push(json_type);
        let (status, text) = send("POST", url, &headers, body);
        if status == 0 && *expected == 413 {
            // The connection closed under the body: herald must have refused it.
            let metrics = client::get(&format!("{}/metrics", herald.metrics)).1;
            assert!(metrics.contains("result=\"too_large\""), "{what}: {text}");
        } else {
            assert_eq!(status, *expected, "{what}: {text}");
        }
        assert_eq!(cluster.requested_at("target"), None, "{what} annotated");
    }
    // Unknown path, other methods, a suspended Receiver.
    let unknown = format!("{}/hook/{}", herald.webhooks, "0".repeat(64));
    assert_eq!(post(&unknown, &[json_type], b"{}"), 404);
    assert_eq!(send("GET", &github, &[], b"").0, 405);
    let paused = format!(
        "{}{}",
        herald.webhooks,
        flux_path(TOKEN, "paused", &cluster.namespace)
    );
    assert_eq!(post(&paused, &[json_type], b"{}"), 503);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cluster.requested_at("target"), None);

    // The genuine request annotates; the same request again (a CI job
    // posting the same signed body on its next deploy) annotates again, as
    // in Flux.
    let genuine = [
        ("X-Hub-Signature-256", signed.as_str()),
        ("X-GitHub-Event", "push"),
        json_type,
    ];
    let annotated = |receiver: &str| {
        let metrics = client::get(&format!("{}/metrics", herald.metrics)).1;
        let line = format!(
            "herald_webhook_annotations_total{{receiver=\"{}/{receiver}\",",
            cluster.namespace
        );
        metrics
            .lines()
            .filter(|l| l.starts_with(&line) && l.contains("result=\"annotated\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    for round in 1..=2 {
        let (status, text) = send("POST", &github, &genuine, body);
        assert_eq!((status, text.as_str()), (200, "reconciliation requested\n"));
        eventually("the genuine request's annotation", || {
            annotated("github") == round
        });
    }

    // A bearer token is reused (GitLab CI id_tokens, projected tokens).
    let token = issuer.token(json!({
        "iss": issuer.url, "aud": "notification-controller",
        "repository_owner": "my-org", "exp": now() + 300,
    }));
    let bearer = format!("Bearer {token}");
    let headers = [("Authorization", bearer.as_str()), json_type];
    for round in 1..=2 {
        assert_eq!(post(&oidc, &headers, b"{}"), 200);
        eventually("the OIDC request's annotation", || {
            annotated("oidc") == round
        });
    }

    cluster.api.assert_no_forbidden();
    assert_no_token_in_logs(&herald, &[TOKEN, &signed[7..]]);
}

/// `name: "*"` with `matchLabels`, `resourceFilter` over `res` and `req`,
/// per-resource filters, and a kind without a default apiVersion.
#[test]
fn resource_filter_and_match_labels_select_targets() {
    let cluster = Cluster::shared("receiver-select");
    let herald = cluster.start_herald(&[]);
    cluster.repositories(&[
        ("podinfo", json!({"app": "podinfo"})),
        ("podinfo-skip", json!({"app": "podinfo"})),
        ("other", json!({"app": "other"})),
        ("by-name", json!({})),
        ("by-body", json!({})),
    ]);
    cluster.create(
        &json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": "apps", "namespace": cluster.namespace, "labels": {"app": "podinfo"}},
            "spec": {"interval": "1m"},
        })
        .to_string(),
    );
    cluster.receiver(
        "select",
        "generic",
        TOKEN,
        json!({
            "resourceFilter": "!res.metadata.name.endsWith('-skip')",
            "resources": [
                {"kind": "GitRepository", "name": "*", "matchLabels": {"app": "podinfo"}},
                {"kind": "GitRepository", "name": "by-name"},
                {"kind": "GitRepository", "name": "by-body", "filter": "req.target == res.metadata.name"},
                {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "name": "*", "matchLabels": {"app": "podinfo"}},
            ],
        }),
    );
    let url = cluster.hook_url(&herald, "select");
    let json_type = ("Content-Type", "application/json");
    assert_eq!(post(&url, &[json_type], br#"{"target":"nothing"}"#), 200);
    eventually("the selected targets", || {
        cluster.requested_at("podinfo").is_some() && cluster.requested_at("by-name").is_some()
    });
    let kustomization = cluster.get("kustomize.toolkit.fluxcd.io", "v1", "Kustomization", "apps");
    assert!(kustomization["metadata"]["annotations"][REQUESTED_AT].is_string());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cluster.requested_at("podinfo-skip"), None, "resourceFilter");
    assert_eq!(cluster.requested_at("other"), None, "matchLabels");
    assert_eq!(cluster.requested_at("by-body"), None, "per-resource filter");

    // The request body selects by-body now.
    assert_eq!(post(&url, &[json_type], br#"{"target":"by-body"}"#), 200);
    eventually("by-body", || cluster.requested_at("by-body").is_some());

    // A filter reading a field the body lacks is an error: 500, as in Flux,
    // while the other targets are still annotated.
    let before = cluster.requested_at("by-name");
    assert_eq!(post(&url, &[json_type], b"{}"), 500);
    eventually("by-name annotated again", || {
        cluster.requested_at("by-name") != before
    });

    // A kind with no default apiVersion needs one: 500, nothing else lost.
    cluster.receiver(
        "noversion",
        "generic",
        TOKEN,
        json!({"resources": [
            {"kind": "Kustomization", "name": "apps"},
            {"kind": "GitRepository", "name": "other"},
        ]}),
    );
    let url = cluster.hook_url(&herald, "noversion");
    assert_eq!(post(&url, &[json_type], b"{}"), 500);
    eventually("other", || cluster.requested_at("other").is_some());
    cluster.api.assert_no_forbidden();
    assert_no_token_in_logs(&herald, &[TOKEN]);
}

/// `--receiver-replay-protection` (herald's own, off by default): a GitHub
/// delivery seen again (the same `X-GitHub-Delivery`) is acknowledged and
/// not acted on; the same body under another delivery id, or a request
/// without one, is acted on.
#[test]
fn opt_in_replay_protection_keys_on_the_senders_delivery_id() {
    let cluster = Cluster::shared("receiver-replays");
    let herald = cluster.start_herald(&["--receiver-replay-protection"]);
    cluster.repositories(&[("target", json!({}))]);
    let target = json!([{"kind": "GitRepository", "name": "target"}]);
    cluster.receiver("github", "github", TOKEN, json!({"resources": target}));
    let github = cluster.hook_url(&herald, "github");
    let body = br#"{"ref":"refs/heads/main"}"#;
    let signed = format!("sha256={}", hmac_hex(hmac::HMAC_SHA256, TOKEN, body));
    let request = |delivery: Option<&str>| {
        let mut headers = vec![
            ("X-Hub-Signature-256", signed.as_str()),
            ("X-GitHub-Event", "push"),
            ("Content-Type", "application/json"),
        ];
        if let Some(id) = delivery {
            headers.push(("X-GitHub-Delivery", id));
        }
        send("POST", &github, &headers, body)
    };
    let accepted = (200, "reconciliation requested\n".to_owned());
    let replayed = (200, "already handled\n".to_owned());
    assert_eq!(request(Some("d-1")), accepted);
    assert_eq!(request(Some("d-1")), replayed, "a redelivery acted again");
    assert_eq!(request(Some("d-2")), accepted, "a new delivery was ignored");
    assert_eq!(request(None), accepted);
    assert_eq!(request(None), accepted, "no delivery id: always acted on");
}
