//! Alertmanager: Flux POSTs a one-alert array to the address (Alertmanager's
//! `/api/v2/alerts`): `status: firing`, the merged metadata as labels (but
//! `summary`, which becomes an annotation) plus `alertname`
//! (`Flux<Kind><Reason title-cased>`), `severity`, `reason`, `kind`, `name`,
//! `namespace` and `reportingcontroller`; the message as the `message`
//! annotation; `startsAt` the event's time and `endsAt` Go's zero time (Go
//! never omits a struct). Basic auth when both a username and a password are
//! set, else a bearer `token` (Flux's last request modifier wins).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::{
    Auth, Body, Invalid, Notifier, Request, Settings, ThreadAnchor, go_time, message_text,
};
use crate::notification::Notification;
use crate::template::Rendered;

pub struct Alertmanager {
    settings: Settings,
}

pub fn new(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    settings.address()?;
    Ok(Arc::new(Alertmanager { settings }))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Alert<'a> {
    status: &'static str,
    labels: BTreeMap<&'a str, &'a str>,
    annotations: BTreeMap<&'static str, &'a str>,
    starts_at: String,
    ends_at: &'static str,
}

/// What `cases.Title(language.Und).String` does to a reason: each word's
/// first letter upper case, the rest lower case (`ReconciliationFailed` →
/// `Reconciliationfailed`).
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_word = false;
    for c in s.chars() {
        if c.is_alphanumeric() || c == '_' || c == '\'' && in_word {
            if in_word {
                out.extend(c.to_lowercase());
            } else {
                out.extend(c.to_uppercase());
            }
            in_word = true;
        } else {
            out.push(c);
            in_word = false;
        }
    }
    out
}

impl Notifier for Alertmanager {
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
        let object = &event.involved_object;
        let mut annotations = BTreeMap::new();
        annotations.insert("message", message_text(n, rendered));
        let mut labels: BTreeMap<&str, &str> = BTreeMap::new();
        for (key, value) in &n.metadata {
            if key == "summary" {
                annotations.insert("summary", value);
            } else {
                labels.insert(key, value);
            }
        }
        let alertname = format!("Flux{}{}", object.kind, title(&event.reason));
        labels.insert("alertname", &alertname);
        labels.insert("severity", event.severity.as_str());
        labels.insert("reason", &event.reason);
        labels.insert("kind", &object.kind);
        labels.insert("name", &object.name);
        labels.insert("namespace", &object.namespace);
        labels.insert("reportingcontroller", &event.reporting_controller);
        let alerts = [Alert {
            status: "firing",
            labels,
            annotations,
            starts_at: go_time::rfc3339(&event.timestamp),
            ends_at: "0001-01-01T00:00:00Z",
        }];
        let url = self.settings.address().map_err(|_| "no address")?;
        let mut request = Request::post(url, Body::json(&alerts)?);
        let settings = &self.settings;
        match (&settings.username, &settings.password, &settings.token) {
            (Some(username), Some(password), _)
                if !username.is_empty() && !password.expose().is_empty() =>
            {
                request = request.auth(Auth::Basic {
                    username: username.clone(),
                    password: password.clone(),
                });
            }
            (_, _, Some(token)) if !token.expose().is_empty() => {
                request = request.auth(Auth::Bearer(token.clone()));
            }
            _ => {}
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
    fn reasons_are_title_cased_like_go() {
        assert_eq!(title("ReconciliationFailed"), "Reconciliationfailed");
        assert_eq!(title("upgrade-failed"), "Upgrade-Failed");
        assert_eq!(title("DependencyNotReady"), "Dependencynotready");
        assert_eq!(title("foo_bar baz"), "Foo_bar Baz");
    }

    #[test]
    fn summary_is_an_annotation_and_basic_auth_wins() {
        let am = new(Settings {
            address: Some(SecretString::new("https://am.example.com/api/v2/alerts")),
            token: Some(SecretString::new("t")),
            username: Some("u".into()),
            password: Some(SecretString::new("p")),
            ..Settings::default()
        })
        .expect("alertmanager");
        let n = notification(Severity::Error, &[("summary", "prod"), ("env", "eu")]);
        let request = am.request(&n, None, None).expect("request");
        assert!(matches!(request.auth, Auth::Basic { .. }));
        let body: serde_json::Value = serde_json::from_slice(&request.body.bytes).expect("json");
        assert_eq!(
            body[0]["annotations"],
            serde_json::json!({"message": "Health check failed", "summary": "prod"})
        );
        assert_eq!(body[0]["labels"]["env"], "eu");
        assert!(body[0]["labels"].get("summary").is_none());
        assert_eq!(body[0]["endsAt"], "0001-01-01T00:00:00Z");
    }
}
