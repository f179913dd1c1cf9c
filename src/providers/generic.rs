//! `generic` and `generic-hmac`: Flux's forwarder. POSTs the event as JSON
//! (`Content-Type: application/json`) with a `gotk-component` header naming
//! the reporting controller; `generic-hmac` adds `X-Signature:
//! sha256=<hex HMAC-SHA256 of the body>` keyed by the Secret's `token`.
//! A text template replaces the event's `message`.

use crate::api::Reason;
use crate::hex::encode as hex;
use std::collections::BTreeMap;
use std::sync::Arc;

use reqwest::header::{HeaderName, HeaderValue};
use serde::Serialize;

use super::{Body, Invalid, Notifier, Request, Settings, ThreadAnchor, message_text};
use crate::notification::Notification;
use crate::template::Rendered;

/// The header Flux's forwarder names the reporting controller in.
const COMPONENT_HEADER: &str = "gotk-component";
const SIGNATURE_HEADER: &str = "x-signature";

pub struct Generic {
    settings: Settings,
    /// `generic-hmac`: the signing key.
    hmac: Option<ring::hmac::Key>,
}

pub fn new(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    settings.address()?;
    Ok(Arc::new(Generic {
        settings,
        hmac: None,
    }))
}

pub fn new_hmac(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    settings.address()?;
    let key = settings
        .token
        .as_ref()
        .filter(|t| !t.expose().is_empty())
        .ok_or_else(|| Invalid::Setting {
            reason: Reason::SecretKeyMissing,
            message: "generic-hmac signs with the 'token' key of spec.secretRef's Secret, and there is none".into(),
        })?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.expose().as_bytes());
    Ok(Arc::new(Generic {
        settings,
        hmac: Some(key),
    }))
}

/// The event as Flux marshals it (`fluxcd/pkg/apis/event/v1beta1.Event`;
/// API v1's `relatedObject` and `action` when the sender set them, in v1's
/// field order).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    involved_object: ObjectReference<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    related_object: Option<ObjectReference<'a>>,
    severity: &'a str,
    /// `null` when the event had none, as Go marshals a zero time.
    timestamp: Option<&'a str>,
    message: &'a str,
    reason: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    action: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    metadata: &'a BTreeMap<String, String>,
    reporting_controller: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    reporting_instance: &'a str,
}

/// `corev1.ObjectReference`: every field omitted when empty.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ObjectReference<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    kind: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    namespace: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    uid: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    api_version: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    resource_version: &'a str,
}

impl<'a> ObjectReference<'a> {
    fn of(object: &'a crate::api::InvolvedObject) -> Self {
        Self {
            kind: &object.kind,
            namespace: &object.namespace,
            name: &object.name,
            uid: &object.uid,
            api_version: &object.api_version,
            resource_version: &object.resource_version,
        }
    }
}

/// The event byte for byte as Go's `json.Marshal(event)` writes it: as
/// [`event_json`], with `<`, `>`, `&`, U+2028 and U+2029 escaped as
/// `\u003c`… (they only occur inside JSON strings, so the value is the
/// same). What the message buses (NATS, Pub/Sub, Event Hubs) carry.
pub(crate) fn go_event_json(n: &Notification, rendered: Option<&Rendered>) -> Result<Body, String> {
    let mut body = event_json(n, rendered)?;
    let text = String::from_utf8_lossy(&body.bytes);
    if text.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        let escaped = text
            .replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029");
        body.bytes = escaped.into_bytes().into();
    }
    Ok(body)
}

/// The event as Flux marshals it (`json.Marshal(event)`, but for Go's HTML
/// escaping), with a text template's result as its `message`: what
/// `generic` POSTs.
pub(crate) fn event_json(n: &Notification, rendered: Option<&Rendered>) -> Result<Body, String> {
    let event = &n.event;
    let body = Event {
        involved_object: ObjectReference::of(&event.involved_object),
        related_object: event.related_object.as_ref().map(ObjectReference::of),
        severity: event.severity.as_str(),
        timestamp: Some(event.timestamp.as_str()).filter(|t| !t.is_empty()),
        message: message_text(n, rendered),
        reason: &event.reason,
        action: &event.action,
        metadata: &n.metadata,
        reporting_controller: &event.reporting_controller,
        reporting_instance: &event.reporting_instance,
    };
    Body::json(&body)
}

impl Notifier for Generic {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        _thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String> {
        let event = &n.event;
        // The bytes Go's encoder writes (`<`, `>`, `&` escaped), as Flux sends them.
        let body = go_event_json(n, rendered)?;
        let url = self.settings.address().map_err(|_| "no address")?;
        let mut request = Request::post(url, body);
        if let Ok(component) = HeaderValue::from_str(&event.reporting_controller) {
            request = request.header(HeaderName::from_static(COMPONENT_HEADER), component);
        }
        if let Some(key) = &self.hmac {
            let signature = format!(
                "sha256={}",
                hex(ring::hmac::sign(key, &request.body.bytes).as_ref())
            );
            let value = HeaderValue::from_str(&signature).map_err(|e| e.to_string())?;
            // Set after the Secret's headers, as Flux does: a `headers`
            // entry named X-Signature never replaces the signature.
            request = request.final_header(HeaderName::from_static(SIGNATURE_HEADER), value);
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Severity;
    use crate::mask::SecretString;
    use crate::providers::testing::notification;

    #[test]
    fn the_buses_get_the_event_html_escaped_as_go_marshals_it() {
        let mut n = notification(Severity::Info, &[("note", "a\u{2028}b")]);
        std::sync::Arc::make_mut(&mut n.event).message = "<b> & </b>".into();
        let body = go_event_json(&n, None).expect("json");
        let text = std::str::from_utf8(&body.bytes).expect("utf-8");
        assert!(
            text.contains(r#""message":"\u003cb\u003e \u0026 \u003c/b\u003e""#),
            "{text}"
        );
        assert!(text.contains(r#""note":"a\u2028b""#), "{text}");
        let value: serde_json::Value = serde_json::from_slice(&body.bytes).expect("valid JSON");
        assert_eq!(value["message"], "<b> & </b>");
    }

    fn settings(token: Option<&str>) -> Settings {
        Settings {
            address: Some(SecretString::new("https://example.com/hook")),
            token: token.map(SecretString::new),
            ..Settings::default()
        }
    }

    #[test]
    fn the_body_is_the_event_as_flux_marshals_it() {
        let generic = new(settings(None)).expect("generic");
        let n = notification(Severity::Info, &[("revision", "main@sha1:abc")]);
        let request = generic.request(&n, None, None).expect("request");
        assert_eq!(
            std::str::from_utf8(&request.body.bytes).expect("utf-8"),
            r#"{"involvedObject":{"kind":"Kustomization","namespace":"flux-system","name":"app","apiVersion":"kustomize.toolkit.fluxcd.io/v1"},"severity":"info","timestamp":null,"message":"Health check failed","reason":"Reason","metadata":{"revision":"main@sha1:abc"},"reportingController":"kustomize-controller"}"#
        );
        assert_eq!(request.headers.len(), 1);
        assert_eq!(request.headers[0].0, "gotk-component");
        assert_eq!(request.headers[0].1, "kustomize-controller");
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        let hmac = new_hmac(settings(Some("key"))).expect("generic-hmac");
        let n = notification(Severity::Error, &[]);
        let request = hmac.request(&n, None, None).expect("request");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"key");
        let expected = format!(
            "sha256={}",
            hex(ring::hmac::sign(&key, &request.body.bytes).as_ref())
        );
        let signature = request
            .final_headers
            .iter()
            .find(|(name, _)| name == "x-signature")
            .map(|(_, value)| value.to_str().expect("ascii").to_owned());
        assert_eq!(signature, Some(expected));
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
    }

    #[test]
    fn generic_hmac_needs_a_token() {
        assert!(matches!(
            new_hmac(settings(None)).err(),
            Some(Invalid::Setting {
                reason: Reason::SecretKeyMissing,
                ..
            })
        ));
    }
}
