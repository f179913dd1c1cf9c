//! PagerDuty (Events API v2): Flux POSTs to `<scheme>://<host>/v2/enqueue`
//! of the address (its path is ignored; `https://events.eu.pagerduty.com`
//! for the EU) with the routing key from `channel` (the Alert's, else the
//! Provider's) and the object's UID as `dedup_key`. An error triggers an
//! incident (`payload`: `summary` `<reason in words>: <kind>/<name>`,
//! `source` `Flux <controller>`, `severity: error`, `timestamp`,
//! `component` the name, `group` the kind, `custom_details` the message and
//! metadata); any other severity resolves it. An info event is then also
//! recorded as a change event (`/v2/change/enqueue`). `Progressing` events
//! are skipped.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::{Body, Invalid, Notifier, Request, Settings, ThreadAnchor, go_time, message_text};
use crate::api::Reason;
use crate::api::Severity;
use crate::mask::SecretString;
use crate::notification::Notification;
use crate::template::Rendered;

pub struct PagerDuty {
    settings: Settings,
    enqueue: SecretString,
    change: SecretString,
}

pub fn new(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    let parsed = url::Url::parse(settings.address()?.expose()).map_err(|_| Invalid::Setting {
        reason: Reason::InvalidAddress,
        message: "the pagerduty address is not a URL".into(),
    })?;
    let Some(host) = parsed.host_str() else {
        return Err(Invalid::Setting {
            reason: Reason::InvalidAddress,
            message: "the pagerduty address has no host".into(),
        });
    };
    let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
    let base = format!("{}://{host}{port}", parsed.scheme());
    Ok(Arc::new(PagerDuty {
        enqueue: SecretString::new(format!("{base}/v2/enqueue")),
        change: SecretString::new(format!("{base}/v2/change/enqueue")),
        settings,
    }))
}

/// `pagerduty.V2Event`.
#[derive(Serialize)]
struct V2Event<'a> {
    routing_key: &'a str,
    event_action: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    dedup_key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<V2Payload<'a>>,
}

/// `pagerduty.V2Payload`.
#[derive(Serialize)]
struct V2Payload<'a> {
    summary: String,
    source: String,
    severity: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    timestamp: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    component: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    group: &'a str,
    custom_details: Details<'a>,
}

#[derive(Serialize)]
struct Details<'a> {
    message: &'a str,
    /// `null` when there is none, as Go marshals a nil map.
    metadata: Option<&'a BTreeMap<String, String>>,
}

/// `pagerduty.ChangeEvent`.
#[derive(Serialize)]
struct ChangeEvent<'a> {
    routing_key: &'a str,
    payload: ChangePayload<'a>,
    /// Absent, as Flux sends a change event (not `null`).
    #[serde(skip_serializing_if = "Option::is_none")]
    links: Option<()>,
}

#[derive(Serialize)]
struct ChangePayload<'a> {
    source: String,
    summary: String,
    timestamp: String,
    custom_details: Details<'a>,
}

/// Flux's `formatNameAndDescription`: `kind/name` and the reason split into
/// lower-case words, e.g. `reconciliation failed: kustomization/app`.
fn summary(n: &Notification) -> String {
    let object = &n.event.involved_object;
    let words = split_camel_case(&n.event.reason).join(" ").to_lowercase();
    format!(
        "{words}: {}/{}",
        object.kind.to_lowercase(),
        object.name.to_lowercase()
    )
}

/// Go's `splitCamelcase`: runs of lower case, upper case, digits and other
/// characters, an upper-case run giving its last letter to a following
/// lower-case run (`PDFLoader` → `PDF Loader`).
pub(super) fn split_camel_case(s: &str) -> Vec<String> {
    fn class(c: char) -> u8 {
        if c.is_lowercase() {
            1
        } else if c.is_uppercase() {
            2
        } else if c.is_numeric() {
            3
        } else {
            4
        }
    }
    let mut runs: Vec<Vec<char>> = Vec::new();
    let mut last = 0;
    for c in s.chars() {
        let this = class(c);
        match runs.last_mut() {
            Some(run) if this == last => run.push(c),
            _ => runs.push(vec![c]),
        }
        last = this;
    }
    for i in 0..runs.len().saturating_sub(1) {
        if runs[i][0].is_uppercase()
            && runs[i + 1][0].is_lowercase()
            && let Some(c) = runs[i].pop()
        {
            runs[i + 1].insert(0, c);
        }
    }
    runs.into_iter()
        .filter(|r| !r.is_empty())
        .map(|r| r.into_iter().collect())
        .collect()
}

impl PagerDuty {
    fn routing_key<'a>(&'a self, n: &'a Notification) -> &'a str {
        n.route.channel().unwrap_or_default()
    }

    fn details<'a>(n: &'a Notification, rendered: Option<&'a Rendered>) -> Details<'a> {
        Details {
            message: message_text(n, rendered),
            metadata: Some(&n.metadata).filter(|m| !m.is_empty()),
        }
    }
}

impl Notifier for PagerDuty {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn skips(&self, n: &Notification) -> Option<&'static str> {
        (n.event.reason == "Progressing").then_some("PagerDuty gets no Progressing events")
    }

    fn request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        _thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String> {
        let event = &n.event;
        let object = &event.involved_object;
        let trigger = event.severity == Severity::Error;
        let body = V2Event {
            routing_key: self.routing_key(n),
            event_action: if trigger { "trigger" } else { "resolve" },
            dedup_key: &object.uid,
            payload: trigger.then(|| V2Payload {
                summary: summary(n),
                source: format!("Flux {}", event.reporting_controller),
                severity: "error",
                timestamp: go_time::rfc3339(&event.timestamp),
                component: &object.name,
                group: &object.kind,
                custom_details: Self::details(n, rendered),
            }),
        };
        Ok(Request::post(&self.enqueue, Body::json(&body)?))
    }

    fn follow_up(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
    ) -> Result<Option<Request>, String> {
        let event = &n.event;
        if event.severity != Severity::Info {
            return Ok(None);
        }
        let body = ChangeEvent {
            routing_key: self.routing_key(n),
            payload: ChangePayload {
                source: format!("Flux {}", event.reporting_controller),
                summary: summary(n),
                timestamp: go_time::rfc3339(&event.timestamp),
                custom_details: Self::details(n, rendered),
            },
            links: None,
        };
        Ok(Some(Request::post(&self.change, Body::json(&body)?)))
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

    fn warnings(&self) -> Vec<String> {
        if self.settings.channel.as_deref().is_none_or(str::is_empty) {
            vec!["pagerduty reads the routing key from spec.channel, and there is none (unless every Alert sets one)".into()]
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_split_like_flux() {
        assert_eq!(
            split_camel_case("ReconciliationFailed"),
            ["Reconciliation", "Failed"]
        );
        assert_eq!(split_camel_case("PDFLoader"), ["PDF", "Loader"]);
        assert_eq!(split_camel_case("Failed2Go"), ["Failed", "2", "Go"]);
        assert_eq!(split_camel_case(""), Vec::<String>::new());
    }
}
