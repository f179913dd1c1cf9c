//! Event metadata cleanup and per-notification merge (DESIGN §3.5).

use std::collections::BTreeMap;

use crate::api::FluxEvent;

/// Prefix of the metadata keys Flux's event recorder itself sets.
pub const EVENT_GROUP: &str = "event.toolkit.fluxcd.io";

/// Object-group keys that are dropped: they are noise or credentials.
const DROPPED_OBJECT_KEYS: [&str; 3] = ["checksum", "digest", "token"];

/// Keeps only keys prefixed with the event group or the involved object's
/// group, minus the object group's checksum, digest and token.
pub fn clean(event: &mut FluxEvent) {
    let group = event.involved_object.group().to_owned();
    event.metadata.retain(|key, _| match key.split_once('/') {
        Some((prefix, name)) if prefix == EVENT_GROUP => !name.is_empty(),
        Some((prefix, name)) if !group.is_empty() && prefix == group => {
            !name.is_empty() && !DROPPED_OBJECT_KEYS.contains(&name)
        }
        _ => false,
    });
}

/// The metadata of one notification, prefixes stripped, from lowest to
/// highest precedence: event-group keys, the Alert's `eventMetadata`, the
/// Alert's `summary`, object-group keys. Expects an event already [`clean`]ed.
pub fn merge(
    event: &FluxEvent,
    alert_metadata: &BTreeMap<String, String>,
    summary: Option<&str>,
) -> BTreeMap<String, String> {
    let group = event.involved_object.group();
    let stripped = |wanted: &str| -> Vec<(String, String)> {
        event
            .metadata
            .iter()
            .filter_map(|(key, value)| match key.split_once('/') {
                Some((prefix, name)) if prefix == wanted => Some((name.to_owned(), value.clone())),
                _ => None,
            })
            .collect()
    };
    let mut merged: BTreeMap<String, String> = stripped(EVENT_GROUP).into_iter().collect();
    merged.extend(alert_metadata.iter().map(|(k, v)| (k.clone(), v.clone())));
    if let Some(summary) = summary.filter(|s| !s.is_empty()) {
        merged.insert("summary".to_owned(), summary.to_owned());
    }
    if !group.is_empty() && group != EVENT_GROUP {
        merged.extend(stripped(group));
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Severity;

    fn event(metadata: &[(&str, &str)]) -> FluxEvent {
        crate::api::event::sample("Kustomization", "app", Severity::Info, "m", metadata)
    }

    #[test]
    fn cleanup_keeps_event_and_object_group_only() {
        let mut e = event(&[
            ("kustomize.toolkit.fluxcd.io/revision", "main@sha1:abc"),
            ("kustomize.toolkit.fluxcd.io/checksum", "c"),
            ("kustomize.toolkit.fluxcd.io/digest", "d"),
            ("kustomize.toolkit.fluxcd.io/token", "t"),
            ("event.toolkit.fluxcd.io/summary", "s"),
            ("other.example.com/x", "y"),
            ("plain", "z"),
        ]);
        clean(&mut e);
        let keys: Vec<_> = e.metadata.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "event.toolkit.fluxcd.io/summary",
                "kustomize.toolkit.fluxcd.io/revision"
            ]
        );
    }

    #[test]
    fn merge_precedence_lowest_to_highest() {
        let mut e = event(&[
            ("event.toolkit.fluxcd.io/a", "event"),
            ("event.toolkit.fluxcd.io/b", "event"),
            ("event.toolkit.fluxcd.io/summary", "event"),
            ("event.toolkit.fluxcd.io/d", "event"),
            ("kustomize.toolkit.fluxcd.io/d", "object"),
            ("kustomize.toolkit.fluxcd.io/summary", "object"),
        ]);
        clean(&mut e);
        let alert: BTreeMap<_, _> = [
            ("b".to_owned(), "alert".to_owned()),
            ("c".to_owned(), "alert".to_owned()),
        ]
        .into();
        let merged = merge(&e, &alert, Some("alert summary"));
        assert_eq!(merged["a"], "event");
        assert_eq!(merged["b"], "alert");
        assert_eq!(merged["c"], "alert");
        assert_eq!(merged["d"], "object");
        assert_eq!(merged["summary"], "object");
        let without_object = merge(
            &event(&[("event.toolkit.fluxcd.io/summary", "event")]),
            &alert,
            Some("alert summary"),
        );
        assert_eq!(without_object["summary"], "alert summary");
    }
}
