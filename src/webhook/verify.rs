//! How each Receiver type verifies a request, as Flux v1.9.3 does
//! (`internal/server/receiver_handlers.go`); generic-oidc and gcr, which
//! need signing keys from the network, are in [`super::oidc`].
//!
//! Every check that compares a secret runs in constant time, and no
//! rejection message quotes a token, a signature or a header value that
//! could carry one.

use axum::http::HeaderMap;
use ring::hmac;
use serde_json::Value;

use crate::api::ReceiverType;

/// The webhook path of a Receiver: `/hook/` and the hex sha256 of token,
/// name and namespace concatenated (Flux's `GetWebhookPath`).
pub fn webhook_path(token: &[u8], name: &str, namespace: &str) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(token);
    context.update(name.as_bytes());
    context.update(namespace.as_bytes());
    format!(
        "{}{}",
        crate::api::receiver::WEBHOOK_PATH_PREFIX,
        hex(context.finish().as_ref())
    )
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    crate::hex::encode(bytes)
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// Byte strings compared in time independent of where they differ (only
/// their lengths show).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // `subtle` guarantees what `std::hint::black_box` does not: the
    // comparison's time does not depend on where the bytes differ. (The
    // lengths are compared first, as `subtle` does: a length is no secret.)
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// A request that passed verification.
#[derive(Debug, Default)]
pub struct Verified {
    /// The event type the sender named (logged; `spec.events` already applied).
    pub event: Option<String>,
    /// The body `req` is read from in CEL filters, when it is not the
    /// request body (gcr: the unwrapped Pub/Sub message; github form posts:
    /// the `payload` field).
    pub filter_body: Option<Vec<u8>>,
    /// Claims of a verified OIDC token (generic-oidc), for CEL filters.
    pub claims: Option<Value>,
}

/// Why a request was refused (answered 400, as Flux does). The message
/// never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection(pub String);

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn reject<T>(message: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection(message.into()))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// `spec.events`, compared case-insensitively; empty allows every event.
fn allowed(event: &str, events: &[String], what: &str) -> Result<(), Rejection> {
    if events.is_empty() || events.iter().any(|e| e.eq_ignore_ascii_case(event)) {
        Ok(())
    } else {
        reject(format!("the {what} event {event:?} is not authorised"))
    }
}

/// Verifies a request for every type that needs nothing but the token.
/// generic-oidc and gcr are refused here: they are verified in
/// [`super::oidc`].
pub fn verify(
    kind: ReceiverType,
    headers: &HeaderMap,
    body: &[u8],
    token: impl AsRef<[u8]>,
    events: &[String],
) -> Result<Verified, Rejection> {
    let token = token.as_ref();
    match kind {
        ReceiverType::Generic => Ok(Verified::default()),
        ReceiverType::GenericHmac => {
            validate_signature(header(headers, "X-Signature"), body, token)
                .map_err(|e| Rejection(format!("unable to validate HMAC signature: {e}")))?;
            Ok(Verified::default())
        }
        ReceiverType::Github => {
            let payload = validate_github_payload(headers, body, token).map_err(|e| {
                Rejection(format!("the GitHub signature header is invalid, err: {e}"))
            })?;
            let event = header(headers, "X-GitHub-Event");
            allowed(event, events, "GitHub")?;
            Ok(Verified {
                event: Some(event.to_owned()),
                filter_body: payload,
                ..Default::default()
            })
        }
        ReceiverType::Gitlab => {
            if !constant_time_eq(header(headers, "X-Gitlab-Token").as_bytes(), token) {
                return reject("the X-Gitlab-Token header value does not match the receiver token");
            }
            let event = header(headers, "X-Gitlab-Event");
            allowed(event, events, "GitLab")?;
            Ok(Verified {
                event: Some(event.to_owned()),
                ..Default::default()
            })
        }
        ReceiverType::Bitbucket => {
            validate_github_payload(headers, body, token).map_err(|e| {
                Rejection(format!(
                    "the Bitbucket server signature header is invalid, err: {e}"
                ))
            })?;
            let event = header(headers, "X-Event-Key");
            allowed(event, events, "Bitbucket server")?;
            Ok(Verified {
                event: Some(event.to_owned()),
                ..Default::default()
            })
        }
        ReceiverType::Cdevents => {
            let event = header(headers, "Ce-Type");
            validate_cdevent(body)
                .map_err(|e| Rejection(format!("unable to validate CDEvent event: {e}")))?;
            allowed(event, events, "CDEvent")?;
            Ok(Verified {
                event: Some(event.to_owned()),
                ..Default::default()
            })
        }
        ReceiverType::Quay => {
            decode_first(body, &QUAY)
                .map_err(|e| Rejection(format!("cannot decode Quay webhook payload: {e}")))?;
            Ok(Verified::default())
        }
        ReceiverType::Harbor => {
            if !constant_time_eq(header(headers, "Authorization").as_bytes(), token) {
                return reject(
                    "the Harbor Authorization header value does not match the receiver token",
                );
            }
            Ok(Verified::default())
        }
        ReceiverType::Dockerhub => {
            decode_first(body, &DOCKERHUB)
                .map_err(|_| Rejection("cannot decode DockerHub webhook payload".into()))?;
            Ok(Verified::default())
        }
        ReceiverType::Nexus => {
            let signature = header(headers, "X-Nexus-Webhook-Signature");
            if signature.is_empty() {
                return reject("the Nexus signature is missing from header");
            }
            let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, token);
            let expected = hex(hmac::sign(&key, body).as_ref());
            // Flux compares the hex strings: lowercase only.
            if !constant_time_eq(signature.as_bytes(), expected.as_bytes()) {
                return reject("invalid Nexus signature");
            }
            decode_whole(body, &NEXUS)
                .map_err(|e| Rejection(format!("cannot decode Nexus webhook payload: {e}")))?;
            Ok(Verified::default())
        }
        ReceiverType::Acr => {
            decode_first(body, &ACR)
                .map_err(|e| Rejection(format!("cannot decode ACR webhook payload: {e}")))?;
            Ok(Verified::default())
        }
        ReceiverType::GenericOidc | ReceiverType::Gcr => {
            reject("this receiver type is verified with OIDC tokens")
        }
    }
}

/// `<sha1|sha256|sha512>=<hex>` checked against the HMAC of `body` keyed
/// with `key` (go-github's `ValidateSignature`, which generic-hmac, github
/// and bitbucket use).
pub fn validate_signature(signature: &str, body: &[u8], key: &[u8]) -> Result<(), String> {
    if signature.is_empty() {
        return Err("missing signature".into());
    }
    let Some((prefix, digest)) = signature.split_once('=') else {
        return Err("error parsing signature".into());
    };
    let algorithm = match prefix {
        "sha1" => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        "sha256" => hmac::HMAC_SHA256,
        "sha512" => hmac::HMAC_SHA512,
        _ => return Err(format!("unknown hash type prefix: {:?}", truncated(prefix))),
    };
    let Some(mac) = unhex(digest) else {
        return Err("error decoding signature".into());
    };
    hmac::verify(&hmac::Key::new(algorithm, key), body, &mac)
        .map_err(|_| "payload signature check failed".to_owned())
}

/// A value quoted in an error, cut short: it came from the client.
fn truncated(text: &str) -> String {
    text.chars().take(16).collect()
}

/// go-github's `ValidatePayload`: the signature from `X-Hub-Signature-256`
/// (else `X-Hub-Signature`), checked when a token or a signature is set;
/// Content-Type `application/json` or `application/x-www-form-urlencoded`
/// (the JSON is then the `payload` field, returned).
fn validate_github_payload(
    headers: &HeaderMap,
    body: &[u8],
    token: &[u8],
) -> Result<Option<Vec<u8>>, String> {
    let mut signature = header(headers, "X-Hub-Signature-256");
    if signature.is_empty() {
        signature = header(headers, "X-Hub-Signature");
    }
    let content_type = media_type(header(headers, "Content-Type"))?;
    let payload = match content_type.as_str() {
        "application/json" => None,
        "application/x-www-form-urlencoded" => Some(
            url::form_urlencoded::parse(body)
                .find(|(k, _)| k == "payload")
                .map(|(_, v)| v.into_owned().into_bytes())
                .unwrap_or_default(),
        ),
        other => {
            return Err(format!(
                "webhook request has unsupported Content-Type {:?}",
                truncated(other)
            ));
        }
    };
    if !token.is_empty() || !signature.is_empty() {
        validate_signature(signature, body, token)?;
    }
    Ok(payload)
}

/// The media type of a Content-Type header, lowercased (Go's
/// `mime.ParseMediaType`, which refuses an empty header).
pub fn media_type(content_type: &str) -> Result<String, String> {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    let valid = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    match media.split_once('/') {
        Some((kind, sub)) if valid(kind) && valid(sub) => Ok(media.to_ascii_lowercase()),
        _ if media.is_empty() => Err("mime: no media type".into()),
        _ => Err("mime: expected slash after first token".into()),
    }
}

/// The JSON shape Flux decodes a payload into: which fields must have
/// which type when present (Go's `encoding/json` refuses a mismatch and
/// matches field names case-insensitively).
enum Shape {
    String,
    Strings,
    Object(&'static [(&'static str, Shape)]),
}

const QUAY: Shape = Shape::Object(&[
    ("docker_url", Shape::String),
    ("updated_tags", Shape::Strings),
]);
const DOCKERHUB: Shape = Shape::Object(&[
    ("push_data", Shape::Object(&[("tag", Shape::String)])),
    ("repository", Shape::Object(&[("repo_url", Shape::String)])),
]);
const ACR: Shape = Shape::Object(&[
    ("action", Shape::String),
    (
        "target",
        Shape::Object(&[("repository", Shape::String), ("tag", Shape::String)]),
    ),
]);
const NEXUS: Shape = Shape::Object(&[("action", Shape::String), ("repositoryName", Shape::String)]);
const GCR_PUSH: Shape = Shape::Object(&[(
    "message",
    Shape::Object(&[
        ("data", Shape::String),
        ("messageId", Shape::String),
        ("subscription", Shape::String),
    ]),
)]);
const GCR_EVENT: Shape = Shape::Object(&[
    ("action", Shape::String),
    ("digest", Shape::String),
    ("tag", Shape::String),
]);

fn conforms(value: &Value, shape: &Shape) -> Result<(), String> {
    // JSON null leaves a Go value untouched.
    if value.is_null() {
        return Ok(());
    }
    match (shape, value) {
        (Shape::String, Value::String(_)) => Ok(()),
        (Shape::Strings, Value::Array(items)) => items
            .iter()
            .try_for_each(|item| conforms(item, &Shape::String)),
        (Shape::Object(fields), Value::Object(map)) => {
            for (name, field_shape) in fields.iter() {
                for (key, child) in map {
                    if key.eq_ignore_ascii_case(name) {
                        conforms(child, field_shape).map_err(|e| format!("field {name}: {e}"))?;
                    }
                }
            }
            Ok(())
        }
        (Shape::String, _) => Err("cannot unmarshal into a string".into()),
        (Shape::Strings, _) => Err("cannot unmarshal into a list of strings".into()),
        (Shape::Object(_), _) => Err("cannot unmarshal into an object".into()),
    }
}

/// Go's `json.NewDecoder(body).Decode(&payload)`: the first JSON value.
fn decode_first(body: &[u8], shape: &Shape) -> Result<Value, String> {
    let mut values = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    let value = match values.next() {
        Some(Ok(value)) => value,
        Some(Err(e)) => return Err(json_error(&e)),
        None => return Err("EOF".into()),
    };
    conforms(&value, shape)?;
    Ok(value)
}

/// Go's `json.Unmarshal(body, &payload)`: the whole body is one JSON value.
fn decode_whole(body: &[u8], shape: &Shape) -> Result<Value, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| json_error(&e))?;
    conforms(&value, shape)?;
    Ok(value)
}

/// A JSON error without the input it quotes.
fn json_error(e: &serde_json::Error) -> String {
    format!("invalid JSON at line {} column {}", e.line(), e.column())
}

/// A GCR push (Pub/Sub) body: the base64 `message.data` must hold the
/// registry event, which becomes what filters read as `req`.
pub fn unwrap_gcr_payload(body: &[u8]) -> Result<Vec<u8>, Rejection> {
    let push = decode_first(body, &GCR_PUSH)
        .map_err(|e| Rejection(format!("cannot decode GCR webhook payload: {e}")))?;
    if let Some(time) = push["message"]
        .as_object()
        .and_then(|m| {
            m.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("publishTime"))
        })
        .map(|(_, v)| v)
        .filter(|v| !v.is_null())
    {
        let valid = time
            .as_str()
            .is_some_and(|t| t.parse::<k8s_openapi::jiff::Timestamp>().is_ok());
        if !valid {
            return reject("cannot decode GCR webhook payload: bad publishTime");
        }
    }
    let data = push["message"]["data"].as_str().unwrap_or_default();
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap_or_default();
    let event = decode_whole(&raw, &GCR_EVENT)
        .map_err(|e| Rejection(format!("cannot decode GCR webhook body: {e}")))?;
    let field = |name: &str| {
        event
            .get(name)
            .cloned()
            .unwrap_or(Value::String(String::new()))
    };
    let unwrapped = serde_json::json!({
        "action": field("action"),
        "digest": field("digest"),
        "tag": field("tag"),
    });
    Ok(serde_json::to_vec(&unwrapped).unwrap_or_default())
}

/// The CDEvents envelope (spec 0.4): a JSON object with a `context` (`id`,
/// `source`, `type` as `dev.cdevents.<subject>.<predicate>.<version>`,
/// `timestamp`, `specversion` or `version`) and a `subject` with an `id`.
/// Flux's SDK also checks each event type's full schema; herald checks the
/// envelope every type shares.
fn validate_cdevent(body: &[u8]) -> Result<(), String> {
    let event: Value = serde_json::from_slice(body).map_err(|e| json_error(&e))?;
    let context = event
        .get("context")
        .and_then(Value::as_object)
        .ok_or("missing context")?;
    let text = |name: &str| {
        context
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    for name in ["id", "source", "type", "timestamp"] {
        if text(name).is_none() {
            return Err(format!("context.{name} is required"));
        }
    }
    if text("specversion").or(text("version")).is_none() {
        return Err("context.specversion is required".into());
    }
    let kind = text("type").unwrap_or_default();
    let parts: Vec<&str> = kind.splitn(5, '.').collect();
    let well_formed = parts.len() == 5
        && parts[0] == "dev"
        && parts[1] == "cdevents"
        && parts[2..4]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[4].split(['-', '+']).next().is_some_and(|v| {
            v.split('.').count() == 3 && v.split('.').all(|n| n.parse::<u32>().is_ok())
        });
    if !well_formed {
        return Err(format!("unknown CDEvent type {:?}", truncated(kind)));
    }
    if text("timestamp")
        .unwrap_or_default()
        .parse::<k8s_openapi::jiff::Timestamp>()
        .is_err()
    {
        return Err("context.timestamp is not an RFC 3339 time".into());
    }
    let subject = event
        .get("subject")
        .and_then(Value::as_object)
        .ok_or("missing subject")?;
    if subject
        .get("id")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err("subject.id is required".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const TOKEN: &str = "s3cr3t-token";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn sign(algorithm: hmac::Algorithm, prefix: &str, body: &[u8]) -> String {
        let key = hmac::Key::new(algorithm, TOKEN.as_bytes());
        format!("{prefix}={}", hex(hmac::sign(&key, body).as_ref()))
    }

    #[test]
    fn webhook_path_is_fluxs_digest() {
        // sha256("token" + "test-receiver" + "default"), as Flux's
        // GetWebhookPath computes it.
        let path = webhook_path(b"token", "test-receiver", "default");
        let digest = ring::digest::digest(&ring::digest::SHA256, b"tokentest-receiverdefault");
        assert_eq!(path, format!("/hook/{}", hex(digest.as_ref())));
        assert_eq!(path.len(), "/hook/".len() + 64);
        assert_ne!(path, webhook_path(b"token", "test-receive", "rdefault2"));
    }

    #[test]
    fn generic_hmac_accepts_every_hash_and_refuses_the_rest() {
        let body = br#"{"a":1}"#;
        for (algorithm, prefix) in [
            (hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, "sha1"),
            (hmac::HMAC_SHA256, "sha256"),
            (hmac::HMAC_SHA512, "sha512"),
        ] {
            let h = headers(&[("X-Signature", &sign(algorithm, prefix, body))]);
            verify(ReceiverType::GenericHmac, &h, body, TOKEN, &[]).expect(prefix);
            // The same signature over another body fails.
            assert!(verify(ReceiverType::GenericHmac, &h, b"{}", TOKEN, &[]).is_err());
            // ... and with another key.
            assert!(verify(ReceiverType::GenericHmac, &h, body, "other", &[]).is_err());
        }
        for bad in ["", "sha256", "md5=abcd", "sha256=zz", "sha256=abcd"] {
            let h = headers(&[("X-Signature", bad)]);
            let error = verify(ReceiverType::GenericHmac, &h, body, TOKEN, &[])
                .expect_err(bad)
                .0;
            assert!(!error.contains(TOKEN));
        }
    }

    #[test]
    fn github_checks_signature_content_type_and_events() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let signed = sign(hmac::HMAC_SHA256, "sha256", body);
        let ok = headers(&[
            ("X-Hub-Signature-256", &signed),
            ("Content-Type", "application/json"),
            ("X-GitHub-Event", "push"),
        ]);
        let verified = verify(ReceiverType::Github, &ok, body, TOKEN, &[]).expect("valid");
        assert_eq!(verified.event.as_deref(), Some("push"));
        let events = vec!["ping".to_owned(), "Push".to_owned()];
        verify(ReceiverType::Github, &ok, body, TOKEN, &events).expect("push allowed");
        let ping = headers(&[
            ("X-Hub-Signature-256", &signed),
            ("Content-Type", "application/json"),
            ("X-GitHub-Event", "ping"),
        ]);
        verify(ReceiverType::Github, &ping, body, TOKEN, &events).expect("ping allowed");
        let only_ping = vec!["ping".to_owned()];
        let error =
            verify(ReceiverType::Github, &ok, body, TOKEN, &only_ping).expect_err("filtered");
        assert!(error.0.contains("not authorised"), "{error}");
        // The legacy SHA-1 header.
        let legacy = headers(&[
            (
                "X-Hub-Signature",
                &sign(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, "sha1", body),
            ),
            ("Content-Type", "application/json; charset=utf-8"),
        ]);
        verify(ReceiverType::Github, &legacy, body, TOKEN, &[]).expect("sha1");
        // No Content-Type, another one, no signature, a wrong one.
        for h in [
            headers(&[("X-Hub-Signature-256", &signed)]),
            headers(&[
                ("X-Hub-Signature-256", &signed),
                ("Content-Type", "text/plain"),
            ]),
            headers(&[("Content-Type", "application/json")]),
            headers(&[
                (
                    "X-Hub-Signature-256",
                    &sign(hmac::HMAC_SHA256, "sha256", b"forged"),
                ),
                ("Content-Type", "application/json"),
            ]),
        ] {
            assert!(verify(ReceiverType::Github, &h, body, TOKEN, &[]).is_err());
        }
    }

    #[test]
    fn github_form_posts_carry_the_json_in_payload() {
        let body = b"payload=%7B%22zen%22%3A%22ok%22%7D";
        let h = headers(&[
            (
                "X-Hub-Signature-256",
                &sign(hmac::HMAC_SHA256, "sha256", body),
            ),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ]);
        let verified = verify(ReceiverType::Github, &h, body, TOKEN, &[]).expect("valid");
        assert_eq!(
            verified.filter_body.as_deref(),
            Some(&br#"{"zen":"ok"}"#[..])
        );
    }

    #[test]
    fn gitlab_and_harbor_compare_the_token_header() {
        let ok = headers(&[("X-Gitlab-Token", TOKEN), ("X-Gitlab-Event", "Push Hook")]);
        verify(ReceiverType::Gitlab, &ok, b"", TOKEN, &[]).expect("valid");
        verify(ReceiverType::Gitlab, &ok, b"", TOKEN, &["push hook".into()]).expect("events");
        assert!(
            verify(
                ReceiverType::Gitlab,
                &ok,
                b"",
                TOKEN,
                &["Tag Push Hook".into()]
            )
            .is_err()
        );
        let wrong = headers(&[("X-Gitlab-Token", "nope")]);
        assert!(verify(ReceiverType::Gitlab, &wrong, b"", TOKEN, &[]).is_err());
        verify(
            ReceiverType::Harbor,
            &headers(&[("Authorization", TOKEN)]),
            b"",
            TOKEN,
            &[],
        )
        .expect("harbor");
        assert!(verify(ReceiverType::Harbor, &headers(&[]), b"", TOKEN, &[]).is_err());
    }

    #[test]
    fn bitbucket_is_github_signed_with_its_event_key() {
        let body = b"{}";
        let h = headers(&[
            ("X-Hub-Signature", &sign(hmac::HMAC_SHA256, "sha256", body)),
            ("Content-Type", "application/json"),
            ("X-Event-Key", "repo:refs_changed"),
        ]);
        verify(
            ReceiverType::Bitbucket,
            &h,
            body,
            TOKEN,
            &["repo:refs_changed".into()],
        )
        .expect("valid");
        assert!(verify(ReceiverType::Bitbucket, &h, body, TOKEN, &["push".into()]).is_err());
        assert!(verify(ReceiverType::Bitbucket, &h, body, "other", &[]).is_err());
    }

    #[test]
    fn nexus_is_lowercase_hex_hmac_sha1() {
        let body = br#"{"action":"CREATED","repositoryName":"docker"}"#;
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, TOKEN.as_bytes());
        let signature = hex(hmac::sign(&key, body).as_ref());
        let h = headers(&[("X-Nexus-Webhook-Signature", &signature)]);
        verify(ReceiverType::Nexus, &h, body, TOKEN, &[]).expect("valid");
        let upper = headers(&[("X-Nexus-Webhook-Signature", &signature.to_uppercase())]);
        assert!(verify(ReceiverType::Nexus, &upper, body, TOKEN, &[]).is_err());
        assert!(verify(ReceiverType::Nexus, &headers(&[]), body, TOKEN, &[]).is_err());
        // Signed, but not a Nexus payload.
        let key_sig = hex(hmac::sign(&key, b"[1]").as_ref());
        let h = headers(&[("X-Nexus-Webhook-Signature", &key_sig)]);
        assert!(verify(ReceiverType::Nexus, &h, b"[1]", TOKEN, &[]).is_err());
    }

    #[test]
    fn registry_payloads_are_decoded_as_flux_decodes_them() {
        let none = headers(&[]);
        let quay = br#"{"docker_url":"quay.io/a/b","updated_tags":["v1"]}"#;
        verify(ReceiverType::Quay, &none, quay, TOKEN, &[]).expect("quay");
        assert!(
            verify(
                ReceiverType::Quay,
                &none,
                br#"{"updated_tags":"v1"}"#,
                TOKEN,
                &[]
            )
            .is_err()
        );
        assert!(verify(ReceiverType::Quay, &none, b"", TOKEN, &[]).is_err());
        let hub = br#"{"push_data":{"tag":"v1"},"repository":{"repo_url":"https://hub.docker.com/r/a/b"}}"#;
        verify(ReceiverType::Dockerhub, &none, hub, TOKEN, &[]).expect("dockerhub");
        assert!(
            verify(
                ReceiverType::Dockerhub,
                &none,
                br#"{"push_data":{"tag":1}}"#,
                TOKEN,
                &[]
            )
            .is_err()
        );
        let acr = br#"{"action":"push","target":{"repository":"a","tag":"v1"}}"#;
        verify(ReceiverType::Acr, &none, acr, TOKEN, &[]).expect("acr");
        // Go matches field names case-insensitively.
        assert!(verify(ReceiverType::Acr, &none, br#"{"Action":5}"#, TOKEN, &[]).is_err());
        assert!(verify(ReceiverType::Acr, &none, b"not json", TOKEN, &[]).is_err());
    }

    #[test]
    fn cdevents_envelope_and_ce_type_filter() {
        let body = br#"{"context":{"version":"0.4.1","id":"5555","source":"github","type":"dev.cdevents.change.merged.0.2.0","timestamp":"2023-12-07T14:51:29.908479495Z"},"subject":{"id":"5555","content":{}}}"#;
        let h = headers(&[("Ce-Type", "cd.change.merged.v1")]);
        verify(ReceiverType::Cdevents, &h, body, TOKEN, &[]).expect("valid");
        verify(
            ReceiverType::Cdevents,
            &h,
            body,
            TOKEN,
            &["cd.change.merged.v1".into()],
        )
        .expect("allowed");
        assert!(
            verify(
                ReceiverType::Cdevents,
                &h,
                body,
                TOKEN,
                &["cd.environment.modified.v1".into()]
            )
            .is_err()
        );
        for bad in [&br#"{}"#[..], br#"{"context":{"id":"1","source":"s","type":"nope","timestamp":"2023-12-07T14:51:29Z","version":"0.4.1"},"subject":{"id":"1"}}"#, b"[]"] {
            assert!(verify(ReceiverType::Cdevents, &h, bad, TOKEN, &[]).is_err());
        }
    }

    #[test]
    fn gcr_payload_is_unwrapped() {
        use base64::Engine as _;
        let inner = br#"{"action":"INSERT","digest":"gcr.io/p/i@sha256:aa","tag":"gcr.io/p/i:v1"}"#;
        let data = base64::engine::general_purpose::STANDARD.encode(inner);
        let body = serde_json::to_vec(&serde_json::json!({
            "message": {"data": data, "messageId": "1", "publishTime": "2024-01-01T00:00:00Z"},
            "subscription": "s"
        }))
        .unwrap();
        let unwrapped: Value = serde_json::from_slice(&unwrap_gcr_payload(&body).unwrap()).unwrap();
        assert_eq!(unwrapped["action"], "INSERT");
        assert_eq!(unwrapped["tag"], "gcr.io/p/i:v1");
        assert!(unwrap_gcr_payload(br#"{"message":{"data":"!!"}}"#).is_err());
        assert!(unwrap_gcr_payload(br#"{"message":{"publishTime":"yesterday"}}"#).is_err());
    }

    #[test]
    fn media_types_parse_like_go() {
        assert_eq!(
            media_type("Application/JSON; charset=utf-8").unwrap(),
            "application/json"
        );
        assert!(media_type("").is_err());
        assert!(media_type("json").is_err());
    }
}
