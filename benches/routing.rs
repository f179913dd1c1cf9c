//! Routing cost (issue: route one event with up to 100,000 Alerts over 1,000
//! namespaces in ≤ 1 µs) against the strategy of Flux's notification-
//! controller, measured in the same run; and the cost a text template adds.
//!
//! `cargo bench --bench routing`

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use herald::api::{Alert, FluxEvent, Provider};
use herald::routing::{self, RoutingTable, TableOptions};
use herald::source::{Loaded, Origin, Snapshot};
use regex::Regex;
use serde_json::json;

const NAMESPACES: usize = 1000;

fn loaded<T>(object: T) -> Loaded<T> {
    Loaded {
        origin: Origin::Cluster,
        object: object.into(),
    }
}

/// `alerts` Alerts spread over 1,000 namespaces, each with one Provider.
/// Namespace `ns-0000` gets an event with no matching Alert, `ns-0001` one,
/// `ns-0002` ten; every other Alert watches a differently named object.
fn snapshot(alerts: usize) -> Snapshot {
    let mut snapshot = Snapshot::default();

    for ns in 0..NAMESPACES {
        let provider: Provider = serde_json::from_value(json!({
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Provider",
            "metadata": {"name": "slack", "namespace": format!("ns-{ns:04}")},
            "spec": {"type": "slack", "address": format!("https://hooks.example.com/services/{ns}")}
        }))
        .expect("provider");
        snapshot.providers.push(loaded(provider));
    }
    for i in 0..alerts {
        let ns = i % NAMESPACES;
        let slot = i / NAMESPACES;
        let name = match ns {
            1 if slot == 0 => "*".to_owned(),
            2 if slot < 10 => "*".to_owned(),
            _ => format!("app-{i}"),
        };
        let alert: Alert = serde_json::from_value(json!({
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Alert",
            "metadata": {"name": format!("alert-{i}"), "namespace": format!("ns-{ns:04}")},
            "spec": {
                "providerRef": {"name": "slack"},
                "eventSeverity": "info",
                "eventSources": [{"kind": "Kustomization", "name": name}],
                "exclusionList": ["^noise.*"]
            }
        }))
        .expect("alert");
        snapshot.alerts.push(loaded(alert));
    }
    snapshot
}

fn event(namespace: &str) -> FluxEvent {
    serde_json::from_value(json!({
        "involvedObject": {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                           "name": "target", "namespace": namespace},
        "severity": "error", "message": "apply failed: deployment/web: replicas invalid",
        "reason": "ReconciliationFailed",
        "metadata": {"kustomize.toolkit.fluxcd.io/revision": "main@sha1:731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"},
        "reportingController": "kustomize-controller"
    }))
    .expect("event")
}

/// How Flux's notification-controller routes: for each event, every Alert
/// is considered, its regexes compiled, its sources compared, its Provider
/// looked up.
fn flux_strategy(
    snapshot: &Snapshot,
    providers: &HashMap<(String, String), Arc<Provider>>,
    event: &FluxEvent,
) -> usize {
    let object = &event.involved_object;
    let mut matched = 0;
    for loaded in &snapshot.alerts {
        let alert = &loaded.object;
        if alert.spec.suspend == Some(true) {
            continue;
        }
        let namespace = alert.metadata.namespace.clone().unwrap_or_default();
        let exclusions: Vec<Regex> = alert
            .spec
            .exclusion_list
            .iter()
            .flatten()
            .filter_map(|p| Regex::new(p).ok())
            .collect();
        let source_matches = alert.spec.event_sources.iter().any(|s| {
            s.kind == object.kind
                && s.namespace.as_deref().unwrap_or(&namespace) == object.namespace
                && (s.name == "*" || s.name == object.name)
        });
        if !source_matches || exclusions.iter().any(|r| r.is_match(&event.message)) {
            continue;
        }
        if providers
            .get(&(namespace, alert.spec.provider_ref.name.clone()))
            .is_some()
        {
            matched += 1;
        }
    }
    matched
}

fn bench_routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("route");
    for alerts in [100usize, 10_000, 100_000] {
        let snapshot = snapshot(alerts);
        let (table, _) = routing::build(&snapshot, &TableOptions::default());
        // With 100 Alerts, ns-0002 holds just one.
        let ten = if alerts >= 10 * NAMESPACES { 10 } else { 1 };
        for (namespace, expected) in [("ns-0000", 0), ("ns-0001", 1), ("ns-0002", ten)] {
            let event = event(namespace);
            assert_eq!(
                table.route(&event).len(),
                expected,
                "{alerts} alerts, {namespace}"
            );
            group.bench_with_input(
                BenchmarkId::new(
                    format!("herald/{alerts}"),
                    format!("{namespace}/{expected}-matching"),
                ),
                &event,
                |b, event| b.iter(|| black_box(table.route(black_box(event))).len()),
            );
        }
    }
    group.finish();

    let mut flux = c.benchmark_group("route-flux-strategy");
    flux.sample_size(10);
    for alerts in [100usize, 10_000, 100_000] {
        let snapshot = snapshot(alerts);
        let providers: HashMap<_, _> = snapshot
            .providers
            .iter()
            .map(|p| {
                let meta = &p.object.metadata;
                (
                    (
                        meta.namespace.clone().unwrap_or_default(),
                        meta.name.clone().unwrap_or_default(),
                    ),
                    p.object.clone(),
                )
            })
            .collect();
        let event = event("ns-0001");
        flux.bench_with_input(BenchmarkId::new("flux", alerts), &event, |b, event| {
            b.iter(|| flux_strategy(&snapshot, &providers, black_box(event)))
        });
    }
    flux.finish();
}

fn bench_notifications(c: &mut Criterion) {
    let manifests = |template: &str| -> RoutingTable {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!(
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\nmetadata: {{name: slack, namespace: ns-0001}}\n\
             spec: {{type: slack, address: 'https://hooks.example.com/x'}}\n---\n\
             apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\nmetadata: {{name: a, namespace: ns-0001}}\n\
             spec:\n  providerRef: {{name: slack}}\n  eventSources: [{{kind: Kustomization, name: '*'}}]\n{template}"
        );
        std::fs::write(dir.path().join("m.yaml"), text).expect("write");
        let (snapshot, _) = herald::source::manifests::load(dir.path());
        routing::build(&snapshot, &TableOptions::default()).0
    };
    let plain = manifests("");
    let templated = manifests(
        "  template:\n    text: |\n      *{{ object.kind }} {{ object.namespace }}/{{ object.name }}* {{ severity }}: {{ message }}\n      \
         <https://github.com/acme/fleet/commit/{{ revision | commit }}|{{ (revision | commit)[:7] }}>\n",
    );
    let event = event("ns-0001");
    let mut group = c.benchmark_group("notification");
    for (label, table) in [("default-format", &plain), ("text-template", &templated)] {
        let notifications = table.notifications(event.clone());
        let n = &notifications[0];
        group.bench_function(label, |b| {
            b.iter(|| {
                let rendered = n.render().ok().flatten();
                black_box(n.alert.destination.notifier.payload(n, rendered.as_ref()))
            })
        });
    }
    group.finish();
}

/// `alerts` Alerts in one namespace on the same wildcard source, each with
/// its own inclusion pattern, so that each event reaches exactly one:
/// routing cost as the number of candidates grows (issue: at 10,000 at
/// least 70% of the rate at 1,000).
fn candidates(alerts: usize) -> Snapshot {
    candidates_with(alerts, "team")
}

/// [`candidates`], each pattern starting with `prefix` (`[t]eam`: a class,
/// so no required literal and no screen).
fn candidates_with(alerts: usize, prefix: &str) -> Snapshot {
    let mut snapshot = Snapshot::default();
    let provider: Provider = serde_json::from_value(json!({
        "apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Provider",
        "metadata": {"name": "slack", "namespace": "apps"},
        "spec": {"type": "slack", "address": "https://hooks.example.com/services/x"}
    }))
    .expect("provider");
    snapshot.providers.push(loaded(provider));
    for i in 0..alerts {
        let alert: Alert = serde_json::from_value(json!({
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3", "kind": "Alert",
            "metadata": {"name": format!("team-{i}"), "namespace": "apps"},
            "spec": {
                "providerRef": {"name": "slack"},
                "eventSeverity": "info",
                "eventSources": [{"kind": "Kustomization", "name": "*"}],
                "inclusionList": [format!("{prefix}-{i:05}/.*(failed|succeeded)")]
            }
        }))
        .expect("alert");
        snapshot.alerts.push(loaded(alert));
    }
    snapshot
}

fn bench_candidates(c: &mut Criterion) {
    let mut group = c.benchmark_group("route-candidates");
    for alerts in [1_000usize, 10_000] {
        let snapshot = candidates(alerts);
        let (table, problems) = routing::build(&snapshot, &TableOptions::default());
        assert!(problems.is_empty(), "{problems:?}");
        let mut event = event("apps");
        event.message = "Deployment team-00042/web reconciliation succeeded".into();
        assert_eq!(table.route(&event).len(), 1);
        group.bench_with_input(
            BenchmarkId::new("one-matching-of", alerts),
            &event,
            |b, event| b.iter(|| black_box(table.route(black_box(event))).len()),
        );
    }
    group.finish();

    // What the screen adds to building a table: the same 10,000 Alerts
    // with patterns it can read (a screen is built) and without (none is).
    let mut build = c.benchmark_group("build-candidates");
    build.sample_size(10);
    for (label, prefix) in [("screened", "team"), ("unscreened", "[t]eam")] {
        let snapshot = candidates_with(10_000, prefix);
        build.bench_function(BenchmarkId::new(label, 10_000), |b| {
            b.iter(|| {
                black_box(routing::build(&snapshot, &TableOptions::default()))
                    .0
                    .alert_count()
            })
        });
    }
    build.finish();
}

criterion_group!(
    benches,
    bench_routing,
    bench_notifications,
    bench_candidates
);
criterion_main!(benches);
