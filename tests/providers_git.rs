//! The Git forge providers against HTTPS lookalikes of each forge's API (a
//! real server on 127.0.0.1 with a test CA, trusted through
//! `certSecretRef`): the exact requests Flux's Go clients send (method,
//! path, query, auth header, JSON body), the existing statuses read first
//! and an identical status not written again, comments updated in place,
//! GitHub App token exchange, retries on 503 and 429 with `Retry-After`,
//! no retry on other 4xx, `spec.commitStatusExpr`, and no secret in logs,
//! metrics or `herald route` output.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use support::herald::{Herald, binary, client};
use support::sink::{Answer, Received, Sink};
use support::tls::Pki;

const WAIT: Duration = Duration::from_secs(15);
const SHA: &str = "731f7eaddfb6af01cb2173e18f0f75b0ba780ef1";
const UID: &str = "0c9c2e41-5d7a-4b8e-9a3f-1f2e3d4c5b6a";
/// Flux's default commit status id for the test events and Provider UID.
const STATUS_ID: &str = "kustomization/my-app-kustomization/0c9c2e41";
const TOKEN: &str = "forge-secret-token-4f1d";

/// A YAML double-quoted scalar (JSON strings are valid YAML).
fn quoted(value: &str) -> String {
    serde_json::to_string(value).expect("string")
}

fn secret(name: &str, pairs: &[(&str, &str)]) -> String {
    let data: String = pairs
        .iter()
        .map(|(k, v)| format!("  {}: {}\n", quoted(k), quoted(v)))
        .collect();
    format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: flux-system}}\nstringData:\n{data}"
    )
}

/// A Provider (with a UID, as in a cluster) of `kind` reading Secret
/// `forge` and trusting the test CA, extra spec lines, and an Alert
/// routing every Kustomization event to it.
fn manifests(kind: &str, spec: &str, pairs: &[(&str, &str)], ca: &str) -> tempfile::TempDir {
    let text = format!(
        "---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {{name: forge, namespace: flux-system, uid: {UID}}}
spec:
  type: {kind}
  secretRef: {{name: forge}}
  certSecretRef: {{name: forge-ca}}
{spec}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {{name: commits, namespace: flux-system}}
spec:
  providerRef: {{name: forge}}
  eventSeverity: info
  eventSources: [{{kind: Kustomization, name: '*'}}]
{}{}",
        secret("forge", pairs),
        secret("forge-ca", &[("ca.crt", ca)]),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("manifests.yaml"), text).expect("write");
    dir
}

/// A Kustomization event about `SHA`, with extra metadata.
fn event(severity: &str, reason: &str, message: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut metadata = serde_json::Map::new();
    metadata.insert(
        "kustomize.toolkit.fluxcd.io/revision".into(),
        Value::String(format!("main@sha1:{SHA}")),
    );
    for (k, v) in extra {
        metadata.insert((*k).into(), Value::String((*v).into()));
    }
    serde_json::to_vec(&json!({
        "involvedObject": {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "name": "my-app-kustomization",
            "namespace": "flux-system",
            "uid": "7d0cdc51-ddcf-4743-b223-83ca5c699632"
        },
        "severity": severity,
        "timestamp": "2026-11-20T07:26:19Z",
        "message": message,
        "reason": reason,
        "metadata": metadata,
        "reportingController": "kustomize-controller"
    }))
    .expect("event")
}

fn failure(message: &str) -> Vec<u8> {
    event("error", "ReconciliationFailed", message, &[])
}

fn header<'a>(received: &'a Received, name: &str) -> Option<&'a str> {
    received.headers.get(name).and_then(|v| v.to_str().ok())
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn metrics(herald: &Herald) -> String {
    client::get(&format!("{}/metrics", herald.metrics)).1
}

fn route(dir: &Path, event: &[u8]) -> String {
    let events = tempfile::tempdir().expect("tempdir");
    let file = events.path().join("event.json");
    std::fs::write(&file, event).expect("event file");
    let output = Command::new(binary())
        .args(["route", "--manifests"])
        .arg(dir)
        .arg(&file)
        .output()
        .expect("herald route");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).expect("utf-8")
}

fn assert_absent(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "{secret:?} leaked into {what}: {text}"
        );
    }
}

/// Waits until `count` log lines contain `text`.
fn wait_for_count(herald: &Herald, text: &str, count: usize) -> bool {
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        if herald.logs().iter().filter(|l| l.contains(text)).count() >= count {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn serve(dir: &Path, env: &[(&str, &str)]) -> Herald {
    let args = [
        "serve".to_owned(),
        "--manifests".to_owned(),
        dir.display().to_string(),
    ];
    Herald::start(&args, env)
}

/// Posts an event and waits until herald has `count` requests recorded.
fn post_and_wait(herald: &Herald, sink: &Sink, body: Vec<u8>, count: usize) -> Vec<Received> {
    assert_eq!(herald.post(body).0, 202);
    let received = sink.wait_for(count, WAIT);
    assert_eq!(
        received.len(),
        count,
        "{:#?}\n{:#?}",
        received,
        herald.logs()
    );
    received
}

/// One commit-status type against its lookalike.
struct StatusCase {
    kind: &'static str,
    /// The Provider address, `{}` standing for the lookalike's `host:port`.
    address: &'static str,
    secret: Vec<(&'static str, &'static str)>,
    /// Environment of the herald process (`{}` as in `address`).
    env: Vec<(&'static str, &'static str)>,
    /// Path (and query) of the read.
    read: String,
    /// The answer when nothing is there yet.
    nothing: Answer,
    /// An answer holding the status about to be written.
    same: Answer,
    /// Path of the write, and its body.
    write: String,
    body: Value,
    /// The credential header and its value.
    auth: (&'static str, String),
    /// Other headers every request carries.
    headers: Vec<(&'static str, &'static str)>,
}

/// The expected body, its `"{address}"` strings replaced by the address.
fn with_address(body: &Value, address: &str) -> Value {
    match body {
        Value::String(s) if s == "{address}" => Value::String(address.to_owned()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), with_address(v, address)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn path_and_query(r: &Received) -> String {
    match &r.query {
        Some(query) => format!("{}?{query}", r.path),
        None => r.path.clone(),
    }
}

fn assert_request(r: &Received, case: &StatusCase, method: &str, path: &str) {
    assert_eq!(r.method, method, "{r:#?}");
    assert_eq!(path_and_query(r), path, "{r:#?}");
    assert_eq!(header(r, case.auth.0), Some(case.auth.1.as_str()), "{r:#?}");
    for (name, value) in &case.headers {
        assert_eq!(header(r, name), Some(*value), "{name} of {r:#?}");
    }
}

/// Reads (503, then 429 with `Retry-After: 1`, then nothing there), writes;
/// then reads the same status and writes nothing; then a read refused
/// with 400 is not retried. Metrics, `herald route` and the absence of
/// secrets are checked on the way.
fn commit_status(case: StatusCase) {
    let pki = Pki::new();
    let sink = Sink::start_tls(pki.server_config(false));
    let authority = sink.authority();
    let address = case.address.replace("{}", &authority);
    let mut pairs = vec![("address", address.as_str())];
    pairs.extend(case.secret.iter().copied());
    let dir = manifests(case.kind, "", &pairs, &pki.ca);
    let env: Vec<(String, String)> = case
        .env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.replace("{}", &authority)))
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let herald = serve(dir.path(), &env);

    sink.script([
        Answer::status(503),
        Answer::status(429).header("retry-after", "1"),
        case.nothing.clone(),
        Answer::status(201).body("{}"),
    ]);
    let received = post_and_wait(&herald, &sink, failure("first failure"), 4);
    for r in &received[..3] {
        assert_request(r, &case, "GET", &case.read);
    }
    assert!(
        received[2].at - received[1].at >= Duration::from_secs(1),
        "retried before Retry-After"
    );
    assert_request(&received[3], &case, "POST", &case.write);
    assert_eq!(
        received[3].body,
        with_address(&case.body, &address),
        "{}",
        case.kind
    );
    assert_eq!(
        header(&received[3], "content-type"),
        Some("application/json")
    );

    // The same status is there already: nothing is written.
    sink.script([case.same.clone()]);
    let received = post_and_wait(&herald, &sink, failure("second failure"), 5);
    assert_request(&received[4], &case, "GET", &case.read);
    assert!(
        wait_for_count(&herald, "\"delivered\"", 2),
        "{:#?}",
        herald.logs()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.received().len(), 5, "an identical status was written");

    // A 400 is not retried.
    sink.script([Answer::status(400).body("bad request")]);
    post_and_wait(&herald, &sink, failure("third failure"), 6);
    let line = herald
        .wait_for_log("not retrying", WAIT)
        .expect("failure logged");
    assert!(line.contains("400"), "{line}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.received().len(), 6, "a 400 was retried");

    let metrics = metrics(&herald);
    let kind = case.kind;
    for expected in [
        format!("herald_notifications_total{{provider_type=\"{kind}\",result=\"delivered\"}} 2"),
        format!("herald_notifications_total{{provider_type=\"{kind}\",result=\"failed\"}} 1"),
        format!("herald_delivery_retries_total{{provider_type=\"{kind}\"}} 2"),
    ] {
        assert!(metrics.contains(&expected), "{expected} not in {metrics}");
    }

    let routed = route(dir.path(), &failure("routed"));
    let line: Value = serde_json::from_str(routed.lines().next().expect("a line")).expect("json");
    assert_eq!(line["payload"]["method"], "POST", "{routed}");
    let write_path = case.write.split('?').next().unwrap_or_default();
    assert_eq!(line["payload"]["path"], write_path, "{routed}");
    let secrets: Vec<&str> = case
        .secret
        .iter()
        .map(|(_, v)| *v)
        .chain(case.auth.1.split(' ').nth(1))
        .collect();
    for (what, text) in [
        ("logs", herald.logs().join("\n")),
        ("metrics", metrics),
        ("route", routed),
    ] {
        assert_absent(what, &text, &secrets);
    }
}

#[test]
fn github_sets_a_commit_status_on_github_enterprise() {
    let status = json!({
        "state": "failure",
        "description": "reconciliation failed",
        "context": STATUS_ID,
    });
    commit_status(StatusCase {
        kind: "github",
        address: "https://{}/org/repo.git",
        secret: vec![("token", TOKEN)],
        env: Vec::new(),
        read: format!("/api/v3/repos/org/repo/commits/{SHA}/statuses?per_page=50"),
        nothing: Answer::status(200).body("[]"),
        same: Answer::status(200).body(json!([status.clone()]).to_string()),
        write: format!("/api/v3/repos/org/repo/statuses/{SHA}"),
        body: status,
        auth: ("authorization", format!("Bearer {TOKEN}")),
        headers: vec![
            ("accept", "application/vnd.github.v3+json"),
            ("x-github-api-version", "2022-11-28"),
        ],
    });
}

#[test]
fn gitlab_sets_a_commit_status_on_a_project_in_a_subgroup() {
    commit_status(StatusCase {
        kind: "gitlab",
        address: "https://{}/group/sub/repo.git",
        secret: vec![("token", TOKEN)],
        env: Vec::new(),
        read: format!(
            "/api/v4/projects/group%2Fsub%2Frepo/repository/commits/{SHA}/statuses?name=kustomization%2Fmy-app-kustomization%2F0c9c2e41"
        ),
        nothing: Answer::status(200).body("[]"),
        same: Answer::status(200).body(
            json!([{
                "sha": SHA,
                "status": "failed",
                "name": STATUS_ID,
                "description": "reconciliation failed",
            }])
            .to_string(),
        ),
        write: format!("/api/v4/projects/group%2Fsub%2Frepo/statuses/{SHA}"),
        body: json!({
            "state": "failed",
            "name": STATUS_ID,
            "description": "reconciliation failed",
        }),
        auth: ("private-token", TOKEN.to_owned()),
        headers: Vec::new(),
    });
}

#[test]
fn gitea_sets_a_commit_status() {
    commit_status(StatusCase {
        kind: "gitea",
        address: "https://{}/org/repo",
        secret: vec![("token", TOKEN)],
        env: Vec::new(),
        read: format!("/api/v1/repos/org/repo/statuses/{SHA}?page=1&limit=50"),
        nothing: Answer::status(200).body("[]"),
        same: Answer::status(200).body(
            json!([{
                "status": "failure",
                "description": "reconciliation failed",
                "context": STATUS_ID,
            }])
            .to_string(),
        ),
        write: format!("/api/v1/repos/org/repo/statuses/{SHA}"),
        body: json!({
            "state": "failure",
            "target_url": "",
            "description": "reconciliation failed",
            "context": STATUS_ID,
        }),
        auth: ("authorization", format!("token {TOKEN}")),
        headers: Vec::new(),
    });
}

fn sha1_hex(s: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, s.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn bitbucket_sets_a_build_status_keyed_by_the_sha1_of_the_id() {
    let key = sha1_hex(STATUS_ID);
    commit_status(StatusCase {
        kind: "bitbucket",
        address: "https://bitbucket.org/owner/repo.git",
        secret: vec![("token", "flux-user:app-password-77a1")],
        env: vec![("BITBUCKET_API_BASE_URL", "https://{}/2.0")],
        read: format!("/2.0/repositories/owner/repo/commit/{SHA}/statuses/build/{key}"),
        nothing: Answer::status(404).body("{\"type\":\"error\"}"),
        same: Answer::status(200).body(
            json!({
                "key": key,
                "state": "FAILED",
                "name": "kustomization/my-app-kustomization",
                "description": "reconciliation failed",
            })
            .to_string(),
        ),
        write: format!("/2.0/repositories/owner/repo/commit/{SHA}/statuses/build"),
        body: json!({
            "key": key,
            "url": "https://bitbucket.org",
            "state": "FAILED",
            "name": "kustomization/my-app-kustomization",
            "description": "reconciliation failed",
        }),
        auth: ("authorization", basic("flux-user", "app-password-77a1")),
        headers: Vec::new(),
    });
}

#[test]
fn bitbucketserver_sets_a_build_status_with_basic_auth() {
    let key = sha1_hex(STATUS_ID);
    let name = "kustomization/my-app-kustomization [reconciliation failed]";
    // The body's url is the address itself, which the test knows only once
    // the lookalike runs: checked separately below.
    let pki = Pki::new();
    let sink = Sink::start_tls(pki.server_config(false));
    let address = format!("https://{}/bitbucket/scm/PROJ/repo.git", sink.authority());
    let dir = manifests(
        "bitbucketserver",
        "",
        &[
            ("address", &address),
            ("username", "flux"),
            ("password", "bb-password-5c2e"),
        ],
        &pki.ca,
    );
    let herald = serve(dir.path(), &[]);
    sink.script([
        Answer::status(404),
        Answer::status(204),
        Answer::status(200).body(
            json!({"key": key, "state": "FAILED", "name": name, "description": "reconciliation failed"})
                .to_string(),
        ),
    ]);
    let received = post_and_wait(&herald, &sink, failure("first"), 2);
    let builds =
        format!("/bitbucket/rest/api/latest/projects/PROJ/repos/repo/commits/{SHA}/builds");
    let auth = basic("flux", "bb-password-5c2e");
    assert_eq!(received[0].method, "GET");
    assert_eq!(path_and_query(&received[0]), format!("{builds}?key={key}"));
    assert_eq!(received[1].method, "POST");
    assert_eq!(path_and_query(&received[1]), builds);
    for r in &received {
        assert_eq!(header(r, "authorization"), Some(auth.as_str()));
        assert_eq!(header(r, "x-atlassian-token"), Some("no-check"));
        assert_eq!(header(r, "x-requested-with"), Some("XMLHttpRequest"));
    }
    assert_eq!(
        received[1].body,
        json!({
            "description": "reconciliation failed",
            "key": key,
            "name": name,
            "state": "FAILED",
            "url": address,
        })
    );
    assert!(
        received[1].raw.ends_with(b"}\n"),
        "Go's encoder ends with a newline"
    );
    // Already there: not written again.
    post_and_wait(&herald, &sink, failure("second"), 3);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.received().len(), 3);
    let routed = route(dir.path(), &failure("routed"));
    assert_absent("route", &routed, &["bb-password-5c2e", &address]);
    assert_absent("logs", &herald.logs().join("\n"), &["bb-password-5c2e"]);
}

#[test]
fn bitbucketserver_retries_and_refuses_like_the_others() {
    let key = sha1_hex(STATUS_ID);
    commit_status(StatusCase {
        kind: "bitbucketserver",
        address: "https://{}/scm/PROJ/repo.git",
        secret: vec![("token", TOKEN)],
        env: Vec::new(),
        read: format!("/rest/api/latest/projects/PROJ/repos/repo/commits/{SHA}/builds?key={key}"),
        nothing: Answer::status(404),
        same: Answer::status(200).body(
            json!({
                "key": key,
                "state": "FAILED",
                "name": "kustomization/my-app-kustomization [reconciliation failed]",
                "description": "reconciliation failed",
            })
            .to_string(),
        ),
        write: format!("/rest/api/latest/projects/PROJ/repos/repo/commits/{SHA}/builds"),
        body: json!({
            "description": "reconciliation failed",
            "key": key,
            "name": "kustomization/my-app-kustomization [reconciliation failed]",
            "state": "FAILED",
            "url": "{address}",
        }),
        auth: ("authorization", format!("Bearer {TOKEN}")),
        headers: vec![("x-atlassian-token", "no-check")],
    });
}

#[test]
fn azuredevops_sets_a_commit_status_with_a_pat() {
    let status = json!({
        "context": {"genre": "fluxcd", "name": STATUS_ID},
        "description": "reconciliation failed",
        "state": "error",
    });
    commit_status(StatusCase {
        kind: "azuredevops",
        address: "https://{}/org/proj/_git/repo",
        secret: vec![("token", TOKEN)],
        env: Vec::new(),
        read: format!("/org/proj/_apis/git/repositories/repo/commits/{SHA}/statuses"),
        nothing: Answer::status(200).body("{\"count\":0,\"value\":[]}"),
        same: Answer::status(200).body(json!({"count": 1, "value": [status.clone()]}).to_string()),
        write: format!("/org/proj/_apis/git/repositories/repo/commits/{SHA}/statuses"),
        body: status,
        auth: ("authorization", basic("", TOKEN)),
        headers: vec![("accept", "application/json;api-version=6.0-preview.1")],
    });
}
