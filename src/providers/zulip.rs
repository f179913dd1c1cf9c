//! Zulip: Flux POSTs a form (`application/x-www-form-urlencoded`, keys
//! sorted as Go encodes them: `content`, `to`, `topic`, `type=stream`) to
//! `/api/v1/messages` on the address's host (the address's own path is
//! replaced), with basic auth from the username (the bot's email) and
//! password (its API key). The channel is `<stream>/<topic>` (the
//! Alert's, else the Provider's). The content is Flux's markdown post:
//! `## Flux Status`, an emoji (`ℹ️`, or `⚠️` for errors) and
//! `<Kind>/<namespace>/<name>`, the message, then `Metadata:` and one
//! ``* `key`: value`` line per entry (sorted, without `change_request`). A
//! text template replaces the message and the metadata lines.
//!
//! Zulip answers `{"result": "error", "msg"}` when it refuses a message:
//! herald fails one that comes with a 2xx status.

use std::fmt::Write;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::{
    Auth, Body, Invalid, Notifier, Request, Response, Settings, ThreadAnchor, Verdict,
    judge_status, listed_metadata, message_text,
};
use crate::api::Reason;
use crate::api::Severity;
use crate::mask::SecretString;
use crate::notification::Notification;
use crate::template::Rendered;

pub struct Zulip {
    settings: Settings,
    /// The address with its path replaced by `/api/v1/messages`.
    url: SecretString,
}

pub fn new(settings: Settings) -> Result<Arc<dyn Notifier>, Invalid> {
    let address = settings.address()?;
    let mut url = url::Url::parse(address.expose()).map_err(|_| Invalid::Setting {
        reason: Reason::InvalidAddress,
        message: "the zulip address is not a valid URL".into(),
    })?;
    url.set_path("/api/v1/messages");
    let url = SecretString::new(url.to_string());
    let channel = settings.channel.as_deref().unwrap_or("");
    if stream_and_topic(channel).is_none() {
        return Err(Invalid::Setting {
            reason: Reason::InvalidChannel,
            message: format!(
                "invalid Zulip channel format, expected <channel>/<topic>, got '{channel}'"
            ),
        });
    }
    Ok(Arc::new(Zulip { settings, url }))
}

/// `<stream>/<topic>`, both non-empty.
fn stream_and_topic(channel: &str) -> Option<(&str, &str)> {
    channel
        .split_once('/')
        .filter(|(stream, topic)| !stream.is_empty() && !topic.is_empty())
}

/// Go's `url.QueryEscape`.
pub(super) fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char);
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Flux's markdown post.
fn content(n: &Notification, rendered: Option<&Rendered>) -> String {
    let emoji = match n.event.severity {
        Severity::Error => "⚠️",
        _ => "ℹ️",
    };
    let object = &n.event.involved_object;
    let mut metadata = String::new();
    for (key, value) in listed_metadata(n, rendered).filter(|(k, _)| *k != "change_request") {
        let _ = writeln!(metadata, "* `{key}`: {value}");
    }
    format!(
        "## Flux Status\n\n{emoji} {}/{}/{}\n\n{}\n\nMetadata:\n{metadata}",
        object.kind,
        object.namespace,
        object.name,
        message_text(n, rendered)
    )
}

impl Notifier for Zulip {
    fn settings(&self) -> &Settings {
        &self.settings
    }

    fn request(
        &self,
        n: &Notification,
        rendered: Option<&Rendered>,
        _thread: Option<&ThreadAnchor>,
    ) -> Result<Request, String> {
        let channel = n.route.channel().unwrap_or("");
        let (stream, topic) = stream_and_topic(channel).ok_or_else(|| {
            format!("invalid Zulip channel format, expected <channel>/<topic>, got '{channel}'")
        })?;
        let form = [
            ("content", content(n, rendered)),
            ("to", stream.to_owned()),
            ("topic", topic.to_owned()),
            ("type", "stream".to_owned()),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", query_escape(v)))
        .collect::<Vec<_>>()
        .join("&");
        let body = Body {
            content_type: "application/x-www-form-urlencoded",
            bytes: Bytes::from(form),
        };
        let mut request = Request::post(&self.url, body);
        let username = self.settings.username.clone().unwrap_or_default();
        if !username.is_empty() || self.settings.password.is_some() {
            request = request.auth(Auth::Basic {
                username,
                password: (self.settings.password.clone()).unwrap_or_else(|| SecretString::new("")),
            });
        }
        Ok(request)
    }

    fn judge(&self, response: &Response<'_>) -> Verdict {
        let verdict = judge_status(response);
        if verdict == Verdict::Delivered
            && let Ok(body) = serde_json::from_slice::<Value>(response.body)
            && body["result"] == "error"
        {
            return Verdict::Fail(format!(
                "Zulip refused the message: {}",
                body["msg"].as_str().unwrap_or("")
            ));
        }
        verdict
    }

    /// A form is shown as the text it is.
    fn payload(&self, n: &Notification, rendered: Option<&Rendered>) -> Result<Value, String> {
        let request = self.request(n, rendered, None)?;
        let form: serde_json::Map<String, Value> = url::form_urlencoded::parse(&request.body.bytes)
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
        Ok(Value::Object(form))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::testing::notification;

    fn zulip(address: &str) -> Arc<dyn Notifier> {
        new(Settings {
            address: Some(SecretString::new(address)),
            username: Some("bot@example.com".into()),
            password: Some(SecretString::new("key")),
            channel: Some("general/flux alerts".into()),
            ..Settings::default()
        })
        .expect("built")
    }

    #[test]
    fn the_form_is_encoded_as_go_does() {
        let mut n = notification(
            Severity::Info,
            &[("revision", "r1"), ("change_request", "1")],
        );
        Arc::make_mut(&mut n.route).provider_channel = Some("general/flux alerts".into());
        let request = zulip("https://zulip.example.com/some/path?x=1")
            .request(&n, None, None)
            .expect("request");
        assert_eq!(
            request.url.expose(),
            "https://zulip.example.com/api/v1/messages?x=1"
        );
        assert_eq!(
            String::from_utf8_lossy(&request.body.bytes),
            "content=%23%23+Flux+Status%0A%0A%E2%84%B9%EF%B8%8F+Kustomization%2Fflux-system%2Fapp%0A%0AHealth+check+failed%0A%0AMetadata%3A%0A%2A+%60revision%60%3A+r1%0A&to=general&topic=flux+alerts&type=stream"
        );
        assert!(
            matches!(request.auth, Auth::Basic { ref username, .. } if username == "bot@example.com")
        );
    }

    #[test]
    fn the_channel_needs_a_topic() {
        for channel in [None, Some("general"), Some("/topic"), Some("general/")] {
            let result = new(Settings {
                address: Some(SecretString::new("https://zulip.example.com")),
                channel: channel.map(str::to_owned),
                ..Settings::default()
            });
            assert!(result.is_err(), "{channel:?}");
        }
    }
}
