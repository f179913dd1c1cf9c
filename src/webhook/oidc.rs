//! Token-verified Receivers: `generic-oidc` (any OIDC issuer listed in
//! `spec.oidcProviders`) and `gcr` (Google-signed Pub/Sub push tokens).
//!
//! As Flux (go-oidc): the token's unverified `iss` picks the provider; the
//! issuer's discovery document (`<issuer>/.well-known/openid-configuration`)
//! must name the same issuer; its `jwks_uri` supplies the keys; the JWS
//! algorithm must be one the issuer advertises (RS256 when it names none);
//! the signature, `iss`, `aud` (the provider's audience, default
//! `notification-controller`), `exp` and `nbf` (5 minutes' leeway) are
//! checked; then the provider's CEL variables and validations run over the
//! claims. gcr, as Google's idtoken validator: RS256 or ES256 with Google's
//! keys, `aud` equal to the Secret's `audience`, issuer
//! `accounts.google.com`, then `email` equal to the Secret's `email` and
//! `email_verified`.
//!
//! Unlike Flux, which fetches discovery and keys on every request, herald
//! caches them per URL for [`KEY_TTL`] and fetches again (at most every
//! [`REFETCH_AFTER`]) when a token names a key it does not have. Responses
//! are capped at [`MAX_DOCUMENT_BYTES`] and [`FETCH_TIMEOUT`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use base64::Engine as _;
use ring::signature::{self, UnparsedPublicKey};
use serde_json::Value;

use super::verify::Rejection;
use crate::api::receiver::OidcProvider;
use crate::cel::{self, Expression, Output};

/// How long fetched discovery documents and key sets are used.
pub const KEY_TTL: Duration = Duration::from_secs(600);
/// A token naming an unknown key triggers a fetch at most this often.
pub const REFETCH_AFTER: Duration = Duration::from_secs(30);
/// Largest discovery document or key set read.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Deadline of one fetch.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// go-oidc's leeway on `nbf`.
const NOT_BEFORE_LEEWAY: i64 = 300;
/// Where Google publishes the keys of its ID tokens (idtoken's default).
pub const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";

/// A JWT split into its parts; nothing in it is trusted yet.
#[derive(Debug)]
pub struct Jwt {
    pub alg: String,
    pub kid: Option<String>,
    pub claims: Value,
    signing_input: String,
    signature: Vec<u8>,
}

impl Jwt {
    pub fn parse(token: &str) -> Result<Self, String> {
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 {
            return Err("token is not a JWT".into());
        }
        // base64url without padding (RFC 7515): a padded segment is refused,
        // as go-jose refuses it.
        let decode = |part: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| "malformed JWT: bad base64".to_owned())
        };
        let header: Value = serde_json::from_slice(&decode(parts[0])?)
            .map_err(|_| "malformed JWT header".to_owned())?;
        // RFC 7515 §4.1.11: a `crit` extension the recipient does not
        // implement refuses the token; herald implements none.
        if header.get("crit").is_some() {
            return Err(
                "malformed JWT header: unsupported critical header parameters (crit)".into(),
            );
        }
        let claims: Value = serde_json::from_slice(&decode(parts[1])?)
            .map_err(|_| "failed to parse token payload".to_owned())?;
        if !claims.is_object() {
            return Err("failed to parse token payload".into());
        }
        Ok(Self {
            alg: header["alg"].as_str().unwrap_or_default().to_owned(),
            kid: header["kid"].as_str().map(str::to_owned),
            claims,
            signing_input: format!("{}.{}", parts[0], parts[1]),
            signature: decode(parts[2])?,
        })
    }

    /// Whether `jwk` verifies this token's signature with its algorithm.
    fn verified_by(&self, jwk: &Value) -> bool {
        if let (Some(kid), Some(key_id)) = (&self.kid, jwk["kid"].as_str())
            && kid != key_id
        {
            return false;
        }
        if let Some(key_alg) = jwk["alg"].as_str()
            && key_alg != self.alg
        {
            return false;
        }
        let b64 = |name: &str| {
            jwk[name].as_str().and_then(|v| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(v.trim_end_matches('='))
                    .ok()
            })
        };
        let message = self.signing_input.as_bytes();
        match (jwk["kty"].as_str(), self.alg.as_str()) {
            (Some("RSA"), alg) => {
                let parameters: &signature::RsaParameters = match alg {
                    "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                    "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                    "RS512" => &signature::RSA_PKCS1_2048_8192_SHA512,
                    "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
                    "PS384" => &signature::RSA_PSS_2048_8192_SHA384,
                    "PS512" => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => return false,
                };
                let (Some(n), Some(e)) = (b64("n"), b64("e")) else {
                    return false;
                };
                signature::RsaPublicKeyComponents { n, e }
                    .verify(parameters, message, &self.signature)
                    .is_ok()
            }
            (Some("EC"), alg) => {
                let (algorithm, curve, size): (&signature::EcdsaVerificationAlgorithm, _, _) =
                    match alg {
                        "ES256" => (&signature::ECDSA_P256_SHA256_FIXED, "P-256", 32),
                        "ES384" => (&signature::ECDSA_P384_SHA384_FIXED, "P-384", 48),
                        _ => return false,
                    };
                if jwk["crv"].as_str() != Some(curve) {
                    return false;
                }
                let (Some(x), Some(y)) = (b64("x"), b64("y")) else {
                    return false;
                };
                if x.len() != size || y.len() != size {
                    return false;
                }
                let mut point = Vec::with_capacity(1 + 2 * size);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                UnparsedPublicKey::new(algorithm, point)
                    .verify(message, &self.signature)
                    .is_ok()
            }
            (Some("OKP"), "EdDSA") if jwk["crv"].as_str() == Some("Ed25519") => {
                let Some(x) = b64("x") else { return false };
                UnparsedPublicKey::new(&signature::ED25519, x)
                    .verify(message, &self.signature)
                    .is_ok()
            }
            _ => false,
        }
    }

    /// Whether some key of `keys` (a JWKS document) verifies the signature.
    pub fn verified_by_any(&self, keys: &Value) -> bool {
        keys["keys"]
            .as_array()
            .is_some_and(|keys| keys.iter().any(|k| self.verified_by(k)))
    }

    fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// A time claim (`exp`, `nbf`): `None` when absent; a claim that is
    /// present but not a number refuses the token, as go-oidc does.
    fn claim_time(&self, name: &str) -> Result<Option<i64>, String> {
        let Some(value) = self.claims.get(name) else {
            return Ok(None);
        };
        value
            .as_i64()
            .or_else(|| value.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or_else(|| format!("malformed claim {name}: not a number"))
    }

    /// `aud` as a string or a list of strings.
    fn audiences(&self) -> Vec<&str> {
        match self.claims.get("aud") {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The bearer token of an `Authorization` header.
pub fn bearer(headers: &HeaderMap) -> Result<&str, Rejection> {
    let value = headers
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(token) = value.strip_prefix("Bearer ") else {
        return Err(Rejection(
            "the Authorization header is missing or malformed".into(),
        ));
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(Rejection(
            "the Authorization header is missing a bearer token".into(),
        ));
    }
    Ok(token)
}

/// A generic-oidc provider with its expressions compiled.
#[derive(Debug)]
pub struct CompiledProvider {
    pub issuer: String,
    pub audience: String,
    variables: Vec<(String, Expression)>,
    validations: Vec<(Expression, String)>,
}

/// Compiles a provider's variables and validations (Flux reports a failure
/// as `InvalidCELExpression`).
pub fn compile_provider(index: usize, provider: &OidcProvider) -> Result<CompiledProvider, String> {
    let context = |e: String| {
        format!(
            "oidcProviders[{index}] (issuerURL={:?}): {e}",
            provider.issuer_url
        )
    };
    let mut variables = Vec::new();
    for variable in provider.variables.iter().flatten() {
        let expression = cel::compile(&variable.expression, &["claims", "vars"], Output::Any)
            .map_err(|e| {
                context(format!(
                    "invalid expression for variable {:?}: {e}",
                    variable.name
                ))
            })?;
        variables.push((variable.name.clone(), expression));
    }
    let mut validations = Vec::new();
    for validation in &provider.validations {
        let expression = cel::compile(&validation.expression, &["claims", "vars"], Output::Bool)
            .map_err(|e| {
                context(format!(
                    "invalid expression for validation {:?}: {e}",
                    validation.message
                ))
            })?;
        validations.push((expression, validation.message.clone()));
    }
    Ok(CompiledProvider {
        issuer: provider.issuer_url.clone(),
        audience: provider.audience().to_owned(),
        variables,
        validations,
    })
}

/// Flux's checks of `oidcProviders` that the API server's schema may not
/// have made (`ValidationFailed`).
pub fn validate_providers(providers: &[OidcProvider]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for (i, p) in providers.iter().enumerate() {
        if p.issuer_url.is_empty() {
            return Err(format!("oidcProviders[{i}]: issuerURL is required"));
        }
        if !(p.issuer_url.starts_with("http://") || p.issuer_url.starts_with("https://")) {
            return Err(format!(
                "oidcProviders[{i}]: issuerURL {:?} must start with http:// or https://",
                p.issuer_url
            ));
        }
        if !seen.insert(p.issuer_url.as_str()) {
            return Err(format!(
                "oidcProviders[{i}]: duplicate issuerURL {:?}",
                p.issuer_url
            ));
        }
        if p.validations.is_empty() {
            return Err(format!(
                "oidcProviders[{i}] (issuerURL={:?}): at least one validation is required; without validations any caller able to obtain a token from this issuer can trigger the Receiver",
                p.issuer_url
            ));
        }
        for (j, v) in p.variables.iter().flatten().enumerate() {
            if v.name.is_empty() {
                return Err(format!(
                    "oidcProviders[{i}] (issuerURL={:?}): variables[{j}]: name is required",
                    p.issuer_url
                ));
            }
            if v.expression.is_empty() {
                return Err(format!(
                    "oidcProviders[{i}] (issuerURL={:?}): variables[{j}] (name={:?}): expression is required",
                    p.issuer_url, v.name
                ));
            }
        }
        for (j, v) in p.validations.iter().enumerate() {
            if v.expression.is_empty() {
                return Err(format!(
                    "oidcProviders[{i}] (issuerURL={:?}): validations[{j}]: expression is required",
                    p.issuer_url
                ));
            }
            if v.message.is_empty() {
                return Err(format!(
                    "oidcProviders[{i}] (issuerURL={:?}): validations[{j}]: message is required",
                    p.issuer_url
                ));
            }
        }
    }
    Ok(())
}

impl CompiledProvider {
    /// Runs the variables, then every validation; the messages of the
    /// failing ones are joined, as in Flux.
    pub fn evaluate(&self, claims: &Value) -> Result<(), Rejection> {
        let claims = cel::value(claims);
        let mut vars: HashMap<String, cel::Value> = HashMap::new();
        for (name, expression) in &self.variables {
            let value = expression
                .evaluate(&[("claims", claims.clone()), ("vars", vars.clone().into())])
                .map_err(|e| Rejection(format!("failed to evaluate variable {name:?}: {e}")))?;
            vars.insert(name.clone(), value);
        }
        let vars: cel::Value = vars.into();
        let mut failures = Vec::new();
        for (expression, message) in &self.validations {
            let ok = expression
                .evaluate_bool(&[("claims", claims.clone()), ("vars", vars.clone())])
                .map_err(|e| Rejection(format!("failed to evaluate validation: {e}")))?;
            if !ok {
                failures.push(message.as_str());
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Rejection(format!(
                "token validation failed: {}",
                failures.join("; ")
            )))
        }
    }
}

/// Discovery documents and key sets, fetched and cached.
pub struct KeyCache {
    client: reqwest::Client,
    documents: Mutex<HashMap<String, Cached>>,
    google_jwks_url: String,
}

struct Cached {
    value: Arc<Value>,
    fetched: Instant,
}

impl KeyCache {
    pub fn new(google_jwks_url: String) -> Self {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Self {
            client,
            documents: Mutex::new(HashMap::new()),
            google_jwks_url,
        }
    }

    /// A JSON document, from the cache when younger than [`KEY_TTL`] (or,
    /// with `refresh`, than [`REFETCH_AFTER`]).
    async fn document(&self, url: &str, refresh: bool) -> Result<Arc<Value>, String> {
        let max_age = if refresh { REFETCH_AFTER } else { KEY_TTL };
        if let Some(cached) = self
            .documents
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(url)
            .filter(|c| c.fetched.elapsed() < max_age)
        {
            return Ok(cached.value.clone());
        }
        let value = Arc::new(self.fetch(url).await?);
        let mut documents = self.documents.lock().unwrap_or_else(|e| e.into_inner());
        // Issuers come from Receivers; keep the cache from growing without bound.
        if documents.len() > 1024 {
            documents.retain(|_, c| c.fetched.elapsed() < KEY_TTL);
        }
        documents.insert(
            url.to_owned(),
            Cached {
                value: value.clone(),
                fetched: Instant::now(),
            },
        );
        Ok(value)
    }

    async fn fetch(&self, url: &str) -> Result<Value, String> {
        let mut response = self
            .client
            .get(url)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", e.without_url()))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("GET {url}: {}", e.without_url()))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("GET {url}: larger than {MAX_DOCUMENT_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|_| format!("GET {url}: not a JSON document"))
    }

    /// Verifies `jwt`'s signature with the keys at `jwks_url`, fetching
    /// them again once when none matches (rotated keys).
    async fn verify_signature(&self, jwt: &Jwt, jwks_url: &str) -> Result<(), String> {
        let keys = self.document(jwks_url, false).await?;
        if jwt.verified_by_any(&keys) {
            return Ok(());
        }
        let keys = self.document(jwks_url, true).await?;
        if jwt.verified_by_any(&keys) {
            Ok(())
        } else {
            Err("failed to verify signature: no key of the issuer verifies it".into())
        }
    }

    /// generic-oidc: the verified claims of the request's bearer token.
    pub async fn verify_generic_oidc(
        &self,
        providers: &[CompiledProvider],
        headers: &HeaderMap,
    ) -> Result<Value, Rejection> {
        if providers.is_empty() {
            return Err(Rejection(
                "generic-oidc receiver has no oidcProviders configured".into(),
            ));
        }
        let token = bearer(headers)?;
        let jwt = Jwt::parse(token)
            .map_err(|e| Rejection(format!("failed to parse bearer token: {e}")))?;
        let Some(issuer) = jwt.claim_str("iss").filter(|i| !i.is_empty()) else {
            return Err(Rejection(
                "failed to parse bearer token: token is missing the 'iss' claim".into(),
            ));
        };
        let Some(provider) = providers.iter().find(|p| p.issuer == issuer) else {
            return Err(Rejection(format!(
                "no oidcProvider configured for issuer {:?}",
                issuer.chars().take(256).collect::<String>()
            )));
        };
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            provider.issuer.trim_end_matches('/')
        );
        let discovery = self.document(&discovery_url, false).await.map_err(|e| {
            Rejection(format!(
                "failed to initialize OIDC provider for issuer {:?}: {e}",
                provider.issuer
            ))
        })?;
        if discovery["issuer"].as_str() != Some(provider.issuer.as_str()) {
            return Err(Rejection(format!(
                "failed to initialize OIDC provider for issuer {:?}: issuer did not match the issuer returned by provider",
                provider.issuer
            )));
        }
        let Some(jwks_url) = discovery["jwks_uri"].as_str() else {
            return Err(Rejection(format!(
                "failed to initialize OIDC provider for issuer {:?}: no jwks_uri",
                provider.issuer
            )));
        };
        let advertised: Vec<&str> = discovery["id_token_signing_alg_values_supported"]
            .as_array()
            .map(|algs| algs.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let algorithms = if advertised.is_empty() {
            vec!["RS256"]
        } else {
            advertised
        };
        let fail = |e: String| Rejection(format!("failed to verify OIDC token: {e}"));
        if !algorithms.contains(&jwt.alg.as_str()) {
            return Err(fail(format!(
                "id token signed with unsupported algorithm, expected {algorithms:?} got {:?}",
                jwt.alg.chars().take(16).collect::<String>()
            )));
        }
        self.verify_signature(&jwt, jwks_url).await.map_err(fail)?;
        if !jwt.audiences().contains(&provider.audience.as_str()) {
            return Err(fail(format!(
                "expected audience {:?} got {:?}",
                provider.audience,
                jwt.audiences()
            )));
        }
        let now = now();
        match jwt.claim_time("exp").map_err(fail)? {
            Some(exp) if exp > now => {}
            _ => return Err(fail("token is expired".into())),
        }
        if let Some(nbf) = jwt.claim_time("nbf").map_err(fail)?
            && now + NOT_BEFORE_LEEWAY < nbf
        {
            return Err(fail("current time before the nbf (not before) time".into()));
        }
        provider.evaluate(&jwt.claims)?;
        Ok(jwt.claims)
    }

    /// gcr: the Pub/Sub push token must be Google's, for `audience`, about
    /// the verified service account `email`.
    pub async fn verify_gcr(
        &self,
        headers: &HeaderMap,
        email: &str,
        audience: &str,
    ) -> Result<(), Rejection> {
        let fail = |e: String| Rejection(format!("cannot authenticate GCR request: {e}"));
        let value = headers
            .get("Authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let Some(token) = value.strip_prefix("Bearer ") else {
            return Err(fail(
                "the Authorization header is missing or malformed".into(),
            ));
        };
        let jwt = Jwt::parse(token).map_err(|e| fail(format!("invalid ID token: {e}")))?;
        if jwt.claim_str("aud") != Some(audience) {
            return Err(fail(format!(
                "invalid ID token: audience is '{}', want '{audience}'",
                jwt.claim_str("aud")
                    .unwrap_or("<unknown>")
                    .chars()
                    .take(256)
                    .collect::<String>()
            )));
        }
        if jwt
            .claim_time("exp")
            .map_err(|e| fail(format!("invalid ID token: {e}")))?
            .is_none_or(|exp| now() > exp)
        {
            return Err(fail("invalid ID token: token expired".into()));
        }
        if !matches!(jwt.alg.as_str(), "RS256" | "ES256") {
            return Err(fail(
                "invalid ID token: expected JWT signed with RS256 or ES256".into(),
            ));
        }
        self.verify_signature(&jwt, &self.google_jwks_url)
            .await
            .map_err(|e| fail(format!("invalid ID token: {e}")))?;
        let issuer = jwt.claim_str("iss").unwrap_or_default();
        if issuer != "accounts.google.com" && issuer != "https://accounts.google.com" {
            return Err(fail(format!(
                "token issuer is '{}', want 'accounts.google.com' or 'https://accounts.google.com'",
                issuer.chars().take(256).collect::<String>()
            )));
        }
        let claimed = jwt.claim_str("email").unwrap_or_default();
        if claimed != email {
            return Err(fail(format!(
                "token email is '{}', want '{email}'",
                claimed.chars().take(256).collect::<String>()
            )));
        }
        if jwt.claims.get("email_verified").and_then(Value::as_bool) != Some(true) {
            return Err(fail(format!("token email '{claimed}' is not verified")));
        }
        Ok(())
    }
}

/// Test helpers: signing tokens with keys made on the spot.
pub mod testing {
    use base64::Engine as _;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use serde_json::{Value, json};

    /// An ES256 key pair and its JWK.
    pub struct SigningKey {
        pair: EcdsaKeyPair,
        pub kid: String,
    }

    impl SigningKey {
        pub fn generate(kid: &str) -> Self {
            let rng = SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .expect("generate a P-256 key");
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                    .expect("load the P-256 key");
            Self {
                pair,
                kid: kid.to_owned(),
            }
        }

        /// The public key as a JWK.
        pub fn jwk(&self) -> Value {
            let point = self.pair.public_key().as_ref();
            let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
            json!({
                "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
                "kid": self.kid,
                "x": b64(&point[1..33]),
                "y": b64(&point[33..65]),
            })
        }

        /// A compact ES256 JWT with these claims.
        pub fn sign(&self, claims: &Value) -> String {
            let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
            let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
            let input = format!(
                "{}.{}",
                b64(header.to_string().as_bytes()),
                b64(claims.to_string().as_bytes())
            );
            let signature = self
                .pair
                .sign(&SystemRandom::new(), input.as_bytes())
                .expect("sign");
            format!("{input}.{}", b64(signature.as_ref()))
        }
    }

    /// Seconds since the epoch.
    pub fn now() -> i64 {
        super::now()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::SigningKey;
    use super::*;
    use crate::api::receiver::{OidcValidation, OidcVariable};
    use serde_json::json;

    fn provider(validation: &str) -> CompiledProvider {
        compile_provider(
            0,
            &OidcProvider {
                issuer_url: "https://issuer.example".into(),
                audience: None,
                variables: Some(vec![OidcVariable {
                    name: "owner".into(),
                    expression: "claims.repository_owner".into(),
                }]),
                validations: vec![OidcValidation {
                    expression: validation.into(),
                    message: "wrong org".into(),
                }],
            },
        )
        .expect("compiles")
    }

    /// As go-oidc and RFC 7515: a time claim that is not a number, a
    /// `crit` header naming an extension herald does not implement, and a
    /// padded base64 segment each refuse the token.
    #[test]
    fn malformed_time_claims_crit_headers_and_padding_refuse_the_token() {
        let key = SigningKey::generate("k1");
        let token =
            key.sign(&json!({"iss": "x", "nbf": "2099-01-01T00:00:00Z", "exp": now() + 60}));
        let jwt = Jwt::parse(&token).expect("parses");
        assert_eq!(
            jwt.claim_time("nbf"),
            Err("malformed claim nbf: not a number".to_owned())
        );
        assert_eq!(jwt.claim_time("exp").map(|t| t.is_some()), Ok(true));
        assert_eq!(jwt.claim_time("iat"), Ok(None));

        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let parts: Vec<&str> = token.split('.').collect();
        let crit = b64(&json!({"alg": "RS256", "kid": "k1", "crit": ["exp"], "exp": 1}));
        let Err(error) = Jwt::parse(&format!("{crit}.{}.{}", parts[1], parts[2])) else {
            panic!("a crit header was accepted");
        };
        assert!(error.contains("crit"), "{error}");

        // A segment whose length needs padding, sent padded.
        let header = json!({"alg": "RS256", "kid": "k1"});
        let mut padded = base64::engine::general_purpose::URL_SAFE.encode(header.to_string());
        if !padded.ends_with('=') {
            padded = base64::engine::general_purpose::URL_SAFE.encode(format!("{header} "));
        }
        assert!(padded.ends_with('='), "{padded}");
        assert!(Jwt::parse(&format!("{padded}.{}.{}", parts[1], parts[2])).is_err());
        assert!(Jwt::parse(&token).is_ok());
    }

    #[test]
    fn signatures_verify_only_with_the_right_key() {
        let key = SigningKey::generate("k1");
        let other = SigningKey::generate("k2");
        let token = key.sign(&json!({"iss": "x"}));
        let jwt = Jwt::parse(&token).unwrap();
        assert!(jwt.verified_by_any(&json!({"keys": [other.jwk(), key.jwk()]})));
        assert!(!jwt.verified_by_any(&json!({"keys": [other.jwk()]})));
        // A key with the right kid but other material.
        let mut forged = other.jwk();
        forged["kid"] = json!("k1");
        assert!(!jwt.verified_by_any(&json!({"keys": [forged]})));
        // A tampered payload.
        let parts: Vec<&str> = token.split('.').collect();
        let tampered_claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(json!({"iss": "y"}).to_string());
        let tampered = format!("{}.{tampered_claims}.{}", parts[0], parts[2]);
        assert!(
            !Jwt::parse(&tampered)
                .unwrap()
                .verified_by_any(&json!({"keys": [key.jwk()]}))
        );
        assert!(Jwt::parse("a.b").is_err());
    }

    #[test]
    fn validations_and_variables_run_over_claims() {
        let p = provider("vars.owner == 'my-org'");
        p.evaluate(&json!({"repository_owner": "my-org"}))
            .expect("allowed");
        let error = p
            .evaluate(&json!({"repository_owner": "evil"}))
            .expect_err("refused");
        assert_eq!(error.0, "token validation failed: wrong org");
        assert_eq!(p.audience, "notification-controller");
    }

    #[test]
    fn provider_specs_are_checked_as_flux_checks_them() {
        let good = OidcProvider {
            issuer_url: "https://a".into(),
            validations: vec![OidcValidation {
                expression: "true".into(),
                message: "m".into(),
            }],
            ..Default::default()
        };
        validate_providers(std::slice::from_ref(&good)).expect("valid");
        assert!(validate_providers(&[good.clone(), good.clone()]).is_err());
        let none = OidcProvider {
            validations: vec![],
            ..good.clone()
        };
        assert!(validate_providers(&[none]).is_err());
        let bad = OidcProvider {
            validations: vec![OidcValidation {
                expression: "claims.sub".into(),
                message: "m".into(),
            }],
            ..good
        };
        let error = compile_provider(0, &bad).expect_err("not bool");
        assert!(error.contains("output type mismatch"), "{error}");
    }

    #[test]
    fn bearer_header_forms() {
        let mut headers = HeaderMap::new();
        assert!(bearer(&headers).is_err());
        headers.insert("Authorization", "Basic abc".parse().unwrap());
        assert!(bearer(&headers).is_err());
        headers.insert("Authorization", "Bearer  ".parse().unwrap());
        assert!(bearer(&headers).is_err());
        headers.insert("Authorization", "Bearer a.b.c".parse().unwrap());
        assert_eq!(bearer(&headers).unwrap(), "a.b.c");
    }
}
