//! Every provider against a local lookalike of its service (a real HTTPS
//! server on 127.0.0.1 with certificates made by the test): the exact
//! method, path, headers and body Flux sends; retries on 5xx and 429 with
//! `Retry-After`; failure on other 4xx; secrets never in logs, metrics or
//! `herald route` output. Then the transport settings: `certSecretRef` (a
//! custom CA, a client certificate), proxies, the Secret's `headers`, and
//! what `herald check` and the controller report about them.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::event_file;
use support::herald::{Herald, binary, client};
use support::proxy::Proxy;
use support::sink::{Answer, Received, Sink};
use support::tls::Pki;

const WAIT: Duration = Duration::from_secs(15);
/// The object of `kustomization-error.json`, as Flux's messages name it.
const OBJECT: &str = "kustomization/my-app-kustomization.flux-system";
const MESSAGE: &str = "Deployment/my-app/my-app-deployment dry-run failed: spec.replicas: Invalid value: -1: must be greater than or equal to 0";
const REVISION: &str = "main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1";

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

/// A Provider named `name` of type `kind` with extra spec lines, and an
/// Alert routing every Kustomization and HelmRelease event to it.
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
metadata: {{name: {name}, namespace: flux-system}}
spec:
  providerRef: {{name: {name}}}
  eventSeverity: info
  eventSources: [{{kind: Kustomization, name: '*'}}, {{kind: HelmRelease, name: '*'}}]
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

fn route_lines(dir: &Path, event: &str) -> Vec<Value> {
    route(dir, event)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn assert_absent(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "{secret:?} leaked into {what}: {text}"
        );
    }
}

/// One provider type against an HTTPS lookalike trusted through
/// `certSecretRef`.
struct Case {
    kind: &'static str,
    /// Extra spec lines of the Provider.
    spec: &'static str,
    /// Appended to the lookalike's URL to make the address.
    address_suffix: &'static str,
    /// Secret keys besides `address`.
    secret: Vec<(&'static str, &'static str)>,
}

/// Delivers one event through three attempts (503, then 429 with
/// `Retry-After: 1`, then 200) and a second one refused with 400; checks
/// retries, metrics and that no secret leaks. Returns the requests of the
/// first event.
fn deliver(case: &Case) -> Vec<Received> {
    let pki = Pki::new();
    let sink = Sink::start_tls(pki.server_config(false));
    let address = format!("{}{}", sink.url, case.address_suffix);
    let mut pairs = vec![("address", address.as_str())];
    pairs.extend(case.secret.iter().copied());
    let spec = format!(
        "  secretRef: {{name: lookalike}}\n  certSecretRef: {{name: lookalike-ca}}\n{}",
        case.spec
    );
    let dir = write(&format!(
        "{}{}{}",
        provider("lookalike", case.kind, &spec),
        secret("lookalike", &pairs),
        secret("lookalike-ca", &[("ca.crt", &pki.ca)]),
    ));
    sink.script([
        Answer::status(503),
        Answer::status(429).header("retry-after", "1"),
    ]);
    let herald = Herald::serve(dir.path(), &[]);
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
    assert!(herald.wait_for_log("\"delivered\"", WAIT).is_some());

    sink.script([Answer::status(400).body("invalid payload")]);
    assert_eq!(herald.post_file(&event_file("helmrelease-error.json")), 202);
    let line = herald
        .wait_for_log("not retrying", WAIT)
        .expect("failure logged");
    assert!(line.contains("400"), "{line}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.received().len(), 4, "a 400 was retried");

    let metrics = metrics(&herald);
    let kind = case.kind;
    for expected in [
        format!("herald_notifications_total{{provider_type=\"{kind}\",result=\"delivered\"}} 1"),
        format!("herald_notifications_total{{provider_type=\"{kind}\",result=\"failed\"}} 1"),
        format!("herald_delivery_retries_total{{provider_type=\"{kind}\"}} 2"),
    ] {
        assert!(metrics.contains(&expected), "{expected} not in {metrics}");
    }
    let mut secrets = vec!["secret-webhook-path"];
    secrets.extend(case.secret.iter().map(|(_, v)| *v));
    let routed = route(dir.path(), "kustomization-error.json");
    assert!(
        routed.contains(&format!("\"address\":\"https://{}/***\"", sink.authority())),
        "{routed}"
    );
    for (what, text) in [
        ("logs", herald.logs().join("\n")),
        ("metrics", metrics),
        ("route", routed),
    ] {
        assert_absent(what, &text, &secrets);
    }
    received
}

fn assert_post(received: &Received, path: &str, content_type: &str) {
    assert_eq!(received.method, "POST");
    assert_eq!(received.path, path);
    assert_eq!(header(received, "content-type"), Some(content_type));
}

const PATH: &str = "/services/T000/B000/secret-webhook-path";

fn flux_event() -> Value {
    json!({
        "involvedObject": {
            "kind": "Kustomization",
            "namespace": "flux-system",
            "name": "my-app-kustomization",
            "uid": "7d0cdc51-ddcf-4743-b223-83ca5c699632",
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "resourceVersion": "48213",
        },
        "severity": "error",
        "timestamp": "2026-11-20T07:26:19Z",
        "message": MESSAGE,
        "reason": "ReconciliationFailed",
        "metadata": {"revision": REVISION},
        "reportingController": "kustomize-controller",
        "reportingInstance": "kustomize-controller-7f5c9d8b6-x2x9k",
    })
}

#[test]
fn generic_forwards_the_event_with_its_component_header() {
    let received = deliver(&Case {
        kind: "generic",
        spec: "",
        address_suffix: "?key=secret-webhook-path-query",
        secret: vec![],
    });
    let r = &received[0];
    assert_post(r, PATH, "application/json");
    assert_eq!(r.query.as_deref(), Some("key=secret-webhook-path-query"));
    assert_eq!(header(r, "gotk-component"), Some("kustomize-controller"));
    assert_eq!(header(r, "authorization"), None);
    assert_eq!(r.body, flux_event());
}

#[test]
fn generic_hmac_signs_the_body_with_the_token() {
    let token = "hmac-key-secret-0123";
    let received = deliver(&Case {
        kind: "generic-hmac",
        spec: "",
        address_suffix: "",
        // A Secret header named X-Signature never replaces the signature:
        // Flux sets the signature after the custom headers.
        secret: vec![
            ("token", token),
            ("headers", "X-Signature: forged\nX-Custom: kept"),
        ],
    });
    let r = &received[0];
    assert_post(r, PATH, "application/json");
    assert_eq!(header(r, "x-custom"), Some("kept"));
    assert_eq!(header(r, "gotk-component"), Some("kustomize-controller"));
    assert_eq!(r.body, flux_event());
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token.as_bytes());
    let digest = ring::hmac::sign(&key, &r.raw);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        header(r, "x-signature"),
        Some(format!("sha256={hex}").as_str())
    );
}

#[test]
fn msteams_workflows_get_an_adaptive_card() {
    let received = deliver(&Case {
        kind: "msteams",
        spec: "",
        address_suffix: "",
        secret: vec![],
    });
    let r = &received[0];
    assert_post(r, PATH, "application/json");
    assert_eq!(
        r.body,
        json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [{
                        "type": "Container",
                        "items": [
                            {"type": "TextBlock", "text": OBJECT, "size": "large", "weight": "bolder", "wrap": true},
                            {"type": "TextBlock", "text": MESSAGE, "wrap": true, "color": "attention"},
                            {"type": "FactSet", "facts": [{"title": "revision", "value": REVISION}]},
                        ],
                    }],
                    "msteams": {"width": "Full"},
                },
            }],
        })
    );
}

#[test]
fn discord_posts_slack_format_to_the_slack_endpoint() {
    let received = deliver(&Case {
        kind: "discord",
        spec: "",
        address_suffix: "",
        secret: vec![],
    });
    let r = &received[0];
    assert_post(r, &format!("{PATH}/slack"), "application/json");
    assert_eq!(
        r.body,
        json!({
            "channel": "",
            "username": "kustomize-controller",
            "icon_url": "",
            "icon_emoji": "",
            "attachments": [{
                "fallback": "",
                "color": "danger",
                "author_name": OBJECT,
                "text": MESSAGE,
                "mrkdwn_in": ["text"],
                "fields": [{"title": "revision", "value": REVISION, "short": false}],
            }],
        })
    );
}

#[test]
fn rocket_posts_slack_format_with_channel_and_username() {
    let received = deliver(&Case {
        kind: "rocket",
        spec: "  channel: '#ops'\n  username: flux",
        address_suffix: "",
        secret: vec![],
    });
    let r = &received[0];
    assert_post(r, PATH, "application/json");
    assert_eq!(
        r.body,
        json!({
            "channel": "#ops",
            "username": "flux",
            "icon_url": "",
            "icon_emoji": "",
            "attachments": [{
                "fallback": "",
                "color": "#FF0000",
                "author_name": OBJECT,
                "text": MESSAGE,
                "mrkdwn_in": ["text"],
                "fields": [{"title": "revision", "value": REVISION, "short": false}],
            }],
        })
    );
}

#[test]
fn googlechat_posts_a_card() {
    let received = deliver(&Case {
        kind: "googlechat",
        spec: "",
        address_suffix: "?key=secret-webhook-path-key&token=t",
        secret: vec![],
    });
    let r = &received[0];
    assert_post(r, PATH, "application/json");
    assert_eq!(
        r.query.as_deref(),
        Some("key=secret-webhook-path-key&token=t")
    );
    assert_eq!(
        r.body,
        json!({
            "cards": [{
                "header": {
                    "title": OBJECT,
                    "subtitle": "kustomize-controller",
                    "imageUrl": null,
                    "imageStyle": null,
                },
                "sections": [
                    {"header": "", "widgets": [
                        {"textParagraph": {"text": format!("<font color=\"#ff0000\">{MESSAGE}</font>")}, "keyValue": null},
                    ]},
                    {"header": "", "widgets": [
                        {"textParagraph": null, "keyValue": {
                            "topLabel": "revision",
                            "content": REVISION,
                            "contentMultiline": false,
                            "bottomLabel": null,
                            "icon": null,
                        }},
                    ]},
                ],
            }],
        })
    );
}

/// `herald route` shows each provider's payload, with the text template in
/// the field the README names, and the legacy Teams MessageCard for an
/// Office 365 connector address.
#[test]
fn route_prints_every_payload_with_the_template_text() {
    let template = "  template:\n    text: \"{{ object.name }}: {{ reason }}\"\n";
    let mut manifests = String::new();
    for (name, kind, address) in [
        (
            "generic",
            "generic",
            "https://hooks.example.com/secret-webhook-path",
        ),
        (
            "generic-hmac",
            "generic-hmac",
            "https://hooks.example.com/secret-webhook-path",
        ),
        (
            "teams",
            "msteams",
            "https://prod.westeurope.logic.azure.com/workflows/secret-webhook-path",
        ),
        (
            "teams-legacy",
            "msteams",
            "https://acme.webhook.office.com/webhookb2/secret-webhook-path",
        ),
        (
            "discord",
            "discord",
            "https://discord.com/api/webhooks/1/secret-webhook-path",
        ),
        (
            "rocket",
            "rocket",
            "https://rocket.example.com/hooks/secret-webhook-path",
        ),
        (
            "googlechat",
            "googlechat",
            "https://chat.googleapis.com/v1/spaces/X/messages?key=secret-webhook-path",
        ),
    ] {
        manifests.push_str(&provider(
            name,
            kind,
            &format!("  secretRef: {{name: {name}}}"),
        ));
        manifests.push_str(template);
        manifests.push_str(&secret(
            name,
            &[("address", address), ("token", "hmac-key-secret-0123")],
        ));
    }
    let dir = write(&manifests);
    let text = "my-app-kustomization: ReconciliationFailed";
    let lines = route_lines(dir.path(), "kustomization-error.json");
    let payload = |provider: &str| -> Value {
        lines
            .iter()
            .find(|l| l["provider"] == format!("flux-system/{provider}"))
            .unwrap_or_else(|| panic!("no line for {provider}: {lines:#?}"))["payload"]
            .clone()
    };
    assert_eq!(lines.len(), 7, "{lines:#?}");
    assert_eq!(payload("generic")["message"], text);
    assert_eq!(payload("generic")["metadata"]["revision"], REVISION);
    assert_eq!(payload("generic-hmac")["message"], text);
    let card = payload("teams");
    let items = &card["attachments"][0]["content"]["body"][0]["items"];
    assert_eq!(items[1]["text"], text);
    assert_eq!(items[2], json!({"type": "FactSet"}));
    assert_eq!(
        payload("teams-legacy"),
        json!({
            "@type": "MessageCard",
            "@context": "http://schema.org/extensions",
            "themeColor": "FF0000",
            "summary": OBJECT,
            "sections": [{"activityTitle": text, "activitySubtitle": OBJECT, "facts": []}],
        })
    );
    for chat in ["discord", "rocket"] {
        let attachment = &payload(chat)["attachments"][0];
        assert_eq!(attachment["text"], text, "{chat}");
        assert_eq!(attachment["fields"], json!([]), "{chat}");
    }
    let card = payload("googlechat");
    assert_eq!(
        card["cards"][0]["sections"][0]["widgets"][0]["textParagraph"]["text"],
        format!("<font color=\"#ff0000\">{text}</font>")
    );
    assert_eq!(
        card["cards"][0]["sections"].as_array().map(Vec::len),
        Some(1)
    );
    let output = route(dir.path(), "kustomization-error.json");
    assert_absent(
        "route",
        &output,
        &["secret-webhook-path", "hmac-key-secret"],
    );
    assert!(output.contains("\"address\":\"https://acme.webhook.office.com/***\""));
}

/// A Provider trusting only the lookalike's CA delivers; one with another
/// CA, or none (the built-in roots), cannot connect and retries.
#[test]
fn cert_secret_ref_ca_is_what_makes_tls_succeed() {
    let pki = Pki::new();
    let sink = Sink::start_tls(pki.server_config(false));
    let address = [("address", sink.url.as_str())];
    let dir = write(&format!(
        "{}{}{}{}{}{}{}",
        provider(
            "trusted",
            "generic",
            "  secretRef: {name: hook}\n  certSecretRef: {name: ca}"
        ),
        provider(
            "other-ca",
            "generic",
            "  secretRef: {name: hook}\n  certSecretRef: {name: other-ca}"
        ),
        provider("no-ca", "generic", "  secretRef: {name: hook}"),
        secret("hook", &address),
        secret("ca", &[("ca.crt", &pki.ca)]),
        // The legacy key name Flux still reads.
        secret("other-ca", &[("caFile", &pki.other_ca)]),
        "",
    ));
    let herald = Herald::serve(dir.path(), &["--max-delivery-age=3s"]);
    assert_eq!(
        herald.post_file(&event_file("kustomization-error.json")),
        202
    );
    let received = sink.wait_for(1, WAIT);
    assert_eq!(received.len(), 1);
    let retry = herald
        .wait_for_log("will retry", WAIT)
        .expect("untrusted provider retried");
    assert!(retry.to_lowercase().contains("certificate"), "{retry}");
    assert!(herald.wait_for_log("giving up", WAIT).is_some());
    std::thread::sleep(Duration::from_millis(300));
    // Only the trusted Provider ever got through the handshake.
    assert_eq!(sink.received().len(), 1);
    let metrics = metrics(&herald);
    assert!(
        metrics.contains(
            "herald_notifications_total{provider_type=\"generic\",result=\"delivered\"} 1"
        ),
        "{metrics}"
    );
    herald.assert_no_secret_in_logs();
}

/// A lookalike that requires a client certificate: only the Provider with
/// `tls.crt`/`tls.key` in its certSecretRef Secret gets through.
#[test]
fn cert_secret_ref_client_certificate_does_mutual_tls() {
    let pki = Pki::new();
    let sink = Sink::start_tls(pki.server_config(true));
    let dir = write(&format!(
        "{}{}{}{}{}",
        provider(
            "mtls",
            "generic",
            "  secretRef: {name: hook}\n  certSecretRef: {name: client}"
        ),
        provider(
            "ca-only",
            "generic",
            "  secretRef: {name: hook}\n  certSecretRef: {name: ca}"
        ),
        secret("hook", &[("address", sink.url.as_str())]),
        secret(
            "client",
            &[
                ("ca.crt", &pki.ca),
                ("tls.crt", &pki.client_cert),
                ("tls.key", &pki.client_key),
            ],
        ),
        secret("ca", &[("ca.crt", &pki.ca)]),
    ));
    let herald = Herald::serve(dir.path(), &["--max-delivery-age=3s"]);
    assert_eq!(
        herald.post_file(&event_file("kustomization-error.json")),
        202
    );
    assert_eq!(sink.wait_for(1, WAIT).len(), 1);
    assert!(herald.wait_for_log("will retry", WAIT).is_some());
    assert!(herald.wait_for_log("giving up", WAIT).is_some());
    assert_eq!(sink.received().len(), 1);
    let logs = herald.logs().join("\n");
    assert_absent(
        "logs",
        &logs,
        &[pki.client_key.lines().nth(1).expect("key line")],
    );
    herald.assert_no_secret_in_logs();
}

/// `proxySecretRef` (address, username, password): HTTPS goes through a
/// CONNECT tunnel that carries the proxy credentials.
#[test]
fn proxy_secret_ref_tunnels_https_with_credentials() {
    let pki = Pki::new();
    let sink = Sink::start_tls(pki.server_config(false));
    let proxy = Proxy::start(None);
    let dir = write(&format!(
        "{}{}{}{}",
        provider(
            "proxied",
            "generic",
            "  secretRef: {name: hook}\n  certSecretRef: {name: ca}\n  proxySecretRef: {name: proxy}"
        ),
        secret("hook", &[("address", sink.url.as_str())]),
        secret("ca", &[("ca.crt", &pki.ca)]),
        secret(
            "proxy",
            &[
                ("address", proxy.url.as_str()),
                ("username", "herald"),
                ("password", "proxy-secret-password"),
            ],
        ),
    ));
    let herald = Herald::serve(dir.path(), &[]);
    assert_eq!(
        herald.post_file(&event_file("kustomization-error.json")),
        202
    );
    assert_eq!(sink.wait_for(1, WAIT).len(), 1);
    let seen = proxy.wait_for(1, WAIT);
    assert_eq!(
        seen[0].request_line,
        format!("CONNECT {} HTTP/1.1", sink.authority())
    );
    use base64::Engine;
    let credentials =
        base64::engine::general_purpose::STANDARD.encode("herald:proxy-secret-password");
    assert_eq!(
        seen[0].proxy_authorization.as_deref(),
        Some(format!("Basic {credentials}").as_str())
    );
    let logs = herald.logs().join("\n");
    assert_absent("logs", &logs, &["proxy-secret-password", &credentials]);
    assert_absent(
        "route",
        &route(dir.path(), "kustomization-error.json"),
        &["proxy-secret-password"],
    );
}

/// The deprecated `spec.proxy` forwards plain HTTP; with the proxy sending
/// everything to the lookalike, a real Office 365 connector host name can
/// be used, and Teams gets the legacy MessageCard.
#[test]
fn spec_proxy_forwards_http_and_connector_addresses_get_a_message_card() {
    let sink = Sink::start();
    let proxy = Proxy::start(Some(sink.authority()));
    let address = "http://acme.webhook.office.com/webhookb2/secret-webhook-path";
    let dir = write(&format!(
        "{}{}",
        provider(
            "teams",
            "msteams",
            &format!("  secretRef: {{name: hook}}\n  proxy: {}", proxy.url)
        ),
        secret("hook", &[("address", address)]),
    ));
    let herald = Herald::serve(dir.path(), &[]);
    assert_eq!(
        herald.post_file(&event_file("kustomization-error.json")),
        202
    );
    let received = sink.wait_for(1, WAIT);
    assert_eq!(received.len(), 1, "{:#?}", herald.logs());
    assert_eq!(
        proxy.seen()[0].request_line,
        format!("POST {address} HTTP/1.1")
    );
    assert_post(
        &received[0],
        "/webhookb2/secret-webhook-path",
        "application/json",
    );
    assert_eq!(
        received[0].body,
        json!({
            "@type": "MessageCard",
            "@context": "http://schema.org/extensions",
            "themeColor": "FF0000",
            "summary": OBJECT,
            "sections": [{
                "activityTitle": MESSAGE,
                "activitySubtitle": OBJECT,
                "facts": [{"name": "revision", "value": REVISION}],
            }],
        })
    );
    herald.assert_no_secret_in_logs();
}

/// The Secret's `headers` (a YAML map) go with every request and win over
/// the provider's own; their values are never logged.
#[test]
fn secret_headers_are_sent_and_stay_secret() {
    let sink = Sink::start();
    sink.default_answer(Answer::status(401).body("unauthorized"));
    let headers = "X-Api-Key: header-secret-value\ngotk-component: overridden\nX-Count: 5\n";
    let dir = write(&format!(
        "{}{}",
        provider("hook", "generic", "  secretRef: {name: hook}"),
        secret(
            "hook",
            &[("address", sink.url.as_str()), ("headers", headers)]
        ),
    ));
    let herald = Herald::serve(dir.path(), &[]);
    assert_eq!(
        herald.post_file(&event_file("kustomization-error.json")),
        202
    );
    let received = sink.wait_for(1, WAIT);
    assert_eq!(received.len(), 1);
    assert_eq!(
        header(&received[0], "x-api-key"),
        Some("header-secret-value")
    );
    assert_eq!(header(&received[0], "gotk-component"), Some("overridden"));
    assert_eq!(header(&received[0], "x-count"), Some("5"));
    assert!(herald.wait_for_log("not retrying", WAIT).is_some());
    assert_absent("logs", &herald.logs().join("\n"), &["header-secret-value"]);
    herald.assert_no_secret_in_logs();
}

/// Every unusable transport setting is an error `check` reports with a
/// reason (and `Ready=False` in a cluster), never quoting a secret.
#[test]
fn check_reports_unusable_transport_settings() {
    let manifests = [
        provider(
            "missing-cert-secret",
            "generic",
            "  address: https://hooks.example.com/x\n  certSecretRef: {name: nope}",
        ),
        provider(
            "bad-ca",
            "generic",
            "  address: https://hooks.example.com/x\n  certSecretRef: {name: bad-ca}",
        ),
        secret("bad-ca", &[("ca.crt", "not a certificate")]),
        provider(
            "cert-without-key",
            "generic",
            "  address: https://hooks.example.com/x\n  certSecretRef: {name: half}",
        ),
        secret("half", &[("tls.crt", "-----BEGIN CERTIFICATE-----")]),
        provider(
            "proxy-without-address",
            "discord",
            "  address: https://hooks.example.com/x\n  proxySecretRef: {name: no-address}",
        ),
        secret("no-address", &[("username", "u")]),
        provider(
            "socks",
            "rocket",
            "  address: https://hooks.example.com/x\n  proxySecretRef: {name: socks}",
        ),
        secret("socks", &[("address", "socks5://proxy-secret-host:1080")]),
        provider("bad-headers", "generic", "  secretRef: {name: bad-headers}"),
        secret(
            "bad-headers",
            &[
                ("address", "https://hooks.example.com/secret-webhook-path"),
                ("headers", "- a list\n"),
            ],
        ),
        provider(
            "hmac-without-token",
            "generic-hmac",
            "  secretRef: {name: no-token}",
        ),
        secret(
            "no-token",
            &[("address", "https://hooks.example.com/secret-webhook-path")],
        ),
        provider(
            "nats-over-https",
            "nats",
            "  address: https://hooks.example.com/x\n  channel: flux",
        ),
        provider(
            "threads",
            "googlechat",
            "  address: https://chat.example.com/x",
        ),
        "  template: {threadKey: '{{ object.name }}', blocks: '[]'}\n".to_owned(),
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
    for (object, reason) in [
        (
            "Provider flux-system/missing-cert-secret",
            "(SecretNotFound)",
        ),
        ("Provider flux-system/bad-ca", "(InvalidCertificate)"),
        (
            "Provider flux-system/cert-without-key",
            "(SecretKeyMissing)",
        ),
        (
            "Provider flux-system/proxy-without-address",
            "(SecretKeyMissing)",
        ),
        ("Provider flux-system/socks", "(InvalidProxy)"),
        ("Provider flux-system/bad-headers", "(InvalidHeaders)"),
        (
            "Provider flux-system/hmac-without-token",
            "(SecretKeyMissing)",
        ),
        ("Provider flux-system/nats-over-https", "(InvalidAddress)"),
        ("Alert flux-system/threads", "(ThreadsNotSupported)"),
        ("Alert flux-system/threads", "(BlocksNotSupported)"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.contains(object) && l.contains(reason)),
            "no {reason} for {object} in:\n{text}"
        );
    }
    assert_absent(
        "check",
        &text,
        &["secret-webhook-path", "proxy-secret-host"],
    );
    for supported in ["generic", "msteams", "discord", "rocket", "googlechat"] {
        assert!(
            !text.contains(&format!("provider type '{supported}'")),
            "{text}"
        );
    }
}

/// `herald route`'s line for the only Provider of a manifest directory.
fn routed_payload(dir: &Path) -> Value {
    let lines = route_lines(dir, "kustomization-error.json");
    assert_eq!(lines.len(), 1, "{lines:#?}");
    lines[0]["payload"].clone()
}

/// A one-Provider manifest directory with a text template on its Alert.
fn templated(kind: &str, spec: &str, pairs: &[(&str, &str)]) -> tempfile::TempDir {
    write(&format!(
        "{}  template:\n    text: \"{{{{ object.name }}}}: {{{{ reason }}}}\"\n{}",
        provider(
            "templated",
            kind,
            &format!("  secretRef: {{name: templated}}\n{spec}")
        ),
        secret("templated", pairs),
    ))
}

const TEMPLATED: &str = "my-app-kustomization: ReconciliationFailed";

#[test]
fn webex_posts_markdown_to_the_room_with_the_bot_token() {
    let token = "webex-bot-token-secret";
    let received = deliver(&Case {
        kind: "webex",
        spec: "  channel: room-id-1",
        address_suffix: "",
        secret: vec![("token", token)],
    });
    let r = &received[0];
    assert_post(r, PATH, "application/json");
    assert_eq!(
        header(r, "authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(
        r.body,
        json!({
            "roomId": "room-id-1",
            "markdown": format!("💣 **{OBJECT}**\n{MESSAGE}\n>**revision**: {REVISION}\n"),
        })
    );
    let dir = templated(
        "webex",
        "",
        &[
            ("address", "https://webexapis.com/v1/messages"),
            ("token", token),
        ],
    );
    assert_eq!(
        routed_payload(dir.path()),
        json!({"markdown": format!("💣 **{OBJECT}**\n{TEMPLATED}\n")})
    );
}

/// Flux's message in MarkdownV2, escaped as Flux escapes it.
const MESSAGE_MD2: &str = "Deployment/my\\-app/my\\-app\\-deployment dry\\-run failed: spec\\.replicas: Invalid value: \\-1: must be greater than or equal to 0";

/// The address (a lookalike here, a self-hosted Bot API server in real
/// life) replaces `https://api.telegram.org`, the bot token goes in the
/// path, and a `<chat>:<topic>` channel posts to a forum topic.
#[test]
fn telegram_sends_escaped_markdown_to_the_bot_api() {
    let token = "123456:telegram-bot-secret";
    let received = deliver(&Case {
        kind: "telegram",
        spec: "  channel: '-1001234567890:42'",
        address_suffix: "",
        secret: vec![("token", token)],
    });
    let r = &received[0];
    assert_post(
        r,
        &format!("{PATH}/bot{token}/sendMessage"),
        "application/json",
    );
    assert_eq!(header(r, "authorization"), None);
    assert_eq!(
        r.body,
        json!({
            "chat_id": "-1001234567890",
            "message_thread_id": "42",
            "text": format!("*🚨 kustomization/my\\-app\\-kustomization/flux\\-system*\n{MESSAGE_MD2}\n\\- *revision*: {REVISION}\n"),
            "parse_mode": "MarkdownV2",
        })
    );
    // As in Flux, no address means the public Bot API.
    let dir = templated("telegram", "  channel: '@flux'", &[("token", token)]);
    let lines = route_lines(dir.path(), "kustomization-error.json");
    assert_eq!(lines[0]["address"], "https://api.telegram.org/***");
    assert_eq!(
        lines[0]["payload"],
        json!({
            "chat_id": "@flux",
            "text": "*🚨 kustomization/my\\-app\\-kustomization/flux\\-system*\nmy\\-app\\-kustomization: ReconciliationFailed\n",
            "parse_mode": "MarkdownV2",
        })
    );
    assert_absent(
        "route",
        &route(dir.path(), "kustomization-error.json"),
        &[token],
    );
}

/// Telegram's failures carry `retry_after` in the body; a 200 with `"ok":
/// false` is not a delivery.
#[test]
fn telegram_waits_retry_after_from_the_body() {
    let pki = Pki::new();
    let sink = Sink::start_tls(pki.server_config(false));
    let dir = write(&format!(
        "{}{}{}",
        provider(
            "telegram",
            "telegram",
            "  channel: '@flux'\n  secretRef: {name: bot}\n  certSecretRef: {name: ca}"
        ),
        secret(
            "bot",
            &[("address", sink.url.as_str()), ("token", "1:bot-secret")]
        ),
        secret("ca", &[("ca.crt", &pki.ca)]),
    ));
    sink.script([
        Answer::status(429).body(
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 1","parameters":{"retry_after":1}}"#,
        ),
        Answer::status(200).body(r#"{"ok":true,"result":{}}"#),
        Answer::status(200).body(r#"{"ok":false,"description":"Bad Request: chat not found"}"#),
    ]);
    let herald = Herald::serve(dir.path(), &[]);
    assert_eq!(
        herald.post_file(&event_file("kustomization-error.json")),
        202
    );
    let received = sink.wait_for(2, WAIT);
    assert_eq!(received.len(), 2, "{:#?}", herald.logs());
    assert!(received[1].at - received[0].at >= Duration::from_secs(1));
    assert!(herald.wait_for_log("\"delivered\"", WAIT).is_some());
    assert_eq!(herald.post_file(&event_file("helmrelease-error.json")), 202);
    let line = herald
        .wait_for_log("chat not found", WAIT)
        .expect("failure logged");
    assert!(line.contains("not retrying"), "{line}");
    herald.assert_no_secret_in_logs();
    assert_absent("logs", &herald.logs().join("\n"), &["bot-secret"]);
}

#[test]
fn lark_posts_an_interactive_card() {
    let received = deliver(&Case {
        kind: "lark",
        spec: "",
        address_suffix: "",
        secret: vec![],
    });
    let r = &received[0];
    assert_post(r, PATH, "application/json");
    assert_eq!(
        r.body,
        json!({
            "msg_type": "interactive",
            "card": {
                "config": {"wide_screen_mode": true},
                "header": {
                    "title": {"tag": "plain_text", "content": format!("🚨 {OBJECT}")},
                    "template": "red",
                },
                "elements": [{
                    "tag": "div",
                    "text": {"tag": "lark_md", "content": format!("**{MESSAGE}**\n\nrevision: {REVISION}\n")},
                }],
            },
        })
    );
    let dir = templated(
        "lark",
        "",
        &[(
            "address",
            "https://open.larksuite.com/open-apis/bot/v2/hook/secret-webhook-path",
        )],
    );
    assert_eq!(
        routed_payload(dir.path())["card"]["elements"][0]["text"]["content"],
        format!("**{TEMPLATED}**\n\n")
    );
}

/// The Go-marshalled event of `kustomization-error.json`, whose SHA-1 is
/// Flux's Matrix transaction id.
const FLUX_EVENT_JSON: &str = r#"{"involvedObject":{"kind":"Kustomization","namespace":"flux-system","name":"my-app-kustomization","uid":"7d0cdc51-ddcf-4743-b223-83ca5c699632","apiVersion":"kustomize.toolkit.fluxcd.io/v1","resourceVersion":"48213"},"severity":"error","timestamp":"2026-11-20T07:26:19Z","message":"Deployment/my-app/my-app-deployment dry-run failed: spec.replicas: Invalid value: -1: must be greater than or equal to 0","reason":"ReconciliationFailed","metadata":{"revision":"main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"},"reportingController":"kustomize-controller","reportingInstance":"kustomize-controller-7f5c9d8b6-x2x9k"}"#;

#[test]
fn matrix_puts_a_room_message_with_flux_transaction_id() {
    let token = "syt_matrix_access_secret";
    let received = deliver(&Case {
        kind: "matrix",
        spec: "  channel: '!room:example.org'",
        address_suffix: "",
        secret: vec![("token", token)],
    });
    let r = &received[0];
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        FLUX_EVENT_JSON.as_bytes(),
    );
    let txn: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(r.method, "PUT");
    assert_eq!(
        r.path,
        format!("{PATH}/_matrix/client/r0/rooms/!room:example.org/send/m.room.message/{txn}")
    );
    assert_eq!(header(r, "content-type"), Some("application/json"));
    assert_eq!(
        header(r, "authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(
        r.body,
        json!({
            "body": format!("🚨 {OBJECT}\n{MESSAGE}\n- revision: {REVISION}\n"),
            "msgtype": "m.text",
        })
    );
    let dir = templated(
        "matrix",
        "  channel: '!room:example.org'",
        &[("address", "https://matrix.example.org"), ("token", token)],
    );
    assert_eq!(
        routed_payload(dir.path()),
        json!({"body": format!("🚨 {OBJECT}\n{TEMPLATED}\n"), "msgtype": "m.text"})
    );
}

/// Zulip gets a form with basic auth on `/api/v1/messages` of the
/// address's host.
#[test]
fn zulip_posts_a_form_with_basic_auth() {
    let password = "zulip-api-key-secret";
    let received = deliver(&Case {
        kind: "zulip",
        spec: "  channel: flux/alerts and more",
        address_suffix: "",
        secret: vec![
            ("username", "flux-bot@example.zulipchat.com"),
            ("password", password),
        ],
    });
    let r = &received[0];
    assert_post(r, "/api/v1/messages", "application/x-www-form-urlencoded");
    use base64::Engine;
    let credentials = base64::engine::general_purpose::STANDARD
        .encode(format!("flux-bot@example.zulipchat.com:{password}"));
    assert_eq!(
        header(r, "authorization"),
        Some(format!("Basic {credentials}").as_str())
    );
    let content = format!(
        "## Flux Status\n\n⚠️ Kustomization/flux-system/my-app-kustomization\n\n{MESSAGE}\n\nMetadata:\n* `revision`: {REVISION}\n"
    );
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&r.raw)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let expected: Vec<(String, String)> = [
        ("content", content.as_str()),
        ("to", "flux"),
        ("topic", "alerts and more"),
        ("type", "stream"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    assert_eq!(form, expected);
    // Go's url.Values encoding: spaces as '+', '*' escaped.
    let raw = String::from_utf8_lossy(&r.raw);
    assert!(
        raw.ends_with("&to=flux&topic=alerts+and+more&type=stream"),
        "{raw}"
    );
    assert!(
        raw.contains("%0A%2A+%60revision%60%3A+main%40sha1%3A731f7ead"),
        "{raw}"
    );
    let dir = templated(
        "zulip",
        "  channel: flux/alerts",
        &[
            ("address", "https://acme.zulipchat.com"),
            ("username", "bot@acme"),
            ("password", password),
        ],
    );
    let payload = routed_payload(dir.path());
    assert_eq!(
        payload["content"],
        format!(
            "## Flux Status\n\n⚠️ Kustomization/flux-system/my-app-kustomization\n\n{TEMPLATED}\n\nMetadata:\n"
        )
    );
    assert_eq!(payload["topic"], "alerts");
}

#[test]
fn zoom_posts_a_rich_message_with_the_verification_token() {
    let token = "zoom-verification-secret";
    let received = deliver(&Case {
        kind: "zoom",
        spec: "",
        address_suffix: "",
        secret: vec![("token", token)],
    });
    let r = &received[0];
    assert_post(r, PATH, "application/json");
    assert_eq!(r.query.as_deref(), Some("format=full"));
    assert_eq!(header(r, "authorization"), Some(token));
    assert_eq!(
        r.body,
        json!({"content": {
            "head": {"text": OBJECT, "sub_head": {"text": "error"}},
            "body": [
                {"type": "message", "text": MESSAGE},
                {"type": "fields", "items": [{"key": "revision", "value": REVISION}]},
            ],
        }})
    );
    let dir = templated(
        "zoom",
        "",
        &[
            (
                "address",
                "https://integrations.zoom.us/chat/webhooks/incomingwebhook/secret-webhook-path?format=message",
            ),
            ("token", token),
        ],
    );
    assert_eq!(
        routed_payload(dir.path())["content"]["body"],
        json!([{"type": "message", "text": TEMPLATED}])
    );
}

#[test]
fn opsgenie_creates_an_alert_with_the_genie_key() {
    let token = "opsgenie-api-key-secret";
    let received = deliver(&Case {
        kind: "opsgenie",
        spec: "",
        address_suffix: "",
        secret: vec![("token", token)],
    });
    let r = &received[0];
    assert_post(r, PATH, "application/json");
    assert_eq!(
        header(r, "authorization"),
        Some(format!("GenieKey {token}").as_str())
    );
    assert_eq!(
        r.body,
        json!({
            "message": "Kustomization/my-app-kustomization",
            "description": MESSAGE,
            "details": {"revision": REVISION, "severity": "error"},
        })
    );
    let dir = templated(
        "opsgenie",
        "",
        &[
            ("address", "https://api.opsgenie.com/v2/alerts"),
            ("token", token),
        ],
    );
    let payload = routed_payload(dir.path());
    assert_eq!(payload["description"], TEMPLATED);
    assert_eq!(payload["details"]["revision"], REVISION);
}

const UID: &str = "7d0cdc51-ddcf-4743-b223-83ca5c699632";

#[test]
fn pagerduty_triggers_an_incident_on_errors() {
    let received = deliver(&Case {
        kind: "pagerduty",
        spec: "  channel: routing-key-0123",
        address_suffix: "",
        secret: vec![],
    });
    let r = &received[0];
    assert_post(r, "/v2/enqueue", "application/json");
    assert_eq!(header(r, "authorization"), None);
    assert_eq!(
        r.body,
        json!({
            "routing_key": "routing-key-0123",
            "event_action": "trigger",
            "dedup_key": UID,
            "payload": {
                "summary": "reconciliation failed: kustomization/my-app-kustomization",
                "source": "Flux kustomize-controller",
                "severity": "error",
                "timestamp": "2026-11-20T07:26:19Z",
                "component": "my-app-kustomization",
                "group": "Kustomization",
                "custom_details": {"message": MESSAGE, "metadata": {"revision": REVISION}},
            },
        })
    );
}

/// An info event resolves the object's incident and is then recorded as a
/// change event; a `Progressing` event sends nothing.
#[test]
fn pagerduty_resolves_and_records_a_change_on_info_and_skips_progressing() {
    let sink = Sink::start();
    let dir = write(&format!(
        "{}  channel: routing-key-0123\n{}",
        provider("pd", "pagerduty", "  secretRef: {name: pd}"),
        secret("pd", &[("address", sink.url.as_str())]),
    ));
    let herald = Herald::serve(dir.path(), &[]);
    let event = std::fs::read_to_string(event_file("kustomization-info.json")).expect("event");
    let progressing = event
        .replace("ReconciliationSucceeded", "Progressing")
        .replace("configured", "configuring");
    assert_eq!(herald.post(progressing).0, 202);
    assert_eq!(herald.post(event).0, 202);
    let received = sink.wait_for(2, WAIT);
    assert_eq!(received.len(), 2, "{:#?}", herald.logs());
    assert_post(&received[0], "/v2/enqueue", "application/json");
    assert_eq!(
        received[0].body,
        json!({"routing_key": "routing-key-0123", "event_action": "resolve", "dedup_key": UID})
    );
    assert_post(&received[1], "/v2/change/enqueue", "application/json");
    let message = "Deployment/my-app/my-app-deployment configured\nService/my-app/my-app unchanged";
    assert_eq!(
        received[1].body,
        json!({
            "routing_key": "routing-key-0123",
            "payload": {
                "source": "Flux kustomize-controller",
                "summary": "reconciliation succeeded: kustomization/my-app-kustomization",
                "timestamp": "2026-11-20T07:31:02Z",
                "custom_details": {"message": message, "metadata": {
                    "revision": "main@sha1:9f2c1d4e5b6a7980a1b2c3d4e5f60718293a4b5c",
                }},
            },
        })
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.received().len(), 2);
    let metrics = metrics(&herald);
    for expected in [
        "herald_notifications_total{provider_type=\"pagerduty\",result=\"delivered\"} 1",
        "herald_notifications_total{provider_type=\"pagerduty\",result=\"skipped\"} 1",
    ] {
        assert!(metrics.contains(expected), "{expected} not in {metrics}");
    }
}

fn basic(username: &str, password: &str) -> String {
    use base64::Engine;
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    format!("Basic {credentials}")
}

#[test]
fn alertmanager_posts_one_firing_alert_with_basic_auth() {
    let received = deliver(&Case {
        kind: "alertmanager",
        spec: "",
        address_suffix: "",
        secret: vec![
            ("username", "am-user"),
            ("password", "am-password-secret"),
            ("token", "am-token-secret"),
        ],
    });
    let r = &received[0];
    assert_post(r, PATH, "application/json");
    // Flux's last request modifier, basic auth, wins over the token.
    assert_eq!(
        header(r, "authorization"),
        Some(basic("am-user", "am-password-secret").as_str())
    );
    assert_eq!(
        r.body,
        json!([{
            "status": "firing",
            "labels": {
                "alertname": "FluxKustomizationReconciliationfailed",
                "kind": "Kustomization",
                "name": "my-app-kustomization",
                "namespace": "flux-system",
                "reason": "ReconciliationFailed",
                "reportingcontroller": "kustomize-controller",
                "revision": REVISION,
                "severity": "error",
            },
            "annotations": {"message": MESSAGE},
            "startsAt": "2026-11-20T07:26:19Z",
            "endsAt": "0001-01-01T00:00:00Z",
        }])
    );
}

/// The event's `timestamp` in Unix seconds.
const WHEN: i64 = 1_795_159_579;

#[test]
fn grafana_posts_an_annotation_with_a_bearer_token() {
    let received = deliver(&Case {
        kind: "grafana",
        spec: "",
        address_suffix: "",
        secret: vec![("token", "grafana-token-secret")],
    });
    let r = &received[0];
    assert_post(r, PATH, "application/json");
    assert_eq!(
        header(r, "authorization"),
        Some("Bearer grafana-token-secret")
    );
    assert_eq!(
        r.body,
        json!({
            "when": WHEN,
            "text": OBJECT,
            "tags": [
                "flux",
                "kustomize-controller",
                "revision: main@sha1|731f7eaddfb6af01cb2173e18f0f75b0ba780ef1",
                "kind: Kustomization",
                "name: my-app-kustomization",
                "namespace: flux-system",
            ],
        })
    );
}

#[test]
fn datadog_posts_an_event_with_the_api_key() {
    let received = deliver(&Case {
        kind: "datadog",
        spec: "",
        address_suffix: "",
        secret: vec![("token", "dd-api-key-secret")],
    });
    let r = &received[0];
    assert_post(r, "/api/v1/events", "application/json");
    assert_eq!(header(r, "dd-api-key"), Some("dd-api-key-secret"));
    assert_eq!(header(r, "accept"), Some("application/json"));
    assert_eq!(
        r.body,
        json!({
            "alert_type": "error",
            "date_happened": WHEN,
            "source_type_name": "fluxcd",
            "tags": [
                "flux_reporting_controller:kustomize-controller",
                "flux_reason:reconciliationfailed",
                "kube_kind:kustomization",
                "kube_name:my-app-kustomization",
                "kube_namespace:flux-system",
                "revision:main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1",
            ],
            "text": MESSAGE,
            "title": "Events from the Kustomization my-app-kustomization/flux-system",
        })
    );
}

#[test]
fn incidentio_fires_an_alert_event_with_a_bearer_token() {
    let received = deliver(&Case {
        kind: "incident.io",
        spec: "",
        address_suffix: "",
        secret: vec![("token", "incident-token-secret")],
    });
    let r = &received[0];
    assert_post(r, PATH, "application/json");
    assert_eq!(
        header(r, "authorization"),
        Some("Bearer incident-token-secret")
    );
    assert_eq!(
        r.body,
        json!({
            "title": "kustomization/my-app-kustomization.flux-system: ReconciliationFailed",
            "status": "firing",
            "deduplication_key": UID,
            "description": MESSAGE,
            "metadata": {
                "reason": "ReconciliationFailed",
                "reportingController": "kustomize-controller",
                "revision": REVISION,
                "severity": "error",
            },
        })
    );
}

/// The lines of a Sentry envelope: its header, then item header and item.
fn envelope(received: &Received) -> Vec<Value> {
    String::from_utf8(received.raw.clone())
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("envelope line"))
        .collect()
}

/// Sentry gets the envelope the Go SDK would send to the DSN's project: an
/// error event for errors, a transaction for info events; retried on 503.
#[test]
fn sentry_posts_envelopes_to_the_dsn_project() {
    let pki = Pki::new();
    let sink = Sink::start_tls(pki.server_config(false));
    let dsn = format!("https://sentry-public-key@{}/prefix/42", sink.authority());
    let dir = write(&format!(
        "{}{}{}",
        provider(
            "sentry",
            "sentry",
            "  secretRef: {name: dsn}\n  certSecretRef: {name: ca}\n  channel: production"
        ),
        secret("dsn", &[("address", dsn.as_str())]),
        secret("ca", &[("ca.crt", &pki.ca)]),
    ));
    sink.script([Answer::status(503)]);
    let herald = Herald::serve(dir.path(), &[]);
    assert_eq!(
        herald.post_file(&event_file("kustomization-error.json")),
        202
    );
    let received = sink.wait_for(2, WAIT);
    assert_eq!(received.len(), 2, "{:#?}", herald.logs());
    assert_eq!(received[0].raw, received[1].raw);
    let r = &received[1];
    assert_post(
        r,
        "/prefix/api/42/envelope/",
        "application/x-sentry-envelope",
    );
    assert_eq!(
        header(r, "x-sentry-auth"),
        Some(
            "Sentry sentry_version=7, sentry_client=sentry.go/0.46.2, sentry_key=sentry-public-key"
        )
    );
    let lines = envelope(r);
    assert_eq!(lines.len(), 3);
    let event_id = lines[2]["event_id"].as_str().expect("event_id").to_owned();
    assert_eq!(event_id.len(), 32);
    assert_eq!(lines[0]["event_id"], event_id.as_str());
    assert_eq!(lines[0]["dsn"], dsn.as_str());
    assert_eq!(
        lines[1],
        json!({"type": "event", "length": String::from_utf8(r.raw.clone()).expect("utf-8").lines().nth(2).expect("item").len()})
    );
    assert_eq!(
        lines[2],
        json!({
            "event_id": event_id,
            "level": "error",
            "platform": "go",
            "sdk": {
                "name": "sentry.go",
                "version": "0.46.2",
                "integrations": ["ContextifyFrames", "Environment", "GlobalTags", "IgnoreErrors", "IgnoreTransactions", "Modules"],
                "packages": [{"name": "sentry-go", "version": "0.46.2"}],
            },
            "server_name": "kustomize-controller",
            "environment": "production",
            "timestamp": "2026-11-20T07:26:19Z",
            "transaction": "Kustomization: flux-system/my-app-kustomization",
            "message": MESSAGE,
            "contexts": {"metadata": {"revision": REVISION}},
        })
    );

    assert_eq!(
        herald.post_file(&event_file("kustomization-info.json")),
        202
    );
    let received = sink.wait_for(3, WAIT);
    assert_eq!(received.len(), 3, "{:#?}", herald.logs());
    let lines = envelope(&received[2]);
    assert_eq!(lines[1]["type"], "transaction");
    let transaction = &lines[2];
    assert_eq!(transaction["type"], "transaction");
    // As sentry-go fills a transaction Flux hands it.
    assert_eq!(transaction["level"], "info");
    assert_eq!(transaction["spans"][0]["origin"], "manual");
    assert!(transaction["server_name"].is_string(), "{transaction}");
    assert_eq!(transaction["environment"], "production");
    assert_eq!(
        transaction["transaction"],
        "Kustomization: flux-system/my-app-kustomization"
    );
    assert_eq!(transaction["start_timestamp"], "2026-11-20T07:31:02Z");
    assert_eq!(transaction["timestamp"], "2026-11-20T07:31:02Z");
    assert_eq!(
        transaction["tags"],
        json!({
            "flux_involved_object_kind": "Kustomization",
            "flux_involved_object_namespace": "flux-system",
            "flux_involved_object_name": "my-app-kustomization",
            "flux_reporting_controller": "kustomize-controller",
            "flux_reporting_instance": "",
            "flux_reason": "ReconciliationSucceeded",
            "revision": "main@sha1:9f2c1d4e5b6a7980a1b2c3d4e5f60718293a4b5c",
        })
    );
    assert_eq!(transaction["contexts"]["trace"]["op"], "event");
    assert_eq!(transaction["spans"][0]["op"], "event");
    assert!(herald.wait_for_log("\"delivered\"", WAIT).is_some());

    let routed = route(dir.path(), "kustomization-error.json");
    assert!(
        routed.contains(&format!("\"address\":\"https://{}/***\"", sink.authority())),
        "{routed}"
    );
    for (what, text) in [("logs", herald.logs().join("\n")), ("route", routed)] {
        assert_absent(what, &text, &["sentry-public-key"]);
    }
}

#[test]
fn mastodon_posts_a_status_with_the_access_token() {
    let token = "mastodon-access-token-secret";
    let received = deliver(&Case {
        kind: "mastodon",
        spec: "",
        address_suffix: "",
        secret: vec![("token", token)],
    });
    let r = &received[0];
    assert_post(r, &format!("{PATH}/api/v1/statuses"), "application/json");
    assert_eq!(
        header(r, "authorization"),
        Some(format!("Bearer {token}").as_str())
    );
    assert_eq!(
        r.body,
        json!({"status": format!("{OBJECT}\n{MESSAGE}\nrevision: {REVISION}")})
    );
    let dir = templated(
        "mastodon",
        "",
        &[("address", "https://mastodon.example"), ("token", token)],
    );
    assert_eq!(
        routed_payload(dir.path())["status"],
        format!("{OBJECT}\n{TEMPLATED}")
    );
}
