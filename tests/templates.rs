//! Alert templates and Slack threads (DESIGN §3.10–§3.11), delivered to
//! real local HTTP sinks and printed by `herald route`.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::herald::{Herald, binary, client};
use support::sink::Sink;
use support::{event_file, seed_copy};

const WAIT: Duration = Duration::from_secs(15);
const SHA: &str = "731f7eaddfb6af01cb2173e18f0f75b0ba780ef1";

fn alert_with(template: &str) -> String {
    format!(
        r#"apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {{name: templated, namespace: flux-system}}
spec:
  providerRef: {{name: slack}}
  eventSeverity: info
  eventSources:
    - {{kind: Kustomization, name: "*"}}
    - {{kind: HelmRelease, name: "*"}}
  summary: production
  template:
{template}
"#
    )
}

/// The seed's Provider and Secret (pointing at the sink) plus `alert`.
fn setup(sink: &Sink, alert: &str) -> tempfile::TempDir {
    let dir = seed_copy(&["02-provider.yaml", "04-secret.yaml"], &sink.url);
    std::fs::write(dir.path().join("alert.yaml"), alert).expect("write alert");
    dir
}

fn route(dir: &std::path::Path, event: &std::path::Path) -> Vec<Value> {
    let output = Command::new(binary())
        .args(["route", "--manifests"])
        .arg(dir)
        .arg(event)
        .output()
        .expect("route");
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// An event file with another revision, written next to the manifests.
fn event_with_revision(dir: &std::path::Path, revision: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(event_file("kustomization-error.json"))
        .expect("event")
        .replace(&format!("main@sha1:{SHA}"), revision);
    let path = dir.join(format!(
        "event-{}.json",
        revision.replace(['/', '@', ':'], "_")
    ));
    std::fs::write(&path, text).expect("write event");
    path
}

const TEXT_TEMPLATE: &str = r#"    text: |
      *{{ object.kind }} {{ object.namespace }}/{{ object.name }}* is {{ severity }}: {{ reason }}
      {{ message }}
      commit: {{ revision | commit }} short: {{ (revision | commit)[:7] }}
      env: {{ metadata.summary }} by {{ alert.namespace }}/{{ alert.name }} via {{ provider.type }}:{{ provider.namespace }}/{{ provider.name }}"#;

fn expected_text(commit: &str) -> String {
    let short: String = commit.chars().take(7).collect();
    format!(
        "*Kustomization flux-system/my-app-kustomization* is error: ReconciliationFailed\n\
         Deployment/my-app/my-app-deployment dry-run failed: spec.replicas: Invalid value: -1: must be greater than or equal to 0\n\
         commit: {commit} short: {short}\n\
         env: production by flux-system/templated via slack:flux-system/slack"
    )
}

#[test]
fn text_template_renders_in_delivery_and_in_route() {
    let sink = Sink::start();
    let dir = setup(&sink, &alert_with(TEXT_TEMPLATE));
    let cases = [
        (format!("main@sha1:{SHA}"), SHA.to_owned()),
        (format!("main/{SHA}"), SHA.to_owned()),
        ("6.7.1".to_owned(), String::new()),
    ];
    let herald = Herald::serve(dir.path(), &[]);
    for (i, (revision, commit)) in cases.iter().enumerate() {
        let event = event_with_revision(dir.path(), revision);
        // What route prints...
        let printed = route(dir.path(), &event);
        assert_eq!(printed.len(), 1);
        let attachment = &printed[0]["payload"]["attachments"][0];
        assert_eq!(
            attachment["text"],
            expected_text(commit),
            "route, revision {revision}"
        );
        assert!(
            attachment.get("fields").is_none(),
            "a text template carries no fields"
        );
        // ...is what serve delivers.
        assert_eq!(herald.post_file(&event), 202);
        let received = sink.wait_for(i + 1, WAIT);
        assert_eq!(
            received[i].body, printed[0]["payload"],
            "revision {revision}"
        );
        let fallback = received[i].body["attachments"][0]["fallback"]
            .as_str()
            .unwrap_or_default();
        assert_eq!(
            fallback,
            "kustomization/my-app-kustomization.flux-system: *Kustomization flux-system/my-app-kustomization* is error: ReconciliationFailed"
        );
    }
}

const BLOCKS_TEMPLATE: &str = r#"    text: "{{ object.kind }} {{ object.name }} failed"
    blocks: |
      [
        {"type": "header", "text": {"type": "plain_text", "text": {{ (object.kind ~ " " ~ object.name) | tojson }}}},
        {"type": "section", "text": {"type": "mrkdwn", "text": {{ message | tojson }}}}
      ]"#;

#[test]
fn blocks_template_is_delivered_as_block_kit_and_survives_tricky_messages() {
    let sink = Sink::start();
    let dir = setup(&sink, &alert_with(BLOCKS_TEMPLATE));
    let herald = Herald::serve(dir.path(), &[]);
    let tricky = "quote \" apostrophe ' <b>tag</b> & ampersand\nsecond line\ttab \\ backslash";
    let mut event: Value = serde_json::from_str(
        &std::fs::read_to_string(event_file("kustomization-error.json")).expect("event"),
    )
    .expect("json");
    event["message"] = Value::from(tricky);
    assert_eq!(herald.post(event.to_string()).0, 202);
    let received = sink.wait_for(1, WAIT);
    assert_eq!(received.len(), 1);
    let body = &received[0].body;
    assert_eq!(
        body["attachments"][0]["blocks"],
        json!([
            {"type": "header", "text": {"type": "plain_text", "text": "Kustomization my-app-kustomization"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": tricky}}
        ])
    );
    assert_eq!(body["attachments"][0]["color"], "danger");
    assert_eq!(body["text"], "Kustomization my-app-kustomization failed");
}

#[test]
fn a_render_error_sends_the_default_format_and_keeps_serving() {
    let sink = Sink::start();
    let broken = r#"    blocks: '[{"type": "section", "text": {{ message }}}]'"#;
    let dir = setup(&sink, &alert_with(broken));
    let herald = Herald::serve(dir.path(), &[]);
    assert_eq!(
        herald.post_file(&event_file("kustomization-error.json")),
        202
    );
    let received = sink.wait_for(1, WAIT);
    assert_eq!(received.len(), 1);
    let attachment = &received[0].body["attachments"][0];
    assert_eq!(
        attachment["author_name"],
        "kustomization/my-app-kustomization.flux-system"
    );
    assert!(
        attachment["fields"].is_array(),
        "default format expected: {attachment}"
    );
    assert!(
        herald
            .wait_for_log("template render failed", WAIT)
            .is_some()
    );
    let metrics = client::get(&format!("{}/metrics", herald.metrics)).1;
    assert!(
        metrics.contains("herald_template_render_failures_total 1"),
        "{metrics}"
    );
    // Still serving.
    assert_eq!(herald.post_file(&event_file("helmrelease-error.json")), 202);
    assert_eq!(sink.wait_for(2, WAIT).len(), 2);
}

#[test]
fn check_fails_a_syntax_error_naming_alert_field_line_and_column() {
    let dir = setup(
        &Sink::start(),
        &alert_with("    text: |\n      fine line\n      {{ message }"),
    );
    let output = Command::new(binary())
        .args(["check", "--manifests"])
        .arg(dir.path())
        .output()
        .expect("check");
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("Alert flux-system/templated"), "{stdout}");
    assert!(
        stdout.contains("spec.template.text: syntax error at line 2, column"),
        "{stdout}"
    );
    assert!(stdout.contains("InvalidTemplate"), "{stdout}");
    // The Alert still routes, in the default format.
    let printed = route(dir.path(), &event_file("kustomization-error.json"));
    assert_eq!(printed.len(), 1);
    assert!(printed[0]["payload"]["attachments"][0]["fields"].is_array());
}

#[test]
fn check_warns_that_threads_need_a_bot_token() {
    let dir = setup(
        &Sink::start(),
        &alert_with(r#"    threadKey: "{{ object.name }}""#),
    );
    let output = Command::new(binary())
        .args(["check", "--manifests"])
        .arg(dir.path())
        .output()
        .expect("check");
    assert_eq!(output.status.code(), Some(0), "a warning is not an error");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("warning") && stdout.contains("threads need a Slack bot token"),
        "{stdout}"
    );
}

/// A bot-token Provider whose address is the sink's chat.postMessage.
fn thread_setup(sink: &Sink) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let address = sink.url.replace(
        "/services/T000/B000/secret-webhook-path",
        "/api/chat.postMessage",
    );
    let manifests = format!(
        r##"apiVersion: v1
kind: Secret
metadata: {{name: slack-bot, namespace: flux-system}}
stringData: {{address: "{address}", token: xoxb-thread-test}}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {{name: slack, namespace: flux-system}}
spec: {{type: slack, channel: "#deploys", secretRef: {{name: slack-bot}}}}
---
{}"##,
        alert_with(
            r#"    threadKey: "{{ object.kind }}/{{ object.namespace }}/{{ object.name }}/{{ revision }}""#
        )
    );
    std::fs::write(dir.path().join("manifests.yaml"), manifests).expect("write");
    dir
}

fn event_for(name: &str, revision: &str, n: usize) -> String {
    let mut event: Value = serde_json::from_str(
        &std::fs::read_to_string(event_file("kustomization-error.json")).expect("event"),
    )
    .expect("json");
    event["involvedObject"]["name"] = Value::from(name);
    event["metadata"]["kustomize.toolkit.fluxcd.io/revision"] = Value::from(revision);
    event["message"] = Value::from(format!("message {n:03}"));
    event.to_string()
}

#[test]
fn same_key_forms_a_thread_other_keys_do_not() {
    let sink = Sink::start();
    sink.answer_like_slack_api();
    let dir = thread_setup(&sink);
    let herald = Herald::serve(dir.path(), &[]);
    assert_eq!(herald.post(event_for("app", "main@sha1:aaa", 1)).0, 202);
    sink.wait_for(1, WAIT);
    assert_eq!(herald.post(event_for("app", "main@sha1:aaa", 2)).0, 202);
    assert_eq!(herald.post(event_for("app", "main@sha1:bbb", 3)).0, 202);
    assert_eq!(herald.post(event_for("other", "main@sha1:aaa", 4)).0, 202);
    let received = sink.wait_for(4, WAIT);
    assert_eq!(received.len(), 4);
    assert!(received[0].body.get("thread_ts").is_none());
    assert_eq!(received[0].body["channel"], "#deploys");
    assert_eq!(
        received[1].body["thread_ts"], "1000.000000",
        "same key replies in the thread"
    );
    assert_eq!(
        received[1].body["channel"], "C0THREADS",
        "replies use the channel Slack returned"
    );
    assert!(
        received[2].body.get("thread_ts").is_none(),
        "another revision is another key"
    );
    assert!(
        received[3].body.get("thread_ts").is_none(),
        "another object is another key"
    );
    assert_eq!(
        received[0].headers["authorization"],
        "Bearer xoxb-thread-test"
    );
}

#[test]
fn threads_stay_ordered_under_a_burst() {
    let sink = Sink::start();
    sink.answer_like_slack_api();
    let dir = thread_setup(&sink);
    let herald = Herald::serve(dir.path(), &[]);
    for n in 0..50 {
        assert_eq!(
            herald
                .post(event_for(&format!("app-{}", n % 5), "main@sha1:aaa", n))
                .0,
            202
        );
    }
    let received = sink.wait_for(50, Duration::from_secs(30));
    assert_eq!(received.len(), 50);
    let messages: Vec<String> = received.iter().map(|r| r.text()).collect();
    let expected: Vec<String> = (0..50).map(|n| format!("message {n:03}")).collect();
    assert_eq!(messages, expected, "delivery order");
    for key in 0..5 {
        let first_ts = format!("1000.{key:06}");
        for (n, request) in received.iter().enumerate().filter(|(n, _)| n % 5 == key) {
            if n == key {
                assert!(
                    request.body.get("thread_ts").is_none(),
                    "first of key {key} starts the thread"
                );
            } else {
                assert_eq!(request.body["thread_ts"], first_ts.as_str(), "message {n}");
            }
        }
    }
}

#[test]
fn route_prints_the_rendered_thread_key() {
    let sink = Sink::start();
    let dir = thread_setup(&sink);
    let printed = route(dir.path(), &event_file("kustomization-error.json"));
    assert_eq!(printed.len(), 1);
    assert_eq!(
        printed[0]["threadKey"],
        format!("Kustomization/flux-system/my-app-kustomization/main@sha1:{SHA}")
    );
    assert!(sink.received().is_empty());
}

#[test]
fn the_readme_template_examples_render() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    for file in [
        "quickstart/provider.yaml",
        "quickstart/secret.yaml",
        "templates/commit-links.yaml",
        "templates/block-kit.yaml",
    ] {
        let from = root.join("examples").join(file);
        std::fs::copy(&from, dir.path().join(from.file_name().expect("name"))).expect("copy");
    }
    let info = route(
        dir.path(),
        &root.join("examples/events/kustomization-info.json"),
    );
    assert_eq!(info.len(), 1);
    assert_eq!(
        info[0]["payload"]["attachments"][0]["text"],
        "*Kustomization flux-system/my-app-kustomization* — ReconciliationSucceeded\n\
         Deployment/my-app/my-app-deployment configured\n\
         Service/my-app/my-app unchanged\n\
         Commit: <https://github.com/acme/fleet/commit/9f2c1d4e5b6a7980a1b2c3d4e5f60718293a4b5c|9f2c1d4>\n\
         <https://grafana.example.com/d/flux?var-namespace=flux-system&var-name=my-app-kustomization|Dashboard>"
    );
    let helm = route(
        dir.path(),
        &root.join("examples/events/helmrelease-error.json"),
    );
    assert_eq!(helm.len(), 1);
    let blocks = &helm[0]["payload"]["attachments"][0]["blocks"];
    assert_eq!(blocks[0]["text"]["text"], "HelmRelease podinfo");
    assert_eq!(blocks[2]["elements"][0]["text"], "revision: 6.7.1");
    assert_eq!(
        helm[0]["payload"]["text"],
        "HelmRelease podinfo: InstallFailed"
    );
}

/// Two Alerts share one bot Provider, post to different channels and render
/// the same thread key: each keeps its own thread in its own channel (the
/// second Alert's messages used to land as replies in the first's thread).
#[test]
fn two_channels_through_one_provider_keep_two_threads() {
    let sink = Sink::start();
    sink.answer_like_slack_api();
    let dir = tempfile::tempdir().expect("tempdir");
    let address = sink.url.replace(
        "/services/T000/B000/secret-webhook-path",
        "/api/chat.postMessage",
    );
    let alert = |name: &str, channel: &str| {
        format!(
            r#"apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {{name: {name}, namespace: flux-system}}
spec:
  providerRef: {{name: slack}}
  channel: "{channel}"
  eventSeverity: info
  eventSources:
    - {{kind: Kustomization, name: "*"}}
  template:
    text: "{{{{ alert.name }}}}: {{{{ message }}}}"
    threadKey: "{{{{ object.name }}}}"
"#
        )
    };
    let manifests = format!(
        r##"apiVersion: v1
kind: Secret
metadata: {{name: slack-bot, namespace: flux-system}}
stringData: {{address: "{address}", token: xoxb-thread-test}}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {{name: slack, namespace: flux-system}}
spec: {{type: slack, channel: "#deploys", secretRef: {{name: slack-bot}}}}
---
{}---
{}"##,
        alert("team-a", "#team-a"),
        alert("team-b", "#team-b")
    );
    std::fs::write(dir.path().join("manifests.yaml"), manifests).expect("write");
    let herald = Herald::serve(dir.path(), &[]);
    assert_eq!(herald.post(event_for("app", "main@sha1:aaa", 1)).0, 202);
    assert_eq!(herald.post(event_for("app", "main@sha1:aaa", 2)).0, 202);
    let received = sink.wait_for(4, WAIT);
    assert_eq!(received.len(), 4);
    for team in ["team-a", "team-b"] {
        let mine: Vec<(usize, &support::sink::Received)> = received
            .iter()
            .enumerate()
            .filter(|(_, r)| r.text().starts_with(&format!("{team}: ")))
            .collect();
        assert_eq!(mine.len(), 2, "{team}: {received:#?}");
        let (first_index, first) = mine[0];
        assert!(
            first.body.get("thread_ts").is_none(),
            "{team}'s first message starts its own thread: {:#?}",
            first.body
        );
        assert_eq!(first.body["channel"], format!("#{team}").as_str());
        let reply = mine[1].1;
        assert_eq!(
            reply.body["thread_ts"],
            format!("1000.{first_index:06}").as_str(),
            "{team}'s reply is in {team}'s thread"
        );
    }
}
