//! `otel`: one span per event, exported as Flux's OpenTelemetry Go SDK
//! exports it: OTLP/HTTP, `POST <address>` with an `ExportTraceServiceRequest`
//! in protobuf (`Content-Type: application/x-protobuf`).
//!
//! The span, as Flux builds it: resource `service.name = <alert ns>/<alert
//! name>`, `service.namespace`, `service.instance.id = <alert UID>` (schema
//! semconv 1.34.0); scope `flux:notification-controller`; name `<Kind>:
//! <namespace>/<name>`; trace ID the first 16 bytes of SHA-256 of `<alert
//! UID>:<revision>` (so one Alert's events about one revision share a
//! trace), a random span ID under a remote parent without span ID; kind
//! internal; start at the event's time, end when sent; attributes
//! `object.uid`, `object.kind`, `object.name`, `object.namespace` then the
//! metadata; status Error with the message on error events, else Ok.
//! `HelmRepository` events are skipped, as Flux skips them.
//!
//! The request is built from `opentelemetry-proto`'s generated messages
//! (no SDK runtime) and encoded by prost; the tests decode it with the same
//! messages, and compare it with what Flux's own exporter sends
//! (`tests/side_by_side.rs`).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::{Value, json};

use super::{Auth, Body, Invalid, Notifier, Request, Settings, ThreadAnchor, go_time};
use crate::api::Severity;
use crate::notification::Notification;
use crate::template::Rendered;

const CONTENT_TYPE: &str = "application/x-protobuf";
/// The semantic conventions Flux's resource names (`semconv/v1.34.0`).
const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.34.0";
const SCOPE: &str = "flux:notification-controller";
/// `SPAN_KIND_INTERNAL`: the SDK's default.
const KIND_INTERNAL: i32 = 1;
/// `SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK | SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK`
/// (the parent is Flux's remote span context) and the W3C trace flags'
/// sampled bit, as Flux's exporter sends them (0x301): without it,
/// backends and tail samplers may drop the span.
const FLAGS_REMOTE_PARENT: u32 = 0x301;
const STATUS_OK: i32 = 1;
const STATUS_ERROR: i32 = 2;

pub struct Otel {
    settings: Settings,
}

pub fn new(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    settings.address()?;
    Ok(Arc::new(Otel { settings }))
}

/// One span and what it belongs to, before encoding.
struct Export {
    resource: Vec<(&'static str, String)>,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    name: String,
    start: u64,
    end: u64,
    attributes: Vec<(String, String)>,
    status_code: i32,
    status_message: String,
}

impl Export {
    fn new(n: &Notification, rendered: Option<&Rendered>) -> Self {
        let event = &n.event;
        let object = &event.involved_object;
        let alert = &n.route.alert;
        let revision = revision(&n.metadata);
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            format!("{}:{revision}", n.route.alert_uid).as_bytes(),
        );
        let mut trace_id = [0; 16];
        trace_id.copy_from_slice(&digest.as_ref()[..16]);
        let mut attributes = vec![
            ("object.uid".to_owned(), object.uid.clone()),
            ("object.kind".to_owned(), object.kind.clone()),
            ("object.name".to_owned(), object.name.clone()),
            ("object.namespace".to_owned(), object.namespace.clone()),
        ];
        attributes.extend(n.metadata.iter().map(|(k, v)| (k.clone(), v.clone())));
        let error = event.severity == Severity::Error;
        let end = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Export {
            // Sorted by key, as the SDK's attribute set sorts them.
            resource: vec![
                ("service.instance.id", n.route.alert_uid.clone()),
                (
                    "service.name",
                    format!("{}/{}", alert.namespace, alert.name),
                ),
                ("service.namespace", alert.namespace.to_string()),
            ],
            trace_id,
            span_id: rand::random(),
            name: format!("{}: {}/{}", object.kind, object.namespace, object.name),
            start: go_time::unix_nanos(&event.timestamp),
            end,
            attributes,
            status_code: if error { STATUS_ERROR } else { STATUS_OK },
            // The SDK keeps a description only with an Error status.
            status_message: if error {
                super::message_text(n, rendered).to_owned()
            } else {
                String::new()
            },
        }
    }

    /// `ExportTraceServiceRequest` in protobuf.
    fn encode(&self) -> Vec<u8> {
        let key_values = |pairs: &mut dyn Iterator<Item = (&str, &str)>| -> Vec<KeyValue> {
            pairs
                .map(|(key, value)| KeyValue {
                    key: key.to_owned(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(value.to_owned())),
                    }),
                    ..Default::default()
                })
                .collect()
        };
        let span = Span {
            trace_id: self.trace_id.to_vec(),
            span_id: self.span_id.to_vec(),
            flags: FLAGS_REMOTE_PARENT,
            name: self.name.clone(),
            kind: KIND_INTERNAL,
            start_time_unix_nano: self.start,
            end_time_unix_nano: self.end,
            attributes: key_values(
                &mut self
                    .attributes
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            ),
            status: Some(Status {
                message: self.status_message.clone(),
                code: self.status_code,
            }),
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: key_values(
                        &mut self.resource.iter().map(|(k, v)| (*k, v.as_str())),
                    ),
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: SCOPE.to_owned(),
                        ..Default::default()
                    }),
                    spans: vec![span],
                    ..Default::default()
                }],
                schema_url: SCHEMA_URL.to_owned(),
            }],
        }
        .encode_to_vec()
    }

    /// The same request in OTLP/JSON's shape: what `herald route` shows.
    fn show(&self) -> Value {
        let attributes = |pairs: Vec<(&str, &str)>| -> Value {
            pairs
                .into_iter()
                .map(|(k, v)| json!({"key": k, "value": {"stringValue": v}}))
                .collect()
        };
        let hex = crate::hex::encode;
        let mut status = json!({"code": self.status_code});
        if !self.status_message.is_empty() {
            status["message"] = json!(self.status_message);
        }
        json!({"resourceSpans": [{
            "resource": {"attributes": attributes(self.resource.iter().map(|(k, v)| (*k, v.as_str())).collect())},
            "scopeSpans": [{
                "scope": {"name": SCOPE},
                "spans": [{
                    "traceId": hex(&self.trace_id),
                    "spanId": hex(&self.span_id),
                    "name": self.name,
                    "kind": KIND_INTERNAL,
                    "startTimeUnixNano": self.start.to_string(),
                    "endTimeUnixNano": self.end.to_string(),
                    "attributes": attributes(self.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()),
                    "status": status,
                    "flags": FLAGS_REMOTE_PARENT,
                }],
            }],
            "schemaUrl": SCHEMA_URL,
        }]})
    }
}

/// The revision a trace groups by, as Flux reads it: `<app-version>@<oci-digest>`
/// for OCI Helm charts, else `revision`, else `unknown`.
fn revision(metadata: &std::collections::BTreeMap<String, String>) -> String {
    match (metadata.get("app-version"), metadata.get("oci-digest")) {
        (Some(app), Some(digest)) => format!("{app}@{digest}"),
        _ => metadata
            .get("revision")
            .cloned()
            .unwrap_or_else(|| "unknown".to_owned()),
    }
}

impl Notifier for Otel {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        _thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String> {
        let url = self.settings.address().map_err(|_| "no address")?;
        let body = Body {
            content_type: CONTENT_TYPE,
            bytes: Bytes::from(Export::new(n, rendered).encode()),
        };
        Ok(Request::post(url, body).auth(self.auth()))
    }

    fn skips(&self, n: &Notification) -> Option<&'static str> {
        (n.event.involved_object.kind == "HelmRepository")
            .then_some("Flux's otel provider sends no span for HelmRepository events")
    }

    fn payload(&self, n: &Notification, rendered: Option<&Rendered>) -> Result<Value, String> {
        Ok(Export::new(n, rendered).show())
    }
}

impl Otel {
    /// Flux's credentials: the Secret's `token` (else its `password`) as a
    /// bearer token, or with a username as Basic auth's password. The
    /// Secret's own `Authorization` header, when it has one, wins.
    fn auth(&self) -> Auth {
        let settings = &self.settings;
        let Some(secret) = settings.token.as_ref().or(settings.password.as_ref()) else {
            return Auth::None;
        };
        match settings.username.as_deref().filter(|u| !u.is_empty()) {
            None => Auth::Bearer(secret.clone()),
            Some(username) => Auth::Basic {
                username: username.to_owned(),
                password: secret.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Severity;
    use crate::providers::testing::notification;

    #[test]
    fn the_revision_is_flux_s() {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(revision(&map(&[])), "unknown");
        assert_eq!(
            revision(&map(&[("revision", "main@sha1:1")])),
            "main@sha1:1"
        );
        assert_eq!(
            revision(&map(&[
                ("revision", "r"),
                ("app-version", "1.0"),
                ("oci-digest", "sha256:d")
            ])),
            "1.0@sha256:d"
        );
    }

    #[test]
    fn info_events_have_an_ok_status_without_message() {
        let n = notification(Severity::Info, &[("revision", "r1")]);
        let export = Export::new(&n, None);
        assert_eq!(export.status_code, STATUS_OK);
        assert_eq!(export.status_message, "");
        let expected = ring::digest::digest(&ring::digest::SHA256, b":r1");
        assert_eq!(export.trace_id, expected.as_ref()[..16]);
    }
}
