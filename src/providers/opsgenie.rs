//! Opsgenie: Flux POSTs an alert, `{"message": "<Kind>/<name>",
//! "description": <message>, "details": {<metadata>…, "severity":
//! <severity>}}`, to the address (the Alert API,
//! `https://api.opsgenie.com/v2/alerts`) with `Authorization: GenieKey
//! <token>`. A text template replaces the description; the details keep
//! the metadata.

use std::collections::BTreeMap;
use std::sync::Arc;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde_json::json;

use super::{Body, Invalid, Notifier, Request, Settings, ThreadAnchor, message_text};
use crate::api::Reason;
use crate::notification::Notification;
use crate::template::Rendered;

pub struct Opsgenie {
    settings: Settings,
    /// `GenieKey <token>`.
    authorization: HeaderValue,
}

pub fn new(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    settings.address()?;
    let token = settings
        .token
        .as_ref()
        .filter(|t| !t.expose().is_empty())
        .ok_or_else(|| Invalid::Setting {
            reason: Reason::SecretKeyMissing,
            message: "opsgenie needs the API key in the 'token' key of spec.secretRef's Secret"
                .into(),
        })?;
    let mut authorization = HeaderValue::from_str(&format!("GenieKey {}", token.expose()))
        .map_err(|_| Invalid::Setting {
            reason: Reason::InvalidToken,
            message: "the opsgenie API key is not a valid header value".into(),
        })?;
    authorization.set_sensitive(true);
    Ok(Arc::new(Opsgenie {
        settings,
        authorization,
    }))
}

impl Notifier for Opsgenie {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        _thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String> {
        let object = &n.event.involved_object;
        let mut details: BTreeMap<&str, &str> = n
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        details.insert("severity", n.event.severity.as_str());
        let payload = json!({
            "message": format!("{}/{}", object.kind, object.name),
            "description": message_text(n, rendered),
            "details": details,
        });
        let url = self.settings.address().map_err(|_| "no address")?;
        Ok(Request::post(url, Body::json(&payload)?)
            .header(AUTHORIZATION, self.authorization.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Severity;
    use crate::mask::SecretString;
    use crate::providers::testing::notification;

    #[test]
    fn the_alert_carries_severity_in_its_details() {
        let opsgenie = new(Settings {
            address: Some(SecretString::new("https://api.opsgenie.com/v2/alerts")),
            token: Some(SecretString::new("key")),
            ..Settings::default()
        })
        .expect("built");
        let n = notification(Severity::Error, &[("revision", "r1")]);
        let request = opsgenie.request(&n, None, None).expect("request");
        assert_eq!(
            request.body.show(),
            json!({
                "message": "Kustomization/app",
                "description": "Health check failed",
                "details": {"revision": "r1", "severity": "error"},
            })
        );
        assert!(
            new(Settings {
                address: Some(SecretString::new("https://api.opsgenie.com/v2/alerts")),
                ..Settings::default()
            })
            .is_err()
        );
    }
}
