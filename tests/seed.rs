//! `herald serve` on the seed fixtures, end to end: real manifests, real
//! HTTP event POSTs, a real recording webhook sink.

mod support;

use std::time::Duration;

use support::herald::Herald;
use support::sink::Sink;
use support::{SEED, event_file, seed_copy};

const WAIT: Duration = Duration::from_secs(10);

fn channels(sink: &Sink) -> Vec<String> {
    let mut channels: Vec<String> = sink
        .received()
        .iter()
        .map(|r| r.body["channel"].as_str().unwrap_or("(none)").to_owned())
        .collect();
    channels.sort();
    channels
}

#[test]
fn kustomization_error_sends_one_flux_compatible_message() {
    let sink = Sink::start();
    let dir = seed_copy(
        &[
            "00-namespace.yaml",
            "01-kustomization.yaml",
            "02-provider.yaml",
            "03-alert.yaml",
            "04-secret.yaml",
        ],
        &sink.url,
    );
    let herald = Herald::serve(dir.path(), &[]);

    assert_eq!(
        herald.post_file(&event_file("kustomization-error.json")),
        202
    );
    let received = sink.wait_for(1, WAIT);
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, "/services/T000/B000/secret-webhook-path");
    // What Flux v1.9.3 sends, seen side by side: its unset icon fields as
    // empty strings, and `Content-Type: application/json`.
    let expected = serde_json::json!({
        "username": "kustomize-controller",
        "icon_url": "",
        "icon_emoji": "",
        "attachments": [{
            "color": "danger",
            "author_name": "kustomization/my-app-kustomization.flux-system",
            "text": "Deployment/my-app/my-app-deployment dry-run failed: spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "fallback": "kustomization/my-app-kustomization.flux-system: Deployment/my-app/my-app-deployment dry-run failed: spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            "mrkdwn_in": ["text"],
            "fields": [{"title": "revision", "value": "main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1", "short": false}]
        }]
    });
    assert_eq!(received[0].body, expected);
    assert_eq!(received[0].headers["content-type"], "application/json");

    // Only errors match 03-alert.yaml: the info event is accepted and sends nothing.
    assert_eq!(
        herald.post_file(&event_file("kustomization-info.json")),
        202
    );
    // The same error again within the rate-limit interval is a duplicate.
    assert_eq!(
        herald.post_file(&event_file("kustomization-error.json")),
        429
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sink.received().len(), 1);
}

#[test]
fn two_channels_split_errors_and_info() {
    let sink = Sink::start();
    let dir = seed_copy(&SEED, &sink.url);
    let herald = Herald::serve(dir.path(), &[]);

    assert_eq!(
        herald.post_file(&event_file("kustomization-info.json")),
        202
    );
    sink.wait_for(1, WAIT);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        channels(&sink),
        ["#gitops-updates"],
        "info goes to #gitops-updates only"
    );

    assert_eq!(
        herald.post_file(&event_file("kustomization-error.json")),
        202
    );
    sink.wait_for(4, WAIT);
    std::thread::sleep(Duration::from_millis(300));
    // The error reaches flux-alerts (no channel), devops-errors and
    // gitops-updates (whose `info` threshold includes errors, DESIGN §3.2).
    assert_eq!(
        channels(&sink),
        [
            "#devops-alerts",
            "#gitops-updates",
            "#gitops-updates",
            "(none)"
        ]
    );
    let devops = sink
        .received()
        .into_iter()
        .find(|r| r.body["channel"] == "#devops-alerts")
        .expect("a #devops-alerts message");
    assert_eq!(devops.body["attachments"][0]["color"], "danger");
}

#[test]
fn helmrelease_error_drops_the_token_metadata() {
    let sink = Sink::start();
    let dir = seed_copy(&SEED, &sink.url);
    let herald = Herald::serve(dir.path(), &[]);
    assert_eq!(herald.post_file(&event_file("helmrelease-error.json")), 202);
    let received = sink.wait_for(1, WAIT);
    assert_eq!(received.len(), 1);
    let fields = &received[0].body["attachments"][0]["fields"];
    assert_eq!(
        fields,
        &serde_json::json!([{"title": "revision", "value": "6.7.1", "short": false}])
    );
    assert_eq!(received[0].body["username"], "helm-controller");
}

#[test]
fn manifest_changes_are_picked_up_without_restart() {
    let sink = Sink::start();
    let dir = seed_copy(
        &["02-provider.yaml", "03-alert.yaml", "04-secret.yaml"],
        &sink.url,
    );
    let herald = Herald::serve(dir.path(), &[]);

    // Lower the Alert's threshold to info: the info event now matches.
    let alert = dir.path().join("03-alert.yaml");
    let text = std::fs::read_to_string(&alert)
        .expect("alert")
        .replace("eventSeverity: error", "eventSeverity: info");
    std::fs::write(&alert, text).expect("write");
    // A broken file next to it is reported and does not stop the reload.
    std::fs::write(dir.path().join("99-broken.yaml"), "kind: [unclosed\n").expect("write");
    assert!(
        herald.wait_for_log("99-broken.yaml", WAIT).is_some(),
        "broken file not reported"
    );

    let deadline = std::time::Instant::now() + WAIT;
    let mut delivered = false;
    let mut attempt = 0;
    while !delivered && std::time::Instant::now() < deadline {
        // Vary the message so retries are not taken for duplicates.
        attempt += 1;
        let body = std::fs::read_to_string(event_file("kustomization-info.json"))
            .expect("event")
            .replace("configured", &format!("configured (try {attempt})"));
        assert_eq!(herald.post(body).0, 202);
        delivered = !sink.wait_for(1, Duration::from_millis(300)).is_empty();
    }
    assert!(delivered, "the edited Alert was not reloaded");

    // Reloads every 100 ms rebuild the table; the problem is logged once
    // while it lasts, and once more when it is gone.
    std::thread::sleep(Duration::from_millis(600));
    let reported = |herald: &Herald| {
        herald
            .logs()
            .iter()
            .filter(|l| l.contains("99-broken.yaml") && l.contains("configuration problem\""))
            .count()
    };
    assert_eq!(reported(&herald), 1, "{:#?}", herald.logs());
    std::fs::remove_file(dir.path().join("99-broken.yaml")).expect("remove");
    assert!(
        herald
            .wait_for_log("configuration problem resolved", WAIT)
            .is_some_and(|l| l.contains("99-broken.yaml")),
        "{:#?}",
        herald.logs()
    );
    assert_eq!(reported(&herald), 1);
}

#[test]
fn reloading_does_not_lose_notifications_in_flight() {
    use support::sink::Answer;
    let sink = Sink::start();
    sink.default_answer(Answer::status(200).delay(Duration::from_millis(100)));
    let dir = seed_copy(
        &["02-provider.yaml", "03-alert.yaml", "04-secret.yaml"],
        &sink.url,
    );
    let herald = Herald::serve(dir.path(), &[]);
    let event = std::fs::read_to_string(event_file("kustomization-error.json")).expect("event");
    for n in 0..10 {
        assert_eq!(
            herald
                .post(event.replace("dry-run failed", &format!("dry-run failed {n}")))
                .0,
            202
        );
    }
    // Remove the Alert and the Provider while notifications are queued.
    std::fs::remove_file(dir.path().join("03-alert.yaml")).expect("remove");
    std::fs::remove_file(dir.path().join("02-provider.yaml")).expect("remove");
    assert!(
        herald.wait_for_log("\"alerts\":0", WAIT).is_some(),
        "reload not seen"
    );
    assert_eq!(
        sink.wait_for(10, WAIT).len(),
        10,
        "queued notifications were lost on reload"
    );
    // New events no longer match.
    assert_eq!(
        herald
            .post(event.replace("dry-run failed", "after reload"))
            .0,
        202
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sink.received().len(), 10);
}

/// At debug level the log answers "did herald get my event and what did it
/// do with it": each Alert and Provider it matched, each delivery, each
/// duplicate answered 429, and an event that matched nothing; never a
/// secret.
#[test]
fn the_debug_log_follows_each_event() {
    let sink = Sink::start();
    let dir = seed_copy(&SEED, &sink.url);
    let herald = Herald::serve(dir.path(), &["--log-level=debug"]);
    let error = event_file("kustomization-error.json");
    assert_eq!(herald.post_file(&error), 202);
    assert_eq!(herald.post_file(&error), 429);
    sink.wait_for(3, WAIT);
    let info = std::fs::read_to_string(event_file("kustomization-info.json"))
        .expect("event")
        .replace("my-app-kustomization", "unwatched")
        .replace("\"kind\": \"Kustomization\"", "\"kind\": \"Bucket\"")
        .replace(
            "kustomize.toolkit.fluxcd.io/v1",
            "source.toolkit.fluxcd.io/v1",
        );
    assert_eq!(herald.post(info).0, 202);
    let line = |text: &str| {
        herald
            .wait_for_log(text, WAIT)
            .unwrap_or_else(|| panic!("no {text:?} line: {:#?}", herald.logs()))
    };
    let queued = line("notification queued");
    assert!(
        queued.contains("flux-system/flux-alerts") && queued.contains("flux-system/slack"),
        "{queued}"
    );
    let delivered = line("\"delivered\"");
    assert!(delivered.contains("flux-system/slack"), "{delivered}");
    assert!(line("duplicate event").contains("my-app-kustomization"));
    assert!(line("matched no Alert").contains("unwatched"));
    herald.assert_no_secret_in_logs();
}
