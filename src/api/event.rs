//! The event Flux's controllers POST to the notification-controller.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::severity::Severity;

/// A Flux event (`fluxcd/pkg/apis/event/v1.Event`). Fields herald does not
/// read are kept only as far as templates and `herald route` show them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FluxEvent {
    pub involved_object: InvolvedObject,
    /// Flux's event API v1: a secondary object of the event, when it has
    /// one; kept, forwarded where the event's JSON is, shown to templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related_object: Option<InvolvedObject>,
    pub severity: Severity,
    #[serde(default)]
    pub timestamp: String,
    pub message: String,
    pub reason: String,
    /// Flux's event API v1: what was done or failed (`Starting`,
    /// `Syncing`, …); kept and forwarded when the sender sets it (an event
    /// of API v1beta1 has none, and its JSON stays as Flux v1.9.3 sends it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub action: String,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "bounded_metadata"
    )]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub reporting_controller: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reporting_instance: String,
}

/// The object an event is about.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvolvedObject {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
}

impl InvolvedObject {
    /// The API group of the object (`kustomize.toolkit.fluxcd.io` for
    /// `kustomize.toolkit.fluxcd.io/v1`; empty for the core group).
    pub fn group(&self) -> &str {
        match self.api_version.split_once('/') {
            Some((group, _)) => group,
            None => "",
        }
    }
}

/// Most metadata keys an event may carry (Flux's controllers send a handful).
pub const MAX_METADATA_KEYS: usize = 256;
/// Longest metadata key, in bytes (a Kubernetes annotation key is at most 316).
pub const MAX_METADATA_KEY_BYTES: usize = 1024;
/// Longest metadata value, in bytes.
pub const MAX_METADATA_VALUE_BYTES: usize = 64 * 1024;

/// Reads `metadata`, refusing it as soon as it passes a cap, so a hostile
/// body cannot make herald hold hundreds of thousands of small strings.
fn bounded_metadata<'de, D>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Bounded;
    impl<'de> serde::de::Visitor<'de> for Bounded {
        type Value = BTreeMap<String, String>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of strings")
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }

        fn visit_map<A>(self, mut map: A) -> Result<Self::Value, A::Error>
        where
            A: serde::de::MapAccess<'de>,
        {
            use serde::de::Error;
            let mut metadata = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<String, String>()? {
                if metadata.len() >= MAX_METADATA_KEYS {
                    return Err(A::Error::custom(format_args!(
                        "metadata has more than {MAX_METADATA_KEYS} keys"
                    )));
                }
                if key.len() > MAX_METADATA_KEY_BYTES {
                    return Err(A::Error::custom(format_args!(
                        "a metadata key is longer than {MAX_METADATA_KEY_BYTES} bytes"
                    )));
                }
                if value.len() > MAX_METADATA_VALUE_BYTES {
                    return Err(A::Error::custom(format_args!(
                        "metadata value of {key:?} is longer than {MAX_METADATA_VALUE_BYTES} bytes"
                    )));
                }
                metadata.insert(key, value);
            }
            Ok(metadata)
        }
    }
    deserializer.deserialize_any(Bounded)
}

/// Why an event body was refused; the text is sent back with the 400.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EventError {
    #[error("invalid event JSON: {0}")]
    Json(String),
    #[error("event is missing {0}")]
    Missing(&'static str),
}

impl FluxEvent {
    /// Parses and validates a request body.
    pub fn from_json(body: &[u8]) -> Result<Self, EventError> {
        let event: FluxEvent =
            serde_json::from_slice(body).map_err(|e| EventError::Json(e.to_string()))?;
        event.validate()?;
        Ok(event)
    }

    fn validate(&self) -> Result<(), EventError> {
        let required = [
            (self.involved_object.kind.as_str(), "involvedObject.kind"),
            (&self.involved_object.name, "involvedObject.name"),
            (&self.involved_object.namespace, "involvedObject.namespace"),
            (&self.message, "message"),
            (&self.reason, "reason"),
        ];
        match required.into_iter().find(|(value, _)| value.is_empty()) {
            Some((_, field)) => Err(EventError::Missing(field)),
            None => Ok(()),
        }
    }

    /// `<kind>/<namespace>/<name>`, as `herald route` and logs name the event.
    pub fn object_ref(&self) -> String {
        let o = &self.involved_object;
        format!("{}/{}/{}", o.kind, o.namespace, o.name)
    }
}

/// A Kustomization event for unit tests, with metadata pairs.
#[cfg(test)]
pub(crate) fn sample(
    kind: &str,
    name: &str,
    severity: Severity,
    message: &str,
    metadata: &[(&str, &str)],
) -> FluxEvent {
    FluxEvent {
        involved_object: InvolvedObject {
            api_version: "kustomize.toolkit.fluxcd.io/v1".into(),
            kind: kind.into(),
            name: name.into(),
            namespace: "flux-system".into(),
            ..Default::default()
        },
        related_object: None,
        severity,
        timestamp: String::new(),
        message: message.into(),
        reason: "Reason".into(),
        action: String::new(),
        metadata: metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        reporting_controller: "kustomize-controller".into(),
        reporting_instance: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fixture_shape() {
        let body = br#"{"involvedObject":{"apiVersion":"kustomize.toolkit.fluxcd.io/v1","kind":"Kustomization","name":"a","namespace":"b"},
            "severity":"error","message":"m","reason":"r","metadata":{"k":"v"},"reportingController":"kc"}"#;
        let event = FluxEvent::from_json(body).expect("valid");
        assert_eq!(event.severity, Severity::Error);
        assert_eq!(event.involved_object.group(), "kustomize.toolkit.fluxcd.io");
        assert_eq!(event.object_ref(), "Kustomization/b/a");
    }

    #[test]
    fn names_the_missing_field() {
        let body = br#"{"involvedObject":{"kind":"Kustomization","name":"a"},"severity":"info","message":"m","reason":"r"}"#;
        assert_eq!(
            FluxEvent::from_json(body),
            Err(EventError::Missing("involvedObject.namespace"))
        );
        let body = br#"{"involvedObject":{"kind":"K","name":"a","namespace":"n"},"severity":"info","message":"m"}"#;
        assert!(
            matches!(FluxEvent::from_json(body), Err(EventError::Json(m)) if m.contains("reason"))
        );
    }

    /// Random mutations of a valid body never panic the parser.
    #[test]
    fn mutated_bodies_never_panic() {
        use rand::{Rng, SeedableRng};
        let valid = br#"{"involvedObject":{"apiVersion":"a/v1","kind":"K","name":"n","namespace":"ns"},"severity":"error","message":"m\u00e9","reason":"r","metadata":{"a/b":"c"}}"#;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let mut body = valid.to_vec();
            for _ in 0..rng.random_range(1..8) {
                let at = rng.random_range(0..body.len());
                match rng.random_range(0..3) {
                    0 => body[at] = rng.random(),
                    1 => body.insert(at, rng.random()),
                    _ => {
                        body.remove(at);
                    }
                }
                if body.is_empty() {
                    break;
                }
            }
            let _ = FluxEvent::from_json(&body);
        }
    }

    fn with_metadata(metadata: &str) -> Vec<u8> {
        format!(
            r#"{{"involvedObject":{{"kind":"K","name":"a","namespace":"n"}},"severity":"info","message":"m","reason":"r","metadata":{metadata}}}"#
        )
        .into_bytes()
    }

    /// Metadata is capped while parsing: key count, key and value length.
    #[test]
    fn metadata_is_bounded() {
        let at_cap: Vec<String> = (0..MAX_METADATA_KEYS)
            .map(|i| format!(r#""k{i}":"v""#))
            .collect();
        let body = with_metadata(&format!("{{{}}}", at_cap.join(",")));
        assert_eq!(
            FluxEvent::from_json(&body)
                .expect("at the cap")
                .metadata
                .len(),
            MAX_METADATA_KEYS
        );
        let over: Vec<String> = (0..=MAX_METADATA_KEYS)
            .map(|i| format!(r#""k{i}":"v""#))
            .collect();
        let error = FluxEvent::from_json(&with_metadata(&format!("{{{}}}", over.join(","))))
            .expect_err("over the cap");
        assert!(error.to_string().contains("more than 256 keys"), "{error}");
        let long_key = "k".repeat(MAX_METADATA_KEY_BYTES + 1);
        assert!(FluxEvent::from_json(&with_metadata(&format!(r#"{{"{long_key}":"v"}}"#))).is_err());
        let long_value = "v".repeat(MAX_METADATA_VALUE_BYTES + 1);
        let error = FluxEvent::from_json(&with_metadata(&format!(r#"{{"k":"{long_value}"}}"#)))
            .expect_err("value too long");
        assert!(error.to_string().contains("\"k\""), "{error}");
        assert!(FluxEvent::from_json(&with_metadata("null")).is_ok());
        assert!(FluxEvent::from_json(&with_metadata(r#"{"k":1}"#)).is_err());
    }

    #[test]
    fn rejects_garbage_and_deep_nesting() {
        assert!(FluxEvent::from_json(b"\xff\xfe garbage").is_err());
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(FluxEvent::from_json(deep.as_bytes()).is_err());
        let bad_severity = br#"{"involvedObject":{"kind":"K","name":"a","namespace":"n"},"severity":"fatal","message":"m","reason":"r"}"#;
        assert!(FluxEvent::from_json(bad_severity).is_err());
    }
}
