//! Resolving a Provider to a [`Destination`]: its Secrets (`secretRef`,
//! `certSecretRef`, `proxySecretRef`), address, credentials, headers,
//! transport and timeout, read the way Flux v1.9.3 reads them, and its
//! notifier built. Every problem is collected, so one `herald check` run
//! reports them all; none quotes a secret value.

use std::hash::BuildHasher;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;

use crate::api::alert::LocalReference;
use crate::api::{Provider, ProviderSpec, ProviderType, Reason};
use crate::mask::SecretString;
use crate::providers::registry::{self, Address};
use crate::providers::{self, Invalid, Notifier, Settings};
use crate::source::{ObjectKey, SecretData, Snapshot};
use crate::transport::{self, Identity, Transport};

/// A resolved, ready Provider: where its notifications go.
pub struct Destination {
    pub key: ObjectKey,
    pub kind: ProviderType,
    /// The Provider's own channel (templates show it as `provider.channel`).
    pub channel: Option<String>,
    pub notifier: Arc<dyn Notifier>,
    /// Timeout of one delivery request.
    pub timeout: Duration,
    /// CA, client certificate and proxy: which HTTP client delivers.
    pub transport: Arc<Transport>,
    /// Identifies the delivery queue: notifications with the same endpoint
    /// are delivered in order, one at a time.
    pub queue: u64,
    /// The address's masked form and parsed URL, worked out on first use
    /// and kept: every delivery needs them, and parsing a URL per
    /// notification was a tenth of the work of delivering one.
    pub address: AddressCache,
}

/// What deliveries derive from a destination's address, once.
#[derive(Default)]
pub struct AddressCache {
    masked: OnceLock<String>,
    parsed: OnceLock<Option<reqwest::Url>>,
}

impl Destination {
    /// The address as logs and Events may show it (the notifier's
    /// [`Notifier::masked_address`]), worked out once.
    pub fn masked_address(&self) -> &str {
        self.address
            .masked
            .get_or_init(|| self.notifier.masked_address())
    }

    /// `url` parsed, without parsing it again when it is the Provider's
    /// address (most providers post to their address as it is); `None` when
    /// it does not parse (the HTTP client then says why).
    pub fn parsed_url(&self, url: &str) -> Option<reqwest::Url> {
        let address = self.notifier.settings().address.as_ref();
        if address.is_some_and(|a| a.expose() == url) {
            let parsed = self
                .address
                .parsed
                .get_or_init(|| reqwest::Url::parse(url).ok());
            return parsed.clone();
        }
        reqwest::Url::parse(url).ok()
    }
}

/// Timeout of a delivery request when the Provider sets none (Flux's default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest address Flux accepts in a Secret.
const MAX_ADDRESS: usize = 2048;

/// A `Ready=False` reason and its message.
pub type Failure = (Reason, String);

/// A resolved Provider: its destination and the warnings `check` shows.
pub struct Resolved {
    pub destination: Destination,
    pub warnings: Vec<String>,
}

/// Resolves a Provider to a destination, or lists every problem it has.
pub fn resolve(
    provider: &Provider,
    key: &ObjectKey,
    snapshot: &Snapshot,
    hasher: &impl BuildHasher,
) -> Result<Resolved, Vec<Failure>> {
    let spec = &provider.spec;
    let mut failures = Vec::new();
    let mut warnings = Vec::new();
    let timeout = match spec.timeout.as_deref().map(crate::duration::parse) {
        Some(Ok(timeout)) => timeout,
        Some(Err(e)) => {
            failures.push((Reason::InvalidTimeout, format!("spec.timeout: {e}")));
            DEFAULT_TIMEOUT
        }
        None => DEFAULT_TIMEOUT,
    };
    let secret = lookup(spec.secret_ref.as_ref(), "spec.secretRef", key, snapshot);
    let secret = match secret {
        Ok(secret) => secret,
        Err(failure) => {
            failures.push(failure);
            None
        }
    };
    let secret_missing = spec.secret_ref.is_some() && secret.is_none();
    let value = |name: &str| {
        secret
            .as_ref()
            .and_then(|s| s.data.get(name))
            .filter(|v| !v.is_empty())
            .cloned()
    };
    let address = resolve_address(spec, secret.as_ref());
    let commit_status_expr = match compile_commit_status_expr(provider) {
        Ok(expr) => expr,
        Err(failure) => {
            failures.push(failure);
            None
        }
    };
    let workload_identity = match spec
        .service_account_name
        .as_deref()
        .filter(|n| !n.is_empty())
    {
        Some(name) => match providers::identity::for_provider(
            registry::entry(spec.type_).workload_identity,
            &key.namespace,
            name,
        ) {
            Ok(identity) => identity,
            Err(failure) => {
                failures.push(failure);
                None
            }
        },
        None => None,
    };
    // A missing Secret or an unusable address already explains why there is none.
    let address_explained = secret_missing || address.is_err();
    let address = address.unwrap_or_else(|failure| {
        failures.push(failure);
        None
    });
    let (headers, header_pairs) = match secret.as_ref().map(parse_headers) {
        Some(Ok(headers)) => headers,
        Some(Err(failure)) => {
            failures.push(failure);
            Default::default()
        }
        None => Default::default(),
    };
    let transport = match resolve_transport(spec, key, snapshot, secret.as_ref(), &mut warnings) {
        Ok(transport) => transport,
        Err(more) => {
            failures.extend(more);
            Transport::default()
        }
    };
    // As in Flux, the Secret's username wins over spec.username when the
    // Secret has basic auth (username and password).
    let password = value("password");
    let username = match (value("username"), &password) {
        (Some(username), Some(_)) => Some(username),
        _ => spec.username.clone().filter(|u| !u.is_empty()),
    };
    let channel = spec.channel.clone().filter(|c| !c.is_empty());
    let settings = Settings {
        address: address.clone().map(SecretString::new),
        token: value("token").map(SecretString::new),
        username,
        password: password.map(SecretString::new),
        channel: channel.clone(),
        headers,
        header_pairs,
        nats_creds: value("creds").map(SecretString::new),
        nats_nkey: value("nkey").map(SecretString::new),
        // Only the GitHub types read keys beyond the usual ones (the App's):
        // a copy of every Secret for every Provider was 10 MiB at 10,000.
        secret_data: secret
            .as_ref()
            .filter(|_| registry::entry(spec.type_).github_app)
            .map(|s| {
                s.data
                    .iter()
                    .map(|(k, v)| (k.clone(), SecretString::new(v.clone())))
                    .collect()
            })
            .unwrap_or_default(),
        provider_uid: provider_uid(provider, key),
        commit_status_expr,
        workload_identity,
    };
    // One queue per endpoint and way of reaching it: a Provider behind
    // another proxy or CA fails (or not) on its own.
    let queue = hasher.hash_one((
        spec.type_,
        &address,
        settings.token.as_ref().map(SecretString::expose),
        &transport,
    ));
    let notifier = match providers::build(spec.type_, settings) {
        Ok(notifier) => Some(notifier),
        Err(Invalid::NoAddress) if address_explained => None,
        Err(Invalid::NoAddress) => {
            failures.push(no_address(secret.as_ref()));
            None
        }
        Err(Invalid::Setting { reason, message }) => {
            failures.push((reason, message));
            None
        }
    };
    let Some(notifier) = notifier.filter(|_| failures.is_empty()) else {
        return Err(failures);
    };
    warnings.extend(notifier.warnings());
    if spec.type_ == ProviderType::Nats && !transport.is_default() {
        // As in Flux: the NATS client makes its own connections.
        warnings.push(
            "spec.certSecretRef and proxies do not apply to nats (as in Flux): herald connects \
             to the NATS server directly, trusting the system's roots for tls://"
                .into(),
        );
    }
    Ok(Resolved {
        destination: Destination {
            key: key.clone(),
            kind: spec.type_,
            channel: channel.clone(),
            notifier,
            timeout,
            transport: Arc::new(transport),
            queue,
            address: AddressCache::default(),
        },
        warnings,
    })
}

/// The Provider's `metadata.uid`; in manifests, which have none, a UUID
/// (version 5 in the URL name space) of `<namespace>/<name>`: stable across
/// restarts and reloads, so commit status ids and comment markers stay the
/// same and earlier statuses and comments are found again.
fn provider_uid(provider: &Provider, key: &ObjectKey) -> String {
    if let Some(uid) = provider.metadata.uid.as_deref().filter(|u| !u.is_empty()) {
        return uid.to_owned();
    }
    const URL_NAMESPACE: [u8; 16] = [
        0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30,
        0xc8,
    ];
    let mut context = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(&URL_NAMESPACE);
    context.update(format!("{}/{}", key.namespace, key.name).as_bytes());
    let digest = context.finish();
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest.as_ref()[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b
        .iter()
        .flat_map(|x| [x >> 4, x & 0x0f])
        .map(|nibble| char::from_digit(u32::from(nibble), 16).unwrap_or('0'))
        .collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// `spec.commitStatusExpr`, compiled. Flux's CRD allows it only on the
/// commit-status types; Flux compiles it per event and fails each one when
/// it does not compile, where herald refuses the Provider at once.
fn compile_commit_status_expr(
    provider: &Provider,
) -> Result<Option<providers::CommitStatusExpr>, Failure> {
    let Some(source) = provider
        .spec
        .commit_status_expr
        .as_deref()
        .filter(|s| !s.is_empty())
    else {
        return Ok(None);
    };
    if registry::entry(provider.spec.type_).class != registry::Class::CommitStatus {
        return Err((
            Reason::InvalidCommitStatusExpr,
            "spec.commitStatusExpr is only supported for the 'github', 'gitlab', 'gitea', \
             'bitbucketserver', 'bitbucket', 'azuredevops' provider types"
                .into(),
        ));
    }
    let expression = crate::cel::compile(
        source,
        &["event", "alert", "provider"],
        crate::cel::Output::Any,
    )
    .map_err(|e| {
        (
            Reason::InvalidCommitStatusExpr,
            format!("spec.commitStatusExpr: {e}"),
        )
    })?;
    let object = serde_json::to_value(provider).unwrap_or(Value::Null);
    Ok(Some(providers::CommitStatusExpr {
        expression: Arc::new(expression),
        provider: Arc::new(object),
    }))
}

/// A referenced Secret and its data.
struct Found<'a> {
    key: ObjectKey,
    data: &'a SecretData,
}

impl Found<'_> {
    /// The first non-empty value among `names` (a key and its legacy name).
    fn get(&self, names: &[&str]) -> Option<&str> {
        names
            .iter()
            .find_map(|name| self.data.get(*name).filter(|v| !v.is_empty()))
            .map(String::as_str)
    }
}

/// The Secret a field references, if it does; a failure when it is missing.
fn lookup<'a>(
    reference: Option<&LocalReference>,
    field: &str,
    key: &ObjectKey,
    snapshot: &'a Snapshot,
) -> Result<Option<Found<'a>>, Failure> {
    let Some(reference) = reference else {
        return Ok(None);
    };
    let secret_key = ObjectKey::new(key.namespace.as_str(), reference.name.as_str());
    match snapshot.secrets.get(&secret_key) {
        Some(data) => Ok(Some(Found {
            key: secret_key,
            data,
        })),
        None => match snapshot.unreadable_secrets.get(&secret_key) {
            Some(why) => Err((
                Reason::InvalidSecret,
                format!("{field}: secret {secret_key} cannot be read: {why}"),
            )),
            None => Err((
                Reason::SecretNotFound,
                format!("{field}: secret {secret_key} not found"),
            )),
        },
    }
}

/// The address: the Secret's `address`, else its `url`, else
/// `spec.address`; `None` when there is none (the provider decides whether
/// it needs one). An unusable address is a failure that does not quote it.
fn resolve_address(
    spec: &ProviderSpec,
    secret: Option<&Found<'_>>,
) -> Result<Option<String>, Failure> {
    let from_secret = secret.and_then(|s| {
        let address = s.get(&["address"]).or_else(|| s.get(&["url"]))?;
        Some((address, format!("secret {}", s.key)))
    });
    let (address, source) = match from_secret {
        Some(found) => found,
        None => match spec.address.as_deref().filter(|a| !a.is_empty()) {
            Some(address) => (address, "spec.address".to_owned()),
            None => return Ok(None),
        },
    };
    // Not every address is a URL (DESIGN §3.12): a NATS server, a GCP
    // project, an Event Hubs connection string, a Git clone URL. Their
    // providers check them.
    let checked = match registry::entry(spec.type_).address {
        Address::Own | Address::CloneUrl => validate_length(address),
        Address::Url => validate_address(address),
    };
    checked.map_err(|why| {
        (
            Reason::InvalidAddress,
            format!("the address in {source} {why}"),
        )
    })?;
    Ok(Some(address.to_owned()))
}

/// Why there is no address, pointing at where herald looked.
fn no_address(secret: Option<&Found<'_>>) -> Failure {
    match secret {
        Some(secret) => (
            Reason::SecretKeyMissing,
            format!(
                "secret {} has neither 'address' nor 'url', and spec.address is empty",
                secret.key
            ),
        ),
        None => (
            Reason::InvalidAddress,
            "no address: set spec.address or spec.secretRef to a Secret with 'address' or 'url'"
                .into(),
        ),
    }
}

/// Why an address is too long to accept (Flux's limit).
fn validate_length(address: &str) -> Result<(), String> {
    if address.len() > MAX_ADDRESS {
        return Err(format!("is longer than {MAX_ADDRESS} characters"));
    }
    Ok(())
}

/// Why an address is unusable, without quoting it (it is a secret).
fn validate_address(address: &str) -> Result<(), String> {
    validate_length(address)?;
    let parsed = url::Url::parse(address).map_err(|e| format!("is not a valid URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "is not an http(s) URL (scheme '{}')",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    Ok(())
}

/// The Secret's `headers`, parsed and as written.
type Headers = (Vec<(HeaderName, SecretString)>, Vec<(String, SecretString)>);

/// The Secret's `headers`: a YAML map of header names to values.
fn parse_headers(secret: &Found<'_>) -> Result<Headers, Failure> {
    let Some(text) = secret.get(&["headers"]) else {
        return Ok(Default::default());
    };
    let invalid = |why: String| {
        (
            Reason::InvalidHeaders,
            format!("secret {}: 'headers' {why}", secret.key),
        )
    };
    let map = match crate::yaml::parse_document(text)
        .map_err(|e| invalid(format!("is not YAML: {e}")))?
    {
        Value::Object(map) => map,
        Value::Null => return Ok(Default::default()),
        _ => {
            return Err(invalid(
                "must be a YAML map of header names to values".into(),
            ));
        }
    };
    let mut headers = Vec::with_capacity(map.len());
    let mut pairs = Vec::with_capacity(map.len());
    for (name, value) in map {
        let value = match value {
            Value::String(value) => value,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(invalid(format!("value of {name:?} must be a string"))),
        };
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("{name:?} is not a valid header name")))?;
        HeaderValue::from_str(&value)
            .map_err(|_| invalid(format!("value of {name:?} is not a valid header value")))?;
        headers.push((header, SecretString::new(value.clone())));
        pairs.push((name, SecretString::new(value)));
    }
    Ok((headers, pairs))
}

/// The transport: `certSecretRef` (CA and client certificate) and the
/// proxy — `proxySecretRef`, else the Secret's legacy `proxy` key, else the
/// deprecated `spec.proxy` (Flux's precedence) — checked by building a client.
fn resolve_transport(
    spec: &ProviderSpec,
    key: &ObjectKey,
    snapshot: &Snapshot,
    secret: Option<&Found<'_>>,
    warnings: &mut Vec<String>,
) -> Result<Transport, Vec<Failure>> {
    let mut failures = Vec::new();
    let mut transport = Transport::default();
    let mut cert_source = String::new();
    match lookup(
        spec.cert_secret_ref.as_ref(),
        "spec.certSecretRef",
        key,
        snapshot,
    ) {
        Ok(Some(certs)) => match tls_material(&certs) {
            Ok((ca, identity)) => {
                transport.ca = ca;
                transport.identity = identity;
                cert_source = format!("spec.certSecretRef: secret {}", certs.key);
            }
            Err(failure) => failures.push(failure),
        },
        Ok(None) => {}
        Err(failure) => failures.push(failure),
    }
    let mut proxy = None;
    if let Some(address) = spec.proxy.as_deref().filter(|p| !p.is_empty()) {
        warnings.push("spec.proxy is deprecated (as in Flux): use spec.proxySecretRef".into());
        proxy = Some(("spec.proxy".to_owned(), address.to_owned(), None, None));
    }
    if let Some(secret) = secret
        && let Some(address) = secret.get(&["proxy"])
    {
        warnings.push(format!(
            "the 'proxy' key of secret {} is deprecated (as in Flux): use spec.proxySecretRef",
            secret.key
        ));
        proxy = Some((
            format!("the 'proxy' key of secret {}", secret.key),
            address.to_owned(),
            None,
            None,
        ));
    }
    match lookup(
        spec.proxy_secret_ref.as_ref(),
        "spec.proxySecretRef",
        key,
        snapshot,
    ) {
        Ok(Some(proxy_secret)) => match proxy_secret.get(&["address"]) {
            Some(address) => {
                proxy = Some((
                    format!("secret {}", proxy_secret.key),
                    address.to_owned(),
                    proxy_secret.get(&["username"]).map(str::to_owned),
                    proxy_secret.get(&["password"]).map(str::to_owned),
                ));
            }
            None => failures.push((
                Reason::SecretKeyMissing,
                format!(
                    "spec.proxySecretRef: secret {} has no 'address' key",
                    proxy_secret.key
                ),
            )),
        },
        Ok(None) => {}
        Err(failure) => failures.push(failure),
    }
    if let Some((source, address, username, password)) = proxy {
        match transport::proxy_url(&address, username.as_deref(), password.as_deref()) {
            Ok(url) => transport.proxy = Some(url),
            Err(why) => failures.push((
                Reason::InvalidProxy,
                format!("the proxy address in {source} {why}"),
            )),
        }
    }
    if failures.is_empty()
        && !transport.is_default()
        && let Err(why) = transport.client()
    {
        let certificates = transport.ca.is_some() || transport.identity.is_some();
        failures.push(match certificates {
            true => (Reason::InvalidCertificate, format!("{cert_source}: {why}")),
            false => (Reason::InvalidProxy, format!("the proxy: {why}")),
        });
    }
    if failures.is_empty() {
        Ok(transport)
    } else {
        Err(failures)
    }
}

/// The CA (`ca.crt`, legacy `caFile`) and client certificate (`tls.crt` +
/// `tls.key`, legacy `certFile` + `keyFile`) of a `certSecretRef` Secret.
fn tls_material(secret: &Found<'_>) -> Result<(Option<String>, Option<Identity>), Failure> {
    let ca = secret.get(&["ca.crt", "caFile"]).map(str::to_owned);
    let cert = secret.get(&["tls.crt", "certFile"]);
    let key = secret.get(&["tls.key", "keyFile"]);
    let missing = |what: &str| {
        (
            Reason::SecretKeyMissing,
            format!("spec.certSecretRef: secret {} {what}", secret.key),
        )
    };
    let identity = match (cert, key) {
        (Some(cert), Some(key)) => Some(Identity {
            cert: cert.to_owned(),
            key: SecretString::new(key),
        }),
        (Some(_), None) => return Err(missing("has 'tls.crt' but no 'tls.key'")),
        (None, Some(_)) => return Err(missing("has 'tls.key' but no 'tls.crt'")),
        (None, None) => None,
    };
    if ca.is_none() && identity.is_none() {
        return Err(missing("has neither 'ca.crt' nor 'tls.crt' and 'tls.key'"));
    }
    Ok((ca, identity))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(uid: Option<&str>) -> Provider {
        let mut provider: Provider = serde_json::from_value(serde_json::json!({
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
            "kind": "Provider",
            "metadata": {"name": "forge", "namespace": "flux-system"},
            "spec": {"type": "github"},
        }))
        .expect("provider");
        provider.metadata.uid = uid.map(str::to_owned);
        provider
    }

    /// In a cluster the UID is the object's; in manifests a UUID of the
    /// namespace and name, the same on every run.
    #[test]
    fn the_provider_uid_is_the_objects_or_derived_from_its_name() {
        let key = ObjectKey::new("flux-system", "forge");
        assert_eq!(
            provider_uid(&provider(Some("0c9c2e41-aaaa")), &key),
            "0c9c2e41-aaaa"
        );
        let derived = provider_uid(&provider(None), &key);
        assert_eq!(derived, provider_uid(&provider(Some("")), &key));
        // Python's uuid.uuid5(uuid.NAMESPACE_URL, "flux-system/forge").
        assert_eq!(derived, "30d29478-5e75-5eaa-a530-d2ce9f3cae2a");
        assert_ne!(
            derived,
            provider_uid(&provider(None), &ObjectKey::new("flux-system", "other"))
        );
    }

    /// The address's URL is parsed once and reused; other URLs (a
    /// provider's API paths) and unparsable ones are not taken from it.
    #[test]
    fn the_address_is_parsed_once_and_masked_once() {
        let mut slack = provider(None);
        slack.spec.type_ = crate::api::ProviderType::Slack;
        slack.spec.address = Some("https://hooks.example.com:8443/services/T0/B0/secret".into());
        let key = ObjectKey::new("flux-system", "forge");
        let hasher = std::collections::hash_map::RandomState::new();
        let resolved = resolve(&slack, &key, &Snapshot::default(), &hasher).expect("resolves");
        let destination = resolved.destination;
        let address = "https://hooks.example.com:8443/services/T0/B0/secret";
        let first = destination.parsed_url(address).expect("parses");
        assert_eq!(first.as_str(), address);
        let cached = destination.address.parsed.get().expect("kept");
        assert_eq!(cached.as_ref(), Some(&first));
        let other = destination
            .parsed_url("https://hooks.example.com/api/other")
            .expect("parses");
        assert_eq!(other.path(), "/api/other");
        assert_eq!(destination.parsed_url("no scheme"), None);
        assert_eq!(
            destination.masked_address(),
            "https://hooks.example.com:8443/***"
        );
        assert_eq!(
            destination.address.masked.get().map(String::as_str),
            Some("https://hooks.example.com:8443/***")
        );
    }

    #[test]
    fn a_commit_status_expr_on_another_type_is_refused() {
        let mut slack = provider(None);
        slack.spec.type_ = crate::api::ProviderType::Slack;
        slack.spec.commit_status_expr = Some("'x'".into());
        let (reason, message) = compile_commit_status_expr(&slack).expect_err("refused");
        assert_eq!(reason, Reason::InvalidCommitStatusExpr);
        assert!(message.contains("only supported for"), "{message}");
        let mut github = provider(None);
        github.spec.commit_status_expr = Some("'x'".into());
        assert!(
            compile_commit_status_expr(&github)
                .expect("compiles")
                .is_some()
        );
    }
}
