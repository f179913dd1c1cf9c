//! PATCH bodies: JSON merge patch (RFC 7386), strategic merge patch (a
//! merge patch with ObjectMeta's list semantics; refused for custom
//! resources, as upstream), JSON patch (RFC 6902), and server-side apply
//! with per-manager field ownership kept in `metadata.managedFields`.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::objects::{Scope, metadata, metadata_mut, now};
use super::resources::Resource;
use super::status::ApiError;

/// The patch types kube-apiserver accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Merge,
    Strategic,
    Json,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media.to_ascii_lowercase().as_str() {
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/json-patch+json" => Some(Self::Json),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Some(Self::Apply),
            _ => None,
        }
    }
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

/// RFC 7386 merge patch; the patch must be a JSON object.
pub(crate) fn merge(target: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let patch = parse_json(body)?;
    if !patch.is_object() {
        return Err(ApiError::bad_request(
            "json: cannot unmarshal patch into Go value of type map[string]interface {}",
        ));
    }
    let mut out = target.clone();
    json_patch::merge(&mut out, &patch);
    Ok(out)
}

/// A strategic merge patch on a built-in kind. The kinds served here have
/// no merge-keyed lists of their own; ObjectMeta's `finalizers` is a merged
/// set (with `$deleteFromPrimitiveList/finalizers`), and directive keys are
/// not stored.
pub(crate) fn strategic(target: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let mut patch = parse_json(body)?;
    if !patch.is_object() {
        return Err(ApiError::bad_request(
            "json: cannot unmarshal patch into Go value of type map[string]interface {}",
        ));
    }
    let finalizers = merged_finalizers(target, &mut patch);
    strip_directives(&mut patch);
    let mut out = target.clone();
    json_patch::merge(&mut out, &patch);
    if let Some(finalizers) = finalizers {
        metadata_mut(&mut out).insert("finalizers".into(), finalizers);
    }
    Ok(out)
}

/// The finalizers after a strategic patch, if it touches them.
fn merged_finalizers(target: &Value, patch: &mut Value) -> Option<Value> {
    let meta = patch.get_mut("metadata")?.as_object_mut()?;
    let added = meta.remove("finalizers");
    let removed = meta.remove("$deleteFromPrimitiveList/finalizers");
    if added.is_none() && removed.is_none() {
        return None;
    }
    if added.as_ref().is_some_and(Value::is_null) {
        return Some(Value::Null);
    }
    let as_list = |v: Option<&Value>| -> Vec<Value> {
        v.and_then(Value::as_array).cloned().unwrap_or_default()
    };
    let mut list = as_list(target.pointer("/metadata/finalizers"));
    for item in as_list(added.as_ref()) {
        if !list.contains(&item) {
            list.push(item);
        }
    }
    let removed = as_list(removed.as_ref());
    list.retain(|f| !removed.contains(f));
    Some(Value::Array(list))
}

fn strip_directives(value: &mut Value) {
    if let Some(map) = value.as_object_mut() {
        map.retain(|k, _| !k.starts_with('$'));
        map.values_mut().for_each(strip_directives);
    }
}

/// RFC 6902 JSON patch; an operation that does not apply is a 422.
pub(crate) fn json(target: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let ops: json_patch::Patch = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let mut out = target.clone();
    json_patch::patch(&mut out, &ops).map_err(|e| ApiError::unprocessable(e.to_string()))?;
    Ok(out)
}

/// Leaf field paths (maps are walked, lists are atomic).
type FieldSet = BTreeSet<Vec<String>>;

fn leaves(value: &Value, path: &mut Vec<String>, out: &mut FieldSet) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                path.push(key.clone());
                leaves(child, path, out);
                path.pop();
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The fields an applied configuration sets, within the write's scope.
fn applied_fields(applied: &Value, res: &Resource, scope: Scope) -> FieldSet {
    let mut set = FieldSet::new();
    let Some(fields) = applied.as_object() else {
        return set;
    };
    for (key, value) in fields {
        let mut path = vec![key.clone()];
        match key.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" if scope == Scope::Main => {
                for field in ["labels", "annotations", "finalizers", "ownerReferences"] {
                    if let Some(v) = value.get(field) {
                        let mut path = vec![key.clone(), field.to_owned()];
                        leaves(v, &mut path, &mut set);
                    }
                }
            }
            "metadata" => {}
            // With a status subresource, .status belongs to /status only.
            "status" if res.status && scope == Scope::Status => {
                leaves(value, &mut path, &mut set);
            }
            "status" if res.status => {}
            _ if scope == Scope::Main => leaves(value, &mut path, &mut set),
            _ => {}
        }
    }
    set
}

fn from_fields_v1(value: &Value, path: &mut Vec<String>, out: &mut FieldSet) {
    let Some(map) = value.as_object() else {
        return;
    };
    if map.is_empty() && !path.is_empty() {
        out.insert(path.clone());
    }
    for (key, child) in map {
        if let Some(name) = key.strip_prefix("f:") {
            path.push(name.to_owned());
            from_fields_v1(child, path, out);
            path.pop();
        } else if key != "." && !path.is_empty() {
            // List-element keys (k:, v:, i:): lists are atomic here.
            out.insert(path.clone());
        }
    }
}

fn fields_of(entry: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    if let Some(v1) = entry.get("fieldsV1") {
        from_fields_v1(v1, &mut Vec::new(), &mut set);
    }
    set
}

fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for segment in path {
            let child = node
                .entry(format!("f:{segment}"))
                .or_insert_with(|| json!({}));
            if !child.is_object() {
                *child = json!({});
            }
            node = child.as_object_mut().expect("just made an object");
        }
    }
    Value::Object(root)
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

fn get_path<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(value, |v, segment| v.as_object()?.get(segment))
        .filter(|v| !v.is_null())
}

fn set_path(value: &mut Value, path: &[String], leaf: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = value;
    for segment in parents {
        if !node.is_object() {
            *node = json!({});
        }
        node = node
            .as_object_mut()
            .expect("just made an object")
            .entry(segment.clone())
            .or_insert_with(|| json!({}));
    }
    if !node.is_object() {
        *node = json!({});
    }
    if let Some(map) = node.as_object_mut() {
        map.insert(last.clone(), leaf);
    }
}

/// Removes the field at `path`, then maps below the top level that it left
/// empty (the manager owned them only through this field).
fn remove_path(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = &mut *value;
    for segment in parents {
        match node.get_mut(segment) {
            Some(child) => node = child,
            None => return,
        }
    }
    if let Some(map) = node.as_object_mut() {
        map.remove(last);
    }
    if parents.len() >= 2 && get_path(value, parents).is_some_and(|v| v == &json!({})) {
        remove_path(value, parents);
    }
}

fn path_text(path: &[String]) -> String {
    path.iter().map(|s| format!(".{s}")).collect()
}

fn conflict_error(res: &Resource, name: &str, conflicts: &[(String, Vec<String>)]) -> ApiError {
    let lines: Vec<String> = conflicts
        .iter()
        .map(|(manager, path)| format!("conflict with {manager:?}: {}", path_text(path)))
        .collect();
    let mut error = ApiError::new(
        409,
        "Conflict",
        format!(
            "Apply failed with {} conflict{}: {}",
            conflicts.len(),
            if conflicts.len() == 1 { "" } else { "s" },
            lines.join("\n")
        ),
    );
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(manager, path)| {
            json!({"reason": "FieldManagerConflict", "message": format!("conflict with {manager:?}"), "field": path_text(path)})
        })
        .collect();
    error.details =
        Some(json!({"name": name, "group": res.group, "kind": res.plural, "causes": causes}));
    error
}

/// One server-side apply request.
pub(crate) struct Apply<'a> {
    pub res: &'a Resource,
    pub name: &'a str,
    pub manager: &'a str,
    pub api_version: &'a str,
    pub force: bool,
    pub scope: Scope,
}

impl Apply<'_> {
    /// Checks the applied configuration as upstream does before merging.
    pub fn validate(&self, applied: &Value) -> Result<(), ApiError> {
        if !applied.is_object() {
            return Err(ApiError::bad_request(
                "the applied configuration must be an object",
            ));
        }
        if applied.get("apiVersion").and_then(Value::as_str).is_none()
            || applied.get("kind").and_then(Value::as_str).is_none()
        {
            return Err(ApiError::bad_request(
                "invalid object type: apiVersion and kind must be set",
            ));
        }
        if metadata(applied).is_some_and(|m| m.contains_key("managedFields")) {
            return Err(ApiError::bad_request("metadata.managedFields must be nil"));
        }
        if let Some(name) = metadata(applied)
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            && name != self.name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({name}) does not match the name on the URL ({})",
                self.name
            )));
        }
        Ok(())
    }

    fn subresource(&self) -> Option<&'static str> {
        (self.scope == Scope::Status).then_some("status")
    }

    fn is_own(&self, entry: &Value) -> bool {
        entry.get("manager").and_then(Value::as_str) == Some(self.manager)
            && entry.get("operation").and_then(Value::as_str) == Some("Apply")
            && entry.get("subresource").and_then(Value::as_str) == self.subresource()
    }

    /// Merges `applied` into `current` (None: the object is created):
    /// sets the applied fields, removes fields this manager applied before
    /// and no longer does (unless another manager owns them), and fails on
    /// fields another manager owns with another value unless `force`.
    pub fn run(&self, current: Option<&Value>, applied: &Value) -> Result<Value, ApiError> {
        let empty = json!({});
        let base = current.unwrap_or(&empty);
        let new_set = applied_fields(applied, self.res, self.scope);
        // Entries a client stored that are not objects are dropped.
        let mut entries: Vec<Value> = metadata(base)
            .and_then(|m| m.get("managedFields"))
            .and_then(Value::as_array)
            .map(|list| list.iter().filter(|e| e.is_object()).cloned().collect())
            .unwrap_or_default();
        let own_index = entries.iter().position(|e| self.is_own(e));
        let old_set = own_index
            .map(|i| fields_of(&entries[i]))
            .unwrap_or_default();

        let mut conflicts = Vec::new();
        for (i, entry) in entries.iter_mut().enumerate() {
            if Some(i) == own_index {
                continue;
            }
            let mut theirs = fields_of(entry);
            let manager = entry.get("manager").and_then(Value::as_str).unwrap_or("");
            for path in &new_set {
                let contested = theirs.iter().any(|q| overlaps(path, q));
                if contested && get_path(base, path) != get_path(applied, path) {
                    conflicts.push((manager.to_owned(), path.clone()));
                }
            }
            if self.force {
                theirs.retain(|q| !new_set.iter().any(|p| overlaps(p, q)));
                entry["fieldsV1"] = to_fields_v1(&theirs);
            }
        }
        if !conflicts.is_empty() && !self.force {
            return Err(conflict_error(self.res, self.name, &conflicts));
        }

        let others: Vec<FieldSet> = entries
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != own_index)
            .map(|(_, e)| fields_of(e))
            .collect();
        let mut object = base.clone();
        for path in old_set.difference(&new_set) {
            let kept = others.iter().flatten().any(|q| overlaps(path, q));
            if !kept {
                remove_path(&mut object, path);
            }
        }
        for path in &new_set {
            match get_path(applied, path) {
                Some(value) => set_path(&mut object, path, value.clone()),
                None => remove_path(&mut object, path),
            }
        }
        for field in ["resourceVersion", "uid"] {
            if let Some(value) = metadata(applied).and_then(|m| m.get(field)) {
                metadata_mut(&mut object).insert(field.into(), value.clone());
            }
        }

        self.record(&mut entries, own_index, &old_set, &new_set);
        entries.retain(|e| !fields_of(e).is_empty());
        let meta = metadata_mut(&mut object);
        if entries.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(entries));
        }
        Ok(object)
    }

    /// Updates this manager's entry; an unchanged field set keeps the entry
    /// (and its timestamp) so a repeated apply is a no-op.
    fn record(&self, entries: &mut Vec<Value>, own: Option<usize>, old: &FieldSet, new: &FieldSet) {
        if own.is_some() && old == new {
            return;
        }
        let mut entry = json!({
            "manager": self.manager,
            "operation": "Apply",
            "apiVersion": self.api_version,
            "time": now(),
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(new),
        });
        if let Some(sub) = self.subresource() {
            entry["subresource"] = sub.into();
        }
        match own {
            Some(i) => entries[i] = entry,
            None => entries.push(entry),
        }
    }
}
