//! Digests (`Alert.spec.digest`, DESIGN §3.14) against real herald
//! processes and local HTTP sinks: the first notification goes out at
//! once, those within the window as one message, a quiet window closes,
//! shutdown sends what is held, and a bad digest loses nothing.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::herald::{Herald, binary, client};
use support::sink::Sink;
use support::{event_file, seed_copy};

const WAIT: Duration = Duration::from_secs(15);

/// The README's digest example, with another window and maxItems.
fn example_alert(window: &str, max_items: u32) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join("examples/digest/alert.yaml"))
        .expect("example")
        .replace("window: 2m", &format!("window: {window}"))
        .replace("maxItems: 20", &format!("maxItems: {max_items}"))
}

/// The seed's Slack Provider and Secret (pointing at `url`) plus `alert`.
fn setup(url: &str, alert: &str) -> tempfile::TempDir {
    let dir = seed_copy(&["02-provider.yaml", "04-secret.yaml"], url);
    std::fs::write(dir.path().join("alert.yaml"), alert).expect("write alert");
    dir
}

/// A Kustomization event about object `name` with its own message.
fn event(name: &str, severity: &str, message: &str) -> String {
    let mut event: Value = serde_json::from_str(
        &std::fs::read_to_string(event_file("kustomization-error.json")).expect("event"),
    )
    .expect("json");
    event["involvedObject"]["name"] = Value::from(name);
    event["severity"] = Value::from(severity);
    event["message"] = Value::from(message);
    event.to_string()
}

#[test]
fn a_burst_is_sent_as_the_first_then_one_digest() {
    // A window far longer than the test: the digest is sent by the
    // shutdown, so how fast the events are posted does not matter.
    let sink = Sink::start();
    let dir = setup(&sink.url, &example_alert("1h", 3));
    let mut herald = Herald::serve(dir.path(), &[]);
    for n in 0..6 {
        let severity = if n == 4 { "error" } else { "info" };
        let (status, _) = herald.post(event(&format!("app-{n}"), severity, &format!("step {n}")));
        assert_eq!(status, 202);
    }
    let received = sink.wait_for(1, WAIT);
    let first = received[0].body.clone();
    assert_eq!(first["attachments"][0]["text"], "step 0");
    assert_eq!(
        first["attachments"][0]["author_name"],
        "kustomization/app-0.flux-system"
    );
    let metrics = client::get(&format!("{}/metrics", herald.metrics)).1;
    let held = "herald_notifications_total{provider_type=\"slack\",result=\"held_for_digest\"} 5";
    assert!(metrics.contains(held), "missing {held} in\n{metrics}");
    assert_eq!(sink.received().len(), 1, "the others are held");
    herald.assert_no_secret_in_logs();

    assert_eq!(herald.terminate(Duration::from_secs(30)), Some(0));
    let received = sink.received();
    assert_eq!(received.len(), 2, "the first, then one digest");
    let digest = received[1].body.clone();
    assert_eq!(
        digest["text"],
        "5 notifications in 1h (3 shown) for Alert flux-system/deploys-digest"
    );
    let attachments = digest["attachments"].as_array().expect("attachments");
    let listed: Vec<(&str, &str, &str)> = attachments
        .iter()
        .map(|a| {
            (
                a["author_name"].as_str().unwrap_or(""),
                a["text"].as_str().unwrap_or(""),
                a["color"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("kustomization/app-1.flux-system", "step 1", "good"),
            ("kustomization/app-2.flux-system", "step 2", "good"),
            ("kustomization/app-3.flux-system", "step 3", "good"),
            ("", "… and 2 more", ""),
        ]
    );
}

#[test]
fn a_window_that_holds_nothing_closes() {
    let sink = Sink::start();
    let dir = setup(&sink.url, &example_alert("1s", 20));
    let herald = Herald::serve(dir.path(), &[]);
    assert_eq!(herald.post(event("app-0", "info", "first")).0, 202);
    assert_eq!(sink.wait_for(1, WAIT).len(), 1);
    // The window ends with nothing held and closes: the next notification
    // is sent at once, in the ordinary format.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(herald.post(event("app-9", "info", "after the calm")).0, 202);
    let received = sink.wait_for(2, WAIT);
    assert_eq!(received.len(), 2);
    let after = received[1].body.clone();
    assert_eq!(after["attachments"][0]["text"], "after the calm");
    assert!(after.get("text").is_none(), "{after}");
    let metrics = client::get(&format!("{}/metrics", herald.metrics)).1;
    assert!(!metrics.contains("held_for_digest"), "{metrics}");
}

#[test]
fn other_providers_get_the_list_as_their_message() {
    let sink = Sink::start();
    // Three events are posted well within 5s; the digest comes when the
    // window ends, while herald runs.
    let alert = example_alert("5s", 20).replace("name: slack", "name: generic");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("alert.yaml"), alert).expect("write");
    std::fs::write(
        dir.path().join("provider.yaml"),
        format!(
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\n\
             metadata: {{name: generic, namespace: flux-system}}\n\
             spec: {{type: generic, address: '{}'}}\n",
            sink.url
        ),
    )
    .expect("write");
    let herald = Herald::serve(dir.path(), &[]);
    for (n, severity) in [(0, "info"), (1, "info"), (2, "error")] {
        assert_eq!(
            herald
                .post(event(&format!("app-{n}"), severity, &format!("step {n}")))
                .0,
            202
        );
    }
    let received = sink.wait_for(2, Duration::from_secs(30));
    assert_eq!(received.len(), 2);
    let digest = received[1].body.clone();
    assert_eq!(
        digest["message"],
        "2 notifications in 5s\n\
         • kustomization/app-1.flux-system [info]: step 1\n\
         • kustomization/app-2.flux-system [error]: step 2"
    );
    // The digest carries the highest severity it holds.
    assert_eq!(digest["severity"], "error");
    assert_eq!(digest["reason"], "Digest");
}

#[test]
fn shutdown_sends_what_an_open_window_holds() {
    let sink = Sink::start();
    let dir = setup(&sink.url, &example_alert("1h", 20));
    let mut herald = Herald::serve(dir.path(), &[]);
    for n in 0..3 {
        assert_eq!(
            herald
                .post(event(&format!("app-{n}"), "info", &format!("step {n}")))
                .0,
            202
        );
    }
    assert_eq!(sink.wait_for(1, WAIT).len(), 1);
    assert_eq!(herald.terminate(Duration::from_secs(30)), Some(0));
    let received = sink.received();
    assert_eq!(received.len(), 2, "the first, and the digest at shutdown");
    let digest = received[1].body.clone();
    assert_eq!(
        digest["text"],
        "2 notifications in 1h for Alert flux-system/deploys-digest"
    );
}

#[test]
fn held_notifications_survive_a_crash_in_the_spool() {
    let sink = Sink::start();
    let dir = setup(&sink.url, &example_alert("1h", 20));
    let spool = tempfile::tempdir().expect("spool");
    let spool_flag = format!("--spool-dir={}", spool.path().display());
    let mut first = Herald::serve(dir.path(), &[&spool_flag]);
    for n in 0..3 {
        assert_eq!(
            first
                .post(event(&format!("app-{n}"), "info", &format!("step {n}")))
                .0,
            202
        );
    }
    assert_eq!(sink.wait_for(1, WAIT).len(), 1);
    std::thread::sleep(Duration::from_millis(300)); // the removal is committed
    first.kill();
    // After the restart the held two go out (the first window of the new
    // process sends the first at once and holds the other).
    let _second = Herald::serve(dir.path(), &[&spool_flag]);
    let received = sink.wait_for(2, WAIT);
    assert_eq!(received.len(), 2);
    let resent = received[1].body.clone();
    assert_eq!(resent["attachments"][0]["text"], "step 1");
}

#[test]
fn a_bad_digest_is_reported_and_every_notification_still_goes_out() {
    let sink = Sink::start();
    let dir = setup(&sink.url, &example_alert("soon", 500));
    let output = Command::new(binary())
        .args(["check", "--manifests"])
        .arg(dir.path())
        .output()
        .expect("check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("Alert flux-system/deploys-digest"),
        "{stdout}"
    );
    assert!(
        stdout.contains("spec.digest.window: invalid duration \"soon\""),
        "{stdout}"
    );
    let dir = setup(&sink.url, &example_alert("2m", 500));
    let output = Command::new(binary())
        .args(["check", "--manifests"])
        .arg(dir.path())
        .output()
        .expect("check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("spec.digest.maxItems: 500 is outside 1..100"),
        "{stdout}"
    );
    let herald = Herald::serve(dir.path(), &[]);
    for n in 0..3 {
        assert_eq!(
            herald
                .post(event(&format!("app-{n}"), "info", &format!("step {n}")))
                .0,
            202
        );
    }
    assert_eq!(sink.wait_for(3, WAIT).len(), 3, "one by one");
}

#[test]
fn the_readme_example_checks_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    for file in [
        "quickstart/provider.yaml",
        "quickstart/secret.yaml",
        "digest/alert.yaml",
    ] {
        let from = root.join("examples").join(file);
        std::fs::copy(&from, dir.path().join(from.file_name().expect("name"))).expect("copy");
    }
    let output = Command::new(binary())
        .args(["check", "--manifests"])
        .arg(dir.path())
        .output()
        .expect("check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
}

/// A digest whose window ends while the global bound is full (its own
/// destination holds every place, so nothing makes room) is not dropped:
/// it stays held and goes out once there is room — and no log blames the
/// destination's own queue, which was not full.
#[test]
fn a_digest_ending_on_a_full_queue_waits_for_room() {
    let sink = Sink::start();
    sink.default_answer(
        support::sink::Answer::status(200)
            .body("ok")
            .delay(Duration::from_millis(1500)),
    );
    let plain = r#"---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: sources, namespace: flux-system}
spec:
  providerRef: {name: slack}
  eventSeverity: info
  eventSources: [{kind: GitRepository, name: "*"}]
"#;
    let dir = setup(&sink.url, &(example_alert("1s", 10) + plain));
    let herald = Herald::serve(dir.path(), &["--queue-capacity=3"]);
    // The first of the window goes out at once (and takes 1.5 s)...
    assert_eq!(herald.post(event("app-0", "info", "step 0")).0, 202);
    // ...these are held for the digest...
    for n in 1..=2 {
        assert_eq!(
            herald
                .post(event(&format!("app-{n}"), "info", &format!("step {n}")))
                .0,
            202
        );
    }
    // ...and two plain notifications take the other places, so the window
    // ends on a full queue.
    for n in 1..=2 {
        let mut source: Value =
            serde_json::from_str(&event("repo", "info", &format!("source {n}"))).expect("json");
        source["involvedObject"]["kind"] = Value::from("GitRepository");
        assert_eq!(herald.post(source.to_string()).0, 202);
    }
    let received = sink.wait_for(4, Duration::from_secs(20));
    let bodies: Vec<String> = received.iter().map(|r| r.body.to_string()).collect();
    assert!(
        bodies
            .iter()
            .any(|b| b.contains("step 1") && b.contains("step 2")),
        "the digest never went out: {bodies:#?}\n{:#?}",
        herald.logs()
    );
    assert!(
        !herald
            .logs()
            .iter()
            .any(|l| l.contains("the destination's queue is full")),
        "{:#?}",
        herald.logs()
    );
}
