//! `googlepubsub`: publishes the event as Flux marshals it (the JSON
//! `generic` POSTs) to a Google Cloud Pub/Sub topic, with the Secret's
//! `headers` as the message's attributes, as Flux does. The address is the
//! GCP project ID, the channel the topic ID, and the Secret's `token` a
//! service-account JSON key.
//!
//! Flux uses Google's Go client (gRPC); herald speaks the same service's
//! REST API: the key signs an RS256 JWT, exchanged at the key's
//! `token_uri` for an access token (OAuth 2.0 JWT bearer grant, RFC 7523),
//! kept until a minute before it expires; then
//! `POST …/v1/projects/<project>/topics/<topic>:publish`. Both go through
//! the Provider's HTTP client (its CA, client certificate, proxy).
//!
//! The address may also be a URL `https://<host>/v1/projects/<project>`:
//! the API endpoint to publish to (a Private Service Connect endpoint, or
//! the tests' lookalike) with the project as its last segment.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use futures::future::BoxFuture;
use reqwest::StatusCode;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::identity::WorkloadIdentity;
use super::{
    Auth, Body, Conversation, Invalid, Notifier, Request, Sender, Settings, ThreadAnchor, Verdict,
    generic,
};
use crate::api::Reason;
use crate::mask::SecretString;
use crate::notification::Notification;
use crate::template::Rendered;

/// Google's public Pub/Sub endpoint.
const API: &str = "https://pubsub.googleapis.com/v1/projects/";
/// Where a key without `token_uri` gets its tokens.
const TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The scope the access token is asked for: publishing to Pub/Sub.
const SCOPE: &str = "https://www.googleapis.com/auth/pubsub";
/// The JWT bearer grant (RFC 7523).
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How long the signed assertion is valid (Google's maximum).
const ASSERTION_LIFETIME: u64 = 3600;
/// A token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(60);

pub struct PubSub {
    settings: Settings,
    /// `…/v1/projects/<project>`: topics are below it.
    project_url: String,
    /// The Secret's JSON key; `None` with workload identity.
    key: Option<Key>,
    /// `spec.serviceAccountName`: tokens from GCP STS (see `identity`).
    identity: Option<Arc<WorkloadIdentity>>,
    /// The access token and when to stop using it.
    token: Mutex<Option<(SecretString, Instant)>>,
}

/// The service-account key, parsed once.
struct Key {
    client_email: String,
    key_id: Option<String>,
    token_uri: SecretString,
    signer: RsaKeyPair,
}

/// The fields of a service-account JSON key herald reads.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
}

fn invalid(reason: Reason, message: impl Into<String>) -> Invalid {
    Invalid::Setting {
        reason,
        message: message.into(),
    }
}

pub fn new(mut settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    let project_url = project_url(settings.address()?.expose())?;
    if settings.channel.is_none() {
        return Err(invalid(
            Reason::ChannelMissing,
            "spec.channel: googlepubsub publishes to the topic ID in the channel, and there is none",
        ));
    }
    // As in Flux, a JSON key wins over workload identity.
    let (key, identity) = match (settings.token.as_ref(), &settings.workload_identity) {
        (Some(key), _) => (Some(parse_key(key.expose())?), None),
        (None, Some(identity)) => (None, Some(identity.clone())),
        (None, None) => {
            return Err(invalid(
                Reason::SecretKeyMissing,
                "googlepubsub needs a service-account JSON key in the 'token' key of \
                 spec.secretRef's Secret, or spec.serviceAccountName (workload identity): herald \
                 does not use the controller's own cloud identity",
            ));
        }
    };
    // The Secret's headers are the message's attributes, not HTTP headers.
    settings.headers.clear();
    Ok(Arc::new(PubSub {
        settings,
        project_url,
        key,
        identity,
        token: Mutex::new(None),
    }))
}

/// `…/v1/projects/<project>` from a project ID or an endpoint URL ending in
/// `/projects/<project>`; errors quote neither.
fn project_url(address: &str) -> Result<String, Invalid> {
    let address = address.trim();
    if !address.starts_with("https://") && !address.starts_with("http://") {
        let valid = address
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':'));
        if !valid {
            return Err(invalid(
                Reason::InvalidAddress,
                "the address must be a GCP project ID (letters, digits, '-', '.', ':') or an \
                 endpoint URL ending in /projects/<project ID>",
            ));
        }
        return Ok(format!("{API}{address}"));
    }
    let url = url::Url::parse(address).map_err(|e| {
        invalid(
            Reason::InvalidAddress,
            format!("the address is not a valid URL ({e})"),
        )
    })?;
    let segments: Vec<&str> = url
        .path_segments()
        .map(Iterator::collect)
        .unwrap_or_default();
    let segments: Vec<&str> = segments.into_iter().filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [.., "projects", project] if !project.is_empty() && url.query().is_none() => {
            Ok(address.trim_end_matches('/').to_owned())
        }
        _ => Err(invalid(
            Reason::InvalidAddress,
            "an endpoint URL in the address must end in /projects/<project ID> (e.g. \
             https://pubsub.googleapis.com/v1/projects/my-project)",
        )),
    }
}

/// The service-account key in the Secret's `token`; errors name the key,
/// never its content.
fn parse_key(json: &str) -> Result<Key, Invalid> {
    let file: KeyFile = serde_json::from_str(json).map_err(|e| {
        invalid(
            Reason::InvalidToken,
            format!(
                "the 'token' key of spec.secretRef's Secret is not a service-account JSON key: \
                 missing or malformed field at line {} column {}",
                e.line(),
                e.column()
            ),
        )
    })?;
    if file.kind != "service_account" {
        return Err(invalid(
            Reason::InvalidToken,
            format!(
                "the 'token' key of spec.secretRef's Secret is a '{}' credential: herald reads \
                 only service-account keys (type service_account)",
                file.kind
            ),
        ));
    }
    let signer = super::pem::rsa_key(&file.private_key).map_err(|e| {
        invalid(
            Reason::InvalidToken,
            format!("the service-account key's private_key {e}"),
        )
    })?;
    let token_uri = file.token_uri.unwrap_or_else(|| TOKEN_URI.to_owned());
    let scheme_ok = token_uri.starts_with("https://") || token_uri.starts_with("http://");
    if !scheme_ok || url::Url::parse(&token_uri).is_err() {
        return Err(invalid(
            Reason::InvalidToken,
            "the service-account key's token_uri is not an http(s) URL",
        ));
    }
    Ok(Key {
        client_email: file.client_email,
        key_id: file.private_key_id.filter(|id| !id.is_empty()),
        token_uri: SecretString::new(token_uri),
        signer,
    })
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

/// Google's token answer.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Key {
    /// A signed assertion for the token endpoint, valid from `now`.
    fn assertion(&self, now: u64) -> Result<String, String> {
        let mut header = json!({"alg": "RS256", "typ": "JWT"});
        if let Some(id) = &self.key_id {
            header["kid"] = Value::String(id.clone());
        }
        let claims = Claims {
            iss: &self.client_email,
            scope: SCOPE,
            aud: self.token_uri.expose(),
            iat: now,
            exp: now + ASSERTION_LIFETIME,
        };
        let signing_input = format!("{}.{}", segment(&header)?, segment(&claims)?);
        let mut signature = vec![0; self.signer.public().modulus_len()];
        self.signer
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "cannot sign the token request with the service-account key")?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// JSON, base64url-encoded: a JWT segment.
fn segment(value: &impl Serialize) -> Result<String, String> {
    let bytes = serde_json::to_vec(value).map_err(|e| e.to_string())?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

impl PubSub {
    fn topic<'a>(&'a self, n: &'a Notification) -> &'a str {
        n.route
            .channel()
            .or(self.settings.channel.as_deref())
            .unwrap_or_default()
    }

    /// The publish request for a notification, with `token` as its bearer.
    fn publish_request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        token: SecretString,
    ) -> Result<Request, String> {
        let event = generic::go_event_json(n, rendered)?;
        let mut message = json!({"data": STANDARD.encode(&event.bytes)});
        if !self.settings.header_pairs.is_empty() {
            let attributes: BTreeMap<&str, &str> = self
                .settings
                .header_pairs
                .iter()
                .map(|(name, value)| (name.as_str(), value.expose()))
                .collect();
            message["attributes"] = json!(attributes);
        }
        let url = format!("{}/topics/{}:publish", self.project_url, self.topic(n));
        let body = Body::json(&json!({"messages": [message]}))?;
        Ok(Request::post(&SecretString::new(url), body).auth(Auth::Bearer(token)))
    }

    /// The cached access token, or a new one from the token endpoint.
    async fn access_token(&self, sender: &dyn Sender) -> Result<SecretString, Verdict> {
        let key = match (&self.key, &self.identity) {
            (Some(key), _) => key,
            (None, Some(identity)) => return identity.gcp_token(sender).await,
            (None, None) => return Err(Verdict::Fail("googlepubsub has no credentials".into())),
        };
        if let Some((token, until)) = self.token.lock().expect("token cache").as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let assertion = key.assertion(now).map_err(Verdict::Fail)?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", GRANT_TYPE)
            .append_pair("assertion", &assertion)
            .finish();
        let body = Body {
            content_type: "application/x-www-form-urlencoded",
            bytes: Bytes::from(form),
        };
        let request = Request::post(&key.token_uri, body);
        let reply = sender.send(&request).await.map_err(Verdict::from)?;
        let refused = |reason: String| format!("the token endpoint refused the key: {reason}");
        match reply.verdict() {
            Verdict::Delivered => {}
            Verdict::Retry { reason, after } => {
                return Err(Verdict::Retry {
                    reason: refused(reason),
                    after,
                });
            }
            Verdict::Fail(reason) => return Err(Verdict::Fail(refused(reason))),
        }
        let answer: TokenAnswer = reply.json("an access token")?;
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(ASSERTION_LIFETIME));
        let token = SecretString::new(answer.access_token);
        let until = Instant::now() + lifetime.saturating_sub(RENEW_BEFORE);
        *self.token.lock().expect("token cache") = Some((token.clone(), until));
        Ok(token)
    }

    async fn publish(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        sender: &dyn Sender,
    ) -> Verdict {
        let token = match self.access_token(sender).await {
            Ok(token) => token,
            Err(verdict) => return verdict,
        };
        let request = match self.publish_request(n, rendered, token) {
            Ok(request) => request,
            Err(e) => return Verdict::Fail(e),
        };
        let reply = match sender.send(&request).await {
            Ok(reply) => reply,
            Err(e) => return e.into(),
        };
        if reply.status == StatusCode::UNAUTHORIZED {
            // Revoked or expired early: the next attempt gets a new token.
            *self.token.lock().expect("token cache") = None;
            if let Some(identity) = &self.identity {
                identity.forget_gcp();
            }
            return Verdict::Retry {
                reason: "Pub/Sub refused the access token (HTTP 401); a new one will be requested"
                    .into(),
                after: None,
            };
        }
        reply.verdict()
    }
}

impl Conversation for PubSub {
    fn deliver<'a>(
        &'a self,
        n: &'a Notification,
        rendered: Option<&'a Rendered>,
        sender: &'a dyn Sender,
    ) -> BoxFuture<'a, Verdict> {
        Box::pin(self.publish(n, rendered, sender))
    }
}

impl Notifier for PubSub {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    /// What `herald route` shows: the publish request (its bearer is a
    /// placeholder: no token is fetched to show it).
    fn request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        _thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String> {
        self.publish_request(n, rendered, SecretString::new(String::new()))
    }

    fn conversation(&self) -> Option<&dyn Conversation> {
        Some(self)
    }

    /// The publish body, attribute values masked like the header values
    /// they come from.
    fn payload(&self, n: &Notification, rendered: Option<&Rendered>) -> Result<Value, String> {
        let mut body = self.request(n, rendered, None)?.body.show();
        if let Some(attributes) = body["messages"][0]["attributes"].as_object_mut() {
            attributes
                .values_mut()
                .for_each(|v| *v = Value::String("***".into()));
        }
        Ok(body)
    }

    fn masked_address(&self) -> String {
        crate::mask::url(&self.project_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_a_project_or_an_endpoint() {
        assert_eq!(
            project_url("my-project").unwrap(),
            "https://pubsub.googleapis.com/v1/projects/my-project"
        );
        assert_eq!(
            project_url("https://psc.example/v1/projects/p/").unwrap(),
            "https://psc.example/v1/projects/p"
        );
        for bad in [
            "https://psc.example/v1/p",
            "my project",
            "https://h/projects/p?x=1",
        ] {
            let Err(Invalid::Setting { reason, message }) = project_url(bad) else {
                panic!("{bad} accepted");
            };
            assert_eq!(reason, Reason::InvalidAddress);
            assert!(!message.contains(bad), "{message}");
        }
    }

    #[test]
    fn a_key_that_is_not_a_service_account_key_is_refused_without_quoting_it() {
        for (json, expected) in [
            (
                "{\"private_key\": \"s3cret-material\"",
                "not a service-account JSON key",
            ),
            (
                "{\"type\": \"authorized_user\", \"client_email\": \"a\", \"private_key\": \"s3cret-material\"}",
                "'authorized_user' credential",
            ),
            (
                "{\"type\": \"service_account\", \"client_email\": \"a\", \"private_key\": \"s3cret-material\"}",
                "not a PEM",
            ),
        ] {
            let Err(Invalid::Setting { reason, message }) = parse_key(json) else {
                panic!("accepted");
            };
            assert_eq!(reason, Reason::InvalidToken);
            assert!(message.contains(expected), "{message}");
            assert!(!message.contains("s3cret-material"), "{message}");
        }
    }
}
