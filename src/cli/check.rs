//! `herald check`: validate manifests the way the controller would.

use clap::Args;

use super::RoutingArgs;
use crate::routing;
use crate::source::{Level, ObjectKey, Origin, Problem, manifests};

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub routing: RoutingArgs,
}

pub fn run(args: &CheckArgs) -> i32 {
    let (snapshot, mut problems) = manifests::load(&args.routing.manifests);
    let (table, more) = routing::build(&snapshot, &args.routing.table_options());
    problems.extend(more);
    problems.extend(receiver_problems(&snapshot));
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
        let mut report = |level, reason: &'static str, message: String| {
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
            let reason = match status.reason.as_str() {
                table::TOKEN_NOT_FOUND => table::TOKEN_NOT_FOUND,
                table::INVALID_CEL => table::INVALID_CEL,
                table::VALIDATION_FAILED => table::VALIDATION_FAILED,
                _ => "InvalidSpec",
            };
            report(Level::Error, reason, status.message.clone());
        }
        let spec = &receiver.spec;
        for (i, resource) in spec.resources.iter().enumerate() {
            if !RECEIVER_KINDS.contains(&resource.kind.as_str()) {
                report(
                    Level::Error,
                    "InvalidSpec",
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
                    "InvalidSpec",
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
                "EventsIgnored",
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
