//! Building a routing table from a snapshot, and every validation the
//! controller applies to Alerts and Providers (what `herald check` reports).

use std::collections::HashMap;
use std::sync::Arc;

use regex::RegexSet;

use super::{CompiledAlert, Destination, RoutingTable, SourceRoute, TableOptions};
use crate::api::{Alert, MessageTemplate};
use crate::source::{Kind, Level, ObjectKey, Origin, Problem, Snapshot};
use crate::template::CompiledTemplate;

/// The kinds Flux's controllers send events about (Flux's Alert CRD enum).
const FLUX_KINDS: [&str; 12] = [
    "Bucket",
    "GitRepository",
    "Kustomization",
    "HelmRelease",
    "HelmChart",
    "HelmRepository",
    "ImageRepository",
    "ImagePolicy",
    "ImageUpdateAutomation",
    "OCIRepository",
    "ArtifactGenerator",
    "ExternalArtifact",
];

/// Builds the table and lists every problem found on the way. Broken objects
/// are left out of the table; everything else still routes.
pub fn build(snapshot: &Snapshot, options: &TableOptions) -> (RoutingTable, Vec<Problem>) {
    let mut problems = Vec::new();
    let destinations = resolve_providers(snapshot, &mut problems);
    let mut table = RoutingTable {
        labels: snapshot.labels.clone(),
        ..Default::default()
    };
    let mut regexes = RegexCache::default();
    for loaded in &snapshot.alerts {
        let mut report = |level, reason, message: String| {
            problems.push(problem(
                &loaded.origin,
                Kind::Alert,
                &loaded.object,
                level,
                reason,
                message,
            ));
        };
        let Some(alert) = compile_alert(
            &loaded.object,
            &destinations,
            options,
            &mut regexes,
            &mut report,
        ) else {
            continue;
        };
        table.alert_count += 1;
        for (i, source) in loaded.object.spec.event_sources.iter().enumerate() {
            if !FLUX_KINDS.contains(&source.kind.as_str()) {
                report(
                    Level::Warning,
                    "UnknownKind",
                    format!(
                        "spec.eventSources[{i}].kind: '{}' is not a kind Flux sends events about \
                         (expected one of {}); it will match nothing unless something else sends such events",
                        source.kind,
                        FLUX_KINDS.join(", ")
                    ),
                );
            }
            let namespace = source
                .namespace
                .clone()
                .unwrap_or_else(|| alert.key.namespace.clone());
            if options.no_cross_namespace_refs && namespace != alert.key.namespace {
                report(
                    Level::Error,
                    "AccessDenied",
                    format!(
                        "spec.eventSources[{i}].namespace: '{namespace}' is another namespace, \
                         and cross-namespace references are disabled (--no-cross-namespace-refs)"
                    ),
                );
                continue;
            }
            let routes = table
                .index
                .entry(namespace)
                .or_default()
                .entry(source.kind.clone())
                .or_default();
            let route = SourceRoute {
                match_labels: source.match_labels.clone(),
                alert: alert.clone(),
            };
            match source.name.as_str() {
                "*" => routes.any_name.push(route),
                exact => routes
                    .by_name
                    .entry(exact.to_owned())
                    .or_default()
                    .push(route),
            }
        }
    }
    (table, problems)
}

/// What became of each Provider.
enum ProviderState {
    Ready(Arc<Destination>),
    Suspended,
    Broken,
}

fn resolve_providers(
    snapshot: &Snapshot,
    problems: &mut Vec<Problem>,
) -> HashMap<ObjectKey, ProviderState> {
    // A fixed hasher: a destination keeps its queue across table rebuilds,
    // so notifications accepted before and after a reload stay in order.
    let hasher =
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
    snapshot
        .providers
        .iter()
        .map(|loaded| {
            let provider = &loaded.object;
            let key = object_key(
                provider.metadata.namespace.as_deref(),
                provider.metadata.name.as_deref(),
            );
            let state = if provider.spec.suspend == Some(true) {
                problems.push(problem(
                    &loaded.origin,
                    Kind::Provider,
                    provider,
                    Level::Note,
                    "Suspended",
                    "spec.suspend is true: nothing is delivered through this provider".into(),
                ));
                ProviderState::Suspended
            } else {
                match super::provider::resolve(provider, &key, snapshot, &hasher) {
                    Ok(super::provider::Resolved {
                        destination,
                        warnings,
                    }) => {
                        for warning in warnings {
                            problems.push(problem(
                                &loaded.origin,
                                Kind::Provider,
                                provider,
                                Level::Warning,
                                "Warning",
                                warning,
                            ));
                        }
                        ProviderState::Ready(Arc::new(destination))
                    }
                    Err(failures) => {
                        for (reason, message) in failures {
                            problems.push(problem(
                                &loaded.origin,
                                Kind::Provider,
                                provider,
                                Level::Error,
                                reason,
                                message,
                            ));
                        }
                        ProviderState::Broken
                    }
                }
            };
            (key, state)
        })
        .collect()
}

/// Validates an Alert and, when its Provider is ready, compiles it. The
/// Alert's own fields are checked first, so `herald check` and the status
/// report every problem in one run even when the Provider is broken too.
fn compile_alert(
    alert: &Alert,
    destinations: &HashMap<ObjectKey, ProviderState>,
    options: &TableOptions,
    regexes: &mut RegexCache,
    report: &mut impl FnMut(Level, &'static str, String),
) -> Option<Arc<CompiledAlert>> {
    let key = object_key(
        alert.metadata.namespace.as_deref(),
        alert.metadata.name.as_deref(),
    );
    let spec = &alert.spec;
    if spec.event_sources.is_empty() {
        report(
            Level::Error,
            "InvalidSpec",
            "spec.eventSources is empty: the Alert can never match".into(),
        );
    }
    let inclusion = regexes.compile("spec.inclusionList", spec.inclusion_list.as_deref(), report);
    let exclusion = regexes.compile("spec.exclusionList", spec.exclusion_list.as_deref(), report);
    let provider_key = ObjectKey::new(key.namespace.as_str(), spec.provider_ref.name.as_str());
    let destination = match destinations.get(&provider_key) {
        Some(ProviderState::Ready(destination)) => Some(destination.clone()),
        Some(ProviderState::Suspended) => {
            report(
                Level::Note,
                "ProviderSuspended",
                format!("spec.providerRef: provider {provider_key} is suspended"),
            );
            None
        }
        Some(ProviderState::Broken) => {
            report(
                Level::Note,
                "ProviderNotReady",
                format!("spec.providerRef: provider {provider_key} is not ready"),
            );
            None
        }
        None => {
            report(
                Level::Error,
                "ProviderNotFound",
                format!("spec.providerRef: provider {provider_key} not found"),
            );
            None
        }
    };
    let template = compile_template(spec.template.as_ref(), destination.as_deref(), report);
    let destination = destination?;
    if spec.suspend == Some(true) {
        report(
            Level::Note,
            "Suspended",
            "spec.suspend is true: events are not routed".into(),
        );
        return None;
    }
    let severities = spec
        .event_severity
        .clone()
        .unwrap_or(crate::api::SeverityFilter::AtLeast(
            options.default_severity,
        ))
        .mask();
    let channel = spec.channel.clone().filter(|c| !c.is_empty());
    Some(Arc::new(CompiledAlert {
        template,
        inclusion,
        exclusion,
        route: Arc::new(super::provider::route(key.clone(), channel, &destination)),
        key,
        destination,
        event_metadata: spec.event_metadata.clone().unwrap_or_default(),
        summary: spec.summary.clone(),
        severities,
    }))
}

/// Compiled regex sets, shared between Alerts with the same list: Alerts
/// are often copies of each other, and a compiled set costs kilobytes.
#[derive(Default)]
struct RegexCache {
    /// Why a pattern does not compile (`None`: it does).
    errors: HashMap<String, Option<String>>,
    sets: HashMap<Vec<String>, Arc<RegexSet>>,
}

impl RegexCache {
    /// Compiles the valid patterns into one set. As in Flux, an invalid
    /// pattern is reported and skipped (an inclusion list of only invalid
    /// patterns matches nothing).
    fn compile(
        &mut self,
        field: &str,
        patterns: Option<&[String]>,
        report: &mut impl FnMut(Level, &'static str, String),
    ) -> Option<Arc<RegexSet>> {
        let patterns = patterns.filter(|p| !p.is_empty())?;
        let mut valid = Vec::with_capacity(patterns.len());
        for (i, pattern) in patterns.iter().enumerate() {
            let error = self.errors.entry(pattern.clone()).or_insert_with(|| {
                regex::Regex::new(pattern)
                    .err()
                    .map(|e| e.to_string().lines().last().unwrap_or("").trim().to_owned())
            });
            match error {
                None => valid.push(pattern.clone()),
                Some(detail) => report(
                    Level::Error,
                    "InvalidRegex",
                    format!("{field}[{i}]: invalid regular expression {pattern:?}: {detail}"),
                ),
            }
        }
        let set = self.sets.entry(valid).or_insert_with_key(|valid| {
            // A set of patterns that each compiled also compiles.
            Arc::new(RegexSet::new(valid).unwrap_or_else(|_| RegexSet::empty()))
        });
        Some(set.clone())
    }
}

/// Compiles an Alert's template. A syntax error is reported and the Alert
/// keeps routing with the default format.
fn compile_template(
    spec: Option<&MessageTemplate>,
    destination: Option<&Destination>,
    report: &mut impl FnMut(Level, &'static str, String),
) -> Option<CompiledTemplate> {
    let template = match CompiledTemplate::compile(spec?) {
        Ok(template) => template,
        Err(errors) => {
            for error in errors {
                report(
                    Level::Error,
                    "InvalidTemplate",
                    format!(
                        "{}: {} (the default format is sent instead)",
                        error.field, error.message
                    ),
                );
            }
            return None;
        }
    };
    let kind = destination.map(|d| d.kind);
    let slack = kind.is_none_or(|k| k == crate::api::ProviderType::Slack);
    if template.has_thread_key() && !slack {
        report(
            Level::Warning,
            "ThreadsNotSupported",
            "spec.template.threadKey: only Slack groups notifications into threads; \
             the key is ignored for this provider type"
                .into(),
        );
    } else if template.has_thread_key()
        && destination.is_some_and(|d| !d.notifier.supports_threads())
    {
        report(
            Level::Warning,
            "ThreadsNeedBotToken",
            "spec.template.threadKey: threads need a Slack bot token (chat.postMessage); \
             with an incoming webhook the key is ignored"
                .into(),
        );
    }
    if template.has_blocks() && !slack {
        report(
            Level::Warning,
            "BlocksNotSupported",
            "spec.template.blocks: Block Kit is Slack's; the blocks are ignored for this provider type \
             (spec.template.text is sent)"
                .into(),
        );
    }
    Some(template)
}

fn object_key(namespace: Option<&str>, name: Option<&str>) -> ObjectKey {
    ObjectKey::new(namespace.unwrap_or("default"), name.unwrap_or(""))
}

fn problem<K: kube::Resource>(
    origin: &Origin,
    kind: Kind,
    object: &K,
    level: Level,
    reason: &'static str,
    message: String,
) -> Problem {
    let meta = object.meta();
    let key = object_key(meta.namespace.as_deref(), meta.name.as_deref());
    Problem {
        level,
        origin: origin.clone(),
        object: format!("{kind:?} {key}"),
        target: Some((kind, key)),
        reason,
        message,
    }
}
