//! `herald check`: validate manifests the way the controller would.

use clap::Args;

use super::RoutingArgs;
use crate::api::Reason;
use crate::routing;
use crate::source::{Level, ObjectKey, Origin, Problem, manifests};

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub routing: RoutingArgs,

    /// Also list each object Flux's own notification-controller (v1.9.3,
    /// Flux 2.9; v1.10, Flux 2.10) would refuse or read differently, and
    /// why: what to fix before going back to Flux. Each is an error.
    #[arg(long)]
    pub flux_compatible: bool,
}

pub fn run(args: &CheckArgs) -> i32 {
    let (snapshot, mut problems) = manifests::load(&args.routing.manifests);
    let (table, more) = routing::build(&snapshot, &args.routing.table_options());
    problems.extend(more);
    problems.extend(receiver_problems(&snapshot));
    if args.flux_compatible {
        problems.extend(flux_incompatibilities(&manifests::raw_documents(
            &args.routing.manifests,
        )));
    }
    problems.retain(|p| p.level != Level::Note);
    // In file order, as a person reads the manifests.
    problems.sort_by_key(|p| match &p.origin {
        Origin::File { path, document } => (Some(path.clone()), *document),
        Origin::Cluster => (None, 0),
    });
    for problem in &problems {
        if super::emit(&format!("{problem}\n")).is_err() {
            break;
        }
    }
    let errors = problems.iter().filter(|p| p.level == Level::Error).count();
    let warnings = problems.len() - errors;
    let summary = format!(
        "{} alerts ({} routing), {} providers, {} receivers, {} secrets: {errors} errors, {warnings} warnings",
        snapshot.alerts.len(),
        table.alert_count(),
        snapshot.providers.len(),
        snapshot.receivers.len(),
        snapshot.secrets.len(),
    );
    if errors > 0 {
        eprintln!("check failed: {summary}");
        1
    } else {
        eprintln!("check passed: {summary}");
        0
    }
}

/// The kinds a Receiver can request a reconciliation of (Flux's enum).
const RECEIVER_KINDS: [&str; 10] = [
    "Bucket",
    "GitRepository",
    "Kustomization",
    "HelmRelease",
    "HelmChart",
    "HelmRepository",
    "ImageRepository",
    "ImagePolicy",
    "ImageUpdateAutomation",
    "OCIRepository",
];

/// The Receivers' problems, found the way the controller finds them (its
/// Secret and `token` key, CEL and OIDC settings) plus what Flux's CRD
/// would refuse (a kind no Receiver can reconcile) and `spec.events` on a
/// type that ignores it.
fn receiver_problems(snapshot: &crate::source::Snapshot) -> Vec<Problem> {
    use crate::api::ReceiverType;
    use crate::webhook::table::{self, ReceiverSecret, SecretLookup};
    let secrets: std::collections::HashMap<ObjectKey, ReceiverSecret> = snapshot
        .secrets
        .iter()
        .map(|(key, data)| {
            let secret = ReceiverSecret {
                token: data.get("token").map(|t| t.as_bytes().to_vec()),
                email: data.get("email").cloned(),
                audience: data.get("audience").cloned(),
            };
            (key.clone(), secret)
        })
        .collect();
    let mut problems = Vec::new();
    for loaded in &snapshot.receivers {
        let receiver = &loaded.object;
        let key = ObjectKey::new(
            receiver.metadata.namespace.as_deref().unwrap_or("default"),
            receiver.metadata.name.as_deref().unwrap_or_default(),
        );
        let mut report = |level, reason: Reason, message: String| {
            problems.push(Problem {
                level,
                origin: loaded.origin.clone(),
                object: format!("Receiver {key}"),
                target: None,
                reason,
                message,
            });
        };
        let (_, statuses) = table::build(std::slice::from_ref(receiver), |secret| {
            match secrets.get(secret) {
                Some(found) => SecretLookup::Found(found),
                None => SecretLookup::Missing,
            }
        });
        for status in statuses.iter().filter(|s| !s.ready) {
            let reason = match status.reason {
                reason @ (Reason::TokenNotFound
                | Reason::InvalidCELExpression
                | Reason::ValidationFailed) => reason,
                _ => Reason::InvalidSpec,
            };
            report(Level::Error, reason, status.message.clone());
        }
        let spec = &receiver.spec;
        for (i, resource) in spec.resources.iter().enumerate() {
            if !RECEIVER_KINDS.contains(&resource.kind.as_str()) {
                report(
                    Level::Error,
                    Reason::InvalidSpec,
                    format!(
                        "spec.resources[{i}].kind: '{}' is not a kind a Receiver can reconcile \
                         (expected one of {})",
                        resource.kind,
                        RECEIVER_KINDS.join(", ")
                    ),
                );
            }
            if resource.name.is_empty() {
                report(
                    Level::Error,
                    Reason::InvalidSpec,
                    format!("spec.resources[{i}].name is empty"),
                );
            }
        }
        let filters_events = matches!(
            spec.type_,
            ReceiverType::Github
                | ReceiverType::Gitlab
                | ReceiverType::Bitbucket
                | ReceiverType::Cdevents
        );
        if !filters_events && spec.events.as_ref().is_some_and(|e| !e.is_empty()) {
            report(
                Level::Warning,
                Reason::EventsIgnored,
                format!(
                    "spec.events: type {} does not name its events; the list is ignored \
                     (only github, gitlab, bitbucket and cdevents filter on it)",
                    spec.type_.as_str()
                ),
            );
        }
    }
    problems
}

const NOTIFICATION: &str = "notification.toolkit.fluxcd.io/";

/// What Flux's own controller (v1.9.3 with Flux 2.9's CRDs, v1.10 with
/// Flux 2.10's) would refuse or read differently in these documents.
fn flux_incompatibilities(documents: &[(Origin, serde_json::Value)]) -> Vec<Problem> {
    use serde_json::Value;
    let text = |v: &Value, path: &[&str]| -> String {
        path.iter()
            .try_fold(v, |node, key| node.get(key))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let mut problems = Vec::new();
    let mut referenced = std::collections::HashSet::new();
    for (_, doc) in documents {
        let api = text(doc, &["apiVersion"]);
        if api.starts_with(NOTIFICATION)
            && text(doc, &["kind"]) == "Provider"
            && let Some(secret) = doc.pointer("/spec/secretRef/name").and_then(Value::as_str)
        {
            let namespace = text(doc, &["metadata", "namespace"]);
            referenced.insert((namespace, secret.to_owned()));
        }
    }
    for (origin, doc) in documents {
        let api = text(doc, &["apiVersion"]);
        let kind = text(doc, &["kind"]);
        let key = ObjectKey::new(
            Some(text(doc, &["metadata", "namespace"]))
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "default".into()),
            text(doc, &["metadata", "name"]),
        );
        let mut report = |message: String| {
            problems.push(Problem {
                level: Level::Error,
                origin: origin.clone(),
                object: format!("{kind} {key}"),
                target: None,
                reason: Reason::FluxIncompatible,
                message,
            });
        };
        if kind == "Secret" && api == "v1" {
            let has = |key: &str| {
                doc.pointer(&format!("/data/{key}")).is_some()
                    || doc.pointer(&format!("/stringData/{key}")).is_some()
            };
            if has("url")
                && !has("address")
                && referenced.contains(&(key.namespace.clone(), key.name.clone()))
            {
                report(
                    "the Provider's address is in the 'url' key: Flux reads only 'address' \
                     (and then spec.address)"
                        .into(),
                );
            }
            continue;
        }
        let Some(version) = api.strip_prefix(NOTIFICATION) else {
            continue;
        };
        if kind != "Alert" && kind != "Provider" {
            continue;
        }
        if version == "v1beta1" || version == "v1beta2" {
            report(format!(
                "apiVersion: {api}: Flux 2.9 serves {kind} at v1beta3 only, Flux 2.10 at v1 and \
                 v1beta3; apply it at {NOTIFICATION}v1"
            ));
        }
        let spec = doc.get("spec").cloned().unwrap_or(Value::Null);
        if kind == "Alert" {
            for field in ["template", "channel", "digest"] {
                if spec.get(field).is_some() {
                    report(format!(
                        "spec.{field} is herald's: Flux's schema does not declare it, so \
                         server-side apply (kustomize-controller) refuses the object"
                    ));
                }
            }
            match spec.get("eventSeverity") {
                Some(Value::String(s)) if s != "info" && s != "error" => report(format!(
                    "spec.eventSeverity: \"{s}\" is herald's: Flux accepts info or error"
                )),
                Some(Value::Array(_)) => report(
                    "spec.eventSeverity: a list is herald's: Flux accepts info or error".into(),
                ),
                _ => {}
            }
            if version == "v1" && spec.get("summary").is_some() {
                report(
                    "spec.summary: Flux 2.10 dropped it from v1 (it is pruned); put it in \
                     spec.eventMetadata.summary"
                        .into(),
                );
            }
        } else {
            if version == "v1" && spec.get("proxy").is_some() {
                report(
                    "spec.proxy: Flux 2.10 dropped it from v1 (it is pruned); use \
                     spec.proxySecretRef"
                        .into(),
                );
            }
            if spec.get("type").and_then(Value::as_str) == Some("mastodon") {
                report("spec.type: mastodon is Flux 2.10's: Flux 2.9 refuses it".into());
            }
        }
    }
    problems
}
