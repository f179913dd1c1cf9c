//! One test per routing rule (DESIGN §3.2–§3.5), on manifests parsed by the
//! real manifest loader.

use super::*;
use crate::api::Reason;
use crate::api::Severity;
use crate::source::{Level, Problem, manifests};

const PROVIDER: &str = "
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: slack, namespace: flux-system}
spec: {type: slack, address: 'https://hooks.example.com/services/x'}
";

fn alert(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
         metadata: {{name: {name}, namespace: flux-system}}\nspec:\n  providerRef: {{name: slack}}\n{spec}\n"
    )
}

fn table_with(manifests: &str, options: &TableOptions) -> (RoutingTable, Vec<Problem>) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("m.yaml"), manifests).expect("write");
    let (snapshot, mut problems) = manifests::load(dir.path());
    let (table, more) = build(&snapshot, options);
    problems.extend(more);
    (table, problems)
}

fn table(manifests: &str) -> RoutingTable {
    let (table, problems) = table_with(manifests, &TableOptions::default());
    let problems: Vec<_> = problems
        .into_iter()
        .filter(|p| p.level != Level::Note)
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
    table
}

fn event(kind: &str, namespace: &str, name: &str, severity: Severity, message: &str) -> FluxEvent {
    let mut event = crate::api::event::sample(kind, name, severity, message, &[]);
    event.involved_object.namespace = namespace.into();
    event
}

fn matched(table: &RoutingTable, event: &FluxEvent) -> Vec<String> {
    table
        .route(event)
        .iter()
        .map(|a| a.key.name.clone())
        .collect()
}

fn ks(name: &str, severity: Severity) -> FluxEvent {
    event("Kustomization", "flux-system", name, severity, "msg")
}

#[test]
fn wildcard_matches_every_name_of_the_kind() {
    let t = table(&format!(
        "{PROVIDER}{}",
        alert("a", "  eventSources: [{kind: Kustomization, name: '*'}]")
    ));
    assert_eq!(matched(&t, &ks("one", Severity::Error)), ["a"]);
    assert_eq!(matched(&t, &ks("two", Severity::Error)), ["a"]);
    let helm = event("HelmRelease", "flux-system", "one", Severity::Error, "m");
    assert!(matched(&t, &helm).is_empty());
}

#[test]
fn exact_name_matches_only_that_object() {
    let t = table(&format!(
        "{PROVIDER}{}",
        alert("a", "  eventSources: [{kind: Kustomization, name: apps}]")
    ));
    assert_eq!(matched(&t, &ks("apps", Severity::Error)), ["a"]);
    assert!(matched(&t, &ks("infra", Severity::Error)).is_empty());
}

#[test]
fn source_namespace_defaults_to_the_alerts_and_may_be_another() {
    let t = table(&format!(
        "{PROVIDER}{}{}",
        alert(
            "local",
            "  eventSources: [{kind: Kustomization, name: '*'}]"
        ),
        alert(
            "remote",
            "  eventSources: [{kind: Kustomization, name: '*', namespace: apps}]"
        ),
    ));
    assert_eq!(matched(&t, &ks("x", Severity::Error)), ["local"]);
    let in_apps = event("Kustomization", "apps", "x", Severity::Error, "m");
    assert_eq!(matched(&t, &in_apps), ["remote"]);
    let elsewhere = event("Kustomization", "other", "x", Severity::Error, "m");
    assert!(matched(&t, &elsewhere).is_empty());
}

#[test]
fn no_cross_namespace_refs_blocks_other_namespaces() {
    let options = TableOptions {
        no_cross_namespace_refs: true,
        ..Default::default()
    };
    let (t, problems) = table_with(
        &format!(
            "{PROVIDER}{}",
            alert(
                "a",
                "  eventSources: [{kind: Kustomization, name: '*'}, {kind: Kustomization, name: '*', namespace: apps}]"
            )
        ),
        &options,
    );
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].reason, Reason::AccessDenied);
    assert!(
        problems[0]
            .message
            .contains("spec.eventSources[1].namespace")
    );
    assert_eq!(matched(&t, &ks("x", Severity::Error)), ["a"]);
    assert!(
        matched(
            &t,
            &event("Kustomization", "apps", "x", Severity::Error, "m")
        )
        .is_empty()
    );
}

#[test]
fn severity_string_list_and_absent() {
    let manifests = format!(
        "{PROVIDER}{}{}{}",
        alert(
            "threshold",
            "  eventSeverity: info\n  eventSources: [{kind: Kustomization, name: '*'}]"
        ),
        alert(
            "list",
            "  eventSeverity: [warn, error]\n  eventSources: [{kind: Kustomization, name: '*'}]"
        ),
        alert(
            "absent",
            "  eventSources: [{kind: Kustomization, name: '*'}]"
        ),
    );
    let t = table(&manifests);
    assert_eq!(
        matched(&t, &ks("x", Severity::Error)),
        ["threshold", "list", "absent"]
    );
    assert_eq!(matched(&t, &ks("x", Severity::Warn)), ["threshold", "list"]);
    assert_eq!(matched(&t, &ks("x", Severity::Info)), ["threshold"]);
    assert!(matched(&t, &ks("x", Severity::Trace)).is_empty());

    let flux_default = TableOptions {
        default_severity: Severity::Info,
        ..Default::default()
    };
    let (t, _) = table_with(&manifests, &flux_default);
    assert_eq!(
        matched(&t, &ks("x", Severity::Info)),
        ["threshold", "absent"]
    );
}

#[test]
fn inclusion_and_exclusion_beats_inclusion() {
    let t = table(&format!(
        "{PROVIDER}{}",
        alert(
            "a",
            "  eventSources: [{kind: Kustomization, name: '*'}]\n  inclusionList: ['.*failed.*', '^Health']\n  exclusionList: ['dry-run']"
        )
    ));
    let with = |message: &str| {
        event(
            "Kustomization",
            "flux-system",
            "x",
            Severity::Error,
            message,
        )
    };
    assert_eq!(matched(&t, &with("apply failed")), ["a"]);
    assert_eq!(matched(&t, &with("Health check passed")), ["a"]);
    assert!(matched(&t, &with("reconciled")).is_empty());
    assert!(matched(&t, &with("dry-run failed")).is_empty());
}

#[test]
fn invalid_regex_is_reported_and_skipped() {
    let (t, problems) = table_with(
        &format!(
            "{PROVIDER}{}",
            alert(
                "a",
                "  eventSources: [{kind: Kustomization, name: '*'}]\n  exclusionList: ['(unclosed', 'noise']"
            )
        ),
        &TableOptions::default(),
    );
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].reason, Reason::InvalidRegex);
    assert!(
        problems[0].message.contains("spec.exclusionList[0]"),
        "{}",
        problems[0]
    );
    let with = |message: &str| {
        event(
            "Kustomization",
            "flux-system",
            "x",
            Severity::Error,
            message,
        )
    };
    assert_eq!(matched(&t, &with("(unclosed")), ["a"]);
    assert!(matched(&t, &with("noise")).is_empty());
}

/// Flux compiles the lists with Go's regexp, where `\d` is ASCII: an
/// exclusion `\d+` drops messages with ASCII digits only.
#[test]
fn lists_are_go_regular_expressions() {
    let t = table(&format!(
        "{PROVIDER}{}",
        alert(
            "a",
            "  eventSources: [{kind: Kustomization, name: '*'}]\n  exclusionList: ['\\d+']\n  inclusionList: ['^\\Qdry-run (\\E', '\\bitems\\b']"
        )
    ));
    let with = |message: &str| {
        event(
            "Kustomization",
            "flux-system",
            "x",
            Severity::Error,
            message,
        )
    };
    assert!(matched(&t, &with("pruned 3 items")).is_empty());
    assert_eq!(matched(&t, &with("pruned \u{663} items")), ["a"]);
    assert_eq!(matched(&t, &with("dry-run (server)")), ["a"]);
    assert!(matched(&t, &with("dry-run server")).is_empty());
}

/// Go's error text, and Go's rules: `(?x)` is not a Go flag.
#[test]
fn a_pattern_go_rejects_is_reported_with_go_error() {
    let (_, problems) = table_with(
        &format!(
            "{PROVIDER}{}",
            alert(
                "a",
                "  eventSources: [{kind: Kustomization, name: '*'}]\n  inclusionList: ['ok', '(?x)a', 'a{1001}']"
            )
        ),
        &TableOptions::default(),
    );
    let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "spec.inclusionList[1]: invalid regular expression \"(?x)a\": \
             invalid or unsupported Perl syntax: `(?x`",
            "spec.inclusionList[2]: invalid regular expression \"a{1001}\": \
             invalid repeat count: `{1001}`",
        ]
    );
}

/// A list whose patterns do not fit in one set is not dropped (it used to
/// become an empty set): it is an error, and it still matches, pattern by
/// pattern.
#[test]
fn a_list_too_big_for_one_set_is_reported_and_still_matches() {
    let manifests = format!(
        "{PROVIDER}{}",
        alert(
            "a",
            "  eventSources: [{kind: Kustomization, name: '*'}]\n  \
             inclusionList: ['^alpha \\w{20}', '^beta \\w{20}', '^gamma \\w{20}']\n  \
             exclusionList: ['skip \\w{20}', 'drop \\w{20}']"
        )
    );
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("m.yaml"), manifests).expect("write");
    let (snapshot, _) = manifests::load(dir.path());
    let small = build::RegexCache::with_set_size_limit(2_000);
    let (t, problems) = build::build_with(&snapshot, &TableOptions::default(), small);
    let fields: Vec<&str> = problems
        .iter()
        .map(|p| {
            assert_eq!(p.reason, Reason::InvalidRegex);
            assert_eq!(p.level, Level::Error);
            p.message.split(':').next().unwrap_or("")
        })
        .collect();
    assert_eq!(fields, ["spec.inclusionList", "spec.exclusionList"]);
    assert!(
        problems[0].message.contains("one by one"),
        "{}",
        problems[0]
    );
    let with = |message: &str| {
        event(
            "Kustomization",
            "flux-system",
            "x",
            Severity::Error,
            message,
        )
    };
    let word = "w".repeat(20);
    assert_eq!(matched(&t, &with(&format!("gamma {word}"))), ["a"]);
    assert_eq!(matched(&t, &with(&format!("alpha {word}"))), ["a"]);
    assert!(matched(&t, &with(&format!("delta {word}"))).is_empty());
    assert_eq!(matched(&t, &with(&format!("beta {word}"))), ["a"]);
    assert!(matched(&t, &with(&format!("beta {word} drop {word}"))).is_empty());

    // With herald's real limit, the same list is one set: no problem.
    let (_, problems) = build(&snapshot, &TableOptions::default());
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn suspended_alert_and_suspended_provider_route_nothing() {
    let t = table(&format!(
        "{PROVIDER}{}",
        alert(
            "a",
            "  suspend: true\n  eventSources: [{kind: Kustomization, name: '*'}]"
        )
    ));
    assert!(matched(&t, &ks("x", Severity::Error)).is_empty());
    let (_, notes) = table_with(
        &format!(
            "{PROVIDER}{}",
            alert(
                "a",
                "  suspend: true\n  eventSources: [{kind: Kustomization, name: '*'}]"
            )
        ),
        &TableOptions::default(),
    );
    assert_eq!(notes.len(), 1);
    assert_eq!(
        (notes[0].level, notes[0].reason),
        (Level::Note, Reason::Suspended)
    );

    let suspended_provider = PROVIDER.replace("type: slack,", "type: slack, suspend: true,");
    let t = table(&format!(
        "{suspended_provider}{}",
        alert("a", "  eventSources: [{kind: Kustomization, name: '*'}]")
    ));
    assert!(matched(&t, &ks("x", Severity::Error)).is_empty());
}

#[test]
fn an_alert_matches_once_even_through_two_sources() {
    let t = table(&format!(
        "{PROVIDER}{}",
        alert(
            "a",
            "  eventSources: [{kind: Kustomization, name: '*'}, {kind: Kustomization, name: x}]"
        )
    ));
    assert_eq!(matched(&t, &ks("x", Severity::Error)), ["a"]);
}

#[test]
fn match_labels_read_objects_from_the_source() {
    let t = table(&format!(
        "{PROVIDER}{}\n---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\n\
         metadata: {{name: web, namespace: flux-system, labels: {{team: web}}}}\n---\n\
         apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\n\
         metadata: {{name: db, namespace: flux-system, labels: {{team: db}}}}\n",
        alert(
            "a",
            "  eventSources: [{kind: Kustomization, name: '*', matchLabels: {team: web}}]"
        )
    ));
    assert_eq!(matched(&t, &ks("web", Severity::Error)), ["a"]);
    assert!(matched(&t, &ks("db", Severity::Error)).is_empty());
    assert!(matched(&t, &ks("unknown", Severity::Error)).is_empty());
}

#[test]
fn notifications_carry_cleaned_and_merged_metadata() {
    let t = table(&format!(
        "{PROVIDER}{}",
        alert(
            "a",
            "  eventSources: [{kind: Kustomization, name: '*'}]\n  summary: prod\n  eventMetadata: {env: prod, revision: alert}"
        )
    ));
    let mut e = ks("x", Severity::Error);
    e.metadata = [
        ("kustomize.toolkit.fluxcd.io/revision", "main@sha1:abc"),
        ("kustomize.toolkit.fluxcd.io/token", "secret-token"),
        ("event.toolkit.fluxcd.io/env", "event"),
        ("other.io/x", "y"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let notifications = t.notifications(e);
    assert_eq!(notifications.len(), 1);
    let merged: Vec<_> = notifications[0]
        .metadata
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    assert_eq!(
        merged,
        ["env=prod", "revision=main@sha1:abc", "summary=prod"]
    );
    assert!(
        !notifications[0]
            .event
            .metadata
            .contains_key("kustomize.toolkit.fluxcd.io/token")
    );
}

#[test]
fn provider_problems_name_the_cause() {
    let manifests = "
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: missing-secret, namespace: ns}
spec: {type: slack, secretRef: {name: nope}}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: no-keys, namespace: ns}
spec: {type: slack, secretRef: {name: empty}}
---
apiVersion: v1
kind: Secret
metadata: {name: empty, namespace: ns}
stringData: {other: x}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: ftp, namespace: ns}
spec: {type: slack, address: 'ftp://example.com/secret-path'}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: nats-over-https, namespace: ns}
spec: {type: nats, address: 'https://example.com/hook', channel: flux}
";
    let (_, problems) = table_with(manifests, &TableOptions::default());
    let reasons: Vec<_> = problems
        .iter()
        .map(|p| (p.object.as_str(), p.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            ("Provider ns/missing-secret", Reason::SecretNotFound),
            ("Provider ns/no-keys", Reason::SecretKeyMissing),
            ("Provider ns/ftp", Reason::InvalidAddress),
            ("Provider ns/nats-over-https", Reason::InvalidAddress),
        ]
    );
    assert!(
        problems[1]
            .message
            .contains("secret ns/empty has neither 'address' nor 'url'")
    );
    assert!(
        !problems[2].message.contains("secret-path"),
        "address leaked: {}",
        problems[2]
    );
}

#[test]
fn a_destination_keeps_its_queue_across_rebuilds() {
    let manifests = format!(
        "{PROVIDER}{}",
        alert("a", "  eventSources: [{kind: Kustomization, name: '*'}]")
    );
    let queue = |t: &RoutingTable| t.route(&ks("x", Severity::Error))[0].destination.queue;
    assert_eq!(queue(&table(&manifests)), queue(&table(&manifests)));
}

#[test]
fn a_misspelt_kind_is_a_warning() {
    let (t, problems) = table_with(
        &format!(
            "{PROVIDER}{}",
            alert("a", "  eventSources: [{kind: Kustomizaton, name: '*'}]")
        ),
        &TableOptions::default(),
    );
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(
        (problems[0].level, problems[0].reason),
        (Level::Warning, Reason::UnknownKind)
    );
    assert!(
        problems[0]
            .message
            .contains("spec.eventSources[0].kind: 'Kustomizaton'")
    );
    assert_eq!(t.alert_count(), 1, "a warning does not stop the Alert");
}

#[test]
fn alert_without_provider_is_reported() {
    let (t, problems) = table_with(
        &alert("a", "  eventSources: [{kind: Kustomization, name: '*'}]"),
        &TableOptions::default(),
    );
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].reason, Reason::ProviderNotFound);
    assert_eq!(t.alert_count(), 0);
}

/// Flux v1.9.3 (`getNotificationParams`): kustomize-controller's
/// "Reconciliation finished … next run in …" event carries
/// `kustomize.toolkit.fluxcd.io/commit_status: update` and never reaches a
/// Slack Alert, even one that takes every info event; other info events do.
#[test]
fn flux_commit_status_updates_never_reach_slack() {
    let t = table(&format!(
        "{PROVIDER}{}",
        alert(
            "a",
            "  eventSeverity: info\n  eventSources: [{kind: Kustomization, name: '*'}]"
        )
    ));
    let mut finished = ks("apps", Severity::Info);
    finished.message = "Reconciliation finished in 1.2s, next run in 10m0s".into();
    finished.metadata.insert(
        "kustomize.toolkit.fluxcd.io/commit_status".into(),
        "update".into(),
    );
    assert!(matched(&t, &finished).is_empty());
    assert!(t.notifications(finished.clone()).is_empty());
    finished.metadata.clear();
    assert_eq!(matched(&t, &finished), ["a"]);
}

/// Every problem of every object in one run: an Alert whose Provider is
/// broken still gets its own errors, and a Provider gets all of its own.
#[test]
fn every_problem_of_every_object_is_reported() {
    let manifests = "
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: broken, namespace: ns}
spec: {type: slack, secretRef: {name: nope}, timeout: forever}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: a, namespace: ns}
spec:
  providerRef: {name: broken}
  eventSources: [{kind: Kustomization, name: '*'}]
  inclusionList: ['(unclosed']
  template: {text: '{{ unclosed'}
";
    let (_, problems) = table_with(manifests, &TableOptions::default());
    let reasons: Vec<_> = problems
        .iter()
        .map(|p| (p.object.as_str(), p.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            ("Provider ns/broken", Reason::InvalidTimeout),
            ("Provider ns/broken", Reason::SecretNotFound),
            ("Alert ns/a", Reason::InvalidRegex),
            ("Alert ns/a", Reason::ProviderNotReady),
            ("Alert ns/a", Reason::InvalidTemplate),
        ]
    );
}

mod explain {
    use super::*;
    use crate::routing::explain::explain;

    const MANIFESTS: &str = "
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: slack, namespace: flux-system}
spec: {type: slack, address: 'https://hooks.example.com/services/x'}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Provider
metadata: {name: paused, namespace: flux-system}
spec: {type: slack, address: 'https://hooks.example.com/services/y', suspend: true}
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: errors, namespace: flux-system}
spec:
  providerRef: {name: slack}
  eventSources: [{kind: Kustomization, name: '*'}]
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: apps-only, namespace: flux-system}
spec:
  providerRef: {name: slack}
  eventSeverity: info
  eventSources: [{kind: Kustomization, name: apps}]
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: quiet, namespace: flux-system}
spec:
  providerRef: {name: slack}
  eventSeverity: info
  eventSources: [{kind: Kustomization, name: '*'}]
  exclusionList: ['^health check', '\\d+ unchanged']
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: only-failures, namespace: flux-system}
spec:
  providerRef: {name: slack}
  eventSeverity: info
  eventSources: [{kind: Kustomization, name: '*'}]
  inclusionList: ['failed']
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: team-web, namespace: flux-system}
spec:
  providerRef: {name: slack}
  eventSeverity: info
  eventSources: [{kind: Kustomization, name: '*', matchLabels: {team: web}}]
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: via-paused, namespace: flux-system}
spec:
  providerRef: {name: paused}
  eventSources: [{kind: Kustomization, name: '*'}]
---
apiVersion: notification.toolkit.fluxcd.io/v1beta3
kind: Alert
metadata: {name: elsewhere, namespace: apps}
spec:
  providerRef: {name: slack}
  eventSources: [{kind: Kustomization, name: '*'}]
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: apps, namespace: flux-system, labels: {team: web}}
";

    fn verdicts(flux_event: &FluxEvent, duplicate: bool) -> Vec<(String, &'static str)> {
        let event = flux_event;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("m.yaml"), MANIFESTS).expect("write");
        let (snapshot, mut problems) = manifests::load(dir.path());
        let options = TableOptions::default();
        let (table, more) = build(&snapshot, &options);
        problems.extend(more);
        let explained = explain(&snapshot, &problems, &options, event, duplicate);
        // "matched" means exactly what the routing table routes.
        let mut explained_matches: Vec<String> = explained
            .iter()
            .filter(|e| e.matched)
            .map(|e| e.alert.clone())
            .collect();
        let mut routed: Vec<String> = if duplicate {
            Vec::new()
        } else {
            table
                .route(event)
                .iter()
                .map(|a| a.key.to_string())
                .collect()
        };
        explained_matches.sort();
        routed.sort();
        assert_eq!(explained_matches, routed, "explain disagrees with routing");
        explained
            .into_iter()
            .map(|e| (e.alert.rsplit('/').next().unwrap_or("").to_owned(), e.rule))
            .collect()
    }

    #[test]
    fn names_the_first_rule_that_failed_for_every_alert_in_scope() {
        let mut event = ks("apps", Severity::Info);
        event.message = "Service/apps/web 3 unchanged".into();
        assert_eq!(
            verdicts(&event, false),
            [
                ("errors".to_owned(), "severity"),
                ("apps-only".to_owned(), "matched"),
                ("quiet".to_owned(), "exclusionList"),
                ("only-failures".to_owned(), "inclusionList"),
                ("team-web".to_owned(), "matched"),
                ("via-paused".to_owned(), "provider"),
            ]
        );
        let mut other = ks("infra", Severity::Error);
        other.message = "health check failed".into();
        assert_eq!(
            verdicts(&other, false),
            [
                ("errors".to_owned(), "matched"),
                ("apps-only".to_owned(), "name"),
                ("quiet".to_owned(), "exclusionList"),
                ("only-failures".to_owned(), "matched"),
                ("team-web".to_owned(), "matchLabels"),
                ("via-paused".to_owned(), "provider"),
            ]
        );
        let helm = super::event("HelmRelease", "flux-system", "apps", Severity::Error, "m");
        // An Alert the table left out (its Provider is suspended) says so first.
        assert!(
            verdicts(&helm, false)
                .iter()
                .all(|(alert, rule)| *rule == "kind"
                    || (alert == "via-paused" && *rule == "provider"))
        );
        let duplicate = verdicts(&ks("apps", Severity::Error), true);
        assert!(duplicate.iter().all(|(_, rule)| *rule == "duplicate"));
    }

    /// The commit-status rule is explained, as Flux applies it.
    #[test]
    fn explains_flux_commit_status_rule() {
        let mut finished = ks("apps", Severity::Info);
        finished.metadata.insert(
            "kustomize.toolkit.fluxcd.io/commit_status".into(),
            "update".into(),
        );
        let rules = verdicts(&finished, false);
        assert!(
            rules.contains(&("apps-only".to_owned(), "providerRule")),
            "{rules:?}"
        );
    }
}

/// Lists are compiled when an event first reaches their Alert: an Alert no
/// event reaches holds only its patterns' text. A bad pattern is still
/// reported when the table is built.
#[test]
fn lists_compile_on_first_use_and_are_checked_when_built() {
    let manifests = format!(
        "{PROVIDER}{}{}",
        alert(
            "first",
            "  eventSources: [{kind: Kustomization, name: one}]\n  \
             exclusionList: ['^skip', 'ignore \\d+']"
        ),
        alert(
            "second",
            "  eventSources: [{kind: Kustomization, name: two}]\n  \
             exclusionList: ['^skip (', '^drop']"
        ),
    );
    let (t, problems) = table_with(&manifests, &TableOptions::default());
    let bad: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(
        bad[0].starts_with("spec.exclusionList[0]: invalid regular expression"),
        "{bad:?}"
    );
    let compiled = |name: &str| {
        let routes = &t.index["flux-system"]["Kustomization"].by_name;
        let alert = &routes[name][0].alert;
        match alert.exclusion.as_deref() {
            Some(PatternList::Set(set)) => set.is_compiled(),
            other => panic!("{name}: one set expected, got {}", other.is_some()),
        }
    };
    let names = |event: &FluxEvent| matched(&t, event);
    assert!(!compiled("one") && !compiled("two"));
    let mut skipped = ks("one", Severity::Error);
    skipped.message = "ignore 42 of them".into();
    assert!(names(&skipped).is_empty());
    assert!(names(&ks("one", Severity::Error)) == ["first"]);
    assert!(compiled("one") && !compiled("two"));
    let mut dropped = ks("two", Severity::Error);
    dropped.message = "drop it".into();
    assert!(names(&dropped).is_empty());
    assert!(compiled("two"));
}

/// Thousands of distinct patterns are checked on several threads; every
/// verdict lands on its own Alert.
#[test]
fn many_distinct_patterns_keep_their_own_verdicts() {
    let mut manifests = PROVIDER.to_owned();
    for i in 0..300 {
        let pattern = if i % 50 == 7 {
            format!("^broken{i} (")
        } else {
            format!("^quiet {i}$")
        };
        manifests.push_str(&alert(
            &format!("a{i}"),
            &format!(
                "  eventSources: [{{kind: Kustomization, name: app{i}}}]\n  \
                 exclusionList: ['{pattern}', 'never{i}']"
            ),
        ));
    }
    let (t, problems) = table_with(&manifests, &TableOptions::default());
    let broken: Vec<&str> = problems
        .iter()
        .map(|p| match &p.origin {
            crate::source::Origin::File { document, .. } => {
                assert!(p.message.contains("invalid regular expression"), "{p}");
                // Document 0 is the Provider.
                [7usize, 57, 107, 157, 207, 257]
                    .iter()
                    .find(|i| **i + 1 == *document)
                    .map_or("wrong document", |_| "ok")
            }
            _ => "not from the file",
        })
        .collect();
    assert_eq!(broken, ["ok"; 6]);
    for i in [0, 7, 123, 299] {
        let mut quiet = event(
            "Kustomization",
            "flux-system",
            &format!("app{i}"),
            Severity::Error,
            "",
        );
        quiet.message = format!("quiet {i}");
        let expected_to_pass = i % 50 == 7; // its only valid pattern is never{i}
        assert_eq!(
            matched(&t, &quiet).len(),
            usize::from(expected_to_pass),
            "a{i}"
        );
        quiet.message = format!("quiet {}", i + 1);
        assert_eq!(matched(&t, &quiet), [format!("a{i}")]);
    }
}

/// Many Alerts on one wildcard source, each with its own patterns: the
/// screen gives the answers running every list gives (inclusion,
/// exclusion, a list without a required literal, a case-insensitive
/// pattern), and never runs a list none of whose literals occurs.
#[test]
fn the_screen_of_many_alerts_answers_as_every_list_would() {
    let mut manifests = PROVIDER.to_owned();
    for i in 0..40 {
        manifests.push_str(&alert(
            &format!("team-{i}"),
            &format!(
                "  eventSources: [{{kind: Kustomization, name: '*'}}]\n  inclusionList: ['team-{i:02}/']\n  exclusionList: ['team-{i:02}/noisy']"
            ),
        ));
    }
    // Not screenable: a leading class; and a case-insensitive literal.
    manifests.push_str(&alert(
        "digits",
        "  eventSources: [{kind: Kustomization, name: '*'}]\n  inclusionList: ['[0-9]+ replicas']",
    ));
    manifests.push_str(&alert(
        "shouting",
        "  eventSources: [{kind: Kustomization, name: '*'}]\n  inclusionList: ['(?i)urgent']",
    ));
    let t = table(&manifests);
    let routes = &t.index["flux-system"]["Kustomization"];
    assert!(routes.screen.is_some(), "42 wildcard routes get a screen");
    let on = |message: &str| {
        let mut names = matched(
            &t,
            &event(
                "Kustomization",
                "flux-system",
                "x",
                Severity::Error,
                message,
            ),
        );
        names.sort();
        names
    };
    assert_eq!(on("deploy team-07/web failed"), ["team-7"]);
    assert!(on("deploy team-07/noisy failed").is_empty(), "excluded");
    assert_eq!(on("3 replicas of team-12/web"), ["digits", "team-12"]);
    assert_eq!(on("URGENT: team-99/x"), ["shouting"]);
    assert!(on("nothing of interest").is_empty());
    // Only team-7 and team-12 ever ran their inclusion list.
    let compiled: Vec<String> = routes
        .any_name
        .iter()
        .filter(|r| r.alert.key.name.starts_with("team-"))
        .filter(|r| match r.alert.inclusion.as_deref() {
            Some(PatternList::Set(set)) => set.is_compiled(),
            _ => false,
        })
        .map(|r| r.alert.key.name.clone())
        .collect();
    assert_eq!(compiled, ["team-7", "team-12"]);
}
