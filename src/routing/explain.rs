//! "Why didn't my Alert fire?" (DESIGN §3.14): for one event, every Alert in
//! scope with the first rule that kept it from matching, or "matched".
//!
//! The rules are checked in the order the routing table applies them, from
//! the Alert as written (its spec, its Provider, the problems the table build
//! reported), so an Alert the table left out is explained too.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{TableOptions, provider_rules};
use crate::api::Reason;
use crate::api::{Alert, FluxEvent, ProviderType, SeverityFilter};
use crate::goregex;
use crate::source::{Kind, Level, ObjectKey, Problem, Snapshot};

/// The Alert-level problem reasons that keep an Alert out of the table.
const BLOCKING_REASONS: [Reason; 4] = [
    Reason::Suspended,
    Reason::ProviderSuspended,
    Reason::ProviderNotReady,
    Reason::ProviderNotFound,
];

/// Why one Alert did or did not match one event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub alert: String,
    /// `matched`, or the rule that failed: `suspended`, `provider`, `kind`,
    /// `name`, `namespace`, `cross-namespace`, `matchLabels`, `severity`,
    /// `inclusionList`, `exclusionList`, `providerRule`, `duplicate`.
    pub rule: &'static str,
    pub matched: bool,
    /// What decided, in words.
    pub detail: String,
}

impl Explanation {
    fn matched(alert: &ObjectKey, detail: String) -> Self {
        Self {
            alert: alert.to_string(),
            rule: "matched",
            matched: true,
            detail,
        }
    }

    fn failed(alert: &ObjectKey, rule: &'static str, detail: String) -> Self {
        Self {
            alert: alert.to_string(),
            rule,
            matched: false,
            detail,
        }
    }
}

/// Whether an Alert concerns events of `namespace`: it lives there, or one
/// of its event sources names it.
fn in_scope(alert: &Alert, key: &ObjectKey, namespace: &str) -> bool {
    key.namespace == namespace
        || alert
            .spec
            .event_sources
            .iter()
            .any(|s| s.namespace.as_deref() == Some(namespace))
}

/// Whether the snapshot was read from a cluster (labels come from there).
fn from_cluster(snapshot: &Snapshot) -> bool {
    snapshot
        .alerts
        .iter()
        .any(|a| a.origin == crate::source::Origin::Cluster)
}

fn key_of(alert: &Alert) -> ObjectKey {
    ObjectKey::new(
        alert.metadata.namespace.as_deref().unwrap_or("default"),
        alert.metadata.name.as_deref().unwrap_or(""),
    )
}

/// Explains the routing of `event` for every Alert in scope, in the
/// snapshot's order. `duplicate` says whether the event repeats one seen
/// within the rate-limit interval (it then matches nothing).
pub fn explain(
    snapshot: &Snapshot,
    problems: &[Problem],
    options: &TableOptions,
    event: &FluxEvent,
    duplicate: bool,
) -> Vec<Explanation> {
    let object = &event.involved_object;
    snapshot
        .alerts
        .iter()
        .map(|loaded| &loaded.object)
        .filter(|alert| in_scope(alert, &key_of(alert), &object.namespace))
        .map(|alert| {
            let key = key_of(alert);
            // The receiver refuses a duplicate before routing it.
            if duplicate {
                return Explanation::failed(
                    &key,
                    "duplicate",
                    "the same event (object, message, revision) was accepted within \
                     --rate-limit-interval: answered 429, nothing sent"
                        .into(),
                );
            }
            match first_failure(snapshot, problems, options, event, alert, &key) {
                Some(failure) => failure,
                None => Explanation::matched(
                    &key,
                    format!(
                        "sent to provider {}/{}",
                        key.namespace, alert.spec.provider_ref.name
                    ),
                ),
            }
        })
        .chain(undecodable_alerts(snapshot, &object.namespace))
        .collect()
}

/// Alerts in the event's namespace that the source holds but cannot
/// decode: they match nothing until fixed, and say why.
fn undecodable_alerts<'a>(
    snapshot: &'a Snapshot,
    namespace: &'a str,
) -> impl Iterator<Item = Explanation> + 'a {
    snapshot
        .undecodable
        .iter()
        .filter_map(move |problem| match &problem.target {
            Some((Kind::Alert, key)) if key.namespace == namespace => {
                Some(Explanation::failed(key, "invalid", problem.message.clone()))
            }
            _ => None,
        })
}

fn first_failure(
    snapshot: &Snapshot,
    problems: &[Problem],
    options: &TableOptions,
    event: &FluxEvent,
    alert: &Alert,
    key: &ObjectKey,
) -> Option<Explanation> {
    if let Some(problem) = blocking_problem(problems, key) {
        let rule = if problem.reason == Reason::Suspended {
            "suspended"
        } else {
            "provider"
        };
        return Some(Explanation::failed(key, rule, problem.message.clone()));
    }
    if let Err((rule, detail)) = match_source(snapshot, options, event, alert, key) {
        return Some(Explanation::failed(key, rule, detail));
    }
    let severities = alert
        .spec
        .event_severity
        .clone()
        .unwrap_or(SeverityFilter::AtLeast(options.default_severity));
    if !severities.mask().contains(event.severity) {
        return Some(Explanation::failed(
            key,
            "severity",
            format!(
                "severity {} is not in eventSeverity {}",
                event.severity.as_str(),
                describe_severities(&severities, alert.spec.event_severity.is_none())
            ),
        ));
    }
    if let Some(failure) = match_message(alert, key, &event.message) {
        return Some(failure);
    }
    let provider_type = provider_type(snapshot, key, &alert.spec.provider_ref.name)?;
    if let Err(withheld) = provider_rules::check(provider_type, event) {
        return Some(Explanation::failed(
            key,
            "providerRule",
            withheld.describe().to_owned(),
        ));
    }
    None
}

fn blocking_problem<'a>(problems: &'a [Problem], key: &ObjectKey) -> Option<&'a Problem> {
    problems.iter().find(|p| {
        p.level != Level::Warning
            && p.target.as_ref() == Some(&(Kind::Alert, key.clone()))
            && BLOCKING_REASONS.contains(&p.reason)
    })
}

fn provider_type(snapshot: &Snapshot, alert: &ObjectKey, provider: &str) -> Option<ProviderType> {
    snapshot
        .providers
        .iter()
        .map(|loaded| &loaded.object)
        .find(|p| {
            p.metadata.name.as_deref() == Some(provider)
                && p.metadata.namespace.as_deref().unwrap_or("default") == alert.namespace
        })
        .map(|p| p.spec.type_)
}

/// The first event source that takes the event, or the closest miss.
fn match_source(
    snapshot: &Snapshot,
    options: &TableOptions,
    event: &FluxEvent,
    alert: &Alert,
    key: &ObjectKey,
) -> Result<(), (&'static str, String)> {
    let object = &event.involved_object;
    let sources = &alert.spec.event_sources;
    let same_kind: Vec<_> = sources.iter().filter(|s| s.kind == object.kind).collect();
    if same_kind.is_empty() {
        let kinds: Vec<&str> = sources.iter().map(|s| s.kind.as_str()).collect();
        return Err((
            "kind",
            format!(
                "no event source of kind {} (sources: {})",
                object.kind,
                kinds.join(", ")
            ),
        ));
    }
    let named: Vec<_> = same_kind
        .iter()
        .filter(|s| s.name == "*" || s.name == object.name)
        .collect();
    if named.is_empty() {
        let names: Vec<&str> = same_kind.iter().map(|s| s.name.as_str()).collect();
        return Err((
            "name",
            format!(
                "{} {} is not among the {} sources' names ({})",
                object.kind,
                object.name,
                object.kind,
                names.join(", ")
            ),
        ));
    }
    let source_namespace = |s: &&&crate::api::EventSource| {
        s.namespace.clone().unwrap_or_else(|| key.namespace.clone())
    };
    let here: Vec<_> = named
        .iter()
        .filter(|s| source_namespace(s) == object.namespace)
        .collect();
    if here.is_empty() {
        let namespaces: Vec<String> = named.iter().map(source_namespace).collect();
        return Err((
            "namespace",
            format!(
                "the event's namespace {} is not the sources' ({})",
                object.namespace,
                namespaces.join(", ")
            ),
        ));
    }
    let allowed: Vec<_> = here
        .iter()
        .filter(|_| !options.no_cross_namespace_refs || object.namespace == key.namespace)
        .collect();
    if allowed.is_empty() {
        return Err((
            "cross-namespace",
            format!(
                "the source is in namespace {}, another than the Alert's, and \
                 --no-cross-namespace-refs blocks it",
                object.namespace
            ),
        ));
    }
    let labels = snapshot.labels.get(&(
        object.kind.clone(),
        ObjectKey::new(object.namespace.as_str(), object.name.as_str()),
    ));
    let mut wanted_labels = None;
    for source in &allowed {
        match source.match_labels.as_ref().filter(|m| !m.is_empty()) {
            None => return Ok(()),
            Some(wanted) if labels_match(wanted, labels) => return Ok(()),
            Some(wanted) => wanted_labels = Some(wanted),
        }
    }
    let wanted = wanted_labels.map(describe_labels).unwrap_or_default();
    Err((
        "matchLabels",
        match labels {
            Some(labels) => format!(
                "the object's labels ({}) do not have matchLabels {wanted}",
                describe_labels(labels)
            ),
            None if from_cluster(snapshot) => format!(
                "matchLabels {wanted}: the object's labels could not be read from the cluster"
            ),
            None => format!(
                "matchLabels {wanted}: the object's labels are unknown (it is not among the manifests)"
            ),
        },
    ))
}

fn labels_match(
    wanted: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    labels.is_some_and(|labels| wanted.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

fn describe_labels(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", pairs.join(", "))
}

fn describe_severities(filter: &SeverityFilter, defaulted: bool) -> String {
    let text = match filter {
        SeverityFilter::AtLeast(s) => format!("{} (and above)", s.as_str()),
        SeverityFilter::Exactly(list) => {
            let names: Vec<&str> = list.iter().map(|s| s.as_str()).collect();
            format!("[{}]", names.join(", "))
        }
    };
    if defaulted {
        format!("{text}, the default (--default-event-severity)")
    } else {
        text
    }
}

/// The inclusion and exclusion lists, pattern by pattern, as Go reads them.
fn match_message(alert: &Alert, key: &ObjectKey, message: &str) -> Option<Explanation> {
    let matching = |patterns: &[String]| {
        patterns.iter().enumerate().find_map(|(i, pattern)| {
            goregex::compile(pattern)
                .ok()?
                .is_match(message)
                .then_some((i, pattern.clone()))
        })
    };
    if let Some(inclusion) = alert
        .spec
        .inclusion_list
        .as_deref()
        .filter(|l| !l.is_empty())
        && matching(inclusion).is_none()
    {
        return Some(Explanation::failed(
            key,
            "inclusionList",
            "the message matches no inclusionList pattern".into(),
        ));
    }
    let exclusion = alert.spec.exclusion_list.as_deref().unwrap_or_default();
    let (i, pattern) = matching(exclusion)?;
    Some(Explanation::failed(
        key,
        "exclusionList",
        format!("the message matches exclusionList[{i}] {pattern:?}"),
    ))
}
