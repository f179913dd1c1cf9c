//! The standalone config source: a directory of YAML manifests.
//!
//! Every `*.yaml`/`*.yml` file under the directory (recursively) is read,
//! one document at a time, so a broken document costs only itself.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use k8s_openapi::api::core::v1::Secret;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Kind, Level, Loaded, ObjectKey, Origin, Problem, SecretData, Snapshot, secret_data};
use crate::api::Reason;
use crate::api::{Alert, Provider, Receiver};

const NOTIFICATION_GROUP: &str = "notification.toolkit.fluxcd.io/";

/// Reads every manifest under `dir`. Problems are returned beside the
/// snapshot, never instead of it.
pub fn load(dir: &Path) -> (Snapshot, Vec<Problem>) {
    let mut loader = Loader::default();
    let mut files = Vec::new();
    if let Err(e) = collect_files(dir, &mut files) {
        loader.problem(
            Origin::File {
                path: dir.to_owned(),
                document: 0,
            },
            "directory",
            Reason::ManifestUnreadable,
            format!("cannot read directory: {e}"),
        );
    }
    for path in files {
        match std::fs::read_to_string(&path) {
            Ok(text) => loader.load_file(&path, &text),
            Err(e) => loader.problem(
                Origin::File { path, document: 0 },
                "file",
                Reason::ManifestUnreadable,
                format!("cannot read file: {e}"),
            ),
        }
    }
    (loader.snapshot, loader.problems)
}

/// Every parseable document under `dir` as JSON, with where it is, in
/// file order (numbered as [`load`] numbers them): for checks that need
/// what was written rather than what herald decodes (`check
/// --flux-compatible`). Unreadable files and documents are left out;
/// [`load`] reports them.
pub fn raw_documents(dir: &Path) -> Vec<(Origin, Value)> {
    let mut files = Vec::new();
    let _ = collect_files(dir, &mut files);
    let mut out = Vec::new();
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let documents = split_documents(&text).into_iter().filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        });
        for (index, document) in documents.enumerate() {
            if let Ok(value) = crate::yaml::parse_document(document)
                && value.is_object()
            {
                let origin = Origin::File {
                    path: path.clone(),
                    document: index,
                };
                out.push((origin, value));
            }
        }
    }
    out
}

/// Reads the manifests of one file's text, as [`load`] reads each file
/// (for `herald check`-style validation of text that is not on disk, and
/// for fuzzing).
pub fn load_text(path: &Path, text: &str) -> (Snapshot, Vec<Problem>) {
    let mut loader = Loader::default();
    loader.load_file(path, text);
    (loader.snapshot, loader.problems)
}

/// A cheap fingerprint of the directory (paths, sizes, modification times):
/// when it changes, the directory is read again.
pub fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let mut files = Vec::new();
    let _ = collect_files(dir, &mut files);
    files
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(&path).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta.and_then(|m| m.modified().ok());
            (path, len, modified)
        })
        .collect()
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            // An unreadable subdirectory is skipped, not fatal.
            let _ = collect_files(&path, out);
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// Splits a YAML stream on `---` document markers. Done by hand so that a
/// syntax error in one document does not hide the documents after it.
fn split_documents(text: &str) -> Vec<&str> {
    let mut documents = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let marker = line.trim_end();
        if marker == "---" || marker.starts_with("--- ") || marker == "..." {
            documents.push(&text[start..offset]);
            start = offset + line.len();
        }
        offset += line.len();
    }
    documents.push(&text[start..]);
    documents
}

/// Documents decoded together: large enough to share among threads, small
/// enough that a batch's decoded objects stay a few megabytes.
const DECODE_BATCH: usize = 4096;
/// Below this many documents a batch is decoded on the calling thread.
const PARALLEL_FROM: usize = 64;

/// One document, read into what herald keeps of it. Parsing and
/// deserializing are most of the cost of loading thousands of objects and
/// need nothing but the document, so they run on every core; only adding
/// to the snapshot (which finds duplicates) is done in order.
enum Decoded {
    /// An empty document (`---` alone, or only comments).
    Empty,
    /// A document that names no object, with the problem to report.
    Unnamed { reason: Reason, message: String },
    /// An object herald ignores: no name, and not of the notification group.
    Ignored,
    /// A named object: what it holds, or why it could not be read.
    Object {
        kind: String,
        key: ObjectKey,
        body: Result<Body, String>,
        /// Warnings about fields its kind does not have.
        unknown: Vec<String>,
    },
}

/// What herald keeps of an object, by kind.
enum Body {
    Alert(Box<Alert>),
    Provider(Box<Provider>),
    Receiver(Box<Receiver>),
    Secret(SecretData),
    /// Another kind: its labels, for `matchLabels`.
    Labels(BTreeMap<String, String>),
}

/// Parses and deserializes a document (on any thread).
/// A hint for the YAML mistakes manifests make most: an unquoted `*` (a
/// name wildcard) reads as an alias, an unquoted `&` as an anchor.
fn yaml_hint(error: &str) -> &'static str {
    if error.contains("anchor or alias") || error.contains("unknown anchor") {
        " (a value starting with `*` or `&` is YAML syntax: quote it, e.g. name: \"*\")"
    } else {
        ""
    }
}

fn decode(text: &str) -> Decoded {
    match crate::yaml::parse_document(text) {
        Ok(Value::Null) => Decoded::Empty,
        Ok(value) => decode_value(value),
        Err(e) => Decoded::Unnamed {
            reason: Reason::InvalidYAML,
            message: format!("invalid YAML: {e}{}", yaml_hint(&e.to_string())),
        },
    }
}

fn decode_value(value: Value) -> Decoded {
    let text = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    let metadata = value.get("metadata");
    let meta = |key: &str| {
        metadata
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let (name, mut namespace) = (meta("name"), meta("namespace"));
    if namespace.is_empty() {
        namespace = "default".to_owned();
    }
    let notification_kind = api_version.starts_with(NOTIFICATION_GROUP);
    if kind.is_empty() || name.is_empty() {
        if notification_kind || kind.is_empty() {
            let missing = if kind.is_empty() {
                "kind"
            } else {
                "metadata.name"
            };
            return Decoded::Unnamed {
                reason: Reason::InvalidManifest,
                message: format!("{missing} is missing"),
            };
        }
        return Decoded::Ignored;
    }
    if notification_kind && let Err(message) = served(&api_version, &kind) {
        return Decoded::Object {
            kind,
            key: ObjectKey::new(namespace, name),
            body: Err(message),
            unknown: Vec::new(),
        };
    }
    let mut unknown = Vec::new();
    let body = match kind.as_str() {
        "Alert" if notification_kind => typed::<Alert>(&value, schema_of::<Alert>(), &mut unknown)
            .map(|mut alert| {
                alert.metadata.namespace = Some(namespace.clone());
                Body::Alert(Box::new(alert))
            }),
        "Provider" if notification_kind => {
            typed::<Provider>(&value, schema_of::<Provider>(), &mut unknown).map(|mut provider| {
                provider.metadata.namespace = Some(namespace.clone());
                Body::Provider(Box::new(provider))
            })
        }
        "Receiver" if notification_kind => {
            typed::<Receiver>(&value, schema_of::<Receiver>(), &mut unknown).map(|mut receiver| {
                receiver.metadata.namespace = Some(namespace.clone());
                Body::Receiver(Box::new(receiver))
            })
        }
        "Secret" if api_version == "v1" => {
            secret(&value, &mut unknown).map(|s| Body::Secret(secret_data(s)))
        }
        _ => Ok(Body::Labels(
            metadata
                .and_then(|m| m.get("labels"))
                .and_then(|l| serde_json::from_value(l.clone()).ok())
                .unwrap_or_default(),
        )),
    };
    Decoded::Object {
        kind,
        key: ObjectKey::new(namespace, name),
        body,
        unknown,
    }
}

/// The versions of Alert and Provider herald reads from manifests (one
/// schema, a superset of Flux's).
const SERVED: [&str; 4] = ["v1beta1", "v1beta2", "v1beta3", "v1"];

/// Whether herald serves this kind at this version of the notification
/// group (Receivers at v1, as Flux).
fn served(api_version: &str, kind: &str) -> Result<(), String> {
    let version = api_version.trim_start_matches(NOTIFICATION_GROUP);
    match kind {
        "Alert" | "Provider" if SERVED.contains(&version) => Ok(()),
        "Alert" | "Provider" => Err(format!(
            "apiVersion: {api_version} is not served: {kind} is served at {}",
            SERVED
                .map(|v| format!("{NOTIFICATION_GROUP}{v}"))
                .join(", ")
        )),
        "Receiver" if version == "v1" => Ok(()),
        "Receiver" => Err(format!(
            "apiVersion: {api_version} is not served: Receiver is served at {NOTIFICATION_GROUP}v1"
        )),
        _ => Err(format!(
            "kind: {kind:?} is not a kind of {}: Alert, Provider or Receiver",
            NOTIFICATION_GROUP.trim_end_matches('/')
        )),
    }
}

/// The OpenAPI schema of a CRD kind, for suggesting field names.
fn schema_of<K: kube::CustomResourceExt + 'static>() -> &'static Value {
    static SCHEMAS: std::sync::OnceLock<std::sync::Mutex<Vec<(&'static str, &'static Value)>>> =
        std::sync::OnceLock::new();
    let name = std::any::type_name::<K>();
    let mut schemas = SCHEMAS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some((_, schema)) = schemas.iter().find(|(n, _)| *n == name) {
        return schema;
    }
    let schema = K::crd()
        .spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| serde_json::to_value(&s.open_api_v3_schema).ok())
        .unwrap_or(Value::Null);
    let schema: &'static Value = Box::leak(Box::new(schema));
    schemas.push((name, schema));
    schema
}

/// The fields of a Secret, for suggesting a misspelt one (`strinData`).
fn secret_schema() -> Value {
    let fields = [
        "apiVersion",
        "kind",
        "metadata",
        "data",
        "stringData",
        "type",
        "immutable",
    ];
    serde_json::json!({
        "properties": fields.iter().map(|f| (f.to_string(), serde_json::json!({}))).collect::<serde_json::Map<_, _>>()
    })
}

/// Warnings for the fields an object has that its kind does not: each
/// names the field and the closest known one.
fn note_unknown(fields: Vec<String>, schema: &Value, out: &mut Vec<String>) {
    // The derived types read `apiVersion` and `kind` before decoding.
    let envelope = ["apiVersion", "kind"];
    for field in fields
        .into_iter()
        .filter(|f| !envelope.contains(&f.as_str()))
    {
        let hint = crate::api::decode::closest_field(schema, &field)
            .map(|known| format!(" (did you mean {known}?)"))
            .unwrap_or_default();
        out.push(format!("{field}: unknown field, ignored{hint}"));
    }
}

/// Deserializes a Secret. An error names the field only: serde's message
/// may quote the value ("invalid type: integer 12345"), and a Secret's
/// values are never printed.
fn secret(value: &Value, unknown: &mut Vec<String>) -> Result<Secret, String> {
    match crate::api::decode::from_value_noting_unknown::<Secret>(value) {
        Ok((secret, fields)) => {
            note_unknown(fields, &secret_schema(), unknown);
            Ok(secret)
        }
        Err(error) => {
            let field = if error.field.is_empty() {
                "the Secret"
            } else {
                &error.field
            };
            Err(format!(
                "{field}: invalid value (not shown: Secret values are secret); \
                 data values must be base64 strings, stringData values strings"
            ))
        }
    }
}

/// Deserializes a document, naming the failing field and its value on
/// error, and noting the fields its kind does not have.
fn typed<T: DeserializeOwned>(
    value: &Value,
    schema: &Value,
    unknown: &mut Vec<String>,
) -> Result<T, String> {
    match crate::api::decode::from_value_noting_unknown::<T>(value) {
        Ok((object, fields)) => {
            note_unknown(fields, schema, unknown);
            Ok(object)
        }
        Err(error) => Err(error.to_string()),
    }
}

#[derive(Default)]
struct Loader {
    snapshot: Snapshot,
    problems: Vec<Problem>,
    seen: HashSet<(String, ObjectKey)>,
}

impl Loader {
    fn problem(&mut self, origin: Origin, object: &str, reason: Reason, message: String) {
        self.problems.push(Problem {
            level: Level::Error,
            origin,
            object: object.to_owned(),
            target: None,
            reason,
            message,
        });
    }

    fn load_file(&mut self, path: &Path, text: &str) {
        // Documents are numbered among the non-empty ones, as a reader counts them.
        let documents: Vec<&str> = split_documents(text)
            .into_iter()
            .filter(|d| {
                d.lines()
                    .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            })
            .collect();
        let mut index = 0;
        for batch in documents.chunks(DECODE_BATCH) {
            let decoded = crate::parallel::map(
                batch,
                PARALLEL_FROM,
                |d| decode(d),
                || Decoded::Unnamed {
                    reason: Reason::InvalidYAML,
                    message: "the YAML parser failed on this document".to_owned(),
                },
            );
            for document in decoded {
                let origin = Origin::File {
                    path: path.to_owned(),
                    document: index,
                };
                index += 1;
                self.add(origin, document);
            }
        }
    }

    /// Adds a decoded document to the snapshot, in file order: the first
    /// definition of an object wins.
    fn add(&mut self, origin: Origin, document: Decoded) {
        let (kind, key, body, unknown) = match document {
            Decoded::Empty | Decoded::Ignored => return,
            Decoded::Unnamed { reason, message } => {
                return self.problem(origin, "document", reason, message);
            }
            Decoded::Object {
                kind,
                key,
                body,
                unknown,
            } => (kind, key, body, unknown),
        };
        let label = format!("{kind} {key}");
        let target = match kind.as_str() {
            "Alert" => Some((Kind::Alert, key.clone())),
            "Provider" => Some((Kind::Provider, key.clone())),
            _ => None,
        };
        for message in unknown {
            self.problems.push(Problem {
                level: Level::Warning,
                origin: origin.clone(),
                object: label.clone(),
                target: target.clone(),
                reason: Reason::UnknownField,
                message,
            });
        }
        if !self.seen.insert((kind.clone(), key.clone())) {
            return self.problem(
                origin,
                &label,
                Reason::DuplicateObject,
                "defined more than once; the first definition is used".to_owned(),
            );
        }
        match body {
            // An Alert or Provider that does not decode is known, and
            // broken: its Alerts say so rather than "not found".
            Err(message) if target.is_some() => self.snapshot.undecodable.push(Problem {
                level: Level::Error,
                origin,
                object: label,
                target,
                reason: Reason::InvalidSpec,
                message,
            }),
            Err(message) if kind == "Secret" => {
                self.snapshot
                    .unreadable_secrets
                    .insert(key, message.clone());
                self.problem(origin, &label, Reason::InvalidSpec, message)
            }
            Err(message) => self.problem(origin, &label, Reason::InvalidSpec, message),
            Ok(Body::Alert(alert)) => self.snapshot.alerts.push(Loaded {
                origin,
                object: (*alert).into(),
            }),
            Ok(Body::Provider(provider)) => self.snapshot.providers.push(Loaded {
                origin,
                object: (*provider).into(),
            }),
            Ok(Body::Receiver(receiver)) => self.snapshot.receivers.push(Loaded {
                origin,
                object: (*receiver).into(),
            }),
            Ok(Body::Secret(data)) => {
                self.snapshot.secrets.insert(key, data);
            }
            Ok(Body::Labels(labels)) => {
                self.snapshot.labels.insert((kind, key), labels);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> (Snapshot, Vec<Problem>) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("m.yaml"), text).expect("write");
        load(dir.path())
    }

    #[test]
    fn splits_documents_and_keeps_going_after_a_broken_one() {
        let (snapshot, problems) = load_str(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: ns}\nstringData: {url: 'https://x'}\n\
             ---\nkind: [unclosed\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {name: b}\ndata: {token: dG9rZW4=}\n",
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(matches!(
            &problems[0].origin,
            Origin::File { document: 1, .. }
        ));
        assert_eq!(
            snapshot.secrets[&ObjectKey::new("ns", "a")]["url"],
            "https://x"
        );
        assert_eq!(
            snapshot.secrets[&ObjectKey::new("default", "b")]["token"],
            "token"
        );
    }

    #[test]
    fn an_unquoted_wildcard_gets_a_hint() {
        let (_, problems) = load_str(
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
             metadata: {name: a, namespace: ns}\nspec:\n  providerRef: {name: p}\n  \
             eventSources: [{kind: Kustomization, name: *}]\n",
        );
        let text = problems[0].to_string();
        assert!(text.contains("quote it, e.g. name: \"*\""), "{text}");
    }

    #[test]
    fn names_the_bad_field() {
        let (snapshot, problems) = load_str(
            "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\n\
             metadata: {name: p, namespace: ns}\nspec: {type: carrier-pigeon}\n",
        );
        assert!(snapshot.providers.is_empty());
        // The Provider's own problem, kept with the snapshot so that its
        // Alerts say it is broken rather than missing.
        assert!(problems.is_empty(), "{problems:?}");
        let text = snapshot.undecodable[0].to_string();
        assert_eq!(
            snapshot.undecodable[0].target,
            Some((Kind::Provider, ObjectKey::new("ns", "p")))
        );
        assert!(text.contains("Provider ns/p"), "{text}");
        assert!(text.contains("spec.type"), "{text}");
        assert!(text.contains("carrier-pigeon"), "{text}");
    }

    /// Random mutations of a valid manifest never panic the loader, and a
    /// broken document never hides the intact one after it.
    #[test]
    fn mutated_manifests_never_panic() {
        use rand::{Rng, SeedableRng};
        let valid = "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
                     metadata: {name: a, namespace: ns}\nspec:\n  providerRef: {name: p}\n  \
                     eventSeverity: [warn, error]\n  eventSources: [{kind: Kustomization, name: '*'}]\n";
        let intact = "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: ns}\nstringData: {url: x}\n";
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..2_000 {
            let mut text: Vec<char> = valid.chars().collect();
            for _ in 0..rng.random_range(1..6) {
                let at = rng.random_range(0..text.len());
                let c = [
                    '{', '}', '[', ']', ':', '-', ' ', '\n', '\'', '"', '&', '*', '!', 'x',
                ][rng.random_range(0..14)];
                match rng.random_range(0..3) {
                    0 => text[at] = c,
                    1 => text.insert(at, c),
                    _ => {
                        text.remove(at);
                    }
                }
            }
            let text: String = text.into_iter().collect();
            let (snapshot, _) = load_str(&format!("{text}\n---\n{intact}"));
            assert!(
                snapshot.secrets.contains_key(&ObjectKey::new("ns", "s")),
                "lost the intact document after:\n{text}"
            );
        }
    }

    #[test]
    fn other_kinds_supply_labels() {
        let (snapshot, problems) = load_str(
            "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\n\
             metadata: {name: podinfo, namespace: apps, labels: {team: web}}\n",
        );
        assert!(problems.is_empty());
        let labels =
            &snapshot.labels[&("HelmRelease".to_owned(), ObjectKey::new("apps", "podinfo"))];
        assert_eq!(labels["team"], "web");
    }

    /// A Secret's value never appears in a problem, whatever is wrong with it.
    #[test]
    fn secret_errors_name_the_field_not_the_value() {
        let (snapshot, problems) = load_str(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: ns}\n\
             stringData: {token: 12345}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {name: t, namespace: ns}\n\
             data: {token: [hunter2]}\n",
        );
        assert!(snapshot.secrets.is_empty());
        assert_eq!(problems.len(), 2, "{problems:?}");
        let texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(texts[0].contains("stringData.token"), "{}", texts[0]);
        assert!(texts[1].contains("data.token"), "{}", texts[1]);
        for text in &texts {
            assert!(
                !text.contains("12345") && !text.contains("hunter2"),
                "{text}"
            );
        }
    }

    #[test]
    fn reports_duplicates_and_bad_base64() {
        let (_, problems) = load_str(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {url: '!!!'}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n",
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].message.contains("data"), "{}", problems[0]);
        assert_eq!(problems[1].reason, Reason::DuplicateObject);
    }
}
