//! The Grafana dashboard and the PrometheusRule (`deploy/monitoring/`, the
//! chart's copies checked equal by `tests/deploy/check.py`) read only what
//! herald exports: every metric name in every expression, and every label
//! it selects or groups by, is checked against a running herald's real
//! `/metrics` output after it delivered, retried and refused. A renamed
//! metric or label fails here.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::herald::{Herald, client};
use support::sink::{Answer, Sink};
use support::{SEED, event_file, seed_copy};

const WAIT: Duration = Duration::from_secs(15);
/// Labels Prometheus adds when it scrapes (the target's), and histograms'.
const SCRAPE_LABELS: [&str; 4] = ["namespace", "pod", "job", "le"];

/// Every expression of the dashboard and the rules, with where it is.
fn expressions() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring");
    let mut found = Vec::new();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("herald-dashboard.json")).expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            found.push((
                format!("dashboard panel {:?}", panel["title"]),
                target["expr"].as_str().expect("expr").to_owned(),
            ));
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        if let Some(query) = variable["query"].as_str().filter(|q| q.contains("herald_")) {
            found.push((
                format!("dashboard variable {:?}", variable["name"]),
                query.to_owned(),
            ));
        }
    }
    let rule = herald::yaml::parse_document(
        &std::fs::read_to_string(root.join("prometheusrule.yaml")).expect("rule"),
    )
    .expect("the PrometheusRule is YAML");
    for group in rule["spec"]["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            found.push((
                format!("alert {:?}", rule["alert"]),
                rule["expr"].as_str().expect("expr").to_owned(),
            ));
        }
    }
    assert!(found.len() >= 12, "{found:#?}");
    found
}

/// What `/metrics` exports: each series name (with the suffixes Prometheus
/// sees: `_total`, `_bucket`, `_sum`, `_count`) and the labels its samples
/// carry.
fn exported(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            for suffix in suffixes {
                names.entry(format!("{name}{suffix}")).or_default();
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let labels = names.entry(line[..name_end].to_owned()).or_default();
            if let Some(inner) = line[name_end..].strip_prefix('{') {
                let inner = &inner[..inner.rfind('}').unwrap_or(inner.len())];
                for pair in inner.split(',').filter(|p| !p.is_empty()) {
                    labels.insert(pair.split('=').next().unwrap_or_default().to_owned());
                }
            }
        }
    }
    names
}

/// The identifiers of an expression: metric names, the labels its
/// selectors match on, and those it groups by.
fn references(expr: &str) -> (Vec<String>, Vec<(String, String)>, Vec<String>) {
    let mut metrics = Vec::new();
    let mut selected = Vec::new();
    let mut grouped = Vec::new();
    let bytes = expr.as_bytes();
    let word = |at: usize| {
        let end = expr[at..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(expr.len(), |e| at + e);
        &expr[at..end]
    };
    let mut at = 0;
    while at < expr.len() {
        if expr[at..].starts_with("herald_") && (at == 0 || !bytes[at - 1].is_ascii_alphanumeric())
        {
            let name = word(at).to_owned();
            at += name.len();
            if expr[at..].starts_with('{') {
                let close = expr[at..].find('}').expect("closing brace") + at;
                for matcher in expr[at + 1..close].split(',') {
                    let label: String = matcher
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !label.is_empty() {
                        selected.push((name.clone(), label));
                    }
                }
                at = close;
            }
            metrics.push(name);
        } else if expr[at..].starts_with("by (") {
            let close = expr[at..].find(')').expect("closing parenthesis") + at;
            grouped.extend(expr[at + 4..close].split(',').map(|l| l.trim().to_owned()));
            at = close;
        }
        at += 1;
    }
    (metrics, selected, grouped)
}

#[test]
fn dashboards_and_alerts_read_only_what_herald_exports() {
    // A notification retried once then delivered, one refused by its
    // destination, and a malformed event: every family has samples.
    let sink = Sink::start();
    sink.script([Answer::status(500), Answer::status(400)]);
    let dir = seed_copy(&SEED, &sink.url);
    let herald = Herald::serve(dir.path(), &[]);
    assert_eq!(
        herald.post_file(&event_file("kustomization-error.json")),
        202
    );
    assert_eq!(herald.post("{not json").0, 400);
    sink.wait_for(4, WAIT);
    std::thread::sleep(Duration::from_millis(300));
    let (status, text) = client::get(&format!("{}/metrics", herald.metrics));
    assert_eq!(status, 200);
    let exported = exported(&text);

    let mut problems = Vec::new();
    for (place, expr) in expressions() {
        let (metrics, selected, grouped) = references(&expr);
        assert!(!metrics.is_empty(), "{place}: no herald metric in {expr}");
        for metric in &metrics {
            if !exported.contains_key(metric) {
                problems.push(format!("{place}: {metric} is not exported"));
            }
        }
        let known = |label: &str| {
            SCRAPE_LABELS.contains(&label)
                || metrics
                    .iter()
                    .any(|m| exported.get(m).is_some_and(|labels| labels.contains(label)))
        };
        for (metric, label) in &selected {
            if !known(label) {
                problems.push(format!("{place}: {metric} has no label {label}"));
            }
        }
        for label in &grouped {
            if !known(label) {
                problems.push(format!("{place}: grouped by {label}, which no metric has"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}\n/metrics:\n{text}");
}

/// The checker itself: a renamed metric or label is caught.
#[test]
fn the_checker_sees_names_and_labels() {
    let (metrics, selected, grouped) = references(
        r#"sum by (provider_type) (rate(herald_notifications_total{result=~"failed", namespace=~"$ns"}[5m])) / herald_queue_depth"#,
    );
    assert_eq!(
        metrics,
        ["herald_notifications_total", "herald_queue_depth"]
    );
    assert_eq!(
        selected,
        [
            ("herald_notifications_total".to_owned(), "result".to_owned()),
            (
                "herald_notifications_total".to_owned(),
                "namespace".to_owned()
            )
        ]
    );
    assert_eq!(grouped, ["provider_type"]);
    let exported = exported(
        "# TYPE herald_notifications counter\nherald_notifications_total{provider_type=\"slack\",result=\"delivered\"} 1\n# TYPE herald_delivery_latency_seconds histogram\n",
    );
    assert!(exported["herald_notifications_total"].contains("result"));
    assert!(exported.contains_key("herald_delivery_latency_seconds_bucket"));
}
