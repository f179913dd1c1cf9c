//! Zoom Team Chat: Flux POSTs a rich message to the Incoming Webhook
//! chatbot's address with `format=full` added to its query (unless the
//! address has a `format`; the query is then re-encoded, keys sorted, as
//! Go does) and the verification token, as is, in `Authorization`. The
//! message: `{"content": {"head": {"text": "<kind>/<name>.<namespace>",
//! "sub_head": {"text": <severity>}}, "body": [{"type": "message", "text":
//! <message>}, {"type": "fields", "items": [{"key", "value"}…]}]}}`, the
//! fields only when there is metadata. A text template replaces the
//! message and drops the fields.
//!
//! Zoom is not in Flux v1.9.3: this is the format of Flux's `main` branch,
//! where the type was added.

use std::sync::Arc;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde_json::{Value, json};

use super::{
    Body, Invalid, Notifier, Request, Settings, ThreadAnchor, listed_metadata, message_text,
    zulip::query_escape,
};
use crate::api::Reason;
use crate::mask::SecretString;
use crate::notification::Notification;
use crate::template::Rendered;

pub struct Zoom {
    settings: Settings,
    /// The address with `format=full`.
    url: SecretString,
    /// The verification token as a header value.
    authorization: HeaderValue,
}

pub fn new(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    let address = settings.address()?;
    let missing = || Invalid::Setting {
        reason: Reason::SecretKeyMissing,
        message: "zoom needs the verification token in the 'token' key of spec.secretRef's Secret"
            .into(),
    };
    let token = settings
        .token
        .as_ref()
        .filter(|t| !t.expose().is_empty())
        .ok_or_else(missing)?;
    let mut authorization =
        HeaderValue::from_str(token.expose()).map_err(|_| Invalid::Setting {
            reason: Reason::InvalidToken,
            message: "the zoom verification token is not a valid header value".into(),
        })?;
    authorization.set_sensitive(true);
    let url = SecretString::new(
        full_format(address.expose()).ok_or_else(|| Invalid::Setting {
            reason: Reason::InvalidAddress,
            message: "the zoom address is not a valid URL".into(),
        })?,
    );
    Ok(Arc::new(Zoom {
        settings,
        url,
        authorization,
    }))
}

/// The address with `format=full` unless it has a `format`.
fn full_format(address: &str) -> Option<String> {
    let mut url = url::Url::parse(address).ok()?;
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if pairs.iter().any(|(k, v)| k == "format" && !v.is_empty()) {
        return Some(address.to_owned());
    }
    pairs.retain(|(k, _)| k != "format");
    pairs.push(("format".into(), "full".into()));
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect::<Vec<_>>()
        .join("&");
    url.set_query(Some(&query));
    Some(url.to_string())
}

fn payload(n: &Notification, rendered: Option<&Rendered>) -> Value {
    let mut body = vec![json!({"type": "message", "text": message_text(n, rendered)})];
    let items: Vec<Value> = listed_metadata(n, rendered)
        .map(|(key, value)| json!({"key": key, "value": value}))
        .collect();
    if !items.is_empty() {
        body.push(json!({"type": "fields", "items": items}));
    }
    json!({
        "content": {
            "head": {
                "text": n.object_name(),
                "sub_head": {"text": n.event.severity.as_str()},
            },
            "body": body,
        },
    })
}

impl Notifier for Zoom {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        _thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String> {
        Ok(Request::post(&self.url, Body::json(&payload(n, rendered))?)
            .header(AUTHORIZATION, self.authorization.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Severity;
    use crate::providers::testing::notification;

    #[test]
    fn format_full_is_added_unless_set() {
        assert_eq!(
            full_format("https://integrations.zoom.us/chat/webhooks/incomingwebhook/abc")
                .as_deref(),
            Some("https://integrations.zoom.us/chat/webhooks/incomingwebhook/abc?format=full")
        );
        assert_eq!(
            full_format("https://zoom.example/hook?z=1&a=b c").as_deref(),
            Some("https://zoom.example/hook?a=b+c&format=full&z=1")
        );
        assert_eq!(
            full_format("https://zoom.example/hook?format=message").as_deref(),
            Some("https://zoom.example/hook?format=message")
        );
    }

    #[test]
    fn the_message_has_a_head_and_fields() {
        let n = notification(Severity::Info, &[("test", "metadata")]);
        assert_eq!(
            payload(&n, None),
            json!({"content": {
                "head": {"text": "kustomization/app.flux-system", "sub_head": {"text": "info"}},
                "body": [
                    {"type": "message", "text": "Health check failed"},
                    {"type": "fields", "items": [{"key": "test", "value": "metadata"}]},
                ],
            }})
        );
        let n = notification(Severity::Info, &[]);
        assert_eq!(
            payload(&n, None)["content"]["body"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
    }
}
