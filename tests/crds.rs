//! The generated CRDs: structural (a real kube-apiserver accepts them), a
//! superset of Flux's own schema at every served version, and accepting the
//! seed manifests without pruning a field.

mod support;

use serde_json::Value;

use herald::api::crd::{RECEIVER_VERSIONS, SERVED_VERSIONS, crds, structural_violations};

fn herald_crd(kind: &str) -> Value {
    let crd = crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .expect("crd for kind");
    serde_json::to_value(crd).expect("crd as json")
}

fn schema<'a>(crd: &'a Value, version: &str) -> &'a Value {
    crd["spec"]["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .find(|v| v["name"] == version)
        .map(|v| &v["schema"]["openAPIV3Schema"])
        .unwrap_or_else(|| panic!("version {version} not served"))
}

fn flux_crd(file: &str) -> Value {
    let path = support::flux_crds().join(file);
    let text = std::fs::read_to_string(&path).expect("flux reference crd");
    herald::yaml::parse_document(&text).expect("flux crd yaml")
}

#[test]
fn versions_served_stored_and_with_status() {
    for kind in ["Alert", "Provider"] {
        let crd = herald_crd(kind);
        let versions = crd["spec"]["versions"].as_array().expect("versions");
        let names: Vec<_> = versions
            .iter()
            .map(|v| v["name"].as_str().expect("name"))
            .collect();
        assert_eq!(names, SERVED_VERSIONS);
        for version in versions {
            assert_eq!(version["served"], true);
            assert_eq!(version["storage"], version["name"] == "v1");
            assert_eq!(
                version["deprecated"] == true,
                version["name"] != "v1",
                "{kind} {}: only the beta versions are deprecated",
                version["name"]
            );
            assert!(
                version["subresources"]["status"].is_object(),
                "{kind} {} lacks status",
                version["name"]
            );
            let columns: Vec<_> = version["additionalPrinterColumns"]
                .as_array()
                .expect("columns")
                .iter()
                .map(|c| c["name"].as_str().expect("name"))
                .collect();
            assert_eq!(columns, ["Ready", "Status", "Age"]);
        }
        assert_eq!(crd["spec"]["group"], "notification.toolkit.fluxcd.io");
        assert_eq!(crd["spec"]["scope"], "Namespaced");
    }
}

/// Receiver: v1 only, served and stored, with Flux's printer columns,
/// categories and kustomize annotation.
#[test]
fn receiver_is_v1_served_stored_and_with_status() {
    let crd = herald_crd("Receiver");
    let flux = flux_crd("receivers.yaml");
    let versions = crd["spec"]["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 1);
    let version = &versions[0];
    assert_eq!(version["name"], "v1");
    assert_eq!(version["served"], true);
    assert_eq!(version["storage"], true);
    assert!(version["subresources"]["status"].is_object());
    assert_eq!(
        version["additionalPrinterColumns"],
        flux["spec"]["versions"][0]["additionalPrinterColumns"]
    );
    assert_eq!(
        crd["spec"]["names"]["categories"],
        flux["spec"]["names"]["categories"]
    );
    assert_eq!(crd["spec"]["names"]["plural"], "receivers");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(
        crd["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/substitute"],
        "disabled"
    );
    let spec = &schema(&crd, "v1")["properties"]["spec"];
    let flux_spec = &schema(&flux, "v1")["properties"]["spec"];
    assert_eq!(
        spec["x-kubernetes-validations"],
        flux_spec["x-kubernetes-validations"]
    );
    assert_eq!(
        schema(&crd, "v1")["properties"]["status"]["default"],
        serde_json::json!({"observedGeneration": -1})
    );
}

#[test]
fn schemas_are_structural() {
    let receiver = herald_crd("Receiver");
    for version in RECEIVER_VERSIONS {
        let violations = structural_violations(schema(&receiver, version));
        assert!(violations.is_empty(), "Receiver {version}: {violations:#?}");
    }
    for kind in ["Alert", "Provider"] {
        let crd = herald_crd(kind);
        for version in SERVED_VERSIONS {
            let violations = structural_violations(schema(&crd, version));
            assert!(violations.is_empty(), "{kind} {version}: {violations:#?}");
        }
    }
}

/// Checks that `ours` accepts everything `theirs` (Flux's) accepts.
fn assert_superset(ours: &Value, theirs: &Value, path: &str, problems: &mut Vec<String>) {
    let preserves = ours["x-kubernetes-preserve-unknown-fields"] == true;
    if theirs.get("type").is_some() && ours.get("type") != theirs.get("type") && !preserves {
        problems.push(format!(
            "{path}: type {:?} where Flux has {:?}",
            ours.get("type"),
            theirs.get("type")
        ));
    }
    if let Some(our_enum) = ours.get("enum").and_then(Value::as_array) {
        match theirs.get("enum").and_then(Value::as_array) {
            Some(their_enum) => {
                for value in their_enum {
                    if !our_enum.contains(value) {
                        problems.push(format!("{path}: enum lacks Flux's {value}"));
                    }
                }
            }
            None => problems.push(format!("{path}: enum where Flux has none")),
        }
    }
    if let Some(anyof) = ours.get("anyOf").and_then(Value::as_array) {
        // A value-only anyOf: each of Flux's enum values must pass one branch.
        if let Some(their_enum) = theirs.get("enum").and_then(Value::as_array) {
            for value in their_enum {
                let passes = anyof.iter().any(|branch| {
                    branch
                        .get("enum")
                        .and_then(Value::as_array)
                        .is_some_and(|e| e.contains(value))
                });
                if !passes {
                    problems.push(format!("{path}: anyOf rejects Flux's {value}"));
                }
            }
        }
    }
    if let Some(pattern) = ours.get("pattern")
        && theirs.get("pattern") != Some(pattern)
    {
        problems.push(format!("{path}: pattern {pattern} Flux does not have"));
    }
    for limit in ["maxLength", "maxItems"] {
        if let Some(our) = ours.get(limit).and_then(Value::as_u64) {
            let their = theirs
                .get(limit)
                .and_then(Value::as_u64)
                .unwrap_or(u64::MAX);
            if our < their {
                problems.push(format!("{path}: {limit} {our} is below Flux's {their}"));
            }
        }
    }
    for limit in ["minLength", "minItems"] {
        if let Some(our) = ours.get(limit).and_then(Value::as_u64) {
            let their = theirs.get(limit).and_then(Value::as_u64).unwrap_or(0);
            if our > their {
                problems.push(format!("{path}: {limit} {our} is above Flux's {their}"));
            }
        }
    }
    let their_required: Vec<&Value> = theirs
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().collect())
        .unwrap_or_default();
    for field in ours
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if !their_required.contains(&field) {
            problems.push(format!("{path}: requires {field}, Flux does not"));
        }
    }
    if let Some(their_props) = theirs.get("properties").and_then(Value::as_object) {
        for (name, their_child) in their_props {
            let child_path = format!("{path}.{name}");
            if path.is_empty() && ["apiVersion", "kind", "metadata"].contains(&name.as_str()) {
                continue; // the API server supplies these
            }
            match ours.get("properties").and_then(|p| p.get(name)) {
                Some(our_child) => assert_superset(our_child, their_child, &child_path, problems),
                None if preserves => {}
                None => problems.push(format!(
                    "{child_path}: missing (the API server would prune it)"
                )),
            }
        }
    }
    for key in ["items", "additionalProperties"] {
        if let (Some(our_child), Some(their_child)) = (ours.get(key), theirs.get(key))
            && their_child.is_object()
        {
            assert_superset(our_child, their_child, &format!("{path}.{key}"), problems);
        }
    }
}

#[test]
fn receiver_schema_accepts_everything_fluxs_accepts() {
    let ours = herald_crd("Receiver");
    let theirs = flux_crd("receivers.yaml");
    for version in RECEIVER_VERSIONS {
        let mut problems = Vec::new();
        assert_superset(
            schema(&ours, version),
            schema(&theirs, version),
            "",
            &mut problems,
        );
        assert!(
            problems.is_empty(),
            "Receiver {version}:\n{}",
            problems.join("\n")
        );
    }
}

/// Flux's documented Receiver examples validate against herald's schema.
#[test]
fn receiver_examples_validate() {
    let crd = herald_crd("Receiver");
    let examples = r#"
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata: {name: github-receiver, namespace: flux-system}
spec:
  type: github
  interval: 1h
  events: ["ping", "push"]
  secretRef: {name: receiver-token}
  resourceFilter: 'res.metadata.name != "skip"'
  resources:
    - apiVersion: source.toolkit.fluxcd.io/v1
      kind: GitRepository
      name: flux-system
    - kind: OCIRepository
      name: "*"
      namespace: apps
      matchLabels: {app: podinfo}
      filter: 'true'
  suspend: false
---
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata: {name: oidc, namespace: default}
spec:
  type: generic-oidc
  oidcProviders:
    - issuerURL: https://token.actions.githubusercontent.com
      audience: notification-controller
      variables: [{name: owner, expression: claims.repository_owner}]
      validations: [{expression: "vars.owner == 'my-org'", message: wrong org}]
  resources:
    - {apiVersion: source.toolkit.fluxcd.io/v1, kind: GitRepository, name: webapp}
"#;
    for value in herald::yaml::parse_stream(examples).expect("yaml") {
        let mut problems = Vec::new();
        validate(&value, schema(&crd, "v1"), "", &mut problems);
        assert!(problems.is_empty(), "{problems:#?}");
        let typed: herald::api::Receiver = serde_json::from_value(value).expect("typed");
        assert!(!typed.spec.resources.is_empty());
    }
}

#[test]
fn schemas_accept_everything_fluxs_accept_at_every_version() {
    for (kind, file) in [("Alert", "alerts.yaml"), ("Provider", "providers.yaml")] {
        let ours = herald_crd(kind);
        // Flux v1.9.3's v1beta3 and Flux v1.10's v1 and v1beta3.
        let flux_v1_9 = flux_crd(file);
        let flux_v1_10 = flux_crd_v1_10(file);
        let theirs = [
            schema(&flux_v1_9, "v1beta3"),
            schema(&flux_v1_10, "v1beta3"),
            schema(&flux_v1_10, "v1"),
        ];
        for version in SERVED_VERSIONS {
            for (i, flux_schema) in theirs.iter().enumerate() {
                let mut problems = Vec::new();
                assert_superset(schema(&ours, version), flux_schema, "", &mut problems);
                assert!(
                    problems.is_empty(),
                    "{kind} {version} against Flux's schema #{i}:\n{}",
                    problems.join("\n")
                );
            }
        }
        // Flux v1.10's deprecation warning on v1beta3, word for word.
        let warning = |crd: &Value| {
            crd["spec"]["versions"]
                .as_array()
                .and_then(|v| v.iter().find(|v| v["name"] == "v1beta3"))
                .map(|v| v["deprecationWarning"].clone())
        };
        assert_eq!(warning(&ours), warning(&flux_v1_10), "{kind}");
    }
}

fn flux_crd_v1_10(file: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/flux-crds-v1.10")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("flux v1.10 reference crd");
    herald::yaml::parse_document(&text).expect("flux crd yaml")
}

/// A minimal validator for what the API server checks on write: types,
/// required fields, enums, and no field the schema would prune.
fn validate(value: &Value, schema: &Value, path: &str, problems: &mut Vec<String>) {
    if schema["x-kubernetes-preserve-unknown-fields"] == true && schema.get("type").is_none() {
        if let Some(anyof) = schema.get("anyOf").and_then(Value::as_array) {
            let ok = anyof
                .iter()
                .any(|b| match b.get("enum").and_then(Value::as_array) {
                    Some(e) => e.contains(value),
                    None => value.is_array(),
                });
            if !ok {
                problems.push(format!("{path}: {value} matches no anyOf branch"));
            }
        }
        return;
    }
    let type_ok = match schema["type"].as_str() {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("boolean") => value.is_boolean(),
        Some("integer") => value.is_i64() || value.is_u64(),
        _ => true,
    };
    let null_allowed = value.is_null() && schema["nullable"] == true;
    if !type_ok && !null_allowed {
        problems.push(format!("{path}: {value} is not of type {}", schema["type"]));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        problems.push(format!("{path}: {value} not in enum"));
    }
    if let Some(object) = value.as_object() {
        for field in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !object.contains_key(field.as_str().unwrap_or_default()) {
                problems.push(format!("{path}: missing required {field}"));
            }
        }
        for (name, child) in object {
            let child_path = format!("{path}.{name}");
            if let Some(child_schema) = schema.get("properties").and_then(|p| p.get(name)) {
                validate(child, child_schema, &child_path, problems);
            } else if let Some(child_schema) =
                schema.get("additionalProperties").filter(|s| s.is_object())
            {
                validate(child, child_schema, &child_path, problems);
            } else if !(path.is_empty()
                && ["apiVersion", "kind", "metadata"].contains(&name.as_str()))
            {
                problems.push(format!("{child_path}: unknown field, would be pruned"));
            }
        }
    }
    if let (Some(items), Some(item_schema)) = (value.as_array(), schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            validate(item, item_schema, &format!("{path}[{i}]"), problems);
        }
    }
}

#[test]
fn seed_manifests_validate_at_their_declared_version() {
    let seed = support::fixtures().join("seed");
    let mut checked = 0;
    for entry in std::fs::read_dir(&seed).expect("seed dir") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        for value in herald::yaml::parse_stream(&text).expect("yaml") {
            let (Some(api_version), Some(kind)) =
                (value["apiVersion"].as_str(), value["kind"].as_str())
            else {
                continue;
            };
            let Some(version) = api_version.strip_prefix("notification.toolkit.fluxcd.io/") else {
                continue;
            };
            let crd = herald_crd(kind);
            let mut problems = Vec::new();
            validate(&value, schema(&crd, version), "", &mut problems);
            assert!(problems.is_empty(), "{}: {problems:#?}", path.display());
            checked += 1;
        }
    }
    assert_eq!(checked, 4, "the seed has one Provider and three Alerts");
}

/// What `kubectl explain` and `kubectl apply` show: every kind describes
/// itself (not kube-rs's "Auto-generated derived type"), and no schema
/// names a format Kubernetes does not know (the API server warns on each
/// apply, as it did for `uint32`).
#[test]
fn schemas_read_well_in_kubectl() {
    const FORMATS: [&str; 9] = [
        "int32",
        "int64",
        "float",
        "double",
        "byte",
        "date",
        "date-time",
        "password",
        "binary",
    ];
    fn formats(node: &Value, path: &str, found: &mut Vec<String>) {
        match node {
            Value::Object(fields) => {
                for (key, value) in fields {
                    if key == "format"
                        && let Some(format) = value.as_str()
                        && !FORMATS.contains(&format)
                    {
                        found.push(format!("{path}: format {format}"));
                    }
                    formats(value, &format!("{path}/{key}"), found);
                }
            }
            Value::Array(items) => items
                .iter()
                .enumerate()
                .for_each(|(i, item)| formats(item, &format!("{path}/{i}"), found)),
            _ => {}
        }
    }
    let mut problems = Vec::new();
    for kind in ["Alert", "Provider", "Receiver"] {
        let crd = herald_crd(kind);
        for version in crd["spec"]["versions"].as_array().expect("versions") {
            let schema = &version["schema"]["openAPIV3Schema"];
            let description = schema["description"].as_str().unwrap_or_default();
            if !description.starts_with(&format!("{kind} is the Schema")) {
                problems.push(format!(
                    "{kind} {}: description {description:?}",
                    version["name"]
                ));
            }
            formats(
                schema,
                &format!("{kind} {}", version["name"]),
                &mut problems,
            );
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
