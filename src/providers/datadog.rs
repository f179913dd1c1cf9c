//! Datadog: Flux's API client POSTs an event to `/api/v1/events` on the
//! address's scheme and host (its path is ignored: the address names the
//! site, e.g. `https://api.datadoghq.eu`), with the API key from the
//! Secret's `token` in `DD-API-KEY`. Body: `title` `Events from the <Kind>
//! <name>/<namespace>`, `text` the message, `alert_type` `error` for errors
//! else `info`, `source_type_name: fluxcd`, `date_happened` (Unix seconds)
//! and lower-cased `tags`: `flux_reporting_controller`, `flux_reason`,
//! `kube_kind`, `kube_name`, `kube_namespace`, then each metadata pair
//! (sorted by key, where Go's order is random). Keys in alphabetical order,
//! as the client marshals a map.

use std::sync::Arc;

use reqwest::header::{ACCEPT, HeaderName, HeaderValue};
use serde::Serialize;

use super::{Body, Invalid, Notifier, Request, Settings, ThreadAnchor, go_time, message_text};
use crate::api::Reason;
use crate::api::Severity;
use crate::mask::SecretString;
use crate::notification::Notification;
use crate::template::Rendered;

pub struct Datadog {
    settings: Settings,
    /// `<scheme>://<host>/api/v1/events`.
    url: SecretString,
    api_key: HeaderValue,
}

pub fn new(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    let address = settings.address()?;
    let parsed = url::Url::parse(address.expose()).map_err(|_| Invalid::Setting {
        reason: Reason::InvalidAddress,
        message: "the datadog address is not a URL".into(),
    })?;
    let authority = match (parsed.host_str(), parsed.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => {
            return Err(Invalid::Setting {
                reason: Reason::InvalidAddress,
                message: "the datadog address has no host".into(),
            });
        }
    };
    let url = SecretString::new(format!("{}://{authority}/api/v1/events", parsed.scheme()));
    let missing = || {
        Invalid::Setting {
        reason: Reason::SecretKeyMissing,
        message: "datadog sends the API key from the 'token' key of spec.secretRef's Secret, and there is none".into(),
    }
    };
    let token = settings
        .token
        .as_ref()
        .filter(|t| !t.expose().is_empty())
        .ok_or_else(missing)?;
    let mut api_key = HeaderValue::from_str(token.expose()).map_err(|_| Invalid::Setting {
        reason: Reason::InvalidToken,
        message: "the datadog API key is not a valid header value".into(),
    })?;
    api_key.set_sensitive(true);
    Ok(Arc::new(Datadog {
        settings,
        url,
        api_key,
    }))
}

/// `datadogV1.EventCreateRequest` as the client marshals it.
#[derive(Serialize)]
struct Event<'a> {
    alert_type: &'static str,
    date_happened: i64,
    source_type_name: &'static str,
    tags: Vec<String>,
    text: &'a str,
    title: String,
}

impl Notifier for Datadog {
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
        let mut tags = vec![
            format!("flux_reporting_controller:{}", event.reporting_controller),
            format!("flux_reason:{}", event.reason),
            format!("kube_kind:{}", object.kind),
            format!("kube_name:{}", object.name),
            format!("kube_namespace:{}", object.namespace),
        ];
        tags.extend(n.metadata.iter().map(|(k, v)| format!("{k}:{v}")));
        let tags = tags.into_iter().map(|t| t.to_lowercase()).collect();
        let body = Event {
            alert_type: match event.severity {
                Severity::Error => "error",
                _ => "info",
            },
            date_happened: go_time::unix(&event.timestamp),
            source_type_name: "fluxcd",
            tags,
            text: message_text(n, rendered),
            title: format!(
                "Events from the {} {}/{}",
                object.kind, object.name, object.namespace
            ),
        };
        Ok(Request::post(&self.url, Body::json(&body)?)
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .header(HeaderName::from_static("dd-api-key"), self.api_key.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_is_replaced_and_a_token_required() {
        let settings = |token: Option<&str>| Settings {
            address: Some(SecretString::new(
                "https://api.datadoghq.eu:8443/ignored?x=1",
            )),
            token: token.map(SecretString::new),
            ..Settings::default()
        };
        assert!(matches!(
            new(settings(None)).err(),
            Some(Invalid::Setting {
                reason: Reason::SecretKeyMissing,
                ..
            })
        ));
        let n = crate::providers::testing::notification(Severity::Info, &[]);
        let request = new(settings(Some("k")))
            .expect("datadog")
            .request(&n, None, None)
            .expect("request");
        assert_eq!(
            request.url.expose(),
            "https://api.datadoghq.eu:8443/api/v1/events"
        );
    }
}
