//! Sentry: Flux hands the event to the Sentry Go SDK (v0.46) with the
//! address as DSN and `channel` as the environment; the SDK posts an
//! envelope to the DSN's project. herald builds that request itself: a
//! POST of `Content-Type: application/x-sentry-envelope` to
//! `<scheme>://<host>[/<path>]/api/<project>/envelope/` with
//! `X-Sentry-Auth: Sentry sentry_version=7, sentry_client=sentry.go/0.46.2,
//! sentry_key=<public key>` (and `sentry_secret` when the DSN has one).
//! The envelope holds one item built as Flux builds it: an error event
//! (`level: error`, `server_name` the reporting controller, `transaction`
//! `<Kind>: <namespace>/<name>`, `message`, metadata as the `metadata`
//! context) for errors; a transaction (`transaction`, `message`, the
//! `flux_*` and metadata tags, one span whose start and end are the
//! event's time) for info events. Other severities send nothing, as
//! Flux's Post hands the SDK no event. What the SDK adds by itself (device,
//! OS and runtime contexts, module list, release detection) is not sent.

use std::collections::BTreeMap;
use std::sync::Arc;

use reqwest::header::{HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::{Value, json};

use super::{Body, Invalid, Notifier, Request, Settings, ThreadAnchor, go_time, message_text};
use crate::api::Reason;
use crate::api::Severity;
use crate::mask::SecretString;
use crate::notification::Notification;
use crate::template::Rendered;

const SDK_NAME: &str = "sentry.go";
const SDK_VERSION: &str = "0.46.2";
const ENVELOPE: &str = "application/x-sentry-envelope";

pub struct Sentry {
    settings: Settings,
    /// The project's envelope endpoint.
    url: SecretString,
    auth: HeaderValue,
}

fn invalid(message: &str) -> Invalid {
    Invalid::Setting {
        reason: Reason::InvalidDSN,
        message: format!("the sentry address is not a usable DSN: {message}"),
    }
}

pub fn new(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    let dsn = url::Url::parse(settings.address()?.expose()).map_err(|_| invalid("not a URL"))?;
    // sentry-go accepts only these two.
    if !matches!(dsn.scheme(), "http" | "https") {
        return Err(invalid("the scheme is neither http nor https"));
    }
    let host = dsn.host_str().ok_or_else(|| invalid("no host"))?;
    if dsn.username().is_empty() {
        return Err(invalid("no public key"));
    }
    let path = dsn.path().trim_end_matches('/');
    let (prefix, project) = path.rsplit_once('/').unwrap_or(("", path));
    if project.is_empty() {
        return Err(invalid("no project ID"));
    }
    let port = dsn.port().map(|p| format!(":{p}")).unwrap_or_default();
    let url = format!(
        "{}://{host}{port}{prefix}/api/{project}/envelope/",
        dsn.scheme()
    );
    let mut auth = format!(
        "Sentry sentry_version=7, sentry_client={SDK_NAME}/{SDK_VERSION}, sentry_key={}",
        dsn.username()
    );
    if let Some(secret) = dsn.password() {
        auth.push_str(&format!(", sentry_secret={secret}"));
    }
    let mut auth = HeaderValue::from_str(&auth).map_err(|_| invalid("unusable key"))?;
    auth.set_sensitive(true);
    Ok(Arc::new(Sentry {
        url: SecretString::new(url),
        auth,
        settings,
    }))
}

/// A random id of `bytes` bytes, in hex.
fn hex_id(bytes: usize) -> String {
    let random: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    crate::hex::encode(&random)
}

/// The SDK as sentry-go describes itself with Flux's options.
#[derive(Serialize)]
struct Sdk {
    name: &'static str,
    version: &'static str,
    integrations: [&'static str; 6],
    packages: [Package; 1],
}

#[derive(Serialize)]
struct Package {
    name: &'static str,
    version: &'static str,
}

const SDK: Sdk = Sdk {
    name: SDK_NAME,
    version: SDK_VERSION,
    integrations: [
        "ContextifyFrames",
        "Environment",
        "GlobalTags",
        "IgnoreErrors",
        "IgnoreTransactions",
        "Modules",
    ],
    packages: [Package {
        name: "sentry-go",
        version: SDK_VERSION,
    }],
};

/// The host's name: the SDK's `server_name` where Flux sets none.
fn server_name() -> String {
    hostname::get()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_default()
}

impl Sentry {
    /// The envelope item: its type and the event, or `None` for severities
    /// Flux sends nothing for.
    fn event(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        event_id: &str,
    ) -> Option<(&'static str, Value)> {
        let event = &n.event;
        let object = &event.involved_object;
        let transaction = format!("{}: {}/{}", object.kind, object.namespace, object.name);
        let timestamp = go_time::rfc3339(&event.timestamp);
        let environment = n.route.channel();
        let (kind, mut body) = match event.severity {
            Severity::Error => (
                "event",
                json!({
                    "event_id": event_id,
                    "level": "error",
                    "platform": "go",
                    "sdk": SDK,
                    "server_name": event.reporting_controller,
                    "timestamp": timestamp,
                    "transaction": transaction,
                    "message": message_text(n, rendered),
                    "contexts": {"metadata": n.metadata},
                }),
            ),
            Severity::Info => {
                let mut tags: BTreeMap<&str, &str> = BTreeMap::from([
                    ("flux_involved_object_kind", object.kind.as_str()),
                    ("flux_involved_object_namespace", &object.namespace),
                    ("flux_involved_object_name", &object.name),
                    ("flux_reporting_controller", &event.reporting_controller),
                    ("flux_reporting_instance", &event.reporting_instance),
                    ("flux_reason", &event.reason),
                ]);
                tags.extend(n.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                let trace_id = hex_id(16);
                let span_id = hex_id(8);
                (
                    "transaction",
                    json!({
                        "event_id": event_id,
                        "type": "transaction",
                        "level": "info",
                        "platform": "go",
                        "server_name": server_name(),
                        "sdk": SDK,
                        "transaction": transaction,
                        "message": message_text(n, rendered),
                        "tags": tags,
                        "contexts": {"trace": {"trace_id": trace_id, "span_id": span_id, "op": "event"}},
                        "start_timestamp": timestamp,
                        "timestamp": timestamp,
                        "spans": [{
                            "trace_id": trace_id,
                            "span_id": span_id,
                            "op": "event",
                            "origin": "manual",
                            "tags": tags,
                            "start_timestamp": timestamp,
                            "timestamp": timestamp,
                        }],
                    }),
                )
            }
            Severity::Trace | Severity::Warn => return None,
        };
        if let (Some(environment), Some(map)) = (environment, body.as_object_mut()) {
            map.insert("environment".into(), environment.into());
        }
        Some((kind, body))
    }
}

impl Notifier for Sentry {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn skips(&self, n: &Notification) -> Option<&'static str> {
        matches!(n.event.severity, Severity::Trace | Severity::Warn)
            .then_some("Sentry gets only info and error events")
    }

    fn request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        _thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String> {
        let event_id = hex_id(16);
        let (kind, event) = self
            .event(n, rendered, &event_id)
            .ok_or("Sentry gets only info and error events")?;
        let item = serde_json::to_vec(&event).map_err(|e| e.to_string())?;
        let sent_at = k8s_openapi::jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        let header = json!({
            "event_id": event_id,
            "sent_at": sent_at,
            "dsn": self.settings.address().map_err(|_| "no address")?.expose(),
            "sdk": SDK,
        });
        let item_header = json!({"type": kind, "length": item.len()});
        let mut bytes = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
        bytes.push(b'\n');
        bytes.extend(serde_json::to_vec(&item_header).map_err(|e| e.to_string())?);
        bytes.push(b'\n');
        bytes.extend(item);
        bytes.push(b'\n');
        let body = Body {
            content_type: ENVELOPE,
            bytes: bytes.into(),
        };
        Ok(Request::post(&self.url, body)
            .header(HeaderName::from_static("x-sentry-auth"), self.auth.clone()))
    }

    /// The envelope's event (its headers repeat the DSN).
    fn payload(&self, n: &Notification, rendered: Option<&Rendered>) -> Result<Value, String> {
        Ok(self
            .event(n, rendered, &hex_id(16))
            .map_or(Value::Null, |(_, event)| event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentry(dsn: &str) -> Result<Arc<dyn Notifier>, Invalid> {
        new(Settings {
            address: Some(SecretString::new(dsn)),
            ..Settings::default()
        })
    }

    #[test]
    fn the_dsn_names_the_endpoint_and_key() {
        let n = crate::providers::testing::notification(Severity::Error, &[]);
        let request = sentry("https://pub:sec@o1.ingest.sentry.io:8443/prefix/42")
            .expect("sentry")
            .request(&n, None, None)
            .expect("request");
        assert_eq!(
            request.url.expose(),
            "https://o1.ingest.sentry.io:8443/prefix/api/42/envelope/"
        );
        assert_eq!(
            request.headers[0].1,
            "Sentry sentry_version=7, sentry_client=sentry.go/0.46.2, sentry_key=pub, sentry_secret=sec"
        );
        let text = String::from_utf8(request.body.bytes.to_vec()).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        let item: Value = serde_json::from_str(lines[1]).expect("item header");
        assert_eq!(item["type"], "event");
        assert_eq!(item["length"], lines[2].len());
        assert!(sentry("https://o1.ingest.sentry.io/42").is_err());
        assert!(sentry("https://pub@o1.ingest.sentry.io/").is_err());
        // A scheme sentry-go refuses, whatever the rest.
        let Err(Invalid::Setting { reason, message }) = sentry("ftp://pub@o1.ingest.sentry.io/42")
        else {
            panic!("an ftp DSN was accepted");
        };
        assert_eq!(reason, Reason::InvalidDSN);
        assert!(message.contains("neither http nor https"), "{message}");
        assert!(!message.contains("pub@"), "{message}");
    }
}
