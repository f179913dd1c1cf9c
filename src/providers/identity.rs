//! Object-level workload identity: a Provider's `spec.serviceAccountName`
//! names a ServiceAccount in its namespace whose Kubernetes token herald
//! exchanges for a cloud access token, as Flux v1.9.3 does (through
//! `fluxcd/pkg/auth`) when its `ObjectLevelWorkloadIdentity` feature gate
//! is on.
//!
//! Only Azure is implemented (`azureeventhub`, `azuredevops`): the
//! ServiceAccount's `azure.workload.identity/tenant-id` and
//! `azure.workload.identity/client-id` annotations name the app; a
//! TokenRequest for the ServiceAccount with the audience
//! `api://AzureADTokenExchange` gives the assertion; Azure AD's client
//! credentials grant (`client_assertion`) at `AZURE_AUTHORITY_HOST`
//! (default `https://login.microsoftonline.com/`) turns it into an access
//! token for the provider's scope. Tokens are kept until a minute before
//! they expire, per ServiceAccount, identity, scope and authority (Flux's
//! cache key), across reloads of the routing table.
//!
//! Whether identity is available is process-wide: `herald controller`
//! decides it once from its `--feature-gates` ([`enable`], [`disable`]);
//! `serve`, `route` and `check` set nothing: they request no tokens (`serve`
//! has no API server to ask; `route` and `check` only show).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use serde::Deserialize;

use super::{Body, Request, Sender, Verdict};
use crate::api::ProviderType;
use crate::mask::SecretString;

/// Flux's feature gate for `spec.serviceAccountName`.
pub const FEATURE_GATE: &str = "ObjectLevelWorkloadIdentity";
/// The audience Flux asks the Kubernetes token for (Azure's federated
/// credential issuer audience).
pub const AZURE_AUDIENCE: &str = "api://AzureADTokenExchange";
/// The ServiceAccount annotations naming the Azure app (Flux reads these).
pub const AZURE_TENANT_ANNOTATION: &str = "azure.workload.identity/tenant-id";
pub const AZURE_CLIENT_ANNOTATION: &str = "azure.workload.identity/client-id";
/// Azure AD's public cloud, used when `AZURE_AUTHORITY_HOST` is unset.
const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com/";
/// The scopes Flux asks for (`fluxcd/pkg/auth/azure`).
pub const SCOPE_EVENT_HUBS: &str = "https://eventhubs.azure.net//.default";
pub const SCOPE_DEVOPS: &str = "499b84ac-1321-427f-aa17-267ca6975798/.default";
/// How long before its expiry a cached token is replaced.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// What `herald controller` decided from its feature gates.
enum Mode {
    Disabled,
    Enabled(kube::Client),
}

static MODE: OnceLock<Mode> = OnceLock::new();

/// Turns workload identity on, requesting tokens through `client`.
pub fn enable(client: kube::Client) {
    let _ = MODE.set(Mode::Enabled(client));
}

/// The controller runs without the feature gate.
pub fn disable() {
    let _ = MODE.set(Mode::Disabled);
}

/// A `Ready=False` reason and message.
pub type Refusal = (&'static str, String);

/// The identity a Provider of type `kind` in `namespace` gets from its
/// `spec.serviceAccountName`, or why it cannot have one. `None`: the type
/// ignores the field (as Flux's notifiers that take no cloud token do).
pub fn for_provider(
    kind: ProviderType,
    namespace: &str,
    service_account: &str,
) -> Result<Option<Arc<WorkloadIdentity>>, Refusal> {
    let client = match MODE.get() {
        None => {
            return Err((
                "WorkloadIdentityNotSupported",
                format!(
                    "spec.serviceAccountName: '{service_account}' asks for workload identity, \
                     which needs `herald controller` with --feature-gates={FEATURE_GATE}=true \
                     (it requests the ServiceAccount's token from the Kubernetes API when \
                     delivering); `serve`, `route` and `check` do not"
                ),
            ));
        }
        Some(Mode::Disabled) => {
            return Err((
                "WorkloadIdentityNotSupported",
                format!(
                    "spec.serviceAccountName: to use spec.serviceAccountName for provider \
                     authentication please enable the {FEATURE_GATE} feature gate in the \
                     controller (--feature-gates={FEATURE_GATE}=true)"
                ),
            ));
        }
        Some(Mode::Enabled(client)) => client,
    };
    match kind {
        ProviderType::Azureeventhub | ProviderType::Azuredevops => {
            Ok(Some(Arc::new(WorkloadIdentity {
                client: client.clone(),
                namespace: namespace.to_owned(),
                service_account: service_account.to_owned(),
            })))
        }
        ProviderType::Googlepubsub => Err((
            "WorkloadIdentityNotSupported",
            format!(
                "spec.serviceAccountName: '{service_account}': herald implements workload \
                 identity for Azure only (azureeventhub, azuredevops); googlepubsub needs a \
                 service-account JSON key in spec.secretRef's 'token'"
            ),
        )),
        _ => Ok(None),
    }
}

/// A ServiceAccount whose token herald exchanges with Azure AD.
pub struct WorkloadIdentity {
    client: kube::Client,
    namespace: String,
    service_account: String,
}

impl fmt::Debug for WorkloadIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadIdentity")
            .field("namespace", &self.namespace)
            .field("service_account", &self.service_account)
            .finish_non_exhaustive()
    }
}

/// Cache key: namespace, ServiceAccount, tenant/client, scope, authority.
type Key = (String, String, String, String, String);

fn cache() -> &'static Mutex<HashMap<Key, (SecretString, Instant)>> {
    static CACHE: OnceLock<Mutex<HashMap<Key, (SecretString, Instant)>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Azure AD's token answer.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Azure AD's error answer: only the code is shown (its description can
/// be long, and says nothing secret, but the code is what users look up).
#[derive(Deserialize)]
struct ErrorAnswer {
    #[serde(default)]
    error: Option<String>,
}

/// The token endpoint of `tenant` below `authority` (a URL, with or
/// without its trailing slash), as Azure's SDK builds it.
pub fn token_endpoint(authority: &str, tenant: &str) -> String {
    format!(
        "{}/{}/oauth2/v2.0/token",
        authority.trim_end_matches('/'),
        tenant
    )
}

/// `AZURE_AUTHORITY_HOST`, else Azure's public cloud.
fn authority() -> String {
    std::env::var("AZURE_AUTHORITY_HOST")
        .ok()
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_AUTHORITY.to_owned())
}

/// The client-credentials form with the Kubernetes token as assertion.
pub fn exchange_form(client_id: &str, assertion: &str, scope: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_assertion", assertion)
        .append_pair(
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        )
        .append_pair("client_id", client_id)
        .append_pair("grant_type", "client_credentials")
        .append_pair("scope", scope)
        .finish()
}

impl WorkloadIdentity {
    /// Drops the cached tokens of this ServiceAccount for `scope`: the
    /// service answered 401, so the token was revoked or its app changed.
    pub fn forget(&self, scope: &str) {
        cache().lock().expect("token cache").retain(|key, _| {
            !(key.0 == self.namespace && key.1 == self.service_account && key.3 == scope)
        });
    }

    fn who(&self) -> String {
        format!(
            "spec.serviceAccountName: ServiceAccount {}/{}",
            self.namespace, self.service_account
        )
    }

    /// An Azure access token for `scope`: cached, else exchanged. The
    /// exchange goes through `sender`, the Provider's HTTP client (its
    /// proxy, as in Flux, and its CA when `certSecretRef` sets one).
    /// Errors name the ServiceAccount and the field, never a token.
    pub async fn azure_token(
        &self,
        scope: &str,
        sender: &dyn Sender,
    ) -> Result<SecretString, Verdict> {
        let who = self.who();
        let accounts: kube::Api<ServiceAccount> =
            kube::Api::namespaced(self.client.clone(), &self.namespace);
        let account = match accounts.get_opt(&self.service_account).await {
            Ok(Some(account)) => account,
            Ok(None) => return Err(Verdict::Fail(format!("{who} not found"))),
            Err(e) => {
                return Err(Verdict::Retry {
                    reason: format!("{who}: cannot read it: {e}"),
                    after: None,
                });
            }
        };
        let annotations = account.metadata.annotations.unwrap_or_default();
        let annotation = |key: &str| {
            annotations
                .get(key)
                .filter(|v| !v.trim().is_empty())
                .cloned()
                .ok_or_else(|| {
                    Verdict::Fail(format!(
                        "{who} has no annotation {key} (the Azure {} for workload identity)",
                        if key == AZURE_TENANT_ANNOTATION {
                            "tenant ID"
                        } else {
                            "client ID"
                        }
                    ))
                })
        };
        let tenant = annotation(AZURE_TENANT_ANNOTATION)?;
        let client_id = annotation(AZURE_CLIENT_ANNOTATION)?;
        let authority = authority();
        let key = (
            self.namespace.clone(),
            self.service_account.clone(),
            format!("{tenant}/{client_id}"),
            scope.to_owned(),
            authority.clone(),
        );
        if let Some((token, until)) = cache().lock().expect("token cache").get(&key)
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(vec![AZURE_AUDIENCE.to_owned()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let assertion = accounts
            .create_token_request(&self.service_account, &Default::default(), &request)
            .await
            .map_err(|e| Verdict::Retry {
                reason: format!("{who}: the TokenRequest failed: {e}"),
                after: None,
            })?
            .status
            .and_then(|s| s.token)
            .filter(|t| !t.is_empty())
            .map(SecretString::new)
            .ok_or_else(|| Verdict::Retry {
                reason: format!("{who}: the TokenRequest answered no token"),
                after: None,
            })?;
        let body = Body {
            content_type: "application/x-www-form-urlencoded",
            bytes: Bytes::from(exchange_form(&client_id, assertion.expose(), scope)),
        };
        let url = SecretString::new(token_endpoint(&authority, &tenant));
        let reply =
            sender
                .send(&Request::post(&url, body))
                .await
                .map_err(|e| match Verdict::from(e) {
                    Verdict::Retry { reason, after } => Verdict::Retry {
                        reason: format!("{who}: Azure AD token exchange: {reason}"),
                        after,
                    },
                    other => other,
                })?;
        let refused = |status: reqwest::StatusCode| {
            let code = serde_json::from_slice::<ErrorAnswer>(&reply.body)
                .ok()
                .and_then(|e| e.error)
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            format!("{who}: Azure AD refused the token exchange: HTTP {status}{code}")
        };
        match reply.verdict() {
            Verdict::Delivered => {}
            Verdict::Retry { after, .. } => {
                return Err(Verdict::Retry {
                    reason: refused(reply.status),
                    after,
                });
            }
            Verdict::Fail(_) => return Err(Verdict::Fail(refused(reply.status))),
        }
        let answer: TokenAnswer = serde_json::from_slice(&reply.body).map_err(|_| {
            Verdict::Fail(format!(
                "{who}: Azure AD's token answer has no access_token"
            ))
        })?;
        let token = SecretString::new(answer.access_token);
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        let until = Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN);
        cache()
            .lock()
            .expect("token cache")
            .insert(key, (token.clone(), until));
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exchange_is_azure_ads_client_credentials_grant_with_an_assertion() {
        assert_eq!(
            token_endpoint("https://login.microsoftonline.com/", "tenant-1"),
            "https://login.microsoftonline.com/tenant-1/oauth2/v2.0/token"
        );
        assert_eq!(
            token_endpoint("https://login.microsoftonline.us", "t"),
            "https://login.microsoftonline.us/t/oauth2/v2.0/token"
        );
        let form: HashMap<String, String> = url::form_urlencoded::parse(
            exchange_form("client-1", "a.b.c", SCOPE_EVENT_HUBS).as_bytes(),
        )
        .into_owned()
        .collect();
        assert_eq!(form.len(), 5, "{form:?}");
        assert_eq!(form["client_assertion"], "a.b.c");
        assert_eq!(
            form["client_assertion_type"],
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        );
        assert_eq!(form["client_id"], "client-1");
        assert_eq!(form["grant_type"], "client_credentials");
        assert_eq!(form["scope"], "https://eventhubs.azure.net//.default");
    }
}
