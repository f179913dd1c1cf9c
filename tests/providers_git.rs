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
    /// A request sent before the read, and its answer (Gitea's version).
    preface: Option<(String, Answer)>,
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
    if method == "GET" {
        assert!(r.raw.is_empty(), "a read has no body: {r:#?}");
        // Gitea's SDK sends the JSON content type when it lists statuses
        // (as Flux's controller shows side by side); no other read has one.
        let expected = (case.kind.starts_with("gitea") && path.contains("/statuses"))
            .then_some("application/json");
        assert_eq!(header(r, "content-type"), expected, "{r:#?}");
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

    // A request some clients send before the read (Gitea's version).
    let preface: Vec<(String, Answer)> = case.preface.iter().cloned().collect();
    let first = preface
        .first()
        .map_or(case.read.as_str(), |(p, _)| p.as_str());
    let mut script = vec![
        Answer::status(503),
        Answer::status(429).header("retry-after", "1"),
    ];
    script.extend(preface.iter().map(|(_, a)| a.clone()));
    script.extend([case.nothing.clone(), Answer::status(201).body("{}")]);
    sink.script(script);
    let count = 4 + preface.len();
    let received = post_and_wait(&herald, &sink, failure("first failure"), count);
    assert_request(&received[0], &case, "GET", first);
    assert_request(&received[1], &case, "GET", first);
    assert!(
        received[2].at - received[1].at >= Duration::from_secs(1),
        "retried before Retry-After"
    );
    for (r, (path, _)) in received[2..].iter().zip(&preface) {
        assert_request(r, &case, "GET", path);
    }
    assert_request(&received[count - 2], &case, "GET", &case.read);
    let write = &received[count - 1];
    assert_request(write, &case, "POST", &case.write);
    assert_eq!(
        write.body,
        with_address(&case.body, &address),
        "{}",
        case.kind
    );
    let content_type = match case.kind {
        "azuredevops" => "application/json;charset=utf-8",
        _ => "application/json",
    };
    assert_eq!(header(write, "content-type"), Some(content_type));
    // go-github and Flux's Bitbucket Server code encode with json.Encoder
    // (a final newline); the other clients with json.Marshal.
    let newline = matches!(case.kind, "github" | "bitbucketserver");
    assert_eq!(write.raw.ends_with(b"\n"), newline, "{:?}", write.raw);

    // The same status is there already: nothing is written.
    let mut script: Vec<Answer> = preface.iter().map(|(_, a)| a.clone()).collect();
    script.push(case.same.clone());
    sink.script(script);
    let count = count + 1 + preface.len();
    let received = post_and_wait(&herald, &sink, failure("second failure"), count);
    assert_request(&received[count - 1], &case, "GET", &case.read);
    assert!(
        wait_for_count(&herald, "\"delivered\"", 2),
        "{:#?}",
        herald.logs()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        sink.received().len(),
        count,
        "an identical status was written"
    );

    // A 400 is not retried.
    sink.script([Answer::status(400).body("bad request")]);
    post_and_wait(&herald, &sink, failure("third failure"), count + 1);
    let line = herald
        .wait_for_log("not retrying", WAIT)
        .expect("failure logged");
    assert!(line.contains("400"), "{line}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.received().len(), count + 1, "a 400 was retried");

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
        preface: None,
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
        preface: None,
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
        headers: vec![("accept", "application/json")],
    });
}

#[test]
fn gitea_sets_a_commit_status() {
    commit_status(StatusCase {
        kind: "gitea",
        address: "https://{}/org/repo",
        secret: vec![("token", TOKEN)],
        env: Vec::new(),
        read: format!("/api/v1/repos/org/repo/commits/{SHA}/statuses?limit=50&page=1"),
        preface: Some((
            "/api/v1/version".to_owned(),
            Answer::status(200).body("{\"version\":\"1.21.0\"}"),
        )),
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
        preface: None,
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
        preface: None,
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
        preface: None,
        nothing: Answer::status(200).body("{\"count\":0,\"value\":[]}"),
        same: Answer::status(200).body(json!({"count": 1, "value": [status.clone()]}).to_string()),
        write: format!("/org/proj/_apis/git/repositories/repo/commits/{SHA}/statuses"),
        body: status,
        auth: ("authorization", basic("", TOKEN)),
        headers: vec![
            ("accept", "application/json;api-version=6.0"),
            ("x-tfs-fedauthredirect", "Suppress"),
        ],
    });
}

/// An expired token: Azure DevOps answers 203 with its HTML sign-in page
/// (or another 2xx without JSON). That is an authentication failure, not
/// a delivery: nothing is written, the notification fails, and the
/// requests carry Flux's `X-TFS-Session` id.
#[test]
fn azuredevops_treats_a_sign_in_page_as_an_authentication_failure() {
    let pki = Pki::new();
    let sink = Sink::start_tls(pki.server_config(false));
    sink.default_answer(Answer::status(203).body("<html>Sign in</html>"));
    let address = format!("https://{}/org/proj/_git/repo", sink.authority());
    let dir = manifests(
        "azuredevops",
        "",
        &[("address", address.as_str()), ("token", TOKEN)],
        &pki.ca,
    );
    let herald = serve(dir.path(), &[]);
    let received = post_and_wait(&herald, &sink, failure("expired token"), 1);
    assert_eq!(received[0].method, "GET");
    let session = header(&received[0], "x-tfs-session").expect("X-TFS-Session");
    assert_eq!(session.len(), 36, "{session}");
    assert!(
        wait_for_count(&herald, "the token is not valid for this organization", 1),
        "{:#?}",
        herald.logs()
    );
    assert!(!herald.logs().iter().any(|l| l.contains("\"delivered\"")));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        sink.received().len(),
        1,
        "wrote a status after a sign-in page"
    );
}

/// An RSA key made for the test with `openssl`: the PEM (PKCS#1, as
/// GitHub hands App keys out) and the public key (DER) that checks the JWT.
fn rsa_key() -> (String, Vec<u8>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pem = dir.path().join("app.pem");
    let public = dir.path().join("app.der");
    let status = Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&pem)
        .arg("2048")
        .output()
        .expect("openssl genrsa");
    assert!(status.status.success(), "{status:?}");
    let status = Command::new("openssl")
        .args(["rsa", "-RSAPublicKey_out", "-outform", "DER", "-in"])
        .arg(&pem)
        .arg("-out")
        .arg(&public)
        .output()
        .expect("openssl rsa");
    assert!(status.status.success(), "{status:?}");
    (
        std::fs::read_to_string(&pem).expect("pem"),
        std::fs::read(&public).expect("der"),
    )
}

/// Checks an RS256 JWT against the public key; returns its claims.
fn verify_jwt(jwt: &str, public: &[u8]) -> Value {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "{jwt}");
    let header: Value = serde_json::from_slice(&b64.decode(parts[0]).expect("b64")).expect("json");
    assert_eq!(header, json!({"alg": "RS256", "typ": "JWT"}));
    let signature = b64.decode(parts[2]).expect("b64");
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, public)
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .expect("the JWT is signed with the App's key");
    serde_json::from_slice(&b64.decode(parts[1]).expect("b64")).expect("claims")
}

#[test]
fn github_app_credentials_are_exchanged_for_an_installation_token_once() {
    let (pem, public) = rsa_key();
    let pki = Pki::new();
    let sink = Sink::start_tls(pki.server_config(false));
    let base = format!("https://{}/api/v3", sink.authority());
    let address = format!("https://{}/org/repo", sink.authority());
    let dir = manifests(
        "github",
        "",
        &[
            ("address", &address),
            ("githubAppID", "4242"),
            ("githubAppInstallationID", "777"),
            ("githubAppPrivateKey", &pem),
            ("githubAppBaseURL", &base),
        ],
        &pki.ca,
    );
    let herald = serve(dir.path(), &[]);
    let installation_token = "ghs_installation_token_9d3e";
    let expires = k8s_openapi::jiff::Timestamp::now()
        .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(3600))
        .expect("time")
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    sink.script([
        Answer::status(201)
            .body(json!({"token": installation_token, "expires_at": expires}).to_string()),
        Answer::status(200).body("[]"),
        Answer::status(201).body("{}"),
        Answer::status(200).body("[]"),
        Answer::status(201).body("{}"),
    ]);
    let received = post_and_wait(&herald, &sink, failure("first"), 3);
    assert_eq!(received[0].method, "POST");
    assert_eq!(
        received[0].path,
        "/api/v3/app/installations/777/access_tokens"
    );
    let jwt = header(&received[0], "authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .expect("a bearer JWT")
        .to_owned();
    let claims = verify_jwt(&jwt, &public);
    assert_eq!(claims["iss"], "4242");
    let (iat, exp) = (
        claims["iat"].as_i64().expect("iat"),
        claims["exp"].as_i64().expect("exp"),
    );
    assert_eq!(exp - iat, 120, "{claims}");
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    assert!(
        (now - 60..=now).contains(&iat),
        "issued 30 s back: {claims}"
    );
    let bearer = format!("Bearer {installation_token}");
    assert_eq!(received[1].method, "GET");
    assert_eq!(header(&received[1], "authorization"), Some(bearer.as_str()));
    assert_eq!(
        received[2].path,
        format!("/api/v3/repos/org/repo/statuses/{SHA}")
    );
    assert_eq!(header(&received[2], "authorization"), Some(bearer.as_str()));

    // The token is still fresh: no second exchange.
    let received = post_and_wait(&herald, &sink, failure("second"), 5);
    assert_eq!(received[3].method, "GET");
    assert_eq!(header(&received[3], "authorization"), Some(bearer.as_str()));
    assert_eq!(received[4].method, "POST");

    let key_line = pem.lines().nth(1).expect("a key line");
    let routed = route(dir.path(), &failure("routed"));
    for (what, text) in [
        ("logs", herald.logs().join("\n")),
        ("metrics", metrics(&herald)),
        ("route", routed),
    ] {
        assert_absent(what, &text, &[installation_token, key_line, &jwt]);
    }
}

#[test]
fn githubdispatch_sends_the_event_as_a_repository_dispatch() {
    let pki = Pki::new();
    let sink = Sink::start_tls(pki.server_config(false));
    let address = format!("https://{}/org/repo", sink.authority());
    let dir = manifests(
        "githubdispatch",
        "",
        &[("address", &address), ("token", TOKEN)],
        &pki.ca,
    );
    let herald = serve(dir.path(), &[]);
    sink.script([
        Answer::status(503),
        Answer::status(204),
        Answer::status(422).body("{\"message\":\"bad\"}"),
    ]);
    let received = post_and_wait(&herald, &sink, failure("dispatched <a> & <b>"), 2);
    let r = &received[1];
    // The payload is json.Marshal's (HTML escaped), in the event's field
    // order; go-github's encoder ends the body with a newline.
    let raw = String::from_utf8(r.raw.clone()).expect("utf-8");
    assert!(
        raw.starts_with(
            "{\"event_type\":\"Kustomization/my-app-kustomization.flux-system\",\"client_payload\":{\"involvedObject\":{\"kind\":\"Kustomization\","
        ),
        "{raw}"
    );
    assert!(
        raw.contains("\"message\":\"dispatched \\u003ca\\u003e \\u0026 \\u003cb\\u003e\""),
        "{raw}"
    );
    assert!(raw.ends_with("}}\n"), "{raw:?}");
    assert_eq!(r.raw, received[0].raw, "the retry sends the same body");
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/api/v3/repos/org/repo/dispatches");
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(header(r, "authorization"), Some(bearer.as_str()));
    assert_eq!(
        r.body,
        json!({
            "event_type": "Kustomization/my-app-kustomization.flux-system",
            "client_payload": {
                "involvedObject": {
                    "kind": "Kustomization",
                    "namespace": "flux-system",
                    "name": "my-app-kustomization",
                    "uid": "7d0cdc51-ddcf-4743-b223-83ca5c699632",
                    "apiVersion": "kustomize.toolkit.fluxcd.io/v1"
                },
                "severity": "error",
                "timestamp": "2026-11-20T07:26:19Z",
                "message": "dispatched <a> & <b>",
                "reason": "ReconciliationFailed",
                "metadata": {"revision": format!("main@sha1:{SHA}")},
                "reportingController": "kustomize-controller"
            }
        })
    );
    post_and_wait(&herald, &sink, failure("refused"), 3);
    assert!(herald.wait_for_log("not retrying", WAIT).is_some());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.received().len(), 3, "a 422 was retried");
    assert_absent("logs", &herald.logs().join("\n"), &[TOKEN]);
}

/// One change-request comment type against its lookalike.
struct CommentCase {
    kind: &'static str,
    address: &'static str,
    /// A request before the others (Gitea's version) and its answer.
    preface: Option<(&'static str, Value)>,
    /// The authenticated user's answer.
    user: Value,
    user_path: &'static str,
    /// Path and query of the listing.
    list: &'static str,
    /// Comments, given the marker: another user's with the marker, and
    /// herald's own (id 9).
    comments: fn(&str) -> Value,
    update: (&'static str, &'static str),
    create: &'static str,
    auth: (&'static str, String),
}

fn change_request_event(message: &str) -> Vec<u8> {
    event(
        "error",
        "ReconciliationFailed",
        message,
        &[("event.toolkit.fluxcd.io/change_request", "42")],
    )
}

/// Updates herald's own earlier comment (found by its marker and author),
/// then, with none there, creates one.
fn comment(case: CommentCase) {
    let pki = Pki::new();
    let sink = Sink::start_tls(pki.server_config(false));
    let address = case.address.replace("{}", &sink.authority());
    let dir = manifests(
        case.kind,
        "",
        &[("address", &address), ("token", TOKEN)],
        &pki.ca,
    );
    let herald = serve(dir.path(), &[]);
    let marker =
        format!("<!-- {{prefix}}:{UID}/Kustomization/flux-system/my-app-kustomization -->");
    let prefix = if case.kind == "gitlabmergerequestcomment" {
        "flux-mr-comment-key"
    } else {
        "flux-pr-comment-key"
    };
    let marker = marker.replace("{prefix}", prefix);
    let body = |message: &str| {
        format!(
            "{marker}\n\n## Flux Status\n\n⚠️ Kustomization/flux-system/my-app-kustomization\n\n{message}\n\nMetadata:\n* `revision`: main@sha1:{SHA}\n"
        )
    };
    // Gitea's version request comes first in every conversation.
    let preface: Vec<Answer> = case
        .preface
        .iter()
        .map(|(_, v)| Answer::status(200).body(v.to_string()))
        .collect();
    let p = preface.len();
    let user = Answer::status(200).body(case.user.to_string());
    let mut script = preface.clone();
    script.extend([user.clone(), Answer::status(503)]);
    script.extend(preface.iter().cloned());
    script.extend([
        user.clone(),
        Answer::status(200).body((case.comments)(&marker).to_string()),
        Answer::status(200).body("{}"),
    ]);
    sink.script(script);
    let count = 5 + 2 * p;
    let received = post_and_wait(&herald, &sink, change_request_event("updated"), count);
    for r in &received {
        assert_eq!(header(r, case.auth.0), Some(case.auth.1.as_str()), "{r:#?}");
    }
    if let Some((path, _)) = case.preface {
        assert_eq!(path_and_query(&received[0]), path);
        assert_eq!(path_and_query(&received[p + 2]), path);
    }
    assert_eq!(
        (received[p].method.as_str(), received[p].path.as_str()),
        ("GET", case.user_path)
    );
    assert_eq!(path_and_query(&received[count - 2]), case.list);
    if case.kind == "githubpullrequestcomment" {
        // As Flux's go-github lists issue comments.
        assert_eq!(
            header(&received[count - 2], "accept"),
            Some("application/vnd.github.squirrel-girl-preview")
        );
    }
    let update = &received[count - 1];
    assert_eq!(update.method, case.update.0);
    assert_eq!(update.path, case.update.1);
    assert_eq!(update.body, json!({"body": body("updated")}));

    let mut script = preface.clone();
    script.extend([
        user,
        Answer::status(200).body("[]"),
        Answer::status(201).body("{}"),
    ]);
    sink.script(script);
    let count = count + 3 + p;
    let received = post_and_wait(&herald, &sink, change_request_event("created"), count);
    let create = &received[count - 1];
    assert_eq!(create.method, "POST");
    assert_eq!(create.path, case.create);
    assert_eq!(create.body, json!({"body": body("created")}));
    assert!(wait_for_count(&herald, "\"delivered\"", 2));
    let routed = route(dir.path(), &change_request_event("routed"));
    let line: Value = serde_json::from_str(routed.lines().next().expect("a line")).expect("json");
    assert_eq!(line["payload"]["path"], case.create, "{routed}");
    assert_eq!(line["payload"]["body"], json!({"body": body("routed")}));
    assert_absent("logs", &herald.logs().join("\n"), &[TOKEN]);
    assert_absent("route", &routed, &[TOKEN]);
    assert_absent("metrics", &metrics(&herald), &[TOKEN]);
}

#[test]
fn githubpullrequestcomment_updates_its_own_comment_in_place() {
    comment(CommentCase {
        kind: "githubpullrequestcomment",
        address: "https://{}/org/repo",
        preface: None,
        user: json!({"login": "flux-bot", "id": 1}),
        user_path: "/api/v3/user",
        list: "/api/v3/repos/org/repo/issues/42/comments?direction=asc&per_page=100&sort=created",
        comments: |marker| {
            json!([
                {"id": 5, "body": format!("{marker}\n\nquoted"), "user": {"login": "someone"}},
                {"id": 9, "body": format!("{marker}\n\nold"), "user": {"login": "flux-bot"}},
            ])
        },
        update: ("PATCH", "/api/v3/repos/org/repo/issues/comments/9"),
        create: "/api/v3/repos/org/repo/issues/42/comments",
        auth: ("authorization", format!("Bearer {TOKEN}")),
    });
}

#[test]
fn gitlabmergerequestcomment_updates_its_own_note_in_place() {
    comment(CommentCase {
        kind: "gitlabmergerequestcomment",
        address: "https://{}/group/repo",
        preface: None,
        user: json!({"username": "flux-bot", "id": 1}),
        user_path: "/api/v4/user",
        list: "/api/v4/projects/group%2Frepo/merge_requests/42/notes?order_by=created_at&per_page=100&sort=asc",
        comments: |marker| {
            json!([
                {"id": 5, "body": format!("{marker}\n\nquoted"), "author": {"username": "someone"}},
                {"id": 9, "body": format!("{marker}\n\nold"), "author": {"username": "flux-bot"}},
            ])
        },
        update: (
            "PUT",
            "/api/v4/projects/group%2Frepo/merge_requests/42/notes/9",
        ),
        create: "/api/v4/projects/group%2Frepo/merge_requests/42/notes",
        auth: ("private-token", TOKEN.to_owned()),
    });
}

#[test]
fn giteapullrequestcomment_updates_its_own_comment_in_place() {
    comment(CommentCase {
        kind: "giteapullrequestcomment",
        address: "https://{}/org/repo",
        preface: Some(("/api/v1/version", json!({"version": "1.22.1"}))),
        user: json!({"login": "flux-bot", "id": 1}),
        user_path: "/api/v1/user",
        list: "/api/v1/repos/org/repo/issues/42/comments?limit=100&page=1",
        comments: |marker| {
            json!([
                {"id": 5, "body": format!("{marker}\n\nquoted"), "user": {"login": "someone"}},
                {"id": 9, "body": format!("{marker}\n\nold"), "user": {"login": "flux-bot"}},
            ])
        },
        update: ("PATCH", "/api/v1/repos/org/repo/issues/comments/9"),
        create: "/api/v1/repos/org/repo/issues/42/comments",
        auth: ("authorization", format!("token {TOKEN}")),
    });
}

#[test]
fn commit_status_expr_names_the_status() {
    let pki = Pki::new();
    let sink = Sink::start_tls(pki.server_config(false));
    let address = format!("https://{}/org/repo", sink.authority());
    let expr = "'flux/' + alert.metadata.name + '/' + provider.spec.type + '/' + event.involvedObject.name + '/' + event.metadata.revision";
    let dir = manifests(
        "github",
        &format!("  commitStatusExpr: {}", quoted(expr)),
        &[("address", &address), ("token", TOKEN)],
        &pki.ca,
    );
    let herald = serve(dir.path(), &[]);
    sink.script([Answer::status(200).body("[]"), Answer::status(201)]);
    let received = post_and_wait(&herald, &sink, failure("named"), 2);
    assert_eq!(
        received[1].body["context"],
        format!("flux/commits/github/my-app-kustomization/main@sha1:{SHA}")
    );
}

#[test]
fn commit_status_expr_errors_fail_the_notification_or_the_provider() {
    let pki = Pki::new();
    let sink = Sink::start_tls(pki.server_config(false));
    let address = format!("https://{}/org/repo", sink.authority());
    let dir = manifests(
        "gitlab",
        "  commitStatusExpr: 'event.metadata.absent'",
        &[("address", &address), ("token", TOKEN)],
        &pki.ca,
    );
    let herald = serve(dir.path(), &[]);
    assert_eq!(herald.post(failure("no such key")).0, 202);
    let line = herald
        .wait_for_log("commitStatusExpr", WAIT)
        .expect("the failure is logged");
    assert!(
        line.contains("failed to evaluate the spec.commitStatusExpr CEL expression for the event"),
        "{line}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(sink.received().is_empty(), "nothing is sent");

    let broken = manifests(
        "gitea",
        "  commitStatusExpr: 'event.('",
        &[("address", &address), ("token", TOKEN)],
        &pki.ca,
    );
    let output = Command::new(binary())
        .args(["check", "--manifests"])
        .arg(broken.path())
        .output()
        .expect("herald check");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{text}");
    // The parser's message spans lines; the reason ends it.
    assert!(
        text.contains("Provider flux-system/forge: spec.commitStatusExpr: failed to parse")
            && text.contains("(InvalidCommitStatusExpr)"),
        "{text}"
    );
    assert_absent("check", &text, &[TOKEN]);
}

#[test]
fn check_names_what_a_forge_provider_is_missing() {
    let manifests = [
        (
            "no-token",
            "gitlab",
            "https://gitlab.example.com/org/repo",
            vec![],
        ),
        (
            "bad-repo",
            "github",
            "https://github.com/org",
            vec![("token", TOKEN)],
        ),
        (
            "bad-bb-token",
            "bitbucket",
            "https://bitbucket.org/o/r",
            vec![("token", TOKEN)],
        ),
        (
            "not-scm",
            "bitbucketserver",
            "https://bb.example.com/PROJ/repo.git",
            vec![("token", TOKEN)],
        ),
        (
            "bad-azure",
            "azuredevops",
            "https://dev.azure.com/org/proj/repo",
            vec![("token", TOKEN)],
        ),
        (
            "bad-app",
            "github",
            "https://github.com/org/repo",
            vec![
                ("githubAppID", "1"),
                ("githubAppInstallationID", "2"),
                ("githubAppPrivateKey", "not-a-key-secret"),
            ],
        ),
        (
            "ssh-address",
            "gitlab",
            "git@gitlab.example.com:group/repo.git",
            vec![("token", TOKEN)],
        ),
    ];
    let mut text = String::new();
    for (name, kind, address, pairs) in &manifests {
        let mut data = vec![("address", *address)];
        data.extend(pairs.iter().copied());
        text.push_str(&format!(
            "---\napiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {{name: {name}, namespace: flux-system}}\nspec: {{type: {kind}, secretRef: {{name: {name}}}}}\n{}",
            secret(name, &data)
        ));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("manifests.yaml"), text).expect("write");
    let output = Command::new(binary())
        .args(["check", "--manifests"])
        .arg(dir.path())
        .output()
        .expect("herald check");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    for (name, reason) in [
        ("no-token", "(SecretKeyMissing)"),
        ("bad-repo", "(InvalidAddress)"),
        ("bad-bb-token", "(InvalidToken)"),
        ("not-scm", "(InvalidAddress)"),
        ("bad-azure", "(InvalidAddress)"),
        ("bad-app", "(InvalidGitHubApp)"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.contains(&format!("Provider flux-system/{name}")) && l.contains(reason)),
            "no {reason} for {name} in:\n{text}"
        );
    }
    assert!(
        !text.contains("Provider flux-system/ssh-address"),
        "an SSH clone address is a forge address: {text}"
    );
    assert_absent("check", &text, &[TOKEN, "not-a-key-secret"]);
}

/// A GitHub App commenting: its slug names the author to look for
/// (`<slug>[bot]`), and its installation is found by owner (organization
/// first, then user).
#[test]
fn github_app_comments_as_its_bot_and_finds_its_installation_by_owner() {
    let (pem, public) = rsa_key();
    let pki = Pki::new();
    let sink = Sink::start_tls(pki.server_config(false));
    let base = format!("https://{}/api/v3/", sink.authority());
    let address = format!("https://{}/org/repo", sink.authority());
    let dir = manifests(
        "githubpullrequestcomment",
        "",
        &[
            ("address", &address),
            ("githubAppID", "4242"),
            ("githubAppInstallationOwner", "octo-user"),
            ("githubAppPrivateKey", &pem),
            ("githubAppBaseURL", &base),
        ],
        &pki.ca,
    );
    let herald = serve(dir.path(), &[]);
    let marker = format!(
        "<!-- flux-pr-comment-key:{UID}/Kustomization/flux-system/my-app-kustomization -->"
    );
    sink.script([
        Answer::status(200).body(json!({"slug": "flux-app"}).to_string()),
        Answer::status(404).body("{\"message\":\"Not Found\"}"),
        Answer::status(200).body(json!({"id": 99}).to_string()),
        Answer::status(201).body(json!({"token": "ghs_app_comment_token_1b", "expires_at": "2999-01-01T00:00:00Z"}).to_string()),
        Answer::status(200).body(
            json!([
                {"id": 3, "body": format!("{marker}\n\nby a person"), "user": {"login": "flux-app"}},
                {"id": 9, "body": format!("{marker}\n\nold"), "user": {"login": "flux-app[bot]"}},
            ])
            .to_string(),
        ),
        Answer::status(200).body("{}"),
    ]);
    let received = post_and_wait(&herald, &sink, change_request_event("by the app"), 6);
    let calls: Vec<(&str, String)> = received
        .iter()
        .map(|r| (r.method.as_str(), path_and_query(r)))
        .collect();
    assert_eq!(
        calls,
        [
            ("GET", "/api/v3/app".to_owned()),
            ("GET", "/api/v3/orgs/octo-user/installation".to_owned()),
            ("GET", "/api/v3/users/octo-user/installation".to_owned()),
            (
                "POST",
                "/api/v3/app/installations/99/access_tokens".to_owned()
            ),
            (
                "GET",
                "/api/v3/repos/org/repo/issues/42/comments?direction=asc&per_page=100&sort=created"
                    .to_owned()
            ),
            (
                "PATCH",
                "/api/v3/repos/org/repo/issues/comments/9".to_owned()
            ),
        ]
    );
    for r in &received[..4] {
        let jwt = header(r, "authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .expect("the App's JWT");
        assert_eq!(verify_jwt(jwt, &public)["iss"], "4242");
    }
    for r in &received[4..] {
        assert_eq!(
            header(r, "authorization"),
            Some("Bearer ghs_app_comment_token_1b")
        );
    }
    assert!(
        received[5].body["body"]
            .as_str()
            .is_some_and(|b| b.starts_with(&marker) && b.contains("by the app")),
        "{:?}",
        received[5].body
    );
    assert_absent(
        "logs",
        &herald.logs().join("\n"),
        &[
            "ghs_app_comment_token_1b",
            pem.lines().nth(1).expect("key line"),
        ],
    );
}

/// GitHub's rate limits come as 403 (or 429) with `X-RateLimit-Reset` or
/// `Retry-After`: retried when GitHub says, where other 403s fail.
#[test]
fn github_rate_limits_are_retried_when_they_end() {
    let pki = Pki::new();
    let sink = Sink::start_tls(pki.server_config(false));
    let address = format!("https://{}/org/repo", sink.authority());
    let dir = manifests(
        "github",
        "",
        &[("address", &address), ("token", TOKEN)],
        &pki.ca,
    );
    let herald = serve(dir.path(), &[]);
    let reset = k8s_openapi::jiff::Timestamp::now().as_second() + 2;
    sink.script([
        Answer::status(403)
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset", reset.to_string())
            .body("{\"message\":\"API rate limit exceeded\"}"),
        Answer::status(403)
            .header("retry-after", "1")
            .body("{\"message\":\"You have exceeded a secondary rate limit\"}"),
        Answer::status(200).body("[]"),
        Answer::status(201).body("{}"),
    ]);
    let received = post_and_wait(&herald, &sink, failure("limited"), 4);
    assert!(
        received[1].at - received[0].at >= Duration::from_millis(900),
        "retried before the reset"
    );
    assert!(
        received[2].at - received[1].at >= Duration::from_secs(1),
        "retried before Retry-After"
    );
    assert_eq!(received[3].method, "POST");
    assert!(wait_for_count(&herald, "\"delivered\"", 1));

    sink.script([Answer::status(403).body("{\"message\":\"Resource not accessible\"}")]);
    post_and_wait(&herald, &sink, failure("forbidden"), 5);
    assert!(herald.wait_for_log("not retrying", WAIT).is_some());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.received().len(), 5, "a plain 403 was retried");
}

/// kustomize-controller's "Reconciliation finished" event (an info event
/// marked `commit_status: update`) sets a success status; a `Progressing`
/// event sets none (GitHub) and an info event without the commit key or
/// the mark is not routed to a commit-status provider at all.
#[test]
fn reconciliation_finished_sets_success_and_progressing_sets_nothing() {
    let pki = Pki::new();
    let sink = Sink::start_tls(pki.server_config(false));
    let address = format!("https://{}/org/repo", sink.authority());
    let dir = manifests(
        "github",
        "",
        &[("address", &address), ("token", TOKEN)],
        &pki.ca,
    );
    let herald = serve(dir.path(), &[]);
    sink.script([Answer::status(200).body("[]"), Answer::status(201)]);
    let finished = event(
        "info",
        "ReconciliationSucceeded",
        "Reconciliation finished in 1.2s, next run in 10m",
        &[("kustomize.toolkit.fluxcd.io/commit_status", "update")],
    );
    let received = post_and_wait(&herald, &sink, finished, 2);
    assert_eq!(
        received[1].body,
        json!({
            "state": "success",
            "description": "reconciliation succeeded",
            "context": STATUS_ID,
        })
    );
    let progressing = event(
        "info",
        "Progressing",
        "Applying revision",
        &[("kustomize.toolkit.fluxcd.io/commit_status", "update")],
    );
    assert_eq!(herald.post(progressing).0, 202);
    let plain = event("info", "ReconciliationSucceeded", "no mark", &[]);
    assert_eq!(herald.post(plain).0, 202);
    assert!(
        wait_for_count(&herald, "skipped", 1),
        "{:#?}",
        herald.logs()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.received().len(), 2, "Progressing or unmarked was sent");
    let metrics = metrics(&herald);
    assert!(
        metrics
            .contains("herald_notifications_total{provider_type=\"github\",result=\"skipped\"} 1"),
        "{metrics}"
    );
}

/// As Flux: Gitea's client is made (asking the server's version) before
/// the revision is read, so an event whose revision is not a SHA still
/// asks `GET /api/v1/version`, then fails without listing or writing.
#[test]
fn gitea_asks_its_version_also_for_a_revision_that_is_not_a_sha() {
    let pki = Pki::new();
    let sink = Sink::start_tls(pki.server_config(false));
    sink.default_answer(Answer::status(200).body("{\"version\":\"1.21.0\"}"));
    let address = format!("https://{}/org/repo", sink.authority());
    let dir = manifests(
        "gitea",
        "",
        &[("address", address.as_str()), ("token", TOKEN)],
        &pki.ca,
    );
    let herald = serve(dir.path(), &[]);
    let mut body: Value =
        serde_json::from_slice(&event("error", "ReconciliationFailed", "no sha", &[]))
            .expect("json");
    body["metadata"]["kustomize.toolkit.fluxcd.io/revision"] = Value::from("main");
    let received = post_and_wait(&herald, &sink, body.to_string().into_bytes(), 1);
    assert_eq!(path_and_query(&received[0]), "/api/v1/version");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sink.received().len(), 1, "listed or wrote without a SHA");
}
