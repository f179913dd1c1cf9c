//! The kinds the test server serves, how each is stored, and the discovery
//! documents that describe them (legacy `APIResourceList`s and aggregated
//! `apidiscovery.k8s.io` lists).

use serde_json::{Map, Value, json};

use super::status::ApiError;

/// One served resource (at every version in `versions`).
#[derive(Debug)]
pub(crate) struct Resource {
    pub group: &'static str,
    /// Served versions, preferred first; all serve the same stored objects.
    pub versions: &'static [&'static str],
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Has a `status` subresource: main-resource writes ignore `.status`,
    /// `/status` writes change only `.status`.
    pub status: bool,
    /// A custom resource: `metadata.generation` is kept, DELETE returns the
    /// object, strategic merge patch is refused (as for any CRD).
    pub custom: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// The stored resource (group, plural). events.k8s.io `Event`s are
    /// another view of core `Event`s, exactly as in Kubernetes.
    pub storage: (&'static str, &'static str),
}

const FLUX: &[&str] = &["all", "fluxcd"];
const NOTIFICATION: &str = "notification.toolkit.fluxcd.io";
const NOTIFICATION_VERSIONS: &[&str] = &["v1beta3", "v1beta2", "v1beta1"];

macro_rules! resource {
    ($group:expr, $versions:expr, $plural:literal, $singular:literal, $kind:literal,
     namespaced: $ns:expr, status: $status:expr, custom: $custom:expr,
     short: $short:expr, categories: $cat:expr $(, storage: $storage:expr)?) => {
        Resource {
            group: $group,
            versions: $versions,
            plural: $plural,
            singular: $singular,
            kind: $kind,
            namespaced: $ns,
            status: $status,
            custom: $custom,
            short_names: $short,
            categories: $cat,
            storage: resource!(@storage $group, $plural $(, $storage)?),
        }
    };
    (@storage $group:expr, $plural:literal) => { ($group, $plural) };
    (@storage $group:expr, $plural:literal, $storage:expr) => { $storage };
}

pub(crate) static RESOURCES: &[Resource] = &[
    resource!("", &["v1"], "namespaces", "namespace", "Namespace",
        namespaced: false, status: true, custom: false, short: &["ns"], categories: &[]),
    resource!("", &["v1"], "secrets", "secret", "Secret",
        namespaced: true, status: false, custom: false, short: &[], categories: &[]),
    resource!("", &["v1"], "events", "event", "Event",
        namespaced: true, status: false, custom: false, short: &["ev"], categories: &[]),
    resource!("", &["v1"], "configmaps", "configmap", "ConfigMap",
        namespaced: true, status: false, custom: false, short: &["cm"], categories: &[]),
    resource!("events.k8s.io", &["v1"], "events", "event", "Event",
        namespaced: true, status: false, custom: false, short: &["ev"], categories: &[],
        storage: ("", "events")),
    resource!("coordination.k8s.io", &["v1"], "leases", "lease", "Lease",
        namespaced: true, status: false, custom: false, short: &[], categories: &[]),
    resource!(NOTIFICATION, NOTIFICATION_VERSIONS, "alerts", "alert", "Alert",
        namespaced: true, status: true, custom: true, short: &[], categories: FLUX),
    resource!(NOTIFICATION, NOTIFICATION_VERSIONS, "providers", "provider", "Provider",
        namespaced: true, status: true, custom: true, short: &[], categories: FLUX),
    resource!("kustomize.toolkit.fluxcd.io", &["v1"], "kustomizations", "kustomization",
        "Kustomization", namespaced: true, status: true, custom: true, short: &["ks"],
        categories: FLUX),
    resource!("helm.toolkit.fluxcd.io", &["v2"], "helmreleases", "helmrelease", "HelmRelease",
        namespaced: true, status: true, custom: true, short: &["hr"], categories: FLUX),
    resource!("source.toolkit.fluxcd.io", &["v1"], "gitrepositories", "gitrepository",
        "GitRepository", namespaced: true, status: true, custom: true, short: &["gitrepo"],
        categories: FLUX),
];

/// Verbs of every resource and of every `status` subresource.
const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];

impl Resource {
    /// `plural.group` (just `plural` for core), as used in error messages.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn api_version(&self, version: &str) -> String {
        api_version(self.group, version)
    }

    /// The resource whose objects this one shows.
    pub fn stored(&self) -> &'static Resource {
        RESOURCES
            .iter()
            .find(|r| (r.group, r.plural) == self.storage)
            .expect("storage resource is registered")
    }

    /// The apiVersion objects are stored at.
    pub fn storage_api_version(&self) -> String {
        let stored = self.stored();
        stored.api_version(stored.versions[0])
    }

    fn converts_events(&self) -> bool {
        self.group == "events.k8s.io"
    }

    /// A stored object as this resource shows it at `version`.
    pub fn render(&self, version: &str, stored: &Value) -> Value {
        let mut object = stored.clone();
        if self.converts_events() {
            rename_fields(&mut object, EVENT_FIELDS, false);
        }
        set_types(&mut object, &self.api_version(version), self.kind);
        object
    }

    /// An object sent to this resource at `version`, in stored form. A
    /// `kind` or `apiVersion` that names another type is a 400, as upstream.
    pub fn ingest(&self, version: &str, mut object: Value) -> Result<Value, ApiError> {
        let Some(fields) = object.as_object() else {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        };
        if let Some(kind) = fields.get("kind").and_then(Value::as_str)
            && kind != self.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind of the object ({kind}) does not match the expected kind ({})",
                self.kind
            )));
        }
        let expected = self.api_version(version);
        if let Some(api_version) = fields.get("apiVersion").and_then(Value::as_str)
            && api_version != expected
        {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({api_version}) does not match the expected API version ({expected})"
            )));
        }
        if self.converts_events() {
            rename_fields(&mut object, EVENT_FIELDS, true);
        }
        set_types(&mut object, &self.storage_api_version(), self.kind);
        Ok(object)
    }

    /// Selectable fields besides `metadata.name` and `metadata.namespace`.
    pub fn selectable(&self, field: &str) -> bool {
        match (self.group, self.plural) {
            ("", "events") => {
                field.starts_with("involvedObject.")
                    || ["reason", "type", "source", "reportingComponent"].contains(&field)
            }
            ("events.k8s.io", "events") => {
                field.starts_with("regarding.")
                    || ["reason", "type", "reportingController"].contains(&field)
            }
            ("", "secrets") => field == "type",
            ("", "namespaces") => field == "status.phase",
            _ => false,
        }
    }
}

pub(crate) fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

fn set_types(object: &mut Value, api_version: &str, kind: &str) {
    if let Some(fields) = object.as_object_mut() {
        fields.insert("apiVersion".into(), api_version.into());
        fields.insert("kind".into(), kind.into());
    }
}

/// events.k8s.io/v1 field ↔ core/v1 field, as upstream's conversion.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename_fields(object: &mut Value, pairs: &[(&str, &str)], to_core: bool) {
    let Some(fields) = object.as_object_mut() else {
        return;
    };
    let mut renamed = Map::new();
    for (events_name, core_name) in pairs {
        let (from, to) = if to_core {
            (events_name, core_name)
        } else {
            (core_name, events_name)
        };
        if let Some(value) = fields.remove(*from) {
            renamed.insert((*to).to_owned(), value);
        }
    }
    fields.extend(renamed);
}

/// The resource at this group/version/plural, if served.
pub(crate) fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.plural == plural && r.versions.contains(&version))
}

pub(crate) fn served(group: &str, version: &str) -> bool {
    RESOURCES
        .iter()
        .any(|r| r.group == group && r.versions.contains(&version))
}

/// Non-core groups with their versions (preferred first), in serving order.
fn groups() -> Vec<(&'static str, &'static [&'static str])> {
    let mut groups: Vec<(&str, &[&str])> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !groups.iter().any(|(g, _)| *g == r.group) {
            groups.push((r.group, r.versions));
        }
    }
    groups
}

fn served_at(group: &str, version: &str) -> impl Iterator<Item = &'static Resource> {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.versions.contains(&version))
}

/// `GET /api`: the core versions.
pub(crate) fn api_versions(address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
    })
}

fn group_versions(group: &str, versions: &[&str]) -> Value {
    let entries: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": api_version(group, v), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": entries,
        "preferredVersion": entries[0],
    })
}

/// `GET /apis`: every non-core group.
pub(crate) fn api_group_list() -> Value {
    let groups: Vec<Value> = groups()
        .into_iter()
        .map(|(g, versions)| group_versions(g, versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/{group}`.
pub(crate) fn api_group(group: &str) -> Option<Value> {
    let (_, versions) = groups().into_iter().find(|(g, _)| *g == group)?;
    let mut doc = group_versions(group, versions);
    doc["kind"] = "APIGroup".into();
    doc["apiVersion"] = "v1".into();
    Some(doc)
}

/// `GET /api/v1`, `GET /apis/{group}/{version}`: resources and their
/// `plural/status` subresource entries.
pub(crate) fn resource_list(group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for r in served_at(group, version) {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": VERBS,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        if r.status {
            resources.push(json!({
                "name": format!("{}/status", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": STATUS_VERBS,
            }));
        }
    }
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": api_version(group, version),
        "resources": resources,
    })
}

fn discovery_resource(r: &Resource, group: &str, version: &str) -> Value {
    let kind = json!({"group": group, "version": version, "kind": r.kind});
    let mut entry = json!({
        "resource": r.plural,
        "responseKind": kind,
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": VERBS,
    });
    if !r.short_names.is_empty() {
        entry["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        entry["categories"] = json!(r.categories);
    }
    if r.status {
        entry["subresources"] = json!([{
            "subresource": "status",
            "responseKind": kind,
            "verbs": STATUS_VERBS,
        }]);
    }
    entry
}

fn discovery_group(group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = served_at(group, v)
                .map(|r| discovery_resource(r, group, v))
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let mut metadata = json!({"creationTimestamp": null});
    if !group.is_empty() {
        metadata["name"] = group.into();
    }
    json!({"metadata": metadata, "versions": versions})
}

/// Aggregated discovery (`apidiscovery.k8s.io/{v2,v2beta1}`
/// `APIGroupDiscoveryList`) for `/api` (`core`) or `/apis`.
pub(crate) fn aggregated(core: bool, version: &str) -> Value {
    let items: Vec<Value> = if core {
        vec![discovery_group("", &["v1"])]
    } else {
        groups()
            .into_iter()
            .map(|(g, versions)| discovery_group(g, versions))
            .collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

/// `GET /version`.
pub(crate) fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "35",
        "gitVersion": "v1.35.0",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.25.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}
