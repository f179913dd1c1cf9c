//! The message-bus providers against real servers and HTTPS lookalikes:
//! `nats` against a real `nats-server` (publishing, one connection reused,
//! reconnection, a refused password); `googlepubsub` against lookalikes of
//! Google's token endpoint and Pub/Sub (the JWT's signature and claims
//! checked with the key the test made); `azureeventhub` against a lookalike
//! of Event Hubs' REST API (the SAS signature recomputed); `otel` against a
//! lookalike collector decoding the protobuf. Every type: the exact
//! payload, retries on 503 and on 429 with `Retry-After`, failure on 400,
//! and no secret in herald's logs, metrics or `herald route` output.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use futures::StreamExt;
use serde_json::{Value, json};
use support::event_file;
use support::herald::{Herald, binary, client};
use support::nats::NatsServer;
use support::otlp::decode_traces;
use support::sink::{Answer, Received, Sink};
use support::tls::Pki;

const WAIT: Duration = Duration::from_secs(15);
const REVISION: &str = "main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1";
const MESSAGE: &str = "Deployment/my-app/my-app-deployment dry-run failed: spec.replicas: Invalid value: -1: must be greater than or equal to 0";
/// `kustomization-error.json` as Flux's `json.Marshal(event)` writes it:
/// what NATS, Pub/Sub and Event Hubs carry, byte for byte.
const EVENT: &str = concat!(
    r#"{"involvedObject":{"kind":"Kustomization","namespace":"flux-system","name":"my-app-kustomization","#,
    r#""uid":"7d0cdc51-ddcf-4743-b223-83ca5c699632","apiVersion":"kustomize.toolkit.fluxcd.io/v1","resourceVersion":"48213"},"#,
    r#""severity":"error","timestamp":"2026-11-20T07:26:19Z","#,
    r#""message":"Deployment/my-app/my-app-deployment dry-run failed: spec.replicas: Invalid value: -1: must be greater than or equal to 0","#,
    r#""reason":"ReconciliationFailed","metadata":{"revision":"main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"},"#,
    r#""reportingController":"kustomize-controller","reportingInstance":"kustomize-controller-7f5c9d8b6-x2x9k"}"#
);

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

/// The Alert's UID in every test (the `otel` trace ID derives from it).
const ALERT_UID: &str = "3f1b8c9e-5a7d-4e2f-9b6a-0c4d2e8f1a7b";

/// A Provider named `name` of type `kind` with extra spec lines, and an
/// Alert (with a UID) routing every Kustomization, HelmRelease and
/// HelmRepository event to it.
fn provider(name: &str, kind: &str, spec: &str) -> String {
    format!(
        "---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {{name: {name}, namespace: flux-system}}
spec:
  type: {kind}
{spec}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {{name: {name}, namespace: flux-system, uid: {ALERT_UID}}}
spec:
  providerRef: {{name: {name}}}
  eventSeverity: info
  eventSources: [{{kind: Kustomization, name: '*'}}, {{kind: HelmRelease, name: '*'}}, {{kind: HelmRepository, name: '*'}}]
"
    )
}

fn write(manifests: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("manifests.yaml"), manifests).expect("write");
    dir
}

fn header<'a>(received: &'a Received, name: &str) -> Option<&'a str> {
    received.headers.get(name).and_then(|v| v.to_str().ok())
}

fn metrics(herald: &Herald) -> String {
    client::get(&format!("{}/metrics", herald.metrics)).1
}

fn route(dir: &Path, event: &str) -> String {
    let output = Command::new(binary())
        .args(["route", "--manifests"])
        .arg(dir)
        .arg(event_file(event))
        .output()
        .expect("herald route");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).expect("utf-8")
}

/// Waits until herald's metrics show `expected` (a delivery is counted
/// just after the service has it).
fn wait_for_metric(herald: &Herald, expected: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let metrics = metrics(herald);
        if metrics.contains(expected) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{expected} not in {metrics}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Fails when any secret appears in herald's logs, metrics or `herald
/// route` output.
fn assert_no_secret(herald: &Herald, dir: &Path, secrets: &[&str]) {
    for (what, text) in [
        ("logs", herald.logs().join("\n")),
        ("metrics", metrics(herald)),
        ("route", route(dir, "kustomization-error.json")),
    ] {
        for secret in secrets {
            assert!(
                !text.contains(secret),
                "{secret:?} leaked into {what}: {text}"
            );
        }
    }
}

/// The delivery metrics after one event delivered on the third attempt
/// and one refused.
fn assert_counted(herald: &Herald, kind: &str) {
    for expected in [
        format!("herald_notifications_total{{provider_type=\"{kind}\",result=\"delivered\"}} 1"),
        format!("herald_notifications_total{{provider_type=\"{kind}\",result=\"failed\"}} 1"),
        format!("herald_delivery_retries_total{{provider_type=\"{kind}\"}} 2"),
    ] {
        wait_for_metric(herald, &expected);
    }
}

/// Posts a second event the lookalike refuses with 400: herald gives up at
/// once, quoting the status.
fn assert_refusal_fails(herald: &Herald, sink: &Sink, expected_requests: usize) {
    sink.script([Answer::status(400).body("invalid message")]);
    assert_eq!(herald.post_file(&event_file("helmrelease-error.json")), 202);
    let line = herald
        .wait_for_log("not retrying", WAIT)
        .expect("failure logged");
    assert!(line.contains("400"), "{line}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        sink.received().len(),
        expected_requests,
        "a 400 was retried"
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

// ---------------------------------------------------------------- nats

/// The clients connected to the server under herald's (Flux's) name.
fn publishers(server: &NatsServer) -> usize {
    let (_, body) = client::get(&format!("{}/connz", server.monitor));
    let connz: Value = serde_json::from_str(&body).expect("connz");
    connz["connections"]
        .as_array()
        .expect("connections")
        .iter()
        .filter(|c| c["name"] == "NATS Provider Publisher")
        .count()
}

/// The first log line after the first `skip` lines that contains `text`.
fn wait_for_new_log(herald: &Herald, skip: usize, text: &str) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(line) = herald
            .logs()
            .into_iter()
            .skip(skip)
            .find(|l| l.contains(text))
        {
            return line;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {text:?} in {:#?}",
            herald.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Messages the server received since it (re)started.
fn messages_in(server: &NatsServer) -> u64 {
    let (_, body) = client::get(&format!("{}/varz", server.monitor));
    let varz: Value = serde_json::from_str(&body).expect("varz");
    varz["in_msgs"].as_u64().expect("in_msgs")
}

#[test]
fn nats_publishes_the_event_on_one_connection_and_reconnects() {
    let password = "nats-pass-s3cret-0123";
    let mut server = NatsServer::start(&[("herald", password), ("reader", "reader-pass")]);
    let dir = write(&format!(
        "{}{}",
        provider(
            "bus",
            "nats",
            "  secretRef: {name: bus}\n  channel: flux.events"
        ),
        secret(
            "bus",
            &[
                ("address", &server.url()),
                ("username", "herald"),
                ("password", password)
            ]
        ),
    ));
    let rt = runtime();
    let subscribe = |url: String| {
        rt.block_on(async {
            let reader = async_nats::ConnectOptions::with_user_and_password(
                "reader".into(),
                "reader-pass".into(),
            )
            .connect(url)
            .await
            .expect("subscriber connects");
            let subscription = reader.subscribe("flux.events").await.expect("subscribe");
            reader.flush().await.expect("flush");
            (reader, subscription)
        })
    };
    let next = |subscription: &mut async_nats::Subscriber| {
        rt.block_on(async { tokio::time::timeout(WAIT, subscription.next()).await })
            .expect("a message within the timeout")
            .expect("subscription open")
    };
    let (_reader, mut subscription) = subscribe(server.url());
    let herald = Herald::serve(dir.path(), &[]);

    assert_eq!(
        herald.post_file(&event_file("kustomization-error.json")),
        202
    );
    let message = next(&mut subscription);
    assert_eq!(message.subject.as_str(), "flux.events");
    assert_eq!(std::str::from_utf8(&message.payload).expect("utf-8"), EVENT);

    assert_eq!(herald.post_file(&event_file("helmrelease-error.json")), 202);
    let message = next(&mut subscription);
    let event: Value = serde_json::from_slice(&message.payload).expect("json");
    assert_eq!(event["involvedObject"]["kind"], "HelmRelease");
    assert_eq!(publishers(&server), 1, "the connection is not reused");

    // The server restarts: herald notices the broken connection and opens
    // a new one.
    server.restart();
    let (_reader, mut subscription) = subscribe(server.url());
    assert_eq!(
        herald.post_file(&event_file("kustomization-info.json")),
        202
    );
    let message = next(&mut subscription);
    let event: Value = serde_json::from_slice(&message.payload).expect("json");
    assert_eq!(event["severity"], "info");
    wait_for_metric(
        &herald,
        "herald_notifications_total{provider_type=\"nats\",result=\"delivered\"} 3",
    );

    // The server is down: the event is retried until it is back.
    let retries_before = herald.logs().len();
    server.stop();
    let mut event: Value = serde_json::from_str(
        &std::fs::read_to_string(event_file("helmrelease-error.json")).expect("event"),
    )
    .expect("json");
    event["message"] = json!("sent while the server is down");
    assert_eq!(herald.post(event.to_string()).0, 202);
    let retry = wait_for_new_log(&herald, retries_before, "will retry");
    assert!(retry.contains("NATS"), "{retry}");
    server.restart();
    wait_for_metric(
        &herald,
        "herald_notifications_total{provider_type=\"nats\",result=\"delivered\"} 4",
    );
    assert!(
        messages_in(&server) >= 1,
        "not published to the restarted server"
    );
    assert_no_secret(&herald, dir.path(), &[password]);
}

#[test]
fn nats_with_a_wrong_password_fails_without_quoting_it() {
    let server = NatsServer::start(&[("herald", "the-right-password")]);
    let wrong = "wrong-pass-s3cret-4567";
    let dir = write(&format!(
        "{}{}",
        provider(
            "bus",
            "nats",
            "  secretRef: {name: bus}\n  channel: flux.events"
        ),
        secret(
            "bus",
            &[
                ("address", &server.url()),
                ("username", "herald"),
                ("password", wrong)
            ]
        ),
    ));
    let herald = Herald::serve(dir.path(), &[]);
    assert_eq!(
        herald.post_file(&event_file("kustomization-error.json")),
        202
    );
    let line = herald
        .wait_for_log("not retrying", WAIT)
        .expect("failure logged");
    assert!(line.contains("authorization violation"), "{line}");
    assert!(line.contains("flux-system/bus"), "{line}");
    wait_for_metric(
        &herald,
        "herald_notifications_total{provider_type=\"nats\",result=\"failed\"} 1",
    );
    assert_no_secret(&herald, dir.path(), &[wrong]);
}

#[test]
fn nats_authenticates_with_an_nkey_seed() {
    let publisher = nkeys::KeyPair::new_user();
    let reader = nkeys::KeyPair::new_user();
    let server = NatsServer::start_nkeys(&[&publisher.public_key(), &reader.public_key()]);
    let seed = publisher.seed().expect("seed");
    let dir = write(&format!(
        "{}{}",
        provider(
            "bus",
            "nats",
            "  secretRef: {name: bus}\n  channel: flux.events"
        ),
        secret("bus", &[("address", &server.url()), ("nkey", &seed)]),
    ));
    let rt = runtime();
    let (_reader, mut subscription) = rt.block_on(async {
        let reader = async_nats::ConnectOptions::with_nkey(reader.seed().expect("seed"))
            .connect(server.url())
            .await
            .expect("subscriber connects");
        let subscription = reader.subscribe("flux.events").await.expect("subscribe");
        reader.flush().await.expect("flush");
        (reader, subscription)
    });
    let herald = Herald::serve(dir.path(), &[]);
    assert_eq!(
        herald.post_file(&event_file("kustomization-error.json")),
        202
    );
    let message = rt
        .block_on(async { tokio::time::timeout(WAIT, subscription.next()).await })
        .expect("a message within the timeout")
        .expect("subscription open");
    assert_eq!(std::str::from_utf8(&message.payload).expect("utf-8"), EVENT);
    assert_no_secret(&herald, dir.path(), &[&seed]);
}

// --------------------------------------------------------- googlepubsub

/// A fresh 2048-bit RSA key in PKCS#8 PEM (`openssl`, as ring cannot
/// generate RSA keys).
fn rsa_key() -> String {
    let output = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl is needed to make the test's service-account key");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).expect("pem")
}

fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).expect("base64")
}

/// Checks an RS256 JWT's signature with the key pair's public half and
/// returns its header and claims.
fn verify_jwt(jwt: &str, private_pem: &str) -> (Value, Value) {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "{jwt}");
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&pem_der(private_pem)).expect("test key");
    let public = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        pair.public().as_ref(),
    );
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("signature");
    public
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .expect("the JWT is signed by the service account's key");
    let decode = |part: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("json")
    };
    (decode(parts[0]), decode(parts[1]))
}

fn form(received: &Received) -> Vec<(String, String)> {
    url::form_urlencoded::parse(&received.raw)
        .into_owned()
        .collect()
}

/// The test's service account: its key file (for the Secret's `token`),
/// its private key, and where its tokens come from.
fn service_account(base: &str, private_key: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": "my-project",
        "private_key_id": "key-id-1",
        "private_key": private_key,
        "client_email": "flux@my-project.iam.gserviceaccount.com",
        "token_uri": format!("{base}/token"),
    })
    .to_string()
}

/// A `googlepubsub` Provider publishing to the lookalike at `base`
/// (trusted through `certSecretRef`), with extra Secret keys.
fn pubsub_manifests(
    base: &str,
    key_json: &str,
    ca: &str,
    extra: &[(&str, &str)],
) -> tempfile::TempDir {
    let address = format!("{base}/v1/projects/my-project");
    let mut pairs = vec![("address", address.as_str()), ("token", key_json)];
    pairs.extend(extra.iter().copied());
    write(&format!(
        "{}{}{}",
        provider(
            "pubsub",
            "googlepubsub",
            "  secretRef: {name: pubsub}\n  certSecretRef: {name: pubsub-ca}\n  channel: flux-events"
        ),
        secret("pubsub", &pairs),
        secret("pubsub-ca", &[("ca.crt", ca)]),
    ))
}

fn token_answer(token: &str) -> Answer {
    Answer::status(200)
        .header("content-type", "application/json")
        .body(
            json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}).to_string(),
        )
}

#[test]
fn googlepubsub_gets_a_token_with_a_signed_jwt_and_publishes_the_event() {
    let pki = Pki::new();
    let sink = Sink::start_tls(pki.server_config(false));
    let base = format!("https://{}", sink.authority());
    let private_key = rsa_key();
    let key_json = service_account(&base, &private_key);
    let access_token = "ya29.access-token-s3cret-89ab";
    let dir = pubsub_manifests(
        &base,
        &key_json,
        &pki.ca,
        &[("headers", "Team: platform\nX-Route-Key: attr-s3cret-cdef\n")],
    );
    sink.script([
        token_answer(access_token),
        Answer::status(503),
        Answer::status(429).header("retry-after", "1"),
    ]);
    sink.default_answer(
        Answer::status(200)
            .header("content-type", "application/json")
            .body(r#"{"messageIds":["1"]}"#),
    );
    let herald = Herald::serve(dir.path(), &[]);
    let before = now();
    assert_eq!(
        herald.post_file(&event_file("kustomization-error.json")),
        202
    );
    let received = sink.wait_for(4, WAIT);
    assert_eq!(received.len(), 4, "{:#?}", herald.logs());

    // The token request: an RS256 JWT bearer grant.
    let token_request = &received[0];
    assert_eq!(token_request.method, "POST");
    assert_eq!(token_request.path, "/token");
    assert_eq!(
        header(token_request, "content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let form = form(token_request);
    assert_eq!(form.len(), 2, "{form:?}");
    assert_eq!(
        form[0],
        (
            "grant_type".to_owned(),
            "urn:ietf:params:oauth:grant-type:jwt-bearer".to_owned()
        )
    );
    assert_eq!(form[1].0, "assertion");
    let (jwt_header, claims) = verify_jwt(&form[1].1, &private_key);
    assert_eq!(
        jwt_header,
        json!({"alg": "RS256", "typ": "JWT", "kid": "key-id-1"})
    );
    let iat = claims["iat"].as_u64().expect("iat");
    assert!(iat >= before && iat <= now(), "{claims}");
    assert_eq!(
        claims,
        json!({
            "iss": "flux@my-project.iam.gserviceaccount.com",
            "scope": "https://www.googleapis.com/auth/pubsub",
            "aud": format!("{base}/token"),
            "iat": iat,
            "exp": iat + 3600,
        })
    );

    // Three publish attempts, the same request each time, with the token.
    let publish = &received[1];
    assert!(received[1..].iter().all(|r| r.raw == publish.raw));
    assert!(
        received[3].at - received[2].at >= Duration::from_secs(1),
        "retried before Retry-After"
    );
    assert_eq!(publish.method, "POST");
    assert_eq!(
        publish.path,
        "/v1/projects/my-project/topics/flux-events:publish"
    );
    assert_eq!(header(publish, "content-type"), Some("application/json"));
    assert_eq!(
        header(publish, "authorization"),
        Some(format!("Bearer {access_token}").as_str())
    );
    // The Secret's headers are attributes, not HTTP headers.
    assert_eq!(header(publish, "x-route-key"), None);
    assert_eq!(
        publish.body,
        json!({"messages": [{
            "data": STANDARD.encode(EVENT),
            "attributes": {"Team": "platform", "X-Route-Key": "attr-s3cret-cdef"},
        }]})
    );
    assert!(herald.wait_for_log("\"delivered\"", WAIT).is_some());

    // The token is reused; a 400 fails at once.
    assert_refusal_fails(&herald, &sink, 5);
    assert_eq!(sink.received()[4].path, publish.path);
    assert_counted(&herald, "googlepubsub");
    let key_line = private_key.lines().nth(3).expect("a line of the key");
    assert_no_secret(
        &herald,
        dir.path(),
        &[access_token, key_line, "attr-s3cret-cdef", &form[1].1],
    );
}

#[test]
fn googlepubsub_gets_a_new_token_after_a_401() {
    let pki = Pki::new();
    let sink = Sink::start_tls(pki.server_config(false));
    let base = format!("https://{}", sink.authority());
    let dir = pubsub_manifests(&base, &service_account(&base, &rsa_key()), &pki.ca, &[]);
    sink.script([
        token_answer("first-token"),
        Answer::status(401),
        token_answer("second-token"),
    ]);
    let herald = Herald::serve(dir.path(), &[]);
    assert_eq!(
        herald.post_file(&event_file("kustomization-error.json")),
        202
    );
    let received = sink.wait_for(4, WAIT);
    assert_eq!(received.len(), 4, "{:#?}", herald.logs());
    let paths: Vec<&str> = received.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths[0], "/token");
    assert_eq!(paths[2], "/token");
    assert_eq!(
        header(&received[1], "authorization"),
        Some("Bearer first-token")
    );
    assert_eq!(
        header(&received[3], "authorization"),
        Some("Bearer second-token")
    );
    assert!(herald.wait_for_log("\"delivered\"", WAIT).is_some());
}

#[test]
fn googlepubsub_fails_when_the_token_endpoint_refuses_the_key() {
    let pki = Pki::new();
    let sink = Sink::start_tls(pki.server_config(false));
    let base = format!("https://{}", sink.authority());
    let dir = pubsub_manifests(&base, &service_account(&base, &rsa_key()), &pki.ca, &[]);
    sink.script([Answer::status(400)
        .header("content-type", "application/json")
        .body(r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#)]);
    let herald = Herald::serve(dir.path(), &[]);
    assert_eq!(
        herald.post_file(&event_file("kustomization-error.json")),
        202
    );
    let line = herald
        .wait_for_log("not retrying", WAIT)
        .expect("failure logged");
    assert!(line.contains("token endpoint refused the key"), "{line}");
    assert!(line.contains("invalid_grant"), "{line}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        sink.received().len(),
        1,
        "nothing is published without a token"
    );
}

// -------------------------------------------------------- azureeventhub

/// The `Authorization` of an Event Hubs request, checked against the SAS
/// key: `SharedAccessSignature sr=<uri>&sig=<HMAC-SHA256>&se=<expiry>&skn=<name>`.
fn verify_sas(authorization: &str, resource: &str, key_name: &str, key: &str) {
    let fields = authorization
        .strip_prefix("SharedAccessSignature ")
        .expect("a SAS token");
    let fields: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(fields.as_bytes())
            .into_owned()
            .collect();
    assert_eq!(fields.len(), 4, "{fields:?}");
    assert_eq!(fields["sr"], resource);
    assert_eq!(fields["skn"], key_name);
    let expiry: u64 = fields["se"].parse().expect("se");
    assert!(expiry > now() + 3500 && expiry <= now() + 3600, "{expiry}");
    let encoded: String = url::form_urlencoded::byte_serialize(resource.as_bytes()).collect();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
    let signature = STANDARD.decode(&fields["sig"]).expect("base64 signature");
    ring::hmac::verify(&key, format!("{encoded}\n{expiry}").as_bytes(), &signature)
        .expect("the SAS signature is the key's HMAC of the resource and expiry");
}

#[test]
fn azureeventhub_sends_the_event_signed_with_the_sas_key() {
    let pki = Pki::new();
    let sink = Sink::start_tls(pki.server_config(false));
    let key = "c2FzLWtleS1zM2NyZXQtMDEyMzQ1Njc4OQ==";
    let connection = format!(
        "Endpoint=sb://{}/;SharedAccessKeyName=flux-send;SharedAccessKey={key};EntityPath=flux-hub",
        sink.authority()
    );
    let dir = write(&format!(
        "{}{}{}",
        provider(
            "hub",
            "azureeventhub",
            "  secretRef: {name: hub}\n  certSecretRef: {name: hub-ca}"
        ),
        secret(
            "hub",
            &[
                ("address", &connection),
                ("headers", "X-Not-Sent: header-s3cret-1234\n")
            ]
        ),
        secret("hub-ca", &[("ca.crt", &pki.ca)]),
    ));
    sink.script([
        Answer::status(503),
        Answer::status(429).header("retry-after", "1"),
    ]);
    sink.default_answer(Answer::status(201));
    let herald = Herald::serve(dir.path(), &[]);
    assert_eq!(
        herald.post_file(&event_file("kustomization-error.json")),
        202
    );
    let received = sink.wait_for(3, WAIT);
    assert_eq!(received.len(), 3, "{:#?}", herald.logs());
    assert!(
        received[2].at - received[1].at >= Duration::from_secs(1),
        "retried before Retry-After"
    );
    let resource = format!("https://{}/flux-hub", sink.authority());
    for r in &received {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/flux-hub/messages");
        assert_eq!(r.query.as_deref(), Some("api-version=2014-01"));
        assert_eq!(
            header(r, "content-type"),
            Some("application/atom+xml;type=entry;charset=utf-8")
        );
        assert_eq!(header(r, "x-not-sent"), None);
        assert_eq!(std::str::from_utf8(&r.raw).expect("utf-8"), EVENT);
        verify_sas(
            header(r, "authorization").expect("authorization"),
            &resource,
            "flux-send",
            key,
        );
    }
    assert!(herald.wait_for_log("\"delivered\"", WAIT).is_some());
    assert_refusal_fails(&herald, &sink, 4);
    assert_counted(&herald, "azureeventhub");
    let authorization = header(&received[0], "authorization").expect("authorization");
    let signature = authorization.split("sig=").nth(1).expect("sig");
    let signature = signature.split('&').next().expect("sig value");
    assert_no_secret(&herald, dir.path(), &[key, signature, "header-s3cret-1234"]);
}

// ----------------------------------------------------------------- otel

#[test]
fn otel_exports_a_span_per_event_as_flux_does() {
    let pki = Pki::new();
    let sink = Sink::start_tls(pki.server_config(false));
    let token = "otel-token-s3cret-5678";
    let dir = write(&format!(
        "{}{}{}",
        provider(
            "traces",
            "otel",
            "  secretRef: {name: traces}\n  certSecretRef: {name: traces-ca}"
        ),
        secret(
            "traces",
            &[
                (
                    "address",
                    &format!("https://{}/v1/traces", sink.authority())
                ),
                ("token", token),
                ("headers", "X-Scope-OrgID: tenant-1\n"),
            ]
        ),
        secret("traces-ca", &[("ca.crt", &pki.ca)]),
    ));
    sink.script([
        Answer::status(503),
        Answer::status(429).header("retry-after", "1"),
    ]);
    let herald = Herald::serve(dir.path(), &[]);
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    assert_eq!(
        herald.post_file(&event_file("kustomization-error.json")),
        202
    );
    let received = sink.wait_for(3, WAIT);
    assert_eq!(received.len(), 3, "{:#?}", herald.logs());
    assert!(received.iter().all(|r| r.raw == received[0].raw));
    assert!(
        received[2].at - received[1].at >= Duration::from_secs(1),
        "retried before Retry-After"
    );
    let r = &received[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/traces");
    assert_eq!(header(r, "content-type"), Some("application/x-protobuf"));
    assert_eq!(
        header(r, "authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(header(r, "x-scope-orgid"), Some("tenant-1"));

    let mut traces = decode_traces(&r.raw);
    let span = &mut traces["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    let span_id = span["spanId"].take();
    let end: u128 = span["endTimeUnixNano"]
        .take()
        .as_str()
        .expect("end")
        .parse()
        .expect("nanos");
    assert_eq!(span_id.as_str().map(str::len), Some(16), "{span_id}");
    assert_ne!(span_id, json!("0000000000000000"));
    assert!(end >= before, "the span ends when it is sent");
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{ALERT_UID}:{REVISION}").as_bytes(),
    );
    let trace_id: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let attribute = |key: &str, value: &str| json!({"key": key, "value": {"stringValue": value}});
    assert_eq!(
        traces,
        json!({"resourceSpans": [{
            "resource": {"attributes": [
                attribute("service.instance.id", ALERT_UID),
                attribute("service.name", "flux-system/traces"),
                attribute("service.namespace", "flux-system"),
            ]},
            "scopeSpans": [{
                "scope": {"name": "flux:notification-controller"},
                "spans": [{
                    "traceId": trace_id,
                    "spanId": null,
                    "name": "Kustomization: flux-system/my-app-kustomization",
                    "kind": 1,
                    "startTimeUnixNano": "1795159579000000000",
                    "endTimeUnixNano": null,
                    "attributes": [
                        attribute("object.uid", "7d0cdc51-ddcf-4743-b223-83ca5c699632"),
                        attribute("object.kind", "Kustomization"),
                        attribute("object.name", "my-app-kustomization"),
                        attribute("object.namespace", "flux-system"),
                        attribute("revision", REVISION),
                    ],
                    "status": {"message": MESSAGE, "code": 2},
                    // Flux's exporter: remote parent and sampled.
                    "flags": 0x301,
                }],
            }],
            "schemaUrl": "https://opentelemetry.io/schemas/1.34.0",
        }]})
    );
    assert!(herald.wait_for_log("\"delivered\"", WAIT).is_some());
    assert_refusal_fails(&herald, &sink, 4);
    assert_counted(&herald, "otel");

    // HelmRepository events are skipped, as Flux skips them.
    let mut event: Value = serde_json::from_str(
        &std::fs::read_to_string(event_file("kustomization-info.json")).expect("event"),
    )
    .expect("json");
    event["involvedObject"]["kind"] = json!("HelmRepository");
    assert_eq!(herald.post(event.to_string()).0, 202);
    assert!(herald.wait_for_log("skipped", WAIT).is_some());
    assert_eq!(sink.received().len(), 4);
    assert_no_secret(&herald, dir.path(), &[token]);
}

#[test]
fn otel_info_spans_are_ok_and_basic_auth_is_used_with_a_username() {
    let sink = Sink::start();
    let dir = write(&format!(
        "{}{}",
        provider("traces", "otel", "  secretRef: {name: traces}"),
        secret(
            "traces",
            &[
                ("address", &format!("http://{}/v1/traces", sink.authority())),
                ("username", "collector"),
                ("password", "otel-pass-s3cret-9abc"),
            ]
        ),
    ));
    let herald = Herald::serve(dir.path(), &[]);
    assert_eq!(
        herald.post_file(&event_file("kustomization-info.json")),
        202
    );
    let received = sink.wait_for(1, WAIT);
    assert_eq!(received.len(), 1, "{:#?}", herald.logs());
    let expected = format!(
        "Basic {}",
        STANDARD.encode("collector:otel-pass-s3cret-9abc")
    );
    assert_eq!(
        header(&received[0], "authorization"),
        Some(expected.as_str())
    );
    let traces = decode_traces(&received[0].raw);
    let span = &traces["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    assert_eq!(span["status"], json!({"code": 1}));
    assert_no_secret(&herald, dir.path(), &["otel-pass-s3cret-9abc"]);
}

// ------------------------------------------------------------- settings

#[test]
fn check_names_the_field_of_every_unusable_bus_setting() {
    let manifests = [
        provider(
            "workload-identity",
            "googlepubsub",
            "  address: my-project\n  channel: flux-events\n  serviceAccountName: flux-publisher",
        ),
        provider(
            "pubsub-without-key",
            "googlepubsub",
            "  address: my-project\n  channel: flux-events",
        ),
        provider(
            "pubsub-bad-key",
            "googlepubsub",
            "  address: my-project\n  channel: flux-events\n  secretRef: {name: bad-key}",
        ),
        secret(
            "bad-key",
            &[(
                "token",
                "{\"type\": \"service_account\", \"private_key\": \"pk-s3cret\"}",
            )],
        ),
        provider(
            "hub-without-token",
            "azureeventhub",
            "  address: flux-hub\n  channel: my-ns",
        ),
        provider(
            "nats-without-subject",
            "nats",
            "  address: nats://127.0.0.1:4222",
        ),
        provider("otel-without-address", "otel", ""),
        provider(
            "nats-ignoring",
            "nats",
            "  address: nats://127.0.0.1:4222\n  channel: flux\n  secretRef: {name: nats-ignoring}\n  certSecretRef: {name: nats-ca}",
        ),
        secret(
            "nats-ignoring",
            &[("token", "nats-token-s3cret"), ("headers", "X-A: b\n")],
        ),
        secret("nats-ca", &[("ca.crt", &Pki::new().ca)]),
    ];
    let dir = write(&manifests.concat());
    let output = Command::new(binary())
        .args(["check", "--manifests"])
        .arg(dir.path())
        .output()
        .expect("herald check");
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    for (object, expected) in [
        (
            "Provider flux-system/workload-identity",
            "(WorkloadIdentityNotSupported)",
        ),
        (
            "Provider flux-system/workload-identity",
            "spec.serviceAccountName",
        ),
        (
            "Provider flux-system/workload-identity",
            "needs `herald controller`",
        ),
        (
            "Provider flux-system/pubsub-without-key",
            "(SecretKeyMissing)",
        ),
        ("Provider flux-system/pubsub-bad-key", "(InvalidToken)"),
        (
            "Provider flux-system/hub-without-token",
            "(SecretKeyMissing)",
        ),
        (
            "Provider flux-system/nats-without-subject",
            "(ChannelMissing)",
        ),
        (
            "Provider flux-system/otel-without-address",
            "(InvalidAddress)",
        ),
    ] {
        assert!(
            text.lines()
                .any(|l| l.contains(object) && l.contains(expected)),
            "no {expected} for {object} in:\n{text}"
        );
    }
    for secret in ["pk-s3cret", "nats-token-s3cret"] {
        assert!(!text.contains(secret), "{text}");
    }
}
