//! incident.io: Flux POSTs an alert event to the address (an HTTP alert
//! source, `/v2/alert_events/http/<id>`) with `Authorization: Bearer
//! <token>`: `title` `<kind>/<name>.<namespace>: <reason>` (kind lower
//! case), `status` `firing` for errors and `resolved` otherwise,
//! `deduplication_key` the object's UID (so a recovery resolves the alert
//! an error fired), `description` the message and `metadata` the merged
//! metadata plus `severity`, `reason` and `reportingController`.
//! `Progressing` events are skipped. The type arrived in Flux after v1.9.3;
//! this follows its first release's format.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::{Auth, Body, Invalid, Notifier, Request, Settings, ThreadAnchor, message_text};
use crate::api::Reason;
use crate::api::Severity;
use crate::notification::Notification;
use crate::template::Rendered;

pub struct Incidentio {
    settings: Settings,
}

pub fn new(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    settings.address()?;
    if settings
        .token
        .as_ref()
        .is_none_or(|t| t.expose().is_empty())
    {
        return Err(Invalid::Setting {
            reason: Reason::SecretKeyMissing,
            message: "incident.io authenticates with the 'token' key of spec.secretRef's Secret, and there is none".into(),
        });
    }
    Ok(Arc::new(Incidentio { settings }))
}

#[derive(Serialize)]
struct AlertEvent<'a> {
    title: String,
    status: &'static str,
    deduplication_key: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    description: &'a str,
    metadata: BTreeMap<&'a str, &'a str>,
}

impl Notifier for Incidentio {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn skips(&self, n: &Notification) -> Option<&'static str> {
        (n.event.reason == "Progressing").then_some("incident.io gets no Progressing events")
    }

    fn request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        _thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String> {
        let event = &n.event;
        let object = &event.involved_object;
        let mut metadata: BTreeMap<&str, &str> = n
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        metadata.insert("severity", event.severity.as_str());
        metadata.insert("reason", &event.reason);
        if !event.reporting_controller.is_empty() {
            metadata.insert("reportingController", &event.reporting_controller);
        }
        let body = AlertEvent {
            title: format!(
                "{}/{}.{}: {}",
                object.kind.to_lowercase(),
                object.name,
                object.namespace,
                event.reason
            ),
            status: match event.severity {
                Severity::Error => "firing",
                _ => "resolved",
            },
            deduplication_key: &object.uid,
            description: message_text(n, rendered),
            metadata,
        };
        let url = self.settings.address().map_err(|_| "no address")?;
        let token = self.settings.token.clone().ok_or("no token")?;
        Ok(Request::post(url, Body::json(&body)?).auth(Auth::Bearer(token)))
    }

    fn payload(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
    ) -> Result<serde_json::Value, String> {
        if self.skips(n).is_some() {
            return Ok(serde_json::Value::Null);
        }
        Ok(self.request(n, rendered, None)?.body.show())
    }
}
