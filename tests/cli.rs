//! `herald route` and `herald check` on real manifest directories.

mod support;

use std::process::Command;
use std::time::Duration;

use support::herald::{Herald, binary};
use support::sink::Sink;
use support::{SEED, event_file, fixtures, seed_copy};

fn run(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(binary())
        .args(args)
        .output()
        .expect("run herald");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn route_prints_what_serve_sends_and_sends_nothing() {
    let sink = Sink::start();
    let dir = seed_copy(&SEED, &sink.url);
    let manifests = dir.path().to_str().expect("utf-8 path");
    let error = event_file("kustomization-error.json");
    let (code, stdout, stderr) = run(&[
        "route",
        "--manifests",
        manifests,
        error.to_str().expect("path"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 3);
    for line in &lines {
        assert_eq!(
            line["event"],
            "Kustomization/flux-system/my-app-kustomization"
        );
        assert_eq!(line["provider"], "flux-system/slack");
        assert_eq!(line["type"], "slack");
        let address = line["address"].as_str().expect("address");
        assert!(
            address.starts_with("http://127.0.0.1:") && address.ends_with("/***"),
            "{address}"
        );
    }
    let alerts: Vec<_> = lines
        .iter()
        .map(|l| l["alert"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        alerts,
        [
            "flux-system/flux-alerts",
            "flux-system/devops-errors",
            "flux-system/gitops-updates"
        ]
    );
    assert!(!stdout.contains("secret-webhook-path") && !stderr.contains("secret-webhook-path"));
    std::thread::sleep(Duration::from_millis(200));
    assert!(sink.received().is_empty(), "route must not send");

    // The same payloads are what `serve` delivers.
    let herald = Herald::serve(dir.path(), &[]);
    assert_eq!(herald.post_file(&error), 202);
    let mut delivered: Vec<serde_json::Value> = sink
        .wait_for(3, Duration::from_secs(10))
        .into_iter()
        .map(|r| r.body)
        .collect();
    let mut printed: Vec<serde_json::Value> = lines.iter().map(|l| l["payload"].clone()).collect();
    let key = |v: &serde_json::Value| v.to_string();
    delivered.sort_by_key(key);
    printed.sort_by_key(key);
    assert_eq!(delivered, printed);
}

/// `--cluster-name` (DESIGN: off by default) puts the cluster's name in
/// every notification's metadata as `cluster`, so every provider shows it
/// and templates read it; an Alert's own `eventMetadata.cluster` wins;
/// `serve` delivers what `route` prints.
#[test]
fn the_cluster_name_is_in_every_notification() {
    let sink = Sink::start();
    let dir = seed_copy(&SEED, &sink.url);
    let manifests = dir.path().to_str().expect("utf-8 path");
    let error = event_file("kustomization-error.json");
    let fields_of = |line: &serde_json::Value| -> Vec<(String, String)> {
        line["payload"]["attachments"][0]["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .map(|f| {
                (
                    f["title"].as_str().unwrap_or_default().to_owned(),
                    f["value"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let (code, stdout, stderr) = run(&[
        "route",
        "--manifests",
        manifests,
        error.to_str().expect("path"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains("\"cluster\""), "off by default: {stdout}");
    let (code, stdout, stderr) = run(&[
        "route",
        "--cluster-name=prod-eu-1",
        "--manifests",
        manifests,
        error.to_str().expect("path"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for line in &lines {
        assert!(
            fields_of(line).contains(&("cluster".to_owned(), "prod-eu-1".to_owned())),
            "{line}"
        );
    }
    // An Alert's own eventMetadata.cluster wins.
    let own = dir.path().join("03-alert.yaml");
    let text = std::fs::read_to_string(&own).expect("alert");
    assert!(text.contains("spec:\n"), "{text}");
    std::fs::write(
        &own,
        text.replacen("spec:\n", "spec:\n  eventMetadata: {cluster: staging}\n", 1),
    )
    .expect("write alert");
    let (code, stdout, stderr) = run(&[
        "route",
        "--cluster-name=prod-eu-1",
        "--manifests",
        manifests,
        error.to_str().expect("path"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let flux_alerts = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON"))
        .find(|l| l["alert"] == "flux-system/flux-alerts")
        .expect("flux-alerts");
    assert!(
        fields_of(&flux_alerts).contains(&("cluster".to_owned(), "staging".to_owned())),
        "{flux_alerts}"
    );

    let herald = Herald::serve(dir.path(), &["--cluster-name=prod-eu-1"]);
    assert_eq!(herald.post_file(&error), 202);
    let delivered = sink.wait_for(3, Duration::from_secs(10));
    assert!(
        delivered
            .iter()
            .all(|r| r.body.to_string().contains("prod-eu-1")
                || r.body.to_string().contains("staging")),
        "{delivered:#?}"
    );
}

#[test]
fn route_prints_nothing_when_nothing_matches() {
    let dir = seed_copy(
        &["02-provider.yaml", "03-alert.yaml", "04-secret.yaml"],
        "https://hooks.example.com/x",
    );
    let info = event_file("kustomization-info.json");
    let (code, stdout, _) = run(&[
        "route",
        "--manifests",
        dir.path().to_str().expect("path"),
        info.to_str().expect("path"),
    ]);
    assert_eq!(code, 0);
    assert_eq!(stdout, "");
    // With Flux's default severity for Alerts without one, still nothing: 03-alert says error.
    let git = event_file("gitrepository-info.json");
    let (code, stdout, _) = run(&[
        "route",
        "--manifests",
        dir.path().to_str().expect("path"),
        git.to_str().expect("path"),
    ]);
    assert_eq!((code, stdout.as_str()), (0, ""));
}

#[test]
fn route_reports_unreadable_event_files() {
    let dir = seed_copy(&SEED, "https://hooks.example.com/x");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{not json").expect("write");
    let (code, _, stderr) = run(&[
        "route",
        "--manifests",
        dir.path().to_str().expect("path"),
        bad.to_str().expect("path"),
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("bad.json") && stderr.contains("invalid event JSON"),
        "{stderr}"
    );
}

#[test]
fn check_passes_the_seed_fixtures_unchanged() {
    let seed = fixtures().join("seed");
    let (code, stdout, stderr) = run(&["check", "--manifests", seed.to_str().expect("path")]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout, "");
    assert!(stderr.contains("check passed"), "{stderr}");
}

const BROKEN: &str = r#"
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: bad-regex, namespace: flux-system}
spec:
  providerRef: {name: slack}
  eventSources: [{kind: Kustomization, name: "*"}]
  inclusionList: ["(unclosed"]
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: pigeon, namespace: flux-system}
spec: {type: carrier-pigeon, address: "https://example.com"}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: no-secret, namespace: flux-system}
spec: {type: slack, secretRef: {name: does-not-exist}}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: empty-secret, namespace: flux-system}
spec: {type: slack, secretRef: {name: empty}}
---
apiVersion: v1
kind: Secret
metadata: {name: empty, namespace: flux-system}
stringData: {username: bot}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: ftp, namespace: flux-system}
spec: {type: slack, address: "ftp://files.example.com/hook-secret"}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: orphan, namespace: flux-system}
spec:
  providerRef: {name: nobody}
  eventSources: [{kind: Kustomization, name: "*"}]
"#;

#[test]
fn check_reports_each_problem_on_one_line_with_file_and_object() {
    let dir = seed_copy(&SEED, "https://hooks.example.com/x");
    std::fs::write(dir.path().join("broken.yaml"), BROKEN).expect("write");
    let (code, stdout, stderr) = run(&["check", "--manifests", dir.path().to_str().expect("path")]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let expect = [
        ("document 1", "Provider flux-system/pigeon", "spec.type"),
        (
            "document 2",
            "Provider flux-system/no-secret",
            "SecretNotFound",
        ),
        (
            "document 3",
            "Provider flux-system/empty-secret",
            "neither 'address' nor 'url'",
        ),
        (
            "document 5",
            "Provider flux-system/ftp",
            "not an http(s) URL",
        ),
        (
            "document 0",
            "Alert flux-system/bad-regex",
            "spec.inclusionList[0]",
        ),
        ("document 6", "Alert flux-system/orphan", "ProviderNotFound"),
    ];
    assert_eq!(lines.len(), expect.len(), "{stdout}");
    for (document, object, what) in expect {
        let line = lines
            .iter()
            .find(|l| l.contains(object))
            .unwrap_or_else(|| panic!("no line for {object} in\n{stdout}"));
        assert!(
            line.contains("broken.yaml") && line.contains(document),
            "{line}"
        );
        assert!(line.contains(what), "{line}");
    }
    assert!(!stdout.contains("hook-secret"), "address leaked:\n{stdout}");
}

#[test]
fn crds_prints_the_committed_crds() {
    let (code, stdout, _) = run(&["crds"]);
    assert_eq!(code, 0);
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/crds.yaml"))
        .expect("crds/crds.yaml");
    assert!(
        stdout == committed,
        "crds/crds.yaml is stale: run `cargo run -- crds > crds/crds.yaml`"
    );
}

#[test]
fn help_lists_every_command_and_flag() {
    let (code, stdout, _) = run(&["serve", "--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--manifests",
        "--events-addr",
        "--metrics-addr",
        "--health-addr",
        "--rate-limit-interval",
        "--default-event-severity",
        "--no-cross-namespace-refs",
        "--max-delivery-age",
        "--shutdown-timeout",
        "--queue-capacity",
    ] {
        assert!(stdout.contains(flag), "serve --help lacks {flag}");
    }
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for command in ["serve", "route", "check", "crds"] {
        assert!(stdout.contains(command));
    }
}

#[test]
fn the_readme_quickstart_works_on_examples() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let quickstart = root.join("examples/quickstart");
    let (code, _, stderr) = run(&["check", "--manifests", quickstart.to_str().expect("path")]);
    assert_eq!(code, 0, "{stderr}");
    let event = root.join("examples/events/kustomization-error.json");
    let (code, stdout, _) = run(&[
        "route",
        "--manifests",
        quickstart.to_str().expect("path"),
        event.to_str().expect("path"),
    ]);
    assert_eq!(code, 0);
    // As the README says: two notifications, flux-alerts' first.
    let alerts: Vec<String> = stdout
        .lines()
        .map(|l| {
            let line: serde_json::Value = serde_json::from_str(l).expect("json");
            line["alert"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(
        alerts,
        ["flux-system/flux-alerts", "flux-system/devops-errors"],
        "{stdout}"
    );
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    assert!(readme.contains("two for this error"), "the README's count");
    let first: serde_json::Value =
        serde_json::from_str(stdout.lines().next().expect("a notification")).expect("json");
    assert_eq!(first["address"], "https://hooks.slack.com/***");
    assert_eq!(first["payload"]["attachments"][0]["color"], "danger");
    assert!(
        !stdout.contains("REPLACE"),
        "the webhook placeholder must be masked"
    );
}

#[test]
fn route_survives_a_closed_stdout() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(binary())
        .args(["route", "--manifests"])
        .arg(root.join("examples/quickstart"))
        .args(
            std::fs::read_dir(root.join("examples/events"))
                .expect("events")
                .map(|e| e.expect("entry").path()),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The README's `route --explain` example, run as written: its output is
/// the README's, line for line.
#[test]
fn explain_prints_the_readme_example() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let section = readme
        .split("#### Why didn't my Alert fire?")
        .nth(1)
        .expect("explain section");
    let mut blocks = section.split("```").skip(1).step_by(2);
    let command = blocks.next().expect("command block");
    let expected = blocks.next().expect("output block");
    let args: Vec<&str> = command
        .trim_start_matches("sh")
        .split_whitespace()
        .filter(|w| *w != "\\" && *w != "herald")
        .collect();
    assert_eq!(args[..2], ["route", "--explain"], "{command}");
    let output = Command::new(binary())
        .args(&args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run herald");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        expected.trim(),
        "the README's example output is stale"
    );
    let json = Command::new(binary())
        .args(["route", "--explain", "--output", "json"])
        .args(&args[2..])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run herald");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&json.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[2]["alert"], "flux-system/gitops-updates");
    assert_eq!(lines[2]["matched"], true);
    assert_eq!(lines[0]["rule"], "severity");
}

/// A feature gate Flux does not know stops the controller before it
/// touches the cluster, naming the gate (a typo must not leave a gate off).
#[test]
fn controller_refuses_an_unknown_feature_gate_naming_it() {
    let (code, _, stderr) = run(&[
        "controller",
        "--feature-gates=ObjectLevelWorkloadIdentity=true,ObjectLevelWorkloadIdentiy=true",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("--feature-gates")
            && stderr.contains("feature gate 'ObjectLevelWorkloadIdentiy' is not supported"),
        "{stderr}"
    );
}

/// Runs herald and waits at most `limit` for it to exit (killed after).
fn run_briefly(args: &[&str], limit: Duration) -> (Option<i32>, String) {
    let mut child = Command::new(binary())
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run herald");
    let deadline = std::time::Instant::now() + limit;
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    use std::io::Read;
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr);
    (code, stderr)
}

/// Start-up and flag errors exit at once, naming the flag and the value:
/// an unreadable manifest directory, an address without a port, a port in
/// use, an unreadable kubeconfig. A boolean flag never takes the next
/// argument as its value (`--no-cross-namespace-refs EVENT.json`).
#[test]
fn start_up_and_flag_errors_name_the_flag_and_value() {
    let seed = fixtures().join("seed");
    let seed = seed.to_str().expect("path");
    let limit = Duration::from_secs(20);

    let (code, stderr) = run_briefly(&["serve", "--manifests", "/nonexistent/manifests"], limit);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("--manifests /nonexistent/manifests: cannot read it"),
        "{stderr}"
    );

    let (code, stderr) = run_briefly(
        &["serve", "--manifests", seed, "--events-addr", "9090"],
        limit,
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--events-addr") && stderr.contains("expected HOST:PORT or :PORT"),
        "{stderr}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    let events = format!("--events-addr={address}");
    let (code, stderr) = run_briefly(
        &[
            "serve",
            "--manifests",
            seed,
            &events,
            "--metrics-addr=127.0.0.1:0",
            "--health-addr=127.0.0.1:0",
        ],
        limit,
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on --events-addr {address}")),
        "{stderr}"
    );
    drop(taken);

    let (code, stderr) = run_briefly(
        &[
            "controller",
            "--kubeconfig=/nonexistent/kubeconfig",
            "--events-addr=127.0.0.1:0",
            "--metrics-addr=127.0.0.1:0",
            "--health-addr=127.0.0.1:0",
            "--receiverAddr=127.0.0.1:0",
        ],
        limit,
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        stderr.matches("/nonexistent/kubeconfig").count(),
        1,
        "the path once: {stderr}"
    );

    let error = event_file("kustomization-error.json");
    let (code, stdout, stderr) = run(&[
        "route",
        "--manifests",
        seed,
        "--no-cross-namespace-refs",
        error.to_str().expect("path"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
}

const MISSPELT: &str = r#"
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: misspelt, namespace: flux-system}
spec:
  providerRef: {name: slack}
  eventSources: [{kind: Kustomization, name: "*", nmae: x}]
  eventSource: [{kind: HelmRelease, name: "*"}]
  exclusionlist: ["dry-run"]
  suspended: true
---
apiVersion: notification.toolkit.fluxcd.io/v9
kind: Alert
metadata: {name: future, namespace: flux-system}
spec: {providerRef: {name: slack}, eventSources: [{kind: Kustomization, name: "*"}]}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alrt
metadata: {name: kind-typo, namespace: flux-system}
spec: {}
---
apiVersion: v1
kind: Secret
metadata: {name: other, namespace: flux-system}
strinData: {address: "https://hooks.example.com/secret-path"}
"#;

/// A misspelt field is a filter silently not applied: `check`, `route`
/// and `serve` warn on each (file, document, object, field, the closest
/// known name), and an apiVersion or kind herald does not serve is an error.
#[test]
fn misspelt_fields_are_warned_about_with_the_closest_name() {
    let sink = Sink::start();
    let dir = seed_copy(&SEED, &sink.url);
    std::fs::write(dir.path().join("misspelt.yaml"), MISSPELT).expect("write");
    let manifests = dir.path().to_str().expect("utf-8 path");
    let expected = [
        "misspelt.yaml (document 0): warning: Alert flux-system/misspelt: spec.exclusionlist: unknown field, ignored (did you mean exclusionList?)",
        "misspelt.yaml (document 0): warning: Alert flux-system/misspelt: spec.suspended: unknown field, ignored (did you mean suspend?)",
        "misspelt.yaml (document 0): warning: Alert flux-system/misspelt: spec.eventSource: unknown field, ignored (did you mean eventSources?)",
        "misspelt.yaml (document 0): warning: Alert flux-system/misspelt: spec.eventSources[0].nmae: unknown field, ignored (did you mean name?)",
        "misspelt.yaml (document 3): warning: Secret flux-system/other: strinData: unknown field, ignored (did you mean stringData?)",
        "misspelt.yaml (document 1): error: Alert flux-system/future: apiVersion: notification.toolkit.fluxcd.io/v9 is not served",
        "misspelt.yaml (document 2): error: Alrt flux-system/kind-typo: kind: \"Alrt\" is not a kind of notification.toolkit.fluxcd.io",
    ];
    let (code, stdout, stderr) = run(&["check", "--manifests", manifests]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let output = format!("{stdout}{stderr}");
    for line in expected {
        assert!(output.contains(line), "missing {line:?} in:\n{output}");
    }
    assert!(!output.contains("secret-path"), "{output}");

    let error = event_file("kustomization-error.json");
    let (code, _, stderr) = run(&[
        "route",
        "--manifests",
        manifests,
        error.to_str().expect("path"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains(expected[0]), "{stderr}");

    let herald = Herald::serve(dir.path(), &[]);
    assert!(
        herald
            .wait_for_log("spec.exclusionlist: unknown field", Duration::from_secs(10))
            .is_some(),
        "{:#?}",
        herald.logs()
    );
}

const RECEIVERS: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: hook-token, namespace: flux-system}
stringData: {token: a-token}
---
apiVersion: v1
kind: Secret
metadata: {name: no-token, namespace: flux-system}
stringData: {tokn: a-token}
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata: {name: good, namespace: flux-system}
spec:
  type: github
  events: [push]
  secretRef: {name: hook-token}
  resources: [{kind: GitRepository, name: app}]
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata: {name: bad-cel, namespace: flux-system}
spec:
  type: generic
  secretRef: {name: hook-token}
  resourceFilter: res.metadata.name
  resources: [{kind: GitRepository, name: app}]
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata: {name: no-secret, namespace: flux-system}
spec:
  type: generic
  secretRef: {name: missing}
  resources: [{kind: GitRepository, name: app}]
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata: {name: no-key, namespace: flux-system}
spec:
  type: generic
  secretRef: {name: no-token}
  resources: [{kind: GitRepository, name: app}]
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata: {name: bad-kind, namespace: flux-system}
spec:
  type: generic
  events: [push]
  secretRef: {name: hook-token}
  resources: [{kind: GitRepo, name: app}]
"#;

/// `herald check` validates Receivers as the controller reads them: the
/// Secret and its `token` key, CEL, the resource kinds Flux allows, and
/// `spec.events` on a type that ignores it.
#[test]
fn check_validates_receivers() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("receivers.yaml"), RECEIVERS).expect("write");
    let manifests = dir.path().to_str().expect("utf-8 path");
    let (code, stdout, stderr) = run(&["check", "--manifests", manifests]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let expected = [
        "Receiver flux-system/bad-cel: Reconciliation failed terminally due to configuration error",
        "(InvalidCELExpression)",
        "Receiver flux-system/no-secret: unable to read token from secret 'flux-system/missing'",
        "Receiver flux-system/no-key: invalid 'flux-system/no-token' secret data: required fields 'token' (TokenNotFound)",
        "Receiver flux-system/bad-kind: spec.resources[0].kind: 'GitRepo' is not a kind a Receiver can reconcile",
        "warning: Receiver flux-system/bad-kind: spec.events: type generic does not name its events",
        "5 receivers",
    ];
    let output = format!("{stdout}{stderr}");
    for line in expected {
        assert!(output.contains(line), "missing {line:?} in:\n{output}");
    }
    assert!(!output.contains("flux-system/good"), "{output}");
    assert!(!output.contains("a-token"), "{output}");
}

const EVENT_V1_SETUP: &str = r#"
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Provider
metadata: {name: hook, namespace: flux-system}
spec: {type: generic, address: "https://hooks.example.com/flux"}
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Alert
metadata: {name: forwarded, namespace: flux-system}
spec:
  providerRef: {name: hook}
  eventSources: [{kind: Kustomization, name: "*"}]
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Provider
metadata: {name: chat, namespace: flux-system}
spec: {type: slack, address: "https://hooks.slack.com/services/T0/B0/X"}
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Alert
metadata: {name: templated, namespace: flux-system}
spec:
  providerRef: {name: chat}
  eventSources: [{kind: Kustomization, name: "*"}]
  template:
    text: "{{ action }} {{ related_object.kind }}/{{ related_object.name }}: {{ message }}"
"#;

/// Flux's event API v1: `action` and `relatedObject` are kept, forwarded
/// in the generic provider's body, and offered to templates; a v1beta1
/// event (no action) is forwarded exactly as before.
#[test]
fn event_api_v1_action_and_related_object_are_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("setup.yaml"), EVENT_V1_SETUP).expect("write");
    let mut event: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(event_file("kustomization-error.json")).expect("event"),
    )
    .expect("json");
    event["action"] = "Syncing".into();
    event["relatedObject"] = serde_json::json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "name": "app-source", "namespace": "flux-system"
    });
    let v1 = dir.path().join("v1.json");
    std::fs::write(&v1, event.to_string()).expect("event");
    let manifests = dir.path().to_str().expect("utf-8 path");
    let (code, stdout, stderr) = run(&[
        "route",
        "--manifests",
        manifests,
        v1.to_str().expect("path"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("line"))
        .collect();
    let line = |alert: &str| {
        lines
            .iter()
            .find(|l| l["alert"] == alert)
            .unwrap_or_else(|| panic!("no {alert}: {stdout}"))
    };
    let forwarded = &line("flux-system/forwarded")["payload"];
    assert_eq!(forwarded["action"], "Syncing", "{forwarded}");
    assert_eq!(
        forwarded["relatedObject"]["name"], "app-source",
        "{forwarded}"
    );
    let text = &line("flux-system/templated")["payload"]["attachments"][0]["text"];
    assert!(
        text.as_str()
            .unwrap_or_default()
            .starts_with("Syncing GitRepository/app-source: "),
        "{text}"
    );

    let v1beta1 = event_file("kustomization-error.json");
    let (code, stdout, stderr) = run(&[
        "route",
        "--manifests",
        manifests,
        v1beta1.to_str().expect("path"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let forwarded = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("line"))
        .find(|l| l["alert"] == "flux-system/forwarded")
        .expect("forwarded");
    assert!(forwarded["payload"].get("action").is_none(), "{forwarded}");
    assert!(
        forwarded["payload"].get("relatedObject").is_none(),
        "{forwarded}"
    );
}

/// `check --flux-compatible` lists what Flux's own controller would refuse
/// or read differently (what to fix before going back to Flux); a Flux 2.10
/// manifest passes.
#[test]
fn check_flux_compatible_lists_what_flux_would_refuse() {
    let quickstart = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart");
    let (code, stdout, stderr) = run(&["check", "--manifests", quickstart, "--flux-compatible"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    for expected in [
        "alert.yaml (document 0): error: Alert flux-system/flux-alerts: apiVersion: notification.toolkit.fluxcd.io/v1beta1: Flux 2.9 serves Alert at v1beta3 only",
        "secret.yaml (document 0): error: Secret flux-system/slack-url: the Provider's address is in the 'url' key: Flux reads only 'address'",
        "Alert flux-system/devops-errors: spec.channel is herald's",
        "Alert flux-system/devops-errors: spec.eventSeverity: a list is herald's",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    // Without the flag, the same directory passes.
    assert_eq!(run(&["check", "--manifests", quickstart]).0, 0);

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("flux.yaml"),
        r#"
apiVersion: v1
kind: Secret
metadata: {name: slack-url, namespace: flux-system}
stringData: {address: "https://hooks.slack.com/services/T0/B0/X"}
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Provider
metadata: {name: slack, namespace: flux-system}
spec: {type: slack, secretRef: {name: slack-url}}
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Alert
metadata: {name: errors, namespace: flux-system}
spec:
  providerRef: {name: slack}
  eventSeverity: error
  eventSources: [{kind: Kustomization, name: "*"}]
"#,
    )
    .expect("write");
    let manifests = dir.path().to_str().expect("path");
    let (code, stdout, stderr) = run(&["check", "--manifests", manifests, "--flux-compatible"]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(!stdout.contains("FluxIncompatible"), "{stdout}");
}

/// herald's duration parser against Go's own `time.ParseDuration` (run by
/// the test harness, built from Go's standard library): the same inputs
/// accepted with the same nanoseconds, the same refused — except negative
/// durations, which herald refuses on purpose.
#[test]
fn durations_parse_as_go_parses_them() {
    let inputs = [
        "0",
        "-0",
        "+0",
        "",
        "5",
        "5s",
        "+5s",
        "-5s",
        "1h30m",
        "1.5s",
        "1.s",
        ".5s",
        ".s",
        "1..2s",
        "500ms",
        "3.7ms",
        "1h1m1s1ms1us1ns",
        "1µs",
        "1μs",
        "1us",
        "0.5h",
        "1.23456789012h",
        "0.3333333333333333333h",
        "0.00000000001s",
        "1.0000000000000000000001s",
        "2562047h47m16.854775807s",
        "2562047h47m16.854775808s",
        "9223372036854775807ns",
        "9223372036854775808ns",
        "2562047h",
        "2562048h",
        "100000000000000000000h",
        "99999999999999999999999s",
        "1e3s",
        "1.5.5s",
        "5x",
        "m",
        "1h-1m",
        "12345678901234567890ns",
        "0.1ns",
        "1.9ns",
        "4.000000000000000000000000000001ns",
    ];
    let mut child = Command::new(support::kubeapi::harness_binary())
        .arg("durations")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run the harness");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        for input in inputs {
            writeln!(stdin, "{input}").expect("write");
        }
    }
    let output = child.wait_with_output().expect("harness");
    assert!(output.status.success());
    let table = String::from_utf8(output.stdout).expect("utf-8");
    let answers: Vec<&str> = table.lines().collect();
    assert_eq!(answers.len(), inputs.len(), "{table}");
    for (input, go) in inputs.iter().zip(answers) {
        let ours = herald::duration::parse(input);
        match go.strip_prefix("ok ") {
            Some(nanos) => {
                let nanos: i64 = nanos.parse().expect("nanoseconds");
                if nanos < 0 || (nanos == 0 && input.starts_with('-')) {
                    assert!(
                        ours.is_err() || ours == Ok(Duration::ZERO),
                        "{input:?}: Go {nanos}, herald {ours:?}"
                    );
                } else {
                    assert_eq!(
                        ours,
                        Ok(Duration::from_nanos(nanos as u64)),
                        "{input:?}: Go says {nanos} ns"
                    );
                }
            }
            None => assert!(
                ours.is_err(),
                "{input:?}: Go refuses it, herald gives {ours:?}"
            ),
        }
    }
}

/// `herald --help` says what herald is today: every provider type, the
/// `controller` command, and `--log-encoding`'s default.
#[test]
fn help_says_what_herald_does_now() {
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(!stdout.contains("Slack today"), "{stdout}");
    assert!(stdout.contains("every provider type Flux has"), "{stdout}");
    assert!(stdout.contains("(`controller`)"), "{stdout}");
    let (_, stdout, _) = run(&["serve", "--help"]);
    assert!(
        stdout.contains("[default: json for `controller`, console for the other commands]"),
        "{stdout}"
    );
}

/// An object that exists but is wrong is never "not found": an Alert whose
/// Provider has an unknown type says the Provider is not ready and why, a
/// Provider whose Secret is not base64 says the Secret cannot be read, and
/// `route --explain` names the cause too.
#[test]
fn broken_references_say_what_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("objects.yaml"),
        r#"apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: typo, namespace: flux-system}
spec: {type: slak}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: uses-typo, namespace: flux-system}
spec:
  providerRef: {name: typo}
  eventSeverity: info
  eventSources: [{kind: Kustomization, name: "*"}]
---
apiVersion: v1
kind: Secret
metadata: {name: bad-data, namespace: flux-system}
data: {address: "not base64!!"}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: slack, namespace: flux-system}
spec: {type: slack, secretRef: {name: bad-data}}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: uses-slack, namespace: flux-system}
spec:
  providerRef: {name: slack}
  eventSeverity: info
  eventSources: [{kind: Kustomization, name: "*"}]
"#,
    )
    .expect("write");
    let manifests = dir.path().to_str().expect("path");
    let (code, stdout, stderr) = run(&["check", "--manifests", manifests]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(!stdout.contains("not found"), "{stdout}");
    assert!(
        stdout.contains("Provider flux-system/slack: spec.secretRef: secret flux-system/bad-data cannot be read: data.address")
            && stdout.contains("(InvalidSecret)"),
        "{stdout}"
    );
    let event = event_file("kustomization-error.json");
    let (_, stdout, _) = run(&[
        "route",
        "--explain",
        "--manifests",
        manifests,
        event.to_str().expect("path"),
    ]);
    assert!(
        stdout.contains("provider flux-system/typo is not ready: cannot be read")
            || stdout.contains("provider flux-system/typo is not ready: spec.type"),
        "{stdout}"
    );
    assert!(stdout.contains("spec.type"), "{stdout}");
    assert!(
        stdout.contains("provider flux-system/slack is not ready: spec.secretRef: secret flux-system/bad-data cannot be read"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("not base64!!"),
        "a Secret value was quoted: {stdout}"
    );
}

/// `route` and `route --explain` agree on an event given twice: the
/// second is a duplicate (as `serve` answers 429), unless
/// `--rate-limit-interval=0`.
#[test]
fn route_and_explain_agree_on_a_repeated_event() {
    let sink = Sink::start();
    let dir = seed_copy(&SEED, &sink.url);
    let manifests = dir.path().to_str().expect("utf-8 path");
    let error = event_file("kustomization-error.json");
    let error = error.to_str().expect("path");
    let (code, stdout, stderr) = run(&["route", "--manifests", manifests, error, error]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    assert!(stderr.contains("duplicate"), "{stderr}");
    let (_, explained, _) = run(&["route", "--explain", "--manifests", manifests, error, error]);
    let matched = explained.matches("matched: sent to").count();
    assert_eq!(matched, 3, "{explained}");
    let (_, stdout, _) = run(&[
        "route",
        "--rate-limit-interval=0",
        "--manifests",
        manifests,
        error,
        error,
    ]);
    assert_eq!(stdout.lines().count(), 6, "{stdout}");
}
