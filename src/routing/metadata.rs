//! Event metadata cleanup and per-notification merge (DESIGN §3.5).

use std::collections::BTreeMap;

use crate::api::FluxEvent;

/// Prefix of the metadata keys Flux's event recorder itself sets.
pub const EVENT_GROUP: &str = "event.toolkit.fluxcd.io";

/// Object-group keys Flux drops as noise, compared case-insensitively
/// (Flux's `cleanupMetadata` compares whole keys with `strings.EqualFold`).
const DROPPED_OBJECT_KEYS: [&str; 2] = ["checksum", "digest"];
/// The object-group key Flux drops as internal, compared exactly (Flux's
/// `excludeInternalMetadata` deletes the one key `<group>/token`).
const DROPPED_TOKEN_KEY: &str = "token";

/// The name of `key` within `group` (`<group>/<name>`), or `None` when
/// the key is outside it. Compared in place: this runs for every key of
/// every notification.
pub fn in_group<'k>(key: &'k str, group: &str) -> Option<&'k str> {
    key.strip_prefix(group)?.strip_prefix('/')
}

/// Keeps only keys prefixed with the event group or the involved object's
/// group (`<group>/`, which for the core group is a bare `/`, as in Flux),
/// minus the object group's checksum, digest and token.
pub fn clean(event: &mut FluxEvent) {
    let group = event.involved_object.group();
    event.metadata.retain(|key, _| {
        if let Some(name) = in_group(key, group) {
            let dropped = DROPPED_OBJECT_KEYS
                .iter()
                .any(|d| d.eq_ignore_ascii_case(name))
                || name == DROPPED_TOKEN_KEY;
            return !dropped;
        }
        in_group(key, EVENT_GROUP).is_some()
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
    fn stripped<'a>(
        event: &'a FluxEvent,
        wanted: &'a str,
    ) -> impl Iterator<Item = (String, String)> + 'a {
        event.metadata.iter().filter_map(move |(key, value)| {
            let name = in_group(key, wanted)?;
            Some((name.to_owned(), value.clone()))
        })
    }
    let mut merged: BTreeMap<String, String> = stripped(event, EVENT_GROUP).collect();
    merged.extend(alert_metadata.iter().map(|(k, v)| (k.clone(), v.clone())));
    if let Some(summary) = summary.filter(|s| !s.is_empty()) {
        merged.insert("summary".to_owned(), summary.to_owned());
    }
    if group != EVENT_GROUP {
        merged.extend(stripped(event, group));
    }
    merged
}

/// The keys [`merge`] takes from more than one source, each with its
/// sources in precedence order, as Flux names them (its
/// `MetadataAppendFailed` Event, Flux RFC 0008). Expects a [`clean`]ed
/// event.
pub fn conflicts(
    event: &FluxEvent,
    alert_metadata: &BTreeMap<String, String>,
    summary: Option<&str>,
) -> Vec<(String, Vec<&'static str>)> {
    let group = event.involved_object.group();
    let mut sources: BTreeMap<&str, Vec<&'static str>> = BTreeMap::new();
    let mut from_group = |wanted: &str, source: &'static str| {
        for key in event.metadata.keys() {
            if let Some(name) = in_group(key, wanted) {
                sources.entry(name).or_default().push(source);
            }
        }
    };
    from_group(EVENT_GROUP, "involved object annotations");
    for key in alert_metadata.keys() {
        sources
            .entry(key)
            .or_default()
            .push("Alert object .spec.eventMetadata");
    }
    if summary.is_some_and(|s| !s.is_empty()) {
        sources
            .entry("summary")
            .or_default()
            .push("Alert object .spec.summary");
    }
    if group != EVENT_GROUP {
        for key in event.metadata.keys() {
            if let Some(name) = in_group(key, group) {
                sources
                    .entry(name)
                    .or_default()
                    .push("involved object controller metadata");
            }
        }
    }
    sources
        .into_iter()
        .filter(|(_, from)| from.len() > 1)
        .map(|(key, from)| (key.to_owned(), from))
        .collect()
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

    /// Flux v1.9.3 `cleanupMetadata`: checksum and digest are dropped
    /// whatever their case; `excludeInternalMetadata`: only the exact
    /// `<group>/token` key is dropped.
    #[test]
    fn flux_drops_checksum_and_digest_in_any_case_and_token_exactly() {
        let mut e = event(&[
            ("kustomize.toolkit.fluxcd.io/Checksum", "c"),
            ("kustomize.toolkit.fluxcd.io/DIGEST", "d"),
            ("kustomize.toolkit.fluxcd.io/token", "t"),
            ("kustomize.toolkit.fluxcd.io/Token", "kept"),
            ("kustomize.toolkit.fluxcd.io/revision", "r"),
        ]);
        clean(&mut e);
        let keys: Vec<_> = e.metadata.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "kustomize.toolkit.fluxcd.io/Token",
                "kustomize.toolkit.fluxcd.io/revision"
            ]
        );
    }

    /// Flux v1.9.3: the object-group prefix of a core-group object is a
    /// bare `/`, so such keys are kept and stripped like any other group's.
    #[test]
    fn flux_keeps_core_group_keys_with_a_bare_slash() {
        let mut e = event(&[("/revision", "r"), ("revision", "dropped")]);
        e.involved_object.api_version = "v1".into();
        clean(&mut e);
        assert_eq!(e.metadata.keys().collect::<Vec<_>>(), ["/revision"]);
        let merged = merge(&e, &BTreeMap::new(), None);
        assert_eq!(merged["revision"], "r");
    }

    /// As Flux's `combineEventMetadata` reports them: each key with its
    /// sources, in precedence order.
    #[test]
    fn keys_from_more_than_one_source_are_conflicts() {
        let mut e = event(&[
            ("event.toolkit.fluxcd.io/summary", "event"),
            ("event.toolkit.fluxcd.io/only", "event"),
            ("kustomize.toolkit.fluxcd.io/summary", "object"),
            ("kustomize.toolkit.fluxcd.io/env", "object"),
        ]);
        clean(&mut e);
        let alert: BTreeMap<_, _> = [("env".to_owned(), "alert".to_owned())].into();
        assert_eq!(
            conflicts(&e, &alert, Some("alert summary")),
            [
                (
                    "env".to_owned(),
                    vec![
                        "Alert object .spec.eventMetadata",
                        "involved object controller metadata"
                    ]
                ),
                (
                    "summary".to_owned(),
                    vec![
                        "involved object annotations",
                        "Alert object .spec.summary",
                        "involved object controller metadata"
                    ]
                ),
            ]
        );
        assert!(conflicts(&e, &BTreeMap::new(), None).len() == 1);
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
