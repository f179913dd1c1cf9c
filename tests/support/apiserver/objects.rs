//! Write semantics: what kube-apiserver does to an object on create,
//! update (PUT and every patch end in one), and delete — server-owned
//! metadata, generation, status subresource rules, finalizers, and no-op
//! detection (a write that changes nothing keeps the resourceVersion and
//! emits no watch event).

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::resources::Resource;
use super::status::ApiError;
use super::store::{ObjKey, Store};

/// Which part of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The resource itself: for kinds with a status subresource, `.status`
    /// is kept as stored.
    Main,
    /// The `status` subresource: only `.status` changes.
    Status,
}

/// The outcome of an update.
pub(crate) enum Written {
    /// Nothing changed: same resourceVersion, no event.
    Unchanged(Value),
    Updated(Value),
    /// The update emptied the finalizers of an object being deleted.
    Deleted(Value),
}

impl Written {
    pub fn into_object(self) -> Value {
        match self {
            Self::Unchanged(v) | Self::Updated(v) | Self::Deleted(v) => v,
        }
    }
}

/// The outcome of a delete.
pub(crate) enum Removal {
    /// Finalizers (or namespace termination) hold the object: it now has a
    /// deletionTimestamp.
    Pending(Value),
    /// The object is gone; its last state.
    Gone(Value),
}

/// Now as Kubernetes writes timestamps (RFC 3339, seconds, UTC).
pub(crate) fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn new_uid() -> String {
    let bits: u128 = rand::random();
    // RFC 4122 version 4, variant 1, as upstream's uuid.NewUUID.
    let bits = (((bits & !(0xf << 76)) | (0x4 << 76)) & !(0x3 << 62)) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// upstream's `utilrand.String(5)` alphabet for generateName.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub(crate) fn metadata(object: &Value) -> Option<&Map<String, Value>> {
    object.get("metadata").and_then(Value::as_object)
}

/// The object's metadata map, created if missing. Callers pass objects
/// (request bodies are checked first); anything else becomes one rather
/// than panicking the server.
pub(crate) fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = json!({});
    }
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    object["metadata"]
        .as_object_mut()
        .expect("metadata was just made an object")
}

pub(crate) fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    metadata(object)?
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn has_finalizers(object: &Value) -> bool {
    metadata(object)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

/// Checks a name as upstream's `NameIsDNSSubdomain` (or `NameIsDNSLabel`
/// for namespaces).
fn validate_name(res: &Resource, name: &str) -> Result<(), ApiError> {
    let label = res.plural == "namespaces";
    let max = if label { 63 } else { 253 };
    let chars_ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (c == '.' && !label));
    let ends_ok = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if name.len() <= max && chars_ok && ends_ok {
        return Ok(());
    }
    let what = if label {
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
    } else {
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
    };
    Err(ApiError::invalid(
        res,
        name,
        format!("metadata.name: Invalid value: {name:?}: {what}"),
    ))
}

/// The name of an object to create: `metadata.name`, or `generateName` plus
/// a random suffix.
fn resolve_name(res: &Resource, object: &Value) -> Result<String, ApiError> {
    if let Some(name) = meta_str(object, "name") {
        return Ok(name.to_owned());
    }
    if let Some(prefix) = meta_str(object, "generateName") {
        return Ok(format!("{prefix}{}", random_suffix()));
    }
    Err(ApiError::invalid(
        res,
        "",
        "metadata.name: Required value: name or generateName is required",
    ))
}

/// Kind-specific defaulting and normalisation done on every write.
fn normalise(res: &Resource, object: &mut Value, name: &str) {
    match (res.group, res.plural) {
        ("", "secrets") => {
            if let Some(Value::Object(string_data)) =
                object.as_object_mut().and_then(|o| o.remove("stringData"))
            {
                if !object.get("data").is_some_and(Value::is_object) {
                    object["data"] = json!({});
                }
                for (key, value) in string_data {
                    let text = value.as_str().unwrap_or_default();
                    object["data"][key] = base64::engine::general_purpose::STANDARD
                        .encode(text)
                        .into();
                }
            }
            if object.get("type").is_none_or(Value::is_null) {
                object["type"] = "Opaque".into();
            }
        }
        ("", "namespaces") => {
            let labels = metadata_mut(object)
                .entry("labels")
                .or_insert_with(|| json!({}));
            if let Some(labels) = labels.as_object_mut() {
                labels.insert("kubernetes.io/metadata.name".into(), name.into());
            }
            if object.pointer("/spec/finalizers").is_none() {
                object["spec"] = json!({"finalizers": ["kubernetes"]});
            }
            if object.pointer("/status/phase").is_none() {
                object["status"] = json!({"phase": "Active"});
            }
        }
        _ => {}
    }
    let meta = metadata_mut(object);
    meta.remove("selfLink");
    if meta
        .get("managedFields")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
    {
        meta.remove("managedFields");
    }
}

/// Creates `object` (stored form) in `namespace` ("" for cluster-scoped).
pub(crate) fn create(
    store: &mut Store,
    res: &Resource,
    namespace: &str,
    mut object: Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    if !object.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    let name = resolve_name(res, &object)?;
    if let Some(ns) = meta_str(&object, "namespace")
        && res.namespaced
        && ns != namespace
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    validate_name(res, &name)?;
    if res.namespaced && !store.namespace_exists(namespace) {
        return Err(ApiError::namespace_not_found(namespace));
    }
    if meta_str(&object, "resourceVersion").is_some() {
        return Err(ApiError::internal(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    let key = ObjKey::new(res.storage, namespace, &name);
    if store.get(&key).is_some() {
        return Err(ApiError::already_exists(res, &name));
    }
    let meta = metadata_mut(&mut object);
    meta.insert("name".into(), name.clone().into());
    if res.namespaced {
        meta.insert("namespace".into(), namespace.into());
    } else {
        meta.remove("namespace");
    }
    meta.insert("uid".into(), new_uid().into());
    meta.insert("creationTimestamp".into(), now().into());
    for field in [
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        meta.remove(field);
    }
    if res.custom {
        meta.insert("generation".into(), 1.into());
    }
    if res.status
        && res.custom
        && let Some(fields) = object.as_object_mut()
    {
        fields.remove("status");
    }
    normalise(res, &mut object, &name);
    if dry_run {
        return Ok(object);
    }
    Ok(store.put(key, object))
}

/// What a custom resource's generation tracks: everything but metadata
/// (and status, when a status subresource owns it).
fn generation_content(res: &Resource, object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(fields) = copy.as_object_mut() {
        fields.remove("metadata");
        if res.status {
            fields.remove("status");
        }
    }
    copy
}

/// Preconditions a new object's metadata carries: resourceVersion and uid.
fn check_preconditions(res: &Resource, current: &Value, new: &Value) -> Result<(), ApiError> {
    let name = meta_str(current, "name").unwrap_or_default();
    if let Some(rv) = meta_str(new, "resourceVersion")
        && Some(rv) != meta_str(current, "resourceVersion")
    {
        return Err(ApiError::stale(res, name));
    }
    if let Some(uid) = meta_str(new, "uid")
        && Some(uid) != meta_str(current, "uid")
    {
        let why = format!(
            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
            meta_str(current, "uid").unwrap_or_default()
        );
        return Err(ApiError::conflict(res, name, &why));
    }
    Ok(())
}

/// Keeps or takes `.status` according to the write's scope.
fn scope_status(res: &Resource, scope: Scope, current: &Value, new: Value) -> Value {
    let status_of = |v: &Value| v.get("status").cloned();
    let (mut base, status) = match scope {
        Scope::Main if res.status => (new, status_of(current)),
        Scope::Main => return new,
        Scope::Status => {
            // Only .status (and the managedFields tracking it) come from the
            // request; everything else stays as stored.
            let mut base = current.clone();
            if let Some(managed) = metadata(&new).and_then(|m| m.get("managedFields")) {
                metadata_mut(&mut base).insert("managedFields".into(), managed.clone());
            }
            (base, status_of(&new))
        }
    };
    if let Some(fields) = base.as_object_mut() {
        match status {
            Some(status) => fields.insert("status".into(), status),
            None => fields.remove("status"),
        };
    }
    base
}

/// Copies the metadata only the server sets from `current` into `new`.
fn keep_server_metadata(current: &Value, new: &mut Value) {
    let current_meta = metadata(current).cloned().unwrap_or_default();
    let meta = metadata_mut(new);
    for field in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "resourceVersion",
    ] {
        match current_meta.get(field) {
            Some(value) => meta.insert(field.into(), value.clone()),
            None => meta.remove(field),
        };
    }
}

/// Replaces the stored `current` object by `new` (stored form), as every
/// PUT and PATCH ends.
pub(crate) fn update(
    store: &mut Store,
    res: &Resource,
    key: &ObjKey,
    current: &Value,
    new: Value,
    scope: Scope,
    dry_run: bool,
) -> Result<Written, ApiError> {
    if !new.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    check_preconditions(res, current, &new)?;
    let mut new = scope_status(res, scope, current, new);
    keep_server_metadata(current, &mut new);
    normalise(res, &mut new, &key.name);
    if res.custom && generation_content(res, &new) != generation_content(res, current) {
        let generation = metadata(current)
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        metadata_mut(&mut new).insert("generation".into(), (generation + 1).into());
    }
    if new == *current {
        return Ok(Written::Unchanged(new));
    }
    let deleting = meta_str(&new, "deletionTimestamp").is_some();
    if dry_run {
        return Ok(Written::Updated(new));
    }
    if deleting && !has_finalizers(&new) {
        // Upstream deletes the stored object without writing the update:
        // the DELETED event and the answer show it as it was stored.
        return Ok(Written::Deleted(store.remove(key, current.clone())));
    }
    Ok(Written::Updated(store.put(key.clone(), new)))
}

/// Deletes the stored object at `key`. `options` is the DeleteOptions body
/// (its `preconditions` are honoured).
pub(crate) fn delete(
    store: &mut Store,
    res: &Resource,
    key: &ObjKey,
    options: &Value,
    dry_run: bool,
) -> Result<Removal, ApiError> {
    let Some(current) = store.get(key).cloned() else {
        return Err(ApiError::not_found(res, &key.name));
    };
    for (field, what) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
        if let Some(wanted) = options
            .pointer(&format!("/preconditions/{field}"))
            .and_then(Value::as_str)
            && Some(wanted) != meta_str(&current, field)
        {
            let why = format!(
                "Precondition failed: {what} in precondition: {wanted}, {what} in object meta: {}",
                meta_str(&current, field).unwrap_or_default()
            );
            return Err(ApiError::conflict(res, &key.name, &why));
        }
    }
    let terminating = res.plural == "namespaces" && res.group.is_empty();
    if !has_finalizers(&current) && !terminating {
        if dry_run {
            return Ok(Removal::Gone(current));
        }
        return Ok(Removal::Gone(store.remove(key, current)));
    }
    if meta_str(&current, "deletionTimestamp").is_some() {
        return Ok(Removal::Pending(current));
    }
    let mut marked = current.clone();
    let meta = metadata_mut(&mut marked);
    meta.insert("deletionTimestamp".into(), now().into());
    meta.insert("deletionGracePeriodSeconds".into(), 0.into());
    if let Some(generation) = meta.get("generation").and_then(Value::as_i64) {
        meta.insert("generation".into(), (generation + 1).into());
    }
    if terminating {
        marked["status"] = json!({"phase": "Terminating"});
    }
    if dry_run {
        return Ok(Removal::Pending(marked));
    }
    let marked = store.put(key.clone(), marked);
    if terminating {
        terminate_namespace(store, key, &marked);
    }
    Ok(Removal::Pending(marked))
}

/// What the namespace controller does, at once: delete everything in the
/// namespace (finalizers are not waited for), then the namespace.
fn terminate_namespace(store: &mut Store, key: &ObjKey, marked: &Value) {
    for member in store.keys_in_namespace(&key.name) {
        if let Some(object) = store.get(&member).cloned() {
            store.remove(&member, object);
        }
    }
    store.remove(key, marked.clone());
}
