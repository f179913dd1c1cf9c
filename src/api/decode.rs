//! Decoding one object at a time (DESIGN §3.15).
//!
//! The API server keeps whatever its schema accepted when an object was
//! written, and a schema may have been looser then (Flux's CRDs, an older
//! herald's, a CRD installed without validation). A list or watch that is
//! decoded as a whole fails on one such object and takes every other with
//! it. So herald lists and watches [`Decoded`] objects: each is decoded on
//! its own, and one that does not fit herald's types is kept as
//! [`Undecodable`] — its name, its status and what is wrong with it — to be
//! reported on that object alone while everything else keeps working.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// The longest offending value quoted in a message, in characters.
const MAX_QUOTED: usize = 80;

/// Fields whose values are never quoted: they may hold a credential
/// (a webhook URL with its token in the path, a proxy with a password).
const UNQUOTED_FIELDS: [&str; 7] = [
    "address", "proxy", "url", "token", "password", "headers", "data",
];

/// Why an object does not decode: the field, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// The field's path, e.g. `spec.eventSeverity` or `spec.eventSources[1].kind`;
    /// empty when the object as a whole is wrong.
    pub field: String,
    /// What is wrong, with the offending value quoted when it is safe to.
    pub message: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes `value` as a `T`, naming the failing field and its value.
pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize::<_, T>(value)
        .map_err(|error| decode_error(value, error.path(), error.inner()))
}

/// [`from_value`], also listing the fields `T` does not have (paths such
/// as `spec.eventSources[0].nmae`): serde skips them silently, and a
/// misspelt field is a filter that is silently not applied.
pub fn from_value_noting_unknown<T: DeserializeOwned>(
    value: &Value,
) -> Result<(T, Vec<String>), DecodeError> {
    let mut unknown = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let tracked = serde_path_to_error::Deserializer::new(value, &mut track);
    match serde_ignored::deserialize(tracked, |path| unknown.push(field_path(&path))) {
        Ok(object) => Ok((object, unknown)),
        Err(error) => Err(decode_error(value, &track.path(), &error)),
    }
}

/// `spec.eventSources[0].nmae` from serde_ignored's path.
fn field_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => match field_path(parent) {
            parent if parent.is_empty() => key.clone(),
            parent => format!("{parent}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

fn decode_error(
    value: &Value,
    path: &serde_path_to_error::Path,
    inner: &serde_json::Error,
) -> DecodeError {
    let field = match path.to_string() {
        dot if dot == "." => String::new(),
        path => path,
    };
    let mut message = inner.to_string();
    if let Some(shown) = offending_value(value, path).filter(|v| !message.contains(v.as_str())) {
        message = format!("{message} (got {shown})");
    }
    DecodeError { field, message }
}

/// The known field closest to a misspelt one at `path`, among its
/// siblings in `schema` (an OpenAPI schema such as a CRD's): `exclusionlist`
/// → `exclusionList`, `eventSource` → `eventSources`.
pub fn closest_field(schema: &Value, path: &str) -> Option<String> {
    let mut node = schema;
    let segments: Vec<&str> = path.split('.').collect();
    let (last, parents) = segments.split_last()?;
    for segment in parents {
        let (name, indexed) = match segment.split_once('[') {
            Some((name, _)) => (name, true),
            None => (*segment, false),
        };
        node = node.get("properties")?.get(name)?;
        if indexed {
            node = node.get("items")?;
        }
    }
    let wanted = last.split('[').next().unwrap_or(last).to_lowercase();
    node.get("properties")?
        .as_object()?
        .keys()
        .map(|known| {
            (
                strsim::normalized_damerau_levenshtein(&wanted, &known.to_lowercase()),
                known,
            )
        })
        .filter(|(likeness, _)| *likeness >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, known)| known.clone())
}

/// The value at `path` as compact JSON, shortened, unless it is missing,
/// sits under a field that may hold a credential, or serde's message
/// already quotes it.
fn offending_value(root: &Value, path: &serde_path_to_error::Path) -> Option<String> {
    use serde_path_to_error::Segment;
    let mut node = root;
    for segment in path.iter() {
        node = match segment {
            Segment::Map { key } => {
                if UNQUOTED_FIELDS.contains(&key.as_str()) {
                    return None;
                }
                node.get(key)?
            }
            Segment::Seq { index } => node.get(index)?,
            Segment::Enum { .. } | Segment::Unknown => return None,
        };
    }
    if node.is_object() && node.as_object().is_some_and(|m| m.is_empty()) {
        return Some("{}".to_owned());
    }
    let text = node.to_string();
    Some(shorten(&text))
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// An object as listed or watched: decoded, or kept with why it is not.
#[derive(Clone, Debug)]
pub enum Decoded<K> {
    Valid(Arc<K>),
    Invalid(Arc<Undecodable>),
}

/// An object that does not fit herald's types: enough of it to report on
/// it (name, generation, its current status) and what is wrong.
#[derive(Clone, Debug)]
pub struct Undecodable {
    pub metadata: ObjectMeta,
    pub status: Option<CommonStatus>,
    pub error: DecodeError,
}

/// The part of a status every kind herald serves has.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CommonStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
    pub observed_generation: Option<i64>,
}

impl<K> Decoded<K> {
    /// The decoded object, if it decoded.
    pub fn valid(&self) -> Option<&Arc<K>> {
        match self {
            Self::Valid(object) => Some(object),
            Self::Invalid(_) => None,
        }
    }

    /// Why it did not decode, if it did not.
    pub fn invalid(&self) -> Option<&Arc<Undecodable>> {
        match self {
            Self::Valid(_) => None,
            Self::Invalid(undecodable) => Some(undecodable),
        }
    }
}

impl<K: DeserializeOwned> Decoded<K> {
    /// Decodes one object. Never fails: what does not decode is kept as
    /// [`Undecodable`] with whatever of its metadata and status can be read.
    pub fn from_value(value: Value) -> Self {
        match from_value::<K>(&value) {
            Ok(object) => Self::Valid(Arc::new(object)),
            Err(error) => {
                let metadata = value
                    .get("metadata")
                    .and_then(|m| ObjectMeta::deserialize(m).ok())
                    .unwrap_or_default();
                let status = value
                    .get("status")
                    .and_then(|s| CommonStatus::deserialize(s).ok());
                Self::Invalid(Arc::new(Undecodable {
                    metadata,
                    status,
                    error,
                }))
            }
        }
    }
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for Decoded<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(Self::from_value)
    }
}

impl<K> Resource for Decoded<K>
where
    K: Resource<DynamicType = ()> + Clone,
{
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        match self {
            Self::Valid(object) => object.meta(),
            Self::Invalid(undecodable) => &undecodable.metadata,
        }
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        // Called before the object is shared (the watcher's `modify`), so
        // neither copies.
        match self {
            Self::Valid(object) => Arc::make_mut(object).meta_mut(),
            Self::Invalid(undecodable) => &mut Arc::make_mut(undecodable).metadata,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Alert, Provider};
    use serde_json::json;

    fn alert(spec: Value) -> Value {
        json!({
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
            "kind": "Alert",
            "metadata": {"name": "a", "namespace": "ns", "generation": 3},
            "spec": spec,
            "status": {"observedGeneration": 2, "conditions": []}
        })
    }

    #[test]
    fn a_bad_field_is_named_with_its_value() {
        let value = alert(json!({
            "providerRef": {"name": "slack"},
            "eventSources": [{"kind": "Kustomization", "name": "*"}],
            "eventSeverity": "erorr"
        }));
        let Decoded::<Alert>::Invalid(bad) = Decoded::from_value(value) else {
            panic!("decoded");
        };
        assert_eq!(bad.error.field, "spec.eventSeverity");
        assert!(bad.error.message.contains("\"erorr\""), "{}", bad.error);
        assert_eq!(bad.metadata.name.as_deref(), Some("a"));
        assert_eq!(bad.metadata.generation, Some(3));
        assert_eq!(bad.status.as_ref().unwrap().observed_generation, Some(2));
    }

    #[test]
    fn every_shape_of_bad_severity_is_named() {
        for severity in [
            json!(5),
            json!({"a": 1}),
            json!(["info", "erorr"]),
            json!([]),
        ] {
            let value = alert(json!({
                "providerRef": {"name": "slack"},
                "eventSources": [],
                "eventSeverity": severity
            }));
            let error = from_value::<Alert>(&value).expect_err("must not decode");
            assert!(
                error.field.starts_with("spec.eventSeverity"),
                "{severity}: {error}"
            );
        }
    }

    #[test]
    fn credentials_are_never_quoted() {
        let value = json!({
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
            "kind": "Provider",
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"type": "slack", "address": {"secret": "https://hooks.slack.com/services/T/B/XYZ"}}
        });
        let error = from_value::<Provider>(&value).expect_err("must not decode");
        assert_eq!(error.field, "spec.address");
        assert!(!error.to_string().contains("XYZ"), "{error}");
    }

    #[test]
    fn long_values_are_shortened() {
        let long = "x".repeat(10_000);
        let value =
            alert(json!({"providerRef": {"name": "s"}, "eventSources": [], "eventSeverity": long}));
        let error = from_value::<Alert>(&value).expect_err("must not decode");
        assert!(error.to_string().len() < 400, "{error}");
    }
}
