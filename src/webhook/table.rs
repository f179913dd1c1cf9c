//! The receiver table: every Receiver by its webhook path, with what a
//! request needs already prepared (token, compiled CEL), and each
//! Receiver's status, as Flux's receiver controller would write it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::api::Reason;
use crate::api::receiver::{DEFAULT_INTERVAL, ReceiverResource};
use crate::api::{Receiver, ReceiverType};
use crate::source::ObjectKey;

use super::oidc::{self, CompiledProvider};
use super::verify::webhook_path;
use crate::cel::{self, Expression, Output};

/// What a Receiver's Secret holds for it, as bytes (the token is used as
/// Flux uses it: untrimmed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReceiverSecret {
    pub token: Option<Vec<u8>>,
    /// gcr: the push subscription's service account.
    pub email: Option<String>,
    /// gcr: the audience of its tokens.
    pub audience: Option<String>,
}

impl ReceiverSecret {
    pub fn from_secret(secret: &k8s_openapi::api::core::v1::Secret) -> Self {
        let value = |key: &str| -> Option<Vec<u8>> {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|v| v.0.clone())
                .or_else(|| {
                    secret
                        .string_data
                        .as_ref()
                        .and_then(|d| d.get(key))
                        .map(|v| v.as_bytes().to_vec())
                })
        };
        let text = |key: &str| value(key).map(|v| String::from_utf8_lossy(&v).into_owned());
        Self {
            token: value("token"),
            email: text("email"),
            audience: text("audience"),
        }
    }
}

/// Whether a Receiver answers requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Ready,
    /// `spec.suspend`: answered 503.
    Suspended,
    /// Not ready (bad CEL, bad OIDC spec): answered 503.
    NotReady,
}

/// One Receiver, ready to serve.
#[derive(Debug)]
pub struct Entry {
    pub key: ObjectKey,
    pub kind: ReceiverType,
    pub state: State,
    pub token: Vec<u8>,
    pub secret: ReceiverSecret,
    pub events: Vec<String>,
    pub resources: Vec<ReceiverResource>,
    pub resource_filter: Option<Expression>,
    /// Aligned with `resources`.
    pub filters: Vec<Option<Expression>>,
    pub oidc: Vec<CompiledProvider>,
}

impl Entry {
    /// Whether any CEL filter needs the request body.
    pub fn has_filters(&self) -> bool {
        self.resource_filter.is_some() || self.filters.iter().any(Option::is_some)
    }
}

/// Receivers by webhook path.
#[derive(Debug, Default)]
pub struct ReceiverTable {
    by_path: HashMap<String, Arc<Entry>>,
}

impl ReceiverTable {
    pub fn get(&self, path: &str) -> Option<&Arc<Entry>> {
        self.by_path.get(path)
    }

    pub fn len(&self) -> usize {
        self.by_path.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }
}

/// The status a Receiver should have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiverStatus {
    pub key: ObjectKey,
    pub ready: bool,
    pub reason: Reason,
    pub message: String,
    /// `status.webhookPath`: cleared when the token cannot be read.
    pub webhook_path: Option<String>,
    /// Not ready because of an error worth a Warning Event.
    pub failed: bool,
    /// The kstatus condition beside `Ready` (as Flux's controller sets
    /// them): `Stalled` for a configuration error that will not fix itself
    /// (an invalid CEL expression, a Secret without its `token` key),
    /// `Reconciling` while it waits for its Secret to exist.
    pub progress: Option<&'static str>,
    /// Suspended: status is left as it is (as Flux does).
    pub untouched: bool,
}

/// Where a Receiver's Secret stands.
pub enum SecretLookup<'a> {
    Found(&'a ReceiverSecret),
    Missing,
    /// Not read yet (or unreadable for now): no status is written.
    Unknown,
}

/// Builds the table and the statuses from the Receivers and their Secrets.
pub fn build<'a>(
    receivers: &[Arc<Receiver>],
    secret: impl Fn(&ObjectKey) -> SecretLookup<'a>,
) -> (ReceiverTable, Vec<ReceiverStatus>) {
    let mut table = ReceiverTable::default();
    let mut statuses = Vec::new();
    for receiver in receivers {
        let namespace = receiver.metadata.namespace.clone().unwrap_or_default();
        let name = receiver.metadata.name.clone().unwrap_or_default();
        let key = ObjectKey::new(namespace.clone(), name.clone());
        let spec = &receiver.spec;
        let suspended = spec.suspend == Some(true);
        let status =
            |ready: bool, reason: Reason, message: String, path: Option<String>| ReceiverStatus {
                key: key.clone(),
                ready,
                failed: !ready,
                progress: None,
                reason,
                message,
                webhook_path: path,
                untouched: suspended,
            };
        // Terminal configuration errors: Flux keeps the previous path.
        let previous_path = receiver
            .status
            .as_ref()
            .and_then(|s| s.webhook_path.clone());
        let (compiled, config_error) = compile(receiver);
        let lookup = match &spec.secret_ref {
            None => SecretLookup::Found(&EMPTY_SECRET),
            Some(reference) => secret(&ObjectKey::new(namespace.clone(), reference.name.clone())),
        };
        let secret_name = spec
            .secret_ref
            .as_ref()
            .map(|r| format!("{namespace}/{}", r.name))
            .unwrap_or_default();
        let secret_missing = matches!(lookup, SecretLookup::Missing);
        let found = match lookup {
            SecretLookup::Unknown => continue,
            SecretLookup::Missing => Err(format!(
                "unable to read token from secret '{secret_name}' error: secrets \"{}\" not found",
                spec.secret_ref
                    .as_ref()
                    .map(|r| r.name.as_str())
                    .unwrap_or_default()
            )),
            SecretLookup::Found(data) => match (&spec.secret_ref, &data.token) {
                // generic-oidc has no Secret: the path is of name and namespace.
                (None, _) => Ok(data.clone()),
                (Some(_), Some(_)) => Ok(data.clone()),
                (Some(_), None) => Err(format!(
                    "invalid '{secret_name}' secret data: required fields 'token'"
                )),
            },
        };
        let (state, reported) = match (&config_error, &found) {
            (Some((reason, message)), _) => (
                State::NotReady,
                ReceiverStatus {
                    progress: Some(crate::api::condition::STALLED),
                    ..status(
                        false,
                        *reason,
                        format!(
                            "Reconciliation failed terminally due to configuration error: {message}"
                        ),
                        previous_path,
                    )
                },
            ),
            (None, Err(message)) => (
                State::NotReady,
                ReceiverStatus {
                    // A Secret may yet be created; one without its key
                    // needs an edit.
                    progress: Some(if secret_missing {
                        crate::api::condition::RECONCILING
                    } else {
                        crate::api::condition::STALLED
                    }),
                    ..status(false, Reason::TokenNotFound, message.clone(), None)
                },
            ),
            (None, Ok(data)) => {
                let token = data.token.clone().unwrap_or_default();
                let path = webhook_path(&token, &name, &namespace);
                (
                    State::Ready,
                    status(
                        true,
                        Reason::Succeeded,
                        format!("Receiver initialized for path: {path}"),
                        Some(path),
                    ),
                )
            }
        };
        let state = if suspended { State::Suspended } else { state };
        if let Ok(data) = &found {
            let token = data.token.clone().unwrap_or_default();
            let path = webhook_path(&token, &name, &namespace);
            let (resource_filter, filters, oidc) = compiled.unwrap_or_default();
            let entry = Entry {
                key: key.clone(),
                kind: spec.type_,
                state,
                token,
                secret: data.clone(),
                events: spec.events.clone().unwrap_or_default(),
                resources: spec.resources.clone(),
                resource_filter,
                filters,
                oidc,
            };
            // Two Receivers cannot share a path unless they share token,
            // name and namespace: the path is unique to the object.
            table.by_path.insert(path, Arc::new(entry));
        }
        statuses.push(reported);
    }
    (table, statuses)
}

static EMPTY_SECRET: ReceiverSecret = ReceiverSecret {
    token: None,
    email: None,
    audience: None,
};

type Compiled = (
    Option<Expression>,
    Vec<Option<Expression>>,
    Vec<CompiledProvider>,
);

/// Compiles a Receiver's CEL and checks its OIDC settings, in Flux's
/// order; the first failure is its (reason, message).
fn compile(receiver: &Receiver) -> (Option<Compiled>, Option<(Reason, String)>) {
    let spec = &receiver.spec;
    let variables: &[&str] = if spec.type_ == ReceiverType::GenericOidc {
        &["res", "req", "claims"]
    } else {
        &["res", "req"]
    };
    let resource_filter = match spec.resource_filter.as_deref().filter(|f| !f.is_empty()) {
        None => None,
        Some(source) => match cel::compile(source, variables, Output::Bool) {
            Ok(expression) => Some(expression),
            Err(e) => {
                return (
                    None,
                    Some((
                        Reason::InvalidCELExpression,
                        format!("invalid resourceFilter expression: {e}"),
                    )),
                );
            }
        },
    };
    let mut filters = Vec::with_capacity(spec.resources.len());
    for (i, resource) in spec.resources.iter().enumerate() {
        match resource.filter.as_deref().filter(|f| !f.is_empty()) {
            None => filters.push(None),
            Some(source) => match cel::compile(source, variables, Output::Bool) {
                Ok(expression) => filters.push(Some(expression)),
                Err(e) => {
                    return (
                        None,
                        Some((
                            Reason::InvalidCELExpression,
                            format!(
                                "invalid filter expression for resources[{i}] (kind={:?}, name={:?}): {e}",
                                resource.kind, resource.name
                            ),
                        )),
                    );
                }
            },
        }
    }
    let providers = spec.oidc_providers.as_deref().unwrap_or_default();
    let oidc_type = spec.type_ == ReceiverType::GenericOidc;
    let spec_error = if oidc_type && providers.is_empty() {
        Some("generic-oidc receiver requires at least one oidcProvider")
    } else if !oidc_type && !providers.is_empty() {
        Some("oidcProviders can only be set when type is generic-oidc")
    } else if oidc_type && spec.secret_ref.is_some() {
        Some("secretRef cannot be set when type is generic-oidc")
    } else if !oidc_type && spec.secret_ref.is_none() {
        Some("secretRef is required when type is not generic-oidc")
    } else {
        None
    };
    if let Some(message) = spec_error {
        return (None, Some((Reason::ValidationFailed, message.to_owned())));
    }
    if let Err(e) = oidc::validate_providers(providers) {
        return (None, Some((Reason::ValidationFailed, e)));
    }
    let mut compiled = Vec::new();
    for (i, provider) in providers.iter().enumerate() {
        match oidc::compile_provider(i, provider) {
            Ok(p) => compiled.push(p),
            Err(e) => return (None, Some((Reason::InvalidCELExpression, e))),
        }
    }
    (Some((resource_filter, filters, compiled)), None)
}

/// `spec.interval` (Flux's default 10m): how often a Receiver's status is
/// confirmed even when nothing changed.
pub fn interval(receiver: &Receiver) -> std::time::Duration {
    let text = receiver
        .spec
        .interval
        .as_deref()
        .unwrap_or(DEFAULT_INTERVAL);
    crate::duration::parse(text).unwrap_or(std::time::Duration::from_secs(600))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn receiver(spec: serde_json::Value) -> Arc<Receiver> {
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "notification.toolkit.fluxcd.io/v1",
                "kind": "Receiver",
                "metadata": {"name": "hook", "namespace": "apps"},
                "spec": spec,
            }))
            .expect("receiver"),
        )
    }

    fn secret(token: &str) -> ReceiverSecret {
        ReceiverSecret {
            token: Some(token.as_bytes().to_vec()),
            ..Default::default()
        }
    }

    #[test]
    fn ready_receivers_are_indexed_by_fluxs_path() {
        let r = receiver(json!({"type": "github", "secretRef": {"name": "s"}, "resources": []}));
        let data = secret("tok");
        let (table, statuses) = build(&[r], |_| SecretLookup::Found(&data));
        let path = webhook_path(b"tok", "hook", "apps");
        let entry = table.get(&path).expect("indexed");
        assert_eq!(entry.state, State::Ready);
        assert_eq!(statuses[0].webhook_path.as_deref(), Some(path.as_str()));
        assert_eq!(statuses[0].reason, Reason::Succeeded);
        assert_eq!(
            statuses[0].message,
            format!("Receiver initialized for path: {path}")
        );
    }

    #[test]
    fn secret_problems_are_token_not_found_with_no_path() {
        let r = receiver(json!({"type": "generic", "secretRef": {"name": "s"}, "resources": []}));
        let (table, statuses) = build(std::slice::from_ref(&r), |_| SecretLookup::Missing);
        assert!(table.is_empty());
        assert_eq!(statuses[0].reason, Reason::TokenNotFound);
        assert_eq!(
            statuses[0].message,
            "unable to read token from secret 'apps/s' error: secrets \"s\" not found"
        );
        assert_eq!(statuses[0].webhook_path, None);
        let no_token = ReceiverSecret::default();
        let (_, statuses) = build(std::slice::from_ref(&r), |_| SecretLookup::Found(&no_token));
        assert_eq!(
            statuses[0].message,
            "invalid 'apps/s' secret data: required fields 'token'"
        );
        let (_, statuses) = build(&[r], |_| SecretLookup::Unknown);
        assert!(
            statuses.is_empty(),
            "nothing is written before the Secret is read"
        );
    }

    #[test]
    fn bad_cel_is_terminal_and_served_503() {
        let r = receiver(json!({
            "type": "generic", "secretRef": {"name": "s"},
            "resourceFilter": "res.metadata.name",
            "resources": []
        }));
        let data = secret("tok");
        let (table, statuses) = build(&[r], |_| SecretLookup::Found(&data));
        assert_eq!(statuses[0].reason, Reason::InvalidCELExpression);
        assert!(statuses[0].message.starts_with(
            "Reconciliation failed terminally due to configuration error: invalid resourceFilter expression:"
        ));
        let entry = table
            .get(&webhook_path(b"tok", "hook", "apps"))
            .expect("indexed");
        assert_eq!(entry.state, State::NotReady);
    }

    #[test]
    fn generic_oidc_paths_have_no_token() {
        let r = receiver(json!({
            "type": "generic-oidc",
            "oidcProviders": [{"issuerURL": "https://issuer", "validations": [{"expression": "true", "message": "m"}]}],
            "resources": []
        }));
        let (table, statuses) = build(&[r], |_| SecretLookup::Missing);
        assert!(statuses[0].ready, "{statuses:?}");
        assert!(table.get(&webhook_path(b"", "hook", "apps")).is_some());
        let wrong =
            receiver(json!({"type": "generic-oidc", "secretRef": {"name": "s"}, "resources": []}));
        let (_, statuses) = build(&[wrong], |_| SecretLookup::Missing);
        assert_eq!(statuses[0].reason, Reason::ValidationFailed);
    }

    #[test]
    fn suspended_receivers_keep_their_status() {
        let r = receiver(
            json!({"type": "generic", "secretRef": {"name": "s"}, "suspend": true, "resources": []}),
        );
        let data = secret("tok");
        let (table, statuses) = build(&[r], |_| SecretLookup::Found(&data));
        assert!(statuses[0].untouched);
        assert_eq!(
            table
                .get(&webhook_path(b"tok", "hook", "apps"))
                .unwrap()
                .state,
            State::Suspended
        );
    }
}
