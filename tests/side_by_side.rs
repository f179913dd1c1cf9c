//! herald against Flux's own programs. Side by side with Flux's own
//! notification-controller v1.9.3
//! (built from the Go module proxy by `tests/flux-controller/build.sh`)
//! and herald run in turn against one real kube-apiserver, with the same
//! Alerts, Providers, Secrets and events, and the requests each sends to
//! the services are compared type by type.
//!
//! Every provider type whose address a test can point at is here: each
//! gets its own HTTPS lookalike (certificates made by the test, trusted
//! through the Provider's `certSecretRef`) that records every request and
//! answers as the service would (a version, a user, an empty list of
//! statuses or comments, `{}` to writes). The Git forges are asked on one
//! host each, as GitHub Enterprise, GitLab and Gitea are run. `nats`
//! publishes to a real nats-server, whose messages must be the same bytes.
//!
//! Normalisation, stated once ([`normalise`]): JSON bodies compare as
//! values (key order ignored), requests compare as a sorted list (Flux
//! sends each Provider's notifications from goroutines, in no fixed order),
//! the headers each HTTP client sets on its own (`user-agent`,
//! `accept-encoding`, `content-length`, `host`) are left out, and the values
//! that are fresh on every send (ids, clocks, Go's trace and session ids)
//! are replaced by a placeholder. What remains different is asserted in
//! [`DOCUMENTED`], one entry per type with the reason the README gives, so
//! a new difference fails the test.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

use support::herald::{Herald, client};
use support::kubeapi;
use support::tls::Pki;

/// How long either controller gets to send everything.
const WAIT: Duration = Duration::from_secs(60);

/// One request as a lookalike received it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// An HTTPS server answering as the services do, recording every request.
struct Lookalike {
    address: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Lookalike {
    fn start(rt: &tokio::runtime::Runtime, pki: &Pki) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind lookalike");
        let address = listener.local_addr().expect("address");
        let app = Router::new().fallback(answer).with_state(seen.clone());
        rt.spawn(support::sink::serve_tls(
            listener,
            app,
            pki.server_config(false),
        ));
        Self { address, seen }
    }

    fn base(&self) -> String {
        format!("https://{}", self.address)
    }

    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().expect("seen"))
    }

    fn count(&self) -> usize {
        self.seen.lock().expect("seen").len()
    }
}

/// Records the request and answers as the service would.
async fn answer(
    State(seen): State<Arc<Mutex<Vec<Seen>>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    seen.lock().expect("seen").push(Seen {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().map(str::to_owned),
        headers: headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    });
    let reply = if method == Method::OPTIONS && path.ends_with("/_apis") {
        // Azure DevOps' Go client asks where each resource is first.
        json!({"count": 1, "value": [{
            "id": "428dd4fb-fda5-4722-af02-9313b80305da",
            "area": "git",
            "resourceName": "statuses",
            "routeTemplate": "{project}/_apis/{area}/repositories/{repositoryId}/commits/{commitId}/{resource}",
            "resourceVersion": 1,
            "minVersion": "1.0",
            "maxVersion": "7.1",
            "releasedVersion": "7.0",
        }]})
    } else if method == Method::GET {
        if path.ends_with("/version") {
            json!({"version": "1.21.0"})
        } else if path.ends_with("/user") {
            json!({"id": 1, "login": "flux-bot", "username": "flux-bot"})
        } else if path.contains("/_apis/") {
            json!({"count": 0, "value": []})
        } else if path.contains("/build-status/") || path.ends_with("/builds") {
            return (StatusCode::NOT_FOUND, "{}").into_response();
        } else {
            json!([])
        }
    } else if path.contains("/_matrix/") {
        json!({"event_id": "$event"})
    } else if path.contains("/envelope/") {
        json!({"id": "0"})
    } else {
        json!({})
    };
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        reply.to_string(),
    )
        .into_response()
}

/// One Provider type under comparison: its Secret's data and its spec.
struct Case {
    kind: &'static str,
    secret: Value,
    spec: Value,
}

/// The types and how each is pointed at its lookalike (`BASE` is its
/// `https://host:port`, `HOST` its `host:port`).
fn cases() -> Vec<Case> {
    let case = |kind, secret: Value, spec: Value| Case { kind, secret, spec };
    let address = |path: &str| json!({"address": format!("BASE{path}")});
    vec![
        case(
            "slack",
            address("/services/T0/B0/x"),
            json!({"channel": "general", "username": "flux"}),
        ),
        case("discord", address("/api/webhooks/1/x"), json!({})),
        case("msteams", address("/webhookb2/x"), json!({})),
        case("rocket", address("/hooks/x"), json!({"username": "flux"})),
        case("googlechat", address("/v1/spaces/x/messages"), json!({})),
        case(
            "webex",
            json!({"address": "BASE/v1/messages", "token": "webex-token"}),
            json!({"channel": "room-1"}),
        ),
        case("generic", address("/hook"), json!({})),
        case(
            "generic-hmac",
            json!({"address": "BASE/hook", "token": "hmac-key"}),
            json!({}),
        ),
        case("lark", address("/open-apis/bot/v2/hook/x"), json!({})),
        case(
            "matrix",
            json!({"address": "BASE", "token": "matrix-token"}),
            json!({"channel": "!room:example.org"}),
        ),
        case(
            "opsgenie",
            json!({"address": "BASE/v2/alerts", "token": "genie-key"}),
            json!({}),
        ),
        case("alertmanager", address("/api/v2/alerts"), json!({})),
        case(
            "grafana",
            json!({"address": "BASE/api/annotations", "token": "grafana-token"}),
            json!({}),
        ),
        case(
            "pagerduty",
            address("/v2/enqueue"),
            json!({"channel": "routing-key"}),
        ),
        case(
            "datadog",
            json!({"address": "BASE", "token": "dd-key"}),
            json!({}),
        ),
        case(
            "sentry",
            json!({"address": "https://public@HOST/42"}),
            json!({"channel": "production"}),
        ),
        case("otel", address("/v1/traces"), json!({})),
        case(
            "zulip",
            json!({"address": "BASE/api/v1/messages", "username": "bot@example.org", "password": "zulip-key"}),
            json!({"channel": "deploys/flux"}),
        ),
        case(
            "github",
            json!({"address": "BASE/org/repo", "token": "gh-token"}),
            json!({}),
        ),
        case(
            "githubdispatch",
            json!({"address": "BASE/org/repo", "token": "gh-token"}),
            json!({}),
        ),
        case(
            "githubpullrequestcomment",
            json!({"address": "BASE/org/repo", "token": "gh-token"}),
            json!({}),
        ),
        case(
            "gitlab",
            json!({"address": "BASE/group/project", "token": "gl-token"}),
            json!({}),
        ),
        case(
            "gitlabmergerequestcomment",
            json!({"address": "BASE/group/project", "token": "gl-token"}),
            json!({}),
        ),
        case(
            "gitea",
            json!({"address": "BASE/org/repo", "token": "gitea-token"}),
            json!({}),
        ),
        case(
            "giteapullrequestcomment",
            json!({"address": "BASE/org/repo", "token": "gitea-token"}),
            json!({}),
        ),
        case(
            "azuredevops",
            json!({"address": "BASE/org/project/_git/repo", "token": "ado-token"}),
            json!({}),
        ),
        case(
            "bitbucketserver",
            json!({"address": "BASE/scm/proj/repo.git", "username": "bb", "password": "bb-pass"}),
            json!({}),
        ),
    ]
}

/// The Secrets, Providers and Alerts of every case, each Provider at its
/// own lookalike; and the probe's, a generic Provider that shows when a
/// controller routes.
fn objects(pki: &Pki, lookalikes: &[(&Case, Lookalike)], probe: &Lookalike) -> Vec<Value> {
    let mut objects = vec![json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "lookalike-ca"},
        "stringData": {"ca.crt": pki.ca},
    })];
    let mut add =
        |name: &str, kind: &str, secret: &Value, spec: &Value, base: &str, source: &str| {
            let host = base.trim_start_matches("https://");
            let data: serde_json::Map<String, Value> = secret
                .as_object()
                .expect("secret data")
                .iter()
                .map(|(k, v)| {
                    let text = v.as_str().unwrap_or_default();
                    (
                        k.clone(),
                        Value::String(text.replace("BASE", base).replace("HOST", host)),
                    )
                })
                .collect();
            objects.push(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": name}, "stringData": data,
            }));
            let mut provider_spec = json!({
                "type": kind,
                "secretRef": {"name": name},
                "certSecretRef": {"name": "lookalike-ca"},
            });
            for (k, v) in spec.as_object().expect("spec") {
                provider_spec[k] = v.clone();
            }
            objects.push(json!({
                "apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Provider",
                "metadata": {"name": name}, "spec": provider_spec,
            }));
            objects.push(json!({
                "apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Alert",
                "metadata": {"name": name},
                "spec": {
                    "providerRef": {"name": name},
                    "eventSeverity": "info",
                    "eventSources": [{"kind": "Kustomization", "name": source}],
                },
            }));
        };
    for (case, lookalike) in lookalikes {
        let name = case.kind.replace('.', "-");
        add(
            &name,
            case.kind,
            &case.secret,
            &case.spec,
            &lookalike.base(),
            "my-app",
        );
    }
    add(
        "probe",
        "generic",
        &json!({"address": "BASE/probe"}),
        &json!({}),
        &probe.base(),
        "probe",
    );
    objects
}

/// The events both controllers are sent, in this order: an error, a
/// success, and a success that names a pull request (for the comment
/// types), all of Kustomization `my-app`. Each has one metadata entry:
/// Flux lists metadata in Go's map order, which changes from one
/// notification to the next (herald sorts it by key), so two entries
/// would come out in either order.
fn events() -> Vec<Value> {
    let event = |severity: &str, reason: &str, message: &str, extra: Value| {
        let metadata = if extra.as_object().is_some_and(|m| !m.is_empty()) {
            extra
        } else {
            json!({
                "kustomize.toolkit.fluxcd.io/revision": "main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1",
            })
        };
        json!({
            "involvedObject": {
                "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
                "kind": "Kustomization",
                "name": "my-app",
                "namespace": "flux-system",
                "uid": "7d0cdc51-ddcf-4743-b223-83ca5c699632",
            },
            "severity": severity,
            "timestamp": "2026-11-20T07:26:19Z",
            "message": message,
            "reason": reason,
            "metadata": metadata,
            "reportingController": "kustomize-controller",
            "reportingInstance": "kustomize-controller-7f5c9d8b6-x2x9k",
        })
    };
    vec![
        event(
            "error",
            "ReconciliationFailed",
            "Deployment/my-app/web dry-run failed: spec.replicas: Invalid value: -1 <must be >= 0> & retried",
            json!({}),
        ),
        event(
            "info",
            "ReconciliationSucceeded",
            "Deployment/my-app/web configured",
            json!({}),
        ),
        event(
            "info",
            "ReconciliationSucceeded",
            "Preview environment ready",
            json!({"event.toolkit.fluxcd.io/change_request": "7"}),
        ),
    ]
}

/// A free `127.0.0.1` address.
fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").to_string()
}

/// Flux's controller, running.
struct Flux {
    child: Child,
    events: String,
    log: std::path::PathBuf,
}

impl Flux {
    fn start(kubeconfig: &Path, dir: &Path, ca_file: &Path) -> Self {
        let events = free_address();
        let health = free_address();
        let log = dir.join("flux.log");
        let child = Command::new(kubeapi::flux_controller_binary())
            .args([
                format!("--events-addr={events}"),
                format!("--health-addr={health}"),
                format!("--metrics-addr={}", free_address()),
                format!("--receiverAddr={}", free_address()),
                "--enable-leader-election=false".to_owned(),
                "--watch-all-namespaces=true".to_owned(),
                "--log-level=debug".to_owned(),
            ])
            .env("KUBECONFIG", kubeconfig)
            .env("RUNTIME_NAMESPACE", "flux-system")
            // Some of Flux's notifiers ignore certSecretRef: they trust the
            // system's roots, which this makes the lookalikes' CA.
            .env("SSL_CERT_FILE", ca_file)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("flux log"))
            .stderr(Stdio::from(
                std::fs::File::options()
                    .append(true)
                    .open(&log)
                    .expect("flux log"),
            ))
            .spawn()
            .expect("start Flux's notification-controller");
        let flux = Self {
            child,
            events: format!("http://{events}/"),
            log,
        };
        let deadline = Instant::now() + WAIT;
        while client::try_get(&format!("http://{health}/readyz")) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "Flux's controller never became ready:\n{}",
                flux.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        flux
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Flux {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Posts probe events to `events` until the probe's lookalike receives
/// one: the controller has read the Alerts and routes.
fn wait_until_routing(events_url: &str, probe: &Lookalike, what: &str) {
    let deadline = Instant::now() + WAIT;
    let mut n = 0;
    while probe.count() == 0 {
        assert!(Instant::now() < deadline, "{what} never routed the probe");
        n += 1;
        let mut event = events()[1].clone();
        event["involvedObject"]["name"] = json!("probe");
        event["message"] = json!(format!("probe {what} {n}"));
        let _ = client::try_post(events_url, event.to_string().into_bytes());
        std::thread::sleep(Duration::from_millis(200));
    }
    probe.take();
}

/// Sends the events, one after the other, and waits until every
/// lookalike has been quiet for a second.
fn send_events(events_url: &str, lookalikes: &[(&Case, Lookalike)]) {
    for event in events() {
        let (status, body) = client::post(events_url, event.to_string().into_bytes());
        assert!(status < 300, "event refused: {status} {body}");
    }
    let deadline = Instant::now() + WAIT;
    let mut last = usize::MAX;
    let mut quiet_since = Instant::now();
    loop {
        let now: usize = lookalikes.iter().map(|(_, l)| l.count()).sum();
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
        if now > 0 && quiet_since.elapsed() > Duration::from_secs(3) {
            return;
        }
        assert!(Instant::now() < deadline, "the controller kept sending");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The differences that remain, each deliberate or beyond a provider's
/// wire and listed in the README ("Differences from Flux"): the type (`*`
/// for all), where in the normalised request, and why.
const DOCUMENTED: &[(&str, &str, &str)] = &[
    (
        "sentry",
        "/body/2/contexts/device",
        "the Sentry Go SDK describes the sending process (CPU count, architecture)",
    ),
    (
        "sentry",
        "/body/2/contexts/os",
        "the Sentry Go SDK describes the sending process (operating system)",
    ),
    (
        "sentry",
        "/body/2/contexts/runtime",
        "the Sentry Go SDK describes the Go runtime (goroutines, GOMAXPROCS)",
    ),
    (
        "sentry",
        "/body/2/modules",
        "the Sentry Go SDK lists the Go modules of Flux's binary",
    ),
];

/// Requests only Flux sends, each listed in the README: the type, the
/// method and path, and why.
const FLUX_ONLY: &[(&str, &str, &str, &str)] = &[(
    "azuredevops",
    "OPTIONS",
    "/org/_apis",
    "Flux's Azure DevOps client asks the server where the commit-status API is before each \
     notification; herald uses the API's fixed route",
)];

/// Headers each HTTP client sets on its own: not part of a provider's wire.
const CLIENT_HEADERS: [&str; 4] = ["user-agent", "accept-encoding", "content-length", "host"];

/// A request in comparable form (see the module documentation).
fn normalise(kind: &str, seen: &Seen) -> Value {
    let mut headers: BTreeMap<String, String> = seen
        .headers
        .iter()
        .filter(|(name, _)| !CLIENT_HEADERS.contains(&name.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // RFC 9110 §12.5.1: no Accept header means any media type, as
    // `Accept: */*` (which herald's HTTP client adds) says.
    if headers.get("accept").is_some_and(|v| v == "*/*") {
        headers.remove("accept");
    }
    for fresh in ["x-tfs-session", "x-signature", "traceparent"] {
        if let Some(value) = headers.get_mut(fresh) {
            *value = "<fresh>".into();
        }
    }
    if let Some(auth) = headers.get_mut("x-sentry-auth") {
        *auth = auth
            .split(", ")
            .filter(|part| !part.starts_with("sentry_timestamp="))
            .collect::<Vec<_>>()
            .join(", ");
    }
    let body = match kind {
        "sentry" => sentry_body(&seen.body),
        "otel" => json!({"protobuf": otel_body(&seen.body)}),
        _ => match serde_json::from_slice::<Value>(&seen.body) {
            Ok(value) => fresh_values(value),
            Err(_) => Value::String(String::from_utf8_lossy(&seen.body).into_owned()),
        },
    };
    let path = match kind {
        // The transaction id is a hash of the event and the time.
        "matrix" => seen
            .path
            .rsplit_once('/')
            .map_or(seen.path.clone(), |(head, _)| format!("{head}/<txn>")),
        _ => seen.path.clone(),
    };
    json!({
        "method": seen.method,
        "path": path,
        "query": seen.query,
        "headers": headers,
        "body": body,
    })
}

/// Values that are fresh on every send, replaced by a placeholder; lists
/// of `{title, value}` (Slack's fields, Teams' facts, one per metadata
/// entry) sorted by title: Flux lists them in Go's random map order.
fn fresh_values(mut value: Value) -> Value {
    fn walk(value: &mut Value) {
        if let Value::Array(items) = value
            && !items.is_empty()
            && items
                .iter()
                .all(|i| i.get("title").is_some() && i.get("value").is_some())
        {
            items.sort_by_key(|i| i["title"].to_string());
        }
        match value {
            Value::Object(fields) => {
                for (key, field) in fields.iter_mut() {
                    if matches!(
                        key.as_str(),
                        "event_id"
                            | "sent_at"
                            | "timestamp"
                            | "start_timestamp"
                            | "trace_id"
                            | "span_id"
                            | "spanId"
                            | "endTimeUnixNano"
                            | "length"
                    ) && !field.is_null()
                    {
                        *field = Value::String("<fresh>".into());
                    } else {
                        walk(field);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
}

/// A Sentry envelope: its lines as JSON values, fresh values replaced.
/// The SDK's `release` is left out: sentry-go takes it from the
/// environment (`SENTRY_RELEASE`, or the Git checkout it runs in), which
/// in a cluster has none.
fn sentry_body(body: &[u8]) -> Value {
    Value::Array(
        String::from_utf8_lossy(body)
            .lines()
            .map(|line| {
                let mut value = serde_json::from_str(line)
                    .map(fresh_values)
                    .unwrap_or_else(|_| Value::String(line.to_owned()));
                if let Some(item) = value.as_object_mut() {
                    item.remove("release");
                }
                value
            })
            .collect(),
    )
}

/// An OTLP request, decoded, fresh values replaced.
fn otel_body(body: &[u8]) -> Value {
    fresh_values(support::otlp::decode_traces(body))
}

/// What pairs a request of Flux's with herald's: the request without the
/// parts documented to differ.
fn pairing_key(kind: &str, request: &Value) -> String {
    let mut key = request.clone();
    for (documented, at, _) in DOCUMENTED {
        if *documented != kind && *documented != "*" {
            continue;
        }
        if let Some((parent, field)) = at.rsplit_once('/')
            && let Some(Value::Object(fields)) = key.pointer_mut(parent)
        {
            fields.remove(field);
        }
    }
    key.to_string()
}

/// Where two values differ: the JSON pointer, and `Flux's → herald's`.
fn differ(at: &str, flux: &Value, ours: &Value, out: &mut Vec<(String, String)>) {
    match (flux, ours) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let missing = Value::String("<absent>".into());
                differ(
                    &format!("{at}/{key}"),
                    a.get(key).unwrap_or(&missing),
                    b.get(key).unwrap_or(&missing),
                    out,
                );
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differ(&format!("{at}/{i}"), x, y, out);
            }
        }
        _ if flux != ours => out.push((at.to_owned(), format!("{flux} → {ours}"))),
        _ => {}
    }
}

#[test]
fn herald_sends_what_flux_sends() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let api = kubeapi::dedicated(&[]);
    let client = rt.block_on(api.admin_client());
    rt.block_on(api.create_namespace(&client, "flux-system"));
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = Pki::new();
    let cases = cases();
    let lookalikes: Vec<(&Case, Lookalike)> = cases
        .iter()
        .map(|case| (case, Lookalike::start(&rt, &pki)))
        .collect();
    let probe = Lookalike::start(&rt, &pki);
    // The nats bus: a real nats-server, a subscriber recording every
    // message published on the Provider's subject.
    let nats =
        support::nats::NatsServer::start(&[("flux", "nats-pass"), ("reader", "reader-pass")]);
    let published: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let _reader = rt.block_on(async {
        let reader = async_nats::ConnectOptions::with_user_and_password(
            "reader".into(),
            "reader-pass".into(),
        )
        .connect(nats.url())
        .await
        .expect("subscriber connects");
        let mut subscription = reader.subscribe("flux.events").await.expect("subscribe");
        reader.flush().await.expect("flush");
        let published = published.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            while let Some(message) = subscription.next().await {
                published
                    .lock()
                    .expect("published")
                    .push(message.payload.to_vec());
            }
        });
        reader
    });
    let nats_objects = [
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "nats"},
            "stringData": {"address": nats.url(), "username": "flux", "password": "nats-pass"},
        }),
        json!({
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Provider",
            "metadata": {"name": "nats"},
            "spec": {"type": "nats", "channel": "flux.events", "secretRef": {"name": "nats"}},
        }),
        json!({
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Alert",
            "metadata": {"name": "nats"},
            "spec": {
                "providerRef": {"name": "nats"},
                "eventSeverity": "info",
                "eventSources": [{"kind": "Kustomization", "name": "my-app"}],
            },
        }),
    ];
    let take_published = |what: &str| {
        let deadline = Instant::now() + WAIT;
        while published.lock().expect("published").len() < events().len() {
            assert!(
                Instant::now() < deadline,
                "{what} published too little on nats"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        let mut all: Vec<String> = std::mem::take(&mut *published.lock().expect("published"))
            .into_iter()
            .map(|bytes| String::from_utf8(bytes).expect("utf-8"))
            .collect();
        all.sort();
        all
    };

    // Flux's CRDs, as a Flux 2.9 cluster has them, and Flux's controller.
    let mut flux_crds = Vec::new();
    for file in ["alerts.yaml", "providers.yaml", "receivers.yaml"] {
        let text = std::fs::read_to_string(support::flux_crds().join(file)).expect("Flux CRD");
        flux_crds.extend(kubeapi::documents(&text).expect("Flux CRD YAML"));
    }
    rt.block_on(async {
        // The server starts with herald's CRDs: Flux's stand alone first.
        let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
        for crd in &flux_crds {
            let name = crd["metadata"]["name"].as_str().expect("CRD name");
            let _ = crds.delete(name, &Default::default()).await;
            let deadline = Instant::now() + WAIT;
            while crds.get_opt(name).await.expect("get CRD").is_some() {
                assert!(Instant::now() < deadline, "{name} not deleted");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        kubeapi::apply_objects(&client, &flux_crds, None)
            .await
            .expect("apply Flux's CRDs");
        kubeapi::wait_established(&client, &flux_crds)
            .await
            .expect("Flux's CRDs established");
        let mut all = objects(&pki, &lookalikes, &probe);
        all.extend(nats_objects);
        kubeapi::create_objects(&client, &all, Some("flux-system"))
            .await
            .expect("create the objects");
    });
    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, &pki.ca).expect("write the CA");
    let flux = Flux::start(&api.endpoints.admin, dir.path(), &ca_file);
    wait_until_routing(&flux.events, &probe, "Flux");
    send_events(&flux.events, &lookalikes);
    let flux_nats = take_published("Flux");
    let flux_log = flux.log_text();
    drop(flux);
    let from_flux: Vec<Vec<Seen>> = lookalikes.iter().map(|(_, l)| l.take()).collect();

    // herald's CRDs over Flux's, and herald.
    let ours = kubeapi::documents(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/crds.yaml"))
            .expect("crds"),
    )
    .expect("CRD YAML");
    rt.block_on(async {
        kubeapi::apply_objects(&client, &ours, None)
            .await
            .expect("apply herald's CRDs");
        kubeapi::wait_established(&client, &ours)
            .await
            .expect("herald's CRDs established");
    });
    let herald = Herald::controller(
        api.herald_kubeconfig(),
        &[],
        &[
            ("POD_NAME", "herald-0"),
            ("RUNTIME_NAMESPACE", "flux-system"),
        ],
    );
    wait_until_routing(&herald.events, &probe, "herald");
    send_events(&herald.events, &lookalikes);
    let herald_nats = take_published("herald");
    let from_herald: Vec<Vec<Seen>> = lookalikes.iter().map(|(_, l)| l.take()).collect();
    herald.assert_no_secret_in_logs();

    let mut report = String::new();
    // The bus carries the event's JSON as Flux's encoder writes it: the
    // same bytes.
    if flux_nats != herald_nats {
        report.push_str(&format!(
            "== nats\nFlux:\n{flux_nats:#?}\nherald:\n{herald_nats:#?}\n"
        ));
    }
    let mut seen_documented = vec![false; DOCUMENTED.len()];
    let mut seen_flux_only = vec![false; FLUX_ONLY.len()];
    for ((case, _), (flux, ours)) in lookalikes.iter().zip(from_flux.iter().zip(&from_herald)) {
        // Sorted by what is compared: the documented differences left out.
        let sorted = |seen: &[Seen]| {
            let mut all: Vec<Value> = seen.iter().map(|s| normalise(case.kind, s)).collect();
            all.sort_by_key(|v| pairing_key(case.kind, v));
            all
        };
        let (mut flux, ours) = (sorted(flux), sorted(ours));
        for (i, (kind, method, path, _)) in FLUX_ONLY.iter().enumerate() {
            let before = flux.len();
            flux.retain(|r| !(*kind == case.kind && r["method"] == *method && r["path"] == *path));
            if flux.len() < before {
                seen_flux_only[i] = true;
            }
        }
        if flux.is_empty() {
            let name = case.kind.replace('.', "-");
            let errors: Vec<&str> = flux_log
                .lines()
                .filter(|l| l.contains(&format!("\"{name}\"")) || l.contains(&format!("/{name}")))
                .filter(|l| l.contains("error"))
                .collect();
            report.push_str(&format!(
                "== {}: Flux sent nothing (is the case set up as Flux reads it?)\n{}\n",
                case.kind,
                errors.join("\n")
            ));
            continue;
        }
        if flux.len() != ours.len() {
            report.push_str(&format!(
                "== {}: Flux sent {} requests, herald {}\nFlux:\n{}\nherald:\n{}\n",
                case.kind,
                flux.len(),
                ours.len(),
                serde_json::to_string_pretty(&flux).unwrap_or_default(),
                serde_json::to_string_pretty(&ours).unwrap_or_default()
            ));
            continue;
        }
        for (theirs, mine) in flux.iter().zip(&ours) {
            let mut differences = Vec::new();
            differ("", theirs, mine, &mut differences);
            for (at, difference) in differences {
                let documented = DOCUMENTED.iter().position(|(kind, prefix, _)| {
                    (*kind == case.kind || *kind == "*") && at.starts_with(prefix)
                });
                match documented {
                    Some(i) => seen_documented[i] = true,
                    None => report.push_str(&format!(
                        "== {} {} {}: {at}: {difference}\n",
                        case.kind, theirs["method"], theirs["path"]
                    )),
                }
            }
        }
    }
    for ((kind, method, path, why), seen) in FLUX_ONLY.iter().zip(seen_flux_only) {
        if !seen {
            report.push_str(&format!(
                "== {kind} {method} {path}: documented as sent by Flux only ({why}) but not seen: update the README and FLUX_ONLY\n"
            ));
        }
    }
    for ((kind, at, why), seen) in DOCUMENTED.iter().zip(seen_documented) {
        if !seen {
            report.push_str(&format!(
                "== {kind} {at}: documented as different ({why}) but the same now: update the README and DOCUMENTED\n"
            ));
        }
    }
    assert!(report.is_empty(), "{report}");
}

/// Flux's own event recorder (`fluxcd/pkg/runtime/events`, event API v1,
/// built by `tests/flux-recorder/build.sh`) posting to `herald serve`: the
/// events are accepted, `action` and `relatedObject` reach the `generic`
/// body as the recorder sent them, and templates read them.
#[test]
fn flux_s_recorder_posts_event_api_v1_to_herald() {
    let generic = support::sink::Sink::start();
    let slack = support::sink::Sink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("objects.yaml"),
        format!(
            r#"apiVersion: notification.toolkit.fluxcd.io/v1
kind: Provider
metadata: {{name: generic, namespace: flux-system}}
spec: {{type: generic, address: "{generic}"}}
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Alert
metadata: {{name: generic, namespace: flux-system}}
spec:
  providerRef: {{name: generic}}
  eventSeverity: info
  eventSources: [{{kind: Kustomization, name: my-app}}]
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Provider
metadata: {{name: slack, namespace: flux-system}}
spec: {{type: slack, address: "{slack}"}}
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Alert
metadata: {{name: slack, namespace: flux-system}}
spec:
  providerRef: {{name: slack}}
  eventSeverity: info
  eventSources: [{{kind: Kustomization, name: my-app}}]
  template:
    text: "{{{{ action }}}}: {{{{ related_object.kind | default('none') }}}}/{{{{ related_object.name | default('none') }}}}"
"#,
            generic = generic.url,
            slack = slack.url,
        ),
    )
    .expect("write manifests");
    let herald = Herald::serve(dir.path(), &[]);
    let output = Command::new(kubeapi::flux_recorder_binary())
        .args(["-webhook", &herald.events, "-namespace", "flux-system"])
        .output()
        .expect("run Flux's recorder");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let bodies: Vec<Value> = generic
        .wait_for(2, WAIT)
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert_eq!(bodies.len(), 2, "{:#?}", herald.logs());
    let warning = bodies
        .iter()
        .find(|b| b["severity"] == "error")
        .expect("the Warning, as an error event");
    assert_eq!(warning["action"], "reconcile", "{warning}");
    assert_eq!(warning["reason"], "ReconciliationFailed", "{warning}");
    assert_eq!(
        warning["relatedObject"]["kind"], "GitRepository",
        "{warning}"
    );
    assert_eq!(warning["relatedObject"]["name"], "my-repo", "{warning}");
    assert_eq!(
        warning["relatedObject"]["apiVersion"], "source.toolkit.fluxcd.io/v1",
        "{warning}"
    );
    assert_eq!(
        warning["metadata"]["revision"], "main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1",
        "{warning}"
    );
    assert_eq!(warning["metadata"]["deployment"], "web", "{warning}");
    let info = bodies
        .iter()
        .find(|b| b["severity"] == "info")
        .expect("the Normal event, as info");
    assert_eq!(info["action"], "apply", "{info}");
    assert!(info.get("relatedObject").is_none(), "{info}");

    let mut texts: Vec<String> = slack.wait_for(2, WAIT).iter().map(|r| r.text()).collect();
    texts.sort();
    assert_eq!(
        texts,
        ["apply: none/none", "reconcile: GitRepository/my-repo"]
    );
    herald.assert_no_secret_in_logs();
}
