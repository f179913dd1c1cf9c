//! Object-level workload identity: a Provider's `spec.serviceAccountName`
//! names a ServiceAccount in its namespace whose Kubernetes token herald
//! exchanges for a cloud access token, as Flux v1.9.3 does (through
//! `fluxcd/pkg/auth`) when its `ObjectLevelWorkloadIdentity` feature gate
//! is on.
//!
//! Azure (`azureeventhub`, `azuredevops`): the ServiceAccount's `azure.workload.identity/tenant-id` and
//! `azure.workload.identity/client-id` annotations name the app; a
//! TokenRequest for the ServiceAccount with the audience
//! `api://AzureADTokenExchange` gives the assertion; Azure AD's client
//! credentials grant (`client_assertion`) at `AZURE_AUTHORITY_HOST`
//! (default `https://login.microsoftonline.com/`) turns it into an access
//! token for the provider's scope. Tokens are kept until a minute before
//! they expire, per ServiceAccount, identity, scope and authority (Flux's
//! cache key), across reloads of the routing table.
//!
//! GCP (`googlepubsub`), as Flux does outside GKE: see
//! [`WorkloadIdentity::gcp_token`]. GKE's own pool (Flux asks the metadata
//! server for it) is not supported, and AWS has no notification provider.
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
use serde_json::{Value, json};

use super::{Body, Request, Sender, Verdict};
use crate::api::Reason;
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
/// The ServiceAccount annotations Flux reads for GCP: the workload identity
/// provider (outside GKE) and the Google service account to impersonate.
pub const GCP_PROVIDER_ANNOTATION: &str = "gcp.auth.fluxcd.io/workload-identity-provider";
pub const GCP_EMAIL_ANNOTATION: &str = "iam.gke.io/gcp-service-account";
/// Google's Security Token Service and IAM Credentials endpoints.
const STS_TOKEN_URL: &str = "https://sts.googleapis.com/v1/token";
const IAM_CREDENTIALS_URL: &str =
    "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/";
/// The scopes Flux asks Google for (`fluxcd/pkg/auth/gcp`).
const GCP_SCOPES: [&str; 2] = [
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/userinfo.email",
];
/// The lifetime asked of an impersonated token (Google's client default).
const IMPERSONATED_LIFETIME: Duration = Duration::from_secs(3600);
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
pub type Refusal = (Reason, String);

/// The identity a Provider in `namespace` gets from its
/// `spec.serviceAccountName`, or why it cannot have one. `None`: its type
/// takes no cloud token (`takes_identity` false, from the provider
/// registry) and ignores the field, as Flux's notifiers of such types do.
pub fn for_provider(
    takes_identity: bool,
    namespace: &str,
    service_account: &str,
) -> Result<Option<Arc<WorkloadIdentity>>, Refusal> {
    let client = match MODE.get() {
        None => {
            return Err((
                Reason::WorkloadIdentityNotSupported,
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
                Reason::WorkloadIdentityNotSupported,
                format!(
                    "spec.serviceAccountName: to use spec.serviceAccountName for provider \
                     authentication please enable the {FEATURE_GATE} feature gate in the \
                     controller (--feature-gates={FEATURE_GATE}=true)"
                ),
            ));
        }
        Some(Mode::Enabled(client)) => client,
    };
    if !takes_identity {
        return Ok(None);
    }
    Ok(Some(Arc::new(WorkloadIdentity {
        client: client.clone(),
        namespace: namespace.to_owned(),
        service_account: service_account.to_owned(),
    })))
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
    /// Azure AD's and STS's code, or Google's `{code, message, status}`.
    #[serde(default)]
    error: Option<Value>,
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

    fn accounts(&self) -> kube::Api<ServiceAccount> {
        kube::Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The ServiceAccount's annotations (read on every token request, as
    /// Flux does, so an edited annotation takes effect at once).
    async fn annotations(&self) -> Result<std::collections::BTreeMap<String, String>, Verdict> {
        let who = self.who();
        match self.accounts().get_opt(&self.service_account).await {
            Ok(Some(account)) => Ok(account.metadata.annotations.unwrap_or_default()),
            Ok(None) => Err(Verdict::Fail(format!("{who} not found"))),
            Err(e) => Err(Verdict::Retry {
                reason: format!("{who}: cannot read it: {e}"),
                after: None,
            }),
        }
    }

    /// A token for the ServiceAccount from the TokenRequest API, for
    /// `audience`, with the API server's default lifetime (Flux sets none).
    async fn kubernetes_token(&self, audience: &str) -> Result<SecretString, Verdict> {
        let who = self.who();
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(vec![audience.to_owned()]),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.accounts()
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
            })
    }

    fn cached(&self, key: &Key) -> Option<SecretString> {
        let cache = cache().lock().expect("token cache");
        let (token, until) = cache.get(key)?;
        (Instant::now() < *until).then(|| token.clone())
    }

    /// Caches `token` until `EXPIRY_MARGIN` before it expires, dropping
    /// expired entries so deleted Providers' tokens do not stay in memory.
    fn keep(&self, key: Key, token: &SecretString, lifetime: Duration) {
        let now = Instant::now();
        let until = now + lifetime.saturating_sub(EXPIRY_MARGIN);
        let mut cache = cache().lock().expect("token cache");
        cache.retain(|_, (_, until)| *until > now);
        cache.insert(key, (token.clone(), until));
    }

    /// Sends one request of an exchange; errors say which step failed and
    /// the status, plus the service's `error` code when it gives one.
    async fn post(
        &self,
        sender: &dyn Sender,
        request: Request,
        step: &str,
    ) -> Result<super::Reply, Verdict> {
        let who = self.who();
        let reply = sender
            .send(&request)
            .await
            .map_err(|e| match Verdict::from(e) {
                Verdict::Retry { reason, after } => Verdict::Retry {
                    reason: format!("{who}: {step}: {reason}"),
                    after,
                },
                Verdict::Fail(reason) => Verdict::Fail(format!("{who}: {step}: {reason}")),
                Verdict::Delivered => Verdict::Delivered,
            })?;
        let refused = || {
            let code = serde_json::from_slice::<ErrorAnswer>(&reply.body)
                .ok()
                .and_then(|e| e.error)
                .and_then(|e| match e {
                    Value::String(code) => Some(code),
                    Value::Object(o) => o.get("status").and_then(Value::as_str).map(str::to_owned),
                    _ => None,
                })
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            format!("{who}: {step} refused: HTTP {}{code}", reply.status)
        };
        match reply.verdict() {
            Verdict::Delivered => Ok(reply),
            Verdict::Retry { after, .. } => Err(Verdict::Retry {
                reason: refused(),
                after,
            }),
            Verdict::Fail(_) => Err(Verdict::Fail(refused())),
        }
    }

    /// Drops this ServiceAccount's cached Google tokens (Pub/Sub answered
    /// 401).
    pub fn forget_gcp(&self) {
        self.forget("gcp");
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
        let annotations = self.annotations().await?;
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
        if let Some(token) = self.cached(&key) {
            return Ok(token);
        }
        let assertion = self.kubernetes_token(AZURE_AUDIENCE).await?;
        let body = Body {
            content_type: "application/x-www-form-urlencoded",
            bytes: Bytes::from(exchange_form(&client_id, assertion.expose(), scope)),
        };
        let url = SecretString::new(token_endpoint(&authority, &tenant));
        let reply = self
            .post(sender, Request::post(&url, body), "Azure AD token exchange")
            .await?;
        let answer: TokenAnswer = serde_json::from_slice(&reply.body).map_err(|_| {
            Verdict::Fail(format!(
                "{who}: Azure AD's token answer has no access_token"
            ))
        })?;
        let token = SecretString::new(answer.access_token);
        self.keep(
            key,
            &token,
            Duration::from_secs(answer.expires_in.unwrap_or(3600)),
        );
        Ok(token)
    }
}

/// `projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>`,
/// as Flux checks it.
fn valid_workload_identity_provider(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    matches!(
        parts[..],
        ["projects", number, "locations", "global", "workloadIdentityPools", pool, "providers", provider]
            if (1..=30).contains(&number.len())
                && number.bytes().all(|b| b.is_ascii_digit())
                && (1..=100).contains(&pool.len())
                && (1..=100).contains(&provider.len())
    )
}

/// `<name>@<project>.iam.gserviceaccount.com`, as Flux checks it.
fn valid_service_account_email(email: &str) -> bool {
    let name_ok = |part: &str| {
        (1..=100).contains(&part.len())
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    email
        .strip_suffix(".iam.gserviceaccount.com")
        .and_then(|rest| rest.split_once('@'))
        .is_some_and(|(name, project)| name_ok(name) && name_ok(project))
}

/// STS's answer.
#[derive(Deserialize)]
struct StsAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// IAM Credentials' answer.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImpersonatedAnswer {
    access_token: String,
}

/// The STS token exchange form (RFC 8693), as Google's external account
/// client sends it.
pub fn sts_form(audience: &str, subject_token: &str, scopes: &[&str]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("audience", audience)
        .append_pair(
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        )
        .append_pair(
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        )
        .append_pair("scope", &scopes.join(" "))
        .append_pair("subject_token", subject_token)
        .append_pair("subject_token_type", "urn:ietf:params:oauth:token-type:jwt")
        .finish()
}

impl WorkloadIdentity {
    /// A Google access token, as Flux gets one outside GKE: the
    /// ServiceAccount's `gcp.auth.fluxcd.io/workload-identity-provider`
    /// gives the audience `//iam.googleapis.com/<provider>` of its
    /// Kubernetes token, which STS exchanges for a federated token; with
    /// `iam.gke.io/gcp-service-account`, IAM Credentials then turns that
    /// into the Google service account's token (impersonation). GKE's own
    /// pool (no provider annotation: Flux asks the metadata server for
    /// it) is not supported. Cached like Azure's tokens.
    pub async fn gcp_token(&self, sender: &dyn Sender) -> Result<SecretString, Verdict> {
        let who = self.who();
        let annotations = self.annotations().await?;
        let provider = annotations
            .get(GCP_PROVIDER_ANNOTATION)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                Verdict::Fail(format!(
                    "{who} has no annotation {GCP_PROVIDER_ANNOTATION} (the workload identity \
                     provider, projects/<number>/locations/global/workloadIdentityPools/<pool>/\
                     providers/<provider>): herald does not read GKE's metadata server, so GKE's \
                     own pool needs it too"
                ))
            })?;
        if !valid_workload_identity_provider(provider) {
            return Err(Verdict::Fail(format!(
                "{who}: annotation {GCP_PROVIDER_ANNOTATION} is not \
                 projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>"
            )));
        }
        let email = annotations
            .get(GCP_EMAIL_ANNOTATION)
            .filter(|v| !v.trim().is_empty());
        if let Some(email) = email
            && !valid_service_account_email(email)
        {
            return Err(Verdict::Fail(format!(
                "{who}: annotation {GCP_EMAIL_ANNOTATION} is not \
                 <name>@<project>.iam.gserviceaccount.com"
            )));
        }
        let audience = format!("//iam.googleapis.com/{provider}");
        let key = (
            self.namespace.clone(),
            self.service_account.clone(),
            email.cloned().unwrap_or_default(),
            "gcp".to_owned(),
            audience.clone(),
        );
        if let Some(token) = self.cached(&key) {
            return Ok(token);
        }
        let subject = self.kubernetes_token(&audience).await?;
        // Impersonating, STS is asked only for cloud-platform and the
        // service account's token gets Flux's scopes.
        let sts_scopes: &[&str] = match email {
            Some(_) => &GCP_SCOPES[..1],
            None => &GCP_SCOPES,
        };
        let body = Body {
            content_type: "application/x-www-form-urlencoded",
            bytes: Bytes::from(sts_form(&audience, subject.expose(), sts_scopes)),
        };
        let url = SecretString::new(STS_TOKEN_URL.to_owned());
        let reply = self
            .post(sender, Request::post(&url, body), "GCP STS token exchange")
            .await?;
        let answer: StsAnswer = serde_json::from_slice(&reply.body)
            .map_err(|_| Verdict::Fail(format!("{who}: GCP STS's answer has no access_token")))?;
        let federated = SecretString::new(answer.access_token);
        let Some(email) = email else {
            let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600));
            self.keep(key, &federated, lifetime);
            return Ok(federated);
        };
        let url = SecretString::new(format!("{IAM_CREDENTIALS_URL}{email}:generateAccessToken"));
        let body = Body::json(&json!({
            "lifetime": format!("{}s", IMPERSONATED_LIFETIME.as_secs()),
            "scope": GCP_SCOPES,
        }))
        .map_err(Verdict::Fail)?;
        let request = Request::post(&url, body).auth(super::Auth::Bearer(federated));
        let reply = self
            .post(sender, request, "GCP IAM Credentials impersonation")
            .await?;
        let answer: ImpersonatedAnswer = serde_json::from_slice(&reply.body).map_err(|_| {
            Verdict::Fail(format!(
                "{who}: GCP IAM Credentials' answer has no accessToken"
            ))
        })?;
        let token = SecretString::new(answer.access_token);
        self.keep(key, &token, IMPERSONATED_LIFETIME);
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

    #[test]
    fn gcp_annotations_are_checked_as_flux_checks_them() {
        assert!(valid_workload_identity_provider(
            "projects/123456/locations/global/workloadIdentityPools/pool/providers/herald"
        ));
        assert!(!valid_workload_identity_provider(
            "projects/my-project/locations/global/workloadIdentityPools/pool/providers/herald"
        ));
        assert!(!valid_workload_identity_provider(
            "projects/1/locations/global"
        ));
        assert!(valid_service_account_email(
            "flux-notify@my-project.iam.gserviceaccount.com"
        ));
        assert!(!valid_service_account_email("flux@example.com"));
        let form: HashMap<String, String> = url::form_urlencoded::parse(
            sts_form("//iam.googleapis.com/p", "k8s", &GCP_SCOPES[..1]).as_bytes(),
        )
        .into_owned()
        .collect();
        assert_eq!(form.len(), 6, "{form:?}");
        assert_eq!(
            form["scope"],
            "https://www.googleapis.com/auth/cloud-platform"
        );
        assert_eq!(
            form["subject_token_type"],
            "urn:ietf:params:oauth:token-type:jwt"
        );
    }
}
