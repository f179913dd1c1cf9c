//! CustomResourceDefinitions generated from the Rust types (`herald crds`).
//!
//! Alert and Provider: one schema serves v1beta1, v1beta2, v1beta3 and v1
//! (a superset of Flux's), and v1 is stored, as in Flux v1.10 (its API module
//! made Alert and Provider v1); the beta versions are served deprecated,
//! v1beta3 with Flux's warning. With one schema and no conversion, every
//! object reads at every version whichever was stored: a cluster moving
//! from Flux 2.9's CRDs (v1beta3 stored) or from Flux 2.10's (v1 stored)
//! keeps every object. Receiver: v1, served and stored, as Flux's. Every
//! version has the status subresource.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::Value;

use super::{Alert, Provider, Receiver};

/// The versions herald serves, oldest first; the last is stored.
pub const SERVED_VERSIONS: [&str; 4] = ["v1beta1", "v1beta2", "v1beta3", "v1"];

/// The stored version of Alert and Provider (Flux v1.10's).
pub const STORAGE_VERSION: &str = "v1";

/// The versions of Receiver herald serves (the one Flux serves), stored.
pub const RECEIVER_VERSIONS: [&str; 1] = ["v1"];

/// Every CRD: Alert, Provider, Receiver.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        multi_version(Alert::crd()),
        multi_version(Provider::crd()),
        single_version(Receiver::crd()),
    ]
}

/// The CRDs as a multi-document YAML stream, as committed under `crds/`.
pub fn crds_yaml() -> String {
    crds()
        .iter()
        .map(|crd| {
            // A CRD built from our own types always serializes.
            let yaml = crate::yaml::to_string(crd).unwrap_or_default();
            format!("---\n{yaml}")
        })
        .collect()
}

/// The one generated version, made structural (Receiver).
fn single_version(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        version.served = true;
        version.storage = true;
        if let Some(validation) = version.schema.as_mut() {
            let schema = validation.open_api_v3_schema.take();
            let fixed = fix_root(make_structural(
                serde_json::to_value(schema).unwrap_or(Value::Null),
            ));
            validation.open_api_v3_schema = serde_json::from_value(fixed).ok();
        }
    }
    crd
}

/// Flux does not require `spec`, so neither may herald's schema.
fn fix_root(mut schema: Value) -> Value {
    if let Some(root) = schema.as_object_mut() {
        root.remove("required");
    }
    schema
}

fn multi_version(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let Some(template) = crd.spec.versions.first().cloned() else {
        return crd;
    };
    crd.spec.versions = SERVED_VERSIONS
        .iter()
        .map(|name| {
            let mut version = template.clone();
            version.name = (*name).to_owned();
            version.served = true;
            version.storage = *name == STORAGE_VERSION;
            if *name != STORAGE_VERSION {
                version.deprecated = Some(true);
                version.deprecation_warning = Some(format!(
                    "{name} {} is deprecated, upgrade to {STORAGE_VERSION}",
                    crd.spec.names.kind
                ));
            }
            if let Some(validation) = version.schema.as_mut() {
                let schema = validation.open_api_v3_schema.take();
                let fixed = fix_root(make_structural(
                    serde_json::to_value(schema).unwrap_or(Value::Null),
                ));
                validation.open_api_v3_schema = serde_json::from_value(fixed).ok();
            }
            version
        })
        .collect();
    crd
}

/// Rewrites what schema generators emit but a kube-apiserver rejects in a
/// structural schema: `nullable` beside optional fields is kept (allowed),
/// but `type`, `description`, `default` and `nullable` inside `anyOf`/`oneOf`/
/// `allOf`, `uniqueItems`, and `properties` beside `additionalProperties` go.
pub fn make_structural(mut schema: Value) -> Value {
    fix_node(&mut schema);
    schema
}

const JUNCTORS: [&str; 3] = ["anyOf", "oneOf", "allOf"];
const FORBIDDEN_IN_JUNCTOR: [&str; 5] = ["type", "description", "default", "nullable", "title"];

fn fix_node(node: &mut Value) {
    let Some(map) = node.as_object_mut() else {
        return;
    };
    map.remove("uniqueItems");
    map.remove("$schema");
    map.remove("title");
    if map.contains_key("properties") {
        map.remove("additionalProperties");
    }
    for junctor in JUNCTORS {
        if let Some(Value::Array(branches)) = map.get_mut(junctor) {
            for branch in branches.iter_mut() {
                strip_junctor_branch(branch);
            }
        }
    }
    for key in ["properties", "patternProperties"] {
        if let Some(Value::Object(children)) = map.get_mut(key) {
            children.values_mut().for_each(fix_node);
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(child) = map.get_mut(key) {
            fix_node(child);
        }
    }
}

fn strip_junctor_branch(branch: &mut Value) {
    if let Some(map) = branch.as_object_mut() {
        for key in FORBIDDEN_IN_JUNCTOR {
            map.remove(key);
        }
        for junctor in JUNCTORS {
            if let Some(Value::Array(inner)) = map.get_mut(junctor) {
                inner.iter_mut().for_each(strip_junctor_branch);
            }
        }
    }
}

/// Every way `schema` breaks the API server's structural-schema rules, as
/// `path: problem` lines. Empty means a kube-apiserver would accept it.
pub fn structural_violations(schema: &Value) -> Vec<String> {
    let mut found = Vec::new();
    check_node(schema, "openAPIV3Schema", false, &mut found);
    found
}

fn check_node(node: &Value, path: &str, in_junctor: bool, found: &mut Vec<String>) {
    let Some(map) = node.as_object() else {
        found.push(format!("{path}: not an object"));
        return;
    };
    let mut problem = |what: &str| found.push(format!("{path}: {what}"));
    if map.contains_key("$ref") {
        problem("$ref is not allowed");
    }
    if map.contains_key("uniqueItems") {
        problem("uniqueItems is not allowed");
    }
    if map.contains_key("properties") && map.contains_key("additionalProperties") {
        problem("properties and additionalProperties together");
    }
    if in_junctor {
        for key in FORBIDDEN_IN_JUNCTOR {
            if map.contains_key(key) {
                problem(&format!("{key} inside anyOf/oneOf/allOf"));
            }
        }
    } else {
        let untyped_ok = map.get("x-kubernetes-preserve-unknown-fields")
            == Some(&Value::Bool(true))
            || map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
        if !map.contains_key("type") && !untyped_ok {
            problem("no type");
        }
    }
    for junctor in JUNCTORS {
        if let Some(branches) = map.get(junctor) {
            match branches.as_array() {
                Some(list) => list.iter().enumerate().for_each(|(i, b)| {
                    check_node(b, &format!("{path}.{junctor}[{i}]"), true, found)
                }),
                None => found.push(format!("{path}.{junctor}: not a list")),
            }
        }
    }
    if let Some(Value::Object(children)) = map.get("properties") {
        for (name, child) in children {
            check_node(child, &format!("{path}.{name}"), in_junctor, found);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(child) = map.get(key).filter(|c| c.is_object()) {
            check_node(child, &format!("{path}.{key}"), in_junctor, found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn checker_flags_the_rules() {
        let bad = json!({
            "type": "object",
            "properties": {
                "a": {"anyOf": [{"type": "string"}], "x-kubernetes-preserve-unknown-fields": true},
                "b": {"$ref": "#/x"},
                "c": {"type": "array", "uniqueItems": true, "items": {"type": "string"}},
                "d": {"type": "object", "properties": {}, "additionalProperties": {"type": "string"}},
                "e": {"description": "untyped"}
            }
        });
        let found = structural_violations(&bad);
        assert_eq!(found.len(), 6, "{found:#?}");
        assert!(structural_violations(&make_structural(bad.clone())).len() < found.len());
    }
}
