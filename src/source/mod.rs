//! Config sources: where snapshots of Alerts, Providers and Secrets come from.
//!
//! Downstream code (the routing table) sees only [`Snapshot`]; it never knows
//! whether a manifest directory or a cluster produced it.

pub mod manifests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Secret;

use crate::api::{Alert, Provider, Reason};

/// A namespaced object's identity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Where an object was read from, so problems can point at it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A document (0-based) of a manifest file.
    File { path: PathBuf, document: usize },
    /// The Kubernetes API.
    Cluster,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File { path, document } => write!(f, "{} (document {document})", path.display()),
            Self::Cluster => f.write_str("cluster"),
        }
    }
}

/// An object together with where it came from. The object is shared:
/// controller mode builds each table from the objects its watches hold,
/// without copying ten thousand of them for every build.
#[derive(Clone, Debug)]
pub struct Loaded<T> {
    pub origin: Origin,
    pub object: std::sync::Arc<T>,
}

/// The string values of a Secret's keys (`data` decoded, `stringData` merged).
pub type SecretData = BTreeMap<String, String>;

/// A Secret's values as text: `data` (already base64-decoded by the type)
/// with `stringData` merged over it, as the API server does.
pub fn secret_data(secret: Secret) -> SecretData {
    let mut values: SecretData = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).trim().to_owned()))
        .collect();
    for (k, v) in secret.string_data.unwrap_or_default() {
        values.insert(k, v.trim().to_owned());
    }
    values
}

/// Labels of objects that are neither Alerts, Providers nor Secrets, keyed by
/// (kind, namespace, name): what `matchLabels` reads in standalone mode.
pub type LabelIndex = HashMap<(String, ObjectKey), BTreeMap<String, String>>;

/// Everything the routing table is built from.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub alerts: Vec<Loaded<Alert>>,
    pub providers: Vec<Loaded<Provider>>,
    /// Receivers read from manifests (for `herald check`; the controller
    /// watches its own).
    pub receivers: Vec<Loaded<crate::api::Receiver>>,
    pub secrets: HashMap<ObjectKey, SecretData>,
    pub labels: LabelIndex,
    /// Alerts and Providers the source holds but cannot decode, one problem
    /// each (`InvalidSpec`, naming the field): reported on that object only,
    /// while everything else routes (DESIGN §3.15).
    pub undecodable: Vec<Problem>,
    /// Secrets the source holds but cannot read (manifests: a `data` value
    /// that is not base64), with why: a Provider referencing one says so
    /// rather than "not found".
    pub unreadable_secrets: HashMap<ObjectKey, String>,
}

/// The problem of an object that does not decode: an error on that object,
/// naming the field and the value.
pub fn undecodable_problem(
    kind: Kind,
    origin: Origin,
    key: ObjectKey,
    error: &crate::api::DecodeError,
) -> Problem {
    Problem {
        level: Level::Error,
        origin,
        object: format!("{kind:?} {key}"),
        target: Some((kind, key)),
        reason: Reason::InvalidSpec,
        message: format!("cannot be read: {error}"),
    }
}

/// How bad a problem is: errors fail `herald check`, warnings do not;
/// notes (a suspended object, say) only explain a `Ready=False` status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Note,
    Warning,
    Error,
}

/// The kinds of object a problem can be about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Alert,
    Provider,
}

/// A problem with one object or document, phrased for the person who wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub level: Level,
    pub origin: Origin,
    /// `Alert flux-system/name`, or `document` when the object is unreadable.
    pub object: String,
    /// The Alert or Provider concerned, for its status.
    pub target: Option<(Kind, ObjectKey)>,
    /// A condition reason, e.g. `SecretNotFound`.
    pub reason: Reason,
    /// What is wrong, naming the field.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Note => "note",
        };
        write!(
            f,
            "{}: {level}: {}: {} ({})",
            self.origin, self.object, self.message, self.reason
        )
    }
}
